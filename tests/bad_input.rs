//! End-to-end "bad input" tests: a real `log-server` process on a loopback
//! port, fed malformed, unauthorised, duplicate and out-of-range requests
//! over gRPC and HTTP, and started with broken configurations.
//!
//! What every test here holds the server to:
//!
//! - each refusal carries the documented gRPC code (or HTTP status, or exit
//!   status) and a message naming the offending field, key or setting;
//! - a refused request changes nothing: the signed checkpoint served over
//!   gRPC and over HTTP is byte-identical before and after, and the refused
//!   event is nowhere in the log's entries;
//! - a refused start leaves the data directory exactly as it was.
//!
//! Nothing sleeps to synchronise: servers announce their address, and every
//! append is answered only once it is durable and covered by a checkpoint.

use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tlog_e2e::{
    code_release, data_flow, http_get, log_server_refuses, sign_bytes, HttpResponse, LogServer,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::{decode_entry, event_signing_message, sign_event};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use verifier::proto::event::Kind;
use verifier::proto::get_inclusion_proof_request::Leaf;
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    append_result, AppendBatchRequest, AppendRequest, AppendResponse, AppendResult, Event,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
    SignedEvent,
};
use verifier::tiles::{decode_entry_bundle, MAX_ENTRY_SIZE};

/// The origin of every log these tests create.
const ORIGIN: &str = "log.example/bad-input";

/// A running log whose allowlist holds exactly two submitters, `alice` and
/// `bob`, plus `mallory`, a well-formed key the log has never heard of.
struct Fixture {
    // Declared first so it is dropped (killed) before its directory goes.
    server: LogServer,
    alice: SigningKey,
    bob: SigningKey,
    mallory: SigningKey,
    _tmp: TempDir,
}

impl Fixture {
    fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let alice = SigningKey::generate("alice.example").expect("a key");
        let bob = SigningKey::generate("bob.example").expect("a key");
        let mallory = SigningKey::generate("mallory.example").expect("a key");
        let allowlist = tmp.path().join("allowlist");
        std::fs::write(
            &allowlist,
            format!(
                "# the two submitters of this test\n{}\n\n{}\n",
                alice.verifier_key(),
                bob.verifier_key()
            ),
        )
        .expect("writing the allowlist");
        let allowlist = allowlist.to_str().expect("a UTF-8 path").to_owned();
        let mut args = vec!["--origin", ORIGIN, "--submitters", &allowlist];
        args.extend_from_slice(extra);
        let server = LogServer::start(&tmp.path().join("data"), &args);
        Self {
            server,
            alice,
            bob,
            mallory,
            _tmp: tmp,
        }
    }

    async fn client(&self) -> LogClient<Channel> {
        self.server.client().await
    }

    /// The latest checkpoint, checked to be the same note over gRPC and
    /// over HTTP, and to verify under the log's key.
    async fn tree_state(&self, client: &mut LogClient<Channel>) -> String {
        let note = client
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .expect("GetCheckpoint")
            .into_inner()
            .checkpoint;
        let http = http_get(self.server.addr, "/checkpoint");
        assert_eq!(http.status, 200, "GET /checkpoint");
        assert_eq!(
            String::from_utf8_lossy(&http.body),
            note,
            "gRPC and HTTP must serve the same checkpoint"
        );
        verified(&note, &self.server.log_key());
        note
    }

    /// The size of the latest verified checkpoint.
    async fn size(&self, client: &mut LogClient<Channel>) -> u64 {
        let note = self.tree_state(client).await;
        verified(&note, &self.server.log_key()).size
    }
}

/// Verifies a checkpoint note under `key` and returns its body.
fn verified(note: &str, key: &VerifierKey) -> Checkpoint {
    SignedCheckpoint::verify(note.as_bytes(), key)
        .unwrap_or_else(|e| panic!("checkpoint does not verify: {e}\n{note}"))
        .checkpoint
}

fn hash(bytes: &[u8]) -> Hash {
    Hash(bytes.try_into().expect("a 32-byte hash"))
}

fn hashes(proof: &[Vec<u8>]) -> Vec<Hash> {
    proof.iter().map(|h| hash(h)).collect()
}

/// Checks that an append answer is a real proof of inclusion.
fn assert_proven(answer: &AppendResponse, key: &VerifierKey) {
    let checkpoint = verified(&answer.checkpoint, key);
    verify_inclusion(
        &hashes(&answer.inclusion_proof),
        answer.index,
        checkpoint.size,
        hash(&answer.leaf_hash),
        checkpoint.root,
    )
    .expect("the append answer's inclusion proof verifies");
}

