//! `verifier check-evidence`: check a split-view evidence file offline.
//!
//! Proven misbehaviour is a security finding (exit 1) carrying both notes
//! and the proof; a file that proves nothing is a verified "no" (exit 0);
//! a file that cannot be read, is malformed, or is not signed by the key
//! given could not be checked (exit 2). No network is used.

use super::outcome::{Failure, Outcome, Report};
use super::remote::verifier_key;
use super::state::proof_lines;
use crate::evidence::{Evidence, Verdict, MAX_EVIDENCE_BYTES};
use serde_json::json;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Arguments of `verifier check-evidence`.
#[derive(clap::Args)]
pub struct Args {
    /// The evidence file, as `verifier monitor` writes it.
    file: PathBuf,
    /// The log's verifier key, inline or as a file.
    #[arg(long)]
    vkey: String,
}

pub fn run(args: Args) -> Outcome {
    let key = verifier_key(&args.vkey)?;
    let text = read_bounded(&args.file)?;
    let shown = args.file.display();
    let evidence =
        Evidence::parse(&text).map_err(|e| Failure::unchecked(format!("{shown}: {e}")))?;
    let verdict = evidence
        .check(&key)
        .map_err(|e| Failure::unchecked(format!("{shown}: {e}")))?;
    match verdict {
        Verdict::Proven { summary } => {
            let [small, large] = evidence.notes();
            Err(Failure::security_with(
                format!("PROVES MISBEHAVIOUR: {summary}"),
                vec![
                    ("checkpoint 1".into(), small.to_owned()),
                    ("checkpoint 2".into(), large.to_owned()),
                    ("consistency proof".into(), proof_lines(evidence.proof())),
                ],
            ))
        }
        Verdict::NotProven { reason } => Ok(Report {
            human: format!("does not prove misbehaviour: {reason}"),
            json: json!({
                "proves_misbehaviour": false,
                "reason": reason,
                "origin": evidence.origin(),
            }),
        }),
    }
}

/// The file's bytes, refusing one larger than any evidence file can be
/// without reading it all.
fn read_bounded(path: &Path) -> Result<Vec<u8>, Failure> {
    let fail =
        |e: std::io::Error| Failure::unchecked(format!("cannot read {}: {e}", path.display()));
    let mut text = Vec::new();
    std::fs::File::open(path)
        .map_err(fail)?
        .take(MAX_EVIDENCE_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(fail)?;
    Ok(text)
}
