//! Ed25519 keys in the C2SP signed-note encodings.
//!
//! One key format serves the log, its submitters and reviewers, so that the
//! same tools and files work for all of them:
//!
//! - a verifier key is `<name>+<hex key id>+<base64(0x01 || public key)>`,
//!   with key id = `SHA-256(name || 0x0A || 0x01 || public key)[:4]`;
//! - a signer key file holds `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`,
//!   the encoding of Go's `sumdb/note`;
//! - a key is referred to in events by its *key id string*
//!   `<name>+<hex key id>`, the first two fields of its verifier key.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use ed25519_dalek::Signer as _;
use std::collections::HashMap;

/// The signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a key in the expected encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which kind of key was expected.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A key list has a bad line.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

fn malformed(what: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        what,
        reason: reason.into(),
    }
}

/// Whether `name` is a valid key name: non-empty, with no whitespace and no
/// `+` (C2SP signed-note).
pub fn is_valid_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// The longest key id string accepted anywhere (events, attestations,
/// policies, lookups), in bytes: room for any sensible name, and a bound on
/// what one field can make every reader copy and compare.
pub const MAX_KEY_ID_LEN: usize = 256;

/// Whether `text` is a key id string, `<name>+<8 lower-case hex digits>`,
/// at most [`MAX_KEY_ID_LEN`] bytes: how events, policies and lookups name
/// a key without its public half.
pub fn is_key_id(text: &str) -> bool {
    text.len() <= MAX_KEY_ID_LEN
        && text.split_once('+').is_some_and(|(name, id)| {
            is_valid_key_name(name)
                && id.len() == 8
                && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// The 4-byte key id of an Ed25519 key, as a big-endian integer:
/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
pub fn key_id(name: &str, public_key: &ed25519_dalek::VerifyingKey) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(ALG_ED25519);
    encoded.extend_from_slice(public_key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// Parses a C2SP signed-note verifier key holding an Ed25519 public key,
/// `<name>+<8 hex digits>+<base64(type || 32-byte key)>`, for one
/// signature type, and checks the id against `id_of(name, key)`. Note keys
/// (type 0x01) and cosigner keys (type 0x04) share this form but not their
/// id computation. Surrounding whitespace is ignored.
pub(crate) fn parse_ed25519_verifier_key(
    text: &str,
    what: &'static str,
    (signature_type, type_name): (u8, &str),
    id_of: fn(&str, &ed25519_dalek::VerifyingKey) -> u32,
) -> Result<(String, u32, ed25519_dalek::VerifyingKey), KeyError> {
    // The base64 key may itself contain '+', so split off two fields only.
    let mut fields = text.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(what, "expected <name>+<id>+<key>"));
    };
    if !is_valid_key_name(name) {
        return Err(malformed(what, format!("bad key name {name:?}")));
    }
    let bytes = BASE64_STANDARD
        .decode(b64)
        .map_err(|e| malformed(what, format!("key is not base64: {e}")))?;
    let public: [u8; 32] = match bytes.split_first() {
        Some((&found, public)) if found == signature_type => public
            .try_into()
            .map_err(|_| malformed(what, "an Ed25519 public key is 32 bytes"))?,
        Some((&found, _)) => {
            return Err(malformed(
                what,
                format!("signature type {found:#04x} is not {type_name} ({signature_type:#04x})"),
            ))
        }
        None => return Err(malformed(what, "the key is empty")),
    };
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
        .map_err(|_| malformed(what, "not a valid Ed25519 point"))?;
    let id = id_of(name, &key);
    if id_hex.len() != 8 || format!("{id:08x}") != id_hex {
        return Err(malformed(
            what,
            format!("key id {id_hex} does not match the key"),
        ));
    }
    Ok((name.to_owned(), id, key))
}

/// A private Ed25519 key with its name: what a log, submitter or reviewer
/// signs with.
#[derive(Clone)]
pub struct SigningKey {
    name: String,
    id: u32,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        Self::from_seed(name, key.to_bytes())
    }

    /// The key with this 32-byte Ed25519 seed; deterministic, for tests and
    /// reference vectors.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(malformed(
                "key name",
                format!("{name:?} is empty or has a space or '+'"),
            ));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = key_id(name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`, checking
    /// that the id matches the key. Surrounding whitespace is ignored, so a
    /// key file may end with a newline.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        const WHAT: &str = "signer key";
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| malformed(WHAT, "it does not start with PRIVATE+KEY+"))?;
        let mut fields = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(WHAT, "expected PRIVATE+KEY+<name>+<id>+<key>"));
        };
        let bytes = BASE64_STANDARD
            .decode(b64)
            .map_err(|e| malformed(WHAT, format!("key is not base64: {e}")))?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| malformed(WHAT, "an Ed25519 seed is 32 bytes"))?,
            _ => return Err(malformed(WHAT, "only Ed25519 (algorithm 1) is supported")),
        };
        let key = Self::from_seed(name, seed)?;
        if format!("{:08x}", key.id) != id_hex {
            return Err(malformed(
                WHAT,
                format!("key id {id_hex} does not match the key"),
            ));
        }
        Ok(key)
    }

    /// The signer key encoding, `PRIVATE+KEY+…`. Secret: write it only to a
    /// file of mode 0600.
    pub fn to_signer_string(&self) -> String {
        let mut encoded = vec![ALG_ED25519];
        encoded.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            BASE64_STANDARD.encode(encoded)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id string `<name>+<hex id>` that events use to name a key.
    pub fn key_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// The public half, for verifiers.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// This key as a signed-note signer, for checkpoints.
    pub fn note_signer(&self) -> signed_note::StandardSigner {
        signed_note::StandardSigner::new(&self.to_signer_string())
            .expect("a SigningKey always encodes to a valid signer key")
    }
}

/// A public Ed25519 key with its name and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`, checking that
    /// the id matches the key. Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, id, key) =
            parse_ed25519_verifier_key(text, "verifier key", (ALG_ED25519, "Ed25519"), key_id)?;
        Ok(Self { name, id, key })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key id string `<name>+<hex id>` that events use to name a key.
    pub fn key_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// Whether `signature` is this key's Ed25519 signature over `message`.
    /// Uses strict verification, which rejects malleable signatures.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .is_ok()
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.key
    }

    /// This key as a signed-note verifier, for checkpoints.
    pub fn note_verifier(&self) -> signed_note::StandardVerifier {
        signed_note::StandardVerifier::new(&self.to_string())
            .expect("a VerifierKey always encodes to a valid verifier key")
    }
}

