//! Exact event-id lookups over the storage's prefix index.
//!
//! The store keeps only an 8-byte prefix of each event id (see
//! [`crate::storage::PREFIX_LEN`]), and it does not know how an event id
//! is derived, so the confirmation lives here: each candidate's stored
//! entry is decoded and its event id recomputed. Candidates other than
//! the match are rare (a prefix collision), so a lookup costs one index
//! read plus one entry read when the event is there.

use verifier::event::{decode_entry, event_id};

use crate::storage::{Digest, Storage, StorageError};

/// The index of the logged entry whose event id is `id`, if any.
pub fn index_of_event(storage: &dyn Storage, id: &Digest) -> Result<Option<u64>, StorageError> {
    for index in storage.event_candidates(id)? {
        if stored_event_id(storage, index)? == *id {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// The event id of stored entry `index`, recomputed from its bytes.
fn stored_event_id(storage: &dyn Storage, index: u64) -> Result<Digest, StorageError> {
    let entries = storage.entries(index, index + 1)?;
    let bytes = entries.first().ok_or_else(|| {
        StorageError::Corrupt(format!("event index names entry {index}, which is missing"))
    })?;
    let entry = decode_entry(bytes)
        .map_err(|e| StorageError::Corrupt(format!("entry {index} does not decode: {e}")))?;
    let signed = entry
        .signed_event
        .ok_or_else(|| StorageError::Corrupt(format!("entry {index} has no signed event")))?;
    Ok(event_id(&signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Backend, Batch};
    use verifier::event::encode_entry;
    use verifier::proto::SignedEvent;
    use verifier::tile_builder::BuiltTile;

    /// A stored-shape signed event; the lookup never checks signatures.
    fn signed(text: &str) -> SignedEvent {
        SignedEvent {
            event: text.as_bytes().to_vec(),
            key_id: "submitter+01020304".to_owned(),
            signature: vec![7; 64],
        }
    }

    #[test]
    fn a_shared_prefix_is_resolved_against_the_stored_entry() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Backend::Redb.open(dir.path()).unwrap();
        let (first, second) = (signed("first"), signed("second"));
        let first_id = event_id(&first);
        let mut impostor = first_id;
        impostor[31] ^= 1;
        let entries: Vec<_> = [&first, &second]
            .map(|s| encode_entry(s, prost_types::Timestamp::default()))
            .into();
        let leaves: Vec<_> = entries
            .iter()
            .map(|e| verifier::merkle::leaf_hash(e).0)
            .collect();
        storage
            .commit(&Batch {
                first_index: 0,
                entries,
                // The second entry is indexed under the first's prefix, as a
                // prefix collision would index it.
                event_ids: vec![first_id, impostor],
                tiles: vec![BuiltTile {
                    level: 0,
                    index: 0,
                    hashes: leaves.concat(),
                }],
                leaf_hashes: leaves,
                lookup_rows: Vec::new(),
                checkpoint: b"checkpoint\n".to_vec(),
            })
            .unwrap();

        assert_eq!(storage.event_candidates(&first_id).unwrap(), [0, 1]);
        assert_eq!(index_of_event(&*storage, &first_id).unwrap(), Some(0));
        assert_eq!(index_of_event(&*storage, &impostor).unwrap(), None);
        assert_eq!(index_of_event(&*storage, &event_id(&second)).unwrap(), None);
    }
}
