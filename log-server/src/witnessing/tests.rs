//! The collector against in-process witnesses: axum servers on 127.0.0.1
//! that follow C2SP tlog-witness (or misbehave on purpose), over a real
//! redb log.

use super::*;
use crate::server::recover;
use crate::storage::{Backend, Batch, Storage};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use verifier::cosignature::{verify_witnessed, CosignatureError, CosignerSigningKey};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, verify_consistency, Hash, EMPTY_HASH};
use verifier::tile_builder::TileBuilder;
use verifier::witness_protocol::{encode_cosignatures, encode_size, SIZE_CONTENT_TYPE};

const ORIGIN: &str = "log.example/witnessed";

/// A redb log grown batch by batch as the sequencer would, without one.
struct TestLog {
    log: Arc<Log>,
    builder: TileBuilder,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

impl TestLog {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_seed(ORIGIN, [7; 32]).unwrap();
        let storage: Arc<dyn Storage> = Arc::from(Backend::Redb.open(dir.path()).unwrap());
        let (log, builder) = recover(storage, &key).unwrap();
        Self {
            log: Arc::new(log),
            builder,
            key,
            _dir: dir,
        }
    }

    fn vkey(&self) -> VerifierKey {
        self.key.verifier_key()
    }

    /// Commits and publishes `count` more entries under one checkpoint.
    fn append(&mut self, count: u64) -> Arc<Published> {
        let first_index = self.builder.size();
        let mut batch = Batch {
            first_index,
            ..Batch::default()
        };
        for i in first_index..first_index + count {
            let entry = format!("entry {i}").into_bytes();
            let leaf = leaf_hash(&entry);
            self.builder.append(leaf);
            batch.entries.push(entry);
            batch.leaf_hashes.push(leaf.0);
            batch.event_ids.push(leaf_hash(&i.to_be_bytes()).0);
        }
        batch.tiles = self.builder.take_changed();
        batch.checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: self.builder.size(),
            root: self.builder.root(),
        }
        .sign(&self.key);
        self.log.storage().commit(&batch).unwrap();
        self.log.publish(Published {
            note: String::from_utf8(batch.checkpoint).unwrap(),
            size: self.builder.size(),
            root: self.builder.root(),
        });
        self.log.latest()
    }

    fn collector(&self, witnesses: &[&FakeWitness]) -> Collector {
        Collector::new(
            Arc::clone(&self.log),
            ORIGIN.into(),
            witnesses.iter().map(|w| w.config()).collect(),
            quick_retries(),
        )
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(10),
    }
}

/// How a fake witness behaves.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Follows the spec.
    Honest,
    /// Follows the spec but signs another checkpoint body than it was sent.
    SignsAnotherBody,
    /// Answers 503 this many times, then follows the spec.
    BusyFor(usize),
}

/// What a fake witness holds and has seen.
struct WitnessState {
    size: u64,
    root: Hash,
    /// The `old` size of every request, in order.
    requests: Vec<u64>,
    busy: usize,
}

struct Inner {
    key: CosignerSigningKey,
    log_key: VerifierKey,
    behaviour: Behaviour,
    state: Mutex<WitnessState>,
}

/// A tlog-witness on an ephemeral loopback port, for one log key.
struct FakeWitness {
    inner: Arc<Inner>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl FakeWitness {
    async fn start(seed: u8, log_key: VerifierKey, behaviour: Behaviour) -> Self {
        let key = SigningKey::from_seed(&format!("witness.example/w{seed}"), [seed; 32]).unwrap();
        let inner = Arc::new(Inner {
            key: CosignerSigningKey::new(key),
            log_key,
            behaviour,
            state: Mutex::new(WitnessState {
                size: 0,
                root: EMPTY_HASH,
                requests: Vec::new(),
                busy: match behaviour {
                    Behaviour::BusyFor(n) => n,
                    _ => 0,
                },
            }),
        });
        let app = axum::Router::new()
            .route("/w/add-checkpoint", axum::routing::post(add_checkpoint))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/w", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner, url, server }
    }

    fn config(&self) -> Witness {
        Witness {
            key: self.inner.key.verifier_key(),
            url: self.url.clone(),
        }
    }

    fn vkey(&self) -> verifier::cosignature::CosignerVerifierKey {
        self.inner.key.verifier_key()
    }

    fn requests(&self) -> Vec<u64> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    fn size(&self) -> u64 {
        self.inner.state.lock().unwrap().size
    }
}

impl Drop for FakeWitness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(witness): State<Arc<Inner>>, body: Bytes) -> Response {
    let plain = "text/plain; charset=utf-8";
    let Ok(request) = AddCheckpointRequest::parse(&body) else {
        return answer(StatusCode::BAD_REQUEST, plain, b"malformed\n".to_vec());
    };
    let mut state = witness.state.lock().unwrap();
    state.requests.push(request.old_size());
    if state.busy > 0 {
        state.busy -= 1;
        return answer(StatusCode::SERVICE_UNAVAILABLE, plain, b"busy\n".to_vec());
    }
    let Ok(signed) = SignedCheckpoint::verify(request.note(), &witness.log_key) else {
        return answer(StatusCode::FORBIDDEN, plain, b"unknown log key\n".to_vec());
    };
    let new = signed.checkpoint;
    if request.old_size() != state.size {
        return answer(
            StatusCode::CONFLICT,
            SIZE_CONTENT_TYPE,
            encode_size(state.size),
        );
    }
    if new.size == state.size && new.root != state.root {
        return answer(
            StatusCode::CONFLICT,
            SIZE_CONTENT_TYPE,
            encode_size(state.size),
        );
    }
    if verify_consistency(request.proof(), state.size, state.root, new.size, new.root).is_err() {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            plain,
            b"bad proof\n".to_vec(),
        );
    }
    state.size = new.size;
    state.root = new.root;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = match witness.behaviour {
        Behaviour::SignsAnotherBody => format!("{ORIGIN}\n{}\n{}\n", new.size + 1, new.root),
        Behaviour::Honest | Behaviour::BusyFor(_) => {
            String::from_utf8(request.checkpoint_body().to_vec()).unwrap()
        }
    };
    let cosignature = witness.key.cosign(body.as_bytes(), now).unwrap();
    answer(StatusCode::OK, plain, encode_cosignatures(&[cosignature]))
}

