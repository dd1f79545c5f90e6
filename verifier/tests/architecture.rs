//! The trust boundary is the crate boundary: an auditor installs the
//! verifier without any of the operator's code or storage engines.
//!
//! The verifier's command line hosts servers of its own (`verifier witness`
//! speaks HTTP, `verifier monitor` gRPC), so an HTTP server stack is allowed
//! there; the operator's crates never are. The formats library alone
//! (`default-features = false`, as the log server uses it) carries no
//! server, no HTTP client and no command-line parser.

use std::process::Command;

/// Crates that belong to the operator's side and must never reach the
/// verifier's dependency tree.
const OPERATOR_ONLY: &[&str] = &["log-server", "redb", "sled", "tonic-health"];

/// Crates that only the command line needs, kept out of the formats
/// library that the server and other programs embed.
const COMMAND_LINE_ONLY: &[&str] = &["axum", "ureq", "clap", "tracing-subscriber"];

/// The names of the crates in the verifier's normal and build dependency
/// tree, built with `extra` cargo arguments.
fn dependency_names(extra: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "verifier",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let names: Vec<String> = tree
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert!(
        names.iter().any(|n| n == "tlog_tiles"),
        "the tree was read: {names:?}"
    );
    names
}

#[test]
fn the_verifier_never_depends_on_operator_code() {
    let names = dependency_names(&[]);
    for forbidden in OPERATOR_ONLY {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "verifier depends on {forbidden}"
        );
    }
}

#[test]
fn the_formats_library_carries_no_command_line_dependencies() {
    let names = dependency_names(&["--no-default-features"]);
    for forbidden in OPERATOR_ONLY.iter().chain(COMMAND_LINE_ONLY) {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "verifier --no-default-features depends on {forbidden}"
        );
    }
}
