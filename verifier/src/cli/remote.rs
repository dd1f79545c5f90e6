//! Talking to a log: its one URL serves C2SP tiles (read over HTTP) and
//! gRPC (for submitting and lookups by hash).
//!
//! Nothing fetched here is trusted. Checkpoints are verified against the
//! log's key before use, and every proof built from fetched tiles is
//! verified against a signed root, which is what authenticates the tiles.

use super::outcome::Failure;
use super::witness_policy::{WitnessArgs, WitnessPolicy};
use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;
use crate::tiles::{HashTileSource, TileId, TileKind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read as _;
use std::time::Duration;

/// The most bytes any one resource may have: an entry bundle of 256
/// maximal entries, with room to spare. Anything larger is refused unread.
const MAX_RESPONSE: u64 = 256 * (65_535 + 2) + 1024;

/// `--log` and `--vkey`, which every command that talks to a log takes:
/// where the log is, and the key its checkpoints must verify under; and
/// `--witness`/`--quorum`, the cosignatures they must carry.
#[derive(clap::Args)]
pub struct LogArgs {
    /// The log's URL.
    #[arg(long)]
    log: String,
    /// The log's verifier key, inline or as a file.
    #[arg(long)]
    vkey: String,
    #[command(flatten)]
    witnesses: WitnessArgs,
}

impl LogArgs {
    /// The log to talk to, holding the witness policy its checkpoints must
    /// meet, and its key; or why they cannot be used.
    pub fn open(&self) -> Result<(Log, VerifierKey), Failure> {
        let key = verifier_key(&self.vkey)?;
        let log = Log::new(&self.log)?.with_witness_policy(self.witnesses.policy()?);
        Ok((log, key))
    }
}

/// A log's base URL, and the witnesses its checkpoints must be cosigned by.
#[derive(Debug, Clone)]
pub struct Log {
    base: String,
    agent: ureq::Agent,
    policy: WitnessPolicy,
}

impl Log {
    /// Parses `--log <url>`: `http://host:port[/prefix]`.
    pub fn new(url: &str) -> Result<Self, Failure> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(Failure::unchecked(format!(
                "--log {url}: only http:// URLs are supported by this build"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Self {
            base: base.to_owned(),
            agent,
            policy: WitnessPolicy::default(),
        })
    }

    /// Requires every checkpoint fetched with [`Log::checkpoint`] to meet
    /// `policy`.
    pub fn with_witness_policy(mut self, policy: WitnessPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The witness policy checkpoints of this log must meet.
    pub fn witness_policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// The URL, for gRPC.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// GETs `path`; `Ok(None)` on 404.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, Failure> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let fail = |e: &dyn std::fmt::Display| Failure::unchecked(format!("GET {url}: {e}"));
        let mut response = self.agent.get(&url).call().map_err(|e| fail(&e))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(fail(&format!("HTTP {status}"))),
        }
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|e| fail(&e))?;
        if body.len() as u64 > MAX_RESPONSE {
            return Err(fail(&"response too large"));
        }
        Ok(Some(body))
    }

    /// Fetches `/checkpoint` and verifies it with the log's key and the
    /// witness policy. A note that does not verify is a security finding:
    /// the log (or someone in between) served a checkpoint the log's key
    /// did not sign, or one the required witnesses did not cosign.
    pub fn checkpoint(&self, key: &VerifierKey) -> Result<SignedCheckpoint, Failure> {
        let signed = self.log_signed_checkpoint(key)?;
        self.policy.check(&signed, key, "the log's checkpoint")?;
        Ok(signed)
    }

    /// Fetches `/checkpoint` and verifies the log's signature only, for a
    /// caller that applies the witness policy once the size is right.
    pub fn log_signed_checkpoint(&self, key: &VerifierKey) -> Result<SignedCheckpoint, Failure> {
        let note = self
            .get("checkpoint")?
            .ok_or_else(|| Failure::unchecked(format!("{}/checkpoint: not found", self.base)))?;
        SignedCheckpoint::verify(&note, key).map_err(|e| {
            Failure::security_with(
                format!(
                    "the log's checkpoint does not verify under {}: {e}",
                    key.key_id()
                ),
                vec![(
                    "served checkpoint".into(),
                    String::from_utf8_lossy(&note).into_owned(),
                )],
            )
        })
    }

    /// A tile of the tree of `size` entries. A tile the tree must have but
    /// the log does not serve is withheld data: a security finding.
    pub fn tile(&self, tile: TileId, size: u64) -> Result<Vec<u8>, Failure> {
        self.get(&tile.path())?.ok_or_else(|| {
            Failure::security(format!(
                "the log does not serve {}, which its tree of size {size} must have",
                tile.path()
            ))
        })
    }

    /// The hash tiles of the tree of `size` entries, as a proof source.
    pub fn hash_tiles(&self, size: u64) -> RemoteTiles<'_> {
        RemoteTiles {
            log: self,
            size,
            cache: RefCell::new(HashMap::new()),
        }
    }
}

/// Hash tiles fetched on demand and kept for the life of one command.
pub struct RemoteTiles<'a> {
    log: &'a Log,
    size: u64,
    cache: RefCell<HashMap<(u8, u64), Vec<u8>>>,
}

impl HashTileSource for RemoteTiles<'_> {
    type Error = String;

    fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, String> {
        if let Some(tile) = self.cache.borrow().get(&(level, index)) {
            return Ok(tile.clone());
        }
        let tile = TileId::hash_tile_in_tree(level, index, self.size)
            .ok_or_else(|| format!("hash tile {level}/{index} is outside the tree"))?;
        debug_assert!(matches!(tile.kind, TileKind::Hashes { .. }));
        let bytes = self.log.tile(tile, self.size).map_err(|f| match f {
            Failure::Security(finding) => finding.summary,
            Failure::Unchecked(reason) => reason,
        })?;
        if bytes.len() != usize::from(tile.width) * 32 {
            return Err(format!(
                "{} has {} bytes, not {}",
                tile.path(),
                bytes.len(),
                usize::from(tile.width) * 32
            ));
        }
        self.cache
            .borrow_mut()
            .insert((level, index), bytes.clone());
        Ok(bytes)
    }
}

/// Opens a gRPC connection to the log, for submitting and lookups by hash.
pub async fn grpc(
    log: &Log,
) -> Result<crate::proto::log_client::LogClient<tonic::transport::Channel>, Failure> {
    crate::proto::log_client::LogClient::connect(log.url().to_owned())
        .await
        .map_err(|e| Failure::unchecked(format!("gRPC {}: {e}", log.url())))
}

/// Reads a verifier key given inline (`name+id+key`) or as a file holding one.
pub fn verifier_key(arg: &str) -> Result<VerifierKey, Failure> {
    key_arg("--vkey", arg, "verifier key", VerifierKey::parse)
}

/// Reads a key that `flag` gives inline or as a file holding one, with
/// `parse`; errors name the flag and the argument.
pub fn key_arg<K>(
    flag: &str,
    arg: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<K, crate::keys::KeyError>,
) -> Result<K, Failure> {
    if let Ok(key) = parse(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        Failure::unchecked(format!(
            "{flag} {arg}: not a {what}, and cannot read it as a file: {e}"
        ))
    })?;
    parse(&text).map_err(|e| Failure::unchecked(format!("{flag} {arg}: {e}")))
}
