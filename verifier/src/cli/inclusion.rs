//! `verifier inclusion`: verify that an entry is in the log, by index (from
//! the tiles alone), or by leaf hash or event file (located over gRPC, then
//! proven from the tiles and the signed checkpoint).

use super::event_json::parse_events;
use super::outcome::{Failure, Outcome, Report};
use super::remote::{grpc, Log, LogArgs};
use super::state::{proof_lines, TrustedState};
use crate::checkpoint::SignedCheckpoint;
use crate::event::{decode_entry, event_id};
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::proto::{get_inclusion_proof_request::Leaf, GetInclusionProofRequest, SignedEvent};
use crate::tiles::{decode_entry_bundle, TileId, TiledHashReader, TILE_WIDTH};
use prost::Message as _;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `verifier inclusion`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: LogArgs,
    /// The entry's index.
    #[arg(
        long,
        required_unless_present_any = ["leaf_hash", "event"],
        conflicts_with_all = ["leaf_hash", "event"]
    )]
    index: Option<u64>,
    /// The entry's RFC 9162 leaf hash, in hex or base64.
    #[arg(long, conflicts_with = "event")]
    leaf_hash: Option<String>,
    /// A file holding the event as submitted (protobuf JSON mapping, as for
    /// `submit`): proves that exactly this event, signed by `--submitter`,
    /// is in the log.
    #[arg(long, requires = "submitter")]
    event: Option<PathBuf>,
    /// The key id (`<name>+<hex id>`) the event was submitted under.
    #[arg(long)]
    submitter: Option<String>,
    /// Directory of trusted state: the checkpoint proven against must be
    /// consistent with the one trusted there.
    #[arg(long)]
    state: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (log, key) = args.target.open()?;
    let signed = log.checkpoint(&key)?;
    if let Some(dir) = &args.state {
        TrustedState::open(dir, &key)?.accept(&log, &signed)?;
    }
    let size = signed.checkpoint.size;
    let (index, leaf, proof, entry) = match (args.index, &args.leaf_hash, &args.event) {
        (Some(index), _, _) => by_index(&log, &signed, index)?,
        (None, Some(hash), _) => by_leaf_hash(&log, size, parse_hash(hash)?)?,
        (None, None, Some(file)) => {
            let submitter = args.submitter.as_deref().unwrap_or_default();
            by_event(&log, &signed, file, submitter)?
        }
        (None, None, None) => {
            return Err(Failure::unchecked("give --index, --leaf-hash or --event"))
        }
    };
    verify_inclusion(&proof, index, size, leaf, signed.checkpoint.root).map_err(|e| {
        Failure::security_with(
            format!("the log's inclusion proof for index {index} fails: {e}"),
            vec![
                ("checkpoint".into(), signed.note_text().to_owned()),
                ("leaf hash".into(), leaf.to_string()),
                ("inclusion proof".into(), proof_lines(&proof)),
            ],
        )
    })?;
    let described = entry.as_deref().map(describe).unwrap_or_default();
    Ok(Report {
        human: format!(
            "verified: entry {index} (leaf hash {leaf}) is in the tree of size {size}\n{described}"
        ),
        json: json!({
            "index": index,
            "leaf_hash": leaf.to_string(),
            "tree_size": size,
            "root": signed.checkpoint.root.to_string(),
            "proof": proof_lines(&proof).lines().collect::<Vec<_>>(),
        }),
    })
}

type Located = (u64, Hash, Vec<Hash>, Option<Vec<u8>>);

/// Reads the entry from its bundle and builds the proof from the tiles.
fn by_index(log: &Log, signed: &SignedCheckpoint, index: u64) -> Result<Located, Failure> {
    let size = signed.checkpoint.size;
    let bundle_id = TileId::entry_bundle_in_tree(index / TILE_WIDTH, size)
        .filter(|_| index < size)
        .ok_or_else(|| {
            Failure::unchecked(format!(
                "--index {index}: the log's tree has {size} entries"
            ))
        })?;
    let bundle = log.tile(bundle_id, size)?;
    let entries = decode_entry_bundle(&bundle).map_err(|e| {
        Failure::security(format!(
            "{} is not a valid entry bundle: {e}",
            bundle_id.path()
        ))
    })?;
    let entry = entries
        .get((index % TILE_WIDTH) as usize)
        .ok_or_else(|| Failure::security(format!("{} is missing entry {index}", bundle_id.path())))?
        .to_vec();
    let tiles = log.hash_tiles(size);
    let proof = tlog_tiles::prove_record(size, index, &TiledHashReader::new(&tiles))
        .map_err(|e| Failure::unchecked(format!("building the inclusion proof from tiles: {e}")))?;
    Ok((index, leaf_hash(&entry), proof, Some(entry)))
}

