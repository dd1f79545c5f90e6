//! The crash test: SIGKILL a real `log-server` again and again while
//! concurrent clients append, restart it on the same data directory each
//! time, and check after every restart and at the end that
//!
//! - the server starts each time;
//! - every acknowledged event is stored at exactly the index it was given;
//! - the log holds each submitted event once, and nothing else;
//! - the tree is consistent with every checkpoint ever handed out, and
//!   every such checkpoint is signed by the log;
//! - the root recomputed from the served tiles equals the signed root.
//!
//! [`run`] is the whole test, driven by a [`CrashConfig`]: the CI test in
//! `tests/crash_recovery.rs` runs a short mode, and a long mode can be run
//! against any `log-server` binary by pointing
//! [`CrashConfig::server_binary`] at it.
//!
//! Kills are timed by acknowledgements, never by the clock: between two
//! kills the driver waits for a random number (1 to
//! [`CrashConfig::max_acks_between_kills`], drawn from a seeded xorshift
//! generator) of new acknowledgements, observed through a `watch` channel.
//! Clients learn of a kill through the errors it causes and wait, on another
//! `watch` channel, for the next start to be published, which happens only
//! after that start has been checked. An event whose answer was lost is
//! resubmitted; it must come back either as new or as a `duplicate` carrying
//! its original index, and the checks tell which is true.

use crate::{http_get, mixed_event, LogServer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Status};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::{decode_entry, event_id, sign_event};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    append_result, AppendBatchRequest, AppendRequest, AppendResponse, GetCheckpointRequest,
    GetConsistencyProofRequest, SignedEvent,
};
use verifier::tile_builder::TileBuilder;
use verifier::tiles::{decode_entry_bundle, TileId, TileKind};

/// How many consistency proofs a check requests at once.
const PROOFS_IN_FLIGHT: usize = 16;
/// How many lines of a server's standard error a failure report quotes.
const STDERR_LINES: usize = 40;

/// What to run: the load, the kills, and how the server is started.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    /// The log's data directory, new or empty: the first start creates it.
    pub data_dir: PathBuf,
    /// The storage backend, `redb` or `sled`.
    pub storage: String,
    /// The log's origin.
    pub origin: String,
    /// How many times to SIGKILL the server.
    pub kills: usize,
    /// How many clients append concurrently.
    pub clients: usize,
    /// How many distinct events each client appends over the whole run.
    /// Together they must outlast the kills (see [`run`]). Events not
    /// yet sent when the last kill's restart is published are mostly left
    /// unsent (see `events_after_last_kill`).
    pub events_per_client: u64,
    /// Once the server's last start is published, each client sends at
    /// most this many events it never sent before, besides finishing the
    /// ones it had sent, and stops.
    pub events_after_last_kill: u64,
    /// The most events in one `AppendBatch` call. Each call is, at random,
    /// a unary `Append` (half of them) or an `AppendBatch` of 2 up to this
    /// many events.
    pub max_batch: usize,
    /// Between two kills the driver waits for a random number of new
    /// acknowledgements, from 1 up to this many.
    pub max_acks_between_kills: u64,
    /// Seeds every random choice: the kill points and each client's mix of
    /// unary and batch calls.
    pub seed: u64,
    /// The `log-server` binary to run.
    pub server_binary: PathBuf,
    /// Extra arguments for `log-server serve`, after `--data-dir`,
    /// `--listen 127.0.0.1:0`, `--origin` and `--storage`.
    pub server_args: Vec<String>,
    /// How long to wait for any one step (a start, the next
    /// acknowledgements, the end of the load) before declaring the run
    /// stuck. A watchdog, never a means of synchronisation.
    pub stall_timeout: Duration,
}

impl CrashConfig {
    /// The short mode's defaults for `server_binary` on `storage`: 20
    /// kills, 8 clients of 700 events, seed 1. In this workspace's tests
    /// the binary is `tlog_e2e::binary("log-server")`; a load generator
    /// passes the path of the server it drives.
    pub fn new(data_dir: impl Into<PathBuf>, storage: &str, server_binary: PathBuf) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage: storage.to_owned(),
            origin: format!("log.example.test/crash-{storage}"),
            kills: 20,
            clients: 8,
            events_per_client: 700,
            events_after_last_kill: 25,
            max_batch: 32,
            max_acks_between_kills: 200,
            seed: 1,
            server_binary,
            server_args: Vec::new(),
            stall_timeout: Duration::from_secs(120),
        }
    }

    fn total_events(&self) -> u64 {
        self.clients as u64 * self.events_per_client
    }

    /// The largest gap between kills that the events can always cover:
    /// at most three quarters of the load is spent on kill gaps, the rest
    /// absorbs the acknowledgements that land while a kill is under way
    /// and keeps the load running after the last restart.
    fn gap_limit(&self) -> u64 {
        let budget = self.total_events() * 3 / 4 / (self.kills.max(1) as u64);
        self.max_acks_between_kills.min(budget)
    }
}

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

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut restarts: Vec<Duration> = self.kills.iter().map(|k| k.restart_time).collect();
        restarts.sort_unstable();
        let median = restarts
            .get(restarts.len() / 2)
            .copied()
            .unwrap_or_default();
        let max = restarts.last().copied().unwrap_or_default();
        let checking: Duration = self.kills.iter().map(|k| k.check_time).sum();
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
    /// What was seen.
    pub message: String,
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

