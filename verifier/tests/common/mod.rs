//! What several integration tests share: the independent reference tree.

use sha2::{Digest as _, Sha256};

/// RFC 6962 interior hashing for `rs_merkle`, the independent reference
/// these tests check the log's tree code against. Leaves are hashed by the
/// tests (`SHA-256(0x00 || data)`) before they go in, so `hash` is never
/// used on leaf data.
#[derive(Clone)]
pub struct Rfc6962;

impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => {
                let mut sha = Sha256::new();
                sha.update([0x01]);
                sha.update(left);
                sha.update(right);
                sha.finalize().into()
            }
            // A lone rightmost node is promoted unchanged.
            None => *left,
        }
    }
}
