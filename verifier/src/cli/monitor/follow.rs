//! Following one log: its last verified checkpoint (the monitor's own
//! view), kept in the trusted state directory, and the checks that compare
//! anything newly seen with it.
//!
//! The own view only ever moves forward, and only by a consistency proof
//! from the log's tiles ([`TrustedState::accept`]). A checkpoint offered by
//! a peer is checked against the own view by asking the monitor's own
//! configured log, never the peer:
//!
//! - not larger than the own view: compared right away (see [`compare`]);
//! - larger: the own view is refreshed from the log first, since an honest
//!   log that merely moved on serves a tree at least that large by now;
//! - still larger than anything the log serves: remembered and compared at
//!   the next poll that reaches its size. Never an alarm by itself: the
//!   log may simply be slow to publish, and if it is hiding a fork from
//!   this monitor, the peer (whose view is the larger) proves it.
//!
//! Work on one log is serialised by a lock, so the trusted state is never
//! written by two checks at once.
//!
//! A peer repeating checkpoints costs the log nothing: a tree already
//! compared is remembered ([`Settled`]) and not compared again, and a tree
//! already waiting for the log to reach it does not make the monitor
//! fetch the log's checkpoint again.

use super::compare::{compare, Comparison};
use super::settled::Settled;
use crate::checkpoint::SignedCheckpoint;
use crate::cli::outcome::Failure;
use crate::cli::remote::Log;
use crate::cli::state::{Acceptance, TrustedState};
use crate::evidence::Evidence;
use crate::keys::VerifierKey;
use std::path::Path;
use std::sync::Mutex;

/// The most peer checkpoints remembered per log while they are ahead of
/// it; beyond that the largest are dropped, as they take longest to check.
const MAX_AHEAD: usize = 8;

/// One followed log.
pub struct FollowedLog {
    log: Log,
    key: VerifierKey,
    view: Mutex<View>,
    /// The own view, readable while a check holds `view`, for gossip.
    published: Mutex<Option<SignedCheckpoint>>,
}

struct View {
    state: TrustedState,
    own: Option<SignedCheckpoint>,
    ahead: Vec<Offered>,
    /// Trees compared already, the own views among them.
    settled: Settled,
}

/// A peer's checkpoint waiting for the log to reach its size.
struct Offered {
    checkpoint: SignedCheckpoint,
    from: String,
}

/// What a poll or a check turned up.
#[derive(Debug, Default)]
pub struct Checked {
    /// The own view moved forward.
    pub advanced: bool,
    /// Split views found, each with its evidence.
    pub split_views: Vec<Evidence>,
}

impl FollowedLog {
    /// Follows `log`, whose checkpoints verify under `key`, starting from
    /// the view persisted under `state_dir`.
    pub fn open(log: Log, key: VerifierKey, state_dir: &Path) -> Result<Self, Failure> {
        let state = TrustedState::open(state_dir, &key)?;
        let own = state.trusted()?;
        Ok(Self {
            log,
            key,
            published: Mutex::new(own.clone()),
            view: Mutex::new(View {
                settled: own.iter().fold(Settled::default(), |mut settled, own| {
                    settled.insert(own.checkpoint.size, &own.checkpoint.root);
                    settled
                }),
                state,
                own,
                ahead: Vec::new(),
            }),
        })
    }

    /// The log's verifier key; its name is the log's origin.
    pub fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// The log's URL.
    pub fn url(&self) -> &str {
        self.log.url()
    }

    /// The last verified checkpoint, as offered to peers.
    pub fn own_view(&self) -> Option<SignedCheckpoint> {
        self.published.lock().expect("view lock").clone()
    }

    /// Fetches the log's checkpoint, moves the own view forward to it if it
    /// is consistent, then compares the remembered peer checkpoints that
    /// the own view has now reached.
    pub fn poll(&self) -> Checked {
        let mut view = self.view.lock().expect("view lock");
        let mut checked = Checked::default();
        self.refresh(&mut view, &mut checked);
        self.recheck_ahead(&mut view, &mut checked);
        checked
    }

