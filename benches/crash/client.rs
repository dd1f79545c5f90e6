//! The appenders: each submits its share of the events in random unary
//! and batch calls until every one it sent is acknowledged, surviving
//! kills by waiting for the next start and resubmitting what was not
//! answered.
//!
//! A failed call is excused only if the driver had marked the server down
//! before it failed and its code is one a broken connection causes; any
//! other error, and any refusal of an event by a running server, fails the
//! run. Pushback (`RESOURCE_EXHAUSTED`) means retry: the event goes back to
//! the front of the queue.

use super::rng::XorShift;
use super::shared::Shared;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Code, Status};
use verifier::proto::log_client::LogClient;
use verifier::proto::{append_result, AppendBatchRequest, AppendRequest, AppendResponse};

/// How one call ended for the client.
enum Outcome {
    /// Answered: per event, its acknowledgement or the status refusing it.
    Answered(Vec<Result<AppendResponse, Status>>),
    /// The call failed as a whole.
    Failed(Status),
}

/// Codes a killed server can cause (through a broken connection); any
/// other code is an answer and must make sense.
fn kill_can_cause(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted
    )
}

/// Client `id`, appending events `numbers`. It reports its first failure
/// to the driver, and that it is done either way.
pub(super) async fn client(id: usize, numbers: Range<u64>, shared: Arc<Shared>) {
    if let Err(message) = client_loop(id, numbers, &shared).await {
        shared.fail(message);
    }
    shared.progress.send_modify(|p| p.clients_done += 1);
}

async fn client_loop(id: usize, numbers: Range<u64>, shared: &Shared) -> Result<(), String> {
    let mut rng =
        XorShift::new(shared.seed ^ (0x5851_f42d_4c95_7f2d_u64.wrapping_mul(id as u64 + 1)));
    let mut pending: VecDeque<u64> = numbers.clone().collect();
    let mut state = shared.server.subscribe();
    // The start this client last failed on: it waits for a later one.
    let mut failed_on: Option<u64> = None;
    let mut connection: Option<(u64, LogClient<Channel>)> = None;
    // Every event below this number has been sent at least once.
    let mut next_fresh = numbers.start;
    let mut wound_down = false;
    while !pending.is_empty() {
        let (start, url, last) = {
            let s = state
                .wait_for(|s| s.url.is_some() && failed_on.is_none_or(|f| s.start > f))
                .await
                .map_err(|_| "the driver went away".to_string())?;
            (s.start, s.url.clone().expect("a published URL"), s.last)
        };
        if last && !wound_down {
            let cutoff = next_fresh + shared.events_after_last_kill;
            pending.retain(|&n| n < cutoff);
            wound_down = true;
            if pending.is_empty() {
                break;
            }
        }
        let mut log = match connection.take() {
            Some((s, log)) if s == start => log,
            _ => match LogClient::connect(url).await {
                Ok(log) => log,
                Err(e) => {
                    failed_on = Some(after_failure(
                        id,
                        start,
                        shared,
                        Status::unavailable(e.to_string()),
                        &[],
                    )?);
                    continue;
                }
            },
        };
        let unary = rng.next_u64().is_multiple_of(2);
        let count = if unary {
            1
        } else {
            (rng.between(2, shared.max_batch as u64) as usize).min(pending.len())
        };
        let batch: Vec<u64> = pending.drain(..count).collect();
        next_fresh = next_fresh.max(batch.iter().max().map_or(0, |&n| n + 1));
        shared.book().sending(&batch);
        let outcome = if unary {
            let event = Some(shared.events[batch[0] as usize].clone());
            match log.append(AppendRequest { event }).await {
                Ok(answer) => Outcome::Answered(vec![Ok(answer.into_inner())]),
                Err(status) => Outcome::Failed(status),
            }
        } else {
            let events = batch
                .iter()
                .map(|&n| shared.events[n as usize].clone())
                .collect();
            match log.append_batch(AppendBatchRequest { events }).await {
                Ok(answer) => Outcome::Answered(
                    answer
                        .into_inner()
                        .results
                        .into_iter()
                        .map(|r| match r.result {
                            Some(append_result::Result::Appended(a)) => Ok(a),
                            Some(append_result::Result::Error(e)) => {
                                Err(Status::new(Code::from(e.code), e.message))
                            }
                            None => Err(Status::internal("a result with neither outcome")),
                        })
                        .collect(),
                ),
                Err(status) => Outcome::Failed(status),
            }
        };
        let results = match outcome {
            Outcome::Failed(status) if status.code() == Code::ResourceExhausted => {
                shared.book().pushed_back(&batch);
                retry_later(&mut pending, batch);
                connection = Some((start, log));
                tokio::task::yield_now().await;
                continue;
            }
            Outcome::Failed(status) => {
                failed_on = Some(after_failure(id, start, shared, status, &batch)?);
                retry_later(&mut pending, batch);
                continue;
            }
            Outcome::Answered(results) => results,
        };
        if results.len() != batch.len() {
            return Err(format!(
                "client {id}: start #{start} answered {} results for a batch of {}",
                results.len(),
                batch.len()
            ));
        }
        {
            let mut book = shared.book();
            if unary {
                book.unary_calls += 1;
            } else {
                book.batch_calls += 1;
            }
        }
        let mut unanswered = Vec::new();
        let mut acknowledged = 0;
        for (&n, result) in batch.iter().zip(results) {
            match result {
                Ok(answer) => {
                    shared.acknowledge(id, n, start, &answer)?;
                    acknowledged += 1;
                }
                Err(status) if status.code() == Code::ResourceExhausted => {
                    shared.book().pushed_back(&[n]);
                    unanswered.push(n);
                }
                Err(status) => {
                    return Err(format!(
                        "client {id}: start #{start}, while running, refused event {n} in a \
                         batch with {:?}: {}",
                        status.code(),
                        status.message()
                    ))
                }
            }
        }
        if acknowledged > 0 {
            shared
                .progress
                .send_modify(|p| p.acknowledged += acknowledged);
        }
        let pushed_back = !unanswered.is_empty();
        retry_later(&mut pending, unanswered);
        connection = Some((start, log));
        if pushed_back {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Puts unanswered events back at the front, in order.
fn retry_later(pending: &mut VecDeque<u64>, batch: Vec<u64>) {
    for n in batch.into_iter().rev() {
        pending.push_front(n);
    }
}

/// Decides whether a failed call is explained by a kill. Returns the start
/// it failed on (the client then waits for a later one), or the failure.
fn after_failure(
    id: usize,
    start: u64,
    shared: &Shared,
    status: Status,
    batch: &[u64],
) -> Result<u64, String> {
    let killed = {
        let now = shared.server.borrow();
        now.start != start || now.url.is_none()
    };
    if killed && kill_can_cause(status.code()) {
        Ok(start)
    } else {
        Err(format!(
            "client {id}: start #{start} ({}) failed a call for events {batch:?} with {:?}: {}",
            if killed {
                "being killed"
            } else {
                "running, not killed"
            },
            status.code(),
            status.message()
        ))
    }
}
