//! Gossip over gRPC (`tlog.v1.Gossip/Exchange`): each call carries the
//! caller's own views and its answer the receiver's, so one call informs
//! both sides, and either side alone can catch a split view.
//!
//! Both directions are untrusted input, bounded the same way: gRPC messages
//! of at most [`MAX_MESSAGE_BYTES`], at most [`intake::MAX_CHECKPOINTS`]
//! notes of at most [`intake::MAX_NOTE_BYTES`] each. A message that breaks the
//! bounds, or holds a note that does not verify, is a bad message; a peer
//! that sends [`BAD_MESSAGES_BEFORE_COOL_DOWN`] of them is left alone for
//! [`COOL_DOWN`]: the server answers it `RESOURCE_EXHAUSTED`, the client
//! stops calling it. Peers are told apart by IP address on the server side
//! (a peer may reconnect from any port; an IPv6 /64, which one host
//! usually holds whole, counts as one address) and by URL on the client
//! side.
//!
//! Every message, good or bad, also costs its sender one token of a
//! bucket per address ([`RateLimiter`]) holding `--gossip-burst` tokens
//! and refilled at `--gossip-rate` per second; a message without a token
//! is answered `RESOURCE_EXHAUSTED` with when to retry, and counted. What
//! the messages carry cannot make the monitor load its logs either: a
//! checkpoint already compared is not compared again (see [`super::follow`]).

use super::intake::{self, MAX_MESSAGE_BYTES};
use super::logs::{Logs, Received};
use super::peers::{PeerLimiter, RateLimiter};
use crate::cli::outcome::Failure;
use crate::proto::gossip_client::GossipClient;
use crate::proto::gossip_server::{Gossip, GossipServer};
use crate::proto::{ExchangeRequest, ExchangeResponse};
use crate::serving::{Limits, Server};
use crate::tls::{ClientTls, Transport};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Bad messages a peer may send within one cool-down period.
pub const BAD_MESSAGES_BEFORE_COOL_DOWN: u32 = 5;
/// How long a peer that sent too many bad messages is left alone.
pub const COOL_DOWN: Duration = Duration::from_secs(60);
/// How long one exchange may take, either side: long enough for the
/// receiver to check what it got against its log.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls one peer connection may have in progress at once.
const CALLS_PER_CONNECTION: u32 = 4;

/// How many gossip messages each peer address may send.
#[derive(Debug, Clone, Copy)]
pub struct GossipRate {
    /// Messages per second, once the burst is spent.
    pub per_second: f64,
    /// Messages at once.
    pub burst: u32,
}

/// The server side of `Exchange`.
pub struct GossipService {
    logs: Arc<Logs>,
    limiter: Mutex<PeerLimiter<IpAddr>>,
    rate: Mutex<RateLimiter<IpAddr>>,
    /// Messages refused for going over the rate, since start.
    over_rate: AtomicU64,
}

impl GossipService {
    /// Answers with the own views of `logs` and checks what callers send,
    /// at most `rate` messages per peer address.
    pub fn new(logs: Arc<Logs>, rate: GossipRate) -> Self {
        Self {
            logs,
            limiter: Mutex::new(PeerLimiter::new(BAD_MESSAGES_BEFORE_COOL_DOWN, COOL_DOWN)),
            rate: Mutex::new(RateLimiter::new(rate.per_second, rate.burst)),
            over_rate: AtomicU64::new(0),
        }
    }

    /// Takes a token for a message from `ip`, or refuses the message.
    fn admit(&self, ip: IpAddr) -> Result<(), Status> {
        let checked = self
            .rate
            .lock()
            .expect("rate lock")
            .check(&ip, Instant::now());
        let Err(over) = checked else {
            return Ok(());
        };
        let refused = self.over_rate.fetch_add(1, Ordering::Relaxed) + 1;
        if over.first {
            tracing::warn!(
                "peer {ip} sends gossip faster than allowed; refusing what goes over \
                 ({refused} messages refused for the rate since start)"
            );
        }
        Err(Status::resource_exhausted(format!(
            "gossip rate exceeded for {ip}; retry in {} ms",
            over.retry_after.as_millis().max(1)
        )))
    }

    fn bad_message(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut limiter = self.limiter.lock().expect("limiter lock");
        if limiter.record_bad(&ip, Instant::now()) {
            tracing::warn!(
                "peer {ip} sent {} bad gossip messages; refusing it for {} s",
                limiter.bad_count(&ip),
                COOL_DOWN.as_secs()
            );
        }
    }
}

#[tonic::async_trait]
impl Gossip for GossipService {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let peer = request.remote_addr();
        let ip = peer.map(|addr| crate::serving::peer_key(addr.ip()));
        if let Some(ip) = ip {
            self.admit(ip)?;
            let blocked = self
                .limiter
                .lock()
                .expect("limiter lock")
                .check(&ip, Instant::now());
            if let Err(wait) = blocked {
                return Err(Status::resource_exhausted(format!(
                    "too many bad gossip messages from {ip}; retry in {} s",
                    wait.as_secs().max(1)
                )));
            }
        }
        let notes = request.into_inner().checkpoints;
        if let Err(reason) = intake::check_bounds(&notes) {
            self.bad_message(ip);
            return Err(Status::invalid_argument(reason));
        }
        let from = peer.map_or_else(|| "a peer".to_owned(), |addr| format!("peer {addr}"));
        let logs = Arc::clone(&self.logs);
        let received = tokio::task::spawn_blocking(move || logs.receive(&notes, &from))
            .await
            .map_err(|e| Status::internal(format!("checking the checkpoints failed: {e}")))?;
        match received {
            Err(reason) => {
                self.bad_message(ip);
                return Err(Status::invalid_argument(reason));
            }
            Ok(Received { rejected }) if rejected > 0 => self.bad_message(ip),
            Ok(_) => {}
        }
        Ok(Response::new(ExchangeResponse {
            checkpoints: self.logs.offer(),
        }))
    }
}

