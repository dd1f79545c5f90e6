//! The witness's one decision: cosign this checkpoint or refuse, and why.
//!
//! It follows C2SP tlog-witness "add-checkpoint" check by check, in the
//! spec's order, with no HTTP in sight ([`super::http`] maps each
//! [`Refusal`] to its status code):
//!
//! 1. the origin must be a configured log (else 404);
//! 2. a signature by that log's key must verify (else 403; signatures by
//!    other keys are ignored);
//! 3. the old size must not exceed the checkpoint's size (else 400);
//! 4. the old size must be the size this witness last cosigned, 0 if none
//!    (else 409 with that size);
//! 5. at the same size, the root must be the same (else 409: a fork);
//! 6. the consistency proof must lead from the last cosigned checkpoint
//!    to the new one (else 422).
//!
//! Steps 5 and 6 are [`decide`], the verdict the monitor and the trusted
//! state reach too; before the first cosignature the witness holds the
//! empty tree.
//!
//! Steps 4 to 6 and the write of the new state happen under one lock per
//! origin, in a task of their own: two requests can never both advance
//! from the same size, and a client that hangs up mid-write cannot leave
//! the file and the memory disagreeing. The cosignature leaves only once
//! the new state is durable. Another process can never advance it either:
//! the witness holds an exclusive lock on its state directory
//! (`witness.lock`) for its whole life, and a second one refuses to start.

use super::state::CosignedFile;
use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::cli::outcome::Failure;
use crate::cosignature::{CosignerSigningKey, CosignerVerifierKey};
use crate::files::{self, FileLock, LockError};
use crate::keys::VerifierKey;
use crate::merkle::EMPTY_HASH;
use crate::relation::{decide, Relation};
use crate::witness_protocol::{encode_cosignatures, AddCheckpointRequest, AddCheckpointStatus};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The lock file in the state directory that one witness process holds.
const LOCK_FILE: &str = "witness.lock";

/// Why a checkpoint was not cosigned. Each variant is one status of the
/// protocol, and its message says what the client got wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the body is not an add-checkpoint request, or its old size is
    /// beyond the checkpoint.
    BadRequest(String),
    /// 403: no signature by the origin's log key verifies.
    Forbidden(String),
    /// 404: this witness does not witness the origin.
    UnknownOrigin(String),
    /// 409: the client's old size is not the last cosigned size, which the
    /// client should retry from.
    StaleOldSize {
        /// The size the client sent.
        old_size: u64,
        /// The size this witness last cosigned.
        cosigned: u64,
    },
    /// 409: a checkpoint of the size last cosigned with another root. The
    /// log signed two different trees of one size: a split view.
    RootMismatch {
        /// The size both checkpoints claim.
        size: u64,
    },
    /// 422: the consistency proof does not lead from the last cosigned
    /// checkpoint to this one.
    Inconsistent(String),
    /// 500: the witness could not make its new state durable; nothing was
    /// cosigned and the state is unchanged.
    Internal(String),
}

impl Refusal {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => AddCheckpointStatus::BadRequest.code(),
            Self::Forbidden(_) => AddCheckpointStatus::Forbidden.code(),
            Self::UnknownOrigin(_) => AddCheckpointStatus::NotFound.code(),
            Self::StaleOldSize { .. } | Self::RootMismatch { .. } => {
                AddCheckpointStatus::Conflict.code()
            }
            Self::Inconsistent(_) => AddCheckpointStatus::UnprocessableEntity.code(),
            Self::Internal(_) => 500,
        }
    }
}

impl std::fmt::Display for Refusal {
    /// One line naming what was wrong.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRequest(reason) | Self::Forbidden(reason) | Self::Inconsistent(reason) => {
                f.write_str(reason)
            }
            Self::UnknownOrigin(origin) => {
                write!(f, "origin {origin:?} is not a log this witness witnesses")
            }
            Self::StaleOldSize { old_size, cosigned } => write!(
                f,
                "old size {old_size} is not {cosigned}, the size this witness last cosigned"
            ),
            Self::RootMismatch { size } => write!(
                f,
                "the checkpoint of size {size} has another root than the checkpoint of \
                 that size this witness cosigned"
            ),
            Self::Internal(reason) => write!(f, "nothing was cosigned: {reason}"),
        }
    }
}

