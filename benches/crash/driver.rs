//! The kill loop: start the server, let the clients load it, and at each
//! kill point mark it down, SIGKILL it, restart it, check it, and publish
//! the new start; then let the load wind down and check once more.

use super::check::check;
use super::client::client;
use super::rng::XorShift;
use super::server::Server;
use super::shared::{ServerState, Shared};
use super::{CrashConfig, CrashError, CrashReport, KillRecord};
use crate::workload;
use std::sync::Arc;
use std::time::Instant;

/// Aborts the client tasks when the driver returns, however it returns.
struct Clients(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Clients {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Runs the crash test described by `config`, on a multi-threaded tokio
/// runtime.
///
/// The load is at most `clients × events_per_client` events of the
/// [`workload`] mix, signed with the submitter key the first start
/// created. Kill gaps are drawn from `1..=min(max_acks_between_kills, 3/4
/// of the load / kills)`, so the load always outlasts the kills unless
/// acknowledgements overshoot the kill points by a quarter of the load,
/// which is reported as an error asking for more events
/// ([`CrashConfig::fit_load_to_kills`] sizes the load). Once the last start
/// is published the clients wind down: each finishes what it sent and
/// sends at most `events_after_last_kill` new events.
///
/// Every check that fails ends the run with a [`CrashError`] naming the
/// seed, the kill, and what was seen (the index, the event, the start that
/// acknowledged it). The caller owns the data directory; the server is
/// killed before this returns, whatever the outcome.
pub async fn run(config: CrashConfig) -> Result<CrashReport, CrashError> {
    let began = Instant::now();
    let fail = |phase: &str, message: String| CrashError {
        seed: config.seed,
        storage: config.storage.clone(),
        phase: phase.to_owned(),
        message,
    };
    if config.clients == 0 || config.events_per_client == 0 || config.max_batch < 2 {
        return Err(fail(
            "before starting",
            "a run needs clients, events, and max_batch of at least 2".into(),
        ));
    }
    let gap_limit = config.gap_limit();
    if config.kills > 0 && gap_limit == 0 {
        return Err(fail(
            "before starting",
            format!(
                "{} events cannot cover {} kills; raise events_per_client",
                config.total_events(),
                config.kills
            ),
        ));
    }
    let mut rng = XorShift::new(config.seed);
    let gaps: Vec<u64> = (0..config.kills)
        .map(|_| rng.between(1, gap_limit))
        .collect();

    let phase = "at the first start";
    let mut current = Server::start(&config).await.map_err(|e| fail(phase, e))?;
    let submitter = current
        .submitter_key()
        .map_err(|e| fail(phase, current.with_stderr(e)))?;
    let log_key = current
        .log_key()
        .map_err(|e| fail(phase, current.with_stderr(e)))?;
    let total = usize::try_from(config.total_events())
        .map_err(|_| fail("before starting", "too many events".into()))?;
    let events = tokio::task::spawn_blocking(move || {
        workload::sign_all(&submitter, total, workload::run_nonce())
    })
    .await
    .expect("signing the events");
    let shared = Arc::new(Shared::new(&config, log_key, events, current.url()));
    let clients = Clients(
        (0..config.clients)
            .map(|c| {
                let first = c as u64 * config.events_per_client;
                tokio::spawn(client(
                    c,
                    first..first + config.events_per_client,
                    Arc::clone(&shared),
                ))
            })
            .collect(),
    );

    let mut kills = Vec::with_capacity(config.kills);
    let mut acknowledged_at_kill = 0;
    for (k, gap) in (1..).zip(gaps) {
        let phase = format!("before kill {k} of {}", config.kills);
        let target = acknowledged_at_kill + gap;
        let progress = shared
            .wait_progress(
                config.stall_timeout,
                &format!("{target} acknowledgements"),
                |p| p.acknowledged >= target || p.clients_done == config.clients,
            )
            .await
            .map_err(|e| fail(&phase, current.with_stderr(e)))?;
        if progress.acknowledged < target {
            return Err(fail(
                &phase,
                format!(
                    "the load ran out after {} acknowledgements, before this kill point \
                     ({target}); raise events_per_client",
                    progress.acknowledged
                ),
            ));
        }
        // Clients must see the server marked down before the kill can
        // cause them any error: an error from a server still marked up is
        // a failure of a live server.
        shared.server.send_modify(|s| s.url = None);
        if let Some(status) = current.exited() {
            return Err(fail(
                &phase,
                current.with_stderr(format!(
                    "the server exited by itself ({status}) before it was killed"
                )),
            ));
        }
        current.kill().await.map_err(|e| fail(&phase, e))?;
        acknowledged_at_kill = shared.progress.borrow().acknowledged;

        let phase = format!("after kill {k} of {}", config.kills);
        let restarted = Server::start(&config).await.map_err(|e| {
            fail(
                &phase,
                format!(
                    "the server did not start again after SIGKILL \
                     ({acknowledged_at_kill} acknowledgements so far): {e}"
                ),
            )
        })?;
        let checking = Instant::now();
        let size = check(&restarted, k, &shared, false)
            .await
            .map_err(|e| fail(&phase, restarted.with_stderr(e)))?;
        kills.push(KillRecord {
            acknowledged_before: acknowledged_at_kill,
            waited_for: gap,
            restarted_size: size,
            restart_time: restarted.took,
            check_time: checking.elapsed(),
        });
        current = restarted;
        shared.server.send_replace(ServerState {
            start: k,
            url: Some(current.url()),
            last: k == config.kills as u64,
        });
    }

    let phase = format!("after the last kill ({})", config.kills);
    shared
        .wait_progress(config.stall_timeout, "every client to finish", |p| {
            p.clients_done == config.clients
        })
        .await
        .map_err(|e| fail(&phase, current.with_stderr(e)))?;
    drop(clients);
    let final_size = check(&current, config.kills as u64, &shared, true)
        .await
        .map_err(|e| fail("at the final check", current.with_stderr(e)))?;
    current
        .kill()
        .await
        .map_err(|e| fail("stopping the server", e))?;

    let book = shared.book();
    Ok(CrashReport {
        seed: config.seed,
        storage: config.storage.clone(),
        kills,
        events: book.acks.iter().filter(|a| a.is_some()).count() as u64,
        unsent: book.sent.iter().filter(|&&sent| !sent).count() as u64,
        final_size,
        resubmitted: book.attempts.iter().filter(|&&a| a > 1).count() as u64,
        duplicates: book.duplicates,
        unary_calls: book.unary_calls,
        batch_calls: book.batch_calls,
        pushbacks: book.pushbacks,
        checkpoints: book.checkpoints.len(),
        elapsed: began.elapsed(),
    })
}
