//! The crash test: a real `log-server` under concurrent load (unary
//! `Append` and `AppendBatch`, events signed with the operator's key) is
//! killed with SIGKILL at random moments and restarted on the same data
//! directory each time. After every restart and at the end the test checks
//! that the server started, that every acknowledged event is at the index
//! it was given, that the tree is consistent with every checkpoint ever
//! handed out, and that the root rebuilt from the tiles is the signed root.
//! The logic lives in `tlog_benches::crash`, which `loadgen crash` also
//! runs; see its documentation.
//!
//! Short mode (the default, as in CI): 20 kills on redb and 20 on sled.
//!
//! Environment:
//!
//! - `CRASH_KILLS=N`: kill N times instead of 20. The long mode is
//!   `CRASH_KILLS=500`; the load grows with N so that it outlasts the kills:
//!
//!   ```text
//!   CRASH_KILLS=500 cargo test --release -p tlog-e2e --test crash_recovery -- --nocapture
//!   ```
//!
//! - `CRASH_SEED=S` (decimal or `0x` hex): replay the kill points and call
//!   mix of a failed run, whose message names its seed. Without it each run
//!   draws a fresh seed from the clock and prints it.
//!
//! Only the kill points (counted in acknowledgements) and the call mix are
//! reproducible from a seed; the server's progress at a kill point is not.
//! A failed run keeps its data directory and prints where it is.

use std::time::{SystemTime, UNIX_EPOCH};
use tlog_benches::crash::{run, CrashConfig};
use tlog_e2e::binary;

/// The default number of kills per backend.
const KILLS: usize = 20;

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={text}: not a number: {e}")))
}

fn config(dir: &std::path::Path, storage: &str) -> CrashConfig {
    let mut config = CrashConfig::new(dir, storage, binary("log-server"));
    config.kills = env_number("CRASH_KILLS").map_or(KILLS, |k| k as usize);
    // Up to 200 acknowledgements between kills, 100 on average; the gap
    // budget is three quarters of the load, so 8 clients need at least
    // kills × 200 / 6 events each, which `fit_load_to_kills` sees to.
    config.fit_load_to_kills();
    config.seed = env_number("CRASH_SEED").unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970");
        now.as_secs() ^ u64::from(now.subsec_nanos()) << 20
    });
    config
}

async fn crash_test(storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), storage);
    let kills = config.kills;
    eprintln!(
        "crash test on {storage}: {kills} kills, {} clients × {} events, seed {:#x} \
         (replay with CRASH_SEED={:#x})",
        config.clients, config.events_per_client, config.seed, config.seed
    );
    let report = match run(config).await {
        Ok(report) => report,
        Err(e) => {
            let kept = dir.keep();
            panic!("{e}\n(the data directory is kept at {})", kept.display());
        }
    };
    eprintln!("{report}");
    assert_eq!(report.kills.len(), kills, "every kill happened");
    assert_eq!(report.final_size, report.events, "each event once");
    assert!(
        report.resubmitted > 0,
        "the kills cut off answers in flight, so some events were sent again"
    );
    assert!(
        report.batch_calls > 0 && report.unary_calls > 0,
        "both Append and AppendBatch were exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_repeated_sigkill_on_redb() {
    crash_test("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_repeated_sigkill_on_sled() {
    crash_test("sled").await;
}
