//! Checking entries, in log order, against the policy.
//!
//! Each entry must first be a valid log entry holding a valid event, as
//! the log promised when it admitted it; one that is not is a finding
//! about the log itself, not a policy incident, and stops the run (its
//! evidence bundle could not verify). Every valid entry is then checked
//! against every rule that applies to it: its submitter and kind, the
//! residency of a flow, the review and channel of a release, and the one
//! version per digest rule.
//!
//! Submitters' signatures are not re-verified here: the policy names
//! submitters by key id only. `verifier audit` re-checks the signatures.

use super::super::outcome::Failure;
use super::super::policy::{EventKind, Incident, Policy};
use super::state::PolicyState;
use super::summary::{digest_name, Found, ReleaseStatus};
use crate::event::{check_event, decode_entry};
use crate::merkle::leaf_hash;
use crate::proto::event::Kind;
use crate::proto::{CodeRelease, DataFlow, Location};
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// Checks entries in order, extending the state and collecting this run's
/// incidents and releases.
pub struct Checker<'a> {
    policy: &'a Policy,
    /// The state, extended by every entry checked.
    pub state: PolicyState,
    /// Incidents found in this run, in log order.
    pub found: Vec<Found>,
    /// Releases checked in this run, in log order.
    pub releases: Vec<ReleaseStatus>,
}

