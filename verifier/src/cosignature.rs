//! C2SP tlog-cosignature `cosignature/v1`: a witness's timestamped Ed25519
//! signature on a checkpoint, and the quorum rule that makes it worth having.
//!
//! One log signature only proves that the operator said something. A
//! cosignature adds a witness's statement that, at the given time, this is
//! the largest tree consistent with everything it has seen for the origin.
//! A client that requires `k` independent witnesses can only be shown a
//! split view if `k` of them collude with the operator.
//!
//! The formats, from <https://c2sp.org/tlog-cosignature> ("Format" and
//! "Ed25519 signed message"):
//!
//! - key id = `SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]`;
//! - verifier key = `<name>+<hex key id>+<base64(0x04 || public key)>`, a
//!   C2SP signed-note vkey with signature type `0x04`;
//! - signed message = `cosignature/v1\ntime <decimal seconds>\n<checkpoint body>`,
//!   where the body is the whole note text, extension lines included;
//! - signature line = `— <name> base64(key id || u64 BE timestamp || Ed25519 signature)`,
//!   so the base64 always holds 4 + 8 + 64 = 76 bytes;
//! - the timestamp is POSIX seconds and must not exceed 2^63 - 1.
//!
//! What it leaves out: the ML-DSA-44 type (`0x06`) and subtree cosignatures;
//! clocks (a verified cosignature returns its timestamp, and freshness is the
//! caller's policy); and the network (see [`crate::witness_protocol`] for
//! what travels over it).

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::keys::{parse_ed25519_verifier_key, KeyError, SigningKey, VerifierKey};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use signed_note::Note;

/// The signed-note signature type of Ed25519 `cosignature/v1`.
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp the spec allows: 2^63 - 1.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The bytes after the key id in a cosignature: timestamp and signature.
const TIMESTAMPED_SIGNATURE_LEN: usize = 8 + 64;

/// Why a cosignature, or a quorum of them, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// The text is not a cosignature line or not a signed note.
    #[error("malformed cosignature: {0}")]
    Malformed(String),
    /// The timestamp is above 2^63 - 1, which the spec forbids.
    #[error("cosignature timestamp {0} exceeds 2^63 - 1")]
    TimestampOutOfRange(u64),
    /// The line names another key than the one it was checked against.
    #[error("cosignature by {found} checked against the key {expected}")]
    WrongKey {
        /// The key id string of the key the caller trusts.
        expected: String,
        /// The key id string the line claims.
        found: String,
    },
    /// The signature by a trusted witness key does not verify: the
    /// checkpoint body, the timestamp or the signature was altered, or the
    /// line was forged.
    #[error("invalid cosignature by the witness key {witness} (time {timestamp})")]
    BadSignature {
        /// The witness's key id string.
        witness: String,
        /// The timestamp the line claims.
        timestamp: u64,
    },
    /// The checkpoint itself (its form or the log's signature) was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Too few listed witnesses cosigned the checkpoint.
    #[error(
        "{valid} valid cosignatures by listed witnesses, {needed} needed \
         ({listed} witness keys listed)"
    )]
    QuorumNotReached {
        /// Distinct listed witness keys with a valid cosignature.
        valid: usize,
        /// The quorum.
        needed: usize,
        /// How many distinct witness keys the policy lists.
        listed: usize,
    },
    /// A cosignature line would replace a signature of another kind (such
    /// as the log's own) that has the same name and key id.
    #[error("the note already has a non-cosignature signature by {0}")]
    Conflict(String),
}

fn malformed(reason: impl Into<String>) -> CosignatureError {
    CosignatureError::Malformed(reason.into())
}

/// The 4-byte key id of a cosigner, as a big-endian integer:
/// `SHA-256(name || 0x0A || 0x04 || public key)[:4]`.
///
/// It differs from the same key's ordinary note key id (type `0x01`), so
/// that a cosignature is never mistaken for a plain note signature.
pub fn cosigner_key_id(name: &str, public_key: &ed25519_dalek::VerifyingKey) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(ALG_COSIGNATURE_V1);
    encoded.extend_from_slice(public_key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The message a cosigner signs:
/// `cosignature/v1\ntime <decimal seconds>\n<checkpoint body>`.
fn signed_message(checkpoint_body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(checkpoint_body);
    message
}

/// A witness's private key in its cosigner role.
///
/// It wraps an ordinary [`SigningKey`], so a witness key is stored in the
/// usual `PRIVATE+KEY+…` file (as Go's witnesses do); what makes its
/// signatures cosignatures is the `0x04` key id and the `cosignature/v1`
/// message. Because that message does not name the witness, one Ed25519
/// key must serve one cosigner only, and sign nothing else.
#[derive(Clone)]
pub struct CosignerSigningKey {
    key: SigningKey,
    id: u32,
}

impl std::fmt::Debug for CosignerSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignerSigningKey({}+{:08x})", self.key.name(), self.id)
    }
}

