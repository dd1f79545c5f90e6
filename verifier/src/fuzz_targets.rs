//! The bodies of the fuzz targets in `fuzz/`, one function per parser of
//! outside bytes.
//!
//! They live in the library, not in the fuzz crate, so that
//! `verifier/tests/fuzz_corpora.rs` runs every committed corpus input
//! through the same code as a plain deterministic test: CI needs no
//! nightly and no instrumented build, and an input that once crashed a
//! parser keeps failing the test until the parser is fixed.
//!
//! Each body does more than "does not panic" where the format allows:
//! every strict parser here promises that what it accepts re-encodes to
//! the same bytes, so an accepted input is re-encoded and compared, and
//! parsers that overlap (a strict decoder and the canonical-protobuf rule)
//! must agree. A broken promise panics, which the fuzzer reports as a
//! crash. Signatures are checked under the fixed keys of [`FuzzKeys`], so
//! that seed inputs signed with them reach the code past verification.
//!
//! What it leaves out: the network. Bodies that need a server (the
//! witness's state, the monitor's consistency checks) stop at the parsers
//! and the signature checks.

use std::sync::OnceLock;

use prost::Message;

use crate::bundle::ProofBundle;
use crate::canonical::decode_canonical;
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::cosignature::{
    split_note, verify_witnessed, Cosignature, CosignerSigningKey, CosignerVerifierKey,
};
use crate::event::{check_event, check_submission, decode_entry, encode_entry};
use crate::evidence::Evidence;
use crate::keys::{KeyRing, SigningKey, VerifierKey};
use crate::merkle::leaf_hash;
use crate::proto::{Event, LogEntry};
use crate::tiles::{decode_entry_bundle, encode_entry_bundle, TileId};
use crate::witness_protocol::{parse_cosignatures, parse_size, AddCheckpointRequest};

/// The fixed keys the targets verify signatures with. Their seeds are
/// public: they exist so that seed inputs can carry valid signatures.
pub struct FuzzKeys {
    /// The log's key, origin [`FuzzKeys::LOG_ORIGIN`].
    pub log: SigningKey,
    /// A witness's cosigning key.
    pub witness: CosignerSigningKey,
    /// A submitter on the log's allowlist.
    pub submitter: SigningKey,
    log_verifier: VerifierKey,
    witness_verifier: CosignerVerifierKey,
    allowlist: KeyRing,
    /// A valid witness request, whose body the response target's
    /// cosignatures must verify on.
    request: AddCheckpointRequest,
}

impl FuzzKeys {
    /// The origin line of the fuzzed log, and its key's name.
    pub const LOG_ORIGIN: &'static str = "fuzz.example/log";

    /// The keys, made once per process.
    pub fn get() -> &'static Self {
        static KEYS: OnceLock<FuzzKeys> = OnceLock::new();
        KEYS.get_or_init(|| {
            let log = SigningKey::from_seed(Self::LOG_ORIGIN, [1; 32]).expect("a valid key name");
            let witness = CosignerSigningKey::new(
                SigningKey::from_seed("fuzz.example/witness", [2; 32]).expect("a valid key name"),
            );
            let submitter =
                SigningKey::from_seed("fuzz.example/submitter", [3; 32]).expect("a valid key name");
            let mut allowlist = KeyRing::default();
            allowlist.insert(submitter.verifier_key());
            let note = Self::checkpoint(3, b"r").sign(&log);
            let request = AddCheckpointRequest::new(0, Vec::new(), note)
                .expect("a signed checkpoint makes a valid request");
            Self {
                log_verifier: log.verifier_key(),
                witness_verifier: witness.verifier_key(),
                log,
                witness,
                submitter,
                allowlist,
                request,
            }
        })
    }

    /// A checkpoint of the fuzzed log of `size` entries, its root the leaf
    /// hash of `seed` (any root will do for a parser).
    pub fn checkpoint(size: u64, seed: &[u8]) -> Checkpoint {
        Checkpoint {
            origin: Self::LOG_ORIGIN.to_owned(),
            size,
            root: leaf_hash(seed),
        }
    }

    /// The witness request whose body [`witness_response`] verifies
    /// cosignatures on.
    pub fn request(&self) -> &AddCheckpointRequest {
        &self.request
    }
}

