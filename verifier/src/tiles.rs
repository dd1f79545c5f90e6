//! C2SP tlog-tiles: tile paths, entry bundles, and reading proof hashes
//! from hash tiles.
//!
//! Tiles have height 8: a full tile holds 256 hashes (or, for an entry
//! bundle, 256 entries). Paths are
//!
//! - `tile/<L>/<N>[.p/<W>]`: W hashes at tree level 8·L, starting at hash
//!   256·N of that level;
//! - `tile/entries/<N>[.p/<W>]`: entries 256·N to 256·N+W−1;
//!
//! where N is written in 3-digit groups with an `x` before every group but
//! the last (1234067 → `x001/x234/067`), and `.p/<W>` appears only for a
//! partial tile (1 ≤ W ≤ 255). A full tile never changes again, so clients
//! and caches may keep it forever.
//!
//! `tlog_tiles` implements Go's sumdb tile layout, whose paths carry the
//! height (`tile/8/0/…`) and call entry bundles `data`; C2SP dropped both.
//! The paths here are written from the C2SP spec; the tile arithmetic and
//! hash-tile authentication reuse `tlog_tiles`.

use crate::merkle::{node_hash, Hash, HashReader};

/// Tile height: every tile spans 8 levels of the tree.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile: 2^[`TILE_HEIGHT`].
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// An entry in a bundle is prefixed by a big-endian u16 length, so no entry
/// can exceed this many bytes.
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Hashes at tree level 8·`level`.
    Hashes {
        /// The tile level L.
        level: u8,
    },
    /// Entry bundle: the entries themselves.
    Entries,
}

/// One tile, as named by a C2SP tlog-tiles path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    /// Hashes at some level, or entries.
    pub kind: TileKind,
    /// N: the tile's index within its level.
    pub index: u64,
    /// W: how many hashes or entries it holds, 1 to 256; 256 is full.
    pub width: u16,
}

/// A path that is not a canonical C2SP tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a C2SP tile path: {0:?}")]
pub struct TilePathError(pub String);

impl TileId {
    /// Whether the tile is full, and so immutable.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The C2SP path, without a leading slash.
    pub fn path(&self) -> String {
        let level = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut groups = vec![format!("{:03}", self.index % 1000)];
        let mut rest = self.index / 1000;
        while rest > 0 {
            groups.push(format!("x{:03}", rest % 1000));
            rest /= 1000;
        }
        groups.reverse();
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/{level}/{}{partial}", groups.join("/"))
    }

    /// Parses a canonical C2SP tile path (no leading slash). Anything that
    /// would not re-encode to the same path is refused: a client that
    /// caches by path must never see two names for one tile.
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        let bad = || TilePathError(path.to_owned());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (level, rest) = rest.split_once('/').ok_or_else(bad)?;
        let kind = if level == "entries" {
            TileKind::Entries
        } else {
            let level: u8 = parse_decimal(level).ok_or_else(bad)?;
            if u32::from(level) * u32::from(TILE_HEIGHT) >= 64 {
                return Err(bad());
            }
            TileKind::Hashes { level }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width: u16 = parse_decimal(width).ok_or_else(bad)?;
                if width == 0 || u64::from(width) >= TILE_WIDTH {
                    return Err(bad());
                }
                (index, width)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let mut index: u64 = 0;
        let groups: Vec<&str> = index_part.split('/').collect();
        for (i, group) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last {
                *group
            } else {
                group.strip_prefix('x').ok_or_else(bad)?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let value: u64 = digits.parse().map_err(|_| bad())?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(value))
                .ok_or_else(bad)?;
        }
        let tile = Self { kind, index, width };
        if tile.path() != path {
            return Err(bad());
        }
        Ok(tile)
    }

    /// Every tile of a tree of `size` entries: for each level, the full
    /// tiles and the partial one at the right edge, hash tiles and entry
    /// bundles alike. This is what a client fetches to rebuild the tree.
    pub fn all_for_size(size: u64) -> Vec<TileId> {
        let mut tiles = Vec::new();
        let mut level = 0u8;
        while u32::from(level) * u32::from(TILE_HEIGHT) < 64 {
            let hashes_at_level = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            if hashes_at_level == 0 {
                break;
            }
            for tile in tiles_covering(hashes_at_level) {
                tiles.push(TileId {
                    kind: TileKind::Hashes { level },
                    ..tile
                });
                if level == 0 {
                    tiles.push(TileId {
                        kind: TileKind::Entries,
                        ..tile
                    });
                }
            }
            level += 1;
        }
        tiles
    }

    /// The hash tile at `level` whose index is `index`, cut to the width it
    /// has in a tree of `size` entries; `None` if the tree has no such tile.
    pub fn hash_tile_in_tree(level: u8, index: u64, size: u64) -> Option<TileId> {
        let width = width_in_tree(index, size.checked_shr(u32::from(level) * 8)?)?;
        Some(TileId {
            kind: TileKind::Hashes { level },
            index,
            width,
        })
    }

    /// The entry bundle with this index, cut to the width it has in a tree
    /// of `size` entries; `None` if the tree has no such bundle.
    pub fn entry_bundle_in_tree(index: u64, size: u64) -> Option<TileId> {
        Some(TileId {
            kind: TileKind::Entries,
            index,
            width: width_in_tree(index, size)?,
        })
    }

    /// Converts from `tlog_tiles`' Go-layout tile of height 8.
    pub fn from_tlog_tile(tile: &tlog_tiles::Tile) -> Self {
        debug_assert_eq!(tile.height(), TILE_HEIGHT);
        let kind = if tile.is_data() {
            TileKind::Entries
        } else {
            TileKind::Hashes {
                level: tile.level(),
            }
        };
        Self {
            kind,
            index: tile.level_index(),
            width: tile.width() as u16,
        }
    }
}

