//! Collecting witness cosignatures: the log's side of C2SP tlog-witness.
//!
//! One task runs *rounds*. A round asks every configured witness, at the
//! same time, to cosign one checkpoint (`POST <prefix>/add-checkpoint`,
//! with a consistency proof from the size that witness last cosigned),
//! waits until each has answered or been given up on, and then serves that
//! checkpoint with the cosignatures that came back ([`Log::serve_witnessed`]).
//! The task wakes on each newly published checkpoint and always witnesses
//! the newest, skipping those published while a round was running, as
//! Sunlight and Tessera do: witnesses see a steady trickle however fast
//! the log grows.
//!
//! Nothing here is on the append path. Appends, their checkpoints and
//! proofs use the sequencer's latest checkpoint; only what `/checkpoint`
//! serves waits for the witnesses. A dead witness costs each round its
//! retries, after which the checkpoint is served with the other
//! witnesses' cosignatures, so it never stops the served checkpoint from
//! advancing.
//!
//! Per witness the collector remembers the size it last cosigned, in
//! memory only: after a restart it assumes 0, and the witness's 409 answer
//! names its real size, from which the request is retried once. What each
//! answer leads to:
//!
//! | answer | what the collector does |
//! |---|---|
//! | 200 | verifies every line by the witness's key on the body sent; serves them, or drops them all if one fails |
//! | 409 | retries once from the size in the body; 409 for the size just sent means the witness holds another tree of that size (a split view) |
//! | 400, 403, 404, 422 | logs an error and gives up on this checkpoint |
//! | 5xx, 429, no answer within the timeout, no connection | retries with doubling backoff, then gives up on this checkpoint |
//!
//! Shutdown: the task is aborted once the sequencer has drained; a request
//! in flight at that moment finishes within its timeout.

use crate::log::{Log, Published};
use crate::witness_config::Witness;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::cosignature::{add_cosignatures, Cosignature};
use verifier::tls::ClientTls;
use verifier::witness_protocol::{
    parse_cosignatures, parse_size, AddCheckpointRequest, AddCheckpointStatus, MAX_RESPONSE_BYTES,
};

/// How hard to try one witness for one checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The deadline of one request, connecting included.
    pub timeout: Duration,
    /// How many times a transient failure is tried, the first time included.
    pub attempts: u32,
    /// The wait after the first transient failure; it doubles after each.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(250),
        }
    }
}

/// Asks the witnesses to cosign the log's checkpoints and serves the
/// result. See the module documentation.
pub struct Collector {
    log: Arc<Log>,
    origin: String,
    witnesses: Vec<Arc<Witness>>,
    /// Per witness, the size it last cosigned as far as this log knows.
    cosigned: Vec<u64>,
    agent: ureq::Agent,
    policy: RetryPolicy,
}

