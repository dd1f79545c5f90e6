//! Pushback for peers that keep sending garbage.
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

/// Most peers remembered at once. Records of peers that are neither
/// blocked nor recently bad are forgotten first when it is reached, so a
/// flood of addresses cannot grow the table without bound.
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
