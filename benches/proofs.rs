//! Proofs and tiles served from storage, server side, in a large log: what
//! one read request costs once the network is out of the way.
//!
//! ```sh
//! cargo bench -p tlog-benches --bench proofs                          # 1M entries
//! PROOF_BENCH_ENTRIES=10000000 cargo bench -p tlog-benches --bench proofs
//! PROOF_BENCH_ENTRIES=10000000 PROOF_BENCH_BACKENDS=redb cargo bench -p tlog-benches --bench proofs
//! ```
//!
//! The log is populated once per run, on redb and on sled (or the backends
//! `PROOF_BENCH_BACKENDS` names: sled's bulk load is the slow part of a
//! large run), through the `Storage` trait in commits of 65,536 entries,
//! and then opened with `log_server::server::recover`, exactly as the
//! server starts. Entries
//! are 8 bytes (their index): proofs and hash tiles read only the hash
//! tiles, whose size does not depend on the entries, so small entries
//! keep the population quick without changing what is measured. Only the
//! entry-bundle case reads entries, and it copies 8 bytes per entry where
//! a real bundle copies a few hundred.
//!
//! Every proof is for a fresh pseudo-random index or size (seeded
//! xorshift), so reads are spread over the whole tree rather than hitting
//! one cached path. Times are per request, on one thread; throughput is
//! in requests.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use log_server::log::Log;
use log_server::server::recover;
use log_server::storage::{Backend, Batch, Storage};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use verifier::checkpoint::Checkpoint;
use verifier::keys::SigningKey;
use verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use verifier::tile_builder::TileBuilder;
use verifier::tiles::{TileId, TileKind, TILE_WIDTH};

/// Both embedded backends, with the names used in benchmark ids.
const BACKENDS: [(Backend, &str); 2] = [(Backend::Redb, "redb"), (Backend::Sled, "sled")];
/// The default log size.
const DEFAULT_ENTRIES: u64 = 1_000_000;
/// Entries per commit while populating: large enough that commits are
/// few, small enough that one batch's memory stays a few MiB.
const CHUNK: u64 = 1 << 16;
/// How often population reports progress, in entries.
const PROGRESS_EVERY: u64 = 1 << 20;

/// A seeded xorshift64 generator: reproducible indexes without a crate.
struct XorShift(u64);

