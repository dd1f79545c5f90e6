//! Pushback for peers: a rate for every message ([`RateLimiter`]), and a
//! cool-down for peers that keep sending garbage ([`PeerLimiter`]).
//!
//! Gossip is open to anyone who can reach the port, and every checkpoint a
//! peer sends costs a signature check and, if it verifies, requests to the
//! log. A peer that sends `limit` bad messages (unparseable notes, notes
//! whose signature fails, messages over the bounds) within one cool-down
//! period is refused for the next cool-down period; the gRPC side answers
//! it `RESOURCE_EXHAUSTED`, the C2SP-style "retry later". An honest peer
//! that sends one bad message now and then is never blocked, because its
//! count starts over once a cool-down period passes without a bad message.
//!
//! Time is a parameter, so the rules are tested without waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most peers remembered at once, by either limiter. Records of peers
/// that are neither blocked nor recently active are forgotten first when
/// it is reached, so a flood of addresses cannot grow a table without
/// bound.
const MAX_TRACKED: usize = 4096;

/// Bad-message counters and cool-downs, per peer.
#[derive(Debug)]
pub struct PeerLimiter<K> {
    limit: u32,
    cool_down: Duration,
    peers: HashMap<K, Record>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    bad: u32,
    last_bad: Instant,
    blocked_until: Option<Instant>,
}

impl Record {
    fn is_stale(&self, now: Instant, cool_down: Duration) -> bool {
        self.blocked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(self.last_bad) >= cool_down
    }
}

impl<K: Hash + Eq + Clone> PeerLimiter<K> {
    /// Blocks a peer for `cool_down` once it has sent `limit` bad messages.
    pub fn new(limit: u32, cool_down: Duration) -> Self {
        Self {
            limit: limit.max(1),
            cool_down,
            peers: HashMap::new(),
        }
    }

    /// `Err(remaining)` while `peer` is blocked: how long until it may
    /// try again.
    pub fn check(&self, peer: &K, now: Instant) -> Result<(), Duration> {
        match self.peers.get(peer).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts one bad message from `peer`; returns whether that blocked it.
    ///
    /// When the table is full of peers that are blocked or recently bad,
    /// a new peer is not tracked: memory stays bounded, at the price of not
    /// blocking it.
    pub fn record_bad(&mut self, peer: &K, now: Instant) -> bool {
        let cool_down = self.cool_down;
        if self.peers.len() >= MAX_TRACKED && !self.peers.contains_key(peer) {
            self.peers.retain(|_, r| !r.is_stale(now, cool_down));
            if self.peers.len() >= MAX_TRACKED {
                return false;
            }
        }
        let record = self.peers.entry(peer.clone()).or_insert(Record {
            bad: 0,
            last_bad: now,
            blocked_until: None,
        });
        let block_ended = record.blocked_until.is_some_and(|until| until <= now);
        if block_ended || record.is_stale(now, cool_down) {
            record.bad = 0;
            record.blocked_until = None;
        }
        record.bad += 1;
        record.last_bad = now;
        if record.bad >= self.limit && record.blocked_until.is_none() {
            record.blocked_until = Some(now + cool_down);
            return true;
        }
        false
    }

    /// How many bad messages `peer` sent in its current period.
    pub fn bad_count(&self, peer: &K) -> u32 {
        self.peers.get(peer).map_or(0, |r| r.bad)
    }
}

/// A token bucket per peer: every message costs one token, and a peer
/// holds at most `burst` tokens, refilled at `rate` per second. Unlike
/// [`PeerLimiter`], which only counts bad messages, this bounds what any
/// peer may ask, good messages included: a peer repeating genuine
/// checkpoints still costs signature checks.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Whether the last message was refused, so that a throttled peer is
    /// logged once per episode, not once per message.
    refusing: bool,
}

/// A message refused for going over the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRate {
    /// When one token will be there again.
    pub retry_after: Duration,
    /// Whether the message before was allowed: the peer just went over.
    pub first: bool,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` messages per second per peer, after a first `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token from `peer`'s bucket, or says when to retry.
    ///
    /// When [`MAX_TRACKED`] peers have buckets, those whose buckets have
    /// refilled are forgotten (they would start full anyway); if none has,
    /// a new peer is refused: memory stays bounded, and so does the work a
    /// flood of addresses can cause.
    pub fn check(&mut self, peer: &K, now: Instant) -> Result<(), OverRate> {
        let (rate, burst) = (self.rate, self.burst);
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(peer) {
            self.buckets
                .retain(|_, b| refilled(b, rate, burst, now) < burst);
            if self.buckets.len() >= MAX_TRACKED {
                return Err(OverRate {
                    retry_after: Duration::from_secs_f64(1.0 / rate),
                    first: false,
                });
            }
        }
        let bucket = self.buckets.entry(peer.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
            refusing: false,
        });
        bucket.tokens = refilled(bucket, rate, burst, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refusing = false;
            return Ok(());
        }
        let first = !bucket.refusing;
        bucket.refusing = true;
        Err(OverRate {
            retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
            first,
        })
    }
}

