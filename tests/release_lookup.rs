//! End-to-end: lookups by artifact digest, flow id and submitter, and `verifier check-release`.

use prost::Message as _;
use std::path::Path;
use tlog_e2e::{append_mixed, code_release, release_event, reviewer, run_verifier, LogServer};
use tonic::Code;
use verifier::checkpoint::SignedCheckpoint;
use verifier::event::{decode_entry, sign_event};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, verify_inclusion, Hash};
use verifier::proto::{
    append_result, event::Kind, find_entries_request::Key, AppendBatchRequest, Event,
    FindEntriesRequest, FindEntriesResponse,
};

/// Checks every result's leaf hash and inclusion proof against the
/// response's checkpoint, verified under the log's key, and returns the
/// results' (index, decoded event, submitter key id).
fn verified(response: &FindEntriesResponse, log_key: &VerifierKey) -> Vec<(u64, Event, String)> {
    let signed = SignedCheckpoint::verify(response.checkpoint.as_bytes(), log_key)
        .expect("the checkpoint is signed by the log");
    assert_eq!(signed.checkpoint.size, response.tree_size);
    response
        .entries
        .iter()
        .map(|found| {
            let leaf = leaf_hash(&found.data);
            assert_eq!(found.leaf_hash, leaf.0, "entry {}", found.index);
            let proof: Vec<Hash> = found
                .inclusion_proof
                .iter()
                .map(|h| Hash(h.as_slice().try_into().expect("32-byte proof hash")))
                .collect();
            verify_inclusion(
                &proof,
                found.index,
                response.tree_size,
                leaf,
                signed.checkpoint.root,
            )
            .expect("the inclusion proof verifies");
            let signed_event = decode_entry(&found.data).unwrap().signed_event.unwrap();
            let event = Event::decode(signed_event.event.as_slice()).unwrap();
            (found.index, event, signed_event.key_id)
        })
        .collect()
}

fn find(key: Key) -> FindEntriesRequest {
    FindEntriesRequest {
        key: Some(key),
        ..FindEntriesRequest::default()
    }
}

