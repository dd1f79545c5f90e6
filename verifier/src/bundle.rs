//! Offline proof bundles: one entry, its inclusion proof and the signed
//! checkpoint it is proven against, in one file that verifies with no
//! network and nothing but the log's verifier key.
//!
//! The format is C2SP tlog-proof@v1:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 entry bytes>
//! index <decimal>
//! <base64 proof hash, from the leaf's sibling upwards>
//! …
//!
//! <the signed checkpoint note, verbatim, with any cosignatures>
//! ```
//!
//! The spec makes `extra` optional and unauthenticated. This log's bundles
//! always carry the entry there, and it is authenticated all the same: its
//! leaf hash must lead, through the proof, to the signed root.
//!
//! Parsing is strict: only the canonical encoding is accepted (base64 with
//! canonical padding and no stray bits, decimals without leading zeros,
//! exactly one blank line before the note), so whatever [`ProofBundle::parse`]
//! accepts re-encodes to the same bytes, and a changed bit either breaks
//! the form or changes what is verified.

use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::event::{check_event, decode_entry, EntryError, FieldError};
use crate::keys::VerifierKey;
use crate::merkle::{leaf_hash, verify_inclusion, Hash, ProofError};
use crate::proto::{Event, LogEntry};
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// The first line of every bundle.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An entry, its index, its inclusion proof and the signed checkpoint the
/// proof leads to. Nothing in it is trusted until [`ProofBundle::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProofBundle {
    /// The log entry's bytes, exactly as hashed into the tree.
    pub entry: Vec<u8>,
    /// The entry's index in the log.
    pub index: u64,
    /// The RFC 9162 inclusion proof, from the leaf upwards.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, byte for byte.
    pub checkpoint_note: Vec<u8>,
}

/// What a verified bundle proves: the log signed a tree of
/// `checkpoint.checkpoint.size` entries in which `entry` is at `index`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    /// The checkpoint, its log signature verified.
    pub checkpoint: SignedCheckpoint,
    /// The entry's index.
    pub index: u64,
    /// The entry's RFC 9162 leaf hash.
    pub leaf_hash: Hash,
    /// The entry, decoded strictly.
    pub entry: LogEntry,
    /// The submitter's event inside it, checked against the admission rules.
    pub event: Event,
}

/// Why a bundle was refused: either the bytes are not a well-formed bundle
/// ([`NotABundle`](Self::NotABundle), [`Malformed`](Self::Malformed)), or
/// they are and what they claim is false (every other variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bytes do not start with the tlog-proof@v1 header line: they are
    /// not a bundle at all.
    #[error("not a tlog-proof bundle: the first line is not {HEADER}")]
    NotABundle,
    /// The header is there but the rest is not in canonical form: the
    /// bundle is damaged.
    #[error("damaged tlog-proof bundle: line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint is not signed by the log's key.
    #[error("the bundle's checkpoint does not verify: {0}")]
    Checkpoint(CheckpointError),
    /// The proof does not lead from the entry to the signed root.
    #[error("the bundle's inclusion proof does not verify: {0}")]
    Inclusion(ProofError),
    /// The entry is in the tree but is not a canonical log entry.
    #[error("the bundle's entry is not a valid log entry: {0}")]
    Entry(EntryError),
    /// The entry is in the tree but holds an event the log must refuse.
    #[error("the bundle's entry holds an invalid event: {0}")]
    Event(FieldError),
}