impl Collector {
    /// A collector for `log`, whose checkpoints carry `origin`, asking
    /// `witnesses` with `policy`.
    pub fn new(
        log: Arc<Log>,
        origin: String,
        witnesses: Vec<Witness>,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            log,
            origin,
            cosigned: vec![0; witnesses.len()],
            witnesses: witnesses.into_iter().map(Arc::new).collect(),
            agent: agent(&policy, &ClientTls::default()),
            policy,
        }
    }

    /// Reaches `https://` witnesses with `tls` (a private CA, a client
    /// certificate) instead of the web PKI's roots alone.
    pub fn with_tls(mut self, tls: &ClientTls) -> Self {
        self.agent = agent(&self.policy, tls);
        self
    }

    /// Witnesses the latest checkpoint, then each newest one as the log
    /// publishes it, for as long as the log exists.
    pub async fn run(mut self) {
        let mut latest = self.log.subscribe();
        loop {
            let checkpoint = latest.borrow_and_update().clone();
            self.round(checkpoint).await;
            if latest.changed().await.is_err() {
                return;
            }
        }
    }

    /// Asks every witness to cosign `checkpoint`, then serves it with the
    /// cosignatures that came back, and returns what it served.
    pub async fn round(&mut self, checkpoint: Arc<Published>) -> Arc<Published> {
        let context = Arc::new(Round {
            log: Arc::clone(&self.log),
            agent: self.agent.clone(),
            policy: self.policy,
            checkpoint: Arc::clone(&checkpoint),
        });
        let mut asks = JoinSet::new();
        for (i, witness) in self.witnesses.iter().enumerate() {
            let context = Arc::clone(&context);
            let witness = Arc::clone(witness);
            let cosigned = self.cosigned[i];
            asks.spawn(async move { (i, ask(&context, &witness, cosigned).await) });
        }
        // Lines go into the note in the order the witnesses are listed, not
        // the order they answer in, so that one round's note is reproducible.
        let mut answers = vec![Vec::new(); self.witnesses.len()];
        while let Some(joined) = asks.join_next().await {
            let (i, (size, outcome)) = match joined {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::error!(error = %e, "a witness request task failed");
                    continue;
                }
            };
            self.cosigned[i] = size;
            let witness = &self.witnesses[i];
            match outcome {
                Ok(lines) => answers[i] = lines,
                Err(Failure::Unavailable(reason)) => tracing::warn!(
                    witness = %witness.key.key_id(), url = %witness.url,
                    size = checkpoint.size, "witness unavailable: {reason}"
                ),
                Err(Failure::Refused(reason)) => tracing::error!(
                    witness = %witness.key.key_id(), url = %witness.url,
                    size = checkpoint.size, "witness did not cosign: {reason}"
                ),
            }
        }
        let cosigned_by: Vec<String> = self
            .witnesses
            .iter()
            .zip(&answers)
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(witness, _)| witness.key.key_id())
            .collect();
        let cosignatures: Vec<Cosignature> = answers.into_iter().flatten().collect();
        let served = Arc::new(self.with_cosignatures(&checkpoint, &cosignatures));
        self.log.serve_witnessed(Arc::clone(&served));
        tracing::info!(
            size = checkpoint.size,
            cosigned_by = %cosigned_by.join(", "),
            witnesses = self.witnesses.len(),
            "witnessing round done; serving the checkpoint with {} of {} cosignatures",
            cosigned_by.len(),
            self.witnesses.len()
        );
        served
    }

    /// The checkpoint's note with `cosignatures` added, or as it is if
    /// they cannot be added (which is logged).
    fn with_cosignatures(&self, checkpoint: &Published, cosignatures: &[Cosignature]) -> Published {
        let signed = SignedCheckpoint {
            checkpoint: Checkpoint {
                origin: self.origin.clone(),
                size: checkpoint.size,
                root: checkpoint.root,
            },
            note: checkpoint.note.clone().into_bytes(),
        };
        let note = add_cosignatures(&signed, cosignatures)
            .map_err(|e| e.to_string())
            .and_then(|cosigned| {
                String::from_utf8(cosigned.note).map_err(|_| "the note is not UTF-8".to_owned())
            });
        match note {
            Ok(note) => Published {
                note,
                ..checkpoint.clone()
            },
            Err(e) => {
                tracing::error!(
                    error = %e, size = checkpoint.size,
                    "cannot add the cosignatures; serving the checkpoint without them"
                );
                checkpoint.clone()
            }
        }
    }
}

/// What every witness's request in one round shares.
struct Round {
    log: Arc<Log>,
    agent: ureq::Agent,
    policy: RetryPolicy,
    checkpoint: Arc<Published>,
}

/// Why a witness did not cosign, sorted by how loudly to say so.
enum Failure {
    /// Nobody answered usefully in time: the witness is down or overloaded.
    Unavailable(String),
    /// The witness refused, or answered with something unusable: the log
    /// or the witness is misconfigured, or one of them misbehaves.
    Refused(String),
}

/// One exchange with a witness, as far as the protocol is concerned.
enum Answer {
    Cosigned(Vec<Cosignature>),
    /// 409: the witness's latest cosigned size.
    Conflict(u64),
    /// Worth trying again after a while.
    Transient(String),
    /// Not worth trying again for this checkpoint.
    Refused(String),
}

/// Asks `witness`, believed to have cosigned `cosigned`, to cosign the
/// round's checkpoint. Returns the size it is now known to have cosigned,
/// and its verified cosignatures or why there are none.
async fn ask(
    round: &Round,
    witness: &Witness,
    cosigned: u64,
) -> (u64, Result<Vec<Cosignature>, Failure>) {
    let size = round.checkpoint.size;
    let mut old = cosigned;
    let mut retried_conflict = false;
    loop {
        if old > size {
            let reason = format!(
                "the witness has cosigned a tree of size {old} for this origin, larger than \
                 this checkpoint's {size}: another signer of this log's key, or a fork"
            );
            return (old, Err(Failure::Refused(reason)));
        }
        let request = match request(round, old).await {
            Ok(request) => request,
            Err(reason) => return (old, Err(Failure::Refused(reason))),
        };
        match post_with_retries(round, witness, &request).await {
            Answer::Cosigned(lines) => return (size, Ok(lines)),
            Answer::Conflict(theirs) if theirs != old && !retried_conflict => {
                tracing::info!(
                    witness = %witness.key.key_id(), sent = old, theirs,
                    "witness is at another size; retrying from it"
                );
                retried_conflict = true;
                old = theirs;
            }
            Answer::Conflict(theirs) if theirs == old => {
                let reason = format!(
                    "409 for old size {old}, which is the size it reports: it holds another \
                     tree of that size (a split view)"
                );
                return (theirs, Err(Failure::Refused(reason)));
            }
            Answer::Conflict(theirs) => {
                let reason = format!("409 again, now at size {theirs}");
                return (theirs, Err(Failure::Refused(reason)));
            }
            Answer::Transient(reason) => return (old, Err(Failure::Unavailable(reason))),
            Answer::Refused(reason) => return (old, Err(Failure::Refused(reason))),
        }
    }
}