async fn append(
    client: &mut LogClient<Channel>,
    signed: &SignedEvent,
) -> Result<AppendResponse, Status> {
    client
        .append(AppendRequest {
            event: Some(signed.clone()),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn append_batch(
    client: &mut LogClient<Channel>,
    events: Vec<SignedEvent>,
) -> Vec<AppendResult> {
    let count = events.len();
    let results = client
        .append_batch(AppendBatchRequest { events })
        .await
        .expect("AppendBatch as a whole succeeds")
        .into_inner()
        .results;
    assert_eq!(results.len(), count, "one result per submitted event");
    results
}

/// The appended answer of a batch result, or a panic naming the error.
fn appended(result: &AppendResult) -> &AppendResponse {
    match &result.result {
        Some(append_result::Result::Appended(answer)) => answer,
        other => panic!("expected an appended result, got {other:?}"),
    }
}

/// All entries in `[start, end)`, decoded to the signed events they hold.
async fn stored_events(client: &mut LogClient<Channel>, start: u64, end: u64) -> Vec<SignedEvent> {
    let mut stream = client
        .get_entries(GetEntriesRequest { start, end })
        .await
        .expect("GetEntries")
        .into_inner();
    let mut events = Vec::new();
    while let Some(entry) = stream.message().await.expect("an entry") {
        assert_eq!(
            entry.index,
            start + events.len() as u64,
            "entries come in index order"
        );
        let decoded = decode_entry(&entry.data).expect("a canonical log entry");
        events.push(decoded.signed_event.expect("a signed event"));
    }
    events
}

fn assert_status(
    result: Result<impl std::fmt::Debug, Status>,
    code: Code,
    needle: &str,
    what: &str,
) {
    let status = match result {
        Ok(answer) => panic!("{what}: expected {code:?}, got an answer {answer:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(
        status.message().contains(needle),
        "{what}: message {:?} should contain {needle:?}",
        status.message()
    );
}

/// Returns `event` with its data flow edited by `edit`.
fn edit_flow(mut event: Event, edit: impl FnOnce(&mut verifier::proto::DataFlow)) -> Event {
    let Some(Kind::DataFlow(flow)) = event.kind.as_mut() else {
        panic!("a data-flow event")
    };
    edit(flow);
    event
}

/// A valid encoded event padded with an unknown length-delimited field
/// (number 15) to exactly `total` bytes. Decoders skip unknown fields, so
/// the size rule is the only rule such bytes can break.
fn padded_event(n: u64, total: usize) -> Vec<u8> {
    let mut bytes = data_flow(n, "IE").encode_to_vec();
    // Tag (1 byte) and a 3-byte length varint (16,384 ≤ len < 2,097,152).
    let pad = total - bytes.len() - 4;
    assert!((16_384..2_097_152).contains(&pad));
    bytes.push((15 << 3) | 2);
    prost::encoding::encode_varint(pad as u64, &mut bytes);
    bytes.resize(total, b'p');
    assert_eq!(bytes.len(), total);
    let decoded = Event::decode(bytes.as_slice()).expect("padding keeps the event decodable");
    assert_eq!(decoded, data_flow(n, "IE"));
    bytes
}

/// (1) Every kind of refused `Append`, with the code and the named field the
/// contract promises, and the tree untouched by each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_has_its_code_names_the_field_and_leaves_the_tree_untouched() {
    let fx = Fixture::start(&[]);
    let (alice, bob, mallory) = (&fx.alice, &fx.bob, &fx.mallory);
    let mut client = fx.client().await;
    // A non-empty tree, so "untouched" is not just "still empty".
    let first = append(&mut client, &sign_event(alice, &data_flow(0, "IE")))
        .await
        .expect("a valid event is appended");
    assert_eq!(first.index, 0);
    let before = fx.tree_state(&mut client).await;
    assert_eq!(verified(&before, &fx.server.log_key()).size, 1);

    let valid = |n| sign_event(alice, &data_flow(n, "IE"));
    let mut cases: Vec<(&str, Option<SignedEvent>, Code, String)> = Vec::new();
    cases.push((
        "no event",
        None,
        Code::InvalidArgument,
        "event: required".into(),
    ));
    let mut no_time = data_flow(1, "IE");
    no_time.occurred_at = None;
    cases.push((
        "no occurred_at",
        Some(sign_event(alice, &no_time)),
        Code::InvalidArgument,
        "event.occurred_at:".into(),
    ));
    let no_kind = Event {
        occurred_at: data_flow(1, "IE").occurred_at,
        kind: None,
    };
    cases.push((
        "no kind",
        Some(sign_event(alice, &no_kind)),
        Code::InvalidArgument,
        "event.kind:".into(),
    ));
    let no_organisation = edit_flow(data_flow(2, "IE"), |f| {
        f.destination.as_mut().unwrap().organisation = String::new();
    });
    cases.push((
        "empty destination organisation",
        Some(sign_event(alice, &no_organisation)),
        Code::InvalidArgument,
        "event.data_flow.destination.organisation:".into(),
    ));
    let blank_organisation = edit_flow(data_flow(3, "IE"), |f| {
        f.destination.as_mut().unwrap().organisation = "   ".into();
    });
    cases.push((
        "blank destination organisation",
        Some(sign_event(alice, &blank_organisation)),
        Code::InvalidArgument,
        "event.data_flow.destination.organisation:".into(),
    ));
    cases.push((
        "lower-case region",
        Some(sign_event(alice, &data_flow(4, "europe"))),
        Code::InvalidArgument,
        "event.data_flow.destination.region:".into(),
    ));
    cases.push((
        "one-letter region",
        Some(sign_event(alice, &data_flow(5, "I"))),
        Code::InvalidArgument,
        "event.data_flow.destination.region:".into(),
    ));
    let mut short_digest = code_release(6, bob);
    let Some(Kind::CodeRelease(release)) = short_digest.kind.as_mut() else {
        unreachable!()
    };
    release.artifact_sha256.truncate(31);
    cases.push((
        "31-byte artifact digest",
        Some(sign_event(alice, &short_digest)),
        Code::InvalidArgument,
        "event.code_release.artifact_sha256: a SHA-256 digest is 32 bytes, not 31".into(),
    ));
    // Field 1 (occurred_at) announces 5 bytes but only 1 follows.
    cases.push((
        "undecodable event bytes",
        Some(sign_bytes(alice, vec![0x0a, 0x05, 0x08])),
        Code::InvalidArgument,
        "event: not a tlog.v1.Event".into(),
    ));
    let mut short_signature = valid(7);
    short_signature.signature.truncate(63);
    cases.push((
        "63-byte signature",
        Some(short_signature),
        Code::InvalidArgument,
        "signature: an Ed25519 signature is 64 bytes, not 63".into(),
    ));
    let mut bad_key_id = valid(8);
    bad_key_id.key_id = "alice.example".into();
    cases.push((
        "key id without a hex id",
        Some(bad_key_id),
        Code::InvalidArgument,
        "key_id:".into(),
    ));
    let oversized = MAX_ENTRY_SIZE + 1;
    cases.push((
        "oversized event",
        Some(sign_bytes(alice, padded_event(9, oversized))),
        Code::InvalidArgument,
        format!("event: {oversized} bytes"),
    ));

    // A byte of the event flipped after signing; the bytes still pass every
    // admission rule, so only the signature can catch it.
    let mut tampered = valid(10);
    let at = tampered
        .event
        .windows(7)
        .position(|w| w == b"nightly")
        .expect("the flow id is in the bytes");
    tampered.event[at] = b'N';
    verifier::event::check_event(&tampered.event).expect("tampered bytes are still a valid event");
    cases.push((
        "event altered after signing",
        Some(tampered),
        Code::Unauthenticated,
        format!("signature: does not verify under key {}", alice.key_id()),
    ));
    // Alice signs, naming Bob: both keys are allowlisted.
    let event = data_flow(11, "IE").encode_to_vec();
    let signature = alice
        .sign(&event_signing_message(&bob.key_id(), &event))
        .to_vec();
    cases.push((
        "signed by alice under bob's key id",
        Some(SignedEvent {
            event,
            key_id: bob.key_id(),
            signature,
        }),
        Code::Unauthenticated,
        format!("signature: does not verify under key {}", bob.key_id()),
    ));
    cases.push((
        "correctly signed by a stranger",
        Some(sign_event(mallory, &data_flow(12, "IE"))),
        Code::PermissionDenied,
        format!(
            "key_id: {} is not on the log's submitter allowlist",
            mallory.key_id()
        ),
    ));

    let mut refused = Vec::new();
    for (what, event, code, needle) in cases {
        let result = client
            .append(AppendRequest {
                event: event.clone(),
            })
            .await;
        assert_status(result, code, &needle, what);
        assert_eq!(
            fx.tree_state(&mut client).await,
            before,
            "{what}: the tree changed"
        );
        refused.extend(event);
    }

    // A batch over the size limit is refused as a whole, naming `events`.
    let result = client
        .append_batch(AppendBatchRequest {
            events: vec![SignedEvent::default(); 10_001],
        })
        .await;
    assert_status(
        result,
        Code::InvalidArgument,
        "events: 10001 events",
        "oversized batch",
    );
    assert_eq!(
        fx.tree_state(&mut client).await,
        before,
        "oversized batch: the tree changed"
    );

    // Nothing refused was stored: the log still holds exactly the first event.
    let stored = stored_events(&mut client, 0, u64::MAX).await;
    assert_eq!(stored, vec![sign_event(alice, &data_flow(0, "IE"))]);
    assert!(refused.iter().all(|r| !stored.contains(r)));

    // And the server still appends, which moves the checkpoint: the
    // comparisons above could have seen a change.
    let next = append(&mut client, &valid(13))
        .await
        .expect("a valid event after the refusals");
    assert_eq!(next.index, 1);
    assert!(!next.duplicate);
    assert_proven(&next, &fx.server.log_key());
    assert_ne!(fx.tree_state(&mut client).await, before);
}

/// (1) AppendBatch answers each event on its own, in order, and appends only
/// the valid ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_is_answered_per_event_and_appends_only_the_valid_ones() {
    let fx = Fixture::start(&[]);
    let (alice, bob, mallory) = (&fx.alice, &fx.bob, &fx.mallory);
    let mut client = fx.client().await;
    append(&mut client, &sign_event(alice, &data_flow(0, "IE")))
        .await
        .expect("a first event");
    let size_before = fx.size(&mut client).await;
    assert_eq!(size_before, 1);

    let valid_alice = sign_event(alice, &data_flow(1, "IE"));
    let valid_bob = sign_event(bob, &code_release(2, alice));
    let mut wrong_signer = sign_event(alice, &data_flow(3, "IE"));
    wrong_signer.key_id = bob.key_id();
    let mut short_signature = sign_event(bob, &data_flow(5, "IE"));
    short_signature.signature.truncate(63);
    let batch = vec![
        valid_alice.clone(),
        sign_event(alice, &data_flow(2, "europe")),
        sign_event(mallory, &data_flow(4, "IE")),
        wrong_signer,
        valid_bob.clone(),
        short_signature,
    ];
    let results = append_batch(&mut client, batch.clone()).await;

    let expected: [(Option<Code>, &str); 6] = [
        (None, ""),
        (
            Some(Code::InvalidArgument),
            "event.data_flow.destination.region:",
        ),
        (Some(Code::PermissionDenied), &mallory.key_id()),
        (Some(Code::Unauthenticated), &bob.key_id()),
        (None, ""),
        (Some(Code::InvalidArgument), "signature:"),
    ];
    let mut indexes = Vec::new();
    for (i, (result, (code, needle))) in results.iter().zip(expected).enumerate() {
        match (&result.result, code) {
            (Some(append_result::Result::Appended(answer)), None) => {
                assert!(!answer.duplicate, "event {i}");
                assert_proven(answer, &fx.server.log_key());
                indexes.push(answer.index);
            }
            (Some(append_result::Result::Error(error)), Some(code)) => {
                assert_eq!(error.code, code as i32, "event {i}: {error:?}");
                assert!(
                    error.message.contains(needle),
                    "event {i}: {error:?} should name {needle:?}"
                );
            }
            (other, _) => panic!("event {i}: expected {code:?}, got {other:?}"),
        }
    }
    assert_eq!(
        indexes,
        vec![1, 2],
        "the valid events land in submission order"
    );
    assert_eq!(
        fx.size(&mut client).await,
        3,
        "only the two valid events were appended"
    );
    assert_eq!(
        stored_events(&mut client, 1, 3).await,
        vec![valid_alice, valid_bob],
        "the log holds exactly the valid events"
    );
}

/// (1) RESOURCE_EXHAUSTED: a batch far larger than the queue overflows it;
/// refused events are not stored, appended ones are, and both are told
/// apart correctly when submitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_resource_exhausted_and_stores_nothing_it_refused() {
    let fx = Fixture::start(&["--queue-capacity", "2", "--batch-size", "1"]);
    let mut client = fx.client().await;
    const COUNT: u64 = 2_000;
    let events: Vec<SignedEvent> = (0..COUNT)
        .map(|n| {
            sign_event(
                if n % 2 == 0 { &fx.alice } else { &fx.bob },
                &data_flow(n, "IE"),
            )
        })
        .collect();
    let results = append_batch(&mut client, events.clone()).await;

    // index -> position in the batch, for the appended ones.
    let mut landed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    for (position, result) in results.iter().enumerate() {
        match &result.result {
            Some(append_result::Result::Appended(answer)) => {
                assert!(!answer.duplicate, "event {position} is new");
                assert_eq!(
                    hash(&answer.leaf_hash),
                    leaf_hash(&fetch_entry(&mut client, answer.index).await),
                    "event {position}: the answer's leaf hash is the stored entry's"
                );
                assert!(
                    landed.insert(answer.index, position).is_none(),
                    "index {} given twice",
                    answer.index
                );
            }
            Some(append_result::Result::Error(error)) => {
                assert_eq!(
                    error.code,
                    Code::ResourceExhausted as i32,
                    "event {position}: {error:?}"
                );
                assert!(error.message.contains("retry later"), "{error:?}");
                refused.push(position);
            }
            None => panic!("event {position}: an empty result"),
        }
    }
    assert!(
        !refused.is_empty(),
        "{COUNT} events must overflow a queue of 2"
    );
    assert!(!landed.is_empty(), "the queue holds at least its capacity");
    let size = fx.size(&mut client).await;
    assert_eq!(
        size,
        landed.len() as u64,
        "the tree holds exactly the appended events"
    );
    assert!(landed.keys().all(|&index| index < size));
    // Distinct and below `size`, with `size` of them: exactly 0..size, and
    // each index holds the event that was told it landed there.
    let stored = stored_events(&mut client, 0, size).await;
    for (&index, &position) in &landed {
        assert_eq!(stored[index as usize], events[position], "entry {index}");
    }

    // A refused event was never stored: submitting it again appends it anew.
    let retried = &events[refused[0]];
    let again = append(&mut client, retried)
        .await
        .expect("a retry succeeds once the queue drains");
    assert!(!again.duplicate, "the refused event was not in the log");
    assert_eq!(again.index, size);
    assert_proven(&again, &fx.server.log_key());
    // An appended one is: it comes back as a duplicate at its first index.
    let (&index, &position) = landed.iter().next_back().expect("an appended event");
    let repeat = append(&mut client, &events[position])
        .await
        .expect("a duplicate is answered");
    assert!(repeat.duplicate);
    assert_eq!(repeat.index, index);
    assert_eq!(repeat.leaf_hash, appended(&results[position]).leaf_hash);
    assert_eq!(fx.size(&mut client).await, size + 1);
}

async fn fetch_entry(client: &mut LogClient<Channel>, index: u64) -> Vec<u8> {
    let mut stream = client
        .get_entries(GetEntriesRequest {
            start: index,
            end: index + 1,
        })
        .await
        .expect("GetEntries")
        .into_inner();
    let entry = stream
        .message()
        .await
        .expect("an entry")
        .expect("one entry");
    assert_eq!(entry.index, index);
    assert!(stream.message().await.expect("end of stream").is_none());
    entry.data
}

/// (2) Re-submissions are recognised as duplicates, alone or within a batch,
/// and never grow the tree; the same event from another signer is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_return_the_original_index_and_never_grow_the_tree() {
    let fx = Fixture::start(&[]);
    let key = fx.server.log_key();
    let mut client = fx.client().await;
    let event = data_flow(1, "IE");
    let signed = sign_event(&fx.alice, &event);
    let first = append(&mut client, &signed).await.expect("first append");
    assert!(!first.duplicate);
    assert_eq!(first.index, 0);
    let state = fx.tree_state(&mut client).await;

    let second = append(&mut client, &signed).await.expect("second append");
    assert!(
        second.duplicate,
        "the same SignedEvent again is a duplicate"
    );
    assert_eq!(second.index, first.index);
    assert_eq!(second.leaf_hash, first.leaf_hash);
    assert_eq!(verified(&second.checkpoint, &key).size, 1);
    assert_proven(&second, &key);
    assert_eq!(
        fx.tree_state(&mut client).await,
        state,
        "a duplicate grew the tree"
    );

    // Re-signing gives the same bytes (Ed25519 is deterministic), and the
    // same answer.
    let resigned = sign_event(&fx.alice, &event);
    assert_eq!(resigned, signed);
    let third = append(&mut client, &resigned)
        .await
        .expect("re-signed append");
    assert!(third.duplicate);
    assert_eq!(
        (third.index, &third.leaf_hash),
        (first.index, &first.leaf_hash)
    );
    assert_eq!(fx.tree_state(&mut client).await, state);

    // The same event from another submitter is another event.
    let from_bob = append(&mut client, &sign_event(&fx.bob, &event))
        .await
        .expect("bob's append");
    assert!(!from_bob.duplicate);
    assert_eq!(from_bob.index, 1);

    // Twice in one batch, next to one already stored.
    let fresh = sign_event(&fx.alice, &data_flow(2, "IE"));
    let results = append_batch(
        &mut client,
        vec![fresh.clone(), signed.clone(), fresh.clone()],
    )
    .await;
    let (a, b, c) = (
        appended(&results[0]),
        appended(&results[1]),
        appended(&results[2]),
    );
    assert!(!a.duplicate);
    assert_eq!(a.index, 2);
    assert!(b.duplicate, "an already stored event inside a batch");
    assert_eq!((b.index, &b.leaf_hash), (first.index, &first.leaf_hash));
    assert!(c.duplicate, "the second copy inside one batch");
    assert_eq!((c.index, &c.leaf_hash), (a.index, &a.leaf_hash));
    for answer in [a, b, c] {
        assert_proven(answer, &key);
    }
    assert_eq!(fx.size(&mut client).await, 3, "the batch added one entry");
    assert_eq!(
        stored_events(&mut client, 0, 3).await,
        vec![signed, sign_event(&fx.bob, &event), fresh]
    );
}