impl CosignerSigningKey {
    /// Takes `key` into the cosigner role, under the key's own name.
    pub fn new(key: SigningKey) -> Self {
        let id = cosigner_key_id(key.name(), key.verifier_key().public_key());
        Self { key, id }
    }

    /// The witness's name, which its signature lines carry.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The public half, in the form clients configure.
    pub fn verifier_key(&self) -> CosignerVerifierKey {
        CosignerVerifierKey {
            name: self.key.name().to_owned(),
            id: self.id,
            key: *self.key.verifier_key().public_key(),
        }
    }

    /// Cosigns `checkpoint_body` (the note text, without signature lines)
    /// as of `timestamp`, in POSIX seconds.
    ///
    /// A witness must cosign only a checkpoint whose log signature it
    /// verified and which is consistent with the last one it cosigned for
    /// the origin; this function checks neither, only that the body is a
    /// well-formed checkpoint and that the timestamp is at most 2^63 - 1.
    pub fn cosign(
        &self,
        checkpoint_body: &[u8],
        timestamp: u64,
    ) -> Result<Cosignature, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        Checkpoint::parse_body(checkpoint_body)?;
        Ok(Cosignature {
            name: self.key.name().to_owned(),
            key_id: self.id,
            timestamp,
            signature: self.key.sign(&signed_message(checkpoint_body, timestamp)),
        })
    }
}

/// A witness's public key, as a client's policy lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignerVerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl CosignerVerifierKey {
    /// Parses `<name>+<8 lower-case hex key id>+<base64(0x04 || public key)>`,
    /// checking that the id matches the key. Surrounding whitespace is
    /// ignored.
    ///
    /// Any other signature type is refused, including an ordinary Ed25519
    /// note key (`0x01`) of the same witness: accepting it would leave the
    /// client unsure which kind of signature a key id stands for.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, id, key) = parse_ed25519_verifier_key(
            text,
            "cosigner verifier key",
            (ALG_COSIGNATURE_V1, "cosignature/v1"),
            cosigner_key_id,
        )?;
        Ok(Self { name, id, key })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key id string `<name>+<hex id>`, for messages.
    pub fn key_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// Whether a signature line with this name and key id is this key's,
    /// the signed-note rule for which lines to check and which to ignore.
    pub(crate) fn matches(&self, name: &str, id: u32) -> bool {
        self.name == name && self.id == id
    }

    /// Verifies `cosignature` as this witness's statement on
    /// `checkpoint_body` (the exact note text, without signature lines),
    /// and returns its timestamp.
    ///
    /// Uses strict Ed25519 verification, which rejects malleable
    /// signatures.
    pub fn verify(
        &self,
        checkpoint_body: &[u8],
        cosignature: &Cosignature,
    ) -> Result<u64, CosignatureError> {
        if !self.matches(&cosignature.name, cosignature.key_id) {
            return Err(CosignatureError::WrongKey {
                expected: self.key_id(),
                found: cosignature.key_id(),
            });
        }
        let message = signed_message(checkpoint_body, cosignature.timestamp);
        let signature = ed25519_dalek::Signature::from_bytes(&cosignature.signature);
        self.key.verify_strict(&message, &signature).map_err(|_| {
            CosignatureError::BadSignature {
                witness: self.key_id(),
                timestamp: cosignature.timestamp,
            }
        })?;
        Ok(cosignature.timestamp)
    }
}

impl std::fmt::Display for CosignerVerifierKey {
    /// The verifier key encoding, `<name>+<hex id>+<base64(0x04 || key)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut encoded = vec![ALG_COSIGNATURE_V1];
        encoded.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64_STANDARD.encode(encoded)
        )
    }
}

/// One `cosignature/v1` signature line, parsed but not yet verified.
///
/// Its name is a valid key name and its timestamp at most 2^63 - 1, so it
/// always encodes back to a line that parses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    name: String,
    key_id: u32,
    timestamp: u64,
    signature: [u8; 64],
}

