//! `verifier submit`: sign events and append them to the log, believing
//! none of its answers until they are checked.
//!
//! Every event is checked against the log's admission rules and signed
//! before anything is sent, so a bad line changes nothing. One event goes
//! by `Append`, more by `AppendBatch` in chunks. For each answer, "ok" is
//! printed only when the checkpoint is signed by the log's key (`--vkey`),
//! the inclusion proof leads from the leaf hash to its root, and the entry
//! the log serves at that index in its tiles has that leaf hash and holds
//! exactly the submitted event. Anything else is a security finding.
//!
//! A refused event is reported with the log's own message, which names the
//! field or key. The events before and after it in a batch are still
//! appended; resubmitting the same input is safe, because events already
//! in the log come back with their original index, marked duplicate.

use super::event_json::parse_events;
use super::outcome::{Failure, Outcome, Report};
use super::remote::{grpc, verifier_key, ClientArgs, Log};
use super::state::{proof_lines, write_atomically, TrustedState};
use super::witness_policy::WitnessArgs;
use crate::bundle::ProofBundle;
use crate::checkpoint::SignedCheckpoint;
use crate::event::{check_submission, decode_entry, sign_event};
use crate::keys::{KeyRing, SigningKey, VerifierKey};
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::proto::{append_result, AppendBatchRequest, AppendRequest, AppendResponse, SignedEvent};
use crate::tiles::{decode_entry_bundle, TileId, TiledHashReader, TILE_WIDTH};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use prost::Message as _;
use serde_json::json;
use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most events one `AppendBatch` call carries.
const BATCH_EVENTS: usize = 1000;
/// The most event bytes one `AppendBatch` call carries: well under gRPC's
/// default 4 MiB message limit, whatever the events' sizes.
const BATCH_BYTES: usize = 1 << 20;
/// How long `--witness` waits for the log to serve a cosigned checkpoint
/// covering the new entries: a few witnessing rounds.
const WITNESS_WAIT: Duration = Duration::from_secs(30);

/// Arguments of `verifier submit`.
#[derive(clap::Args)]
pub struct Args {
    /// The log's URL.
    #[arg(long)]
    log: String,
    /// The submitter's signer key file, as written by `verifier keygen`.
    #[arg(long)]
    key: PathBuf,
    /// The log's verifier key, inline or as a file: every answer must
    /// verify under it.
    #[arg(long)]
    vkey: String,
    /// Also save an offline proof bundle of the last event to this file.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Directory of trusted state: every checkpoint the log answers with
    /// must be consistent with the one trusted there, and the newest then
    /// replaces it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// With `--witness`: every event is proven against a checkpoint the
    /// log serves cosigned by the quorum (waiting up to 30 s for one), and
    /// the bundle and state hold that checkpoint.
    #[command(flatten)]
    witnesses: WitnessArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Events in the protobuf JSON mapping of `tlog.v1.Event`: one object,
    /// or one per line. `-` or nothing reads standard input.
    input: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let log_key = verifier_key(&args.vkey)?;
    let key = signer_key(&args.key)?;
    let log = Log::new(&args.log)?
        .with_witness_policy(args.witnesses.policy()?)
        .with_limits(args.client.limits()?)
        .with_tls(&args.client.tls()?);
    let events = parse_events(&read_input(args.input.as_deref())?).map_err(Failure::unchecked)?;
    let signed = sign_all(&key, events)?;
    let answers = super::block_on(append(&log, &signed))?;

