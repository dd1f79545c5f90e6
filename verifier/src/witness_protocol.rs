//! C2SP tlog-witness: the bodies and status codes of `add-checkpoint`,
//! shared by the witness that serves it and the log that calls it.
//!
//! From <https://c2sp.org/tlog-witness> ("add-checkpoint"):
//!
//! ```text
//! POST <submission prefix>/add-checkpoint
//!
//! old <size>\n                      decimal, no leading zeros ("0" for none)
//! <base64 hash>\n                   the RFC 9162 consistency proof, at most 63 lines
//! …
//! \n
//! <signed checkpoint note>          may carry several signatures
//! ```
//!
//! The witness answers 200 with one or more cosignature lines, or 409 with
//! its latest cosigned size as `<decimal>\n` and `Content-Type:
//! text/x.tlog.size`; the other refusals are in [`AddCheckpointStatus`].
//!
//! Parsers are strict and bounded: what they accept re-encodes to the same
//! bytes, and no body is read past a fixed size, so a witness can cap its
//! reads before parsing. What this module leaves out: HTTP itself, the
//! witness's stored state, and the decisions (which logs it trusts, whether
//! the old size matches), which need that state.

use crate::checkpoint::Checkpoint;
use crate::cosignature::{
    parse_signature_line, split_note, Cosignature, CosignatureError, CosignerVerifierKey,
};
use crate::merkle::Hash;
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// The path of the call under the witness's submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "add-checkpoint";

/// The `Content-Type` of a 409 response, whose body is the witness's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The spec's limit on consistency proof lines: a proof between trees of
/// at most 2^63 entries never needs more.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest signed checkpoint note accepted in a request. A checkpoint
/// body is about a hundred bytes and an Ed25519 signature line about as
/// much, so this leaves room for long origins, extension lines and the
/// 16 signatures the signed-note spec says verifiers must accept, even if
/// a few are post-quantum.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// The largest request body: the old size line, 63 proof lines of 44
/// base64 characters, the blank line and the note.
pub const MAX_REQUEST_BYTES: usize =
    "old 18446744073709551615\n".len() + MAX_PROOF_LINES * (44 + 1) + 1 + MAX_NOTE_BYTES;

/// The largest 200 response body: far more than a witness with a few keys
/// returns, and small enough that a client never buffers much.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Why a request or response body was refused. In a witness, every one of
/// these is a 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is longer than the protocol allows.
    #[error("{what} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Which body.
        what: &'static str,
        /// Its length.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More consistency proof lines than the spec's 63.
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    /// The body is not in the protocol's form.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which body or part of one.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A cosignature in a response by the witness the client asked is
    /// malformed or does not verify on the checkpoint it sent.
    #[error(transparent)]
    Cosignature(#[from] CosignatureError),
    /// A 200 response with no line by the witness the client asked.
    #[error("the response holds no cosignature by {0}")]
    NoCosignature(String),
}

fn malformed(what: &'static str, reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed {
        what,
        reason: reason.into(),
    }
}

fn check_size(what: &'static str, body: &[u8], limit: usize) -> Result<(), ProtocolError> {
    if body.len() > limit {
        return Err(ProtocolError::TooLarge {
            what,
            size: body.len(),
            limit,
        });
    }
    Ok(())
}

/// Parses a decimal with no leading zeros (`0` itself is allowed).
fn parse_decimal(what: &'static str, digits: &[u8]) -> Result<u64, ProtocolError> {
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0');
    if !canonical {
        return Err(malformed(
            what,
            "expected a decimal number without leading zeros",
        ));
    }
    std::str::from_utf8(digits)
        .expect("ASCII digits")
        .parse()
        .map_err(|_| malformed(what, "the number does not fit in 64 bits"))
}

/// Removes and returns the next line of `rest`, without its `\n`.
fn next_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..end];
    *rest = &rest[end + 1..];
    Some(line)
}

/// An `add-checkpoint` request: the size the client believes the witness
/// last cosigned, a consistency proof from there, and the signed checkpoint.
///
/// Nothing in it is verified beyond its form: the witness still has to
/// check the log's signature on [`note`](Self::note) and the proof.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpointRequest {
    old_size: u64,
    proof: Vec<Hash>,
    note: Vec<u8>,
    body: Vec<u8>,
    origin: String,
}