impl Cosignature {
    /// Parses one signature line, `— <name> <base64(76 bytes)>\n`, with its
    /// final newline. Only the canonical form is accepted (one space after
    /// the em dash and after the name, canonical base64), so an accepted
    /// line re-encodes to the same bytes.
    pub fn parse_line(line: &str) -> Result<Self, CosignatureError> {
        Self::from_note_signature(&parse_signature_line(line)?)
    }

    /// Reads a note signature as a cosignature: its bytes after the key id
    /// must be a timestamp (at most 2^63 - 1) and a 64-byte signature.
    pub(crate) fn from_note_signature(
        signature: &signed_note::Signature,
    ) -> Result<Self, CosignatureError> {
        let bytes = signature.signature();
        if bytes.len() != TIMESTAMPED_SIGNATURE_LEN {
            return Err(malformed(format!(
                "the signature by {}+{:08x} holds {} bytes after the key id, not 8 + 64",
                signature.name(),
                signature.id(),
                bytes.len()
            )));
        }
        let (time, sig) = bytes.split_at(8);
        let timestamp = u64::from_be_bytes(time.try_into().expect("split at 8"));
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        Ok(Self {
            name: signature.name().to_owned(),
            key_id: signature.id(),
            timestamp,
            signature: sig.try_into().expect("64 bytes remain"),
        })
    }

    /// The line `— <name> <base64(key id || timestamp || signature)>\n`,
    /// as it appears in a note and in a witness's response.
    pub fn to_line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + TIMESTAMPED_SIGNATURE_LEN);
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        format!("— {} {}\n", self.name, BASE64_STANDARD.encode(bytes))
    }

    /// The witness name the line claims.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id string `<name>+<hex id>` the line claims.
    pub fn key_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.key_id)
    }

    /// The time of the witness's statement, in POSIX seconds; trustworthy
    /// only once the cosignature is verified.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn to_note_signature(&self) -> signed_note::Signature {
        let mut bytes = self.timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        signed_note::Signature::new(self.name.clone(), self.key_id, bytes)
            .expect("a cosignature's name is a valid key name")
    }
}

/// Parses any signed-note signature line, `— <name> <base64(key id || bytes)>\n`,
/// with its final newline, in canonical form only and without control
/// characters (C2SP signed-note "Format").
pub(crate) fn parse_signature_line(line: &str) -> Result<signed_note::Signature, CosignatureError> {
    let inner = line
        .strip_suffix('\n')
        .ok_or_else(|| malformed("a signature line ends with a newline"))?;
    if inner.chars().any(|c| c < ' ') {
        return Err(malformed("a signature line holds a control character"));
    }
    let signature = signed_note::Signature::from_bytes(inner.as_bytes())
        .map_err(|_| malformed(format!("not a signature line: {inner:.80}")))?;
    if signature.to_bytes() != line.as_bytes() {
        return Err(malformed("the signature line is not in canonical form"));
    }
    Ok(signature)
}

/// Splits a signed note into its text (the checkpoint body) and its
/// signature lines, accepting only a note that re-encodes to the same bytes.
pub(crate) fn split_note(
    note: &[u8],
) -> Result<(Vec<u8>, Vec<signed_note::Signature>), CheckpointError> {
    let bad = |reason: String| CheckpointError::MalformedNote(reason);
    let parsed = Note::from_bytes(note).map_err(|e| bad(e.to_string()))?;
    if parsed.to_bytes() != note {
        return Err(bad("it does not re-encode to the same bytes".into()));
    }
    let text = parsed.text().to_vec();
    // A well-formed note is its text, a blank line, then lines ending in '\n'.
    let signatures = note[text.len() + 1..]
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            signed_note::Signature::from_bytes(&line[..line.len() - 1])
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok((text, signatures))
}

/// A checkpoint with its log signature verified and a quorum of witness
/// cosignatures on the same body.
#[derive(Debug, Clone, PartialEq)]
pub struct WitnessedCheckpoint {
    /// The checkpoint, its log signature verified.
    pub checkpoint: SignedCheckpoint,
    /// The valid cosignatures by listed witnesses, one per witness key, in
    /// the order of the note.
    pub cosignatures: Vec<Cosignature>,
}

