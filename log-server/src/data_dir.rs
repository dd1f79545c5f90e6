//! The data directory: what a log is, remembered between starts.
//!
//! | file            | holds                                              |
//! |-----------------|----------------------------------------------------|
//! | `origin`        | the log's origin line; written last on first start |
//! | `storage`       | the backend the log was created with               |
//! | `log.key`       | the log's signing key (mode 0600)                  |
//! | `log.vkey`      | the log's verifier key line, for the public        |
//! | `submitter.key` | the operator's submitter key (mode 0600)           |
//! | `submitters`    | the default allowlist, holding the operator's key  |
//! | `log.redb` or `log.sled` | the log itself                            |
//!
//! Dangerous implicit set-ups are refused rather than repaired: a
//! directory made for another origin or backend, a log whose signing key
//! has gone missing (a new key for an existing log would silently fork
//! it), or a `log.key` that the group or others may read (the error says
//! which `chmod 600` fixes it).

use crate::storage::Backend;
use std::fs;
use std::path::{Path, PathBuf};
use verifier::files::{self, Access};
use verifier::keys::{is_valid_key_name, KeyRing, SigningKey};

/// The origin used when none is given on first start: fine for trying the
/// log out, wrong for production, and therefore announced at start-up.
pub const DEFAULT_ORIGIN: &str = "localhost/dev-log";

/// A configuration problem, reported as one line before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// What the command line asks of the data directory.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The data directory.
    pub dir: PathBuf,
    /// `--origin`, if given.
    pub origin: Option<String>,
    /// `--storage`, if given.
    pub backend: Option<Backend>,
    /// `--submitters`, if given.
    pub submitters: Option<PathBuf>,
}

/// An opened, checked data directory.
#[derive(Debug)]
pub struct DataDir {
    /// The directory.
    pub dir: PathBuf,
    /// The log's origin, equal to its key's name.
    pub origin: String,
    /// The log's signing key.
    pub key: SigningKey,
    /// The storage backend.
    pub backend: Backend,
    /// The submitter allowlist.
    pub allowlist: KeyRing,
    /// Where the allowlist was read from.
    pub allowlist_path: PathBuf,
    /// Whether this start created the directory.
    pub created: bool,
}

impl DataDir {
    /// Opens the directory, creating it on first start.
    pub fn open(req: &Requested) -> Result<Self, ConfigError> {
        let created = if req.dir.join("origin").exists() {
            false
        } else {
            initialise(req)?;
            true
        };
        let origin = read_text(&req.dir.join("origin"))?.trim().to_owned();
        if let Some(wanted) = &req.origin {
            if *wanted != origin {
                return Err(config_error(format!(
                    "data directory {} belongs to origin {origin:?}, not {wanted:?}",
                    req.dir.display()
                )));
            }
        }
        let backend = read_backend(&req.dir)?;
        if let Some(wanted) = req.backend {
            if wanted != backend {
                return Err(config_error(format!(
                    "data directory {} was created with --storage {}, not {}",
                    req.dir.display(),
                    backend_name(backend),
                    backend_name(wanted)
                )));
            }
        }
        let key_path = req.dir.join("log.key");
        if !key_path.exists() {
            return Err(config_error(format!(
                "{} is missing, but {} holds a log for origin {origin:?}; restore the key \
                 (a new key would fork the log)",
                key_path.display(),
                req.dir.display()
            )));
        }
        let secret = files::read_secret(&key_path).map_err(|e| config_error(e.to_string()))?;
        let key = SigningKey::parse(&secret)
            .map_err(|e| config_error(format!("cannot use {}: {e}", key_path.display())))?;
        if key.name() != origin {
            return Err(config_error(format!(
                "{} is a key for {:?}, but the log's origin is {origin:?}",
                key_path.display(),
                key.name()
            )));
        }
        let allowlist_path = req
            .submitters
            .clone()
            .unwrap_or_else(|| req.dir.join("submitters"));
        let allowlist = KeyRing::parse(&read_text(&allowlist_path)?)
            .map_err(|e| config_error(format!("{}: {e}", allowlist_path.display())))?;
        Ok(Self {
            dir: req.dir.clone(),
            origin,
            key,
            backend,
            allowlist,
            allowlist_path,
            created,
        })
    }
}

