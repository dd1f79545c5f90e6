//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through
//! the fuzz target bodies (`verifier::fuzz_targets`), as a plain
//! deterministic test: no nightly, no instrumented build. A crash the
//! fuzzer found is saved into its target's corpus, so it keeps failing
//! here until the parser is fixed.
//!
//! `write_seed_corpora` (ignored) writes the seed inputs that are signed
//! with the fixed fuzz keys; see `fuzz/README.md`.
#![cfg(feature = "cli")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost::Message;
use verifier::bundle::ProofBundle;
use verifier::checkpoint::SignedCheckpoint;
use verifier::cosignature::add_cosignatures;
use verifier::event::{encode_entry, review_signing_message, sign_event};
use verifier::evidence::Evidence;
use verifier::fuzz_targets::{self as targets, FuzzKeys};
use verifier::merkle::{leaf_hash, node_hash};
use verifier::proto::event::Kind;
use verifier::proto::{
    CodeRelease, DataFlow, Event, ExchangeRequest, Location, ReviewerAttestation,
};
use verifier::tiles::encode_entry_bundle;
use verifier::witness_protocol::{encode_cosignatures, encode_size, AddCheckpointRequest};

/// A fuzz target's body: panics on a broken promise.
type Body = fn(&[u8]);

/// Every fuzz target, by the name of its file in `fuzz/fuzz_targets/`.
const TARGETS: &[(&str, Body)] = &[
    ("checkpoint", targets::checkpoint),
    ("cosignature", targets::cosignature),
    ("witness_request", targets::witness_request),
    ("proof_bundle", targets::proof_bundle),
    ("evidence", targets::evidence),
    ("tile_path", targets::tile_path),
    ("entry_bundle", targets::entry_bundle),
    ("log_entry", targets::log_entry),
    ("event", targets::event),
    ("event_json", targets::event_json),
    ("policy", targets::policy),
    ("gossip", targets::gossip),
    ("keys", targets::keys),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_is_replayed() {
    let on_disk: BTreeSet<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
        .collect();
    let here: BTreeSet<String> = TARGETS.iter().map(|(name, _)| (*name).to_owned()).collect();
    assert_eq!(on_disk, here, "fuzz/fuzz_targets and TARGETS differ");
}

#[test]
fn corpora_replay_without_a_failure() {
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        let inputs = files_in(&fuzz_dir().join("corpus").join(name));
        assert!(!inputs.is_empty(), "the {name} corpus is empty");
        for path in inputs {
            let data = std::fs::read(&path).expect("reading a corpus file");
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
}

fn flow() -> Event {
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 5,
        }),
        kind: Some(Kind::DataFlow(DataFlow {
            flow_id: "nightly-export-1".into(),
            data_category: "eu_user_data".into(),
            source: Some(Location {
                system: "accounts-db".into(),
                data_centre: "fra-2".into(),
                region: "DE".into(),
                organisation: "Example Platform GmbH".into(),
            }),
            destination: Some(Location {
                system: "warehouse".into(),
                data_centre: "dub-1".into(),
                region: "IE".into(),
                organisation: String::new(),
            }),
            purpose: "product_analytics".into(),
            legal_basis: "legitimate_interest".into(),
            record_count: 1000,
        })),
    }
}

fn release(reviewer: &verifier::keys::SigningKey) -> Event {
    let digest = [7u8; 32];
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        }),
        kind: Some(Kind::CodeRelease(CodeRelease {
            artifact_name: "example-app-android".into(),
            version: "4.3.1".into(),
            artifact_sha256: digest.to_vec(),
            source_repository: "https://git.example.com/app".into(),
            source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            build_provenance_sha256: vec![0xab; 32],
            release_channel: "stable".into(),
            attestations: vec![ReviewerAttestation {
                reviewer_key_id: reviewer.key_id(),
                signature: reviewer
                    .sign(&review_signing_message("4.3.1", &digest))
                    .to_vec(),
            }],
        })),
    }
}

