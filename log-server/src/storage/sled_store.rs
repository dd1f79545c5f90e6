//! The second embedded backend: sled 0.34, one tree per table.
//!
//! Keys are big-endian so sled's byte order is index order and a range of
//! entries is one ordered scan. A commit is one multi-tree transaction,
//! which holds sled's global write lock, so a point read sees all of a
//! batch or none of it; entries below the stored size never change, so a
//! scan of them is stable too.

use std::fmt::Display;
use std::path::Path;

use sled::transaction::{
    abort, ConflictableTransactionResult, TransactionError, TransactionalTree,
};
use sled::{Db, IVec, Transactional, Tree};

use super::checks;
use super::{digest_prefix, Batch, Digest, LookupRow, Storage, StorageError};

/// `meta` key of the tree size, a big-endian `u64`.
const SIZE: &[u8] = b"size";
/// `meta` key of the latest signed checkpoint note.
const CHECKPOINT: &[u8] = b"checkpoint";
/// `meta` key of how many leading entries have lookup rows, a big-endian
/// `u64`; absent (0) in a store written before lookups existed.
const LOOKUPS_THROUGH: &[u8] = b"lookup_rows_through";

/// The log stored in a sled directory, kept as a second embedded backend
/// so the storage choice stays a measured one rather than a default.
pub struct SledStorage {
    db: Db,
    entries: Tree,
    tiles: Tree,
    events: Tree,
    leaves: Tree,
    lookups: Tree,
    meta: Tree,
}

impl SledStorage {
    /// Opens the sled directory at `path`, creating it if missing, and
    /// opens every tree up front so commits and reads never create one.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(super::CACHE_BYTES as u64)
            .open()
            .map_err(backend("open sled database"))?;
        let tree = |name: &str| db.open_tree(name).map_err(backend("open tree"));
        Ok(Self {
            entries: tree("entries")?,
            tiles: tree("tiles")?,
            events: tree("event_prefixes")?,
            leaves: tree("leaf_prefixes")?,
            lookups: tree("lookup_prefixes")?,
            meta: tree("meta")?,
            db,
        })
    }
}

impl Storage for SledStorage {
    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        checks::check_shape(batch)?;
        let trees = (
            &self.entries,
            &self.tiles,
            &self.events,
            &self.leaves,
            &self.lookups,
            &self.meta,
        );
        trees
            .transaction(|(entries, tiles, events, leaves, lookups, meta)| {
                let stored = stored_u64(meta, SIZE, "tree size")?;
                checks::check_order(batch, stored).or_else(abort)?;
                let size = checks::new_size(batch).or_else(abort)?;
                if size > stored {
                    let through = stored_u64(meta, LOOKUPS_THROUGH, "lookup marker")?;
                    checks::check_lookup_marker(through, stored).or_else(abort)?;
                    meta.insert(LOOKUPS_THROUGH, &size.to_be_bytes()[..])?;
                }
                let first = batch.first_index;
                for (index, entry) in (first..).zip(&batch.entries) {
                    entries.insert(&index.to_be_bytes()[..], entry.as_slice())?;
                }
                for tile in &batch.tiles {
                    tiles.insert(tile_key(tile.level, tile.index), tile.hashes.as_slice())?;
                }
                write_index(events, first, &batch.event_ids)?;
                write_index(leaves, first, &batch.leaf_hashes)?;
                write_lookup_rows(lookups, &batch.lookup_rows)?;
                meta.insert(SIZE, &size.to_be_bytes()[..])?;
                meta.insert(CHECKPOINT, batch.checkpoint.as_slice())?;
                Ok(())
            })
            .map_err(transaction_error)?;
        self.db.flush().map_err(backend("flush commit"))?;
        Ok(())
    }

    fn size(&self) -> Result<u64, StorageError> {
        let size = self.meta.get(SIZE).map_err(backend("read tree size"))?;
        size.map_or(Ok(0), |bytes| checks::decode_u64(&bytes, "tree size"))
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let note = self
            .meta
            .get(CHECKPOINT)
            .map_err(backend("read checkpoint"))?;
        Ok(note.map(|bytes| bytes.to_vec()))
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let key = tile_key(level, index);
        let tile = self.tiles.get(key).map_err(backend("read tile"))?;
        tile.map(|bytes| checks::decode_tile(&bytes)).transpose()
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let range = self.entries.range(start.to_be_bytes()..end.to_be_bytes());
        let mut out = Vec::new();
        for (expected, item) in (start..).zip(range) {
            let (key, bytes) = item.map_err(backend("read entry"))?;
            let index = checks::decode_u64(&key, "entry key")?;
            checks::check_next_index(expected, index)?;
            out.push(bytes.to_vec());
        }
        Ok(out)
    }

    fn event_candidates(&self, event_id: &Digest) -> Result<Vec<u64>, StorageError> {
        candidates(&self.events, event_id)
    }

    fn leaf_candidates(&self, leaf_hash: &Digest) -> Result<Vec<u64>, StorageError> {
        candidates(&self.leaves, leaf_hash)
    }

    fn lookup_candidates(
        &self,
        key: &Digest,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let start = index_key(key, from);
        let end = index_key(key, u64::MAX);
        self.lookups
            .range(start..=end)
            .take(limit)
            .map(|row| {
                let (key, _) = row.map_err(backend("read lookups"))?;
                checks::decode_u64(key.get(8..).unwrap_or_default(), "lookup key")
            })
            .collect()
    }

    fn lookup_rows_through(&self) -> Result<u64, StorageError> {
        let marker = self
            .meta
            .get(LOOKUPS_THROUGH)
            .map_err(backend("read lookup marker"))?;
        marker.map_or(Ok(0), |bytes| checks::decode_u64(&bytes, "lookup marker"))
    }

    fn add_lookup_rows(&self, rows: &[LookupRow], through: u64) -> Result<(), StorageError> {
        (&self.lookups, &self.meta)
            .transaction(|(lookups, meta)| {
                let size = stored_u64(meta, SIZE, "tree size")?;
                let marker = stored_u64(meta, LOOKUPS_THROUGH, "lookup marker")?;
                checks::check_added_rows(rows, marker, through, size).or_else(abort)?;
                write_lookup_rows(lookups, rows)?;
                meta.insert(LOOKUPS_THROUGH, &through.to_be_bytes()[..])?;
                Ok(())
            })
            .map_err(transaction_error)?;
        self.db.flush().map_err(backend("flush lookup rows"))?;
        Ok(())
    }

    #[cfg(test)]
    fn forget_lookup_rows(&self) -> Result<(), StorageError> {
        self.lookups.clear().map_err(backend("clear lookups"))?;
        self.meta
            .remove(LOOKUPS_THROUGH)
            .map_err(backend("remove lookup marker"))?;
        Ok(())
    }
}

