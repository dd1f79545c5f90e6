//! The run's report as data: what `report.json` holds, and what
//! `report.html` shows to a person.

use super::summary::{ReleaseStatus, Totals};
use serde::Serialize;

/// Everything a run reports.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The log's origin.
    pub origin: String,
    /// The checkpoint every entry and bundle was checked against.
    pub checkpoint: CheckpointInfo,
    /// The SHA-256 of the policy file, hex.
    pub policy_sha256: String,
    /// Which entries were checked.
    pub entries_checked: Checked,
    /// This run's incidents, in log order.
    pub incidents: Vec<IncidentInfo>,
    /// Counts over every run, and this run's releases.
    pub summary: Summary,
}

/// The checkpoint, as served.
#[derive(Debug, Serialize)]
pub struct CheckpointInfo {
    /// The tree size.
    pub size: u64,
    /// The root hash, base64.
    pub root: String,
    /// The signed note, verbatim, with any cosignatures.
    pub note: String,
}

/// The entries checked.
#[derive(Debug, Serialize)]
pub struct Checked {
    /// The first index checked in this run.
    pub from: u64,
    /// How many were checked in this run.
    pub this_run: u64,
    /// How many have been checked over every run.
    pub total: u64,
}

/// One incident.
#[derive(Debug, Serialize)]
pub struct IncidentInfo {
    /// The entry's index.
    pub index: u64,
    /// The rule id.
    pub rule: String,
    /// Why the entry broke it.
    pub reason: String,
    /// The event, in one line.
    pub event: String,
    /// The evidence bundle, relative to the report's directory.
    pub bundle: String,
}

/// The summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Counts over every run.
    pub totals: Totals,
    /// The incidents of this run, per rule.
    pub incidents_this_run_by_rule: std::collections::BTreeMap<String, u64>,
    /// The releases checked in this run, with their review status.
    pub releases_this_run: Vec<ReleaseStatus>,
}

impl RunReport {
    /// `report.json`'s bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("the report serialises");
        json.push(b'\n');
        json
    }
}
