//! The policy check over a log's entries: what `verifier policy` costs per
//! entry once the network is out of the way. Each iteration checks every
//! entry from scratch against a policy with every kind of rule: strict
//! decoding and the event rules, the submitter rule, data residency for
//! flows, and for releases the channel, the one-version-per-digest rule and
//! the reviewer's Ed25519 attestation (strict verification); it hashes
//! every entry into the compact range, as the command does. Like the
//! command, it checks a bundle of 256 entries at a time on every core.
//!
//! ```sh
//! cargo bench -p tlog-benches --bench policy                       # 20,000 entries
//! POLICY_BENCH_ENTRIES=1000000 cargo bench -p tlog-benches --bench policy
//! ```
//!
//! Entries are the load generator's realistic mix (four flows, then a
//! reviewed release), all distinct, signed before the clock starts.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::Duration;
use tlog_benches::workload::sign_all_reviewed_by;
use verifier::cli::policy::Policy;
use verifier::cli::policy_audit::check::Checker;
use verifier::cli::policy_audit::state::PolicyState;
use verifier::event::encode_entry;
use verifier::keys::SigningKey;
use verifier::tiles::TILE_WIDTH;

/// The default log size: enough for a stable rate, quick to run.
const DEFAULT_ENTRIES: usize = 20_000;

/// A policy every rule of which applies to the workload: flows of the four
/// categories to EU regions (some destinations break it), releases
/// reviewed by `reviewer` on two channels, and one submitter.
fn policy(submitter: &SigningKey, reviewer: &SigningKey) -> Policy {
    let text = format!(
        r#"
[data_residency.eu_user_data]
regions = ["IE", "DE"]

[data_residency.payment_records]
regions = ["IE", "DE", "FR", "SE"]

[data_residency.support_tickets]
regions = ["IE", "DE", "FR", "SE"]

[data_residency.app_telemetry]
regions = ["IE", "DE", "FR", "SE"]

[release]
reviewers = ["{reviewer}"]
quorum = 1
channels = ["stable", "beta"]

[submitters]
"{submitter}" = ["data_flow", "code_release"]
"#,
        reviewer = reviewer.verifier_key(),
        submitter = submitter.key_id(),
    );
    Policy::parse(&text).expect("the benchmark's policy parses")
}

fn entries(count: usize, submitter: &SigningKey, reviewer: &SigningKey) -> Vec<Vec<u8>> {
    sign_all_reviewed_by(submitter, count, 0x5eed, reviewer)
        .iter()
        .enumerate()
        .map(|(n, signed)| {
            let accepted_at = prost_types::Timestamp {
                seconds: 1_767_225_700 + n as i64,
                nanos: 0,
            };
            encode_entry(signed, accepted_at)
        })
        .collect()
}

/// Checks the whole log from scratch, as a first run of the command does:
/// one entry bundle at a time.
fn check(policy: &Policy, entries: &[&[u8]]) -> usize {
    let mut checker = Checker::new(policy, PolicyState::new("bench".into()));
    for bundle in entries.chunks(TILE_WIDTH as usize) {
        checker
            .push_all(bundle)
            .expect("every entry is a valid log entry");
    }
    checker.found.len()
}

fn bench(c: &mut Criterion) {
    let count = std::env::var("POLICY_BENCH_ENTRIES")
        .ok()
        .map(|n| {
            n.parse()
                .expect("POLICY_BENCH_ENTRIES is a number of entries")
        })
        .unwrap_or(DEFAULT_ENTRIES);
    let submitter = SigningKey::from_seed("pipeline.example", [1; 32]).unwrap();
    let reviewer = SigningKey::from_seed("reviewer.example", [2; 32]).unwrap();
    let policy = policy(&submitter, &reviewer);
    let owned = entries(count, &submitter, &reviewer);
    let entries: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    let incidents = check(&policy, &entries);
    assert!(
        incidents > 0 && incidents < count / 2,
        "the workload breaks the policy sometimes ({incidents} of {count})"
    );
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function(format!("check/{count}"), |b| {
        b.iter(|| check(&policy, &entries))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