/// (3) Proof and entry reads with bad arguments, and a lookup by leaf hash
/// whose proof verifies against the signed checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_and_entry_requests_with_bad_arguments_are_refused_with_the_right_code() {
    let fx = Fixture::start(&[]);
    let key = fx.server.log_key();
    let mut client = fx.client().await;
    let mut answers = Vec::new();
    for n in 0..5 {
        answers.push(
            append(&mut client, &sign_event(&fx.alice, &data_flow(n, "IE")))
                .await
                .expect("append"),
        );
    }
    let state = fx.tree_state(&mut client).await;
    assert_eq!(verified(&state, &key).size, 5);

    let inclusion =
        |leaf: Option<Leaf>, tree_size: u64| GetInclusionProofRequest { leaf, tree_size };
    let cases = [
        (
            inclusion(None, 0),
            Code::InvalidArgument,
            "leaf:",
            "no leaf",
        ),
        (
            inclusion(Some(Leaf::LeafHash(vec![7; 31])), 0),
            Code::InvalidArgument,
            "leaf_hash: 31 bytes",
            "31-byte leaf hash",
        ),
        (
            inclusion(Some(Leaf::LeafHash(vec![7; 33])), 0),
            Code::InvalidArgument,
            "leaf_hash: 33 bytes",
            "33-byte leaf hash",
        ),
        (
            inclusion(Some(Leaf::LeafHash(vec![7; 32])), 0),
            Code::NotFound,
            "leaf_hash",
            "unknown leaf hash",
        ),
        (
            inclusion(Some(Leaf::Index(5)), 0),
            Code::OutOfRange,
            "index 5",
            "index = size",
        ),
        (
            inclusion(Some(Leaf::Index(u64::MAX)), 0),
            Code::OutOfRange,
            "index",
            "index u64::MAX",
        ),
        (
            inclusion(Some(Leaf::Index(3)), 3),
            Code::OutOfRange,
            "index 3",
            "index = tree_size",
        ),
        (
            inclusion(Some(Leaf::Index(0)), 6),
            Code::OutOfRange,
            "tree_size 6",
            "tree_size > latest",
        ),
        (
            inclusion(Some(Leaf::LeafHash(answers[4].leaf_hash.clone())), 3),
            Code::OutOfRange,
            "index 4",
            "leaf hash beyond tree_size",
        ),
    ];
    for (request, code, needle, what) in cases {
        assert_status(
            client.get_inclusion_proof(request).await,
            code,
            needle,
            what,
        );
        assert_eq!(fx.tree_state(&mut client).await, state);
    }

    let consistency = |old_size, new_size| GetConsistencyProofRequest { old_size, new_size };
    let cases = [
        (
            consistency(4, 3),
            Code::OutOfRange,
            "old_size 4",
            "old_size > new_size",
        ),
        (
            consistency(6, 0),
            Code::OutOfRange,
            "old_size 6",
            "old_size > latest",
        ),
        (
            consistency(1, 6),
            Code::OutOfRange,
            "new_size 6",
            "new_size > latest",
        ),
    ];
    for (request, code, needle, what) in cases {
        assert_status(
            client.get_consistency_proof(request).await,
            code,
            needle,
            what,
        );
    }

    let entries = |start, end| GetEntriesRequest { start, end };
    let cases = [
        (
            entries(3, 2),
            Code::InvalidArgument,
            "end: 2 is before start 3",
            "start > end",
        ),
        (
            entries(6, 10),
            Code::OutOfRange,
            "start: 6",
            "start beyond size",
        ),
        (
            entries(u64::MAX, u64::MAX),
            Code::OutOfRange,
            "start:",
            "start u64::MAX",
        ),
    ];
    for (request, code, needle, what) in cases {
        let result = client.get_entries(request).await.map(|_| "a stream");
        assert_status(result, code, needle, what);
    }
    assert_eq!(fx.tree_state(&mut client).await, state);
    // The edges of the valid range: start = size is an empty read, and end
    // is capped at the size.
    assert!(stored_events(&mut client, 5, 9).await.is_empty());
    assert_eq!(stored_events(&mut client, 3, 100).await.len(), 2);

    // A valid lookup by leaf hash, against the latest tree.
    let target = &answers[2];
    let found = client
        .get_inclusion_proof(inclusion(Some(Leaf::LeafHash(target.leaf_hash.clone())), 0))
        .await
        .expect("a lookup by leaf hash")
        .into_inner();
    let checkpoint = verified(&found.checkpoint, &key);
    assert_eq!(found.checkpoint, state);
    assert_eq!(found.index, 2);
    assert_eq!(found.tree_size, checkpoint.size);
    assert_eq!(found.leaf_hash, target.leaf_hash);
    let proof = hashes(&found.proof);
    let leaf = hash(&found.leaf_hash);
    verify_inclusion(&proof, 2, checkpoint.size, leaf, checkpoint.root)
        .expect("the proof verifies");
    assert!(
        verify_inclusion(&proof, 1, checkpoint.size, leaf, checkpoint.root).is_err(),
        "the proof must not verify at another index"
    );

    // By index against an older tree: the checkpoint the append of entry 2
    // returned (size 3) is the root to check it against.
    let old = verified(&target.checkpoint, &key);
    assert_eq!(old.size, 3);
    let by_index = client
        .get_inclusion_proof(inclusion(Some(Leaf::Index(1)), 3))
        .await
        .expect("a proof against an older size")
        .into_inner();
    assert_eq!((by_index.index, by_index.tree_size), (1, 3));
    verify_inclusion(
        &hashes(&by_index.proof),
        1,
        3,
        hash(&answers[1].leaf_hash),
        old.root,
    )
    .expect("the proof verifies against the size-3 checkpoint");
    let consistent = client
        .get_consistency_proof(consistency(3, 0))
        .await
        .expect("a consistency proof to the latest size")
        .into_inner();
    assert_eq!((consistent.old_size, consistent.new_size), (3, 5));
    verify_consistency(&hashes(&consistent.proof), 3, old.root, 5, checkpoint.root)
        .expect("the consistency proof verifies");
}

