//! The `FindEntries` rpc: entries by artifact digest, flow id or
//! submitter, each with its inclusion proof, a page at a time.
//!
//! Kept apart from the gRPC plumbing so the whole answer, from the raw
//! request to the response, is a plain function over a [`Log`].

use tonic::Status;
use verifier::event::MAX_TEXT_LEN;
use verifier::keys::{is_key_id, MAX_KEY_ID_LEN};
use verifier::proto::{
    find_entries_request::Key, FindEntriesRequest, FindEntriesResponse, FoundEntry,
};

use crate::grpc::read_status;
use crate::log::{Log, ReadError};
use crate::lookup::{find, LookupKey};

/// The most entries one page holds, whatever the request's `limit`.
pub const MAX_FIND_LIMIT: u32 = 1000;

/// Entry bytes one page may carry past its first entry: with the proofs,
/// a page stays well under gRPC's default 4 MiB message limit.
const MAX_PAGE_ENTRY_BYTES: usize = 2 << 20;

/// Answers a `FindEntries` request from `log`.
pub fn find_entries(log: &Log, request: FindEntriesRequest) -> Result<FindEntriesResponse, Status> {
    let key = lookup_key(request.key)?;
    let latest = log.latest();
    let tree_size = if request.tree_size == 0 {
        latest.size
    } else {
        request.tree_size
    };
    if tree_size > latest.size {
        return Err(Status::out_of_range(format!(
            "tree_size: {tree_size} is beyond the latest checkpoint's size {}",
            latest.size
        )));
    }
    let limit = match request.limit {
        0 => MAX_FIND_LIMIT,
        limit => limit.min(MAX_FIND_LIMIT),
    };
    let found = find(
        &**log.storage(),
        &key,
        tree_size,
        request.start_index,
        limit as usize,
        MAX_PAGE_ENTRY_BYTES,
    )
    .map_err(|e| read_status(e.into()))?;
    let entries = found
        .entries
        .into_iter()
        .map(|(index, data)| {
            let (leaf, proof) = log.inclusion_proof(index, tree_size)?;
            Ok(FoundEntry {
                index,
                data,
                leaf_hash: leaf.0.to_vec(),
                inclusion_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            })
        })
        .collect::<Result<_, ReadError>>()
        .map_err(read_status)?;
    Ok(FindEntriesResponse {
        entries,
        tree_size,
        checkpoint: latest.note.clone(),
        next_start_index: found.next.unwrap_or(0),
    })
}

