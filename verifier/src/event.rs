//! Signed events and log entries: what a submitter signs, what the log
//! checks before it stores anything, and what a leaf is.
//!
//! - A submitter signs `"tlog.v1 event\n" || key_id || "\n" || event` with
//!   Ed25519, where `event` is the encoded [`Event`] (see
//!   [`event_signing_message`]).
//! - A reviewer signs `"tlog.v1 review\n" || version || "\n" || sha256`
//!   (see [`review_signing_message`]).
//! - A leaf is a [`LogEntry`] encoded by the log with fields in field-number
//!   order. [`decode_entry`] refuses bytes that are not in that form, so
//!   every accepted entry has exactly one encoding.
//!
//! The rules in [`check_event`] are the log's admission rules: the server
//! applies them before storing, and an auditor re-applies them to every
//! entry it replays.

use crate::canonical::{decode_canonical, NonCanonical};
use crate::keys::{KeyRing, SigningKey};
use crate::proto::{event::Kind, CodeRelease, DataFlow, Event, Location, LogEntry, SignedEvent};
use crate::tiles::MAX_ENTRY_SIZE;
use prost::Message;
use sha2::{Digest as _, Sha256};

/// Context string of the submitter's signature.
pub const EVENT_CONTEXT: &[u8] = b"tlog.v1 event\n";
/// Context string of a reviewer's attestation signature.
pub const REVIEW_CONTEXT: &[u8] = b"tlog.v1 review\n";
/// Context string of the deduplication id.
const EVENT_ID_CONTEXT: &[u8] = b"tlog.v1 event-id\n";

/// The longest text field the log accepts, in bytes. Generous for names,
/// identifiers and URLs, and small enough that an entry always fits a tile.
pub const MAX_TEXT_LEN: usize = 1024;
/// The most reviewer attestations one release may carry.
pub const MAX_ATTESTATIONS: usize = 32;

/// The exact bytes a submitter signs: `"tlog.v1 event\n" || key_id || "\n" || event`.
pub fn event_signing_message(key_id: &str, event: &[u8]) -> Vec<u8> {
    [EVENT_CONTEXT, key_id.as_bytes(), b"\n", event].concat()
}

/// The exact bytes a reviewer signs: `"tlog.v1 review\n" || version || "\n" || sha256`.
pub fn review_signing_message(version: &str, artifact_sha256: &[u8]) -> Vec<u8> {
    [REVIEW_CONTEXT, version.as_bytes(), b"\n", artifact_sha256].concat()
}

/// Encodes and signs `event` as `key`.
pub fn sign_event(key: &SigningKey, event: &Event) -> SignedEvent {
    let bytes = event.encode_to_vec();
    let key_id = key.key_id();
    let signature = key.sign(&event_signing_message(&key_id, &bytes)).to_vec();
    SignedEvent {
        event: bytes,
        key_id,
        signature,
    }
}

/// The id the log deduplicates on: `SHA-256("tlog.v1 event-id\n" || key_id || "\n" || event)`.
///
/// It covers the signer and the event bytes but not the signature, so the
/// same event re-signed (or signed by a randomised signer) is still one
/// event.
pub fn event_id(signed: &SignedEvent) -> [u8; 32] {
    Sha256::new()
        .chain_update(EVENT_ID_CONTEXT)
        .chain_update(signed.key_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(&signed.event)
        .finalize()
        .into()
}

/// A malformed field, named by its path in the message (for example
/// `event.data_flow.destination.region`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field's path.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// The same error, with its field named inside `parent`.
    fn within(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            reason: self.reason,
        }
    }
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Why a submission was refused, sorted by what the submitter should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    /// The submission is malformed: fix the named field.
    #[error("invalid {0}")]
    Invalid(FieldError),
    /// The key is not one the log accepts submissions from.
    #[error("key {0} is not on the log's submitter allowlist")]
    UnknownKey(String),
    /// The signature does not verify under the named key.
    #[error("signature does not verify under key {0}")]
    BadSignature(String),
}