/// The `max-age` of a `cache-control` value.
fn max_age(response: &HttpResponse) -> Option<u64> {
    response
        .header("cache-control")?
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age=")?.parse().ok())
}

fn assert_short_lived(response: &HttpResponse, what: &str) {
    let cache = response.header("cache-control").unwrap_or_default();
    assert!(!cache.contains("immutable"), "{what}: {cache:?}");
    let age = max_age(response).unwrap_or_else(|| panic!("{what}: no max-age in {cache:?}"));
    assert!(age <= 60, "{what}: max-age {age} is not short");
}

fn assert_immutable(response: &HttpResponse, what: &str) {
    let cache = response.header("cache-control").unwrap_or_default();
    assert!(cache.contains("immutable"), "{what}: {cache:?}");
    assert!(
        max_age(response).is_some_and(|age| age >= 86_400),
        "{what}: {cache:?}"
    );
}

/// (4) The tiles API: malformed paths are 400, tiles outside the tree 404,
/// and caching headers tell full tiles from everything that still changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tile_requests_are_checked_and_only_full_tiles_are_immutable() {
    let fx = Fixture::start(&[]);
    let addr = fx.server.addr;
    let mut client = fx.client().await;
    let first: Vec<SignedEvent> = (0..3)
        .map(|n| sign_event(&fx.alice, &data_flow(n, "IE")))
        .collect();
    let first_answers = append_batch(&mut client, first).await;
    assert_eq!(fx.size(&mut client).await, 3);

    let checkpoint = http_get(addr, "/checkpoint");
    assert_eq!(checkpoint.status, 200);
    assert_short_lived(&checkpoint, "/checkpoint");

    for path in [
        "/tile/0/1",
        "/tile/0/0000",
        "/tile/0/00a",
        "/tile/0/x000/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/000.p/abc",
        "/tile/0/000.p/",
        "/tile/8/000",
        "/tile/-1/000",
        "/tile/data/000",
        "/tile/entries/000.p/003",
        "/tile/entries",
    ] {
        let response = http_get(addr, path);
        assert_eq!(response.status, 400, "{path}: {response:?}");
    }
    for path in [
        "/tile/0/000",
        "/tile/0/000.p/4",
        "/tile/0/001",
        "/tile/0/001.p/1",
        "/tile/1/000.p/1",
        "/tile/entries/000",
        "/tile/entries/000.p/4",
        "/tile/entries/x001/000.p/1",
    ] {
        let response = http_get(addr, path);
        assert_eq!(response.status, 404, "{path}: {response:?}");
    }
    let partial = http_get(addr, "/tile/0/000.p/3");
    assert_eq!(partial.status, 200);
    assert_eq!(partial.body.len(), 3 * 32);
    assert_eq!(
        partial.body[..32],
        appended(&first_answers[0]).leaf_hash[..]
    );
    assert_short_lived(&partial, "partial hash tile of 3");

    // Grow past one full tile.
    let more: Vec<SignedEvent> = (3..300)
        .map(|n| sign_event(&fx.bob, &data_flow(n, "IE")))
        .collect();
    append_batch(&mut client, more).await;
    assert_eq!(fx.size(&mut client).await, 300);

    let full = http_get(addr, "/tile/0/000");
    assert_eq!(full.status, 200);
    assert_eq!(full.body.len(), 256 * 32);
    assert_eq!(
        full.body[..3 * 32],
        partial.body[..],
        "a partial tile is a prefix of its full tile"
    );
    assert_immutable(&full, "/tile/0/000");
    let bundle = http_get(addr, "/tile/entries/000");
    assert_eq!(bundle.status, 200);
    assert_immutable(&bundle, "/tile/entries/000");
    let entries = decode_entry_bundle(&bundle.body).expect("an entry bundle");
    assert_eq!(entries.len(), 256);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            leaf_hash(entry).0[..],
            full.body[i * 32..(i + 1) * 32],
            "entry {i}"
        );
    }

    for path in [
        "/tile/0/001.p/44",
        "/tile/entries/001.p/44",
        "/tile/1/000.p/1",
    ] {
        let response = http_get(addr, path);
        assert_eq!(response.status, 200, "{path}");
        assert_short_lived(&response, path);
    }
    for path in [
        "/tile/0/001",
        "/tile/0/001.p/45",
        "/tile/entries/001.p/45",
        "/tile/1/000.p/2",
    ] {
        assert_eq!(http_get(addr, path).status, 404, "{path}");
    }
    assert_short_lived(&http_get(addr, "/checkpoint"), "/checkpoint at 300");
}

