//! What admission may cost: budgets per connection and per submitter key.
//!
//! A signature check is the expensive step of admission (~40–65 µs of
//! Ed25519 on this project's machines) and anyone can make the log do one:
//! a submitter's key id is public, so a forger can send any number of
//! well-formed events under it. Budgets, as token buckets:
//!
//! - **failed signature checks per connection and per address**: each
//!   failure costs the connection that sent it, and its peer address (an
//!   IPv6 /64 as one), a token; when either bucket is empty, the
//!   connection's further events are refused with `RESOURCE_EXHAUSTED`
//!   before their signatures are checked. The address's bucket stops a
//!   forger from opening a fresh connection for each fresh budget.
//!   Failures are never charged to the key id they claim, so a forger
//!   cannot spend its owner's budget;
//! - **requests per connection**: every append call;
//! - **events per key**: only events whose signature verified, so only the
//!   key's holder spends it.
//!
//! A refusal says when a retry can succeed. An empty bucket refills at its
//! rate; a full one is indistinguishable from a fresh one, which is what
//! lets [`Budgets`] forget connections without losing anything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::Status;
use verifier::serving::{peer_key, ConnectionId};

/// The budgets' rates and bursts. Every field is a `log-server serve` flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Failed signature checks a connection may cause per second.
    pub failures_per_second: f64,
    /// ... and at once.
    pub failure_burst: f64,
    /// Failed signature checks all connections from one address may
    /// cause per second.
    pub address_failures_per_second: f64,
    /// ... and at once.
    pub address_failure_burst: f64,
    /// Append calls (`Append` or `AppendBatch`) per connection per second.
    pub requests_per_second: f64,
    /// ... and at once.
    pub request_burst: f64,
    /// Events with a valid signature per submitter key per second.
    pub key_events_per_second: f64,
    /// ... and at once.
    pub key_event_burst: f64,
}

