//! Proof hashes from stored tiles, with each tile's interior computed once.
//!
//! A proof hash at tree level 8·L + k is the root of 2^k hashes of one
//! tile at level L. Recomputing it for every proof made proof generation
//! mostly SHA-256 (about 80% in a profile at 1M entries), and `AppendBatch`
//! proves every event of a batch against the same right-edge tiles. So a
//! tile's interior levels are computed once per (level, index, width) and
//! kept in a bounded cache. A tile's hashes never change once written, and
//! a wider version of a tile is a new key, so a cached expansion is never
//! stale. When the cache is full it is emptied: memory stays bounded, and
//! the hot tiles are rebuilt on their next use.
//!
//! One reader serves one proof, and a proof asks for several hashes of the
//! same tile (eight siblings in a level-0 tile, say). A reader therefore
//! reads each tile from storage once and keeps it for its own lifetime: a
//! profile of proof serving at 1M entries spent a third of the server's
//! time reading the same tile again from storage.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use verifier::merkle::{node_hash, Hash, HashReader};
use verifier::tiles::{HashTileSource, TILE_HEIGHT, TILE_WIDTH};

/// A tile and the roots of its complete subtrees: `levels[k][i]` is the
/// root of hashes `[i·2^k, (i+1)·2^k)` of the tile.
struct Expanded {
    levels: Vec<Vec<Hash>>,
}

impl Expanded {
    fn new(tile: &[u8]) -> Self {
        let mut levels = vec![tile
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("chunks are 32 bytes")))
            .collect::<Vec<_>>()];
        while let Some(below) = levels.last().filter(|l| l.len() >= 2) {
            let above = below
                .chunks_exact(2)
                .map(|p| node_hash(p[0], p[1]))
                .collect();
            levels.push(above);
        }
        Self { levels }
    }
}

/// Expanded tiles by (level, index, width in hashes).
#[derive(Default)]
pub struct TileCache(Mutex<HashMap<(u8, u64, u16), Arc<Expanded>>>);

impl TileCache {
    /// At most this many expanded tiles (about 16 KiB each for a full one).
    const CAPACITY: usize = 1024;

    /// A hash reader over `source` that uses this cache.
    pub fn reader<'a, S: HashTileSource>(&'a self, source: &'a S) -> CachedHashReader<'a, S> {
        CachedHashReader {
            cache: self,
            source,
            read: RefCell::default(),
        }
    }

    fn expanded(&self, level: u8, index: u64, tile: &[u8]) -> Arc<Expanded> {
        let key = (level, index, (tile.len() / 32) as u16);
        if let Some(found) = self.0.lock().expect("tile cache lock poisoned").get(&key) {
            return Arc::clone(found);
        }
        let expanded = Arc::new(Expanded::new(tile));
        let mut cache = self.0.lock().expect("tile cache lock poisoned");
        if cache.len() >= Self::CAPACITY {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&expanded));
        expanded
    }
}

/// A tile's (level, index).
type TileKey = (u8, u64);

/// Reads stored hashes for the RFC 9162 proof builders in `tlog_tiles`.
pub struct CachedHashReader<'a, S> {
    cache: &'a TileCache,
    source: &'a S,
    /// The tiles this reader has read.
    read: RefCell<Vec<(TileKey, Arc<Expanded>)>>,
}

impl<S: HashTileSource> CachedHashReader<'_, S> {
    /// Tile `index` at `level`, expanded, read from storage at most once
    /// per reader.
    fn tile(&self, level: u8, index: u64) -> Result<Arc<Expanded>, tlog_tiles::Error> {
        let key = (level, index);
        if let Some((_, expanded)) = self.read.borrow().iter().find(|(k, _)| *k == key) {
            return Ok(Arc::clone(expanded));
        }
        let tile = self
            .source
            .hash_tile(level, index)
            .map_err(|e| tlog_tiles::Error::InvalidInput(format!("reading tile: {e}")))?;
        let expanded = self.cache.expanded(level, index, &tile);
        self.read.borrow_mut().push((key, Arc::clone(&expanded)));
        Ok(expanded)
    }
}