/// The tokens `bucket` holds at `now`.
fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL_DOWN: Duration = Duration::from_secs(60);

    #[test]
    fn a_peer_is_blocked_after_the_limit_and_only_then() {
        let mut limiter = PeerLimiter::new(3, COOL_DOWN);
        let t0 = Instant::now();
        assert!(!limiter.record_bad(&"a", t0));
        assert!(!limiter.record_bad(&"a", t0));
        assert_eq!(limiter.check(&"a", t0), Ok(()));
        assert!(limiter.record_bad(&"a", t0));
        assert_eq!(limiter.check(&"a", t0), Err(COOL_DOWN));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            limiter.check(&"a", later),
            Err(COOL_DOWN - Duration::from_secs(10))
        );
    }

    #[test]
    fn other_peers_are_not_affected() {
        let mut limiter = PeerLimiter::new(1, COOL_DOWN);
        let t0 = Instant::now();
        assert!(limiter.record_bad(&"a", t0));
        assert!(limiter.check(&"a", t0).is_err());
        assert_eq!(limiter.check(&"b", t0), Ok(()));
        assert_eq!(limiter.bad_count(&"b"), 0);
    }

    #[test]
    fn a_block_ends_after_the_cool_down_and_the_count_starts_over() {
        let mut limiter = PeerLimiter::new(2, COOL_DOWN);
        let t0 = Instant::now();
        limiter.record_bad(&"a", t0);
        assert!(limiter.record_bad(&"a", t0));
        let after = t0 + COOL_DOWN;
        assert_eq!(limiter.check(&"a", after), Ok(()));
        assert!(!limiter.record_bad(&"a", after));
        assert_eq!(limiter.bad_count(&"a"), 1);
        assert_eq!(limiter.check(&"a", after), Ok(()));
    }

    #[test]
    fn occasional_bad_messages_never_block() {
        let mut limiter = PeerLimiter::new(2, COOL_DOWN);
        let mut now = Instant::now();
        for _ in 0..10 {
            assert!(!limiter.record_bad(&"a", now));
            assert_eq!(limiter.check(&"a", now), Ok(()));
            now += COOL_DOWN;
        }
    }

    #[test]
    fn bad_messages_while_blocked_do_not_extend_the_block() {
        let mut limiter = PeerLimiter::new(1, COOL_DOWN);
        let t0 = Instant::now();
        assert!(limiter.record_bad(&"a", t0));
        let during = t0 + Duration::from_secs(30);
        assert!(!limiter.record_bad(&"a", during));
        assert_eq!(limiter.check(&"a", t0 + COOL_DOWN), Ok(()));
    }

    #[test]
    fn a_peer_that_goes_on_after_its_block_is_blocked_again() {
        let mut limiter = PeerLimiter::new(2, COOL_DOWN);
        let t0 = Instant::now();
        limiter.record_bad(&"a", t0);
        assert!(limiter.record_bad(&"a", t0));
        let ended = t0 + COOL_DOWN;
        assert!(!limiter.record_bad(&"a", ended));
        assert!(limiter.record_bad(&"a", ended));
        assert_eq!(limiter.check(&"a", ended), Err(COOL_DOWN));
    }

    #[test]
    fn the_table_forgets_quiet_peers_when_full() {
        let mut limiter = PeerLimiter::new(2, COOL_DOWN);
        let t0 = Instant::now();
        for peer in 0..MAX_TRACKED {
            limiter.record_bad(&peer, t0);
        }
        let later = t0 + COOL_DOWN;
        limiter.record_bad(&MAX_TRACKED, later);
        assert_eq!(limiter.peers.len(), 1);
        assert_eq!(limiter.bad_count(&MAX_TRACKED), 1);
    }

    #[test]
    fn every_message_takes_a_token_and_the_burst_is_the_most_at_once() {
        let mut limiter = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", t0), Ok(()));
        }
        let over = limiter.check(&"a", t0).unwrap_err();
        assert!(over.first);
        assert_eq!(over.retry_after, Duration::from_millis(500));
        assert!(!limiter.check(&"a", t0).unwrap_err().first, "logged once");
        assert_eq!(limiter.check(&"b", t0), Ok(()), "other peers unaffected");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check(&"a", later), Ok(()));
        assert!(limiter.check(&"a", later).unwrap_err().first);
    }

    #[test]
    fn the_rate_is_kept_over_time_and_idle_time_refills_only_the_burst() {
        let mut limiter = RateLimiter::new(10.0, 5);
        let t0 = Instant::now();
        let mut allowed = 0;
        for step in 0..1000 {
            let now = t0 + Duration::from_millis(step);
            if limiter.check(&"a", now).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5 + 9, "the burst, then 10 per second for 0.999 s");
        let idle = t0 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(limiter.check(&"a", idle), Ok(()));
        }
        assert!(limiter.check(&"a", idle).is_err());
    }

    #[test]
    fn a_full_table_forgets_refilled_buckets_and_refuses_new_peers_otherwise() {
        let mut limiter = RateLimiter::new(1.0, 2);
        let t0 = Instant::now();
        for peer in 0..MAX_TRACKED {
            limiter.check(&peer, t0).unwrap();
        }
        assert!(limiter.check(&MAX_TRACKED, t0).is_err());
        let refilled = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check(&MAX_TRACKED, refilled), Ok(()));
        assert_eq!(limiter.buckets.len(), 1);
    }

    #[test]
    fn the_table_keeps_blocked_peers_when_full() {
        let mut limiter = PeerLimiter::new(1, COOL_DOWN);
        let t0 = Instant::now();
        for peer in 0..MAX_TRACKED {
            limiter.record_bad(&peer, t0);
        }
        let now = t0 + Duration::from_secs(1);
        assert!(!limiter.record_bad(&MAX_TRACKED, now));
        assert_eq!(limiter.peers.len(), MAX_TRACKED);
        assert!(limiter.check(&0, now).is_err());
        assert_eq!(limiter.check(&MAX_TRACKED, now), Ok(()));
    }
}
