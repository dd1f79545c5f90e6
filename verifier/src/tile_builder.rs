//! Building C2SP hash tiles as leaves are appended.
//!
//! A hash tile at level L holds tree level 8·L, and a hash at that level
//! exists as soon as its perfect subtree is complete. [`TileBuilder`] keeps
//! the compact range and, per tile level, the rightmost tile still filling;
//! every completed subtree at a multiple-of-8 level is appended to its tile.
//! Memory is O(log n): one compact range plus at most one partial tile per
//! level (8 KiB each), whatever the log's size.

use crate::merkle::{CompactRange, Hash};
use crate::tiles::{HashTileSource, TILE_HEIGHT, TILE_WIDTH};
use std::collections::HashMap;

/// One hash tile's full current contents, to be written whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltTile {
    /// Tile level L: the tile holds tree level 8·L.
    pub level: u8,
    /// Tile index N within its level.
    pub index: u64,
    /// The tile's hashes, 32 bytes each, 1 to 256 of them.
    pub hashes: Vec<u8>,
}

/// The right edge of a tiled tree, growing one leaf at a time.
#[derive(Debug, Clone, Default)]
pub struct TileBuilder {
    range: CompactRange,
    /// `edges[L]`: the hashes of the rightmost, not yet full, tile at level L.
    edges: Vec<Vec<u8>>,
    /// Tiles that filled up since the last [`TileBuilder::take_changed`].
    filled: Vec<BuiltTile>,
    /// Levels whose edge tile gained hashes since the last take.
    dirty: Vec<bool>,
}

/// The stored state does not describe a tree of the claimed size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("edge tile at level {level} has {actual} bytes; a tree of size {size} needs {expected}")]
pub struct EdgeMismatch {
    level: u8,
    size: u64,
    expected: usize,
    actual: usize,
}

impl TileBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes a tree from its compact range and, for each tile level, the
    /// contents of its partial right-edge tile (empty where the level's
    /// tiles are all full). Checks every edge has the length the size implies.
    pub fn resume(range: CompactRange, edges: Vec<Vec<u8>>) -> Result<Self, EdgeMismatch> {
        let size = range.size();
        for (level, edge) in edges.iter().enumerate() {
            let level = level as u8;
            let expected = (Self::hashes_at(size, level) % TILE_WIDTH) as usize * 32;
            if edge.len() != expected {
                return Err(EdgeMismatch {
                    level,
                    size,
                    expected,
                    actual: edge.len(),
                });
            }
        }
        let dirty = vec![false; edges.len()];
        Ok(Self {
            range,
            edges,
            filled: Vec::new(),
            dirty,
        })
    }

    /// The number of tile levels a tree of `size` leaves has.
    pub fn levels_for(size: u64) -> u8 {
        (0..64 / TILE_HEIGHT)
            .take_while(|&level| Self::hashes_at(size, level) > 0)
            .count() as u8
    }

    fn hashes_at(size: u64, level: u8) -> u64 {
        size >> (u32::from(level) * u32::from(TILE_HEIGHT))
    }

    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The RFC 9162 root of the tree so far.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The compact range, for resuming elsewhere.
    pub fn range(&self) -> &CompactRange {
        &self.range
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let Self {
            range,
            edges,
            filled,
            dirty,
        } = self;
        range.append_visiting(leaf, |level, index, hash| {
            if level % TILE_HEIGHT != 0 {
                return;
            }
            let tile_level = usize::from(level / TILE_HEIGHT);
            if edges.len() <= tile_level {
                edges.resize(tile_level + 1, Vec::new());
                dirty.resize(tile_level + 1, false);
            }
            let edge = &mut edges[tile_level];
            edge.extend_from_slice(&hash.0);
            if edge.len() as u64 == TILE_WIDTH * 32 {
                filled.push(BuiltTile {
                    level: tile_level as u8,
                    index: index / TILE_WIDTH,
                    hashes: std::mem::take(edge),
                });
                dirty[tile_level] = false;
            } else {
                dirty[tile_level] = true;
            }
        });
    }

    /// Every tile created or extended since the last call, each whole:
    /// the tiles that filled, then the partial edge tiles that grew.
    pub fn take_changed(&mut self) -> Vec<BuiltTile> {
        let mut changed = std::mem::take(&mut self.filled);
        let size = self.size();
        for (level, dirty) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                let level = level as u8;
                changed.push(BuiltTile {
                    level,
                    index: Self::hashes_at(size, level) / TILE_WIDTH,
                    hashes: self.edges[usize::from(level)].clone(),
                });
            }
        }
        changed
    }
}

/// A tiled tree held in memory, keyed by (level, index): what an auditor
/// rebuilds from a log's entries, and what proofs are built against in
/// tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTiles(pub HashMap<(u8, u64), Vec<u8>>);

impl MemoryTiles {
    /// Stores tiles from [`TileBuilder::take_changed`], each replacing any
    /// narrower version of itself.
    pub fn apply(&mut self, tiles: Vec<BuiltTile>) {
        for tile in tiles {
            self.0.insert((tile.level, tile.index), tile.hashes);
        }
    }
}

impl HashTileSource for MemoryTiles {
    type Error = String;

    fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, String> {
        self.0
            .get(&(level, index))
            .cloned()
            .ok_or_else(|| format!("no hash tile {level}/{index}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    fn leaf(i: u64) -> Hash {
        leaf_hash(format!("leaf {i}").as_bytes())
    }

    fn apply(store: &mut MemoryTiles, changed: Vec<BuiltTile>) {
        store.apply(changed);
    }

    #[test]
    fn batches_of_any_size_give_the_same_tiles() {
        let mut one_go = TileBuilder::new();
        let mut all = MemoryTiles::default();
        (0..70_000).for_each(|i| one_go.append(leaf(i)));
        apply(&mut all, one_go.take_changed());

        let mut batched = TileBuilder::new();
        let mut store = MemoryTiles::default();
        for i in 0..70_000 {
            batched.append(leaf(i));
            if i % 77 == 0 {
                apply(&mut store, batched.take_changed());
            }
        }
        apply(&mut store, batched.take_changed());
        assert_eq!(store, all);
        assert_eq!(batched.root(), one_go.root());
        assert_eq!(store.0[&(1, 0)].len(), 256 * 32);
        assert_eq!(
            store.0[&(2, 0)].len(),
            32,
            "70,000 leaves complete one level-16 subtree"
        );
        assert_eq!(store.0[&(0, 273)].len(), (70_000 % 256) * 32);
    }

    #[test]
    fn resume_continues_exactly() {
        let mut whole = TileBuilder::new();
        (0..1000).for_each(|i| whole.append(leaf(i)));
        let mut store = MemoryTiles::default();
        apply(&mut store, whole.take_changed());

        let edges = (0..TileBuilder::levels_for(1000))
            .map(|level| {
                let count = 1000u64 >> (8 * u32::from(level));
                if count.is_multiple_of(256) {
                    Vec::new()
                } else {
                    store.0[&(level, count / 256)].clone()
                }
            })
            .collect();
        let mut resumed = TileBuilder::resume(whole.range().clone(), edges).unwrap();
        (1000..3000).for_each(|i| {
            resumed.append(leaf(i));
            whole.append(leaf(i));
        });
        assert_eq!(resumed.take_changed(), whole.take_changed());
        assert!(TileBuilder::resume(whole.range().clone(), vec![vec![0; 32]]).is_err());
    }
}