/// Creates a new log's files. The `origin` file is written last, so an
/// interrupted first start is simply retried.
fn initialise(req: &Requested) -> Result<(), ConfigError> {
    let dir = &req.dir;
    let has_log = ["log.key", "log.redb", "log.sled"]
        .iter()
        .any(|f| dir.join(f).exists());
    if has_log {
        return Err(config_error(format!(
            "{} holds a log but its origin file is missing; restore {}",
            dir.display(),
            dir.join("origin").display()
        )));
    }
    let origin = match &req.origin {
        Some(origin) => origin.clone(),
        None => {
            tracing::warn!(
                origin = DEFAULT_ORIGIN,
                "no --origin on first start: using the development origin"
            );
            DEFAULT_ORIGIN.to_owned()
        }
    };
    if !is_valid_key_name(&origin) {
        return Err(config_error(format!(
            "--origin {origin:?} must be non-empty, with no spaces and no '+'"
        )));
    }
    fs::create_dir_all(dir)
        .map_err(|e| config_error(format!("cannot create {}: {e}", dir.display())))?;
    let log_key = SigningKey::generate(&origin).map_err(|e| config_error(e.to_string()))?;
    let submitter = SigningKey::generate("operator").map_err(|e| config_error(e.to_string()))?;
    write_file(&dir.join("log.key"), &log_key.to_signer_string(), true)?;
    write_file(
        &dir.join("log.vkey"),
        &log_key.verifier_key().to_string(),
        false,
    )?;
    write_file(
        &dir.join("submitter.key"),
        &submitter.to_signer_string(),
        true,
    )?;
    let allowlist = format!(
        "# Verifier keys of the submitters this log accepts events from, one per line.\n{}",
        submitter.verifier_key()
    );
    write_file(&dir.join("submitters"), &allowlist, false)?;
    let backend = req.backend.unwrap_or_default();
    write_file(&dir.join("storage"), backend_name(backend), false)?;
    write_file(&dir.join("origin"), &origin, false)
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Redb => "redb",
        Backend::Sled => "sled",
    }
}

fn read_backend(dir: &Path) -> Result<Backend, ConfigError> {
    let path = dir.join("storage");
    match read_text(&path)?.trim() {
        "redb" => Ok(Backend::Redb),
        "sled" => Ok(Backend::Sled),
        other => Err(config_error(format!(
            "{}: unknown storage backend {other:?}",
            path.display()
        ))),
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path)
        .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))
}

/// Writes `contents` and a newline to `path` atomically (see
/// [`files::write_atomically`]), so the file is never seen half-written;
/// secrets get mode 0600.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), ConfigError> {
    let access = if secret {
        Access::Secret
    } else {
        Access::Public
    };
    files::write_atomically(path, format!("{contents}\n").as_bytes(), access)
        .map_err(|e| config_error(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dir: &Path, origin: Option<&str>) -> Requested {
        Requested {
            dir: dir.to_owned(),
            origin: origin.map(str::to_owned),
            backend: None,
            submitters: None,
        }
    }

    #[test]
    fn first_start_creates_a_usable_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let opened = DataDir::open(&request(&dir, Some("log.example/a"))).unwrap();
        assert!(opened.created);
        assert_eq!(opened.origin, "log.example/a");
        assert_eq!(opened.backend, Backend::Redb);
        let submitter =
            SigningKey::parse(&fs::read_to_string(dir.join("submitter.key")).unwrap()).unwrap();
        assert!(opened.allowlist.get(&submitter.key_id()).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for secret in ["log.key", "submitter.key"] {
                let mode = fs::metadata(dir.join(secret)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{secret}");
            }
        }
        let again = DataDir::open(&request(&dir, None)).unwrap();
        assert!(!again.created);
        assert_eq!(again.key.to_signer_string(), opened.key.to_signer_string());
    }

    #[test]
    fn dangerous_set_ups_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        DataDir::open(&request(&dir, Some("log.example/a"))).unwrap();
        let err = DataDir::open(&request(&dir, Some("log.example/b"))).unwrap_err();
        assert!(err.0.contains("belongs to origin"), "{err}");
        let mut sled = request(&dir, None);
        sled.backend = Some(Backend::Sled);
        assert!(DataDir::open(&sled)
            .unwrap_err()
            .0
            .contains("--storage redb"));
        fs::write(dir.join("submitters"), "not a key\n").unwrap();
        assert!(DataDir::open(&request(&dir, None))
            .unwrap_err()
            .0
            .contains("line 1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let key = dir.join("log.key");
            fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
            let err = DataDir::open(&request(&dir, None)).unwrap_err();
            assert!(
                err.0.contains(&format!("chmod 600 {}", key.display())),
                "{err}"
            );
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::remove_file(dir.join("log.key")).unwrap();
        assert!(DataDir::open(&request(&dir, None))
            .unwrap_err()
            .0
            .contains("would fork"));
        assert!(DataDir::open(&request(&tmp.path().join("x"), Some("bad origin"))).is_err());
    }
}
