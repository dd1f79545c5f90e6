//! The workload shared by the load generator, the benchmarks and the crash
//! harness: realistic, distinct, signed events, made before the clock
//! starts.
//!
//! The shapes follow the end-to-end tests' builders (`tests/support`): four
//! in five events are data flows, the fifth a code release carrying one
//! reviewer attestation, with the field sizes real pipelines produce (about
//! 300 and 450 encoded bytes). Fields vary with the event number so entries
//! are not all alike, and every flow id, commit and digest includes the
//! run's random nonce: a rerun against the same log must append new entries,
//! because a deduplicated event is answered without being written and would
//! flatter the figures.
//!
//! Signing costs about 17 µs an event (twice that for a reviewed release),
//! which at these rates would throttle the client rather than measure the
//! log, so everything is signed up front, on every core.

use std::hash::{BuildHasher as _, Hasher as _};
use std::time::{SystemTime, UNIX_EPOCH};
use verifier::event::{review_signing_message, sign_event};
use verifier::keys::SigningKey;
use verifier::merkle::leaf_hash;
use verifier::proto::{
    event::Kind, CodeRelease, DataFlow, Event, Location, ReviewerAttestation, SignedEvent,
};

/// A random 64-bit nonce for this run, from the standard library's
/// OS-seeded hasher keys (no extra dependency for 8 random bytes), mixed
/// with the clock and the process id.
pub fn run_nonce() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Builds and signs events `0..count` of the run with `nonce`, as `key`,
/// spreading the work over every core. Releases are reviewed by a key
/// made for the run: the log records attestations, it does not judge them.
pub fn sign_all(key: &SigningKey, count: usize, nonce: u64) -> Vec<SignedEvent> {
    let reviewer =
        SigningKey::generate("release-review.example").expect("a valid constant key name");
    sign_all_reviewed_by(key, count, nonce, &reviewer)
}

/// [`sign_all`] with the releases' attestations made by `reviewer`, for a
/// caller whose policy lists that reviewer.
pub fn sign_all_reviewed_by(
    key: &SigningKey,
    count: usize,
    nonce: u64,
    reviewer: &SigningKey,
) -> Vec<SignedEvent> {
    let occurred = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let mut signed = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|n| sign_event(key, &event(n as u64, nonce, occurred, reviewer)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            signed.extend(worker.join().expect("a signing thread panicked"));
        }
    });
    signed
}

/// Event `n` of the mix: every fifth a release, the rest data flows.
pub fn event(n: u64, nonce: u64, occurred: i64, reviewer: &SigningKey) -> Event {
    let kind = if n % 5 == 4 {
        Kind::CodeRelease(code_release(n, nonce, reviewer))
    } else {
        Kind::DataFlow(data_flow(n, nonce))
    };
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: occurred,
            nanos: (n % 1_000_000) as i32 * 1000,
        }),
        kind: Some(kind),
    }
}

fn pick<'a>(n: u64, choices: &[&'a str]) -> &'a str {
    choices[(n % choices.len() as u64) as usize]
}

fn data_flow(n: u64, nonce: u64) -> DataFlow {
    DataFlow {
        flow_id: format!("nightly-export-{nonce:016x}-{n}"),
        data_category: pick(
            n,
            &[
                "eu_user_data",
                "payment_records",
                "support_tickets",
                "app_telemetry",
            ],
        )
        .into(),
        source: Some(Location {
            system: "accounts-db".into(),
            data_centre: pick(n / 4, &["fra-2", "ams-1", "dub-1"]).into(),
            region: pick(n / 4, &["DE", "NL", "IE"]).into(),
            organisation: "Example Platform GmbH".into(),
        }),
        destination: Some(Location {
            system: "analytics-warehouse".into(),
            data_centre: pick(n / 3, &["dub-1", "fra-1", "par-3", "sto-1"]).into(),
            region: pick(n / 3, &["IE", "DE", "FR", "SE"]).into(),
            organisation: "Example Analytics Ltd".into(),
        }),
        purpose: pick(n, &["product_analytics", "fraud_prevention", "billing"]).into(),
        legal_basis: pick(n, &["legitimate_interest", "contract", "consent"]).into(),
        record_count: 1000 + n % 100_000,
    }
}

fn code_release(n: u64, nonce: u64, reviewer: &SigningKey) -> CodeRelease {
    // Digests stand in for real ones: SHA-256 of something unique to the
    // event, so they are as incompressible as the real thing.
    let unique = format!("{nonce:016x}/{n}");
    let artifact_sha256 = leaf_hash(format!("artifact {unique}").as_bytes())
        .0
        .to_vec();
    let commit = verifier::hex::encode(&leaf_hash(format!("commit {unique}").as_bytes()).0[..20]);
    let version = format!("4.{}.{}", n / 5 % 1000, n % 5);
    let signature = reviewer
        .sign(&review_signing_message(&version, &artifact_sha256))
        .to_vec();
    CodeRelease {
        artifact_name: pick(n, &["example-app-android", "example-app-ios"]).into(),
        version,
        artifact_sha256,
        source_repository: "https://git.example.com/app".into(),
        source_commit: commit,
        build_provenance_sha256: leaf_hash(format!("provenance {unique}").as_bytes())
            .0
            .to_vec(),
        release_channel: pick(n, &["stable", "beta"]).into(),
        attestations: vec![ReviewerAttestation {
            reviewer_key_id: reviewer.key_id(),
            signature,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use verifier::event::{check_submission, event_id};
    use verifier::keys::KeyRing;

    #[test]
    fn events_pass_admission_are_distinct_and_mixed() {
        let key = SigningKey::from_seed("loadgen-test", [4; 32]).unwrap();
        let mut ring = KeyRing::default();
        ring.insert(key.verifier_key());
        let signed = sign_all(&key, 500, 7);
        assert_eq!(signed.len(), 500);
        for s in &signed {
            check_submission(s, &ring).expect("the log's admission rules accept it");
        }
        let ids: HashSet<_> = signed.iter().map(event_id).collect();
        assert_eq!(ids.len(), 500, "no two events deduplicate");
        let releases = signed
            .iter()
            .map(|s| check_submission(s, &ring).unwrap())
            .filter(|e| matches!(e.kind, Some(Kind::CodeRelease(_))))
            .count();
        assert_eq!(releases, 100, "one in five is a release");
    }

    #[test]
    fn another_nonce_gives_other_events() {
        let key = SigningKey::from_seed("loadgen-test", [4; 32]).unwrap();
        let a: HashSet<_> = sign_all(&key, 10, 1).iter().map(event_id).collect();
        let b: HashSet<_> = sign_all(&key, 10, 2).iter().map(event_id).collect();
        assert!(a.is_disjoint(&b), "a rerun must not be deduplicated");
    }
}