impl XorShift {
    /// A number in `0..n`. The modulo bias is irrelevant at these sizes.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The logs under test, one per backend; the directory holding them is
/// removed on drop.
struct Logs {
    entries: u64,
    logs: Vec<(&'static str, Log)>,
    _dir: TempDir,
}

/// Entry `i`: its index, big-endian.
fn entry(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

/// The backends `PROOF_BENCH_BACKENDS` names (comma-separated), by
/// default both.
fn backends() -> Vec<(Backend, &'static str)> {
    let Ok(names) = std::env::var("PROOF_BENCH_BACKENDS") else {
        return BACKENDS.to_vec();
    };
    names
        .split(',')
        .map(|name| {
            *BACKENDS
                .iter()
                .find(|(_, known)| *known == name)
                .unwrap_or_else(|| panic!("PROOF_BENCH_BACKENDS: {name:?} is not redb or sled"))
        })
        .collect()
}

/// Writes a log of `entries` entries to each backend, one batch at a time
/// through a [`TileBuilder`] as the sequencer does, so memory stays flat
/// at any size, then recovers a [`Log`] over each store. The backends
/// commit each batch side by side, one thread each, so the population
/// takes as long as the slower one rather than the sum.
fn populate(entries: u64, backends: &[(Backend, &'static str)]) -> Logs {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed("log.example", [42; 32]).unwrap();
    let stores: Vec<Arc<dyn Storage>> = backends
        .iter()
        .map(|(backend, name)| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            Arc::from(backend.open(&path).unwrap())
        })
        .collect();
    let mut commit_time = vec![Duration::ZERO; stores.len()];
    let mut builder = TileBuilder::new();
    let started = Instant::now();
    while builder.size() < entries {
        let first_index = builder.size();
        let end = (first_index + CHUNK).min(entries);
        let mut batch = Batch {
            first_index,
            ..Batch::default()
        };
        for i in first_index..end {
            let entry = entry(i);
            let leaf = leaf_hash(&entry);
            builder.append(leaf);
            batch.entries.push(entry);
            batch.leaf_hashes.push(leaf.0);
            // A stand-in event id: a distinct, uniformly spread digest per
            // entry, so the index tables are as large and as scattered as
            // a real log's.
            batch.event_ids.push(leaf_hash(&(!i).to_be_bytes()).0);
        }
        batch.tiles = builder.take_changed();
        batch.checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size: end,
            root: builder.root(),
        }
        .sign(&key);
        std::thread::scope(|scope| {
            for (store, time) in stores.iter().zip(&mut commit_time) {
                let batch = &batch;
                scope.spawn(move || {
                    let start = Instant::now();
                    store.commit(batch).unwrap();
                    *time += start.elapsed();
                });
            }
        });
        if end / PROGRESS_EVERY != first_index / PROGRESS_EVERY || end == entries {
            let times: Vec<String> = backends
                .iter()
                .zip(&commit_time)
                .map(|((_, name), time)| format!("{name} {:.1} s", time.as_secs_f64()))
                .collect();
            eprintln!(
                "proofs: populated {end}/{entries} entries in {:.1} s (commits: {})",
                started.elapsed().as_secs_f64(),
                times.join(", ")
            );
        }
    }
    let logs = backends
        .iter()
        .zip(stores)
        .map(|((_, name), store)| (*name, recover(store, &key).unwrap().0))
        .collect();
    Logs {
        entries,
        logs,
        _dir: dir,
    }
}

/// Proof generation and tile serving on each backend.
fn serving(c: &mut Criterion, logs: &Logs) {
    let n = logs.entries;
    let full_tiles = n / TILE_WIDTH;
    assert!(full_tiles > 0, "the log needs at least one full tile");
    // The rightmost level-0 tile at its width in the tree; if the tree
    // ends on a tile boundary, a one-short prefix of it, as a client asks
    // for when its checkpoint ends there.
    let partial = TileId {
        kind: TileKind::Hashes { level: 0 },
        index: (n - 1) / TILE_WIDTH,
        width: ((n - 1) % TILE_WIDTH + 1).min(TILE_WIDTH - 1) as u16,
    };
    let full = |kind, index| TileId {
        kind,
        index,
        width: TILE_WIDTH as u16,
    };
    for (name, log) in &logs.logs {
        let mut group = c.benchmark_group(format!("{name}/{n}"));
        // 50 samples: an entry bundle can take a third of a millisecond,
        // and 100 samples of it would not fit the 3 s.
        group.sample_size(50);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(1));
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        group.bench_function("inclusion_proof", |b| {
            b.iter(|| log.inclusion_proof(rng.below(n), n).unwrap())
        });
        group.bench_function("consistency_proof", |b| {
            b.iter(|| {
                let (x, y) = (rng.below(n) + 1, rng.below(n) + 1);
                log.consistency_proof(x.min(y), x.max(y)).unwrap()
            })
        });
        group.bench_function("tile/level0_full", |b| {
            b.iter(|| {
                let tile = full(TileKind::Hashes { level: 0 }, rng.below(full_tiles));
                log.tile(tile).unwrap()
            })
        });
        group.bench_function(format!("tile/level0_partial_{}", partial.width), |b| {
            b.iter(|| log.tile(black_box(partial)).unwrap())
        });
        group.bench_function("tile/entries_full", |b| {
            b.iter(|| {
                log.tile(full(TileKind::Entries, rng.below(full_tiles)))
                    .unwrap()
            })
        });
        group.finish();
    }
}

/// What a client pays to check the proofs served above.
fn verification(c: &mut Criterion, logs: &Logs) {
    let n = logs.entries;
    let (_, log) = &logs.logs[0];
    let root = log.latest().root;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let index = rng.below(n);
    let (leaf, inclusion) = log.inclusion_proof(index, n).unwrap();
    assert_eq!(leaf, leaf_hash(&entry(index)));
    let old = rng.below(n) + 1;
    let old_root = log.stored_root(old).unwrap();
    let consistency = log.consistency_proof(old, n).unwrap();

    let mut group = c.benchmark_group(format!("verify/{n}"));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_inclusion", |b| {
        b.iter(|| verify_inclusion(black_box(&inclusion), index, n, leaf, root).unwrap())
    });
    group.bench_function("verify_consistency", |b| {
        b.iter(|| verify_consistency(black_box(&consistency), old, old_root, n, root).unwrap())
    });
    group.finish();
}

/// Populates the log once and runs every benchmark against it, so the
/// (possibly minutes-long) population is not repeated per function and the
/// directory is removed when the run ends.
fn bench(c: &mut Criterion) {
    let entries = std::env::var("PROOF_BENCH_ENTRIES")
        .ok()
        .map(|n| {
            n.parse()
                .expect("PROOF_BENCH_ENTRIES is a number of entries")
        })
        .unwrap_or(DEFAULT_ENTRIES);
    let logs = populate(entries, &backends());
    serving(c, &logs);
    verification(c, &logs);
}

criterion_group!(benches, bench);
criterion_main!(benches);
