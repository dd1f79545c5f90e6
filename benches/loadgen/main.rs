//! `loadgen`: drive a running `log-server` over gRPC with signed, realistic
//! events, and report throughput, latency, errors, and what the log cost
//! in memory and disk (issue #4); or, with `crash`, kill a `log-server`
//! again and again under that load and check that nothing acknowledged is
//! lost.
//!
//! ```text
//! loadgen --log <url> --key <submitter key file> --events N --concurrency C
//!         [--batch B] [--rate R] [--connections K] [--vkey <key|file>]
//!         [--server-pid PID] [--data-dir DIR] [--json]
//! loadgen crash --server <log-server binary> --storage <redb|sled> --kills N
//!         [--seed S] [--clients C] [--data-dir DIR] [--json]
//! loadgen proofs --log <url> --vkey <key|file> --requests N --concurrency C
//!         [--connections K] [--seed S] [--json]
//! ```
//!
//! The load run: check the arguments and that the log answers; build and
//! sign all N events (`tlog_benches::workload`); start the clock; C workers
//! send them, unary or in batches, flat out or paced (`drive`, `pacing`);
//! stop the clock at the last answer; then measure the server (`footprint`)
//! and, with `--vkey`, check every acknowledged entry as served (`verify`).
//!
//! The crash run (`crash`) is the crash test's long mode: the harness in
//! `tlog_benches::crash` starts the given binary on a new data directory,
//! SIGKILLs it N times at random points under a load that grows with N,
//! restarts it each time and checks it after every restart.
//!
//! The proofs run (`proofs`) measures proof serving: inclusion proofs of
//! random indexes in the log's current tree, each verified (`proofs`).
//!
//! Exit codes: 0 the run completed (for a load run, errors the log answered
//! with are reported, not fatal); 1 `--vkey` verification failed, or a
//! crash run's check failed; 2 bad arguments or the log is unreachable.

mod crash;
mod drive;
mod footprint;
mod pacing;
mod proofs;
mod report;
mod stats;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tlog_benches::http::HttpLog;
use tlog_benches::workload;
use verifier::keys::{SigningKey, VerifierKey};

/// Drive a running log-server with signed events and measure it, or crash
/// one under load and check what survives.
#[derive(Parser)]
#[command(
    name = "loadgen",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Exit codes: 0 run completed (errors are reported), 1 verification or a crash \
                  check failed, 2 bad arguments or log unreachable."
)]
struct Cli {
    /// Without a subcommand, `loadgen` runs a load against a running log.
    #[command(subcommand)]
    command: Option<Mode>,
    /// The load run's arguments; clap requires them without a subcommand.
    #[command(flatten)]
    load: Option<LoadArgs>,
}

/// The modes besides the default load run.
#[derive(Subcommand)]
enum Mode {
    /// Crash test: SIGKILL a log-server under load, again and again, and
    /// check what survives.
    ///
    /// The server is killed at N random moments and restarted each time on
    /// the same data directory. After every restart and at the end: it
    /// started; every acknowledged event is at the index it was given; the
    /// tree is consistent with every checkpoint ever handed out; the root
    /// rebuilt from the tiles is the signed root.
    #[command(
        after_help = "Exit codes: 0 every check passed, 1 a check failed (the data \
                            directory is kept and printed), 2 bad arguments."
    )]
    Crash(crash::CrashArgs),
    /// Proof serving: request inclusion proofs of random indexes, flat
    /// out, and verify every one against the log's signed checkpoint.
    #[command(
        after_help = "Exit codes: 0 every proof verified, 1 one did not, 2 bad arguments or \
                      log unreachable."
    )]
    Proofs(proofs::ProofArgs),
}

