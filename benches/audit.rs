//! The audit engine over local entry bundles: what `verifier audit` costs
//! per entry once the network is out of the way. Each iteration decodes
//! every bundle, checks every entry (strict decoding, admission rules,
//! Ed25519 signature), hashes it into the compact range and compares the
//! root with the checkpoint's.
//!
//! ```sh
//! cargo bench -p tlog-benches --bench audit                     # 20,000 entries
//! AUDIT_BENCH_ENTRIES=1000000 cargo bench -p tlog-benches --bench audit
//! ```
//!
//! The log is a pool of at most [`POOL_BUNDLES`] distinct bundles, repeated
//! up to the requested size: the auditor neither knows nor cares that
//! entries repeat, and the benchmark's own memory stays small, so the
//! process's peak RSS is the auditor's.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::Duration;
use verifier::audit::{AuditState, Auditor};
use verifier::checkpoint::Checkpoint;
use verifier::event::{encode_entry, sign_event};
use verifier::keys::{KeyRing, SigningKey};
use verifier::merkle::{leaf_hash, CompactRange};
use verifier::proto::{event::Kind, CodeRelease, DataFlow, Event, Location};
use verifier::tiles::{decode_entry_bundle, encode_entry_bundle, TILE_WIDTH};

/// The default log size: enough for a stable rate, quick to run.
const DEFAULT_ENTRIES: u64 = 20_000;
/// Distinct bundles in the pool (16,384 entries, about 7 MiB).
const POOL_BUNDLES: u64 = 64;
/// Submitter keys the entries are spread over.
const SUBMITTERS: u8 = 4;

/// A log of `entries` entries held as encoded entry bundles.
struct Log {
    entries: u64,
    pool: Vec<Vec<u8>>,
    submitters: KeyRing,
    checkpoint: Checkpoint,
}

/// Event `n` of a realistic mix: data flows, and every fifth a release.
fn event(n: u64) -> Event {
    let place = |system: &str, region: &str| Location {
        system: system.into(),
        data_centre: format!("{}-1", region.to_lowercase()),
        region: region.into(),
        organisation: "Example Platform GmbH".into(),
    };
    let kind = if n % 5 == 4 {
        Kind::CodeRelease(CodeRelease {
            artifact_name: "example-app-android".into(),
            version: format!("4.{n}.0"),
            artifact_sha256: vec![n as u8; 32],
            source_repository: "https://git.example.com/app".into(),
            source_commit: format!("{n:040x}"),
            build_provenance_sha256: vec![0xab; 32],
            release_channel: "stable".into(),
            attestations: vec![],
        })
    } else {
        Kind::DataFlow(DataFlow {
            flow_id: format!("nightly-export-{n}"),
            data_category: "eu_user_data".into(),
            source: Some(place("accounts-db", "DE")),
            destination: Some(place("analytics-warehouse", "IE")),
            purpose: "product_analytics".into(),
            legal_basis: "legitimate_interest".into(),
            record_count: 1000 + n,
        })
    };
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600 + n as i64,
            nanos: 0,
        }),
        kind: Some(kind),
    }
}

fn log(entries: u64) -> Log {
    let keys: Vec<SigningKey> = (0..SUBMITTERS)
        .map(|i| SigningKey::from_seed(&format!("pipeline-{i}.example"), [i + 1; 32]).unwrap())
        .collect();
    let mut submitters = KeyRing::default();
    keys.iter()
        .for_each(|k| submitters.insert(k.verifier_key()));
    let pool_entries = entries.div_ceil(TILE_WIDTH).min(POOL_BUNDLES) * TILE_WIDTH;
    let pool_entries: Vec<Vec<u8>> = (0..pool_entries)
        .map(|n| {
            let signed = sign_event(&keys[(n % u64::from(SUBMITTERS)) as usize], &event(n));
            let accepted_at = prost_types::Timestamp {
                seconds: 1_767_225_700 + n as i64,
                nanos: 0,
            };
            encode_entry(&signed, accepted_at)
        })
        .collect();
    let mut range = CompactRange::new();
    let leaves: Vec<_> = pool_entries.iter().map(|e| leaf_hash(e)).collect();
    (0..entries).for_each(|i| range.append(leaves[(i % leaves.len() as u64) as usize]));
    let pool = pool_entries
        .chunks(TILE_WIDTH as usize)
        .map(|bundle| encode_entry_bundle(bundle).unwrap())
        .collect();
    Log {
        entries,
        pool,
        submitters,
        checkpoint: Checkpoint {
            origin: "log.example/bench".into(),
            size: entries,
            root: range.root(),
        },
    }
}

/// Audits the whole log from scratch, bundle by bundle, as the command does.
fn audit(log: &Log) {
    let mut auditor = Auditor::new(AuditState::default(), log.submitters.clone());
    for (bundle, first) in log.pool.iter().cycle().zip((0..log.entries).step_by(256)) {
        let entries = decode_entry_bundle(bundle).unwrap();
        let width = (log.entries - first).min(TILE_WIDTH) as usize;
        auditor.push_all(&entries[..width]).unwrap();
    }
    let state = auditor.finish(&log.checkpoint).unwrap();
    assert_eq!(state.size(), log.entries);
}

fn bench(c: &mut Criterion) {
    let entries = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .map(|n| {
            n.parse()
                .expect("AUDIT_BENCH_ENTRIES is a number of entries")
        })
        .unwrap_or(DEFAULT_ENTRIES);
    let log = log(entries);
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(entries));
    group.bench_function(format!("local_bundles/{entries}"), |b| {
        b.iter(|| audit(&log))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