/// Asks the log where the leaf is and for its proof, over gRPC.
fn by_leaf_hash(log: &Log, size: u64, leaf: Hash) -> Result<Located, Failure> {
    let response = locate(
        log,
        Leaf::LeafHash(leaf.0.to_vec()),
        size,
        &format!("leaf hash {leaf}"),
    )?;
    let proof = response
        .proof
        .iter()
        .map(|h| h.as_slice().try_into().map(Hash))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            Failure::security("the log's inclusion proof holds a hash that is not 32 bytes")
        })?;
    Ok((response.index, leaf, proof, None))
}

/// Asks the log where the event is, then proves from the tiles that the
/// entry at that index holds exactly this event under this key.
fn by_event(
    log: &Log,
    signed: &SignedCheckpoint,
    file: &PathBuf,
    submitter: &str,
) -> Result<Located, Failure> {
    let input = std::fs::read(file)
        .map_err(|e| Failure::unchecked(format!("cannot read {}: {e}", file.display())))?;
    let events =
        parse_events(&input).map_err(|e| Failure::unchecked(format!("{}: {e}", file.display())))?;
    let [(_, event)] = events.as_slice() else {
        return Err(Failure::unchecked(format!(
            "{}: holds {} events; give one",
            file.display(),
            events.len()
        )));
    };
    let wanted = SignedEvent {
        event: event.encode_to_vec(),
        key_id: submitter.to_owned(),
        signature: Vec::new(),
    };
    let what = format!("the event in {} under {submitter}", file.display());
    let response = locate(
        log,
        Leaf::EventId(event_id(&wanted).to_vec()),
        signed.checkpoint.size,
        &what,
    )?;
    let located = by_index(log, signed, response.index)?;
    let stored = located
        .3
        .as_deref()
        .and_then(|entry| decode_entry(entry).ok())
        .and_then(|entry| entry.signed_event);
    match stored {
        Some(s) if s.event == wanted.event && s.key_id == wanted.key_id => Ok(located),
        _ => Err(Failure::security(format!(
            "the log says {what} is entry {}, but that entry holds another event",
            response.index
        ))),
    }
}

/// Looks an entry up over gRPC. "No such entry" fails the claim being
/// checked (that the entry is in the log), so it is a finding, exit 1; a
/// network or argument problem is "could not check", exit 2.
fn locate(
    log: &Log,
    leaf: Leaf,
    size: u64,
    what: &str,
) -> Result<crate::proto::GetInclusionProofResponse, Failure> {
    super::block_on(async {
        let mut client = grpc(log).await?;
        let request = GetInclusionProofRequest {
            leaf: Some(leaf),
            tree_size: size,
        };
        log.rpc("GetInclusionProof", client.get_inclusion_proof(request))
            .await?
            .map(tonic::Response::into_inner)
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => {
                    Failure::security(format!("the log has no entry with {what}"))
                }
                _ => Failure::unchecked(format!("GetInclusionProof: {}", s.message())),
            })
    })
}

/// Parses a 32-byte hash given in hex or base64.
fn parse_hash(text: &str) -> Result<Hash, Failure> {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        crate::hex::decode(text)
    } else {
        BASE64_STANDARD.decode(text).ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash)
        .ok_or_else(|| {
            Failure::unchecked(format!(
                "--leaf-hash {text}: not a 32-byte hash in hex or base64"
            ))
        })
}

/// One line about what the entry records.
fn describe(entry: &[u8]) -> String {
    match decode_entry(entry) {
        Ok(entry) => {
            let signed = entry.signed_event.unwrap_or_default();
            format!(
                "submitted by {}, {} bytes of event",
                signed.key_id,
                signed.event.len()
            )
        }
        Err(e) => format!("the entry does not decode: {e}"),
    }
}
