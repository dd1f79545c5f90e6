//! Rebuilding the log's hash tiles from the audited entries, so that they
//! can be compared with the tiles the log serves.
//!
//! Inclusion and consistency proofs are read from the hash tiles, so a log
//! whose entries hash to its signed root but whose tiles do not (all
//! zeroes, one flipped byte) would pass an audit that only recomputes the
//! root, while every proof built from it fails or, worse, is built from
//! hashes the entries never made. A [`TileRebuild`] follows the audit leaf
//! by leaf with a [`TileBuilder`] and gives out every tile completed in
//! the run, then the right edge's partial tiles at the audited size, each
//! to be compared with the log's ([`compare`]).
//!
//! **Resuming.** A saved audit state holds the peaks of the audited tree,
//! not its partial tiles. A tile that began in an earlier run and gains
//! hashes in this one therefore starts from the first hashes the log
//! serves for it ([`TileRebuild::seeds`]), after checking them against the
//! peaks: the peaks at tree levels 8·L to 8·L+7 are the roots of exactly
//! those hashes, grouped by the bits of their count, so a wrong hash
//! cannot give the same peaks. Tiles finished in earlier runs were compared
//! then and are not read again.
//!
//! Pure, like the rest of [`crate::audit`]: the caller fetches the tiles.

use super::AuditFinding;
use crate::merkle::{node_hash, CompactRange, Hash};
use crate::tile_builder::TileBuilder;
use crate::tiles::{TileId, TileKind, TILE_HEIGHT, TILE_WIDTH};
use std::collections::BTreeMap;

/// Why a hash tile the log serves is not the tile its entries make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileProblem {
    /// The tile has the wrong length for its path.
    #[error("the log serves {served} bytes, where the tile has {expected}")]
    Length {
        /// Bytes served.
        served: usize,
        /// 32 bytes per hash of the tile's width.
        expected: usize,
    },
    /// A hash differs from the one the audited entries make.
    #[error("hash {first} and maybe others differ from the ones the audited entries make")]
    Differs {
        /// The position in the tile of the first differing hash.
        first: usize,
    },
    /// The hashes made by entries audited in an earlier run do not give
    /// the peaks saved then.
    #[error(
        "its first {hashes} hashes, made by entries audited in an earlier run, are not the \
         ones the saved audit state was made from"
    )]
    Earlier {
        /// How many of the tile's hashes come from earlier runs.
        hashes: usize,
    },
}

/// The start of a resumed rebuild at one tile level: the log's `tile` (at
/// the size being audited to), whose first `hashes` hashes were made by
/// entries audited in an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// The tile to read, at its width in the tree being audited to.
    pub tile: TileId,
    /// How many of its hashes come from earlier runs.
    pub hashes: usize,
}

/// The hash tiles of a tree being rebuilt from `from` to `to` leaves; see
/// the [module docs](self).
#[derive(Debug, Clone)]
pub struct TileRebuild {
    builder: TileBuilder,
    to: u64,
    /// The newest partial tile at each level, given out once `to` is reached.
    edges: BTreeMap<u8, (TileId, Vec<u8>)>,
}

/// How many hashes tree level 8·`level` has in a tree of `size` leaves.
fn hashes_at(size: u64, level: u8) -> u64 {
    size >> (u32::from(level) * u32::from(TILE_HEIGHT))
}

/// The tile levels that gain hashes between sizes `from` and `to`: a
/// prefix of the levels, since a hash at a higher level completes one at
/// every level below.
fn growing_levels(from: u64, to: u64) -> impl Iterator<Item = u8> {
    (0..64 / TILE_HEIGHT).take_while(move |&level| hashes_at(to, level) > hashes_at(from, level))
}

fn hash_tile(level: u8, index: u64, width: u64) -> TileId {
    TileId {
        kind: TileKind::Hashes { level },
        index,
        width: width as u16,
    }
}

impl TileRebuild {
    /// The tiles to read before rebuilding from `from` to `to` leaves, one
    /// per level whose partial tile at `from` gains hashes, lowest first.
    pub fn seeds(from: u64, to: u64) -> Vec<Seed> {
        growing_levels(from, to)
            .filter(|&level| !hashes_at(from, level).is_multiple_of(TILE_WIDTH))
            .map(|level| {
                let index = hashes_at(from, level) / TILE_WIDTH;
                Seed {
                    tile: TileId::hash_tile_in_tree(level, index, to)
                        .expect("a tile that gains hashes is in the larger tree"),
                    hashes: (hashes_at(from, level) % TILE_WIDTH) as usize,
                }
            })
            .collect()
    }