    /// Checks `offered`, a peer's checkpoint already verified under the
    /// log's key, against the own view; `from` names the peer.
    pub fn check_offered(&self, offered: SignedCheckpoint, from: &str) -> Checked {
        let mut view = self.view.lock().expect("view lock");
        let mut checked = Checked::default();
        let tree = (offered.checkpoint.size, offered.checkpoint.root);
        if view.settled.contains(tree.0, &tree.1) || is_waiting(&view, &offered) {
            return checked;
        }
        let behind = |view: &View| {
            view.own
                .as_ref()
                .is_none_or(|own| own.checkpoint.size < offered.checkpoint.size)
        };
        if behind(&view) {
            self.refresh(&mut view, &mut checked);
            self.recheck_ahead(&mut view, &mut checked);
        }
        if behind(&view) {
            let size = offered.checkpoint.size;
            if remember(&mut view, offered, from) {
                tracing::info!(
                    log = self.log.url(),
                    size,
                    own = view.own.as_ref().map(|own| own.checkpoint.size),
                    "the checkpoint from {from} is ahead of what the log serves; re-checking it at the next poll"
                );
            }
            return checked;
        }
        let own = view
            .own
            .clone()
            .expect("not behind, so there is an own view");
        match self.compare_into(&own, &offered, from, &mut checked) {
            Ok(()) => view.settled.insert(tree.0, &tree.1),
            Err(reason) => {
                tracing::warn!(
                    log = self.log.url(),
                    "cannot check the checkpoint of size {} from {from} yet: {reason}",
                    offered.checkpoint.size
                );
                remember(&mut view, offered, from);
            }
        }
        checked
    }

    /// Moves the own view forward to the log's current checkpoint.
    fn refresh(&self, view: &mut View, checked: &mut Checked) {
        let served = match self.log.checkpoint(&self.key) {
            Ok(served) => served,
            Err(Failure::Security(finding)) => {
                tracing::error!(log = self.log.url(), "{}", finding.summary);
                return;
            }
            Err(Failure::Unchecked(reason)) => {
                tracing::warn!(
                    log = self.log.url(),
                    "cannot fetch the checkpoint: {reason}"
                );
                return;
            }
        };
        if let Some(own) = view.own.clone() {
            if served.checkpoint.size < own.checkpoint.size {
                self.check_older(&own, &served, checked);
                return;
            }
        }
        match view.state.accept(&self.log, &served) {
            Ok(Acceptance::Unchanged) => {}
            Ok(Acceptance::First) => self.advance(view, served, None, checked),
            Ok(Acceptance::Extended { from }) => self.advance(view, served, Some(from), checked),
            Err(Failure::Unchecked(reason)) => {
                tracing::warn!(
                    log = self.log.url(),
                    "cannot verify the new checkpoint: {reason}"
                );
            }
            Err(Failure::Security(finding)) => {
                let Some(own) = view.own.clone() else {
                    tracing::error!(log = self.log.url(), "{}", finding.summary);
                    return;
                };
                match self.compare_with(&own, &served, "the log's /checkpoint") {
                    Ok(Comparison::SplitView(evidence)) => checked.split_views.push(*evidence),
                    Ok(Comparison::Consistent) => tracing::warn!(
                        log = self.log.url(),
                        "{}; on a second look the two are consistent, so the log's tiles changed in between",
                        finding.summary
                    ),
                    Err(reason) => tracing::error!(
                        log = self.log.url(),
                        "{}; no evidence can be written: {reason}",
                        finding.summary
                    ),
                }
            }
        }
    }

