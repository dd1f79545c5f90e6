//! End-to-end: `verifier monitor` processes gossiping over gRPC catch a log
//! that shows two histories, write evidence that `verifier check-evidence`
//! proves, stay quiet on an honest log, and push back on a peer that sends
//! garbage.
//!
//! Peers are given in start order, since a monitor's address is known only
//! once it listens: monitor 1 lists no peer, monitor 2 lists 1, monitor 3
//! lists 1 and 2. `Exchange` carries checkpoints both ways, so every pair
//! still gossips: monitor 1 learns only from being called (the server
//! side), monitors 2 and 3 from the answers (the client side).
//!
//! Nothing sleeps to synchronise: every wait is for something the
//! processes show (a line on stderr, a file, an exit), with a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tlog_e2e::{append_mixed, http_get, run_verifier, Daemon, LogServer};
use tonic::Code;
use verifier::proto::gossip_client::GossipClient;
use verifier::proto::ExchangeRequest;

const ORIGIN: &str = "log.example.test/gossip";
const DEADLINE: Duration = Duration::from_secs(30);
/// The pause between two looks at a condition that is being waited for.
const POLL: Duration = Duration::from_millis(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a Tokio runtime")
}

/// Appends events `numbers` to `server`, signed by its operator key.
fn append(server: &LogServer, numbers: std::ops::Range<u64>) {
    runtime().block_on(append_mixed(server, &server.submitter_key(), numbers));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Checks `condition` until it holds, failing with `what` and `context()`
/// after [`DEADLINE`].
fn wait_for(what: &str, mut condition: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(POLL);
    }
}

/// A running monitor and its directories.
struct Monitor {
    daemon: Daemon,
    state: PathBuf,
}

impl Monitor {
    /// Starts a monitor of `log` that polls and gossips every
    /// `interval_ms`, with `--on-alert` (recording each evidence file in
    /// `alerts.txt`) or without.
    fn start(
        state: PathBuf,
        log: &LogServer,
        peers: &[&Monitor],
        interval_ms: u64,
        on_alert: bool,
    ) -> Self {
        let mut args = vec![
            "monitor".to_owned(),
            "--log".into(),
            log.url(),
            "--vkey".into(),
            vkey(log),
            "--state".into(),
            state.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--interval-ms".into(),
            interval_ms.to_string(),
        ];
        for peer in peers {
            args.extend(["--peer".into(), peer.daemon.url()]);
        }
        if on_alert {
            let alerts = state.join("alerts.txt");
            args.extend([
                "--on-alert".into(),
                format!(
                    "test \"$1\" = \"$TLOG_EVIDENCE\" && echo \"$1\" >> '{}'",
                    alerts.display()
                ),
            ]);
        }
        Self {
            daemon: Daemon::start("verifier", &args),
            state,
        }
    }

