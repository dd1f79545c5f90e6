//! Latency percentiles, weighted by events.
//!
//! A batch's latency belongs to every event it acknowledged, so a sample is
//! a latency with a weight (1 for a unary call, the number of acknowledged
//! events for a batch). Storing one weighted sample per request rather than
//! one per event keeps a ten-million-event batched run at one sample per
//! batch. Percentiles use the nearest-rank method on the samples sorted by
//! latency: the p-th percentile is the smallest latency such that at least
//! p% of the events took at most that long. No interpolation, so every
//! reported figure is a latency that was actually observed.

use std::time::Duration;

/// Event-weighted latency samples from one or more workers.
#[derive(Debug, Default)]
pub struct Latencies {
    samples: Vec<(Duration, u64)>,
}

/// The figures reported for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest acknowledged event.
    pub max: Duration,
}

impl Latencies {
    /// Records that `events` events were acknowledged `latency` after their
    /// request was sent (or was due, when paced). Zero events record nothing.
    pub fn record(&mut self, latency: Duration, events: u64) {
        if events > 0 {
            self.samples.push((latency, events));
        }
    }

    /// Adds another worker's samples.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// The percentiles, or `None` when nothing was acknowledged.
    pub fn summary(mut self) -> Option<Summary> {
        self.samples.sort_unstable_by_key(|&(latency, _)| latency);
        let total: u64 = self.samples.iter().map(|&(_, weight)| weight).sum();
        let max = self.samples.last()?.0;
        let at = |per_mille| percentile(&self.samples, total, per_mille);
        Some(Summary {
            p50: at(500),
            p90: at(900),
            p99: at(990),
            max,
        })
    }
}

/// The nearest-rank percentile `per_mille`/1000 of `sorted` (ascending by
/// latency, weights summing to `total` > 0). Per mille in integers, so that
/// p90 of 100 events is rank 90 exactly, not a float rounding away from it.
fn percentile(sorted: &[(Duration, u64)], total: u64, per_mille: u64) -> Duration {
    let rank = (per_mille * total).div_ceil(1000).max(1);
    let mut seen = 0;
    for &(latency, weight) in sorted {
        seen += weight;
        if seen >= rank {
            return latency;
        }
    }
    sorted
        .last()
        .map_or(Duration::ZERO, |&(latency, _)| latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_to_a_hundred_gives_the_textbook_ranks() {
        let mut l = Latencies::default();
        // Recorded out of order: the summary must sort.
        for n in (1..=100).rev() {
            l.record(ms(n), 1);
        }
        let s = l.summary().unwrap();
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max),
            (ms(50), ms(90), ms(99), ms(100))
        );
    }

    #[test]
    fn a_batch_counts_once_per_event() {
        // 98 fast events in one batch and 2 slow unary calls: 2% are slow,
        // so p99 is slow; with 99 fast events, 1% is slow and p99 is fast.
        let mut l = Latencies::default();
        l.record(ms(1), 98);
        l.record(ms(100), 1);
        l.record(ms(100), 1);
        let s = l.summary().unwrap();
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max),
            (ms(1), ms(1), ms(100), ms(100))
        );

        let mut l = Latencies::default();
        l.record(ms(1), 99);
        l.record(ms(100), 1);
        let s = l.summary().unwrap();
        assert_eq!((s.p99, s.max), (ms(1), ms(100)));
    }

    #[test]
    fn weighted_samples_equal_the_expanded_list() {
        let weighted = [(7, 3), (2, 5), (9, 1), (4, 11), (1, 2)];
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for (latency, weight) in weighted {
            a.record(ms(latency), weight);
            for _ in 0..weight {
                b.record(ms(latency), 1);
            }
        }
        assert_eq!(a.summary(), b.summary());
    }

    #[test]
    fn merging_workers_and_edge_cases() {
        assert_eq!(Latencies::default().summary(), None);
        let mut empty = Latencies::default();
        empty.record(ms(5), 0);
        assert_eq!(
            empty.summary(),
            None,
            "zero acknowledged events is no sample"
        );

        let mut a = Latencies::default();
        a.record(ms(3), 1);
        let mut b = Latencies::default();
        b.record(ms(8), 1);
        a.merge(b);
        let s = a.summary().unwrap();
        assert_eq!((s.p50, s.p99, s.max), (ms(3), ms(8), ms(8)));
    }
}
