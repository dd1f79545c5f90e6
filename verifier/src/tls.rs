//! TLS for every server and client of the project, with rustls and its
//! `ring` provider (no cmake in the build).
//!
//! - **Servers** (the log's port, the witness, the monitor's gossip
//!   port) take `--tls-cert` and `--tls-key` ([`TlsArgs`]) and speak TLS
//!   through the [`Transport`] handshake of the bounded accept loop
//!   ([`crate::serving`]), so the handshake runs under the header timeout.
//!   ALPN offers `h2` and `http/1.1`. SIGHUP re-reads the certificate and
//!   key: connections already open keep theirs, new ones get the new.
//!   Plain HTTP is the default only on a loopback address; elsewhere it
//!   needs `--insecure-plain-http`, for a server behind a proxy that ends
//!   TLS.
//! - **Clients** take `--ca-file` (a private CA instead of the web PKI's
//!   roots) and `--client-cert`/`--client-key` for a log that requires
//!   client certificates ([`ClientTlsArgs`]). A certificate that does not
//!   verify is an error named by [`certificate_error`]; nothing falls back
//!   to plain HTTP.
//!
//! Left out: OCSP and revocation lists, and the system's root store (the
//! web PKI's roots are built in, so a client behaves the same everywhere).

use crate::serving::Handshake;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a client that sends plain HTTP to a TLS port is told before the
/// connection is closed, rather than a TLS alert it cannot read.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\n\
Connection: close\r\n\
Content-Length: 48\r\n\
\r\n\
This port speaks TLS only: use an https:// URL.\n";

/// A server's TLS flags, shared by `log-server serve`, `verifier witness`
/// and `verifier monitor`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve TLS with this certificate chain (PEM, the server's own
    /// certificate first). Re-read with --tls-key on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; no group or other access).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback, for a server
    /// behind a proxy that ends TLS. Without it such an address needs
    /// --tls-cert and --tls-key.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,
}

impl TlsArgs {
    /// The transport to serve `listen` with, its certificate loaded, and
    /// (with `client_ca`) client certificates required. Must run inside a
    /// Tokio runtime: SIGHUP is watched from here on. Refuses plain HTTP
    /// on a non-loopback address unless `--insecure-plain-http`.
    pub fn transport(
        &self,
        listen: SocketAddr,
        client_ca: Option<&Path>,
    ) -> Result<Transport, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            if client_ca.is_some() {
                return Err("--client-ca needs --tls-cert and --tls-key".into());
            }
            if !listen.ip().is_loopback() && !self.insecure_plain_http {
                return Err(format!(
                    "--listen {listen} is not a loopback address: serve TLS with --tls-cert \
                     and --tls-key, or give --insecure-plain-http behind a proxy that ends TLS"
                ));
            }
            return Ok(Transport::Plain);
        };
        let files = CertFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.map(Path::to_owned),
        };
        let tls = Tls::new(files)?;
        tls.reload_on_sighup();
        Ok(Transport::Tls(tls))
    }
}

/// Where a server's certificate, key and client CA are read from, at start
/// and on every SIGHUP.
#[derive(Debug, Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl CertFiles {
    /// Reads the files into a server configuration, or says which file is
    /// wrong and why.
    fn load(&self) -> Result<ServerConfig, String> {
        let chain = read_certificates("--tls-cert", &self.cert)?;
        let key = read_key("--tls-key", &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = root_store("--client-ca", path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            format!(
                "--tls-cert {} and --tls-key {}: {e}",
                self.cert.display(),
                self.key.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The ring provider, the only one the build carries. rustls deprecates it
/// for lacking post-quantum key exchange; the alternative, aws-lc-rs, needs
/// cmake and a C toolchain in every build.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file of one or more certificates.
fn read_certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: not PEM certificates: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{flag} {}: holds no certificate", path.display()));
    }
    Ok(chain)
}

/// Reads a PEM private key file, refusing one others may read.
fn read_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = crate::files::read_secret(path).map_err(|e| format!("{flag}: {e}"))?;
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("{flag} {}: not a PEM private key: {e}", path.display()))
}

