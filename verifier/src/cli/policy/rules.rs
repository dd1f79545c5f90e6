//! Evaluating events against a [`Policy`].
//!
//! Every check is pure and deterministic except [`ReleaseHistory`], which
//! carries the one rule that spans entries: an artifact digest released
//! under one version may not be released under another.

use super::{Destinations, EventKind, Exception, Incident, Policy};
use crate::event::review_signing_message;
use crate::proto::{CodeRelease, DataFlow, Location};
use std::collections::{BTreeSet, HashMap};

/// Rule id of a flow whose data category has no residency rule. It lives
/// outside `data_residency.*` so that no category name can clash with it.
pub const UNKNOWN_CATEGORY: &str = "data_category.unknown";
/// Rule id of a release with fewer valid distinct reviewers than the quorum.
pub const QUORUM: &str = "release.quorum";
/// Rule id of an attestation by a key the policy does not list.
pub const UNKNOWN_REVIEWER: &str = "release.unknown_reviewer";
/// Rule id of an attestation, under a listed reviewer's key id, that does
/// not verify over this release's version and digest.
pub const BAD_ATTESTATION: &str = "release.attestation";
/// Rule id of a release on a channel the policy does not allow.
pub const CHANNEL: &str = "release.channel";
/// Rule id of an artifact digest released under a second version.
pub const ONE_VERSION_PER_DIGEST: &str = "release.one_version_per_digest";
/// Rule id of an event signed by a key the policy does not list.
pub const UNKNOWN_SUBMITTER: &str = "submitter.unknown";
/// Rule id of an event of a kind its submitter may not log.
pub const SUBMITTER_EVENT_KIND: &str = "submitter.event_kind";

impl Policy {
    /// Checks a flow's destination against its category's residency rule.
    /// The rule id of a breach is `data_residency.<category>`.
    pub fn check_flow(&self, flow: &DataFlow) -> Vec<Incident> {
        let category = &flow.data_category;
        let Some(rule) = self.residency.get(category) else {
            return vec![Incident::new(
                UNKNOWN_CATEGORY,
                format!("the policy has no data_residency rule for category {category:?}"),
            )];
        };
        let missing = Location::default();
        let to = flow.destination.as_ref().unwrap_or(&missing);
        let Err(refused) = rule.allowed.allows(to) else {
            return Vec::new();
        };
        if rule
            .exceptions
            .iter()
            .any(|e| e.allows(&rule.allowed, flow, to))
        {
            return Vec::new();
        }
        let exceptions = if rule.exceptions.is_empty() {
            "the rule has no exceptions"
        } else {
            "no exception allows it"
        };
        vec![Incident::new(
            format!("data_residency.{category}"),
            format!(
                "{category} to {}/{}/{} for purpose {:?} on legal basis {:?}: {refused}, and {exceptions}",
                to.region, to.data_centre, to.organisation, flow.purpose, flow.legal_basis
            ),
        )]
    }

    /// Checks a release's attestations against the reviewer keys and the
    /// quorum, and its channel against the allowed channels.
    pub fn check_release(&self, release: &CodeRelease) -> ReleaseReview {
        let rules = &self.release;
        let message = review_signing_message(&release.version, &release.artifact_sha256);
        let mut review = ReleaseReview {
            reviewers: Vec::new(),
            quorum: rules.quorum,
            unknown_reviewers: Vec::new(),
            bad_attestations: Vec::new(),
            channel: release.release_channel.clone(),
            channel_allowed: rules.channels.contains(&release.release_channel),
        };
        for attestation in &release.attestations {
            let key_id = &attestation.reviewer_key_id;
            let list = match rules.reviewers.get(key_id) {
                None => &mut review.unknown_reviewers,
                Some(key) if key.verify(&message, &attestation.signature) => &mut review.reviewers,
                Some(_) => &mut review.bad_attestations,
            };
            if !list.contains(key_id) {
                list.push(key_id.clone());
            }
        }
        review
    }

    /// Checks that `key_id` may log events of this kind.
    pub fn check_submitter(&self, key_id: &str, kind: EventKind) -> Option<Incident> {
        let Some(kinds) = self.submitters.get(key_id) else {
            return Some(Incident::new(
                UNKNOWN_SUBMITTER,
                format!("{key_id} is not a submitter in the policy"),
            ));
        };
        if kinds.contains(&kind) {
            return None;
        }
        let allowed: Vec<_> = kinds.iter().map(|k| k.name()).collect();
        Some(Incident::new(
            SUBMITTER_EVENT_KIND,
            format!(
                "{key_id} logged a {} event but may log only {}",
                kind.name(),
                allowed.join(", ")
            ),
        ))
    }
}

