//! `--vkey`: believe no acknowledgment that does not verify.
//!
//! Every answer's checkpoint must be signed by the log's key and its
//! inclusion proof must lead from the answer's leaf hash to that
//! checkpoint's root ([`AnswerChecker`], in the workers, after the latency
//! is taken so that checking costs client CPU but never counts as log
//! latency). After the run, the entry the log serves at each acknowledged
//! index must hash to the proven leaf and hold exactly the event submitted
//! ([`EntryCheck`]), so an index acknowledged for someone else's entry is
//! caught too. Verification is optional so that pure throughput can be
//! measured without the client's own Ed25519 checks competing with the
//! server for the same two cores.

use crate::Failure;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::{decode_entry, event_id};
use verifier::keys::VerifierKey;
use verifier::merkle::{leaf_hash, verify_inclusion, Hash};
use verifier::proto::AppendResponse;
use verifier::tiles::TILE_WIDTH;

/// One acknowledged event, kept to check its entry after the run.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// The index the log gave it.
    pub index: u64,
    /// The leaf hash the log proved at that index.
    pub leaf: Hash,
    /// Which event of the workload it was.
    pub event: usize,
}

/// Checks answers, verifying each distinct checkpoint once across all
/// workers: answers from one sequencer batch share a checkpoint, and an
/// Ed25519 verification (about 40 µs) is by far the dearest step, so
/// re-verifying it in each of 64 workers would make the client, not the
/// log, the bottleneck. Clones share the cache.
#[derive(Clone)]
pub struct AnswerChecker {
    key: Arc<VerifierKey>,
    /// Notes already verified, by their exact text.
    verified: Arc<Mutex<HashMap<String, Checkpoint>>>,
}

/// Verified notes kept before the cache starts over: answers in flight
/// carry only the last few checkpoints, so this bounds memory on a long
/// run without ever re-verifying more than a handful.
const VERIFIED_NOTES_KEPT: usize = 1024;

impl AnswerChecker {
    /// A checker for the log with verifier key `key`.
    pub fn new(key: VerifierKey) -> Self {
        Self {
            key: Arc::new(key),
            verified: Arc::default(),
        }
    }

    /// Verifies `answer`'s checkpoint and inclusion proof; returns the
    /// proven leaf hash, or what is wrong.
    pub fn check(&self, answer: &AppendResponse) -> Result<Hash, String> {
        let index = answer.index;
        let cached = self.cache().get(&answer.checkpoint).cloned();
        let checkpoint = match cached {
            Some(checkpoint) => checkpoint,
            None => {
                let verified = SignedCheckpoint::verify(answer.checkpoint.as_bytes(), &self.key)
                    .map_err(|e| {
                        format!(
                            "index {index}: checkpoint does not verify under {}: {e}\n{}",
                            self.key.key_id(),
                            answer.checkpoint
                        )
                    })?;
                let mut cache = self.cache();
                if cache.len() >= VERIFIED_NOTES_KEPT {
                    cache.clear();
                }
                cache.insert(answer.checkpoint.clone(), verified.checkpoint.clone());
                verified.checkpoint
            }
        };
        let hash = |bytes: &[u8]| bytes.try_into().map(Hash).ok();
        let leaf = hash(&answer.leaf_hash)
            .ok_or_else(|| format!("index {index}: leaf hash is not 32 bytes"))?;
        let proof = answer
            .inclusion_proof
            .iter()
            .map(|h| hash(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("index {index}: a proof hash is not 32 bytes"))?;
        verify_inclusion(&proof, index, checkpoint.size, leaf, checkpoint.root)
            .map_err(|e| format!("index {index}: {e} (checkpoint size {})", checkpoint.size))?;
        Ok(leaf)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Checkpoint>> {
        self.verified.lock().expect("checkpoint cache lock")
    }
}

/// The tree size of the signed checkpoint `note`: verified with `key` when
/// given (a failure is a finding), otherwise only parsed.
pub fn checkpoint_size(note: &[u8], key: Option<&VerifierKey>) -> Result<u64, Failure> {
    if let Some(key) = key {
        return SignedCheckpoint::verify(note, key)
            .map(|c| c.checkpoint.size)
            .map_err(|e| Failure::Verification(format!("the log's checkpoint: {e}")));
    }
    // A note is its body, a blank line, then signatures; the body ends at
    // the first blank line, keeping its final newline.
    let body_end = note
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| Failure::Unchecked("the log's checkpoint is not a signed note".into()))?;
    Checkpoint::parse_body(&note[..=body_end])
        .map(|c| c.size)
        .map_err(|e| Failure::Unchecked(format!("the log's checkpoint: {e}")))
}

/// Checks the entries at acknowledged indices, one entry bundle at a time,
/// bundles visited in increasing order.
pub struct EntryCheck {
    /// Acknowledgments sorted by index.
    acks: Vec<Ack>,
    /// The submitted events' ids, by workload position.
    ids: Vec<[u8; 32]>,
    /// The next acknowledgment to check.
    next: usize,
    /// What did not verify.
    pub failures: Vec<String>,
}

impl EntryCheck {
    /// A check of `acks` against the events with ids `ids`.
    pub fn new(mut acks: Vec<Ack>, ids: Vec<[u8; 32]>) -> Self {
        acks.sort_unstable_by_key(|a| a.index);
        Self {
            acks,
            ids,
            next: 0,
            failures: Vec::new(),
        }
    }

