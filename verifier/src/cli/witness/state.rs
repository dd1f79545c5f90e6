//! The witness's memory of one log: the last checkpoint it cosigned.
//!
//! C2SP tlog-witness only asks a witness to remember, per origin, the latest
//! checkpoint it cosigned; every later cosignature must extend it. Losing
//! or rolling back that file would let the witness cosign both sides of a
//! split view, so it lives in `<state>/<origin, made filename-safe>+<key
//! id>/cosigned` (the per-log directory [`TrustedState`] names), is
//! replaced atomically through [`files::write_atomically`] (a unique
//! temporary file, fsync, rename, fsync of the directory), and is
//! re-verified with the log's key whenever it is read.

use crate::checkpoint::SignedCheckpoint;
use crate::cli::outcome::Failure;
use crate::cli::state::TrustedState;
use crate::files::{self, Access};
use crate::keys::VerifierKey;
use std::path::{Path, PathBuf};

/// The file holding one log's last cosigned checkpoint note.
#[derive(Clone, Debug)]
pub struct CosignedFile {
    path: PathBuf,
    key: VerifierKey,
}

impl CosignedFile {
    /// The file for the log whose key is `key`, creating its directory
    /// under `state_dir` if needed. The name is `cosigned`, not the
    /// auditor's `checkpoint`, so that a state directory shared with
    /// `verifier audit` never mixes what was cosigned with what was audited.
    pub fn open(state_dir: &Path, key: &VerifierKey) -> Result<Self, Failure> {
        let dir = TrustedState::open(state_dir, key)?.dir().to_path_buf();
        Ok(Self {
            path: dir.join("cosigned"),
            key: key.clone(),
        })
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last cosigned checkpoint, re-verified with the log's key, or
    /// `None` if this witness never cosigned for the log. A note that no
    /// longer verifies means the state was damaged, and nothing can be
    /// cosigned safely until an operator looks at it.
    pub fn load(&self) -> Result<Option<SignedCheckpoint>, Failure> {
        let note = match std::fs::read(&self.path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Failure::unchecked(format!(
                    "cannot read witness state {}: {e}",
                    self.path.display()
                )))
            }
        };
        SignedCheckpoint::verify(&note, &self.key)
            .map(Some)
            .map_err(|e| {
                Failure::unchecked(format!(
                    "witness state {} is damaged: {e}",
                    self.path.display()
                ))
            })
    }

    /// Makes `checkpoint` the last cosigned one, durably: when this returns
    /// `Ok`, a crash or power loss can no longer bring back the old file.
    pub fn store(&self, checkpoint: &SignedCheckpoint) -> Result<(), String> {
        files::write_atomically(&self.path, &checkpoint.note, Access::Public)
            .map_err(|e| format!("cannot write witness state {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::witness::test_support::{log_key, TempDir, Tree};

    #[test]
    fn a_stored_checkpoint_is_read_back_verified() {
        let tmp = TempDir::new();
        let file = CosignedFile::open(tmp.path(), &log_key().verifier_key()).unwrap();
        assert_eq!(file.load(), Ok(None), "no state means never cosigned");
        let tree = Tree::with_entries(5);
        let signed = tree.signed(5);
        file.store(&signed).unwrap();
        let reopened = CosignedFile::open(tmp.path(), &log_key().verifier_key()).unwrap();
        assert_eq!(reopened.load(), Ok(Some(signed)));
        assert!(reopened.path().ends_with("cosigned"));
        let dir = reopened.path().parent().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["cosigned"],
            "the temporary file was renamed into place"
        );
    }

    #[test]
    fn a_damaged_state_is_refused_with_its_path() {
        let tmp = TempDir::new();
        let file = CosignedFile::open(tmp.path(), &log_key().verifier_key()).unwrap();
        let mut note = Tree::with_entries(3).signed(3).note;
        note[0] ^= 1;
        std::fs::write(file.path(), note).unwrap();
        let Err(Failure::Unchecked(reason)) = file.load() else {
            panic!("a flipped bit must be refused");
        };
        assert!(reason.starts_with("witness state "), "{reason}");
        assert!(reason.contains("is damaged"), "{reason}");
        assert!(!reason.contains('\n'), "one line: {reason}");
    }
}
