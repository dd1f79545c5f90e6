//! The results: a readable summary, or one JSON object with `--json`.

use crate::drive::{Errors, Tally};
use crate::footprint::{Disk, Memory};
use crate::stats::Summary;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The disk-use target: at most this many bytes per entry beyond the
/// entry's own bytes (issue #4).
const OVERHEAD_TARGET: f64 = 100.0;

/// What was run.
#[derive(Debug)]
pub struct Setup {
    /// The log's URL.
    pub log: String,
    /// Events in the workload.
    pub events: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// gRPC connections.
    pub connections: usize,
    /// `AppendBatch` size, or `None` for unary `Append`.
    pub batch: Option<usize>,
    /// Target events per second, or `None` for flat out.
    pub rate: Option<f64>,
    /// Whether answers and entries were verified with the log's key.
    pub verification: bool,
    /// The run's nonce, in every event.
    pub nonce: u64,
    /// How long pre-signing took (before the clock).
    pub signing: Duration,
}

/// The data directory against the entries it holds.
#[derive(Debug)]
pub struct Storage {
    /// The directory measured.
    pub data_dir: PathBuf,
    /// Entries in the log at the end (its checkpoint's size).
    pub tree_size: u64,
    /// The directory's size.
    pub disk: Disk,
    /// The entries' own bytes, as served in the entry bundles.
    pub raw_entry_bytes: u64,
}

impl Storage {
    fn per_entry(&self, bytes: u64) -> Option<f64> {
        (self.tree_size > 0).then(|| bytes as f64 / self.tree_size as f64)
    }

    /// Bytes per entry beyond the entry itself, from the files' lengths
    /// (what `ls -l` shows). The allocated figure is reported beside it: a
    /// store that preallocates or leaves holes makes the two differ.
    fn overhead(&self) -> Option<f64> {
        Some(self.per_entry(self.disk.bytes)? - self.per_entry(self.raw_entry_bytes)?)
    }
}

/// Everything reported.
#[derive(Debug)]
pub struct Report {
    /// What was run.
    pub setup: Setup,
    /// What the workers saw (its latencies already summarised).
    pub tally: Tally,
    /// Latency percentiles, if anything was acknowledged.
    pub latency: Option<Summary>,
    /// From the first send to the last answer.
    pub wall: Duration,
    /// The server's memory, with `--server-pid`.
    pub memory: Option<Result<Memory, String>>,
    /// The disk use, with `--data-dir`.
    pub storage: Option<Storage>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

impl crate::RunReport for Report {
    fn human(&self) -> String {
        Self::human(self)
    }

    fn json(&self) -> Value {
        Self::json(self)
    }

    fn verified(&self) -> bool {
        self.tally.verify_failed == 0
    }
}

impl Report {
    fn failed(&self) -> u64 {
        self.setup.events as u64 - self.tally.appended - self.tally.duplicates
    }

