//! Durable storage for the log, behind one small trait.
//!
//! The sequencer is the only writer. It hands the store one [`Batch`] per
//! integration cycle, and [`Storage::commit`] makes the whole batch durable
//! in one atomic write: entries, hash tiles, every index row and the
//! signed checkpoint either all land or none do. Nothing is acknowledged to
//! a submitter before `commit` returns, so a crash can lose only work that
//! nobody was told about.
//!
//! Hashes are stored as C2SP tiles (height 8), keyed by (level, index), each
//! value the tile's concatenated 32-byte hashes. Serving a tile is one point
//! read, and any proof hash is derived from one tile, so a proof costs
//! O(log n) reads and the store never scans.
//!
//! The two lookup indexes (event id and leaf hash to entry index) key on
//! the first [`PREFIX_LEN`] bytes of the digest plus the index, with no
//! value: 16 bytes a row instead of 40, which keeps the indexes' B-trees
//! small enough to stay cached and the disk close to the entries' own
//! size. A prefix can match more than one entry (about once in 2^64 per
//! pair, or on purpose), so lookups return candidates and the caller
//! confirms the whole digest: [`Storage::index_of_leaf`] against the stored
//! leaf hashes, and `crate::event_index` against the stored entry.
//!
//! A third index, of [`LookupRow`]s, finds entries by what they are about
//! (an artifact digest, a flow id, a submitter; see `crate::lookup`). It
//! has the same (prefix, index) shape, and the same rule: rows are
//! candidates, which `crate::lookup` confirms against the decoded entry.
//! Stores written before it existed have no such rows, so the store keeps
//! a marker, [`Storage::lookup_rows_through`], of how many leading entries
//! have theirs, and refuses to append past entries that have none.
//!
//! Backends: [`redb`](RedbStorage), the default, and [`sled`](SledStorage),
//! kept as a second embedded option (see the README for the measurements
//! behind that choice). Both pass the same conformance tests.

mod checks;
mod redb_store;
mod sled_store;

#[cfg(test)]
mod conformance;

pub use redb_store::RedbStorage;
pub use sled_store::SledStorage;

use std::path::Path;

/// The page cache each backend may use. Both default to 1 GiB, which would
/// let the server's memory grow with the log; hot data (the right edge and
/// upper tiles) is small, so a fixed, modest cache keeps memory flat.
pub const CACHE_BYTES: usize = 64 << 20;

/// A 32-byte SHA-256 digest, as used for leaf hashes and event ids.
pub type Digest = [u8; 32];

/// Digest bytes the lookup indexes key on: enough that honest collisions
/// are negligible (a lookup confirms the full digest anyway), few enough
/// that an index row is 16 bytes.
pub const PREFIX_LEN: usize = 8;

/// The index key of a digest: its first [`PREFIX_LEN`] bytes, big-endian.
pub fn digest_prefix(digest: &Digest) -> u64 {
    let mut prefix = [0; PREFIX_LEN];
    prefix.copy_from_slice(&digest[..PREFIX_LEN]);
    u64::from_be_bytes(prefix)
}

/// One integration batch: everything that changes when the log grows from
/// `first_index` entries to `first_index + entries.len()`.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The tree size before this batch; the index of `entries[0]`.
    pub first_index: u64,
    /// The new entries' bytes, exactly as hashed into the tree.
    pub entries: Vec<Vec<u8>>,
    /// For each entry, the id the log deduplicates on (see
    /// `verifier::event::event_id`), in the same order as `entries`.
    pub event_ids: Vec<Digest>,
    /// For each entry, its RFC 9162 leaf hash, in the same order as `entries`.
    pub leaf_hashes: Vec<Digest>,
    /// The lookup rows of the new entries: any number per entry, each
    /// naming an index in this batch.
    pub lookup_rows: Vec<LookupRow>,
    /// Every hash tile the batch created or extended, each written whole.
    pub tiles: Vec<TileWrite>,
    /// The signed checkpoint note for the new tree size.
    pub checkpoint: Vec<u8>,
}

/// One row of the lookup index: entry `index` may be found under `key`,
/// the domain-separated digest `crate::lookup` derives from what the entry
/// is about. Like the other indexes, only [`PREFIX_LEN`] bytes of `key`
/// are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupRow {
    /// The lookup key's digest.
    pub key: Digest,
    /// The entry's index.
    pub index: u64,
}

/// The full current contents of one hash tile, as the sequencer's tile
/// builder produces it: tile level L (holding tree level 8·L), index N, and
/// 1 to 256 hashes of 32 bytes each, written whole.
pub type TileWrite = verifier::tile_builder::BuiltTile;

