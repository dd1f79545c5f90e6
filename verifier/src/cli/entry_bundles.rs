//! Reading a range of entries from the log's entry-bundle tiles, the next
//! bundles fetched while one is being checked.
//!
//! Nothing read here is trusted: the caller hashes every entry into the
//! compact range and compares the root with the signed checkpoint's.

use super::outcome::Failure;
use super::remote::Log;
use crate::tiles::{decode_entry_bundle, TileId, TILE_WIDTH};

/// Entry bundles fetched ahead of the one being checked.
const PREFETCH: usize = 4;

/// Calls `each` with the entries from index `from` to `size` (exclusive)
/// of the tree of `size` entries, a bundle's worth at a time, with the
/// bundle's tile and the index of the first entry given. A bundle that is
/// not one, or holds the wrong number of entries, is a security finding.
pub fn for_each_bundle(
    log: &Log,
    from: u64,
    size: u64,
    mut each: impl FnMut(TileId, u64, &[&[u8]]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let bundles = (from / TILE_WIDTH..size.div_ceil(TILE_WIDTH)).map(|index| {
        TileId::entry_bundle_in_tree(index, size)
            .expect("every bundle index below the size is in the tree")
    });
    std::thread::scope(|scope| {
        let (send, fetched) = std::sync::mpsc::sync_channel(PREFETCH);
        scope.spawn(move || {
            for tile in bundles {
                let bytes = log.tile(tile, size);
                let failed = bytes.is_err();
                // The receiver hangs up when it stops early.
                if send.send((tile, bytes)).is_err() || failed {
                    break;
                }
            }
        });
        for (tile, bytes) in fetched {
            let bytes = bytes?;
            let entries = decode_entry_bundle(&bytes).map_err(|e| {
                Failure::security(format!("{} is not an entry bundle: {e}", tile.path()))
            })?;
            if entries.len() != usize::from(tile.width) {
                return Err(Failure::security(format!(
                    "{} holds {} entries, not {}",
                    tile.path(),
                    entries.len(),
                    tile.width
                )));
            }
            let start = tile.index * TILE_WIDTH;
            let skip = from.saturating_sub(start);
            each(tile, start + skip, &entries[skip as usize..])?;
        }
        Ok(())
    })
}
