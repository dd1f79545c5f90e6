//! One bounded HTTP server for every listener of the project: the log's
//! port (gRPC and tiles), the witness and the monitor's gossip port.
//!
//! `axum::serve` and tonic's server leave a public port open to anyone
//! who connects and then does nothing, or sends a header a byte at a
//! time: no server ever closes such a connection, and at the file limit
//! honest clients are turned away. This accept loop bounds each resource
//! a client can hold:
//!
//! - **connections**: at most [`Limits::max_connections`], kept below the
//!   process's file limit; past it a new connection is closed at once and
//!   counted, while open connections keep being served;
//! - **silence**: a connection must send its first byte (and finish any
//!   handshake, TLS included) within the header timeout;
//! - **slow headers**: HTTP/1 request headers must arrive within the
//!   header timeout (hyper's, which starts at the first byte of a
//!   connection's first request, and at once for each later one);
//! - **idleness**: a connection with no request in flight for the idle
//!   timeout is closed (HTTP/2 with GOAWAY);
//! - **dead peers**: HTTP/2 keep-alive pings, unanswered within their
//!   timeout, close the connection;
//! - **streams**: at most [`Limits::max_streams`] concurrent requests per
//!   HTTP/2 connection;
//! - **time**: every request, its response body included, ends at the
//!   request deadline (a gRPC call with `DEADLINE_EXCEEDED`).
//!
//! The connection's transport is made by a [`Handshake`], so TLS plugs in
//! without touching the limits. Shutdown: stop accepting, ask every
//! connection to finish (GOAWAY, or close after the current HTTP/1
//! response), wait up to the grace period, then drop what is left.

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Files kept free below the process's limit for storage, logs and
/// outgoing connections (witness requests, proof fetches).
const RESERVED_FILES: usize = 128;

/// What one connection and one request may hold. Every field is a flag of
/// the servers that use it (see [`LimitArgs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; more are closed as soon as accepted.
    pub max_connections: usize,
    /// From accepting a connection to its first byte (and the end of its
    /// handshake), and from a request's first byte to the end of its
    /// HTTP/1 headers.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// How long one request may take, its response body included.
    pub request_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, and how long the answer
    /// may take before the connection is closed.
    pub keepalive_interval: Duration,
    /// See [`Limits::keepalive_interval`].
    pub keepalive_timeout: Duration,
    /// Concurrent requests (HTTP/2 streams) per connection.
    pub max_streams: u32,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// Defaults for a public server.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_streams: 100,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The limits as command-line flags, shared by `log-server serve`,
/// `verifier witness` and `verifier monitor`. Durations are written `500ms`,
/// `10s` or `2m`.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Open connections at most; beyond it new connections are closed and
    /// counted. Lowered to the file limit less 128 if that is smaller.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Time allowed for a connection's first byte and for a request's
    /// headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Every request, its response included, ends by this deadline.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,
    /// An HTTP/2 ping unanswered this long closes the connection.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// Concurrent requests (HTTP/2 streams) per connection.
    #[arg(long, default_value_t = Limits::default().max_streams)]
    pub max_streams: u32,
}

impl LimitArgs {
    /// The limits these flags ask for, with the connection cap lowered
    /// below the process's file limit.
    pub fn limits(&self) -> Limits {
        let max_connections = match open_files_limit() {
            Some(files) => self
                .max_connections
                .min(files.saturating_sub(RESERVED_FILES).max(1)),
            None => self.max_connections,
        };
        Limits {
            max_connections,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_streams: self.max_streams,
            shutdown_grace: Limits::default().shutdown_grace,
        }
    }
}

/// Parses `500ms`, `10s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 2m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(duration)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None`
/// where it cannot be read or is unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Turns an accepted TCP connection into the transport HTTP runs over:
/// the connection itself ([`Plain`]), or a TLS session.
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The transport.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Completes the handshake; the caller bounds it by the header timeout.
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain TCP: HTTP/1.1 and HTTP/2 with prior knowledge (what gRPC clients
/// use without TLS).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Which connection a request arrived on, in every request's extensions:
/// budgets charge the connection, not what the request claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    /// Unique for the life of the server.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// The address a peer's budgets and caps are counted under: an IPv4
/// address, or the /64 an IPv6 address is in (one host usually holds a
/// whole /64, so it cannot pick a fresh address for each connection or
/// message). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn peer_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
    }
}

/// What a running server counts, for logs, tests and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed for sending nothing, or not finishing their
    /// handshake, within the header timeout.
    pub silent: AtomicU64,
    /// Connections closed for having no request in flight for the idle
    /// timeout.
    pub idle: AtomicU64,
    /// Requests ended by the request deadline.
    pub timed_out: AtomicU64,
}

/// A bound listener, ready to serve.
pub struct Server<H: Handshake = Plain> {
    listener: TcpListener,
    handshake: H,
    limits: Limits,
    counters: Arc<Counters>,
}