impl<S: HashTileSource> HashReader for CachedHashReader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&stored| {
                let (level, n) = tlog_tiles::split_stored_hash_index(stored);
                let (tile_level, k) = (level / TILE_HEIGHT, usize::from(level % TILE_HEIGHT));
                let first = n << k;
                let expanded = self.tile(tile_level, first / TILE_WIDTH)?;
                let position = ((first % TILE_WIDTH) >> k) as usize;
                expanded
                    .levels
                    .get(k)
                    .and_then(|hashes| hashes.get(position))
                    .copied()
                    .ok_or(tlog_tiles::Error::InvalidTile)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::merkle::leaf_hash;
    use verifier::tile_builder::{MemoryTiles, TileBuilder};
    use verifier::tiles::TiledHashReader;

    #[test]
    fn cached_proofs_equal_uncached_proofs_as_the_tree_grows() {
        let cache = TileCache::default();
        let mut builder = TileBuilder::new();
        let mut tiles = MemoryTiles::default();
        for size in [1u64, 2, 255, 256, 257, 700, 65_536, 70_001] {
            while builder.size() < size {
                builder.append(leaf_hash(&builder.size().to_be_bytes()));
            }
            tiles.apply(builder.take_changed());
            let plain = TiledHashReader::new(&tiles);
            let cached = cache.reader(&tiles);
            for index in [0, size / 3, size - 1] {
                assert_eq!(
                    tlog_tiles::prove_record(size, index, &cached).unwrap(),
                    tlog_tiles::prove_record(size, index, &plain).unwrap(),
                    "inclusion of {index} in {size}"
                );
            }
            for old in [1, size / 2 + 1, size] {
                assert_eq!(
                    tlog_tiles::prove_tree(size, old, &cached).unwrap(),
                    tlog_tiles::prove_tree(size, old, &plain).unwrap(),
                    "consistency {old} → {size}"
                );
            }
            assert_eq!(
                tlog_tiles::tree_hash(size, &cached).unwrap(),
                builder.root()
            );
        }
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TileCache::default();
        for index in 0..(TileCache::CAPACITY as u64 + 10) {
            cache.expanded(0, index, &[7u8; 64]);
        }
        assert!(cache.0.lock().unwrap().len() <= TileCache::CAPACITY);
    }

    /// Records every tile read from it.
    struct Recording<'a>(&'a MemoryTiles, std::cell::RefCell<Vec<(u8, u64)>>);

    impl HashTileSource for Recording<'_> {
        type Error = <MemoryTiles as HashTileSource>::Error;

        fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, Self::Error> {
            self.1.borrow_mut().push((level, index));
            self.0.hash_tile(level, index)
        }
    }

    #[test]
    fn a_reader_reads_each_tile_from_storage_once() {
        let mut builder = TileBuilder::new();
        let mut tiles = MemoryTiles::default();
        let size = 70_001u64;
        while builder.size() < size {
            builder.append(leaf_hash(&builder.size().to_be_bytes()));
        }
        tiles.apply(builder.take_changed());
        let source = Recording(&tiles, std::cell::RefCell::default());
        let cache = TileCache::default();
        let reader = cache.reader(&source);
        let proof = tlog_tiles::prove_record(size, 12_345, &reader).unwrap();
        assert_eq!(
            proof,
            tlog_tiles::prove_record(size, 12_345, &TiledHashReader::new(&tiles)).unwrap()
        );
        assert_eq!(
            proof.len(),
            17,
            "eight of the hashes come from one level-0 tile"
        );
        let reads = source.1.borrow().clone();
        let mut distinct = reads.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            reads.len(),
            distinct.len(),
            "a tile was read twice: {reads:?}"
        );
        assert!(distinct.contains(&(0, 12_345 / 256)));
        reader
            .read_hashes(&[tlog_tiles::stored_hash_index(0, 12_345)])
            .unwrap();
        assert_eq!(
            source.1.borrow().len(),
            reads.len(),
            "the leaf hash comes from the tile already read"
        );
    }
}
