//! The log is auditable by code that shares nothing with it.
//!
//! `tests/independent/c2sp_check.py` is a stdlib-only Python verifier written
//! from the C2SP signed-note, tlog-checkpoint and tlog-tiles specifications
//! and RFC 9162. These tests first make it prove itself against Go's sumdb
//! vectors, then point it at the real `log-server` binary (both storage
//! backends), across a SIGKILL and restart, and check that it verifies the
//! served tiles, the checkpoint signature and the consistency of the log
//! with a checkpoint saved before the crash. Negative controls show that its
//! verdict depends on what it is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tlog_e2e::{mixed_event, LogServer};
use tonic::transport::Channel;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::sign_event;
use verifier::keys::{SigningKey, VerifierKey};
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    append_result, AppendBatchRequest, AppendRequest, GetCheckpointRequest, SignedEvent,
};

/// The origin every log in these tests is created with.
const ORIGIN: &str = "log.example.test/independent";
/// Entries appended before the crash: two full 256-entry tiles, a partial
/// third, and therefore a level-1 tile.
const BEFORE_CRASH: u64 = 600;
/// Entries appended after the restart.
const AFTER_CRASH: u64 = 300;
/// Events per AppendBatch request.
const BATCH: usize = 128;
/// Unary Appends at the start and at the end of every append run.
const UNARY_EACH_END: u64 = 3;

/// The repository root: `CARGO_MANIFEST_DIR` is `<repo>/tests`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives one level below the repository root")
        .to_owned()
}

fn checker_script() -> PathBuf {
    repo_root().join("tests/independent/c2sp_check.py")
}

/// Runs the independent checker with `args`. A missing `python3` fails the
/// test: skipping would make an unaudited log look audited.
fn run_checker(args: &[&str]) -> Output {
    let script = checker_script();
    assert!(
        script.is_file(),
        "the checker {} is missing",
        script.display()
    );
    match Command::new("python3").arg(&script).args(args).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `python3` ({e}); the independent checker needs Python 3.11+ on PATH. \
             This test fails rather than skips, so a missing interpreter is never mistaken \
             for a verified log."
        ),
    }
}

/// What `check --json` printed, as far as the tests care.
#[derive(Debug)]
struct Verdict {
    /// Exit status: 0 verified, 1 failed verification, 2 could not check.
    code: i32,
    ok: bool,
    /// `null` when the checker never got a checkpoint.
    size: Option<u64>,
    /// Lower-case hex, `null` when the checker never got a checkpoint.
    root: Option<String>,
    /// The raw JSON, for messages.
    json: String,
}

/// Returns the raw JSON token following `"key": ` in a flat object printed
/// by Python's `json.dumps` (keys in the order ok, size, root, errors: the
/// scalars all come before the free-text `errors`, so the first match is
/// the field itself).
fn json_scalar<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\": ");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("checker JSON has no {key:?}: {json}"))
        + needle.len();
    let rest = &json[start..];
    let end = rest
        .find([',', '}'])
        .unwrap_or_else(|| panic!("checker JSON field {key:?} is not terminated: {json}"));
    rest[..end].trim()
}

/// Runs `check --json` against `server` with its own verifier key file, and
/// `--prev prev` if given.
async fn check_log(server: &LogServer, prev: Option<&Path>) -> Verdict {
    let url = server.url();
    let vkey = server.data_dir.join("log.vkey");
    let prev = prev.map(Path::to_owned);
    tokio::task::spawn_blocking(move || {
        let vkey = vkey.to_str().expect("a UTF-8 temp path").to_owned();
        let mut args = vec!["check", "--url", &url, "--vkey", &vkey, "--json"];
        let prev_arg;
        if let Some(prev) = &prev {
            prev_arg = prev.to_str().expect("a UTF-8 temp path").to_owned();
            args.extend(["--prev", &prev_arg]);
        }
        let output = run_checker(&args);
        let json = String::from_utf8(output.stdout)
            .expect("checker output is UTF-8")
            .trim()
            .to_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output
            .status
            .code()
            .unwrap_or_else(|| panic!("checker killed by a signal; stderr: {stderr}"));
        assert!(
            json.starts_with("{\"ok\": ") && json.ends_with('}') && !json.contains('\n'),
            "checker (exit {code}) did not print one JSON object: {json:?}; stderr: {stderr}"
        );
        let ok = match json_scalar(&json, "ok") {
            "true" => true,
            "false" => false,
            other => panic!("checker JSON ok is {other:?}: {json}"),
        };
        let size = match json_scalar(&json, "size") {
            "null" => None,
            n => Some(n.parse().unwrap_or_else(|_| panic!("bad size in {json}"))),
        };
        let root = match json_scalar(&json, "root") {
            "null" => None,
            quoted => Some(
                quoted
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("root is not a string in {json}"))
                    .to_owned(),
            ),
        };
        Verdict {
            code,
            ok,
            size,
            root,
            json,
        }
    })
    .await
    .expect("the checker task")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The latest checkpoint over gRPC, verified with our own verifier against
