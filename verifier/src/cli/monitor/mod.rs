//! `verifier monitor`: follow logs, gossip their checkpoints with other
//! monitors over gRPC, and turn any split view into evidence.
//!
//! Every `--interval-ms` the monitor polls each log, moving its own view
//! (the last verified checkpoint, kept in `--state`) forward only by a
//! consistency proof from the log's tiles, then runs a gossip round: it
//! calls `tlog.v1.Gossip/Exchange` on every `--peer` with its own views and
//! checks the peer's in return. It also serves `Exchange` on `--listen`, so
//! a monitor learns from peers that call it as well as from those it calls;
//! a monitor with no `--peer` of its own still gossips with those that list
//! it. A round also runs as soon as a peer's checkpoint moves an own view
//! forward, so the news spreads without waiting.
//!
//! Start-up order: evidence from earlier runs is announced; the gossip
//! server is bound and `listening on <addr>` printed on stdout; then the
//! first poll and round. Progress and findings are logged on stderr, one
//! `gossip round <n> done` line per round.
//!
//! A split view (see [`follow`] and [`compare`]) is written as evidence to
//! `--evidence-dir` (see [`alert`]). With `--on-alert` the command runs and
//! monitoring goes on; without it the monitor exits 1. Because an unheeded
//! alarm must not go quiet on restart, the monitor without `--on-alert`
//! refuses to start (exit 1) while evidence files are in the directory;
//! with it, they are announced at error level and monitoring goes on.

mod alert;
mod compare;
mod follow;
mod gossip;
pub(crate) mod intake;
mod logs;
mod peers;
mod settled;

use super::outcome::{Failure, Outcome, Report};
use super::remote::{verifier_key, Log};
use alert::Alerts;
use follow::FollowedLog;
use gossip::{GossipRate, GossipService, Peers};
use logs::Logs;
use serde_json::json;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Arguments of `verifier monitor`.
#[derive(clap::Args)]
pub struct Args {
    /// A log to follow, by URL; repeat for more logs, each with its --vkey.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
    /// The verifier key (inline or a file) of the --log in the same
    /// position.
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// Directory for the last verified checkpoint of each log (shared with
    /// `verifier checkpoint --state`), and by default for evidence.
    #[arg(long)]
    state: PathBuf,
    /// Where to serve gossip (gRPC), e.g. 127.0.0.1:7400; port 0 picks one.
    #[arg(long)]
    listen: SocketAddr,
    #[command(flatten)]
    limits: crate::serving::LimitArgs,
    #[command(flatten)]
    tls: crate::tls::TlsArgs,
    /// How https:// logs and peers are reached.
    #[command(flatten)]
    client_tls: crate::tls::ClientTlsArgs,
    /// Gossip messages each peer address (an IPv6 /64 counts as one) may
    /// send per second once its burst is spent; more are answered
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 20.0, value_name = "MESSAGES", value_parser = positive_rate)]
    gossip_rate: f64,
    /// Gossip messages a peer address may send at once before
    /// --gossip-rate applies.
    #[arg(long, default_value_t = 60, value_name = "MESSAGES", value_parser = clap::value_parser!(u32).range(1..))]
    gossip_burst: u32,
    /// Another monitor's gossip URL, http://host:port or https://host:port;
    /// repeatable.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Milliseconds between polls of the logs and gossip rounds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    /// A command to run (with `sh -c`) for each new evidence file, whose
    /// path is its $1 and TLOG_EVIDENCE; monitoring then goes on. Without
    /// it the monitor exits 1 at the first split view, and refuses to
    /// start while evidence files remain in the evidence directory.
    #[arg(long)]
    on_alert: Option<String>,
    /// Where evidence files are written [default: <state>/evidence].
    #[arg(long)]
    evidence_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    super::log_to_stderr();
    let followed = follow_logs(&args)?;
    let evidence_dir = args
        .evidence_dir
        .clone()
        .unwrap_or_else(|| args.state.join("evidence"));
    let alerts = Alerts::open(evidence_dir, args.on_alert.clone())?;
    announce_unresolved(&alerts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::unchecked(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(monitor(args, followed, alerts))
}

/// A `--gossip-rate`: a positive, finite number of messages per second.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of messages per second"
        )),
    }
}

