//! The `tlog.v1.Log` gRPC service.
//!
//! Every error names what the caller should do. INVALID_ARGUMENT,
//! UNAUTHENTICATED and PERMISSION_DENIED mean "fix the request" and name
//! the field or key; RESOURCE_EXHAUSTED and UNAVAILABLE mean "retry later";
//! OUT_OF_RANGE and NOT_FOUND mean the log does not (yet) hold what was
//! asked; INTERNAL means the operator has a storage problem.

use crate::admission::Budgets;
use crate::entry_stream::{ReadGate, ReadLimits};
use crate::log::{Log, ReadError};
use crate::sequencer::{SequenceError, Sequenced, Sequencer, Submission};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use verifier::event::{check_submission, event_id, SubmissionError};
use verifier::keys::KeyRing;
use verifier::proto::{
    self, append_result, get_inclusion_proof_request::Leaf, AppendBatchRequest,
    AppendBatchResponse, AppendError, AppendRequest, AppendResponse, AppendResult,
    FindEntriesRequest, FindEntriesResponse, GetCheckpointRequest, GetCheckpointResponse,
    GetConsistencyProofRequest, GetConsistencyProofResponse, GetEntriesRequest,
    GetInclusionProofRequest, GetInclusionProofResponse, LeafEntry, SignedEvent,
};
use verifier::serving::ConnectionId;

/// The most events one `AppendBatch` may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// The gRPC face of one log.
#[derive(Clone)]
pub struct LogService {
    log: Arc<Log>,
    sequencer: Arc<Sequencer>,
    allowlist: Arc<KeyRing>,
    /// Bounds `GetEntries` and `FindEntries`.
    reads: ReadGate,
    /// What appends may cost, per connection and per key.
    budgets: Arc<Budgets>,
}

impl LogService {
    /// A service over `log`, appending through `sequencer`, accepting
    /// submissions signed by keys in `allowlist`.
    pub fn new(log: Arc<Log>, sequencer: Arc<Sequencer>, allowlist: Arc<KeyRing>) -> Self {
        Self {
            log,
            sequencer,
            allowlist,
            reads: ReadGate::new(ReadLimits::default()),
            budgets: Arc::new(Budgets::new(crate::admission::BudgetConfig::default())),
        }
    }

    /// The same service with `budgets` for appends instead of the
    /// defaults.
    #[must_use]
    pub fn with_budgets(mut self, budgets: Arc<Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// The same service with `limits` on entry reads instead of the
    /// defaults.
    #[must_use]
    pub fn with_read_limits(mut self, limits: ReadLimits) -> Self {
        self.reads = ReadGate::new(limits);
        self
    }

    /// Validates and queues one submission from `connection`, within its
    /// budgets; the receiver yields its fate.
    fn enqueue(
        &self,
        signed: SignedEvent,
        connection: Option<ConnectionId>,
    ) -> Result<Pending, Status> {
        self.budgets.failures_allowed(connection)?;
        match check_submission(&signed, &self.allowlist) {
            Ok(_) => {}
            Err(error @ SubmissionError::BadSignature(_)) => {
                self.budgets.charge_failures(connection, 1);
                return Err(submission_status(error));
            }
            Err(error) => return Err(submission_status(error)),
        }
        self.budgets.charge_key(&signed.key_id, 1)?;
        self.queue(signed)
    }

    /// Queues an already validated submission.
    fn queue(&self, signed: SignedEvent) -> Result<Pending, Status> {
        let (reply, rx) = oneshot::channel();
        let event_id = event_id(&signed);
        self.sequencer
            .submit(Submission {
                signed,
                event_id,
                reply,
            })
            .map_err(sequence_status)?;
        Ok(rx)
    }

    /// Waits for a queued submission and proves its inclusion.
    async fn complete(&self, rx: Pending) -> Result<AppendResponse, Status> {
        let sequenced = rx
            .await
            .map_err(|_| Status::unavailable("the sequencer stopped before answering"))?
            .map_err(sequence_status)?;
        let checkpoint = &sequenced.checkpoint;
        let (_, proof) = self
            .log
            .inclusion_proof(sequenced.index, checkpoint.size)
            .map_err(read_status)?;
        Ok(AppendResponse {
            index: sequenced.index,
            leaf_hash: sequenced.leaf_hash.0.to_vec(),
            checkpoint: checkpoint.note.clone(),
            inclusion_proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            duplicate: sequenced.duplicate,
        })
    }
}

/// The answer a queued submission is waiting for.
type Pending = oneshot::Receiver<Result<Sequenced, SequenceError>>;

type EntryStream = Pin<Box<dyn Stream<Item = Result<LeafEntry, Status>> + Send>>;

#[tonic::async_trait]
impl proto::log_server::Log for LogService {
    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let connection = request.extensions().get::<ConnectionId>().copied();
        self.budgets.request(connection)?;
        let signed = request
            .into_inner()
            .event
            .ok_or_else(|| Status::invalid_argument("event: required"))?;
        let rx = self.enqueue(signed, connection)?;
        Ok(Response::new(self.complete(rx).await?))
    }

