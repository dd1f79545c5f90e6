//! `loadgen proofs`: how many inclusion proofs the log serves a second.
//!
//! Auditors and submitters read far more than they write, so proof serving
//! is measured on its own: C workers ask, flat out, for inclusion proofs of
//! uniformly random indexes (seeded xorshift, so runs are comparable) in
//! the tree of one signed checkpoint. Every request names that tree size,
//! so every answer is checked against the same verified root: an answer
//! for another index or size, or a proof that does not verify, is counted
//! as a verification failure and makes the run exit 1. Latency runs from
//! send to answer, before checking.

use crate::drive::code_name;
use crate::stats::{Latencies, Summary};
use crate::Failure;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::merkle::{verify_inclusion, Hash};
use verifier::proto::log_client::LogClient;
use verifier::proto::{get_inclusion_proof_request::Leaf, GetInclusionProofRequest};

/// `loadgen proofs` arguments.
#[derive(clap::Args)]
pub struct ProofArgs {
    /// The log's URL, for example http://127.0.0.1:8080.
    #[arg(long)]
    log: String,
    /// The log's verifier key, inline or as a file (data/log.vkey): every
    /// proof is checked against the checkpoint it signed.
    #[arg(long)]
    vkey: String,
    /// How many proofs to request.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// How many requests are in flight at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,
    /// gRPC (HTTP/2) connections shared by the workers [default: one per
    /// worker].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    connections: Option<u64>,
    /// Seeds the random indexes, so two runs ask for the same proofs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// The proofs run, from parsed arguments to exit code: 0 every proof
/// verified, 1 one did not, 2 bad arguments or the log is unreachable.
pub fn main(args: ProofArgs) -> ExitCode {
    let json = args.json;
    crate::finish(measure(args), json)
}

fn measure(args: ProofArgs) -> Result<ProofReport, Failure> {
    let bad = Failure::Unchecked;
    let log_key = crate::read_vkey(&args.vkey)?;
    let concurrency = args.concurrency as usize;
    let connections = args.connections.map_or(concurrency, |k| k as usize);
    let (runtime, clients, note) = crate::connect_and_probe(&args.log, connections)?;
    let checkpoint = SignedCheckpoint::verify(note.as_bytes(), &log_key)
        .map_err(|e| Failure::Verification(format!("the log's checkpoint: {e}")))?
        .checkpoint;
    if checkpoint.size == 0 {
        return Err(bad(format!(
            "{}: the log is empty, nothing to prove",
            args.log
        )));
    }
    let plan = ProofPlan {
        checkpoint,
        requests: args.requests,
        concurrency,
        seed: args.seed,
    };
    let tree_size = plan.checkpoint.size;
    let (mut tally, wall) = runtime.block_on(run(clients, plan));
    let latency = std::mem::take(&mut tally.latencies).summary();
    Ok(ProofReport {
        tree_size,
        requests: args.requests,
        concurrency,
        connections,
        tally,
        latency,
        wall,
    })
}

/// What to ask for and how hard.
pub struct ProofPlan {
    /// The verified checkpoint every proof is checked against.
    pub checkpoint: Checkpoint,
    /// How many proofs to request.
    pub requests: u64,
    /// How many requests may be in flight.
    pub concurrency: usize,
    /// Seeds the random indexes.
    pub seed: u64,
}

/// What the workers saw.
#[derive(Debug, Default)]
pub struct ProofTally {
    /// Latency of every answered request.
    pub latencies: Latencies,
    /// Proofs that verified.
    pub verified: u64,
    /// Failed calls by gRPC status code, with the first message.
    pub rpc_errors: BTreeMap<String, (u64, String)>,
    /// Answers that did not verify, with the first reason.
    pub bad_answers: Option<(u64, String)>,
}

impl ProofTally {
    fn merge(&mut self, other: ProofTally) {
        self.latencies.merge(other.latencies);
        self.verified += other.verified;
        for (code, (count, message)) in other.rpc_errors {
            self.rpc_errors.entry(code).or_insert((0, message)).0 += count;
        }
        if let Some((count, reason)) = other.bad_answers {
            self.bad_answers.get_or_insert((0, reason)).0 += count;
        }
    }