/// Opens each `--log` with its `--vkey` and its trusted state.
fn follow_logs(args: &Args) -> Result<Vec<FollowedLog>, Failure> {
    if args.logs.len() != args.vkeys.len() {
        return Err(Failure::unchecked(format!(
            "{} --log but {} --vkey: give one --vkey per --log, in the same order",
            args.logs.len(),
            args.vkeys.len()
        )));
    }
    if args.logs.len() > intake::MAX_CHECKPOINTS {
        return Err(Failure::unchecked(format!(
            "--log: at most {} logs per monitor, as a gossip message carries at most that many checkpoints",
            intake::MAX_CHECKPOINTS
        )));
    }
    let tls = args.client_tls.load().map_err(Failure::unchecked)?;
    let mut followed: Vec<FollowedLog> = Vec::new();
    for (url, vkey) in args.logs.iter().zip(&args.vkeys) {
        let key = verifier_key(vkey)?;
        if let Some(other) = followed.iter().find(|f| f.key().name() == key.name()) {
            return Err(Failure::unchecked(format!(
                "--log {url}: origin {} is already followed at {}",
                key.name(),
                other.url()
            )));
        }
        followed.push(FollowedLog::open(
            Log::new(url)?.with_tls(&tls),
            key,
            &args.state,
        )?);
    }
    Ok(followed)
}

/// Announces evidence from earlier runs; without `--on-alert`, refuses to
/// run while there is any.
fn announce_unresolved(alerts: &Alerts) -> Result<(), Failure> {
    let unresolved = alerts.unresolved()?;
    for file in &unresolved {
        match &file.origin {
            Ok(origin) => tracing::error!(
                origin,
                "unresolved evidence of a split view: {}",
                file.path.display()
            ),
            Err(reason) => tracing::error!(
                "unresolved evidence file {} cannot be read: {reason}",
                file.path.display()
            ),
        }
    }
    if unresolved.is_empty() || alerts.keeps_running() {
        return Ok(());
    }
    Err(Failure::security_with(
        format!(
            "{} unresolved evidence file(s) of a split view in {}; check each with \
             `verifier check-evidence <file> --vkey <log key>`, then move it out of the \
             directory (or run with --on-alert)",
            unresolved.len(),
            alerts.dir().display()
        ),
        unresolved
            .iter()
            .map(|file| ("evidence file".to_owned(), file.path.display().to_string()))
            .collect(),
    ))
}

/// Serves gossip and runs the poll-and-gossip loop until a split view
/// stops it (without `--on-alert`), the server fails, or Ctrl-C.
async fn monitor(args: Args, followed: Vec<FollowedLog>, alerts: Alerts) -> Outcome {
    let client_tls = args.client_tls.load().map_err(Failure::unchecked)?;
    let peers = Peers::new(&args.peers, &client_tls)?;
    let transport = args
        .tls
        .transport(args.listen, None)
        .map_err(Failure::unchecked)?;
    let (findings_tx, mut findings) = mpsc::unbounded_channel();
    let logs = Arc::new(Logs::new(followed, alerts, findings_tx));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::unchecked(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::unchecked(format!("--listen {}: {e}", args.listen)))?;
    let mut server = tokio::spawn(gossip::serve(
        listener,
        GossipService::new(
            Arc::clone(&logs),
            GossipRate {
                per_second: args.gossip_rate,
                burst: args.gossip_burst,
            },
        ),
        args.limits.limits(),
        transport.clone(),
    ));
    tracing::info!(
        "following {} log(s), gossiping with {} peer(s) every {} ms",
        args.logs.len(),
        peers.len(),
        args.interval_ms
    );
    println!("monitor: gossip on {}://{address}", transport.scheme());
    println!("listening on {address}");
    let _ = std::io::stdout().flush();

    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut rounds = 0;
    loop {
        tokio::select! {
            biased;
            Some(finding) = findings.recv() => return Err(finding),
            served = &mut server => {
                return Err(served.unwrap_or_else(|e| {
                    Failure::unchecked(format!("the gossip server task failed: {e}"))
                }));
            }
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let polled = Arc::clone(&logs);
                if let Err(e) = tokio::task::spawn_blocking(move || polled.poll_all()).await {
                    return Err(Failure::unchecked(format!("polling the logs failed: {e}")));
                }
                rounds += 1;
                peers.round(&logs, rounds).await;
            }
            () = logs.advanced() => {
                rounds += 1;
                peers.round(&logs, rounds).await;
            }
        }
    }
    Ok(Report {
        human: format!("monitor stopped after {rounds} gossip round(s)"),
        json: json!({ "gossip_rounds": rounds }),
    })
}