    async fn append_batch(
        &self,
        request: Request<AppendBatchRequest>,
    ) -> Result<Response<AppendBatchResponse>, Status> {
        let connection = request.extensions().get::<ConnectionId>().copied();
        self.budgets.request(connection)?;
        let events = request.into_inner().events;
        if events.len() > MAX_BATCH_EVENTS {
            return Err(Status::invalid_argument(format!(
                "events: {} events; at most {MAX_BATCH_EVENTS} per batch",
                events.len()
            )));
        }
        // Check every signature first, on every core and off the async
        // workers, then queue the valid events back to back, so one batch
        // request lands in as few sequencer batches as the queue allows.
        // A connection that has spent its failed-signature budget has
        // nothing checked; one with some left has checks stop once that
        // many failed, and pays for the failures it caused.
        let allowance = self.budgets.failures_allowed(connection)?;
        let allowlist = Arc::clone(&self.allowlist);
        let (checked, failures) =
            tokio::task::spawn_blocking(move || check_in_parallel(events, &allowlist, allowance))
                .await
                .map_err(|e| Status::internal(format!("validation task failed: {e}")))?;
        self.budgets.charge_failures(connection, failures);
        let queued: Vec<_> = checked
            .into_iter()
            .map(|outcome| {
                outcome.and_then(|signed| {
                    self.budgets.charge_key(&signed.key_id, 1)?;
                    self.queue(signed)
                })
            })
            .collect();
        let mut results = Vec::with_capacity(queued.len());
        for outcome in queued {
            let outcome = match outcome {
                Ok(rx) => self.complete(rx).await,
                Err(status) => Err(status),
            };
            results.push(AppendResult {
                result: Some(match outcome {
                    Ok(appended) => append_result::Result::Appended(appended),
                    Err(status) => append_result::Result::Error(AppendError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            });
        }
        Ok(Response::new(AppendBatchResponse { results }))
    }

    async fn get_checkpoint(
        &self,
        _request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: self.log.served().note.clone(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let request = request.into_inner();
        let latest = self.log.latest();
        let tree_size = if request.tree_size == 0 {
            latest.size
        } else {
            request.tree_size
        };
        let index = match request.leaf {
            None => {
                return Err(Status::invalid_argument(
                    "leaf: set index, leaf_hash or event_id",
                ))
            }
            Some(Leaf::Index(index)) => index,
            Some(Leaf::LeafHash(hash)) => self
                .log
                .index_of_leaf(&digest("leaf_hash", &hash)?)
                .map_err(read_status)?
                .ok_or_else(|| Status::not_found("leaf_hash: no entry with this leaf hash"))?,
            Some(Leaf::EventId(id)) => self
                .log
                .index_of_event(&digest("event_id", &id)?)
                .map_err(read_status)?
                .ok_or_else(|| Status::not_found("event_id: no entry with this event id"))?,
        };
        let (leaf, proof) = self
            .log
            .inclusion_proof(index, tree_size)
            .map_err(read_status)?;
        Ok(Response::new(GetInclusionProofResponse {
            index,
            tree_size,
            leaf_hash: leaf.0.to_vec(),
            proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: latest.note.clone(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let request = request.into_inner();
        let new_size = if request.new_size == 0 {
            self.log.latest().size
        } else {
            request.new_size
        };
        let proof = self
            .log
            .consistency_proof(request.old_size, new_size)
            .map_err(read_status)?;
        Ok(Response::new(GetConsistencyProofResponse {
            old_size: request.old_size,
            new_size,
            proof: proof.iter().map(|h| h.0.to_vec()).collect(),
        }))
    }

    async fn find_entries(
        &self,
        request: Request<FindEntriesRequest>,
    ) -> Result<Response<FindEntriesResponse>, Status> {
        let log = Arc::clone(&self.log);
        let permit = self.reads.admit(peer_ip(&request))?;
        let request = request.into_inner();
        // Confirming candidates and building proofs reads storage: keep it
        // off the async workers.
        let response = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::find_entries::find_entries(&log, request)
        })
        .await
        .map_err(|e| Status::internal(format!("lookup task failed: {e}")))??;
        Ok(Response::new(response))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<GetEntriesRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let peer = peer_ip(&request);
        let request = request.into_inner();
        let size = self.log.latest().size;
        if request.start > request.end {
            return Err(Status::invalid_argument(format!(
                "end: {} is before start {}",
                request.end, request.start
            )));
        }
        if request.start > size {
            return Err(Status::out_of_range(format!(
                "start: {} is beyond the latest checkpoint's size {size}",
                request.start
            )));
        }
        let log = Arc::clone(&self.log);
        let read = Box::new(move |start, end| log.entries(start, end).map_err(read_status));
        let stream = self
            .reads
            .entries(request.start, request.end.min(size), peer, read)?;
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The address of the peer that sent `request`, when the server knows it.
fn peer_ip<T>(request: &Request<T>) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ConnectionId>()
        .map(|connection| connection.peer.ip())
}

/// Checks submissions on as many threads as there are cores, keeping
/// their order: signature verification is nearly all of the cost of
/// admission, and one batch request should not be limited to one core.
/// Once `allowance` signatures have failed, the remaining events are
/// refused unchecked. Returns the outcomes and how many signatures failed.
fn check_in_parallel(
    events: Vec<SignedEvent>,
    allowlist: &KeyRing,
    allowance: u64,
) -> (Vec<Result<SignedEvent, Status>>, u64) {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_thread = events.len().div_ceil(threads).max(1);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = events;
    while rest.len() > per_thread {
        let tail = rest.split_off(per_thread);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let failures = AtomicU64::new(0);
    let failures = &failures;
    let outcomes = std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|e| {
                            if failures.load(Ordering::Relaxed) >= allowance {
                                return Err(crate::admission::failures_exhausted(
                                    Duration::from_secs(1),
                                ));
                            }
                            check_submission(&e, allowlist).map(|_| e).map_err(|error| {
                                if matches!(error, SubmissionError::BadSignature(_)) {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                                submission_status(error)
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a validation thread panicked"))
            .collect()
    });
    (outcomes, failures.load(Ordering::Relaxed))
}

/// A 32-byte digest from a request field, or INVALID_ARGUMENT naming it.
fn digest(field: &str, bytes: &[u8]) -> Result<[u8; 32], Status> {
    bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!(
            "{field}: {} bytes; a SHA-256 digest is 32",
            bytes.len()
        ))
    })
}

fn submission_status(error: SubmissionError) -> Status {
    match error {
        SubmissionError::Invalid(field) => Status::invalid_argument(field.to_string()),
        SubmissionError::UnknownKey(key) => Status::permission_denied(format!(
            "key_id: {key} is not on the log's submitter allowlist"
        )),
        SubmissionError::BadSignature(key) => {
            Status::unauthenticated(format!("signature: does not verify under key {key}"))
        }
        other => Status::invalid_argument(other.to_string()),
    }
}

fn sequence_status(error: SequenceError) -> Status {
    match error {
        SequenceError::QueueFull => Status::resource_exhausted(error.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

/// A failed read as the status that tells the caller what to do.
pub(crate) fn read_status(error: ReadError) -> Status {
    match error {
        ReadError::OutOfRange(message) => Status::out_of_range(message),
        ReadError::NotFound(message) => Status::not_found(message),
        ReadError::Storage(e) => {
            tracing::error!(error = %e, "storage read failed");
            Status::internal("storage error; the operator has been told")
        }
    }
}