/// The load run: drive a running log and measure it.
#[derive(clap::Args)]
struct LoadArgs {
    /// The log's URL, for example http://127.0.0.1:8080.
    #[arg(long)]
    log: String,
    /// The submitter's signer key file (data/submitter.key, or one written
    /// by `verifier keygen`); it must be on the log's allowlist.
    #[arg(long)]
    key: PathBuf,
    /// How many events to append.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// How many requests are in flight at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// Use AppendBatch with this many events per call; without it, unary Append.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Target events per second, paced open-loop; without it, flat out.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// gRPC (HTTP/2) connections shared by the workers [default: one per
    /// worker].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    connections: Option<u64>,
    /// The log's verifier key, inline or as a file: verify every answer's
    /// checkpoint and inclusion proof, and every acknowledged entry as served.
    #[arg(long)]
    vkey: Option<String>,
    /// The server's process id, to report its peak and current RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory, to report disk bytes per entry.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of events per second"
        )),
    }
}

/// Why the run did not complete.
#[derive(Debug)]
pub enum Failure {
    /// Verification with `--vkey` failed: exit 1.
    Verification(String),
    /// Bad arguments, or the log could not be reached or read: exit 2.
    Unchecked(String),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match (cli.command, cli.load) {
        (Some(Mode::Crash(args)), _) => crash::main(args),
        (Some(Mode::Proofs(args)), _) => proofs::main(args),
        (None, Some(args)) => load(args),
        (None, None) => unreachable!("clap requires the load arguments without a subcommand"),
    }
}

/// The load run, from parsed arguments to exit code.
fn load(args: LoadArgs) -> ExitCode {
    let json = args.json;
    finish(run(args), json)
}

/// What a completed run prints, and whether everything it checked
/// verified.
pub trait RunReport {
    /// The readable summary.
    fn human(&self) -> String;
    /// The one JSON object of `--json`.
    fn json(&self) -> serde_json::Value;
    /// Whether every check of the run passed.
    fn verified(&self) -> bool;
}

/// Prints a run's report, or why it did not complete, and gives the exit
/// code: 0 everything verified, 1 a verification failed, 2 the run could
/// not be made.
pub fn finish(result: Result<impl RunReport, Failure>, json: bool) -> ExitCode {
    let (code, message) = match result {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
            return if report.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Err(Failure::Verification(m)) => (1, format!("verification failed: {m}")),
        Err(Failure::Unchecked(m)) => (2, m),
    };
    if json {
        println!("{}", serde_json::json!({"error": message, "exit": code}));
    }
    eprintln!("loadgen: {message}");
    ExitCode::from(code)
}