fn witnessed(
    note: &str,
    log: &TestLog,
    witnesses: &[&FakeWitness],
    quorum: usize,
) -> Result<usize, CosignatureError> {
    let keys: Vec<_> = witnesses.iter().map(|w| w.vkey()).collect();
    verify_witnessed(note.as_bytes(), &log.vkey(), &keys, quorum).map(|w| w.cosignatures.len())
}

#[tokio::test]
async fn every_witness_cosignature_is_served_and_appends_keep_the_plain_checkpoint() {
    let mut log = TestLog::new();
    let a = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    let b = FakeWitness::start(2, log.vkey(), Behaviour::Honest).await;
    let mut collector = log.collector(&[&a, &b]);

    let first = log.append(5);
    let served = collector.round(Arc::clone(&first)).await;
    assert_eq!(served.size, 5);
    assert_eq!(witnessed(&served.note, &log, &[&a, &b], 2), Ok(2));
    assert_eq!(log.log.served().note, served.note);
    assert_eq!(
        log.log.latest().note,
        first.note,
        "appends and proofs keep the log-signed checkpoint"
    );

    let second = log.append(300);
    let served = collector.round(second).await;
    assert_eq!(served.size, 305);
    assert_eq!(witnessed(&served.note, &log, &[&a, &b], 2), Ok(2));
    assert_eq!(
        a.requests(),
        vec![0, 5],
        "each proof starts at its last size"
    );
    assert_eq!(b.requests(), vec![0, 5]);
    let (line_a, line_b) = (
        served.note.find("— witness.example/w1 ").unwrap(),
        served.note.find("— witness.example/w2 ").unwrap(),
    );
    assert!(line_a < line_b, "lines follow the configured order");
}

#[tokio::test]
async fn a_409_names_the_size_to_prove_from_and_the_retry_succeeds() {
    let mut log = TestLog::new();
    let a = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    let checkpoint = log.append(7);
    log.collector(&[&a]).round(checkpoint).await;
    assert_eq!(a.size(), 7);

    // A restarted log remembers nothing: it asks from 0 and is corrected.
    let mut restarted = log.collector(&[&a]);
    let checkpoint = log.append(260);
    let served = restarted.round(checkpoint).await;
    assert_eq!(a.requests(), vec![0, 0, 7]);
    assert_eq!(served.size, 267);
    assert_eq!(witnessed(&served.note, &log, &[&a], 1), Ok(1));

    let checkpoint = log.append(1);
    restarted.round(checkpoint).await;
    assert_eq!(
        a.requests().last(),
        Some(&267),
        "the size learned is remembered"
    );
}

#[tokio::test]
async fn an_unreachable_witness_does_not_hold_back_the_served_checkpoint() {
    let mut log = TestLog::new();
    let a = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dead_key =
        CosignerSigningKey::new(SigningKey::from_seed("witness.example/dead", [9; 32]).unwrap());
    let mut collector = Collector::new(
        Arc::clone(&log.log),
        ORIGIN.into(),
        vec![
            a.config(),
            Witness {
                key: dead_key.verifier_key(),
                url: dead,
            },
        ],
        quick_retries(),
    );
    let checkpoint = log.append(3);
    let served = collector.round(checkpoint).await;
    assert_eq!(served.size, 3);
    assert_eq!(log.log.served().size, 3);
    assert_eq!(witnessed(&served.note, &log, &[&a], 1), Ok(1));
    let both = [a.vkey(), dead_key.verifier_key()];
    assert!(matches!(
        verify_witnessed(served.note.as_bytes(), &log.vkey(), &both, 2),
        Err(CosignatureError::QuorumNotReached { valid: 1, .. })
    ));
}

