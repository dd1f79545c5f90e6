//! Split-view evidence: what proves a log misbehaved and what does not,
//! the file's strictness, `consistency_roots` against independently built
//! trees, and `verifier check-evidence` through the real binary.
//!
//! Trees are built leaf by leaf into C2SP hash tiles, and proofs are taken
//! from those tiles with `tlog_tiles`, as a monitor takes them from a log.
//! Roots are cross-checked with `rs_merkle` over RFC 6962 hashing.

mod common;

use base64::prelude::{Engine as _, BASE64_STANDARD as BASE64};
use common::Rfc6962;
use proptest::prelude::*;
use proptest::test_runner::Config;
use rs_merkle::MerkleTree;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::process::{Command, Output};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::evidence::{Evidence, EvidenceError, Verdict, MAX_EVIDENCE_BYTES};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{consistency_roots, verify_consistency, Hash, ProofError};
use verifier::tile_builder::{MemoryTiles, TileBuilder};
use verifier::tiles::TiledHashReader;

const ORIGIN: &str = "log.example/evidence";

fn log_key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [42; 32]).unwrap()
}

fn vkey() -> VerifierKey {
    log_key().verifier_key()
}

/// Leaf `i` of the history with this seed: `SHA-256(0x00 || seed || i)`.
fn leaf(seed: u64, i: u64) -> Hash {
    let mut sha = Sha256::new();
    sha.update([0x00]);
    sha.update(seed.to_be_bytes());
    sha.update(i.to_be_bytes());
    Hash(sha.finalize().into())
}

/// A tiled tree, as a log stores it and a monitor reads it.
struct Tree {
    builder: TileBuilder,
    tiles: MemoryTiles,
}

impl Tree {
    /// The first `size` leaves of history `seed`, except that leaves from
    /// `fork_at` on come from history `seed + 1`.
    fn new(seed: u64, size: u64, fork_at: u64) -> Self {
        let mut tree = Self {
            builder: TileBuilder::new(),
            tiles: MemoryTiles::default(),
        };
        for i in 0..size {
            let history = if i < fork_at { seed } else { seed + 1 };
            tree.builder.append(leaf(history, i));
        }
        tree.tiles.apply(tree.builder.take_changed());
        tree
    }

    fn size(&self) -> u64 {
        self.builder.size()
    }

    fn signed(&self) -> SignedCheckpoint {
        sign(self.size(), self.builder.root())
    }

    /// The RFC 9162 consistency proof from `old_size` to this tree.
    fn proof_from(&self, old_size: u64) -> Vec<Hash> {
        tlog_tiles::prove_tree(self.size(), old_size, &TiledHashReader::new(&self.tiles)).unwrap()
    }

    /// The proof as evidence carries it: for a power-of-two old size, led
    /// by this tree's root over its first `old_size` leaves.
    fn evidence_proof_from(&self, old_size: u64) -> Vec<Hash> {
        let mut proof = self.proof_from(old_size);
        if old_size.is_power_of_two() {
            let prefix =
                tlog_tiles::tree_hash(old_size, &TiledHashReader::new(&self.tiles)).unwrap();
            proof.insert(0, prefix);
        }
        proof
    }
}

fn sign(size: u64, root: Hash) -> SignedCheckpoint {
    let note = Checkpoint {
        origin: ORIGIN.into(),
        size,
        root,
    }
    .sign(&log_key());
    SignedCheckpoint::verify(&note, &vkey()).unwrap()
}

fn verdict(evidence: &Evidence) -> Verdict {
    let reparsed = Evidence::parse(evidence.to_text().as_bytes()).unwrap();
    assert_eq!(&reparsed, evidence);
    reparsed.check(&vkey()).unwrap()
}

fn proven(evidence: &Evidence) -> String {
    match verdict(evidence) {
        Verdict::Proven { summary } => summary,
        other => panic!("expected proven, got {other:?}"),
    }
}

fn not_proven(evidence: &Evidence) -> String {
    match verdict(evidence) {
        Verdict::NotProven { reason } => reason,
        other => panic!("expected not proven, got {other:?}"),
    }
}

/// Two trees of size 9 that differ from leaf 4 on: a fork.
fn fork() -> Evidence {
    let a = Tree::new(1, 9, 9).signed();
    let b = Tree::new(1, 9, 4).signed();
    Evidence::split_view(&a, &b, vec![], "monitor A saw 1, peer B gossiped 2")
}

