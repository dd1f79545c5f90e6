//! `log-server`: run a data-flow and code-release transparency log.

use clap::{Args, Parser, Subcommand};
use log_server::admission::BudgetConfig;
use log_server::data_dir::Requested;
use log_server::entry_stream::ReadLimitArgs;
use log_server::sequencer::BatchPolicy;
use log_server::server::{serve, ServeOptions};
use log_server::storage::Backend;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use verifier::serving::LimitArgs;
use verifier::tls::{ClientTlsArgs, TlsArgs};

#[derive(Parser)]
#[command(
    version,
    about = "A verifiable, append-only log of data flows and code releases."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the log: gRPC and C2SP tiles on one port (the default command).
    Serve(ServeArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// The data directory; created on first start.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Where to serve gRPC and tiles. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The log's origin (its name, and its key's name). Remembered in the
    /// data directory on first start; later starts may omit it.
    #[arg(long)]
    origin: Option<String>,
    /// The storage backend, fixed on first start [default: redb].
    #[arg(long, value_enum)]
    storage: Option<Backend>,
    /// The submitter allowlist: one verifier key per line
    /// [default: <data-dir>/submitters].
    #[arg(long)]
    submitters: Option<PathBuf>,
    /// The witnesses to collect cosignatures from: one `<cosigner verifier
    /// key> <URL>` per line [default: <data-dir>/witnesses, if it exists].
    #[arg(long)]
    witnesses: Option<PathBuf>,
    /// The most entries in one batch (one durable write, one checkpoint).
    #[arg(long, default_value_t = BatchPolicy::default().max_entries)]
    batch_size: usize,
    /// How long a batch may wait for more entries, in milliseconds. 0 takes
    /// whatever is queued, which keeps latency low and still batches under load.
    #[arg(long, default_value_t = 0)]
    batch_delay_ms: u64,
    /// How many submissions may queue before new ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = BatchPolicy::default().queue_capacity)]
    queue_capacity: usize,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// Require every client (submitters, and readers too) to present a
    /// certificate signed by a CA in this PEM file (mTLS), checked before
    /// any request is read. Needs --tls-cert.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// How the witness collector reaches https:// witnesses.
    #[command(flatten)]
    witness_tls: ClientTlsArgs,
    #[command(flatten)]
    reads: ReadLimitArgs,
    #[command(flatten)]
    budgets: BudgetArgs,
}

/// What appends may cost (see `log_server::admission`).
#[derive(Args, Clone)]
struct BudgetArgs {
    /// Failed signature checks one connection may cause per second; past
    /// its burst, its events are refused unchecked.
    #[arg(long, default_value_t = BudgetConfig::default().failures_per_second)]
    failed_signatures_per_second: f64,
    /// Failed signature checks one connection may cause at once.
    #[arg(long, default_value_t = BudgetConfig::default().failure_burst)]
    failed_signature_burst: f64,
    /// Failed signature checks all connections from one address (an IPv6
    /// /64) may cause per second.
    #[arg(long, default_value_t = BudgetConfig::default().address_failures_per_second)]
    address_failed_signatures_per_second: f64,
    /// Failed signature checks all connections from one address may cause
    /// at once.
    #[arg(long, default_value_t = BudgetConfig::default().address_failure_burst)]
    address_failed_signature_burst: f64,
    /// Append calls per connection per second.
    #[arg(long, default_value_t = BudgetConfig::default().requests_per_second)]
    appends_per_second: f64,
    /// Append calls per connection at once.
    #[arg(long, default_value_t = BudgetConfig::default().request_burst)]
    append_burst: f64,
    /// Verified events per submitter key per second.
    #[arg(long, default_value_t = BudgetConfig::default().key_events_per_second)]
    key_events_per_second: f64,
    /// Verified events per submitter key at once.
    #[arg(long, default_value_t = BudgetConfig::default().key_event_burst)]
    key_event_burst: f64,
}

impl BudgetArgs {
    fn config(&self) -> BudgetConfig {
        BudgetConfig {
            failures_per_second: self.failed_signatures_per_second.max(0.001),
            failure_burst: self.failed_signature_burst.max(1.0),
            address_failures_per_second: self.address_failed_signatures_per_second.max(0.001),
            address_failure_burst: self.address_failed_signature_burst.max(1.0),
            requests_per_second: self.appends_per_second.max(0.001),
            request_burst: self.append_burst.max(1.0),
            key_events_per_second: self.key_events_per_second.max(0.001),
            key_event_burst: self.key_event_burst.max(1.0),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let witness_tls = match args.witness_tls.load() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("log-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = ServeOptions {
        data: Requested {
            dir: args.data_dir,
            origin: args.origin,
            backend: args.storage,
            submitters: args.submitters,
        },
        listen: args.listen,
        batching: BatchPolicy {
            max_entries: args.batch_size.max(1),
            max_delay: Duration::from_millis(args.batch_delay_ms),
            queue_capacity: args.queue_capacity.max(1),
        },
        witnesses: args.witnesses,
        limits: args.limits.limits(),
        reads: args.reads.limits(),
        budgets: args.budgets.config(),
        tls: args.tls,
        client_ca: args.client_ca,
        witness_tls,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("log-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("log-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` takes `tracing` target directives such as
/// `info` or `log_server=debug`.
fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
}
