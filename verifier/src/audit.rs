//! The streaming audit: replay every entry of the log, re-apply the log's
//! admission rules to each, and recompute the root the log signed.
//!
//! An [`Auditor`] takes entries in index order. Each entry must decode
//! strictly ([`decode_entry`]) and pass the admission rules against the
//! auditor's own list of submitter keys ([`check_submission`]); its leaf
//! hash is then appended to a [`CompactRange`]. [`Auditor::finish`]
//! compares the recomputed root with a signed checkpoint's.
//!
//! Memory stays flat: the auditor holds the compact range (one hash per set
//! bit of the size), three counters and one counter per submitter key, never
//! the tree.
//!
//! **Resuming.** An [`AuditState`] saved after a successful
//! [`Auditor::finish`] at size N holds the compact range of the first N
//! leaves, the range that gave the root signed at N. Extending it with
//! entries N..M and matching the root signed at M therefore proves both that
//! the new entries are the log's and that the tree at M extends the audited
//! tree at N: no consistency proof from the log is needed.
//!
//! **Hash tiles.** Given [`Auditor::rebuild_tiles`], the auditor also
//! rebuilds the log's hash tiles from the entries ([`hash_tiles`]), for the
//! caller to compare with the ones the log serves, from which proofs are
//! built.
//!
//! This module is pure: no network, no files, no async. The `verifier audit`
//! command feeds it entry bundles or a gRPC stream, fetches the hash tiles
//! and stores its state.

use crate::checkpoint::Checkpoint;
use crate::event::{check_submission, decode_entry, EntryError, SubmissionError};
use crate::keys::KeyRing;
use crate::merkle::{leaf_hash, CompactRange, Hash};
use crate::proto::event::Kind;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub mod hash_tiles;

use hash_tiles::{Seed, TileProblem, TileRebuild};

/// Something the log served or signed that is wrong: a security finding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditFinding {
    /// The entry's bytes are not a canonical log entry.
    #[error("entry {index} is not a valid log entry: {error}")]
    Malformed {
        /// The entry's index in the log.
        index: u64,
        /// Why it does not decode.
        error: EntryError,
    },
    /// The entry is signed by a key the auditor does not accept.
    #[error("entry {index} is signed by {key_id}, which is not among the accepted submitters")]
    UnknownSubmitter {
        /// The entry's index in the log.
        index: u64,
        /// The key id string the entry names.
        key_id: String,
    },
    /// The entry decodes but the log should never have accepted it.
    #[error("entry {index} breaks the log's admission rules: {error}")]
    Refused {
        /// The entry's index in the log.
        index: u64,
        /// Which rule it breaks.
        error: SubmissionError,
    },
    /// The log served a different number of entries than it signed, or
    /// signed a smaller tree than one already audited (a rollback).
    #[error(
        "the log's signed checkpoint has {signed} entries, but {audited} entries were audited"
    )]
    SizeMismatch {
        /// Entries audited, including earlier runs.
        audited: u64,
        /// The signed checkpoint's size.
        signed: u64,
    },
    /// The entries do not hash to the signed root: the log serves entries
    /// other than the ones it signed.
    #[error(
        "root mismatch: the {size} entries the log serves hash to root {computed}, \
         but its signed checkpoint says {signed}"
    )]
    RootMismatch {
        /// The tree size.
        size: u64,
        /// The root recomputed from the entries.
        computed: Hash,
        /// The root in the signed checkpoint.
        signed: Hash,
    },
    /// A hash tile the log serves is not the one its entries make: proofs
    /// built from it are not proofs about the entries.
    #[error("the log serves hash tile {path}, but {problem}")]
    HashTile {
        /// The tile's C2SP path, such as `tile/0/x001/234`.
        path: String,
        /// How it differs.
        problem: TileProblem,
    },
}

