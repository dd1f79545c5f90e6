//! Property tests: the log's Merkle code against an independent
//! implementation (`rs_merkle` with an RFC 6962 hasher), and round trips of
//! the C2SP tile formats.
//!
//! `rs_merkle` builds its tree bottom-up, pairing nodes left to right and
//! promoting a lone rightmost node unchanged to the next layer (its
//! `concat_and_hash` receives `None` for the missing right sibling). For
//! RFC 6962 hashing that is the same tree as RFC 9162 §2.1.1's "split at the
//! largest power of two below n": the left part is always perfect, and the
//! promoted node is exactly the right subtree that RFC 9162 hashes on its
//! own. Its single-leaf proofs are the sibling hashes bottom-up, skipping
//! promoted layers, which is RFC 9162's audit path.

mod common;

use common::Rfc6962;
use proptest::prelude::*;
use proptest::test_runner::Config;
use rs_merkle::{MerkleProof, MerkleTree};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use verifier::merkle::{
    leaf_hash, verify_consistency, verify_inclusion, CompactRange, Hash, ProofError,
};
use verifier::tile_builder::MemoryTiles as MemTiles;
use verifier::tile_builder::TileBuilder;
use verifier::tiles::{
    decode_entry_bundle, encode_entry_bundle, BundleError, TileId, TileKind, TiledHashReader,
    TILE_WIDTH,
};

/// Leaf `i` of the tree with this seed: `SHA-256(0x00 || seed || i)`,
/// computed here rather than by the code under test.
fn leaves(seed: u64, size: u64) -> Vec<[u8; 32]> {
    (0..size)
        .map(|i| {
            let mut sha = Sha256::new();
            sha.update([0x00]);
            sha.update(seed.to_be_bytes());
            sha.update(i.to_be_bytes());
            sha.finalize().into()
        })
        .collect()
}

/// The hash tiles of `leaves`, written out every `batch` appends.
fn build_tiles(leaves: &[[u8; 32]], batch: usize) -> (TileBuilder, MemTiles) {
    let mut builder = TileBuilder::new();
    let mut store = MemTiles::default();
    for (i, &leaf) in leaves.iter().enumerate() {
        builder.append(Hash(leaf));
        if (i + 1).is_multiple_of(batch) {
            store.apply(builder.take_changed());
        }
    }
    store.apply(builder.take_changed());
    (builder, store)
}

fn rs_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    MerkleTree::<Rfc6962>::from_leaves(leaves)
        .root()
        .expect("a non-empty tree has a root")
}

fn flip(mut proof: Vec<Hash>, which: usize, bit: u8) -> Vec<Hash> {
    let at = which % proof.len();
    proof[at].0[usize::from(bit / 8)] ^= 1 << (bit % 8);
    proof
}