    fn evidence(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.state.join("evidence")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "evidence"))
            .collect();
        files.sort();
        files
    }

    /// The evidence files the `--on-alert` command was run for.
    fn alerted(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(self.state.join("alerts.txt")).unwrap_or_default();
        let mut files: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
        files.sort();
        files
    }

    /// The number of the last `gossip round <n> done` line.
    fn rounds(&self) -> u64 {
        self.daemon
            .stderr()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("gossip round ")? + "gossip round ".len()..];
                let (number, rest) = rest.split_once(' ')?;
                rest.starts_with("done").then(|| number.parse().ok())?
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether it has verified a checkpoint of exactly `size`.
    fn verified(&self, size: u64) -> bool {
        let needle = format!("verified checkpoint of size {size}");
        self.daemon.stderr().lines().any(|line| {
            line.find(&needle).is_some_and(|at| {
                !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
    }

    /// Waits until its stderr, read in the background, has a line with
    /// `needle`.
    fn wait_for_line(&self, needle: &str) {
        wait_for(
            &format!("{needle:?} on stderr"),
            || self.daemon.stderr().contains(needle),
            || self.daemon.stderr(),
        );
    }

    /// Waits for it to exit by itself, until [`DEADLINE`].
    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.daemon.try_exit_status() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the monitor to exit\n{}",
                self.daemon.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    fn is_running(&mut self) -> bool {
        self.daemon.try_exit_status().is_none()
    }
}

fn vkey(server: &LogServer) -> String {
    server.data_dir.join("log.vkey").display().to_string()
}

fn stderr_of(monitors: &[Monitor]) -> String {
    monitors
        .iter()
        .enumerate()
        .map(|(i, m)| format!("--- monitor {} ---\n{}", i + 1, m.daemon.stderr()))
        .collect()
}

fn assert_proves_misbehaviour(file: &Path, log: &LogServer) {
    let run = run_verifier(&[
        "check-evidence".to_owned(),
        file.display().to_string(),
        "--vkey".into(),
        vkey(log),
    ]);
    assert_eq!(run.code, Some(1), "{}: {run:?}", file.display());
    assert!(run.stderr.contains("PROVES MISBEHAVIOUR"), "{run:?}");
}

#[test]
fn monitors_gossiping_catch_a_forked_log() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("log-a"), dir.path().join("log-b"));
    let original = LogServer::start(&a_dir, &["--origin", ORIGIN]);
    append(&original, 0..4);
    assert!(original.interrupt().success());
    copy_dir(&a_dir, &b_dir);

    // One key, two histories: both reach size 8 with different roots, then
    // A moves on to 11 while B stays at 8.
    let a = LogServer::start(&a_dir, &["--origin", ORIGIN]);
    let b = LogServer::start(&b_dir, &["--origin", ORIGIN]);
    append(&a, 100..104);
    append(&b, 200..204);
    append(&a, 104..107);

    let m1 = Monitor::start(dir.path().join("m1"), &b, &[], 200, true);
    let m2 = Monitor::start(dir.path().join("m2"), &a, &[&m1], 200, true);
    let m3 = Monitor::start(dir.path().join("m3"), &a, &[&m1, &m2], 200, true);
    let mut monitors = [m1, m2, m3];
    let [m1, m2, m3] = &monitors;
    let all = || stderr_of(&monitors);

    // Monitors 2 and 3 hold the larger tree: B's checkpoint of size 8 fails
    // the proof built from A's tiles. Monitor 1 cannot tell yet (B serves
    // nothing as large as A's 11) and must not cry wolf: it remembers.
    wait_for(
        "monitors 2 and 3 to write evidence",
        || !m2.evidence().is_empty() && !m3.evidence().is_empty(),
        all,
    );
    // Within one gossip round: the first round that reached a peer holding
    // the other history (a round may be in progress when it is read).
    for monitor in [m2, m3] {
        assert!(
            monitor.rounds() <= 2,
            "evidence took more than one round\n{}",
            all()
        );
    }
    wait_for(
        "monitor 1 to hold A's checkpoint for later",
        || m1.daemon.stderr().contains("ahead of what the log serves"),
        all,
    );
    assert!(m1.evidence().is_empty(), "{}", all());

    // Once B also serves size 11, monitor 1 compares and catches the fork.
    let before = m1.rounds();
    append(&b, 207..210);
    wait_for(
        "monitor 1 to write evidence",
        || !m1.evidence().is_empty(),
        all,
    );
    assert!(
        m1.rounds() <= before + 2,
        "monitor 1 took more than one round after its log grew\n{}",
        all()
    );

    for monitor in &mut monitors {
        let files = monitor.evidence();
        for file in &files {
            assert_proves_misbehaviour(file, &a);
        }
        wait_for(
            "--on-alert to run for every evidence file",
            || monitor.alerted() == monitor.evidence(),
            || monitor.daemon.stderr(),
        );
        monitor.wait_for_line("SPLIT VIEW");
        assert!(monitor.is_running(), "--on-alert keeps it monitoring");
    }

    // Without --on-alert, a monitor exits 1 once it has written evidence.
    let m4_state = dir.path().join("m4");
    let mut m4 = Monitor::start(m4_state.clone(), &a, &[&monitors[0]], 200, false);
    let status = m4.wait_for_exit();
    assert_eq!(status.code(), Some(1), "{}", m4.daemon.stderr());
    m4.wait_for_line("SECURITY FINDING");
    let files = m4.evidence();
    assert_eq!(files.len(), 1, "{}", m4.daemon.stderr());
    assert_proves_misbehaviour(&files[0], &a);

    // Evidence outlives the process: restarted without --on-alert, the
    // monitor refuses to run until the files are dealt with.
    let restart = run_verifier(&[
        "monitor".to_owned(),
        "--log".into(),
        a.url(),
        "--vkey".into(),
        vkey(&a),
        "--state".into(),
        m4_state.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]);
    assert_eq!(restart.code, Some(1), "{restart:?}");
    assert!(
        restart.stderr.contains("unresolved evidence"),
        "{restart:?}"
    );
    assert!(
        restart.stderr.contains(&files[0].display().to_string()),
        "{restart:?}"
    );
}

#[test]
fn monitors_of_an_honest_log_raise_no_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(&dir.path().join("log"), &["--origin", ORIGIN]);
    append(&log, 0..5);

    // Monitor 1 polls five times slower, so its peers' checkpoints are
    // usually ahead of its own view: the case where an honest log merely
    // moved on, which it must check by refreshing, not report.
    let m1 = Monitor::start(dir.path().join("m1"), &log, &[], 1000, false);
    let m2 = Monitor::start(dir.path().join("m2"), &log, &[&m1], 200, false);
    let m3 = Monitor::start(dir.path().join("m3"), &log, &[&m1, &m2], 200, false);
    let mut monitors = [m1, m2, m3];

    // The log grows while they poll and gossip, so they see it at different
    // sizes and peers' checkpoints are often ahead of their own view.
    let mut size = 5;
    for batch in [3, 1, 7, 2, 250, 4] {
        append(&log, size..size + batch);
        size += batch;
        let last_round = monitors[2].rounds();
        wait_for(
            "monitor 3 to gossip after the append",
            || monitors[2].rounds() > last_round,
            || stderr_of(&monitors),
        );
    }

    for monitor in &monitors {
        wait_for(
            &format!("every monitor to verify size {size}"),
            || monitor.verified(size),
            || stderr_of(&monitors),
        );
    }
    let after: Vec<u64> = monitors.iter().map(Monitor::rounds).collect();
    for (monitor, after) in monitors.iter().zip(after) {
        wait_for(
            "two more gossip rounds",
            || monitor.rounds() >= after + 2,
            || stderr_of(&monitors),
        );
    }
    let everything = stderr_of(&monitors);
    for monitor in &mut monitors {
        assert!(monitor.evidence().is_empty(), "{everything}");
        assert!(monitor.is_running(), "{everything}");
    }
    assert!(!everything.contains("SPLIT VIEW"), "{everything}");
    assert!(!everything.contains("WARN"), "{everything}");
}

