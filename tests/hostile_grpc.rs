//! Hostile gRPC clients against a real `log-server` on loopback (issue 12,
//! rows 1 and 11), spoken in raw HTTP/2 so that a client can do what no
//! gRPC library would: open streams with a zero flow-control window and
//! never read them, send bodies that are not gRPC messages, and put bytes
//! that are not UTF-8 in a string field.
//!
//! What the server is held to:
//!
//! - stalled `GetEntries` streams cost it bounded memory (RSS ≤ 256 MiB)
//!   and no honest client's `GetCheckpoint` waits a second; streams over
//!   the concurrent-read cap, or over one address's share of it, are
//!   refused with RESOURCE_EXHAUSTED; once the
//!   stalled clients leave, their permits come back and new streams are
//!   served, each ending at the per-call range cap;
//! - a path that is nothing the server serves is 404, a gRPC path asked
//!   for in plain HTTP is not 200, and a malformed request body is
//!   INVALID_ARGUMENT naming the body (or the field), with nothing stored.

use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use hyper::http::{HeaderMap, Request, StatusCode};
use prost::Message as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tlog_e2e::{data_flow, http_get, run_verifier, LogServer, Run};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use verifier::event::sign_event;
use verifier::proto::event::Kind;
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    AppendBatchRequest, AppendRequest, GetCheckpointRequest, GetEntriesRequest, SignedEvent,
};

const ORIGIN: &str = "log.example/hostile-grpc";
/// The memory target of issue 12 for the whole server process.
const MAX_RSS_KIB: u64 = 256 * 1024;
/// Entries in the attacked log: several of the server's per-call ranges.
const ENTRIES: u64 = 3000;
/// Text in each field of the attacked log's events, so that entries are
/// large (about 8 KiB) and buffering them per stream would show in RSS.
const FIELD_LEN: usize = 800;
/// The server's default caps on concurrent entry reads: overall, and from
/// one address.
const MAX_READS: usize = 256;
const MAX_READS_PER_ADDRESS: usize = 64;
/// The server's per-call range cap (`GetEntries`) by default.
const MAX_ENTRIES_PER_CALL: u64 = 1024;

/// A running log and its directory.
struct Fixture {
    // Declared first so the process is killed before its directory goes.
    server: LogServer,
    tmp: TempDir,
}

impl Fixture {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let server = LogServer::start(&tmp.path().join("data"), &["--origin", ORIGIN]);
        Self { server, tmp }
    }

    async fn client(&self) -> LogClient<Channel> {
        self.server.client().await
    }

    /// The latest checkpoint note over gRPC.
    async fn checkpoint(&self) -> String {
        self.client()
            .await
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .expect("GetCheckpoint")
            .into_inner()
            .checkpoint
    }

    /// `verifier --json audit --source grpc` of the whole log, accepting
    /// the operator's submitter key.
    fn audit_over_grpc(&self) -> Run {
        let submitters = self.tmp.path().join("auditor-submitters");
        let key = self.server.submitter_key().verifier_key();
        std::fs::write(&submitters, format!("{key}\n")).expect("writing the submitters");
        let (vkey, state) = (
            self.server.data_dir.join("log.vkey"),
            self.tmp.path().join("audit-state"),
        );
        run_verifier(&[
            "--json".as_ref(),
            "audit".as_ref(),
            "--log".as_ref(),
            self.server.url().as_ref(),
            "--vkey".as_ref(),
            vkey.as_os_str(),
            "--state".as_ref(),
            state.as_os_str(),
            "--submitters".as_ref(),
            submitters.as_os_str(),
            "--source".as_ref(),
            "grpc".as_ref(),
        ])
    }

    /// The server's resident memory, from `/proc/<pid>/status`.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.pid()))
            .expect("reading the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }
}

