//! Turning a split view into a durable, portable alarm.
//!
//! Each split view becomes one evidence file in the evidence directory,
//! named by [`Evidence::file_name`], so the same conflict found again (by
//! polling and by gossip, or after a restart) maps to the same file and
//! alarms once: the file is created with [`files::create_atomically`],
//! which refuses a name already taken, so one conflict found twice at once
//! (or by two monitors sharing the directory) alarms once. It is durable,
//! directory synced, before anyone is told, so an alarm always has its
//! evidence on disk.
//! `verifier check-evidence <file> --vkey <log key>` checks it offline.
//!
//! Then, with `--on-alert <command>`, the command runs through `sh -c`
//! with the file's path as `$1` and as `TLOG_EVIDENCE`, and monitoring goes
//! on; without it the monitor stops with exit code 1. Evidence files are
//! never removed by the monitor: moving one out of the directory is how an
//! operator marks it handled (see [`Alerts::unresolved`]).

use crate::cli::outcome::Failure;
use crate::evidence::Evidence;
use crate::files::{self, Access};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The suffix of evidence files; other files in the directory (such as a
/// `.tmp` left by a crash mid-write) are not evidence.
const SUFFIX: &str = ".evidence";

/// The evidence directory and what to do on a new split view.
pub struct Alerts {
    dir: PathBuf,
    on_alert: Option<String>,
}

/// An evidence file already in the directory.
pub struct Unresolved {
    /// Its path.
    pub path: PathBuf,
    /// Its origin, or why the file cannot be read as evidence.
    pub origin: Result<String, String>,
}

impl Alerts {
    /// Uses `dir` (created if needed) for evidence; `on_alert` is the
    /// `--on-alert` command, if any.
    pub fn open(dir: PathBuf, on_alert: Option<String>) -> Result<Self, Failure> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::unchecked(format!(
                "cannot create the evidence directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self { dir, on_alert })
    }

    /// Whether a split view keeps the monitor running (`--on-alert` given).
    pub fn keeps_running(&self) -> bool {
        self.on_alert.is_some()
    }

    /// The evidence directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The evidence files already in the directory, sorted by name.
    pub fn unresolved(&self) -> Result<Vec<Unresolved>, Failure> {
        let fail = |e: std::io::Error| {
            Failure::unchecked(format!("cannot read {}: {e}", self.dir.display()))
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(fail)? {
            let path = entry.map_err(fail)?.path();
            if !path.to_string_lossy().ends_with(SUFFIX) {
                continue;
            }
            let origin = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| Evidence::parse(&text).map_err(|e| e.to_string()))
                .map(|evidence| evidence.origin().to_owned());
            found.push(Unresolved { path, origin });
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// Writes `evidence` unless its file exists, logs the split view, and
    /// runs the `--on-alert` command. Returns the path if the file is new.
    pub fn raise(&self, evidence: &Evidence) -> Result<Option<PathBuf>, Failure> {
        let name = evidence.file_name();
        debug_assert!(name.ends_with(SUFFIX));
        let path = self.dir.join(&name);
        match files::create_atomically(&path, evidence.to_text().as_bytes(), Access::Public) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                tracing::debug!(path = %path.display(), "split view already recorded");
                return Ok(None);
            }
            Err(e) => {
                return Err(Failure::unchecked(format!(
                    "cannot write {}: {e}",
                    path.display()
                )))
            }
        }
        tracing::error!(
            origin = evidence.origin(),
            evidence = %path.display(),
            "SPLIT VIEW: the log signed two checkpoints that cannot both be honest; evidence written to {}",
            path.display()
        );
        if let Some(command) = &self.on_alert {
            run_on_alert(command, &path);
        }
        Ok(Some(path))
    }
}

/// Runs `command` for the evidence at `path` in the background and logs
/// how it ended; a slow or failing command never stops monitoring.
fn run_on_alert(command: &str, path: &Path) {
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("verifier-monitor-alert")
        .arg(path)
        .env("TLOG_EVIDENCE", path)
        .stdin(std::process::Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("cannot run --on-alert: {e}");
            return;
        }
    };
    let shown = path.display().to_string();
    std::thread::spawn(move || match child.wait() {
        Ok(status) if status.success() => {
            tracing::info!(evidence = shown, "--on-alert command succeeded");
        }
        Ok(status) => tracing::error!(evidence = shown, "--on-alert command failed: {status}"),
        Err(e) => tracing::error!(evidence = shown, "--on-alert command: {e}"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::keys::SigningKey;
    use crate::merkle::Hash;

    fn fork() -> Evidence {
        let key = SigningKey::from_seed("log.example/a", [3; 32]).unwrap();
        let signed = |root: u8| {
            let body = Checkpoint {
                origin: key.name().to_owned(),
                size: 5,
                root: Hash([root; 32]),
            };
            crate::checkpoint::SignedCheckpoint::verify(&body.sign(&key), &key.verifier_key())
                .unwrap()
        };
        Evidence::split_view(&signed(1), &signed(2), Vec::new(), "unit test")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("verifier-monitor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn evidence_is_written_once_and_found_again() {
        let dir = temp_dir("once");
        let alerts = Alerts::open(dir.clone(), None).unwrap();
        let evidence = fork();
        let path = alerts.raise(&evidence).unwrap().expect("a new file");
        assert_eq!(path, dir.join(evidence.file_name()));
        let written = std::fs::read(&path).unwrap();
        assert_eq!(Evidence::parse(&written).unwrap(), evidence);
        assert_eq!(alerts.raise(&evidence).unwrap(), None);
        std::fs::write(dir.join("leftover.tmp"), b"half").unwrap();
        let unresolved = alerts.unresolved().unwrap();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].path, path);
        assert_eq!(unresolved[0].origin.as_deref(), Ok("log.example/a"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_evidence_file_is_still_unresolved() {
        let dir = temp_dir("unreadable");
        let alerts = Alerts::open(dir.clone(), None).unwrap();
        std::fs::write(dir.join("damaged.evidence"), b"not evidence").unwrap();
        let unresolved = alerts.unresolved().unwrap();
        assert_eq!(unresolved.len(), 1);
        assert!(unresolved[0].origin.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