/// the log key, for cross-checking what the independent checker reports.
async fn latest_checkpoint(
    client: &mut LogClient<Channel>,
    log_key: &VerifierKey,
) -> SignedCheckpoint {
    let note = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("GetCheckpoint")
        .into_inner()
        .checkpoint;
    SignedCheckpoint::verify(note.as_bytes(), log_key).expect("the log's own checkpoint verifies")
}

/// Appends events `range` (numbered for `mixed_event`), signed by the
/// operator key: a few unary Appends, AppendBatch chunks of [`BATCH`], then
/// a few unary Appends again. Asserts every event was appended once and
/// that together they took exactly the indexes `range` (the log held
/// `range.start` entries before).
async fn append_events(
    client: &mut LogClient<Channel>,
    submitter: &SigningKey,
    reviewer: &SigningKey,
    range: std::ops::Range<u64>,
) {
    assert!(range.end - range.start > 2 * UNARY_EACH_END);
    let signed = |n: u64| -> SignedEvent { sign_event(submitter, &mixed_event(n, reviewer)) };
    let mut indexes = Vec::new();
    let unary_head = range.start..range.start + UNARY_EACH_END;
    let batched = unary_head.end..range.end - UNARY_EACH_END;
    let unary_tail = batched.end..range.end;

    for n in unary_head {
        indexes.push(append_one(client, signed(n), n).await);
    }
    let numbers: Vec<u64> = batched.collect();
    for chunk in numbers.chunks(BATCH) {
        let events = chunk.iter().map(|&n| signed(n)).collect();
        let results = client
            .append_batch(AppendBatchRequest { events })
            .await
            .expect("AppendBatch")
            .into_inner()
            .results;
        assert_eq!(results.len(), chunk.len(), "one result per submitted event");
        for (&n, result) in chunk.iter().zip(results) {
            match result.result {
                Some(append_result::Result::Appended(appended)) => {
                    assert!(!appended.duplicate, "event {n} reported as a duplicate");
                    indexes.push(appended.index);
                }
                other => panic!("event {n} of a batch was not appended: {other:?}"),
            }
        }
    }
    for n in unary_tail {
        indexes.push(append_one(client, signed(n), n).await);
    }
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        range.collect::<Vec<_>>(),
        "the appended events did not take exactly the next indexes"
    );
}

/// One unary Append of event `n`; returns its index.
async fn append_one(client: &mut LogClient<Channel>, event: SignedEvent, n: u64) -> u64 {
    let response = client
        .append(AppendRequest { event: Some(event) })
        .await
        .unwrap_or_else(|e| panic!("Append of event {n}: {e}"))
        .into_inner();
    assert!(!response.duplicate, "event {n} reported as a duplicate");
    response.index
}

/// Asserts the checker verified the log at `expected_size` and reports the
/// root of `ours`, the checkpoint our own verifier accepted.
fn assert_verified(verdict: &Verdict, expected_size: u64, ours: &SignedCheckpoint, what: &str) {
    assert_eq!(
        verdict.code, 0,
        "{what}: checker did not verify the log: {}",
        verdict.json
    );
    assert!(
        verdict.ok,
        "{what}: exit 0 but ok is not true: {}",
        verdict.json
    );
    assert_eq!(
        verdict.size,
        Some(expected_size),
        "{what}: {}",
        verdict.json
    );
    assert_eq!(
        ours.checkpoint.size, expected_size,
        "{what}: our checkpoint size"
    );
    assert_eq!(
        verdict.root.as_deref(),
        Some(hex(&ours.checkpoint.root.0).as_str()),
        "{what}: the checker's root is not the one in the log's checkpoint: {}",
        verdict.json
    );
}