/// Signed notes and checkpoints: a checkpoint body, then the same bytes
/// as a signed note under the log key, with and without a witness quorum.
pub fn checkpoint(data: &[u8]) {
    let keys = FuzzKeys::get();
    if let Ok(checkpoint) = Checkpoint::parse_body(data) {
        // Extension lines are dropped, so the canonical body is a prefix.
        let body = checkpoint.to_body();
        assert!(data.starts_with(&body), "a parsed body is not canonical");
        assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
    }
    if let Ok((text, signatures)) = split_note(data) {
        let mut note = text;
        note.push(b'\n');
        for signature in &signatures {
            // A signature's bytes are its whole line, newline included.
            note.extend_from_slice(&signature.to_bytes());
        }
        assert_eq!(note, data, "a split note does not re-encode");
    }
    if let Ok(signed) = SignedCheckpoint::verify(data, &keys.log_verifier) {
        assert_eq!(signed.note, data);
        assert_eq!(signed.checkpoint.origin, FuzzKeys::LOG_ORIGIN);
        let _ = verify_witnessed(
            data,
            &keys.log_verifier,
            std::slice::from_ref(&keys.witness_verifier),
            1,
        );
    }
}

/// Cosignature lines and cosigner verifier keys.
pub fn cosignature(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cosignature) = Cosignature::parse_line(text) {
        assert_eq!(cosignature.to_line(), text, "a cosignature line re-encodes");
        let keys = FuzzKeys::get();
        let _ = keys
            .witness_verifier
            .verify(keys.request.checkpoint_body(), &cosignature);
    }
    if let Ok(key) = CosignerVerifierKey::parse(text) {
        assert_eq!(key.to_string(), text.trim(), "a cosigner key re-encodes");
        assert_eq!(
            CosignerVerifierKey::parse(&key.to_string()).map(|k| k.key_id()),
            Ok(key.key_id())
        );
    }
}

/// C2SP tlog-witness bodies: an `add-checkpoint` request (as the witness
/// reads it), and the two responses a client reads, a 409's size and a
/// 200's cosignature lines.
pub fn witness_request(data: &[u8]) {
    if let Ok(request) = AddCheckpointRequest::parse(data) {
        assert_eq!(request.to_body(), data, "a request re-encodes");
        assert!(request.note().starts_with(request.checkpoint_body()));
    }
    if let Ok(size) = parse_size(data) {
        assert_eq!(format!("{size}\n").as_bytes(), data, "a size re-encodes");
    }
    let keys = FuzzKeys::get();
    if let Ok(cosignatures) = parse_cosignatures(data, &keys.request, &keys.witness_verifier) {
        assert!(!cosignatures.is_empty());
    }
}

/// C2SP tlog-proof bundles: parsed strictly, then verified under the log
/// key (the checkpoint, the inclusion proof, the entry's event).
pub fn proof_bundle(data: &[u8]) {
    if let Ok(bundle) = ProofBundle::parse(data) {
        assert_eq!(bundle.to_text(), data, "a proof bundle re-encodes");
        let _ = bundle.verify(&FuzzKeys::get().log_verifier);
    }
}

/// Evidence files: parsed strictly, then checked under the log key.
pub fn evidence(data: &[u8]) {
    if let Ok(evidence) = Evidence::parse(data) {
        assert_eq!(
            evidence.to_text().as_bytes(),
            data,
            "an evidence file re-encodes"
        );
        let _ = evidence.check(&FuzzKeys::get().log_verifier);
    }
}

/// C2SP tlog-tiles paths: one name per tile.
pub fn tile_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tile) = TileId::parse(path) {
        assert_eq!(tile.path(), path, "a tile path re-encodes");
        assert_eq!(TileId::parse(&tile.path()), Ok(tile));
    }
}

