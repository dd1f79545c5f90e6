//! The load: C workers sending pre-signed requests over gRPC and tallying
//! what came back.
//!
//! Connections: by default one HTTP/2 connection per worker, as the issue's
//! "64 concurrent clients" are 64 clients. tonic multiplexes requests over a
//! connection, so `--connections K` < C shares K connections round-robin,
//! but one connection is one socket and one client-side I/O task, which
//! serialises the load on one core; several connections let both the client
//! and the server spread it.
//!
//! Workers take the next request from one shared queue, so a fast worker
//! never idles behind a slow one. With a [`Schedule`] a worker sleeps until
//! its request is due; the latency clock starts at the due time (see
//! `pacing`). Latency stops when the answer arrives, before any checking.

use crate::pacing::Schedule;
use crate::stats::Latencies;
use crate::verify::{Ack, AnswerChecker};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use verifier::proto::log_client::LogClient;
use verifier::proto::{
    append_result, AppendBatchRequest, AppendRequest, AppendResponse, GetCheckpointRequest,
    SignedEvent,
};

/// The largest answer accepted: a batch answer carries a checkpoint and a
/// proof per event, about 1 KiB each, so tonic's 4 MiB default would
/// refuse batches of a few thousand.
const MAX_ANSWER_BYTES: usize = 256 << 20;
/// How long connecting, or the first request, may take before the log is
/// declared unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many verification failures are kept word for word; the rest are
/// counted.
const FAILURE_EXAMPLES: usize = 5;

/// Opens `n` connections to the log at `url`.
pub async fn connect(url: &str, n: usize) -> Result<Vec<LogClient<Channel>>, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("--log {url}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        clients.push(LogClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES));
    }
    Ok(clients)
}

/// Asks the log for its checkpoint, proving it answers gRPC at all.
pub async fn probe(client: &LogClient<Channel>) -> Result<String, String> {
    let mut client = client.clone();
    let call = client.get_checkpoint(GetCheckpointRequest {});
    match tokio::time::timeout(CONNECT_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer.into_inner().checkpoint),
        Ok(Err(status)) => Err(format!(
            "GetCheckpoint failed: {}: {}",
            code_name(status.code()),
            status.message()
        )),
        Err(_) => Err(format!(
            "GetCheckpoint did not answer within {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// What to send and how.
pub struct Plan {
    /// The requests, each one event (`Append`) or many (`AppendBatch`).
    pub requests: Vec<Vec<SignedEvent>>,
    /// Whether to use `AppendBatch`.
    pub batched: bool,
    /// Events per request, for numbering events (the last request may
    /// hold fewer).
    pub batch: usize,
    /// How many requests may be in flight.
    pub concurrency: usize,
    /// When requests are due.
    pub schedule: Schedule,
    /// Verify every answer, with the log's key.
    pub checker: Option<AnswerChecker>,
}

/// Calls (or, inside a batch, events) that failed with one status code.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    /// How many calls failed (for events inside a batch, equal to `events`).
    pub count: u64,
    /// Events they carried.
    pub events: u64,
    /// The log's first message for this code, to say what went wrong.
    pub first_message: String,
}

/// What the workers saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of every acknowledged event.
    pub latencies: Latencies,
    /// Events appended (acknowledged and not duplicates).
    pub appended: u64,
    /// Events acknowledged as already in the log.
    pub duplicates: u64,
    /// Failed calls by gRPC status code.
    pub rpc_errors: BTreeMap<String, Errors>,
    /// Events refused inside an `AppendBatch`, by their `AppendError` code.
    pub event_errors: BTreeMap<String, Errors>,
    /// The latest any request went out after it was due.
    pub max_lag: Duration,
    /// Verified acknowledgments, kept for the entry check (only with a key).
    pub acks: Vec<Ack>,
    /// How many answers failed verification.
    pub verify_failed: u64,
    /// The first few of those failures, word for word.
    pub verify_examples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.merge(other.latencies);
        self.appended += other.appended;
        self.duplicates += other.duplicates;
        for (mine, theirs) in [
            (&mut self.rpc_errors, other.rpc_errors),
            (&mut self.event_errors, other.event_errors),
        ] {
            for (code, e) in theirs {
                let entry = mine.entry(code).or_insert_with(|| Errors {
                    first_message: e.first_message.clone(),
                    ..Errors::default()
                });
                entry.count += e.count;
                entry.events += e.events;
            }
        }
        self.max_lag = self.max_lag.max(other.max_lag);
        self.acks.extend(other.acks);
        self.verify_failed += other.verify_failed;
        self.verify_examples.extend(other.verify_examples);
        self.verify_examples.truncate(FAILURE_EXAMPLES);
    }

    /// Records a failure to verify the log's answer.
    pub fn verification_failed(&mut self, what: String) {
        self.verify_failed += 1;
        if self.verify_examples.len() < FAILURE_EXAMPLES {
            self.verify_examples.push(what);
        }
    }

    fn acknowledged(
        &mut self,
        answer: &AppendResponse,
        event: usize,
        checker: Option<&AnswerChecker>,
    ) {
        if answer.duplicate {
            self.duplicates += 1;
        } else {
            self.appended += 1;
        }
        if let Some(checker) = checker {
            match checker.check(answer) {
                Ok(leaf) => self.acks.push(Ack {
                    index: answer.index,
                    leaf,
                    event,
                }),
                Err(what) => self.verification_failed(what),
            }
        }
    }
}

