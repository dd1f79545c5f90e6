//! The log server under attack, as issue 12's table tried it: connection
//! floods, silent and slow-header connections, non-canonical events, and a
//! forged-signature flood under a public key id. Each test runs a real
//! `log-server` on loopback and checks that honest clients keep being
//! served and that nothing is stored that should not be.

use prost::Message as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tlog_e2e::{data_flow, sign_bytes, Daemon, LogServer};
use tonic::transport::Channel;
use verifier::event::sign_event;
use verifier::keys::SigningKey;
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    append_result, event::Kind, AppendBatchRequest, AppendRequest, CodeRelease, Event,
    GetCheckpointRequest,
};

/// One HTTP/1.1 keep-alive connection that sends GETs and reads answers
/// by their `Content-Length`.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// The status of `GET path`, the body read and discarded.
    fn get(&mut self, path: &str) -> u16 {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: log\r\n\r\n"
        )
        .expect("sending");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status in {status_line:?}"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("a header line");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a length");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("the body");
        status
    }

    /// Whether the server has closed the connection, waiting up to
    /// `within` for it to.
    fn closed_within(&mut self, within: Duration) -> bool {
        closed_within(self.reader.get_mut(), within)
    }
}

/// Whether the peer closed `stream` (EOF or reset) within `within`. Bytes
/// the server sends first (a 408) are read past.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn floods_of_connections_are_capped_and_silent_or_slow_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let server = Daemon::start(
        "log-server",
        &[
            "serve",
            "--data-dir",
            &data_dir,
            "--listen",
            "127.0.0.1:0",
            "--origin",
            "log.example.test/floods",
            "--max-connections",
            "40",
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "4s",
        ],
    );
    let addr = server.addr;
    let mut honest = KeepAlive::connect(addr);
    assert_eq!(honest.get("/checkpoint"), 200);

    // Ten clients that send a header a byte at a time, for longer than
    // the header timeout allows.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(b"GET /checkpoint HTTP/1.1\r\n").unwrap();
                let started = Instant::now();
                for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                    if stream.write_all(&[*byte]).is_err() {
                        return started.elapsed();
                    }
                    if closed_within(&mut stream, Duration::from_millis(200)) {
                        return started.elapsed();
                    }
                }
                panic!("a slow-header connection was still open after 10 s");
            })
        })
        .collect();
    // Sixty clients that connect and say nothing: more than the cap holds.
    let mut silent: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(addr).expect("the kernel accepts the connection"))
        .collect();

    // While they hold their connections, the honest one is served.
    for _ in 0..3 {
        assert_eq!(honest.get("/checkpoint"), 200);
    }

    for elapsed in slow.into_iter().map(|t| t.join().unwrap()) {
        assert!(
            elapsed < Duration::from_secs(5),
            "a slow-header connection was closed only after {elapsed:?}"
        );
    }
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(5)),
            "a silent connection was not closed within its header timeout"
        );
    }
    // New clients are served again, and the refusals are counted in the
    // server's log once a connection is accepted again.
    assert_eq!(tlog_e2e::http_get(addr, "/checkpoint").status, 200);
    let refused = wait_for_refusal_count(&server);
    assert!(
        refused >= 10,
        "at least the 60 + 10 + 1 - 40 connections over the cap were refused, \
         less any freed meanwhile; counted {refused}"
    );

    // The honest connection, once idle for longer than the idle timeout,
    // is closed.
    assert_eq!(honest.get("/checkpoint"), 200);
    assert!(
        honest.closed_within(Duration::from_secs(10)),
        "an idle keep-alive connection is closed"
    );
}

/// The highest `refused=N` the server logged, waiting up to 10 s for the
/// report of refusals that follows the next accepted connection.
fn wait_for_refusal_count(server: &Daemon) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stderr = server.stderr();
        if stderr.contains("connections refused at the cap") || Instant::now() > deadline {
            return refused_count(&stderr);
        }
        std::thread::yield_now();
    }
}

