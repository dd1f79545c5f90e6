//! The sequencer: the log's single writer.
//!
//! One thread owns the right edge of the tree. It takes validated
//! submissions from a bounded queue, cuts a batch when the queue is empty,
//! the batch is full, or the batch delay has passed, and then, for the
//! whole batch:
//!
//! 1. drops duplicates (already stored, or twice in the batch);
//! 2. assigns indexes, encodes the leaves and extends the hash tiles;
//! 3. signs one checkpoint for the new size;
//! 4. commits entries, tiles, indexes (lookup rows included) and checkpoint
//!    in one durable write;
//! 5. publishes the checkpoint and answers every caller.
//!
//! Nothing is answered before step 4 returns, so no caller is ever told
//! about an entry that a crash could lose, and no checkpoint is published
//! that the log could not serve after a restart. Concurrency is safe by
//! construction: only this thread writes.
//!
//! Errors are sorted by what should happen next. A full queue is pushback
//! (the caller retries). A failed commit fails only its own batch: the tree
//! edge is rolled back to what storage holds. If storage then disagrees
//! with the edge (a write that "failed" yet landed), the sequencer stops
//! for good rather than sign a tree it cannot vouch for.

use crate::event_index::index_of_event;
use crate::log::{Log, Published};
use crate::lookup::rows_of;
use crate::storage::{Batch, Storage};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use verifier::checkpoint::Checkpoint;
use verifier::keys::SigningKey;
use verifier::merkle::{leaf_hash, Hash};
use verifier::proto::SignedEvent;
use verifier::tile_builder::TileBuilder;

/// How the sequencer cuts batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// The most entries in one batch (one commit, one checkpoint).
    pub max_entries: usize,
    /// How long a batch may wait for more submissions after its first.
    /// Zero means "take what is queued and go": under load, submissions
    /// queue up during each commit, so batches grow by themselves.
    pub max_delay: Duration,
    /// How many submissions may wait in the queue before new ones are
    /// refused with pushback.
    pub queue_capacity: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            max_entries: 4096,
            max_delay: Duration::ZERO,
            queue_capacity: 65_536,
        }
    }
}

/// A validated submission waiting for its index.
pub struct Submission {
    /// The accepted signed event.
    pub signed: SignedEvent,
    /// Its deduplication id (`verifier::event::event_id`).
    pub event_id: [u8; 32],
    /// Where to send the outcome.
    pub reply: oneshot::Sender<Result<Sequenced, SequenceError>>,
}

/// Where a submission landed.
#[derive(Debug, Clone)]
pub struct Sequenced {
    /// Its index in the log.
    pub index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// A published checkpoint whose tree includes it.
    pub checkpoint: Arc<Published>,
    /// Whether it was already in the log.
    pub duplicate: bool,
}

/// Why a submission was not sequenced.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// The queue is full: retry later.
    #[error("the log's queue is full; retry later")]
    QueueFull,
    /// The sequencer is shutting down or has stopped after a storage fault.
    #[error("the log is not accepting submissions: {0}")]
    Unavailable(String),
}