impl AuditFinding {
    /// The index of the offending entry, when one entry is at fault.
    pub fn index(&self) -> Option<u64> {
        match self {
            Self::Malformed { index, .. }
            | Self::UnknownSubmitter { index, .. }
            | Self::Refused { index, .. } => Some(*index),
            Self::SizeMismatch { .. } | Self::RootMismatch { .. } | Self::HashTile { .. } => None,
        }
    }
}

/// What has been audited so far: the compact range of the audited entries
/// and what they recorded. Saved between runs as a small text file (see
/// [`AuditState::to_text`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditState {
    range: CompactRange,
    data_flows: u64,
    releases: u64,
    /// Entries per submitter key id. Bounded by the submitter list, since
    /// an entry by any other key is a finding.
    by_submitter: BTreeMap<String, u64>,
}

/// The first line of a saved audit state, naming its format.
const STATE_HEADER: &str = "tlog audit state v1";

/// A saved audit state that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged audit state: {0}")]
pub struct StateError(String);

impl AuditState {
    /// The number of entries audited.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The root of the audited entries.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// How many audited entries are data-flow events.
    pub fn data_flows(&self) -> u64 {
        self.data_flows
    }

    /// How many audited entries are code-release events.
    pub fn releases(&self) -> u64 {
        self.releases
    }

    /// Audited entries per submitter key id.
    pub fn by_submitter(&self) -> &BTreeMap<String, u64> {
        &self.by_submitter
    }

    fn record(&mut self, entry: Checked) {
        self.range.append(entry.leaf);
        if entry.is_release {
            self.releases += 1;
        } else {
            self.data_flows += 1;
        }
        match self.by_submitter.get_mut(&entry.key_id) {
            Some(count) => *count += 1,
            None => {
                self.by_submitter.insert(entry.key_id, 1);
            }
        }
    }

    /// The state as text, one `name value` per line:
    ///
    /// ```text
    /// tlog audit state v1
    /// size 5
    /// peak <base64 hash>      (one per set bit of size, leftmost first)
    /// data-flows 4
    /// releases 1
    /// submitter <key id> 5    (one per submitter key)
    /// ```
    pub fn to_text(&self) -> String {
        let mut text = format!("{STATE_HEADER}\nsize {}\n", self.size());
        for peak in self.range.peaks() {
            let _ = writeln!(text, "peak {peak}");
        }
        let _ = writeln!(text, "data-flows {}", self.data_flows);
        let _ = writeln!(text, "releases {}", self.releases);
        for (key_id, count) in &self.by_submitter {
            let _ = writeln!(text, "submitter {key_id} {count}");
        }
        text
    }

    /// Reads [`AuditState::to_text`] back, refusing anything that does not
    /// add up (a peak count that does not fit the size, counts that do not
    /// sum to it), since a damaged state would make every later audit wrong.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        let at = |line: usize, reason: &str| StateError(format!("line {line}: {reason}"));
        let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
        if lines.next().map(|(_, line)| line) != Some(STATE_HEADER) {
            return Err(at(1, &format!("expected {STATE_HEADER:?}")));
        }
        let (mut size, mut data_flows, mut releases) = (None, None, None);
        let mut peaks = Vec::new();
        let mut by_submitter = BTreeMap::new();
        for (n, line) in lines {
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = |value: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| at(n, &format!("{value:?} is not a number")))
            };
            let slot = match name {
                "size" => &mut size,
                "data-flows" => &mut data_flows,
                "releases" => &mut releases,
                "peak" => {
                    let hash = BASE64_STANDARD
                        .decode(value)
                        .ok()
                        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                        .ok_or_else(|| at(n, "a peak is a base64 32-byte hash"))?;
                    peaks.push(Hash(hash));
                    continue;
                }
                "submitter" => {
                    let (key_id, count) = value
                        .split_once(' ')
                        .ok_or_else(|| at(n, "expected \"submitter <key id> <count>\""))?;
                    if by_submitter
                        .insert(key_id.to_owned(), number(count)?)
                        .is_some()
                    {
                        return Err(at(n, "submitter listed twice"));
                    }
                    continue;
                }
                _ => return Err(at(n, &format!("unknown field {name:?}"))),
            };
            if slot.replace(number(value)?).is_some() {
                return Err(at(n, &format!("{name} given twice")));
            }
        }
        let missing = |name| StateError(format!("no {name} line"));
        let size = size.ok_or_else(|| missing("size"))?;
        let data_flows = data_flows.ok_or_else(|| missing("data-flows"))?;
        let releases = releases.ok_or_else(|| missing("releases"))?;
        let range = CompactRange::from_peaks(size, peaks).map_err(|e| StateError(e.to_string()))?;
        let per_submitter = by_submitter
            .values()
            .try_fold(0u64, |a, &b| a.checked_add(b));
        let counted = data_flows.checked_add(releases) == Some(size) && per_submitter == Some(size);
        if !counted || by_submitter.values().any(|&count| count == 0) {
            return Err(StateError(format!(
                "the counts do not add up to size {size}"
            )));
        }
        Ok(Self {
            range,
            data_flows,
            releases,
            by_submitter,
        })
    }
}

