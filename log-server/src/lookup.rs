//! Finding entries by what they are about: an artifact digest, a flow id
//! or a submitter key.
//!
//! Each entry gets one lookup row per key it has: its submitter's, and its
//! release's artifact digest or its flow's id. A key is stored as
//! [`LookupKey::digest`], so all three kinds share one index and cannot be
//! mistaken for each other:
//!
//! ```text
//! SHA-256(0x00 || "tlog.v1 lookup\n" || kind || "\n" || value)
//! ```
//!
//! with kind `artifact` (value: the 32 raw digest bytes), `flow` (the flow
//! id's UTF-8) or `submitter` (the key id's UTF-8). The leading 0x00 is
//! there because the digest is computed with `verifier::merkle::leaf_hash`,
//! the SHA-256 the server already links; the context string alone separates
//! it from real leaf hashes, which are never looked up in this index.
//!
//! Storage keeps only a prefix of the digest, so [`find`] confirms every
//! candidate by decoding the stored entry and recomputing its keys: a
//! prefix collision, honest or crafted, never yields a wrong answer.
//!
//! A store written before this index existed has no rows;
//! [`build_missing_rows`] adds them on start-up in bounded, individually
//! committed steps, each moving the store's marker, so a crash in the
//! middle resumes where it stopped and the work is done once.

use prost::Message as _;
use verifier::event::decode_entry;
use verifier::proto::{event::Kind, Event, SignedEvent};

use crate::storage::{Digest, LookupRow, Storage, StorageError};

/// The context string every lookup key digest starts with.
const LOOKUP_CONTEXT: &[u8] = b"tlog.v1 lookup\n";

/// Entries read and indexed per committed step of [`build_missing_rows`]:
/// enough to amortise the fsync, few enough that memory stays flat.
const REBUILD_STEP: u64 = 16_384;

/// Candidate rows read from storage per step of [`find`].
const CANDIDATE_STEP: usize = 256;

/// Something an entry is about, by which it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupKey {
    /// A code release's artifact SHA-256.
    Artifact([u8; 32]),
    /// A data flow's `flow_id`.
    Flow(String),
    /// The submitter's key id, `<name>+<8 hex digits>`.
    Submitter(String),
}

impl LookupKey {
    /// The digest the index stores this key under (see the module docs).
    pub fn digest(&self) -> Digest {
        let (kind, value): (&[u8], &[u8]) = match self {
            LookupKey::Artifact(digest) => (b"artifact", digest),
            LookupKey::Flow(id) => (b"flow", id.as_bytes()),
            LookupKey::Submitter(key_id) => (b"submitter", key_id.as_bytes()),
        };
        let message = [LOOKUP_CONTEXT, kind, b"\n", value].concat();
        verifier::merkle::leaf_hash(&message).0
    }
}

/// The keys a signed event can be found by: its submitter, and its
/// artifact digest or flow id. An event that does not decode (the log
/// never admits one) has only its submitter key, both when it is indexed
/// and when it is confirmed, so the two always agree.
pub fn keys_of(signed: &SignedEvent) -> Vec<LookupKey> {
    let mut keys = vec![LookupKey::Submitter(signed.key_id.clone())];
    match Event::decode(signed.event.as_slice()).map(|e| e.kind) {
        Ok(Some(Kind::CodeRelease(release))) => {
            if let Ok(digest) = <[u8; 32]>::try_from(release.artifact_sha256.as_slice()) {
                keys.push(LookupKey::Artifact(digest));
            }
        }
        Ok(Some(Kind::DataFlow(flow))) => keys.push(LookupKey::Flow(flow.flow_id)),
        Ok(None) | Err(_) => {}
    }
    keys
}

/// The lookup rows of entry `index`, whose submission is `signed`.
pub fn rows_of(signed: &SignedEvent, index: u64) -> impl Iterator<Item = LookupRow> {
    keys_of(signed).into_iter().map(move |key| LookupRow {
        key: key.digest(),
        index,
    })
}

/// The keys of stored entry bytes.
fn keys_of_entry(index: u64, bytes: &[u8]) -> Result<Vec<LookupKey>, StorageError> {
    let entry = decode_entry(bytes)
        .map_err(|e| StorageError::Corrupt(format!("entry {index} does not decode: {e}")))?;
    let signed = entry
        .signed_event
        .ok_or_else(|| StorageError::Corrupt(format!("entry {index} has no signed event")))?;
    Ok(keys_of(&signed))
}

/// One page of entries found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The matching entries, as (index, entry bytes), in index order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Where the next page starts, if this one stopped before the end.
    pub next: Option<u64>,
}