/// Writes the seeds that need the fixed fuzz keys into the corpora.
#[test]
#[ignore = "writes seed inputs into fuzz/corpus; run by hand, see fuzz/README.md"]
fn write_seed_corpora() {
    let keys = FuzzKeys::get();
    let log_key = keys.log.verifier_key();
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let time = prost_types::Timestamp {
        seconds: 1_767_225_700,
        nanos: 0,
    };

    let events = [flow(), release(&keys.submitter)];
    let entries: Vec<Vec<u8>> = events
        .iter()
        .map(|event| encode_entry(&sign_event(&keys.submitter, event), time))
        .collect();
    for (i, (event, entry)) in events.iter().zip(&entries).enumerate() {
        write("event", &i.to_string(), &event.encode_to_vec());
        write("log_entry", &i.to_string(), entry);
    }
    write("entry_bundle", "2", &encode_entry_bundle(&entries).unwrap());
    write(
        "entry_bundle",
        "empty-entry",
        &encode_entry_bundle(&[b""]).unwrap(),
    );

    let (l0, l1) = (leaf_hash(&entries[0]), leaf_hash(&entries[1]));
    let mut two = FuzzKeys::checkpoint(2, b"");
    two.root = node_hash(l0, l1);
    let mut one = FuzzKeys::checkpoint(1, b"");
    one.root = l0;
    let two_note = two.sign(&keys.log);
    let one_note = one.sign(&keys.log);
    let forked_note = FuzzKeys::checkpoint(2, b"fork").sign(&keys.log);

    let signed = SignedCheckpoint::verify(&two_note, &log_key).unwrap();
    let cosignature = keys.witness.cosign(&two.to_body(), 1_767_225_800).unwrap();
    let cosigned = add_cosignatures(&signed, std::slice::from_ref(&cosignature)).unwrap();
    write("checkpoint", "body", &two.to_body());
    write(
        "checkpoint",
        "body-extension",
        &[two.to_body(), b"extension line\n".to_vec()].concat(),
    );
    write("checkpoint", "signed", &two_note);
    write("checkpoint", "cosigned", &cosigned.note);

    let request_cosignature = keys
        .witness
        .cosign(keys.request().checkpoint_body(), 1_767_225_800)
        .unwrap();
    write(
        "cosignature",
        "line",
        request_cosignature.to_line().as_bytes(),
    );
    write(
        "cosignature",
        "key",
        keys.witness.verifier_key().to_string().as_bytes(),
    );

    write("witness_request", "request", &keys.request().to_body());
    let proved = AddCheckpointRequest::new(1, vec![l1], two_note.clone()).unwrap();
    write("witness_request", "request-proof", &proved.to_body());
    write("witness_request", "size", &encode_size(1_234_567));
    write(
        "witness_request",
        "cosignatures",
        &encode_cosignatures(&[request_cosignature]),
    );

    for (index, proof) in [(0, l1), (1, l0)] {
        let bundle = ProofBundle {
            entry: entries[index as usize].clone(),
            index,
            proof: vec![proof],
            checkpoint_note: cosigned.note.clone(),
        };
        write("proof_bundle", &index.to_string(), &bundle.to_text());
    }

    let one = SignedCheckpoint::verify(&one_note, &log_key).unwrap();
    let forked = SignedCheckpoint::verify(&forked_note, &log_key).unwrap();
    let fork = Evidence::split_view(&signed, &forked, Vec::new(), "log and gossip");
    let extends = Evidence::split_view(&one, &signed, vec![l0, l1], "two fetches");
    write("evidence", "fork", fork.to_text().as_bytes());
    write("evidence", "extends", extends.to_text().as_bytes());

    let notes = |notes: &[&[u8]]| ExchangeRequest {
        checkpoints: notes
            .iter()
            .map(|n| String::from_utf8(n.to_vec()).unwrap())
            .collect(),
    };
    let stranger = verifier::checkpoint::Checkpoint {
        origin: "other.example/log".into(),
        ..two.clone()
    }
    .sign(&keys.submitter);
    write(
        "gossip",
        "mixed",
        &notes(&[&cosigned.note, &one_note, &stranger]).encode_to_vec(),
    );
    write(
        "gossip",
        "fork",
        &notes(&[&two_note, &forked_note]).encode_to_vec(),
    );

    write("keys", "verifier", log_key.to_string().as_bytes());
    write("keys", "signer", keys.log.to_signer_string().as_bytes());
    write(
        "keys",
        "ring",
        format!(
            "# allowlist\n{}\n\n{}\n",
            log_key,
            keys.submitter.verifier_key()
        )
        .as_bytes(),
    );

    for path in [
        "tile/0/000",
        "tile/0/x001/234.p/5",
        "tile/entries/000.p/3",
        "tile/3/x123/x456/789",
        "tile/entries/x018/446/744.p/255",
    ] {
        write("tile_path", &path.replace('/', "_"), path.as_bytes());
    }
}