/// A big-endian `u64` from `meta` (0 when absent) as seen by the running
/// transaction, so the checks it feeds and the writes they guard are
/// serialised with every other commit.
fn stored_u64(
    meta: &TransactionalTree,
    key: &[u8],
    what: &str,
) -> ConflictableTransactionResult<u64, StorageError> {
    match meta.get(key)? {
        Some(bytes) => checks::decode_u64(&bytes, what).or_else(abort),
        None => Ok(0),
    }
}

fn write_lookup_rows(
    tree: &TransactionalTree,
    rows: &[LookupRow],
) -> ConflictableTransactionResult<(), StorageError> {
    for row in rows {
        tree.insert(&index_key(&row.key, row.index)[..], &[][..])?;
    }
    Ok(())
}

fn write_index(
    tree: &TransactionalTree,
    first_index: u64,
    digests: &[Digest],
) -> ConflictableTransactionResult<(), StorageError> {
    for (index, digest) in (first_index..).zip(digests) {
        tree.insert(&index_key(digest, index)[..], &[][..])?;
    }
    Ok(())
}

/// The digest's prefix then the entry index, both big-endian, so one
/// prefix's rows are adjacent and in index order; the value is empty.
fn index_key(digest: &Digest, index: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&digest_prefix(digest).to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The indexes stored under `digest`'s prefix in a prefix index.
fn candidates(tree: &Tree, digest: &Digest) -> Result<Vec<u64>, StorageError> {
    let prefix = digest_prefix(digest).to_be_bytes();
    tree.scan_prefix(prefix)
        .map(|row| {
            let (key, _) = row.map_err(backend("read index"))?;
            checks::decode_u64(key.get(8..).unwrap_or_default(), "index key")
        })
        .collect()
}

/// One byte of level then the big-endian index, so a level's tiles sort
/// together and in index order.
fn tile_key(level: u8, index: u64) -> IVec {
    let mut key = Vec::with_capacity(9);
    key.push(level);
    key.extend_from_slice(&index.to_be_bytes());
    IVec::from(key)
}

/// Passes a batch's own refusal through unchanged and labels sled's.
fn transaction_error(err: TransactionError<StorageError>) -> StorageError {
    match err {
        TransactionError::Abort(refusal) => refusal,
        TransactionError::Storage(err) => backend("commit batch")(err),
    }
}

/// Wraps a sled error with what the store was doing, so the operator sees
/// which step failed and not only sled's message.
fn backend<E: Display>(context: &'static str) -> impl FnOnce(E) -> StorageError {
    move |err| StorageError::Backend(format!("sled: {context}: {err}"))
}
