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
use crate::merkle::{leaf_hash, Hash};
use crate::proto::event::Kind;
use crate::proto::{CodeRelease, DataFlow, Location};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

/// Checks entries in order, extending the state and collecting this run's
/// incidents and releases.
pub struct Checker<'a> {
    policy: &'a Policy,
    helpers: Helpers,
    /// The state, extended by every entry checked.
    pub state: PolicyState,
    /// Incidents found in this run, in log order.
    pub found: Vec<Found>,
    /// Releases checked in this run, in log order.
    pub releases: Vec<ReleaseStatus>,
}

impl<'a> Checker<'a> {
    /// Continues from `state`, with a helper thread for every further core.
    pub fn new(policy: &'a Policy, state: PolicyState) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            policy,
            helpers: Helpers::start(policy, cores - 1),
            state,
            found: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// The index of the next entry to check.
    pub fn size(&self) -> u64 {
        self.state.range.size()
    }

    /// Checks the next `entries` on every core, then records them in log
    /// order: the signature checks of release reviews are most of the
    /// work, and only the rule that spans entries, the counts and the
    /// compact range depend on the order. The outcome is the one of
    /// checking them one by one. A security failure at the first entry
    /// that is not a valid entry (the log should never have admitted it),
    /// after recording the entries before it.
    pub fn push_all(&mut self, entries: &[&[u8]]) -> Result<(), Failure> {
        let first = self.size();
        let chunk = entries.len().div_ceil(self.helpers.len() + 1).max(1);
        let mut parts = entries.chunks(chunk).zip((first..).step_by(chunk));
        let Some((mine, start)) = parts.next() else {
            return Ok(());
        };
        let sent = self.helpers.send(parts);
        let mut checked = vec![check_part(self.policy, start, mine.iter().copied())];
        checked.extend(self.helpers.receive(sent));
        for (bytes, result) in entries.iter().zip(checked.into_iter().flatten()) {
            self.record(bytes, result?);
        }
        Ok(())
    }

    /// Adds one checked entry, the next in log order, with what depends
    /// on the entries before it: the one version per digest rule.
    fn record(&mut self, bytes: &[u8], checked: Checked) {
        let index = self.size();
        let Checked {
            leaf,
            mut found,
            event,
        } = checked;
        let totals = &mut self.state.totals;
        match event {
            Reviewed::Flow { category, region } => {
                totals.data_flows += 1;
                totals.count_flow(&category, &region);
            }
            Reviewed::Release {
                release,
                key_id,
                digest,
                reviewers,
                mut reasons,
                summary,
            } => {
                if let Some(repeat) = self.state.history.record(self.policy, index, &release) {
                    reasons.push(repeat.to_string());
                    let summary =
                        summary.unwrap_or_else(|| release_summary(&release, &digest, &key_id));
                    found.push(Found {
                        index,
                        rule: repeat.rule,
                        reason: repeat.reason,
                        event: summary,
                        entry: bytes.to_vec(),
                    });
                }
                let approved = reasons.is_empty();
                totals.releases += 1;
                totals.releases_approved += u64::from(approved);
                self.releases.push(ReleaseStatus {
                    index,
                    artifact: release.artifact_name,
                    version: release.version,
                    digest,
                    channel: release.release_channel,
                    reviewers,
                    approved,
                    reasons,
                });
            }
        }
        for incident in &found {
            totals.count_incident(&incident.rule);
        }
        self.found.append(&mut found);
        totals.entries += 1;
        self.state.range.append(leaf);
    }
}

/// Checks consecutive entries, the first of which is at `start`.
fn check_part<'e>(
    policy: &Policy,
    start: u64,
    entries: impl Iterator<Item = &'e [u8]>,
) -> Vec<Result<Checked, Failure>> {
    (start..)
        .zip(entries)
        .map(|(index, bytes)| check_entry(policy, index, bytes))
        .collect()
}

/// Threads that check parts of each batch of entries while the caller
/// checks the first, kept for the checker's life: starting a thread for
/// every bundle took longer than checking half of it.
struct Helpers {
    jobs: Vec<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
}

