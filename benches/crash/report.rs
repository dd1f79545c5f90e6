//! What a crash run reports: the kills and counts of a run that passed
//! every check, or the step that failed and what was seen instead.

use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

/// One kill and the start that followed it.
#[derive(Debug, Clone)]
pub struct KillRecord {
    /// The acknowledgements received before the kill.
    pub acknowledged_before: u64,
    /// The new acknowledgements the driver waited for before this kill.
    pub waited_for: u64,
    /// The tree size the server restarted with.
    pub restarted_size: u64,
    /// From spawning the process to its `listening on` line.
    pub restart_time: Duration,
    /// How long the checks after the restart took.
    pub check_time: Duration,
}

/// What a successful run saw.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// The seed, for reproducing the kill points and the call mix.
    pub seed: u64,
    /// The storage backend.
    pub storage: String,
    /// The kills, in order.
    pub kills: Vec<KillRecord>,
    /// The events sent, all of them appended and acknowledged.
    pub events: u64,
    /// The configured events left unsent when the load wound down.
    pub unsent: u64,
    /// The log's final tree size.
    pub final_size: u64,
    /// Events sent again after a kill cost them their answer.
    pub resubmitted: u64,
    /// Resubmitted events answered `duplicate` with their original index:
    /// the first attempt had landed before the kill.
    pub duplicates: u64,
    /// Unary `Append` calls answered.
    pub unary_calls: u64,
    /// `AppendBatch` calls answered.
    pub batch_calls: u64,
    /// Events pushed back with `RESOURCE_EXHAUSTED` and retried.
    pub pushbacks: u64,
    /// Distinct signed checkpoints handed out in answers or at restarts.
    pub checkpoints: usize,
    /// The whole run.
    pub elapsed: Duration,
}

impl CrashReport {
    /// The median and the longest time from spawning a restart to its
    /// `listening on` line.
    fn restart_times(&self) -> (Duration, Duration) {
        let mut restarts: Vec<Duration> = self.kills.iter().map(|k| k.restart_time).collect();
        restarts.sort_unstable();
        let median = restarts
            .get(restarts.len() / 2)
            .copied()
            .unwrap_or_default();
        (median, restarts.last().copied().unwrap_or_default())
    }

    /// The time spent checking restarts, all kills together.
    fn check_time(&self) -> Duration {
        self.kills.iter().map(|k| k.check_time).sum()
    }

    /// The report as one JSON object, for `loadgen crash --json`: the
    /// counts, the timings in seconds, and every kill point.
    pub fn json(&self) -> Value {
        let (median, max) = self.restart_times();
        let kills: Vec<Value> = self
            .kills
            .iter()
            .map(|k| {
                json!({
                    "acknowledged_before": k.acknowledged_before,
                    "waited_for": k.waited_for,
                    "restarted_size": k.restarted_size,
                    "restart_seconds": k.restart_time.as_secs_f64(),
                    "check_seconds": k.check_time.as_secs_f64(),
                })
            })
            .collect();
        json!({
            "storage": self.storage,
            "seed": format!("{:#x}", self.seed),
            "sigkills": self.kills.len(),
            "starts": self.kills.len() + 1,
            "events_acknowledged": self.events,
            "events_unsent": self.unsent,
            "final_size": self.final_size,
            "resubmitted": self.resubmitted,
            "duplicates": self.duplicates,
            "unary_calls": self.unary_calls,
            "batch_calls": self.batch_calls,
            "pushbacks": self.pushbacks,
            "checkpoints_handed_out": self.checkpoints,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "checking_seconds": self.check_time().as_secs_f64(),
            "restart_seconds": {"median": median.as_secs_f64(), "max": max.as_secs_f64()},
            "kills": kills,
        })
    }
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (median, max) = self.restart_times();
        let checking = self.check_time();
        writeln!(
            f,
            "crash test on {} (seed {:#x}): {} SIGKILLs, {} starts, all checked, in {:.1?}",
            self.storage,
            self.seed,
            self.kills.len(),
            self.kills.len() + 1,
            self.elapsed
        )?;
        writeln!(
            f,
            "  {} events acknowledged ({} unary calls, {} batch calls, {} events left unsent); \
             final tree size {}",
            self.events, self.unary_calls, self.batch_calls, self.unsent, self.final_size
        )?;
        writeln!(
            f,
            "  {} events resubmitted after a lost answer, {} of them answered as duplicates; \
             {} pushbacks",
            self.resubmitted, self.duplicates, self.pushbacks
        )?;
        writeln!(
            f,
            "  {} distinct checkpoints handed out, each proven consistent after every restart; \
             {checking:.1?} spent checking",
            self.checkpoints
        )?;
        write!(
            f,
            "  restart to listening: median {median:.1?}, max {max:.1?}; kills after \
             {:?} acknowledgements",
            self.kills
                .iter()
                .map(|k| k.acknowledged_before)
                .collect::<Vec<_>>()
        )
    }
}

/// Why a run failed: which step, and what was seen instead.
#[derive(Debug, Clone)]
pub struct CrashError {
    /// The seed of the failed run.
    pub seed: u64,
    /// The storage backend.
    pub storage: String,
    /// Where in the run it failed, for example `after kill 7 of 20`.
    pub phase: String,
    /// What was seen: its first line says what went wrong, any further
    /// lines are the evidence (a signed note, the server's last stderr
    /// lines).
    pub message: String,
}

impl CrashError {
    /// The failure in one line (run, step, what went wrong), without the
    /// evidence that follows it in the full text: for a command line's
    /// last word, where the full text goes before it.
    pub fn reason(&self) -> String {
        let first = self.message.lines().next().unwrap_or_default();
        let first = first.strip_suffix(':').unwrap_or(first);
        format!(
            "crash test on {} (seed {:#x}) failed {}: {first}",
            self.storage, self.seed, self.phase
        )
    }
}

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash test on {} (seed {:#x}) failed {}: {}",
            self.storage, self.seed, self.phase, self.message
        )
    }
}

impl std::error::Error for CrashError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_first_line_without_the_evidence() {
        let error = CrashError {
            seed: 0x2a,
            storage: "redb".into(),
            phase: "after kill 3 of 20".into(),
            message: "index 7 holds event 9, not event 4:\n--- stderr:\npanic".into(),
        };
        assert_eq!(
            error.reason(),
            "crash test on redb (seed 0x2a) failed after kill 3 of 20: index 7 holds event 9, \
             not event 4"
        );
        assert!(error.to_string().ends_with("--- stderr:\npanic"));
    }
}