fn count_error(errors: &mut BTreeMap<String, Errors>, code: String, events: u64, message: &str) {
    let entry = errors.entry(code).or_insert_with(|| Errors {
        first_message: message.to_owned(),
        ..Errors::default()
    });
    entry.count += 1;
    entry.events += events;
}

/// The canonical gRPC name of `code`, such as `RESOURCE_EXHAUSTED`.
pub fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    if camel == "Ok" {
        return "OK".into();
    }
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// Runs the plan over `clients` and returns the tally and the wall time,
/// from the first send to the last answer.
pub async fn run(clients: Vec<LogClient<Channel>>, plan: Plan) -> (Tally, Duration) {
    let queue = Arc::new(Mutex::new(plan.requests.into_iter().enumerate()));
    let start = Instant::now();
    let workers: Vec<_> = (0..plan.concurrency)
        .map(|w| {
            let worker = Worker {
                client: clients[w % clients.len()].clone(),
                batched: plan.batched,
                batch: plan.batch,
                schedule: plan.schedule,
                start,
                checker: plan.checker.clone(),
            };
            tokio::spawn(worker.run(Arc::clone(&queue)))
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a load worker panicked"));
    }
    (tally, start.elapsed())
}

/// The shared queue of numbered requests.
type Queue = Arc<Mutex<std::iter::Enumerate<std::vec::IntoIter<Vec<SignedEvent>>>>>;

/// One event's answer: appended, or refused with a code and message.
type EventAnswer = Result<AppendResponse, (String, String)>;

struct Worker {
    client: LogClient<Channel>,
    batched: bool,
    batch: usize,
    schedule: Schedule,
    start: Instant,
    checker: Option<AnswerChecker>,
}

impl Worker {
    async fn run(mut self, queue: Queue) -> Tally {
        let mut tally = Tally::default();
        loop {
            let Some((request, events)) = queue.lock().expect("queue lock").next() else {
                break;
            };
            let due = self.schedule.due(request).map(|offset| self.start + offset);
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            let sent = Instant::now();
            if let Some(due) = due {
                tally.max_lag = tally.max_lag.max(sent.saturating_duration_since(due));
            }
            let count = events.len() as u64;
            let answers = self.send(events).await;
            let latency = due.unwrap_or(sent).elapsed();
            let answers = match answers {
                Ok(answers) if answers.len() as u64 == count => answers,
                Ok(answers) => {
                    let message = format!("{} results for {count} events", answers.len());
                    count_error(
                        &mut tally.rpc_errors,
                        "BAD_RESPONSE".into(),
                        count,
                        &message,
                    );
                    continue;
                }
                Err(status) => {
                    let code = code_name(status.code());
                    count_error(&mut tally.rpc_errors, code, count, status.message());
                    continue;
                }
            };
            let first_event = request * self.batch;
            let mut acknowledged = 0;
            for (i, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(answer) => {
                        acknowledged += 1;
                        tally.acknowledged(&answer, first_event + i, self.checker.as_ref());
                    }
                    Err((code, message)) => {
                        count_error(&mut tally.event_errors, code, 1, &message);
                    }
                }
            }
            tally.latencies.record(latency, acknowledged);
        }
        tally
    }

    /// Sends one request and returns one answer per event.
    async fn send(&mut self, events: Vec<SignedEvent>) -> Result<Vec<EventAnswer>, tonic::Status> {
        if !self.batched {
            let request = AppendRequest {
                event: events.into_iter().next(),
            };
            return Ok(vec![Ok(self.client.append(request).await?.into_inner())]);
        }
        let results = self
            .client
            .append_batch(AppendBatchRequest { events })
            .await?
            .into_inner()
            .results;
        Ok(results
            .into_iter()
            .map(|r| match r.result {
                Some(append_result::Result::Appended(answer)) => Ok(answer),
                Some(append_result::Result::Error(e)) => {
                    Err((code_name(tonic::Code::from(e.code)), e.message))
                }
                None => Err(("EMPTY_RESULT".into(), "the log sent an empty result".into())),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_get_their_canonical_names() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
        assert_eq!(code_name(tonic::Code::from(9)), "FAILED_PRECONDITION");
    }
}