/// The width of tile `index` of a level holding `count` items, if present.
fn width_in_tree(index: u64, count: u64) -> Option<u16> {
    let start = index.checked_mul(TILE_WIDTH)?;
    if start >= count {
        return None;
    }
    Some((count - start).min(TILE_WIDTH) as u16)
}

/// The tiles (kind left as level-0 hashes) covering `count` items.
fn tiles_covering(count: u64) -> impl Iterator<Item = TileId> {
    (0..count.div_ceil(TILE_WIDTH)).map(move |index| TileId {
        kind: TileKind::Hashes { level: 0 },
        index,
        width: width_in_tree(index, count).expect("index is within count"),
    })
}

/// Parses a canonical decimal: digits only, no sign, no leading zeros.
fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Why an entry bundle could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// An entry is longer than a u16 length prefix can say.
    #[error("entry {index} is {len} bytes; a bundle entry is at most 65535")]
    EntryTooLarge {
        /// Position in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// The bytes end inside a length prefix or an entry.
    #[error("entry bundle is truncated")]
    Truncated,
    /// The bundle holds more entries than a tile can.
    #[error("entry bundle holds more than 256 entries")]
    TooManyEntries,
}

/// Encodes an entry bundle: each entry as a big-endian u16 length, then
/// its bytes.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, BundleError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(BundleError::TooManyEntries);
    }
    let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
    let mut out = Vec::with_capacity(total);
    for (index, entry) in entries.iter().enumerate() {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLarge {
            index,
            len: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries, refusing trailing or missing
/// bytes.
pub fn decode_entry_bundle(mut bundle: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut entries = Vec::new();
    while !bundle.is_empty() {
        if entries.len() as u64 == TILE_WIDTH {
            return Err(BundleError::TooManyEntries);
        }
        let (len, rest) = bundle
            .split_first_chunk::<2>()
            .ok_or(BundleError::Truncated)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(BundleError::Truncated);
        }
        let (entry, rest) = rest.split_at(len);
        entries.push(entry);
        bundle = rest;
    }
    Ok(entries)
}

/// Somewhere hash tiles can be read from: the server's database, or a
/// client's verified cache.
pub trait HashTileSource {
    /// Why a read failed.
    type Error: std::fmt::Display;

    /// The hashes of hash tile (`level`, `index`), at least as many as the
    /// caller's tree covers. May return more (a tile that has since grown);
    /// hashes in a tile never change once written.
    fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, Self::Error>;
}

/// Reads any stored tree hash from a trusted [`HashTileSource`], for the
/// RFC 9162 proof builders in `tlog_tiles` (`prove_record`, `prove_tree`,
/// `tree_hash`).
///
/// The hash of the subtree at tree level `8·L + k` is computed from 2^k
/// hashes of one tile at level L, so each requested hash costs one tile
/// read. It does not authenticate what it reads: use it over storage the
/// caller trusts. A client reading tiles from a log it does not trust must
/// verify every proof it builds against the signed root. Note that
/// `tlog_tiles::TileHashReader` (like Go's) does not authenticate every
/// tile it reads, so it is no substitute for that final check.
pub struct TiledHashReader<'a, S> {
    source: &'a S,
}

