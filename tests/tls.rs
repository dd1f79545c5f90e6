//! TLS end to end: a private CA made here with rcgen, a log served with
//! `--tls-cert`/`--tls-key`, and the verifier reading and submitting over
//! `https://` with `--ca-file`. A certificate the verifier cannot trust
//! (wrong CA, wrong name, expired) is exit 2 naming why; plain HTTP sent
//! to the TLS port is answered plainly and closed; SIGHUP swaps the
//! certificate for new connections while an open one keeps appending; and
//! `--client-ca` keeps clients without a certificate out.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tlog_e2e::{log_server_refuses, mixed_event, reviewer, run_verifier, LogServer, Run};
use verifier::keys::SigningKey;
use verifier::proto::log_client::LogClient;
use verifier::proto::{append_result, AppendBatchRequest};

/// A private CA, and the files of what it issues.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One issued certificate: its files and its DER bytes.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self {
            dir: dir.to_owned(),
            ca,
        }
    }

    /// The CA's certificate file, for `--ca-file` and `--client-ca`.
    fn ca_file(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// Issues a certificate for `names` to `<stem>.pem` and `<stem>.key`
    /// (mode 0600), expired long ago if `expired`.
    fn issue(&self, stem: &str, names: &[&str], expired: bool) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.ca).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        write_private(&key_path, &key.serialize_pem());
        Issued {
            cert: cert_path,
            key: key_path,
            der: certificate.der().clone(),
        }
    }
}

/// Writes a private key file readable by its owner only, replacing it
/// whole (a new inode) so a server re-reading it sees old or new.
fn write_private(path: &Path, text: &str) {
    let fresh = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    drop(file);
    std::fs::rename(fresh, path).unwrap();
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// A log served over TLS with `issued`, and more flags.
fn tls_log(dir: &Path, issued: &Issued, extra: &[&str]) -> LogServer {
    let mut args = vec![
        "--tls-cert".to_owned(),
        text(&issued.cert),
        "--tls-key".to_owned(),
        text(&issued.key),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    LogServer::start(dir, &args)
}

/// The log's URL by host name, as its certificate names it.
fn https(server: &LogServer) -> String {
    format!("https://localhost:{}", server.addr.port())
}

/// Runs a verifier command against `url` with the log's key and `extra`.
fn verify(command: &str, server: &LogServer, url: &str, extra: &[&str]) -> Run {
    let vkey = text(&server.data_dir.join("log.vkey"));
    let mut args = vec![command, "--log", url, "--vkey", &vkey];
    args.extend(extra);
    run_verifier(&args)
}

fn assert_exit(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, Some(code), "{run:?}");
    assert!(
        run.stderr.contains(needle) || run.stdout.contains(needle),
        "expected {needle:?} in {run:?}"
    );
}

/// Three data-flow events as `verifier submit` reads them.
fn events_file(dir: &Path) -> String {
    let path = dir.join("events.jsonl");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events");
    std::fs::copy(examples.join("flows.jsonl"), &path).unwrap();
    text(&path)
}

#[test]
fn checkpoint_submit_and_audit_work_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let issued = pki.issue("log", &["localhost", "127.0.0.1"], false);
    let server = tls_log(
        &dir.path().join("log"),
        &issued,
        &["--origin", "log.example.test/tls"],
    );
    let (url, ca) = (https(&server), pki.ca_file());
    let key = text(&server.data_dir.join("submitter.key"));
    let events = events_file(dir.path());

    let submitted = verify(
        "submit",
        &server,
        &url,
        &["--key", &key, "--ca-file", &ca, &events],
    );
    assert_eq!(submitted.code, Some(0), "{submitted:?}");

    let state = text(&dir.path().join("state"));
    let checkpoint = verify(
        "checkpoint",
        &server,
        &url,
        &["--ca-file", &ca, "--state", &state],
    );
    assert_eq!(checkpoint.code, Some(0), "{checkpoint:?}");
    let by_address = format!("https://127.0.0.1:{}", server.addr.port());
    let checkpoint = verify("checkpoint", &server, &by_address, &["--ca-file", &ca]);
    assert_eq!(checkpoint.code, Some(0), "{checkpoint:?}");

    let submitters = dir.path().join("submitters");
    std::fs::write(
        &submitters,
        format!("{}\n", server.submitter_key().verifier_key()),
    )
    .unwrap();
    for source in ["tiles", "grpc"] {
        let state = text(&dir.path().join(format!("audit-{source}")));
        let audit = verify(
            "audit",
            &server,
            &url,
            &[
                "--ca-file",
                &ca,
                "--state",
                &state,
                "--submitters",
                &text(&submitters),
                "--source",
                source,
            ],
        );
        assert_exit(&audit, 0, "audit passed");
    }
}

