//! The log as a submitter and an outside verifier meet it: real processes,
//! real sockets, every answer checked with the `verifier` library.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tlog_e2e::{http_get, mixed_event, reviewer, LogServer};
use tokio::sync::Notify;
use verifier::checkpoint::{Checkpoint, SignedCheckpoint};
use verifier::event::{decode_entry, sign_event};
use verifier::keys::{SigningKey, VerifierKey};
use verifier::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use verifier::proto::{
    AppendRequest, GetCheckpointRequest, GetConsistencyProofRequest, GetEntriesRequest, SignedEvent,
};
use verifier::tile_builder::TileBuilder;
use verifier::tiles::{decode_entry_bundle, TileId, TileKind};

const CLIENTS: u64 = 8;
const EVENTS_PER_CLIENT: u64 = 125;

/// What one acknowledged append told the submitter.
#[derive(Clone)]
struct Ack {
    signed: SignedEvent,
    index: u64,
    leaf: Hash,
    checkpoint: Checkpoint,
    note: String,
}

fn hash(bytes: &[u8]) -> Hash {
    Hash(bytes.try_into().expect("a 32-byte hash"))
}

/// Appends events `first..first + count` and checks each answer's
/// checkpoint signature and inclusion proof before recording it.
async fn append_and_verify(
    server_url: String,
    submitter: SigningKey,
    log_key: VerifierKey,
    numbers: std::ops::Range<u64>,
    acks: Arc<Mutex<Vec<Ack>>>,
    acked: Arc<(AtomicUsize, Notify)>,
) -> Result<(), tonic::Status> {
    let mut client = verifier::proto::log_client::LogClient::connect(server_url)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    for n in numbers {
        let signed = sign_event(&submitter, &mixed_event(n, &reviewer()));
        let answer = client
            .append(AppendRequest {
                event: Some(signed.clone()),
            })
            .await?
            .into_inner();
        let verified = SignedCheckpoint::verify(answer.checkpoint.as_bytes(), &log_key)
            .expect("every returned checkpoint is signed by the log");
        let checkpoint = verified.checkpoint;
        let proof: Vec<Hash> = answer.inclusion_proof.iter().map(|h| hash(h)).collect();
        let leaf = hash(&answer.leaf_hash);
        verify_inclusion(&proof, answer.index, checkpoint.size, leaf, checkpoint.root)
            .expect("every returned inclusion proof verifies");
        assert!(!answer.duplicate, "event {n} was new");
        acks.lock().unwrap().push(Ack {
            signed,
            index: answer.index,
            leaf,
            checkpoint,
            note: answer.checkpoint,
        });
        acked.0.fetch_add(1, Ordering::SeqCst);
        acked.1.notify_waiters();
    }
    Ok(())
}

/// Starts `CLIENTS` concurrent submitters over disjoint event numbers.
fn start_load(
    server: &LogServer,
    events_per_client: u64,
    first: u64,
    acks: &Arc<Mutex<Vec<Ack>>>,
    acked: &Arc<(AtomicUsize, Notify)>,
) -> Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    (0..CLIENTS)
        .map(|c| {
            let start = first + c * events_per_client;
            tokio::spawn(append_and_verify(
                server.url(),
                server.submitter_key(),
                server.log_key(),
                start..start + events_per_client,
                Arc::clone(acks),
                Arc::clone(acked),
            ))
        })
        .collect()
}

async fn latest_checkpoint(server: &LogServer) -> SignedCheckpoint {
    let note = server
        .client()
        .await
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("GetCheckpoint")
        .into_inner()
        .checkpoint;
    SignedCheckpoint::verify(note.as_bytes(), &server.log_key()).expect("a signed checkpoint")
}

/// Proves, with a proof served by the log, that `new` extends `old`.
async fn assert_consistent(server: &LogServer, old: &Checkpoint, new: &Checkpoint) {
    let proof = server
        .client()
        .await
        .get_consistency_proof(GetConsistencyProofRequest {
            old_size: old.size,
            new_size: new.size,
        })
        .await
        .expect("GetConsistencyProof")
        .into_inner()
        .proof;
    let proof: Vec<Hash> = proof.iter().map(|h| hash(h)).collect();
    verify_consistency(&proof, old.size, old.root, new.size, new.root)
        .unwrap_or_else(|e| panic!("checkpoint {} does not extend {}: {e}", new.size, old.size));
}