/// The `add-checkpoint` request for the round's checkpoint from `old`,
/// with the log's own consistency proof (read from storage, off the async
/// workers).
async fn request(round: &Round, old: u64) -> Result<AddCheckpointRequest, String> {
    let log = Arc::clone(&round.log);
    let size = round.checkpoint.size;
    let proof = tokio::task::spawn_blocking(move || log.consistency_proof(old, size))
        .await
        .map_err(|e| format!("the proof task failed: {e}"))?
        .map_err(|e| format!("cannot prove {old} -> {size}: {e}"))?;
    AddCheckpointRequest::new(old, proof, round.checkpoint.note.clone().into_bytes())
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// Sends `request`, retrying transient failures with doubling backoff.
async fn post_with_retries(
    round: &Round,
    witness: &Witness,
    request: &AddCheckpointRequest,
) -> Answer {
    let attempts = round.policy.attempts.max(1);
    let mut backoff = round.policy.backoff;
    let mut attempt = 1;
    loop {
        match post(round, witness, request).await {
            Answer::Transient(reason) if attempt < attempts => {
                tracing::debug!(
                    witness = %witness.key.key_id(), attempt,
                    "witness request failed, retrying in {backoff:?}: {reason}"
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
            Answer::Transient(reason) => {
                return Answer::Transient(format!("{reason} (after {attempts} attempts)"))
            }
            answer => return answer,
        }
    }
}

/// One `POST <prefix>/add-checkpoint`, with the reply read into an
/// [`Answer`].
async fn post(round: &Round, witness: &Witness, request: &AddCheckpointRequest) -> Answer {
    let agent = round.agent.clone();
    let url = witness.add_checkpoint_url();
    let body = request.to_body();
    let sent = tokio::task::spawn_blocking(move || send(&agent, &url, &body)).await;
    let (status, body) = match sent {
        Ok(Ok(reply)) => reply,
        Ok(Err(reason)) => return Answer::Transient(reason),
        Err(e) => return Answer::Transient(format!("the request task failed: {e}")),
    };
    let refused = Answer::Refused;
    match AddCheckpointStatus::from_code(status) {
        Some(AddCheckpointStatus::Ok) => match parse_cosignatures(&body, request, &witness.key) {
            Ok(lines) => Answer::Cosigned(lines),
            Err(e) => refused(format!("its answer was dropped: {e}")),
        },
        Some(AddCheckpointStatus::Conflict) => match parse_size(&body) {
            Ok(size) => Answer::Conflict(size),
            Err(_) => refused(format!(
                "409 without a size to retry from (a fork?): {}",
                first_line(&body)
            )),
        },
        Some(_) => refused(format!("HTTP {status}: {}", first_line(&body))),
        None if status == 429 || (500..600).contains(&status) => {
            Answer::Transient(format!("HTTP {status}: {}", first_line(&body)))
        }
        None => refused(format!("unexpected HTTP {status}")),
    }
}

/// The HTTP client for witnesses: `policy`'s timeout, no proxy, no
/// redirects, `tls` for `https://`.
fn agent(policy: &RetryPolicy, tls: &ClientTls) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(policy.timeout))
        .http_status_as_error(false)
        // A witness is addressed directly; a 3xx is an answer to report,
        // not a place to re-send a signed checkpoint to.
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .tls_config(tls.http())
        .build()
        .new_agent()
}

/// Sends one request and reads at most one byte more than a valid answer
/// can hold. `Err` is a transport failure: no connection, or no complete
/// answer within the timeout.
fn send(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "text/plain; charset=utf-8")
        .send(body)
        .map_err(|e| match verifier::tls::certificate_error(&e) {
            Some(reason) => format!("POST {url}: {reason}"),
            None => format!("POST {url}: {e}"),
        })?;
    let status = response.status().as_u16();
    let mut reply = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut reply)
        .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    Ok((status, reply))
}

/// The first line of an error body, shortened, for a log message.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests;