fn config() -> Config {
    Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The definition, for the sizes where it is cheap: RFC 9162 §2.1.1 MTH.
fn reference_root(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes.len() {
        0 => Sha256::digest([]).into(),
        1 => hashes[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            <Rfc6962 as rs_merkle::Hasher>::concat_and_hash(
                &reference_root(&hashes[..k]),
                Some(&reference_root(&hashes[k..])),
            )
        }
    }
}

#[test]
fn rs_merkle_with_the_rfc_hasher_is_rfc_6962_at_small_sizes() {
    // Every size up to 300, including the non-powers of two where rs_merkle
    // promotes lone nodes.
    let all = leaves(1, 300);
    for n in 1..=all.len() {
        assert_eq!(rs_root(&all[..n]), reference_root(&all[..n]), "size {n}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn roots_match_rs_merkle(size in 1..2000u64, seed: u64, batch in 1..600usize) {
        let leaves = leaves(seed, size);
        let want = rs_root(&leaves);

        let mut range = CompactRange::new();
        leaves.iter().for_each(|&l| range.append(Hash(l)));
        prop_assert_eq!(range.root().0, want);

        let (builder, store) = build_tiles(&leaves, batch);
        prop_assert_eq!(builder.root().0, want);
        let tiled = tlog_tiles::tree_hash(size, &TiledHashReader::new(&store)).unwrap();
        prop_assert_eq!(tiled.0, want);
    }

    #[test]
    fn inclusion_proofs_match_rs_merkle(
        (size, index) in (1..2000u64).prop_flat_map(|size| (Just(size), 0..size)),
        grown in 0..700u64,
        seed: u64,
        which: usize,
        bit: u8,
    ) {
        // Tiles for a tree that has since grown: proofs to the older size
        // must not change.
        let all = leaves(seed, size + grown);
        let leaves = &all[..size as usize];
        let tree = MerkleTree::<Rfc6962>::from_leaves(leaves);
        let root = tree.root().unwrap();
        let leaf = leaves[index as usize];

        let (_, exact) = build_tiles(leaves, usize::MAX);
        let (_, bigger) = build_tiles(&all, 97);
        let proof = tlog_tiles::prove_record(size, index, &TiledHashReader::new(&exact)).unwrap();
        let from_bigger =
            tlog_tiles::prove_record(size, index, &TiledHashReader::new(&bigger)).unwrap();
        prop_assert_eq!(&from_bigger, &proof);

        // rs_merkle's single-leaf proof is the same audit path.
        let rs_proof = tree.proof(&[index as usize]);
        let ours: Vec<[u8; 32]> = proof.iter().map(|h| h.0).collect();
        prop_assert_eq!(rs_proof.proof_hashes(), &ours[..]);

        // Each side's verifier accepts the other's proof.
        prop_assert_eq!(verify_inclusion(&proof, index, size, Hash(leaf), Hash(root)), Ok(()));
        let rs_hashes: Vec<Hash> = rs_proof.proof_hashes().iter().map(|&h| Hash(h)).collect();
        prop_assert_eq!(verify_inclusion(&rs_hashes, index, size, Hash(leaf), Hash(root)), Ok(()));
        prop_assert!(MerkleProof::<Rfc6962>::new(ours.clone())
            .verify(root, &[index as usize], &[leaf], size as usize));

        // A flipped bit anywhere in the proof is refused by both.
        if !proof.is_empty() {
            let damaged = flip(proof, which, bit);
            prop_assert_eq!(
                verify_inclusion(&damaged, index, size, Hash(leaf), Hash(root)),
                Err(ProofError::Inclusion { index, size })
            );
            let damaged: Vec<[u8; 32]> = damaged.iter().map(|h| h.0).collect();
            prop_assert!(!MerkleProof::<Rfc6962>::new(damaged)
                .verify(root, &[index as usize], &[leaf], size as usize));
        }
        // So is the leaf proven at any other index.
        if size > 1 {
            let other = (index + 1 + which as u64 % (size - 1)) % size;
            prop_assert_ne!(other, index);
            prop_assert!(verify_inclusion(&ours.iter().map(|&h| Hash(h)).collect::<Vec<_>>(),
                other, size, Hash(leaf), Hash(root)).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify(
        (new, old) in (1..2000u64).prop_flat_map(|new| (Just(new), 1..=new)),
        grown in 0..700u64,
        seed: u64,
        which: usize,
        bit: u8,
    ) {
        let all = leaves(seed, new + grown);
        let old_root = rs_root(&all[..old as usize]);
        let new_root = rs_root(&all[..new as usize]);

        let mut range = CompactRange::new();
        all[..old as usize].iter().for_each(|&l| range.append(Hash(l)));
        prop_assert_eq!(range.root().0, old_root);

        let (_, exact) = build_tiles(&all[..new as usize], usize::MAX);
        let (_, bigger) = build_tiles(&all, 61);
        let proof = tlog_tiles::prove_tree(new, old, &TiledHashReader::new(&exact)).unwrap();
        let from_bigger = tlog_tiles::prove_tree(new, old, &TiledHashReader::new(&bigger)).unwrap();
        prop_assert_eq!(&from_bigger, &proof);

        prop_assert_eq!(
            verify_consistency(&proof, old, Hash(old_root), new, Hash(new_root)),
            Ok(())
        );
        let refused = Err(ProofError::Consistency { old_size: old, new_size: new });
        if old == new {
            prop_assert!(proof.is_empty());
        } else {
            prop_assert!(!proof.is_empty());
            prop_assert_eq!(
                verify_consistency(&flip(proof.clone(), which, bit), old, Hash(old_root), new, Hash(new_root)),
                refused.clone()
            );
            prop_assert_eq!(
                verify_consistency(&proof, old, Hash(new_root), new, Hash(old_root)),
                refused.clone()
            );
        }
        let mut wrong_old = old_root;
        wrong_old[usize::from(bit / 8)] ^= 1 << (bit % 8);
        prop_assert_eq!(
            verify_consistency(&proof, old, Hash(wrong_old), new, Hash(new_root)),
            refused
        );
    }

    #[test]
    fn tile_paths_round_trip(
        level in 0..8u8,
        entries: bool,
        index in prop_oneof![0..2000u64, any::<u64>()],
        width in 1..=256u16,
    ) {
        let kind = if entries { TileKind::Entries } else { TileKind::Hashes { level } };
        let tile = TileId { kind, index, width };
        let path = tile.path();
        prop_assert_eq!(TileId::parse(&path), Ok(tile));
        prop_assert_eq!(path.contains(".p/"), width < 256);

        // The C2SP path is Go's sumdb path without the height, with
        // "entries" for "data".
        let go = tlog_tiles::Tile::new(8, if entries { 0 } else { level }, index, u32::from(width), entries);
        let go_path = go.path().replacen("tile/8/", "tile/", 1).replacen("/data/", "/entries/", 1);
        prop_assert_eq!(&path, &go_path);
        prop_assert_eq!(TileId::from_tlog_tile(&go), tile);

        // No other spelling of the index parses.
        let padded = path.replacen('/', "/x000/", 2).replacen("tile/x000/", "tile/", 1);
        prop_assert!(TileId::parse(&padded).is_err(), "{padded}");
    }

    #[test]
    fn tiles_of_a_tree_match_go(size in 1..200_000u64) {
        // Every hash tile Go's sumdb would publish for this tree, and the
        // entry bundles beside the level-0 tiles.
        let ours: BTreeSet<String> = TileId::all_for_size(size).iter().map(TileId::path).collect();
        let mut go: BTreeSet<String> = BTreeSet::new();
        for tile in tlog_tiles::Tile::new_tiles(8, 0, size) {
            go.insert(TileId::from_tlog_tile(&tile).path());
            if tile.level() == 0 {
                let mut data = tile;
                data.set_is_data();
                go.insert(TileId::from_tlog_tile(&data).path());
            }
        }
        prop_assert_eq!(ours, go);
    }

    #[test]
    fn entry_bundles_round_trip(
        entries in prop::collection::vec(
            prop_oneof![
                8 => prop::collection::vec(any::<u8>(), 0..80),
                1 => prop::collection::vec(any::<u8>(), 250..600),
            ],
            0..=TILE_WIDTH as usize,
        ),
        cut: usize,
    ) {
        let bundle = encode_entry_bundle(&entries).unwrap();
        prop_assert_eq!(bundle.len(), entries.iter().map(|e| e.len() + 2).sum::<usize>());
        let decoded = decode_entry_bundle(&bundle).unwrap();
        prop_assert_eq!(&decoded, &entries);

        // Entry by entry: a big-endian u16 length, then the bytes.
        let mut at = 0;
        for entry in &entries {
            prop_assert_eq!(&bundle[at..at + 2], &(entry.len() as u16).to_be_bytes()[..]);
            prop_assert_eq!(&bundle[at + 2..at + 2 + entry.len()], &entry[..]);
            at += 2 + entry.len();
        }

        // Cut anywhere but at an entry boundary, the bundle is truncated.
        if !bundle.is_empty() {
            let cut = cut % bundle.len();
            let mut boundaries = BTreeSet::from([0]);
            let mut at = 0;
            for entry in &entries {
                at += 2 + entry.len();
                boundaries.insert(at);
            }
            let result = decode_entry_bundle(&bundle[..cut]);
            if boundaries.contains(&cut) {
                prop_assert!(result.is_ok());
            } else {
                prop_assert_eq!(result, Err(BundleError::Truncated));
            }
        }
    }
}

#[test]
fn a_bundle_refuses_a_257th_entry() {
    let entries = vec![b"x".to_vec(); TILE_WIDTH as usize + 1];
    assert_eq!(
        encode_entry_bundle(&entries),
        Err(BundleError::TooManyEntries)
    );
    let mut bundle = encode_entry_bundle(&entries[1..]).unwrap();
    bundle.extend_from_slice(&[0, 1, b'x']);
    assert_eq!(
        decode_entry_bundle(&bundle),
        Err(BundleError::TooManyEntries)
    );
}

#[test]
fn the_leaf_hash_is_rfc_6962() {
    let mut sha = Sha256::new();
    sha.update([0x00]);
    sha.update(b"data");
    assert_eq!(leaf_hash(b"data").0, <[u8; 32]>::from(sha.finalize()));
}