/// An event just under the size cap still makes an entry (signature, key id
/// and acceptance time added) that must fit an entry bundle, whose length
/// prefix is a u16: either the log refuses the event, or it serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_at_the_size_cap_is_refused_or_servable_never_stuck() {
    let fx = Fixture::start(&[]);
    let mut client = fx.client().await;
    let before = fx.tree_state(&mut client).await;
    let signed = sign_bytes(&fx.alice, padded_event(0, MAX_ENTRY_SIZE));
    match append(&mut client, &signed).await {
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("event"), "{status:?}");
            assert_eq!(fx.tree_state(&mut client).await, before);
        }
        Ok(answer) => {
            assert_eq!(answer.index, 0);
            let tile = http_get(fx.server.addr, "/tile/entries/000.p/1");
            assert_eq!(
                tile.status,
                200,
                "accepted event 0 ({} bytes) cannot be served in an entry bundle: {}",
                signed.event.len(),
                String::from_utf8_lossy(&tile.body)
            );
            let entries = decode_entry_bundle(&tile.body).expect("an entry bundle");
            assert_eq!(leaf_hash(entries[0]).0[..], answer.leaf_hash[..]);
        }
    }
}

/// Every file of `dir` (not the database, which the server may open to
/// check before it refuses), by name.
fn config_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("reading the data directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("reading a data file");
            (name, bytes)
        })
        .filter(|(name, _)| !name.starts_with("log.redb") && !name.starts_with("log.sled"))
        .collect()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("reading the data directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Runs `log-server` expecting a refusal; returns its one line of reason.
fn refusal(args: &[&str]) -> String {
    let owned: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        let _ = tx.send(log_server_refuses(&args));
    });
    let (status, stderr) = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("log-server {args:?} did not exit: it should refuse to start"));
    assert!(
        status.code().is_some_and(|code| code != 0),
        "log-server {args:?} should exit non-zero, got {status}: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line of reason for {args:?}, got {stderr:?}"
    );
    assert!(lines[0].starts_with("log-server: "), "{stderr:?}");
    lines[0].to_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// (5) Configuration mistakes stop the binary with one line naming the
