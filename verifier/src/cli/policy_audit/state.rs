//! What `verifier policy` remembers between runs, so that each run checks
//! only the entries the last one did not.
//!
//! The state holds the compact range of the checked entries (extending it
//! with the new entries and matching the newly signed root proves both that
//! the new entries are the log's and that the log only grew), the first
//! version of every released digest (for the rule that spans entries), the
//! cumulative summary, and the SHA-256 of the policy the entries were
//! checked against: entries checked under one policy are not re-checked
//! under another, so a changed policy is refused rather than mixed in.
//!
//! Saved as one JSON object in the log's trusted-state directory, replaced
//! atomically after a run that completed.

use super::super::outcome::Failure;
use super::super::policy::ReleaseHistory;
use super::super::state::write_atomically;
use super::summary::Totals;
use crate::hex;
use crate::merkle::{CompactRange, Hash};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The state file's name in the log's trusted-state directory.
pub const STATE_FILE: &str = "policy.json";
/// The `format` of the saved state.
const FORMAT: &str = "tlog policy state v1";

/// The checked prefix of the log and what it added up to.
#[derive(Debug, Clone)]
pub struct PolicyState {
    /// The leaves of the checked entries.
    pub range: CompactRange,
    /// First version per released digest.
    pub history: ReleaseHistory,
    /// Cumulative counts over every checked entry.
    pub totals: Totals,
    /// Hex SHA-256 of the policy file the entries were checked against.
    pub policy_sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    format: String,
    policy_sha256: String,
    size: u64,
    /// Base64 peaks of the compact range, leftmost first.
    peaks: Vec<String>,
    first_releases: Vec<FirstRelease>,
    totals: Totals,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstRelease {
    sha256: String,
    version: String,
    index: u64,
}

impl PolicyState {
    /// Nothing checked yet, under the policy whose file hashes to
    /// `policy_sha256`.
    pub fn new(policy_sha256: String) -> Self {
        Self {
            range: CompactRange::new(),
            history: ReleaseHistory::default(),
            totals: Totals::default(),
            policy_sha256,
        }
    }

    /// Loads the state at `path`; a missing file is a first run.
    pub fn load(path: &Path, policy_sha256: &str) -> Result<Self, Failure> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(policy_sha256.to_owned()))
            }
            Err(e) => {
                return Err(Failure::unchecked(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let damaged = |reason: String| {
            Failure::unchecked(format!(
                "{}: damaged policy state: {reason}; delete it to check the log from the start",
                path.display()
            ))
        };
        let state = Self::parse(&text).map_err(damaged)?;
        if state.policy_sha256 != policy_sha256 {
            return Err(Failure::unchecked(format!(
                "the policy file changed since {} was written (its {} entries were checked \
                 against a policy with SHA-256 {}); delete that file to check the whole log \
                 against the new policy",
                path.display(),
                state.range.size(),
                state.policy_sha256
            )));
        }
        Ok(state)
    }

    /// Replaces the state at `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), Failure> {
        let saved = Saved {
            format: FORMAT.to_owned(),
            policy_sha256: self.policy_sha256.clone(),
            size: self.range.size(),
            peaks: self
                .range
                .peaks()
                .iter()
                .map(|h| BASE64_STANDARD.encode(h.0))
                .collect(),
            first_releases: self
                .history
                .first_releases()
                .into_iter()
                .map(|(digest, version, index)| FirstRelease {
                    sha256: hex::encode(digest),
                    version: version.to_owned(),
                    index,
                })
                .collect(),
            totals: self.totals.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&saved).expect("the state serialises");
        json.push(b'\n');
        write_atomically(path, &json)
    }

    /// Reads what [`save`](Self::save) wrote, refusing anything that does
    /// not add up: a damaged state would make every later run wrong.
    fn parse(text: &str) -> Result<Self, String> {
        let saved: Saved = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if saved.format != FORMAT {
            return Err(format!("format is {:?}, not {FORMAT:?}", saved.format));
        }
        let peaks = saved
            .peaks
            .iter()
            .map(|p| {
                BASE64_STANDARD
                    .decode(p)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
                    .ok_or_else(|| format!("peak {p:?} is not a base64 32-byte hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let range = CompactRange::from_peaks(saved.size, peaks).map_err(|e| e.to_string())?;
        let mut first = Vec::with_capacity(saved.first_releases.len());
        for r in saved.first_releases {
            let digest = hex::decode_digest(&r.sha256)
                .map(Vec::from)
                .ok_or_else(|| format!("{:?} is not a hex SHA-256 digest", r.sha256))?;
            if r.index >= saved.size {
                return Err(format!(
                    "a release at entry {} is beyond the {} checked entries",
                    r.index, saved.size
                ));
            }
            first.push((digest, r.version, r.index));
        }
        saved.totals.check(saved.size)?;
        Ok(Self {
            range,
            history: ReleaseHistory::from_first_releases(first),
            totals: saved.totals,
            policy_sha256: saved.policy_sha256,
        })
    }
}

/// The state file of the log whose trusted-state directory is `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    fn state() -> PolicyState {
        let mut state = PolicyState::new("ab".repeat(32));
        for n in 0..5u8 {
            state.range.append(leaf_hash(&[n]));
        }
        state.history = ReleaseHistory::from_first_releases([(vec![7; 32], "1.0".into(), 3)]);
        state.totals.entries = 5;
        state.totals.data_flows = 4;
        state.totals.releases = 1;
        state
            .totals
            .flows
            .entry("eu_user_data".into())
            .or_default()
            .insert("IE".into(), 4);
        state
    }

    #[test]
    fn a_saved_state_loads_back() {
        let dir = std::env::temp_dir().join(format!("policy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        let saved = state();
        saved.save(&path).unwrap();
        let loaded = PolicyState::load(&path, &"ab".repeat(32)).unwrap();
        assert_eq!(loaded.range, saved.range);
        assert_eq!(
            loaded.history.first_releases(),
            saved.history.first_releases()
        );
        assert_eq!(loaded.totals, saved.totals);
        let other_policy = PolicyState::load(&path, &"cd".repeat(32)).unwrap_err();
        assert!(
            matches!(&other_policy, Failure::Unchecked(m) if m.contains("policy file changed")),
            "{other_policy:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_that_does_not_add_up_is_refused() {
        let dir = std::env::temp_dir().join(format!("policy-state-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        state().save(&path).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        for (from, to) in [
            ("\"size\": 5", "\"size\": 6"),
            ("\"data_flows\": 4", "\"data_flows\": 3"),
            ("\"index\": 3", "\"index\": 5"),
            ("tlog policy state v1", "tlog policy state v2"),
            ("\"version\"", "\"verzion\""),
        ] {
            assert!(good.contains(from), "{from} in {good}");
            std::fs::write(&path, good.replace(from, to)).unwrap();
            let refused = PolicyState::load(&path, &"ab".repeat(32)).unwrap_err();
            assert!(
                matches!(&refused, Failure::Unchecked(m) if m.contains("damaged policy state")),
                "{from} -> {to}: {refused:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
