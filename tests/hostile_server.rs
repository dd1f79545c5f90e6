//! The verifier against servers that attack it (issue 12, rows 7, 9, 10
//! and 12): a `/checkpoint` full of terminal escapes or 10 MB long, a
//! redirect, bodies that drip or never come, hash tiles altered behind a
//! proxy in front of a real log, and a 20,000-line event file.
//!
//! The hostile servers are written here on loopback sockets: each answers
//! crafted HTTP/1.1 from a thread per connection.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tlog_e2e::{append_mixed, binary, http_get, run_verifier, submitters_file, LogServer, Run};
use verifier::checkpoint::Checkpoint;
use verifier::keys::SigningKey;
use verifier::merkle::Hash;

/// What a hostile server answers to one request.
enum Reply {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// This head, then the body one byte every `every`.
    Drip {
        head: String,
        body: Vec<u8>,
        every: Duration,
    },
    /// The bytes an honest `upstream` answers, changed by `tamper` (given
    /// the path and the body) before they are passed on.
    Proxy {
        upstream: SocketAddr,
        tamper: fn(&str, &mut Vec<u8>),
    },
}

/// A server on a loopback port that answers every request as its handler
/// says, counting the connections it accepts.
struct Hostile {
    addr: SocketAddr,
    contacts: Arc<AtomicUsize>,
}

impl Hostile {
    fn serve(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let contacts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&contacts);
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                counted.fetch_add(1, Ordering::SeqCst);
                let reply = Arc::clone(&reply);
                std::thread::spawn(move || answer(stream, &*reply));
            }
        });
        Self { addr, contacts }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Reads one request's head and answers it. Write errors are the client
/// hanging up, which is what the tests expect of it.
fn answer(mut stream: TcpStream, reply: &dyn Fn(&str) -> Reply) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    match reply(&path) {
        Reply::Raw(bytes) => drop(stream.write_all(&bytes)),
        Reply::Drip { head, body, every } => {
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for b in body {
                std::thread::sleep(every);
                if stream.write_all(&[b]).is_err() {
                    return;
                }
            }
        }
        Reply::Proxy { upstream, tamper } => {
            let honest = http_get(upstream, &path);
            let kind = honest.header("content-type").map(str::to_owned);
            let mut body = honest.body;
            tamper(&path, &mut body);
            let mut out = format!(
                "HTTP/1.1 {} Proxied\r\ncontent-length: {}\r\nconnection: close\r\n",
                honest.status,
                body.len()
            );
            if let Some(kind) = kind {
                out.push_str(&format!("content-type: {kind}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend(body);
            drop(stream.write_all(&bytes));
        }
    }
}

/// An HTTP/1.1 200 answer carrying `body`.
fn ok(body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The key the hostile log claims to sign with, as `--vkey` takes it.
fn log_vkey() -> String {
    SigningKey::from_seed("log.example/hostile", [7; 32])
        .unwrap()
        .verifier_key()
        .to_string()
}

/// `verifier checkpoint` against `server`, with `extra` flags.
fn checkpoint(server: &Hostile, extra: &[&str]) -> Run {
    let (url, vkey) = (server.url(), log_vkey());
    let mut args = vec!["checkpoint", "--log", &url, "--vkey", &vkey];
    args.extend(extra);
    run_verifier(&args)
}

/// Now, once the binaries are built: what the hang checks measure from.
fn start_clock() -> Instant {
    binary("verifier");
    Instant::now()
}

/// Asserts that nothing the verifier printed can steer a terminal.
fn assert_no_terminal_controls(run: &Run) {
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw: Vec<char> = text
            .chars()
            .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)))
            .collect();
        assert!(raw.is_empty(), "{name} holds {raw:?}:\n{text}");
    }
}

fn assert_exit(run: &Run, code: i32, needle: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "{needle:?} not in stderr:\n{}",
        run.stderr
    );
}

