//! `verifier keygen`, `submit` and `verify-bundle`, run as real processes
//! against a real `log-server` on a loopback port.

use std::path::{Path, PathBuf};
use tlog_e2e::{http_get, run_verifier, run_verifier_with_input, LogServer, Run};
use verifier::bundle::ProofBundle;
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::leaf_hash;
use verifier::tiles::decode_entry_bundle;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/events")
        .join(name)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `verifier submit` to `server`, signing with the key file `key` and
/// checking answers with the log verifier key `vkey` (inline or a file).
fn submit_with(server: &LogServer, key: &Path, vkey: &str, extra: &[&str]) -> Run {
    let url = server.url();
    let mut args = vec!["submit", "--log", &url, "--key", text(key), "--vkey", vkey];
    args.extend(extra);
    run_verifier(&args)
}

/// `verifier submit` to `server` as its operator.
fn submit(server: &LogServer, extra: &[&str]) -> Run {
    let vkey = server.data_dir.join("log.vkey");
    submit_with(
        server,
        &server.data_dir.join("submitter.key"),
        text(&vkey),
        extra,
    )
}

/// The size line of the log's current checkpoint.
fn log_size(server: &LogServer) -> u64 {
    let note = http_get(server.addr, "/checkpoint").body;
    let note = String::from_utf8(note).expect("a UTF-8 checkpoint");
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("a size line")
}

/// A data-flow event in JSON, distinct for each `n`.
fn flow_json(n: u64) -> String {
    format!(
        concat!(
            r#"{{"occurredAt": "2026-11-20T02:{:02}:00Z", "dataFlow": {{"#,
            r#""flowId": "stream-{}", "dataCategory": "eu_user_data", "#,
            r#""source": {{"system": "crm", "dataCentre": "fra-1", "region": "DE"}}, "#,
            r#""destination": {{"system": "warehouse", "dataCentre": "dub-1", "#,
            r#""region": "IE", "organisation": "Example Analytics Ltd"}}, "#,
            r#""purpose": "analytics", "legalBasis": "consent", "recordCount": {}}}}}"#,
        ),
        n % 60,
        n,
        n + 1
    )
}

