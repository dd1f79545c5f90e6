//! Trusted state: the last checkpoint this verifier accepted, per log.
//!
//! Every later command proves consistency from it before accepting a newer
//! checkpoint. A smaller tree, a different root at the same size, or a
//! failing consistency proof is a security finding carrying both signed
//! notes and the proof, never a warning. Files are replaced atomically
//! (see [`files`]), so a crash never leaves half a state.
//!
//! Each log's state has a lock file, `<dir>/lock`. [`TrustedState::accept`]
//! reads, checks and writes under it, so two processes sharing a state
//! (two `verifier checkpoint --state` runs, or one and a monitor) never
//! interleave: the trusted checkpoint only ever moves forward. A command
//! that cannot get the lock within [`STATE_LOCK_WAIT`] exits 2.

use super::outcome::Failure;
use super::remote::Log;
use crate::checkpoint::SignedCheckpoint;
use crate::files::{self, Access, FileLock, LockError};
use crate::keys::VerifierKey;
use crate::merkle::Hash;
use crate::relation::relate;
use crate::tiles::TiledHashReader;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a command waits for another process to finish with a trusted
/// state before giving up with exit 2 ("state is locked"). Holders keep
/// the lock for one fetch and check, well under a second on a healthy log.
pub const STATE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The state directory of one log, `<state>/<origin, made filename-safe>`.
pub struct TrustedState {
    dir: PathBuf,
    key: VerifierKey,
}

/// How a newly seen checkpoint relates to the trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// There was no trusted checkpoint; this one is now trusted.
    First,
    /// The same tree as the trusted checkpoint.
    Unchanged,
    /// A larger tree, proven consistent with the trusted one.
    Extended {
        /// The trusted size it was proven consistent with.
        from: u64,
    },
}

impl TrustedState {
    /// Opens (creating if needed) the state of the log whose key is `key`.
    pub fn open(state_dir: &Path, key: &VerifierKey) -> Result<Self, Failure> {
        let safe: String = key
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = state_dir.join(format!("{safe}+{:08x}", key.id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::unchecked(format!(
                "cannot create state directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self {
            dir,
            key: key.clone(),
        })
    }

    /// The directory, for other state files of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted checkpoint, re-verified. A stored note that no longer
    /// verifies means the state was damaged: the check cannot be made.
    pub fn trusted(&self) -> Result<Option<SignedCheckpoint>, Failure> {
        let path = self.dir.join("checkpoint");
        let note = match std::fs::read(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Failure::unchecked(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        SignedCheckpoint::verify(&note, &self.key)
            .map(Some)
            .map_err(|e| {
                Failure::unchecked(format!("trusted state {} is damaged: {e}", path.display()))
            })
    }

    /// Takes this state's lock, waiting up to [`STATE_LOCK_WAIT`] for
    /// another process to release it. Hold it across fetching a
    /// checkpoint and [`Locked::accept`], so that what is fetched later is
    /// also checked later.
    pub fn lock(&self) -> Result<Locked<'_>, Failure> {
        let lock = files::lock_within(&self.dir.join("lock"), STATE_LOCK_WAIT).map_err(|e| {
            Failure::unchecked(match e {
                LockError::Locked(path) => format!(
                    "state is locked: {} is held by another process (waited {} s)",
                    path.display(),
                    STATE_LOCK_WAIT.as_secs()
                ),
                other => other.to_string(),
            })
        })?;
        Ok(Locked {
            state: self,
            _lock: lock,
        })
    }

    /// Accepts `new` under the state's lock; see [`Locked::accept`].
    pub fn accept(&self, log: &Log, new: &SignedCheckpoint) -> Result<Acceptance, Failure> {
        self.lock()?.accept(log, new)
    }
}

/// A trusted state while this process holds its lock.
pub struct Locked<'a> {
    state: &'a TrustedState,
    _lock: FileLock,
}

impl Locked<'_> {
    /// Accepts `new` if it is consistent with the trusted checkpoint,
    /// proving consistency with hashes from the log's tiles, and makes it
    /// the trusted checkpoint.
    pub fn accept(&self, log: &Log, new: &SignedCheckpoint) -> Result<Acceptance, Failure> {
        let Some(old) = self.state.trusted()? else {
            self.save(new)?;
            return Ok(Acceptance::First);
        };
        let proof = prove_consistency(log, &old, new)?;
        check_consistency(&old, new, &proof)?;
        if new.checkpoint.size == old.checkpoint.size {
            return Ok(Acceptance::Unchanged);
        }
        self.save(new)?;
        Ok(Acceptance::Extended {
            from: old.checkpoint.size,
        })
    }

    fn save(&self, checkpoint: &SignedCheckpoint) -> Result<(), Failure> {
        write_atomically(&self.state.dir.join("checkpoint"), &checkpoint.note)
    }
}

/// Builds the consistency proof from `old` to `new` out of the log's tiles.
/// The proof is not trusted: [`check_consistency`] verifies it against both
/// signed roots.
pub fn prove_consistency(
    log: &Log,
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
) -> Result<Vec<Hash>, Failure> {
    let (old_size, new_size) = (old.checkpoint.size, new.checkpoint.size);
    if old_size == 0 || old_size >= new_size {
        return Ok(Vec::new());
    }
    let tiles = log.hash_tiles(new_size);
    let reader = TiledHashReader::new(&tiles);
    tlog_tiles::prove_tree(new_size, old_size, &reader).map_err(|e| {
        Failure::unchecked(format!(
            "building the consistency proof {old_size} → {new_size} from tiles: {e}"
        ))
    })
}

/// Checks that `new` extends `old` with `proof` (see [`relate`]);
/// anything else is a security finding carrying both notes and the proof.
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &[Hash],
) -> Result<(), Failure> {
    relate(old, new, proof.to_vec())
        .map(drop)
        .map_err(|conflict| {
            Failure::security_with(
                conflict.summary(),
                vec![
                    (
                        "trusted checkpoint".into(),
                        conflict.old.note_text().to_owned(),
                    ),
                    ("new checkpoint".into(), conflict.new.note_text().to_owned()),
                    ("consistency proof".into(), proof_lines(&conflict.proof)),
                ],
            )
        })
}

/// Proof hashes as base64 lines, as in C2SP proofs.
pub fn proof_lines(proof: &[Hash]) -> String {
    proof
        .iter()
        .map(|h| format!("{}\n", BASE64_STANDARD.encode(h.0)))
        .collect()
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new
/// contents, never a mix, even across a crash (see [`files`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    files::write_atomically(path, bytes, Access::Public)
        .map_err(|e| Failure::unchecked(format!("cannot write {}: {e}", path.display())))
}