/// The certificates of a PEM file as trust anchors.
fn root_store(flag: &str, path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(flag, path)? {
        roots
            .add(certificate)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A server's TLS: the current configuration, replaced whole on SIGHUP.
/// Each connection takes the configuration current when it arrives.
#[derive(Clone)]
pub struct Tls {
    files: Arc<CertFiles>,
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Tls {
    fn new(files: CertFiles) -> Result<Self, String> {
        let config = files.load()?;
        Ok(Self {
            files: Arc::new(files),
            config: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// Re-reads the certificate, key and client CA. On an error the
    /// configuration in use stays, so a half-written file cannot take the
    /// server down.
    pub fn reload(&self) -> Result<(), String> {
        let config = Arc::new(self.files.load()?);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// Reloads on every SIGHUP, logging the outcome, for the life of the
    /// runtime.
    fn reload_on_sighup(&self) {
        use tokio::signal::unix::{signal, SignalKind};
        let tls = self.clone();
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; the certificate will not be reloaded");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.files.cert.display(),
                        "SIGHUP: reloaded the TLS certificate and key"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: TLS certificate not reloaded; keeping the one in use"
                    ),
                }
            }
        });
    }

    fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How a server's connections are carried: plain TCP (loopback, or behind
/// a proxy that ends TLS) or TLS.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 and HTTP/2 with prior knowledge.
    Plain,
    /// TLS, with ALPN `h2` and `http/1.1`.
    Tls(Tls),
}

impl Transport {
    /// The URL scheme clients reach this transport with.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls(_) => "https",
        }
    }
}

impl Handshake for Transport {
    type Io = Stream;

    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let tls = match self {
            Transport::Plain => return Ok(Stream::Plain(tcp)),
            Transport::Tls(tls) => tls,
        };
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
            let mut tcp = tcp;
            // Best effort: the connection is closed either way.
            let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = tcp.shutdown().await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "plain HTTP sent to the TLS port",
            ));
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        Ok(Stream::Tls(Box::new(acceptor.accept(tcp).await?)))
    }
}

/// A connection's transport once its handshake is done.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// A TLS session over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
}

/// A client's TLS flags, for every command that reaches a server over
/// `https://` (or gRPC over TLS).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// Trust only the CA certificates in this PEM file for https://,
    /// instead of the web PKI's roots: for a server with a private CA.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Present this client certificate chain (PEM), for a log that
    /// requires one of submitters.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM; no group or other access).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Reads and checks the files the flags name.
    pub fn load(&self) -> Result<ClientTls, String> {
        let ca_pem = match &self.ca_file {
            None => None,
            Some(path) => {
                root_store("--ca-file", path)?;
                Some(
                    std::fs::read(path)
                        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?,
                )
            }
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                read_certificates("--client-cert", cert)?;
                read_key("--client-key", key)?;
                let key_pem =
                    crate::files::read_secret(key).map_err(|e| format!("--client-key: {e}"))?;
                let cert_pem = std::fs::read(cert)
                    .map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
                Some((cert_pem, key_pem.into_bytes()))
            }
            _ => None,
        };
        Ok(ClientTls { ca_pem, identity })
    }
}