/// A small xorshift64* generator: enough randomness for kill points and
/// call mixes, reproducible from a seed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // SplitMix64 scrambles the seed; `| 1` keeps the state non-zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "an empty range {low}..={high}");
        low + self.next_u64() % (high - low + 1)
    }
}

/// Which server the clients should talk to.
#[derive(Debug, Clone)]
struct ServerState {
    /// The start number: 0 for the first start, k after kill k.
    start: u64,
    /// Its URL, or `None` while it is being killed, restarted or checked.
    url: Option<String>,
    /// Whether this start will not be killed: clients wind down.
    last: bool,
}

/// What the driver waits on.
#[derive(Debug, Clone, Default)]
struct Progress {
    acknowledged: u64,
    clients_done: usize,
    failure: Option<String>,
}

/// What one acknowledgement told its client.
#[derive(Debug, Clone)]
struct Ack {
    index: u64,
    leaf: Hash,
    /// The start that answered.
    start: u64,
}

/// A signed checkpoint that some answer carried.
#[derive(Debug, Clone)]
struct HandedOut {
    note: String,
    root: Hash,
    /// The start that handed it out first.
    start: u64,
}

/// Everything the clients were told, shared with the driver.
#[derive(Default)]
struct Book {
    /// By event number.
    acks: Vec<Option<Ack>>,
    /// By event number: how many times it was sent, not counting
    /// pushbacks.
    attempts: Vec<u32>,
    /// By event number: whether it was ever sent.
    sent: Vec<bool>,
    /// Acknowledged index to event number.
    by_index: HashMap<u64, u64>,
    /// By tree size.
    checkpoints: BTreeMap<u64, HandedOut>,
    duplicates: u64,
    unary_calls: u64,
    batch_calls: u64,
    pushbacks: u64,
}

/// What the clients and the driver share.
struct Shared {
    log_key: VerifierKey,
    /// Every event of the run, by number, signed once.
    events: Vec<SignedEvent>,
    /// Event id to event number.
    ids: HashMap<[u8; 32], u64>,
    max_batch: usize,
    events_after_last_kill: u64,
    seed: u64,
    server: watch::Sender<ServerState>,
    progress: watch::Sender<Progress>,
    book: Mutex<Book>,
}

impl Shared {
    /// Records the first failure; the driver stops on it.
    fn fail(&self, message: String) {
        self.progress.send_modify(|p| {
            if p.failure.is_none() {
                p.failure = Some(message);
            }
        });
    }