impl Destinations {
    /// `Err` names the first dimension the destination breaks.
    fn allows(&self, to: &Location) -> Result<(), String> {
        for (list, value, what) in [
            (&self.regions, &to.region, "region"),
            (&self.data_centres, &to.data_centre, "data centre"),
            (&self.organisations, &to.organisation, "organisation"),
        ] {
            if !permits(list, value) {
                let allowed: Vec<_> = list.iter().flatten().map(String::as_str).collect();
                return Err(format!(
                    "{what} {value:?} is not among {}",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

impl Exception {
    /// Whether the flow meets the exception's conditions and its
    /// destination fits the exception's lists, falling back to the rule's
    /// for the dimensions the exception leaves out.
    fn allows(&self, rule: &Destinations, flow: &DataFlow, to: &Location) -> bool {
        let own = &self.destinations;
        permits(&self.purposes, &flow.purpose)
            && permits(&self.legal_bases, &flow.legal_basis)
            && permits(own.regions.as_ref().or(rule.regions.as_ref()), &to.region)
            && permits(
                own.data_centres.as_ref().or(rule.data_centres.as_ref()),
                &to.data_centre,
            )
            && permits(
                own.organisations.as_ref().or(rule.organisations.as_ref()),
                &to.organisation,
            )
    }
}

/// No list is no constraint.
fn permits<'a>(list: impl Into<Option<&'a BTreeSet<String>>>, value: &str) -> bool {
    list.into().is_none_or(|set| set.contains(value))
}

/// What a release's review came to. Approved only when it raises no
/// incident: a quorum of listed reviewers signed this exact version and
/// digest, no attestation claims a review the policy cannot back, and the
/// channel is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseReview {
    /// Distinct listed reviewers whose attestation verifies, in the order
    /// the release lists them. A reviewer who attested twice counts once.
    pub reviewers: Vec<String>,
    /// How many distinct reviewers the policy requires.
    pub quorum: usize,
    /// Key ids of attestations by keys the policy does not list.
    pub unknown_reviewers: Vec<String>,
    /// Listed reviewers' key ids whose attestation does not verify over
    /// this version and digest: a forgery, or a review of other bytes.
    pub bad_attestations: Vec<String>,
    /// The release channel.
    pub channel: String,
    /// Whether the policy allows that channel.
    pub channel_allowed: bool,
}

impl ReleaseReview {
    /// Whether the release complies with the release rules.
    pub fn approved(&self) -> bool {
        self.incidents().is_empty()
    }

    /// Each rule the release breaks, quorum first.
    pub fn incidents(&self) -> Vec<Incident> {
        let mut incidents = Vec::new();
        if self.reviewers.len() < self.quorum {
            incidents.push(Incident::new(
                QUORUM,
                format!(
                    "{} of the {} distinct reviewers required attested this version and digest",
                    self.reviewers.len(),
                    self.quorum
                ),
            ));
        }
        for key_id in &self.unknown_reviewers {
            incidents.push(Incident::new(
                UNKNOWN_REVIEWER,
                format!("attestation by {key_id}, which is not a reviewer in the policy"),
            ));
        }
        for key_id in &self.bad_attestations {
            incidents.push(Incident::new(
                BAD_ATTESTATION,
                format!("{key_id}'s attestation does not verify over this version and digest"),
            ));
        }
        if !self.channel_allowed {
            incidents.push(Incident::new(
                CHANNEL,
                format!("release channel {:?} is not allowed", self.channel),
            ));
        }
        incidents
    }
}

/// The first version each artifact digest was released under, for the
/// rule that spans entries. Feed it every release in log order.
#[derive(Clone, Debug, Default)]
pub struct ReleaseHistory {
    first: HashMap<Vec<u8>, (String, u64)>,
}

impl ReleaseHistory {
    /// Each digest with the version and log index it was first released
    /// under, sorted by digest: what a resumable check saves between runs.
    pub fn first_releases(&self) -> Vec<(&[u8], &str, u64)> {
        let mut all: Vec<_> = self
            .first
            .iter()
            .map(|(digest, (version, index))| (digest.as_slice(), version.as_str(), *index))
            .collect();
        all.sort_unstable();
        all
    }

    /// Rebuilds a history from what [`first_releases`](Self::first_releases)
    /// gave. A digest given twice keeps its first version.
    pub fn from_first_releases(first: impl IntoIterator<Item = (Vec<u8>, String, u64)>) -> Self {
        let mut history = Self::default();
        for (digest, version, index) in first {
            history.first.entry(digest).or_insert((version, index));
        }
        history
    }

    /// Records the release at log index `index` and reports it if its
    /// digest was first released under another version. Releasing the
    /// same digest and version again (say, on another channel) is fine.
    pub fn record(
        &mut self,
        policy: &Policy,
        index: u64,
        release: &CodeRelease,
    ) -> Option<Incident> {
        if !policy.release.one_version_per_digest {
            return None;
        }
        let (version, first_index) = self
            .first
            .entry(release.artifact_sha256.clone())
            .or_insert_with(|| (release.version.clone(), index));
        if *version == release.version {
            return None;
        }
        let digest = crate::hex::encode(&release.artifact_sha256);
        Some(Incident::new(
            ONE_VERSION_PER_DIGEST,
            format!(
                "sha256:{digest} was released as version {version:?} at entry {first_index} and again as {:?}",
                release.version
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::proto::ReviewerAttestation;

    fn reviewer(name: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(name, [seed; 32]).unwrap()
    }

    fn policy(one_version_per_digest: bool) -> Policy {
        let a = reviewer("reviewer-a.example", 1).verifier_key();
        let b = reviewer("reviewer-b.example", 2).verifier_key();
        Policy::parse(&format!(
            r#"
[data_residency.eu_user_data]
regions = ["EU", "NO", "IE"]
organisations = ["Example GmbH", "Example Inc"]

[[data_residency.eu_user_data.exceptions]]
regions = ["US"]
purposes = ["legal_request"]
legal_bases = ["court_order"]

[data_residency.telemetry]
data_centres = ["dub-1"]

[data_residency.public_content]

[release]
reviewers = ["{a}", "{b}"]
quorum = 2
channels = ["stable", "beta"]
one_version_per_digest = {one_version_per_digest}

[submitters]
"etl.example+0a08733f" = ["data_flow"]
"release.example+e73ccc49" = ["code_release"]
"#
        ))
        .unwrap()
    }

    fn flow(
        category: &str,
        region: &str,
        organisation: &str,
        purpose: &str,
        basis: &str,
    ) -> DataFlow {
        DataFlow {
            flow_id: "f-1".into(),
            data_category: category.into(),
            source: Some(Location {
                system: "db".into(),
                data_centre: "fra-2".into(),
                region: "DE".into(),
                organisation: "Example GmbH".into(),
            }),
            destination: Some(Location {
                system: "warehouse".into(),
                data_centre: "dub-1".into(),
                region: region.into(),
                organisation: organisation.into(),
            }),
            purpose: purpose.into(),
            legal_basis: basis.into(),
            record_count: 1,
        }
    }

    fn rules_of(incidents: &[Incident]) -> Vec<&str> {
        incidents.iter().map(|i| i.rule.as_str()).collect()
    }

    #[test]
    fn flows_to_allowed_destinations_comply() {
        let p = policy(true);
        for region in ["EU", "NO", "IE"] {
            let f = flow(
                "eu_user_data",
                region,
                "Example GmbH",
                "analytics",
                "consent",
            );
            assert_eq!(p.check_flow(&f), vec![]);
        }
        assert_eq!(
            p.check_flow(&flow("public_content", "US", "Anyone", "ads", "consent")),
            vec![]
        );
    }

    #[test]
    fn a_flow_outside_every_list_breaks_its_categorys_rule() {
        let p = policy(true);
        let incidents = p.check_flow(&flow(
            "eu_user_data",
            "US",
            "Example Inc",
            "analytics",
            "consent",
        ));
        assert_eq!(rules_of(&incidents), ["data_residency.eu_user_data"]);
        assert!(
            incidents[0]
                .reason
                .contains(r#"region "US" is not among EU, IE, NO"#),
            "{}",
            incidents[0]
        );
        assert!(incidents[0].reason.contains("no exception allows it"));

        let wrong_org = p.check_flow(&flow(
            "eu_user_data",
            "IE",
            "Other Ltd",
            "analytics",
            "consent",
        ));
        assert_eq!(rules_of(&wrong_org), ["data_residency.eu_user_data"]);
        assert!(wrong_org[0].reason.contains(r#"organisation "Other Ltd""#));

        let mut elsewhere = flow("telemetry", "IE", "Example GmbH", "analytics", "consent");
        elsewhere.destination.as_mut().unwrap().data_centre = "iad-3".into();
        let incidents = p.check_flow(&elsewhere);
        assert_eq!(rules_of(&incidents), ["data_residency.telemetry"]);
        assert!(incidents[0].reason.contains("the rule has no exceptions"));
    }

    #[test]
    fn the_exception_needs_every_condition_and_keeps_the_rules_other_lists() {
        let p = policy(true);
        let allowed = flow(
            "eu_user_data",
            "US",
            "Example Inc",
            "legal_request",
            "court_order",
        );
        assert_eq!(p.check_flow(&allowed), vec![]);
        for (organisation, purpose, basis) in [
            ("Example Inc", "legal_request", "consent"),
            ("Example Inc", "analytics", "court_order"),
            ("Other Corp", "legal_request", "court_order"),
        ] {
            let f = flow("eu_user_data", "US", organisation, purpose, basis);
            assert_eq!(
                rules_of(&p.check_flow(&f)),
                ["data_residency.eu_user_data"],
                "{f:?}"
            );
        }
    }

    #[test]
    fn a_flow_of_an_unknown_category_is_an_incident() {
        let incidents =
            policy(true).check_flow(&flow("us_user_data", "EU", "Example GmbH", "a", "b"));
        assert_eq!(rules_of(&incidents), [UNKNOWN_CATEGORY]);
        assert!(incidents[0].reason.contains("\"us_user_data\""));
    }

    fn attest(key: &SigningKey, version: &str, digest: &[u8]) -> ReviewerAttestation {
        ReviewerAttestation {
            reviewer_key_id: key.key_id(),
            signature: key.sign(&review_signing_message(version, digest)).to_vec(),
        }
    }

    fn release(
        version: &str,
        digest: [u8; 32],
        channel: &str,
        attestations: Vec<ReviewerAttestation>,
    ) -> CodeRelease {
        CodeRelease {
            artifact_name: "app".into(),
            version: version.into(),
            artifact_sha256: digest.to_vec(),
            source_repository: "https://git.example/app".into(),
            source_commit: "abc".into(),
            build_provenance_sha256: vec![9; 32],
            release_channel: channel.into(),
            attestations,
        }
    }

    #[test]
    fn a_release_attested_by_a_quorum_on_an_allowed_channel_is_approved() {
        let (a, b) = (
            reviewer("reviewer-a.example", 1),
            reviewer("reviewer-b.example", 2),
        );
        let r = release(
            "1.0",
            [7; 32],
            "beta",
            vec![attest(&a, "1.0", &[7; 32]), attest(&b, "1.0", &[7; 32])],
        );
        let review = policy(true).check_release(&r);
        assert_eq!(review.reviewers, [a.key_id(), b.key_id()]);
        assert!(review.approved(), "{:?}", review.incidents());
    }

    #[test]
    fn a_duplicated_reviewer_counts_once() {
        let a = reviewer("reviewer-a.example", 1);
        let r = release(
            "1.0",
            [7; 32],
            "stable",
            vec![attest(&a, "1.0", &[7; 32]), attest(&a, "1.0", &[7; 32])],
        );
        let review = policy(true).check_release(&r);
        assert_eq!(review.reviewers, [a.key_id()]);
        assert_eq!(rules_of(&review.incidents()), [QUORUM]);
        assert!(review.incidents()[0].reason.starts_with("1 of the 2"));
        assert!(!review.approved());
    }

    #[test]
    fn an_attestation_by_an_unknown_key_does_not_count_and_is_an_incident() {
        let (a, b) = (
            reviewer("reviewer-a.example", 1),
            reviewer("reviewer-b.example", 2),
        );
        let stranger = reviewer("reviewer-c.example", 3);
        let r = release(
            "1.0",
            [7; 32],
            "stable",
            vec![
                attest(&a, "1.0", &[7; 32]),
                attest(&stranger, "1.0", &[7; 32]),
            ],
        );
        let review = policy(true).check_release(&r);
        assert_eq!(review.unknown_reviewers, [stranger.key_id()]);
        assert_eq!(rules_of(&review.incidents()), [QUORUM, UNKNOWN_REVIEWER]);

        let with_quorum = release(
            "1.0",
            [7; 32],
            "stable",
            vec![
                attest(&a, "1.0", &[7; 32]),
                attest(&b, "1.0", &[7; 32]),
                attest(&stranger, "1.0", &[7; 32]),
            ],
        );
        assert_eq!(
            rules_of(&policy(true).check_release(&with_quorum).incidents()),
            [UNKNOWN_REVIEWER]
        );
    }

    #[test]
    fn an_attestation_over_another_digest_or_version_does_not_verify() {
        let (a, b) = (
            reviewer("reviewer-a.example", 1),
            reviewer("reviewer-b.example", 2),
        );
        let other_digest = release(
            "1.0",
            [7; 32],
            "stable",
            vec![attest(&a, "1.0", &[7; 32]), attest(&b, "1.0", &[8; 32])],
        );
        let review = policy(true).check_release(&other_digest);
        assert_eq!(review.reviewers, [a.key_id()]);
        assert_eq!(review.bad_attestations, [b.key_id()]);
        assert_eq!(rules_of(&review.incidents()), [QUORUM, BAD_ATTESTATION]);

        let other_version = release(
            "1.0",
            [7; 32],
            "stable",
            vec![attest(&a, "1.0", &[7; 32]), attest(&b, "1.1", &[7; 32])],
        );
        assert_eq!(
            policy(true).check_release(&other_version).bad_attestations,
            [b.key_id()]
        );
    }

    #[test]
    fn a_release_on_another_channel_is_an_incident() {
        let (a, b) = (
            reviewer("reviewer-a.example", 1),
            reviewer("reviewer-b.example", 2),
        );
        let r = release(
            "1.0",
            [7; 32],
            "nightly",
            vec![attest(&a, "1.0", &[7; 32]), attest(&b, "1.0", &[7; 32])],
        );
        let review = policy(true).check_release(&r);
        assert!(!review.channel_allowed);
        assert_eq!(rules_of(&review.incidents()), [CHANNEL]);
        assert!(review.incidents()[0].reason.contains("\"nightly\""));
    }

    #[test]
    fn an_unreviewed_release_misses_the_quorum() {
        let review = policy(true).check_release(&release("1.0", [7; 32], "stable", vec![]));
        assert_eq!(rules_of(&review.incidents()), [QUORUM]);
        assert!(review.incidents()[0].reason.starts_with("0 of the 2"));
    }

    #[test]
    fn one_digest_may_not_be_released_under_two_versions() {
        let p = policy(true);
        let mut history = ReleaseHistory::default();
        assert_eq!(
            history.record(&p, 3, &release("1.0", [7; 32], "beta", vec![])),
            None
        );
        assert_eq!(
            history.record(&p, 4, &release("1.0", [7; 32], "stable", vec![])),
            None
        );
        assert_eq!(
            history.record(&p, 5, &release("1.1", [8; 32], "stable", vec![])),
            None
        );
        let incident = history
            .record(&p, 9, &release("2.0", [7; 32], "stable", vec![]))
            .unwrap();
        assert_eq!(incident.rule, ONE_VERSION_PER_DIGEST);
        assert!(incident
            .reason
            .contains(&format!("sha256:{}", "07".repeat(32))));
        assert!(
            incident
                .reason
                .contains(r#"version "1.0" at entry 3 and again as "2.0""#),
            "{incident}"
        );
    }

    #[test]
    fn the_digest_rule_can_be_turned_off() {
        let p = policy(false);
        let mut history = ReleaseHistory::default();
        assert_eq!(
            history.record(&p, 0, &release("1.0", [7; 32], "beta", vec![])),
            None
        );
        assert_eq!(
            history.record(&p, 1, &release("2.0", [7; 32], "beta", vec![])),
            None
        );
    }

    #[test]
    fn submitters_may_log_only_their_listed_kinds() {
        let p = policy(true);
        assert_eq!(
            p.check_submitter("etl.example+0a08733f", EventKind::DataFlow),
            None
        );
        assert_eq!(
            p.check_submitter("release.example+e73ccc49", EventKind::CodeRelease),
            None
        );
        let wrong = p
            .check_submitter("etl.example+0a08733f", EventKind::CodeRelease)
            .unwrap();
        assert_eq!(wrong.rule, SUBMITTER_EVENT_KIND);
        assert_eq!(
            wrong.reason,
            "etl.example+0a08733f logged a code_release event but may log only data_flow"
        );
        let unknown = p
            .check_submitter("intruder.example+00000000", EventKind::DataFlow)
            .unwrap();
        assert_eq!(unknown.rule, UNKNOWN_SUBMITTER);
    }
}
