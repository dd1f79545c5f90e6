//! Split-view evidence: two checkpoints signed by one log that cannot both
//! be honest, in a text file anyone can check offline.
//!
//! A monitor that finds two of a log's checkpoints in conflict writes them
//! down with the consistency proof it built from the log's own tiles. The
//! file proves misbehaviour in exactly two cases, and [`Evidence::check`]
//! decides which (if any) holds using only the log's key, through
//! [`crate::relation::decide`], the verdict the monitor, the witness and
//! the trusted state reach too:
//!
//! - both checkpoints are for the same size with different roots: a fork;
//! - the sizes are `m < n` and the proof, read as RFC 9162 §2.1.4.2 data,
//!   leads to the signed root of the tree of size `n` while implying that
//!   its first `m` leaves have a root other than the signed root of size
//!   `m` (see [`consistency_roots`]): the larger tree does not extend the
//!   smaller one.
//!
//! Anything else proves nothing: anyone can write a bad proof, so a proof
//! that does not reach the larger signed root says nothing about the log.
//!
//! # File format, version 1
//!
//! UTF-8, every line ending in `\n`, at most [`MAX_EVIDENCE_BYTES`]:
//!
//! ```text
//! tlog split-view evidence v1
//! origin <origin>
//! verdict-claimed <one line>
//! context <one line, may be empty>
//!
//! checkpoint 1 (size <m>, <b1> bytes)
//! <the signed note, b1 bytes verbatim, ending in \n>
//! checkpoint 2 (size <n>, <b2> bytes)
//! <the signed note, b2 bytes verbatim, ending in \n>
//! consistency proof from size <m> to size <n> (<k> hashes)
//! <k lines, each one hash in standard base64>
//! ```
//!
//! - The byte counts frame the notes, so a note's own lines (its blank line
//!   and its `— ` signature lines) are never mistaken for the file's.
//! - Checkpoint 1 is the smaller; for equal sizes, the note that sorts
//!   first bytewise. So the same pair always gives the same file.
//! - `verdict-claimed` and `context` are for people and are never trusted:
//!   [`Evidence::check`] decides from the notes and the proof alone.
//! - When `m` is a power of two the first proof hash is the larger tree's
//!   root over its first `m` leaves, which RFC 9162 proofs leave out (see
//!   [`consistency_roots`]); without it such a fork cannot be proven.
//! - Parsing is strict: a file is accepted only if [`Evidence::to_text`]
//!   gives back the same bytes. A later version changes the first line,
//!   which this version refuses.
//!
//! What it leaves out: reading and writing files, and any network. Callers
//! do the I/O; this module only encodes, parses and decides.
//!
//! [`consistency_roots`]: crate::merkle::consistency_roots

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::keys::VerifierKey;
use crate::merkle::Hash;
use crate::relation::{self, Inconsistency, Relation};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use sha2::{Digest as _, Sha256};

/// The largest evidence file accepted. Two checkpoints with a few dozen
/// cosignatures each and a 64-hash proof fit many times over; anything
/// larger is refused before it is read as text.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

/// The most bytes of context [`Evidence::split_view`] keeps.
const MAX_CONTEXT_BYTES: usize = 1024;

/// The first line of a version 1 file.
const MAGIC: &str = "tlog split-view evidence v1";

/// What an evidence file shows about the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The two signed checkpoints cannot both be honest: the log signed two histories.
    Proven {
        /// One line saying which conflict was proven.
        summary: String,
    },
    /// The file is well-formed and its signatures verify, but it does not prove misbehaviour; says why.
    NotProven {
        /// One line saying why not.
        reason: String,
    },
}

/// Why an evidence file could not be checked. None of these says anything
/// about the log: a file that is malformed or signed by another key is not
/// evidence of anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The file is larger than [`MAX_EVIDENCE_BYTES`].
    #[error("the evidence file is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The file's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The file does not follow the format.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A checkpoint is not signed by the log key given, or its signature
    /// does not verify.
    #[error("checkpoint {which} does not verify under the log key {key}: {source}")]
    Checkpoint {
        /// 1 or 2, as numbered in the file.
        which: u8,
        /// The key id string of the key tried.
        key: String,
        /// Why it did not verify.
        #[source]
        source: CheckpointError,
    },
}