/// A witness: its cosigning key and, per configured origin, the log's key
/// and the last checkpoint cosigned for it.
pub struct Witness {
    cosigner: CosignerSigningKey,
    logs: HashMap<String, Arc<WitnessedLog>>,
    /// The lock on the state directory, held for the witness's life: a
    /// second process on the same state could cosign the other side of a
    /// fork, since the in-memory lock below only orders this process.
    _lock: FileLock,
}

/// One witnessed log.
struct WitnessedLog {
    key: VerifierKey,
    file: CosignedFile,
    /// The last cosigned checkpoint, `None` before the first. Held across
    /// the checks and the durable write, so that it only ever moves forward.
    latest: Mutex<Option<SignedCheckpoint>>,
}

impl Witness {
    /// A witness signing with `cosigner` for the logs of `log_keys` (one key
    /// per origin; the key's name is the origin), with its state in
    /// `state_dir`. Every stored checkpoint is re-verified: a damaged state
    /// is refused rather than silently forgotten.
    pub fn open(
        cosigner: CosignerSigningKey,
        log_keys: Vec<VerifierKey>,
        state_dir: &Path,
    ) -> Result<Self, Failure> {
        let lock = lock_state(state_dir)?;
        let mut logs = HashMap::new();
        for key in log_keys {
            let origin = key.name().to_owned();
            if let Some(other) = logs.get(&origin).map(|log: &Arc<WitnessedLog>| &log.key) {
                return Err(Failure::unchecked(format!(
                    "--log {key} and --log {other} are both for origin {origin:?}; \
                     give one key per log"
                )));
            }
            let file = CosignedFile::open(state_dir, &key)?;
            let latest = file.load()?;
            tracing::info!(
                origin,
                state = %file.path().display(),
                cosigned_size = latest.as_ref().map_or(0, |c| c.checkpoint.size),
                "witnessing"
            );
            let latest = Mutex::new(latest);
            logs.insert(origin, Arc::new(WitnessedLog { key, file, latest }));
        }
        files::sync_dir(state_dir).map_err(|e| {
            Failure::unchecked(format!(
                "cannot sync directory {}: {e}",
                state_dir.display()
            ))
        })?;
        Ok(Self {
            cosigner,
            logs,
            _lock: lock,
        })
    }

    /// The key clients and logs verify this witness's cosignatures with.
    pub fn cosigner_key(&self) -> CosignerVerifierKey {
        self.cosigner.verifier_key()
    }

    /// Handles one add-checkpoint request body: the cosignature lines to
    /// answer 200 with, or why not.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let request =
            AddCheckpointRequest::parse(body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        let log = self
            .logs
            .get(request.origin())
            .ok_or_else(|| Refusal::UnknownOrigin(request.origin().to_owned()))?;
        let signed =
            SignedCheckpoint::verify(request.note(), &log.key).map_err(signature_refusal)?;
        if request.old_size() > signed.checkpoint.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is larger than the checkpoint's size {}",
                request.old_size(),
                signed.checkpoint.size
            )));
        }
        let (log, cosigner) = (Arc::clone(log), self.cosigner.clone());
        tokio::spawn(async move { log.advance(&cosigner, &request, signed).await })
            .await
            .unwrap_or_else(|e| Err(Refusal::Internal(format!("the cosigning task failed: {e}"))))
    }
}

