//! What a command concluded, and how that becomes an exit code and output.
//!
//! | exit | meaning |
//! |------|---------|
//! | 0 | verified |
//! | 1 | verification failed: a security finding |
//! | 2 | could not check: network error, bad input, missing file |
//!
//! A security finding is never printed as a warning: it carries the
//! evidence (the signed notes and proofs involved) so that the report can
//! be checked by someone else.
//!
//! Reports, findings and reasons hold text from the log and from files, so
//! [`finish`] prints every human line through [`show`]; `--json` prints the
//! exact text.

use super::display::{show, Shape};
use serde_json::{json, Value};
use std::process::ExitCode;

/// A command's successful result: a line or more for people, and one JSON
/// object for `--json`.
#[derive(Debug)]
pub struct Report {
    /// What a person reads.
    pub human: String,
    /// What a program reads; `"ok": true` is added when printed.
    pub json: Value,
}

/// Evidence that the log (or a file claiming to come from it) is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// One line saying exactly what failed.
    pub summary: String,
    /// Named pieces of evidence, such as signed notes and proof lines.
    pub evidence: Vec<(String, String)>,
}

/// Why a command did not end in "verified".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Verification failed: exit 1.
    Security(Finding),
    /// The check could not be made: exit 2.
    Unchecked(String),
}

impl Failure {
    /// A finding without attached evidence.
    pub fn security(summary: impl Into<String>) -> Self {
        Self::Security(Finding {
            summary: summary.into(),
            evidence: Vec::new(),
        })
    }

    /// Puts the checkpoint a finding was made against first in its
    /// evidence, unless it is there already; a failure to check is left
    /// as it is.
    pub fn with_checkpoint(self, note_text: &str) -> Self {
        match self {
            Self::Security(mut finding) => {
                if !finding
                    .evidence
                    .iter()
                    .any(|(name, _)| name == "checkpoint")
                {
                    finding
                        .evidence
                        .insert(0, ("checkpoint".into(), note_text.to_owned()));
                }
                Self::Security(finding)
            }
            unchecked => unchecked,
        }
    }

    /// A finding with evidence.
    pub fn security_with(summary: impl Into<String>, evidence: Vec<(String, String)>) -> Self {
        Self::Security(Finding {
            summary: summary.into(),
            evidence,
        })
    }

    /// The check could not be made.
    pub fn unchecked(reason: impl Into<String>) -> Self {
        Self::Unchecked(reason.into())
    }
}

/// What every command returns.
pub type Outcome = Result<Report, Failure>;

/// Prints `outcome` and turns it into the process exit code.
pub fn finish(outcome: Outcome, as_json: bool) -> ExitCode {
    match outcome {
        Ok(report) => {
            if as_json {
                let mut json = report.json;
                if let Value::Object(map) = &mut json {
                    map.insert("ok".into(), Value::Bool(true));
                }
                println!("{json}");
            } else {
                for line in report.human.trim_end().split('\n') {
                    println!("{}", show(line, Shape::Line));
                }
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Security(finding)) => {
            if as_json {
                let evidence: serde_json::Map<String, Value> = finding
                    .evidence
                    .iter()
                    .map(|(name, text)| (name.clone(), Value::String(text.clone())))
                    .collect();
                println!(
                    "{}",
                    json!({"ok": false, "security_finding": finding.summary, "evidence": evidence})
                );
            } else {
                eprintln!(
                    "verifier: SECURITY FINDING: {}",
                    show(&finding.summary, Shape::Line)
                );
                for (name, text) in &finding.evidence {
                    eprintln!(
                        "--- {} ---\n{}",
                        show(name, Shape::Line),
                        show(text.trim_end(), Shape::Block)
                    );
                }
            }
            ExitCode::from(1)
        }
        Err(Failure::Unchecked(reason)) => {
            if as_json {
                println!("{}", json!({"ok": false, "error": reason}));
            } else {
                eprintln!("verifier: could not check: {}", show(&reason, Shape::Line));
            }
            ExitCode::from(2)
        }
    }
}
