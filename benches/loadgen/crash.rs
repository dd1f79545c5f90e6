//! `loadgen crash`: the crash test's long mode, against any `log-server`
//! binary.
//!
//! The harness is `tlog_benches::crash`, the same code the end-to-end test
//! `crash_recovery` runs with 20 kills in CI; here the kills are whatever
//! `--kills` says and the load grows with them
//! ([`CrashConfig::fit_load_to_kills`]). Without `--data-dir` the log lives
//! in a temporary directory, removed after a passing run and kept after a
//! failing one, whose path is printed so the evidence can be examined.

use clap::value_parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tempfile::TempDir;
use tlog_benches::crash::{self, CrashConfig, CrashError};
use tlog_benches::workload;

/// The crash run's arguments.
#[derive(clap::Args)]
pub struct CrashArgs {
    /// The log-server binary to start, kill and restart, for example
    /// target/release/log-server.
    #[arg(long)]
    server: PathBuf,
    /// The storage backend the server runs on: redb or sled.
    #[arg(long, value_name = "redb|sled")]
    storage: String,
    /// How many times to SIGKILL the server; the load grows with it.
    #[arg(long, value_parser = value_parser!(u64).range(1..=1_000_000))]
    kills: u64,
    /// The seed of the kill points and the call mix, decimal or 0x hex, to
    /// replay a failed run [default: a fresh one, printed].
    #[arg(long, value_parser = seed)]
    seed: Option<u64>,
    /// How many clients append concurrently [default: 8, as in the test].
    #[arg(long, value_parser = value_parser!(u64).range(1..=4096))]
    clients: Option<u64>,
    /// The log's data directory, new or empty; kept after the run
    /// [default: a temporary directory, removed if the run passes].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("not a number: {e}"))
}

/// Runs the crash test and reports it: exit 0 if every check passed, 1 if
/// one failed, 2 if the arguments were bad.
pub fn main(args: CrashArgs) -> ExitCode {
    let json = args.json;
    let (code, message) = match run(args) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
            } else {
                println!("{report}");
            }
            return ExitCode::SUCCESS;
        }
        Err(Failed::Check { error, kept }) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "error": error.reason(),
                        "details": error.to_string(),
                        "data_dir": kept.display().to_string(),
                        "exit": 1,
                    })
                );
            } else if error.message.contains('\n') {
                // The evidence: the reason's line, then what was seen.
                eprintln!("{error}");
            }
            eprintln!("loadgen: the data directory is kept at {}", kept.display());
            (1, error.reason())
        }
        Err(Failed::Arguments(message)) => {
            if json {
                println!("{}", serde_json::json!({"error": message, "exit": 2}));
            }
            (2, message)
        }
    };
    eprintln!("loadgen: {message}");
    ExitCode::from(code)
}

/// Why a crash run did not pass.
enum Failed {
    /// A check failed (exit 1); the data directory is kept for inspection.
    Check {
        /// What failed, with its evidence.
        error: CrashError,
        /// Where the log's data is.
        kept: PathBuf,
    },
    /// Bad arguments, or no runtime to run on (exit 2).
    Arguments(String),
}

