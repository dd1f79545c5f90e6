//! The per-event cost of admission: Ed25519 verification alone, single
//! and batched, and the whole check a server runs on submission and an
//! auditor on replay.
//!
//! Run with `cargo bench -p tlog-benches --bench signatures`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use verifier::event::{check_submission, event_signing_message, sign_event};
use verifier::keys::{KeyRing, SigningKey};
use verifier::proto::{event::Kind, DataFlow, Event, Location};

/// A typical data flow; `n` varies it so that a batch holds distinct events.
fn flow(n: u64) -> Event {
    let location = |system: &str, region: &str| Location {
        system: system.into(),
        data_centre: format!("{system}-dc-1"),
        region: region.into(),
        organisation: "Example Platform GmbH".into(),
    };
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        }),
        kind: Some(Kind::DataFlow(DataFlow {
            flow_id: "nightly-export-2026-11-20".into(),
            data_category: "eu_user_data".into(),
            source: Some(location("accounts-db", "DE")),
            destination: Some(location("analytics-warehouse", "IE")),
            purpose: "product_analytics".into(),
            legal_basis: "legitimate_interest".into(),
            record_count: 120_000 + n,
        })),
    }
}

fn admission(c: &mut Criterion) {
    let key = SigningKey::from_seed("pipeline.example", [5; 32]).unwrap();
    let mut ring = KeyRing::default();
    ring.insert(key.verifier_key());
    let signed = sign_event(&key, &flow(0));
    let message = event_signing_message(&signed.key_id, &signed.event);
    let vkey = key.verifier_key();

    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ed25519_verify_strict", |b| {
        b.iter(|| assert!(vkey.verify(black_box(&message), black_box(&signed.signature))))
    });
    group.bench_function("check_submission", |b| {
        b.iter(|| check_submission(black_box(&signed), &ring).unwrap())
    });
    group.bench_function("sign_event", |b| {
        b.iter(|| sign_event(&key, black_box(&flow(0))))
    });
    group.finish();
}

/// `ed25519_dalek::verify_batch` over a batch of distinct events from a few
/// submitters, as a sequencer would see them, with throughput per
/// signature to set against `ed25519_verify_strict`.
///
/// Batch verification is not `verify_strict`: it does not refuse
/// small-order `R` or weak keys, and a failed batch does not say which
/// signature failed. A server using it keeps those checks and falls back
/// to one-by-one verification when a batch fails.
fn batched(c: &mut Criterion) {
    let keys: Vec<SigningKey> = (0..4u8)
        .map(|i| SigningKey::from_seed(&format!("pipeline-{i}.example"), [i + 1; 32]).unwrap())
        .collect();
    let mut group = c.benchmark_group("admission");
    // A millisecond or more per batch: 50 samples fit the default 5 s.
    group.sample_size(50);
    for size in [64u64, 256] {
        let signed: Vec<_> = (0..size)
            .map(|n| sign_event(&keys[(n % 4) as usize], &flow(n)))
            .collect();
        let messages: Vec<Vec<u8>> = signed
            .iter()
            .map(|s| event_signing_message(&s.key_id, &s.event))
            .collect();
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<ed25519_dalek::Signature> = signed
            .iter()
            .map(|s| ed25519_dalek::Signature::from_slice(&s.signature).unwrap())
            .collect();
        let vkeys: Vec<ed25519_dalek::VerifyingKey> = (0..size)
            .map(|n| *keys[(n % 4) as usize].verifier_key().public_key())
            .collect();
        group.throughput(Throughput::Elements(size));
        group.bench_function(BenchmarkId::new("ed25519_verify_batch", size), |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(black_box(&messages), &signatures, &vkeys).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, admission, batched);
criterion_main!(benches);
