//! `verifier consistency`: verify that one signed checkpoint extends another.

use super::outcome::{Failure, Outcome, Report};
use super::remote::{Log, LogArgs};
use super::state::{check_consistency, proof_lines, prove_consistency, TrustedState};
use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `verifier consistency`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: LogArgs,
    /// A file holding the older signed checkpoint.
    #[arg(long, required_unless_present = "state")]
    old: Option<PathBuf>,
    /// Directory of trusted state: without --old, its trusted checkpoint is
    /// the older one.
    #[arg(long)]
    state: Option<PathBuf>,
    /// A file holding the newer signed checkpoint [default: the log's latest].
    #[arg(long)]
    new: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (log, key) = args.target.open()?;
    let old = match (&args.old, &args.state) {
        (Some(path), _) => read_note(path, &log, &key)?,
        (None, Some(dir)) => TrustedState::open(dir, &key)?.trusted()?.ok_or_else(|| {
            Failure::unchecked(format!("{}: no trusted checkpoint yet", dir.display()))
        })?,
        (None, None) => return Err(Failure::unchecked("give --old or --state")),
    };
    let new = match &args.new {
        Some(path) => read_note(path, &log, &key)?,
        None => log.checkpoint(&key)?,
    };
    let proof = prove_consistency(&log, &old, &new)?;
    check_consistency(&old, &new, &proof)?;
    let (a, b) = (&old.checkpoint, &new.checkpoint);
    Ok(Report {
        human: format!(
            "verified: the tree of size {} (root {}) extends the tree of size {} (root {})",
            b.size, b.root, a.size, a.root
        ),
        json: json!({
            "old_size": a.size,
            "old_root": a.root.to_string(),
            "new_size": b.size,
            "new_root": b.root.to_string(),
            "proof": proof_lines(&proof).lines().collect::<Vec<_>>(),
        }),
    })
}

/// Reads and verifies a signed checkpoint file. One that does not verify
/// under the log's key is not evidence of anything: the check cannot be
/// made. One that lacks the cosignatures `--quorum` asks for is refused
/// like the log's own.
fn read_note(path: &PathBuf, log: &Log, key: &VerifierKey) -> Result<SignedCheckpoint, Failure> {
    let note = std::fs::read(path)
        .map_err(|e| Failure::unchecked(format!("cannot read {}: {e}", path.display())))?;
    let signed = SignedCheckpoint::verify(&note, key).map_err(|e| {
        Failure::unchecked(format!(
            "{} is not a checkpoint signed by {}: {e}",
            path.display(),
            key.key_id()
        ))
    })?;
    log.witness_policy().check(
        &signed,
        key,
        &format!("the checkpoint in {}", path.display()),
    )?;
    Ok(signed)
}
