//! The policy file: what the log's events must obey, as an auditor writes
//! it down.
//!
//! A policy holds three kinds of rules (see `examples/policy.toml` for a
//! commented example of each):
//!
//! - **Data residency**, per data category: the destination regions, data
//!   centres and organisations a flow may reach, and exceptions that allow
//!   a further destination only for given purposes or legal bases. A flow
//!   whose category has no rule is an incident (`data_category.unknown`):
//!   a policy that forgot a category must not silently allow it.
//! - **Releases**: the reviewers' keys and how many distinct reviewers must
//!   attest a release, the allowed release channels, and whether one
//!   artifact digest may be released under more than one version.
//! - **Submitters**: which submitter key may log which kind of event. A key
//!   the policy does not list may log nothing.
//!
//! [`Policy::parse`] is strict (unknown keys, empty lists and malformed
//! values are refused, each with its line), and evaluation is pure: the
//! same policy and events give the same incidents, in the same order.
//! What this module leaves out: reading the log, state between runs and
//! reports.

mod file;
mod rules;

pub use rules::{ReleaseHistory, ReleaseReview};

use crate::keys::KeyRing;
use std::collections::{BTreeMap, BTreeSet};

/// A parsed, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    residency: BTreeMap<String, ResidencyRule>,
    release: ReleaseRules,
    submitters: BTreeMap<String, BTreeSet<EventKind>>,
}

/// Where one data category may go.
#[derive(Clone, Debug)]
struct ResidencyRule {
    allowed: Destinations,
    exceptions: Vec<Exception>,
}

/// Destination constraints. `None` on a dimension means "any value".
#[derive(Clone, Debug, Default)]
struct Destinations {
    regions: Option<BTreeSet<String>>,
    data_centres: Option<BTreeSet<String>>,
    organisations: Option<BTreeSet<String>>,
}

/// A destination allowed only under conditions. Each dimension it lists
/// replaces the rule's list for that dimension; the dimensions it does not
/// list still obey the rule's.
#[derive(Clone, Debug)]
struct Exception {
    destinations: Destinations,
    purposes: Option<BTreeSet<String>>,
    legal_bases: Option<BTreeSet<String>>,
}

/// What a release needs to be approved.
#[derive(Clone, Debug)]
struct ReleaseRules {
    reviewers: KeyRing,
    quorum: usize,
    channels: BTreeSet<String>,
    one_version_per_digest: bool,
}

/// A kind of event, as the policy file names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `data_flow`: a [`crate::proto::DataFlow`].
    DataFlow,
    /// `code_release`: a [`crate::proto::CodeRelease`].
    CodeRelease,
}

impl EventKind {
    /// The kind of a decoded event.
    pub fn of(kind: &crate::proto::event::Kind) -> Self {
        match kind {
            crate::proto::event::Kind::DataFlow(_) => Self::DataFlow,
            crate::proto::event::Kind::CodeRelease(_) => Self::CodeRelease,
        }
    }

    /// The name the policy file and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Self::DataFlow => "data_flow",
            Self::CodeRelease => "code_release",
        }
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    /// The rule's stable id, for counting incidents by rule: for example
    /// `data_residency.eu_user_data`, `release.quorum` or
    /// `submitter.event_kind`.
    pub rule: String,
    /// Why the event broke it, in one line.
    pub reason: String,
}

impl Incident {
    fn new(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Incident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.reason)
    }
}

/// Why a policy file was refused: the line it happened on (1-based) and
/// the reason, so the author can go straight to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PolicyError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

impl Policy {
    /// Parses and validates a policy file.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        file::parse(text)
    }
}
