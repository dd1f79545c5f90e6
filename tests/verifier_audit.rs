//! `verifier audit` against the real log: a full audit, a resumed one, the
//! gRPC source, and the attacks it exists to catch: storage tampered with
//! after signing, an entry by a key the auditor does not accept, and a
//! checkpoint under the wrong key.

use serde_json::Value;
use std::path::Path;
use tlog_e2e::{append_mixed, run_verifier, submitters_file, LogServer, Run};
use verifier::audit::AuditState;
use verifier::keys::SigningKey;

/// The redb table of entry bytes by index, as log-server stores it.
const ENTRIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("entries");

/// Writes a submitters file holding `keys`' verifier keys.
/// Runs `verifier --json audit` against `server` with `extra` arguments.
fn audit(server: &LogServer, state: &Path, submitters: &str, extra: &[&str]) -> Run {
    let (url, vkey) = (server.url(), server.data_dir.join("log.vkey"));
    let (vkey, state) = (vkey.display().to_string(), state.display().to_string());
    let mut args = vec![
        "--json", "audit", "--log", &url, "--vkey", &vkey, "--state", &state,
    ];
    args.extend(["--submitters", submitters]);
    args.extend(extra);
    run_verifier(&args)
}

/// The JSON object a run printed, after checking its exit code.
fn json(run: &Run, code: i32) -> Value {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    serde_json::from_str(&run.stdout).expect("one JSON object on stdout")
}

/// Asserts that a successful audit's summary says these counts.
fn assert_summary(summary: &Value, from: u64, total: u64, flows: u64, releases: u64) {
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["audited_from"], from, "{summary}");
    assert_eq!(summary["audited_this_run"], total - from, "{summary}");
    assert_eq!(summary["audited_total"], total, "{summary}");
    assert_eq!(summary["size"], total, "{summary}");
    assert_eq!(summary["data_flows"], flows, "{summary}");
    assert_eq!(summary["releases"], releases, "{summary}");
    assert_eq!(summary["submitters"], 1, "{summary}");
    assert!(summary["entries_per_second"].is_number(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_resumes_with_only_new_entries_and_reads_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/audit"],
    );
    let operator = server.submitter_key();
    let submitters = submitters_file(&dir.path().join("submitters"), &[&operator]);
    let state = dir.path().join("state");

    // Every fifth event of the mixed workload is a release.
    append_mixed(&server, &operator, 0..700).await;
    let first = audit(&server, &state, &submitters, &[]);
    assert_summary(&json(&first, 0), 0, 700, 560, 140);

    append_mixed(&server, &operator, 700..1000).await;
    let resumed = audit(&server, &state, &submitters, &[]);
    assert_summary(&json(&resumed, 0), 700, 1000, 800, 200);
    let saved = std::fs::read_dir(&state)
        .unwrap()
        .map(|log_dir| log_dir.unwrap().path().join("audit"))
        .next()
        .expect("a state directory for the log");
    let saved = AuditState::parse(&std::fs::read_to_string(saved).unwrap()).unwrap();
    assert_eq!((saved.size(), saved.releases()), (1000, 200));

    let again = audit(&server, &state, &submitters, &[]);
    assert_summary(&json(&again, 0), 1000, 1000, 800, 200);

    let grpc = audit(
        &server,
        &dir.path().join("grpc-state"),
        &submitters,
        &["--source", "grpc"],
    );
    assert_summary(&json(&grpc, 0), 0, 1000, 800, 200);

    let vkey = server.data_dir.join("log.vkey").display().to_string();
    let human = run_verifier(&[
        "audit",
        "--log",
        &server.url(),
        "--vkey",
        &vkey,
        "--state",
        &state.display().to_string(),
        "--submitters",
        &submitters,
    ]);
    assert_eq!(human.code, Some(0), "{}", human.stderr);
    assert!(human.stdout.contains("audit passed"), "{}", human.stdout);
}