/// A signed tree of size 7 and a signed tree of size 20 whose first 7
/// leaves differ from it at leaf 3, with the proof from the larger tree.
fn divergent() -> Evidence {
    let small = Tree::new(1, 7, 7);
    let large = Tree::new(1, 20, 3);
    Evidence::split_view(
        &large.signed(),
        &small.signed(),
        large.proof_from(7),
        "trusted state; the log's /checkpoint",
    )
}

#[test]
fn same_size_with_different_roots_is_a_fork() {
    let summary = proven(&fork());
    assert!(
        summary.starts_with("fork: two signed checkpoints for size 9 with different roots"),
        "{summary}"
    );
}

#[test]
fn the_same_checkpoint_twice_proves_nothing() {
    let a = Tree::new(1, 9, 9).signed();
    let reason = not_proven(&Evidence::split_view(&a, &a, vec![], ""));
    assert!(reason.contains("same root"), "{reason}");
}

#[test]
fn a_larger_tree_that_does_not_extend_the_smaller_one_is_proven() {
    let summary = proven(&divergent());
    assert!(
        summary.starts_with("the tree of size 20 does not extend the signed tree of size 7"),
        "{summary}"
    );
    // The same, with histories that share no prefix at all.
    let small = Tree::new(1, 5, 5);
    let large = Tree::new(1, 300, 0);
    let evidence = Evidence::split_view(&small.signed(), &large.signed(), large.proof_from(5), "");
    proven(&evidence);
}

#[test]
fn a_power_of_two_old_size_is_proven_only_with_the_prefix_root() {
    let small = Tree::new(1, 8, 8);
    let large = Tree::new(1, 13, 2);
    let with_prefix = Evidence::split_view(
        &small.signed(),
        &large.signed(),
        large.evidence_proof_from(8),
        "",
    );
    proven(&with_prefix);

    let plain_rfc = Evidence::split_view(&small.signed(), &large.signed(), large.proof_from(8), "");
    let reason = not_proven(&plain_rfc);
    assert!(reason.contains("must begin with"), "{reason}");
}

#[test]
fn an_honest_pair_with_its_proof_is_consistent() {
    let large = Tree::new(1, 300, 300);
    for old_size in [1, 2, 7, 8, 255, 256, 257, 299] {
        let small = Tree::new(1, old_size, old_size);
        for proof in [
            large.proof_from(old_size),
            large.evidence_proof_from(old_size),
        ] {
            let evidence = Evidence::split_view(&small.signed(), &large.signed(), proof, "");
            let reason = not_proven(&evidence);
            assert!(reason.starts_with("consistent"), "{old_size}: {reason}");
        }
    }
}

#[test]
fn a_proof_that_misses_the_larger_root_proves_nothing() {
    let small = Tree::new(1, 7, 7);
    let large = Tree::new(1, 20, 3);
    let honest_len = large.proof_from(7).len();
    let garbage: Vec<Hash> = (0..honest_len as u64).map(|i| leaf(99, i)).collect();
    let evidence = Evidence::split_view(&small.signed(), &large.signed(), garbage, "");
    let reason = not_proven(&evidence);
    assert!(
        reason.contains("does not lead to the signed root"),
        "{reason}"
    );

    // A real proof of the larger tree, against a different signed larger root.
    let other = Tree::new(1, 20, 20);
    let evidence = Evidence::split_view(&small.signed(), &other.signed(), large.proof_from(7), "");
    assert!(not_proven(&evidence).contains("does not lead to the signed root"));
}

#[test]
fn a_proof_of_the_wrong_length_proves_nothing() {
    let small = Tree::new(1, 7, 7);
    let large = Tree::new(1, 20, 3);
    let mut proof = large.proof_from(7);
    for wrong in [vec![], proof[1..].to_vec(), {
        proof.push(leaf(5, 5));
        proof
    }] {
        let len = wrong.len();
        let evidence = Evidence::split_view(&small.signed(), &large.signed(), wrong, "");
        let reason = not_proven(&evidence);
        assert!(reason.contains("malformed"), "{len}: {reason}");
    }
}

#[test]
fn the_empty_tree_is_extended_by_every_tree() {
    let empty = sign(0, leaf(3, 3));
    let large = Tree::new(1, 20, 20);
    let reason = not_proven(&Evidence::split_view(&empty, &large.signed(), vec![], ""));
    assert!(reason.contains("empty tree"), "{reason}");
}