/// Verifies `note` as a checkpoint signed by `log_key` and cosigned by at
/// least `quorum` of `witnesses`.
///
/// Follows the signed-note rules: lines whose name and key id match no
/// listed witness are ignored, and a line that matches one but is not a
/// valid cosignature on this exact body rejects the whole note, as a bad
/// log signature does. Witnesses are counted by public key, not by line
/// or name, because the `cosignature/v1` message does not name the
/// witness: one key listed under two names, or one witness's two lines,
/// counts once.
pub fn verify_witnessed(
    note: &[u8],
    log_key: &VerifierKey,
    witnesses: &[CosignerVerifierKey],
    quorum: usize,
) -> Result<WitnessedCheckpoint, CosignatureError> {
    let checkpoint = SignedCheckpoint::verify(note, log_key)?;
    let (body, lines) = split_note(note)?;
    let mut valid: Vec<(Cosignature, ed25519_dalek::VerifyingKey)> = Vec::new();
    for line in &lines {
        let Some(witness) = witnesses.iter().find(|w| w.matches(line.name(), line.id())) else {
            continue;
        };
        let cosignature = Cosignature::from_note_signature(line)?;
        witness.verify(&body, &cosignature)?;
        if !valid.iter().any(|(_, key)| *key == witness.key) {
            valid.push((cosignature, witness.key));
        }
    }
    let mut listed: Vec<&ed25519_dalek::VerifyingKey> = witnesses.iter().map(|w| &w.key).collect();
    listed.sort_by_key(|k| k.as_bytes());
    listed.dedup();
    if valid.len() < quorum {
        return Err(CosignatureError::QuorumNotReached {
            valid: valid.len(),
            needed: quorum,
            listed: listed.len(),
        });
    }
    Ok(WitnessedCheckpoint {
        checkpoint,
        cosignatures: valid.into_iter().map(|(c, _)| c).collect(),
    })
}