/// What one valid entry adds to the audit.
struct Checked {
    leaf: Hash,
    key_id: String,
    is_release: bool,
}

/// Checks the entry at `index` as the log should have before storing it.
fn check_entry(index: u64, bytes: &[u8], submitters: &KeyRing) -> Result<Checked, AuditFinding> {
    let entry = decode_entry(bytes).map_err(|error| AuditFinding::Malformed { index, error })?;
    let signed = entry
        .signed_event
        .expect("decode_entry refuses an entry without a signed event");
    let event = check_submission(&signed, submitters).map_err(|error| match error {
        SubmissionError::UnknownKey(key_id) => AuditFinding::UnknownSubmitter { index, key_id },
        error => AuditFinding::Refused { index, error },
    })?;
    Ok(Checked {
        leaf: leaf_hash(bytes),
        key_id: signed.key_id,
        is_release: matches!(event.kind, Some(Kind::CodeRelease(_))),
    })
}

/// Replays a log's entries in index order; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Auditor {
    state: AuditState,
    submitters: KeyRing,
    /// The hash tiles being rebuilt, once asked for.
    tiles: Option<TileRebuild>,
}

impl Auditor {
    /// Continues from `state` (use `AuditState::default()` for a first
    /// audit), accepting entries signed by the keys in `submitters`.
    pub fn new(state: AuditState, submitters: KeyRing) -> Self {
        Self {
            state,
            submitters,
            tiles: None,
        }
    }

    /// The log's hash tiles [`Auditor::rebuild_tiles`] needs to audit up to
    /// `size` entries: the partial tiles at the audited size that gain
    /// hashes, whose first hashes only the log still has.
    pub fn tile_seeds(&self, size: u64) -> Vec<Seed> {
        TileRebuild::seeds(self.size(), size)
    }

    /// Rebuilds the hash tiles of the tree of `size` entries from here on,
    /// for [`Auditor::take_tiles`]. `served` holds the log's tile for each
    /// of [`Auditor::tile_seeds`], in order; hashes in them that do not give
    /// the audited state are a finding.
    pub fn rebuild_tiles(&mut self, size: u64, served: &[Vec<u8>]) -> Result<(), AuditFinding> {
        self.tiles = Some(TileRebuild::resume(&self.state.range, size, served)?);
        Ok(())
    }

    /// The hash tiles rebuilt since the last call, to compare with the
    /// log's ([`hash_tiles::compare`]); in the order
    /// [`hash_tiles::rebuilt_between`] names them.
    pub fn take_tiles(&mut self) -> Vec<(crate::tiles::TileId, Vec<u8>)> {
        self.tiles.as_mut().map_or_else(Vec::new, TileRebuild::take)
    }

    /// Records an entry that passed its checks.
    fn record(&mut self, checked: Checked) {
        if let Some(tiles) = &mut self.tiles {
            tiles.append(checked.leaf);
        }
        self.state.record(checked);
    }