#[test]
fn argument_order_does_not_matter_and_file_names_are_stable() {
    let small = Tree::new(1, 7, 7);
    let large = Tree::new(1, 20, 3);
    let one = divergent();
    let other = Evidence::split_view(&small.signed(), &large.signed(), large.proof_from(7), "x");
    assert_eq!(one.file_name(), other.file_name());
    assert_eq!(one.notes(), other.notes());
    let name = one.file_name();
    assert!(name.starts_with("log.example_evidence-7-20-"), "{name}");
    assert!(name.ends_with(".evidence"), "{name}");
    assert_ne!(name, fork().file_name());

    let a = Tree::new(1, 9, 9).signed();
    let b = Tree::new(1, 9, 4).signed();
    assert_eq!(
        Evidence::split_view(&a, &b, vec![], "c").to_text(),
        Evidence::split_view(&b, &a, vec![], "c").to_text()
    );
}

#[test]
fn files_round_trip_byte_for_byte() {
    for evidence in [fork(), divergent()] {
        let text = evidence.to_text();
        let parsed = Evidence::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, evidence);
        assert_eq!(parsed.to_text(), text);
        assert_eq!(parsed.origin(), ORIGIN);
    }
    let noisy = Evidence::split_view(
        &Tree::new(1, 3, 3).signed(),
        &Tree::new(1, 3, 1).signed(),
        vec![],
        "line one\nline two\tand a tab",
    );
    assert_eq!(noisy.context(), "line one line two and a tab");
    assert_eq!(Evidence::parse(noisy.to_text().as_bytes()).unwrap(), noisy);
}

#[test]
fn the_written_format_is_readable() {
    let text = divergent().to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tlog split-view evidence v1");
    assert_eq!(lines[1], format!("origin {ORIGIN}"));
    assert!(lines[2]
        .starts_with("verdict-claimed proves misbehaviour: the tree of size 20 does not extend"));
    assert_eq!(lines[3], "context trusted state; the log's /checkpoint");
    assert_eq!(lines[4], "");
    assert!(
        lines[5].starts_with("checkpoint 1 (size 7, "),
        "{}",
        lines[5]
    );
    assert_eq!(lines[6], ORIGIN);
    assert!(text.contains("\nconsistency proof from size 7 to size 20 ("));
}

/// Every single-byte change to a proven file either makes it unreadable,
/// makes a note fail to verify, or makes it prove nothing, unless it only
/// touched the free-text lines, whose change leaves notes and proof as
/// they were.
#[test]
fn no_single_byte_change_keeps_altered_evidence_proven() {
    for evidence in [fork(), divergent()] {
        let text = evidence.to_text().into_bytes();
        let free_text = free_text_ranges(&text);
        let mut still_proven = 0;
        for position in 0..text.len() {
            for mask in [0x01u8, 0x02, 0x20, 0x80] {
                let mut altered = text.clone();
                altered[position] ^= mask;
                let Ok(parsed) = Evidence::parse(&altered) else {
                    continue;
                };
                let Ok(Verdict::Proven { .. }) = parsed.check(&vkey()) else {
                    continue;
                };
                assert!(
                    free_text.iter().any(|r| r.contains(&position)),
                    "byte {position} ^ {mask:#x} still proves"
                );
                assert_eq!(parsed.notes(), evidence.notes());
                assert_eq!(parsed.proof(), evidence.proof());
                still_proven += 1;
            }
        }
        assert!(
            still_proven > 0,
            "free text can change without a verdict change"
        );
    }
}

/// The byte ranges of the values of the `verdict-claimed` and `context` lines.
fn free_text_ranges(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for line in text.split(|&b| b == b'\n') {
        for prefix in [&b"verdict-claimed "[..], b"context "] {
            if line.starts_with(prefix) {
                ranges.push(start + prefix.len()..start + line.len());
            }
        }
        start += line.len() + 1;
    }
    assert_eq!(ranges.len(), 2);
    ranges
}

