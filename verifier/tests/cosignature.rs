//! Witness cosignatures (C2SP tlog-cosignature) and the add-checkpoint
//! bodies (C2SP tlog-witness): round trips, the specs' own examples, every
//! tampering refused, quorum counting, and an independent computation of
//! the same bytes by `tests/independent/c2sp_check.py`, a stdlib-only
//! Python implementation written from the spec text.

use base64::prelude::{Engine as _, BASE64_STANDARD};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use verifier::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use verifier::cosignature::{
    add_cosignatures, verify_witnessed, Cosignature, CosignatureError, CosignerSigningKey,
    CosignerVerifierKey,
};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, Hash};
use verifier::witness_protocol::{
    encode_cosignatures, parse_cosignatures, AddCheckpointRequest, ProtocolError, MAX_NOTE_BYTES,
    MAX_PROOF_LINES,
};

const ORIGIN: &str = "log.example.test/cosignatures";

fn log_key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [0x11; 32]).unwrap()
}

fn log_vkey() -> VerifierKey {
    log_key().verifier_key()
}

fn witness(n: u8) -> CosignerSigningKey {
    CosignerSigningKey::new(
        SigningKey::from_seed(&format!("witness{n}.example.test"), [n; 32]).unwrap(),
    )
}

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: leaf_hash(format!("root {size}").as_bytes()),
    }
}

fn signed(size: u64) -> SignedCheckpoint {
    SignedCheckpoint::verify(&checkpoint(size).sign(&log_key()), &log_vkey()).unwrap()
}

/// The note's text: everything before the blank line, with its newline.
fn body_of(note: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(note).unwrap();
    let cut = text.rfind("\n\n").unwrap();
    note[..cut + 1].to_vec()
}

/// Splits a line into its name and the decoded bytes after the name.
fn line_bytes(line: &str) -> (&str, Vec<u8>) {
    let rest = line.strip_prefix("— ").unwrap().strip_suffix('\n').unwrap();
    let (name, b64) = rest.split_once(' ').unwrap();
    (name, BASE64_STANDARD.decode(b64).unwrap())
}

fn make_line(name: &str, bytes: &[u8]) -> String {
    format!("— {name} {}\n", BASE64_STANDARD.encode(bytes))
}

fn with_lines(signed: &SignedCheckpoint, lines: &[String]) -> Vec<u8> {
    let mut note = signed.note.clone();
    for line in lines {
        note.extend_from_slice(line.as_bytes());
    }
    note
}

// ---------------------------------------------------------------------------
// The specs' own examples.

/// The cosigned checkpoint at the top of c2sp.org/tlog-cosignature.
const SPEC_COSIGNED_NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

/// The example request body of c2sp.org/tlog-witness.
const SPEC_REQUEST: &str = "old 20852014\n\
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
\n\
example.com/behind-the-sofa\n\
20852163\n\
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
\n\
— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";

/// The example 200 response body of c2sp.org/tlog-witness. Its bytes are
/// illustrative, not real cosignatures (the first line's "timestamp" is
/// above 2^63), but every line is a well-formed signature line.
const SPEC_RESPONSE: &str = "— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n\
— witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n\
— witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";

#[test]
fn the_spec_example_cosignature_line_parses_to_its_time() {
    let line = SPEC_COSIGNED_NOTE.lines().last().unwrap().to_owned() + "\n";
    let cosig = Cosignature::parse_line(&line).unwrap();
    assert_eq!(cosig.key_id(), "witness.example.com/w1+8d66cf3f");
    // The spec's signed-message example uses the same time.
    assert_eq!(cosig.timestamp(), 1679315147);
    assert_eq!(cosig.to_line(), line);
    // The log's own line is an ordinary 64-byte signature, not a cosignature.
    let log_line = SPEC_COSIGNED_NOTE.lines().nth(4).unwrap().to_owned() + "\n";
    assert!(matches!(
        Cosignature::parse_line(&log_line),
        Err(CosignatureError::Malformed(_))
    ));
}