impl AddCheckpointRequest {
    /// A request from its parts. The note must be a well-formed signed note
    /// (in canonical form, at most [`MAX_NOTE_BYTES`]) whose text is a
    /// checkpoint, and the proof at most [`MAX_PROOF_LINES`] hashes, so that
    /// every request built here parses back to itself.
    pub fn new(old_size: u64, proof: Vec<Hash>, note: Vec<u8>) -> Result<Self, ProtocolError> {
        if proof.len() > MAX_PROOF_LINES {
            return Err(ProtocolError::TooManyProofLines);
        }
        check_size("checkpoint note", &note, MAX_NOTE_BYTES)?;
        let (body, _) = split_note(&note).map_err(|e| malformed("request body", e.to_string()))?;
        let origin = Checkpoint::parse_body(&body)
            .map_err(|e| malformed("request body", e.to_string()))?
            .origin;
        Ok(Self {
            old_size,
            proof,
            note,
            body,
            origin,
        })
    }

    /// Parses a request body strictly: exactly one `old` line, proof lines
    /// in canonical base64 of 32 bytes, one blank line, then the note.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        check_size("request body", body, MAX_REQUEST_BYTES)?;
        let mut rest = body;
        let old_line = next_line(&mut rest).ok_or_else(|| malformed("old size line", "missing"))?;
        let old_digits = old_line
            .strip_prefix(b"old ")
            .ok_or_else(|| malformed("old size line", "it does not start with \"old \""))?;
        let old_size = parse_decimal("old size line", old_digits)?;
        let mut proof = Vec::new();
        loop {
            let line = next_line(&mut rest)
                .ok_or_else(|| malformed("request body", "no blank line before the checkpoint"))?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(ProtocolError::TooManyProofLines);
            }
            proof.push(parse_hash(line)?);
        }
        Self::new(old_size, proof, rest.to_vec())
    }

    /// The request body.
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for hash in &self.proof {
            out.extend_from_slice(format!("{hash}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }

    /// The size the client believes the witness last cosigned for this
    /// origin (0 if none).
    pub fn old_size(&self) -> u64 {
        self.old_size
    }

    /// The RFC 9162 consistency proof from `old_size` to the checkpoint.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }

    /// The signed checkpoint note, byte for byte.
    pub fn note(&self) -> &[u8] {
        &self.note
    }

    /// The note's text, the checkpoint body that cosignatures sign. It is
    /// the log's statement only once the note's signature is verified.
    pub fn checkpoint_body(&self) -> &[u8] {
        &self.body
    }

    /// The checkpoint's origin line, unauthenticated: only for choosing
    /// which log keys to verify the note with (and answering 404 when the
    /// witness knows none).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Parses one consistency proof line: canonical base64 of a 32-byte hash.
fn parse_hash(line: &[u8]) -> Result<Hash, ProtocolError> {
    let bytes = BASE64_STANDARD
        .decode(line)
        .map_err(|e| malformed("consistency proof line", format!("not base64: {e}")))?;
    let hash: [u8; 32] = bytes
        .try_into()
        .map_err(|_| malformed("consistency proof line", "a hash is 32 bytes"))?;
    let hash = Hash(hash);
    if hash.to_string().as_bytes() != line {
        return Err(malformed(
            "consistency proof line",
            "not in canonical base64",
        ));
    }
    Ok(hash)
}

/// The status codes of `add-checkpoint`, each with what it tells the
/// client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddCheckpointStatus {
    /// 200: cosigned. The body is the witness's cosignature lines.
    Ok,
    /// 400: the request is malformed, or its old size is larger than the
    /// checkpoint's. Fix the request; retrying it is pointless.
    BadRequest,
    /// 403: no signature on the checkpoint verifies under a key the witness
    /// trusts for its origin.
    Forbidden,
    /// 404: the witness does not know the checkpoint's origin.
    NotFound,
    /// 409: the old size is not the size the witness last cosigned (the
    /// body says which, as [`SIZE_CONTENT_TYPE`]); retry from that size.
    /// Also sent when the sizes match but the roots differ, which is a
    /// split view, not a race.
    Conflict,
    /// 422: the consistency proof does not verify. The witness may keep
    /// the request as evidence of the log's misbehaviour.
    UnprocessableEntity,
}

impl AddCheckpointStatus {
    /// The HTTP status code.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::UnprocessableEntity => 422,
        }
    }

    /// The status for an HTTP code, or `None` for a code the protocol does
    /// not define (which a client treats as the witness being unavailable).
    pub fn from_code(code: u16) -> Option<Self> {
        [
            Self::Ok,
            Self::BadRequest,
            Self::Forbidden,
            Self::NotFound,
            Self::Conflict,
            Self::UnprocessableEntity,
        ]
        .into_iter()
        .find(|status| status.code() == code)
    }
}