#[test]
fn notes_not_signed_by_the_key_given_are_an_error_not_a_verdict() {
    let stranger = SigningKey::from_seed(ORIGIN, [43; 32]).unwrap();
    for evidence in [fork(), divergent()] {
        assert!(matches!(
            evidence.check(&stranger.verifier_key()),
            Err(EvidenceError::Checkpoint { which: 1, .. })
        ));
    }
    // A fork where one side was signed by someone else proves nothing about the log.
    let forged_note = Checkpoint {
        origin: ORIGIN.into(),
        size: 9,
        root: leaf(7, 7),
    }
    .sign(&stranger);
    let forged = SignedCheckpoint::verify(&forged_note, &stranger.verifier_key()).unwrap();
    let evidence = Evidence::split_view(&Tree::new(1, 9, 9).signed(), &forged, vec![], "");
    let reparsed = Evidence::parse(evidence.to_text().as_bytes()).unwrap();
    assert!(matches!(
        reparsed.check(&vkey()),
        Err(EvidenceError::Checkpoint { .. })
    ));
}

#[test]
fn parsing_is_strict_and_names_the_line() {
    let text = divergent().to_text();
    let line_of = |altered: &str| match Evidence::parse(altered.as_bytes()) {
        Err(EvidenceError::Malformed { line, .. }) => line,
        other => panic!("expected a malformed-file error, got {other:?}"),
    };
    assert_eq!(line_of(&text.replace("evidence v1", "evidence v2")), 1);
    assert_eq!(line_of(&text.replacen("origin ", "origin  ", 1)), 7);
    assert_eq!(line_of(&text.replacen("context ", "context: ", 1)), 4);
    assert_eq!(line_of(&text.replacen("\n\n", "\n \n", 1)), 5);
    assert_eq!(
        line_of(&text.replacen("checkpoint 1 (size 7,", "checkpoint 1 (size 07,", 1)),
        6
    );
    assert_eq!(
        line_of(&text.replacen("checkpoint 2 (size 20,", "checkpoint 2 (size 21,", 1)),
        12
    );
    assert_eq!(line_of(&text.replace(" to size 20 (", " to size 21 (")), 18);
    let trailing = format!("{text}\n");
    let last_line = text.lines().count() + 1;
    assert_eq!(line_of(&trailing), last_line);
    assert_eq!(line_of(&text[..text.len() - 1]), last_line - 1);
    let hash = BASE64.encode(divergent().proof()[0].0);
    assert_eq!(line_of(&text.replace(&hash, &hash.replace('=', ""))), 19);

    let small = Tree::new(1, 7, 7).signed();
    let large = Tree::new(1, 20, 3).signed();
    let by_hand = |first: &SignedCheckpoint, second: &SignedCheckpoint| {
        let (a, b) = (&first.checkpoint, &second.checkpoint);
        format!(
            "tlog split-view evidence v1\norigin {ORIGIN}\nverdict-claimed anything\ncontext \n\n\
             checkpoint 1 (size {}, {} bytes)\n{}checkpoint 2 (size {}, {} bytes)\n{}\
             consistency proof from size {} to size {} (0 hashes)\n",
            a.size,
            first.note.len(),
            first.note_text(),
            b.size,
            second.note.len(),
            second.note_text(),
            a.size,
            b.size
        )
    };
    let in_order = Evidence::parse(by_hand(&small, &large).as_bytes()).unwrap();
    assert!(not_proven(&in_order).contains("malformed"));
    assert_eq!(line_of(&by_hand(&large, &small)), 17);

    let huge = vec![b'x'; MAX_EVIDENCE_BYTES + 1];
    assert!(matches!(
        Evidence::parse(&huge),
        Err(EvidenceError::TooLarge { .. })
    ));
    assert!(matches!(
        Evidence::parse(b"tlog split-view evidence v1\n\xff\n"),
        Err(EvidenceError::Malformed { line: 2, .. })
    ));
}

fn rs_root(seed: u64, size: u64) -> Hash {
    let leaves: Vec<[u8; 32]> = (0..size).map(|i| leaf(seed, i).0).collect();
    Hash(MerkleTree::<Rfc6962>::from_leaves(&leaves).root().unwrap())
}