/// A checkpoint as its note states it: parsed but not yet verified.
#[derive(Debug, Clone, PartialEq)]
struct Stated {
    note: String,
    body: Checkpoint,
}

/// Two checkpoints of one log in conflict, with the proof between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    origin: String,
    claimed: String,
    context: String,
    /// Smaller size first; for equal sizes, the note that sorts first.
    checkpoints: [Stated; 2],
    proof: Vec<Hash>,
}

impl Evidence {
    /// Evidence from two checkpoints of one log that a monitor found in conflict:
    /// `a` and `b` in any order; `proof` is the consistency proof from the smaller
    /// tree to the larger one as built from the log's tiles (empty for equal sizes);
    /// `context` is free text saying where each checkpoint came from (not verified, kept for people).
    ///
    /// Requires `a` and `b` to have the same origin. When the smaller size
    /// is a power of two, `proof` must begin with the larger tree's root
    /// over that many leaves (the stored hash at level log₂ m, index 0),
    /// which RFC 9162 proofs leave out; see
    /// [`consistency_roots`](crate::merkle::consistency_roots). Control
    /// characters in `context` become spaces, and it is cut to 1 KiB.
    pub fn split_view(
        a: &SignedCheckpoint,
        b: &SignedCheckpoint,
        proof: Vec<Hash>,
        context: &str,
    ) -> Self {
        debug_assert_eq!(a.checkpoint.origin, b.checkpoint.origin);
        let stated = |c: &SignedCheckpoint| Stated {
            note: c.note_text().to_owned(),
            body: c.checkpoint.clone(),
        };
        let (first, second) = if canonical_order(&a.checkpoint, &a.note, &b.checkpoint, &b.note) {
            (a, b)
        } else {
            (b, a)
        };
        let claimed = match decide(&first.checkpoint, &second.checkpoint, &proof) {
            Verdict::Proven { summary } => format!("proves misbehaviour: {summary}"),
            Verdict::NotProven { reason } => format!("does not prove misbehaviour: {reason}"),
        };
        Self {
            origin: first.checkpoint.origin.clone(),
            claimed,
            context: one_line(context),
            checkpoints: [stated(first), stated(second)],
            proof,
        }
    }

    /// The log's origin, as the file states it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Where the checkpoints came from, as whoever wrote the file says.
    /// Never verified.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The two signed notes, verbatim, smaller size first. Not verified
    /// until [`Evidence::check`].
    pub fn notes(&self) -> [&str; 2] {
        [&self.checkpoints[0].note, &self.checkpoints[1].note]
    }

    /// The consistency proof from the smaller size to the larger one.
    pub fn proof(&self) -> &[Hash] {
        &self.proof
    }

    /// The text file: self-contained, human-readable, parseable (see the
    /// module documentation for the format).
    pub fn to_text(&self) -> String {
        let [small, large] = &self.checkpoints;
        let mut text = format!(
            "{MAGIC}\norigin {}\nverdict-claimed {}\ncontext {}\n\n",
            self.origin, self.claimed, self.context
        );
        for (which, stated) in [(1, small), (2, large)] {
            text.push_str(&checkpoint_header(which, stated));
            text.push('\n');
            text.push_str(&stated.note);
        }
        text.push_str(&proof_header(
            small.body.size,
            large.body.size,
            self.proof.len(),
        ));
        text.push('\n');
        for hash in &self.proof {
            text.push_str(&BASE64_STANDARD.encode(hash.0));
            text.push('\n');
        }
        text
    }