    // A security finding outranks a refusal, so every answer is checked
    // before any refusal is reported.
    let mut logged = Vec::new();
    let mut refusals = Vec::new();
    for ((line, signed), answer) in signed.iter().zip(answers) {
        match answer {
            Ok(answer) => logged.push(verify_answer(*line, signed, answer, &log_key)?),
            Err(refusal) => refusals.push((*line, refusal)),
        }
    }
    let size = logged.iter().map(|l| l.tree_size()).max().unwrap_or(0);
    let mut entry_bundles = HashMap::new();
    let mut last_entry = None;
    for l in &logged {
        last_entry = Some(check_entry(&log, &mut entry_bundles, size, l)?);
    }
    if let Some((line, refusal)) = refusals.first() {
        let appended = if logged.is_empty() {
            "none was appended".to_owned()
        } else {
            format!(
                "the other {} were appended and verified (resubmitting the input is safe: \
                 logged events come back as duplicates)",
                logged.len()
            )
        };
        let (code, message) = (refusal.code, &refusal.message);
        let (refused, total) = (refusals.len(), signed.len());
        return Err(Failure::unchecked(format!(
            "line {line}: the log refused the event ({code:?}): {message}; \
             {refused} of {total} events refused, {appended}"
        )));
    }
    if log.witness_policy().requires_witnesses() && !logged.is_empty() {
        anchor_in_witnessed(&log, &log_key, &mut logged)?;
    }
    if let Some(dir) = &args.state {
        let state = TrustedState::open(dir, &log_key)?;
        let mut answered: Vec<&SignedCheckpoint> = logged.iter().map(|l| &l.checkpoint).collect();
        answered.sort_by_key(|c| c.checkpoint.size);
        for checkpoint in answered {
            state.accept(&log, checkpoint)?;
        }
    }
    if let (Some(path), Some(last), Some(entry)) = (&args.bundle, logged.last(), last_entry) {
        save_bundle(path, last, entry, &log_key)?;
    }
    Ok(report(&logged, args.bundle.as_deref()))
}

/// Reads a signer key file written by `verifier keygen`; errors name `--key`.
pub(super) fn signer_key(path: &Path) -> Result<SigningKey, Failure> {
    let text =
        crate::files::read_secret(path).map_err(|e| Failure::unchecked(format!("--key: {e}")))?;
    SigningKey::parse(&text)
        .map_err(|e| Failure::unchecked(format!("--key {}: {e}", path.display())))
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    match path {
        None => std::io::stdin().read_to_end(&mut input).map(drop),
        Some(p) if p == Path::new("-") => std::io::stdin().read_to_end(&mut input).map(drop),
        Some(p) => std::fs::read(p).map(|bytes| input = bytes),
    }
    .map_err(|e| {
        let name = path.map_or("standard input".into(), |p| p.display().to_string());
        Failure::unchecked(format!("cannot read {name}: {e}"))
    })?;
    Ok(input)
}

/// Signs every event and checks it against the log's admission rules (the
/// allowlist aside: only the log knows it), before anything is sent.
fn sign_all(
    key: &SigningKey,
    events: Vec<(usize, crate::proto::Event)>,
) -> Result<Vec<(usize, SignedEvent)>, Failure> {
    let mut own = KeyRing::default();
    own.insert(key.verifier_key());
    events
        .into_iter()
        .map(|(line, event)| {
            let signed = sign_event(key, &event);
            check_submission(&signed, &own)
                .map_err(|e| Failure::unchecked(format!("line {line}: {e}")))?;
            Ok((line, signed))
        })
        .collect()
}

/// Why the log did not append one event, in its own words.
#[derive(Debug, Clone)]
struct Refusal {
    code: tonic::Code,
    message: String,
}

impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Self {
        Self {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Sends the events, one by `Append` or many by `AppendBatch`, and returns
/// one answer per event, in order. A batch call that fails as a whole
/// refuses its events and every later one, which are not sent.
async fn append(
    log: &Log,
    events: &[(usize, SignedEvent)],
) -> Result<Vec<Result<AppendResponse, Refusal>>, Failure> {
    let mut client = grpc(log).await?;
    if let [(_, event)] = events {
        let request = AppendRequest {
            event: Some(event.clone()),
        };
        let answer = log.rpc("Append", client.append(request)).await?;
        return Ok(vec![answer
            .map(tonic::Response::into_inner)
            .map_err(Refusal::from)]);
    }
    let mut answers = Vec::with_capacity(events.len());
    for batch in batches(events) {
        let request = AppendBatchRequest {
            events: batch.iter().map(|(_, e)| e.clone()).collect(),
        };
        let results = match log.rpc("AppendBatch", client.append_batch(request)).await? {
            Ok(response) => response.into_inner().results,
            Err(status) => {
                answers.resize(events.len(), Err(Refusal::from(status)));
                break;
            }
        };
        if results.len() != batch.len() {
            return Err(Failure::unchecked(format!(
                "AppendBatch answered {} results for {} events",
                results.len(),
                batch.len()
            )));
        }
        answers.extend(results.into_iter().map(|r| match r.result {
            Some(append_result::Result::Appended(answer)) => Ok(answer),
            Some(append_result::Result::Error(e)) => Err(Refusal {
                code: tonic::Code::from_i32(e.code),
                message: e.message,
            }),
            None => Err(Refusal {
                code: tonic::Code::Unknown,
                message: "the log sent an empty result".into(),
            }),
        }));
    }
    Ok(answers)
}

/// Splits events into `AppendBatch` calls of at most [`BATCH_EVENTS`]
/// events and [`BATCH_BYTES`] bytes (or one event, if it alone is larger).
fn batches(events: &[(usize, SignedEvent)]) -> impl Iterator<Item = &[(usize, SignedEvent)]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take(BATCH_EVENTS)
            .take_while(|(_, e)| {
                bytes += e.encoded_len();
                bytes <= BATCH_BYTES
            })
            .count()
            .max(1)
            .min(rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        (!batch.is_empty()).then_some(batch)
    })
}

