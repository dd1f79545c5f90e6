//! The `verifier` command: what auditors, submitters and the public run.
//!
//! It trusts nothing the log says that it has not checked itself. `--log`
//! is the log's one URL; reads come from its C2SP tiles, so every command
//! but `submit` and lookups by hash also works against a static mirror.
//! See [`outcome`] for exit codes.

mod attest;
mod audit;
mod bundle;
mod check_evidence;
mod check_release;
mod checkpoint;
mod consistency;
mod display;
mod entry_bundles;
pub(crate) mod event_json;
mod inclusion;
mod keygen;
pub(crate) mod monitor;
pub mod outcome;
pub mod policy;
pub mod policy_audit;
mod remote;
mod state;
mod submit;
mod witness;
mod witness_policy;

use clap::{Parser, Subcommand};
use outcome::{finish, Failure};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "verifier",
    version,
    about = "Check a data-flow and code-release transparency log without trusting its operator.",
    after_help = "Exit codes: 0 verified, 1 verification failed (a security finding), 2 could not check."
)]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new Ed25519 key (mode 0600) and print its verifier key line.
    Keygen(keygen::Args),
    /// Sign and append events, verifying the inclusion proof of each.
    Submit(submit::Args),
    /// Fetch, verify and print the latest checkpoint.
    Checkpoint(checkpoint::Args),
    /// Verify that an entry is in the log.
    Inclusion(inclusion::Args),
    /// Verify that one checkpoint extends another.
    Consistency(consistency::Args),
    /// Sign off a release event as a reviewer, before it is submitted.
    Attest(attest::Args),
    /// Replay every entry, recompute the root, and resume next time.
    Audit(audit::Args),
    /// Check an offline proof bundle, with no network.
    VerifyBundle(bundle::Args),
    /// Follow logs, gossip their checkpoints with other monitors, and write
    /// evidence of any split view.
    Monitor(monitor::Args),
    /// Check a split-view evidence file offline.
    CheckEvidence(check_evidence::Args),
    /// Check every entry since the last run against a policy file, and
    /// report each incident with its proof.
    Policy(policy_audit::Args),
    /// Check, before installing, that a release was logged, reviewed and
    /// published as the policy requires.
    CheckRelease(check_release::Args),
    /// Serve C2SP tlog-witness: cosign checkpoints consistent with all
    /// earlier ones.
    Witness(witness::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let is_usage_error = e.use_stderr();
            let _ = e.print();
            return if is_usage_error {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Submit(args) => submit::run(args),
        Command::Checkpoint(args) => checkpoint::run(args),
        Command::Inclusion(args) => inclusion::run(args),
        Command::Consistency(args) => consistency::run(args),
        Command::Attest(args) => attest::run(args),
        Command::Audit(args) => audit::run(args),
        Command::VerifyBundle(args) => bundle::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::CheckEvidence(args) => check_evidence::run(args),
        Command::Policy(args) => policy_audit::run(args),
        Command::CheckRelease(args) => check_release::run(args),
        Command::Witness(args) => witness::run(args),
    };
    finish(outcome, cli.json)
}

/// Runs `future` on a single-threaded runtime, for the gRPC calls.
fn block_on<T, F: std::future::Future<Output = Result<T, Failure>>>(
    future: F,
) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::unchecked(format!("cannot start the async runtime: {e}")))?
        .block_on(future)
}

/// Logs to stderr at info level and above, for the long-running commands
/// (`witness`, `monitor`): their findings and progress are log lines, while
/// stdout carries only what scripts wait for.
fn log_to_stderr() {
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .try_init();
}