proptest! {
    #![proptest_config(Config::with_cases(200))]

    /// For every valid proof, `consistency_roots` gives exactly the two
    /// trees' roots; and no single changed hash leaves the new root intact,
    /// which is what makes an implied old root trustworthy.
    #[test]
    fn consistency_roots_match_independently_built_trees(
        (new_size, old_size) in (2..1500u64).prop_flat_map(|n| (Just(n), 1..n)),
        seed: u64,
        which: usize,
        bit: u8,
    ) {
        let tree = Tree::new(seed, new_size, new_size);
        let (old_root, new_root) = (rs_root(seed, old_size), rs_root(seed, new_size));
        prop_assert_eq!(tree.builder.root(), new_root);
        let proof = tree.proof_from(old_size);
        prop_assert_eq!(verify_consistency(&proof, old_size, old_root, new_size, new_root), Ok(()));
        let path = tree.evidence_proof_from(old_size);
        prop_assert_eq!(consistency_roots(&path, old_size, new_size), Ok((old_root, new_root)));

        let mut flipped = path.clone();
        let i = which % flipped.len();
        flipped[i].0[usize::from(bit / 8)] ^= 1 << (bit % 8);
        let (_, implied_new) = consistency_roots(&flipped, old_size, new_size).unwrap();
        prop_assert_ne!(implied_new, new_root);

        if old_size.is_power_of_two() {
            prop_assert_eq!(
                consistency_roots(&proof, old_size, new_size),
                Err(ProofError::ConsistencyShape { old_size, new_size, len: proof.len() })
            );
        }
    }
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]

    /// The parser never panics, and whatever it accepts re-encodes to the
    /// same bytes: random splices into a real file (the inputs a fuzzer
    /// would reach first) are either refused or unchanged in meaning.
    #[test]
    fn whatever_parses_re_encodes_to_the_same_bytes(
        which: bool,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..4usize, proptest::collection::vec(any::<u8>(), 0..4)), 1..4),
    ) {
        let mut text = if which { fork() } else { divergent() }.to_text().into_bytes();
        for (at, removed, inserted) in edits {
            let at = at.index(text.len() + 1);
            let end = (at + removed).min(text.len());
            text.splice(at..end, inserted);
        }
        if let Ok(parsed) = Evidence::parse(&text) {
            prop_assert_eq!(parsed.to_text().into_bytes(), text);
        }
    }
}

/// Where the `verifier` binary may write its test files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("evidence-cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

fn check_evidence(file: &PathBuf, vkey: &str, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verifier"));
    if json {
        command.arg("--json");
    }
    command
        .arg("check-evidence")
        .arg(file)
        .arg("--vkey")
        .arg(vkey)
        .output()
        .unwrap()
}

fn write(name: &str, contents: &[u8]) -> PathBuf {
    let path = scratch(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn cli_reports_proven_misbehaviour_with_exit_1_and_both_notes() {
    let evidence = fork();
    let file = write(&evidence.file_name(), evidence.to_text().as_bytes());
    let key_file = write("log.vkey", format!("{}\n", vkey_string()).as_bytes());
    let output = check_evidence(&file, key_file.to_str().unwrap(), false);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("PROVES MISBEHAVIOUR: fork: two signed checkpoints for size 9"),
        "{err}"
    );
    for note in evidence.notes() {
        assert!(err.contains(note.trim_end()), "{err}");
    }

    let output = check_evidence(&file, &vkey_string(), true);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["security_finding"]
        .as_str()
        .unwrap()
        .starts_with("PROVES MISBEHAVIOUR: fork"));
    assert_eq!(json["evidence"]["checkpoint 2"], evidence.notes()[1]);
}

#[test]
fn cli_says_plainly_when_a_file_proves_nothing() {
    let large = Tree::new(1, 20, 20);
    let honest = Evidence::split_view(
        &Tree::new(1, 7, 7).signed(),
        &large.signed(),
        large.proof_from(7),
        "",
    );
    let file = write("honest.evidence", honest.to_text().as_bytes());
    let output = check_evidence(&file, &vkey_string(), false);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "does not prove misbehaviour: consistent: the proof shows that the tree of size 20 extends the tree of size 7\n"
    );

    let output = check_evidence(&file, &vkey_string(), true);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["proves_misbehaviour"], false);
    assert!(json["reason"].as_str().unwrap().starts_with("consistent"));
}

#[test]
fn cli_cannot_check_a_malformed_file_or_a_wrong_key() {
    let text = divergent().to_text();
    let cases = [
        (
            write("truncated.evidence", &text.as_bytes()[..text.len() / 2]),
            vkey_string(),
            "line ",
        ),
        (
            write("right.evidence", text.as_bytes()),
            SigningKey::from_seed(ORIGIN, [1; 32])
                .unwrap()
                .verifier_key()
                .to_string(),
            "does not verify under the log key",
        ),
        (scratch("missing.evidence"), vkey_string(), "cannot read"),
    ];
    for (file, key, expected) in cases {
        let output = check_evidence(&file, &key, false);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(stdout(&output).is_empty());
    }
}

fn vkey_string() -> String {
    vkey().to_string()
}
