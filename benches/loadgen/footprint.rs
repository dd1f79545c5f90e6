//! What the log costs the machine: the server's memory and its data
//! directory's size, against the bytes of the entries it holds.
//!
//! Memory comes from `/proc/<pid>/status`: `VmHWM` is the peak resident
//! set since the server started, `VmRSS` the current one. Disk is every
//! file under the data directory (the store, keys and allowlist; the latter
//! are a few hundred bytes). The raw entry bytes are the entries as the log
//! serves them in its entry bundles, read back over HTTP: the stored leaf is
//! the log's `LogEntry` encoding (the signed event plus the acceptance
//! time), so counting what the client sent would understate it.

use std::path::Path;
use tlog_benches::http::HttpLog;
use verifier::tiles::{decode_entry_bundle, TileId, TILE_WIDTH};

/// The server's resident memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Peak resident set (`VmHWM`).
    pub peak_rss: u64,
    /// Current resident set (`VmRSS`).
    pub rss: u64,
}

/// Reads the memory of process `pid`.
pub fn memory(pid: u32) -> Result<Memory, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_status(&text).ok_or_else(|| format!("{path}: no VmHWM and VmRSS lines"))
}

/// `VmHWM` and `VmRSS` from a `/proc/<pid>/status` text (in kB there).
fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(Memory {
        peak_rss: field("VmHWM")?,
        rss: field("VmRSS")?,
    })
}

/// The size of a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disk {
    /// Sum of the files' lengths.
    pub bytes: u64,
    /// Blocks actually allocated, which differs for sparse or preallocated
    /// files.
    pub allocated: u64,
}

/// Sums every file under `dir`, recursively.
pub fn disk_usage(dir: &Path) -> Result<Disk, String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = Disk::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let meta = entry
            .metadata()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            let inner = disk_usage(&entry.path())?;
            total.bytes += inner.bytes;
            total.allocated += inner.allocated;
        } else {
            total.bytes += meta.len();
            total.allocated += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// Fetches the entry bundles `bundles` (increasing, clipped to the tree of
/// `size` entries) and hands each one's index and entries to `visit`.
pub fn scan_entries(
    http: &HttpLog,
    size: u64,
    bundles: impl IntoIterator<Item = u64>,
    mut visit: impl FnMut(u64, &[&[u8]]),
) -> Result<(), String> {
    for n in bundles {
        let Some(tile) = TileId::entry_bundle_in_tree(n, size) else {
            break;
        };
        let bundle = http.get(&tile.path())?;
        let entries = decode_entry_bundle(&bundle).map_err(|e| format!("{}: {e}", tile.path()))?;
        if entries.len() != usize::from(tile.width) {
            return Err(format!(
                "{} holds {} entries, not {}",
                tile.path(),
                entries.len(),
                tile.width
            ));
        }
        visit(n, &entries);
    }
    Ok(())
}

/// Every entry bundle of a tree of `size` entries.
pub fn all_bundles(size: u64) -> std::ops::Range<u64> {
    0..size.div_ceil(TILE_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_bytes() {
        let status = "Name:\tlog-server\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\n\
                      VmRSS:\t   40960 kB\nThreads:\t5\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                peak_rss: 50 << 20,
                rss: 40 << 20
            })
        );
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn every_bundle_of_the_tree_is_listed() {
        assert_eq!(all_bundles(0), 0..0);
        assert_eq!(all_bundles(256), 0..1);
        assert_eq!(all_bundles(257), 0..2);
    }
}
