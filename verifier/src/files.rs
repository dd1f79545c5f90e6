//! Files that security rests on: trusted checkpoints, a witness's last
//! cosigned checkpoint, keys, evidence and reports.
//!
//! - [`write_atomically`] replaces a file so that a reader, or a restart
//!   after a crash, sees the old contents or the new ones, never a mix:
//!   a temporary file with a unique name in the same directory, created
//!   with `O_CREAT | O_EXCL | O_NOFOLLOW` (so neither a file nor a
//!   symbolic link planted at its name is ever written through), then
//!   write, `fsync`, `rename` over the target, and `fsync` of the
//!   directory so that the rename itself survives a power loss. On any
//!   error the temporary file is removed.
//! - [`create_atomically`] does the same for a file that must not exist
//!   yet (a new key): the temporary file is hard-linked to the target,
//!   which fails if anything, a symbolic link included, is there.
//! - [`lock_within`] and [`try_lock`] take an exclusive advisory lock
//!   (`flock`) on a lock file, held until the [`FileLock`] is dropped or
//!   the process ends, however it ends. It guards read-check-write
//!   sequences between processes; threads of one process still need their
//!   own mutex.
//! - [`read_secret`] reads a secret key file, refusing one that the group
//!   or others may read, with the `chmod 600` that fixes it.
//!
//! What it leaves out: formats. Callers decide what the bytes are; this
//! module only makes them durable, exclusive and private.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who may read a file written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Mode 0644 before the umask: anyone on the machine may read it.
    Public,
    /// Mode 0600: only the owner. For signing keys.
    Secret,
}

impl Access {
    #[cfg(unix)]
    fn mode(self) -> u32 {
        match self {
            Self::Public => 0o644,
            Self::Secret => 0o600,
        }
    }
}

/// The largest secret file [`read_secret`] reads: a signer key line is
/// under 200 bytes.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Replaces `path` with `bytes` atomically and durably (see the module
/// documentation). A symbolic link at `path` is replaced, not followed.
pub fn write_atomically(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let tmp = write_temporary(path, bytes, access)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Creates `path` holding `bytes`, atomically and durably, failing with
/// [`io::ErrorKind::AlreadyExists`] if anything is at `path` already.
pub fn create_atomically(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let tmp = write_temporary(path, bytes, access)?;
    let linked = std::fs::hard_link(&tmp, path);
    let removed = std::fs::remove_file(&tmp);
    linked?;
    removed?;
    sync_dir(parent(path))
}

/// Flushes a directory's entries, so that a rename or a new file in it
/// survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new, uniquely named, synced file next to `path`
/// and returns its path; removes it again on any error.
fn write_temporary(path: &Path, bytes: &[u8], access: Access) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let tmp = parent(path).join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            random_suffix()
        ));
        match create_new(&tmp, access) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Opens a new file for writing with `O_CREAT | O_EXCL | O_NOFOLLOW`:
/// fails if anything, a symbolic link included, is at `path`.
fn create_new(path: &Path, access: Access) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(access.mode()).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = access;
    options.open(path)
}

/// 64 random bits in hex: temporary names no other process can guess.
fn random_suffix() -> String {
    use rand_core::RngCore as _;
    format!("{:016x}", rand_core::OsRng.next_u64())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An exclusive lock on a lock file, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{} is locked by another process", .0.display())]
    Locked(PathBuf),
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
}

/// Takes the exclusive lock on `path` (created if needed) now, or fails
/// with [`LockError::Locked`].
pub fn try_lock(path: &Path) -> Result<FileLock, LockError> {
    lock_within(path, Duration::ZERO)
}

