//! `verifier checkpoint`, `inclusion` and `consistency` against the real
//! log, and the attacks they exist to catch: a checkpoint signed by the
//! wrong key, a rolled-back log and a forked log.

use std::path::Path;
use tlog_e2e::{append_mixed, run_verifier, LogServer, Run};
use verifier::keys::SigningKey;
use verifier::proto::GetCheckpointRequest;

/// Appends events `numbers` in one batch and returns the new tree size.
async fn append(server: &LogServer, numbers: std::ops::Range<u64>) -> u64 {
    append_mixed(server, &server.submitter_key(), numbers).await;
    checkpoint_note(server)
        .await
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

async fn checkpoint_note(server: &LogServer) -> String {
    server
        .client()
        .await
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("GetCheckpoint")
        .into_inner()
        .checkpoint
}

fn vkey(server: &LogServer) -> String {
    server.data_dir.join("log.vkey").display().to_string()
}

/// Runs `verifier <command> --log <server> --vkey <its key> <extra…>`.
fn verify(command: &str, server: &LogServer, extra: &[&str]) -> Run {
    let mut args = vec![
        command.to_owned(),
        "--log".into(),
        server.url(),
        "--vkey".into(),
        vkey(server),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    run_verifier(&args)
}

fn assert_exit(run: &Run, code: i32, needle: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(needle), "expected {needle:?} in: {all}");
}

/// Copies a stopped log's data directory: the same key, the same history.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in std::fs::read_dir(from).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_inclusion_and_consistency_verify_a_growing_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/checks"],
    );
    append(&server, 0..300).await;

    assert_exit(
        &verify("checkpoint", &server, &["--state", &state_arg]),
        0,
        "trusted from now on",
    );
    let old_note = dir.path().join("old.note");
    std::fs::write(&old_note, checkpoint_note(&server).await).unwrap();
    let size = append(&server, 300..700).await;
    assert_eq!(size, 700);
    let run = verify("checkpoint", &server, &["--state", &state_arg, "--json"]);
    assert_exit(&run, 0, "\"size\":700");
    assert!(
        run.stdout
            .contains("proven consistent with the trusted size 300"),
        "{}",
        run.stdout
    );
    assert_exit(
        &verify("checkpoint", &server, &["--state", &state_arg]),
        0,
        "same tree",
    );

    for index in ["0", "255", "256", "511", "699"] {
        assert_exit(
            &verify("inclusion", &server, &["--index", index]),
            0,
            "verified: entry",
        );
    }
    let run = verify("inclusion", &server, &["--index", "5", "--json"]);
    let leaf = run
        .stdout
        .split("\"leaf_hash\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_exit(
        &verify("inclusion", &server, &["--leaf-hash", &leaf]),
        0,
        "verified: entry 5 ",
    );
    assert_exit(
        &verify("inclusion", &server, &["--leaf-hash", &"ab".repeat(32)]),
        1,
        "no entry with leaf hash",
    );
    assert_exit(
        &verify("inclusion", &server, &["--index", "700"]),
        2,
        "has 700 entries",
    );

    assert_exit(
        &verify("consistency", &server, &["--state", &state_arg]),
        0,
        "extends the tree of size 700",
    );
    let old = old_note.display().to_string();
    assert_exit(
        &verify("consistency", &server, &["--old", &old]),
        0,
        "extends the tree of size 300",
    );
    assert_exit(
        &verify("consistency", &server, &["--old", "/nonexistent"]),
        2,
        "cannot read",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_by_another_key_is_a_security_finding() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/keys"],
    );
    append(&server, 0..10).await;
    let impostor = SigningKey::from_seed("log.example.test/keys", [9; 32]).unwrap();
    let run = run_verifier(&[
        "checkpoint",
        "--log",
        &server.url(),
        "--vkey",
        &impostor.verifier_key().to_string(),
    ]);
    assert_exit(&run, 1, "does not verify under");
    let unreachable = run_verifier(&[
        "checkpoint",
        "--log",
        "http://127.0.0.1:1",
        "--vkey",
        &vkey(&server),
    ]);
    assert_exit(&unreachable, 2, "could not check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_log_is_a_security_finding() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let live = dir.path().join("live");
    let server = LogServer::start(&live, &["--origin", "log.example.test/rollback"]);
    append(&server, 0..100).await;
    assert!(server.interrupt().success());
    copy_dir(&live, &dir.path().join("snapshot"));

    let server = LogServer::start(&live, &[]);
    append(&server, 100..150).await;
    assert_exit(
        &verify("checkpoint", &server, &["--state", &state_arg]),
        0,
        "size 150",
    );
    drop(server);

    let rolled_back = LogServer::start(&dir.path().join("snapshot"), &[]);
    let run = verify("checkpoint", &rolled_back, &["--state", &state_arg]);
    assert_exit(&run, 1, "rollback");
    assert!(
        run.stderr.contains("trusted checkpoint"),
        "evidence is printed: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_is_a_security_finding() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let live = dir.path().join("live");
    let server = LogServer::start(&live, &["--origin", "log.example.test/fork"]);
    append(&server, 0..100).await;
    assert!(server.interrupt().success());
    let fork_dir = dir.path().join("fork");
    copy_dir(&live, &fork_dir);

    let honest = LogServer::start(&live, &[]);
    append(&honest, 100..140).await;
    let honest_note = dir.path().join("honest.note");
    std::fs::write(&honest_note, checkpoint_note(&honest).await).unwrap();
    assert_exit(
        &verify("checkpoint", &honest, &["--state", &state_arg]),
        0,
        "size 140",
    );
    drop(honest);

    let fork = LogServer::start(&fork_dir, &[]);
    assert_eq!(
        append(&fork, 5000..5040).await,
        140,
        "same size, other entries"
    );
    let run = verify("checkpoint", &fork, &["--state", &state_arg]);
    assert_exit(&run, 1, "fork: two signed checkpoints for size 140");
    let run = verify(
        "consistency",
        &fork,
        &["--old", &honest_note.display().to_string()],
    );
    assert_exit(&run, 1, "fork");

    append(&fork, 6000..6010).await;
    let run = verify("checkpoint", &fork, &["--state", &state_arg]);
    assert_exit(&run, 1, "does not extend the signed tree of size 140");

    let flow = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events/eu-to-eu-flow.json"
    );
    let key_file = fork_dir.join("submitter.key").display().to_string();
    let run = verify(
        "submit",
        &fork,
        &["--key", &key_file, "--state", &state_arg, flow],
    );
    assert_exit(&run, 1, "does not extend the signed tree of size 140");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_file_is_proven_to_be_in_the_log_under_its_submitter() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/events"],
    );
    append(&server, 0..20).await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/events");
    let flow = format!("{examples}/eu-to-eu-flow.json");
    let key_file = server.data_dir.join("submitter.key").display().to_string();
    let submitted = run_verifier(&[
        "submit",
        "--log",
        &server.url(),
        "--vkey",
        &vkey(&server),
        "--key",
        &key_file,
        &flow,
    ]);
    assert_exit(&submitted, 0, "ok");
    let operator = server.submitter_key().key_id();

    let run = verify(
        "inclusion",
        &server,
        &["--event", &flow, "--submitter", &operator],
    );
    assert_exit(&run, 0, "verified: entry 20 ");
    let other = SigningKey::from_seed("someone-else", [3; 32])
        .unwrap()
        .key_id();
    let run = verify(
        "inclusion",
        &server,
        &["--event", &flow, "--submitter", &other],
    );
    assert_exit(&run, 1, "no entry with the event");
    let never_sent = format!("{examples}/eu-to-us-flow.json");
    let run = verify(
        "inclusion",
        &server,
        &["--event", &never_sent, "--submitter", &operator],
    );
    assert_exit(&run, 1, "no entry with the event");
    let run = verify("inclusion", &server, &["--event", &flow]);
    assert_exit(&run, 2, "--submitter");
}

