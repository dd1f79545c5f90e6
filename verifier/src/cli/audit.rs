//! `verifier audit`: replay every entry the log serves, check each one
//! against the log's admission rules, recompute the root and compare it
//! with the signed checkpoint; the next run resumes where this one ended.
//!
//! The engine is [`crate::audit`]; this module fetches entries (entry
//! bundles from the tiles, or the gRPC `GetEntries` stream) and the hash
//! tiles the engine rebuilds from them, shows progress, keeps the audit
//! state in the log's trusted-state directory and turns findings into
//! evidence.

use super::entry_bundles::for_each_bundle;
use super::outcome::{Failure, Outcome, Report};
use super::remote::{grpc, Log, LogArgs};
use super::state::{write_atomically, Acceptance, TrustedState};
use crate::audit::hash_tiles::{compare, rebuilt_between};
use crate::audit::{AuditFinding, AuditState, Auditor};
use crate::checkpoint::SignedCheckpoint;
use crate::keys::KeyRing;
use crate::proto::GetEntriesRequest;
use crate::tiles::{TileId, TILE_WIDTH};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde_json::json;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Arguments of `verifier audit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: LogArgs,
    /// Directory of trusted state. The checkpoint must be consistent with
    /// the one trusted there, and the audit resumes from the state kept
    /// there.
    #[arg(long)]
    state: PathBuf,
    /// The submitters' verifier keys, one per line (`#` comments): an entry
    /// signed by any other key is a finding.
    #[arg(long)]
    submitters: PathBuf,
    /// Where to read entries: the tiles (which a static mirror also
    /// serves), or the log's gRPC stream.
    #[arg(long, value_enum, default_value_t = Source::Tiles)]
    source: Source,
}

/// Where entries are read from.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Source {
    /// `tile/entries/…` bundles over HTTP.
    Tiles,
    /// The gRPC `GetEntries` stream.
    Grpc,
}

/// The audit state's file in the log's trusted-state directory.
const STATE_FILE: &str = "audit";

/// Runs `verifier audit`: accept the checkpoint into the trusted state,
/// audit the entries not yet audited, compare roots, save the new state.
pub fn run(args: Args) -> Outcome {
    let submitters = read_submitters(&args.submitters)?;
    let (log, key) = args.target.open()?;
    let signed = log.checkpoint(&key)?;
    let trusted = TrustedState::open(&args.state, &key)?;
    let acceptance = trusted.accept(&log, &signed)?;
    let state_path = trusted.dir().join(STATE_FILE);
    let state = load_state(&state_path)?;
    let (from, size) = (state.size(), signed.checkpoint.size);

    let started = Instant::now();
    let mut auditor = Auditor::new(state, submitters);
    start_tiles(&log, &signed, &mut auditor)?;
    let mut progress = Progress::new(from, size);
    let (fed, differs) = std::thread::scope(|scope| {
        let mut tiles = ServedTiles::fetch(scope, &log, from, size);
        let mut feed = Feed {
            log: &log,
            signed: &signed,
            auditor: &mut auditor,
            tiles: &mut tiles,
            progress: &mut progress,
        };
        let fed = match args.source {
            Source::Tiles => feed.read_tiles(),
            Source::Grpc => feed.read_grpc(),
        };
        (fed, tiles.differs.take())
    });
    progress.end(auditor.size());
    fed?;
    // A root mismatch outranks a tile that differs: it says the entries
    // are not the ones the log signed, which also makes the tiles differ.
    let state = auditor.finish(&signed.checkpoint).map_err(|finding| {
        let tiles = differs
            .iter()
            .map(|d| ("hash tiles".to_owned(), d.finding.to_string()));
        evidence(finding, &signed, tiles.collect())
    })?;
    if let Some(d) = differs {
        return Err(tile_evidence(
            d.finding,
            &signed,
            Some(&d.served),
            Some(&d.rebuilt),
        ));
    }
    let elapsed = started.elapsed();
    write_atomically(&state_path, state.to_text().as_bytes())?;
    Ok(summary(&signed, &state, from, elapsed, acceptance))
}

