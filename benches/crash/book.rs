//! The book: everything the clients were told, which the checks after each
//! restart hold the log to.
//!
//! An answer enters the book only once it verifies: its checkpoint is
//! signed by the log and its inclusion proof leads from its leaf hash to
//! that checkpoint's root. The book refuses on the spot what no restart
//! can explain: an event acknowledged twice, an index given to two events,
//! `duplicate` on a first submission, and two roots for one tree size.

use std::collections::{BTreeMap, HashMap};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::keys::VerifierKey;
use verifier::merkle::{verify_inclusion, Hash};
use verifier::proto::AppendResponse;

/// What one acknowledgement told its client.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    /// The index the event was given.
    pub(super) index: u64,
    /// The leaf hash proven at that index.
    pub(super) leaf: Hash,
    /// The start that answered.
    pub(super) start: u64,
}

/// A signed checkpoint that some answer carried, or that a restart served.
#[derive(Debug, Clone)]
pub(super) struct HandedOut {
    /// The signed note, as handed out.
    pub(super) note: String,
    /// Its root.
    pub(super) root: Hash,
    /// The start that handed it out first.
    pub(super) start: u64,
}

/// Everything the clients were told, and how often each event was sent.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// By event number.
    pub(super) acks: Vec<Option<Ack>>,
    /// By event number: how many times it was sent, not counting
    /// pushbacks.
    pub(super) attempts: Vec<u32>,
    /// By event number: whether it was ever sent.
    pub(super) sent: Vec<bool>,
    /// Acknowledged index to event number.
    by_index: HashMap<u64, u64>,
    /// By tree size.
    pub(super) checkpoints: BTreeMap<u64, HandedOut>,
    /// Resubmissions answered `duplicate`.
    pub(super) duplicates: u64,
    /// Unary `Append` calls answered.
    pub(super) unary_calls: u64,
    /// `AppendBatch` calls answered.
    pub(super) batch_calls: u64,
    /// Events pushed back with `RESOURCE_EXHAUSTED`.
    pub(super) pushbacks: u64,
}

/// A verified answer: the checkpoint it carried and the leaf it proved.
pub(super) struct Answer<'a> {
    /// The answer as received.
    pub(super) response: &'a AppendResponse,
    /// Its checkpoint, verified under the log key.
    pub(super) checkpoint: Checkpoint,
    /// Its leaf hash, proven included in that checkpoint.
    pub(super) leaf: Hash,
}

/// Verifies an append answer: a checkpoint signed by the log, and an
/// inclusion proof from the answer's leaf hash at its index to that
/// checkpoint's root (RFC 9162 §2.1.3.2).
pub(super) fn verify_answer<'a>(
    response: &'a AppendResponse,
    log_key: &VerifierKey,
) -> Result<Answer<'a>, String> {
    let signed = SignedCheckpoint::verify(response.checkpoint.as_bytes(), log_key)
        .map_err(|e| format!("the answer's checkpoint does not verify under the log key: {e}"))?;
    let checkpoint = signed.checkpoint;
    let leaf = to_hash(&response.leaf_hash)
        .ok_or_else(|| format!("a leaf hash of {} bytes", response.leaf_hash.len()))?;
    let proof = response
        .inclusion_proof
        .iter()
        .map(|h| to_hash(h))
        .collect::<Option<Vec<_>>>()
        .ok_or("an inclusion proof hash is not 32 bytes")?;
    verify_inclusion(
        &proof,
        response.index,
        checkpoint.size,
        leaf,
        checkpoint.root,
    )
    .map_err(|e| {
        format!(
            "the inclusion proof of index {} in checkpoint {} does not verify: {e}",
            response.index, checkpoint.size
        )
    })?;
    Ok(Answer {
        response,
        checkpoint,
        leaf,
    })
}

/// A 32-byte hash, or `None` for any other length.
pub(super) fn to_hash(bytes: &[u8]) -> Option<Hash> {
    Some(Hash(bytes.try_into().ok()?))
}

impl Book {
    /// An empty book for events `0..total`.
    pub(super) fn new(total: usize) -> Self {
        Self {
            acks: vec![None; total],
            attempts: vec![0; total],
            sent: vec![false; total],
            ..Self::default()
        }
    }

    /// Records that events `numbers` are being sent (again).
    pub(super) fn sending(&mut self, numbers: &[u64]) {
        for &n in numbers {
            self.attempts[n as usize] += 1;
            self.sent[n as usize] = true;
        }
    }

    /// Events refused with pushback were not sent to the sequencer: the
    /// attempt does not count.
    pub(super) fn pushed_back(&mut self, numbers: &[u64]) {
        self.pushbacks += numbers.len() as u64;
        for &n in numbers {
            self.attempts[n as usize] -= 1;
        }
    }

    /// Records the checkpoint `note` for `size` and `root`, handed out by
    /// `start`, unless one for that size is already recorded. A recorded
    /// one with another root means the log forked: it is returned.
    pub(super) fn hand_out(
        &mut self,
        size: u64,
        root: Hash,
        note: &str,
        start: u64,
    ) -> Result<(), HandedOut> {
        match self.checkpoints.get(&size) {
            Some(seen) if seen.root != root => Err(seen.clone()),
            Some(_) => Ok(()),
            None => {
                self.checkpoints.insert(
                    size,
                    HandedOut {
                        note: note.to_owned(),
                        root,
                        start,
                    },
                );
                Ok(())
            }
        }
    }

    /// Records the verified `answer` for event `number` from `start`, or
    /// says what makes it impossible.
    pub(super) fn acknowledge(
        &mut self,
        number: u64,
        start: u64,
        answer: &Answer<'_>,
    ) -> Result<(), String> {
        let index = answer.response.index;
        let duplicate = answer.response.duplicate;
        if duplicate && self.attempts[number as usize] < 2 {
            return Err(format!(
                "answered duplicate (index {index}) on its first submission"
            ));
        }
        if let Some(earlier) = &self.acks[number as usize] {
            return Err(format!(
                "acknowledged twice, at index {} by start #{} and now at index {index}",
                earlier.index, earlier.start
            ));
        }
        if let Some(&other) = self.by_index.get(&index) {
            return Err(format!(
                "index {index} was already acknowledged for event {other}"
            ));
        }
        let checkpoint = &answer.checkpoint;
        self.hand_out(
            checkpoint.size,
            checkpoint.root,
            &answer.response.checkpoint,
            start,
        )
        .map_err(|seen| {
            format!(
                "a checkpoint for size {} with root {} contradicts one with root {} handed out \
                 by start #{}: the log forked",
                checkpoint.size, checkpoint.root, seen.root, seen.start
            )
        })?;
        if duplicate {
            self.duplicates += 1;
        }
        self.by_index.insert(index, number);
        self.acks[number as usize] = Some(Ack {
            index,
            leaf: answer.leaf,
            start,
        });
        Ok(())
    }
}