/// A static file server (Python's `http.server`) over `dir`, on an
/// ephemeral loopback port, killed when dropped.
struct StaticMirror(std::process::Child, String);

impl StaticMirror {
    fn serve(dir: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 is needed to serve a static mirror");
        let stdout = child.stdout.take().unwrap();
        let line = std::io::BufReader::new(stdout)
            .lines()
            .next()
            .unwrap()
            .unwrap();
        let port = line
            .split("port ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        Self(child, format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for StaticMirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_work_against_a_static_mirror_of_the_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/mirror"],
    );
    let size = append(&server, 0..600).await;
    let mirror = dir.path().join("mirror");
    let copy = |path: &str| {
        let response = tlog_e2e::http_get(server.addr, &format!("/{path}"));
        assert_eq!(response.status, 200, "{path}");
        let file = mirror.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, response.body).unwrap();
    };
    copy("checkpoint");
    verifier::tiles::TileId::all_for_size(size)
        .iter()
        .for_each(|t| copy(&t.path()));
    let submitters = server.data_dir.join("submitters").display().to_string();
    let log_key = vkey(&server);
    drop(server);

    let static_mirror = StaticMirror::serve(&mirror);
    let state = dir.path().join("state").display().to_string();
    let on_mirror = |command: &str, extra: &[&str]| {
        let mut args = vec![command, "--log", &static_mirror.1, "--vkey", &log_key];
        args.extend_from_slice(extra);
        run_verifier(&args)
    };
    assert_exit(
        &on_mirror("checkpoint", &["--state", &state]),
        0,
        "size 600",
    );
    assert_exit(
        &on_mirror("inclusion", &["--index", "300"]),
        0,
        "verified: entry 300 ",
    );
    let audit = on_mirror("audit", &["--state", &state, "--submitters", &submitters]);
    assert_exit(&audit, 0, "600");

    std::fs::write(mirror.join("tile/entries/001"), vec![0u8; 10]).unwrap();
    let fresh_state = dir.path().join("fresh").display().to_string();
    let tampered = on_mirror(
        "audit",
        &["--state", &fresh_state, "--submitters", &submitters],
    );
    assert_eq!(
        tampered.code,
        Some(1),
        "a damaged mirror is caught: {}",
        tampered.stderr
    );
}