    /// Events refused with pushback were not sent to the sequencer: the
    /// attempt does not count.
    fn pushed_back(&self, numbers: &[u64]) {
        let mut book = self.book();
        book.pushbacks += numbers.len() as u64;
        for &n in numbers {
            book.attempts[n as usize] -= 1;
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("the book's lock")
    }

    /// Checks one answer and records it. `Err` says what was wrong.
    fn acknowledge(
        &self,
        client: usize,
        number: u64,
        start: u64,
        answer: &AppendResponse,
    ) -> Result<(), String> {
        let what = || format!("client {client}, event {number}, answered by start #{start}");
        let signed = SignedCheckpoint::verify(answer.checkpoint.as_bytes(), &self.log_key)
            .map_err(|e| {
                format!(
                    "{}: the answer's checkpoint does not verify under the log key: {e}",
                    what()
                )
            })?;
        let checkpoint = signed.checkpoint;
        let leaf = to_hash(&answer.leaf_hash).ok_or_else(|| {
            format!(
                "{}: a leaf hash of {} bytes",
                what(),
                answer.leaf_hash.len()
            )
        })?;
        let proof = answer
            .inclusion_proof
            .iter()
            .map(|h| to_hash(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{}: an inclusion proof hash is not 32 bytes", what()))?;
        verify_inclusion(&proof, answer.index, checkpoint.size, leaf, checkpoint.root).map_err(
            |e| {
                format!(
                    "{}: the inclusion proof of index {} in checkpoint {} does not verify: {e}",
                    what(),
                    answer.index,
                    checkpoint.size
                )
            },
        )?;
        let mut book = self.book();
        let attempts = book.attempts[number as usize];
        if answer.duplicate && attempts < 2 {
            return Err(format!(
                "{}: answered duplicate (index {}) on its first submission",
                what(),
                answer.index
            ));
        }
        if let Some(earlier) = &book.acks[number as usize] {
            return Err(format!(
                "{}: acknowledged twice, at index {} by start #{} and now at index {}",
                what(),
                earlier.index,
                earlier.start,
                answer.index
            ));
        }
        if let Some(&other) = book.by_index.get(&answer.index) {
            return Err(format!(
                "{}: index {} was already acknowledged for event {other}",
                what(),
                answer.index
            ));
        }
        match book.checkpoints.get(&checkpoint.size) {
            Some(seen) if seen.root != checkpoint.root => {
                return Err(format!(
                    "{}: a checkpoint for size {} with root {} contradicts one with root {} \
                     handed out by start #{}: the log forked",
                    what(),
                    checkpoint.size,
                    checkpoint.root,
                    seen.root,
                    seen.start
                ));
            }
            Some(_) => {}
            None => {
                book.checkpoints.insert(
                    checkpoint.size,
                    HandedOut {
                        note: answer.checkpoint.clone(),
                        root: checkpoint.root,
                        start,
                    },
                );
            }
        }
        if answer.duplicate {
            book.duplicates += 1;
        }
        book.by_index.insert(answer.index, number);
        book.acks[number as usize] = Some(Ack {
            index: answer.index,
            leaf,
            start,
        });
        Ok(())
    }
}

fn to_hash(bytes: &[u8]) -> Option<Hash> {
    Some(Hash(bytes.try_into().ok()?))
}

/// A server start: the process, and the tail of what it wrote to stderr.
struct Started {
    server: LogServer,
    stderr: Arc<Mutex<VecDeque<String>>>,
    took: Duration,
}

fn tail_text(stderr: &Mutex<VecDeque<String>>) -> String {
    let lines = stderr.lock().expect("stderr tail lock");
    if lines.is_empty() {
        "(nothing on stderr)".into()
    } else {
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Starts the server on the data directory and waits, up to the stall
/// timeout, for its `listening on` line.
async fn start_server(config: &CrashConfig) -> Result<Started, String> {
    let began = Instant::now();
    let mut child = Command::new(&config.server_binary)
        .arg("serve")
        .arg("--data-dir")
        .arg(&config.data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--origin", &config.origin])
        .args(["--storage", &config.storage])
        .args(&config.server_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", config.server_binary.display()))?;
    let pid = child.id();
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    let drain = {
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut tail = stderr.lock().expect("stderr tail lock");
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        })
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let waiting = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.parse::<SocketAddr>().ok();
                    }
                }
                _ => break None,
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        addr
    });
    let addr = match tokio::time::timeout(config.stall_timeout, waiting).await {
        Ok(joined) => joined.expect("the stdout reader"),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = drain.join();
            return Err(format!(
                "log-server (pid {pid}) did not listen within {:?}; stderr:\n{}",
                config.stall_timeout,
                tail_text(&stderr)
            ));
        }
    };
    let Some(addr) = addr else {
        let status = child.wait().map_err(|e| e.to_string())?;
        let _ = drain.join();
        return Err(format!(
            "log-server exited ({status}) without listening; stderr:\n{}",
            tail_text(&stderr)
        ));
    };
    Ok(Started {
        server: LogServer {
            child,
            addr,
            data_dir: config.data_dir.clone(),
        },
        stderr,
        took: began.elapsed(),
    })
}

/// Aborts the client tasks when the driver returns, however it returns.
struct Clients(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Clients {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Runs the crash test described by `config`.
///
/// The load is at most `clients × events_per_client` events. Kill gaps
/// are drawn from `1..=min(max_acks_between_kills, 3/4 of the load /
/// kills)`, so the load always outlasts the kills unless acknowledgements
/// overshoot the kill points by a quarter of the load, which is reported as
/// an error asking for more events. Once the last start is published the
/// clients wind down: each finishes what it sent and sends at most
/// `events_after_last_kill` new events.
///
/// Every check that fails ends the run with a [`CrashError`] naming the
/// seed, the kill, and what was seen (the index, the event, the start that
/// acknowledged it). The caller owns the data directory.
pub async fn run(config: CrashConfig) -> Result<CrashReport, CrashError> {
    let began = Instant::now();
    let fail = |phase: &str, message: String| CrashError {
        seed: config.seed,
        storage: config.storage.clone(),
        phase: phase.to_owned(),
        message,
    };
    if config.clients == 0 || config.events_per_client == 0 || config.max_batch < 2 {
        return Err(fail(
            "before starting",
            "a run needs clients, events, and max_batch of at least 2".into(),
        ));
    }
    let gap_limit = config.gap_limit();
    if config.kills > 0 && gap_limit == 0 {
        return Err(fail(
            "before starting",
            format!(
                "{} events cannot cover {} kills; raise events_per_client",
                config.total_events(),
                config.kills
            ),
        ));
    }
    let mut rng = XorShift::new(config.seed);
    let gaps: Vec<u64> = (0..config.kills)
        .map(|_| rng.between(1, gap_limit))
        .collect();

    let first = start_server(&config)
        .await
        .map_err(|e| fail("at the first start", e))?;
    let submitter = first.server.submitter_key();
    let log_key = first.server.log_key();
    let total = config.total_events();
    let events = tokio::task::spawn_blocking(move || sign_all(&submitter, total))
        .await
        .expect("signing the events");
    let ids = events
        .iter()
        .zip(0..)
        .map(|(signed, n)| (event_id(signed), n))
        .collect();
    let (server_tx, _) = watch::channel(ServerState {
        start: 0,
        url: Some(first.server.url()),
        last: config.kills == 0,
    });
    let (progress_tx, _) = watch::channel(Progress::default());
    let shared = Arc::new(Shared {
        log_key,
        events,
        ids,
        max_batch: config.max_batch,
        events_after_last_kill: config.events_after_last_kill,
        seed: config.seed,
        server: server_tx,
        progress: progress_tx,
        book: Mutex::new(Book {
            acks: vec![None; total as usize],
            attempts: vec![0; total as usize],
            sent: vec![false; total as usize],
            ..Book::default()
        }),
    });
    let clients = Clients(
        (0..config.clients)
            .map(|c| {
                let first = c as u64 * config.events_per_client;
                tokio::spawn(client(
                    c,
                    first..first + config.events_per_client,
                    Arc::clone(&shared),
                ))
            })
            .collect(),
    );

    let mut current = first;
    let mut kills = Vec::with_capacity(config.kills);
    let mut acknowledged_at_kill = 0;
    for (k, gap) in (1..).zip(gaps) {
        let phase = format!("before kill {k} of {}", config.kills);
        let target = acknowledged_at_kill + gap;
        let progress = wait_progress(
            &shared,
            config.stall_timeout,
            &format!("{target} acknowledgements"),
            |p| p.acknowledged >= target || p.clients_done == config.clients,
        )
        .await
        .map_err(|e| fail(&phase, with_stderr(e, &current)))?;
        if progress.acknowledged < target {
            return Err(fail(
                &phase,
                format!(
                    "the load ran out after {} acknowledgements, before this kill point \
                     ({target}); raise events_per_client",
                    progress.acknowledged
                ),
            ));
        }
        // Clients must see the server marked down before the kill can
        // cause them any error: an error from a server still marked up is
        // a failure of a live server.
        shared.server.send_modify(|s| s.url = None);
        let mut killed = current.server;
        if let Ok(Some(status)) = killed.child.try_wait() {
            return Err(fail(
                &phase,
                with_stderr(
                    format!("the server exited by itself ({status}) before it was killed"),
                    &Started {
                        server: killed,
                        stderr: current.stderr,
                        took: current.took,
                    },
                ),
            ));
        }
        tokio::task::spawn_blocking(move || killed.kill())
            .await
            .expect("killing the server");
        acknowledged_at_kill = shared.progress.borrow().acknowledged;

        let phase = format!("after kill {k} of {}", config.kills);
        let restarted = start_server(&config).await.map_err(|e| {
            fail(
                &phase,
                format!(
                    "the server did not start again after SIGKILL \
                     ({acknowledged_at_kill} acknowledgements so far): {e}"
                ),
            )
        })?;
        let checking = Instant::now();
        let size = check(&restarted.server, k, &shared, false)
            .await
            .map_err(|e| fail(&phase, with_stderr(e, &restarted)))?;
        kills.push(KillRecord {
            acknowledged_before: acknowledged_at_kill,
            waited_for: gap,
            restarted_size: size,
            restart_time: restarted.took,
            check_time: checking.elapsed(),
        });
        current = restarted;
        let url = current.server.url();
        shared.server.send_replace(ServerState {
            start: k,
            url: Some(url),
            last: k == config.kills as u64,
        });
    }

    let phase = format!("after the last kill ({})", config.kills);
    wait_progress(
        &shared,
        config.stall_timeout,
        "every client to finish",
        |p| p.clients_done == config.clients,
    )
    .await
    .map_err(|e| fail(&phase, with_stderr(e, &current)))?;
    drop(clients);
    let final_size = check(&current.server, config.kills as u64, &shared, true)
        .await
        .map_err(|e| fail("at the final check", with_stderr(e, &current)))?;
    let last = current.server;
    tokio::task::spawn_blocking(move || last.kill())
        .await
        .expect("stopping the server");

    let book = shared.book();
    Ok(CrashReport {
        seed: config.seed,
        storage: config.storage.clone(),
        kills,
        events: book.acks.iter().filter(|a| a.is_some()).count() as u64,
        unsent: book.sent.iter().filter(|&&sent| !sent).count() as u64,
        final_size,
        resubmitted: book.attempts.iter().filter(|&&a| a > 1).count() as u64,
        duplicates: book.duplicates,
        unary_calls: book.unary_calls,
        batch_calls: book.batch_calls,
        pushbacks: book.pushbacks,
        checkpoints: book.checkpoints.len(),
        elapsed: began.elapsed(),
    })
}

fn with_stderr(message: String, started: &Started) -> String {
    format!(
        "{message}\n--- the server's last stderr lines (pid {}):\n{}",
        started.server.child.id(),
        tail_text(&started.stderr)
    )
}

fn sign_all(submitter: &SigningKey, total: u64) -> Vec<SignedEvent> {
    let reviewer = crate::reviewer();
    (0..total)
        .map(|n| sign_event(submitter, &mixed_event(n, &reviewer)))
        .collect()
}

/// Waits until `done` holds or a client fails, with a watchdog.
async fn wait_progress(
    shared: &Shared,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Progress) -> bool,
) -> Result<Progress, String> {
    let mut rx = shared.progress.subscribe();
    let waited = tokio::time::timeout(timeout, async {
        rx.wait_for(|p| p.failure.is_some() || done(p))
            .await
            .map(|p| p.clone())
    })
    .await;
    match waited {
        Ok(Ok(progress)) => match progress.failure {
            Some(failure) => Err(failure),
            None => Ok(progress),
        },
        Ok(Err(_)) => Err("the progress channel closed".into()),
        Err(_) => {
            let p = shared.progress.borrow().clone();
            Err(format!(
                "stuck: waited {timeout:?} for {what}, with {} acknowledgements and {} \
                 clients finished",
                p.acknowledged, p.clients_done
            ))
        }
    }
}

/// How one call ended for the client.
enum Outcome {
    /// Answered: per event, its acknowledgement or the status refusing it.
    Answered(Vec<Result<AppendResponse, Status>>),
    /// The call failed as a whole.
    Failed(Status),
}

/// Codes a killed server can cause (through a broken connection); any
/// other code is an answer and must make sense.
fn kill_can_cause(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted
    )
}

/// One appender: submits its events in random unary and batch calls until
/// every one is acknowledged, surviving kills by waiting for the next start
/// and resubmitting what was not answered.
async fn client(id: usize, numbers: std::ops::Range<u64>, shared: Arc<Shared>) {
    if let Err(message) = client_loop(id, numbers, &shared).await {
        shared.fail(message);
    }
    shared.progress.send_modify(|p| p.clients_done += 1);
}

async fn client_loop(
    id: usize,
    numbers: std::ops::Range<u64>,
    shared: &Shared,
) -> Result<(), String> {
    let mut rng =
        XorShift::new(shared.seed ^ (0x5851_f42d_4c95_7f2d_u64.wrapping_mul(id as u64 + 1)));
    let mut pending: VecDeque<u64> = numbers.clone().collect();
    let mut state = shared.server.subscribe();
    // The start this client last failed on: it waits for a later one.
    let mut failed_on: Option<u64> = None;
    let mut connection: Option<(u64, LogClient<Channel>)> = None;
    // Every event below this number has been sent at least once.
    let mut next_fresh = numbers.start;
    let mut wound_down = false;
    while !pending.is_empty() {
        let (start, url, last) = {
            let s = state
                .wait_for(|s| s.url.is_some() && failed_on.is_none_or(|f| s.start > f))
                .await
                .map_err(|_| "the driver went away".to_string())?;
            (s.start, s.url.clone().expect("a published URL"), s.last)
        };
        if last && !wound_down {
            let cutoff = next_fresh + shared.events_after_last_kill;
            pending.retain(|&n| n < cutoff);
            wound_down = true;
            if pending.is_empty() {
                break;
            }
        }
        let mut log = match connection.take() {
            Some((s, log)) if s == start => log,
            _ => match LogClient::connect(url).await {
                Ok(log) => log,
                Err(e) => {
                    failed_on = Some(after_failure(
                        id,
                        start,
                        shared,
                        Status::unavailable(e.to_string()),
                        &[],
                    )?);
                    continue;
                }
            },
        };
        let unary = rng.next_u64().is_multiple_of(2);
        let count = if unary {
            1
        } else {
            (rng.between(2, shared.max_batch as u64) as usize).min(pending.len())
        };
        let batch: Vec<u64> = pending.drain(..count).collect();
        next_fresh = next_fresh.max(batch.iter().max().map_or(0, |&n| n + 1));
        {
            let mut book = shared.book();
            for &n in &batch {
                book.attempts[n as usize] += 1;
                book.sent[n as usize] = true;
            }
        }
        let outcome = if unary {
            let event = Some(shared.events[batch[0] as usize].clone());
            match log.append(AppendRequest { event }).await {
                Ok(answer) => Outcome::Answered(vec![Ok(answer.into_inner())]),
                Err(status) => Outcome::Failed(status),
            }
        } else {
            let events = batch
                .iter()
                .map(|&n| shared.events[n as usize].clone())
                .collect();
            match log.append_batch(AppendBatchRequest { events }).await {
                Ok(answer) => Outcome::Answered(
                    answer
                        .into_inner()
                        .results
                        .into_iter()
                        .map(|r| match r.result {
                            Some(append_result::Result::Appended(a)) => Ok(a),
                            Some(append_result::Result::Error(e)) => {
                                Err(Status::new(Code::from(e.code), e.message))
                            }
                            None => Err(Status::internal("a result with neither outcome")),
                        })
                        .collect(),
                ),
                Err(status) => Outcome::Failed(status),
            }
        };
        let results = match outcome {
            Outcome::Failed(status) if status.code() == Code::ResourceExhausted => {
                shared.pushed_back(&batch);
                retry_later(&mut pending, batch);
                connection = Some((start, log));
                tokio::task::yield_now().await;
                continue;
            }
            Outcome::Failed(status) => {
                failed_on = Some(after_failure(id, start, shared, status, &batch)?);
                retry_later(&mut pending, batch);
                continue;
            }
            Outcome::Answered(results) => results,
        };
        if results.len() != batch.len() {
            return Err(format!(
                "client {id}: start #{start} answered {} results for a batch of {}",
                results.len(),
                batch.len()
            ));
        }
        {
            let mut book = shared.book();
            if unary {
                book.unary_calls += 1;
            } else {
                book.batch_calls += 1;
            }
        }
        let mut unanswered = Vec::new();
        let mut acknowledged = 0;
        for (&n, result) in batch.iter().zip(results) {
            match result {
                Ok(answer) => {
                    shared.acknowledge(id, n, start, &answer)?;
                    acknowledged += 1;
                }
                Err(status) if status.code() == Code::ResourceExhausted => {
                    shared.pushed_back(&[n]);
                    unanswered.push(n);
                }
                Err(status) => {
                    return Err(format!(
                        "client {id}: start #{start}, while running, refused event {n} in a \
                         batch with {:?}: {}",
                        status.code(),
                        status.message()
                    ))
                }
            }
        }
        if acknowledged > 0 {
            shared
                .progress
                .send_modify(|p| p.acknowledged += acknowledged);
        }
        let pushed_back = !unanswered.is_empty();
        retry_later(&mut pending, unanswered);
        connection = Some((start, log));
        if pushed_back {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Puts unanswered events back at the front, in order.
fn retry_later(pending: &mut VecDeque<u64>, batch: Vec<u64>) {
    for n in batch.into_iter().rev() {
        pending.push_front(n);
    }
}

/// Decides whether a failed call is explained by a kill. Returns the start
/// it failed on (the client then waits for a later one), or the failure.
fn after_failure(
    id: usize,
    start: u64,
    shared: &Shared,
    status: Status,
    batch: &[u64],
) -> Result<u64, String> {
    let killed = {
        let now = shared.server.borrow();
        now.start != start || now.url.is_none()
    };
    if killed && kill_can_cause(status.code()) {
        Ok(start)
    } else {
        Err(format!(
            "client {id}: start #{start} ({}) failed a call for events {batch:?} with {:?}: {}",
            if killed {
                "being killed"
            } else {
                "running, not killed"
            },
            status.code(),
            status.message()
        ))
    }
}

/// Checks a running, quiescent server against everything handed out, and
/// returns its tree size. With `last`, also requires that every event was
/// acknowledged and the log holds exactly the run's events.
async fn check(
    server: &LogServer,
    start: u64,
    shared: &Arc<Shared>,
    last: bool,
) -> Result<u64, String> {
    let addr = server.addr;
    let log_key = shared.log_key.clone();
    let (signed, entries) = tokio::task::spawn_blocking(move || rebuild_from_tiles(addr, &log_key))
        .await
        .expect("reading the tiles")?;
    let current = signed.checkpoint.clone();
    let mut log = LogClient::connect(server.url())
        .await
        .map_err(|e| format!("cannot connect over gRPC: {e}"))?;
    let grpc_note = log
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(|e| format!("GetCheckpoint failed: {e}"))?
        .into_inner()
        .checkpoint;
    if grpc_note.as_bytes() != signed.note {
        return Err(format!(
            "GetCheckpoint and /checkpoint disagree on a quiescent server:\n{grpc_note}\nversus\n{}",
            signed.note_text()
        ));
    }

    // What was handed out, and the checkpoint the restart serves.
    let (acks, checkpoints) = {
        let mut book = shared.book();
        match book.checkpoints.get(&current.size) {
            Some(seen) if seen.root != current.root => {
                return Err(format!(
                    "the served checkpoint for size {} has root {}, but start #{} handed out \
                     root {} for that size",
                    current.size, current.root, seen.start, seen.root
                ));
            }
            Some(_) => {}
            None => {
                book.checkpoints.insert(
                    current.size,
                    HandedOut {
                        note: signed.note_text().to_owned(),
                        root: current.root,
                        start,
                    },
                );
            }
        }
        let acks: Vec<(u64, Ack)> = book
            .acks
            .iter()
            .zip(0..)
            .filter_map(|(a, n)| a.clone().map(|a| (n, a)))
            .collect();
        (acks, book.checkpoints.clone())
    };

    // Every acknowledged event, at its index.
    for (n, ack) in &acks {
        let entry = entries.get(ack.index as usize).ok_or_else(|| {
            format!(
                "event {n}, acknowledged at index {} by start #{}, is lost: the log has {} entries",
                ack.index, ack.start, current.size
            )
        })?;
        let decoded = decode_entry(entry).map_err(|e| {
            format!(
                "index {} (event {n}, acknowledged by start #{}): not a log entry: {e}",
                ack.index, ack.start
            )
        })?;
        if decoded.signed_event.as_ref() != Some(&shared.events[*n as usize]) {
            let found = decoded
                .signed_event
                .as_ref()
                .and_then(|s| shared.ids.get(&event_id(s)));
            return Err(format!(
                "index {} holds {}, not event {n}, which start #{} acknowledged there",
                ack.index,
                found.map_or("an event nobody submitted".into(), |m| format!("event {m}")),
                ack.start
            ));
        }
        if leaf_hash(entry) != ack.leaf {
            return Err(format!(
                "index {} holds event {n} but its leaf hash is {}, not the acknowledged {}",
                ack.index,
                leaf_hash(entry),
                ack.leaf
            ));
        }
    }

    // Every entry is one of the run's events, and none is there twice.
    let mut seen: HashMap<u64, u64> = HashMap::with_capacity(entries.len());
    for (index, entry) in (0u64..).zip(&entries) {
        let decoded =
            decode_entry(entry).map_err(|e| format!("index {index}: not a log entry: {e}"))?;
        let signed = decoded
            .signed_event
            .ok_or_else(|| format!("index {index}: no signed event"))?;
        let n = *shared
            .ids
            .get(&event_id(&signed))
            .ok_or_else(|| format!("index {index} holds an event nobody submitted"))?;
        if let Some(first) = seen.insert(n, index) {
            return Err(format!(
                "event {n} is in the log twice, at indexes {first} and {index}: a resubmission \
                 after a kill was appended again instead of answered as a duplicate"
            ));
        }
    }
    if last {
        let book = shared.book();
        let unacknowledged: Vec<usize> = (0..shared.events.len())
            .filter(|&n| book.sent[n] && book.acks[n].is_none())
            .collect();
        if !unacknowledged.is_empty() {
            return Err(format!(
                "{} sent events were never acknowledged: {unacknowledged:?}",
                unacknowledged.len()
            ));
        }
        // Each entry is a distinct event of the run and each acknowledged
        // event is at its index, so equal counts mean the log holds exactly
        // the acknowledged events.
        if current.size != acks.len() as u64 {
            return Err(format!(
                "the log holds {} entries for {} acknowledged events",
                current.size,
                acks.len()
            ));
        }
    }

    // Every checkpoint handed out is signed and extended by this tree.
    for (size, handed) in &checkpoints {
        let verified =
            SignedCheckpoint::verify(handed.note.as_bytes(), &shared.log_key).map_err(|e| {
                format!("the checkpoint handed out for size {size} does not verify: {e}")
            })?;
        if verified.checkpoint.size != *size || verified.checkpoint.root != handed.root {
            return Err(format!(
                "the book's checkpoint for size {size} is mislabelled"
            ));
        }
        if *size > current.size {
            return Err(format!(
                "rolled back: start #{} handed out a checkpoint for size {size}, but the log now \
                 serves size {}",
                handed.start, current.size
            ));
        }
    }
    prove_consistency(&log, &checkpoints, &current).await?;
    Ok(current.size)
}

/// Requests and verifies, several at a time, a consistency proof from every
/// handed-out checkpoint to `current`.
async fn prove_consistency(
    log: &LogClient<Channel>,
    checkpoints: &BTreeMap<u64, HandedOut>,
    current: &Checkpoint,
) -> Result<(), String> {
    let mut olds = checkpoints.iter().map(|(&size, h)| (size, h.root, h.start));
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PROOFS_IN_FLIGHT {
            let Some((old_size, old_root, start)) = olds.next() else {
                break;
            };
            let mut log = log.clone();
            let (new_size, new_root) = (current.size, current.root);
            running.spawn(async move {
                let proof = log
                    .get_consistency_proof(GetConsistencyProofRequest { old_size, new_size })
                    .await
                    .map_err(|e| {
                        format!(
                            "GetConsistencyProof from {old_size} (handed out by start #{start}) \
                             to {new_size} failed: {e}"
                        )
                    })?
                    .into_inner()
                    .proof;
                let proof = proof
                    .iter()
                    .map(|h| to_hash(h))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        format!("a consistency proof hash from {old_size} is not 32 bytes")
                    })?;
                verify_consistency(&proof, old_size, old_root, new_size, new_root).map_err(|e| {
                    format!(
                        "the tree of size {new_size} does not extend the checkpoint for size \
                         {old_size} handed out by start #{start}: {e}"
                    )
                })
            });
        }
        match running.join_next().await {
            Some(done) => done.expect("a consistency check task")?,
            None => return Ok(()),
        }
    }
}

/// Fetches every tile of the served tree over plain HTTP, checks each hash
/// tile against tiles rebuilt from the entry bundles and the rebuilt root
/// against the signed one, and returns the checkpoint and the entries.
fn rebuild_from_tiles(
    addr: SocketAddr,
    log_key: &VerifierKey,
) -> Result<(SignedCheckpoint, Vec<Vec<u8>>), String> {
    let response = http_get(addr, "/checkpoint");
    if response.status != 200 {
        return Err(format!("/checkpoint answered {}", response.status));
    }
    let signed = SignedCheckpoint::verify(&response.body, log_key)
        .map_err(|e| format!("/checkpoint does not verify under the log key: {e}"))?;
    let size = signed.checkpoint.size;
    let tiles = TileId::all_for_size(size);
    let mut entries = Vec::with_capacity(size as usize);
    for tile in tiles.iter().filter(|t| t.kind == TileKind::Entries) {
        let path = format!("/{}", tile.path());
        let response = http_get(addr, &path);
        if response.status != 200 {
            return Err(format!("{path} answered {}", response.status));
        }
        let bundle = decode_entry_bundle(&response.body)
            .map_err(|e| format!("{path}: not an entry bundle: {e}"))?;
        if bundle.len() != usize::from(tile.width) {
            return Err(format!(
                "{path}: {} entries, not {}",
                bundle.len(),
                tile.width
            ));
        }
        entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    if entries.len() as u64 != size {
        return Err(format!(
            "the entry bundles hold {} entries for size {size}",
            entries.len()
        ));
    }
    let mut builder = TileBuilder::new();
    entries.iter().for_each(|e| builder.append(leaf_hash(e)));
    if builder.root() != signed.checkpoint.root {
        return Err(format!(
            "the root rebuilt from the entry bundles is {}, the signed root for size {size} is {}",
            builder.root(),
            signed.checkpoint.root
        ));
    }
    let rebuilt: HashMap<(u8, u64), Vec<u8>> = builder
        .take_changed()
        .into_iter()
        .map(|t| ((t.level, t.index), t.hashes))
        .collect();
    for tile in tiles {
        if let TileKind::Hashes { level } = tile.kind {
            let path = format!("/{}", tile.path());
            let response = http_get(addr, &path);
            if response.status != 200 {
                return Err(format!("{path} answered {}", response.status));
            }
            if Some(&response.body) != rebuilt.get(&(level, tile.index)) {
                return Err(format!(
                    "{path}: the served hash tile differs from the one rebuilt from the entries"
                ));
            }
        }
    }
    Ok((signed, entries))
}
