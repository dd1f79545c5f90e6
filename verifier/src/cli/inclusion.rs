//! `verifier inclusion`: verify that an entry is in the log, by index (from
//! the tiles alone) or by leaf hash (located over gRPC, proven locally).

use super::outcome::{Failure, Outcome, Report};
use super::remote::{grpc, verifier_key, Log};
use super::state::{proof_lines, TrustedState};
use crate::checkpoint::SignedCheckpoint;
use crate::event::decode_entry;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::proto::{get_inclusion_proof_request::Leaf, GetInclusionProofRequest};
use crate::tiles::{decode_entry_bundle, TileId, TiledHashReader, TILE_WIDTH};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `verifier inclusion`.
#[derive(clap::Args)]
pub struct Args {
    /// The log's URL.
    #[arg(long)]
    log: String,
    /// The log's verifier key, inline or as a file.
    #[arg(long)]
    vkey: String,
    /// The entry's index.
    #[arg(
        long,
        required_unless_present = "leaf_hash",
        conflicts_with = "leaf_hash"
    )]
    index: Option<u64>,
    /// The entry's RFC 9162 leaf hash, in hex or base64.
    #[arg(long)]
    leaf_hash: Option<String>,
    /// Directory of trusted state: the checkpoint proven against must be
    /// consistent with the one trusted there.
    #[arg(long)]
    state: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let key = verifier_key(&args.vkey)?;
    let log = Log::new(&args.log)?;
    let signed = log.checkpoint(&key)?;
    if let Some(dir) = &args.state {
        TrustedState::open(dir, &key)?.accept(&log, &signed)?;
    }
    let size = signed.checkpoint.size;
    let (index, leaf, proof, entry) = match (args.index, &args.leaf_hash) {
        (Some(index), _) => by_index(&log, &signed, index)?,
        (None, Some(hash)) => by_leaf_hash(&log, size, parse_hash(hash)?)?,
        (None, None) => return Err(Failure::unchecked("give --index or --leaf-hash")),
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
    let response = super::block_on(async {
        grpc(log)
            .await?
            .get_inclusion_proof(GetInclusionProofRequest {
                leaf: Some(Leaf::LeafHash(leaf.0.to_vec())),
                tree_size: size,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => {
                    Failure::security(format!("the log has no entry with leaf hash {leaf}"))
                }
                _ => Failure::unchecked(format!("GetInclusionProof: {}", s.message())),
            })
    })?;
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

/// Parses a 32-byte hash given in hex or base64.
fn parse_hash(text: &str) -> Result<Hash, Failure> {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
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
