//! The logs one monitor follows, shared by its poller, its gossip server
//! and its gossip client, and where what their checks find goes.
//!
//! Polling and the checkpoints received from peers (as requests or as
//! answers) go through the same checks in [`FollowedLog`], so neither side
//! of an exchange trusts the other more. Every split view found is raised
//! through [`Alerts`]; without `--on-alert` the first new one is also sent
//! to the main loop, which stops the monitor with exit code 1.

use super::alert::Alerts;
use super::follow::{Checked, FollowedLog};
use super::intake;
use crate::cli::outcome::Failure;
use crate::keys::VerifierKey;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, Notify};

/// The followed logs and what to do with findings.
pub struct Logs {
    followed: Vec<FollowedLog>,
    keys: Vec<VerifierKey>,
    alerts: Alerts,
    findings: mpsc::UnboundedSender<Failure>,
    advanced: Notify,
    unknown_origins: AtomicU64,
    rejected: AtomicU64,
}

/// What became of a peer's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Notes dropped because they did not verify: the peer sent garbage.
    pub rejected: usize,
}

impl Logs {
    /// The logs in `followed`; a split view that stops the monitor is sent
    /// on `findings`.
    pub fn new(
        followed: Vec<FollowedLog>,
        alerts: Alerts,
        findings: mpsc::UnboundedSender<Failure>,
    ) -> Self {
        let keys = followed.iter().map(|f| f.key().clone()).collect();
        Self {
            followed,
            keys,
            alerts,
            findings,
            advanced: Notify::new(),
            unknown_origins: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Polls every log once. Blocks on the network.
    pub fn poll_all(&self) {
        for log in &self.followed {
            self.handle(log.poll());
        }
    }

    /// The own views of all logs, as offered to peers.
    pub fn offer(&self) -> Vec<String> {
        let views: Vec<_> = self
            .followed
            .iter()
            .filter_map(FollowedLog::own_view)
            .collect();
        intake::offer(views.iter().map(|v| v.note_text()))
    }

    /// Checks the checkpoints a peer sent; `from` names the peer. Blocks on
    /// the network. `Err` says which bound the message broke.
    pub fn receive(&self, notes: &[String], from: &str) -> Result<Received, String> {
        let sorted = intake::sort(notes, &self.keys)?;
        if sorted.unknown_origins > 0 {
            self.unknown_origins
                .fetch_add(sorted.unknown_origins as u64, Ordering::Relaxed);
            tracing::debug!(
                "ignored {} checkpoint(s) of logs not followed, from {from}",
                sorted.unknown_origins
            );
        }
        for reason in &sorted.rejected {
            tracing::warn!("dropped a checkpoint from {from}: {reason}");
        }
        self.rejected
            .fetch_add(sorted.rejected.len() as u64, Ordering::Relaxed);
        for (position, checkpoint) in sorted.verified {
            let checked = self.followed[position].check_offered(checkpoint, from);
            if checked.advanced {
                self.advanced.notify_one();
            }
            self.handle(checked);
        }
        Ok(Received {
            rejected: sorted.rejected.len(),
        })
    }

    /// Resolves when a peer's checkpoint moved an own view forward, so that
    /// peers hear of it without waiting for the next round.
    pub async fn advanced(&self) {
        self.advanced.notified().await;
    }

    /// Checkpoints ignored as of logs not followed, and dropped as not
    /// verifying, since start.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.unknown_origins.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    fn handle(&self, checked: Checked) {
        for evidence in checked.split_views {
            let summary = format!("split view of the log {}", evidence.origin());
            let finding = match self.alerts.raise(&evidence) {
                Ok(None) => continue,
                Ok(Some(path)) => Failure::security_with(
                    format!("{summary}: evidence written to {}", path.display()),
                    vec![("evidence file".into(), path.display().to_string())],
                ),
                Err(failure) => {
                    let reason = match failure {
                        Failure::Security(finding) => finding.summary,
                        Failure::Unchecked(reason) => reason,
                    };
                    tracing::error!(
                        "SPLIT VIEW of {}, but the evidence cannot be written ({reason}):\n{}",
                        evidence.origin(),
                        evidence.to_text()
                    );
                    Failure::security_with(
                        format!("{summary}; the evidence could not be written: {reason}"),
                        vec![("evidence".into(), evidence.to_text())],
                    )
                }
            };
            if !self.alerts.keeps_running() {
                // The receiver lives as long as the main loop; once it is
                // gone the monitor is stopping anyway.
                let _ = self.findings.send(finding);
            }
        }
    }
}
