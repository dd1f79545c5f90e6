//! `verifier checkpoint`: fetch, verify and print the latest checkpoint.

use super::outcome::{Outcome, Report};
use super::remote::LogArgs;
use super::state::{Acceptance, TrustedState};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `verifier checkpoint`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: LogArgs,
    /// Directory of trusted state: the checkpoint must be consistent with
    /// the one trusted there, and then replaces it.
    #[arg(long)]
    state: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (log, key) = args.target.open()?;
    let state = args
        .state
        .as_deref()
        .map(|dir| TrustedState::open(dir, &key))
        .transpose()?;
    // Fetched under the state's lock: a run that fetched earlier never
    // checks later than one that fetched after it.
    let locked = state.as_ref().map(TrustedState::lock).transpose()?;
    let signed = log.checkpoint(&key)?;
    let acceptance = locked
        .map(|locked| locked.accept(&log, &signed))
        .transpose()?;
    let witnessed = log.witness_policy().describe(&signed, &key);
    let cp = &signed.checkpoint;
    let relation = match acceptance {
        None => "not compared with any trusted state".to_owned(),
        Some(Acceptance::First) => {
            "trusted from now on (first checkpoint in this state)".to_owned()
        }
        Some(Acceptance::Unchanged) => "same tree as the trusted checkpoint".to_owned(),
        Some(Acceptance::Extended { from }) => {
            format!("proven consistent with the trusted size {from}")
        }
    };
    Ok(Report {
        human: format!(
            "verified checkpoint of {}\nsize {}\nroot {}\n{}{relation}\n\n{}",
            cp.origin,
            cp.size,
            cp.root,
            witnessed
                .as_ref()
                .map_or(String::new(), |w| format!("{w}\n")),
            signed.note_text()
        ),
        json: json!({
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.to_string(),
            "note": signed.note_text(),
            "trusted_state": relation,
            "witnesses": witnessed,
        }),
    })
}
