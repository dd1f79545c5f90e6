//! End-to-end: state that security rests on, under attack (issue 12, rows
//! 3, 4, 8 and 13 of its table), with real processes on loopback.
//!
//! - Row 3: a second `verifier witness` on the same `--state` refuses to
//!   start; two roots for one size sent at once to one witness get exactly
//!   one cosignature.
//! - Row 4: 30 concurrent `verifier checkpoint --state` runs against a log
//!   being appended to each exit 0 or a clean 2, the state file always
//!   verifies, and the trusted size never goes down.
//! - Row 8: a peer flooding a monitor with copies of a genuine old
//!   checkpoint is pushed back past the gossip rate, and the monitor's log
//!   (behind a counting proxy) is asked for tiles a bounded number of
//!   times, counted, not timed; a peer at another address is answered
//!   throughout.
//! - Row 13: key files are written whole with mode 0600 and never through
//!   a symbolic link; a secret key readable by others is refused, by the
//!   verifier (exit 2) and by the log server (which does not start), with
//!   the `chmod 600` that fixes it.
//!
//! Nothing sleeps to synchronise: waits are for what the processes show,
//! with deadlines.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use tlog_e2e::{
    append_mixed, binary, http_get, log_server_refuses, run_verifier, Daemon, LogServer, Run,
};
use tonic::Code;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::keys::SigningKey;
use verifier::merkle::leaf_hash;
use verifier::proto::gossip_client::GossipClient;
use verifier::proto::ExchangeRequest;
use verifier::witness_protocol::AddCheckpointRequest;

const DEADLINE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a Tokio runtime")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `verifier` with `args`, expecting it to exit by itself within
/// [`DEADLINE`] (a server that wrongly starts is killed and fails the test).
fn run_to_exit(args: &[&str]) -> Run {
    let mut child = Command::new(binary("verifier"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting verifier");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling verifier") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("verifier {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Writes a key with `verifier keygen`, returning what it printed.
fn keygen(name: &str, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["keygen", "--name", name, "--out", path(out)];
    args.extend(extra);
    run_verifier(&args)
}

/// A plain HTTP/1.1 POST, answered with its status.
fn http_post(addr: SocketAddr, target: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connecting for HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

// ---------------------------------------------------------------- row 3

const WITNESSED: &str = "log.example.test/hostile-witnessed";

/// A log key of our own (the witness needs only its verifier key) and a
/// witness key written by `verifier keygen --cosigner`.
struct WitnessSetup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    log_key: SigningKey,
    key_file: String,
    vkey_file: String,
}

impl WitnessSetup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let log_key = SigningKey::generate(WITNESSED).unwrap();
        std::fs::write(dir.join("log.vkey"), log_key.verifier_key().to_string()).unwrap();
        let run = keygen(
            "witness.example.test/w",
            &dir.join("w.key"),
            &["--cosigner"],
        );
        assert_eq!(run.code, Some(0), "{run:?}");
        Self {
            key_file: path(&dir.join("w.key")).to_owned(),
            vkey_file: path(&dir.join("log.vkey")).to_owned(),
            _dir: tmp,
            dir,
            log_key,
        }
    }

    /// `verifier witness` on `state`.
    fn args<'a>(&'a self, state: &'a Path) -> Vec<&'a str> {
        vec![
            "witness",
            "--key",
            &self.key_file,
            "--state",
            path(state),
            "--log",
            &self.vkey_file,
            "--listen",
            "127.0.0.1:0",
        ]
    }

    /// An add-checkpoint body from size 0 for a tree of `size` with a root
    /// made from `salt`, signed with the log's key.
    fn request(&self, size: u64, salt: &str) -> Vec<u8> {
        let note = Checkpoint {
            origin: WITNESSED.into(),
            size,
            root: leaf_hash(salt.as_bytes()),
        }
        .sign(&self.log_key);
        AddCheckpointRequest::new(0, vec![], note)
            .unwrap()
            .to_body()
    }

    /// The checkpoint a witness's state holds.
    fn cosigned(&self, state: &Path) -> SignedCheckpoint {
        let log_dir = std::fs::read_dir(state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .expect("a per-log state directory");
        let note = std::fs::read(log_dir.join("cosigned")).expect("a cosigned checkpoint");
        SignedCheckpoint::verify(&note, &self.log_key.verifier_key()).expect("it verifies")
    }
}

#[test]
fn a_second_witness_on_one_state_refuses_to_start() {
    let setup = WitnessSetup::new();
    let state = setup.dir.join("state");
    let first = Daemon::start("verifier", &setup.args(&state));

    let second = run_to_exit(&setup.args(&state));
    assert_eq!(second.code, Some(2), "{second:?}");
    let line = second.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.contains("is in use by another `verifier witness`")
            && line.contains("is locked by another process"),
        "{line}"
    );
    assert!(second.stdout.is_empty(), "it never listened: {second:?}");

    // The first one still cosigns; once it is gone, the lock goes with it.
    assert_eq!(
        http_post(first.addr, "/add-checkpoint", &setup.request(3, "a")),
        200
    );
    first.kill();
    let restarted = Daemon::start("verifier", &setup.args(&state));
    assert_eq!(
        http_post(restarted.addr, "/add-checkpoint", &setup.request(3, "b")),
        409,
        "the restarted witness remembers what it cosigned"
    );
    assert_eq!(setup.cosigned(&state).checkpoint.root, leaf_hash(b"a"));
}

#[test]
fn two_roots_for_one_size_sent_at_once_get_one_cosignature() {
    let setup = WitnessSetup::new();
    for round in 0..8 {
        let state = setup.dir.join(format!("state-{round}"));
        let witness = Daemon::start("verifier", &setup.args(&state));
        let bodies = [setup.request(5, "left"), setup.request(5, "right")];
        let barrier = Arc::new(Barrier::new(2));
        let statuses: Vec<(u16, &str)> = std::thread::scope(|scope| {
            let sent: Vec<_> = bodies
                .iter()
                .zip(["left", "right"])
                .map(|(body, salt)| {
                    let barrier = Arc::clone(&barrier);
                    let addr = witness.addr;
                    scope.spawn(move || {
                        barrier.wait();
                        (http_post(addr, "/add-checkpoint", body), salt)
                    })
                })
                .collect();
            sent.into_iter().map(|s| s.join().unwrap()).collect()
        });
        let cosigned: Vec<&str> = statuses
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, salt)| *salt)
            .collect();
        assert_eq!(cosigned.len(), 1, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().any(|(status, _)| *status == 409),
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            setup.cosigned(&state).checkpoint.root,
            leaf_hash(cosigned[0].as_bytes()),
            "round {round}: the state holds what was cosigned"
        );
    }
}