    fn bad_answer(&mut self, reason: String) {
        self.bad_answers.get_or_insert((0, reason)).0 += 1;
    }
}

/// The run's outcome.
pub struct ProofReport {
    /// The tree the proofs were for.
    pub tree_size: u64,
    /// Requests made.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Connections they shared.
    pub connections: usize,
    /// What came back.
    pub tally: ProofTally,
    /// Percentiles of `tally.latencies`.
    pub latency: Option<Summary>,
    /// From the first send to the last answer.
    pub wall: Duration,
}

impl crate::RunReport for ProofReport {
    fn human(&self) -> String {
        Self::human(self)
    }

    fn json(&self) -> Value {
        Self::json(self)
    }

    fn verified(&self) -> bool {
        self.all_verified()
    }
}

impl ProofReport {
    /// Verified proofs a second over the whole run.
    pub fn proofs_per_second(&self) -> f64 {
        self.tally.verified as f64 / self.wall.as_secs_f64()
    }

    /// Whether every answer verified.
    pub fn all_verified(&self) -> bool {
        self.tally.bad_answers.is_none()
    }

    /// The report as one JSON object.
    pub fn json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json!({
            "mode": "GetInclusionProof",
            "tree_size": self.tree_size,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "connections": self.connections,
            "verified": self.tally.verified,
            "wall_seconds": self.wall.as_secs_f64(),
            "proofs_per_second": self.proofs_per_second(),
            "latency_ms": self.latency.map(|l| json!({
                "p50": ms(l.p50), "p90": ms(l.p90), "p99": ms(l.p99), "max": ms(l.max),
            })),
            "rpc_errors": self.tally.rpc_errors.iter()
                .map(|(code, (count, message))| (code.clone(), json!({"count": count, "first_message": message})))
                .collect::<serde_json::Map<_, _>>(),
            "verification_failures": self.tally.bad_answers.as_ref().map_or(0, |b| b.0),
            "verification_failure_example": self.tally.bad_answers.as_ref().map(|b| b.1.clone()),
        })
    }

    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = format!(
            "loadgen proofs: {} inclusion proofs in a tree of {}, {} in flight over {} connections\n\
             verified {} in {:.2} s: {:.0} proofs/s\n",
            self.requests,
            self.tree_size,
            self.concurrency,
            self.connections,
            self.tally.verified,
            self.wall.as_secs_f64(),
            self.proofs_per_second(),
        );
        if let Some(l) = self.latency {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            out += &format!(
                "latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            );
        }
        for (code, (count, message)) in &self.tally.rpc_errors {
            out += &format!("{count} calls failed with {code}: {message}\n");
        }
        if let Some((count, reason)) = &self.tally.bad_answers {
            out += &format!("{count} answers did NOT verify, first: {reason}\n");
        }
        out
    }
}

/// Runs the plan over `clients`, one worker per unit of concurrency,
/// workers sharing the clients round-robin.
pub async fn run(clients: Vec<LogClient<Channel>>, plan: ProofPlan) -> (ProofTally, Duration) {
    let checkpoint = Arc::new(plan.checkpoint);
    let remaining = Arc::new(Mutex::new(plan.requests));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let client = clients[worker % clients.len()].clone();
        let checkpoint = Arc::clone(&checkpoint);
        let remaining = Arc::clone(&remaining);
        let seed = plan.seed ^ (worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        workers.push(tokio::spawn(async move {
            work(client, &checkpoint, &remaining, XorShift::new(seed)).await
        }));
    }
    let mut tally = ProofTally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a proof worker panicked"));
    }
    (tally, started.elapsed())
}

