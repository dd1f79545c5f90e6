//! Harness for the end-to-end tests: real binaries, real sockets, loopback
//! only.
//!
//! Processes are started on port 0 and announce the address they bound
//! (`listening on <addr>` on stdout); the harness waits for that line, so no
//! test ever sleeps to synchronise.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::Channel;
use verifier::keys::{SigningKey, VerifierKey};
use verifier::proto::log_client::LogClient;
use verifier::proto::{event::Kind, CodeRelease, DataFlow, Event, Location, ReviewerAttestation};

/// The path of a workspace binary, built once per test process so the
/// tests always run the current code.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "-p",
            "log-server",
            "-p",
            "verifier",
            "--bins",
        ]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// What a finished `verifier` run printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs the real `verifier` binary with `args` and waits for it.
pub fn run_verifier<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = Command::new(binary("verifier"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running verifier");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running `log-server` process, killed when dropped.
pub struct LogServer {
    child: Child,
    /// The address it serves gRPC and tiles on.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl LogServer {
    /// Starts `log-server serve` on an ephemeral loopback port with the
    /// given extra arguments, and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(binary("log-server"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting log-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.parse().expect("a socket address");
                    }
                }
                _ => {
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut stderr);
                    }
                    panic!("log-server exited before listening: {stderr}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
        }
        Self {
            child,
            addr,
            data_dir: data_dir.to_owned(),
        }
    }

    /// The log's one URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id, to read its memory use from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A gRPC client for the log.
    pub async fn client(&self) -> LogClient<Channel> {
        LogClient::connect(self.url())
            .await
            .expect("connecting over gRPC")
    }

    /// The log's verifier key, from the data directory.
    pub fn log_key(&self) -> VerifierKey {
        read_verifier_key(&self.data_dir.join("log.vkey"))
    }

    /// The operator submitter key the server created on first start.
    pub fn submitter_key(&self) -> SigningKey {
        let text =
            std::fs::read_to_string(self.data_dir.join("submitter.key")).expect("submitter.key");
        SigningKey::parse(&text).expect("a signer key")
    }

    /// Kills the process with SIGKILL: no clean-up, no flush, as in a crash.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the killed server");
    }

    /// Asks the process to stop (SIGINT, like Ctrl-C) and waits for it.
    pub fn interrupt(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("sending SIGINT");
        assert!(status.success());
        self.child.wait().expect("waiting for the server")
    }
}

impl Drop for LogServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `log-server` with `args` expecting it to refuse to start, and
/// returns its exit status and stderr.
pub fn log_server_refuses(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(binary("log-server"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running log-server");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads a verifier key file.
pub fn read_verifier_key(path: &Path) -> VerifierKey {
    let text = std::fs::read_to_string(path).expect("reading a verifier key file");
    VerifierKey::parse(&text).expect("a verifier key")
}

/// An HTTP response, as far as the tests care.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET, so the tiles API is exercised by a client that
/// shares no code with the server's HTTP stack.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connecting for HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("setting a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("sending");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    HttpResponse {
        status,
        body: if chunked { dechunk(&body) } else { body },
        headers,
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&body[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a hex chunk size");
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// A realistic data-flow event, distinct for each `n`.
pub fn data_flow(n: u64, destination_region: &str) -> Event {
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600 + n as i64,
            nanos: 0,
        }),
        kind: Some(Kind::DataFlow(DataFlow {
            flow_id: format!("nightly-export-{n}"),
            data_category: "eu_user_data".into(),
            source: Some(Location {
                system: "accounts-db".into(),
                data_centre: "fra-2".into(),
                region: "DE".into(),
                organisation: "Example Platform GmbH".into(),
            }),
            destination: Some(Location {
                system: "analytics-warehouse".into(),
                data_centre: "dub-1".into(),
                region: destination_region.into(),
                organisation: "Example Analytics Ltd".into(),
            }),
            purpose: "product_analytics".into(),
            legal_basis: "legitimate_interest".into(),
            record_count: 1000 + n,
        })),
    }
}

/// A realistic code-release event reviewed by `reviewer`, distinct for each `n`.
pub fn code_release(n: u64, reviewer: &SigningKey) -> Event {
    let digest: [u8; 32] =
        std::array::from_fn(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8));
    let mut event = release_event(&format!("4.{n}.0"), digest, "stable", &[(reviewer, digest)]);
    event.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_767_225_600 + n as i64,
        nanos: 0,
    });
    if let Some(Kind::CodeRelease(release)) = event.kind.as_mut() {
        release.source_commit = format!("{n:040x}");
    }
    event
}