/// Entry bundles: every split re-encodes to the same bytes.
pub fn entry_bundle(data: &[u8]) {
    if let Ok(entries) = decode_entry_bundle(data) {
        let encoded = encode_entry_bundle(&entries).expect("decoded entries fit a bundle");
        assert_eq!(encoded, data, "an entry bundle re-encodes");
    }
}

/// Strict `LogEntry` decoding, which must agree with the canonical rule,
/// then the admission rules on the entry's signed event.
pub fn log_entry(data: &[u8]) {
    let strict = decode_entry(data);
    let canonical = decode_canonical::<LogEntry>(data);
    if let Ok(entry) = strict {
        assert_eq!(canonical.as_ref(), Ok(&entry), "the decoders disagree");
        let signed = entry.signed_event.expect("a decoded entry has an event");
        let accepted_at = entry.accepted_at.expect("a decoded entry has a time");
        assert_eq!(
            encode_entry(&signed, accepted_at),
            data,
            "an entry re-encodes"
        );
        let _ = check_submission(&signed, &FuzzKeys::get().allowlist);
    }
}

/// Strict `Event` decoding: the canonical rule, then every admission rule.
pub fn event(data: &[u8]) {
    let canonical = decode_canonical::<Event>(data);
    if let Ok(event) = &canonical {
        assert_eq!(event.encode_to_vec(), data, "a canonical event re-encodes");
    }
    if let Ok(event) = check_event(data) {
        assert_eq!(canonical, Ok(event), "admitted but not canonical");
    }
}

/// Event JSON as `verifier submit` reads it: every event parsed is
/// encoded canonically and passes back through the strict decoder.
#[cfg(feature = "cli")]
pub fn event_json(data: &[u8]) {
    if let Ok(events) = crate::cli::event_json::parse_events(data) {
        assert!(!events.is_empty());
        let mut last_line = 1;
        for (line, event) in events {
            // Several objects may share a line, so lines only never decrease.
            assert!(line >= last_line, "events come in line order");
            last_line = line;
            let bytes = event.encode_to_vec();
            assert_eq!(decode_canonical::<Event>(&bytes), Ok(event));
        }
    }
}

/// The policy file: parsed and validated, or refused naming a line of it.
#[cfg(feature = "cli")]
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::cli::policy::Policy::parse(text) {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&e.line),
            "error on line {} of {lines}",
            e.line
        );
    }
}

/// A gossip `ExchangeRequest`, decoded and sorted as the monitor does
/// (the monitor following the fuzzed log): a verified note is the note
/// sent, byte for byte.
#[cfg(feature = "cli")]
pub fn gossip(data: &[u8]) {
    use crate::cli::monitor::intake;
    if data.len() > intake::MAX_MESSAGE_BYTES {
        return;
    }
    let Ok(request) = crate::proto::ExchangeRequest::decode(data) else {
        return;
    };
    let keys = std::slice::from_ref(&FuzzKeys::get().log_verifier);
    if let Ok(sorted) = intake::sort(&request.checkpoints, keys) {
        let total = sorted.verified.len() + sorted.unknown_origins + sorted.rejected.len();
        assert_eq!(
            total,
            request.checkpoints.len(),
            "every note is sorted once"
        );
        for (position, checkpoint) in sorted.verified {
            assert_eq!(position, 0);
            assert!(request
                .checkpoints
                .iter()
                .any(|note| note.as_bytes() == checkpoint.note));
        }
    }
}

/// Verifier keys, signer keys, allowlists and key id strings.
pub fn keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = VerifierKey::parse(text) {
        assert_eq!(key.to_string(), text.trim(), "a verifier key re-encodes");
        assert!(crate::keys::is_key_id(&key.key_id()));
    }
    if let Ok(key) = SigningKey::parse(text) {
        assert_eq!(
            key.to_signer_string(),
            text.trim(),
            "a signer key re-encodes"
        );
        assert_eq!(
            VerifierKey::parse(&key.verifier_key().to_string()).map(|k| k.key_id()),
            Ok(key.key_id())
        );
    }
    if let Ok(ring) = KeyRing::parse(text) {
        assert!(ring.len() <= text.lines().count());
    }
    let _ = crate::keys::is_key_id(text);
}
