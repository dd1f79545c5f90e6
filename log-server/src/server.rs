//! Start-up, serving and shutdown of one log.
//!
//! Start-up order: read the witness list; open and check the data
//! directory; open storage; recompute the root from the stored tiles and
//! compare it with the last signed checkpoint (refusing to serve on any
//! mismatch); add the lookup rows of any entries stored without them (a
//! store from before lookups existed; see [`crate::lookup`]); resume the
//! sequencer from the stored right edge; start the
//! witness collector, if witnesses are listed; bind; serve.
//!
//! Shutdown order (Ctrl-C or SIGTERM): stop accepting connections and let
//! in-flight requests finish; close the sequencer's queue and let it
//! integrate what is queued; stop the witness collector (a witness request
//! in flight finishes within its timeout); then exit. Every answered
//! append is durable at every point of this sequence.

use crate::admission::{BudgetConfig, Budgets};
use crate::data_dir::{DataDir, Requested};
use crate::entry_stream::ReadLimits;
use crate::grpc::LogService;
use crate::log::{Log, Published};
use crate::sequencer::{BatchPolicy, Sequencer};
use crate::storage::{Batch, Storage};
use crate::witness_config::WitnessList;
use crate::witnessing::{Collector, RetryPolicy};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::keys::SigningKey;
use verifier::merkle::{CompactRange, EMPTY_HASH};
use verifier::proto::log_server::LogServer;
use verifier::serving::{Limits, Server};
use verifier::tile_builder::TileBuilder;
use verifier::tiles::TILE_WIDTH;
use verifier::tls::{ClientTls, TlsArgs};

/// Why the log would not start or stopped serving: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(pub String);

impl From<crate::data_dir::ConfigError> for ServeError {
    fn from(e: crate::data_dir::ConfigError) -> Self {
        Self(e.0)
    }
}

impl From<crate::storage::StorageError> for ServeError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self(e.to_string())
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The data directory and what the command line asked of it.
    pub data: Requested,
    /// Where to listen for gRPC and tiles.
    pub listen: SocketAddr,
    /// How the sequencer cuts batches.
    pub batching: BatchPolicy,
    /// `--witnesses`: the witness list, if given; otherwise
    /// `<data-dir>/witnesses` if it exists.
    pub witnesses: Option<PathBuf>,
    /// What each connection and request may hold.
    pub limits: Limits,
    /// What entry reads (`GetEntries`, `FindEntries`) may hold.
    pub reads: ReadLimits,
    /// What appends may cost, per connection and per key.
    pub budgets: BudgetConfig,
    /// `--tls-cert`, `--tls-key`, `--insecure-plain-http`.
    pub tls: TlsArgs,
    /// `--client-ca`: submitters (every client) must present a
    /// certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// What the witness collector trusts, and presents, over `https://`.
    pub witness_tls: ClientTls,
}

/// Runs the log until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let transport = options
        .tls
        .transport(options.listen, options.client_ca.as_deref())
        .map_err(ServeError)?;
    let witnesses = crate::witness_config::load(options.witnesses.as_deref(), &options.data.dir)?;
    let data = DataDir::open(&options.data)?;
    let storage: Arc<dyn Storage> = Arc::from(data.backend.open(&data.dir)?);
    let (log, builder) = recover(storage, &data.key)?;
    let log = Arc::new(log);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| ServeError(format!("cannot listen on {}: {e}", options.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| ServeError(format!("cannot read the bound address: {e}")))?;

    let sequencer = Arc::new(Sequencer::start(
        Arc::clone(&log),
        builder,
        data.key.clone(),
        options.batching,
    ));
    let collector =
        witnesses.and_then(|list| start_collector(&log, &data.origin, list, &options.witness_tls));
    let service = LogService::new(
        Arc::clone(&log),
        Arc::clone(&sequencer),
        Arc::new(data.allowlist.clone()),
    )
    .with_budgets(Arc::new(Budgets::new(options.budgets)))
    .with_read_limits(options.reads);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<LogServer<LogService>>().await;
    let grpc = tonic::service::Routes::new(LogServer::new(service))
        .add_service(health_service)
        .into_axum_router();
    let app = crate::routing::app(grpc, Arc::clone(&log));

    let shutdown = verifier::serving::shutdown_signal();
    announce(
        &data,
        address,
        log.latest().size,
        &options.limits,
        transport.scheme(),
    );
    Server::with_handshake(listener, transport, options.limits)
        .serve(app, shutdown)
        .await;
    tracing::info!("no longer accepting requests; draining the sequencer");
    sequencer.shutdown();
    if let Some(collector) = collector {
        collector.abort();
    }
    Ok(())
}

