//! C2SP tlog-checkpoint bodies, signed as C2SP signed-notes with Ed25519.
//!
//! The body is `<origin>\n<size>\n<base64 root>\n`, optionally followed by
//! extension lines. The note is the body, a blank line, then signature lines
//! `— <name> <base64(key id || signature)>\n` (U+2014, then a space). The
//! log's key name equals the origin, so a checkpoint names its own log.
//!
//! Parsing is strict: a note is accepted only if it re-encodes to the same
//! bytes, a body only if it is in canonical form. Signatures by keys other
//! than the log's (witness cosignatures) are kept and left to their own
//! checks; a bad signature by the log's key rejects the note.

use crate::keys::{SigningKey, VerifierKey};
use crate::merkle::Hash;
use signed_note::{Note, Signer as _, VerifierList};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The note is not a well-formed signed note.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The note's body is not a well-formed checkpoint.
    #[error("malformed checkpoint body")]
    MalformedBody,
    /// The note carries no signature by the log's key.
    #[error("no signature by the log key {0}")]
    Unsigned(String),
    /// A signature by the log's key does not verify: the note was altered
    /// or forged.
    #[error("invalid signature by the log key {0}")]
    BadSignature(String),
    /// The checkpoint is for another log.
    #[error("checkpoint origin {found:?} is not the log's origin {expected:?}")]
    WrongOrigin {
        /// The log key's name.
        expected: String,
        /// The origin line of the checkpoint.
        found: String,
    },
}

/// A checkpoint body: which log, how many entries, and the root over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The log's origin line, equal to its key name.
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The RFC 9162 root of the tree.
    pub root: Hash,
}

impl Checkpoint {
    /// The canonical body: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_body(&self) -> Vec<u8> {
        format!("{}\n{}\n{}\n", self.origin, self.size, self.root).into_bytes()
    }

    /// Parses a body strictly. Extension lines are accepted (the spec
    /// allows them) but this log does not write any, so they are dropped.
    pub fn parse_body(body: &[u8]) -> Result<Self, CheckpointError> {
        let parsed =
            tlog_tiles::Checkpoint::from_bytes(body).map_err(|_| CheckpointError::MalformedBody)?;
        Ok(Self {
            origin: parsed.origin().to_owned(),
            size: parsed.size(),
            root: *parsed.hash(),
        })
    }

    /// Signs the body with the log's key, giving the signed note bytes.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let signer = key.note_signer();
        let mut note =
            Note::new(&self.to_body(), &[]).expect("a checkpoint body is a valid note text");
        note.add_sigs(&[&signer as &dyn signed_note::Signer])
            .expect("an Ed25519 key with a valid name can always sign");
        debug_assert_eq!(signer.name(), key.name());
        note.to_bytes()
    }
}

/// A checkpoint whose log signature has been verified, with the exact note
/// it came in, so that it can be stored, forwarded or used as evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// The verified body.
    pub checkpoint: Checkpoint,
    /// The whole signed note, byte for byte as received.
    pub note: Vec<u8>,
}

impl SignedCheckpoint {
    /// Verifies `note` as a checkpoint signed by `log_key`.
    ///
    /// Accepts only a note that re-encodes to the same bytes, carries a
    /// valid signature by `log_key`, and whose origin is `log_key`'s name.
    pub fn verify(note: &[u8], log_key: &VerifierKey) -> Result<Self, CheckpointError> {
        let parsed =
            Note::from_bytes(note).map_err(|e| CheckpointError::MalformedNote(e.to_string()))?;
        if parsed.to_bytes() != note {
            return Err(CheckpointError::MalformedNote(
                "it does not re-encode to the same bytes".into(),
            ));
        }
        let verifiers = VerifierList::new(vec![Box::new(log_key.note_verifier())]);
        parsed.verify(&verifiers).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => CheckpointError::Unsigned(log_key.key_id()),
            signed_note::NoteError::InvalidSignature { .. } => {
                CheckpointError::BadSignature(log_key.key_id())
            }
            other => CheckpointError::MalformedNote(other.to_string()),
        })?;
        let checkpoint = Checkpoint::parse_body(parsed.text())?;
        if checkpoint.origin != log_key.name() {
            return Err(CheckpointError::WrongOrigin {
                expected: log_key.name().to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok(Self {
            checkpoint,
            note: note.to_vec(),
        })
    }

    /// The note as text. A verified note is always UTF-8.
    pub fn note_text(&self) -> &str {
        std::str::from_utf8(&self.note).expect("a verified note is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    fn key() -> SigningKey {
        SigningKey::from_seed("log.example/test", [7; 32]).unwrap()
    }

    #[test]
    fn signed_checkpoints_verify_and_round_trip() {
        let cp = Checkpoint {
            origin: "log.example/test".into(),
            size: 12,
            root: leaf_hash(b"x"),
        };
        let note = cp.sign(&key());
        let verified = SignedCheckpoint::verify(&note, &key().verifier_key()).unwrap();
        assert_eq!(verified.checkpoint, cp);
        assert_eq!(verified.note, note);
    }

    #[test]
    fn another_key_or_origin_is_refused() {
        let cp = Checkpoint {
            origin: "log.example/test".into(),
            size: 1,
            root: leaf_hash(b"x"),
        };
        let note = cp.sign(&key());
        let stranger = SigningKey::from_seed("log.example/test", [8; 32]).unwrap();
        assert_eq!(
            SignedCheckpoint::verify(&note, &stranger.verifier_key()),
            Err(CheckpointError::Unsigned(stranger.key_id()))
        );
        let other_origin = Checkpoint {
            origin: "elsewhere".into(),
            ..cp
        };
        let note = other_origin.sign(&key());
        assert!(matches!(
            SignedCheckpoint::verify(&note, &key().verifier_key()),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }
}