impl std::fmt::Display for VerifierKey {
    /// The verifier key encoding, `<name>+<hex id>+<base64(0x01 || key)>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut encoded = vec![ALG_ED25519];
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

/// A set of verifier keys looked up by key id string, such as a log's
/// allowlist of submitters or a policy's reviewers.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, VerifierKey>,
}

impl KeyRing {
    /// Parses one verifier key per line. Blank lines and lines starting
    /// with `#` are ignored; anything else that is not a key is an error
    /// naming its line, because a silently skipped key is a silently
    /// refused submitter.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut ring = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = VerifierKey::parse(line).map_err(|e| KeyError::BadLine {
                line: i + 1,
                reason: e.to_string(),
            })?;
            ring.insert(key);
        }
        Ok(ring)
    }

    /// Adds a key, replacing any key with the same key id string.
    pub fn insert(&mut self, key: VerifierKey) {
        self.keys.insert(key.key_id(), key);
    }

    /// The key with this key id string.
    pub fn get(&self, key_id: &str) -> Option<&VerifierKey> {
        self.keys.get(key_id)
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_and_verifier_encodings_round_trip() {
        let key = SigningKey::generate("submitter.example").unwrap();
        let again = SigningKey::parse(&key.to_signer_string()).unwrap();
        assert_eq!(again.to_signer_string(), key.to_signer_string());
        let vkey = key.verifier_key();
        assert_eq!(VerifierKey::parse(&vkey.to_string()).unwrap(), vkey);
        assert!(vkey.verify(b"msg", &key.sign(b"msg")));
        assert!(!vkey.verify(b"other", &key.sign(b"msg")));
        assert!(!vkey.verify(b"msg", &key.sign(b"msg")[..63]));
    }

    #[test]
    fn a_key_with_the_wrong_id_is_refused() {
        let vkey = SigningKey::generate("a")
            .unwrap()
            .verifier_key()
            .to_string();
        let (_, rest) = vkey.split_once('+').unwrap();
        let (_, key) = rest.split_once('+').unwrap();
        assert!(VerifierKey::parse(&format!("a+00000000+{key}")).is_err());
        assert!(VerifierKey::parse(&format!("b+{}", rest)).is_err());
    }

    #[test]
    fn keys_whose_base64_holds_a_plus_parse() {
        let key = (0u8..=255)
            .map(|i| SigningKey::from_seed("k", [i; 32]).unwrap())
            .find(|k| k.verifier_key().to_string().matches('+').count() > 2)
            .expect("some key's base64 contains '+'");
        let vkey = key.verifier_key();
        assert_eq!(VerifierKey::parse(&vkey.to_string()).unwrap(), vkey);
        let signer = key.to_signer_string();
        assert_eq!(
            SigningKey::parse(&signer).unwrap().to_signer_string(),
            signer
        );
    }

    #[test]
    fn key_ring_names_the_bad_line() {
        let good = SigningKey::generate("s")
            .unwrap()
            .verifier_key()
            .to_string();
        let ring = KeyRing::parse(&format!("# submitters\n\n{good}\n")).unwrap();
        assert_eq!(ring.len(), 1);
        assert!(ring
            .get(&VerifierKey::parse(&good).unwrap().key_id())
            .is_some());
        let err = KeyRing::parse(&format!("{good}\nnot-a-key\n")).unwrap_err();
        assert!(matches!(err, KeyError::BadLine { line: 2, .. }), "{err}");
    }
}