impl<'a> Checker<'a> {
    /// Continues from `state`.
    pub fn new(policy: &'a Policy, state: PolicyState) -> Self {
        Self {
            policy,
            state,
            found: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// The index of the next entry to check.
    pub fn size(&self) -> u64 {
        self.state.range.size()
    }

    /// Checks the next entry. A security failure when it is not a valid
    /// entry: the log should never have admitted it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let index = self.size();
        let invalid = |reason: String| {
            Failure::security_with(
                format!("entry {index} is not a valid log entry: {reason}"),
                vec![
                    ("index".into(), index.to_string()),
                    ("entry (base64)".into(), BASE64_STANDARD.encode(bytes)),
                ],
            )
        };
        let entry = decode_entry(bytes).map_err(|e| invalid(e.to_string()))?;
        let signed = entry
            .signed_event
            .expect("decode_entry refuses an entry without a signed event");
        let event = check_event(&signed.event).map_err(|e| invalid(e.to_string()))?;
        let kind = event.kind.expect("check_event requires a kind");

        let mut incidents: Vec<Incident> = self
            .policy
            .check_submitter(&signed.key_id, EventKind::of(&kind))
            .into_iter()
            .collect();
        let summary = match &kind {
            Kind::DataFlow(flow) => {
                incidents.extend(self.policy.check_flow(flow));
                let region = flow.destination.as_ref().map_or("", |d| d.region.as_str());
                self.state.totals.data_flows += 1;
                self.state.totals.count_flow(&flow.data_category, region);
                flow_summary(flow, &signed.key_id)
            }
            Kind::CodeRelease(release) => {
                let review = self.policy.check_release(release);
                let mut broken = review.incidents();
                broken.extend(self.state.history.record(self.policy, index, release));
                let approved = broken.is_empty();
                self.state.totals.releases += 1;
                self.state.totals.releases_approved += u64::from(approved);
                self.releases.push(ReleaseStatus {
                    index,
                    artifact: release.artifact_name.clone(),
                    version: release.version.clone(),
                    digest: digest_name(&release.artifact_sha256),
                    channel: release.release_channel.clone(),
                    reviewers: review.reviewers,
                    approved,
                    reasons: broken.iter().map(Incident::to_string).collect(),
                });
                incidents.extend(broken);
                release_summary(release, &signed.key_id)
            }
        };
        for incident in incidents {
            self.state.totals.count_incident(&incident.rule);
            self.found.push(Found {
                index,
                rule: incident.rule,
                reason: incident.reason,
                event: summary.clone(),
                entry: bytes.to_vec(),
            });
        }
        self.state.totals.entries += 1;
        self.state.range.append(leaf_hash(bytes));
        Ok(())
    }
}

/// A flow in one line.
fn flow_summary(flow: &DataFlow, key_id: &str) -> String {
    let place = |l: &Option<Location>| {
        l.as_ref().map_or_else(
            || "nowhere".to_owned(),
            |l| format!("{}/{}/{}", l.region, l.data_centre, l.organisation),
        )
    };
    format!(
        "data flow {:?} of {} records of {} from {} to {}, purpose {:?}, legal basis {:?}, logged by {key_id}",
        flow.flow_id,
        flow.record_count,
        flow.data_category,
        place(&flow.source),
        place(&flow.destination),
        flow.purpose,
        flow.legal_basis
    )
}

/// A release in one line.
fn release_summary(release: &CodeRelease, key_id: &str) -> String {
    format!(
        "release of {} {} ({}) on {:?} with {} attestations, logged by {key_id}",
        release.artifact_name,
        release.version,
        digest_name(&release.artifact_sha256),
        release.release_channel,
        release.attestations.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode_entry, sign_event};
    use crate::keys::SigningKey;
    use crate::proto::Event;

    fn policy(etl: &SigningKey) -> Policy {
        let reviewer = SigningKey::from_seed("reviewer.example", [5; 32]).unwrap();
        Policy::parse(&format!(
            "[data_residency.eu_user_data]\nregions = [\"IE\"]\n\n\
             [release]\nreviewers = [\"{}\"]\nquorum = 1\nchannels = [\"stable\"]\n\n\
             [submitters]\n\"{}\" = [\"data_flow\"]\n",
            reviewer.verifier_key(),
            etl.key_id()
        ))
        .unwrap()
    }

    fn flow_entry(key: &SigningKey, region: &str) -> Vec<u8> {
        let place = |region: &str| Location {
            system: "db".into(),
            data_centre: "dc".into(),
            region: region.into(),
            organisation: "Example".into(),
        };
        let event = Event {
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            kind: Some(Kind::DataFlow(DataFlow {
                flow_id: "f".into(),
                data_category: "eu_user_data".into(),
                source: Some(place("DE")),
                destination: Some(place(region)),
                purpose: "analytics".into(),
                legal_basis: "consent".into(),
                record_count: 1,
            })),
        };
        encode_entry(
            &sign_event(key, &event),
            prost_types::Timestamp {
                seconds: 1_767_225_601,
                nanos: 0,
            },
        )
    }

    #[test]
    fn every_rule_that_applies_is_checked_and_counted() {
        let etl = SigningKey::from_seed("etl.example", [1; 32]).unwrap();
        let stranger = SigningKey::from_seed("stranger.example", [2; 32]).unwrap();
        let policy = policy(&etl);
        let mut checker = Checker::new(&policy, PolicyState::new(String::new()));
        checker.push(&flow_entry(&etl, "IE")).unwrap();
        checker.push(&flow_entry(&etl, "US")).unwrap();
        checker.push(&flow_entry(&stranger, "US")).unwrap();
        let found: Vec<_> = checker
            .found
            .iter()
            .map(|f| (f.index, f.rule.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (1, "data_residency.eu_user_data"),
                (2, "submitter.unknown"),
                (2, "data_residency.eu_user_data")
            ]
        );
        let totals = &checker.state.totals;
        assert_eq!(totals.entries, 3);
        assert_eq!(totals.flows["eu_user_data"]["US"], 2);
        assert_eq!(totals.incidents(), 3);
        assert!(totals.check(3).is_ok());
        assert_eq!(checker.size(), 3);
    }

    #[test]
    fn an_entry_that_is_not_a_log_entry_is_a_security_finding() {
        let etl = SigningKey::from_seed("etl.example", [1; 32]).unwrap();
        let policy = policy(&etl);
        let mut checker = Checker::new(&policy, PolicyState::new(String::new()));
        let refused = checker.push(b"not an entry").unwrap_err();
        assert!(
            matches!(&refused, Failure::Security(f) if f.summary.starts_with("entry 0 is not a valid log entry")),
            "{refused:?}"
        );
        assert_eq!(checker.size(), 0, "nothing is recorded");
    }
}
