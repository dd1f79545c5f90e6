//! The per-event cost of admission: Ed25519 verification alone, and the
//! whole check a server runs on submission and an auditor on replay.
//!
//! Run with `cargo bench -p tlog-benches --bench signatures`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use verifier::event::{check_submission, event_signing_message, sign_event};
use verifier::keys::{KeyRing, SigningKey};
use verifier::proto::{event::Kind, DataFlow, Event, Location};

fn flow() -> Event {
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
            record_count: 120_000,
        })),
    }
}

fn admission(c: &mut Criterion) {
    let key = SigningKey::from_seed("pipeline.example", [5; 32]).unwrap();
    let mut ring = KeyRing::default();
    ring.insert(key.verifier_key());
    let signed = sign_event(&key, &flow());
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
        b.iter(|| sign_event(&key, black_box(&flow())))
    });
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
