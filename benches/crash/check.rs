//! The checks on a restarted, quiescent server, against the book:
//!
//! - the tree rebuilt from the tiles has the signed root (`tiles`), and
//!   gRPC serves the same checkpoint as `/checkpoint`;
//! - every acknowledged event is at the index it was given, with the leaf
//!   hash that was proven;
//! - every entry is one of the run's events, and none is there twice;
//! - every checkpoint ever handed out is signed by the log, no larger than
//!   the current tree, and proven consistent with it (RFC 9162 §2.1.4);
//! - at the end, every event sent was acknowledged and the log holds
//!   exactly the acknowledged events.

use super::book::{to_hash, Ack, HandedOut};
use super::server::Server;
use super::shared::Shared;
use super::tiles::rebuild_from_tiles;
use crate::http::HttpLog;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tonic::transport::Channel;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::{decode_entry, event_id};
use verifier::merkle::{leaf_hash, verify_consistency};
use verifier::proto::log_client::LogClient;
use verifier::proto::{GetCheckpointRequest, GetConsistencyProofRequest};

/// How many consistency proofs a check requests at once.
const PROOFS_IN_FLIGHT: usize = 16;

/// Checks `server`, start number `start`, running and quiescent, against
/// everything handed out, and returns its tree size. With `last`, also
/// requires that every event sent was acknowledged and the log holds
/// exactly the run's acknowledged events.
pub(super) async fn check(
    server: &Server,
    start: u64,
    shared: &Arc<Shared>,
    last: bool,
) -> Result<u64, String> {
    let http = HttpLog::new(&server.url())?;
    let log_key = shared.log_key.clone();
    let (signed, entries) =
        tokio::task::spawn_blocking(move || rebuild_from_tiles(&http, &log_key))
            .await
            .expect("reading the tiles")?;
    let current = signed.checkpoint.clone();
    let mut log = LogClient::connect(server.url())
        .await
        .map_err(|e| format!("cannot connect over gRPC: {e}"))?;
    let grpc_note = log
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(|e| format!("GetCheckpoint failed: {e}"))?
        .into_inner()
        .checkpoint;
    if grpc_note.as_bytes() != signed.note {
        return Err(format!(
            "GetCheckpoint and /checkpoint disagree on a quiescent server:\n{grpc_note}\nversus\n{}",
            signed.note_text()
        ));
    }

    // What was handed out, and the checkpoint the restart serves.
    let (acks, checkpoints) = {
        let mut book = shared.book();
        book.hand_out(current.size, current.root, signed.note_text(), start)
            .map_err(|seen| {
                format!(
                    "the served checkpoint for size {} has root {}, but start #{} handed out \
                     root {} for that size",
                    current.size, current.root, seen.start, seen.root
                )
            })?;
        let acks: Vec<(u64, Ack)> = book
            .acks
            .iter()
            .zip(0..)
            .filter_map(|(a, n)| a.clone().map(|a| (n, a)))
            .collect();
        (acks, book.checkpoints.clone())
    };

    acknowledged_at_their_index(shared, &acks, &entries, current.size)?;
    each_entry_once(shared, &entries)?;
    if last {
        let book = shared.book();
        let unacknowledged: Vec<usize> = (0..shared.events.len())
            .filter(|&n| book.sent[n] && book.acks[n].is_none())
            .collect();
        if !unacknowledged.is_empty() {
            return Err(format!(
                "{} sent events were never acknowledged: {unacknowledged:?}",
                unacknowledged.len()
            ));
        }
        // Each entry is a distinct event of the run and each acknowledged
        // event is at its index, so equal counts mean the log holds exactly
        // the acknowledged events.
        if current.size != acks.len() as u64 {
            return Err(format!(
                "the log holds {} entries for {} acknowledged events",
                current.size,
                acks.len()
            ));
        }
    }

    // Every checkpoint handed out is signed and extended by this tree.
    for (size, handed) in &checkpoints {
        let verified =
            SignedCheckpoint::verify(handed.note.as_bytes(), &shared.log_key).map_err(|e| {
                format!("the checkpoint handed out for size {size} does not verify: {e}")
            })?;
        if verified.checkpoint.size != *size || verified.checkpoint.root != handed.root {
            return Err(format!(
                "the book's checkpoint for size {size} is mislabelled"
            ));
        }
        if *size > current.size {
            return Err(format!(
                "rolled back: start #{} handed out a checkpoint for size {size}, but the log now \
                 serves size {}",
                handed.start, current.size
            ));
        }
    }
    prove_consistency(&log, &checkpoints, &current).await?;
    Ok(current.size)
}