impl ProofBundle {
    /// The bundle's bytes. The note is carried verbatim, so the text is
    /// bytes rather than a `String`.
    pub fn to_text(&self) -> Vec<u8> {
        let mut text = format!(
            "{HEADER}\nextra {}\nindex {}\n",
            BASE64_STANDARD.encode(&self.entry),
            self.index
        );
        for hash in &self.proof {
            text.push_str(&BASE64_STANDARD.encode(hash.0));
            text.push('\n');
        }
        text.push('\n');
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&self.checkpoint_note);
        bytes
    }

    /// Parses a bundle strictly: it must be exactly what
    /// [`to_text`](Self::to_text) writes for some bundle, with the entry in
    /// `extra`. The note is only split off here; [`verify`](Self::verify)
    /// checks it.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.split(|&b| b == b'\n').next() != Some(HEADER.as_bytes()) {
            return Err(BundleError::NotABundle);
        }
        let blank = bytes.windows(2).position(|w| w == b"\n\n").ok_or_else(|| {
            malformed(
                line_at(bytes, bytes.len()),
                "no blank line before the checkpoint",
            )
        })?;
        let (head, note) = (&bytes[..blank], &bytes[blank + 2..]);
        let head = std::str::from_utf8(head)
            .map_err(|e| malformed(line_at(bytes, e.valid_up_to()), "not UTF-8"))?;
        let mut lines = head.split('\n').skip(1);
        let entry = lines
            .next()
            .and_then(|l| l.strip_prefix("extra "))
            .ok_or_else(|| malformed(2, "expected `extra <base64 entry>`"))
            .and_then(|b64| decode_base64(2, b64))?;
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(3, "expected `index <decimal, no leading zeros>`"))?;
        let proof = lines
            .enumerate()
            .map(|(i, line)| {
                let bytes = decode_base64(4 + i, line)?;
                let hash = <[u8; 32]>::try_from(bytes)
                    .map_err(|_| malformed(4 + i, "a proof hash is 32 bytes"))?;
                Ok(Hash(hash))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let note_line = head.split('\n').count() + 2;
        if note.is_empty() || note[0] == b'\n' {
            return Err(malformed(
                note_line,
                "expected the checkpoint after exactly one blank line",
            ));
        }
        Ok(Self {
            entry,
            index,
            proof,
            checkpoint_note: note.to_vec(),
        })
    }

    /// Verifies the bundle against the log's key: the checkpoint is signed
    /// by `log_key`, the entry's leaf hash leads through the proof to its
    /// root, and the entry is a canonical log entry holding a valid event.
    /// Cosignatures by other keys are carried but not checked.
    pub fn verify(&self, log_key: &VerifierKey) -> Result<VerifiedBundle, BundleError> {
        let checkpoint = SignedCheckpoint::verify(&self.checkpoint_note, log_key)
            .map_err(BundleError::Checkpoint)?;
        let leaf = leaf_hash(&self.entry);
        let (size, root) = (checkpoint.checkpoint.size, checkpoint.checkpoint.root);
        verify_inclusion(&self.proof, self.index, size, leaf, root)
            .map_err(BundleError::Inclusion)?;
        let entry = decode_entry(&self.entry).map_err(BundleError::Entry)?;
        let signed = entry
            .signed_event
            .as_ref()
            .expect("decode_entry requires a signed event");
        let event = check_event(&signed.event).map_err(BundleError::Event)?;
        Ok(VerifiedBundle {
            checkpoint,
            index: self.index,
            leaf_hash: leaf,
            entry,
            event,
        })
    }
}

/// The 1-based line that byte `offset` of `bytes` is on.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

fn malformed(line: usize, reason: impl Into<String>) -> BundleError {
    BundleError::Malformed {
        line,
        reason: reason.into(),
    }
}

/// Decodes standard base64, accepting only the encoding it re-encodes to.
fn decode_base64(line: usize, text: &str) -> Result<Vec<u8>, BundleError> {
    BASE64_STANDARD
        .decode(text)
        .ok()
        .filter(|bytes| BASE64_STANDARD.encode(bytes) == text)
        .ok_or_else(|| malformed(line, "not canonical base64"))
}

