//! The open-loop schedule for `--rate`.
//!
//! Request `i` carries events `i·B ..` (B = 1 for unary calls) and is due
//! when its first event is, at `i·B / R` seconds after the start, whatever
//! happened to the requests before it. A slow answer therefore never delays
//! later sends (the mistake called coordinated omission): when the workers
//! fall behind, a request goes out late and its latency is counted from
//! when it was due, so the queueing a real client would have suffered is in
//! the figures. Without `--rate` nothing is scheduled and latency is counted
//! from the send.

use std::time::Duration;

/// When requests are due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Events per request.
    batch: usize,
    /// Target events per second; `None` is flat out.
    rate: Option<f64>,
}

impl Schedule {
    /// A schedule of requests of `batch` events at `rate` events/s, or flat
    /// out. `rate` must be positive and finite (the command line checks).
    pub fn new(batch: usize, rate: Option<f64>) -> Self {
        Self { batch, rate }
    }

    /// How long after the start request `request` is due; `None` when
    /// running flat out. Computed from the index alone, so rounding never
    /// accumulates and a late request never moves the next one.
    pub fn due(&self, request: usize) -> Option<Duration> {
        let rate = self.rate?;
        let first_event = request as f64 * self.batch as f64;
        Some(Duration::from_secs_f64(first_event / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_out_schedules_nothing() {
        let s = Schedule::new(1, None);
        assert_eq!(s.due(0), None);
        assert_eq!(s.due(12345), None);
    }

    #[test]
    fn unary_requests_are_spaced_by_one_over_the_rate() {
        let s = Schedule::new(1, Some(1000.0));
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(1), Some(Duration::from_millis(1)));
        assert_eq!(s.due(2500), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn a_batch_is_due_when_its_first_event_is() {
        // 10,000 events/s in batches of 100: one batch every 10 ms.
        let s = Schedule::new(100, Some(10_000.0));
        assert_eq!(s.due(1), Some(Duration::from_millis(10)));
        assert_eq!(s.due(5), Some(Duration::from_millis(50)));
    }

    #[test]
    fn long_runs_do_not_drift() {
        // Ten million events at 30,000/s: the last is due at exactly
        // (10^7 - 1)/30,000 s, to the microsecond; summing a rounded
        // interval would be off by milliseconds by then.
        let s = Schedule::new(1, Some(30_000.0));
        let due = s.due(9_999_999).unwrap();
        let exact = Duration::from_nanos(333_333_300_000);
        let error = due.abs_diff(exact);
        assert!(error < Duration::from_micros(1), "{due:?} vs {exact:?}");
        // And the schedule is monotonic: no request is due before its
        // predecessor.
        assert!((1..10_000).all(|i| s.due(i) > s.due(i - 1)));
    }
}