/// One appended event whose checkpoint and inclusion proof verified.
struct Logged<'a> {
    line: usize,
    signed: &'a SignedEvent,
    index: u64,
    leaf: Hash,
    proof: Vec<Hash>,
    checkpoint: SignedCheckpoint,
    duplicate: bool,
}

impl Logged<'_> {
    fn tree_size(&self) -> u64 {
        self.checkpoint.checkpoint.size
    }

    fn evidence(&self) -> Vec<(String, String)> {
        vec![
            ("checkpoint".into(), self.checkpoint.note_text().to_owned()),
            ("leaf hash".into(), self.leaf.to_string()),
            ("inclusion proof".into(), proof_lines(&self.proof)),
        ]
    }
}

/// Checks one answer: its checkpoint is signed by the log's key, and its
/// inclusion proof leads from its leaf hash to that checkpoint's root.
fn verify_answer<'a>(
    line: usize,
    signed: &'a SignedEvent,
    answer: AppendResponse,
    log_key: &VerifierKey,
) -> Result<Logged<'a>, Failure> {
    let index = answer.index;
    let evidence = || {
        let proof: String = answer
            .inclusion_proof
            .iter()
            .map(|h| format!("{}\n", BASE64_STANDARD.encode(h)))
            .collect();
        vec![
            ("checkpoint".into(), answer.checkpoint.clone()),
            (
                "leaf hash".into(),
                BASE64_STANDARD.encode(&answer.leaf_hash),
            ),
            ("inclusion proof".into(), proof),
        ]
    };
    let finding = |what: String| {
        Failure::security_with(
            format!("line {line}: the log's answer for index {index}: {what}"),
            evidence(),
        )
    };
    let checkpoint =
        SignedCheckpoint::verify(answer.checkpoint.as_bytes(), log_key).map_err(|e| {
            finding(format!(
                "its checkpoint does not verify under {}: {e}",
                log_key.key_id()
            ))
        })?;
    let hash = |bytes: &[u8]| bytes.try_into().map(Hash).ok();
    let leaf =
        hash(&answer.leaf_hash).ok_or_else(|| finding("its leaf hash is not 32 bytes".into()))?;
    let proof = answer
        .inclusion_proof
        .iter()
        .map(|h| hash(h))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| finding("its inclusion proof holds a hash that is not 32 bytes".into()))?;
    let (size, root) = (checkpoint.checkpoint.size, checkpoint.checkpoint.root);
    verify_inclusion(&proof, index, size, leaf, root).map_err(|e| finding(e.to_string()))?;
    Ok(Logged {
        line,
        signed,
        index,
        leaf,
        proof,
        checkpoint,
        duplicate: answer.duplicate,
    })
}

