//! What a run found: the incidents and releases of this run, and the
//! counts kept over every run.

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
        count(&mut self.incidents_by_rule, rule);
    }

    /// Counts one flow.
    pub fn count_flow(&mut self, category: &str, region: &str) {
        match self.flows.get_mut(category) {
            Some(regions) => count(regions, region),
            None => {
                let regions = BTreeMap::from([(region.to_owned(), 1)]);
                self.flows.insert(category.to_owned(), regions);
            }
        }
    }

    /// All incidents so far.
    pub fn incidents(&self) -> u64 {
        self.incidents_by_rule.values().sum()
    }
}

/// Adds one to `key`'s count. The key is copied only the first time: the
/// policy check counts every entry, and the keys are nearly always there.
fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
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
    let mut name = String::with_capacity("sha256:".len() + 2 * digest.len());
    name.push_str("sha256:");
    crate::hex::push(&mut name, digest);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_named_by_its_lowercase_hex() {
        let digest: Vec<u8> = (0..32).map(|n| n * 8 + 7).collect();
        assert_eq!(
            digest_name(&digest),
            format!("sha256:{}", crate::hex::encode(&digest))
        );
        assert_eq!(digest_name(&[0x0a, 0xf0]), "sha256:0af0");
    }

    #[test]
    fn counts_start_at_one_and_add_up() {
        let mut totals = Totals::default();
        totals.count_flow("eu_user_data", "IE");
        totals.count_flow("eu_user_data", "IE");
        totals.count_flow("eu_user_data", "US");
        totals.count_flow("telemetry", "IE");
        totals.count_incident("release.quorum");
        totals.count_incident("release.quorum");
        assert_eq!(totals.flows["eu_user_data"]["IE"], 2);
        assert_eq!(totals.flows["eu_user_data"]["US"], 1);
        assert_eq!(totals.flows["telemetry"]["IE"], 1);
        assert_eq!(totals.incidents_by_rule["release.quorum"], 2);
        assert_eq!(totals.incidents(), 2);
    }
}