/// The request's key, or INVALID_ARGUMENT naming the field.
fn lookup_key(key: Option<Key>) -> Result<LookupKey, Status> {
    match key {
        None => Err(Status::invalid_argument(
            "key: set artifact_sha256, flow_id or submitter_key_id",
        )),
        Some(Key::ArtifactSha256(digest)) => {
            let digest = digest.as_slice().try_into().map_err(|_| {
                Status::invalid_argument(format!(
                    "artifact_sha256: {} bytes; a SHA-256 digest is 32",
                    digest.len()
                ))
            })?;
            Ok(LookupKey::Artifact(digest))
        }
        Some(Key::FlowId(id)) if id.is_empty() => {
            Err(Status::invalid_argument("flow_id: must not be empty"))
        }
        Some(Key::FlowId(id)) if id.len() > MAX_TEXT_LEN => Err(Status::invalid_argument(format!(
            "flow_id: {} bytes; at most {MAX_TEXT_LEN}",
            id.len()
        ))),
        Some(Key::FlowId(id)) => Ok(LookupKey::Flow(id)),
        Some(Key::SubmitterKeyId(key_id)) if is_key_id(&key_id) => Ok(LookupKey::Submitter(key_id)),
        Some(Key::SubmitterKeyId(key_id)) if key_id.len() > MAX_KEY_ID_LEN => {
            Err(Status::invalid_argument(format!(
                "submitter_key_id: {} bytes; a key id is at most {MAX_KEY_ID_LEN}",
                key_id.len()
            )))
        }
        Some(Key::SubmitterKeyId(key_id)) => Err(Status::invalid_argument(format!(
            "submitter_key_id: {key_id:?} is not <name>+<8 hex digits>"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Published;
    use crate::storage::{Backend, Batch, Storage};
    use crate::test_events::{flow, release};
    use std::sync::Arc;
    use tonic::Code;
    use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
    use verifier::event::{encode_entry, event_id, sign_event};
    use verifier::keys::SigningKey;
    use verifier::merkle::{leaf_hash, verify_inclusion, Hash};
    use verifier::proto::Event;
    use verifier::tile_builder::TileBuilder;

    /// A log of `events` in a temporary directory, as the sequencer would
    /// have written it, with its key.
    struct Fixture {
        _dir: tempfile::TempDir,
        log: Log,
        key: SigningKey,
    }

    fn fixture(events: &[(&SigningKey, Event)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Backend::Redb.open(dir.path()).unwrap().into();
        let key = SigningKey::from_seed("log.example/find", [9; 32]).unwrap();
        let mut builder = TileBuilder::new();
        let mut batch = Batch::default();
        for ((submitter, event), index) in events.iter().zip(0..) {
            let signed = sign_event(submitter, event);
            let entry = encode_entry(&signed, prost_types::Timestamp::default());
            let leaf = leaf_hash(&entry);
            builder.append(leaf);
            batch.event_ids.push(event_id(&signed));
            batch.leaf_hashes.push(leaf.0);
            batch
                .lookup_rows
                .extend(crate::lookup::rows_of(&signed, index));
            batch.entries.push(entry);
        }
        batch.tiles = builder.take_changed();
        let checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size: builder.size(),
            root: builder.root(),
        };
        batch.checkpoint = checkpoint.sign(&key);
        storage.commit(&batch).unwrap();
        let published = Published {
            note: String::from_utf8(batch.checkpoint).unwrap(),
            size: checkpoint.size,
            root: checkpoint.root,
        };
        Fixture {
            _dir: dir,
            log: Log::new(storage, published),
            key,
        }
    }

    fn request(key: Key) -> FindEntriesRequest {
        FindEntriesRequest {
            key: Some(key),
            ..FindEntriesRequest::default()
        }
    }

    /// Checks every result's proof against the response's checkpoint and
    /// returns the indexes found.
    fn verified_indexes(fixture: &Fixture, response: &FindEntriesResponse) -> Vec<u64> {
        let signed =
            SignedCheckpoint::verify(response.checkpoint.as_bytes(), &fixture.key.verifier_key())
                .unwrap();
        assert_eq!(signed.checkpoint.size, response.tree_size);
        response
            .entries
            .iter()
            .map(|found| {
                let leaf = leaf_hash(&found.data);
                assert_eq!(leaf.0.as_slice(), found.leaf_hash);
                let proof: Vec<Hash> = found
                    .inclusion_proof
                    .iter()
                    .map(|h| Hash(h.as_slice().try_into().unwrap()))
                    .collect();
                verify_inclusion(
                    &proof,
                    found.index,
                    response.tree_size,
                    leaf,
                    signed.checkpoint.root,
                )
                .unwrap();
                found.index
            })
            .collect()
    }

    #[test]
    fn finds_by_each_key_with_proofs_that_verify() {
        let alice = SigningKey::from_seed("alice", [1; 32]).unwrap();
        let bob = SigningKey::from_seed("bob", [2; 32]).unwrap();
        let fixture = fixture(&[
            (&alice, release([7; 32])),
            (&bob, flow("run-1")),
            (&alice, release([8; 32])),
            (&bob, release([7; 32])),
        ]);
        let find = |key| find_entries(&fixture.log, request(key)).unwrap();
        let by_artifact = find(Key::ArtifactSha256(vec![7; 32]));
        assert_eq!(verified_indexes(&fixture, &by_artifact), [0, 3]);
        assert_eq!(by_artifact.next_start_index, 0);
        let by_flow = find(Key::FlowId("run-1".into()));
        assert_eq!(verified_indexes(&fixture, &by_flow), [1]);
        let by_submitter = find(Key::SubmitterKeyId(bob.key_id()));
        assert_eq!(verified_indexes(&fixture, &by_submitter), [1, 3]);
        assert!(find(Key::ArtifactSha256(vec![9; 32])).entries.is_empty());
        assert!(find(Key::FlowId("run-2".into())).entries.is_empty());
    }

    #[test]
    fn pages_and_older_tree_sizes() {
        let alice = SigningKey::from_seed("alice", [1; 32]).unwrap();
        let events: Vec<_> = (0..5).map(|_| (&alice, release([7; 32]))).collect();
        let fixture = fixture(&events);
        let key = Key::SubmitterKeyId(alice.key_id());
        let first = find_entries(
            &fixture.log,
            FindEntriesRequest {
                limit: 2,
                ..request(key.clone())
            },
        )
        .unwrap();
        assert_eq!(verified_indexes(&fixture, &first), [0, 1]);
        assert_eq!(first.next_start_index, 2);
        let rest = find_entries(
            &fixture.log,
            FindEntriesRequest {
                start_index: first.next_start_index,
                ..request(key.clone())
            },
        )
        .unwrap();
        assert_eq!(verified_indexes(&fixture, &rest), [2, 3, 4]);
        assert_eq!(rest.next_start_index, 0);
        let older = find_entries(
            &fixture.log,
            FindEntriesRequest {
                tree_size: 3,
                ..request(key.clone())
            },
        )
        .unwrap();
        assert_eq!(older.tree_size, 3);
        assert_eq!(
            older.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let beyond = find_entries(
            &fixture.log,
            FindEntriesRequest {
                tree_size: 6,
                ..request(key)
            },
        )
        .unwrap_err();
        assert_eq!(beyond.code(), Code::OutOfRange);
        assert!(
            beyond.message().starts_with("tree_size:"),
            "{}",
            beyond.message()
        );
    }

    #[test]
    fn a_malformed_key_names_its_field() {
        let alice = SigningKey::from_seed("alice", [1; 32]).unwrap();
        let fixture = fixture(&[(&alice, release([7; 32]))]);
        let cases = [
            (None, "key:"),
            (Some(Key::ArtifactSha256(vec![7; 31])), "artifact_sha256:"),
            (Some(Key::FlowId(String::new())), "flow_id:"),
            (
                Some(Key::SubmitterKeyId("alice".into())),
                "submitter_key_id:",
            ),
            (
                Some(Key::SubmitterKeyId("alice+0102030G".into())),
                "submitter_key_id:",
            ),
            (
                Some(Key::SubmitterKeyId(format!("{}+01020304", "a".repeat(300)))),
                "submitter_key_id: 309 bytes",
            ),
            (Some(Key::FlowId("f".repeat(1025))), "flow_id: 1025 bytes"),
        ];
        for (key, field) in cases {
            let request = FindEntriesRequest {
                key,
                ..FindEntriesRequest::default()
            };
            let status = find_entries(&fixture.log, request).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{field}");
            assert!(status.message().starts_with(field), "{}", status.message());
        }
    }
}