// ---------------------------------------------------------------- row 4

const RACED: &str = "log.example.test/hostile-race";

/// The trusted checkpoint file under `state`, once a run created it.
fn trusted_file(state: &Path) -> Option<PathBuf> {
    std::fs::read_dir(state)
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .map(|dir| dir.join("checkpoint"))
        .filter(|file| file.exists())
}

#[test]
fn concurrent_checkpoint_runs_never_tear_or_roll_back_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(&dir.path().join("log"), &["--origin", RACED]);
    let key = log.log_key();
    let vkey = log.data_dir.join("log.vkey");
    let state = dir.path().join("state");
    runtime().block_on(append_mixed(&log, &log.submitter_key(), 0..5));

    let done = AtomicBool::new(false);
    let observed: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let runs: Vec<Run> = std::thread::scope(|scope| {
        // The log keeps growing while the runs race.
        scope.spawn(|| {
            let rt = runtime();
            let mut next = 5;
            while !done.load(Ordering::Relaxed) {
                rt.block_on(append_mixed(&log, &log.submitter_key(), next..next + 3));
                next += 3;
            }
        });
        // Whoever reads the state at any moment finds a whole, verified
        // checkpoint, never smaller than the one read before.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                // Paced, so the readings leave the CPUs to the runs.
                std::thread::sleep(Duration::from_millis(1));
                let Some(file) = trusted_file(&state) else {
                    continue;
                };
                let note = std::fs::read(&file).expect("the state file is never missing");
                let signed = SignedCheckpoint::verify(&note, &key)
                    .unwrap_or_else(|e| panic!("a torn or damaged state file: {e}"));
                observed.lock().unwrap().push(signed.checkpoint.size);
            }
        });
        let children: Vec<_> = (0..30)
            .map(|_| {
                Command::new(binary("verifier"))
                    .args(["checkpoint", "--log", &log.url(), "--vkey", path(&vkey)])
                    .args(["--state", path(&state)])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("starting verifier")
            })
            .collect();
        let runs = children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().expect("waiting for verifier");
                Run {
                    code: output.status.code(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                }
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        runs
    });

    let mut accepted = Vec::new();
    for run in &runs {
        match run.code {
            Some(0) => {
                let size: u64 = run
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("size "))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("a size line: {run:?}"));
                accepted.push(size);
            }
            Some(2) => assert!(
                run.stderr.contains("state is locked") && run.stderr.trim().lines().count() == 1,
                "a clean exit 2 says the state is locked: {run:?}"
            ),
            _ => panic!("every run exits 0 or 2: {run:?}"),
        }
    }
    assert!(!accepted.is_empty(), "{runs:?}");
    let observed = observed.into_inner().unwrap();
    assert!(
        observed.windows(2).all(|w| w[0] <= w[1]),
        "the trusted size went down: {observed:?}"
    );
    let file = trusted_file(&state).unwrap();
    let last = SignedCheckpoint::verify(&std::fs::read(&file).unwrap(), &key).unwrap();
    assert_eq!(
        Some(last.checkpoint.size),
        accepted.iter().copied().max(),
        "the state holds the largest checkpoint any run accepted"
    );
    assert_eq!(
        names(file.parent().unwrap()),
        ["checkpoint", "lock"],
        "no temporary file is left behind"
    );
}