#[test]
fn untrusted_certificates_exit_2_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Pki::new(&dir.path().join("trusted"), "the CA the verifier trusts");
    let other = Pki::new(&dir.path().join("other"), "another CA");
    let ca = trusted.ca_file();
    let events = events_file(dir.path());

    let cases = [
        ("unknown issuer", other.issue("log", &["localhost"], false)),
        (
            "wrong name",
            trusted.issue("elsewhere", &["log.elsewhere.example"], false),
        ),
        ("expired", trusted.issue("expired", &["localhost"], true)),
    ];
    for (n, (reason, issued)) in cases.iter().enumerate() {
        let server = tls_log(&dir.path().join(format!("log-{n}")), issued, &[]);
        let url = https(&server);
        let checkpoint = verify("checkpoint", &server, &url, &["--ca-file", &ca]);
        assert_exit(&checkpoint, 2, reason);
        let key = text(&server.data_dir.join("submitter.key"));
        let submit = verify(
            "submit",
            &server,
            &url,
            &["--key", &key, "--ca-file", &ca, &events],
        );
        assert_exit(&submit, 2, reason);
    }

    // The web PKI's roots, the default, do not hold a private CA either.
    let issued = trusted.issue("log", &["localhost"], false);
    let server = tls_log(&dir.path().join("log-default-roots"), &issued, &[]);
    let checkpoint = verify("checkpoint", &server, &https(&server), &[]);
    assert_exit(&checkpoint, 2, "unknown issuer");
}

#[test]
fn plain_http_to_the_tls_port_is_answered_plainly_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let issued = pki.issue("log", &["localhost"], false);
    let server = tls_log(
        &dir.path().join("log"),
        &issued,
        &["--header-timeout", "1s"],
    );

    // The verifier, pointed at http://, is told to use https:// (and does
    // not quietly carry on in plain text).
    let plain = format!("http://{}", server.addr);
    let checkpoint = verify("checkpoint", &server, &plain, &[]);
    assert_exit(&checkpoint, 2, "use an https:// URL");

    // A raw client gets the same answer and the connection closes.
    let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer)
        .expect("closed by the server");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A client that connects and says nothing is closed at the header
    // timeout rather than held open.
    let mut silent = std::net::TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).expect("closed, not timed out"), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(&dir.path().join("log"));
    let (status, stderr) =
        log_server_refuses(&["serve", "--data-dir", &data, "--listen", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(stderr.contains("--insecure-plain-http"), "{stderr}");
}

#[test]
fn client_ca_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let issued = pki.issue("log", &["localhost"], false);
    let submitter = pki.issue("submitter", &["submitter.example"], false);
    let ca = pki.ca_file();
    let server = tls_log(&dir.path().join("log"), &issued, &["--client-ca", &ca]);
    let url = https(&server);
    let key = text(&server.data_dir.join("submitter.key"));
    let events = events_file(dir.path());

    let anonymous = verify(
        "submit",
        &server,
        &url,
        &["--key", &key, "--ca-file", &ca, &events],
    );
    assert_exit(&anonymous, 2, "requires a client certificate");

    let (cert, client_key) = (text(&submitter.cert), text(&submitter.key));
    let with_certificate = verify(
        "submit",
        &server,
        &url,
        &[
            "--key",
            &key,
            "--ca-file",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &client_key,
            &events,
        ],
    );
    assert_eq!(with_certificate.code, Some(0), "{with_certificate:?}");
}

