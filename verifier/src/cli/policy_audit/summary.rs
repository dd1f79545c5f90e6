//! What a run found: the incidents and releases of this run, and the
//! counts kept over every run.

use super::state::hex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counts over every entry checked so far, in this run and earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Entries checked.
    pub entries: u64,
    /// Of which data flows.
    pub data_flows: u64,
    /// Of which code releases.
    pub releases: u64,
    /// Releases that broke no release rule.
    pub releases_approved: u64,
    /// Incidents per rule id.
    pub incidents_by_rule: BTreeMap<String, u64>,
    /// Flows per data category, then per destination region.
    pub flows: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Totals {
    /// Refuses counts that cannot come from `size` checked entries.
    pub fn check(&self, size: u64) -> Result<(), String> {
        let flows = self
            .flows
            .values()
            .flat_map(BTreeMap::values)
            .try_fold(0u64, |a, &b| a.checked_add(b));
        let adds_up = self.entries == size
            && self.data_flows.checked_add(self.releases) == Some(size)
            && self.releases_approved <= self.releases
            && flows == Some(self.data_flows);
        if adds_up {
            Ok(())
        } else {
            Err(format!("the counts do not add up to {size} entries"))
        }
    }

    /// Counts one incident.
    pub fn count_incident(&mut self, rule: &str) {
        *self.incidents_by_rule.entry(rule.to_owned()).or_default() += 1;
    }

    /// Counts one flow.
    pub fn count_flow(&mut self, category: &str, region: &str) {
        *self
            .flows
            .entry(category.to_owned())
            .or_default()
            .entry(region.to_owned())
            .or_default() += 1;
    }

    /// All incidents so far.
    pub fn incidents(&self) -> u64 {
        self.incidents_by_rule.values().sum()
    }
}

/// One broken rule at one entry, found in this run.
#[derive(Debug, Clone)]
pub struct Found {
    /// The entry's index.
    pub index: u64,
    /// The rule id.
    pub rule: String,
    /// Why the entry broke it.
    pub reason: String,
    /// The event, in one line.
    pub event: String,
    /// The entry's bytes, for its evidence bundle.
    pub entry: Vec<u8>,
}

/// A release checked in this run and what its review came to.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseStatus {
    /// The entry's index.
    pub index: u64,
    /// The artifact's name.
    pub artifact: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of the artifact.
    pub digest: String,
    /// The release channel.
    pub channel: String,
    /// The listed reviewers whose attestations verify.
    pub reviewers: Vec<String>,
    /// Whether it broke no release rule.
    pub approved: bool,
    /// Each release rule it broke, `rule: reason`.
    pub reasons: Vec<String>,
}

/// `sha256:<hex>`, as reports and the policy's reasons name digests.
pub fn digest_name(digest: &[u8]) -> String {
    format!("sha256:{}", hex(digest))
}