    /// Parses a file strictly: only what [`Evidence::to_text`] would write.
    /// Checks that the notes are well-formed checkpoints of the stated
    /// origin and sizes, but not their signatures; [`Evidence::check`] does.
    pub fn parse(text: &[u8]) -> Result<Self, EvidenceError> {
        if text.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge {
                size: text.len(),
                max: MAX_EVIDENCE_BYTES,
            });
        }
        let text = std::str::from_utf8(text).map_err(|e| {
            let line = 1 + text[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            malformed(line, "not UTF-8")
        })?;
        let mut lines = Lines {
            rest: text,
            line: 0,
        };
        if lines.next("the first line")? != MAGIC {
            return Err(lines.error(format!("expected {MAGIC:?}")));
        }
        let origin = lines.field("origin")?;
        if origin.is_empty() {
            return Err(lines.error("the origin is empty"));
        }
        let claimed = lines.field("verdict-claimed")?;
        let context = lines.field("context")?;
        if !lines.next("a blank line")?.is_empty() {
            return Err(lines.error("expected a blank line after the context"));
        }
        let small = lines.checkpoint(1, origin)?;
        let large = lines.checkpoint(2, origin)?;
        if !canonical_order(
            &small.body,
            small.note.as_bytes(),
            &large.body,
            large.note.as_bytes(),
        ) {
            return Err(lines.error(
                "checkpoint 1 must be the smaller (for equal sizes, the note that sorts first)",
            ));
        }
        let header = lines.next("the consistency proof header")?;
        let count = match numbers(header).as_deref() {
            Some(&[m, n, k]) if header == proof_header(m, n, k as usize) => {
                if (m, n) != (small.body.size, large.body.size) {
                    return Err(lines.error(format!(
                        "the proof is from size {m} to size {n}, not between the checkpoints' sizes {} and {}",
                        small.body.size, large.body.size
                    )));
                }
                k
            }
            _ => {
                return Err(lines.error(
                    "expected \"consistency proof from size <m> to size <n> (<k> hashes)\"",
                ))
            }
        };
        let mut proof = Vec::new();
        for _ in 0..count {
            let line = lines.next("a proof hash")?;
            proof.push(parse_hash(line).ok_or_else(|| {
                lines.error("a proof hash is 32 bytes in canonical standard base64")
            })?);
        }
        if !lines.rest.is_empty() {
            return Err(malformed(
                lines.line + 1,
                "unexpected text after the last proof hash",
            ));
        }
        Ok(Self {
            origin: origin.to_owned(),
            claimed: claimed.to_owned(),
            context: context.to_owned(),
            checkpoints: [small, large],
            proof,
        })
    }

    /// Verifies both notes under `log_key` (a wrong key or a bad signature is an EvidenceError,
    /// not a verdict) and decides.
    ///
    /// Decides from the verified notes and the proof only; the file's
    /// claimed verdict and context play no part.
    pub fn check(&self, log_key: &VerifierKey) -> Result<Verdict, EvidenceError> {
        let verify = |which: u8| {
            let stated = &self.checkpoints[usize::from(which - 1)];
            SignedCheckpoint::verify(stated.note.as_bytes(), log_key).map_err(|source| {
                EvidenceError::Checkpoint {
                    which,
                    key: log_key.key_id(),
                    source,
                }
            })
        };
        let (small, large) = (verify(1)?, verify(2)?);
        Ok(decide(&small.checkpoint, &large.checkpoint, &self.proof))
    }

    /// A stable file name for this evidence, e.g. `<origin made filename-safe>-<size a>-<size b>-<8 hex of SHA-256 of the two notes>.evidence`,
    /// so the same split view seen twice (or after a restart) maps to the same file.
    ///
    /// The origin keeps ASCII letters, digits, `.`, `_` and `-` (others, and
    /// a leading `.`, become `_`) and is cut to 64 characters. The digest is
    /// over `u64 big-endian length of note 1 || note 1 || note 2`, in file
    /// order, so the order the checkpoints were given in does not matter.
    pub fn file_name(&self) -> String {
        let safe: String = self
            .origin
            .chars()
            .take(64)
            .enumerate()
            .map(|(i, c)| match c {
                '.' if i == 0 => '_',
                c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
                _ => '_',
            })
            .collect();
        let [small, large] = &self.checkpoints;
        let digest = Sha256::new()
            .chain_update((small.note.len() as u64).to_be_bytes())
            .chain_update(&small.note)
            .chain_update(&large.note)
            .finalize();
        format!(
            "{safe}-{}-{}-{:02x}{:02x}{:02x}{:02x}.evidence",
            small.body.size, large.body.size, digest[0], digest[1], digest[2], digest[3]
        )
    }
}