/// Adds cosignature lines to a signed checkpoint, for publishing.
///
/// Existing lines keep their order (the log's signature stays first) and
/// new ones follow in the order given. No name and key id appears twice:
/// of two cosignatures by the same key the later timestamp is kept, in the
/// earlier one's place, so which one survives does not depend on the order
/// they arrive in. A
/// cosignature that shares its name and key id with a signature of another
/// kind (such as the log's) is refused.
///
/// This only places lines: verify each cosignature against its witness's
/// key first ([`CosignerVerifierKey::verify`]).
pub fn add_cosignatures(
    signed: &SignedCheckpoint,
    cosignatures: &[Cosignature],
) -> Result<SignedCheckpoint, CosignatureError> {
    let (text, mut lines) = split_note(&signed.note)?;
    for new in cosignatures {
        let same_key = lines
            .iter()
            .position(|line| line.name() == new.name && line.id() == new.key_id);
        match same_key {
            None => lines.push(new.to_note_signature()),
            Some(i) => match Cosignature::from_note_signature(&lines[i]) {
                Ok(old) if old.timestamp < new.timestamp => lines[i] = new.to_note_signature(),
                Ok(_) => {}
                Err(_) => return Err(CosignatureError::Conflict(new.key_id())),
            },
        }
    }
    let note = Note::new(&text, &lines)
        .map_err(|e| malformed(format!("cannot rebuild the note: {e}")))?
        .to_bytes();
    // The result must stay a note that verifiers accept (at most as many
    // signatures as `signed_note` parses).
    Note::from_bytes(&note).map_err(|_| malformed("too many signatures for one note"))?;
    Ok(SignedCheckpoint {
        checkpoint: signed.checkpoint.clone(),
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    const LOG: &str = "log.example/cosig";

    fn log_key() -> SigningKey {
        SigningKey::from_seed(LOG, [1; 32]).unwrap()
    }

    fn witness(seed: u8) -> CosignerSigningKey {
        CosignerSigningKey::new(
            SigningKey::from_seed(&format!("witness.example/w{seed}"), [seed; 32]).unwrap(),
        )
    }

    fn signed(size: u64) -> SignedCheckpoint {
        let note = Checkpoint {
            origin: LOG.into(),
            size,
            root: leaf_hash(&size.to_be_bytes()),
        }
        .sign(&log_key());
        SignedCheckpoint::verify(&note, &log_key().verifier_key()).unwrap()
    }

    fn body(signed: &SignedCheckpoint) -> Vec<u8> {
        split_note(&signed.note).unwrap().0
    }

    #[test]
    fn the_signed_message_is_the_spec_example() {
        let body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            signed_message(body, 1679315147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        assert_eq!(&signed_message(body, 0)[..22], b"cosignature/v1\ntime 0\n");
    }

    #[test]
    fn cosignatures_round_trip_and_verify() {
        let w = witness(2);
        let cp = signed(5);
        let cosig = w.cosign(&body(&cp), 1_700_000_000).unwrap();
        let line = cosig.to_line();
        assert!(line.starts_with("— witness.example/w2 "));
        assert_eq!(Cosignature::parse_line(&line).unwrap(), cosig);
        assert_eq!(
            w.verifier_key().verify(&body(&cp), &cosig),
            Ok(1_700_000_000)
        );
        let vkey = w.verifier_key();
        assert_eq!(CosignerVerifierKey::parse(&vkey.to_string()).unwrap(), vkey);
        assert_ne!(
            vkey.id(),
            w.key.verifier_key().id(),
            "0x04 and 0x01 ids differ"
        );
    }

    #[test]
    fn timestamps_above_two_to_the_63_are_refused() {
        let w = witness(2);
        let cp = signed(5);
        assert_eq!(
            w.cosign(&body(&cp), MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampOutOfRange(MAX_TIMESTAMP + 1))
        );
        let at_max = w.cosign(&body(&cp), MAX_TIMESTAMP).unwrap();
        let mut too_late = at_max.clone();
        too_late.timestamp = MAX_TIMESTAMP + 1;
        assert_eq!(
            Cosignature::parse_line(&too_late.to_line()),
            Err(CosignatureError::TimestampOutOfRange(MAX_TIMESTAMP + 1))
        );
    }

    #[test]
    fn only_checkpoint_bodies_are_cosigned() {
        assert!(matches!(
            witness(2).cosign(b"not a checkpoint\n", 1),
            Err(CosignatureError::Checkpoint(CheckpointError::MalformedBody))
        ));
    }

    #[test]
    fn merging_keeps_the_log_signature_first_and_the_latest_cosignature() {
        let cp = signed(9);
        let (w2, w3) = (witness(2), witness(3));
        let old = w2.cosign(&body(&cp), 100).unwrap();
        let new = w2.cosign(&body(&cp), 200).unwrap();
        let other = w3.cosign(&body(&cp), 150).unwrap();
        let a = add_cosignatures(&cp, &[old.clone(), other.clone(), new.clone()]).unwrap();
        let b = add_cosignatures(
            &add_cosignatures(&cp, std::slice::from_ref(&new)).unwrap(),
            &[other.clone(), old.clone()],
        )
        .unwrap();
        assert_eq!(a, b, "merging in another order gives the same note");
        let (_, lines) = split_note(&a.note).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].name(), LOG);
        assert_eq!(
            Cosignature::from_note_signature(&lines[1]).unwrap(),
            new,
            "the later timestamp replaces the earlier in place"
        );
        assert_eq!(
            SignedCheckpoint::verify(&a.note, &log_key().verifier_key()),
            Ok(a.clone())
        );
        // Adding what is already there changes nothing.
        assert_eq!(add_cosignatures(&a, &[new, other]).unwrap(), a);
    }

    #[test]
    fn a_note_never_grows_past_what_verifiers_parse() {
        let cp = signed(9);
        let many: Vec<Cosignature> = (0..100u8)
            .map(|n| {
                let key = SigningKey::from_seed(&format!("w{n}"), [n; 32]).unwrap();
                CosignerSigningKey::new(key).cosign(&body(&cp), 1).unwrap()
            })
            .collect();
        let fits = add_cosignatures(&cp, &many[..99]).unwrap();
        assert!(SignedCheckpoint::verify(&fits.note, &log_key().verifier_key()).is_ok());
        assert!(matches!(
            add_cosignatures(&cp, &many),
            Err(CosignatureError::Malformed(_))
        ));
    }

    #[test]
    fn a_cosignature_may_not_displace_the_log_signature() {
        let cp = signed(9);
        let log_vkey = log_key().verifier_key();
        let mut forged = witness(2).cosign(&body(&cp), 1).unwrap();
        forged.name = LOG.into();
        forged.key_id = log_vkey.id();
        assert_eq!(
            add_cosignatures(&cp, &[forged]),
            Err(CosignatureError::Conflict(log_vkey.key_id()))
        );
    }
}
