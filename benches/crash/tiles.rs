//! The tree as served, rebuilt from scratch: every entry bundle and hash
//! tile of the current checkpoint, fetched over plain HTTP (C2SP
//! tlog-tiles), with the root recomputed from the entries.

use crate::http::HttpLog;
use std::collections::HashMap;
use verifier::checkpoint::SignedCheckpoint;
use verifier::keys::VerifierKey;
use verifier::merkle::leaf_hash;
use verifier::tile_builder::TileBuilder;
use verifier::tiles::{decode_entry_bundle, TileId, TileKind};

/// Fetches `/checkpoint` and every tile of the tree it signs, checks each
/// hash tile against tiles rebuilt from the entry bundles and the rebuilt
/// root against the signed one, and returns the checkpoint and the
/// entries. Blocking: run it off the async workers.
pub(super) fn rebuild_from_tiles(
    http: &HttpLog,
    log_key: &VerifierKey,
) -> Result<(SignedCheckpoint, Vec<Vec<u8>>), String> {
    let note = http.get("checkpoint")?;
    let signed = SignedCheckpoint::verify(&note, log_key)
        .map_err(|e| format!("/checkpoint does not verify under the log key: {e}"))?;
    let size = signed.checkpoint.size;
    let tiles = TileId::all_for_size(size);
    let mut entries = Vec::with_capacity(size as usize);
    for tile in tiles.iter().filter(|t| t.kind == TileKind::Entries) {
        let path = tile.path();
        let bundle = http.get(&path)?;
        let bundle = decode_entry_bundle(&bundle)
            .map_err(|e| format!("/{path}: not an entry bundle: {e}"))?;
        if bundle.len() != usize::from(tile.width) {
            return Err(format!(
                "/{path}: {} entries, not {}",
                bundle.len(),
                tile.width
            ));
        }
        entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    if entries.len() as u64 != size {
        return Err(format!(
            "the entry bundles hold {} entries for size {size}",
            entries.len()
        ));
    }
    let mut builder = TileBuilder::new();
    entries.iter().for_each(|e| builder.append(leaf_hash(e)));
    if builder.root() != signed.checkpoint.root {
        return Err(format!(
            "the root rebuilt from the entry bundles is {}, the signed root for size {size} is {}",
            builder.root(),
            signed.checkpoint.root
        ));
    }
    let rebuilt: HashMap<(u8, u64), Vec<u8>> = builder
        .take_changed()
        .into_iter()
        .map(|t| ((t.level, t.index), t.hashes))
        .collect();
    for tile in tiles {
        if let TileKind::Hashes { level } = tile.kind {
            let path = tile.path();
            if Some(&http.get(&path)?) != rebuilt.get(&(level, tile.index)) {
                return Err(format!(
                    "/{path}: the served hash tile differs from the one rebuilt from the entries"
                ));
            }
        }
    }
    Ok((signed, entries))
}
