//! End-to-end: `verifier policy` over the example policy and events, with
//! reviewer and submitter keys generated here. Every rule gets at least one
//! passing and one failing entry; the report must list exactly the planted
//! incidents, each with a bundle that verifies offline and fails once a
//! byte is flipped; a second run resumes and finds nothing new.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tlog_e2e::{data_flow, release_event, run_verifier, LogServer, Run};
use verifier::event::sign_event;
use verifier::keys::SigningKey;
use verifier::proto::{event::Kind, AppendRequest, Event};

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The keys of one test: submitters and reviewers.
struct Keys {
    etl: SigningKey,
    release: SigningKey,
    /// Accepted by the log, unknown to the policy.
    intruder: SigningKey,
    reviewer_a: SigningKey,
    reviewer_b: SigningKey,
    /// Not a reviewer in the policy.
    stranger: SigningKey,
}

impl Keys {
    fn generate() -> Self {
        let key = |name: &str| SigningKey::generate(name).unwrap();
        Self {
            etl: key("etl-pipeline.example"),
            release: key("release-pipeline.example"),
            intruder: key("intruder.example"),
            reviewer_a: key("reviewer-a.example"),
            reviewer_b: key("reviewer-b.example"),
            stranger: key("reviewer-c.example"),
        }
    }

    /// examples/policy.toml with this test's reviewer and submitter keys.
    fn policy(&self) -> String {
        let example = std::fs::read_to_string(example("policy.toml")).unwrap();
        let replaced = [
            (
                "reviewer-a.example+9061ac8c+AYAKz21PubD1PYoq3XYG72THuBhmAmw3sEwQ9MJS7BeY",
                self.reviewer_a.verifier_key().to_string(),
            ),
            (
                "reviewer-b.example+de0a8dbb+AS/tei12pNSBM2aNZAdTkeqQiv4EHRHLR8G+4dbpg9id",
                self.reviewer_b.verifier_key().to_string(),
            ),
            ("etl-pipeline.example+0a08733f", self.etl.key_id()),
            ("release-pipeline.example+e73ccc49", self.release.key_id()),
        ]
        .iter()
        .fold(example, |text, (from, to)| {
            assert!(text.contains(from), "examples/policy.toml lists {from}");
            text.replace(from, to)
        });
        replaced
    }

    /// A log-server allowlist accepting every submitter key.
    fn allowlist(&self) -> String {
        [&self.etl, &self.release, &self.intruder]
            .iter()
            .map(|k| format!("{}\n", k.verifier_key()))
            .collect()
    }
}

/// A running log, its files, and the test's keys.
struct Setup {
    dir: tempfile::TempDir,
    server: LogServer,
    keys: Keys,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::generate();
        let allowlist = dir.path().join("allowlist");
        std::fs::write(&allowlist, keys.allowlist()).unwrap();
        std::fs::write(dir.path().join("policy.toml"), keys.policy()).unwrap();
        for (name, key) in [("etl.key", &keys.etl), ("release.key", &keys.release)] {
            // Secret keys must be private, or the verifier refuses them.
            verifier::files::write_atomically(
                &dir.path().join(name),
                key.to_signer_string().as_bytes(),
                verifier::files::Access::Secret,
            )
            .unwrap();
        }
        let server = LogServer::start(
            &dir.path().join("log"),
            &[
                "--origin",
                "log.example.test/policy",
                "--submitters",
                text(&allowlist),
            ],
        );
        Self { dir, server, keys }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn vkey(&self) -> PathBuf {
        self.server.data_dir.join("log.vkey")
    }

    /// `verifier submit` of an example file, signed with the key file `key`.
    fn submit_example(&self, key: &str, file: &Path) {
        let (url, vkey, key) = (self.server.url(), self.vkey(), self.path(key));
        let run = run_verifier(&[
            "submit",
            "--log",
            &url,
            "--vkey",
            text(&vkey),
            "--key",
            text(&key),
            text(file),
        ]);
        assert_eq!(run.code, Some(0), "{run:?}");
    }

    /// Appends `event` signed by `key` over gRPC and returns its index.
    async fn append(&self, key: &SigningKey, event: Event) -> u64 {
        self.server
            .client()
            .await
            .append(AppendRequest {
                event: Some(sign_event(key, &event)),
            })
            .await
            .expect("Append")
            .into_inner()
            .index
    }

    /// `verifier --json policy` with `policy` and `--state`/`--out` here.
    fn policy_run(&self, policy: &Path) -> Run {
        let (url, vkey) = (self.server.url(), self.vkey());
        let (state, out) = (self.path("state"), self.path("out"));
        run_verifier(&[
            "policy",
            "--log",
            &url,
            "--vkey",
            text(&vkey),
            "--policy",
            text(policy),
            "--state",
            text(&state),
            "--out",
            text(&out),
        ])
    }

    fn report(&self) -> Value {
        let bytes = std::fs::read(self.path("out/report.json")).expect("report.json");
        serde_json::from_slice(&bytes).expect("report.json is JSON")
    }
}