#[test]
fn escapes_in_a_served_checkpoint_come_out_escaped() {
    let body = Checkpoint {
        origin: "log.example/hostile".into(),
        size: 5,
        root: Hash([3; 32]),
    }
    .to_body();
    let mut note = String::from_utf8(body).unwrap();
    note.push_str(
        "\x1b]0;pwned\x07\r\x1b[2Kverified checkpoint of log.example/hostile\x1b[32m OK\x1b[0m\n\
         \u{9b}2J\u{202e}kcatta\x7f\n\n\
         \u{2014} log.example/hostile AAAAAAAA\n",
    );
    let server = Hostile::serve(move |_| Reply::Raw(ok(note.as_bytes())));
    let human = checkpoint(&server, &[]);
    assert_exit(&human, 1, "SECURITY FINDING");
    assert_no_terminal_controls(&human);
    assert!(
        human.stderr.contains(
            "\\x1b]0;pwned\\x07\\r\\x1b[2Kverified checkpoint of log.example/hostile\\x1b[32m OK"
        ),
        "{}",
        human.stderr
    );
    assert!(
        human.stderr.contains("\\u{9b}2J\\u{202e}kcatta\\x7f"),
        "{}",
        human.stderr
    );

    let json = checkpoint(&server, &["--json"]);
    assert_eq!(json.code, Some(1), "{}", json.stderr);
    let answer: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let served = answer["evidence"]["served checkpoint"].as_str().unwrap();
    assert!(
        served.contains("\x1b]0;pwned\x07\r\x1b[2Kverified"),
        "--json keeps the exact bytes: {served:?}"
    );
}

#[test]
fn a_ten_megabyte_checkpoint_is_refused_unread() {
    const TEN_MB: usize = 10 << 20;
    let declared = Hostile::serve(|_| Reply::Raw(ok(&vec![b'\x1b'; TEN_MB])));
    let run = checkpoint(&declared, &[]);
    assert_exit(&run, 2, "larger than 65536 bytes");
    assert!(run.stderr.len() < 16 << 10, "{} bytes", run.stderr.len());

    let mut unannounced = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
    unannounced.extend(vec![b'A'; TEN_MB]);
    let undeclared = Hostile::serve(move |_| Reply::Raw(unannounced.clone()));
    let run = checkpoint(&undeclared, &[]);
    assert_exit(&run, 2, "larger than 65536 bytes");
    assert!(run.stderr.len() < 16 << 10, "{} bytes", run.stderr.len());
}