/// A release of `digest` as `version` on `channel`, with one attestation
/// per (reviewer, digest that reviewer signs): a test can make a reviewer
/// attest another digest than the one released.
pub fn release_event(
    version: &str,
    digest: [u8; 32],
    channel: &str,
    attestations: &[(&SigningKey, [u8; 32])],
) -> Event {
    Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 0,
        }),
        kind: Some(Kind::CodeRelease(CodeRelease {
            artifact_name: "example-app-android".into(),
            version: version.into(),
            artifact_sha256: digest.to_vec(),
            source_repository: "https://git.example.com/app".into(),
            source_commit: verifier::hex::encode(&digest[..20]),
            build_provenance_sha256: vec![0xab; 32],
            release_channel: channel.into(),
            attestations: attestations
                .iter()
                .map(|(reviewer, signed)| ReviewerAttestation {
                    reviewer_key_id: reviewer.key_id(),
                    signature: reviewer
                        .sign(&verifier::event::review_signing_message(version, signed))
                        .to_vec(),
                })
                .collect(),
        })),
    }
}

/// Event `n` of a mixed workload: mostly data flows, every fifth a release.
pub fn mixed_event(n: u64, reviewer: &SigningKey) -> Event {
    if n % 5 == 4 {
        code_release(n, reviewer)
    } else {
        data_flow(n, "IE")
    }
}

/// Runs the real `verifier` binary with `args`, writing `input` to its
/// standard input, and waits for it.
pub fn run_verifier_with_input<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &[u8]) -> Run {
    let mut child = Command::new(binary("verifier"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running verifier");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A verifier that exits without reading all its input is the test's to
    // judge by the output, so a broken pipe here is not an error.
    let writer = std::thread::spawn(move || drop(stdin.write_all(&input)));
    let output = child.wait_with_output().expect("waiting for verifier");
    writer.join().expect("the stdin writer");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The reviewer whose attestations the tests' releases carry.
pub fn reviewer() -> SigningKey {
    SigningKey::from_seed("reviewer.example", [42; 32]).expect("a valid key name")
}

/// Appends events `numbers` of the mixed workload, signed by `key`, in one
/// `AppendBatch`, and asserts that every one was appended.
pub async fn append_mixed(server: &LogServer, key: &SigningKey, numbers: std::ops::Range<u64>) {
    let events = numbers
        .map(|n| verifier::event::sign_event(key, &mixed_event(n, &reviewer())))
        .collect();
    let results = server
        .client()
        .await
        .append_batch(verifier::proto::AppendBatchRequest { events })
        .await
        .expect("AppendBatch")
        .into_inner()
        .results;
    assert!(results.iter().all(|r| matches!(
        r.result,
        Some(verifier::proto::append_result::Result::Appended(_))
    )));
}

/// Any long-running workspace binary (`verifier witness`, `verifier
/// monitor`, …) that prints `listening on <addr>` once it serves; killed
/// when dropped.
pub struct Daemon {
    child: Child,
    /// The address it bound.
    pub addr: SocketAddr,
    /// Everything it printed on stderr so far, collected in the background.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts the workspace binary `name` with `args` and waits for its
    /// `listening on` line. Panics with its stderr if it exits first.
    pub fn start<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> Self {
        let mut child = Command::new(binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let sink = std::sync::Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut text = sink.lock().expect("stderr lock");
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.parse().expect("a socket address");
                    }
                }
                _ => {
                    let status = child.wait().expect("reaping");
                    panic!(
                        "{name} exited ({status}) before listening: {}",
                        stderr.lock().expect("stderr lock")
                    );
                }
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Whether it has exited, and how, without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("polling the process")
    }

    /// Kills it with SIGKILL and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs arbitrary bytes as an event of `key`, as a submitter in another
/// language, or an attacker, with a lax encoder would.
pub fn sign_bytes(key: &SigningKey, event: Vec<u8>) -> verifier::proto::SignedEvent {
    let key_id = key.key_id();
    let signature = key
        .sign(&verifier::event::event_signing_message(&key_id, &event))
        .to_vec();
    verifier::proto::SignedEvent {
        event,
        key_id,
        signature,
    }
}

/// Writes an auditor's submitter list (one verifier key per line) to
/// `path` and returns the path as an argument.
pub fn submitters_file(path: &Path, keys: &[&SigningKey]) -> String {
    let lines: String = keys
        .iter()
        .map(|k| format!("{}\n", k.verifier_key()))
        .collect();
    std::fs::write(path, format!("# submitters the auditor accepts\n{lines}")).unwrap();
    path.display().to_string()
}