#[tokio::test]
async fn a_witness_that_never_answers_is_given_up_after_its_timeouts() {
    let mut log = TestLog::new();
    let a = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    // The kernel accepts connections on a listener nobody serves, so every
    // request is sent and then waits for an answer that never comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_key =
        CosignerSigningKey::new(SigningKey::from_seed("witness.example/silent", [6; 32]).unwrap());
    let policy = RetryPolicy {
        timeout: Duration::from_millis(200),
        attempts: 2,
        backoff: Duration::from_millis(10),
    };
    let mut collector = Collector::new(
        Arc::clone(&log.log),
        ORIGIN.into(),
        vec![
            Witness {
                key: silent_key.verifier_key(),
                url: format!("http://{}", silent.local_addr().unwrap()),
            },
            a.config(),
        ],
        policy,
    );
    let checkpoint = log.append(9);
    let started = Instant::now();
    let served = collector.round(checkpoint).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "both attempts timed out: {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the timeout bounds the round: {took:?}"
    );
    assert_eq!(served.size, 9);
    assert_eq!(witnessed(&served.note, &log, &[&a], 1), Ok(1));
}

#[tokio::test]
async fn a_cosignature_that_does_not_verify_is_dropped() {
    let mut log = TestLog::new();
    let honest = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    let forger = FakeWitness::start(2, log.vkey(), Behaviour::SignsAnotherBody).await;
    let mut collector = log.collector(&[&honest, &forger]);
    let checkpoint = log.append(4);
    let served = collector.round(checkpoint).await;
    assert_eq!(forger.requests(), vec![0], "a bad answer is not retried");
    assert!(
        !served.note.contains("witness.example/w2"),
        "{}",
        served.note
    );
    // Had the forged line been served, listing its key would reject the note.
    assert_eq!(witnessed(&served.note, &log, &[&honest, &forger], 1), Ok(1));
}

#[tokio::test]
async fn transient_failures_are_retried_and_refusals_are_not() {
    let mut log = TestLog::new();
    let busy = FakeWitness::start(1, log.vkey(), Behaviour::BusyFor(2)).await;
    let other_log = SigningKey::from_seed("log.example/other", [8; 32]).unwrap();
    let stranger = FakeWitness::start(2, other_log.verifier_key(), Behaviour::Honest).await;
    let mut collector = log.collector(&[&busy, &stranger]);
    let checkpoint = log.append(2);
    let served = collector.round(checkpoint).await;
    assert_eq!(busy.requests(), vec![0, 0, 0], "two 503s, then cosigned");
    assert_eq!(
        stranger.requests(),
        vec![0],
        "a 403 is final for this checkpoint"
    );
    assert_eq!(witnessed(&served.note, &log, &[&busy], 1), Ok(1));
    assert!(matches!(
        witnessed(&served.note, &log, &[&busy, &stranger], 2),
        Err(CosignatureError::QuorumNotReached { valid: 1, .. })
    ));
}

/// Polls what the log serves until it is `size`, cosigned by every one
/// of `witnesses`, or the deadline passes.
async fn served_when_witnessed(
    log: &TestLog,
    witnesses: &[&FakeWitness],
    size: u64,
) -> Arc<Published> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served = log.log.served();
        if served.size == size && witnessed(&served.note, log, witnesses, witnesses.len()).is_ok() {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "still serving size {}",
            served.size
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_running_collector_wakes_on_each_checkpoint_and_skips_to_the_newest() {
    let mut log = TestLog::new();
    let a = FakeWitness::start(1, log.vkey(), Behaviour::Honest).await;
    let b = FakeWitness::start(2, log.vkey(), Behaviour::Honest).await;
    log.log.serve_witnessed(log.log.latest());
    let task = tokio::spawn(log.collector(&[&a, &b]).run());
    log.append(13);
    served_when_witnessed(&log, &[&a, &b], 13).await;
    // This test runs on one thread, so the collector sleeps through all
    // twenty checkpoints and then witnesses only the newest.
    for _ in 0..20 {
        log.append(13);
    }
    let served = served_when_witnessed(&log, &[&a, &b], 273).await;
    task.abort();
    assert_eq!(served.size, log.log.latest().size);
    assert_eq!(a.requests(), vec![0, 13]);
    assert_eq!(b.requests(), vec![0, 13]);
}
