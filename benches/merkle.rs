//! Hashing and proof verification: the per-entry cost every auditor pays.
//!
//! Run with `cargo bench -p tlog-benches --bench merkle`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use verifier::merkle::{leaf_hash, node_hash, verify_consistency, verify_inclusion, CompactRange};
use verifier::tile_builder::{MemoryTiles, TileBuilder};
use verifier::tiles::TiledHashReader;

fn tree(size: u64) -> (TileBuilder, MemoryTiles) {
    let mut builder = TileBuilder::new();
    (0..size).for_each(|i| builder.append(leaf_hash(&i.to_be_bytes())));
    let mut tiles = MemoryTiles::default();
    tiles.apply(builder.take_changed());
    (builder, tiles)
}

fn hashing(c: &mut Criterion) {
    let entry = vec![7u8; 400];
    let mut group = c.benchmark_group("hashing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("leaf_hash/400B", |b| {
        b.iter(|| leaf_hash(black_box(&entry)))
    });
    let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
    group.bench_function("node_hash", |b| {
        b.iter(|| node_hash(black_box(l), black_box(r)))
    });
    group.bench_function("compact_range_append", |b| {
        b.iter_batched(
            CompactRange::new,
            |mut range| {
                (0..1024u64).for_each(|i| range.append(leaf_hash(&i.to_be_bytes())));
                range
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn proofs(c: &mut Criterion) {
    const SIZE: u64 = 1 << 16;
    let (builder, tiles) = tree(SIZE);
    let reader = TiledHashReader::new(&tiles);
    let root = builder.root();
    let index = SIZE / 3;
    let leaf = leaf_hash(&index.to_be_bytes());
    let inclusion = tlog_tiles::prove_record(SIZE, index, &reader).expect("inclusion proof");
    let old = SIZE / 2 + 3;
    let old_root = tlog_tiles::tree_hash(old, &reader).expect("old root");
    let consistency = tlog_tiles::prove_tree(SIZE, old, &reader).expect("consistency proof");

    let mut group = c.benchmark_group("proofs/65536");
    group.bench_function("build_inclusion", |b| {
        b.iter(|| tlog_tiles::prove_record(SIZE, black_box(index), &reader).unwrap())
    });
    group.bench_function("verify_inclusion", |b| {
        b.iter(|| verify_inclusion(black_box(&inclusion), index, SIZE, leaf, root).unwrap())
    });
    group.bench_function("verify_consistency", |b| {
        b.iter(|| verify_consistency(black_box(&consistency), old, old_root, SIZE, root).unwrap())
    });
    group.finish();
}

criterion_group!(benches, hashing, proofs);
criterion_main!(benches);
