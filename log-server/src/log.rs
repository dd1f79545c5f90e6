//! The read side of the log: the latest published checkpoint, proofs and
//! tiles, all answered from storage.
//!
//! Readers never see more than the latest *published* checkpoint, which
//! the sequencer only publishes after the batch behind it is durable. So a
//! tile, entry or proof served here can always be served again after a
//! crash.
//!
//! Two checkpoints are kept. The *latest* is the sequencer's newest: appends
//! and proofs use it, and it bounds what tiles exist. The *served* one is
//! what `/checkpoint` and `GetCheckpoint` hand to the world. Without
//! witnesses they are the same. With witnesses, the served checkpoint is
//! the newest one that has been through a witnessing round, carrying the
//! cosignatures it got (see [`crate::witnessing`]); it is never ahead of
//! the latest, so everything it commits to can be fetched.

use crate::event_index::index_of_event;
use crate::storage::{Storage, StorageError};
use crate::tile_cache::TileCache;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use verifier::merkle::{Hash, HashReader};
use verifier::tiles::{encode_entry_bundle, HashTileSource, TileId, TileKind, TILE_WIDTH};

/// A checkpoint the log has signed, committed and published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The signed note, as served on `/checkpoint`.
    pub note: String,
    /// Its tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Why a read could not be answered, sorted by whose fault it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The request asks for something outside the published tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The log does not hold what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// Storage failed or holds something it should not.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Shared, read-mostly state of a running log.
pub struct Log {
    storage: Arc<dyn Storage>,
    /// The sequencer's newest checkpoint; a channel, so that the witness
    /// collector wakes on each one instead of polling.
    latest: watch::Sender<Arc<Published>>,
    /// The witnessed checkpoint `/checkpoint` serves, once witnessing is on;
    /// `None` serves the latest.
    witnessed: RwLock<Option<Arc<Published>>>,
    upper_tiles: UpperTiles,
    expanded_tiles: TileCache,
}

/// Full hash tiles from level [`UpperTiles::MIN_LEVEL`] up, kept in memory.
///
/// Every proof touches the top of the tree, and a full tile never changes,
/// so these are read from storage once. There is one such tile per 65,536
/// entries; the cap keeps memory flat even past a billion entries (a
/// tile that does not fit is simply read from storage each time).
#[derive(Default)]
struct UpperTiles(RwLock<HashMap<TileKey, Arc<Vec<u8>>>>);

/// A hash tile's (level, index).
type TileKey = (u8, u64);

impl UpperTiles {
    /// Tiles at this level and above hold one hash per 65,536 entries.
    const MIN_LEVEL: u8 = 2;
    /// At most this many tiles (8 KiB each): 32 MiB.
    const CAPACITY: usize = 4096;

    fn get(&self, level: u8, index: u64) -> Option<Arc<Vec<u8>>> {
        let tiles = self.0.read().expect("tile cache lock poisoned");
        tiles.get(&(level, index)).cloned()
    }

    fn offer(&self, level: u8, index: u64, hashes: &[u8]) {
        let full = hashes.len() == TILE_WIDTH as usize * 32;
        if level < Self::MIN_LEVEL || !full {
            return;
        }
        let mut tiles = self.0.write().expect("tile cache lock poisoned");
        if tiles.len() < Self::CAPACITY {
            tiles.insert((level, index), Arc::new(hashes.to_vec()));
        }
    }
}

/// Storage, through the upper-tile cache, as a source of hash tiles for the
/// proof builders.
struct StoredTiles<'a>(&'a Log);

impl HashTileSource for StoredTiles<'_> {
    type Error = StorageError;

    fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, StorageError> {
        if let Some(tile) = self.0.upper_tiles.get(level, index) {
            return Ok(tile.to_vec());
        }
        let tile = self.0.storage.tile(level, index)?.ok_or_else(|| {
            StorageError::Corrupt(format!("hash tile {level}/{index} is missing"))
        })?;
        self.0.upper_tiles.offer(level, index, &tile);
        Ok(tile)
    }
}