/// One worker: takes requests until none remain.
async fn work(
    mut client: LogClient<Channel>,
    checkpoint: &Checkpoint,
    remaining: &Mutex<u64>,
    mut random: XorShift,
) -> ProofTally {
    let mut tally = ProofTally::default();
    while take_one(remaining) {
        let index = random.below(checkpoint.size);
        let request = GetInclusionProofRequest {
            leaf: Some(Leaf::Index(index)),
            tree_size: checkpoint.size,
        };
        let sent = Instant::now();
        match client.get_inclusion_proof(request).await {
            Ok(answer) => {
                tally.latencies.record(sent.elapsed(), 1);
                match check(&answer.into_inner(), index, checkpoint) {
                    Ok(()) => tally.verified += 1,
                    Err(reason) => tally.bad_answer(reason),
                }
            }
            Err(status) => {
                let code = code_name(status.code());
                let message = status.message().to_owned();
                tally.rpc_errors.entry(code).or_insert((0, message)).0 += 1;
            }
        }
    }
    tally
}

fn take_one(remaining: &Mutex<u64>) -> bool {
    let mut left = remaining.lock().expect("request counter poisoned");
    let more = *left > 0;
    *left = left.saturating_sub(1);
    more
}

/// Checks that an answer proves `index` in the checkpoint's tree.
fn check(
    answer: &verifier::proto::GetInclusionProofResponse,
    index: u64,
    checkpoint: &Checkpoint,
) -> Result<(), String> {
    if answer.index != index || answer.tree_size != checkpoint.size {
        return Err(format!(
            "asked for index {index} in tree {}, answered index {} in tree {}",
            checkpoint.size, answer.index, answer.tree_size
        ));
    }
    let hash = |bytes: &[u8]| -> Result<Hash, String> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("index {index}: a hash of {} bytes", bytes.len()))?;
        Ok(Hash(array))
    };
    let proof = answer
        .proof
        .iter()
        .map(|h| hash(h))
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(
        &proof,
        index,
        checkpoint.size,
        hash(&answer.leaf_hash)?,
        checkpoint.root,
    )
    .map_err(|e| format!("index {index}: {e}"))
}

/// A seeded xorshift64 generator: reproducible indexes without a crate.
struct XorShift(u64);

impl XorShift {
    /// A generator from `seed`; xorshift must not start at zero.
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in `0..n`. The modulo bias is irrelevant at these sizes.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::merkle::leaf_hash;
    use verifier::tile_builder::{MemoryTiles, TileBuilder};
    use verifier::tiles::TiledHashReader;

    /// A checkpoint and a real proof for index 5 in a tree of 11.
    fn answer() -> (Checkpoint, verifier::proto::GetInclusionProofResponse) {
        let mut builder = TileBuilder::new();
        let mut tiles = MemoryTiles::default();
        for i in 0..11u8 {
            builder.append(leaf_hash(&[i]));
        }
        tiles.apply(builder.take_changed());
        let proof = tlog_tiles::prove_record(11, 5, &TiledHashReader::new(&tiles)).unwrap();
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: 11,
            root: builder.root(),
        };
        let answer = verifier::proto::GetInclusionProofResponse {
            index: 5,
            tree_size: 11,
            leaf_hash: leaf_hash(&[5]).0.to_vec(),
            proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: String::new(),
        };
        (checkpoint, answer)
    }

    #[test]
    fn a_true_proof_verifies_and_altered_ones_do_not() {
        let (checkpoint, good) = answer();
        assert_eq!(check(&good, 5, &checkpoint), Ok(()));
        assert!(check(&good, 4, &checkpoint).is_err(), "other index");
        let mut bad = good.clone();
        bad.proof[0][0] ^= 1;
        assert!(check(&bad, 5, &checkpoint).is_err(), "altered proof");
        let mut short = good.clone();
        short.leaf_hash.pop();
        assert!(check(&short, 5, &checkpoint).is_err(), "short leaf hash");
    }

    #[test]
    fn random_indexes_stay_in_range_and_repeat_from_a_seed() {
        let draw = |seed| {
            let mut random = XorShift::new(seed);
            (0..1000).map(|_| random.below(11)).collect::<Vec<_>>()
        };
        assert!(draw(7).iter().all(|&i| i < 11));
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