/// A TLS client trusting `ca` (DER), offering `h2`.
fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    #[allow(deprecated)] // ring: the only provider the build carries.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Opens a TLS connection to `addr` as `localhost`.
async fn connect_tls(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate a new connection to `addr` is shown.
async fn presented(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> CertificateDer<'static> {
    let stream = connect_tls(addr, config).await;
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Appends one event numbered `n`; whether it was appended.
async fn append_one(
    client: &mut LogClient<tonic::transport::Channel>,
    key: &SigningKey,
    n: u64,
) -> bool {
    let events = vec![verifier::event::sign_event(
        key,
        &mixed_event(n, &reviewer()),
    )];
    let results = client
        .append_batch(AppendBatchRequest { events })
        .await
        .expect("AppendBatch")
        .into_inner()
        .results;
    matches!(
        results.first().and_then(|r| r.result.as_ref()),
        Some(append_result::Result::Appended(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_while_an_open_connection_keeps_appending() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let first = pki.issue("log", &["localhost"], false);
    let server = tls_log(&dir.path().join("log"), &first, &[]);
    let config = client_config(pki.ca.der());
    let addr = server.addr;
    assert_eq!(presented(addr, Arc::clone(&config)).await, first.der);

    // One gRPC channel over one TLS connection, counted: were it dropped,
    // the channel would have to connect again.
    let connections = Arc::new(AtomicUsize::new(0));
    let connector = {
        let (config, connections) = (Arc::clone(&config), Arc::clone(&connections));
        tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let (config, connections) = (Arc::clone(&config), Arc::clone(&connections));
            async move {
                connections.fetch_add(1, Ordering::SeqCst);
                let stream = connect_tls(addr, config).await;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        })
    };
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .unwrap();
    let mut client = LogClient::new(channel);
    let key = server.submitter_key();

    // Appends go on throughout the reload.
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let appender = tokio::spawn(async move {
        let (mut appended, mut n) = (0u64, 0u64);
        while !*stop.borrow_and_update() {
            assert!(append_one(&mut client, &key, n).await, "append {n} refused");
            appended += 1;
            n += 1;
        }
        // And after it, on the same connection.
        assert!(append_one(&mut client, &key, n).await);
        appended + 1
    });

    let second = pki.issue("log", &["localhost"], false);
    assert_ne!(second.der, first.der);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(addr, Arc::clone(&config)).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::task::yield_now().await;
    }
    stop_tx.send(true).unwrap();
    let appended = appender.await.unwrap();
    assert!(appended >= 2, "{appended}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_witness_over_tls_cosigns_for_a_log_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let ca = pki.ca_file();
    let data = dir.path().join("log");
    // The witness needs the log's key, and the log the witness's address.
    let origin = ["--origin", "log.example.test/tls-witnessed"];
    assert!(LogServer::start(&data, &origin).interrupt().success());

    let witness_key = dir.path().join("witness.key");
    let keygen = run_verifier(&[
        "keygen",
        "--name",
        "witness.example/tls",
        "--out",
        &text(&witness_key),
        "--cosigner",
    ]);
    assert_eq!(keygen.code, Some(0), "{keygen:?}");
    let cosigner = keygen.stdout.trim().to_owned();
    let state = dir.path().join("witness-state");
    std::fs::create_dir_all(&state).unwrap();
    let witness_cert = pki.issue("witness", &["localhost"], false);
    let witness = tlog_e2e::Daemon::start(
        "verifier",
        &[
            "witness",
            "--key",
            &text(&witness_key),
            "--state",
            &text(&state),
            "--log",
            &text(&data.join("log.vkey")),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &text(&witness_cert.cert),
            "--tls-key",
            &text(&witness_cert.key),
        ],
    );
    std::fs::write(
        data.join("witnesses"),
        format!("{cosigner} https://localhost:{}\n", witness.addr.port()),
    )
    .unwrap();

    let log_cert = pki.issue("log", &["localhost"], false);
    let server = tls_log(&data, &log_cert, &["--ca-file", &ca]);
    let (url, key) = (https(&server), text(&data.join("submitter.key")));
    let events = events_file(dir.path());
    // `--witness` waits for a checkpoint the witness cosigned over TLS.
    let submitted = verify(
        "submit",
        &server,
        &url,
        &[
            "--key",
            &key,
            "--ca-file",
            &ca,
            "--witness",
            &cosigner,
            &events,
        ],
    );
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let checkpoint = verify(
        "checkpoint",
        &server,
        &url,
        &["--ca-file", &ca, "--witness", &cosigner],
    );
    assert_eq!(checkpoint.code, Some(0), "{checkpoint:?}");
}

#[test]
fn monitors_follow_a_log_and_gossip_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "test private CA");
    let ca = pki.ca_file();
    let log_cert = pki.issue("log", &["localhost"], false);
    let server = tls_log(&dir.path().join("log"), &log_cert, &[]);
    let monitor_cert = pki.issue("monitor", &["localhost"], false);
    let start = |name: &str, peer: Option<String>| {
        let mut args = vec![
            "monitor".to_owned(),
            "--log".into(),
            https(&server),
            "--vkey".into(),
            text(&server.data_dir.join("log.vkey")),
            "--state".into(),
            text(&dir.path().join(name)),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--interval-ms".into(),
            "200".into(),
            "--ca-file".into(),
            ca.clone(),
            "--tls-cert".into(),
            text(&monitor_cert.cert),
            "--tls-key".into(),
            text(&monitor_cert.key),
        ];
        if let Some(peer) = peer {
            args.extend(["--peer".into(), peer]);
        }
        tlog_e2e::Daemon::start("verifier", &args)
    };
    let first = start("first", None);
    let second = start(
        "second",
        Some(format!("https://localhost:{}", first.addr.port())),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !second.stderr().contains("1 of 1 peers answered") {
        assert!(
            Instant::now() < deadline,
            "no gossip over TLS within 60 s:\n{}\n---\n{}",
            second.stderr(),
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        second.stderr().contains("verified checkpoint"),
        "{}",
        second.stderr()
    );
}