#[tokio::test]
async fn lookups_by_each_key_return_proven_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(dir.path(), &[]);
    let submitter = server.submitter_key();
    let log_key = server.log_key();
    append_mixed(&server, &submitter, 0..20).await;
    let mut client = server.client().await;

    let release = code_release(9, &reviewer());
    let Some(Kind::CodeRelease(wanted)) = &release.kind else {
        unreachable!("code_release builds a release")
    };
    let by_artifact = client
        .find_entries(find(Key::ArtifactSha256(wanted.artifact_sha256.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_artifact.tree_size, 20);
    let found = verified(&by_artifact, &log_key);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, release);

    let by_flow = client
        .find_entries(find(Key::FlowId("nightly-export-3".into())))
        .await
        .unwrap()
        .into_inner();
    let found = verified(&by_flow, &log_key);
    assert_eq!(found.len(), 1);
    let Some(Kind::DataFlow(flow)) = &found[0].1.kind else {
        panic!("the flow lookup returned {:?}", found[0].1)
    };
    assert_eq!(flow.flow_id, "nightly-export-3");

    let mut by_submitter = Vec::new();
    let mut start_index = 0;
    loop {
        let page = client
            .find_entries(FindEntriesRequest {
                start_index,
                limit: 7,
                ..find(Key::SubmitterKeyId(submitter.key_id()))
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 7);
        by_submitter.extend(verified(&page, &log_key));
        if page.next_start_index == 0 {
            break;
        }
        start_index = page.next_start_index;
    }
    let indexes: Vec<u64> = by_submitter.iter().map(|(index, _, _)| *index).collect();
    assert_eq!(indexes, (0..20).collect::<Vec<_>>());
    assert!(by_submitter
        .iter()
        .all(|(_, _, key_id)| *key_id == submitter.key_id()));

    for unknown in [
        Key::ArtifactSha256(vec![0xee; 32]),
        Key::FlowId("nightly-export-99".into()),
        Key::SubmitterKeyId("nobody.example+01234567".into()),
    ] {
        let answer = client.find_entries(find(unknown.clone())).await.unwrap();
        assert!(answer.into_inner().entries.is_empty(), "{unknown:?}");
    }

    for (malformed, field) in [
        (Key::ArtifactSha256(vec![0xee; 31]), "artifact_sha256:"),
        (Key::FlowId(String::new()), "flow_id:"),
        (
            Key::SubmitterKeyId("not a key id".into()),
            "submitter_key_id:",
        ),
    ] {
        let status = client.find_entries(find(malformed)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
}

/// A stable release of `digest` as `version`, with one attestation per
/// (reviewer, digest it signs).
fn release(digest: &[u8; 32], version: &str, attestations: &[(&SigningKey, &[u8; 32])]) -> Event {
    let attestations: Vec<_> = attestations.iter().map(|(r, d)| (*r, **d)).collect();
    release_event(version, *digest, "stable", &attestations)
}

/// SHA-256("abc"), from FIPS 180-2 appendix B.1.
const SHA256_ABC: [u8; 32] = [
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
];

fn write_policy(dir: &Path, reviewers: [&SigningKey; 2], submitter: &SigningKey) -> String {
    let [a, b] = reviewers.map(|r| r.verifier_key().to_string());
    let policy = format!(
        r#"
[data_residency.eu_user_data]
regions = ["EU", "IE"]

[release]
reviewers = ["{a}", "{b}"]
quorum = 2
channels = ["stable"]
one_version_per_digest = true

[submitters]
"{}" = ["code_release", "data_flow"]
"#,
        submitter.key_id()
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn check_release_approves_only_what_the_policy_backs() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(&dir.path().join("log"), &[]);
    let submitter = server.submitter_key();
    let a = SigningKey::from_seed("reviewer-a.example", [1; 32]).unwrap();
    let b = SigningKey::from_seed("reviewer-b.example", [2; 32]).unwrap();
    let stranger = SigningKey::from_seed("stranger.example", [3; 32]).unwrap();
    let policy = write_policy(dir.path(), [&a, &b], &submitter);

    // The artifact is "abc", whose SHA-256 is the FIPS 180-2 test vector,
    // so the digest the command computes is checked against a known value.
    let artifact = dir.path().join("example-app.apk");
    std::fs::write(&artifact, b"abc").unwrap();
    let reviewed = SHA256_ABC;
    let too_few = [0x11; 32];
    let by_stranger = [0x22; 32];
    let other_digest = [0x33; 32];
    let unlogged = [0x44; 32];
    let events = [
        release(&reviewed, "4.1.0", &[(&a, &reviewed), (&b, &reviewed)]),
        release(&too_few, "4.2.0", &[(&a, &too_few)]),
        release(
            &by_stranger,
            "4.3.0",
            &[(&a, &by_stranger), (&stranger, &by_stranger)],
        ),
        release(
            &other_digest,
            "4.4.0",
            &[(&a, &other_digest), (&b, &reviewed)],
        ),
    ];
    let results = server
        .client()
        .await
        .append_batch(AppendBatchRequest {
            events: events.iter().map(|e| sign_event(&submitter, e)).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Some(append_result::Result::Appended(_)))));

    let vkey = server.data_dir.join("log.vkey");
    let check = |artifact: &str, policy: &str| {
        run_verifier(&[
            "check-release",
            artifact,
            "--log",
            &server.url(),
            "--vkey",
            vkey.to_str().unwrap(),
            "--policy",
            policy,
        ])
    };

    let approved = check(artifact.to_str().unwrap(), &policy);
    assert_eq!(approved.code, Some(0), "{approved:?}");
    assert!(
        approved.stdout.contains(&format!(
            "approved: sha256:{}",
            verifier::hex::encode(&reviewed)
        )),
        "{}",
        approved.stdout
    );
    assert!(approved
        .stdout
        .contains("entry 0: example-app-android 4.1.0 on channel stable"));
    assert!(approved
        .stdout
        .contains(&format!("{}, {}", a.key_id(), b.key_id())));
    assert!(approved.stdout.contains("tree of size 4"));
    let by_digest = check(
        &format!("sha256:{}", verifier::hex::encode(&reviewed)),
        &policy,
    );
    assert_eq!(by_digest.code, Some(0), "{by_digest:?}");

    for (digest, why) in [
        (unlogged, "no release of it is logged".to_owned()),
        (too_few, "release.quorum: 1 of the 2".to_owned()),
        (
            by_stranger,
            format!(
                "release.unknown_reviewer: attestation by {}",
                stranger.key_id()
            ),
        ),
        (
            other_digest,
            format!(
                "release.attestation: {}'s attestation does not verify",
                b.key_id()
            ),
        ),
    ] {
        let refused = check(
            &format!("sha256:{}", verifier::hex::encode(&digest)),
            &policy,
        );
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(
            refused.stderr.contains(&format!(
                "sha256:{} is not approved",
                verifier::hex::encode(&digest)
            )),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains(&why), "{why}: {}", refused.stderr);
    }

    let bad_policy = dir.path().join("bad.toml");
    std::fs::write(&bad_policy, "[release]\nquorum = \"two\"\n").unwrap();
    let unreadable = check(artifact.to_str().unwrap(), bad_policy.to_str().unwrap());
    assert_eq!(unreadable.code, Some(2), "{unreadable:?}");
    assert!(
        unreadable.stderr.contains("line 2"),
        "{}",
        unreadable.stderr
    );
    assert_eq!(unreadable.stderr.trim_end().lines().count(), 1);

    let url = server.url();
    drop(server);
    let unreachable = run_verifier(&[
        "check-release",
        artifact.to_str().unwrap(),
        "--log",
        &url,
        "--vkey",
        vkey.to_str().unwrap(),
        "--policy",
        &policy,
    ]);
    assert_eq!(unreachable.code, Some(2), "{unreachable:?}");
}