/// problem, and leave the data directory as it was.
#[test]
fn bad_configurations_refuse_to_start_with_one_line_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir: PathBuf = tmp.path().join("data");
    let server = LogServer::start(&dir, &["--origin", ORIGIN]);
    let submitter = server.submitter_key();
    // One entry, so the checkpoint compared after the refusals is not the
    // empty tree's.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let answer = runtime.block_on(async {
        let mut client = server.client().await;
        append(&mut client, &sign_event(&submitter, &data_flow(0, "IE"))).await
    });
    assert_eq!(answer.expect("an append").index, 0);
    let checkpoint = http_get(server.addr, "/checkpoint").body;
    assert_eq!(
        verified(&String::from_utf8_lossy(&checkpoint), &server.log_key()).size,
        1
    );
    assert!(server.interrupt().success(), "a clean shutdown");
    let files = config_files(&dir);
    let names = file_names(&dir);
    for expected in [
        "origin",
        "storage",
        "log.key",
        "log.vkey",
        "submitter.key",
        "submitters",
    ] {
        assert!(files.contains_key(expected), "{expected} in {names:?}");
    }
    assert_eq!(files["origin"], format!("{ORIGIN}\n").as_bytes());
    let data = path_str(&dir);
    let unchanged = |what: &str| {
        assert_eq!(
            config_files(&dir),
            files,
            "{what} changed the data directory"
        );
        assert_eq!(file_names(&dir), names, "{what} added or removed files");
    };

    let line = refusal(&[
        "serve",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "log.example/other",
    ]);
    assert!(line.contains("belongs to origin"), "{line}");
    assert!(
        line.contains(ORIGIN) && line.contains("log.example/other"),
        "{line}"
    );
    unchanged("another --origin");

    let line = refusal(&[
        "serve",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--storage",
        "sled",
    ]);
    assert!(
        line.contains("was created with --storage redb, not sled"),
        "{line}"
    );
    unchanged("--storage sled");

    let lists = tempfile::tempdir().expect("a temporary directory");
    let allowlist = lists.path().join("allowlist");
    std::fs::write(
        &allowlist,
        format!("# submitters\n{}\n\nnot-a-key\n", submitter.verifier_key()),
    )
    .expect("writing an allowlist");
    let line = refusal(&[
        "serve",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--submitters",
        path_str(&allowlist),
    ]);
    assert!(line.contains("line 4"), "{line}");
    assert!(line.contains(path_str(&allowlist)), "{line}");
    unchanged("a bad allowlist");

    let in_use = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let taken = in_use.local_addr().expect("its address").to_string();
    let line = refusal(&["serve", "--data-dir", data, "--listen", &taken]);
    assert!(
        line.contains(&format!("cannot listen on {taken}")),
        "{line}"
    );
    unchanged("a listen address in use");
    drop(in_use);

    // A copy of the log without its signing key: a new key would fork it.
    let keyless = tmp.path().join("keyless");
    std::fs::create_dir(&keyless).expect("creating a directory");
    for name in &names {
        if name != "log.key" {
            std::fs::copy(dir.join(name), keyless.join(name)).expect("copying a data file");
        }
    }
    let keyless_files = config_files(&keyless);
    let keyless_names = file_names(&keyless);
    let line = refusal(&[
        "serve",
        "--data-dir",
        path_str(&keyless),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(line.contains("would fork"), "{line}");
    assert!(line.contains("log.key"), "{line}");
    assert_eq!(
        config_files(&keyless),
        keyless_files,
        "the refused start wrote files"
    );
    assert_eq!(
        file_names(&keyless),
        keyless_names,
        "the refused start made a new key"
    );

    let fresh = tmp.path().join("fresh");
    let line = refusal(&[
        "serve",
        "--data-dir",
        path_str(&fresh),
        "--listen",
        "127.0.0.1:0",
        "--origin",
        "log example",
    ]);
    assert!(
        line.contains("\"log example\" must be non-empty, with no spaces"),
        "{line}"
    );
    assert!(
        !fresh.exists(),
        "a refused first start created {}",
        fresh.display()
    );

    // After all the refusals the log starts as it was.
    let server = LogServer::start(&dir, &[]);
    assert_eq!(http_get(server.addr, "/checkpoint").body, checkpoint);
    drop(server);
    unchanged("the restart");
}
