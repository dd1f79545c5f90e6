//! The default backend: one redb file, one write transaction per batch.
//!
//! redb gives copy-on-write MVCC, so readers work on a snapshot and never
//! wait for the sequencer, and a commit with `Durability::Immediate` is on
//! disk when it returns.

use std::fmt::Display;
use std::path::Path;

use redb::{
    Database, Durability, Key, ReadableDatabase, ReadableTable, TableDefinition, Value,
    WriteTransaction,
};

use super::checks;
use super::{digest_prefix, Batch, Digest, LookupRow, Storage, StorageError, TileWrite};

/// Entry bytes by index.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Tile hashes by (level, index).
const TILES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tiles");
/// (event id prefix, entry index), see [`super::PREFIX_LEN`].
const EVENTS: TableDefinition<(u64, u64), ()> = TableDefinition::new("event_prefixes");
/// (leaf hash prefix, entry index), see [`super::PREFIX_LEN`].
const LEAVES: TableDefinition<(u64, u64), ()> = TableDefinition::new("leaf_prefixes");
/// (lookup key prefix, entry index), see [`super::LookupRow`].
const LOOKUPS: TableDefinition<(u64, u64), ()> = TableDefinition::new("lookup_prefixes");
/// Tree size and checkpoint, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// `META` key of the tree size, a big-endian `u64`.
const SIZE: &str = "size";
/// `META` key of the latest signed checkpoint note.
const CHECKPOINT: &str = "checkpoint";
/// `META` key of how many leading entries have lookup rows, a big-endian
/// `u64`; absent (0) in a store written before lookups existed.
const LOOKUPS_THROUGH: &str = "lookup_rows_through";

/// The log stored in a single redb file, the default backend because its
/// snapshot reads never block the sequencer and each commit is one fsync'd
/// transaction.
pub struct RedbStorage {
    db: Database,
}

impl RedbStorage {
    /// Opens the redb file at `path`, creating it if missing, and creates
    /// every table up front so readers of a new log see empty tables
    /// rather than "table does not exist" errors.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = redb::Builder::new()
            .set_cache_size(super::CACHE_BYTES)
            .create(path)
            .map_err(backend("open redb database"))?;
        let txn = db.begin_write().map_err(backend("begin table setup"))?;
        create_table(&txn, ENTRIES)?;
        create_table(&txn, TILES)?;
        create_table(&txn, EVENTS)?;
        create_table(&txn, LEAVES)?;
        create_table(&txn, LOOKUPS)?;
        create_table(&txn, META)?;
        txn.commit().map_err(backend("commit table setup"))?;
        Ok(Self { db })
    }

    /// Reads one value from a fresh snapshot.
    fn get<K, V, T>(
        &self,
        table: TableDefinition<K, V>,
        key: K::SelfType<'_>,
        decode: impl FnOnce(V::SelfType<'_>) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError>
    where
        K: Key + 'static,
        V: Value + 'static,
    {
        let txn = self.db.begin_read().map_err(backend("begin read"))?;
        let table = txn.open_table(table).map_err(backend("open table"))?;
        let value = table.get(key).map_err(backend("read value"))?;
        value.map(|guard| decode(guard.value())).transpose()
    }

    /// The indexes stored under `digest`'s prefix in a prefix index.
    fn candidates(
        &self,
        table: TableDefinition<(u64, u64), ()>,
        digest: &Digest,
    ) -> Result<Vec<u64>, StorageError> {
        let prefix = digest_prefix(digest);
        let txn = self.db.begin_read().map_err(backend("begin read"))?;
        let table = txn.open_table(table).map_err(backend("open index"))?;
        let rows = table
            .range((prefix, 0)..=(prefix, u64::MAX))
            .map_err(backend("read index"))?;
        rows.map(|row| {
            let (key, _) = row.map_err(backend("read index row"))?;
            Ok(key.value().1)
        })
        .collect()
    }
}

impl Storage for RedbStorage {
    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        checks::check_shape(batch)?;
        let mut txn = self.db.begin_write().map_err(backend("begin commit"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("set commit durability"))?;
        // On error `txn` is dropped uncommitted, which aborts it.
        apply(&txn, batch)?;
        txn.commit().map_err(backend("commit batch"))
    }

    fn size(&self) -> Result<u64, StorageError> {
        Ok(self
            .get(META, SIZE, |bytes| checks::decode_u64(bytes, "tree size"))?
            .unwrap_or(0))
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(META, CHECKPOINT, |bytes| Ok(bytes.to_vec()))
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(TILES, (level, index), checks::decode_tile)
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(backend("begin read"))?;
        let table = txn.open_table(ENTRIES).map_err(backend("open entries"))?;
        let range = table.range(start..end).map_err(backend("read entries"))?;
        let mut out = Vec::new();
        for (expected, item) in (start..).zip(range) {
            let (index, bytes) = item.map_err(backend("read entry"))?;
            checks::check_next_index(expected, index.value())?;
            out.push(bytes.value().to_vec());
        }
        Ok(out)
    }

    fn event_candidates(&self, event_id: &Digest) -> Result<Vec<u64>, StorageError> {
        self.candidates(EVENTS, event_id)
    }

    fn leaf_candidates(&self, leaf_hash: &Digest) -> Result<Vec<u64>, StorageError> {
        self.candidates(LEAVES, leaf_hash)
    }

    fn lookup_candidates(
        &self,
        key: &Digest,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let prefix = digest_prefix(key);
        let txn = self.db.begin_read().map_err(backend("begin read"))?;
        let table = txn.open_table(LOOKUPS).map_err(backend("open lookups"))?;
        let rows = table
            .range((prefix, from)..=(prefix, u64::MAX))
            .map_err(backend("read lookups"))?;
        rows.take(limit)
            .map(|row| {
                let (key, _) = row.map_err(backend("read lookup row"))?;
                Ok(key.value().1)
            })
            .collect()
    }

    fn lookup_rows_through(&self) -> Result<u64, StorageError> {
        Ok(self
            .get(META, LOOKUPS_THROUGH, |bytes| {
                checks::decode_u64(bytes, "lookup marker")
            })?
            .unwrap_or(0))
    }

    fn add_lookup_rows(&self, rows: &[LookupRow], through: u64) -> Result<(), StorageError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(backend("begin lookup rows"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend("set commit durability"))?;
        {
            let mut meta = txn.open_table(META).map_err(backend("open meta"))?;
            let size = read_u64(&meta, SIZE, "tree size")?;
            let marker = read_u64(&meta, LOOKUPS_THROUGH, "lookup marker")?;
            checks::check_added_rows(rows, marker, through, size)?;
            write_lookup_rows(&txn, rows)?;
            meta.insert(LOOKUPS_THROUGH, through.to_be_bytes().as_slice())
                .map_err(backend("write lookup marker"))?;
        }
        txn.commit().map_err(backend("commit lookup rows"))
    }

    #[cfg(test)]
    fn forget_lookup_rows(&self) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(backend("begin forget"))?;
        txn.delete_table(LOOKUPS)
            .map_err(backend("delete lookups"))?;
        create_table(&txn, LOOKUPS)?;
        txn.open_table(META)
            .map_err(backend("open meta"))?
            .remove(LOOKUPS_THROUGH)
            .map_err(backend("remove lookup marker"))?;
        txn.commit().map_err(backend("commit forget"))
    }
}