impl Log {
    /// A log over `storage` whose latest committed checkpoint is `latest`.
    pub fn new(storage: Arc<dyn Storage>, latest: Published) -> Self {
        Self {
            storage,
            latest: watch::Sender::new(Arc::new(latest)),
            witnessed: RwLock::new(None),
            upper_tiles: UpperTiles::default(),
            expanded_tiles: TileCache::default(),
        }
    }

    /// The storage, for the sequencer.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The latest published checkpoint.
    pub fn latest(&self) -> Arc<Published> {
        self.latest.borrow().clone()
    }

    /// Publishes a checkpoint whose batch is durable.
    pub fn publish(&self, checkpoint: Published) {
        self.latest.send_replace(Arc::new(checkpoint));
    }

    /// A receiver that is told of every checkpoint [`publish`](Self::publish)ed
    /// from now on, and sees the newest when it looks.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.latest.subscribe()
    }

    /// The checkpoint to show the world: the last witnessed one once
    /// [`serve_witnessed`](Self::serve_witnessed) was called, the latest
    /// otherwise.
    pub fn served(&self) -> Arc<Published> {
        let witnessed = self.witnessed.read().expect("checkpoint lock poisoned");
        witnessed.clone().unwrap_or_else(|| self.latest())
    }

    /// Serves `checkpoint`, which must be one this log published (with any
    /// cosignatures added), instead of the latest, from now on.
    pub fn serve_witnessed(&self, checkpoint: Arc<Published>) {
        *self.witnessed.write().expect("checkpoint lock poisoned") = Some(checkpoint);
    }

    /// The RFC 9162 root of the stored tree of `size` entries, recomputed
    /// from the hash tiles in O(log n) reads.
    pub fn stored_root(&self, size: u64) -> Result<Hash, ReadError> {
        let tiles = StoredTiles(self);
        let reader = self.expanded_tiles.reader(&tiles);
        tlog_tiles::tree_hash(size, &reader).map_err(|e| proof_failure("root", e))
    }

    /// The hashes of the maximal perfect subtrees of the stored tree of
    /// `size` entries, leftmost first: the compact range to resume from.
    pub fn stored_peaks(&self, size: u64) -> Result<Vec<Hash>, ReadError> {
        let tiles = StoredTiles(self);
        let reader = self.expanded_tiles.reader(&tiles);
        let indexes = tlog_tiles::sub_tree_index(0, size, vec![]);
        reader
            .read_hashes(&indexes)
            .map_err(|e| proof_failure("compact range", e))
    }

    /// The leaf hash of entry `index` and its inclusion proof in the tree
    /// of `size` entries. Requires `index < size <= latest size`. The leaf
    /// hash comes from the level-0 tile the proof reads anyway, not from
    /// re-reading and re-hashing the entry.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), ReadError> {
        let latest = self.latest().size;
        if size > latest {
            return Err(ReadError::OutOfRange(format!(
                "tree_size {size} is beyond the latest checkpoint's size {latest}"
            )));
        }
        if index >= size {
            return Err(ReadError::OutOfRange(format!(
                "index {index} is not in a tree of size {size}"
            )));
        }
        let tiles = StoredTiles(self);
        let reader = self.expanded_tiles.reader(&tiles);
        let proof = tlog_tiles::prove_record(size, index, &reader)
            .map_err(|e| proof_failure("inclusion proof", e))?;
        let leaf = reader
            .read_hashes(&[tlog_tiles::stored_hash_index(0, index)])
            .map_err(|e| proof_failure("leaf hash", e))?;
        Ok((leaf[0], proof))
    }

    /// The consistency proof from `old_size` to `new_size`. Requires
    /// `old_size <= new_size <= latest size`; from 0 it is empty.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ReadError> {
        let latest = self.latest().size;
        if new_size > latest {
            return Err(ReadError::OutOfRange(format!(
                "new_size {new_size} is beyond the latest checkpoint's size {latest}"
            )));
        }
        if old_size > new_size {
            return Err(ReadError::OutOfRange(format!(
                "old_size {old_size} is larger than new_size {new_size}"
            )));
        }
        if old_size == 0 {
            return Ok(Vec::new());
        }
        let tiles = StoredTiles(self);
        let reader = self.expanded_tiles.reader(&tiles);
        tlog_tiles::prove_tree(new_size, old_size, &reader)
            .map_err(|e| proof_failure("consistency proof", e))
    }

    /// The index of the entry with this leaf hash, if it is in the
    /// published tree.
    pub fn index_of_leaf(&self, leaf_hash: &[u8; 32]) -> Result<Option<u64>, ReadError> {
        let size = self.latest().size;
        Ok(self.storage.index_of_leaf(leaf_hash)?.filter(|&i| i < size))
    }

    /// The index of the entry with this event id, if it is in the
    /// published tree.
    pub fn index_of_event(&self, event_id: &[u8; 32]) -> Result<Option<u64>, ReadError> {
        let size = self.latest().size;
        Ok(index_of_event(&*self.storage, event_id)?.filter(|&i| i < size))
    }

    /// The entries in `start..end`, which must be within the published tree.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        let entries = self.storage.entries(start, end)?;
        if entries.len() as u64 != end - start {
            return Err(StorageError::Corrupt(format!(
                "entries {start}..{end}: only {} stored",
                entries.len()
            ))
            .into());
        }
        Ok(entries)
    }

    /// The bytes of a C2SP tile, if the published tree has it at (at least)
    /// the requested width. A partial tile is the prefix of the tile it
    /// grows into, so a narrower request than what is stored is served
    /// from the stored tile.
    pub fn tile(&self, tile: TileId) -> Result<Vec<u8>, ReadError> {
        let size = self.latest().size;
        let available = match tile.kind {
            TileKind::Hashes { level } => TileId::hash_tile_in_tree(level, tile.index, size),
            TileKind::Entries => TileId::entry_bundle_in_tree(tile.index, size),
        };
        let width = usize::from(tile.width);
        if available.is_none_or(|a| usize::from(a.width) < width) {
            return Err(ReadError::NotFound(format!(
                "{} is not in the tree of size {size}",
                tile.path()
            )));
        }
        match tile.kind {
            TileKind::Hashes { level } => {
                let mut hashes = StoredTiles(self).hash_tile(level, tile.index)?;
                if hashes.len() < width * 32 {
                    return Err(StorageError::Corrupt(format!("{} is short", tile.path())).into());
                }
                hashes.truncate(width * 32);
                Ok(hashes)
            }
            TileKind::Entries => {
                let start = tile.index * 256;
                let entries = self.entries(start, start + width as u64)?;
                encode_entry_bundle(&entries)
                    .map_err(|e| StorageError::Corrupt(format!("{}: {e}", tile.path())).into())
            }
        }
    }
}

/// A proof builder failed over storage the log wrote itself: that is a
/// storage fault, never the caller's.
fn proof_failure(what: &str, error: tlog_tiles::Error) -> ReadError {
    StorageError::Corrupt(format!("building {what}: {error}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_upper_tiles_are_cached_and_the_cache_is_bounded() {
        let cache = UpperTiles::default();
        let full = vec![7u8; TILE_WIDTH as usize * 32];
        cache.offer(1, 0, &full);
        cache.offer(2, 0, &full[..64]);
        assert!(
            cache.get(1, 0).is_none(),
            "level-1 tiles are too many to keep"
        );
        assert!(cache.get(2, 0).is_none(), "a partial tile will still grow");
        cache.offer(2, 0, &full);
        assert_eq!(cache.get(2, 0).as_deref(), Some(&full));
        for index in 1..=UpperTiles::CAPACITY as u64 {
            cache.offer(3, index, &full);
        }
        assert!(cache.get(3, UpperTiles::CAPACITY as u64 - 1).is_some());
        assert!(
            cache.get(3, UpperTiles::CAPACITY as u64).is_none(),
            "the cap holds"
        );
    }
}