/// Consecutive entries for a helper, copied into one buffer: helpers
/// outlive the caller's borrowed entries.
struct Job {
    part: usize,
    start: u64,
    bytes: Vec<u8>,
    lengths: Vec<usize>,
}

/// A job's part number and its entries' results, or the helper's panic.
type Done = (usize, std::thread::Result<Vec<Result<Checked, Failure>>>);

impl Helpers {
    /// Starts `count` helpers, each with its own copy of the policy. They
    /// stop when the checker, and so their job queues, are dropped.
    fn start(policy: &Policy, count: usize) -> Self {
        let (report, done) = mpsc::channel();
        let jobs = (0..count)
            .map(|_| {
                let (send, jobs) = mpsc::channel::<Job>();
                let (policy, report) = (policy.clone(), report.clone());
                std::thread::spawn(move || {
                    for job in jobs {
                        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            let entries = job.lengths.iter().scan(0, |at, &len| {
                                *at += len;
                                Some(&job.bytes[*at - len..*at])
                            });
                            check_part(&policy, job.start, entries)
                        }));
                        if report.send((job.part, checked)).is_err() {
                            return;
                        }
                    }
                });
                send
            })
            .collect();
        Self { jobs, done }
    }

    fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Hands each part, with the index of its first entry, to a helper
    /// of its own; there are never more parts than helpers. Returns how
    /// many were sent.
    fn send<'e>(&self, parts: impl Iterator<Item = (&'e [&'e [u8]], u64)>) -> usize {
        let mut sent = 0;
        for ((part, start), helper) in parts.zip(&self.jobs) {
            sent += 1;
            let job = Job {
                part: sent,
                start,
                bytes: part.concat(),
                lengths: part.iter().map(|e| e.len()).collect(),
            };
            helper
                .send(job)
                .expect("a helper stops only when the checker is dropped");
        }
        sent
    }

    /// The results of the `sent` parts, in order; a helper's panic is
    /// the caller's.
    fn receive(&self, sent: usize) -> Vec<Vec<Result<Checked, Failure>>> {
        let mut parts: Vec<_> = (0..sent)
            .map(|_| {
                let (part, checked) = self
                    .done
                    .recv()
                    .expect("a helper stops only when the checker is dropped");
                (
                    part,
                    checked.unwrap_or_else(|p| std::panic::resume_unwind(p)),
                )
            })
            .collect();
        parts.sort_unstable_by_key(|(part, _)| *part);
        parts.into_iter().map(|(_, checked)| checked).collect()
    }
}

/// What one valid entry comes to on its own, before the rule that spans
/// entries: the part of the check that can run on any core.
struct Checked {
    leaf: Hash,
    /// The incidents the entry raises on its own, ready to report: the
    /// submitter rule's first, then its event's.
    found: Vec<Found>,
    event: Reviewed,
}

/// What the rest of the check needs of an event.
enum Reviewed {
    /// A flow, for the counts.
    Flow { category: String, region: String },
    /// A release, for the one version per digest rule and its status.
    Release {
        release: Box<CodeRelease>,
        key_id: String,
        /// `sha256:<hex>` of the artifact.
        digest: String,
        /// The listed reviewers whose attestations verify.
        reviewers: Vec<String>,
        /// Each release rule it broke, `rule: reason`.
        reasons: Vec<String>,
        /// The release in one line, when it already raised an incident.
        summary: Option<String>,
    },
}

