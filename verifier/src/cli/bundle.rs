//! `verifier verify-bundle`: check an offline proof bundle, with no network.
//!
//! Exit codes follow [`super::outcome`], with one decision made here: a
//! file that starts with the `c2sp.org/tlog-proof@v1` line is a bundle, so
//! any damage to the rest of it, even one flipped bit that only breaks its
//! form, is a failed verification (exit 1). A file that cannot be read, is
//! empty, or does not start with that line is not a bundle at all (exit 2):
//! the check could not be made. Either way nothing but an intact bundle
//! signed by the log's key exits 0.

use super::outcome::{Failure, Outcome, Report};
use super::remote::verifier_key;
use super::witness_policy::WitnessArgs;
use crate::bundle::{BundleError, ProofBundle};
use crate::proto::event::Kind;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `verifier verify-bundle`.
#[derive(clap::Args)]
pub struct Args {
    /// The proof bundle, as saved by `verifier submit --bundle`.
    file: PathBuf,
    /// The log's verifier key, inline or as a file.
    #[arg(long)]
    vkey: String,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

pub fn run(args: Args) -> Outcome {
    let key = verifier_key(&args.vkey)?;
    let policy = args.witnesses.policy()?;
    let name = args.file.display();
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::unchecked(format!("cannot read {name}: {e}")))?;
    let refused = |e: BundleError| match e {
        BundleError::NotABundle => Failure::unchecked(format!("{name}: {e}")),
        e => Failure::security_with(
            format!("the proof bundle {name} does not verify: {e}"),
            vec![(
                "bundle".into(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )],
        ),
    };
    let verified = ProofBundle::parse(&bytes)
        .and_then(|bundle| bundle.verify(&key))
        .map_err(refused)?;
    policy.check(
        &verified.checkpoint,
        &key,
        &format!("the checkpoint in the proof bundle {name}"),
    )?;
    let cp = &verified.checkpoint.checkpoint;
    let submitter = verified
        .entry
        .signed_event
        .as_ref()
        .expect("a verified entry has a signed event")
        .key_id
        .as_str();
    let kind = match verified.event.kind {
        Some(Kind::DataFlow(_)) => "data_flow",
        Some(Kind::CodeRelease(_)) => "code_release",
        None => unreachable!("a verified event has a kind"),
    };
    Ok(Report {
        human: format!(
            "verified: entry {} is in the tree of size {} of {}\n\
             leaf hash {}\n\
             submitted by {submitter}: {kind} event",
            verified.index, cp.size, cp.origin, verified.leaf_hash
        ),
        json: json!({
            "index": verified.index,
            "tree_size": cp.size,
            "origin": cp.origin,
            "root": cp.root.to_string(),
            "leaf_hash": verified.leaf_hash.to_string(),
            "submitter_key_id": submitter,
            "event_kind": kind,
        }),
    })
}