/// Serves `Exchange` on `listener` under `limits` until the process ends.
/// One exchange may take [`EXCHANGE_TIMEOUT`] and a connection may carry
/// [`CALLS_PER_CONNECTION`] at once, whatever the flags say.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: GossipService,
    limits: Limits,
    transport: Transport,
) -> Failure {
    let limits = Limits {
        request_timeout: limits.request_timeout.min(EXCHANGE_TIMEOUT),
        max_streams: limits.max_streams.min(CALLS_PER_CONNECTION),
        ..limits
    };
    let router = tonic::service::Routes::new(
        GossipServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
    .into_axum_router();
    let router = crate::grpc_routes::with_not_found(crate::grpc_routes::calls_only(router));
    Server::with_handshake(listener, transport, limits)
        .serve(router, std::future::pending())
        .await;
    Failure::unchecked("the gossip server stopped")
}

/// The monitors this one calls each round.
pub struct Peers {
    peers: Vec<Peer>,
    limiter: Arc<Mutex<PeerLimiter<String>>>,
}

#[derive(Clone)]
struct Peer {
    url: String,
    client: GossipClient<Channel>,
}

/// How one call of a round ended.
enum Called {
    Answered,
    Failed(String),
    Bad(String),
}

impl Peers {
    /// Parses the `--peer` URLs; connections are made on first use, so a
    /// peer that is not up yet is simply tried again next round. Needs a
    /// Tokio runtime.
    pub fn new(urls: &[String], tls: &ClientTls) -> Result<Self, Failure> {
        let peers = urls
            .iter()
            .map(|url| {
                let url = url.trim_end_matches('/').to_owned();
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Failure::unchecked(format!(
                        "--peer {url}: not an http:// or https:// URL"
                    )));
                }
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| Failure::unchecked(format!("--peer {url}: {e}")))?;
                let channel = tls
                    .endpoint(endpoint)
                    .map_err(|e| Failure::unchecked(format!("--peer {url}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(EXCHANGE_TIMEOUT)
                    .connect_lazy();
                let client = GossipClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                Ok(Peer { url, client })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            peers,
            limiter: Arc::new(Mutex::new(PeerLimiter::new(
                BAD_MESSAGES_BEFORE_COOL_DOWN,
                COOL_DOWN,
            ))),
        })
    }

    /// How many peers there are.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// One round: offers the own views to every peer at once, checks every
    /// answer, and logs `gossip round <number> done` when all are through.
    pub async fn round(&self, logs: &Arc<Logs>, number: u64) {
        let offer = logs.offer();
        let mut calls = tokio::task::JoinSet::new();
        for peer in &self.peers {
            let blocked = self
                .limiter
                .lock()
                .expect("limiter lock")
                .check(&peer.url, Instant::now());
            if blocked.is_err() {
                tracing::debug!("skipping {} while it cools down", peer.url);
                continue;
            }
            let (peer, logs, offer) = (peer.clone(), Arc::clone(logs), offer.clone());
            calls.spawn(async move {
                let called = exchange(&peer, logs, offer).await;
                (peer.url, called)
            });
        }
        let mut answered = 0;
        while let Some(joined) = calls.join_next().await {
            let Ok((url, called)) = joined else { continue };
            match called {
                Called::Answered => answered += 1,
                Called::Failed(reason) => tracing::warn!("gossip with {url} failed: {reason}"),
                Called::Bad(reason) => {
                    answered += 1;
                    tracing::warn!("{url} answered with a bad message: {reason}");
                    let mut limiter = self.limiter.lock().expect("limiter lock");
                    if limiter.record_bad(&url, Instant::now()) {
                        tracing::warn!(
                            "not calling {url} for {} s: too many bad answers",
                            COOL_DOWN.as_secs()
                        );
                    }
                }
            }
        }
        let (unknown, rejected) = logs.counters();
        tracing::info!(
            "gossip round {number} done: {answered} of {} peers answered \
             ({unknown} checkpoints of other logs ignored, {rejected} bad ones dropped since start)",
            self.peers.len()
        );
    }
}

/// One call: offers `offer` to `peer` and checks its answer.
async fn exchange(peer: &Peer, logs: Arc<Logs>, offer: Vec<String>) -> Called {
    let request = ExchangeRequest { checkpoints: offer };
    let answer = match peer.client.clone().exchange(request).await {
        Ok(answer) => answer.into_inner().checkpoints,
        Err(status) => {
            return Called::Failed(format!("{:?}: {}", status.code(), status.message()));
        }
    };
    let from = format!("peer {}", peer.url);
    let received = tokio::task::spawn_blocking(move || logs.receive(&answer, &from)).await;
    match received {
        Ok(Ok(Received { rejected: 0 })) => Called::Answered,
        Ok(Ok(Received { rejected })) => {
            Called::Bad(format!("{rejected} checkpoint(s) that do not verify"))
        }
        Ok(Err(reason)) => Called::Bad(reason),
        Err(e) => Called::Failed(format!("checking the answer failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_one_address_whatever_its_interface_id() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(crate::serving::peer_key(a), crate::serving::peer_key(b));
        assert_eq!(
            crate::serving::peer_key(a),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(crate::serving::peer_key(a), crate::serving::peer_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(crate::serving::peer_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(crate::serving::peer_key(mapped), v4);
    }
}
