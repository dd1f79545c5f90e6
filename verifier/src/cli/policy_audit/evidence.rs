//! Evidence for each incident: a C2SP tlog-proof bundle of the entry, its
//! inclusion proof built from the log's hash tiles, and the checkpoint note
//! exactly as served (with any cosignatures), so that anyone can re-check
//! the incident offline with `verifier verify-bundle`.

use super::super::outcome::Failure;
use super::super::remote::Log;
use super::super::state::write_atomically;
use super::summary::Found;
use crate::bundle::ProofBundle;
use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;
use crate::tiles::TiledHashReader;
use std::path::Path;

/// Where bundles go, under `--out`.
pub const INCIDENTS_DIR: &str = "incidents";

/// Writes one bundle per incident in `found` under `out/incidents/`, each
/// verified as `verify-bundle` will verify it before it is written, and
/// returns each one's path relative to `out`, in the order of `found`.
pub fn write_bundles(
    log: &Log,
    key: &VerifierKey,
    signed: &SignedCheckpoint,
    found: &[Found],
    out: &Path,
) -> Result<Vec<String>, Failure> {
    let size = signed.checkpoint.size;
    let dir = out.join(INCIDENTS_DIR);
    if !found.is_empty() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::unchecked(format!("cannot create {}: {e}", dir.display())))?;
    }
    let tiles = log.hash_tiles(size);
    let reader = TiledHashReader::new(&tiles);
    found
        .iter()
        .map(|f| {
            let proof = tlog_tiles::prove_record(size, f.index, &reader).map_err(|e| {
                Failure::unchecked(format!(
                    "building the inclusion proof of entry {} from tiles: {e}",
                    f.index
                ))
            })?;
            let bundle = ProofBundle {
                entry: f.entry.clone(),
                index: f.index,
                proof,
                checkpoint_note: signed.note.clone(),
            };
            bundle.verify(key).map_err(|e| {
                Failure::security_with(
                    format!(
                        "the log's tiles give entry {} a proof that does not verify: {e}",
                        f.index
                    ),
                    vec![("checkpoint".into(), signed.note_text().to_owned())],
                )
            })?;
            let name = format!("{}/{}", INCIDENTS_DIR, file_name(f.index, &f.rule));
            write_atomically(&out.join(&name), &bundle.to_text())?;
            Ok(name)
        })
        .collect()
}

/// `<index>-<rule>.tlog-proof`. A rule id can hold a data category, which
/// is the submitter's text, so anything but `[A-Za-z0-9._-]` becomes `_`
/// and the name is capped: no rule id can leave the directory.
fn file_name(index: u64, rule: &str) -> String {
    let safe: String = rule
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index}-{safe}.tlog-proof")
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_stay_in_the_directory() {
        assert_eq!(
            file_name(5, "release.quorum"),
            "5-release.quorum.tlog-proof"
        );
        assert_eq!(
            file_name(7, "data_residency.../../etc/passwd"),
            "7-data_residency..._.._etc_passwd.tlog-proof"
        );
        assert!(!file_name(1, &"x/".repeat(500)).contains('/'));
        assert!(file_name(1, &"x".repeat(500)).len() < 130);
    }
}