/// A release of `version` with `digest` on `channel`, attested by
/// `reviewers` over `attested` (the digest they believe they reviewed).
fn release(
    version: &str,
    digest: [u8; 32],
    channel: &str,
    reviewers: &[&SigningKey],
    attested: [u8; 32],
) -> Event {
    let attestations: Vec<_> = reviewers.iter().map(|r| (*r, attested)).collect();
    release_event(version, digest, channel, &attestations)
}

/// A flow of `category` to `region`, distinct for each `n`.
fn flow(n: u64, category: &str, region: &str) -> Event {
    let mut event = data_flow(n, region);
    if let Some(Kind::DataFlow(f)) = event.kind.as_mut() {
        f.data_category = category.into();
    }
    event
}

/// The (index, rule) pairs a report lists.
fn incidents(report: &Value) -> BTreeSet<(u64, String)> {
    report["incidents"]
        .as_array()
        .expect("an incidents array")
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn planted(list: &[(u64, &str)]) -> BTreeSet<(u64, String)> {
    list.iter().map(|&(i, r)| (i, r.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lists_exactly_the_planted_incidents_with_evidence_and_resumes() {
    let s = Setup::start();
    let k = &s.keys;
    // 0: EU→EU (complies), 1: EU→US for advertising, 2: EU→US on a court
    // order (complies through the exception).
    s.submit_example("etl.key", &example("events/flows.jsonl"));
    // 3: the unreviewed release.
    s.submit_example("release.key", &example("events/releases.jsonl"));
    let both = [&k.reviewer_a, &k.reviewer_b];
    let appended = [
        s.append(&k.etl, flow(4, "biometrics", "IE")).await,
        s.append(&k.etl, flow(5, "public_content", "US")).await,
        s.append(
            &k.release,
            release("5.0.0", [1; 32], "stable", &both, [1; 32]),
        )
        .await,
        s.append(
            &k.release,
            release("5.1.0", [2; 32], "stable", &[&k.reviewer_a], [2; 32]),
        )
        .await,
        s.append(
            &k.release,
            release(
                "5.2.0",
                [3; 32],
                "stable",
                &[&k.reviewer_a, &k.reviewer_b, &k.stranger],
                [3; 32],
            ),
        )
        .await,
        s.append(&k.release, {
            let mut r = release("5.3.0", [4; 32], "stable", &[&k.reviewer_a], [4; 32]);
            let other = release("5.3.0", [4; 32], "stable", &[&k.reviewer_b], [5; 32]);
            if let (Some(Kind::CodeRelease(r)), Some(Kind::CodeRelease(o))) =
                (r.kind.as_mut(), other.kind)
            {
                r.attestations.extend(o.attestations);
            }
            r
        })
        .await,
        s.append(
            &k.release,
            release("5.4.0", [6; 32], "nightly", &both, [6; 32]),
        )
        .await,
        s.append(
            &k.release,
            release("6.0.0", [1; 32], "stable", &both, [1; 32]),
        )
        .await,
        s.append(
            &k.release,
            release("5.0.0", [1; 32], "beta", &both, [1; 32]),
        )
        .await,
        s.append(&k.release, flow(13, "eu_user_data", "IE")).await,
        s.append(&k.intruder, flow(14, "eu_user_data", "IE")).await,
    ];
    assert_eq!(appended.to_vec(), (4..15).collect::<Vec<u64>>());

    let policy = s.path("policy.toml");
    let run = s.policy_run(&policy);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("SECURITY FINDING: 11 policy incidents in entries 0 to 15"),
        "{run:?}"
    );
    assert!(run.stderr.contains("report.html"), "{run:?}");
    assert!(
        run.stderr.contains("entry 1: data_residency.eu_user_data"),
        "{run:?}"
    );

    let report = s.report();
    let expected = planted(&[
        (1, "data_residency.eu_user_data"),
        (3, "release.quorum"),
        (4, "data_category.unknown"),
        (7, "release.quorum"),
        (8, "release.unknown_reviewer"),
        (9, "release.quorum"),
        (9, "release.attestation"),
        (10, "release.channel"),
        (11, "release.one_version_per_digest"),
        (13, "submitter.event_kind"),
        (14, "submitter.unknown"),
    ]);
    assert_eq!(incidents(&report), expected, "{report:#}");
    assert_eq!(report["entries_checked"]["this_run"], 15, "{report:#}");
    assert_eq!(report["checkpoint"]["size"], 15, "{report:#}");
    let totals = &report["summary"]["totals"];
    assert_eq!(totals["releases"], 8, "{totals:#}");
    assert_eq!(totals["releases_approved"], 2, "{totals:#}");
    assert_eq!(totals["flows"]["eu_user_data"]["IE"], 3, "{totals:#}");
    assert_eq!(totals["flows"]["eu_user_data"]["US"], 2, "{totals:#}");
    assert_eq!(totals["flows"]["biometrics"]["IE"], 1, "{totals:#}");
    assert_eq!(
        totals["incidents_by_rule"]["release.quorum"], 3,
        "{totals:#}"
    );
    let releases = report["summary"]["releases_this_run"].as_array().unwrap();
    let approved: Vec<u64> = releases
        .iter()
        .filter(|r| r["approved"] == true)
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(approved, [6, 12]);

    let html = std::fs::read_to_string(s.path("out/report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"));
    for (index, rule) in &expected {
        assert!(
            html.contains(&format!("<tr><td>{index}</td><td><code>{rule}</code>")),
            "{index} {rule} in the HTML report"
        );
    }

    let vkey = s.vkey();
    for incident in report["incidents"].as_array().unwrap() {
        let bundle = s.path("out").join(incident["bundle"].as_str().unwrap());
        let index = incident["index"].as_u64().unwrap();
        let name = format!("{index}-{}.tlog-proof", incident["rule"].as_str().unwrap());
        assert!(bundle.ends_with(format!("incidents/{name}")), "{bundle:?}");
        let verified = run_verifier(&["verify-bundle", text(&bundle), "--vkey", text(&vkey)]);
        assert_eq!(verified.code, Some(0), "{verified:?}");
        assert!(
            verified.stdout.contains(&format!(
                "verified: entry {index} is in the tree of size 15"
            )),
            "{verified:?}"
        );
        let mut bytes = std::fs::read(&bundle).unwrap();
        let in_entry = bytes.windows(6).position(|w| w == b"extra ").unwrap() + 20;
        bytes[in_entry] ^= 1;
        let flipped = s.path("flipped.tlog-proof");
        std::fs::write(&flipped, &bytes).unwrap();
        let refused = run_verifier(&["verify-bundle", text(&flipped), "--vkey", text(&vkey)]);
        assert_eq!(refused.code, Some(1), "{refused:?}");
    }

    // Nothing new: exit 0, nothing reported, the totals kept.
    let again = s.policy_run(&policy);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again.stdout.contains("no incident in entries 15 to 15"),
        "{again:?}"
    );
    let report = s.report();
    assert!(incidents(&report).is_empty(), "{report:#}");
    assert_eq!(report["entries_checked"]["this_run"], 0);
    assert_eq!(report["entries_checked"]["total"], 15);
    assert_eq!(
        report["summary"]["totals"]["incidents_by_rule"]["release.quorum"],
        3
    );

    // One new entry: only it is checked, and only its incident reported.
    let unreviewed = release("8.0.0", [8; 32], "stable", &[], [8; 32]);
    assert_eq!(s.append(&k.release, unreviewed).await, 15);
    let third = s.policy_run(&policy);
    assert_eq!(third.code, Some(1), "{third:?}");
    let report = s.report();
    assert_eq!(incidents(&report), planted(&[(15, "release.quorum")]));
    assert_eq!(report["entries_checked"]["from"], 15);
    assert_eq!(report["entries_checked"]["this_run"], 1);
    assert_eq!(
        report["summary"]["totals"]["incidents_by_rule"]["release.quorum"],
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_compliant_log_exits_0_and_bad_input_exits_2() {
    let s = Setup::start();
    let k = &s.keys;
    let flows = std::fs::read_to_string(example("events/flows.jsonl")).unwrap();
    let compliant: Vec<&str> = flows
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    let file = s.path("compliant.jsonl");
    std::fs::write(&file, compliant.join("\n")).unwrap();
    s.submit_example("etl.key", &file);
    let both = [&k.reviewer_a, &k.reviewer_b];
    s.append(
        &k.release,
        release("5.0.0", [1; 32], "stable", &both, [1; 32]),
    )
    .await;

    let policy = s.path("policy.toml");
    let run = s.policy_run(&policy);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("no incident in entries 0 to 3"),
        "{run:?}"
    );
    let report = s.report();
    assert!(incidents(&report).is_empty(), "{report:#}");
    assert_eq!(report["summary"]["totals"]["releases_approved"], 1);
    assert!(!s.path("out/incidents").exists());

    let good = std::fs::read_to_string(&policy).unwrap();
    let line = good
        .lines()
        .position(|l| l.starts_with("quorum = 2"))
        .unwrap()
        + 1;
    let bad = s.path("bad-policy.toml");
    std::fs::write(&bad, good.replace("quorum = 2", "quorum = 3")).unwrap();
    let refused = s.policy_run(&bad);
    assert_eq!(refused.code, Some(2), "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "--policy {}: line {line}: quorum 3 is more than the 2 reviewers listed",
            bad.display()
        )),
        "{refused:?}"
    );

    let (vkey, state, out) = (s.vkey(), s.path("state"), s.path("out"));
    let unreachable = run_verifier(&[
        "policy",
        "--log",
        "http://127.0.0.1:1",
        "--vkey",
        text(&vkey),
        "--policy",
        text(&policy),
        "--state",
        text(&state),
        "--out",
        text(&out),
    ]);
    assert_eq!(unreachable.code, Some(2), "{unreachable:?}");
}