/// Why a storage operation failed. Every variant is fatal to the sequencer:
/// the log stops writing rather than guess what reached the disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend reported an I/O or database error.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A batch did not start where the stored log ends.
    #[error("batch starts at index {batch} but the stored log has {stored} entries")]
    OutOfOrder {
        /// The batch's `first_index`.
        batch: u64,
        /// The stored tree size.
        stored: u64,
    },
    /// A batch's parallel vectors have different lengths.
    #[error("malformed batch: {0}")]
    MalformedBatch(&'static str),
    /// The store has entries without lookup rows (it was written by a
    /// version without the lookup index), so appending now would leave a
    /// hole in the index; the rows must be built first.
    #[error(
        "lookup rows cover only the first {through} of {size} entries; \
         build the rest before appending"
    )]
    LookupRowsBehind {
        /// Entries below this index have their lookup rows.
        through: u64,
        /// The stored tree size.
        size: u64,
    },
    /// Stored bytes do not have the shape this version writes.
    #[error("corrupt storage: {0}")]
    Corrupt(String),
}

/// The operations the log needs from a durable store.
///
/// Reads may run concurrently with each other and with one `commit`; each
/// read sees a state from before or after a commit, never a mix.
pub trait Storage: Send + Sync + 'static {
    /// Atomically and durably applies `batch`: when this returns `Ok`, the
    /// batch survives a crash or power loss; when it returns `Err`, none of
    /// it is visible.
    ///
    /// Requires `batch.first_index == self.size()?`, equal lengths for
    /// `entries`, `event_ids` and `leaf_hashes`, lookup rows only for the
    /// batch's own entries, and every stored entry's lookup rows already
    /// stored ([`StorageError::LookupRowsBehind`] otherwise); moves the
    /// lookup marker to the new size.
    fn commit(&self, batch: &Batch) -> Result<(), StorageError>;

    /// The number of stored entries (0 for a new store).
    fn size(&self) -> Result<u64, StorageError>;

    /// The last committed signed checkpoint, if any.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StorageError>;

    /// The stored contents of hash tile (`level`, `index`), if any.
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// The entries with indexes in `start..end`, in order. Requires
    /// `end <= self.size()?`; returns fewer only if storage is corrupt.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StorageError>;

    /// The indexes of stored entries whose event id has the same prefix
    /// as `event_id`, in index order: every match, and possibly entries
    /// that only share the prefix.
    fn event_candidates(&self, event_id: &Digest) -> Result<Vec<u64>, StorageError>;

    /// The indexes of stored entries whose leaf hash has the same prefix
    /// as `leaf_hash`, in index order: every match, and possibly entries
    /// that only share the prefix.
    fn leaf_candidates(&self, leaf_hash: &Digest) -> Result<Vec<u64>, StorageError>;

    /// The indexes of stored entries that have a lookup row whose key has
    /// the same prefix as `key`, from `from` on, in index order, at most
    /// `limit` of them: every match, and possibly entries that only share
    /// the prefix.
    fn lookup_candidates(
        &self,
        key: &Digest,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError>;

    /// How many leading entries have their lookup rows stored: the tree
    /// size, except in a store written before lookups existed and not yet
    /// brought up to date with [`add_lookup_rows`](Self::add_lookup_rows).
    fn lookup_rows_through(&self) -> Result<u64, StorageError>;

    /// Atomically and durably stores `rows` for entries already in the log
    /// and moves the lookup marker to `through`, so a rebuild interrupted
    /// by a crash resumes where its last call left off.
    ///
    /// Requires `self.lookup_rows_through()? <= through <= self.size()?`
    /// and every row's index in `self.lookup_rows_through()?..through`.
    fn add_lookup_rows(&self, rows: &[LookupRow], through: u64) -> Result<(), StorageError>;

    /// Deletes every lookup row and the marker, leaving the store as a
    /// version from before lookups would have written it; for the tests
    /// of the upgrade path.
    #[cfg(test)]
    fn forget_lookup_rows(&self) -> Result<(), StorageError>;

    /// The index of the entry with this leaf hash, if it was logged: the
    /// first candidate whose stored leaf hash (in its level-0 tile) is
    /// `leaf_hash` in full.
    fn index_of_leaf(&self, leaf_hash: &Digest) -> Result<Option<u64>, StorageError> {
        for index in self.leaf_candidates(leaf_hash)? {
            let tile = self.tile(0, index / TILE_WIDTH)?.ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "leaf index names entry {index} but its tile is missing"
                ))
            })?;
            let offset = (index % TILE_WIDTH) as usize * HASH_LEN;
            if tile.get(offset..offset + HASH_LEN) == Some(&leaf_hash[..]) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}

/// Hashes in a full level-0 tile, so a leaf's tile and slot follow from
/// its index.
const TILE_WIDTH: u64 = 256;
/// Bytes in one stored hash.
const HASH_LEN: usize = 32;

/// Which embedded backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// redb: the default.
    #[default]
    Redb,
    /// sled 0.34: the second embedded backend.
    Sled,
}

impl Backend {
    /// Opens (creating if needed) this backend's store inside `data_dir`.
    pub fn open(self, data_dir: &Path) -> Result<Box<dyn Storage>, StorageError> {
        Ok(match self {
            Backend::Redb => Box::new(RedbStorage::open(&data_dir.join("log.redb"))?),
            Backend::Sled => Box::new(SledStorage::open(&data_dir.join("log.sled"))?),
        })
    }
}