#[test]
fn published_cosigner_keys_parse_and_other_types_are_refused() {
    // From transparency-dev/formats' note tests: a native cosignature/v1 key.
    let native = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
    let key = CosignerVerifierKey::parse(native).unwrap();
    assert_eq!(key.key_id(), "remora.n621.de+da77ade7");
    assert_eq!(key.to_string(), native);
    // The same file's ordinary Ed25519 note key (type 0x01), which Go
    // converts; this crate does not.
    let note_key = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6";
    let err = CosignerVerifierKey::parse(note_key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0x01"), "{err}");
    // And a cosigner's own key in the log-key parser is refused too.
    assert!(VerifierKey::parse(native).is_err());
    // transparency-dev/formats' timestamp vector.
    let line = "— remora.n621.de ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==\n";
    assert_eq!(
        Cosignature::parse_line(line).unwrap().timestamp(),
        1727964367
    );
}

#[test]
fn the_spec_example_request_round_trips() {
    let request = AddCheckpointRequest::parse(SPEC_REQUEST.as_bytes()).unwrap();
    assert_eq!(request.old_size(), 20852014);
    assert_eq!(request.proof().len(), 4);
    assert_eq!(request.origin(), "example.com/behind-the-sofa");
    assert_eq!(
        request.checkpoint_body(),
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
    assert_eq!(request.to_body(), SPEC_REQUEST.as_bytes());
}

#[test]
fn the_spec_example_response_is_well_formed_but_not_by_our_witness() {
    let request = AddCheckpointRequest::parse(SPEC_REQUEST.as_bytes()).unwrap();
    let ours = witness(1).verifier_key();
    assert_eq!(
        parse_cosignatures(SPEC_RESPONSE.as_bytes(), &request, &ours),
        Err(ProtocolError::NoCosignature(ours.key_id()))
    );
}

// ---------------------------------------------------------------------------
// Round trips.

#[test]
fn keys_lines_and_notes_round_trip() {
    let w = witness(1);
    let vkey = w.verifier_key();
    assert_eq!(CosignerVerifierKey::parse(&vkey.to_string()).unwrap(), vkey);
    assert_eq!(
        CosignerVerifierKey::parse(&format!("  {vkey}\n")).unwrap(),
        vkey
    );
    let cp = signed(7);
    let body = body_of(&cp.note);
    let cosig = w.cosign(&body, 1_700_000_000).unwrap();
    assert_eq!(Cosignature::parse_line(&cosig.to_line()).unwrap(), cosig);
    assert_eq!(vkey.verify(&body, &cosig), Ok(1_700_000_000));
    let (_, bytes) = line_bytes(&cosig.to_line());
    assert_eq!(bytes.len(), 76);
    assert_eq!(
        u32::from_be_bytes(bytes[..4].try_into().unwrap()),
        vkey.id()
    );
    assert_eq!(&bytes[4..12], &1_700_000_000u64.to_be_bytes());

    let published = add_cosignatures(&cp, std::slice::from_ref(&cosig)).unwrap();
    assert_eq!(published.note, with_lines(&cp, &[cosig.to_line()]));
    let witnessed = verify_witnessed(&published.note, &log_vkey(), &[vkey], 1).unwrap();
    assert_eq!(witnessed.cosignatures, vec![cosig]);
    assert_eq!(witnessed.checkpoint, published);
}

#[test]
fn signed_checkpoint_verify_ignores_cosignatures_by_unknown_keys() {
    let cp = signed(3);
    let body = body_of(&cp.note);
    let lines: Vec<String> = (1..=3)
        .map(|n| witness(n).cosign(&body, u64::from(n)).unwrap().to_line())
        .collect();
    let note = with_lines(&cp, &lines);
    let verified = SignedCheckpoint::verify(&note, &log_vkey()).unwrap();
    assert_eq!(verified.checkpoint, cp.checkpoint);
    assert_eq!(verified.note, note, "cosignatures are kept, byte for byte");
    // A cosignature line placed before the log's signature is fine too.
    let mut first = body.clone();
    first.push(b'\n');
    first.extend_from_slice(lines[0].as_bytes());
    first.extend_from_slice(&cp.note[body.len() + 1..]);
    assert!(SignedCheckpoint::verify(&first, &log_vkey()).is_ok());
}

#[test]
fn a_cosignature_covers_extension_lines() {
    // The checkpoint spec allows extension lines after the root; the
    // cosignature covers the whole body.
    let w = witness(1);
    let body = format!("{ORIGIN}\n4\n{}\next one\n", leaf_hash(b"x")).into_bytes();
    let cosig = w.cosign(&body, 9).unwrap();
    assert_eq!(w.verifier_key().verify(&body, &cosig), Ok(9));
    let mut other = body.clone();
    *other.last_mut().unwrap() = b' ';
    other.push(b'\n');
    assert!(w.verifier_key().verify(&other, &cosig).is_err());
}

// ---------------------------------------------------------------------------
// Tampering.

#[test]
fn every_tampering_is_refused() {
    let w = witness(1);
    let vkey = w.verifier_key();
    let cp = signed(10);
    let body = body_of(&cp.note);
    let line = w.cosign(&body, 1_000).unwrap().to_line();
    let (name, bytes) = line_bytes(&line);
    let witness_id = vkey.key_id();
    let bad_sig = |timestamp| CosignatureError::BadSignature {
        witness: witness_id.clone(),
        timestamp,
    };

    // body-changed: another size or root.
    let cosig = Cosignature::parse_line(&line).unwrap();
    for other in [signed(11), signed(12)] {
        assert_eq!(
            vkey.verify(&body_of(&other.note), &cosig),
            Err(bad_sig(1_000))
        );
    }
    // timestamp-changed.
    let mut later = bytes.clone();
    later[11] ^= 1;
    let later = Cosignature::parse_line(&make_line(name, &later)).unwrap();
    assert_eq!(vkey.verify(&body, &later), Err(bad_sig(1_001)));
    // flipped-bit in the signature.
    for i in [12, 40, 75] {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x10;
        let flipped = Cosignature::parse_line(&make_line(name, &flipped)).unwrap();
        assert_eq!(
            vkey.verify(&body, &flipped),
            Err(bad_sig(1_000)),
            "byte {i}"
        );
    }
    // wrong-key-id and wrong-name: the line is another key's.
    let mut wrong_id = bytes.clone();
    wrong_id[0] ^= 1;
    let wrong_id = Cosignature::parse_line(&make_line(name, &wrong_id)).unwrap();
    assert!(matches!(
        vkey.verify(&body, &wrong_id),
        Err(CosignatureError::WrongKey { .. })
    ));
    let renamed = Cosignature::parse_line(&make_line("impostor.example", &bytes)).unwrap();
    assert!(matches!(
        vkey.verify(&body, &renamed),
        Err(CosignatureError::WrongKey { .. })
    ));
    // truncated and overlong signatures.
    for len in [4, 12, 68, 75] {
        assert!(matches!(
            Cosignature::parse_line(&make_line(name, &bytes[..len])),
            Err(CosignatureError::Malformed(_))
        ));
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(Cosignature::parse_line(&make_line(name, &long)).is_err());
    // timestamp-above-2^63.
    let mut huge = bytes.clone();
    huge[4] = 0x80;
    assert!(matches!(
        Cosignature::parse_line(&make_line(name, &huge)),
        Err(CosignatureError::TimestampOutOfRange(_))
    ));
    // Non-canonical forms of the same line.
    let b64 = BASE64_STANDARD.encode(&bytes);
    for bad in [
        line.trim_end().to_owned(),
        format!("—  {name} {b64}\n"),
        format!("— {name}  {b64}\n"),
        format!("— {name} {b64} \n"),
        format!("— {name} {b64}\n\n"),
        format!("-- {name} {b64}\n"),
        format!("— {name} {}\n", b64.trim_end_matches('=')),
        format!("— na\u{1}me {b64}\n"),
        format!("— {name} {b64}\r\n"),
    ] {
        assert!(Cosignature::parse_line(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cosigner_keys_with_another_algorithm_byte_or_id_are_refused() {
    let vkey = witness(1).verifier_key().to_string();
    let mut fields = vkey.splitn(3, '+');
    let (name, id, b64) = (
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
    );
    let key = BASE64_STANDARD.decode(b64).unwrap();
    for alg in [0x00, 0x01, 0x02, 0x05, 0x06, 0xff] {
        let mut other = key.clone();
        other[0] = alg;
        let text = format!("{name}+{id}+{}", BASE64_STANDARD.encode(other));
        assert!(
            CosignerVerifierKey::parse(&text).is_err(),
            "type {alg:#04x}"
        );
    }
    for bad in [
        format!("{name}+00000000+{b64}"),
        format!("other+{id}+{b64}"),
        format!("{name}+{id}+{}", BASE64_STANDARD.encode(&key[..32])),
        format!("{name}+{id}"),
        format!("{name} {id}+{b64}"),
    ] {
        assert!(CosignerVerifierKey::parse(&bad).is_err(), "{bad}");
    }
    if id.bytes().any(|b| b.is_ascii_alphabetic()) {
        let upper = format!("{name}+{}+{b64}", id.to_uppercase());
        assert!(CosignerVerifierKey::parse(&upper).is_err(), "{upper}");
    }
}

// ---------------------------------------------------------------------------
// Quorum.

#[test]
fn quorum_counts_distinct_listed_witnesses() {
    let cp = signed(20);
    let body = body_of(&cp.note);
    let (w1, w2, w3, stranger) = (witness(1), witness(2), witness(3), witness(9));
    let listed = [w1.verifier_key(), w2.verifier_key(), w3.verifier_key()];
    let note = with_lines(
        &cp,
        &[
            w1.cosign(&body, 1).unwrap().to_line(),
            w1.cosign(&body, 2).unwrap().to_line(),
            stranger.cosign(&body, 3).unwrap().to_line(),
            w2.cosign(&body, 4).unwrap().to_line(),
        ],
    );
    let ok = verify_witnessed(&note, &log_vkey(), &listed, 2).unwrap();
    let found: Vec<(String, u64)> = ok
        .cosignatures
        .iter()
        .map(|c| (c.key_id(), c.timestamp()))
        .collect();
    assert_eq!(
        found,
        vec![(listed[0].key_id(), 1), (listed[1].key_id(), 4)],
        "w1's two lines count once, the stranger is ignored"
    );
    let err = verify_witnessed(&note, &log_vkey(), &listed, 3).unwrap_err();
    assert_eq!(
        err,
        CosignatureError::QuorumNotReached {
            valid: 2,
            needed: 3,
            listed: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "2 valid cosignatures by listed witnesses, 3 needed (3 witness keys listed)"
    );
    // Listing the same key twice does not count it twice either.
    let twice = [w1.verifier_key(), w1.verifier_key()];
    assert!(matches!(
        verify_witnessed(&note, &log_vkey(), &twice, 2),
        Err(CosignatureError::QuorumNotReached {
            valid: 1,
            needed: 2,
            listed: 1
        })
    ));
    // Quorum zero needs only the log's signature.
    assert!(verify_witnessed(&cp.note, &log_vkey(), &listed, 0).is_ok());
}

#[test]
fn one_key_under_two_names_counts_once() {
    // The cosignature/v1 message does not name the witness, so anyone can
    // relabel a line under another name with the same key.
    let cp = signed(21);
    let body = body_of(&cp.note);
    let seed = [1; 32];
    let a = CosignerSigningKey::new(SigningKey::from_seed("a.example", seed).unwrap());
    let b = CosignerSigningKey::new(SigningKey::from_seed("b.example", seed).unwrap());
    let line = a.cosign(&body, 5).unwrap().to_line();
    let (_, mut bytes) = line_bytes(&line);
    bytes[..4].copy_from_slice(&b.verifier_key().id().to_be_bytes());
    let relabelled = make_line("b.example", &bytes);
    let note = with_lines(&cp, &[line, relabelled]);
    let keys = [a.verifier_key(), b.verifier_key()];
    assert!(matches!(
        verify_witnessed(&note, &log_vkey(), &keys, 2),
        Err(CosignatureError::QuorumNotReached {
            valid: 1,
            needed: 2,
            listed: 1
        })
    ));
}

#[test]
fn a_listed_witness_with_a_bad_cosignature_rejects_the_note() {
    let cp = signed(22);
    let body = body_of(&cp.note);
    let (w1, w2) = (witness(1), witness(2));
    let other_body = body_of(&signed(23).note);
    let note = with_lines(
        &cp,
        &[
            w1.cosign(&body, 1).unwrap().to_line(),
            w2.cosign(&other_body, 1).unwrap().to_line(),
        ],
    );
    let listed = [w1.verifier_key(), w2.verifier_key()];
    assert!(matches!(
        verify_witnessed(&note, &log_vkey(), &listed, 1),
        Err(CosignatureError::BadSignature { .. })
    ));
    // Unlisted, the same line is ignored.
    assert!(verify_witnessed(&note, &log_vkey(), &listed[..1], 1).is_ok());
    // A listed witness's line that is not even a cosignature is refused.
    let short = make_line(w1.name(), &w1.verifier_key().id().to_be_bytes().repeat(17));
    let note = with_lines(&cp, &[short]);
    assert!(matches!(
        verify_witnessed(&note, &log_vkey(), &listed, 0),
        Err(CosignatureError::Malformed(_))
    ));
}

#[test]
fn the_log_signature_is_checked_before_any_cosignature() {
    let cp = signed(30);
    let body = body_of(&cp.note);
    let w = witness(1);
    let cosigned = with_lines(&cp, &[w.cosign(&body, 1).unwrap().to_line()]);
    let stranger = SigningKey::from_seed(ORIGIN, [0x22; 32]).unwrap();
    assert_eq!(
        verify_witnessed(&cosigned, &stranger.verifier_key(), &[w.verifier_key()], 1),
        Err(CosignatureError::Checkpoint(CheckpointError::Unsigned(
            stranger.key_id()
        )))
    );
    // A note with only a cosignature has no log signature at all.
    let mut only = body.clone();
    only.push(b'\n');
    only.extend_from_slice(w.cosign(&body, 1).unwrap().to_line().as_bytes());
    assert!(matches!(
        verify_witnessed(&only, &log_vkey(), &[w.verifier_key()], 1),
        Err(CosignatureError::Checkpoint(CheckpointError::Unsigned(_)))
    ));
}

// ---------------------------------------------------------------------------
// The add-checkpoint exchange, end to end without a network.

#[test]
fn a_witness_round_trip_in_memory() {
    let old = signed(5);
    let new = signed(8);
    let proof = vec![leaf_hash(b"p1"), leaf_hash(b"p2")];
    // The log's client.
    let request =
        AddCheckpointRequest::new(old.checkpoint.size, proof.clone(), new.note.clone()).unwrap();
    let wire = request.to_body();
    // The witness.
    let received = AddCheckpointRequest::parse(&wire).unwrap();
    assert_eq!(received, request);
    assert_eq!(received.proof(), &proof[..]);
    let verified = SignedCheckpoint::verify(received.note(), &log_vkey()).unwrap();
    assert_eq!(verified.checkpoint.origin, received.origin());
    let w = witness(1);
    let response = encode_cosignatures(&[w.cosign(received.checkpoint_body(), 77).unwrap()]);
    // The log's client again.
    let cosigs = parse_cosignatures(&response, &request, &w.verifier_key()).unwrap();
    assert_eq!(cosigs.len(), 1);
    assert_eq!(cosigs[0].timestamp(), 77);
    let published = add_cosignatures(&new, &cosigs).unwrap();
    assert!(verify_witnessed(&published.note, &log_vkey(), &[w.verifier_key()], 1).is_ok());
}

#[test]
fn responses_are_checked_against_the_checkpoint_sent() {
    let cp = signed(8);
    let request = AddCheckpointRequest::new(0, vec![], cp.note.clone()).unwrap();
    let (w, other) = (witness(1), witness(2));
    let body = request.checkpoint_body().to_vec();
    let good = w.cosign(&body, 1).unwrap();
    let foreign = other.cosign(&body, 1).unwrap();
    let mixed = encode_cosignatures(&[foreign.clone(), good.clone()]);
    assert_eq!(
        parse_cosignatures(&mixed, &request, &w.verifier_key()).unwrap(),
        vec![good.clone()]
    );
    let stale = w.cosign(&body_of(&signed(7).note), 1).unwrap();
    assert!(matches!(
        parse_cosignatures(&stale.to_line().into_bytes(), &request, &w.verifier_key()),
        Err(ProtocolError::Cosignature(
            CosignatureError::BadSignature { .. }
        ))
    ));
    assert_eq!(
        parse_cosignatures(&foreign.to_line().into_bytes(), &request, &w.verifier_key()),
        Err(ProtocolError::NoCosignature(w.verifier_key().key_id()))
    );
    let line = good.to_line();
    for bad in [
        String::new(),
        line.trim_end().to_owned(),
        format!("{line}\n"),
        format!("{line}garbage\n"),
        line.replace('\n', "\r\n"),
    ] {
        assert!(
            matches!(
                parse_cosignatures(bad.as_bytes(), &request, &w.verifier_key()),
                Err(ProtocolError::Malformed { .. })
            ),
            "{bad:?}"
        );
    }
    let huge = line.repeat(200);
    assert!(matches!(
        parse_cosignatures(huge.as_bytes(), &request, &w.verifier_key()),
        Err(ProtocolError::TooLarge { .. })
    ));
}

/// Named damaged request bodies, each of which must be refused.
fn damaged_requests() -> Vec<(&'static str, Vec<u8>)> {
    let note = signed(8).note;
    let hash = leaf_hash(b"h").to_string();
    let with = |head: &str| [head.as_bytes(), &note].concat();
    // A checkpoint with one long extension line, otherwise well-formed.
    let mut too_long_note = body_of(&note);
    too_long_note.extend_from_slice(&[b'x'; MAX_NOTE_BYTES]);
    too_long_note.push(b'\n');
    vec![
        ("empty", Vec::new()),
        ("no-old-line", with("\n")),
        ("old-leading-zero", with("old 01\n\n")),
        ("old-negative", with("old -1\n\n")),
        ("old-two-spaces", with("old  1\n\n")),
        ("old-too-big", with("old 18446744073709551616\n\n")),
        ("old-capitalised", with("Old 1\n\n")),
        ("no-blank-line", format!("old 1\n{hash}\n").into_bytes()),
        (
            "proof-31-bytes",
            with(&format!("old 1\n{}\n\n", BASE64_STANDARD.encode([0; 31]))),
        ),
        (
            "proof-33-bytes",
            with(&format!("old 1\n{}\n\n", BASE64_STANDARD.encode([0; 33]))),
        ),
        (
            "proof-unpadded",
            with(&format!("old 1\n{}\n\n", hash.trim_end_matches('='))),
        ),
        (
            "proof-stray-bits",
            with(&format!("old 1\n{}B=\n\n", "A".repeat(42))),
        ),
        ("proof-crlf", with(&format!("old 1\r\n{hash}\r\n\r\n"))),
        (
            "64-proof-lines",
            with(&format!(
                "old 1\n{}\n",
                format!("{hash}\n").repeat(MAX_PROOF_LINES + 1)
            )),
        ),
        ("two-blank-lines", with("old 1\n\n\n")),
        ("note-missing", b"old 1\n\n".to_vec()),
        (
            "note-unsigned",
            [&b"old 1\n\n"[..], &body_of(&note)].concat(),
        ),
        ("note-not-a-checkpoint", with_note(b"hello\n\n", &note)),
        (
            "note-too-long",
            [
                &b"old 1\n\n"[..],
                &too_long_note,
                b"\n",
                &note[body_of(&note).len() + 1..],
            ]
            .concat(),
        ),
        (
            "note-trailing-garbage",
            [&with("old 1\n\n")[..], b"junk"].concat(),
        ),
    ]
}

/// `note`'s signature lines under another text.
fn with_note(text: &[u8], note: &[u8]) -> Vec<u8> {
    let sigs = &note[body_of(note).len() + 1..];
    [&b"old 0\n\n"[..], text, sigs].concat()
}

#[test]
fn damaged_requests_are_refused() {
    // The undamaged request parses, so each refusal is the damage's.
    let note = signed(8).note;
    let hash = leaf_hash(b"h").to_string();
    let good = [format!("old 1\n{hash}\n\n").as_bytes(), &note].concat();
    assert!(AddCheckpointRequest::parse(&good).is_ok());
    for (name, body) in damaged_requests() {
        assert!(
            AddCheckpointRequest::parse(&body).is_err(),
            "{name} was accepted"
        );
    }
    assert_eq!(
        AddCheckpointRequest::new(1, vec![Hash([0; 32]); MAX_PROOF_LINES + 1], note.clone()),
        Err(ProtocolError::TooManyProofLines)
    );
    let full = AddCheckpointRequest::new(1, vec![Hash([0; 32]); MAX_PROOF_LINES], note).unwrap();
    assert_eq!(AddCheckpointRequest::parse(&full.to_body()).unwrap(), full);
}

// ---------------------------------------------------------------------------
// Parsers never panic, and what they accept re-encodes to the same bytes.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cosignature_lines_are_canonical(text in "(— |-)?[a-z./]{0,12}( [A-Za-z0-9+/=]{0,110})?\n?") {
        if let Ok(cosig) = Cosignature::parse_line(&text) {
            prop_assert_eq!(cosig.to_line(), text);
        }
    }

    #[test]
    fn mutated_lines_are_canonical_or_refused(
        i in 0usize..200, byte in any::<u8>(), ts in 0u64..=i64::MAX as u64,
    ) {
        let cp = signed(3);
        let line = witness(1).cosign(&body_of(&cp.note), ts).unwrap().to_line();
        let mut bytes = line.into_bytes();
        let i = i % bytes.len();
        bytes[i] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(cosig) = Cosignature::parse_line(text) {
                prop_assert_eq!(cosig.to_line().into_bytes(), bytes);
            }
        }
    }

    #[test]
    fn requests_are_canonical(i in 0usize..400, byte in any::<u8>(), cut in any::<bool>()) {
        let request = AddCheckpointRequest::new(
            2, vec![leaf_hash(b"a"), leaf_hash(b"b")], signed(8).note,
        ).unwrap();
        let mut body = request.to_body();
        let i = i % body.len();
        if cut { body.truncate(i) } else { body[i] = byte }
        if let Ok(parsed) = AddCheckpointRequest::parse(&body) {
            prop_assert_eq!(parsed.to_body(), body);
        }
    }

    #[test]
    fn cosigner_keys_are_canonical(text in "[a-z.]{1,8}\\+[0-9a-fA-F]{0,9}\\+[A-Za-z0-9+/=]{40,48}") {
        if let Ok(key) = CosignerVerifierKey::parse(&text) {
            prop_assert_eq!(key.to_string(), text);
        }
    }
}

// ---------------------------------------------------------------------------
// The independent implementation.

fn checker() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the verifier crate lives one level below the repository root")
        .join("tests/independent/c2sp_check.py")
}

/// Runs the Python checker. A missing `python3` fails the test: skipping
/// would make an unchecked format look checked.
fn run_checker(args: &[&str]) -> Output {
    let script = checker();
    assert!(
        script.is_file(),
        "the checker {} is missing",
        script.display()
    );
    Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `python3` ({e}); the independent checker needs Python 3 on PATH")
        })
}

#[test]
fn python_computes_the_same_cosignature_lines() {
    let dir = std::env::temp_dir().join(format!("cosig-independent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bodies = [
        body_of(&signed(0).note),
        body_of(&signed(1_234_567).note),
        format!("{ORIGIN}\n99\n{}\nextension line\n", leaf_hash(b"e")).into_bytes(),
        "ünïcode.example/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
            .as_bytes()
            .to_vec(),
    ];
    let cases = [
        ([0u8; 32], "witness.example/zero", 0u64),
        ([0x5a; 32], "w", 1_679_315_147),
        ([0xff; 32], "oid/1.3.6.1.4.1.99999", i64::MAX as u64),
    ];
    let mut compared = 0;
    for (b, body) in bodies.iter().enumerate() {
        let path = dir.join(format!("body{b}"));
        std::fs::write(&path, body).unwrap();
        for (seed, name, time) in cases {
            let key = CosignerSigningKey::new(SigningKey::from_seed(name, seed).unwrap());
            let expected = format!(
                "{}\n{}",
                key.verifier_key(),
                key.cosign(body, time).unwrap().to_line()
            );
            let out = run_checker(&[
                "cosign",
                "--seed",
                &hex::encode(seed),
                "--name",
                name,
                "--time",
                &time.to_string(),
                "--body",
                path.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                expected,
                "seed {seed:02x?}, {name}, time {time}, body {b}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn python_agrees_on_quorums_of_rust_cosigned_notes() {
    let dir = std::env::temp_dir().join(format!("cosig-quorum-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_vkey_path = dir.join("log.vkey");
    std::fs::write(&log_vkey_path, format!("{}\n", log_vkey())).unwrap();
    let cp = signed(1000);
    let body = body_of(&cp.note);
    let (w1, w2, w3) = (witness(1), witness(2), witness(3));
    let published = add_cosignatures(
        &cp,
        &[
            w1.cosign(&body, 10).unwrap(),
            w2.cosign(&body, 20).unwrap(),
            w1.cosign(&body, 30).unwrap(),
        ],
    )
    .unwrap();
    let tampered = {
        let mut note = published.note.clone();
        let n = note.len();
        note[n - 10] = if note[n - 10] == b'A' { b'B' } else { b'A' };
        note
    };
    let keys: Vec<String> = [&w1, &w2, &w3]
        .iter()
        .map(|w| w.verifier_key().to_string())
        .collect();
    let run = |note: &[u8], quorum: usize| {
        let path = dir.join("note");
        std::fs::write(&path, note).unwrap();
        let quorum = quorum.to_string();
        let mut args = vec![
            "check-cosigned",
            "--note",
            path.to_str().unwrap(),
            "--log-vkey",
            log_vkey_path.to_str().unwrap(),
            "--quorum",
            &quorum,
        ];
        for key in &keys {
            args.extend(["--witness", key]);
        }
        let out = run_checker(&args);
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            verify_witnessed(
                note,
                &log_vkey(),
                &keys
                    .iter()
                    .map(|k| CosignerVerifierKey::parse(k).unwrap())
                    .collect::<Vec<_>>(),
                quorum.parse().unwrap(),
            ),
        )
    };
    let (code, json, rust) = run(&published.note, 2);
    assert_eq!(code, Some(0), "{json}");
    let rust = rust.unwrap();
    for c in &rust.cosignatures {
        let entry = format!(
            "{{\"key\": \"{}\", \"time\": {}}}",
            c.key_id(),
            c.timestamp()
        );
        assert!(json.contains(&entry), "{entry} not in {json}");
    }
    // w1's later cosignature replaced its earlier one in the published note.
    assert!(
        json.contains("\"time\": 30") && !json.contains("\"time\": 10"),
        "{json}"
    );
    let (code, json, rust) = run(&published.note, 3);
    assert_eq!(code, Some(1), "{json}");
    assert!(matches!(
        rust,
        Err(CosignatureError::QuorumNotReached { valid: 2, .. })
    ));
    let (code, json, rust) = run(&tampered, 1);
    assert_eq!(code, Some(1), "{json}");
    assert!(rust.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