/// Every acknowledged event is in `entries` (the log of `size`) at its
/// index, and hashes to the leaf its answer proved.
fn acknowledged_at_their_index(
    shared: &Shared,
    acks: &[(u64, Ack)],
    entries: &[Vec<u8>],
    size: u64,
) -> Result<(), String> {
    for (n, ack) in acks {
        let entry = entries.get(ack.index as usize).ok_or_else(|| {
            format!(
                "event {n}, acknowledged at index {} by start #{}, is lost: the log has {size} \
                 entries",
                ack.index, ack.start
            )
        })?;
        let decoded = decode_entry(entry).map_err(|e| {
            format!(
                "index {} (event {n}, acknowledged by start #{}): not a log entry: {e}",
                ack.index, ack.start
            )
        })?;
        if decoded.signed_event.as_ref() != Some(&shared.events[*n as usize]) {
            let found = decoded
                .signed_event
                .as_ref()
                .and_then(|s| shared.ids.get(&event_id(s)));
            return Err(format!(
                "index {} holds {}, not event {n}, which start #{} acknowledged there",
                ack.index,
                found.map_or("an event nobody submitted".into(), |m| format!("event {m}")),
                ack.start
            ));
        }
        if leaf_hash(entry) != ack.leaf {
            return Err(format!(
                "index {} holds event {n} but its leaf hash is {}, not the acknowledged {}",
                ack.index,
                leaf_hash(entry),
                ack.leaf
            ));
        }
    }
    Ok(())
}

/// Every entry is one of the run's events, and none is there twice.
fn each_entry_once(shared: &Shared, entries: &[Vec<u8>]) -> Result<(), String> {
    let mut seen: HashMap<u64, u64> = HashMap::with_capacity(entries.len());
    for (index, entry) in (0u64..).zip(entries) {
        let decoded =
            decode_entry(entry).map_err(|e| format!("index {index}: not a log entry: {e}"))?;
        let signed = decoded
            .signed_event
            .ok_or_else(|| format!("index {index}: no signed event"))?;
        let n = *shared
            .ids
            .get(&event_id(&signed))
            .ok_or_else(|| format!("index {index} holds an event nobody submitted"))?;
        if let Some(first) = seen.insert(n, index) {
            return Err(format!(
                "event {n} is in the log twice, at indexes {first} and {index}: a resubmission \
                 after a kill was appended again instead of answered as a duplicate"
            ));
        }
    }
    Ok(())
}

/// Requests and verifies, several at a time, a consistency proof from every
/// handed-out checkpoint to `current` (RFC 9162 §2.1.4.2).
async fn prove_consistency(
    log: &LogClient<Channel>,
    checkpoints: &BTreeMap<u64, HandedOut>,
    current: &Checkpoint,
) -> Result<(), String> {
    let mut olds = checkpoints.iter().map(|(&size, h)| (size, h.root, h.start));
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PROOFS_IN_FLIGHT {
            let Some((old_size, old_root, start)) = olds.next() else {
                break;
            };
            let mut log = log.clone();
            let (new_size, new_root) = (current.size, current.root);
            running.spawn(async move {
                let proof = log
                    .get_consistency_proof(GetConsistencyProofRequest { old_size, new_size })
                    .await
                    .map_err(|e| {
                        format!(
                            "GetConsistencyProof from {old_size} (handed out by start #{start}) \
                             to {new_size} failed: {e}"
                        )
                    })?
                    .into_inner()
                    .proof;
                let proof = proof
                    .iter()
                    .map(|h| to_hash(h))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        format!("a consistency proof hash from {old_size} is not 32 bytes")
                    })?;
                verify_consistency(&proof, old_size, old_root, new_size, new_root).map_err(|e| {
                    format!(
                        "the tree of size {new_size} does not extend the checkpoint for size \
                         {old_size} handed out by start #{start}: {e}"
                    )
                })
            });
        }
        match running.join_next().await {
            Some(done) => done.expect("a consistency check task")?,
            None => return Ok(()),
        }
    }
}