    /// The log serves an older checkpoint than the own view: a stale cache
    /// if it is a prefix, a split view if not.
    fn check_older(
        &self,
        own: &SignedCheckpoint,
        served: &SignedCheckpoint,
        checked: &mut Checked,
    ) {
        let (size, verified) = (served.checkpoint.size, own.checkpoint.size);
        match self.compare_with(own, served, "the log's /checkpoint") {
            Ok(Comparison::SplitView(evidence)) => checked.split_views.push(*evidence),
            Ok(Comparison::Consistent) => tracing::warn!(
                log = self.log.url(),
                "the log serves size {size}, older than the verified size {verified}"
            ),
            Err(reason) => tracing::warn!(
                log = self.log.url(),
                "the log serves size {size}, older than the verified size {verified}, and it cannot be checked: {reason}"
            ),
        }
    }

    fn advance(
        &self,
        view: &mut View,
        served: SignedCheckpoint,
        from: Option<u64>,
        checked: &mut Checked,
    ) {
        tracing::info!(
            log = self.log.url(),
            size = served.checkpoint.size,
            from,
            "verified checkpoint of size {}",
            served.checkpoint.size
        );
        *self.published.lock().expect("view lock") = Some(served.clone());
        view.settled
            .insert(served.checkpoint.size, &served.checkpoint.root);
        view.own = Some(served);
        checked.advanced = true;
    }

    /// Compares the remembered peer checkpoints the own view has reached.
    fn recheck_ahead(&self, view: &mut View, checked: &mut Checked) {
        let Some(own) = view.own.clone() else {
            return;
        };
        let (ready, waiting) = std::mem::take(&mut view.ahead)
            .into_iter()
            .partition(|o| o.checkpoint.checkpoint.size <= own.checkpoint.size);
        view.ahead = waiting;
        for offered in ready {
            let Offered { checkpoint, from } = offered;
            match self.compare_into(&own, &checkpoint, &from, checked) {
                Ok(()) => view
                    .settled
                    .insert(checkpoint.checkpoint.size, &checkpoint.checkpoint.root),
                Err(reason) => {
                    tracing::warn!(
                        log = self.log.url(),
                        "cannot check the remembered checkpoint of size {} from {from} yet: {reason}",
                        checkpoint.checkpoint.size
                    );
                    remember(view, checkpoint, &from);
                }
            }
        }
    }

    /// Compares `other` with `own`, adding any split view to `checked`.
    fn compare_into(
        &self,
        own: &SignedCheckpoint,
        other: &SignedCheckpoint,
        from: &str,
        checked: &mut Checked,
    ) -> Result<(), String> {
        if let Comparison::SplitView(evidence) = self.compare_with(own, other, from)? {
            checked.split_views.push(*evidence);
        }
        Ok(())
    }

    /// Compares `other`, from `from`, with `own`, using the log's tiles.
    fn compare_with(
        &self,
        own: &SignedCheckpoint,
        other: &SignedCheckpoint,
        from: &str,
    ) -> Result<Comparison, String> {
        let context = format!(
            "monitor following {}: its verified checkpoint of size {} against the checkpoint of size {} from {from}",
            self.log.url(),
            own.checkpoint.size,
            other.checkpoint.size
        );
        compare(&self.log, own, other, &context)
    }
}

/// Whether `checkpoint`'s tree is already kept for a later poll.
fn is_waiting(view: &View, checkpoint: &SignedCheckpoint) -> bool {
    view.ahead.iter().any(|o| {
        o.checkpoint.checkpoint.size == checkpoint.checkpoint.size
            && o.checkpoint.checkpoint.root == checkpoint.checkpoint.root
    })
}

/// Keeps `checkpoint` for a later poll, once per tree, and at most
/// [`MAX_AHEAD`] of them, the smallest. Returns whether it is newly kept.
fn remember(view: &mut View, checkpoint: SignedCheckpoint, from: &str) -> bool {
    if is_waiting(view, &checkpoint) {
        return false;
    }
    let size = checkpoint.checkpoint.size;
    view.ahead.push(Offered {
        checkpoint,
        from: from.to_owned(),
    });
    view.ahead.sort_by_key(|o| o.checkpoint.checkpoint.size);
    view.ahead.truncate(MAX_AHEAD);
    view.ahead
        .iter()
        .any(|o| o.checkpoint.checkpoint.size == size)
}
