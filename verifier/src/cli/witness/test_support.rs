//! Real keys, a real Merkle tree and scratch directories for the witness's
//! tests.

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::cosignature::CosignerSigningKey;
use crate::keys::SigningKey;
use crate::merkle::Hash;
use crate::witness_protocol::AddCheckpointRequest;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The origin of the log the tests witness.
pub const ORIGIN: &str = "log.example.test/witnessed";

/// The witnessed log's key.
pub fn log_key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [0x21; 32]).unwrap()
}

/// The witness's own key.
pub fn cosigner() -> CosignerSigningKey {
    CosignerSigningKey::new(SigningKey::from_seed("witness.example.test", [0x42; 32]).unwrap())
}

/// An RFC 9162 tree held in memory as `tlog_tiles` stored hashes, so that
/// roots and consistency proofs come from the same code a log uses.
pub struct Tree {
    stored: Vec<Hash>,
    size: u64,
    salt: String,
}

impl tlog_tiles::HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.stored[i as usize]).collect())
    }
}

impl Tree {
    /// A tree of `n` entries `entry 0`, `entry 1`, ….
    pub fn with_entries(n: u64) -> Self {
        Self::forked(n, "")
    }

    /// A tree of `n` entries whose contents depend on `salt`: two salts
    /// give two histories that disagree from the first entry on.
    pub fn forked(n: u64, salt: &str) -> Self {
        let mut tree = Self {
            stored: Vec::new(),
            size: 0,
            salt: salt.to_owned(),
        };
        for _ in 0..n {
            tree.push();
        }
        tree
    }

    fn push(&mut self) {
        let entry = format!("{}entry {}", self.salt, self.size);
        let hashes = tlog_tiles::stored_hashes(self.size, entry.as_bytes(), self).unwrap();
        self.stored.extend(hashes);
        self.size += 1;
    }

    /// The root of the first `size` entries.
    pub fn root(&self, size: u64) -> Hash {
        tlog_tiles::tree_hash(size, self).unwrap()
    }

    /// The consistency proof from `old` entries to `new` entries.
    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 || old == new {
            return Vec::new();
        }
        tlog_tiles::prove_tree(new, old, self).unwrap()
    }

    /// The log's signed checkpoint of the first `size` entries.
    pub fn signed(&self, size: u64) -> SignedCheckpoint {
        let note = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: self.root(size),
        }
        .sign(&log_key());
        SignedCheckpoint::verify(&note, &log_key().verifier_key()).unwrap()
    }

    /// An `add-checkpoint` body for the checkpoint of `new` entries, from
    /// `old`, with its correct proof.
    pub fn request(&self, old: u64, new: u64) -> Vec<u8> {
        AddCheckpointRequest::new(old, self.proof(old, new), self.signed(new).note)
            .unwrap()
            .to_body()
    }
}

/// A fresh directory under the system's temporary directory, removed when
/// dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates it, named after the process and a counter so that parallel
    /// tests never share one.
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "verifier-witness-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