/// The verdict on two checkpoints, `old.size <= new.size`, and the proof
/// between them, as [`relation::decide`] finds it. Sound only if both were
/// verified under the log's key; [`Evidence::split_view`] also uses it,
/// unverified, for the claimed line.
fn decide(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Verdict {
    let relation = relation::decide(old, new, proof);
    match relation {
        _ if relation.is_proven_misbehaviour() => Verdict::Proven {
            summary: relation.to_string(),
        },
        Relation::Same { size } => Verdict::NotProven {
            reason: format!(
                "both checkpoints are for size {size} with the same root {}",
                old.root
            ),
        },
        Relation::Extends { .. } => Verdict::NotProven {
            reason: format!("consistent: {relation}"),
        },
        Relation::DoesNotExtend {
            why: Inconsistency::Unproven { reason },
            ..
        } => Verdict::NotProven { reason },
        other => Verdict::NotProven {
            reason: other.to_string(),
        },
    }
}

/// Whether `(a, b)` is the file's order: smaller size first, and for equal
/// sizes the note that sorts first bytewise.
fn canonical_order(a: &Checkpoint, a_note: &[u8], b: &Checkpoint, b_note: &[u8]) -> bool {
    (a.size, a_note) <= (b.size, b_note)
}

/// `text` as one line: control characters become spaces, and it is cut
/// to [`MAX_CONTEXT_BYTES`] at a character boundary.
fn one_line(text: &str) -> String {
    let mut line = String::new();
    for c in text.chars() {
        if line.len() + c.len_utf8() > MAX_CONTEXT_BYTES {
            break;
        }
        line.push(if c.is_control() { ' ' } else { c });
    }
    line
}

fn checkpoint_header(which: u8, stated: &Stated) -> String {
    format!(
        "checkpoint {which} (size {}, {} bytes)",
        stated.body.size,
        stated.note.len()
    )
}

fn proof_header(old_size: u64, new_size: u64, count: usize) -> String {
    let unit = if count == 1 { "hash" } else { "hashes" };
    format!("consistency proof from size {old_size} to size {new_size} ({count} {unit})")
}

/// The decimal numbers in `line`, in order; `None` if one overflows. The
/// caller re-formats the line from them and compares, so leading zeros
/// and any other deviation are refused there.
fn numbers(line: &str) -> Option<Vec<u64>> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .map(|run| run.parse().ok())
        .collect()
}

/// A hash in canonical standard base64 (what re-encodes to the same text).
fn parse_hash(line: &str) -> Option<Hash> {
    let bytes: [u8; 32] = BASE64_STANDARD.decode(line).ok()?.try_into().ok()?;
    (BASE64_STANDARD.encode(bytes) == line).then_some(Hash(bytes))
}

fn malformed(line: usize, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::Malformed {
        line,
        reason: reason.into(),
    }
}

/// The file read line by line, counting lines for error messages.
struct Lines<'a> {
    rest: &'a str,
    /// The number of the line last read.
    line: usize,
}

impl<'a> Lines<'a> {
    fn error(&self, reason: impl Into<String>) -> EvidenceError {
        malformed(self.line, reason)
    }