/// Checks a submission against the admission rules and the allowlist, in
/// the order that gives the submitter the most useful answer: shape first,
/// then who signed, then whether the signature holds. Returns the decoded
/// event.
pub fn check_submission(
    signed: &SignedEvent,
    allowlist: &KeyRing,
) -> Result<Event, SubmissionError> {
    if signed.signature.len() != 64 {
        return Err(SubmissionError::Invalid(field_error(
            "signature",
            format!(
                "an Ed25519 signature is 64 bytes, not {}",
                signed.signature.len()
            ),
        )));
    }
    check_key_id(&signed.key_id)
        .map_err(|reason| SubmissionError::Invalid(field_error("key_id", reason)))?;
    let event = check_event(&signed.event).map_err(SubmissionError::Invalid)?;
    let entry_len = max_entry_len(signed);
    if entry_len > MAX_ENTRY_SIZE {
        return Err(SubmissionError::Invalid(field_error(
            "event",
            format!(
                "the log entry would be {entry_len} bytes; an entry is at most {MAX_ENTRY_SIZE}"
            ),
        )));
    }
    let key = allowlist
        .get(&signed.key_id)
        .ok_or_else(|| SubmissionError::UnknownKey(signed.key_id.clone()))?;
    if !key.verify(
        &event_signing_message(&signed.key_id, &signed.event),
        &signed.signature,
    ) {
        return Err(SubmissionError::BadSignature(signed.key_id.clone()));
    }
    Ok(event)
}

/// Decodes an encoded [`Event`] and checks every admission rule: the bytes
/// are the event's canonical encoding ([`crate::canonical`]), required
/// fields are present, text is bounded, digests are 32 bytes. Returns the
/// event.
pub fn check_event(bytes: &[u8]) -> Result<Event, FieldError> {
    if bytes.len() > MAX_ENTRY_SIZE {
        return Err(field_error(
            "event",
            format!(
                "{} bytes; an entry is at most {MAX_ENTRY_SIZE}",
                bytes.len()
            ),
        ));
    }
    let event = decode_canonical::<Event>(bytes).map_err(|e| match e {
        NonCanonical::Malformed(reason) => {
            field_error("event", format!("not a tlog.v1.Event: {reason}"))
        }
        other => field_error("event", other.to_string()),
    })?;
    let occurred = event
        .occurred_at
        .as_ref()
        .ok_or_else(|| field_error("event.occurred_at", "required"))?;
    if occurred.seconds < 0 || !(0..1_000_000_000).contains(&occurred.nanos) {
        return Err(field_error(
            "event.occurred_at",
            "not a valid time after 1970",
        ));
    }
    match &event.kind {
        None => {
            return Err(field_error(
                "event.kind",
                "required: data_flow or code_release",
            ))
        }
        Some(Kind::DataFlow(flow)) => check_data_flow(flow)?,
        Some(Kind::CodeRelease(release)) => check_code_release(release)?,
    }
    Ok(event)
}

fn check_data_flow(flow: &DataFlow) -> Result<(), FieldError> {
    let at = |name: &'static str| {
        move |reason: Reason| field_error(format!("event.data_flow.{name}"), reason)
    };
    required_text(&flow.flow_id).map_err(at("flow_id"))?;
    required_text(&flow.data_category).map_err(at("data_category"))?;
    let source = flow
        .source
        .as_ref()
        .ok_or_else(|| at("source")(REQUIRED.into()))?;
    check_location(source, false).map_err(|e| e.within("event.data_flow.source"))?;
    let destination = flow
        .destination
        .as_ref()
        .ok_or_else(|| at("destination")(REQUIRED.into()))?;
    check_location(destination, true).map_err(|e| e.within("event.data_flow.destination"))?;
    required_text(&flow.purpose).map_err(at("purpose"))?;
    required_text(&flow.legal_basis).map_err(at("legal_basis"))?;
    if flow.record_count == 0 {
        return Err(at("record_count")("must be at least 1".into()));
    }
    Ok(())
}