#[test]
fn a_state_another_process_holds_is_a_clean_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(&dir.path().join("log"), &["--origin", RACED]);
    runtime().block_on(append_mixed(&log, &log.submitter_key(), 0..3));
    let state = dir.path().join("state");
    let vkey = log.data_dir.join("log.vkey");
    let args = [
        "checkpoint",
        "--log",
        &log.url(),
        "--vkey",
        path(&vkey),
        "--state",
        path(&state),
    ];
    assert_eq!(run_to_exit(&args).code, Some(0));
    let lock = trusted_file(&state).unwrap().with_file_name("lock");
    let held = verifier::files::try_lock(&lock).expect("the test holds the state's lock");
    let run = run_to_exit(&args);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("state is locked"), "{run:?}");
    drop(held);
    assert_eq!(run_to_exit(&args).code, Some(0));
}

// ---------------------------------------------------------------- row 8

const GOSSIPED: &str = "log.example.test/hostile-gossip";

/// An HTTP/1.1 proxy in front of `upstream` that counts the tile requests
/// it forwards. Each request gets a connection of its own upstream
/// (`Connection: close`), so requests are counted one by one.
fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tiles = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tiles);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let counted = Arc::clone(&counted);
            std::thread::spawn(move || forward(client, upstream, &counted));
        }
    });
    (addr, tiles)
}

/// Forwards one request (a GET, so no body) and its response.
fn forward(client: TcpStream, upstream: SocketAddr, tiles: &AtomicUsize) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(&line);
        }
    }
    if head
        .split(' ')
        .nth(1)
        .is_some_and(|t| t.starts_with("/tile/"))
    {
        tiles.fetch_add(1, Ordering::SeqCst);
    }
    head.push_str("Connection: close\r\n\r\n");
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut client = client;
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A gRPC channel to `monitor` from 127.0.0.2: another peer address on
/// the same loopback interface.
async fn from_another_address(monitor: &Daemon) -> tonic::transport::Channel {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some("127.0.0.2".parse().unwrap()));
    tonic::transport::Endpoint::from_shared(monitor.url())
        .unwrap()
        .connect_with_connector(connector)
        .await
        .expect("connecting from 127.0.0.2")
}

