//! Sorting the checkpoints a peer sent: nothing a peer says is trusted.
//!
//! A message is refused whole if it breaks the bounds (too many notes, or a
//! note too large): that is a peer to push back on, not a log to check.
//! Within bounds, each note is read by its first line, the origin: notes
//! of logs this monitor does not follow are counted and ignored (peers may
//! follow other logs), and the rest must verify under the followed log's
//! key. A note that does not verify is dropped and reported, never used.
//! Only verified checkpoints go on to the consistency checks, which need
//! the network; this module needs none.

use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;

/// The largest gossip message accepted or sent, in bytes. A monitor
/// follows a handful of logs and offers one checkpoint for each.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The most checkpoints one message may carry, and so the most logs one
/// monitor may follow.
pub const MAX_CHECKPOINTS: usize = 16;
/// The largest note accepted or sent: a checkpoint with a few dozen witness
/// cosignatures fits with room to spare.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// What a peer's message held, once sorted.
#[derive(Debug, Default)]
pub struct Intake {
    /// Checkpoints that verified, each with the position of its log among
    /// the followed logs.
    pub verified: Vec<(usize, SignedCheckpoint)>,
    /// Notes of logs this monitor does not follow.
    pub unknown_origins: usize,
    /// Why each refused note was refused, naming it by its position.
    pub rejected: Vec<String>,
}

/// Checks the bounds of a message of `notes`; the error names the field.
pub fn check_bounds(notes: &[String]) -> Result<(), String> {
    if notes.len() > MAX_CHECKPOINTS {
        return Err(format!(
            "checkpoints: {} notes, at most {MAX_CHECKPOINTS} are accepted",
            notes.len()
        ));
    }
    if let Some((i, note)) = notes
        .iter()
        .enumerate()
        .find(|(_, note)| note.len() > MAX_NOTE_BYTES)
    {
        return Err(format!(
            "checkpoints[{i}]: {} bytes, at most {MAX_NOTE_BYTES} are accepted",
            note.len()
        ));
    }
    Ok(())
}

/// Sorts `notes` against the keys of the followed logs, after
/// [`check_bounds`].
pub fn sort(notes: &[String], keys: &[VerifierKey]) -> Result<Intake, String> {
    check_bounds(notes)?;
    let mut intake = Intake::default();
    for (i, note) in notes.iter().enumerate() {
        let origin = note.split('\n').next().unwrap_or_default();
        let Some(position) = keys.iter().position(|key| key.name() == origin) else {
            intake.unknown_origins += 1;
            continue;
        };
        match SignedCheckpoint::verify(note.as_bytes(), &keys[position]) {
            Ok(checkpoint) => intake.verified.push((position, checkpoint)),
            Err(e) => intake
                .rejected
                .push(format!("checkpoints[{i}] (origin {origin:?}): {e}")),
        }
    }
    Ok(intake)
}

/// The notes to offer peers, in order, cut off before the message would
/// pass [`MAX_MESSAGE_BYTES`]; a note over [`MAX_NOTE_BYTES`] is left out,
/// since peers would refuse the whole message for it.
pub fn offer<'a>(notes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut total = 0;
    notes
        .into_iter()
        .filter(|note| note.len() <= MAX_NOTE_BYTES)
        .take(MAX_CHECKPOINTS)
        .take_while(|note| {
            // Each repeated string costs a tag byte and a length varint.
            total += note.len() + 4;
            total <= MAX_MESSAGE_BYTES
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::keys::SigningKey;
    use crate::merkle::EMPTY_HASH;

    fn log_key(name: &str) -> SigningKey {
        SigningKey::from_seed(name, [7; 32]).unwrap()
    }

    fn note(key: &SigningKey, size: u64) -> String {
        let body = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root: EMPTY_HASH,
        };
        String::from_utf8(body.sign(key)).unwrap()
    }

    #[test]
    fn verified_notes_are_matched_to_their_log() {
        let (a, b) = (log_key("a.example/log"), log_key("b.example/log"));
        let keys = [a.verifier_key(), b.verifier_key()];
        let intake = sort(&[note(&b, 3), note(&a, 5)], &keys).unwrap();
        let found: Vec<(usize, u64)> = intake
            .verified
            .iter()
            .map(|(i, c)| (*i, c.checkpoint.size))
            .collect();
        assert_eq!(found, [(1, 3), (0, 5)]);
        assert_eq!(intake.unknown_origins, 0);
        assert!(intake.rejected.is_empty());
    }

    #[test]
    fn notes_of_other_logs_are_counted_and_ignored() {
        let followed = log_key("a.example/log");
        let other = log_key("elsewhere.example/log");
        let intake = sort(
            &[note(&other, 1), "garbage".into()],
            &[followed.verifier_key()],
        )
        .unwrap();
        assert!(intake.verified.is_empty());
        assert_eq!(intake.unknown_origins, 2);
        assert!(intake.rejected.is_empty());
    }

    #[test]
    fn a_note_that_does_not_verify_is_rejected_by_position() {
        let key = log_key("a.example/log");
        let impostor = SigningKey::from_seed("a.example/log", [8; 32]).unwrap();
        let tampered = note(&key, 4).replacen("\n4\n", "\n5\n", 1);
        let intake = sort(
            &[note(&key, 4), note(&impostor, 9), tampered],
            &[key.verifier_key()],
        )
        .unwrap();
        assert_eq!(intake.verified.len(), 1);
        assert_eq!(intake.rejected.len(), 2);
        assert!(intake.rejected[0].starts_with("checkpoints[1]"));
        assert!(intake.rejected[1].starts_with("checkpoints[2]"));
    }

    #[test]
    fn too_many_notes_refuse_the_message() {
        let key = log_key("a.example/log");
        let notes = vec![note(&key, 1); MAX_CHECKPOINTS + 1];
        let error = sort(&notes, &[key.verifier_key()]).unwrap_err();
        assert!(error.starts_with("checkpoints: 17 notes"), "{error}");
        assert!(check_bounds(&notes[..MAX_CHECKPOINTS]).is_ok());
    }

    #[test]
    fn an_oversized_note_refuses_the_message() {
        let key = log_key("a.example/log");
        let notes = vec![note(&key, 1), "x".repeat(MAX_NOTE_BYTES + 1)];
        let error = sort(&notes, &[key.verifier_key()]).unwrap_err();
        assert!(error.starts_with("checkpoints[1]: 16385 bytes"), "{error}");
    }

    #[test]
    fn the_offer_stays_within_what_peers_accept() {
        let big = "y".repeat(MAX_NOTE_BYTES);
        let too_big = "z".repeat(MAX_NOTE_BYTES + 1);
        let notes = [big.as_str(), too_big.as_str(), "a", "b", &big, &big, &big];
        let offered = offer(notes);
        assert_eq!(offered.len(), 5);
        assert!(offered.iter().all(|n| n.len() <= MAX_NOTE_BYTES));
        assert!(offered.iter().map(|n| n.len() + 4).sum::<usize>() <= MAX_MESSAGE_BYTES);
        assert!(check_bounds(&offered).is_ok());
    }
}