/// Parses a canonical decimal: digits only, no sign, no leading zeros.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::event::{encode_entry, sign_event};
    use crate::keys::SigningKey;
    use crate::proto::{event::Kind, DataFlow, Location};
    use crate::tile_builder::{MemoryTiles, TileBuilder};
    use crate::tiles::TiledHashReader;

    fn log_key() -> SigningKey {
        SigningKey::from_seed("log.example/bundles", [9; 32]).unwrap()
    }

    fn entry(n: u64) -> Vec<u8> {
        let submitter = SigningKey::from_seed("pipeline", [1; 32]).unwrap();
        let location = |region: &str| Location {
            system: "warehouse".into(),
            data_centre: "fra-1".into(),
            region: region.into(),
            organisation: "Example GmbH".into(),
        };
        let event = Event {
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_767_225_600,
                nanos: 0,
            }),
            kind: Some(Kind::DataFlow(DataFlow {
                flow_id: format!("flow-{n}"),
                data_category: "eu_user_data".into(),
                source: Some(location("DE")),
                destination: Some(location("IE")),
                purpose: "analytics".into(),
                legal_basis: "consent".into(),
                record_count: 1 + n,
            })),
        };
        let accepted_at = prost_types::Timestamp {
            seconds: 1_767_225_601,
            nanos: 5,
        };
        encode_entry(&sign_event(&submitter, &event), accepted_at)
    }

    /// A bundle for entry `index` of a tree holding `entries`, signed by
    /// [`log_key`].
    fn bundle_of(entries: &[Vec<u8>], index: u64) -> ProofBundle {
        let mut builder = TileBuilder::new();
        entries.iter().for_each(|e| builder.append(leaf_hash(e)));
        let mut tiles = MemoryTiles::default();
        tiles.apply(builder.take_changed());
        let size = entries.len() as u64;
        let proof = tlog_tiles::prove_record(size, index, &TiledHashReader::new(&tiles)).unwrap();
        let checkpoint = Checkpoint {
            origin: log_key().name().to_owned(),
            size,
            root: builder.root(),
        };
        ProofBundle {
            entry: entries[index as usize].clone(),
            index,
            proof,
            checkpoint_note: checkpoint.sign(&log_key()),
        }
    }

    fn bundle() -> ProofBundle {
        bundle_of(&(0..6).map(entry).collect::<Vec<_>>(), 4)
    }

    fn parse_and_verify(bytes: &[u8]) -> Result<VerifiedBundle, BundleError> {
        ProofBundle::parse(bytes)?.verify(&log_key().verifier_key())
    }

    #[test]
    fn a_bundle_round_trips_and_verifies() {
        let bundle = bundle();
        let text = bundle.to_text();
        assert!(text.starts_with(b"c2sp.org/tlog-proof@v1\nextra "));
        assert_eq!(ProofBundle::parse(&text).unwrap(), bundle);
        let verified = parse_and_verify(&text).unwrap();
        assert_eq!(verified.index, 4);
        assert_eq!(verified.checkpoint.checkpoint.size, 6);
        assert_eq!(verified.leaf_hash, leaf_hash(&entry(4)));
        assert!(matches!(verified.event.kind, Some(Kind::DataFlow(_))));
    }

    #[test]
    fn a_single_entry_tree_has_an_empty_proof() {
        let bundle = bundle_of(&[entry(0)], 0);
        assert!(bundle.proof.is_empty());
        let text = bundle.to_text();
        assert!(parse_and_verify(&text).is_ok());
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let text = bundle().to_text();
        for byte in 0..text.len() {
            for bit in 0..8 {
                let mut flipped = text.clone();
                flipped[byte] ^= 1 << bit;
                let result = parse_and_verify(&flipped);
                assert!(
                    result.is_err(),
                    "flipping bit {bit} of byte {byte} was accepted"
                );
                let in_header = byte <= HEADER.len();
                assert_eq!(
                    result.unwrap_err() == BundleError::NotABundle,
                    in_header,
                    "flipping bit {bit} of byte {byte}: only a damaged header is not a bundle"
                );
            }
        }
    }

    #[test]
    fn the_wrong_log_key_is_refused() {
        let stranger = SigningKey::from_seed(log_key().name(), [10; 32]).unwrap();
        let bundle = bundle();
        assert_eq!(
            bundle.verify(&stranger.verifier_key()),
            Err(BundleError::Checkpoint(CheckpointError::Unsigned(
                stranger.key_id()
            )))
        );
    }

    #[test]
    fn another_entry_index_or_proof_is_refused() {
        let good = bundle();
        let key = log_key().verifier_key();
        let mut other_entry = good.clone();
        other_entry.entry = entry(3);
        let mut other_index = good.clone();
        other_index.index = 3;
        let mut short_proof = good.clone();
        short_proof.proof.pop();
        for bad in [other_entry, other_index, short_proof] {
            assert!(
                matches!(bad.verify(&key), Err(BundleError::Inclusion(_))),
                "{bad:?}"
            );
        }
        let mut outside = good;
        outside.index = 6;
        assert_eq!(
            outside.verify(&key),
            Err(BundleError::Inclusion(ProofError::IndexOutOfRange {
                index: 6,
                size: 6
            }))
        );
    }

    #[test]
    fn an_included_entry_that_is_not_a_log_entry_is_refused() {
        let entries = vec![entry(0), b"not a LogEntry".to_vec()];
        let bundle = bundle_of(&entries, 1);
        assert!(matches!(
            bundle.verify(&log_key().verifier_key()),
            Err(BundleError::Entry(_))
        ));
    }

    #[test]
    fn non_canonical_text_is_refused_naming_the_line() {
        let text = String::from_utf8(bundle().to_text()).unwrap();
        let line_of = |bad: &str| match ProofBundle::parse(bad.as_bytes()) {
            Err(BundleError::Malformed { line, .. }) => line,
            other => panic!("{bad:?} gave {other:?}"),
        };
        let first_hash = text.lines().nth(3).unwrap().to_owned();
        let note_line = 4 + bundle().proof.len() + 1;
        // The same 32 bytes with stray low bits in the last character.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut stray = first_hash.clone().into_bytes();
        let value = ALPHABET.iter().position(|&c| c == stray[42]).unwrap();
        stray[42] = ALPHABET[value | 1];
        let stray = String::from_utf8(stray).unwrap();
        assert_ne!(stray, first_hash);
        let cases = [
            (text.replace("\nindex 4\n", "\nindex 04\n"), 3),
            (text.replace("\nindex 4\n", "\nindex +4\n"), 3),
            (text.replace("\nindex 4\n", "\nindex 4 \n"), 3),
            (text.replacen("\nextra ", "\nentry ", 1), 2),
            (text.replacen("\nextra ", "\nextra  ", 1), 2),
            (
                text.replace(&first_hash, first_hash.trim_end_matches('=')),
                4,
            ),
            (text.replace(&first_hash, &stray), 4),
            (text.replace(&first_hash, &first_hash[4..]), 4),
            // The note must follow exactly one blank line.
            (text.replacen("\n\n", "\n\n\n", 1), note_line),
            // Without the blank line, the checkpoint's origin line is read
            // as a proof hash.
            (text.replacen("\n\n", "\n", 1), note_line - 1),
            (
                text[..text.find("\n\n").unwrap() + 1].to_owned(),
                note_line - 1,
            ),
        ];
        for (bad, line) in cases {
            assert_eq!(line_of(&bad), line, "{bad}");
        }
        let without_extra = text.replace(&text[HEADER.len()..text.find("\nindex").unwrap()], "");
        assert_eq!(line_of(&without_extra), 2);
    }

    #[test]
    fn bytes_without_the_header_are_not_a_bundle() {
        let text = bundle().to_text();
        for bad in [
            &b""[..],
            b"c2sp.org/tlog-proof@v2\n",
            b"PRIVATE+KEY+operator+00000000+AAAA\n",
            &text[1..],
        ] {
            assert_eq!(ProofBundle::parse(bad), Err(BundleError::NotABundle));
        }
        let crlf = String::from_utf8(text).unwrap().replace('\n', "\r\n");
        assert_eq!(
            ProofBundle::parse(crlf.as_bytes()),
            Err(BundleError::NotABundle)
        );
    }
}