#[test]
fn keygen_writes_a_private_key_file_and_refuses_to_overwrite_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pipeline.key");
    let args = ["keygen", "--name", "pipeline.example", "--out", text(&out)];
    let run = run_verifier(&args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let printed = VerifierKey::parse(run.stdout.trim()).expect("the verifier key line");
    let written = std::fs::read_to_string(&out).unwrap();
    let key = SigningKey::parse(&written).expect("a signer key file");
    assert_eq!(key.verifier_key(), printed);
    assert_eq!(key.name(), "pipeline.example");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = run_verifier(&args);
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(again.stderr.lines().count(), 1, "{again:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), written);

    let other = dir.path().join("other.key");
    let json = run_verifier(&["--json", "keygen", "--name", "r", "--out", text(&other)]);
    assert_eq!(json.code, Some(0), "{json:?}");
    let key = SigningKey::parse(&std::fs::read_to_string(&other).unwrap()).unwrap();
    for field in [
        format!(r#""key_id":"{}""#, key.key_id()),
        format!(r#""verifier_key":"{}""#, key.verifier_key()),
        format!(r#""file":"{}""#, text(&other)),
    ] {
        assert!(json.stdout.contains(&field), "{field} in {json:?}");
    }
}

#[test]
fn submitting_the_example_events_prints_verified_results() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let mut printed = Vec::new();
    for (i, name) in ["eu-to-eu-flow.json", "unreviewed-release.json"]
        .iter()
        .enumerate()
    {
        let run = submit(&server, &[text(&example(name))]);
        assert_eq!(run.code, Some(0), "{name}: {run:?}");
        let line = run.stdout.trim();
        let (start, rest) = line.split_once("leaf hash ").unwrap();
        assert_eq!(start, format!("line 1: index {i}, "), "{line}");
        let (leaf, end) = rest.split_once(',').unwrap();
        assert_eq!(end, format!(" tree size {}: ok", i + 1), "{line}");
        printed.push(leaf.to_owned());
    }
    // Standard input works too, and the third example lands at index 2.
    let input = std::fs::read(example("eu-to-us-flow.json")).unwrap();
    let key = server.data_dir.join("submitter.key");
    let vkey = server.data_dir.join("log.vkey");
    let url = server.url();
    let args = ["submit", "--log", &url, "--key", text(&key)];
    let run = run_verifier_with_input(&[&args[..], &["--vkey", text(&vkey), "-"]].concat(), &input);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("line 1: index 2, "), "{run:?}");

    // The printed leaf hashes are those of the entries the tiles serve.
    let bundle = http_get(server.addr, "/tile/entries/000.p/3").body;
    let entries = decode_entry_bundle(&bundle).unwrap();
    for (entry, leaf) in entries.iter().zip(&printed) {
        assert_eq!(&leaf_hash(entry).to_string(), leaf);
    }

    // Resubmitting is answered with the original index, marked duplicate.
    let again = submit(&server, &[text(&example("eu-to-eu-flow.json"))]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.starts_with("line 1: index 0, "), "{again:?}");
    assert!(
        again.stdout.trim_end().ends_with("ok (duplicate)"),
        "{again:?}"
    );
    assert_eq!(log_size(&server), 3);
}

#[test]
fn a_json_lines_stream_of_50_events_is_appended_and_verified() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let file = data.path().join("events.jsonl");
    let lines: Vec<String> = (0..50).map(flow_json).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    for duplicate in [false, true] {
        let run = submit(&server, &[text(&file)]);
        assert_eq!(run.code, Some(0), "{run:?}");
        let printed: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(printed.len(), 50, "{run:?}");
        for (n, line) in printed.iter().enumerate() {
            let prefix = format!("line {}: index {n}, leaf hash ", n + 1);
            assert!(line.starts_with(&prefix), "{line}");
            let suffix = if duplicate {
                ": ok (duplicate)"
            } else {
                ": ok"
            };
            assert!(line.ends_with(suffix), "{line}");
        }
    }
    assert_eq!(log_size(&server), 50);
}

/// Flips one bit of `bytes` at `offset`, asserting it is one bit.
fn flip(bytes: &[u8], offset: usize, mask: u8) -> Vec<u8> {
    assert_eq!(mask.count_ones(), 1);
    let mut flipped = bytes.to_vec();
    flipped[offset] ^= mask;
    flipped
}

/// The offset of the first line of `bytes` that starts with `prefix`.
fn line_start(bytes: &[u8], prefix: &str) -> usize {
    let mut offset = 0;
    for line in bytes.split(|&b| b == b'\n') {
        if line.starts_with(prefix.as_bytes()) {
            return offset;
        }
        offset += line.len() + 1;
    }
    panic!("no line starts with {prefix:?}")
}

/// The offset of the first ASCII letter at or after byte `skip` of the
/// first line starting with `prefix`. Swapping a letter's case (bit 0x20)
/// inside base64 gives another valid base64 character, so such a flip
/// reaches the verification, not just the parser.
fn letter_in_line(bytes: &[u8], prefix: &str, skip: usize) -> usize {
    (line_start(bytes, prefix) + skip..)
        .find(|&i| bytes[i].is_ascii_alphabetic())
        .expect("a letter")
}

#[test]
fn a_bundle_verifies_offline_and_one_flipped_bit_is_caught() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let first_two = [
        example("eu-to-eu-flow.json"),
        example("unreviewed-release.json"),
    ]
    .iter()
    .map(|p| std::fs::read_to_string(p).unwrap())
    .collect::<String>();
    let first_two_file = data.path().join("first-two.json");
    std::fs::write(&first_two_file, first_two).unwrap();
    assert_eq!(submit(&server, &[text(&first_two_file)]).code, Some(0));
    let bundle_file = data.path().join("flow.tlog-proof");
    let run = submit(
        &server,
        &[
            "--bundle",
            text(&bundle_file),
            text(&example("eu-to-us-flow.json")),
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("proof bundle saved to"), "{run:?}");
    let log_key = server.log_key();
    let vkey = server.data_dir.join("log.vkey");
    let origin = log_key.name().to_owned();
    server.kill();

    // Offline: the server is gone.
    let verify = |path: &Path| run_verifier(&["verify-bundle", text(path), "--vkey", text(&vkey)]);
    let ok = verify(&bundle_file);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(
        ok.stdout.starts_with(&format!(
            "verified: entry 2 is in the tree of size 3 of {origin}"
        )),
        "{ok:?}"
    );
    assert!(ok.stdout.contains("submitted by operator+"), "{ok:?}");
    assert!(ok.stdout.contains("data_flow event"), "{ok:?}");
    let json = run_verifier(&[
        "--json",
        "verify-bundle",
        text(&bundle_file),
        "--vkey",
        text(&vkey),
    ]);
    assert_eq!(json.code, Some(0), "{json:?}");
    assert!(
        json.stdout.contains(r#""event_kind":"data_flow""#),
        "{json:?}"
    );
    assert!(json.stdout.contains(r#""index":2"#), "{json:?}");

    let good = std::fs::read(&bundle_file).unwrap();
    let parsed = ProofBundle::parse(&good).unwrap();
    assert_eq!(
        parsed.proof.len(),
        1,
        "index 2 of a tree of 3 has one proof hash"
    );
    let note_start = good.len() - parsed.checkpoint_note.len();
    let proof_line = String::from_utf8_lossy(&good).lines().nth(3).unwrap()[..8].to_owned();
    let note = String::from_utf8(parsed.checkpoint_note.clone()).unwrap();
    let root_line = note.lines().nth(2).unwrap()[..8].to_owned();
    let fails_inclusion = "inclusion proof for index 2 does not match the root";
    let fails_signature = "checkpoint does not verify: invalid signature by the log key";
    let attacks = [
        (
            "a bit of the entry",
            flip(&good, letter_in_line(&good, "extra ", 100), 0x20),
            fails_inclusion,
        ),
        (
            "a bit of the index",
            flip(&good, line_start(&good, "index ") + 6, 0x01),
            "index 3 is outside a tree of size 3",
        ),
        (
            "a bit of the proof hash",
            flip(&good, letter_in_line(&good, &proof_line, 10), 0x20),
            fails_inclusion,
        ),
        (
            "a bit of the checkpoint's size",
            flip(&good, note_start + origin.len() + 1, 0x01),
            fails_signature,
        ),
        (
            "a bit of the checkpoint's root",
            flip(&good, letter_in_line(&good, &root_line, 10), 0x20),
            fails_signature,
        ),
        (
            "a bit of the checkpoint signature",
            flip(&good, letter_in_line(&good, "\u{2014} ", 40), 0x20),
            fails_signature,
        ),
        (
            "a bit that breaks the entry's base64",
            flip(&good, letter_in_line(&good, "extra ", 50), 0x80),
            "damaged tlog-proof bundle: line 2",
        ),
        (
            "a bit of the blank line",
            flip(&good, note_start - 1, 0x40),
            "damaged tlog-proof bundle: line 5",
        ),
    ];
    for (what, bytes, reason) in attacks {
        let path = data.path().join("attacked.tlog-proof");
        std::fs::write(&path, &bytes).unwrap();
        let run = verify(&path);
        assert_eq!(run.code, Some(1), "{what}: {run:?}");
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("verifier: SECURITY FINDING: the proof bundle")
                && first.contains(reason),
            "{what}: {run:?}"
        );
    }

    // The right bundle under another key with the log's name.
    let stranger = SigningKey::generate(&origin)
        .unwrap()
        .verifier_key()
        .to_string();
    let run = run_verifier(&["verify-bundle", text(&bundle_file), "--vkey", &stranger]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("no signature by the log key"),
        "{run:?}"
    );

    // Not a bundle at all, an empty file, a missing file: the check could
    // not be made. A flip in the header line makes the file unrecognisable.
    let header_flip = data.path().join("header.tlog-proof");
    std::fs::write(&header_flip, flip(&good, 0, 0x01)).unwrap();
    let empty = data.path().join("empty.tlog-proof");
    std::fs::write(&empty, b"").unwrap();
    for path in [
        header_flip,
        empty,
        vkey.clone(),
        data.path().join("missing"),
    ] {
        let run = verify(&path);
        assert_eq!(run.code, Some(2), "{}: {run:?}", path.display());
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
}

#[test]
fn malformed_events_are_refused_naming_the_line_and_field_and_nothing_is_appended() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let good = flow_json(0);
    let cases = [
        (
            good.replace(r#""region": "DE""#, r#""regoin": "DE""#),
            "line 2: dataFlow.source.regoin: unknown field `regoin`",
        ),
        (
            good.replace(r#""recordCount": 1"#, r#""recordCount": "ten""#),
            "line 2: dataFlow.recordCount: invalid value: string \"ten\"",
        ),
        (
            good.replace(r#""region": "IE""#, r#""region": "Ireland""#),
            "line 2: invalid event.data_flow.destination.region",
        ),
        (
            good.replace("2026-11-20T02:00:00Z", "2026-11-20 02:00"),
            "line 2: occurredAt: \"2026-11-20 02:00\" is not an RFC 3339 UTC time",
        ),
        (
            good.replace(r#""stream-0""#, "stream-0"),
            "line 2: not JSON: expected value",
        ),
    ];
    for (bad, expected) in cases {
        let file = data.path().join("events.jsonl");
        std::fs::write(
            &file,
            format!("{}\n{bad}\n{}\n", flow_json(1), flow_json(2)),
        )
        .unwrap();
        let run = submit(&server, &[text(&file)]);
        assert_eq!(run.code, Some(2), "{bad}: {run:?}");
        let message = run
            .stderr
            .strip_prefix("verifier: could not check: ")
            .unwrap_or_default();
        assert!(message.starts_with(expected), "{bad}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    }
    assert_eq!(log_size(&server), 0, "a bad line stops the whole input");
}

#[test]
fn a_key_not_on_the_allowlist_is_refused_with_the_servers_message() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let stranger = data.path().join("stranger.key");
    let made = run_verifier(&["keygen", "--name", "stranger", "--out", text(&stranger)]);
    assert_eq!(made.code, Some(0), "{made:?}");
    let key_id = SigningKey::parse(&std::fs::read_to_string(&stranger).unwrap())
        .unwrap()
        .key_id();
    let two = data.path().join("two.jsonl");
    std::fs::write(&two, format!("{}\n{}\n", flow_json(0), flow_json(1))).unwrap();
    let vkey = server.data_dir.join("log.vkey");
    for (input, refused) in [(example("eu-to-eu-flow.json"), "1 of 1"), (two, "2 of 2")] {
        let run = submit_with(&server, &stranger, text(&vkey), &[text(&input)]);
        assert_eq!(run.code, Some(2), "{run:?}");
        let expected = [
            format!("line 1: the log refused the event (PermissionDenied): key_id: {key_id} "),
            format!("is not on the log's submitter allowlist; {refused} events refused, "),
            "none was appended\n".to_owned(),
        ]
        .concat();
        assert!(run.stderr.ends_with(&expected), "{run:?}");
    }
    assert_eq!(log_size(&server), 0);
}

#[test]
fn an_answer_that_does_not_verify_under_the_log_key_is_a_security_finding() {
    let data = tempfile::tempdir().unwrap();
    let server = LogServer::start(data.path(), &[]);
    let impostor = SigningKey::generate(server.log_key().name()).unwrap();
    let vkey = impostor.verifier_key().to_string();
    let key = server.data_dir.join("submitter.key");
    let run = submit_with(
        &server,
        &key,
        &vkey,
        &[text(&example("eu-to-eu-flow.json"))],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let expected = "verifier: SECURITY FINDING: line 1: the log's answer for index 0: \
                    its checkpoint does not verify";
    assert!(run.stderr.starts_with(expected), "{run:?}");
    assert!(run.stderr.contains("--- checkpoint ---"), "{run:?}");
}
