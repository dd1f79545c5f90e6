//! The policy file's TOML form, and its validation into a [`Policy`].
//!
//! Deserialisation keeps every value's span, so a refused value is
//! reported on its own line. Serde refuses unknown keys and wrong types;
//! [`Validator`] then refuses what parses but cannot be meant: empty lists,
//! duplicates, malformed regions and keys, an unreachable quorum, and
//! exceptions that would allow nothing.

use super::{Destinations, EventKind, Exception, Policy, PolicyError, ReleaseRules, ResidencyRule};
use crate::event::MAX_TEXT_LEN;
use crate::keys::{is_key_id, KeyRing, VerifierKey};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

type List = Spanned<Vec<Spanned<String>>>;
/// Submitter key id to the kinds of event it may log.
type RawSubmitters = Spanned<BTreeMap<Spanned<String>, Spanned<Vec<Spanned<EventKind>>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// Missing means no category is known, so every flow is an incident:
    /// the safe direction, and what a release-only log wants.
    #[serde(default)]
    data_residency: BTreeMap<Spanned<String>, RawResidency>,
    release: Spanned<RawRelease>,
    submitters: RawSubmitters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResidency {
    regions: Option<List>,
    data_centres: Option<List>,
    organisations: Option<List>,
    #[serde(default)]
    exceptions: Vec<Spanned<RawException>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    regions: Option<List>,
    data_centres: Option<List>,
    organisations: Option<List>,
    purposes: Option<List>,
    legal_bases: Option<List>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    reviewers: List,
    quorum: Spanned<i64>,
    channels: List,
    #[serde(default = "one_version_per_digest_default")]
    one_version_per_digest: bool,
}

/// On unless the policy says otherwise: re-releasing the same bytes as
/// another version is how a reviewed build gets passed off as a new one.
fn one_version_per_digest_default() -> bool {
    true
}

/// Parses and validates `text`; see [`Policy::parse`].
pub(super) fn parse(text: &str) -> Result<Policy, PolicyError> {
    let v = Validator { text };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let reason = e.message().trim().to_owned();
        v.error(e.span().unwrap_or(0..0), reason)
    })?;
    let residency = raw
        .data_residency
        .into_iter()
        .map(|(category, rule)| {
            v.text(&category, "data category")?;
            Ok((category.into_inner(), v.residency(rule)?))
        })
        .collect::<Result<_, PolicyError>>()?;
    Ok(Policy {
        residency,
        release: v.release(raw.release)?,
        submitters: v.submitters(raw.submitters)?,
    })
}

/// Turns spans into line numbers for the errors it reports.
struct Validator<'a> {
    text: &'a str,
}