impl<'a, S: HashTileSource> TiledHashReader<'a, S> {
    /// A reader over `source`.
    pub fn new(source: &'a S) -> Self {
        Self { source }
    }
}

impl<S: HashTileSource> HashReader for TiledHashReader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut cache: Option<((u8, u64), Vec<u8>)> = None;
        indexes
            .iter()
            .map(|&stored| {
                let (level, n) = tlog_tiles::split_stored_hash_index(stored);
                let tile_level = level / TILE_HEIGHT;
                let k = u32::from(level % TILE_HEIGHT);
                let first = n << k;
                let key = (tile_level, first / TILE_WIDTH);
                if cache.as_ref().map(|(k, _)| *k) != Some(key) {
                    let data = self.source.hash_tile(key.0, key.1).map_err(|e| {
                        tlog_tiles::Error::InvalidInput(format!("reading tile: {e}"))
                    })?;
                    cache = Some((key, data));
                }
                let data = &cache.as_ref().expect("just filled").1;
                let start = (first % TILE_WIDTH) as usize * 32;
                let end = start + (32usize << k);
                let hashes = data.get(start..end).ok_or(tlog_tiles::Error::InvalidTile)?;
                Ok(subtree_root(hashes))
            })
            .collect()
    }
}

/// The root of the perfect subtree whose leaves are `hashes` (a power of
/// two of 32-byte hashes), combined pairwise level by level.
fn subtree_root(hashes: &[u8]) -> Hash {
    let mut level: Vec<Hash> = hashes
        .chunks_exact(32)
        .map(|c| Hash(c.try_into().expect("chunks are 32 bytes")))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(pair[0], pair[1]))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_three_digit_groups() {
        let tile = |kind, index, width| TileId { kind, index, width };
        let h = |level| TileKind::Hashes { level };
        assert_eq!(tile(h(0), 0, 256).path(), "tile/0/000");
        assert_eq!(tile(h(1), 1_234_067, 256).path(), "tile/1/x001/x234/067");
        assert_eq!(tile(h(2), 1000, 5).path(), "tile/2/x001/000.p/5");
        assert_eq!(
            tile(TileKind::Entries, 3, 232).path(),
            "tile/entries/003.p/232"
        );
        for t in [
            tile(h(0), 0, 256),
            tile(h(3), 1_234_067, 17),
            tile(TileKind::Entries, u64::MAX, 1),
        ] {
            assert_eq!(TileId::parse(&t.path()), Ok(t));
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            "tile/0/00",
            "tile/0/0000",
            "tile/00/000",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/01",
            "tile/0/001/",
            "tile/8/000",
            "tile/data/000",
            "tile/entries/x1/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "/tile/0/000",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn all_tiles_of_a_tree_are_listed_once() {
        let paths: Vec<String> = TileId::all_for_size(1000)
            .iter()
            .map(TileId::path)
            .collect();
        assert_eq!(
            paths,
            [
                "tile/0/000",
                "tile/entries/000",
                "tile/0/001",
                "tile/entries/001",
                "tile/0/002",
                "tile/entries/002",
                "tile/0/003.p/232",
                "tile/entries/003.p/232",
                "tile/1/000.p/3",
            ]
        );
        assert!(TileId::all_for_size(0).is_empty());
        assert_eq!(
            TileId::hash_tile_in_tree(1, 0, 1000).map(|t| t.width),
            Some(3)
        );
        assert_eq!(TileId::hash_tile_in_tree(1, 1, 1000), None);
        assert_eq!(TileId::hash_tile_in_tree(2, 0, 1000), None);
        assert_eq!(
            TileId::entry_bundle_in_tree(3, 1000).map(|t| t.width),
            Some(232)
        );
    }

    #[test]
    fn bundles_round_trip_and_refuse_damage() {
        let entries: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![], vec![7; 300]];
        let bundle = encode_entry_bundle(&entries).unwrap();
        assert_eq!(&bundle[..3], &[0, 1, b'a']);
        assert_eq!(decode_entry_bundle(&bundle).unwrap(), entries);
        assert_eq!(
            decode_entry_bundle(&bundle[..bundle.len() - 1]),
            Err(BundleError::Truncated)
        );
        assert_eq!(decode_entry_bundle(&[0]), Err(BundleError::Truncated));
        assert!(encode_entry_bundle(&[vec![0u8; 65_536]]).is_err());
        assert!(encode_entry_bundle(&[vec![0u8; 65_535]]).is_ok());
    }
}