/// The highest `refused=N` in the server's log.
fn refused_count(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains("refused="))
        .filter_map(|l| {
            let at = l.find("refused=")? + "refused=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

async fn tree_size(client: &mut LogClient<Channel>) -> u64 {
    let note = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn non_canonical_events_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(dir.path(), &["--origin", "log.example.test/canonical"]);
    let key = server.submitter_key();
    let mut client = server.client().await;

    let flow = data_flow(1, "DE");
    let canonical = flow.encode_to_vec();
    let time_only = Event {
        occurred_at: flow.occurred_at,
        kind: None,
    }
    .encode_to_vec();
    let kind_only = Event {
        occurred_at: None,
        kind: flow.kind.clone(),
    }
    .encode_to_vec();
    let release = Event {
        occurred_at: None,
        kind: Some(Kind::CodeRelease(CodeRelease {
            artifact_name: "hidden".into(),
            ..CodeRelease::default()
        })),
    }
    .encode_to_vec();
    let mut hidden = vec![0x7a, 0xe0, 0xd4, 0x03]; // field 15, 60,000 bytes
    hidden.resize(hidden.len() + 60_000, b'x');
    // The event's time with its zero nanoseconds written out explicitly.
    let mut time = flow.occurred_at.unwrap().encode_to_vec();
    time.extend_from_slice(&[0x10, 0]);
    let mut explicit_default = Vec::new();
    prost::encoding::bytes::encode(1, &time, &mut explicit_default);
    explicit_default.extend_from_slice(&kind_only);

    let variants: [(&str, Vec<u8>, &str); 5] = [
        (
            "an unknown field",
            [canonical.clone(), vec![0x7a, 3, b'a', b'b', b'c']].concat(),
            "field 15 is unknown to the schema or a second member of a oneof",
        ),
        (
            "both oneof members",
            [canonical.clone(), release].concat(),
            "field 2 is unknown to the schema or a second member of a oneof",
        ),
        (
            "fields out of order",
            [kind_only, time_only.clone()].concat(),
            "field 1 comes after field 2",
        ),
        (
            "a 60 KB hidden field",
            [canonical.clone(), hidden].concat(),
            "field 15 is unknown",
        ),
        (
            "an explicit default",
            explicit_default,
            "field 1.2 encodes its default value; defaults are left out",
        ),
    ];
    for (what, bytes, reason) in variants {
        let status = client
            .append(AppendRequest {
                event: Some(sign_bytes(&key, bytes)),
            })
            .await
            .expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        assert!(
            status
                .message()
                .starts_with("event: not canonically encoded: ")
                && status.message().contains(reason),
            "{what}: {}",
            status.message()
        );
    }
    assert_eq!(tree_size(&mut client).await, 0, "nothing was stored");

    // The canonical encoding is logged once; the flow cannot come back
    // under another encoding.
    let appended = client
        .append(AppendRequest {
            event: Some(sign_event(&key, &flow)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!appended.duplicate);
    let reencoded = [canonical, vec![0x7a, 0]].concat();
    let status = client
        .append(AppendRequest {
            event: Some(sign_bytes(&key, reencoded)),
        })
        .await
        .expect_err("a second encoding");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(tree_size(&mut client).await, 1);
}

/// Restarts a log with a second submitter on its allowlist; returns the
/// server and the second submitter's key.
fn log_with_two_submitters(dir: &std::path::Path, origin: &str) -> (LogServer, SigningKey) {
    let first = LogServer::start(dir, &["--origin", origin]);
    assert!(first.interrupt().success());
    let other = SigningKey::generate("another-pipeline").unwrap();
    let mut allowlist = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("submitters"))
        .unwrap();
    writeln!(allowlist, "{}", other.verifier_key()).unwrap();
    (LogServer::start(dir, &[]), other)
}

#[tokio::test]
async fn a_forgery_flood_under_a_public_key_id_spends_only_its_connections_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (server, other) = log_with_two_submitters(dir.path(), "log.example.test/forgery");
    let owner = server.submitter_key();
    let forger = SigningKey::generate("forger").unwrap();
    let owner_id = owner.key_id();

    // The forger: one connection, batches of well-formed events claiming
    // the owner's public key id, signed with another key.
    let mut forging = server.client().await;
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let (mut failed, mut refused) = (0u64, 0u64);
        for round in 0..20u64 {
            let events = (0..1_000)
                .map(|i| {
                    let mut signed = sign_event(&forger, &data_flow(round * 1_000 + i, "US"));
                    signed.key_id.clone_from(&owner_id);
                    signed
                })
                .collect();
            let results = match forging.append_batch(AppendBatchRequest { events }).await {
                Ok(answer) => answer.into_inner().results,
                // The connection's budget is spent: nothing was checked.
                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                    assert!(status.metadata().get("retry-after-ms").is_some());
                    refused += 1_000;
                    continue;
                }
                Err(status) => panic!("unexpected answer to a batch: {status:?}"),
            };
            for result in results {
                let Some(append_result::Result::Error(error)) = result.result else {
                    panic!("a forged event was appended");
                };
                match tonic::Code::from_i32(error.code) {
                    tonic::Code::Unauthenticated => failed += 1,
                    tonic::Code::ResourceExhausted => {
                        assert!(error.message.contains("retry after"), "{}", error.message);
                        refused += 1;
                    }
                    other => panic!("unexpected {other:?}: {}", error.message),
                }
            }
        }
        (failed, refused, started.elapsed())
    });

    // Meanwhile the key's owner and another submitter append, each on
    // their own connection.
    let mut latencies = Vec::new();
    let mut clients = [server.client().await, server.client().await];
    for n in 0..40u64 {
        let (client, key) = if n % 2 == 0 {
            (&mut clients[0], &owner)
        } else {
            (&mut clients[1], &other)
        };
        let started = Instant::now();
        let appended = client
            .append(AppendRequest {
                event: Some(sign_event(key, &data_flow(100_000 + n, "DE"))),
            })
            .await;
        latencies.push(started.elapsed());
        assert!(appended.is_ok(), "honest append {n}: {appended:?}");
    }
    let (failed, refused, elapsed) = flood.await.unwrap();

    // The default budget: a burst of 100 failed checks, then 10 a second;
    // the checking threads may each finish the event they started.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let budget = 100 + (elapsed.as_secs_f64() * 10.0).ceil() as u64 + cores;
    assert!(
        failed <= budget,
        "{failed} signatures checked and failed for the forging connection; budget {budget}"
    );
    assert_eq!(failed + refused, 20_000, "every forged event was answered");
    // With 40 samples the p99 is the slowest.
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "honest appends' p99 {slowest:?}"
    );
    let mut client = server.client().await;
    assert_eq!(
        tree_size(&mut client).await,
        40,
        "only honest events stored"
    );
}