/// Takes the exclusive lock on `path` (created if needed), waiting up to
/// `wait` for another process to release it.
pub fn lock_within(path: &Path, wait: Duration) -> Result<FileLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(io)?;
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            Err(std::fs::TryLockError::WouldBlock) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(LockError::Locked(path.to_owned()));
                }
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Why a secret key file was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The group or others may read the file.
    #[error(
        "{} is readable by group or others (mode {mode:04o}); a secret key must be private: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than any key file.
    #[error("{} is larger than {MAX_SECRET_BYTES} bytes; it is not a key file", .0.display())]
    TooLarge(PathBuf),
    /// The file cannot be read, or is not UTF-8.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
}

/// Reads a secret key file, refusing it if its mode lets the group or
/// others read or write it (`mode & 0o077 != 0`). The mode is that of the
/// file opened, so it cannot change between the check and the read.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut text = String::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(SecretError::TooLarge(path.to_owned()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, b"first", Access::Public).unwrap();
        write_atomically(&path, b"second", Access::Public).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[cfg(unix)]
    #[test]
    fn secrets_get_mode_0600_public_files_no_write_bits_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = (dir.path().join("log.key"), dir.path().join("log.vkey"));
        write_atomically(&secret, b"key", Access::Secret).unwrap();
        create_atomically(&dir.path().join("new.key"), b"key", Access::Secret).unwrap();
        write_atomically(&public, b"vkey", Access::Public).unwrap();
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&dir.path().join("new.key")), 0o600);
        assert_eq!(mode(&public) & 0o7022, 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("state");
        symlink(&victim, &path).unwrap();
        write_atomically(&path, b"new", Access::Public).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_at_a_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(".state.guess.tmp");
        symlink(&victim, &planted).unwrap();
        let error = create_new(&planted, Access::Secret).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        let dangling = dir.path().join(".state.dangling.tmp");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(create_new(&dangling, Access::Secret).is_err());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[cfg(unix)]
    #[test]
    fn creating_refuses_anything_already_there_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.key");
        create_atomically(&path, b"one", Access::Secret).unwrap();
        let error = create_atomically(&path, b"two", Access::Secret).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let link = dir.path().join("link.key");
        symlink(dir.path().join("nowhere"), &link).unwrap();
        let error = create_atomically(&link, b"two", Access::Secret).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(names(dir.path()), ["link.key", "w.key"]);
    }

    #[test]
    fn a_failed_write_removes_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a-directory");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomically(&target, b"new", Access::Public).is_err());
        assert_eq!(names(dir.path()), ["a-directory"]);
        let missing = dir.path().join("missing").join("file");
        assert!(write_atomically(&missing, b"new", Access::Public).is_err());
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = try_lock(&path).unwrap();
        let error = try_lock(&path).unwrap_err();
        assert!(matches!(&error, LockError::Locked(p) if *p == path));
        assert_eq!(
            error.to_string(),
            format!("{} is locked by another process", path.display())
        );
        let waited = Instant::now();
        let wait = Duration::from_millis(30);
        assert!(matches!(
            lock_within(&path, wait),
            Err(LockError::Locked(_))
        ));
        assert!(waited.elapsed() >= wait);
        drop(held);
        let _again = try_lock(&path).unwrap();
    }

    #[test]
    fn a_waiting_lock_is_taken_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = try_lock(&path).unwrap();
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                let lock = lock_within(&path, Duration::from_secs(60));
                taken_tx.send(()).unwrap();
                lock.map(drop)
            })
        };
        assert!(taken_rx.try_recv().is_err(), "not while it is held");
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submitter.key");
        std::fs::write(&path, "PRIVATE+KEY+x\n").unwrap();
        for exposed in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exposed)).unwrap();
            let error = read_secret(&path).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            assert!(message.contains(&format!("{exposed:04o}")), "{message}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&path).unwrap(), "PRIVATE+KEY+x\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_secret(&path).is_ok());
    }

    #[test]
    fn a_huge_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.key");
        write_atomically(
            &path,
            &vec![b'x'; MAX_SECRET_BYTES as usize + 1],
            Access::Secret,
        )
        .unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::TooLarge(_))));
    }
}
