//! The README's walk-through, executed as written: every `verifier` line
//! between its `walkthrough` markers runs, in order, against a real log,
//! and must exit 0. If the README and the tools drift apart, this fails.

use std::path::Path;
use std::process::Command;
use tlog_e2e::{binary, LogServer};

/// The address the README uses; each line is pointed at the test's log.
const README_URL: &str = "http://127.0.0.1:8080";

/// The `verifier` command lines of the walk-through, in order.
fn walkthrough_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("end marker");
    readme[start..end]
        .lines()
        .filter(|line| line.starts_with("verifier "))
        .map(str::to_owned)
        .collect()
}

fn copy_examples(to: &Path) {
    for dir in ["events", "artifacts"] {
        let from = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")).join(dir);
        let to = to.join("examples").join(dir);
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(from).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let commands = walkthrough_commands();
    let names: Vec<&str> = commands
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "keygen",
            "submit",
            "submit",
            "checkpoint",
            "inclusion",
            "audit",
            "verify-bundle"
        ],
        "the walk-through covers keygen, submit, verify, audit and an offline bundle"
    );
    let work = tempfile::tempdir().unwrap();
    copy_examples(work.path());
    let data = work.path().join("data");
    let mut server = Some(LogServer::start(&data, &[]));

    for line in &commands {
        let (command, redirect) = match line.split_once(" >> ") {
            Some((command, file)) => (command, Some(file)),
            None => (line.as_str(), None),
        };
        if command.starts_with("verifier verify-bundle") {
            assert!(
                server.take().unwrap().interrupt().success(),
                "the log stops cleanly"
            );
        }
        let url = server.as_ref().map(LogServer::url).unwrap_or_default();
        let args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|arg| {
                if arg == README_URL {
                    url.clone()
                } else {
                    arg.to_owned()
                }
            })
            .collect();
        let output = Command::new(binary("verifier"))
            .args(&args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(file) = redirect {
            let path = work.path().join(file);
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str(&String::from_utf8(output.stdout).unwrap());
            std::fs::write(&path, text).unwrap();
            if file == "data/submitters" {
                assert!(server.take().unwrap().interrupt().success());
                server = Some(LogServer::start(&data, &[]));
            }
        }
    }
    assert!(work.path().join("release.tlog-proof").exists());
    assert!(work.path().join("state").is_dir());

    // The policy section continues on the same log and files, as a shell
    // script: its blocks run in order, with `verifier` on the PATH.
    let server = LogServer::start(&data, &[]);
    let script = policy_script().replace(README_URL, &server.url());
    let bin_dir = binary("verifier").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .current_dir(work.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{script}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join("policy-report/report.json")).unwrap(),
    )
    .unwrap();
    let mut found: Vec<(u64, String)> = report["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (1, "release.quorum".to_owned()),
            (2, "data_residency.eu_user_data".to_owned())
        ],
        "the unreviewed release and the advertising flow, and nothing else"
    );
    assert!(work.path().join("policy-report/report.html").exists());
    assert!(
        stdout.contains("4.3.1 on channel stable") && stdout.contains("approved"),
        "check-release approves the reviewed build\nstdout: {stdout}"
    );
    assert!(
        stderr.contains(
            "2e7a6c7c32fa5dc070e6cda82352724301f48c0b2bf95948db2e94d2f5a81ee9 is not approved"
        ) && stderr.contains("release.quorum: 0 of the 2"),
        "check-release refuses the unreviewed one, saying why\nstderr: {stderr}"
    );
}

/// The `sh` blocks of the README's policy section, in order.
fn policy_script() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- policy-walkthrough:start -->")
        .expect("start marker");
    let end = readme
        .find("<!-- policy-walkthrough:end -->")
        .expect("end marker");
    readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .collect()
}