/// The body of a 200 response: each cosignature's line, in order. The
/// spec requires at least one.
pub fn encode_cosignatures(cosignatures: &[Cosignature]) -> Vec<u8> {
    cosignatures
        .iter()
        .flat_map(|c| c.to_line().into_bytes())
        .collect()
}

/// Reads a 200 response to `request` from `witness`, returning the
/// witness's cosignatures, each verified on the checkpoint body sent.
///
/// Every line must be a well-formed signature line. As the spec requires,
/// lines by other keys are ignored; a line by `witness` that does not
/// verify is an error, and so is a response with none by it.
pub fn parse_cosignatures(
    body: &[u8],
    request: &AddCheckpointRequest,
    witness: &CosignerVerifierKey,
) -> Result<Vec<Cosignature>, ProtocolError> {
    check_size("response body", body, MAX_RESPONSE_BYTES)?;
    let text = std::str::from_utf8(body).map_err(|_| malformed("response body", "not UTF-8"))?;
    if text.is_empty() {
        return Err(malformed("response body", "no signature lines"));
    }
    let mut found = Vec::new();
    for line in text.split_inclusive('\n') {
        let signature =
            parse_signature_line(line).map_err(|e| malformed("response body", e.to_string()))?;
        if witness.matches(signature.name(), signature.id()) {
            let cosignature = Cosignature::from_note_signature(&signature)?;
            witness.verify(request.checkpoint_body(), &cosignature)?;
            found.push(cosignature);
        }
    }
    if found.is_empty() {
        return Err(ProtocolError::NoCosignature(witness.key_id()));
    }
    Ok(found)
}

/// The body of a 409 response: the witness's latest cosigned size, `<decimal>\n`.
pub fn encode_size(size: u64) -> Vec<u8> {
    format!("{size}\n").into_bytes()
}

/// Parses a 409 response body strictly: one decimal without leading zeros,
/// then a newline, and nothing else.
pub fn parse_size(body: &[u8]) -> Result<u64, ProtocolError> {
    let digits = body
        .strip_suffix(b"\n")
        .ok_or_else(|| malformed("size body", "it does not end with a newline"))?;
    parse_decimal("size body", digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::merkle::leaf_hash;

    fn note() -> Vec<u8> {
        let key = SigningKey::from_seed("log.example/w", [1; 32]).unwrap();
        Checkpoint {
            origin: "log.example/w".into(),
            size: 3,
            root: leaf_hash(b"r"),
        }
        .sign(&key)
    }

    #[test]
    fn requests_round_trip() {
        let proof = vec![leaf_hash(b"a"), leaf_hash(b"b")];
        let request = AddCheckpointRequest::new(2, proof.clone(), note()).unwrap();
        let body = request.to_body();
        assert!(body.starts_with(format!("old 2\n{}\n{}\n\n", proof[0], proof[1]).as_bytes()));
        assert_eq!(AddCheckpointRequest::parse(&body).unwrap(), request);
        assert_eq!(request.origin(), "log.example/w");
        let empty = AddCheckpointRequest::new(0, vec![], note()).unwrap();
        assert!(empty.to_body().starts_with(b"old 0\n\nlog.example/w\n"));
        assert_eq!(
            AddCheckpointRequest::parse(&empty.to_body()).unwrap(),
            empty
        );
    }

    #[test]
    fn decimals_are_canonical() {
        assert_eq!(parse_size(b"0\n"), Ok(0));
        assert_eq!(parse_size(b"18446744073709551615\n"), Ok(u64::MAX));
        for bad in [
            &b"00\n"[..],
            b"01\n",
            b"18446744073709551616\n",
            b"1",
            b"1\n\n",
            b"+1\n",
            b" 1\n",
            b"\n",
        ] {
            assert!(
                parse_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(encode_size(20852014), b"20852014\n");
    }

    #[test]
    fn status_codes_map_both_ways() {
        for code in [200, 400, 403, 404, 409, 422] {
            assert_eq!(AddCheckpointStatus::from_code(code).unwrap().code(), code);
        }
        assert_eq!(AddCheckpointStatus::from_code(500), None);
        assert_eq!(AddCheckpointStatus::from_code(201), None);
    }
}
