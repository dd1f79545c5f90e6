//! Trusted state: the last checkpoint this verifier accepted, per log.
//!
//! Every later command proves consistency from it before accepting a newer
//! checkpoint. A smaller tree, a different root at the same size, or a
//! failing consistency proof is a security finding carrying both signed
//! notes and the proof, never a warning. Files are replaced atomically
//! (write, fsync, rename), so a crash never leaves half a state.

use super::outcome::Failure;
use super::remote::Log;
use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;
use crate::merkle::{verify_consistency, Hash};
use crate::tiles::TiledHashReader;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The state directory of one log, `<state>/<origin, made filename-safe>`.
pub struct TrustedState {
    dir: PathBuf,
    key: VerifierKey,
}

/// How a newly seen checkpoint relates to the trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// There was no trusted checkpoint; this one is now trusted.
    First,
    /// The same tree as the trusted checkpoint.
    Unchanged,
    /// A larger tree, proven consistent with the trusted one.
    Extended {
        /// The trusted size it was proven consistent with.
        from: u64,
    },
}

impl TrustedState {
    /// Opens (creating if needed) the state of the log whose key is `key`.
    pub fn open(state_dir: &Path, key: &VerifierKey) -> Result<Self, Failure> {
        let safe: String = key
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = state_dir.join(format!("{safe}+{:08x}", key.id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::unchecked(format!(
                "cannot create state directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self {
            dir,
            key: key.clone(),
        })
    }

    /// The directory, for other state files of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted checkpoint, re-verified. A stored note that no longer
    /// verifies means the state was damaged: the check cannot be made.
    pub fn trusted(&self) -> Result<Option<SignedCheckpoint>, Failure> {
        let path = self.dir.join("checkpoint");
        let note = match std::fs::read(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Failure::unchecked(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        SignedCheckpoint::verify(&note, &self.key)
            .map(Some)
            .map_err(|e| {
                Failure::unchecked(format!("trusted state {} is damaged: {e}", path.display()))
            })
    }

    /// Accepts `new` if it is consistent with the trusted checkpoint,
    /// proving consistency with hashes from the log's tiles, and makes it
    /// the trusted checkpoint.
    pub fn accept(&self, log: &Log, new: &SignedCheckpoint) -> Result<Acceptance, Failure> {
        let Some(old) = self.trusted()? else {
            self.save(new)?;
            return Ok(Acceptance::First);
        };
        let proof = prove_consistency(log, &old, new)?;
        check_consistency(&old, new, &proof)?;
        if new.checkpoint.size == old.checkpoint.size {
            return Ok(Acceptance::Unchanged);
        }
        self.save(new)?;
        Ok(Acceptance::Extended {
            from: old.checkpoint.size,
        })
    }

    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), Failure> {
        write_atomically(&self.dir.join("checkpoint"), &checkpoint.note)
    }
}

/// Builds the consistency proof from `old` to `new` out of the log's tiles.
/// The proof is not trusted: [`check_consistency`] verifies it against both
/// signed roots.
pub fn prove_consistency(
    log: &Log,
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
) -> Result<Vec<Hash>, Failure> {
    let (old_size, new_size) = (old.checkpoint.size, new.checkpoint.size);
    if old_size == 0 || old_size >= new_size {
        return Ok(Vec::new());
    }
    let tiles = log.hash_tiles(new_size);
    let reader = TiledHashReader::new(&tiles);
    tlog_tiles::prove_tree(new_size, old_size, &reader).map_err(|e| {
        Failure::unchecked(format!(
            "building the consistency proof {old_size} → {new_size} from tiles: {e}"
        ))
    })
}

/// Checks that `new` extends `old` with `proof`; anything else is a
/// security finding carrying both notes and the proof.
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &[Hash],
) -> Result<(), Failure> {
    let (a, b) = (&old.checkpoint, &new.checkpoint);
    let summary = if b.size < a.size {
        Some(format!(
            "rollback: the log now shows a tree of size {} after having signed size {}",
            b.size, a.size
        ))
    } else if b.size == a.size && b.root != a.root {
        Some(format!(
            "fork: two signed checkpoints for size {} with different roots",
            a.size
        ))
    } else if b.size > a.size {
        verify_consistency(proof, a.size, a.root, b.size, b.root)
            .err()
            .map(|e| {
                format!(
                    "the log's tree of size {} does not extend its tree of size {}: {e}",
                    b.size, a.size
                )
            })
    } else {
        None
    };
    match summary {
        None => Ok(()),
        Some(summary) => Err(Failure::security_with(
            summary,
            vec![
                ("trusted checkpoint".into(), old.note_text().to_owned()),
                ("new checkpoint".into(), new.note_text().to_owned()),
                ("consistency proof".into(), proof_lines(proof)),
            ],
        )),
    }
}

/// Proof hashes as base64 lines, as in C2SP proofs.
pub fn proof_lines(proof: &[Hash]) -> String {
    proof
        .iter()
        .map(|h| format!("{}\n", BASE64_STANDARD.encode(h.0)))
        .collect()
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new
/// contents, never a mix, even across a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::unchecked(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