    /// The next line, without its `\n`, which it must have.
    fn next(&mut self, what: &str) -> Result<&'a str, EvidenceError> {
        self.line += 1;
        let Some((line, rest)) = self.rest.split_once('\n') else {
            return Err(if self.rest.is_empty() {
                self.error(format!("expected {what}, found the end of the file"))
            } else {
                self.error("the file does not end with a newline")
            });
        };
        self.rest = rest;
        Ok(line)
    }

    /// A `<name> <value>` line whose value has no control characters.
    fn field(&mut self, name: &str) -> Result<&'a str, EvidenceError> {
        let line = self.next(&format!("the {name} line"))?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| self.error(format!("expected \"{name} <text>\"")))?;
        if value.chars().any(char::is_control) {
            return Err(self.error(format!("the {name} has a control character")));
        }
        Ok(value)
    }

    /// A checkpoint header and the note it frames: a well-formed signed
    /// note whose body is a checkpoint of `origin` and the stated size.
    fn checkpoint(&mut self, which: u8, origin: &str) -> Result<Stated, EvidenceError> {
        let header = self.next(&format!("the header of checkpoint {which}"))?;
        let len = match numbers(header).as_deref() {
            Some(&[w, _, len]) if w == u64::from(which) => len,
            _ => {
                return Err(self.error(format!(
                    "expected \"checkpoint {which} (size <n>, <length> bytes)\""
                )))
            }
        };
        let start = self.line + 1;
        let note = usize::try_from(len)
            .ok()
            .and_then(|len| self.rest.get(..len))
            .filter(|note| note.ends_with('\n'))
            .ok_or_else(|| {
                malformed(
                    start,
                    format!("checkpoint {which} is not {len} bytes ending in a newline"),
                )
            })?;
        let body = parse_note(note)
            .map_err(|reason| malformed(start, format!("checkpoint {which} is {reason}")))?;
        let stated = Stated {
            note: note.to_owned(),
            body,
        };
        if header != checkpoint_header(which, &stated) {
            return Err(self.error(format!(
                "expected \"checkpoint {which} (size {}, {} bytes)\", the note's size and length",
                stated.body.size,
                note.len()
            )));
        }
        if stated.body.origin != origin {
            return Err(malformed(
                start,
                format!(
                    "checkpoint {which} is of origin {:?}, not {origin:?}",
                    stated.body.origin
                ),
            ));
        }
        self.rest = &self.rest[note.len()..];
        self.line += note.matches('\n').count();
        Ok(stated)
    }
}

/// The checkpoint a signed note states, checking its form but not its
/// signatures: only a note that re-encodes to the same bytes.
fn parse_note(note: &str) -> Result<Checkpoint, String> {
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|e| format!("not a signed note: {e}"))?;
    if parsed.to_bytes() != note.as_bytes() {
        return Err("not a signed note in canonical form".into());
    }
    Checkpoint::parse_body(parsed.text()).map_err(|e| format!("not a checkpoint: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::merkle::leaf_hash;

    fn signed(origin: &str, size: u64, root: &[u8]) -> SignedCheckpoint {
        let key = SigningKey::from_seed(origin, [9; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: origin.into(),
            size,
            root: leaf_hash(root),
        };
        SignedCheckpoint::verify(&checkpoint.sign(&key), &key.verifier_key()).unwrap()
    }

    #[test]
    fn file_names_are_safe_whatever_the_origin() {
        let origin = format!(".hidden/../{}é", "x".repeat(80));
        let a = signed(&origin, 3, b"a");
        let b = signed(&origin, 3, b"b");
        let name = Evidence::split_view(&a, &b, vec![], "").file_name();
        let (safe, rest) = name.split_at(64);
        assert_eq!(&safe[..11], "_hidden_.._");
        assert!(safe
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        assert!(
            rest.starts_with("-3-3-") && rest.ends_with(".evidence"),
            "{rest}"
        );
        assert_eq!(rest.len(), "-3-3-".len() + 8 + ".evidence".len());
    }

    #[test]
    fn context_becomes_one_bounded_line() {
        assert_eq!(one_line("a\r\nb\tc\u{7f}d"), "a  b c d");
        let long = "é".repeat(MAX_CONTEXT_BYTES);
        let cut = one_line(&long);
        assert_eq!(cut.len(), MAX_CONTEXT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn numbers_are_read_in_order_and_overflow_is_refused() {
        assert_eq!(
            numbers("checkpoint 1 (size 07, 3 bytes)"),
            Some(vec![1, 7, 3])
        );
        assert_eq!(numbers("size 18446744073709551616"), None);
        assert_eq!(numbers("none"), Some(vec![]));
    }

    #[test]
    fn the_claimed_verdict_is_what_the_contents_show() {
        let evidence = Evidence::split_view(
            &signed("log.example/a", 3, b"a"),
            &signed("log.example/a", 3, b"b"),
            vec![],
            "",
        );
        assert!(evidence
            .claimed
            .starts_with("proves misbehaviour: fork: two signed checkpoints for size 3"));
    }
}