/// Checks a location; the error names the field relative to it.
fn check_location(location: &Location, organisation_required: bool) -> Result<(), FieldError> {
    let at = |name: &'static str| move |reason: Reason| field_error(name, reason);
    required_text(&location.system).map_err(at("system"))?;
    required_text(&location.data_centre).map_err(at("data_centre"))?;
    let region = &location.region;
    if !(2..=8).contains(&region.len()) || !region.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(at("region")(format!(
            "{region:?} is not 2 to 8 upper-case letters (ISO 3166 or a group such as EU)"
        )));
    }
    if organisation_required {
        required_text(&location.organisation).map_err(at("organisation"))
    } else {
        bounded_text(&location.organisation).map_err(at("organisation"))
    }
}

fn check_code_release(release: &CodeRelease) -> Result<(), FieldError> {
    let at = |name: &'static str| {
        move |reason: Reason| field_error(format!("event.code_release.{name}"), reason)
    };
    required_text(&release.artifact_name).map_err(at("artifact_name"))?;
    required_text(&release.version).map_err(at("version"))?;
    digest(&release.artifact_sha256).map_err(at("artifact_sha256"))?;
    required_text(&release.source_repository).map_err(at("source_repository"))?;
    required_text(&release.source_commit).map_err(at("source_commit"))?;
    digest(&release.build_provenance_sha256).map_err(at("build_provenance_sha256"))?;
    required_text(&release.release_channel).map_err(at("release_channel"))?;
    if release.attestations.len() > MAX_ATTESTATIONS {
        return Err(at("attestations")(format!(
            "at most {MAX_ATTESTATIONS} attestations"
        )));
    }
    for (i, attestation) in release.attestations.iter().enumerate() {
        let at = |name: &'static str| {
            move |reason: Reason| {
                field_error(
                    format!("event.code_release.attestations[{i}].{name}"),
                    reason,
                )
            }
        };
        check_key_id(&attestation.reviewer_key_id).map_err(at("reviewer_key_id"))?;
        if attestation.signature.len() != 64 {
            return Err(at("signature")("an Ed25519 signature is 64 bytes".into()));
        }
    }
    Ok(())
}

/// The reason a missing field gives.
const REQUIRED: &str = "required";

/// Why a value fails a check. The checks return only the reason, and the
/// caller names the field once one fails: the log and every auditor check
/// every field of every entry, and building each field's path up front
/// was a measurable share of an audit.
type Reason = String;

fn required_text(value: &str) -> Result<(), Reason> {
    if value.trim().is_empty() {
        return Err(REQUIRED.into());
    }
    bounded_text(value)
}

fn bounded_text(value: &str) -> Result<(), Reason> {
    if value.len() > MAX_TEXT_LEN {
        return Err(format!("longer than {MAX_TEXT_LEN} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    if value.chars().any(is_bidi_format) {
        return Err("contains a bidirectional formatting character".into());
    }
    Ok(())
}

/// Characters that reorder how text around them is displayed (Unicode
/// bidi formatting): logged text is read by people in reports and
/// terminals, where such a character can make one value look like another.
fn is_bidi_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

fn digest(value: &[u8]) -> Result<(), Reason> {
    if value.len() != 32 {
        return Err(format!("a SHA-256 digest is 32 bytes, not {}", value.len()));
    }
    Ok(())
}

/// Checks the shape of a key id string, `<name>+<8 lower-case hex digits>`.
fn check_key_id(key_id: &str) -> Result<(), Reason> {
    if crate::keys::is_key_id(key_id) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not <name>+<8 hex digits> of at most {} bytes",
            prefix(key_id),
            crate::keys::MAX_KEY_ID_LEN
        ))
    }
}

/// The start of a refused value, at most 64 characters, so that an error
/// never echoes a huge field back.
fn prefix(value: &str) -> &str {
    value
        .char_indices()
        .nth(64)
        .map_or(value, |(end, _)| &value[..end])
}