impl WitnessedLog {
    /// Steps 4 to 6 of the module's list, then the durable write and the
    /// cosignature, all under the log's lock.
    async fn advance(
        &self,
        cosigner: &CosignerSigningKey,
        request: &AddCheckpointRequest,
        signed: SignedCheckpoint,
    ) -> Result<Vec<u8>, Refusal> {
        let mut latest = self.latest.lock().await;
        let cosigned = latest.as_ref().map_or_else(
            || Checkpoint {
                origin: signed.checkpoint.origin.clone(),
                size: 0,
                root: EMPTY_HASH,
            },
            |c| c.checkpoint.clone(),
        );
        let (size, new) = (cosigned.size, &signed.checkpoint);
        if request.old_size() != size {
            return Err(Refusal::StaleOldSize {
                old_size: request.old_size(),
                cosigned: size,
            });
        }
        let relation = decide(&cosigned, new, request.proof());
        if let Relation::Fork { .. } = relation {
            tracing::warn!(
                origin = %new.origin,
                size,
                request = %String::from_utf8_lossy(request.note()),
                "the log signed another root for a size this witness cosigned"
            );
            return Err(Refusal::RootMismatch { size });
        }
        if !relation.is_consistent() {
            tracing::warn!(
                origin = %new.origin,
                request = %String::from_utf8_lossy(&request.to_body()),
                "refused an inconsistent checkpoint: {relation}"
            );
            return Err(Refusal::Inconsistent(relation.to_string()));
        }
        let cosignature = cosigner
            .cosign(request.checkpoint_body(), now()?)
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        let (file, to_store) = (self.file.clone(), signed.clone());
        tokio::task::spawn_blocking(move || file.store(&to_store))
            .await
            .map_err(|e| Refusal::Internal(format!("the write task failed: {e}")))?
            .map_err(|e| {
                tracing::error!("{e}");
                Refusal::Internal(e)
            })?;
        tracing::info!(origin = %new.origin, size = new.size, from = size, "cosigned");
        *latest = Some(signed);
        Ok(encode_cosignatures(&[cosignature]))
    }
}

/// Takes the exclusive lock on `state_dir` (creating it if needed), or
/// says which process-wide rule refuses a second witness on it.
fn lock_state(state_dir: &Path) -> Result<FileLock, Failure> {
    std::fs::create_dir_all(state_dir).map_err(|e| {
        Failure::unchecked(format!(
            "cannot create state directory {}: {e}",
            state_dir.display()
        ))
    })?;
    files::try_lock(&state_dir.join(LOCK_FILE)).map_err(|e| {
        Failure::unchecked(match e {
            LockError::Locked(_) => format!(
                "--state {} is in use by another `verifier witness` ({e}); one witness \
                 process per state, or it could cosign both sides of a fork",
                state_dir.display()
            ),
            other => other.to_string(),
        })
    })
}

/// A note that did not verify under the origin's key: 403 when no
/// signature by it verifies, 400 when it is not a checkpoint at all.
fn signature_refusal(error: CheckpointError) -> Refusal {
    match error {
        CheckpointError::Unsigned(_) | CheckpointError::BadSignature(_) => {
            Refusal::Forbidden(error.to_string())
        }
        other => Refusal::BadRequest(format!("checkpoint note: {other}")),
    }
}