    /// Starts rebuilding from the audited `range` towards `to` leaves.
    /// `served` holds the log's tile for each of [`TileRebuild::seeds`], in
    /// order; their first hashes must give `range`'s peaks.
    pub fn resume(range: &CompactRange, to: u64, served: &[Vec<u8>]) -> Result<Self, AuditFinding> {
        let from = range.size();
        let seeds = Self::seeds(from, to);
        assert_eq!(served.len(), seeds.len(), "one served tile per seed");
        let mut edges: Vec<Vec<u8>> = growing_levels(from, to).map(|_| Vec::new()).collect();
        for (seed, bytes) in seeds.iter().zip(served) {
            let finding = |problem| AuditFinding::HashTile {
                path: seed.tile.path(),
                problem,
            };
            let expected = usize::from(seed.tile.width) * 32;
            if bytes.len() != expected {
                return Err(finding(TileProblem::Length {
                    served: bytes.len(),
                    expected,
                }));
            }
            let TileKind::Hashes { level } = seed.tile.kind else {
                unreachable!("seeds are hash tiles")
            };
            let earlier = &bytes[..seed.hashes * 32];
            if !gives_peaks(earlier, level, range) {
                return Err(finding(TileProblem::Earlier {
                    hashes: seed.hashes,
                }));
            }
            edges[usize::from(level)] = earlier.to_vec();
        }
        let builder = TileBuilder::resume(range.clone(), edges)
            .expect("each edge holds the hashes the size implies");
        Ok(Self {
            builder,
            to,
            edges: BTreeMap::new(),
        })
    }

    /// Appends the next leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        debug_assert!(
            self.builder.size() < self.to,
            "no leaf beyond the audited size"
        );
        self.builder.append(leaf);
    }

    /// The tiles completed since the last call, and once all `to` leaves
    /// are in, the partial tiles at the right edge: in the order
    /// [`rebuilt_between`] names them.
    pub fn take(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut done = Vec::new();
        for tile in self.builder.take_changed() {
            let width = (tile.hashes.len() / 32) as u64;
            let id = hash_tile(tile.level, tile.index, width);
            if id.is_full() {
                if self
                    .edges
                    .get(&tile.level)
                    .is_some_and(|(e, _)| e.index == id.index)
                {
                    self.edges.remove(&tile.level);
                }
                done.push((id, tile.hashes));
            } else {
                self.edges.insert(tile.level, (id, tile.hashes));
            }
        }
        if self.builder.size() == self.to {
            done.extend(std::mem::take(&mut self.edges).into_values());
        }
        done
    }
}

/// Whether `hashes`, the first hashes of the partial tile at tile level
/// `level` of the tree `range` describes, give its peaks at tree levels
/// 8·`level` to 8·`level`+7: for each set bit j of their count, highest
/// first, the next 2^j hashes must hash up to the peak at level 8·level+j.
fn gives_peaks(hashes: &[u8], level: u8, range: &CompactRange) -> bool {
    let size = range.size();
    let mut rest: Vec<Hash> = hashes
        .chunks_exact(32)
        .map(|h| Hash(h.try_into().expect("32-byte chunks")))
        .collect();
    let count = rest.len() as u64;
    for bit in (0..TILE_HEIGHT).rev().filter(|bit| count >> bit & 1 == 1) {
        let mut group: Vec<Hash> = rest.drain(..1 << bit).collect();
        while group.len() > 1 {
            group = group
                .chunks(2)
                .map(|pair| node_hash(pair[0], pair[1]))
                .collect();
        }
        let tree_level = u32::from(level) * u32::from(TILE_HEIGHT) + u32::from(bit);
        let peak = (size >> (tree_level + 1)).count_ones() as usize;
        if range.peaks().get(peak) != Some(&group[0]) {
            return false;
        }
    }
    true
}

/// The tiles a rebuild from `from` to `to` leaves gives out, in order:
/// each tile completed on the way (as each leaf completes them, lowest
/// level first), then the partial tiles at `to` that gained hashes, lowest
/// level first. A caller fetches these ahead of the audit.
pub fn rebuilt_between(from: u64, to: u64) -> impl Iterator<Item = TileId> {
    let completed = (from / TILE_WIDTH..to / TILE_WIDTH).flat_map(|index| {
        let mut tiles = vec![hash_tile(0, index, TILE_WIDTH)];
        let mut count = index + 1;
        let mut level = 1;
        while count.is_multiple_of(TILE_WIDTH) {
            tiles.push(hash_tile(level, count / TILE_WIDTH - 1, TILE_WIDTH));
            count /= TILE_WIDTH;
            level += 1;
        }
        tiles
    });
    let edges = growing_levels(from, to).filter_map(move |level| {
        let count = hashes_at(to, level);
        (!count.is_multiple_of(TILE_WIDTH))
            .then(|| hash_tile(level, count / TILE_WIDTH, count % TILE_WIDTH))
    });
    completed.chain(edges)
}

