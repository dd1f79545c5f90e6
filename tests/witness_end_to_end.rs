//! End-to-end: two `verifier witness` processes cosign the log's checkpoints.
//!
//! Issue 5's acceptance, with real processes on loopback: a log configured
//! with two witnesses serves checkpoints carrying both cosignatures, which
//! `verifier checkpoint --quorum 2` accepts, and `verifier submit
//! --witness` proves against and bundles; the live witness refuses
//! rolled-back and forked checkpoints signed with the log's own key; and
//! once one witness is stopped, appends go on, the served checkpoint still
//! advances with the other's cosignature, and a client asking for both
//! cosignatures gets exit code 1 while one asking for one gets 0.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use tlog_e2e::{
    append_mixed, http_get, log_server_refuses, mixed_event, reviewer, run_verifier,
    run_verifier_with_input, Daemon, LogServer, Run,
};
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::cosignature::{verify_witnessed, CosignatureError, CosignerVerifierKey};
use verifier::event::sign_event;
use verifier::keys::SigningKey;
use verifier::merkle::leaf_hash;
use verifier::proto::AppendRequest;
use verifier::witness_protocol::{parse_size, AddCheckpointRequest};

const ORIGIN: &str = "log.example/witnessed";

/// Writes a witness key with `verifier keygen --cosigner` and returns the
/// cosigner verifier key it printed.
/// One data-flow event as `verifier submit` reads it.
const FLOW_JSON: &str = concat!(
    r#"{"occurredAt": "2026-11-20T02:00:00Z", "dataFlow": {"#,
    r#""flowId": "witnessed-1", "dataCategory": "eu_user_data", "#,
    r#""source": {"system": "crm", "dataCentre": "fra-1", "region": "DE"}, "#,
    r#""destination": {"system": "warehouse", "dataCentre": "dub-1", "#,
    r#""region": "IE", "organisation": "Example Analytics Ltd"}, "#,
    r#""purpose": "analytics", "legalBasis": "consent", "recordCount": 1}}"#,
);