/// What a client trusts and presents: a private CA (or else the web PKI's
/// roots) and a client certificate, as checked PEM.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// The private CA's certificates (PEM), if one replaces the web PKI.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The client certificate chain and key (PEM), if one is presented.
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()))
    }

    /// The same trust for a gRPC channel (tonic), which negotiates `h2`.
    pub fn grpc(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let config = match &self.ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_webpki_roots(),
        };
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// The same trust for an HTTP client (ureq), which uses the web PKI's
    /// roots when no private CA is given.
    pub fn http(&self) -> ureq::tls::TlsConfig {
        use ureq::tls::{
            parse_pem, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider,
        };
        let certificates = |pem: &[u8]| {
            parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(certificate)) => Some(certificate.to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let mut config = TlsConfig::builder().provider(TlsProvider::Rustls);
        if let Some(pem) = &self.ca_pem {
            config = config.root_certs(RootCerts::new_with_certs(&certificates(pem)));
        }
        if let Some((cert, key)) = &self.identity {
            // Both were parsed when loaded.
            if let Ok(key) = PrivateKey::from_pem(key) {
                let key = key.to_owned();
                config =
                    config.client_cert(Some(ClientCert::new_with_certs(&certificates(cert), key)));
            }
        }
        config.build()
    }

    /// Sets up `endpoint` for TLS if its URL is `https://`; a plain
    /// `http://` endpoint is left as it is.
    pub fn endpoint(
        &self,
        endpoint: tonic::transport::Endpoint,
    ) -> Result<tonic::transport::Endpoint, String> {
        if endpoint.uri().scheme_str() != Some("https") {
            return Ok(endpoint);
        }
        endpoint
            .tls_config(self.grpc())
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// Why a TLS connection failed, if `error` (or what caused it) is a TLS
/// error: the certificate's fault named plainly (expired, wrong name,
/// unknown issuer), for a client's one-line reason.
pub fn certificate_error(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        // ureq's error names no source; its TLS errors are held inside.
        match error.downcast_ref::<ureq::Error>() {
            Some(ureq::Error::Rustls(tls)) => return Some(explain(tls)),
            Some(ureq::Error::Io(io)) => return certificate_error(io),
            _ => {}
        }
        // io::Error's `source` skips the error it wraps; look inside.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(explain(tls));
            }
        }
        next = error.source();
    }
    None
}

/// One line on a TLS error.
pub fn explain(error: &rustls::Error) -> String {
    use rustls::AlertDescription as Alert;
    use rustls::CertificateError as E;
    let certificate = match error {
        rustls::Error::InvalidCertificate(certificate) => certificate,
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            return "TLS: the server requires a client certificate (--client-cert and \
                    --client-key)"
                .into()
        }
        rustls::Error::AlertReceived(
            Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateExpired,
        ) => return format!("TLS: the server refused the client certificate ({error})"),
        _ => return format!("TLS: {error}"),
    };
    let reason = match certificate {
        E::Expired | E::ExpiredContext { .. } => "the server's certificate has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet".into()
        }
        E::NotValidForName => "the server's certificate is for another name (wrong name)".into(),
        E::NotValidForNameContext { expected, .. } => format!(
            "the server's certificate is not valid for {} (wrong name)",
            expected.to_str()
        ),
        E::UnknownIssuer => "the server's certificate has an unknown issuer: no trusted CA \
                             signed it (--ca-file names a private CA)"
            .into(),
        E::BadSignature => "the server's certificate has a bad signature".into(),
        E::Revoked => "the server's certificate is revoked".into(),
        other => format!("the server's certificate is not valid: {other}"),
    };
    format!("TLS: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(insecure_plain_http: bool) -> TlsArgs {
        TlsArgs {
            insecure_plain_http,
            ..TlsArgs::default()
        }
    }

    #[test]
    fn plain_http_is_the_default_on_loopback_only() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:0".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:443".parse().unwrap();
        for listen in [loopback, v6_loopback] {
            let transport = plain(false).transport(listen, None).unwrap();
            assert_eq!(transport.scheme(), "http");
        }
        let refused = plain(false).transport(public, None).err().unwrap();
        assert!(refused.contains("--insecure-plain-http"), "{refused}");
        let allowed = plain(true).transport(public, None).unwrap();
        assert_eq!(allowed.scheme(), "http");
    }

    #[test]
    fn a_client_ca_needs_a_certificate_of_the_server() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let refused = plain(false)
            .transport(loopback, Some(Path::new("ca.pem")))
            .err()
            .unwrap();
        assert!(
            refused.contains("--client-ca needs --tls-cert"),
            "{refused}"
        );
    }

    #[test]
    fn certificate_errors_are_named() {
        use rustls::CertificateError as E;
        let named = |e: E| explain(&rustls::Error::InvalidCertificate(e));
        assert!(named(E::Expired).contains("expired"));
        assert!(named(E::NotValidForName).contains("wrong name"));
        assert!(named(E::UnknownIssuer).contains("unknown issuer"));
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(E::UnknownIssuer),
        );
        let reason = certificate_error(&wrapped).unwrap();
        assert!(reason.contains("unknown issuer"), "{reason}");
        assert_eq!(certificate_error(&std::io::Error::other("reset")), None);
    }
}