impl Default for BudgetConfig {
    /// Generous for honest clients (a batching submitter sends 10,000
    /// events a call; the log appends some 20,000 a second, one call
    /// each when unbatched), tight for forgeries, which honest clients
    /// never send.
    fn default() -> Self {
        Self {
            failures_per_second: 10.0,
            failure_burst: 100.0,
            address_failures_per_second: 50.0,
            address_failure_burst: 500.0,
            requests_per_second: 20_000.0,
            request_burst: 20_000.0,
            key_events_per_second: 50_000.0,
            key_event_burst: 100_000.0,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }

    /// Takes `n` tokens, or says how long until `n` are there.
    fn take(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        if self.tokens >= n {
            self.tokens -= n;
            Ok(())
        } else {
            Err(wait(n.min(burst) - self.tokens, rate))
        }
    }

    fn is_full(&self, burst: f64) -> bool {
        self.tokens >= burst
    }
}

/// How long `missing` tokens take to refill at `rate`.
fn wait(missing: f64, rate: f64) -> Duration {
    Duration::from_secs_f64((missing / rate).clamp(0.001, 3600.0))
}

/// One connection's buckets.
#[derive(Debug, Clone, Copy)]
struct ConnectionBudget {
    failures: Bucket,
    requests: Bucket,
    /// Whether a signature from this connection ever failed. Only such a
    /// connection can be refused for its address's failures, so an honest
    /// client behind the same address as a forger keeps being served.
    failed: bool,
}

/// Connections with budgets remembered before full ones are forgotten.
const PRUNE_AT: usize = 16_384;

/// The log's admission budgets.
#[derive(Debug)]
pub struct Budgets {
    config: BudgetConfig,
    connections: Mutex<HashMap<Option<u64>, ConnectionBudget>>,
    addresses: Mutex<HashMap<IpAddr, Bucket>>,
    keys: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    /// Budgets with `config`'s rates.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            connections: Mutex::default(),
            addresses: Mutex::default(),
            keys: Mutex::default(),
        }
    }

    fn connection<T>(
        &self,
        connection: Option<ConnectionId>,
        f: impl FnOnce(&mut ConnectionBudget, &BudgetConfig, Instant) -> T,
    ) -> T {
        let now = Instant::now();
        let c = &self.config;
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if connections.len() >= PRUNE_AT {
            connections.retain(|_, b| {
                b.failures
                    .refill(c.failures_per_second, c.failure_burst, now);
                b.requests
                    .refill(c.requests_per_second, c.request_burst, now);
                !(b.failures.is_full(c.failure_burst) && b.requests.is_full(c.request_burst))
            });
        }
        let budget = connections
            .entry(connection.map(|c| c.id))
            .or_insert_with(|| ConnectionBudget {
                failures: Bucket::full(c.failure_burst, now),
                requests: Bucket::full(c.request_burst, now),
                failed: false,
            });
        f(budget, c, now)
    }

    /// Charges one append call to `connection`.
    pub fn request(&self, connection: Option<ConnectionId>) -> Result<(), Status> {
        self.connection(connection, |b, c, now| {
            b.requests
                .take(1.0, c.requests_per_second, c.request_burst, now)
        })
        .map_err(|retry| exhausted("requests", "this connection's append calls", retry))
    }

    /// The failure bucket of `connection`'s address, refilled to now.
    fn address<T>(
        &self,
        connection: Option<ConnectionId>,
        f: impl FnOnce(&mut Bucket, &BudgetConfig) -> T,
    ) -> Option<T> {
        let address = peer_key(connection?.peer.ip());
        let now = Instant::now();
        let c = &self.config;
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if addresses.len() >= PRUNE_AT {
            addresses.retain(|_, b| {
                b.refill(c.address_failures_per_second, c.address_failure_burst, now);
                !b.is_full(c.address_failure_burst)
            });
        }
        let bucket = addresses
            .entry(address)
            .or_insert_with(|| Bucket::full(c.address_failure_burst, now));
        bucket.refill(c.address_failures_per_second, c.address_failure_burst, now);
        Some(f(bucket, c))
    }

    /// How many failed signature checks `connection` may still cause now:
    /// the lesser of its own and its address's budget, except that a
    /// connection that never failed may always try one (its checks stop at
    /// its first failure). Zero is a refusal saying when to retry.
    pub fn failures_allowed(&self, connection: Option<ConnectionId>) -> Result<u64, Status> {
        let by_address = self.address(connection, |b, c| {
            if b.tokens >= 1.0 {
                Ok(b.tokens as u64)
            } else {
                Err(wait(1.0 - b.tokens, c.address_failures_per_second))
            }
        });
        let (by_connection, failed) = self.connection(connection, |b, c, now| {
            b.failures
                .refill(c.failures_per_second, c.failure_burst, now);
            let allowed = if b.failures.tokens >= 1.0 {
                Ok(b.failures.tokens as u64)
            } else {
                Err(wait(1.0 - b.failures.tokens, c.failures_per_second))
            };
            (allowed, b.failed)
        });
        let by_connection = by_connection.map_err(failures_exhausted)?;
        match by_address {
            None => Ok(by_connection),
            Some(Ok(by_address)) => Ok(by_address.min(by_connection)),
            Some(Err(_)) if !failed => Ok(1),
            Some(Err(retry)) => Err(failures_exhausted(retry)),
        }
    }

    /// Charges `count` failed signature checks to `connection` and its
    /// address.
    pub fn charge_failures(&self, connection: Option<ConnectionId>, count: u64) {
        if count == 0 {
            return;
        }
        self.address(connection, |b, _| {
            b.tokens = (b.tokens - count as f64).max(0.0);
        });
        self.connection(connection, |b, c, now| {
            b.failures
                .refill(c.failures_per_second, c.failure_burst, now);
            b.failures.tokens = (b.failures.tokens - count as f64).max(0.0);
            b.failed = true;
        });
    }

    /// Charges `count` verified events to the key `key_id`.
    pub fn charge_key(&self, key_id: &str, count: u64) -> Result<(), Status> {
        let c = &self.config;
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = keys
            .entry(key_id.to_owned())
            .or_insert_with(|| Bucket::full(c.key_event_burst, now));
        bucket
            .take(
                count as f64,
                c.key_events_per_second,
                c.key_event_burst,
                now,
            )
            .map_err(|retry| exhausted("key_id", &format!("key {key_id}'s events"), retry))
    }
}

/// The refusal for a connection out of failed-signature budget.
pub fn failures_exhausted(retry: Duration) -> Status {
    exhausted(
        "signature",
        "this connection's failed signature checks",
        retry,
    )
}