/// The longest the entry for `signed` can be, whatever time the log
/// accepts it at: it must fit an entry bundle's u16 length, or the entry
/// could be stored but never served as a tile.
fn max_entry_len(signed: &SignedEvent) -> usize {
    let latest_time = prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 999_999_999,
    };
    prost::encoding::message::encoded_len(1, signed)
        + prost::encoding::message::encoded_len(2, &latest_time)
}

/// Encodes the leaf for an accepted submission. Deterministic: the same
/// submission and time always give the same bytes.
pub fn encode_entry(signed: &SignedEvent, accepted_at: prost_types::Timestamp) -> Vec<u8> {
    LogEntry {
        signed_event: Some(signed.clone()),
        accepted_at: Some(accepted_at),
    }
    .encode_to_vec()
}

/// Why entry bytes are not a valid log entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes do not decode as a `LogEntry`.
    #[error("not a tlog.v1.LogEntry: {0}")]
    Decode(String),
    /// The bytes decode but are not the log's canonical encoding, so the
    /// log could have served another encoding of the same entry.
    #[error("entry is not canonically encoded")]
    NotCanonical,
    /// A required part is missing.
    #[error("entry has no {0}")]
    Missing(&'static str),
}

/// Decodes entry bytes strictly: they must be exactly what
/// [`encode_entry`] writes.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry, EntryError> {
    let entry = LogEntry::decode(bytes).map_err(|e| EntryError::Decode(e.to_string()))?;
    if entry.encode_to_vec() != bytes {
        return Err(EntryError::NotCanonical);
    }
    if entry.signed_event.is_none() {
        return Err(EntryError::Missing("signed_event"));
    }
    if entry.accepted_at.is_none() {
        return Err(EntryError::Missing("accepted_at"));
    }
    Ok(entry)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{CodeRelease, ReviewerAttestation};

    /// A valid data-flow event, for this crate's unit tests.
    pub(crate) fn flow() -> Event {
        Event {
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            kind: Some(Kind::DataFlow(DataFlow {
                flow_id: "flow-1".into(),
                data_category: "eu_user_data".into(),
                source: Some(Location {
                    system: "crm".into(),
                    data_centre: "fra-1".into(),
                    region: "DE".into(),
                    organisation: String::new(),
                }),
                destination: Some(Location {
                    system: "warehouse".into(),
                    data_centre: "dub-2".into(),
                    region: "IE".into(),
                    organisation: "Example Ltd".into(),
                }),
                purpose: "analytics".into(),
                legal_basis: "consent".into(),
                record_count: 10,
            })),
        }
    }

    fn submitter() -> (SigningKey, KeyRing) {
        let key = SigningKey::from_seed("pipeline", [1; 32]).unwrap();
        let mut ring = KeyRing::default();
        ring.insert(key.verifier_key());
        (key, ring)
    }

    #[test]
    fn a_signed_event_passes_and_tampering_fails() {
        let (key, ring) = submitter();
        let mut signed = sign_event(&key, &flow());
        assert_eq!(check_submission(&signed, &ring).unwrap(), flow());
        signed.event[5] ^= 1;
        assert!(matches!(
            check_submission(&signed, &ring),
            Err(SubmissionError::BadSignature(_) | SubmissionError::Invalid(_))
        ));
    }

    #[test]
    fn bidi_formatting_in_text_is_refused() {
        let mut event = flow();
        if let Some(Kind::DataFlow(flow)) = &mut event.kind {
            flow.purpose = "analytics\u{202E}txt.exe".into();
        }
        let error = check_event(&event.encode_to_vec()).unwrap_err();
        assert_eq!(error.field, "event.data_flow.purpose");
        assert!(error.reason.contains("bidirectional"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let (_, ring) = submitter();
        let stranger = SigningKey::from_seed("stranger", [2; 32]).unwrap();
        let signed = sign_event(&stranger, &flow());
        assert_eq!(
            check_submission(&signed, &ring),
            Err(SubmissionError::UnknownKey(stranger.key_id()))
        );
    }

    #[test]
    fn a_signature_under_another_key_id_is_refused() {
        let (key, mut ring) = submitter();
        let other = SigningKey::from_seed("other", [3; 32]).unwrap();
        ring.insert(other.verifier_key());
        let mut signed = sign_event(&key, &flow());
        signed.key_id = other.key_id();
        assert_eq!(
            check_submission(&signed, &ring),
            Err(SubmissionError::BadSignature(other.key_id()))
        );
    }

    #[test]
    fn missing_fields_are_named() {
        let mut event = flow();
        let Some(Kind::DataFlow(f)) = event.kind.as_mut() else {
            unreachable!()
        };
        f.destination.as_mut().unwrap().region = "europe".into();
        let err = check_event(&event.encode_to_vec()).unwrap_err();
        assert_eq!(err.field, "event.data_flow.destination.region");

        let release = Event {
            occurred_at: flow().occurred_at,
            kind: Some(Kind::CodeRelease(CodeRelease {
                artifact_name: "app".into(),
                version: "1.0".into(),
                artifact_sha256: vec![0; 32],
                source_repository: "git.example/app".into(),
                source_commit: "abc".into(),
                build_provenance_sha256: vec![0; 31],
                release_channel: "stable".into(),
                attestations: vec![ReviewerAttestation {
                    reviewer_key_id: "rev+0000000g".into(),
                    signature: vec![0; 64],
                }],
            })),
        };
        let err = check_event(&release.encode_to_vec()).unwrap_err();
        assert_eq!(err.field, "event.code_release.build_provenance_sha256");
        assert_eq!(check_event(&[0xff]).unwrap_err().field, "event");
        let empty = Event::default();
        assert_eq!(
            check_event(&empty.encode_to_vec()).unwrap_err().field,
            "event.occurred_at"
        );
    }

    #[test]
    fn an_event_whose_entry_would_not_fit_a_bundle_is_refused() {
        let (key, ring) = submitter();
        // Padding an event towards the cap takes a field the schema does
        // not have, which the canonical rule refuses before any size rule.
        let mut event = flow().encode_to_vec();
        let pad = MAX_ENTRY_SIZE - event.len() - 2 - 3;
        event.extend_from_slice(&[0xfa, 0x01]);
        prost::encoding::encode_varint(pad as u64, &mut event);
        event.resize(MAX_ENTRY_SIZE, b'x');
        let err = check_event(&event).unwrap_err();
        assert!(err.reason.contains("field 31 is unknown"), "{err}");
        event.push(b'x');
        let key_id = key.key_id();
        let signed = SignedEvent {
            signature: key.sign(&event_signing_message(&key_id, &event)).to_vec(),
            event,
            key_id,
        };
        let err = check_submission(&signed, &ring).unwrap_err();
        assert!(
            matches!(&err, SubmissionError::Invalid(f) if f.field == "event" && f.reason.contains("at most")),
            "{err}"
        );
        let fits = sign_event(&key, &flow());
        let entry = encode_entry(
            &fits,
            prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 999_999_999,
            },
        );
        assert_eq!(
            entry.len(),
            max_entry_len(&fits),
            "the bound is exact for the latest time"
        );
    }

    #[test]
    fn entries_decode_only_in_canonical_form() {
        let (key, _) = submitter();
        let signed = sign_event(&key, &flow());
        let bytes = encode_entry(
            &signed,
            prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            },
        );
        assert_eq!(decode_entry(&bytes).unwrap().signed_event.unwrap(), signed);
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0x18, 0x00]);
        assert_eq!(decode_entry(&padded), Err(EntryError::NotCanonical));
        assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn event_ids_ignore_the_signature_but_not_the_signer() {
        let (key, _) = submitter();
        let a = sign_event(&key, &flow());
        let mut b = a.clone();
        b.signature = vec![9; 64];
        assert_eq!(event_id(&a), event_id(&b));
        b.key_id = "other+00000000".into();
        assert_ne!(event_id(&a), event_id(&b));
    }
}