/// Swaps the bytes of entries `a` and `b` in a stopped log's redb file:
/// valid entries, each at the wrong index, under the same signed root.
fn swap_stored_entries(data_dir: &Path, a: u64, b: u64) {
    let db = redb::Database::open(data_dir.join("log.redb")).expect("opening log.redb");
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ENTRIES).unwrap();
        let read = |table: &redb::Table<u64, &[u8]>, i| {
            use redb::ReadableTable as _;
            table
                .get(i)
                .unwrap()
                .expect("a stored entry")
                .value()
                .to_vec()
        };
        let (entry_a, entry_b) = (read(&table, a), read(&table, b));
        assert_ne!(entry_a, entry_b);
        table.insert(a, entry_b.as_slice()).unwrap();
        table.insert(b, entry_a.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_tampered_with_after_signing_is_a_root_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("log");
    let server = LogServer::start(&data_dir, &["--origin", "log.example.test/tampered"]);
    let operator = server.submitter_key();
    let submitters = submitters_file(&dir.path().join("submitters"), &[&operator]);
    append_mixed(&server, &operator, 0..300).await;
    assert!(server.interrupt().success());

    swap_stored_entries(&data_dir, 10, 270);
    let server = LogServer::start(&data_dir, &[]);
    for (source, state) in [("tiles", "state-tiles"), ("grpc", "state-grpc")] {
        let run = audit(
            &server,
            &dir.path().join(state),
            &submitters,
            &["--source", source],
        );
        let finding = json(&run, 1);
        let summary = finding["security_finding"].as_str().unwrap();
        assert!(summary.contains("root mismatch"), "{source}: {summary}");
        let note = finding["evidence"]["checkpoint"].as_str().unwrap();
        assert!(
            note.starts_with("log.example.test/tampered\n300\n"),
            "{note}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_by_a_key_the_auditor_does_not_accept_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let alice = SigningKey::generate("alice.example").unwrap();
    let mallory = SigningKey::generate("mallory.example").unwrap();
    let allowlist = submitters_file(&dir.path().join("allowlist"), &[&alice, &mallory]);
    let server = LogServer::start(
        &dir.path().join("log"),
        &[
            "--origin",
            "log.example.test/keys",
            "--submitters",
            &allowlist,
        ],
    );
    append_mixed(&server, &alice, 0..5).await;
    append_mixed(&server, &mallory, 5..6).await;
    append_mixed(&server, &alice, 6..8).await;

    let only_alice = submitters_file(&dir.path().join("auditor-submitters"), &[&alice]);
    let run = audit(&server, &dir.path().join("state"), &only_alice, &[]);
    let finding = json(&run, 1);
    let summary = finding["security_finding"].as_str().unwrap();
    assert!(summary.contains("entry 5 "), "{summary}");
    assert!(summary.contains(&mallory.key_id()), "{summary}");
    assert_eq!(finding["evidence"]["index"], "5");

    let both = submitters_file(&dir.path().join("both"), &[&alice, &mallory]);
    let run = audit(&server, &dir.path().join("state"), &both, &[]);
    assert_eq!(json(&run, 0)["submitters"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_finding_and_an_unreachable_log_is_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/wrong"],
    );
    let operator = server.submitter_key();
    let submitters = submitters_file(&dir.path().join("submitters"), &[&operator]);
    append_mixed(&server, &operator, 0..3).await;
    let state = dir.path().join("state").display().to_string();

    let impostor = SigningKey::generate("log.example.test/wrong")
        .unwrap()
        .verifier_key()
        .to_string();
    let run = run_verifier(&[
        "audit",
        "--log",
        &server.url(),
        "--vkey",
        &impostor,
        "--state",
        &state,
        "--submitters",
        &submitters,
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("does not verify"), "{}", run.stderr);

    let vkey = server.data_dir.join("log.vkey").display().to_string();
    for (log, submitters) in [
        ("http://127.0.0.1:1", submitters.as_str()),
        ("not-a-url", submitters.as_str()),
        (&server.url(), "/nonexistent/submitters"),
    ] {
        let run = run_verifier(&[
            "audit",
            "--log",
            log,
            "--vkey",
            &vkey,
            "--state",
            &state,
            "--submitters",
            submitters,
        ]);
        assert_eq!(run.code, Some(2), "{log}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("verifier: could not check"),
            "{}",
            run.stderr
        );
    }
}