/// Asserts the checker refused with exactly `code` and said `needle`.
fn assert_refused(verdict: &Verdict, code: i32, needle: &str, what: &str) {
    assert_eq!(
        verdict.code, code,
        "{what}: unexpected exit status: {}",
        verdict.json
    );
    assert!(
        !verdict.ok,
        "{what}: refused but ok is true: {}",
        verdict.json
    );
    assert!(
        verdict.json.contains(needle),
        "{what}: errors do not mention {needle:?}: {}",
        verdict.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_checker_passes_its_own_selftest() {
    let vectors = repo_root().join("tests/vectors");
    let output = tokio::task::spawn_blocking(move || {
        run_checker(&[
            "selftest",
            "--vectors",
            vectors.to_str().expect("a UTF-8 repository path"),
        ])
    })
    .await
    .expect("the selftest task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the independent checker fails its own selftest against Go's vectors:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("SELFTEST PASSED") && !stdout.contains("[FAIL]"),
        "selftest exited 0 without saying it passed:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_checker_verifies_the_log_before_and_after_a_crash_redb() {
    verifies_before_and_after_a_crash("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_checker_verifies_the_log_before_and_after_a_crash_sled() {
    verifies_before_and_after_a_crash("sled").await;
}

async fn verifies_before_and_after_a_crash(backend: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data_dir = dir.path().join("log");
    let notes = dir.path();
    let reviewer = SigningKey::from_seed("reviewer.example.test", [7; 32]).expect("a reviewer key");

    // First life: a new log with an explicit origin and backend.
    let server = LogServer::start(&data_dir, &["--origin", ORIGIN, "--storage", backend]);
    let log_key = server.log_key();
    assert_eq!(
        log_key.name(),
        ORIGIN,
        "the log key is named after the origin"
    );
    let submitter = server.submitter_key();
    let mut client = server.client().await;
    append_events(&mut client, &submitter, &reviewer, 0..BEFORE_CRASH).await;

    let before = latest_checkpoint(&mut client, &log_key).await;
    let verdict = check_log(&server, None).await;
    assert_verified(
        &verdict,
        BEFORE_CRASH,
        &before,
        &format!("{backend}, before the crash"),
    );

    let saved = notes.join("before-crash.note");
    std::fs::write(&saved, &before.note).expect("saving the checkpoint");

    // A crash: no flush, no clean shutdown.
    drop(client);
    server.kill();

    // Second life: same directory, origin and backend remembered.
    let server = LogServer::start(&data_dir, &[]);
    assert_eq!(
        server.log_key(),
        log_key,
        "the restarted log has another key"
    );
    let mut client = server.client().await;
    let restarted = latest_checkpoint(&mut client, &log_key).await;
    assert_eq!(
        restarted.checkpoint, before.checkpoint,
        "{backend}: the restarted log does not hold what it acknowledged before the crash"
    );
    append_events(
        &mut client,
        &submitter,
        &reviewer,
        BEFORE_CRASH..BEFORE_CRASH + AFTER_CRASH,
    )
    .await;
    let after = latest_checkpoint(&mut client, &log_key).await;

    let verdict = check_log(&server, Some(&saved)).await;
    assert_verified(
        &verdict,
        BEFORE_CRASH + AFTER_CRASH,
        &after,
        &format!("{backend}, after the restart, --prev the pre-crash checkpoint"),
    );
    assert!(
        verdict.json.contains("\"errors\": []"),
        "{backend}: ok but errors reported: {}",
        verdict.json
    );

    // Negative control 1: the saved note with its size line changed. It
    // looks like a checkpoint but the log never signed it: could not check.
    let note_text = std::str::from_utf8(&before.note).expect("a UTF-8 note");
    let size_line = format!("\n{BEFORE_CRASH}\n");
    assert!(
        note_text.contains(&size_line),
        "the note has no size line: {note_text}"
    );
    let altered = note_text.replacen(&size_line, &format!("\n{}\n", BEFORE_CRASH - 1), 1);
    assert_ne!(altered, note_text);
    let altered_file = notes.join("altered-size.note");
    std::fs::write(&altered_file, &altered).expect("writing the altered note");
    let verdict = check_log(&server, Some(&altered_file)).await;
    assert_refused(
        &verdict,
        2,
        "--prev note does not verify",
        &format!("{backend}, --prev with an altered size line"),
    );

    // Negative control 2: a genuinely signed but inconsistent checkpoint, a
    // split view. Signed with the log's own key (from the data directory)
    // for the pre-crash size with another root: the checker must prove it
    // inconsistent with what the log serves.
    let log_signer = SigningKey::parse(
        &std::fs::read_to_string(data_dir.join("log.key")).expect("reading log.key"),
    )
    .expect("the log's signing key");
    let forked = Checkpoint {
        root: verifier::merkle::leaf_hash(b"a history the log never had"),
        ..before.checkpoint.clone()
    };
    assert_ne!(forked.root, before.checkpoint.root);
    let forked_note = forked.sign(&log_signer);
    SignedCheckpoint::verify(&forked_note, &log_key).expect("the forged fork is validly signed");
    let forked_file = notes.join("forked.note");
    std::fs::write(&forked_file, &forked_note).expect("writing the forked note");
    let verdict = check_log(&server, Some(&forked_file)).await;
    assert_refused(
        &verdict,
        1,
        "consistency proof",
        &format!("{backend}, --prev a validly signed fork"),
    );

    // Negative control 3: a validly signed checkpoint from the future.
    let ahead = Checkpoint {
        size: BEFORE_CRASH + AFTER_CRASH + 1,
        ..after.checkpoint.clone()
    };
    let ahead_file = notes.join("ahead.note");
    std::fs::write(&ahead_file, ahead.sign(&log_signer)).expect("writing the ahead note");
    let verdict = check_log(&server, Some(&ahead_file)).await;
    assert_refused(
        &verdict,
        1,
        "larger than current size",
        &format!("{backend}, --prev a signed checkpoint larger than the log"),
    );

    // The controls changed nothing: the genuine pre-crash note still passes.
    let verdict = check_log(&server, Some(&saved)).await;
    assert_verified(
        &verdict,
        BEFORE_CRASH + AFTER_CRASH,
        &after,
        &format!("{backend}, re-run after the negative controls"),
    );
    server.kill();
}