impl Validator<'_> {
    fn error(&self, span: Range<usize>, reason: impl Into<String>) -> PolicyError {
        let start = span.start.min(self.text.len());
        PolicyError {
            line: self.text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            reason: reason.into(),
        }
    }

    fn residency(&self, raw: RawResidency) -> Result<ResidencyRule, PolicyError> {
        let allowed = self.destinations(raw.regions, raw.data_centres, raw.organisations)?;
        let exceptions = raw
            .exceptions
            .into_iter()
            .map(|e| self.exception(e, &allowed))
            .collect::<Result<_, _>>()?;
        Ok(ResidencyRule {
            allowed,
            exceptions,
        })
    }

    fn destinations(
        &self,
        regions: Option<List>,
        data_centres: Option<List>,
        organisations: Option<List>,
    ) -> Result<Destinations, PolicyError> {
        Ok(Destinations {
            regions: regions.map(|l| self.regions(l)).transpose()?,
            data_centres: data_centres
                .map(|l| self.names(l, "data centre"))
                .transpose()?,
            organisations: organisations
                .map(|l| self.names(l, "organisation"))
                .transpose()?,
        })
    }

    fn exception(
        &self,
        raw: Spanned<RawException>,
        rule: &Destinations,
    ) -> Result<Exception, PolicyError> {
        let span = raw.span();
        let raw = raw.into_inner();
        for (list, constrained, name) in [
            (&raw.regions, rule.regions.is_some(), "regions"),
            (
                &raw.data_centres,
                rule.data_centres.is_some(),
                "data_centres",
            ),
            (
                &raw.organisations,
                rule.organisations.is_some(),
                "organisations",
            ),
        ] {
            if let Some(list) = list {
                if !constrained {
                    return Err(self.error(
                        list.span(),
                        format!(
                            "the rule allows any {name}, so an exception on {name} allows nothing more"
                        ),
                    ));
                }
            }
        }
        if raw.regions.is_none() && raw.data_centres.is_none() && raw.organisations.is_none() {
            return Err(self.error(
                span,
                "an exception must name the regions, data_centres or organisations it allows",
            ));
        }
        if raw.purposes.is_none() && raw.legal_bases.is_none() {
            return Err(self.error(
                span,
                "an exception must require purposes or legal_bases; \
                 to allow a destination unconditionally, add it to the rule",
            ));
        }
        Ok(Exception {
            destinations: self.destinations(raw.regions, raw.data_centres, raw.organisations)?,
            purposes: raw.purposes.map(|l| self.names(l, "purpose")).transpose()?,
            legal_bases: raw
                .legal_bases
                .map(|l| self.names(l, "legal basis"))
                .transpose()?,
        })
    }

    fn release(&self, raw: Spanned<RawRelease>) -> Result<ReleaseRules, PolicyError> {
        let raw = raw.into_inner();
        let mut reviewers = KeyRing::default();
        self.non_empty(&raw.reviewers, "reviewers")?;
        for text in raw.reviewers.get_ref() {
            let key = VerifierKey::parse(text.get_ref())
                .map_err(|e| self.error(text.span(), format!("reviewer key: {e}")))?;
            if reviewers.get(&key.key_id()).is_some() {
                return Err(self.error(
                    text.span(),
                    format!("reviewer {} is listed twice", key.key_id()),
                ));
            }
            reviewers.insert(key);
        }
        let quorum = *raw.quorum.get_ref();
        if quorum < 1 {
            return Err(self.error(raw.quorum.span(), "quorum must be at least 1"));
        }
        let quorum = usize::try_from(quorum).unwrap_or(usize::MAX);
        if quorum > reviewers.len() {
            return Err(self.error(
                raw.quorum.span(),
                format!(
                    "quorum {quorum} is more than the {} reviewers listed",
                    reviewers.len()
                ),
            ));
        }
        Ok(ReleaseRules {
            reviewers,
            quorum,
            channels: self.names(raw.channels, "release channel")?,
            one_version_per_digest: raw.one_version_per_digest,
        })
    }

    fn submitters(
        &self,
        raw: RawSubmitters,
    ) -> Result<BTreeMap<String, BTreeSet<EventKind>>, PolicyError> {
        if raw.get_ref().is_empty() {
            return Err(self.error(
                raw.span(),
                "submitters is empty, so no event could ever comply: list each submitter key id",
            ));
        }
        let mut submitters = BTreeMap::new();
        for (key_id, kinds) in raw.into_inner() {
            if !is_key_id(key_id.get_ref()) {
                return Err(self.error(
                    key_id.span(),
                    format!(
                        "submitter {:?} is not a key id <name>+<8 hex digits>",
                        key_id.get_ref()
                    ),
                ));
            }
            if kinds.get_ref().is_empty() {
                return Err(self.error(
                    kinds.span(),
                    format!(
                        "submitter {} may log no kind of event: list data_flow, code_release or both, or remove it",
                        key_id.get_ref()
                    ),
                ));
            }
            let mut set = BTreeSet::new();
            for kind in kinds.into_inner() {
                if !set.insert(*kind.get_ref()) {
                    return Err(self.error(
                        kind.span(),
                        format!("{} is listed twice", kind.get_ref().name()),
                    ));
                }
            }
            submitters.insert(key_id.into_inner(), set);
        }
        Ok(submitters)
    }

    fn regions(&self, list: List) -> Result<BTreeSet<String>, PolicyError> {
        for region in list.get_ref() {
            let r = region.get_ref();
            if !(2..=8).contains(&r.len()) || !r.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(self.error(
                    region.span(),
                    format!("region {r:?} is not 2 to 8 upper-case letters (ISO 3166 or a group such as EU)"),
                ));
            }
        }
        self.names(list, "region")
    }

    /// A non-empty list of distinct, non-empty names.
    fn names(&self, list: List, what: &str) -> Result<BTreeSet<String>, PolicyError> {
        self.non_empty(&list, what)?;
        let mut set = BTreeSet::new();
        for name in list.into_inner() {
            self.text(&name, what)?;
            let span = name.span();
            let name = name.into_inner();
            if set.contains(&name) {
                return Err(self.error(span, format!("{what} {name:?} is listed twice")));
            }
            set.insert(name);
        }
        Ok(set)
    }

    fn non_empty<T>(&self, list: &Spanned<Vec<T>>, what: &str) -> Result<(), PolicyError> {
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                format!("the {what} list is empty, which would allow nothing"),
            ));
        }
        Ok(())
    }

    fn text(&self, value: &Spanned<String>, what: &str) -> Result<(), PolicyError> {
        let v = value.get_ref();
        let reason = if v.trim().is_empty() {
            format!("{what} is empty")
        } else if v.len() > MAX_TEXT_LEN {
            format!("{what} is longer than {MAX_TEXT_LEN} bytes")
        } else if v.chars().any(char::is_control) {
            format!("{what} {v:?} contains a control character")
        } else {
            return Ok(());
        };
        Err(self.error(value.span(), reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../examples/policy.toml");
    const KEY_A: &str = "reviewer-a.example+9061ac8c+AYAKz21PubD1PYoq3XYG72THuBhmAmw3sEwQ9MJS7BeY";
    const KEY_B: &str = "reviewer-b.example+de0a8dbb+AS/tei12pNSBM2aNZAdTkeqQiv4EHRHLR8G+4dbpg9id";

    /// A valid policy whose line numbers the tests below rely on.
    fn base() -> String {
        format!(
            r#"[data_residency.eu_user_data]
regions = ["EU", "IE"]

[[data_residency.eu_user_data.exceptions]]
regions = ["US"]
purposes = ["legal_request"]

[release]
reviewers = ["{KEY_A}", "{KEY_B}"]
quorum = 2
channels = ["stable"]

[submitters]
"etl.example+0a08733f" = ["data_flow"]
"#
        )
    }

    fn refused(text: &str) -> PolicyError {
        Policy::parse(text).expect_err("the policy should be refused")
    }

    fn assert_refused(text: &str, line: usize, reason: &str) {
        let e = refused(text);
        assert_eq!(e.line, line, "{e}");
        assert!(e.reason.contains(reason), "{e:?} lacks {reason:?}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")));
    }

    #[test]
    fn the_example_policy_parses() {
        let policy = Policy::parse(EXAMPLE).unwrap();
        let eu = &policy.residency["eu_user_data"];
        assert_eq!(
            eu.allowed.regions.as_ref().unwrap(),
            &BTreeSet::from(["EU".into(), "NO".into(), "IE".into()])
        );
        assert_eq!(eu.exceptions.len(), 1);
        assert!(policy.residency["public_content"].allowed.regions.is_none());
        assert_eq!(policy.release.quorum, 2);
        assert_eq!(policy.release.reviewers.len(), 2);
        assert_eq!(
            policy.release.channels,
            BTreeSet::from(["stable".into(), "beta".into()])
        );
        assert!(policy.release.one_version_per_digest);
        assert_eq!(
            policy.submitters["release-pipeline.example+e73ccc49"],
            BTreeSet::from([EventKind::CodeRelease])
        );
    }

    #[test]
    fn the_base_policy_parses_and_defaults_one_version_per_digest_on() {
        let policy = Policy::parse(&base()).unwrap();
        assert!(policy.release.one_version_per_digest);
    }

    #[test]
    fn unknown_keys_are_refused_where_they_are() {
        assert_refused(&base().replace("quorum = 2", "quorom = 2"), 10, "quorom");
        assert_refused(
            &base().replace(r#"regions = ["EU", "IE"]"#, r#"region = ["EU"]"#),
            2,
            "unknown field `region`",
        );
        assert_refused(&format!("colour = 1\n{}", base()), 1, "colour");
    }

    #[test]
    fn syntax_errors_report_their_line() {
        assert_refused(&base().replace("quorum = 2", "quorum = "), 10, "");
    }

    #[test]
    fn missing_sections_and_fields_are_refused() {
        let text = base();
        let (before_release, _) = text.split_once("[release]").unwrap();
        let without_release =
            format!("{before_release}[submitters]\n\"etl.example+0a08733f\" = [\"data_flow\"]\n");
        assert_refused(&without_release, 1, "missing field `release`");
        assert_refused(
            &text.replace("channels = [\"stable\"]\n", ""),
            8,
            "missing field `channels`",
        );
        assert_refused(
            &text.replace("quorum = 2", "quorum = \"2\""),
            10,
            "expected i64",
        );
    }

    #[test]
    fn unknown_event_kinds_are_refused() {
        assert_refused(
            &base().replace(r#"["data_flow"]"#, r#"["data_flows"]"#),
            14,
            "data_flows",
        );
    }

    #[test]
    fn unreachable_quorums_are_refused() {
        assert_refused(
            &base().replace("quorum = 2", "quorum = 0"),
            10,
            "at least 1",
        );
        assert_refused(
            &base().replace("quorum = 2", "quorum = -1"),
            10,
            "at least 1",
        );
        assert_refused(
            &base().replace("quorum = 2", "quorum = 3"),
            10,
            "more than the 2 reviewers",
        );
    }

    #[test]
    fn bad_and_duplicate_reviewer_keys_are_refused() {
        assert_refused(
            &base().replace(&KEY_B[..30], "reviewer-b.example+00000000+AS"),
            9,
            "reviewer key",
        );
        assert_refused(&base().replace(KEY_B, KEY_A), 9, "listed twice");
        assert_refused(
            &base().replace(&format!(r#""{KEY_A}", "{KEY_B}""#), ""),
            9,
            "reviewers list is empty",
        );
    }

    #[test]
    fn malformed_regions_are_refused() {
        for bad in ["eu", "E", "EUROPEANS", "E1", ""] {
            assert_refused(
                &base().replace(r#""IE""#, &format!("{bad:?}")),
                2,
                "not 2 to 8 upper-case letters",
            );
        }
    }

    #[test]
    fn empty_lists_and_values_and_duplicates_are_refused() {
        assert_refused(
            &base().replace(r#"["EU", "IE"]"#, "[]"),
            2,
            "region list is empty",
        );
        assert_refused(
            &base().replace(r#"["stable"]"#, "[]"),
            11,
            "release channel list is empty",
        );
        assert_refused(
            &base().replace(r#"["stable"]"#, r#"["stable", " "]"#),
            11,
            "release channel is empty",
        );
        assert_refused(
            &base().replace(r#"["stable"]"#, r#"["stable", "stable"]"#),
            11,
            "listed twice",
        );
        assert_refused(
            &base().replace(r#"["data_flow"]"#, "[]"),
            14,
            "may log no kind of event",
        );
        assert_refused(
            &base().replace(r#"["data_flow"]"#, r#"["data_flow", "data_flow"]"#),
            14,
            "data_flow is listed twice",
        );
        assert_refused(
            &base().replace(
                "[submitters]\n\"etl.example+0a08733f\" = [\"data_flow\"]",
                "[submitters]",
            ),
            13,
            "submitters is empty",
        );
    }

    #[test]
    fn malformed_submitter_key_ids_are_refused() {
        for bad in [
            "etl.example",
            "etl.example+0A08733F",
            "etl.example+0a0873",
            "+0a08733f",
        ] {
            assert_refused(
                &base().replace("etl.example+0a08733f", bad),
                14,
                "is not a key id",
            );
        }
    }

    #[test]
    fn pointless_exceptions_are_refused() {
        assert_refused(
            &base().replace("purposes = [\"legal_request\"]\n", ""),
            4,
            "must require purposes or legal_bases",
        );
        assert_refused(
            &base().replace("regions = [\"US\"]\n", ""),
            4,
            "must name the regions, data_centres or organisations",
        );
        assert_refused(
            &base().replace("regions = [\"US\"]", "organisations = [\"Example Inc\"]"),
            5,
            "the rule allows any organisations",
        );
    }

    #[test]
    fn line_numbers_count_from_one() {
        let v = Validator { text: "a\nb\nc" };
        assert_eq!(v.error(0..1, "x").line, 1);
        assert_eq!(v.error(2..3, "x").line, 2);
        assert_eq!(v.error(4..5, "x").line, 3);
        assert_eq!(v.error(99..100, "x").line, 3);
    }
}