/// The time for a cosignature, in POSIX seconds.
fn now() -> Result<u64, Refusal> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Refusal::Internal("the system clock is before 1970".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::cli::witness::test_support::{cosigner, log_key, TempDir, Tree, ORIGIN};
    use crate::keys::SigningKey;
    use crate::merkle::leaf_hash;
    use crate::witness_protocol::parse_cosignatures;

    fn open(dir: &TempDir) -> Witness {
        Witness::open(cosigner(), vec![log_key().verifier_key()], dir.path()).unwrap()
    }

    /// The checkpoint the witness holds on disk, read as it would be after
    /// a restart.
    fn stored(dir: &TempDir) -> Option<SignedCheckpoint> {
        CosignedFile::open(dir.path(), &log_key().verifier_key())
            .unwrap()
            .load()
            .unwrap()
    }

    /// Asserts that `reply` is one cosignature line by the witness on the
    /// request's checkpoint, timestamped between `before` and now.
    fn assert_cosigned(reply: &[u8], request_body: &[u8], before: u64) {
        let request = AddCheckpointRequest::parse(request_body).unwrap();
        let cosignatures = parse_cosignatures(reply, &request, &cosigner().verifier_key()).unwrap();
        assert_eq!(cosignatures.len(), 1);
        assert_eq!(reply, cosignatures[0].to_line().as_bytes());
        let time = cosignatures[0].timestamp();
        assert!(before <= time && time <= now().unwrap(), "timestamp {time}");
    }

    #[tokio::test]
    async fn the_first_checkpoint_is_cosigned_from_size_zero_then_extended() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let tree = Tree::with_entries(20);
        let before = now().unwrap();
        let first = tree.request(0, 5);
        assert_cosigned(
            &witness.add_checkpoint(&first).await.unwrap(),
            &first,
            before,
        );
        assert_eq!(stored(&dir), Some(tree.signed(5)));
        let next = tree.request(5, 13);
        assert!(!AddCheckpointRequest::parse(&next)
            .unwrap()
            .proof()
            .is_empty());
        assert_cosigned(&witness.add_checkpoint(&next).await.unwrap(), &next, before);
        assert_eq!(stored(&dir), Some(tree.signed(13)));
    }

    #[tokio::test]
    async fn the_same_checkpoint_is_cosigned_again() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let tree = Tree::with_entries(7);
        witness.add_checkpoint(&tree.request(0, 7)).await.unwrap();
        let again = tree.request(7, 7);
        assert_cosigned(&witness.add_checkpoint(&again).await.unwrap(), &again, 0);
        assert_eq!(stored(&dir), Some(tree.signed(7)));
    }

    #[tokio::test]
    async fn a_stale_old_size_gets_the_cosigned_size() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let tree = Tree::with_entries(20);
        witness.add_checkpoint(&tree.request(0, 8)).await.unwrap();
        for old in [0, 5, 9] {
            assert_eq!(
                witness.add_checkpoint(&tree.request(old, 12)).await,
                Err(Refusal::StaleOldSize {
                    old_size: old,
                    cosigned: 8
                })
            );
        }
        assert_eq!(stored(&dir), Some(tree.signed(8)));
    }

    #[tokio::test]
    async fn another_root_at_the_cosigned_size_is_a_conflict() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let (tree, fork) = (Tree::with_entries(6), Tree::forked(6, "fork "));
        witness.add_checkpoint(&tree.request(0, 6)).await.unwrap();
        let refusal = witness
            .add_checkpoint(&fork.request(6, 6))
            .await
            .unwrap_err();
        assert_eq!(refusal, Refusal::RootMismatch { size: 6 });
        assert_eq!(refusal.code(), 409);
        assert_eq!(stored(&dir), Some(tree.signed(6)));
    }

    #[tokio::test]
    async fn an_empty_tree_must_have_the_empty_root() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let empty = Tree::with_entries(0).request(0, 0);
        assert_cosigned(&witness.add_checkpoint(&empty).await.unwrap(), &empty, 0);
        let note = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: leaf_hash(b"not empty"),
        }
        .sign(&log_key());
        let body = AddCheckpointRequest::new(0, vec![], note)
            .unwrap()
            .to_body();
        assert_eq!(
            witness.add_checkpoint(&body).await,
            Err(Refusal::RootMismatch { size: 0 })
        );
    }

    #[tokio::test]
    async fn a_proof_that_does_not_verify_is_unprocessable() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let (tree, fork) = (Tree::with_entries(30), Tree::forked(30, "fork "));
        witness.add_checkpoint(&tree.request(0, 10)).await.unwrap();
        let mut bad_proof = tree.proof(10, 30);
        bad_proof[1] = leaf_hash(b"tampered");
        let tampered = AddCheckpointRequest::new(10, bad_proof, tree.signed(30).note)
            .unwrap()
            .to_body();
        let truncated =
            AddCheckpointRequest::new(10, tree.proof(10, 30)[1..].to_vec(), tree.signed(30).note)
                .unwrap()
                .to_body();
        let same_size_with_proof =
            AddCheckpointRequest::new(10, vec![leaf_hash(b"x")], tree.signed(10).note)
                .unwrap()
                .to_body();
        for body in [
            tampered,
            truncated,
            fork.request(10, 30),
            same_size_with_proof,
        ] {
            let refusal = witness.add_checkpoint(&body).await.unwrap_err();
            assert!(
                matches!(&refusal, Refusal::Inconsistent(m) if m.contains("consistency proof")),
                "{refusal:?}"
            );
            assert_eq!(refusal.code(), 422);
        }
        assert_eq!(stored(&dir), Some(tree.signed(10)));
    }

    #[tokio::test]
    async fn a_proof_from_size_zero_must_be_empty() {
        let dir = TempDir::new();
        let tree = Tree::with_entries(4);
        let body = AddCheckpointRequest::new(0, vec![tree.root(2)], tree.signed(4).note)
            .unwrap()
            .to_body();
        assert!(matches!(
            open(&dir).add_checkpoint(&body).await,
            Err(Refusal::Inconsistent(_))
        ));
        assert_eq!(stored(&dir), None);
    }

    #[tokio::test]
    async fn only_the_configured_log_key_counts() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let tree = Tree::with_entries(3);
        let impostor = SigningKey::from_seed(ORIGIN, [0x99; 32]).unwrap();
        let forged = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: tree.root(3),
        }
        .sign(&impostor);
        let body = AddCheckpointRequest::new(0, vec![], forged)
            .unwrap()
            .to_body();
        let refusal = witness.add_checkpoint(&body).await.unwrap_err();
        assert_eq!(
            refusal,
            Refusal::Forbidden(format!(
                "no signature by the log key {}",
                log_key().verifier_key().key_id()
            ))
        );
        assert_eq!(refusal.code(), 403);

        // The log's own signature line, with one signature byte flipped.
        let note = String::from_utf8(tree.signed(3).note).unwrap();
        let (text, line) = note.rsplit_once("\n— ").unwrap();
        let (name, b64) = line.trim_end().split_once(' ').unwrap();
        let mut sig = base64::Engine::decode(&base64::prelude::BASE64_STANDARD, b64).unwrap();
        sig[10] ^= 1;
        let flipped = format!(
            "{text}\n— {name} {}\n",
            base64::Engine::encode(&base64::prelude::BASE64_STANDARD, sig)
        );
        let body = AddCheckpointRequest::new(0, vec![], flipped.into_bytes())
            .unwrap()
            .to_body();
        assert!(matches!(
            witness.add_checkpoint(&body).await,
            Err(Refusal::Forbidden(m)) if m.starts_with("invalid signature by the log key")
        ));
        assert_eq!(stored(&dir), None);
    }

    #[tokio::test]
    async fn signatures_by_unknown_keys_are_ignored() {
        let dir = TempDir::new();
        let tree = Tree::with_entries(3);
        let other = SigningKey::from_seed("someone.else", [0x55; 32]).unwrap();
        let cosigned = crate::cosignature::add_cosignatures(
            &tree.signed(3),
            &[crate::cosignature::CosignerSigningKey::new(other)
                .cosign(&Checkpoint::to_body(&tree.signed(3).checkpoint), 1)
                .unwrap()],
        )
        .unwrap();
        let body = AddCheckpointRequest::new(0, vec![], cosigned.note.clone())
            .unwrap()
            .to_body();
        assert_cosigned(&open(&dir).add_checkpoint(&body).await.unwrap(), &body, 0);
        assert_eq!(stored(&dir), Some(cosigned));
    }

    #[tokio::test]
    async fn an_unknown_origin_is_not_found() {
        let dir = TempDir::new();
        let other = SigningKey::from_seed("other.example/log", [0x31; 32]).unwrap();
        let note = Checkpoint {
            origin: "other.example/log".into(),
            size: 1,
            root: leaf_hash(b"entry"),
        }
        .sign(&other);
        let body = AddCheckpointRequest::new(0, vec![], note)
            .unwrap()
            .to_body();
        let refusal = open(&dir).add_checkpoint(&body).await.unwrap_err();
        assert_eq!(refusal, Refusal::UnknownOrigin("other.example/log".into()));
        assert_eq!(refusal.code(), 404);
        assert_eq!(
            refusal.to_string(),
            "origin \"other.example/log\" is not a log this witness witnesses"
        );
    }

    #[tokio::test]
    async fn malformed_bodies_and_an_old_size_beyond_the_checkpoint_are_bad_requests() {
        let dir = TempDir::new();
        let witness = open(&dir);
        let tree = Tree::with_entries(9);
        let valid = tree.request(0, 9);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "malformed old size line: missing"),
            (
                [b"old 00\n".as_slice(), &valid[6..]].concat(),
                "malformed old size line: expected a decimal number without leading zeros",
            ),
            (
                [b"new 0\n".as_slice(), &valid[6..]].concat(),
                "malformed old size line: it does not start with \"old \"",
            ),
            (
                [b"old 0\nnot base64!\n".as_slice(), &valid[6..]].concat(),
                "malformed consistency proof line",
            ),
            (
                b"old 0\n".to_vec(),
                "malformed request body: no blank line before the checkpoint",
            ),
            ([&valid[..], b"trailing"].concat(), "malformed request body"),
        ];
        for (body, expected) in cases {
            let refusal = witness.add_checkpoint(&body).await.unwrap_err();
            assert_eq!(refusal.code(), 400, "{refusal}");
            assert!(
                refusal.to_string().starts_with(expected),
                "{refusal} should start with {expected}"
            );
        }
        let beyond = AddCheckpointRequest::new(10, vec![], tree.signed(9).note)
            .unwrap()
            .to_body();
        assert_eq!(
            witness.add_checkpoint(&beyond).await,
            Err(Refusal::BadRequest(
                "old size 10 is larger than the checkpoint's size 9".into()
            ))
        );
        assert_eq!(stored(&dir), None);
    }

    #[test]
    fn a_second_witness_on_one_state_is_refused_while_the_first_lives() {
        let dir = TempDir::new();
        let first = open(&dir);
        let Err(Failure::Unchecked(reason)) =
            Witness::open(cosigner(), vec![log_key().verifier_key()], dir.path())
        else {
            panic!("two witnesses on one state");
        };
        assert!(
            reason.contains("in use by another `verifier witness`"),
            "{reason}"
        );
        assert!(!reason.contains('\n'), "one line: {reason}");
        drop(first);
        open(&dir);
    }

    #[tokio::test]
    async fn a_restarted_witness_never_cosigns_a_rollback() {
        let dir = TempDir::new();
        let tree = Tree::with_entries(12);
        open(&dir)
            .add_checkpoint(&tree.request(0, 12))
            .await
            .unwrap();
        let restarted = open(&dir);
        assert_eq!(
            restarted.add_checkpoint(&tree.request(0, 7)).await,
            Err(Refusal::StaleOldSize {
                old_size: 0,
                cosigned: 12
            })
        );
        let rollback = AddCheckpointRequest::new(12, vec![], tree.signed(7).note)
            .unwrap()
            .to_body();
        assert_eq!(
            restarted
                .add_checkpoint(&rollback)
                .await
                .unwrap_err()
                .code(),
            400
        );
        let again = tree.request(12, 12);
        assert_cosigned(&restarted.add_checkpoint(&again).await.unwrap(), &again, 0);
        assert_eq!(stored(&dir), Some(tree.signed(12)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_requests_from_one_size_exactly_one_wins() {
        let dir = TempDir::new();
        let witness = Arc::new(open(&dir));
        let tree = Arc::new(Tree::with_entries(40));
        witness.add_checkpoint(&tree.request(0, 4)).await.unwrap();
        let tasks: Vec<_> = (5..=40)
            .map(|new| {
                let (witness, tree) = (Arc::clone(&witness), Arc::clone(&tree));
                tokio::spawn(
                    async move { (new, witness.add_checkpoint(&tree.request(4, new)).await) },
                )
            })
            .collect();
        let mut winners = Vec::new();
        let mut refusals = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (new, Ok(_)) => winners.push(new),
                (_, Err(refusal)) => refusals.push(refusal),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let winner = winners[0];
        assert_eq!(refusals.len(), 35);
        for refusal in refusals {
            assert_eq!(
                refusal,
                Refusal::StaleOldSize {
                    old_size: 4,
                    cosigned: winner
                }
            );
        }
        assert_eq!(stored(&dir), Some(tree.signed(winner)));
    }

    #[test]
    fn a_damaged_state_or_two_keys_for_one_origin_refuse_to_start() {
        let dir = TempDir::new();
        let file = CosignedFile::open(dir.path(), &log_key().verifier_key()).unwrap();
        std::fs::write(file.path(), b"log.example.test/witnessed\n1\n").unwrap();
        let Err(Failure::Unchecked(reason)) =
            Witness::open(cosigner(), vec![log_key().verifier_key()], dir.path())
        else {
            panic!("a damaged state must refuse to start");
        };
        assert!(reason.contains("is damaged"), "{reason}");

        let second = SigningKey::from_seed(ORIGIN, [0x77; 32])
            .unwrap()
            .verifier_key();
        let Err(Failure::Unchecked(reason)) = Witness::open(
            cosigner(),
            vec![log_key().verifier_key(), second],
            TempDir::new().path(),
        ) else {
            panic!("two keys for one origin must be refused");
        };
        assert!(reason.contains("give one key per log"), "{reason}");
    }
}