#[test]
fn a_redirect_is_reported_and_not_followed() {
    let target = Hostile::serve(|_| Reply::Raw(ok(b"never asked for")));
    let location = format!("{}/checkpoint", target.url());
    let redirecting = Hostile::serve(move |_| {
        Reply::Raw(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    });
    let run = checkpoint(&redirecting, &[]);
    assert_exit(
        &run,
        2,
        &format!(
            "the log answered a redirect (HTTP 302) to {}/checkpoint, which the verifier does \
             not follow",
            target.url()
        ),
    );
    assert_eq!(target.contacts.load(Ordering::SeqCst), 0);
    assert_eq!(redirecting.contacts.load(Ordering::SeqCst), 1);
}

/// A `/checkpoint` whose head comes at once and whose body never ends.
fn dripping(every: Duration) -> Hostile {
    Hostile::serve(move |_| Reply::Drip {
        head: "HTTP/1.1 200 OK\r\ncontent-length: 4096\r\nconnection: close\r\n\r\n".into(),
        body: vec![b'a'; 4096],
        every,
    })
}

#[test]
fn a_dripping_body_is_abandoned_below_the_minimum_rate() {
    let server = dripping(Duration::from_millis(500));
    let started = start_clock();
    let run = checkpoint(&server, &[]);
    assert_exit(&run, 2, "slower than --min-rate 1024 bytes/s");
    assert!(run.stderr.contains("/checkpoint"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(25), "no hang");
}

#[test]
fn silence_ends_at_the_request_deadline_and_the_command_deadline() {
    let silent = Hostile::serve(|_| Reply::Drip {
        head: String::new(),
        body: vec![b'H'],
        every: Duration::from_secs(120),
    });
    let started = start_clock();
    let run = checkpoint(&silent, &["--request-timeout", "2"]);
    assert_exit(&run, 2, "no complete answer within --request-timeout 2 s");
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");

    let started = start_clock();
    let stalled_body = dripping(Duration::from_secs(120));
    let run = checkpoint(&stalled_body, &["--timeout", "1", "--min-rate", "0"]);
    assert_exit(&run, 2, "the command's --timeout of 1 s ran out");
    assert!(started.elapsed() < Duration::from_secs(20), "no hang");
}

/// Writes a submitters file holding `key`'s verifier key.
/// `verifier audit` of the log behind `proxy`.
fn audit(proxy: &Hostile, log: &LogServer, state: &Path, submitters: &str) -> Run {
    let vkey = log.data_dir.join("log.vkey").display().to_string();
    run_verifier(&[
        "audit",
        "--log",
        &proxy.url(),
        "--vkey",
        &vkey,
        "--state",
        &state.display().to_string(),
        "--submitters",
        submitters,
    ])
}

/// A proxy in front of `log` that passes everything on after `tamper`.
fn proxy(log: &LogServer, tamper: fn(&str, &mut Vec<u8>)) -> Hostile {
    let upstream = log.addr;
    Hostile::serve(move |_| Reply::Proxy { upstream, tamper })
}

fn is_hash_tile(path: &str) -> bool {
    path.starts_with("/tile/") && !path.starts_with("/tile/entries/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_compares_every_hash_tile_with_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/hostile-tiles"],
    );
    let operator = log.submitter_key();
    let submitters = submitters_file(&dir.path().join("submitters"), &[&operator]);
    append_mixed(&log, &operator, 0..300).await;

    let flipped = proxy(&log, |path, body| {
        if path == "/tile/0/001.p/44" {
            body[40] ^= 1;
        }
    });
    let run = audit(&flipped, &log, &dir.path().join("flipped"), &submitters);
    assert_exit(
        &run,
        1,
        "the log serves hash tile tile/0/001.p/44, but hash 1",
    );
    assert!(
        run.stderr.contains("--- served tile (base64) ---"),
        "{}",
        run.stderr
    );

    let zeroed = proxy(&log, |path, body| {
        if is_hash_tile(path) {
            body.fill(0);
        }
    });
    let run = audit(&zeroed, &log, &dir.path().join("zeroed"), &submitters);
    assert_exit(&run, 1, "the log serves hash tile tile/0/000, but hash 0");

    let honest = proxy(&log, |_, _| {});
    let state = dir.path().join("resumed");
    let run = audit(&honest, &log, &state, &submitters);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("audit passed"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("hash tiles: 3 rebuilt from this run's entries match the log's"),
        "{}",
        run.stdout
    );

    // Resumed at 300, the hashes of tile/0/001 before index 44 come from
    // the earlier run: a change there shows against the saved peaks. The
    // trusted state moves to 700 first, through the honest proxy, so that
    // the audit needs no consistency proof (which those hashes would fail).
    append_mixed(&log, &operator, 300..700).await;
    let vkey = log.data_dir.join("log.vkey").display().to_string();
    let moved = run_verifier(&[
        "checkpoint",
        "--log",
        &honest.url(),
        "--vkey",
        &vkey,
        "--state",
        &state.display().to_string(),
    ]);
    assert_eq!(moved.code, Some(0), "{}", moved.stderr);
    let earlier = proxy(&log, |path, body| {
        if path == "/tile/0/001" {
            body[3 * 32] ^= 1;
        }
    });
    let run = audit(&earlier, &log, &state, &submitters);
    assert_exit(
        &run,
        1,
        "the log serves hash tile tile/0/001, but its first 44 hashes, made by entries \
         audited in an earlier run",
    );
    let later = proxy(&log, |path, body| {
        if path == "/tile/1/000.p/2" {
            body[32] ^= 1;
        }
    });
    let run = audit(&later, &log, &state, &submitters);
    assert_exit(
        &run,
        1,
        "the log serves hash tile tile/1/000.p/2, but hash 1",
    );
    let run = audit(&honest, &log, &state, &submitters);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_on_line_20000_is_named_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogServer::start(
        &dir.path().join("log"),
        &["--origin", "log.example.test/hostile-submit"],
    );
    let event = |n: u64, field: &str| {
        format!(
            r#"{{"occurredAt": "2026-11-20T02:00:00Z", "dataFlow": {{"{field}": "flow-{n}", "dataCategory": "eu_user_data", "purpose": "analytics", "legalBasis": "consent", "recordCount": {n}}}}}"#
        )
    };
    let mut input: String = (0..19_999).map(|n| event(n, "flowId") + "\n").collect();
    input.push_str(&event(19_999, "flowID"));
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, input).unwrap();
    let (key, vkey) = (
        log.data_dir.join("submitter.key"),
        log.data_dir.join("log.vkey"),
    );
    let started = start_clock();
    let run = run_verifier(&[
        "submit",
        "--log",
        &log.url(),
        "--key",
        &key.display().to_string(),
        "--vkey",
        &vkey.display().to_string(),
        &events.display().to_string(),
    ]);
    assert_exit(
        &run,
        2,
        "line 20000: dataFlow.flowID: unknown field `flowID`",
    );
    assert!(started.elapsed() < Duration::from_secs(30), "no hang");
    let note = http_get(log.addr, "/checkpoint").body;
    let size = String::from_utf8(note)
        .unwrap()
        .lines()
        .nth(1)
        .map(str::to_owned);
    assert_eq!(size.as_deref(), Some("0"), "nothing was appended");
}