/// Compares a rebuilt tile with the one the log serves for its path.
pub fn compare(tile: TileId, rebuilt: &[u8], served: &[u8]) -> Result<(), AuditFinding> {
    let problem = if served.len() != rebuilt.len() {
        TileProblem::Length {
            served: served.len(),
            expected: rebuilt.len(),
        }
    } else if let Some(first) = served
        .chunks(32)
        .zip(rebuilt.chunks(32))
        .position(|(s, r)| s != r)
    {
        TileProblem::Differs { first }
    } else {
        return Ok(());
    };
    Err(AuditFinding::HashTile {
        path: tile.path(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;
    use crate::tile_builder::MemoryTiles;

    fn leaf(i: u64) -> Hash {
        leaf_hash(format!("leaf {i}").as_bytes())
    }

    /// Every tile of the tree of `size` leaves, as an honest log serves it.
    fn honest(size: u64) -> MemoryTiles {
        let mut builder = TileBuilder::new();
        (0..size).for_each(|i| builder.append(leaf(i)));
        let mut tiles = MemoryTiles::default();
        tiles.apply(builder.take_changed());
        tiles
    }

    /// What the log serves for `tile`: the tile of the tree of `size`, cut
    /// to the tile's width.
    fn served(tiles: &MemoryTiles, tile: TileId) -> Vec<u8> {
        let TileKind::Hashes { level } = tile.kind else {
            panic!("a hash tile")
        };
        tiles.0[&(level, tile.index)][..usize::from(tile.width) * 32].to_vec()
    }

    fn range(size: u64) -> CompactRange {
        let mut range = CompactRange::new();
        (0..size).for_each(|i| range.append(leaf(i)));
        range
    }

    /// Rebuilds from `from` to `to`, taking tiles every `every` leaves.
    fn rebuild(from: u64, to: u64, every: u64) -> Result<Vec<(TileId, Vec<u8>)>, AuditFinding> {
        let tiles = honest(to);
        let seeds: Vec<Vec<u8>> = TileRebuild::seeds(from, to)
            .iter()
            .map(|seed| served(&tiles, seed.tile))
            .collect();
        let mut rebuild = TileRebuild::resume(&range(from), to, &seeds)?;
        let mut out = Vec::new();
        for i in from..to {
            rebuild.append(leaf(i));
            if i % every == 0 {
                out.extend(rebuild.take());
            }
        }
        out.extend(rebuild.take());
        Ok(out)
    }

    #[test]
    fn every_tile_completed_and_the_edge_is_given_out_once_in_the_predicted_order() {
        for (from, to, every) in [
            (0, 1, 1),
            (0, 300, 7),
            (0, 65_536, 1000),
            (0, 70_001, 256),
            (700, 1000, 13),
            (255, 257, 1),
            (65_535, 65_537, 1),
            (65_000, 131_073, 4096),
            (70_001, 70_002, 1),
        ] {
            let rebuilt = rebuild(from, to, every).unwrap();
            let names: Vec<TileId> = rebuilt.iter().map(|(tile, _)| *tile).collect();
            assert_eq!(
                names,
                rebuilt_between(from, to).collect::<Vec<_>>(),
                "{from}..{to}"
            );
            let tiles = honest(to);
            for (tile, hashes) in &rebuilt {
                assert_eq!(hashes, &served(&tiles, *tile), "{}", tile.path());
                compare(*tile, hashes, &served(&tiles, *tile)).unwrap();
            }
        }
        assert_eq!(rebuilt_between(1000, 1000).count(), 0);
    }

    #[test]
    fn a_changed_or_cut_tile_is_named() {
        let tiles = honest(300);
        let tile = hash_tile(0, 0, 256);
        let mut flipped = served(&tiles, tile);
        let rebuilt = flipped.clone();
        flipped[32 * 9 + 3] ^= 1;
        assert_eq!(
            compare(tile, &rebuilt, &flipped),
            Err(AuditFinding::HashTile {
                path: "tile/0/000".into(),
                problem: TileProblem::Differs { first: 9 }
            })
        );
        assert!(matches!(
            compare(tile, &rebuilt, &rebuilt[..32]),
            Err(AuditFinding::HashTile {
                problem: TileProblem::Length {
                    served: 32,
                    expected: 8192
                },
                ..
            })
        ));
    }

    #[test]
    fn earlier_hashes_that_do_not_give_the_peaks_are_refused() {
        let (from, to) = (70_001, 70_300);
        let tiles = honest(to);
        let seeds = TileRebuild::seeds(from, to);
        assert_eq!(
            seeds,
            [
                Seed {
                    tile: hash_tile(0, 273, 256),
                    hashes: 113
                },
                Seed {
                    tile: hash_tile(1, 1, 18),
                    hashes: 17
                }
            ]
        );
        let honest_seeds: Vec<Vec<u8>> = seeds.iter().map(|s| served(&tiles, s.tile)).collect();
        for (which, damaged_hash) in [(0, 0), (0, 64), (0, 96), (0, 112), (1, 16)] {
            let mut damaged = honest_seeds.clone();
            damaged[which][damaged_hash * 32] ^= 0x80;
            let refused = TileRebuild::resume(&range(from), to, &damaged).unwrap_err();
            assert_eq!(
                refused,
                AuditFinding::HashTile {
                    path: seeds[which].tile.path(),
                    problem: TileProblem::Earlier {
                        hashes: seeds[which].hashes
                    }
                },
                "hash {damaged_hash} of seed {which}"
            );
        }
        let mut cut = honest_seeds.clone();
        cut[0].truncate(32);
        assert!(TileRebuild::resume(&range(from), to, &cut).is_err());
        assert!(TileRebuild::resume(&range(from), to, &honest_seeds).is_ok());
    }
}