#[test]
fn a_peer_sending_garbage_is_refused_then_pushed_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(&dir.path().join("log"), &["--origin", ORIGIN]);
    append(&log, 0..3);
    let note = String::from_utf8(http_get(log.addr, "/checkpoint").body).unwrap();
    let mut monitor = Monitor::start(dir.path().join("m"), &log, &[], 200, false);

    runtime().block_on(async {
        let peer = GossipClient::connect(monitor.daemon.url()).await.unwrap();
        let exchange = |checkpoints: Vec<String>| {
            let mut peer = peer.clone();
            async move { peer.exchange(ExchangeRequest { checkpoints }).await }
        };

        // A good checkpoint is checked and answered with the monitor's own.
        let answer = exchange(vec![note.clone()]).await.unwrap().into_inner();
        assert_eq!(answer.checkpoints, std::slice::from_ref(&note));

        // Checkpoints of logs it does not follow are ignored, not bad.
        let other = note.replacen(ORIGIN, "elsewhere.example/log", 1);
        assert!(exchange(vec![other]).await.is_ok());

        // Over the message size: refused by gRPC before it is read.
        let huge = exchange(vec!["x".repeat(70 * 1024)]).await.unwrap_err();
        assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
        assert!(huge.message().contains("65536"), "{huge:?}");

        // Bad messages, five in all: over the bounds, or not verifying.
        let many = exchange(vec![note.clone(); 17]).await.unwrap_err();
        assert_eq!(many.code(), Code::InvalidArgument, "{many:?}");
        assert!(
            many.message().starts_with("checkpoints: 17 notes"),
            "{many:?}"
        );
        let long = exchange(vec!["y".repeat(20_000)]).await.unwrap_err();
        assert_eq!(long.code(), Code::InvalidArgument, "{long:?}");
        assert!(long.message().starts_with("checkpoints[0]: 20000 bytes"));
        let forged = note.replacen("\n3\n", "\n4\n", 1);
        assert_ne!(forged, note);
        for _ in 0..3 {
            let answer = exchange(vec![forged.clone()]).await.unwrap().into_inner();
            assert_eq!(
                answer.checkpoints,
                std::slice::from_ref(&note),
                "still answered"
            );
        }

        // Now even a good message is pushed back, for the cool-down.
        let refused = exchange(vec![note.clone()]).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    });

    monitor.wait_for_line("dropped a checkpoint");
    monitor.wait_for_line("refusing it for");
    assert!(monitor.evidence().is_empty(), "{}", monitor.daemon.stderr());
    assert!(monitor.is_running(), "{}", monitor.daemon.stderr());
}
