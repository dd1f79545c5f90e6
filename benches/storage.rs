//! One integration batch made durable: the cost of `Storage::commit`, the
//! sequencer's only write, on redb and on sled, for batches of 1, 64 and
//! 1024 entries. Every commit fsyncs, so these are the figures that bound
//! the log's durable append rate.
//!
//! ```sh
//! cargo bench -p tlog-benches --bench storage
//! STORAGE_BENCH_DISK_ENTRIES=1000000 cargo bench -p tlog-benches --bench storage
//! ```
//!
//! Batches are built as the sequencer builds them: freshly signed events
//! of typical size (the load generator's mix, about 325 bytes an entry)
//! encoded as log entries, with their event ids, leaf hashes, the tiles a
//! [`TileBuilder`] changed and a signed checkpoint.
//! Building happens outside the timed region; each benchmark's store keeps
//! growing from one iteration to the next, as a log does.
//!
//! Before timing, the run prints each backend's on-disk bytes per entry
//! after `STORAGE_BENCH_DISK_ENTRIES` entries (default 100,000) committed
//! in batches of 1024, next to the raw entry bytes: the README's disk row.
//! Criterion cannot chart a size, so it is a plain line.

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use log_server::storage::{Backend, Batch};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use verifier::checkpoint::Checkpoint;
use verifier::event::{encode_entry, event_id, sign_event};
use verifier::keys::SigningKey;
use verifier::merkle::leaf_hash;
use verifier::tile_builder::TileBuilder;

/// Both embedded backends, with the names used in benchmark ids.
const BACKENDS: [(Backend, &str); 2] = [(Backend::Redb, "redb"), (Backend::Sled, "sled")];
/// Batch sizes: a lone submission, a typical cut under moderate load, and
/// the size loaded `AppendBatch` traffic reaches.
const BATCH_SIZES: [usize; 3] = [1, 64, 1024];
/// Default size of the log whose disk footprint is reported.
const DISK_ENTRIES: u64 = 100_000;
/// When the benchmark's events happened (any fixed time will do).
const OCCURRED_AT: i64 = 1_767_225_600;
/// Submitter keys the events are spread over.
const SUBMITTERS: u8 = 4;

/// The sequencer's side of a growing log: it turns fresh events into the
/// next [`Batch`], exactly as `Writer::prepare` does, minus the duplicate
/// lookups (every event here is new).
struct Sequencer {
    submitters: Vec<SigningKey>,
    reviewer: SigningKey,
    log_key: SigningKey,
    builder: TileBuilder,
}

impl Sequencer {
    fn new() -> Self {
        Self {
            submitters: (0..SUBMITTERS)
                .map(|i| {
                    SigningKey::from_seed(&format!("pipeline-{i}.example"), [i + 1; 32]).unwrap()
                })
                .collect(),
            reviewer: SigningKey::from_seed("release-review.example", [99; 32]).unwrap(),
            log_key: SigningKey::from_seed("log.example", [42; 32]).unwrap(),
            builder: TileBuilder::new(),
        }
    }

    /// The batch of the next `len` events, advancing the tree edge.
    fn next_batch(&mut self, len: usize) -> Batch {
        let first_index = self.builder.size();
        let accepted_at = prost_types::Timestamp {
            seconds: 1_767_225_700 + first_index as i64,
            nanos: 0,
        };
        let mut batch = Batch {
            first_index,
            ..Batch::default()
        };
        for n in first_index..first_index + len as u64 {
            let submitter = &self.submitters[(n % u64::from(SUBMITTERS)) as usize];
            let signed = sign_event(
                submitter,
                &tlog_benches::workload::event(n, 0, OCCURRED_AT, &self.reviewer),
            );
            let entry = encode_entry(&signed, accepted_at);
            let leaf = leaf_hash(&entry);
            self.builder.append(leaf);
            batch.event_ids.push(event_id(&signed));
            batch.leaf_hashes.push(leaf.0);
            batch.entries.push(entry);
        }
        batch.tiles = self.builder.take_changed();
        batch.checkpoint = Checkpoint {
            origin: self.log_key.name().to_owned(),
            size: self.builder.size(),
            root: self.builder.root(),
        }
        .sign(&self.log_key);
        batch
    }
}

/// Apparent and allocated bytes of everything under `path`: the apparent
/// size is what the backend wrote, the allocated size what the disk lost.
fn disk_bytes(path: &Path) -> (u64, u64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if !meta.is_dir() {
        return (meta.len(), meta.blocks() * 512);
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|child| disk_bytes(&child.unwrap().path()))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// Commits the same log of `STORAGE_BENCH_DISK_ENTRIES` realistic entries,
/// in batches of 1024, to each backend, closes the stores, and prints the
/// bytes each holds per entry next to the raw entry bytes.
fn disk_footprint(_: &mut Criterion) {
    let entries: u64 = std::env::var("STORAGE_BENCH_DISK_ENTRIES")
        .ok()
        .map(|n| {
            n.parse()
                .expect("STORAGE_BENCH_DISK_ENTRIES is a number of entries")
        })
        .unwrap_or(DISK_ENTRIES);
    let dirs: Vec<_> = BACKENDS
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let stores: Vec<_> = BACKENDS
        .iter()
        .zip(&dirs)
        .map(|((backend, _), dir)| backend.open(dir.path()).unwrap())
        .collect();
    let mut sequencer = Sequencer::new();
    let mut raw = 0u64;
    while sequencer.builder.size() < entries {
        let len = (entries - sequencer.builder.size()).min(1024) as usize;
        let batch = sequencer.next_batch(len);
        raw += batch.entries.iter().map(|e| e.len() as u64).sum::<u64>();
        stores
            .iter()
            .for_each(|store| store.commit(&batch).unwrap());
    }
    drop(stores);
    let per_entry = |bytes: u64| bytes as f64 / entries as f64;
    println!(
        "disk: {entries} entries in batches of 1024, raw entry bytes {raw} ({:.1} B/entry)",
        per_entry(raw)
    );
    for ((_, name), dir) in BACKENDS.iter().zip(&dirs) {
        let (apparent, allocated) = disk_bytes(dir.path());
        println!(
            "disk/{name}: {apparent} bytes = {:.1} B/entry, {:+.1} B/entry over raw \
             ({allocated} bytes allocated = {:.1} B/entry)",
            per_entry(apparent),
            per_entry(apparent) - per_entry(raw),
            per_entry(allocated),
        );
    }
}

/// Times `commit` of one prebuilt batch per iteration. Criterion builds
/// each input just before its iteration (`PerIteration`), so batches are
/// consumed in the order they were built and each starts where the store
/// ends; at milliseconds per fsync'd commit the per-iteration timer costs
/// nothing measurable.
fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.sampling_mode(SamplingMode::Flat);
    for (backend, name) in BACKENDS {
        for size in BATCH_SIZES {
            let dir = tempfile::tempdir().unwrap();
            let store = backend.open(dir.path()).unwrap();
            let mut sequencer = Sequencer::new();
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_batched(
                    || sequencer.next_batch(size),
                    |batch| {
                        store.commit(&batch).unwrap();
                        batch
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, disk_footprint, commit);
criterion_main!(benches);
