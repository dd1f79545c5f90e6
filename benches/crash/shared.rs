//! What the driver and the clients share: the run's signed events, the
//! book, and two `watch` channels, one from the driver (which server to
//! talk to) and one to it (how far the load has got, or how it failed).

use super::book::{verify_answer, Book};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use verifier::keys::VerifierKey;
use verifier::proto::{AppendResponse, SignedEvent};

/// Which server the clients should talk to.
#[derive(Debug, Clone)]
pub(super) struct ServerState {
    /// The start number: 0 for the first start, k after kill k.
    pub(super) start: u64,
    /// Its URL, or `None` while it is being killed, restarted or checked.
    pub(super) url: Option<String>,
    /// Whether this start will not be killed: clients wind down.
    pub(super) last: bool,
}

/// What the driver waits on.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// Acknowledgements received, over all clients and starts.
    pub(super) acknowledged: u64,
    /// Clients that have stopped, having finished or failed.
    pub(super) clients_done: usize,
    /// The first failure a client saw; the driver stops on it.
    pub(super) failure: Option<String>,
}

/// What the clients and the driver share.
pub(super) struct Shared {
    /// The log's key, which every handed-out checkpoint must verify under.
    pub(super) log_key: VerifierKey,
    /// Every event of the run, by number, signed once.
    pub(super) events: Vec<SignedEvent>,
    /// Event id to event number.
    pub(super) ids: HashMap<[u8; 32], u64>,
    /// See [`CrashConfig::max_batch`](super::CrashConfig::max_batch).
    pub(super) max_batch: usize,
    /// See
    /// [`CrashConfig::events_after_last_kill`](super::CrashConfig::events_after_last_kill).
    pub(super) events_after_last_kill: u64,
    /// The run's seed, from which each client draws its call mix.
    pub(super) seed: u64,
    /// Published by the driver, watched by the clients.
    pub(super) server: watch::Sender<ServerState>,
    /// Published by the clients, watched by the driver.
    pub(super) progress: watch::Sender<Progress>,
    /// Everything the clients were told.
    book: Mutex<Book>,
}

impl Shared {
    /// Shares `events` and an empty book, with the first start (at `url`)
    /// published.
    pub(super) fn new(
        config: &super::CrashConfig,
        log_key: VerifierKey,
        events: Vec<SignedEvent>,
        url: String,
    ) -> Self {
        let ids = events
            .iter()
            .zip(0..)
            .map(|(signed, n)| (verifier::event::event_id(signed), n))
            .collect();
        let book = Book::new(events.len());
        Self {
            log_key,
            events,
            ids,
            max_batch: config.max_batch,
            events_after_last_kill: config.events_after_last_kill,
            seed: config.seed,
            server: watch::channel(ServerState {
                start: 0,
                url: Some(url),
                last: config.kills == 0,
            })
            .0,
            progress: watch::channel(Progress::default()).0,
            book: Mutex::new(book),
        }
    }

    /// Records the first failure; the driver stops on it.
    pub(super) fn fail(&self, message: String) {
        self.progress.send_modify(|p| {
            if p.failure.is_none() {
                p.failure = Some(message);
            }
        });
    }

    /// The book, locked.
    pub(super) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().expect("the book's lock")
    }

    /// Verifies one answer and records it. `Err` says what was wrong.
    pub(super) fn acknowledge(
        &self,
        client: usize,
        number: u64,
        start: u64,
        response: &AppendResponse,
    ) -> Result<(), String> {
        verify_answer(response, &self.log_key)
            .and_then(|answer| self.book().acknowledge(number, start, &answer))
            .map_err(|e| {
                format!("client {client}, event {number}, answered by start #{start}: {e}")
            })
    }

    /// Waits until `done` holds or a client fails, with a watchdog.
    pub(super) async fn wait_progress(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Progress) -> bool,
    ) -> Result<Progress, String> {
        let mut rx = self.progress.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|p| p.failure.is_some() || done(p))
                .await
                .map(|p| p.clone())
        })
        .await;
        match waited {
            Ok(Ok(progress)) => match progress.failure {
                Some(failure) => Err(failure),
                None => Ok(progress),
            },
            Ok(Err(_)) => Err("the progress channel closed".into()),
            Err(_) => {
                let p = self.progress.borrow().clone();
                Err(format!(
                    "stuck: waited {timeout:?} for {what}, with {} acknowledgements and {} \
                     clients finished",
                    p.acknowledged, p.clients_done
                ))
            }
        }
    }
}