/// Reads `--submitters`. An empty list is refused as bad input: it would
/// turn every entry into a finding.
fn read_submitters(path: &Path) -> Result<KeyRing, Failure> {
    let fail =
        |reason: String| Failure::unchecked(format!("--submitters {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let ring = KeyRing::parse(&text).map_err(|e| fail(e.to_string()))?;
    if ring.is_empty() {
        return Err(fail("holds no verifier key".into()));
    }
    Ok(ring)
}

/// Loads the saved audit state; none yet means nothing is audited.
fn load_state(path: &Path) -> Result<AuditState, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuditState::default()),
        Err(e) => {
            return Err(Failure::unchecked(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    AuditState::parse(&text).map_err(|e| {
        Failure::unchecked(format!(
            "{}: {e}; delete it to audit the log from the start",
            path.display()
        ))
    })
}

/// Starts the rebuild of the hash tiles up to `signed`'s size, from the
/// log's partial tiles at the audited size (see
/// [`crate::audit::hash_tiles`]).
fn start_tiles(log: &Log, signed: &SignedCheckpoint, auditor: &mut Auditor) -> Result<(), Failure> {
    let size = signed.checkpoint.size;
    let seeds = auditor.tile_seeds(size);
    let served = seeds
        .iter()
        .map(|seed| log.tile(seed.tile, size))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|f| f.with_checkpoint(signed.note_text()))?;
    auditor.rebuild_tiles(size, &served).map_err(|finding| {
        let served = seeds.iter().zip(&served).find_map(|(seed, bytes)| {
            matches!(&finding, AuditFinding::HashTile { path, .. } if *path == seed.tile.path())
                .then_some(bytes.as_slice())
        });
        tile_evidence(finding, signed, served, None)
    })
}

/// The hash tiles the audit rebuilds, as the log serves them, fetched
/// ahead in the order they are rebuilt ([`rebuilt_between`]).
struct ServedTiles {
    fetched: Receiver<(TileId, Result<Vec<u8>, Failure>)>,
    /// The first tile that differs from the rebuilt one; once there is
    /// one, no more are compared.
    differs: Option<Difference>,
}

/// A hash tile the log serves that differs from the rebuilt one.
struct Difference {
    finding: AuditFinding,
    served: Vec<u8>,
    rebuilt: Vec<u8>,
}

impl ServedTiles {
    /// Tiles fetched ahead of the one being compared.
    const AHEAD: usize = 8;

    /// Starts fetching, on a thread of `scope`, the tiles an audit from
    /// `from` to `size` entries rebuilds. The thread stops at the first
    /// failure, or when the audit stops asking.
    fn fetch<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        log: &'scope Log,
        from: u64,
        size: u64,
    ) -> Self {
        let (send, fetched) = std::sync::mpsc::sync_channel(Self::AHEAD);
        scope.spawn(move || {
            for tile in rebuilt_between(from, size) {
                let bytes = log.tile(tile, size);
                let failed = bytes.is_err();
                if send.send((tile, bytes)).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            fetched,
            differs: None,
        }
    }

    /// Compares every tile the auditor has rebuilt since the last call
    /// with the log's, keeping the first that differs for the end of the
    /// audit (see [`run`]). A tile that cannot be fetched ends the audit.
    fn check(&mut self, auditor: &mut Auditor, signed: &SignedCheckpoint) -> Result<(), Failure> {
        for (tile, rebuilt) in auditor.take_tiles() {
            if self.differs.is_some() {
                continue;
            }
            let (fetched, served) = self
                .fetched
                .recv()
                .map_err(|_| Failure::unchecked(format!("{} was not fetched", tile.path())))?;
            assert_eq!(fetched, tile, "tiles are rebuilt in the order fetched");
            let served = served.map_err(|f| f.with_checkpoint(signed.note_text()))?;
            if let Err(finding) = compare(tile, &rebuilt, &served) {
                self.differs = Some(Difference {
                    finding,
                    served,
                    rebuilt,
                });
            }
        }
        Ok(())
    }
}

/// What one audit run feeds entries into, and checks them with.
struct Feed<'a> {
    log: &'a Log,
    signed: &'a SignedCheckpoint,
    auditor: &'a mut Auditor,
    tiles: &'a mut ServedTiles,
    progress: &'a mut Progress,
}

impl Feed<'_> {
    /// Audits `entries`, the next ones, and compares the hash tiles they
    /// complete. `source` and `first` name them in evidence.
    fn push<E: AsRef<[u8]> + Sync>(
        &mut self,
        source: &str,
        first: u64,
        entries: &[E],
    ) -> Result<(), Failure> {
        self.auditor
            .push_all(entries)
            .map_err(|finding| entry_evidence(finding, self.signed, source, first, entries))?;
        self.tiles.check(self.auditor, self.signed)?;
        self.progress.update(self.auditor.size());
        Ok(())
    }

    /// Feeds the entry bundles from the audited size to the checkpoint's
    /// size. The next bundles are fetched while one is being checked.
    fn read_tiles(&mut self) -> Result<(), Failure> {
        let (log, signed) = (self.log, self.signed);
        for_each_bundle(
            log,
            self.auditor.size(),
            signed.checkpoint.size,
            |tile, first, entries| self.push(&tile.path(), first, entries),
        )
        .map_err(|f| f.with_checkpoint(signed.note_text()))
    }

    /// Feeds the entries from the audited size to the checkpoint's size
    /// from the gRPC stream, a bundle's worth at a time. Each message must
    /// come within the request deadline, and the stream keep `--min-rate`.
    fn read_grpc(&mut self) -> Result<(), Failure> {
        let (log, signed) = (self.log, self.signed);
        let (start, end) = (self.auditor.size(), signed.checkpoint.size);
        if start >= end {
            return Ok(());
        }
        let stream_failed =
            |s: tonic::Status| Failure::unchecked(format!("GetEntries: {}", s.message()));
        super::block_on(async {
            let mut client = grpc(log).await?;
            let mut batch = Vec::with_capacity(TILE_WIDTH as usize);
            let (mut due, mut received, started) = (start, 0, Instant::now());
            // A server ends a stream early at its per-call limits (as RFC
            // 6962 get-entries returns fewer entries than asked): ask again
            // from the next index until the range is read.
            while due < end {
                let call_start = due;
                let mut stream = log
                    .rpc(
                        "GetEntries",
                        client.get_entries(GetEntriesRequest { start: due, end }),
                    )
                    .await?
                    .map_err(stream_failed)?
                    .into_inner();
                while let Some(entry) = log
                    .rpc("GetEntries", stream.message())
                    .await?
                    .map_err(stream_failed)?
                {
                    if entry.index != due {
                        let summary = format!(
                            "GetEntries sent entry {} where entry {due} was due",
                            entry.index
                        );
                        return Err(Failure::security(summary).with_checkpoint(signed.note_text()));
                    }
                    received += entry.data.len() as u64;
                    log.check_rate("GetEntries", received, started)?;
                    due += 1;
                    batch.push(entry.data);
                    if batch.len() as u64 == TILE_WIDTH {
                        self.push("GetEntries", due - TILE_WIDTH, &batch)?;
                        batch.clear();
                    }
                }
                if due == call_start {
                    return Err(Failure::unchecked(format!(
                        "GetEntries: no entries from {due}, below the checkpoint's size {end}"
                    )));
                }
            }
            self.push("GetEntries", due - batch.len() as u64, &batch)
        })
    }
}

/// A finding about a hash tile, with the log's tile and the rebuilt one
/// (where there is one) as evidence.
fn tile_evidence(
    finding: AuditFinding,
    signed: &SignedCheckpoint,
    served: Option<&[u8]>,
    rebuilt: Option<&[u8]>,
) -> Failure {
    let mut extra = Vec::new();
    if let Some(served) = served {
        extra.push((
            "served tile (base64)".to_owned(),
            BASE64_STANDARD.encode(served),
        ));
    }
    if let Some(rebuilt) = rebuilt {
        extra.push((
            "rebuilt tile (base64)".to_owned(),
            BASE64_STANDARD.encode(rebuilt),
        ));
    }
    evidence(finding, signed, extra)
}

/// A finding about an entry, with the entry itself as evidence.
fn entry_evidence<E: AsRef<[u8]>>(
    finding: AuditFinding,
    signed: &SignedCheckpoint,
    source: &str,
    first: u64,
    entries: &[E],
) -> Failure {
    let entry = finding
        .index()
        .and_then(|index| entries.get(usize::try_from(index.checked_sub(first)?).ok()?))
        .map(|entry| ("entry (base64)".to_owned(), BASE64_STANDARD.encode(entry)));
    let mut extra = vec![("served by".to_owned(), source.to_owned())];
    extra.extend(entry);
    evidence(finding, signed, extra)
}

/// An audit finding as a security failure, with the checkpoint it was
/// checked against.
fn evidence(
    finding: AuditFinding,
    signed: &SignedCheckpoint,
    extra: Vec<(String, String)>,
) -> Failure {
    let mut evidence = vec![("checkpoint".to_owned(), signed.note_text().to_owned())];
    if let Some(index) = finding.index() {
        evidence.push(("index".to_owned(), index.to_string()));
    }
    evidence.extend(extra);
    Failure::security_with(finding.to_string(), evidence)
}

fn summary(
    signed: &SignedCheckpoint,
    state: &AuditState,
    from: u64,
    elapsed: Duration,
    acceptance: Acceptance,
) -> Report {
    let cp = &signed.checkpoint;
    let this_run = cp.size - from;
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        this_run as f64 / seconds
    } else {
        0.0
    };
    let trusted = match acceptance {
        Acceptance::First => "trusted from now on (first checkpoint in this state)".to_owned(),
        Acceptance::Unchanged => "same tree as the trusted checkpoint".to_owned(),
        Acceptance::Extended { from } => format!("proven consistent with the trusted size {from}"),
    };
    let submitters: String = state
        .by_submitter()
        .iter()
        .map(|(key_id, count)| format!("\n  {key_id}: {count} entries"))
        .collect();
    let tiles = rebuilt_between(from, cp.size).count();
    Report {
        human: format!(
            "audit passed: the {} entries of {} hash to its signed root {}\n\
             audited {this_run} entries this run (from index {from}), {} in total\n\
             hash tiles: {tiles} rebuilt from this run's entries match the log's\n\
             data flows: {}, code releases: {}\n\
             submitters: {}{submitters}\n\
             took {seconds:.2} s ({rate:.0} entries/s)\n\
             trusted state: {trusted}",
            cp.size,
            cp.origin,
            cp.root,
            state.size(),
            state.data_flows(),
            state.releases(),
            state.by_submitter().len(),
        ),
        json: json!({
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.to_string(),
            "audited_from": from,
            "audited_this_run": this_run,
            "audited_total": state.size(),
            "hash_tiles_compared": tiles,
            "data_flows": state.data_flows(),
            "releases": state.releases(),
            "submitters": state.by_submitter().len(),
            "entries_by_submitter": state.by_submitter(),
            "seconds": seconds,
            "entries_per_second": rate,
            "trusted_state": trusted,
        }),
    }
}