fn witness_key(dir: &Path, name: &str) -> CosignerVerifierKey {
    let out = dir.join(format!("{name}.key"));
    let run = run_verifier(&[
        "keygen",
        "--name",
        &format!("witness.example/{name}"),
        "--out",
        out.to_str().unwrap(),
        "--cosigner",
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
    CosignerVerifierKey::parse(run.stdout.trim()).expect("keygen prints a cosigner key")
}

/// Starts `verifier witness` for the log whose verifier key is in `log_vkey`.
fn start_witness(dir: &Path, name: &str, log_vkey: &Path) -> Daemon {
    let state = dir.join(format!("{name}-state"));
    std::fs::create_dir_all(&state).unwrap();
    Daemon::start(
        "verifier",
        &[
            "witness",
            "--key",
            dir.join(format!("{name}.key")).to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--log",
            log_vkey.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    )
}

/// Polls `GET /checkpoint` until the served checkpoint is for `size` and
/// carries valid cosignatures by at least `quorum` of `witnesses`, and
/// returns its note. Any other failure to verify ends the test at once.
async fn wait_for_witnessed(
    log: &LogServer,
    size: u64,
    witnesses: &[CosignerVerifierKey],
    quorum: usize,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http_get(log.addr, "/checkpoint");
        assert_eq!(response.status, 200);
        let note = String::from_utf8(response.body).expect("a UTF-8 note");
        match verify_witnessed(note.as_bytes(), &log.log_key(), witnesses, quorum) {
            Ok(witnessed) => {
                let served = witnessed.checkpoint.checkpoint.size;
                assert!(served <= size, "served {served}, beyond {size}:\n{note}");
                if served == size {
                    return note;
                }
            }
            Err(CosignatureError::QuorumNotReached { .. }) => {}
            Err(e) => panic!("the served checkpoint does not verify: {e}\n{note}"),
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint for size {size} with {quorum} cosignature(s) within 60 s; last:\n{note}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP/1.1 POST, answered with its status and body.
fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connecting for HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("setting a read timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("sending the head");
    stream.write_all(body).expect("sending the body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "a witness answer is small enough for a Content-Length"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, raw[split + 4..].to_vec())
}

/// POSTs an `add-checkpoint` request to `witness`.
fn add_checkpoint(witness: &Daemon, old_size: u64, note: &[u8]) -> (u16, Vec<u8>) {
    let request = AddCheckpointRequest::new(old_size, vec![], note.to_vec()).unwrap();
    http_post(witness.addr, "/add-checkpoint", &request.to_body())
}

fn checkpoint_with_witnesses(
    log: &LogServer,
    witnesses: &[&CosignerVerifierKey],
    quorum: usize,
) -> Run {
    let vkey = log.data_dir.join("log.vkey");
    let mut args = vec![
        "checkpoint".to_owned(),
        "--log".to_owned(),
        log.url(),
        "--vkey".to_owned(),
        vkey.to_str().unwrap().to_owned(),
    ];
    for witness in witnesses {
        args.extend(["--witness".to_owned(), witness.to_string()]);
    }
    args.extend(["--quorum".to_owned(), quorum.to_string()]);
    run_verifier(&args)
}

#[tokio::test]
async fn two_witnesses_cosign_and_a_stopped_one_only_lowers_the_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("log");
    // The witnesses need the log's key, and the log their addresses: create
    // the log first, then start the witnesses, then serve with them.
    assert!(LogServer::start(&data, &["--origin", ORIGIN])
        .interrupt()
        .success());
    let log_vkey = data.join("log.vkey");
    let (key_a, key_b) = (witness_key(tmp.path(), "a"), witness_key(tmp.path(), "b"));
    let witness_a = start_witness(tmp.path(), "a", &log_vkey);
    let witness_b = start_witness(tmp.path(), "b", &log_vkey);

    let broken = tmp.path().join("broken-witnesses");
    std::fs::write(&broken, format!("# ours\n{key_a}\n")).unwrap();
    let (status, stderr) = log_server_refuses(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--witnesses",
        broken.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: ", broken.display())),
        "{stderr}"
    );

    std::fs::write(
        data.join("witnesses"),
        format!(
            "# The witnesses of {ORIGIN}.\n{key_a} {}\n{key_b} {}\n",
            witness_a.url(),
            witness_b.url()
        ),
    )
    .unwrap();
    let log = LogServer::start(&data, &[]);
    let submitter = log.submitter_key();
    let both = [key_a.clone(), key_b.clone()];

    append_mixed(&log, &submitter, 0..25).await;
    let old_note = log
        .client()
        .await
        .append(AppendRequest {
            event: Some(sign_event(&submitter, &mixed_event(25, &reviewer()))),
        })
        .await
        .expect("Append")
        .into_inner()
        .checkpoint;
    append_mixed(&log, &submitter, 26..40).await;
    let note = wait_for_witnessed(&log, 40, &both, 2).await;
    let witnessed = verify_witnessed(note.as_bytes(), &log.log_key(), &both, 2).unwrap();
    assert_eq!(witnessed.cosignatures.len(), 2);
    let run = checkpoint_with_witnesses(&log, &[&key_a, &key_b], 2);
    assert_eq!(run.code, Some(0), "{run:?}");

    // `submit --witness` proves its event against a witnessed checkpoint,
    // and the bundle it saves carries both cosignatures.
    let bundle = tmp.path().join("witnessed.tlog-proof");
    let witness_flags = [
        "--witness".to_owned(),
        key_a.to_string(),
        "--witness".to_owned(),
        key_b.to_string(),
        "--quorum".to_owned(),
        "2".to_owned(),
    ];
    let mut submit = vec![
        "submit".to_owned(),
        "--log".to_owned(),
        log.url(),
        "--key".to_owned(),
        data.join("submitter.key").display().to_string(),
        "--vkey".to_owned(),
        log_vkey.display().to_string(),
        "--bundle".to_owned(),
        bundle.display().to_string(),
    ];
    submit.extend(witness_flags.iter().cloned());
    let run = run_verifier_with_input(&submit, FLOW_JSON.as_bytes());
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut verify = vec![
        "verify-bundle".to_owned(),
        bundle.display().to_string(),
        "--vkey".to_owned(),
        log_vkey.display().to_string(),
    ];
    verify.extend(witness_flags.iter().cloned());
    let run = run_verifier(&verify);
    assert_eq!(run.code, Some(0), "{run:?}");
    let stranger = witness_key(tmp.path(), "stranger");
    let run = run_verifier(&[
        "verify-bundle".to_owned(),
        bundle.display().to_string(),
        "--vkey".to_owned(),
        log_vkey.display().to_string(),
        "--witness".to_owned(),
        stranger.to_string(),
    ]);
    assert_eq!(run.code, Some(1), "an unlisted cosigner's quorum: {run:?}");

    // The live witness refuses what the log's own key signs but contradicts
    // what it cosigned: an older checkpoint, and another tree of size 41.
    let (status, body) = add_checkpoint(&witness_a, 0, old_note.as_bytes());
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(parse_size(&body), Ok(41), "the witness names its size");
    let (status, _) = add_checkpoint(&witness_a, 41, old_note.as_bytes());
    assert_eq!(status, 400, "an old size beyond the checkpoint's");
    let log_key = SigningKey::parse(&std::fs::read_to_string(data.join("log.key")).unwrap())
        .expect("the log's signing key");
    let fork = |size: u64| {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: leaf_hash(b"another history"),
        }
        .sign(&log_key)
    };
    let (status, body) = add_checkpoint(&witness_a, 41, &fork(41));
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let (status, _) = add_checkpoint(&witness_a, 41, &fork(42));
    assert_eq!(status, 422, "a larger tree without a valid proof");

    witness_b.kill();
    let started = Instant::now();
    append_mixed(&log, &submitter, 41..61).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "appends waited for the witnesses: {took:?}"
    );
    let note = wait_for_witnessed(&log, 61, std::slice::from_ref(&key_a), 1).await;
    assert!(
        matches!(
            verify_witnessed(note.as_bytes(), &log.log_key(), &both, 2),
            Err(CosignatureError::QuorumNotReached { valid: 1, .. })
        ),
        "only the live witness cosigned size 61:\n{note}"
    );
    SignedCheckpoint::verify(note.as_bytes(), &log.log_key()).expect("still the log's checkpoint");

    let run = checkpoint_with_witnesses(&log, &[&key_a, &key_b], 2);
    assert_eq!(run.code, Some(1), "{run:?}");
    let run = checkpoint_with_witnesses(&log, &[&key_a, &key_b], 1);
    assert_eq!(run.code, Some(0), "{run:?}");
}
