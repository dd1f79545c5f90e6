//! One start of the `log-server` process under test: spawn it on the data
//! directory, wait for the address it announces, keep the tail of its
//! stderr for failure reports, and SIGKILL it.
//!
//! The server is started on port 0 and prints `listening on <addr>` once
//! it serves; the harness waits for that line, never for a clock. Its
//! keys are read from the data directory the first start created.

use super::CrashConfig;
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use verifier::keys::{SigningKey, VerifierKey};

/// How many lines of a server's standard error a failure report quotes.
const STDERR_LINES: usize = 40;

/// A running server, killed when dropped so that no failed run leaves one
/// behind.
pub(super) struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// The last [`STDERR_LINES`] lines it wrote to stderr.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// From spawning the process to its `listening on` line.
    pub(super) took: Duration,
}

impl Server {
    /// Starts `log-server serve` on the configured data directory and
    /// waits, up to the stall timeout, for its `listening on` line.
    pub(super) async fn start(config: &CrashConfig) -> Result<Self, String> {
        let began = Instant::now();
        let mut child = Command::new(&config.server_binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(&config.data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--origin", &config.origin])
            .args(["--storage", &config.storage])
            .args(&config.server_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", config.server_binary.display()))?;
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let drain = {
            let pipe = child.stderr.take().expect("piped stderr");
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut tail = stderr.lock().expect("stderr tail lock");
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let waiting = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let addr = loop {
                match lines.next() {
                    Some(Ok(line)) => {
                        if let Some(addr) = line.strip_prefix("listening on ") {
                            break addr.parse::<SocketAddr>().ok();
                        }
                    }
                    _ => break None,
                }
            };
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            addr
        });
        let addr = match tokio::time::timeout(config.stall_timeout, waiting).await {
            Ok(joined) => joined.expect("the stdout reader"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = drain.join();
                return Err(format!(
                    "log-server (pid {pid}) did not listen within {:?}\n--- its stderr:\n{}",
                    config.stall_timeout,
                    tail_text(&stderr)
                ));
            }
        };
        let Some(addr) = addr else {
            let status = child.wait().map_err(|e| e.to_string())?;
            let _ = drain.join();
            return Err(format!(
                "log-server exited ({status}) without listening\n--- its stderr:\n{}",
                tail_text(&stderr)
            ));
        };
        Ok(Self {
            child,
            addr,
            data_dir: config.data_dir.clone(),
            stderr,
            took: began.elapsed(),
        })
    }

    /// The log's one URL, for gRPC and the tiles.
    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log's verifier key, which the first start wrote.
    pub(super) fn log_key(&self) -> Result<VerifierKey, String> {
        let path = self.data_dir.join("log.vkey");
        VerifierKey::parse(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The operator submitter key the first start created: the clients
    /// sign with it, so it is on the allowlist.
    pub(super) fn submitter_key(&self) -> Result<SigningKey, String> {
        let path = self.data_dir.join("submitter.key");
        SigningKey::parse(&read(&path)?).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// How the process ended, if it has ended by itself.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process with SIGKILL (no clean-up, no flush, as in a
    /// crash) and reaps it.
    pub(super) async fn kill(mut self) -> Result<(), String> {
        tokio::task::spawn_blocking(move || {
            let pid = self.child.id();
            self.child
                .kill()
                .map_err(|e| format!("SIGKILL of pid {pid}: {e}"))?;
            self.child
                .wait()
                .map_err(|e| format!("reaping pid {pid}: {e}"))?;
            Ok(())
        })
        .await
        .expect("the killing task")
    }

    /// `message`, followed by the last lines this process wrote to stderr.
    pub(super) fn with_stderr(&self, message: String) -> String {
        format!(
            "{message}\n--- the server's last stderr lines (pid {}):\n{}",
            self.child.id(),
            tail_text(&self.stderr)
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn tail_text(stderr: &Mutex<VecDeque<String>>) -> String {
    let lines = stderr.lock().expect("stderr tail lock");
    if lines.is_empty() {
        "(nothing on stderr)".into()
    } else {
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