/// A big-endian `u64` from `META`, 0 when absent.
fn read_u64(meta: &redb::Table<&str, &[u8]>, key: &str, what: &str) -> Result<u64, StorageError> {
    match meta.get(key).map_err(backend("read meta"))? {
        Some(bytes) => checks::decode_u64(bytes.value(), what),
        None => Ok(0),
    }
}

fn write_lookup_rows(txn: &WriteTransaction, rows: &[LookupRow]) -> Result<(), StorageError> {
    let mut table = txn.open_table(LOOKUPS).map_err(backend("open lookups"))?;
    for row in rows {
        table
            .insert((digest_prefix(&row.key), row.index), ())
            .map_err(backend("write lookup row"))?;
    }
    Ok(())
}

/// Writes `batch` into `txn` after checking it extends the stored log.
/// The check runs inside the write transaction, which redb holds
/// exclusively, so no other commit can change the size in between.
fn apply(txn: &WriteTransaction, batch: &Batch) -> Result<(), StorageError> {
    let mut meta = txn.open_table(META).map_err(backend("open meta"))?;
    let stored = read_u64(&meta, SIZE, "tree size")?;
    checks::check_order(batch, stored)?;
    let size = checks::new_size(batch)?;
    if size > stored {
        let through = read_u64(&meta, LOOKUPS_THROUGH, "lookup marker")?;
        checks::check_lookup_marker(through, stored)?;
        meta.insert(LOOKUPS_THROUGH, size.to_be_bytes().as_slice())
            .map_err(backend("write lookup marker"))?;
    }
    write_entries(txn, batch)?;
    write_tiles(txn, &batch.tiles)?;
    write_index(txn, EVENTS, batch.first_index, &batch.event_ids)?;
    write_index(txn, LEAVES, batch.first_index, &batch.leaf_hashes)?;
    write_lookup_rows(txn, &batch.lookup_rows)?;
    meta.insert(SIZE, size.to_be_bytes().as_slice())
        .map_err(backend("write tree size"))?;
    meta.insert(CHECKPOINT, batch.checkpoint.as_slice())
        .map_err(backend("write checkpoint"))?;
    Ok(())
}

fn write_entries(txn: &WriteTransaction, batch: &Batch) -> Result<(), StorageError> {
    let mut table = txn.open_table(ENTRIES).map_err(backend("open entries"))?;
    for (index, entry) in (batch.first_index..).zip(&batch.entries) {
        table
            .insert(index, entry.as_slice())
            .map_err(backend("write entry"))?;
    }
    Ok(())
}

fn write_tiles(txn: &WriteTransaction, tiles: &[TileWrite]) -> Result<(), StorageError> {
    let mut table = txn.open_table(TILES).map_err(backend("open tiles"))?;
    for tile in tiles {
        table
            .insert((tile.level, tile.index), tile.hashes.as_slice())
            .map_err(backend("write tile"))?;
    }
    Ok(())
}

fn write_index(
    txn: &WriteTransaction,
    definition: TableDefinition<(u64, u64), ()>,
    first_index: u64,
    digests: &[Digest],
) -> Result<(), StorageError> {
    let mut table = txn.open_table(definition).map_err(backend("open index"))?;
    for (index, digest) in (first_index..).zip(digests) {
        table
            .insert((digest_prefix(digest), index), ())
            .map_err(backend("write index"))?;
    }
    Ok(())
}

fn create_table<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<(), StorageError> {
    txn.open_table(definition)
        .map(drop)
        .map_err(backend("create table"))
}

/// Wraps a redb error with what the store was doing, so the operator sees
/// which step failed and not only redb's message.
fn backend<E: Display>(context: &'static str) -> impl FnOnce(E) -> StorageError {
    move |err| StorageError::Backend(format!("redb: {context}: {err}"))
}