/// The witness and the monitor's gossip port run the same bounded accept
/// loop: silent connections and slow headers are closed, and over the
/// cap new connections are refused while a held one is still served.
#[test]
fn the_witness_and_the_monitor_close_silent_and_slow_connections_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/bounded"],
    );
    let vkey = log.data_dir.join("log.vkey").display().to_string();
    let key = dir.path().join("witness.key");
    let keygen = tlog_e2e::run_verifier(&[
        "keygen",
        "--name",
        "witness.example/bounded",
        "--out",
        key.to_str().unwrap(),
        "--cosigner",
    ]);
    assert_eq!(keygen.code, Some(0), "{keygen:?}");
    let state = dir.path().join("state");
    let limits = [
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "8",
        "--header-timeout",
        "1s",
    ];
    let witness_args: Vec<String> = [
        "witness",
        "--key",
        key.to_str().unwrap(),
        "--state",
        state.join("witness").to_str().unwrap(),
        "--log",
        &vkey,
    ]
    .iter()
    .chain(&limits)
    .map(|s| (*s).to_owned())
    .collect();
    std::fs::create_dir_all(state.join("witness")).unwrap();
    let monitor_args: Vec<String> = [
        "monitor",
        "--log",
        &log.url(),
        "--vkey",
        &vkey,
        "--state",
        state.join("monitor").to_str().unwrap(),
    ]
    .iter()
    .chain(&limits)
    .map(|s| (*s).to_owned())
    .collect();
    for (name, args) in [("witness", witness_args), ("monitor", monitor_args)] {
        let daemon = Daemon::start("verifier", &args);
        let mut held = KeepAlive::connect(daemon.addr);
        // The witness answers GET with 405 and the gossip port with 404 or
        // a gRPC error: either way an HTTP answer on a held connection.
        let status = held.get("/");
        assert!((400..500).contains(&status), "{name}: {status}");

        let mut slow = TcpStream::connect(daemon.addr).unwrap();
        slow.write_all(b"POST /add-checkpoint HTTP/1.1\r\nHost: w")
            .unwrap();
        let mut silent: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(daemon.addr).unwrap())
            .collect();
        let status = held.get("/");
        assert!(
            (400..500).contains(&status),
            "{name}: a held connection is served during the flood"
        );
        assert!(
            closed_within(&mut slow, Duration::from_secs(5)),
            "{name}: slow headers are cut at the header timeout"
        );
        for stream in &mut silent {
            assert!(
                closed_within(stream, Duration::from_secs(5)),
                "{name}: a silent connection is closed"
            );
        }
        assert_eq!(tlog_e2e::http_get(daemon.addr, "/").status / 100, 4);
        let refused = wait_for_refusal_count(&daemon);
        assert!(
            refused >= 10,
            "{name}: {refused} refused of 20 over a cap of 8"
        );
    }
}