/// Progress on stderr: on a terminal one line redrawn with a bar, rate and
/// ETA; otherwise (a log file, CI) a plain line every [`Progress::PLAIN_EVERY`]
/// entries.
struct Progress {
    from: u64,
    to: u64,
    started: Instant,
    terminal: bool,
    /// When the terminal line was last drawn, if it has been.
    drawn: Option<Instant>,
    /// Entries done at the last plain line.
    printed: u64,
}

impl Progress {
    const PLAIN_EVERY: u64 = 100_000;
    const REDRAW: Duration = Duration::from_millis(200);
    const BAR: usize = 30;

    fn new(from: u64, to: u64) -> Self {
        Self {
            from,
            to,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            drawn: None,
            printed: from,
        }
    }

    fn update(&mut self, done: u64) {
        if self.terminal {
            if self.drawn.is_none_or(|at| at.elapsed() >= Self::REDRAW) {
                self.draw(done);
            }
        } else if done - self.printed >= Self::PLAIN_EVERY {
            eprintln!("audit: {}", self.line(done));
            self.printed = done;
        }
    }

    fn draw(&mut self, done: u64) {
        let filled =
            (Self::BAR as u64 * (done - self.from) / (self.to - self.from).max(1)) as usize;
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(Self::BAR - filled));
        eprint!("\r\x1b[Kaudit [{bar}] {}", self.line(done));
        let _ = std::io::stderr().flush();
        self.drawn = Some(Instant::now());
    }

    /// `done/to entries, rate, ETA`.
    fn line(&self, done: u64) -> String {
        let rate = (done - self.from) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 {
            (self.to - done) as f64 / rate
        } else {
            0.0
        };
        format!(
            "{done}/{} entries, {rate:.0} entries/s, ETA {eta:.0} s",
            self.to
        )
    }

    /// Draws the terminal line a last time and ends it, so that what
    /// follows starts on its own line.
    fn end(&mut self, done: u64) {
        if self.terminal && self.drawn.is_some() {
            self.draw(done);
            eprintln!();
        }
    }
}