    /// The number of entries audited, and so the index of the next one.
    pub fn size(&self) -> u64 {
        self.state.size()
    }

    /// Audits the next entry. On a finding nothing is recorded.
    pub fn push(&mut self, entry: &[u8]) -> Result<(), AuditFinding> {
        let checked = check_entry(self.size(), entry, &self.submitters)?;
        self.record(checked);
        Ok(())
    }

    /// Audits the next `entries`, checking them on every core: the
    /// signature checks are nearly all of an audit's work. Records the
    /// entries before the first finding, as [`Auditor::push`] would.
    pub fn push_all<E: AsRef<[u8]> + Sync>(&mut self, entries: &[E]) -> Result<(), AuditFinding> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = entries.len().div_ceil(threads).max(1);
        let first = self.size();
        let submitters = &self.submitters;
        let checked: Vec<Vec<Result<Checked, AuditFinding>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = entries
                .chunks(chunk)
                .zip((first..).step_by(chunk))
                .map(|(part, start)| {
                    scope.spawn(move || {
                        (start..)
                            .zip(part)
                            .map(|(index, e)| check_entry(index, e.as_ref(), submitters))
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for result in checked.into_iter().flatten() {
            self.record(result?);
        }
        Ok(())
    }

    /// Compares the audited entries with the signed `checkpoint` (whose
    /// signature the caller has verified) and returns the state to save.
    pub fn finish(self, checkpoint: &Checkpoint) -> Result<AuditState, AuditFinding> {
        let size = self.size();
        if size != checkpoint.size {
            return Err(AuditFinding::SizeMismatch {
                audited: size,
                signed: checkpoint.size,
            });
        }
        let computed = self.state.root();
        if computed != checkpoint.root {
            return Err(AuditFinding::RootMismatch {
                size,
                computed,
                signed: checkpoint.root,
            });
        }
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{encode_entry, sign_event};
    use crate::keys::SigningKey;
    use crate::proto::{CodeRelease, DataFlow, Event, Location};

    fn timestamp(seconds: i64) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos: 0 }
    }

    /// Event `n`: a data flow, or every third a code release.
    fn event(n: u64) -> Event {
        let place = |region: &str| Location {
            system: "db".into(),
            data_centre: "dc-1".into(),
            region: region.into(),
            organisation: "Example".into(),
        };
        let kind = if n % 3 == 2 {
            Kind::CodeRelease(CodeRelease {
                artifact_name: "app".into(),
                version: format!("1.{n}"),
                artifact_sha256: vec![1; 32],
                source_repository: "git.example/app".into(),
                source_commit: format!("{n:040x}"),
                build_provenance_sha256: vec![2; 32],
                release_channel: "stable".into(),
                attestations: vec![],
            })
        } else {
            Kind::DataFlow(DataFlow {
                flow_id: format!("flow-{n}"),
                data_category: "eu_user_data".into(),
                source: Some(place("DE")),
                destination: Some(place("IE")),
                purpose: "analytics".into(),
                legal_basis: "consent".into(),
                record_count: n + 1,
            })
        };
        Event {
            occurred_at: Some(timestamp(1_700_000_000 + n as i64)),
            kind: Some(kind),
        }
    }

    fn keys() -> (SigningKey, SigningKey, KeyRing) {
        let alice = SigningKey::from_seed("alice", [1; 32]).unwrap();
        let bob = SigningKey::from_seed("bob", [2; 32]).unwrap();
        let mut ring = KeyRing::default();
        ring.insert(alice.verifier_key());
        ring.insert(bob.verifier_key());
        (alice, bob, ring)
    }

    /// Entries `range`, alternately signed by alice and bob.
    fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
        let (alice, bob, _) = keys();
        range
            .map(|n| {
                let key = if n % 2 == 0 { &alice } else { &bob };
                encode_entry(&sign_event(key, &event(n)), timestamp(n as i64))
            })
            .collect()
    }

    /// The checkpoint an honest log signs over `entries`.
    fn checkpoint(entries: &[Vec<u8>]) -> Checkpoint {
        let mut range = CompactRange::new();
        entries.iter().for_each(|e| range.append(leaf_hash(e)));
        Checkpoint {
            origin: "log.example/audit".into(),
            size: range.size(),
            root: range.root(),
        }
    }

    fn audit(state: AuditState, entries: &[Vec<u8>]) -> Result<Auditor, AuditFinding> {
        let mut auditor = Auditor::new(state, keys().2);
        entries.iter().try_for_each(|e| auditor.push(e))?;
        Ok(auditor)
    }

    #[test]
    fn an_honest_log_passes_with_the_right_counts() {
        let all = entries(0..30);
        let state = audit(AuditState::default(), &all)
            .unwrap()
            .finish(&checkpoint(&all))
            .unwrap();
        assert_eq!(state.size(), 30);
        assert_eq!((state.data_flows(), state.releases()), (20, 10));
        let (alice, bob, _) = keys();
        assert_eq!(
            state.by_submitter(),
            &BTreeMap::from([(alice.key_id(), 15), (bob.key_id(), 15)])
        );
    }

    #[test]
    fn resuming_from_saved_state_proves_the_larger_tree() {
        let all = entries(0..77);
        let saved = audit(AuditState::default(), &all[..45])
            .unwrap()
            .finish(&checkpoint(&all[..45]))
            .unwrap()
            .to_text();
        let resumed = AuditState::parse(&saved).unwrap();
        assert_eq!(resumed.size(), 45);
        let state = audit(resumed, &all[45..])
            .unwrap()
            .finish(&checkpoint(&all))
            .unwrap();
        let one_go = audit(AuditState::default(), &all).unwrap();
        assert_eq!(state, one_go.finish(&checkpoint(&all)).unwrap());
    }

    #[test]
    fn swapped_entries_give_a_root_mismatch() {
        let honest = entries(0..10);
        let mut served = honest.clone();
        served.swap(3, 7);
        let finding = audit(AuditState::default(), &served)
            .unwrap()
            .finish(&checkpoint(&honest))
            .unwrap_err();
        assert!(
            matches!(finding, AuditFinding::RootMismatch { size: 10, .. }),
            "{finding}"
        );
        assert!(finding.to_string().contains("root mismatch"));
    }

    #[test]
    fn missing_entries_and_rollbacks_are_size_mismatches() {
        let all = entries(0..10);
        let short = audit(AuditState::default(), &all[..9]).unwrap();
        assert_eq!(
            short.finish(&checkpoint(&all)).unwrap_err(),
            AuditFinding::SizeMismatch {
                audited: 9,
                signed: 10
            }
        );
        let audited = audit(AuditState::default(), &all)
            .unwrap()
            .finish(&checkpoint(&all))
            .unwrap();
        let rolled_back = Auditor::new(audited, keys().2).finish(&checkpoint(&all[..8]));
        assert!(matches!(
            rolled_back,
            Err(AuditFinding::SizeMismatch {
                audited: 10,
                signed: 8
            })
        ));
    }

    #[test]
    fn an_unknown_submitter_is_named_with_its_index() {
        let mut all = entries(0..5);
        let mallory = SigningKey::from_seed("mallory", [9; 32]).unwrap();
        all.push(encode_entry(&sign_event(&mallory, &event(5)), timestamp(5)));
        let mut auditor = audit(AuditState::default(), &all[..5]).unwrap();
        let finding = auditor.push(&all[5]).unwrap_err();
        assert_eq!(
            finding,
            AuditFinding::UnknownSubmitter {
                index: 5,
                key_id: mallory.key_id()
            }
        );
        assert_eq!(finding.index(), Some(5));
        assert_eq!(auditor.size(), 5, "a refused entry is not recorded");
    }

    #[test]
    fn forged_and_non_canonical_entries_are_findings() {
        let (alice, _, ring) = keys();
        let mut signed = sign_event(&alice, &event(0));
        signed.signature[0] ^= 1;
        let forged = encode_entry(&signed, timestamp(0));
        let mut auditor = Auditor::new(AuditState::default(), ring);
        assert!(matches!(
            auditor.push(&forged),
            Err(AuditFinding::Refused {
                index: 0,
                error: SubmissionError::BadSignature(_)
            })
        ));
        let mut padded = entries(0..1).remove(0);
        padded.extend_from_slice(&[0x18, 0x00]);
        assert_eq!(
            auditor.push(&padded),
            Err(AuditFinding::Malformed {
                index: 0,
                error: EntryError::NotCanonical
            })
        );
    }

    #[test]
    fn push_all_matches_push_and_stops_at_the_first_finding() {
        let all = entries(0..40);
        let mut parallel = Auditor::new(AuditState::default(), keys().2);
        parallel.push_all(&all[..1]).unwrap();
        parallel.push_all(&all[1..]).unwrap();
        assert_eq!(
            parallel.state,
            audit(AuditState::default(), &all).unwrap().state
        );

        let mut damaged = all.clone();
        damaged[33].push(0);
        damaged[37].push(0);
        let mut auditor = Auditor::new(AuditState::default(), keys().2);
        let finding = auditor.push_all(&damaged).unwrap_err();
        assert_eq!(finding.index(), Some(33));
        assert_eq!(auditor.size(), 33);
    }

    #[test]
    fn saved_state_round_trips_and_damage_is_refused() {
        let all = entries(0..13);
        let state = audit(AuditState::default(), &all).unwrap().state;
        let text = state.to_text();
        assert_eq!(AuditState::parse(&text).unwrap(), state);
        assert_eq!(
            AuditState::parse(&AuditState::default().to_text()).unwrap(),
            AuditState::default()
        );
        let damaged = [
            text.replacen("tlog audit state v1", "tlog audit state v2", 1),
            text.replacen("size 13", "size 14", 1),
            text.replacen("releases 4", "releases 5", 1),
            text.replacen("data-flows 9\n", "", 1),
            format!("{text}submitter carol+00000000 1\n"),
            text.lines()
                .filter(|l| !l.starts_with("submitter alice"))
                .map(|l| format!("{l}\n"))
                .collect(),
        ];
        for bad in damaged {
            assert_ne!(bad, text, "the damage applies");
            assert!(AuditState::parse(&bad).is_err(), "accepted:\n{bad}");
        }
    }

    #[test]
    fn a_resumed_audit_rebuilds_the_tiles_its_entries_make() {
        use crate::tile_builder::{MemoryTiles, TileBuilder};
        let all = entries(0..600);
        let mut builder = TileBuilder::new();
        all.iter().for_each(|e| builder.append(leaf_hash(e)));
        let mut log = MemoryTiles::default();
        log.apply(builder.take_changed());
        let served = |tile: crate::tiles::TileId| {
            let crate::tiles::TileKind::Hashes { level } = tile.kind else {
                panic!("a hash tile")
            };
            log.0[&(level, tile.index)][..usize::from(tile.width) * 32].to_vec()
        };

        let saved = audit(AuditState::default(), &all[..300])
            .unwrap()
            .finish(&checkpoint(&all[..300]))
            .unwrap();
        let mut auditor = Auditor::new(saved, keys().2);
        let seeds: Vec<Vec<u8>> = auditor
            .tile_seeds(600)
            .iter()
            .map(|seed| served(seed.tile))
            .collect();
        auditor.rebuild_tiles(600, &seeds).unwrap();
        auditor.push_all(&all[300..]).unwrap();
        let rebuilt = auditor.take_tiles();
        let names: Vec<_> = rebuilt.iter().map(|(tile, _)| tile.path()).collect();
        assert_eq!(names, ["tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2"]);
        for (tile, hashes) in rebuilt {
            assert_eq!(hashes, served(tile), "{}", tile.path());
        }
        auditor.finish(&checkpoint(&all)).unwrap();
    }
}
