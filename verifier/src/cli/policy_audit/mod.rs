//! `verifier policy`: check every entry since the last run against a policy
//! file, and report each incident with evidence anyone can re-check
//! offline.
//!
//! A run verifies the log's checkpoint (with the witness policy), proves it
//! consistent with the trusted one, reads the new entries from the
//! entry-bundle tiles, recomputes the root over them from the saved
//! compact range, and only then trusts what it found. It writes
//! `report.json`, `report.html` and one tlog-proof bundle per incident to
//! `--out`, and saves its state so that the next run checks only newer
//! entries. Exit 0 when this run found no incident, 1 when it found some,
//! 2 when the check could not be made.

pub mod check;
mod evidence;
mod report_html;
mod report_json;
pub mod state;
mod summary;

use super::entry_bundles::for_each_bundle;
use super::outcome::{Failure, Outcome, Report};
use super::policy::Policy;
use super::remote::LogArgs;
use super::state::{write_atomically, TrustedState};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use check::Checker;
use report_json::{Checked, CheckpointInfo, IncidentInfo, RunReport, Summary};
use sha2::{Digest as _, Sha256};
use state::{state_path, PolicyState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Arguments of `verifier policy`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: LogArgs,
    /// The policy file (TOML; see examples/policy.toml).
    #[arg(long)]
    policy: PathBuf,
    /// Directory of trusted state. The checkpoint must be consistent with
    /// the one trusted there, and the check resumes from the state kept
    /// there.
    #[arg(long)]
    state: PathBuf,
    /// Where to write report.json, report.html and incidents/*.tlog-proof.
    #[arg(long)]
    out: PathBuf,
}

/// Incidents listed in the exit message; the report has them all.
const LISTED: usize = 20;

/// Runs `verifier policy`.
pub fn run(args: Args) -> Outcome {
    let (policy, policy_sha256) = read_policy(&args.policy)?;
    let (log, key) = args.target.open()?;
    let signed = log.checkpoint(&key)?;
    let trusted = TrustedState::open(&args.state, &key)?;
    trusted.accept(&log, &signed)?;
    let state_file = state_path(trusted.dir());
    let state = PolicyState::load(&state_file, &policy_sha256)?;
    let (from, size) = (state.range.size(), signed.checkpoint.size);
    if from > size {
        return Err(Failure::unchecked(format!(
            "{} has checked {from} entries, more than the trusted checkpoint's {size}; \
             it belongs to another state directory",
            state_file.display()
        )));
    }

    let mut checker = Checker::new(&policy, state);
    for_each_bundle(&log, from, size, |_, _, entries| checker.push_all(entries))
        .map_err(|f| f.with_checkpoint(signed.note_text()))?;
    let computed = checker.state.range.root();
    if computed != signed.checkpoint.root {
        return Err(Failure::security(format!(
            "root mismatch: the {size} entries the log serves hash to root {computed}, \
             but its signed checkpoint says {}",
            signed.checkpoint.root
        ))
        .with_checkpoint(signed.note_text()));
    }

    std::fs::create_dir_all(&args.out).map_err(|e| {
        Failure::unchecked(format!("cannot create --out {}: {e}", args.out.display()))
    })?;
    let bundles = evidence::write_bundles(&log, &key, &signed, &checker.found, &args.out)?;
    let (report, state) = run_report(&signed, policy_sha256, from, checker, bundles);
    write_atomically(&args.out.join("report.json"), &report.to_json())?;
    write_atomically(
        &args.out.join("report.html"),
        report_html::render(&report).as_bytes(),
    )?;
    state.save(&state_file)?;
    finish(&report, &args.out)
}

/// Parses `--policy`, and hashes it so that the state can tell whether it
/// changed.
fn read_policy(path: &Path) -> Result<(Policy, String), Failure> {
    let fail =
        |reason: String| Failure::unchecked(format!("--policy {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let policy = Policy::parse(&text).map_err(|e| fail(e.to_string()))?;
    Ok((policy, crate::hex::encode(&Sha256::digest(text.as_bytes()))))
}

/// The report, and the state to save after it.
fn run_report(
    signed: &crate::checkpoint::SignedCheckpoint,
    policy_sha256: String,
    from: u64,
    checker: Checker<'_>,
    bundles: Vec<String>,
) -> (RunReport, PolicyState) {
    let cp = &signed.checkpoint;
    let mut by_rule = BTreeMap::new();
    let incidents = checker
        .found
        .into_iter()
        .zip(bundles)
        .map(|(f, bundle)| {
            *by_rule.entry(f.rule.clone()).or_insert(0) += 1;
            IncidentInfo {
                index: f.index,
                rule: f.rule,
                reason: f.reason,
                event: f.event,
                bundle,
            }
        })
        .collect();
    let report = RunReport {
        origin: cp.origin.clone(),
        checkpoint: CheckpointInfo {
            size: cp.size,
            root: BASE64_STANDARD.encode(cp.root.0),
            note: signed.note_text().to_owned(),
        },
        policy_sha256,
        entries_checked: Checked {
            from,
            this_run: cp.size - from,
            total: checker.state.totals.entries,
        },
        incidents,
        summary: Summary {
            totals: checker.state.totals.clone(),
            incidents_this_run_by_rule: by_rule,
            releases_this_run: checker.releases,
        },
    };
    (report, checker.state)
}

/// Exit 0 with a summary when this run found nothing, else a security
/// finding that lists the incidents briefly and points to the report.
fn finish(report: &RunReport, out: &Path) -> Outcome {
    let checked = &report.entries_checked;
    let totals = &report.summary.totals;
    let reports = format!(
        "{} and {}",
        out.join("report.json").display(),
        out.join("report.html").display()
    );
    if report.incidents.is_empty() {
        return Ok(Report {
            human: format!(
                "policy check passed: no incident in entries {} to {} of {} ({} checked in total, \
                 {} incidents in earlier runs)\nreport: {reports}",
                checked.from,
                checked.from + checked.this_run,
                report.origin,
                checked.total,
                totals.incidents()
            ),
            json: serde_json::json!({
                "origin": report.origin,
                "size": report.checkpoint.size,
                "checked_from": checked.from,
                "checked_this_run": checked.this_run,
                "checked_total": checked.total,
                "incidents": 0,
                "report": out.join("report.json"),
            }),
        });
    }
    let mut listed: String = report
        .incidents
        .iter()
        .take(LISTED)
        .map(|i| {
            format!(
                "entry {}: {}: {} ({})\n",
                i.index,
                i.rule,
                i.reason,
                out.join(&i.bundle).display()
            )
        })
        .collect();
    if report.incidents.len() > LISTED {
        listed.push_str(&format!(
            "… and {} more in the report\n",
            report.incidents.len() - LISTED
        ));
    }
    Err(Failure::security_with(
        format!(
            "{} policy incidents in entries {} to {} of {}; report: {reports}",
            report.incidents.len(),
            checked.from,
            checked.from + checked.this_run,
            report.origin
        ),
        vec![
            ("incidents".into(), listed),
            ("checkpoint".into(), report.checkpoint.note.clone()),
        ],
    ))
}