#[test]
fn a_peer_repeating_an_old_checkpoint_is_throttled_and_never_loads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(&dir.path().join("log"), &["--origin", GOSSIPED]);
    let submitter = log.submitter_key();
    let rt = runtime();
    rt.block_on(append_mixed(&log, &submitter, 0..10));
    let old_note = String::from_utf8(http_get(log.addr, "/checkpoint").body).unwrap();
    rt.block_on(append_mixed(&log, &submitter, 10..20));

    let (proxy, tiles) = counting_proxy(log.addr);
    let (rate, burst) = (2.0, 10);
    let monitor = Daemon::start(
        "verifier",
        &[
            "monitor",
            "--log",
            &format!("http://{proxy}"),
            "--vkey",
            path(&log.data_dir.join("log.vkey")),
            "--state",
            path(&dir.path().join("state")),
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "200",
            "--gossip-rate",
            &rate.to_string(),
            "--gossip-burst",
            &burst.to_string(),
        ],
    );
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + DEADLINE;
        while !monitor.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the monitor's stderr:\n{}",
                monitor.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("verified checkpoint of size 20");
    let before = tiles.load(Ordering::SeqCst);

    let calls = 400;
    let started = Instant::now();
    let (mut answered, mut exhausted) = (0, 0);
    let current = String::from_utf8(http_get(log.addr, "/checkpoint").body).unwrap();
    let mut honest_answers = 0;
    rt.block_on(async {
        let peer = GossipClient::connect(monitor.url()).await.unwrap();
        let honest = GossipClient::new(from_another_address(&monitor).await);
        for call in 0..calls {
            // Another peer, at another address, is served all along.
            if call % 80 == 40 {
                let answer = honest
                    .clone()
                    .exchange(ExchangeRequest {
                        checkpoints: vec![current.clone()],
                    })
                    .await
                    .expect("an honest peer is answered during the flood");
                assert_eq!(
                    answer.into_inner().checkpoints,
                    std::slice::from_ref(&current)
                );
                honest_answers += 1;
            }
            let request = ExchangeRequest {
                checkpoints: vec![old_note.clone(); 16],
            };
            match peer.clone().exchange(request).await {
                Ok(_) => answered += 1,
                Err(status) if status.code() == Code::ResourceExhausted => {
                    assert!(status.message().contains("retry in"), "{status:?}");
                    exhausted += 1;
                }
                Err(status) => panic!("neither answered nor pushed back: {status:?}"),
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let fetched = tiles.load(Ordering::SeqCst) - before;

    assert_eq!(answered + exhausted, calls);
    assert_eq!(honest_answers, 5);
    assert!(answered >= burst, "the burst is answered: {answered}");
    let allowed = f64::from(burst) + rate * elapsed + 1.0;
    assert!(
        f64::from(answered) <= allowed,
        "{answered} answered in {elapsed:.2} s, more than the rate allows ({allowed:.1})"
    );
    assert!(exhausted > 0, "never throttled");
    assert!(
        fetched <= 4,
        "{answered} answered calls of 16 copies each fetched {fetched} tiles from the log; \
         one comparison needs at most a few"
    );
    wait_for("sends gossip faster than allowed");
    let warnings = monitor
        .stderr()
        .matches("sends gossip faster than allowed")
        .count();
    assert!(
        warnings < 5,
        "logged once per episode, not per call: {warnings}"
    );

    // The monitor still follows its log.
    rt.block_on(append_mixed(&log, &submitter, 20..25));
    wait_for("verified checkpoint of size 25");
    assert!(
        !monitor.stderr().contains("SPLIT VIEW"),
        "{}",
        monitor.stderr()
    );
}

// ---------------------------------------------------------------- row 13

#[test]
fn key_files_are_written_private_whole_and_never_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("reviewer.key");
    let run = keygen("reviewer.example", &key, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(names(&keys), ["reviewer.key"], "no temporary file is left");
    let written = std::fs::read(&key).unwrap();

    let again = keygen("reviewer.example", &key, &[]);
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(std::fs::read(&key).unwrap(), written, "never overwritten");

    // A link planted where the key goes is neither followed nor replaced.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = keys.join("planted.key");
    symlink(&victim, &planted).unwrap();
    let dangling = keys.join("dangling.key");
    let nowhere = tmp.path().join("nowhere");
    symlink(&nowhere, &dangling).unwrap();
    for link in [&planted, &dangling] {
        let run = keygen("reviewer.example", link, &[]);
        assert_eq!(run.code, Some(2), "{run:?}");
        assert!(std::fs::symlink_metadata(link).unwrap().is_symlink());
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!nowhere.exists(), "nothing was written through the link");
    assert_eq!(
        names(&keys),
        ["dangling.key", "planted.key", "reviewer.key"]
    );
}

#[test]
fn a_secret_key_readable_by_others_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("reviewer.key");
    assert_eq!(keygen("reviewer.example", &key, &[]).code, Some(0));
    let release = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events/release-4.3.1.json"
    );
    let attest = || run_to_exit(&["attest", "--key", path(&key), release]);
    assert_eq!(attest().code, Some(0), "a private key is used");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fix = format!("chmod 600 {}", key.display());
    let run = attest();
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains(&fix), "{run:?}");
    assert!(run.stdout.is_empty(), "nothing was signed: {run:?}");

    // A witness with an exposed key does not start.
    let vkey = SigningKey::generate(WITNESSED).unwrap().verifier_key();
    let state = tmp.path().join("state");
    let run = run_to_exit(&[
        "witness",
        "--key",
        path(&key),
        "--state",
        path(&state),
        "--log",
        &vkey.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains(&fix), "{run:?}");

    // Nor does a log server whose log.key others may read.
    let data = tmp.path().join("log");
    let first = LogServer::start(&data, &["--origin", "log.example.test/hostile-keys"]);
    assert!(first.interrupt().success());
    for secret in ["log.key", "submitter.key"] {
        assert_eq!(mode(&data.join(secret)), 0o600, "{secret}");
    }
    assert!(
        names(&data).iter().all(|name| !name.ends_with(".tmp")),
        "no temporary file is left: {:?}",
        names(&data)
    );
    let log_key = data.join("log.key");
    std::fs::set_permissions(&log_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (status, stderr) = log_server_refuses(&[
        "serve",
        "--data-dir",
        path(&data),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", log_key.display())),
        "{stderr}"
    );
}