impl Server<Plain> {
    /// A plain-TCP server on `listener`.
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Self::with_handshake(listener, Plain, limits)
    }
}

impl<H: Handshake> Server<H> {
    /// A server whose connections go through `handshake` first.
    pub fn with_handshake(listener: TcpListener, handshake: H, limits: Limits) -> Self {
        Self {
            listener,
            handshake,
            limits,
            counters: Arc::default(),
        }
    }

    /// The server's counters, shared with the running server.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Serves `router` until `shutdown` resolves, then drains as the
    /// module's documentation says.
    pub async fn serve(self, router: axum::Router, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            handshake,
            limits,
            counters,
        } = self;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut next_id = 0u64;
        let mut refusals = RefusalLog::default();
        let local = listener.local_addr().ok();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                refusals.note(&counters, limits.max_connections);
                drop(tcp);
                continue;
            };
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            refusals.accepted(&counters);
            // Small gRPC answers must not wait for Nagle's algorithm to
            // meet the client's delayed ACK: ~40 ms a round trip.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            next_id += 1;
            let connection = Connection {
                id: ConnectionId { id: next_id, peer },
                local,
                limits,
                counters: Arc::clone(&counters),
            };
            let (handshake, router, stop) = (handshake.clone(), router.clone(), stop_rx.clone());
            connections.spawn(async move {
                connection.run(tcp, handshake, router, stop).await;
                drop(slot);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(limits.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "closing connections still open after the shutdown grace period"
            );
            connections.abort_all();
        }
    }
}

/// An accept error: per-connection ones (the peer reset before accept)
/// are ignored; running out of files backs off briefly instead of
/// spinning, since nothing can be accepted until a connection closes.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %error, "accept failed; pausing for 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Logs refused connections at most once a second while they go on, and
/// once more with the total when a connection is accepted again, so a
/// flood cannot flood the log too and no refusal goes uncounted.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unreported: bool,
}

impl RefusalLog {
    fn note(&mut self, counters: &Counters, cap: usize) {
        let now = Instant::now();
        self.unreported = true;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(now);
        self.unreported = false;
        tracing::warn!(
            refused = counters.refused.load(Ordering::Relaxed),
            cap,
            "connection cap reached: refusing new connections"
        );
    }

    fn accepted(&mut self, counters: &Counters) {
        if std::mem::take(&mut self.unreported) {
            tracing::warn!(
                refused = counters.refused.load(Ordering::Relaxed),
                "accepting again; connections refused at the cap so far"
            );
        }
    }
}

/// One accepted connection and what it may hold.
struct Connection {
    id: ConnectionId,
    local: Option<SocketAddr>,
    limits: Limits,
    counters: Arc<Counters>,
}

impl Connection {
    async fn run<H: Handshake>(
        self,
        tcp: TcpStream,
        handshake: H,
        router: axum::Router,
        mut stop: watch::Receiver<bool>,
    ) {
        let limits = self.limits;
        // The first byte and the handshake share one deadline. A silent
        // connection is counted before it is closed.
        let deadline = Instant::now() + limits.header_timeout;
        let io = match tokio::time::timeout_at(deadline, first_byte(&tcp)).await {
            Ok(Ok(())) => tokio::time::timeout_at(deadline, handshake.handshake(tcp)).await,
            Ok(Err(e)) => Ok(Err(e)),
            Err(elapsed) => Err(elapsed),
        };
        let io = match io {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.id.peer, error = %e, "connection closed before a request");
                return;
            }
            Err(_) => {
                self.counters.silent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.id.peer, "closed a silent connection");
                return;
            }
        };
        let activity = Arc::new(Activity::new());
        let service = Bounded {
            router,
            activity: Arc::clone(&activity),
            connection: self.id,
            local: self.local,
            limits,
            counters: Arc::clone(&self.counters),
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout)
            .max_concurrent_streams(limits.max_streams)
            .max_header_list_size(16 * 1024)
            .max_send_buf_size(64 * 1024);
        let connection = builder.serve_connection(
            TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(service),
        );
        tokio::pin!(connection);
        let finished = tokio::select! {
            served = connection.as_mut() => Some(served),
            () = activity.idle(limits.idle_timeout) => {
                self.counters.idle.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %self.id.peer, "closing an idle connection");
                None
            }
            _ = stop.wait_for(|stopping| *stopping) => None,
        };
        let served = match finished {
            Some(served) => served,
            None => {
                connection.as_mut().graceful_shutdown();
                match tokio::time::timeout(limits.shutdown_grace, connection).await {
                    Ok(served) => served,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = served {
            tracing::debug!(peer = %self.id.peer, error = %e, "connection ended with an error");
        }
    }
}

/// Waits for the first byte without consuming it; a connection closed
/// before sending anything is an error.
async fn first_byte(tcp: &TcpStream) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    match tcp.peek(&mut byte).await? {
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without sending anything",
        )),
        _ => Ok(()),
    }
}