/// Starts collecting cosignatures from the listed witnesses, if any. Until
/// the first round completes, the stored checkpoint is served as it is.
fn start_collector(
    log: &Arc<Log>,
    origin: &str,
    list: WitnessList,
    tls: &ClientTls,
) -> Option<tokio::task::JoinHandle<()>> {
    if list.witnesses.is_empty() {
        tracing::info!(path = %list.path.display(), "no witnesses listed");
        return None;
    }
    let keys: Vec<String> = list.witnesses.iter().map(|w| w.key.key_id()).collect();
    tracing::info!(
        path = %list.path.display(),
        witnesses = %keys.join(", "),
        "collecting cosignatures from {} witness(es)",
        keys.len()
    );
    log.serve_witnessed(log.latest());
    let collector = Collector::new(
        Arc::clone(log),
        origin.to_owned(),
        list.witnesses,
        RetryPolicy::default(),
    )
    .with_tls(tls);
    Some(tokio::spawn(collector.run()))
}

/// Prints what is served, where, and the key to verify it with. The
/// `listening on` line is what scripts and tests wait for.
fn announce(data: &DataDir, address: SocketAddr, size: u64, limits: &Limits, scheme: &str) {
    println!("log-server: origin {} ({} entries)", data.origin, size);
    println!(
        "log-server: data directory {} ({:?} storage)",
        data.dir.display(),
        data.backend
    );
    println!("log-server: verifier key {}", data.key.verifier_key());
    println!(
        "log-server: {} submitter key(s) allowed, from {}",
        data.allowlist.len(),
        data.allowlist_path.display()
    );
    println!("log-server: gRPC and C2SP tiles on {scheme}://{address}");
    println!(
        "log-server: at most {} connections; header timeout {:?}, idle timeout {:?}, \
         request deadline {:?}",
        limits.max_connections, limits.header_timeout, limits.idle_timeout, limits.request_timeout
    );
    println!("listening on {address}");
}

/// Checks storage against its last signed checkpoint, rebuilds the
/// sequencer's right edge, and adds any missing lookup rows. Refuses, with
/// the reason, if storage and checkpoint disagree.
pub fn recover(
    storage: Arc<dyn Storage>,
    key: &SigningKey,
) -> Result<(Log, TileBuilder), ServeError> {
    let size = storage.size()?;
    let note = match storage.checkpoint()? {
        Some(note) => note,
        None if size == 0 => first_checkpoint(&*storage, key)?,
        None => {
            return Err(ServeError(format!(
                "storage holds {size} entries but no checkpoint"
            )))
        }
    };
    let signed = SignedCheckpoint::verify(&note, &key.verifier_key()).map_err(|e| {
        ServeError(format!(
            "the stored checkpoint does not verify under log.key: {e}"
        ))
    })?;
    let checkpoint = signed.checkpoint;
    if checkpoint.size != size {
        return Err(ServeError(format!(
            "storage holds {size} entries but its checkpoint is for {}",
            checkpoint.size
        )));
    }
    let log = Log::new(
        Arc::clone(&storage),
        Published {
            note: signed_note_text(note)?,
            size,
            root: checkpoint.root,
        },
    );
    let root = log
        .stored_root(size)
        .map_err(|e| ServeError(e.to_string()))?;
    if root != checkpoint.root {
        return Err(ServeError(format!(
            "refusing to serve: the tree in storage has root {root} but the signed checkpoint \
             for size {size} has root {}; storage was altered or damaged",
            checkpoint.root
        )));
    }
    let peaks = log
        .stored_peaks(size)
        .map_err(|e| ServeError(e.to_string()))?;
    let range = CompactRange::from_peaks(size, peaks).map_err(|e| ServeError(e.to_string()))?;
    let edges = (0..TileBuilder::levels_for(size))
        .map(|level| edge_tile(&*storage, level, size))
        .collect::<Result<Vec<_>, _>>()?;
    let builder = TileBuilder::resume(range, edges)
        .map_err(|e| ServeError(format!("stored tiles do not match the tree: {e}")))?;
    let indexed = crate::lookup::build_missing_rows(&*storage)
        .map_err(|e| ServeError(format!("building the lookup index: {e}")))?;
    if indexed > 0 {
        tracing::info!(
            entries = indexed,
            "lookup index built for entries stored before it existed"
        );
    }
    Ok((log, builder))
}

/// The stored partial tile at the right edge of `level`, empty if full.
fn edge_tile(storage: &dyn Storage, level: u8, size: u64) -> Result<Vec<u8>, ServeError> {
    let count = size >> (8 * u32::from(level));
    let width = (count % TILE_WIDTH) as usize;
    if width == 0 {
        return Ok(Vec::new());
    }
    let index = count / TILE_WIDTH;
    let tile = storage
        .tile(level, index)?
        .ok_or_else(|| ServeError(format!("hash tile {level}/{index} is missing")))?;
    Ok(tile)
}

/// Signs and stores the empty tree's checkpoint, so that a new log has a
/// checkpoint from its first moment.
fn first_checkpoint(storage: &dyn Storage, key: &SigningKey) -> Result<Vec<u8>, ServeError> {
    let note = Checkpoint {
        origin: key.name().to_owned(),
        size: 0,
        root: EMPTY_HASH,
    }
    .sign(key);
    storage.commit(&Batch {
        checkpoint: note.clone(),
        ..Batch::default()
    })?;
    Ok(note)
}

fn signed_note_text(note: Vec<u8>) -> Result<String, ServeError> {
    String::from_utf8(note).map_err(|_| ServeError("the stored checkpoint is not UTF-8".into()))
}