fn run(args: CrashArgs) -> Result<crash::CrashReport, Failed> {
    let bad = Failed::Arguments;
    // Checked here rather than by clap, so that the reason is one line
    // (and JSON with `--json`), as for the other arguments checked here.
    if !matches!(args.storage.as_str(), "redb" | "sled") {
        return Err(bad(format!(
            "--storage {}: not a storage backend; use redb or sled",
            args.storage
        )));
    }
    if !args.server.is_file() {
        return Err(bad(format!(
            "--server {}: not a file",
            args.server.display()
        )));
    }
    let (data_dir, temp) = match args.data_dir {
        Some(dir) => {
            require_new_or_empty(&dir)?;
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("loadgen-crash-{}-", args.storage))
                .tempdir()
                .map_err(|e| bad(format!("cannot make a temporary data directory: {e}")))?;
            (temp.path().to_owned(), Some(temp))
        }
    };

    let mut config = CrashConfig::new(&data_dir, &args.storage, args.server);
    config.kills = args.kills as usize;
    if let Some(clients) = args.clients {
        config.clients = clients as usize;
    }
    config.seed = args.seed.unwrap_or_else(workload::run_nonce);
    config.fit_load_to_kills();
    eprintln!(
        "loadgen: crash test on {}: {} kills, {} clients × {} events, seed {:#x} (replay with \
         --seed {:#x}), data in {}",
        config.storage,
        config.kills,
        config.clients,
        config.events_per_client,
        config.seed,
        config.seed,
        data_dir.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crash::run(config))
        .map_err(|error| Failed::Check {
            error,
            kept: temp.map_or(data_dir, TempDir::keep),
        })
}

/// Refuses a data directory that holds anything: the checks hold the log
/// to this run's events alone, so an old log would fail them for nothing.
fn require_new_or_empty(dir: &Path) -> Result<(), Failed> {
    let bad = |why: String| Failed::Arguments(format!("--data-dir {}: {why}", dir.display()));
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(bad("not empty; the crash test needs a new log".into())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Mode};
    use clap::Parser as _;

    fn crash_args(args: &[&str]) -> CrashArgs {
        let cli = Cli::try_parse_from([&["loadgen", "crash"], args].concat()).unwrap();
        match cli.command {
            Some(Mode::Crash(args)) => args,
            _ => panic!("not the crash mode"),
        }
    }

    #[test]
    fn the_flat_load_run_and_the_crash_mode_both_parse() {
        let flat = [
            "loadgen",
            "--log",
            "http://127.0.0.1:8080",
            "--key",
            "submitter.key",
            "--events",
            "10",
            "--concurrency",
            "2",
            "--json",
        ];
        let cli = Cli::try_parse_from(flat).unwrap();
        assert!(cli.command.is_none() && cli.load.is_some_and(|l| l.json));

        let args = crash_args(&["--server", "s", "--storage", "sled", "--kills", "30"]);
        assert_eq!((args.kills, args.seed, args.clients), (30, None, None));
        let args = crash_args(&[
            "--server",
            "s",
            "--storage",
            "redb",
            "--kills",
            "5",
            "--seed",
            "0x2a",
        ]);
        assert_eq!(args.seed, Some(42));

        assert!(
            Cli::try_parse_from(["loadgen"]).is_err(),
            "a load run needs --log"
        );
        assert!(
            Cli::try_parse_from([&flat[..], &["crash"]].concat()).is_err(),
            "a load run's flags and a subcommand do not mix"
        );
        assert!(Cli::try_parse_from(["loadgen", "crash", "--kills", "0"]).is_err());
    }

    #[test]
    fn bad_crash_arguments_are_refused_before_anything_runs() {
        let refused = |args: &[&str]| match run(crash_args(args)) {
            Err(Failed::Arguments(reason)) => reason,
            _ => panic!("{args:?} was not refused"),
        };
        let reason = refused(&["--server", "s", "--storage", "ext4", "--kills", "3"]);
        assert_eq!(
            reason,
            "--storage ext4: not a storage backend; use redb or sled"
        );
        let reason = refused(&[
            "--server",
            "/nonexistent",
            "--storage",
            "redb",
            "--kills",
            "3",
        ]);
        assert_eq!(reason, "--server /nonexistent: not a file");
        let full = tempfile::tempdir().unwrap();
        std::fs::write(full.path().join("log.redb"), b"").unwrap();
        let exe = std::env::current_exe().unwrap();
        let reason = refused(&[
            "--server",
            exe.to_str().unwrap(),
            "--storage",
            "redb",
            "--kills",
            "3",
            "--data-dir",
            full.path().to_str().unwrap(),
        ]);
        assert!(
            reason.ends_with("not empty; the crash test needs a new log"),
            "{reason}"
        );
    }
}