/// Whether a connection has requests in flight, and since when it has
/// had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let wake = if self.in_flight.load(Ordering::SeqCst) == 0 {
                let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
                if since.elapsed() >= limit {
                    return;
                }
                since + limit
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in flight: until its response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut since = self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// The router behind the connection's limits: tags each request with its
/// connection, tracks it as in flight, and ends it at the deadline.
#[derive(Clone)]
struct Bounded {
    router: axum::Router,
    activity: Arc<Activity>,
    connection: ConnectionId,
    local: Option<SocketAddr>,
    limits: Limits,
    counters: Arc<Counters>,
}

impl tower_service::Service<http::Request<Incoming>> for Bounded {
    type Response = http::Response<Deadlined>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let deadline = Instant::now() + self.limits.request_timeout;
        let mut request = request.map(Body::new);
        let extensions = request.extensions_mut();
        extensions.insert(self.connection);
        extensions.insert(axum::extract::ConnectInfo(self.connection.peer));
        extensions.insert(tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.connection.peer),
        });
        let grpc = crate::grpc_routes::is_grpc(request.headers());
        let mut router = self.router.clone();
        let counters = Arc::clone(&self.counters);
        Box::pin(async move {
            let response = match tokio::time::timeout_at(deadline, router.call(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    deadline_passed(grpc)
                }
            };
            Ok(response.map(|body| Deadlined {
                body,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                counters,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The answer to a request whose handler missed the deadline: gRPC's
/// `DEADLINE_EXCEEDED`, or HTTP 503.
fn deadline_passed(grpc: bool) -> http::Response<Body> {
    let message = "the request did not finish before the server's deadline";
    let mut response = if grpc {
        tonic::Status::deadline_exceeded(message).into_http()
    } else {
        http::Response::new(Body::from(format!("{message}\n")))
    };
    if !grpc {
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// A response body that ends with an error at the request deadline (the
/// stream is reset), and keeps its request counted as in flight until it
/// is finished or dropped.
pub struct Deadlined {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    counters: Arc<Counters>,
    _in_flight: InFlight,
}

impl HttpBody for Deadlined {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the response did not finish before the server's deadline",
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
///
/// On Unix the handlers are installed when this is called, not when the
/// future is first polled, so a signal sent as soon as `listening on` is
/// printed already means a graceful shutdown rather than the default
/// action, which would kill the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = received(interrupt, "SIGINT") => {},
            () = received(terminate, "SIGTERM") => {},
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// Resolves when `signal` arrives; never, if it cannot be listened for.
#[cfg(unix)]
async fn received(signal: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match signal {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for {name}");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `router` with `limits` on a loopback port until the test
    /// ends; returns the address and the counters.
    async fn spawn(router: axum::Router, limits: Limits) -> (SocketAddr, Arc<Counters>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = Server::new(listener, limits);
        let counters = server.counters();
        tokio::spawn(server.serve(router, std::future::pending()));
        (address, counters)
    }

    /// Sends `request` and reads until the server closes the connection.
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_request_ends_at_its_deadline_whatever_the_handler_does() {
        let router = axum::Router::new().route(
            "/never",
            axum::routing::any(std::future::pending::<&'static str>),
        );
        let limits = Limits {
            request_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (address, counters) = spawn(router, limits).await;
        let answer = exchange(
            address,
            b"GET /never HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("deadline"), "{answer}");
        let grpc = exchange(
            address,
            b"POST /never HTTP/1.1\r\nHost: t\r\nContent-Type: application/grpc\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(grpc.contains("grpc-status: 4"), "DEADLINE_EXCEEDED: {grpc}");
        assert_eq!(counters.timed_out.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn silent_and_idle_connections_are_closed_and_counted() {
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (address, counters) = spawn(router.clone(), limits).await;
        assert_eq!(exchange(address, b"").await, "", "closed without an answer");
        assert_eq!(counters.silent.load(Ordering::Relaxed), 1);

        // Idle: with a long header timeout (which, for HTTP/1 keep-alive,
        // hyper also applies to the wait for the next request), the idle
        // timeout closes the connection after its answer.
        let limits = Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (address, counters) = spawn(router, limits).await;
        let kept_alive = exchange(address, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(kept_alive.starts_with("HTTP/1.1 200"), "{kept_alive}");
        assert_eq!(counters.idle.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_refused_and_counted() {
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let (address, counters) = spawn(router, limits).await;
        let _held = TcpStream::connect(address).await.unwrap();
        // The second connection is accepted by the kernel, then closed by
        // the server without a byte; the first keeps its slot.
        assert_eq!(
            exchange(address, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await,
            ""
        );
        assert_eq!(counters.refused.load(Ordering::Relaxed), 1);
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_peer_is_its_ipv4_address_or_its_ipv6_slash_64() {
        let key = |text: &str| peer_key(text.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn durations_are_parsed_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