/// Fetches every tile of the published tree over plain HTTP, checks each
/// hash tile against tiles rebuilt from the entry bundles, and returns the
/// entries. The root recomputed from the bundles must be the signed root.
fn rebuild_from_tiles(server: &LogServer) -> (SignedCheckpoint, Vec<Vec<u8>>) {
    let response = http_get(server.addr, "/checkpoint");
    assert_eq!(response.status, 200);
    let signed =
        SignedCheckpoint::verify(&response.body, &server.log_key()).expect("signed /checkpoint");
    let size = signed.checkpoint.size;
    let tiles = TileId::all_for_size(size);
    let mut entries = Vec::new();
    for tile in tiles.iter().filter(|t| t.kind == TileKind::Entries) {
        let response = http_get(server.addr, &format!("/{}", tile.path()));
        assert_eq!(response.status, 200, "{}", tile.path());
        let bundle = decode_entry_bundle(&response.body).expect("a well-formed entry bundle");
        assert_eq!(bundle.len(), usize::from(tile.width), "{}", tile.path());
        entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    assert_eq!(entries.len() as u64, size);
    let mut builder = TileBuilder::new();
    entries.iter().for_each(|e| builder.append(leaf_hash(e)));
    assert_eq!(
        builder.root(),
        signed.checkpoint.root,
        "root rebuilt from entry bundles"
    );
    let rebuilt: BTreeMap<(u8, u64), Vec<u8>> = builder
        .take_changed()
        .into_iter()
        .map(|t| ((t.level, t.index), t.hashes))
        .collect();
    for tile in tiles {
        if let TileKind::Hashes { level } = tile.kind {
            let response = http_get(server.addr, &format!("/{}", tile.path()));
            assert_eq!(response.status, 200, "{}", tile.path());
            assert_eq!(
                response.body,
                rebuilt[&(level, tile.index)],
                "{}",
                tile.path()
            );
        }
    }
    (signed, entries)
}

/// Every acknowledged event is stored at the index it was given.
fn assert_acks_stored(acks: &[Ack], entries: &[Vec<u8>]) {
    for ack in acks {
        let entry = &entries[ack.index as usize];
        assert_eq!(
            leaf_hash(entry),
            ack.leaf,
            "leaf hash at index {}",
            ack.index
        );
        let decoded = decode_entry(entry).expect("a canonical log entry");
        assert_eq!(
            decoded.signed_event.as_ref(),
            Some(&ack.signed),
            "event at index {}",
            ack.index
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_from_eight_clients_are_proven_and_served_as_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(dir.path(), &["--origin", "log.example.test/e2e"]);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new((AtomicUsize::new(0), Notify::new()));
    for client in start_load(&server, EVENTS_PER_CLIENT, 0, &acks, &acked) {
        client.await.unwrap().expect("every append succeeds");
    }
    let acks = acks.lock().unwrap().clone();
    assert_eq!(acks.len() as u64, CLIENTS * EVENTS_PER_CLIENT);
    let mut indexes: Vec<u64> = acks.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..1000).collect::<Vec<_>>(),
        "indexes are dense and unique"
    );

    let latest = latest_checkpoint(&server).await.checkpoint;
    assert_eq!(latest.size, 1000);
    let smallest = acks.iter().min_by_key(|a| a.checkpoint.size).unwrap();
    let middle = acks.iter().find(|a| a.checkpoint.size > 400).unwrap();
    assert_consistent(&server, &smallest.checkpoint, &latest).await;
    assert_consistent(&server, &smallest.checkpoint, &middle.checkpoint).await;
    assert_consistent(&server, &middle.checkpoint, &latest).await;

    let (signed, entries) = rebuild_from_tiles(&server);
    assert_eq!(signed.checkpoint, latest);
    assert_acks_stored(&acks, &entries);

    // A stream ends early at the server's per-call cap; ask again from the
    // next index until one brings nothing new.
    let mut client = server.client().await;
    let mut streamed = Vec::new();
    loop {
        let start = streamed.len() as u64;
        let mut stream = client
            .get_entries(GetEntriesRequest { start, end: 5000 })
            .await
            .expect("GetEntries")
            .into_inner();
        while let Some(entry) = stream.message().await.expect("entry stream") {
            assert_eq!(entry.index, streamed.len() as u64);
            streamed.push(entry.data);
        }
        if streamed.len() as u64 == start {
            break;
        }
    }
    assert_eq!(streamed, entries, "gRPC entries equal the tiles' entries");
    assert!(
        acks.iter().any(|a| a.note != signed.note_text()),
        "checkpoints advanced during the load"
    );
}

/// Kills the server with SIGKILL while eight clients append, restarts it,
/// and checks nothing acknowledged was lost or rewritten.
async fn acknowledged_appends_survive_sigkill(storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let origin = format!("log.example.test/crash-{storage}");
    let server = LogServer::start(dir.path(), &["--origin", &origin, "--storage", storage]);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new((AtomicUsize::new(0), Notify::new()));
    let clients = start_load(&server, 200, 0, &acks, &acked);
    loop {
        let notified = acked.1.notified();
        if acked.0.load(Ordering::SeqCst) >= 300 {
            break;
        }
        notified.await;
    }
    server.kill();
    let mut failures = 0;
    for client in clients {
        if client.await.unwrap().is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "the kill interrupted the load");
    let acks = acks.lock().unwrap().clone();
    assert!(acks.len() >= 300);

    let server = LogServer::start(dir.path(), &[]);
    let restarted = latest_checkpoint(&server).await.checkpoint;
    assert!(
        restarted.size >= acks.len() as u64,
        "every acknowledged entry is still counted"
    );
    let (_, entries) = rebuild_from_tiles(&server);
    assert_acks_stored(&acks, &entries);
    let mut handed_out: Vec<&Checkpoint> = acks.iter().map(|a| &a.checkpoint).collect();
    handed_out.sort_by_key(|c| c.size);
    handed_out.dedup_by_key(|c| c.size);
    for old in handed_out {
        assert_consistent(&server, old, &restarted).await;
    }

    let more = Arc::new(Mutex::new(Vec::new()));
    for client in start_load(&server, 5, 10_000, &more, &acked) {
        client
            .await
            .unwrap()
            .expect("appends succeed after the restart");
    }
    let after = latest_checkpoint(&server).await.checkpoint;
    assert_eq!(after.size, restarted.size + CLIENTS * 5);
    assert_consistent(&server, &restarted, &after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_on_redb() {
    acknowledged_appends_survive_sigkill("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill_on_sled() {
    acknowledged_appends_survive_sigkill("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_in_flight_appends_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(dir.path(), &["--origin", "log.example.test/drain"]);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new((AtomicUsize::new(0), Notify::new()));
    let clients = start_load(&server, 100, 0, &acks, &acked);
    loop {
        let notified = acked.1.notified();
        if acked.0.load(Ordering::SeqCst) >= 100 {
            break;
        }
        notified.await;
    }
    let status = tokio::task::spawn_blocking(move || server.interrupt())
        .await
        .unwrap();
    assert!(
        status.success(),
        "log-server exited with {status} after SIGINT"
    );
    for client in clients {
        let _ = client.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();

    let server = LogServer::start(dir.path(), &[]);
    let restarted = latest_checkpoint(&server).await.checkpoint;
    let (_, entries) = rebuild_from_tiles(&server);
    assert_acks_stored(&acks, &entries);
    let newest = acks
        .iter()
        .map(|a| &a.checkpoint)
        .max_by_key(|c| c.size)
        .unwrap();
    assert_consistent(&server, newest, &restarted).await;
}

/// GETs `path` over HTTP/2 with prior knowledge (h2c), as gRPC does.
async fn get_over_http2(addr: std::net::SocketAddr, path: &str) -> (hyper::StatusCode, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("an HTTP/2 response");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_served_over_http2_on_the_grpc_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = LogServer::start(dir.path(), &["--origin", "log.example.test/h2"]);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new((AtomicUsize::new(0), Notify::new()));
    for client in start_load(&server, 5, 0, &acks, &acked) {
        client.await.unwrap().expect("appends succeed");
    }
    let (status, note) = get_over_http2(server.addr, "/checkpoint").await;
    assert_eq!(status, 200);
    let signed =
        SignedCheckpoint::verify(&note, &server.log_key()).expect("a signed checkpoint over h2");
    assert_eq!(signed.checkpoint.size, 40);
    for tile in TileId::all_for_size(40) {
        let path = format!("/{}", tile.path());
        let (status, body) = get_over_http2(server.addr, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body,
            http_get(server.addr, &path).body,
            "{path}: HTTP/2 and HTTP/1.1 agree"
        );
    }
    let (status, _) = get_over_http2(server.addr, "/tile/0/000").await;
    assert_eq!(status, 404, "a full tile beyond the tree");
}