/// The entries with `key` among indexes `from..below`, in index order: at
/// most `limit` of them and, past the first, no more than `max_bytes` of
/// entry bytes in all. Every result is confirmed against its stored entry.
pub fn find(
    storage: &dyn Storage,
    key: &LookupKey,
    below: u64,
    from: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Found, StorageError> {
    let digest = key.digest();
    let mut found = Vec::new();
    let mut bytes = 0;
    let mut cursor = from;
    while cursor < below {
        let candidates = storage.lookup_candidates(&digest, cursor, CANDIDATE_STEP)?;
        for &index in &candidates {
            if index >= below {
                return Ok(Found {
                    entries: found,
                    next: None,
                });
            }
            let entry = stored_entry(storage, index)?;
            if !keys_of_entry(index, &entry)?.contains(key) {
                continue;
            }
            let full =
                found.len() >= limit || (!found.is_empty() && bytes + entry.len() > max_bytes);
            if full {
                return Ok(Found {
                    entries: found,
                    next: Some(index),
                });
            }
            bytes += entry.len();
            found.push((index, entry));
        }
        match candidates.last() {
            Some(&last) if candidates.len() == CANDIDATE_STEP => cursor = last + 1,
            _ => break,
        }
    }
    Ok(Found {
        entries: found,
        next: None,
    })
}

fn stored_entry(storage: &dyn Storage, index: u64) -> Result<Vec<u8>, StorageError> {
    storage.entries(index, index + 1)?.pop().ok_or_else(|| {
        StorageError::Corrupt(format!(
            "lookup index names entry {index}, which is missing"
        ))
    })
}

/// Adds the lookup rows of every stored entry that has none (a store
/// written before lookups existed), [`REBUILD_STEP`] entries per commit.
/// Returns how many entries it indexed: 0 when the store was up to date.
pub fn build_missing_rows(storage: &dyn Storage) -> Result<u64, StorageError> {
    let size = storage.size()?;
    let start = storage.lookup_rows_through()?;
    let mut through = start;
    while through < size {
        let end = size.min(through + REBUILD_STEP);
        let mut rows = Vec::new();
        for (index, bytes) in (through..).zip(storage.entries(through, end)?) {
            let keys = keys_of_entry(index, &bytes)?;
            rows.extend(keys.iter().map(|key| LookupRow {
                key: key.digest(),
                index,
            }));
        }
        storage.add_lookup_rows(&rows, end)?;
        tracing::info!(through = end, size, "built lookup rows");
        through = end;
    }
    Ok(size - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Backend, Batch};
    use crate::test_events::{flow, release};
    use verifier::event::{encode_entry, sign_event};
    use verifier::keys::SigningKey;

    fn submitter(seed: u8) -> SigningKey {
        SigningKey::from_seed(&format!("submitter-{seed}"), [seed; 32]).unwrap()
    }

    /// Commits `events`, signed by the given submitters, as one batch
    /// after `first` stored entries; `with_rows` false writes them as a
    /// store from before lookups would have.
    fn commit(storage: &dyn Storage, first: u64, events: &[(&SigningKey, Event)], with_rows: bool) {
        let mut batch = Batch {
            first_index: first,
            checkpoint: b"checkpoint\n".to_vec(),
            ..Batch::default()
        };
        for ((key, event), index) in events.iter().zip(first..) {
            let signed = sign_event(key, event);
            let entry = encode_entry(&signed, prost_types::Timestamp::default());
            batch.event_ids.push(verifier::event::event_id(&signed));
            batch
                .leaf_hashes
                .push(verifier::merkle::leaf_hash(&entry).0);
            batch.entries.push(entry);
            if with_rows {
                batch.lookup_rows.extend(rows_of(&signed, index));
            }
        }
        storage.commit(&batch).unwrap();
    }

    fn indexes(found: &Found) -> Vec<u64> {
        found.entries.iter().map(|(index, _)| *index).collect()
    }

    #[test]
    fn key_kinds_never_share_a_digest() {
        let same = "a".repeat(32);
        let digests = [
            LookupKey::Artifact(same.as_bytes().try_into().unwrap()).digest(),
            LookupKey::Flow(same.clone()).digest(),
            LookupKey::Submitter(same).digest(),
        ];
        assert_ne!(digests[0], digests[1]);
        assert_ne!(digests[1], digests[2]);
        assert_ne!(digests[0], digests[2]);
    }

    #[test]
    fn each_key_finds_exactly_its_entries_and_pages() {
        for backend in [Backend::Redb, Backend::Sled] {
            let dir = tempfile::tempdir().unwrap();
            let storage = backend.open(dir.path()).unwrap();
            let (alice, bob) = (submitter(1), submitter(2));
            commit(
                &*storage,
                0,
                &[
                    (&alice, release([7; 32])),
                    (&bob, flow("run-1")),
                    (&alice, release([8; 32])),
                    (&alice, release([7; 32])),
                    (&bob, flow("run-2")),
                ],
                true,
            );
            let find_all = |key: &LookupKey| find(&*storage, key, 5, 0, 100, usize::MAX).unwrap();
            assert_eq!(indexes(&find_all(&LookupKey::Artifact([7; 32]))), [0, 3]);
            assert_eq!(indexes(&find_all(&LookupKey::Flow("run-2".into()))), [4]);
            let alice_key = LookupKey::Submitter(alice.key_id());
            assert_eq!(indexes(&find_all(&alice_key)), [0, 2, 3]);
            assert_eq!(find_all(&LookupKey::Artifact([9; 32])).entries, []);

            let page = find(&*storage, &alice_key, 5, 0, 2, usize::MAX).unwrap();
            assert_eq!((indexes(&page), page.next), (vec![0, 2], Some(3)));
            let rest = find(&*storage, &alice_key, 5, 3, 2, usize::MAX).unwrap();
            assert_eq!((indexes(&rest), rest.next), (vec![3], None));
            let older = find(&*storage, &alice_key, 3, 0, 100, usize::MAX).unwrap();
            assert_eq!(indexes(&older), [0, 2], "entries past `below` are left out");
            let small = find(&*storage, &alice_key, 5, 0, 100, 1).unwrap();
            assert_eq!(
                (indexes(&small), small.next),
                (vec![0], Some(2)),
                "a byte budget still returns one entry"
            );
            let entry = &find_all(&LookupKey::Flow("run-1".into())).entries[0];
            let signed = decode_entry(&entry.1).unwrap().signed_event.unwrap();
            assert_eq!(signed.key_id, bob.key_id());
        }
    }

    #[test]
    fn a_row_under_a_colliding_prefix_is_not_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Backend::Redb.open(dir.path()).unwrap();
        let alice = submitter(1);
        let target = LookupKey::Artifact([7; 32]);
        let signed = sign_event(&alice, &release([8; 32]));
        let entry = encode_entry(&signed, prost_types::Timestamp::default());
        let mut colliding = target.digest();
        colliding[31] ^= 1;
        storage
            .commit(&Batch {
                first_index: 0,
                event_ids: vec![verifier::event::event_id(&signed)],
                leaf_hashes: vec![verifier::merkle::leaf_hash(&entry).0],
                entries: vec![entry],
                // Indexed under the target's prefix, as a collision would be.
                lookup_rows: vec![LookupRow {
                    key: colliding,
                    index: 0,
                }],
                checkpoint: b"checkpoint\n".to_vec(),
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            storage.lookup_candidates(&target.digest(), 0, 10).unwrap(),
            [0]
        );
        assert_eq!(
            find(&*storage, &target, 1, 0, 10, usize::MAX)
                .unwrap()
                .entries,
            []
        );
    }

    #[test]
    fn an_old_store_gets_its_rows_once_resuming_and_can_then_grow() {
        for backend in [Backend::Redb, Backend::Sled] {
            let dir = tempfile::tempdir().unwrap();
            let storage = backend.open(dir.path()).unwrap();
            let alice = submitter(1);
            let old: Vec<_> = (0..5u8).map(|i| (&alice, release([i; 32]))).collect();
            commit(&*storage, 0, &old, true);
            storage.forget_lookup_rows().unwrap();
            let artifact = LookupKey::Artifact([3; 32]);
            assert_eq!(
                find(&*storage, &artifact, 5, 0, 10, usize::MAX)
                    .unwrap()
                    .entries,
                []
            );
            let err = storage
                .commit(&Batch {
                    first_index: 5,
                    checkpoint: b"checkpoint\n".to_vec(),
                    entries: vec![b"x".to_vec()],
                    event_ids: vec![[1; 32]],
                    leaf_hashes: vec![[2; 32]],
                    ..Batch::default()
                })
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::LookupRowsBehind {
                        through: 0,
                        size: 5
                    }
                ),
                "{err}"
            );

            // A rebuild that stopped after two entries, as a crash would
            // leave it, resumes from there after a restart.
            let first_two: Vec<_> = storage
                .entries(0, 2)
                .unwrap()
                .iter()
                .zip(0..)
                .flat_map(|(bytes, index)| {
                    let signed = decode_entry(bytes).unwrap().signed_event.unwrap();
                    rows_of(&signed, index).collect::<Vec<_>>()
                })
                .collect();
            storage.add_lookup_rows(&first_two, 2).unwrap();
            drop(storage);
            let storage = backend.open(dir.path()).unwrap();
            assert_eq!(storage.lookup_rows_through().unwrap(), 2);
            assert_eq!(build_missing_rows(&*storage).unwrap(), 3);
            assert_eq!(build_missing_rows(&*storage).unwrap(), 0, "done once");
            assert_eq!(storage.lookup_rows_through().unwrap(), 5);
            for i in 0..5u8 {
                let key = LookupKey::Artifact([i; 32]);
                let found = find(&*storage, &key, 5, 0, 10, usize::MAX).unwrap();
                assert_eq!(indexes(&found), [u64::from(i)]);
            }
            let all = find(
                &*storage,
                &LookupKey::Submitter(alice.key_id()),
                5,
                0,
                10,
                usize::MAX,
            );
            assert_eq!(indexes(&all.unwrap()), [0, 1, 2, 3, 4]);
            commit(&*storage, 5, &[(&alice, release([9; 32]))], true);
            let new = find(
                &*storage,
                &LookupKey::Artifact([9; 32]),
                6,
                0,
                10,
                usize::MAX,
            );
            assert_eq!(indexes(&new.unwrap()), [5]);
        }
    }
}