    /// Newly appended events per second of wall time. Duplicates are left
    /// out: the log answers them without writing anything.
    fn throughput(&self) -> f64 {
        self.tally.appended as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The report as one JSON object.
    pub fn json(&self) -> Value {
        let s = &self.setup;
        let errors = |map: &BTreeMap<String, Errors>| -> Value {
            map.iter()
                .map(|(code, e)| {
                    let v = json!({"count": e.count, "events": e.events, "first_message": e.first_message});
                    (code.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let storage = self.storage.as_ref().map(|st| {
            json!({
                "data_dir": st.data_dir.display().to_string(),
                "tree_size": st.tree_size,
                "disk_bytes": st.disk.bytes,
                "disk_allocated_bytes": st.disk.allocated,
                "raw_entry_bytes": st.raw_entry_bytes,
                "disk_bytes_per_entry": st.per_entry(st.disk.bytes),
                "disk_allocated_bytes_per_entry": st.per_entry(st.disk.allocated),
                "raw_entry_bytes_per_entry": st.per_entry(st.raw_entry_bytes),
                "overhead_bytes_per_entry": st.overhead(),
                "overhead_target_bytes_per_entry": OVERHEAD_TARGET,
                "overhead_within_target": st.overhead().map(|o| o <= OVERHEAD_TARGET),
            })
        });
        let memory = self.memory.as_ref().map(|m| match m {
            Ok(m) => json!({"peak_rss_bytes": m.peak_rss, "rss_bytes": m.rss}),
            Err(e) => json!({"error": e}),
        });
        json!({
            "log": s.log,
            "mode": if s.batch.is_some() { "AppendBatch" } else { "Append" },
            "batch": s.batch,
            "concurrency": s.concurrency,
            "connections": s.connections,
            "rate_events_per_second": s.rate,
            "verification": s.verification,
            "nonce": format!("{:016x}", s.nonce),
            "signing_seconds": s.signing.as_secs_f64(),
            "events": s.events,
            "appended": self.tally.appended,
            "duplicates": self.tally.duplicates,
            "failed": self.failed(),
            "wall_seconds": self.wall.as_secs_f64(),
            "throughput_events_per_second": self.throughput(),
            "latency_ms": self.latency.map(|l| json!({
                "p50": ms(l.p50), "p90": ms(l.p90), "p99": ms(l.p99), "max": ms(l.max),
                "from": if s.rate.is_some() { "due time" } else { "send" },
            })),
            "max_schedule_lag_ms": s.rate.map(|_| ms(self.tally.max_lag)),
            "rpc_errors": errors(&self.tally.rpc_errors),
            "event_errors": errors(&self.tally.event_errors),
            "verification_failures": self.tally.verify_failed,
            "verification_failure_examples": self.tally.verify_examples,
            "server_memory": memory,
            "storage": storage,
        })
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let s = &self.setup;
        let mode = match s.batch {
            Some(b) => format!("AppendBatch of {b}"),
            None => "unary Append".into(),
        };
        let pace = match s.rate {
            Some(r) => format!("paced at {r} events/s (open loop)"),
            None => "flat out".into(),
        };
        let mut out = format!(
            "loadgen: {} events to {}, {mode}, {} in flight over {} connections, {pace}\n",
            s.events, s.log, s.concurrency, s.connections
        );
        let t = &self.tally;
        let mut line = |label: &str, text: String| out.push_str(&format!("  {label:<13} {text}\n"));
        line(
            "acknowledged",
            format!(
                "{} appended, {} duplicates, {} failed",
                t.appended,
                t.duplicates,
                self.failed()
            ),
        );
        line("wall time", format!("{:.3} s", self.wall.as_secs_f64()));
        line(
            "throughput",
            format!("{:.0} events/s appended", self.throughput()),
        );
        line(
            "latency",
            match self.latency {
                Some(l) => format!(
                    "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from {} to acknowledgment)",
                    ms(l.p50),
                    ms(l.p90),
                    ms(l.p99),
                    ms(l.max),
                    if s.rate.is_some() { "due time" } else { "send" }
                ),
                None => "nothing acknowledged".into(),
            },
        );
        if s.rate.is_some() {
            line(
                "schedule",
                format!("requests went out at most {:.2} ms late", ms(t.max_lag)),
            );
        }
        let listed = |map: &BTreeMap<String, Errors>, calls: bool| {
            if map.is_empty() {
                return "none".to_owned();
            }
            map.iter()
                .map(|(code, e)| {
                    let calls = if calls {
                        format!("{} calls, ", e.count)
                    } else {
                        String::new()
                    };
                    format!(
                        "{code}: {calls}{} events (first: {})",
                        e.events, e.first_message
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        line("errors", listed(&t.rpc_errors, true));
        if s.batch.is_some() {
            line("event errors", listed(&t.event_errors, false));
        }
        match &self.memory {
            Some(Ok(m)) => line(
                "server memory",
                format!(
                    "peak RSS {:.1} MiB (VmHWM), now {:.1} MiB (VmRSS)",
                    mib(m.peak_rss),
                    mib(m.rss)
                ),
            ),
            Some(Err(e)) => line("server memory", format!("unavailable: {e}")),
            None => {}
        }
        if let Some(st) = &self.storage {
            let per = |bytes| {
                st.per_entry(bytes)
                    .map_or("-".into(), |b| format!("{b:.1}"))
            };
            line(
                "disk",
                format!(
                    "{} bytes in {} for {} entries: {} bytes/entry ({} allocated on disk)",
                    st.disk.bytes,
                    st.data_dir.display(),
                    st.tree_size,
                    per(st.disk.bytes),
                    per(st.disk.allocated)
                ),
            );
            let verdict = st.overhead().map_or("-".into(), |o| {
                let met = if o <= OVERHEAD_TARGET {
                    "met"
                } else {
                    "missed"
                };
                format!("{o:.1} bytes/entry beyond the entry (target ≤ {OVERHEAD_TARGET}: {met})")
            });
            line(
                "entries",
                format!("{} raw bytes/entry; {verdict}", per(st.raw_entry_bytes)),
            );
        }
        line(
            "verification",
            if !s.verification {
                "off (no --vkey)".into()
            } else if t.verify_failed == 0 {
                "every checkpoint, inclusion proof and served entry verified".into()
            } else {
                format!(
                    "FAILED for {}: {}",
                    t.verify_failed,
                    t.verify_examples.join("; ")
                )
            },
        );
        line(
            "signing",
            format!(
                "{:.2} s before the clock started (run nonce {:016x})",
                s.signing.as_secs_f64(),
                s.nonce
            ),
        );
        out
    }
}