/// Checks the entry at `index` against every rule that needs only this
/// entry. A security failure when it is not a valid entry.
fn check_entry(policy: &Policy, index: u64, bytes: &[u8]) -> Result<Checked, Failure> {
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
    let key_id = signed.key_id;
    let submitter = policy.check_submitter(&key_id, EventKind::of(&kind));
    // Only an entry that broke a rule is put in one line.
    let report = move |broken: Vec<Incident>, summary: &dyn Fn() -> String| {
        let incidents: Vec<Incident> = submitter.into_iter().chain(broken).collect();
        if incidents.is_empty() {
            return (Vec::new(), None);
        }
        let event = summary();
        let found = incidents
            .into_iter()
            .map(|incident| Found {
                index,
                rule: incident.rule,
                reason: incident.reason,
                event: event.clone(),
                entry: bytes.to_vec(),
            })
            .collect();
        (found, Some(event))
    };
    let (found, event) = match kind {
        Kind::DataFlow(mut flow) => {
            let (found, _) = report(policy.check_flow(&flow), &|| flow_summary(&flow, &key_id));
            let region = flow
                .destination
                .take()
                .map(|d| d.region)
                .unwrap_or_default();
            let category = std::mem::take(&mut flow.data_category);
            (found, Reviewed::Flow { category, region })
        }
        Kind::CodeRelease(release) => {
            let review = policy.check_release(&release);
            let digest = digest_name(&release.artifact_sha256);
            let broken = review.incidents();
            let reasons = broken.iter().map(Incident::to_string).collect();
            let (found, summary) = report(broken, &|| release_summary(&release, &digest, &key_id));
            let event = Reviewed::Release {
                release: Box::new(release),
                key_id,
                digest,
                reviewers: review.reviewers,
                reasons,
                summary,
            };
            (found, event)
        }
    };
    Ok(Checked {
        leaf: leaf_hash(bytes),
        found,
        event,
    })
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

/// A release in one line; `digest` is its artifact's `sha256:<hex>`.
fn release_summary(release: &CodeRelease, digest: &str, key_id: &str) -> String {
    format!(
        "release of {} {} ({digest}) on {:?} with {} attestations, logged by {key_id}",
        release.artifact_name,
        release.version,
        release.release_channel,
        release.attestations.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode_entry, review_signing_message, sign_event};
    use crate::keys::SigningKey;
    use crate::proto::{Event, ReviewerAttestation};

    fn etl() -> SigningKey {
        SigningKey::from_seed("etl.example", [1; 32]).unwrap()
    }

    fn stranger() -> SigningKey {
        SigningKey::from_seed("stranger.example", [2; 32]).unwrap()
    }

    fn releaser() -> SigningKey {
        SigningKey::from_seed("release.example", [3; 32]).unwrap()
    }

    fn reviewer() -> SigningKey {
        SigningKey::from_seed("reviewer.example", [5; 32]).unwrap()
    }

    fn policy() -> Policy {
        Policy::parse(&format!(
            "[data_residency.eu_user_data]\nregions = [\"IE\"]\n\n\
             [release]\nreviewers = [\"{}\"]\nquorum = 1\nchannels = [\"stable\"]\n\n\
             [submitters]\n\"{}\" = [\"data_flow\"]\n\"{}\" = [\"code_release\"]\n",
            reviewer().verifier_key(),
            etl().key_id(),
            releaser().key_id()
        ))
        .unwrap()
    }

    fn entry(key: &SigningKey, kind: Kind) -> Vec<u8> {
        let event = Event {
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            kind: Some(kind),
        };
        encode_entry(
            &sign_event(key, &event),
            prost_types::Timestamp {
                seconds: 1_767_225_601,
                nanos: 0,
            },
        )
    }

    fn flow(category: &str, region: &str) -> Kind {
        let place = |region: &str| Location {
            system: "db".into(),
            data_centre: "dc".into(),
            region: region.into(),
            organisation: "Example".into(),
        };
        Kind::DataFlow(DataFlow {
            flow_id: "f".into(),
            data_category: category.into(),
            source: Some(place("DE")),
            destination: Some(place(region)),
            purpose: "analytics".into(),
            legal_basis: "consent".into(),
            record_count: 1,
        })
    }

    /// A release of `digest` as `version` on `channel`, attested by each
    /// of `reviewers` over `attested` (its own version when it is `None`).
    fn release(
        digest: u8,
        version: &str,
        channel: &str,
        reviewers: &[&SigningKey],
        attested: Option<&str>,
    ) -> Kind {
        let artifact_sha256 = vec![digest; 32];
        let message = review_signing_message(attested.unwrap_or(version), &artifact_sha256);
        Kind::CodeRelease(CodeRelease {
            artifact_name: "app".into(),
            version: version.into(),
            artifact_sha256,
            source_repository: "git.example/app".into(),
            source_commit: "0".repeat(40),
            build_provenance_sha256: vec![9; 32],
            release_channel: channel.into(),
            attestations: reviewers
                .iter()
                .map(|key| ReviewerAttestation {
                    reviewer_key_id: key.key_id(),
                    signature: key.sign(&message).to_vec(),
                })
                .collect(),
        })
    }

    /// Round `n` of a mix that breaks every rule, and complies in between.
    /// Each round releases new digests, then one of the round before
    /// under another version.
    fn round(n: u8) -> Vec<Vec<u8>> {
        let (etl, releaser, reviewer) = (etl(), releaser(), reviewer());
        let version = format!("1.{n}");
        vec![
            entry(&etl, flow("eu_user_data", "IE")),
            entry(&etl, flow("eu_user_data", "US")),
            entry(&etl, flow("unlisted_data", "IE")),
            entry(&stranger(), flow("eu_user_data", "IE")),
            entry(&etl, release(n, &version, "stable", &[&reviewer], None)),
            entry(&releaser, flow("eu_user_data", "IE")),
            entry(
                &releaser,
                release(n, &version, "stable", &[&reviewer], None),
            ),
            entry(&releaser, release(n, &version, "beta", &[&reviewer], None)),
            entry(&releaser, release(n, &version, "stable", &[], None)),
            entry(&releaser, release(n, &version, "stable", &[&etl], None)),
            entry(
                &releaser,
                release(n, &version, "stable", &[&reviewer], Some("9.9")),
            ),
            entry(
                &releaser,
                release(n.wrapping_sub(1), "0.0", "stable", &[&reviewer], None),
            ),
        ]
    }

    /// 60 rounds: 720 entries, more than two full bundles.
    fn mix() -> Vec<Vec<u8>> {
        (0..60).flat_map(round).collect()
    }

    /// Everything a run's outcome is made of, comparable.
    fn outcome(checker: &Checker<'_>) -> String {
        let state = &checker.state;
        let found: Vec<_> = checker
            .found
            .iter()
            .map(|f| (f.index, &f.rule, &f.reason, &f.event, &f.entry))
            .collect();
        format!(
            "size {} root {} peaks {:?}\nhistory {:?}\ntotals {:?}\nfound {found:?}\nreleases {}",
            state.range.size(),
            state.range.root(),
            state.range.peaks(),
            state.history.first_releases(),
            state.totals,
            serde_json::to_string(&checker.releases).unwrap()
        )
    }

    /// Checks `entries` one at a time, then in bundles of 256 on every
    /// core, and returns each way's checker and result.
    fn both_ways<'p>(
        policy: &'p Policy,
        entries: &[&[u8]],
    ) -> [(Checker<'p>, Result<(), Failure>); 2] {
        let new = || Checker::new(policy, PolicyState::new(String::new()));
        let mut one_by_one = new();
        let sequential = entries
            .iter()
            .try_for_each(|entry| one_by_one.push_all(&[entry]));
        let mut bundled = new();
        let parallel = entries
            .chunks(256)
            .try_for_each(|bundle| bundled.push_all(bundle));
        [(one_by_one, sequential), (bundled, parallel)]
    }

    #[test]
    fn checking_on_every_core_changes_nothing() {
        let policy = policy();
        let mix = mix();
        let entries: Vec<&[u8]> = mix.iter().map(Vec::as_slice).collect();
        let [(sequential, seq_result), (parallel, par_result)] = both_ways(&policy, &entries);
        assert_eq!(seq_result, Ok(()));
        assert_eq!(par_result, Ok(()));
        assert_eq!(outcome(&parallel), outcome(&sequential));

        let mut whole = Checker::new(&policy, PolicyState::new(String::new()));
        whole.push_all(&entries).unwrap();
        assert_eq!(outcome(&whole), outcome(&sequential), "one call for all");

        let rules: Vec<_> = sequential.state.totals.incidents_by_rule.keys().collect();
        assert_eq!(
            rules,
            [
                "data_category.unknown",
                "data_residency.eu_user_data",
                "release.attestation",
                "release.channel",
                "release.one_version_per_digest",
                "release.quorum",
                "release.unknown_reviewer",
                "submitter.event_kind",
                "submitter.unknown",
            ],
            "the mix breaks every rule"
        );
        let approved = sequential.releases.iter().filter(|r| r.approved).count();
        // Two per round (one by a submitter who may not log releases,
        // which is no release rule), and the first round's release of a
        // digest under "0.0" is its first.
        assert_eq!(approved, 121);
        assert_eq!(sequential.size(), 720);
        assert!(sequential.state.totals.check(720).is_ok());
    }

    #[test]
    fn the_first_invalid_entry_stops_the_check_at_its_index_either_way() {
        let policy = policy();
        let mix = mix();
        let mut entries: Vec<&[u8]> = mix.iter().map(Vec::as_slice).collect();
        let bad: &[u8] = b"not an entry";
        entries.insert(300, bad);
        entries.insert(400, b"not one either");
        let [(sequential, seq_result), (parallel, par_result)] = both_ways(&policy, &entries);

        let expected = Failure::security_with(
            format!(
                "entry 300 is not a valid log entry: {}",
                decode_entry(bad).unwrap_err()
            ),
            vec![
                ("index".into(), "300".into()),
                ("entry (base64)".into(), BASE64_STANDARD.encode(bad)),
            ],
        );
        assert_eq!(seq_result, Err(expected.clone()));
        assert_eq!(par_result, Err(expected));
        assert_eq!(sequential.size(), 300, "the entries before it are recorded");
        assert_eq!(outcome(&parallel), outcome(&sequential));
        assert!(parallel.found.iter().all(|f| f.index < 300));
    }

    #[test]
    fn every_rule_that_applies_is_checked_and_counted() {
        let (etl, stranger) = (etl(), stranger());
        let policy = policy();
        let mut checker = Checker::new(&policy, PolicyState::new(String::new()));
        let entries = [
            entry(&etl, flow("eu_user_data", "IE")),
            entry(&etl, flow("eu_user_data", "US")),
            entry(&stranger, flow("eu_user_data", "US")),
        ];
        let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        checker.push_all(&entries).unwrap();
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
        assert!(checker.found[2]
            .event
            .contains("logged by stranger.example"));
        let totals = &checker.state.totals;
        assert_eq!(totals.entries, 3);
        assert_eq!(totals.flows["eu_user_data"]["US"], 2);
        assert_eq!(totals.incidents(), 3);
        assert!(totals.check(3).is_ok());
        assert_eq!(checker.size(), 3);
    }

    #[test]
    fn a_second_version_of_a_digest_is_an_incident_and_not_approved() {
        let (releaser, reviewer) = (releaser(), reviewer());
        let policy = policy();
        let mut checker = Checker::new(&policy, PolicyState::new(String::new()));
        let first = entry(&releaser, release(7, "1.0", "stable", &[&reviewer], None));
        let again = entry(&releaser, release(7, "2.0", "stable", &[&reviewer], None));
        checker.push_all(&[&first, &again]).unwrap();
        assert!(checker.releases[0].approved);
        assert!(!checker.releases[1].approved);
        assert_eq!(checker.found.len(), 1);
        let found = &checker.found[0];
        assert_eq!(
            (found.index, found.rule.as_str()),
            (1, "release.one_version_per_digest")
        );
        assert!(
            found.event.starts_with(&format!(
                "release of app 2.0 ({}) on \"stable\"",
                digest_name(&[7; 32])
            )),
            "{}",
            found.event
        );
        assert_eq!(found.entry, again);
    }

    #[test]
    fn an_entry_that_is_not_a_log_entry_is_a_security_finding() {
        let policy = policy();
        let mut checker = Checker::new(&policy, PolicyState::new(String::new()));
        let refused = checker.push_all(&[b"not an entry"]).unwrap_err();
        assert!(
            matches!(&refused, Failure::Security(f) if f.summary.starts_with("entry 0 is not a valid log entry")),
            "{refused:?}"
        );
        assert_eq!(checker.size(), 0, "nothing is recorded");
    }
}