fn run(args: LoadArgs) -> Result<report::Report, Failure> {
    let bad = Failure::Unchecked;
    let http = HttpLog::new(&args.log).map_err(|e| bad(format!("--log {e}")))?;
    let key = read_key(&args.key)?;
    let log_key = args.vkey.as_deref().map(read_vkey).transpose()?;
    if let Some(pid) = args.server_pid {
        footprint::memory(pid).map_err(|e| bad(format!("--server-pid {pid}: {e}")))?;
    }
    if let Some(dir) = &args.data_dir {
        footprint::disk_usage(dir).map_err(|e| bad(format!("--data-dir: {e}")))?;
    }
    let events = usize::try_from(args.events).map_err(|_| bad("--events: too many".into()))?;
    let concurrency = args.concurrency as usize;
    let batch = args.batch.map(|b| b as usize);
    let connections = args.connections.map_or(concurrency, |k| k as usize);

    let (runtime, clients, note) = connect_and_probe(&args.log, connections)?;
    if let Some(log_key) = &log_key {
        verify::checkpoint_size(note.as_bytes(), Some(log_key))?;
    }

    let nonce = workload::run_nonce();
    let signing_started = Instant::now();
    eprintln!("loadgen: signing {events} events before the clock starts");
    let signed = workload::sign_all(&key, events, nonce);
    let ids: Vec<[u8; 32]> = match log_key {
        Some(_) => signed.iter().map(verifier::event::event_id).collect(),
        None => Vec::new(),
    };
    let per_request = batch.unwrap_or(1);
    let mut requests = Vec::with_capacity(events.div_ceil(per_request));
    let mut rest = signed.into_iter();
    loop {
        let request: Vec<_> = rest.by_ref().take(per_request).collect();
        if request.is_empty() {
            break;
        }
        requests.push(request);
    }
    let signing = signing_started.elapsed();

    eprintln!("loadgen: running");
    let plan = drive::Plan {
        requests,
        batched: batch.is_some(),
        batch: per_request,
        concurrency,
        schedule: pacing::Schedule::new(per_request, args.rate),
        checker: log_key.clone().map(verify::AnswerChecker::new),
    };
    let (mut tally, wall) = runtime.block_on(drive::run(clients, plan));
    drop(runtime);
    // Memory first, before the reads below make the server do anything else.
    let memory = args.server_pid.map(footprint::memory);

    let mut storage = None;
    if args.data_dir.is_some() || log_key.is_some() {
        eprintln!("loadgen: reading the log's entries back over HTTP");
        let note = http.get("checkpoint").map_err(bad)?;
        let tree_size = verify::checkpoint_size(&note, log_key.as_ref())?;
        let disk = args
            .data_dir
            .as_deref()
            .map(footprint::disk_usage)
            .transpose()
            .map_err(bad)?;
        let mut check = log_key
            .is_some()
            .then(|| verify::EntryCheck::new(std::mem::take(&mut tally.acks), ids));
        // Without a data directory only the bundles holding this run's
        // entries are needed; with one, every entry counts.
        let bundles: Vec<u64> = match (&disk, &check) {
            (None, Some(check)) => check.bundles(),
            _ => footprint::all_bundles(tree_size).collect(),
        };
        let mut raw_entry_bytes = 0;
        footprint::scan_entries(&http, tree_size, bundles, |n, entries| {
            raw_entry_bytes += entries.iter().map(|e| e.len() as u64).sum::<u64>();
            if let Some(check) = &mut check {
                check.visit(n, entries);
            }
        })
        .map_err(bad)?;
        for failure in check.map(verify::EntryCheck::finish).unwrap_or_default() {
            tally.verification_failed(failure);
        }
        storage = args
            .data_dir
            .zip(disk)
            .map(|(data_dir, disk)| report::Storage {
                data_dir,
                tree_size,
                disk,
                raw_entry_bytes,
            });
    }

    let latency = std::mem::take(&mut tally.latencies).summary();
    Ok(report::Report {
        setup: report::Setup {
            log: args.log,
            events,
            concurrency,
            connections,
            batch,
            rate: args.rate,
            verification: log_key.is_some(),
            nonce,
            signing,
        },
        tally,
        latency,
        wall,
        memory,
        storage,
    })
}

/// The async runtime, `connections` gRPC connections to the log at `url`,
/// and the log's checkpoint note, proving it answers before any clock starts.
fn connect_and_probe(
    url: &str,
    connections: usize,
) -> Result<
    (
        tokio::runtime::Runtime,
        Vec<verifier::proto::log_client::LogClient<tonic::transport::Channel>>,
        String,
    ),
    Failure,
> {
    let bad = Failure::Unchecked;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(format!("cannot start the async runtime: {e}")))?;
    let clients = runtime
        .block_on(drive::connect(url, connections))
        .map_err(bad)?;
    let note = runtime
        .block_on(drive::probe(&clients[0]))
        .map_err(|e| bad(format!("{url}: {e}")))?;
    Ok((runtime, clients, note))
}

fn read_key(path: &std::path::Path) -> Result<SigningKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Unchecked(format!("--key {}: {e}", path.display())))?;
    SigningKey::parse(&text)
        .map_err(|e| Failure::Unchecked(format!("--key {}: {e}", path.display())))
}

/// A verifier key given inline (`name+id+key`) or as a file holding one.
fn read_vkey(arg: &str) -> Result<VerifierKey, Failure> {
    if let Ok(key) = VerifierKey::parse(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        Failure::Unchecked(format!(
            "--vkey {arg}: not a verifier key, and cannot read it as a file: {e}"
        ))
    })?;
    VerifierKey::parse(&text).map_err(|e| Failure::Unchecked(format!("--vkey {arg}: {e}")))
}