/// `RESOURCE_EXHAUSTED` naming the field and budget, with when to retry
/// in the message and in `retry-after-ms` metadata.
fn exhausted(field: &str, budget: &str, retry: Duration) -> Status {
    let millis = retry.as_millis().max(1);
    let mut status = Status::resource_exhausted(format!(
        "{field}: the budget of {budget} is spent; retry after {millis} ms"
    ));
    if let Ok(value) = millis.to_string().parse() {
        status.metadata_mut().insert("retry-after-ms", value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: u64) -> Option<ConnectionId> {
        Some(ConnectionId {
            id,
            peer: "127.0.0.1:1".parse().unwrap(),
        })
    }

    fn tight() -> Budgets {
        Budgets::new(BudgetConfig {
            failures_per_second: 0.001,
            failure_burst: 3.0,
            address_failures_per_second: 0.001,
            address_failure_burst: 5.0,
            requests_per_second: 0.001,
            request_burst: 2.0,
            key_events_per_second: 0.001,
            key_event_burst: 5.0,
        })
    }

    #[test]
    fn failures_are_charged_to_their_connection_only() {
        let budgets = tight();
        assert_eq!(budgets.failures_allowed(connection(1)).unwrap(), 3);
        budgets.charge_failures(connection(1), 3);
        let refusal = budgets.failures_allowed(connection(1)).unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
        assert!(refusal.message().starts_with("signature: "), "{refusal:?}");
        assert!(refusal.metadata().get("retry-after-ms").is_some());
        let elsewhere = Some(ConnectionId {
            id: 2,
            peer: "192.0.2.1:1".parse().unwrap(),
        });
        assert_eq!(budgets.failures_allowed(elsewhere).unwrap(), 3);
    }

    #[test]
    fn fresh_connections_from_one_address_share_its_failure_budget() {
        let budgets = tight();
        budgets.charge_failures(connection(1), 3);
        assert_eq!(budgets.failures_allowed(connection(2)).unwrap(), 2);
        budgets.charge_failures(connection(2), 2);
        assert!(budgets.failures_allowed(connection(2)).is_err());
        // A connection from the spent address that never failed may try
        // one check: an honest neighbour is served, a forger pays a new
        // connection for each forgery.
        assert_eq!(budgets.failures_allowed(connection(3)).unwrap(), 1);
        budgets.charge_failures(connection(3), 1);
        assert!(budgets.failures_allowed(connection(3)).is_err());
        let elsewhere = Some(ConnectionId {
            id: 4,
            peer: "192.0.2.1:1".parse().unwrap(),
        });
        assert_eq!(budgets.failures_allowed(elsewhere).unwrap(), 3);
    }

    #[test]
    fn requests_and_key_events_run_out_and_say_when_to_retry() {
        let budgets = tight();
        budgets.request(connection(1)).unwrap();
        budgets.request(connection(1)).unwrap();
        let refusal = budgets.request(connection(1)).unwrap_err();
        assert!(refusal.message().contains("retry after"), "{refusal:?}");
        budgets.request(connection(2)).unwrap();

        budgets.charge_key("alice+00000001", 5).unwrap();
        assert!(budgets.charge_key("alice+00000001", 1).is_err());
        budgets.charge_key("bob+00000002", 5).unwrap();
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let now = Instant::now();
        let mut bucket = Bucket::full(10.0, now);
        bucket.take(10.0, 5.0, 10.0, now).unwrap();
        let retry = bucket.take(5.0, 5.0, 10.0, now).unwrap_err();
        assert_eq!(retry, Duration::from_secs(1));
        bucket
            .take(5.0, 5.0, 10.0, now + Duration::from_secs(1))
            .unwrap();
        bucket.refill(5.0, 10.0, now + Duration::from_secs(100));
        assert!(
            bucket.is_full(10.0),
            "a bucket never holds more than its burst"
        );
    }

    #[test]
    fn forgotten_connections_lose_nothing() {
        let budgets = Budgets::new(BudgetConfig::default());
        for id in 0..PRUNE_AT as u64 {
            budgets.request(connection(id)).unwrap();
        }
        budgets.charge_failures(connection(u64::MAX), 100);
        budgets.request(connection(PRUNE_AT as u64)).unwrap();
        let remembered = budgets.connections.lock().unwrap().len();
        assert!(remembered < PRUNE_AT, "{remembered} connections remembered");
        assert!(
            budgets.failures_allowed(connection(u64::MAX)).is_err(),
            "a connection that spent its budget is not forgotten"
        );
    }
}