/// Re-proves every logged event against the checkpoint the log serves once
/// it covers them all, after checking that checkpoint against the witness
/// policy: the answers' own checkpoints are fresh from the sequencer and
/// carry no cosignatures yet.
fn anchor_in_witnessed(
    log: &Log,
    log_key: &VerifierKey,
    logged: &mut [Logged],
) -> Result<(), Failure> {
    let needed = logged.iter().map(Logged::tree_size).max().unwrap_or(0);
    let deadline = Instant::now() + WITNESS_WAIT;
    let witnessed = loop {
        let served = log.log_signed_checkpoint(log_key)?;
        if served.checkpoint.size >= needed {
            log.witness_policy()
                .check(&served, log_key, "the log's checkpoint")?;
            break served;
        }
        if Instant::now() >= deadline {
            return Err(Failure::unchecked(format!(
                "the events were appended and verified, but after {} s the log still serves a \
                 checkpoint of size {}, which does not cover them (size {needed} needed)",
                WITNESS_WAIT.as_secs(),
                served.checkpoint.size
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (size, root) = (witnessed.checkpoint.size, witnessed.checkpoint.root);
    let tiles = log.hash_tiles(size);
    let reader = TiledHashReader::new(&tiles);
    for l in logged {
        let proof = tlog_tiles::prove_record(size, l.index, &reader).map_err(|e| {
            Failure::unchecked(format!("building the inclusion proof from tiles: {e}"))
        })?;
        verify_inclusion(&proof, l.index, size, l.leaf, root).map_err(|e| {
            Failure::security_with(
                format!(
                    "line {}: index {} is not in the witnessed tree of size {size}: {e}",
                    l.line, l.index
                ),
                l.evidence(),
            )
        })?;
        l.proof = proof;
        l.checkpoint = witnessed.clone();
    }
    Ok(())
}

/// Reads the logged entry from the log's entry bundle (one fetch per 256
/// entries, for the tree of `size`) and checks that it has the proven leaf
/// hash and holds exactly the submitted event. Returns the entry.
fn check_entry(
    log: &Log,
    entry_bundles: &mut HashMap<u64, Vec<u8>>,
    size: u64,
    logged: &Logged,
) -> Result<Vec<u8>, Failure> {
    let n = logged.index / TILE_WIDTH;
    let tile = TileId::entry_bundle_in_tree(n, size).expect("a proven index is inside the tree");
    let bundle = match entry_bundles.entry(n) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(log.tile(tile, size)?),
    };
    let finding = |what: String| {
        Failure::security_with(format!("line {}: {what}", logged.line), logged.evidence())
    };
    let entries = decode_entry_bundle(bundle)
        .map_err(|e| finding(format!("{} is not a valid entry bundle: {e}", tile.path())))?;
    let entry = entries
        .get((logged.index % TILE_WIDTH) as usize)
        .filter(|entry| leaf_hash(entry) == logged.leaf)
        .ok_or_else(|| {
            finding(format!(
                "{} does not hold the entry with leaf hash {} at index {}, which the log proved",
                tile.path(),
                logged.leaf,
                logged.index
            ))
        })?;
    let held = decode_entry(entry).ok().and_then(|e| e.signed_event);
    if !held.is_some_and(|h| h.event == logged.signed.event && h.key_id == logged.signed.key_id) {
        return Err(finding(format!(
            "the log's entry {} is not the submitted event",
            logged.index
        )));
    }
    Ok(entry.to_vec())
}

/// Saves the bundle of `logged`, after checking it verifies exactly as
/// `verifier verify-bundle` will check it.
fn save_bundle(
    path: &Path,
    logged: &Logged,
    entry: Vec<u8>,
    log_key: &VerifierKey,
) -> Result<(), Failure> {
    let bundle = ProofBundle {
        entry,
        index: logged.index,
        proof: logged.proof.clone(),
        checkpoint_note: logged.checkpoint.note.clone(),
    };
    bundle.verify(log_key).map_err(|e| {
        Failure::security_with(format!("line {}: {e}", logged.line), logged.evidence())
    })?;
    write_atomically(path, &bundle.to_text())
}

fn report(logged: &[Logged], bundle: Option<&Path>) -> Report {
    let mut human = String::new();
    let mut events = Vec::new();
    for l in logged {
        let duplicate = if l.duplicate { " (duplicate)" } else { "" };
        human.push_str(&format!(
            "line {}: index {}, leaf hash {}, tree size {}: ok{duplicate}\n",
            l.line,
            l.index,
            l.leaf,
            l.tree_size()
        ));
        events.push(json!({
            "line": l.line,
            "index": l.index,
            "leaf_hash": l.leaf.to_string(),
            "tree_size": l.tree_size(),
            "duplicate": l.duplicate,
        }));
    }
    if let Some(path) = bundle {
        human.push_str(&format!("proof bundle saved to {}\n", path.display()));
    }
    Report {
        human,
        json: json!({
            "events": events,
            "bundle": bundle.map(|p| p.display().to_string()),
        }),
    }
}
