//! Checks shared by every backend, so that both refuse exactly the same
//! batches and flag exactly the same stored bytes as corrupt.

use super::{Batch, LookupRow, StorageError};

/// Bytes in one hash.
const HASH_LEN: usize = 32;
/// Hashes in a full tile (C2SP tile height 8).
const TILE_WIDTH: usize = 256;

/// Refuses a batch whose own fields disagree, before any transaction
/// starts, so a malformed batch costs no I/O and leaves nothing behind.
pub(super) fn check_shape(batch: &Batch) -> Result<(), StorageError> {
    if batch.event_ids.len() != batch.entries.len() {
        return Err(StorageError::MalformedBatch(
            "event_ids and entries have different lengths",
        ));
    }
    if batch.leaf_hashes.len() != batch.entries.len() {
        return Err(StorageError::MalformedBatch(
            "leaf_hashes and entries have different lengths",
        ));
    }
    let end = new_size(batch)?;
    if !rows_within(&batch.lookup_rows, batch.first_index, end) {
        return Err(StorageError::MalformedBatch(
            "a lookup row names an entry outside the batch",
        ));
    }
    if batch.checkpoint.is_empty() {
        return Err(StorageError::MalformedBatch("batch has no checkpoint"));
    }
    if !batch.tiles.iter().all(|tile| is_tile(&tile.hashes)) {
        return Err(StorageError::MalformedBatch(
            "tile is not 1 to 256 whole hashes",
        ));
    }
    Ok(())
}

/// Whether every row names an entry in `start..end`.
pub(super) fn rows_within(rows: &[LookupRow], start: u64, end: u64) -> bool {
    rows.iter().all(|row| (start..end).contains(&row.index))
}

/// Refuses to append to a log whose stored entries do not all have their
/// lookup rows: the new entries' rows would land past a hole nobody
/// would ever fill.
pub(super) fn check_lookup_marker(through: u64, size: u64) -> Result<(), StorageError> {
    if through == size {
        Ok(())
    } else {
        Err(StorageError::LookupRowsBehind { through, size })
    }
}

/// Refuses lookup rows that do not extend the marker exactly as
/// [`Storage::add_lookup_rows`](super::Storage::add_lookup_rows) requires.
pub(super) fn check_added_rows(
    rows: &[LookupRow],
    marker: u64,
    through: u64,
    size: u64,
) -> Result<(), StorageError> {
    if through < marker || through > size {
        return Err(StorageError::MalformedBatch(
            "lookup rows must end between the marker and the tree size",
        ));
    }
    if !rows_within(rows, marker, through) {
        return Err(StorageError::MalformedBatch(
            "a lookup row names an entry outside the rows being added",
        ));
    }
    Ok(())
}

/// The tree size after `batch`, refusing sizes a `u64` cannot hold rather
/// than wrapping to a small size that would overwrite old entries.
pub(super) fn new_size(batch: &Batch) -> Result<u64, StorageError> {
    u64::try_from(batch.entries.len())
        .ok()
        .and_then(|len| batch.first_index.checked_add(len))
        .ok_or(StorageError::MalformedBatch(
            "batch overflows the tree size",
        ))
}

/// Refuses a batch that does not extend the stored log exactly, so a
/// replayed or skipped batch can never overwrite or leave a hole.
pub(super) fn check_order(batch: &Batch, stored: u64) -> Result<(), StorageError> {
    if batch.first_index == stored {
        Ok(())
    } else {
        Err(StorageError::OutOfOrder {
            batch: batch.first_index,
            stored,
        })
    }
}

/// Decodes a stored big-endian `u64`, so a truncated or padded value is
/// reported as corruption instead of read as a wrong number.
pub(super) fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(what, bytes.len()))
}

/// Returns a stored tile only if it has a tile's shape, so a damaged value
/// is never served as if it were hashes.
pub(super) fn decode_tile(bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
    if is_tile(bytes) {
        Ok(bytes.to_vec())
    } else {
        Err(corrupt("hash tile", bytes.len()))
    }
}

/// Confirms a range read returned the index it should have next, so a hole
/// in the stored entries fails loudly instead of shifting later entries.
pub(super) fn check_next_index(expected: u64, found: u64) -> Result<(), StorageError> {
    if expected == found {
        Ok(())
    } else {
        Err(StorageError::Corrupt(format!(
            "expected entry {expected} but found entry {found}"
        )))
    }
}

fn is_tile(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len().is_multiple_of(HASH_LEN)
        && bytes.len() <= HASH_LEN * TILE_WIDTH
}

fn corrupt(what: &str, len: usize) -> StorageError {
    StorageError::Corrupt(format!("{what} value has unexpected length {len}"))
}