    /// The entry bundles holding acknowledged entries, in increasing order.
    pub fn bundles(&self) -> Vec<u64> {
        let mut bundles: Vec<u64> = self.acks.iter().map(|a| a.index / TILE_WIDTH).collect();
        bundles.dedup();
        bundles
    }

    /// Checks every acknowledged entry in bundle `bundle`, whose entries
    /// are `entries`. Bundles must come in increasing order.
    pub fn visit(&mut self, bundle: u64, entries: &[&[u8]]) {
        while let Some(ack) = self.acks.get(self.next) {
            if ack.index / TILE_WIDTH > bundle {
                break;
            }
            self.next += 1;
            if ack.index / TILE_WIDTH < bundle {
                self.failures
                    .push(format!("index {}: its entry bundle was skipped", ack.index));
                continue;
            }
            let Some(entry) = entries.get((ack.index % TILE_WIDTH) as usize) else {
                self.failures.push(format!(
                    "index {}: entry bundle {bundle} has only {} entries",
                    ack.index,
                    entries.len()
                ));
                continue;
            };
            if leaf_hash(entry) != ack.leaf {
                self.failures.push(format!(
                    "index {}: the served entry does not hash to the proven leaf {}",
                    ack.index, ack.leaf
                ));
                continue;
            }
            let held = decode_entry(entry).ok().and_then(|e| e.signed_event);
            if held.map(|s| event_id(&s)) != Some(self.ids[ack.event]) {
                self.failures.push(format!(
                    "index {}: the entry is not the event submitted",
                    ack.index
                ));
            }
        }
    }

    /// The failures, after every bundle was visited; acknowledgments never
    /// reached (their bundle was not served) are failures too.
    pub fn finish(mut self) -> Vec<String> {
        let unchecked = self.acks.len() - self.next;
        if unchecked > 0 {
            self.failures.push(format!(
                "{unchecked} acknowledged entries are beyond the entries the log served"
            ));
        }
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::event::{encode_entry, sign_event};
    use verifier::keys::SigningKey;
    use verifier::merkle::node_hash;
    use verifier::proto::{event::Kind, DataFlow, Event};

    fn log_key() -> SigningKey {
        SigningKey::from_seed("log.example/test", [9; 32]).unwrap()
    }

    /// An answer for index 0 of a two-entry tree, signed by `signer`.
    fn answer(signer: &SigningKey) -> (AppendResponse, Hash) {
        let (a, b) = (leaf_hash(b"first"), leaf_hash(b"second"));
        let checkpoint = Checkpoint {
            origin: "log.example/test".into(),
            size: 2,
            root: node_hash(a, b),
        };
        let note = String::from_utf8(checkpoint.sign(signer)).unwrap();
        let answer = AppendResponse {
            index: 0,
            leaf_hash: a.0.to_vec(),
            checkpoint: note,
            inclusion_proof: vec![b.0.to_vec()],
            duplicate: false,
        };
        (answer, a)
    }

    #[test]
    fn a_true_answer_passes_and_altered_ones_fail() {
        let checker = AnswerChecker::new(log_key().verifier_key());
        let (good, leaf) = answer(&log_key());
        assert_eq!(checker.check(&good), Ok(leaf));
        // Cached checkpoint, wrong index: the proof must still be checked.
        let mut moved = good.clone();
        moved.index = 1;
        assert!(checker.check(&moved).is_err());
        let mut bad_proof = good.clone();
        bad_proof.inclusion_proof = vec![leaf.0.to_vec()];
        assert!(checker.check(&bad_proof).is_err());
        let mut short = good;
        short.leaf_hash.pop();
        assert!(checker.check(&short).is_err());
        let stranger = SigningKey::from_seed("log.example/test", [8; 32]).unwrap();
        assert!(checker.check(&answer(&stranger).0).is_err());
    }

    #[test]
    fn served_entries_must_be_the_submitted_events_at_their_index() {
        let key = SigningKey::from_seed("submitter", [3; 32]).unwrap();
        let signed: Vec<_> = (0..2)
            .map(|n| {
                sign_event(
                    &key,
                    &Event {
                        occurred_at: Some(prost_types::Timestamp {
                            seconds: n,
                            nanos: 0,
                        }),
                        kind: Some(Kind::DataFlow(DataFlow::default())),
                    },
                )
            })
            .collect();
        let at = prost_types::Timestamp::default();
        let entries: Vec<Vec<u8>> = signed.iter().map(|s| encode_entry(s, at)).collect();
        let ids: Vec<_> = signed.iter().map(event_id).collect();
        let ack = |index: u64, event: usize| Ack {
            index,
            leaf: leaf_hash(&entries[event]),
            event,
        };
        let served: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();

        let mut check = EntryCheck::new(vec![ack(1, 1), ack(0, 0)], ids.clone());
        assert_eq!(check.bundles(), vec![0]);
        check.visit(0, &served);
        assert!(check.finish().is_empty());

        // The log proved event 0 at index 1, but serves event 1 there.
        let mut check = EntryCheck::new(vec![ack(1, 0)], ids.clone());
        check.visit(0, &served);
        assert_eq!(check.finish().len(), 1);

        // An acknowledged index whose bundle was never served.
        let mut check = EntryCheck::new(vec![ack(0, 0), ack(300, 1)], ids);
        assert_eq!(check.bundles(), vec![0, 1]);
        check.visit(0, &served);
        assert_eq!(check.finish().len(), 1);
    }
}