/// The submitting side of the sequencer, shared by every request handler.
pub struct Sequencer {
    queue: Mutex<Option<SyncSender<Submission>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sequencer {
    /// Starts the sequencer thread for `log`, resuming from `builder`,
    /// which must describe exactly the stored tree.
    pub fn start(
        log: Arc<Log>,
        builder: TileBuilder,
        key: SigningKey,
        policy: BatchPolicy,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(policy.queue_capacity);
        let writer = Writer {
            log,
            builder,
            key,
            policy,
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || writer.run(rx))
            .expect("spawning the sequencer thread");
        Self {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues a submission without waiting: a full queue is refused at once.
    pub fn submit(&self, submission: Submission) -> Result<(), SequenceError> {
        let queue = self.queue.lock().expect("queue lock poisoned");
        let Some(tx) = queue.as_ref() else {
            return Err(SequenceError::Unavailable("shutting down".into()));
        };
        tx.try_send(submission).map_err(|e| match e {
            TrySendError::Full(_) => SequenceError::QueueFull,
            TrySendError::Disconnected(_) => {
                SequenceError::Unavailable("the sequencer has stopped".into())
            }
        })
    }

    /// Stops taking submissions, lets the sequencer integrate everything
    /// already queued, and waits for it to finish.
    pub fn shutdown(&self) {
        self.queue.lock().expect("queue lock poisoned").take();
        if let Some(thread) = self.thread.lock().expect("thread lock poisoned").take() {
            if thread.join().is_err() {
                tracing::error!("the sequencer thread panicked");
            }
        }
    }
}

/// The state owned by the sequencer thread.
struct Writer {
    log: Arc<Log>,
    builder: TileBuilder,
    key: SigningKey,
    policy: BatchPolicy,
}

/// One submission's place in a batch being integrated.
enum Slot {
    /// New: the entry at this position of the batch.
    New(usize),
    /// A repeat of the entry at this position of the batch.
    Repeat(usize),
    /// Already stored at this index.
    Stored(u64),
}

impl Writer {
    fn run(mut self, rx: Receiver<Submission>) {
        while let Some(batch) = self.next_batch(&rx) {
            if let Err(fatal) = self.integrate(batch) {
                tracing::error!(error = %fatal, "sequencer stopped: storage no longer matches the tree it signed");
                return;
            }
        }
        tracing::info!(size = self.builder.size(), "sequencer drained and stopped");
    }

    /// Waits for a first submission, then gathers a batch per the policy.
    /// `None` once the queue is closed and empty.
    fn next_batch(&self, rx: &Receiver<Submission>) -> Option<Vec<Submission>> {
        let first = rx.recv().ok()?;
        let deadline = Instant::now() + self.policy.max_delay;
        let mut batch = vec![first];
        while batch.len() < self.policy.max_entries {
            let next = match rx.try_recv() {
                Ok(s) => Ok(s),
                Err(_) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            match next {
                Ok(s) => batch.push(s),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        Some(batch)
    }

    /// Integrates one batch. `Err` only when the sequencer must stop.
    fn integrate(&mut self, batch: Vec<Submission>) -> Result<(), String> {
        let storage = Arc::clone(self.log.storage());
        let before = self.builder.clone();
        let (slots, new_batch) = match self.prepare(&*storage, &batch) {
            Ok(prepared) => prepared,
            Err(e) => {
                fail_all(batch, &format!("storage read failed: {e}"));
                return Err(e.to_string());
            }
        };
        let published = if new_batch.entries.is_empty() {
            self.log.latest()
        } else {
            if let Err(e) = storage.commit(&new_batch) {
                tracing::error!(error = %e, entries = new_batch.entries.len(), "batch commit failed");
                self.builder = before;
                fail_all(batch, &format!("storage write failed: {e}"));
                return match storage.size() {
                    Ok(size) if size == self.builder.size() => Ok(()),
                    Ok(size) => Err(format!(
                        "storage holds {size} entries, the tree edge {}",
                        self.builder.size()
                    )),
                    Err(e) => Err(e.to_string()),
                };
            }
            let published = Arc::new(Published {
                note: String::from_utf8(new_batch.checkpoint.clone())
                    .expect("signed notes are UTF-8"),
                size: self.builder.size(),
                root: self.builder.root(),
            });
            self.log.publish((*published).clone());
            published
        };
        for (submission, slot) in batch.into_iter().zip(slots) {
            let at = |i: usize| {
                (
                    new_batch.first_index + i as u64,
                    Hash(new_batch.leaf_hashes[i]),
                )
            };
            let landed = match slot {
                Slot::New(i) => Ok((at(i), false)),
                Slot::Repeat(i) => Ok((at(i), true)),
                Slot::Stored(index) => {
                    stored_leaf_hash(&*storage, index).map(|h| ((index, h), true))
                }
            };
            let answer = landed.map(|((index, leaf_hash), duplicate)| Sequenced {
                index,
                leaf_hash,
                checkpoint: Arc::clone(&published),
                duplicate,
            });
            let _ = submission.reply.send(answer);
        }
        Ok(())
    }

    /// Assigns every submission a slot and builds the storage batch,
    /// advancing the tree edge.
    fn prepare(
        &mut self,
        storage: &dyn Storage,
        batch: &[Submission],
    ) -> Result<(Vec<Slot>, Batch), crate::storage::StorageError> {
        let first_index = self.builder.size();
        let accepted_at = prost_types::Timestamp::from(SystemTime::now());
        let mut new = Batch {
            first_index,
            ..Batch::default()
        };
        let mut in_batch: HashMap<[u8; 32], usize> = HashMap::new();
        let mut slots = Vec::with_capacity(batch.len());
        for submission in batch {
            if let Some(&i) = in_batch.get(&submission.event_id) {
                slots.push(Slot::Repeat(i));
                continue;
            }
            if let Some(index) = index_of_event(storage, &submission.event_id)? {
                slots.push(Slot::Stored(index));
                continue;
            }
            let entry = verifier::event::encode_entry(&submission.signed, accepted_at);
            let leaf = leaf_hash(&entry);
            self.builder.append(leaf);
            let position = new.entries.len();
            in_batch.insert(submission.event_id, position);
            new.entries.push(entry);
            new.event_ids.push(submission.event_id);
            new.leaf_hashes.push(leaf.0);
            new.lookup_rows
                .extend(rows_of(&submission.signed, first_index + position as u64));
            slots.push(Slot::New(position));
        }
        new.tiles = self.builder.take_changed();
        if !new.entries.is_empty() {
            new.checkpoint = self.sign_checkpoint();
        }
        Ok((slots, new))
    }

    fn sign_checkpoint(&self) -> Vec<u8> {
        Checkpoint {
            origin: self.key.name().to_owned(),
            size: self.builder.size(),
            root: self.builder.root(),
        }
        .sign(&self.key)
    }
}

/// The leaf hash of a stored entry, for answering a duplicate.
fn stored_leaf_hash(storage: &dyn Storage, index: u64) -> Result<Hash, SequenceError> {
    let entries = storage
        .entries(index, index + 1)
        .map_err(|e| SequenceError::Unavailable(format!("storage read failed: {e}")))?;
    let entry = entries
        .first()
        .ok_or_else(|| SequenceError::Unavailable(format!("entry {index} is missing")))?;
    Ok(leaf_hash(entry))
}

fn fail_all(batch: Vec<Submission>, reason: &str) {
    for submission in batch {
        let _ = submission
            .reply
            .send(Err(SequenceError::Unavailable(reason.to_owned())));
    }
}
