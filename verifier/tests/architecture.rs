//! The trust boundary is the crate boundary: an auditor installs the
//! verifier without any of the operator's code or storage engines.

use std::process::Command;

/// Crates that belong to the operator's side and must never reach the
/// verifier's dependency tree.
const SERVER_ONLY: &[&str] = &["log-server", "redb", "sled", "axum", "tonic-health"];

#[test]
fn the_verifier_never_depends_on_server_code() {
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
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(
        names.contains(&"tlog_tiles"),
        "the tree was read: {names:?}"
    );
    for forbidden in SERVER_ONLY {
        assert!(
            !names.contains(forbidden),
            "verifier depends on {forbidden}"
        );
    }
}