/// A data-flow event whose text fields are `FIELD_LEN` bytes each.
fn fat_event(n: u64) -> verifier::proto::Event {
    let mut event = data_flow(n, "IE");
    let pad = |text: &mut String| {
        let fill = FIELD_LEN.saturating_sub(text.len());
        text.push_str(&"x".repeat(fill));
    };
    if let Some(Kind::DataFlow(flow)) = event.kind.as_mut() {
        pad(&mut flow.flow_id);
        pad(&mut flow.data_category);
        pad(&mut flow.purpose);
        pad(&mut flow.legal_basis);
        for location in [flow.source.as_mut(), flow.destination.as_mut()]
            .into_iter()
            .flatten()
        {
            pad(&mut location.system);
            pad(&mut location.data_centre);
            pad(&mut location.organisation);
        }
    }
    event
}

/// Appends `ENTRIES` fat events signed by the operator's key.
async fn fill(fx: &Fixture) {
    let key = fx.server.submitter_key();
    let mut client = fx.client().await;
    let mut n = 0;
    while n < ENTRIES {
        let events: Vec<SignedEvent> = (n..(n + 300).min(ENTRIES))
            .map(|i| sign_event(&key, &fat_event(i)))
            .collect();
        n += events.len() as u64;
        let results = client
            .append_batch(AppendBatchRequest { events })
            .await
            .expect("AppendBatch")
            .into_inner()
            .results;
        assert!(results.iter().all(|r| matches!(
            r.result,
            Some(verifier::proto::append_result::Result::Appended(_))
        )));
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, message.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// An HTTP/2 connection from `source` whose streams start with a receive
/// window of `window` bytes and never grow it, so a response body beyond it
/// is never delivered. The task drives the connection; aborting it closes
/// it.
async fn connect_h2(
    addr: SocketAddr,
    source: Ipv4Addr,
    window: u32,
) -> (SendRequest<Bytes>, JoinHandle<()>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind((source, 0).into())
        .expect("binding a loopback source address");
    let tcp = socket.connect(addr).await.expect("connecting");
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("an HTTP/2 handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

/// A gRPC `POST` of `path` (content type `application/grpc` unless given).
fn grpc_request(addr: SocketAddr, path: &str, content_type: &str) -> Request<()> {
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .expect("a request")
}

/// What a raw call got back: the HTTP status, the gRPC status and message
/// from the headers (a trailers-only answer) or the trailers, and, while
/// the body is not read, the body itself, which keeps the stream open.
struct Answer {
    http: StatusCode,
    grpc: Option<(i32, String)>,
    body: Option<RecvStream>,
}

/// Sends `body` to `path` on `client`; returns once the response headers
/// arrive, without reading the body.
async fn call(
    client: &mut SendRequest<Bytes>,
    request: Request<()>,
    body: Bytes,
) -> Result<Answer, h2::Error> {
    let mut ready = client.clone().ready().await?;
    let (response, mut send) = ready.send_request(request, false)?;
    send.send_data(body, true)?;
    let response = response.await?;
    let grpc = grpc_status(response.headers());
    Ok(Answer {
        http: response.status(),
        grpc,
        body: Some(response.into_body()),
    })
}

/// Like [`call`], then reads the body and trailers to the end.
async fn call_to_end(client: &mut SendRequest<Bytes>, request: Request<()>, body: Bytes) -> Answer {
    let mut answer = call(client, request, body).await.expect("an answer");
    let mut stream = answer.body.take().expect("a body");
    while let Some(data) = stream.data().await {
        let data = data.expect("body data");
        let _ = stream.flow_control().release_capacity(data.len());
    }
    if answer.grpc.is_none() {
        if let Some(trailers) = stream.trailers().await.expect("trailers") {
            answer.grpc = grpc_status(&trailers);
        }
    }
    answer
}

fn grpc_status(headers: &HeaderMap) -> Option<(i32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some((code, message))
}

/// Decodes gRPC's percent-encoded `grpc-message`.
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The stalled streams held open, and the connections carrying them.
struct Stalled {
    /// The served streams, with the source address of each.
    served: Vec<(Ipv4Addr, RecvStream)>,
    refused: Vec<(i32, String)>,
    connections: Vec<(SendRequest<Bytes>, JoinHandle<()>)>,
}

impl Stalled {
    /// Closes every connection: the server sees the clients leave.
    fn leave(self) {
        drop(self.served);
        for (client, driver) in self.connections {
            drop(client);
            driver.abort();
        }
    }
}

/// Streams one stalling connection opens: well below the server's
/// per-connection stream limit, which would otherwise make the client wait
/// for a stream to close, and none ever does.
const STREAMS_PER_CONNECTION: usize = 25;

/// Loopback addresses a crowd of stalling clients come from: several hosts,
/// as far as the server can tell, so that together they reach the server's
/// cap and not only the cap per address.
const CROWD: [u8; 8] = [3, 4, 5, 6, 7, 8, 9, 10];

/// Opens `count` `GetEntries(0, 2^63)` streams over HTTP/2 connections
/// from the loopback addresses `127.0.0.<host>`, whose windows are zero or
/// 1 KiB, alternately, and never reads them.
async fn stall(addr: SocketAddr, count: usize, hosts: &[u8]) -> Stalled {
    tokio::time::timeout(Duration::from_secs(60), open_stalled(addr, count, hosts))
        .await
        .expect("the stalled streams open within a minute")
}

async fn open_stalled(addr: SocketAddr, count: usize, hosts: &[u8]) -> Stalled {
    let connections = count.div_ceil(STREAMS_PER_CONNECTION);
    let request = GetEntriesRequest {
        start: 0,
        end: 1 << 63,
    }
    .encode_to_vec();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let body = frame(&request);
        let streams = STREAMS_PER_CONNECTION.min(count - c * STREAMS_PER_CONNECTION);
        let host = hosts[c % hosts.len()];
        tasks.push(tokio::spawn(async move {
            let window = if c % 2 == 0 { 0 } else { 1024 };
            let source = Ipv4Addr::new(127, 0, 0, host);
            let (mut client, driver) = connect_h2(addr, source, window).await;
            let mut answers = Vec::with_capacity(streams);
            for _ in 0..streams {
                let request = grpc_request(addr, "/tlog.v1.Log/GetEntries", "application/grpc");
                let answer = call(&mut client, request, body.clone())
                    .await
                    .expect("a GetEntries answer");
                answers.push(answer);
            }
            (source, client, driver, answers)
        }));
    }
    let mut stalled = Stalled {
        served: Vec::new(),
        refused: Vec::new(),
        connections: Vec::new(),
    };
    for task in tasks {
        let (source, client, driver, answers) = task.await.expect("a stalling client");
        for answer in answers {
            assert_eq!(answer.http, StatusCode::OK, "gRPC answers are HTTP 200");
            match answer.grpc {
                None => stalled.served.push((source, answer.body.expect("a body"))),
                Some(status) => stalled.refused.push(status),
            }
        }
        stalled.connections.push((client, driver));
    }
    stalled
}

/// Checks refused streams were pushed back (RESOURCE_EXHAUSTED, "retry
/// later"), at least one of them for the cap that `names` names.
fn assert_pushed_back(refused: &[(i32, String)], names: &str) {
    for (code, message) in refused {
        assert_eq!(*code, Code::ResourceExhausted as i32, "{message}");
        assert!(message.contains("retry later"), "{message}");
    }
    assert!(
        refused.iter().any(|(_, message)| message.contains(names)),
        "no refusal names {names:?}: {refused:?}"
    );
}

/// Reads a whole `GetEntries` stream, checking indexes run from `start`.
async fn read_entries(client: &mut LogClient<Channel>, start: u64) -> Result<u64, tonic::Status> {
    let mut stream = client
        .get_entries(GetEntriesRequest {
            start,
            end: 1 << 63,
        })
        .await?
        .into_inner();
    let mut next = start;
    while let Some(entry) = stream.message().await? {
        assert_eq!(entry.index, next, "entries come in index order");
        next += 1;
    }
    Ok(next - start)
}

/// Row 1: a thousand stalled `GetEntries` streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_entry_streams_cannot_hoard_memory_or_starve_honest_clients() {
    let fx = Fixture::start();
    fill(&fx).await;
    let addr = fx.server.addr;

    // One host first: it gets its share of the reads and no more.
    let greedy = stall(addr, 100, &[2]).await;
    assert_eq!(greedy.served.len(), MAX_READS_PER_ADDRESS);
    assert_pushed_back(&greedy.refused, "your address");
    // Then a crowd of hosts, 900 streams more: together they fill the
    // server's cap, and no further.
    let crowd = stall(addr, 900, &CROWD).await;
    let served = greedy.served.len() + crowd.served.len();
    assert_eq!(served, MAX_READS);
    assert_pushed_back(&crowd.refused, "the server's limit");

    // While the streams are held: bounded memory, and honest answers.
    let rss = fx.rss_kib();
    assert!(
        rss <= MAX_RSS_KIB,
        "server RSS {rss} KiB with {served} stalled streams"
    );
    let mut honest = fx.client().await;
    for _ in 0..5 {
        let asked = Instant::now();
        honest
            .get_checkpoint(GetCheckpointRequest {})
            .await
            .expect("GetCheckpoint while streams are stalled");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(1), "GetCheckpoint took {took:?}");
    }
    assert_eq!(http_get(addr, "/checkpoint").status, 200);
    // The cap is full: one more stream is pushed back, not queued.
    let refused = read_entries(&mut honest, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // The clients leave; their permits come back, all of them: as many
    // stalled streams as before are served again (waiting only for the
    // server to see the connections close).
    greedy.leave();
    crowd.leave();
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let again = stall(addr, served, &CROWD).await;
        if again.refused.is_empty() {
            break again;
        }
        assert!(Instant::now() < deadline, "permits were not given back");
        again.leave();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(fx.rss_kib() <= MAX_RSS_KIB);
    again.leave();

    // New streams are served, each ending early at the per-call limits
    // (these entries reach the byte limit before the entry limit), and the
    // whole log is read by asking again from the next index.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = Vec::new();
    while (calls.iter().sum::<u64>()) < ENTRIES {
        let read = calls.iter().sum();
        match read_entries(&mut honest, read).await {
            Ok(count) => {
                assert!(count > 0, "a call from {read} made no progress");
                assert!(count <= MAX_ENTRIES_PER_CALL, "{count} entries in one call");
                calls.push(count);
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(Instant::now() < deadline, "streams stay refused");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("GetEntries from {read}: {status:?}"),
        }
    }
    assert!(calls.len() > 1, "one call carried the whole log: {calls:?}");
    assert_eq!(read_entries(&mut honest, ENTRIES).await.unwrap(), 0);

    // So does the auditor: it reads the whole log over gRPC, a call at a
    // time, and every entry checks out.
    let audited = tokio::task::spawn_blocking(move || fx.audit_over_grpc())
        .await
        .expect("the audit ran");
    assert_eq!(audited.code, Some(0), "{}", audited.stderr);
    let summary: serde_json::Value = serde_json::from_str(&audited.stdout).expect("a JSON summary");
    assert_eq!(summary["audited_total"], ENTRIES, "{summary}");
}

/// An `Append` request whose `SignedEvent.key_id` is not UTF-8, the rest
/// well formed, encoded by hand (prost cannot encode such a string).
fn append_with_non_utf8_key_id(event: &[u8]) -> Vec<u8> {
    let mut signed = Vec::new();
    // event = 1 (bytes)
    signed.push(0x0a);
    prost::encoding::encode_varint(event.len() as u64, &mut signed);
    signed.extend_from_slice(event);
    // key_id = 2 (string): "alice\xff+01020304"
    let key_id = b"alice\xff+01020304";
    signed.push(0x12);
    signed.push(key_id.len() as u8);
    signed.extend_from_slice(key_id);
    // signature = 3 (bytes)
    signed.push(0x1a);
    signed.push(64);
    signed.extend_from_slice(&[7; 64]);
    let mut request = vec![0x0a];
    prost::encoding::encode_varint(signed.len() as u64, &mut request);
    request.extend_from_slice(&signed);
    request
}

/// Row 11: paths that are nothing, plain HTTP to gRPC paths, and request
/// bodies that are not what they claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_clearly_and_store_nothing() {
    let fx = Fixture::start();
    let addr = fx.server.addr;
    let key = fx.server.submitter_key();
    let mut client = fx.client().await;
    client
        .append(AppendRequest {
            event: Some(sign_event(&key, &data_flow(1, "IE"))),
        })
        .await
        .expect("an honest append");
    let before = fx.checkpoint().await;

    // Plain HTTP: 404 for what is not served, never 200 from a gRPC path.
    for path in ["/etc/passwd", "/", "/tile", "/checkpoint/x", "/tlog.v1.Log"] {
        let response = http_get(addr, path);
        assert_eq!(response.status, 404, "GET {path}");
    }
    let get = http_get(addr, "/tlog.v1.Log/GetCheckpoint");
    assert_eq!(get.status, 405, "GET of a gRPC method");
    let (mut h2, _driver) = connect_h2(addr, Ipv4Addr::LOCALHOST, 65_535).await;
    let empty_request = frame(&GetCheckpointRequest {}.encode_to_vec());
    let form = call_to_end(
        &mut h2,
        grpc_request(addr, "/tlog.v1.Log/GetCheckpoint", "text/plain"),
        empty_request.clone(),
    )
    .await;
    assert_eq!(form.http, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(form.grpc.is_none());
    // A gRPC call to a service the server does not have is gRPC's
    // UNIMPLEMENTED, which gRPC clients understand.
    let unknown = call_to_end(
        &mut h2,
        grpc_request(addr, "/etc/passwd", "application/grpc"),
        empty_request.clone(),
    )
    .await;
    assert_eq!(unknown.grpc.map(|g| g.0), Some(Code::Unimplemented as i32));
    // A well-formed raw call still works.
    let honest = call_to_end(
        &mut h2,
        grpc_request(addr, "/tlog.v1.Log/GetCheckpoint", "application/grpc+proto"),
        empty_request,
    )
    .await;
    assert_eq!(honest.grpc.map(|g| g.0), Some(Code::Ok as i32));

    // Bodies that are not a well-formed AppendRequest.
    let event = sign_event(&key, &data_flow(2, "IE"));
    let valid = AppendRequest {
        event: Some(event.clone()),
    }
    .encode_to_vec();
    let mut cut_frame = frame(&valid).to_vec();
    cut_frame.truncate(cut_frame.len() - 10);
    let cases: [(&str, Bytes, &str); 6] = [
        (
            "garbage",
            Bytes::from_static(b"\x47ARBAGE \x00\xff\xfe not grpc"),
            "request body:",
        ),
        ("empty body", Bytes::new(), "request body: empty"),
        (
            "a cut frame",
            cut_frame.into(),
            "request body: ends inside a message",
        ),
        (
            "a truncated message",
            frame(&valid[..valid.len() - 10]),
            "request body:",
        ),
        (
            "wrong wire types",
            frame(&[0x0b, 0xff, 0xff, 0xff]),
            "request body:",
        ),
        (
            "a key_id that is not UTF-8",
            frame(&append_with_non_utf8_key_id(&event.event)),
            "key_id",
        ),
    ];
    for (what, body, needle) in cases {
        let answer = call_to_end(
            &mut h2,
            grpc_request(addr, "/tlog.v1.Log/Append", "application/grpc"),
            body,
        )
        .await;
        let (code, message) = answer
            .grpc
            .unwrap_or_else(|| panic!("{what}: no gRPC status"));
        assert_eq!(code, Code::InvalidArgument as i32, "{what}: {message}");
        assert!(message.contains(needle), "{what}: {message}");
        assert!(message.starts_with("request body:"), "{what}: {message}");
    }

    // Nothing was stored, and honest clients are still served.
    assert_eq!(
        fx.checkpoint().await,
        before,
        "refused requests change nothing"
    );
    let appended = client
        .append(AppendRequest { event: Some(event) })
        .await
        .expect("the same event, well formed, is appended")
        .into_inner();
    assert!(!appended.duplicate, "the refused event was never stored");
    assert_eq!(appended.index, 1);
}
