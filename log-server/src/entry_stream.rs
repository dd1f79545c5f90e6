//! Bounded reads of entries: what one `GetEntries` stream or `FindEntries`
//! call may cost the server, however the client behaves.
//!
//! - **A cap on concurrent reads, overall and per peer.** Every
//!   `GetEntries` stream and every `FindEntries` call holds one permit of a
//!   [`ReadGate`] shared by the service while it runs; with none left, or
//!   with its peer address (an IPv6 /64 counting as one) already holding
//!   [`ReadLimits::max_per_peer`] of them, the call fails at once with
//!   RESOURCE_EXHAUSTED ("retry later"), before anything is read. The
//!   per-peer cap keeps one host from taking every permit.
//! - **A range per call.** A stream carries at most
//!   [`ReadLimits::max_entries`] entries and stops after the entry that
//!   brings it to [`ReadLimits::max_bytes`] of entry data. A larger range is
//!   not an error: the stream simply ends early and the client asks again
//!   from the next index, as RFC 6962 §4.6 `get-entries` clients do.
//! - **Reading only as fast as the client consumes.** [`EntryStream`] has
//!   no producer task and no channel: it reads the next small chunk from
//!   storage when it is polled with nothing left to yield, and hyper polls
//!   a response body only when the client's flow-control window has room.
//!   A client that opens a stream and never reads costs one chunk at most.
//! - **A deadline per stream.** When [`ReadLimits::deadline`] passes, a
//!   timer drops the stream's buffered entries and its permit even if the
//!   stream is never polled again (a stalled client never polls it); if it
//!   is polled, it ends with DEADLINE_EXCEEDED.
//!
//! The per-connection and connection-count limits that bound how many
//! streams can be opened at all live in the accept loop, not here.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;
use verifier::proto::LeafEntry;

/// What reads of entries may cost. `Default` holds the public-server
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// `GetEntries` streams and `FindEntries` calls served at once; more
    /// are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    /// Of those, the most one peer address (an IPv6 /64) may hold.
    pub max_per_peer: usize,
    /// The most entries one `GetEntries` stream carries.
    pub max_entries: u64,
    /// Entry bytes after which a `GetEntries` stream ends (the entry that
    /// crosses the limit is still sent, so a call always makes progress).
    pub max_bytes: usize,
    /// How long one `GetEntries` stream may stay open.
    pub deadline: Duration,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 256,
            max_per_peer: 64,
            max_entries: 1024,
            max_bytes: 4 << 20,
            deadline: Duration::from_secs(30),
        }
    }
}

/// The limits as `log-server serve` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ReadLimitArgs {
    /// GetEntries streams and FindEntries calls served at once; more get
    /// RESOURCE_EXHAUSTED (retry later).
    #[arg(long, default_value_t = ReadLimits::default().max_concurrent)]
    pub max_entry_reads: usize,
    /// Of those, the most one peer address (an IPv6 /64) may hold.
    #[arg(long, default_value_t = ReadLimits::default().max_per_peer)]
    pub max_entry_reads_per_peer: usize,
    /// The most entries one GetEntries stream carries; a larger range ends
    /// early and the client asks again from the next index.
    #[arg(long, default_value_t = ReadLimits::default().max_entries)]
    pub entries_per_call: u64,
    /// Entry bytes after which a GetEntries stream ends early.
    #[arg(long, default_value_t = ReadLimits::default().max_bytes)]
    pub entry_bytes_per_call: usize,
    /// How long one GetEntries stream may stay open (DEADLINE_EXCEEDED).
    /// Shorter than `--request-timeout`, so the client reads the status
    /// rather than a reset stream.
    #[arg(long, default_value = "30s", value_parser = verifier::serving::parse_duration)]
    pub entries_deadline: Duration,
}

impl ReadLimitArgs {
    /// The limits these flags ask for.
    pub fn limits(&self) -> ReadLimits {
        ReadLimits {
            max_concurrent: self.max_entry_reads,
            max_per_peer: self.max_entry_reads_per_peer,
            max_entries: self.entries_per_call.max(1),
            max_bytes: self.entry_bytes_per_call.max(1),
            deadline: self.entries_deadline,
        }
    }
}

/// Entry bytes a stream aims to read from storage at a time. With the
/// encoder's buffer and HTTP/2's send buffer, this is what a stalled stream
/// holds.
const CHUNK_BYTES: usize = 64 << 10;
/// Entries read by a stream's first chunk, before it knows their size.
const FIRST_CHUNK: u64 = 16;
/// The most entries one chunk reads, however small they are.
const MAX_CHUNK: u64 = 256;

/// Reads the entries in `start..end` (all of them, or an error).
pub type ChunkReader = Box<dyn Fn(u64, u64) -> Result<Vec<Vec<u8>>, Status> + Send>;

/// Reads running per peer address; an address leaves the map when its
/// last read ends, so the map holds at most one key per running read.
type PeerReads = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The service-wide cap on concurrent reads, and the limits of each.
#[derive(Debug, Clone)]
pub struct ReadGate {
    permits: Arc<Semaphore>,
    peers: PeerReads,
    limits: ReadLimits,
}

/// One admitted read; dropping it gives its permits back.
#[derive(Debug)]
pub struct ReadPermit {
    _global: OwnedSemaphorePermit,
    _peer: Option<PeerSlot>,
}

/// A peer's share of a read, counted in [`ReadGate`]'s map.
#[derive(Debug)]
struct PeerSlot {
    peers: PeerReads,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = peers.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

impl ReadGate {
    /// A gate admitting `limits.max_concurrent` reads at once.
    pub fn new(limits: ReadLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            peers: PeerReads::default(),
            limits,
        }
    }

    /// A permit for one read from `peer` (if known), held until the read
    /// is over; or RESOURCE_EXHAUSTED when the peer or the server is at
    /// its cap.
    pub fn admit(&self, peer: Option<IpAddr>) -> Result<ReadPermit, Status> {
        let slot = peer.map(|peer| self.take_peer_slot(peer)).transpose()?;
        let global = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} entry reads are running, the server's limit; retry later",
                self.limits.max_concurrent
            ))
        })?;
        Ok(ReadPermit {
            _global: global,
            _peer: slot,
        })
    }

    fn take_peer_slot(&self, peer: IpAddr) -> Result<PeerSlot, Status> {
        let peer = verifier::serving::peer_key(peer);
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let count = peers.entry(peer).or_insert(0);
        if *count >= self.limits.max_per_peer {
            if *count == 0 {
                peers.remove(&peer);
            }
            return Err(Status::resource_exhausted(format!(
                "{} entry reads from your address are running, the most one \
                 address may hold; retry later",
                self.limits.max_per_peer
            )));
        }
        *count += 1;
        Ok(PeerSlot {
            peers: Arc::clone(&self.peers),
            peer,
        })
    }

    /// A stream of the entries from `start`, stopping before `end` or at
    /// this gate's per-call limits, reading through `read`. Takes a permit
    /// first, so it fails with RESOURCE_EXHAUSTED without reading anything.
    ///
    /// Must be called within a Tokio runtime (the deadline is a timer).
    pub fn entries(
        &self,
        start: u64,
        end: u64,
        peer: Option<IpAddr>,
        read: ChunkReader,
    ) -> Result<EntryStream, Status> {
        let permit = self.admit(peer)?;
        let end = end.min(start.saturating_add(self.limits.max_entries));
        // A deadline too far to represent is as good as none.
        let now = Instant::now();
        let deadline = now
            .checked_add(self.limits.deadline)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
        let state = Arc::new(Mutex::new(State::Open(Open {
            read,
            next: start,
            end,
            bytes_left: self.limits.max_bytes,
            chunk: VecDeque::new(),
            chunk_len: FIRST_CHUNK,
            _permit: permit,
        })));
        let timer = tokio::spawn(expire_at(deadline, Arc::downgrade(&state)));
        Ok(EntryStream {
            state,
            deadline,
            timer,
        })
    }
}

/// A bounded, lazily read stream of entries; see the module comment.
pub struct EntryStream {
    state: Arc<Mutex<State>>,
    deadline: Instant,
    timer: tokio::task::JoinHandle<()>,
}

enum State {
    Open(Open),
    /// The deadline passed; the next poll reports it.
    Expired,
    Done,
}

/// A stream still within its range, limits and deadline.
struct Open {
    read: ChunkReader,
    /// The index of the next entry to read from storage.
    next: u64,
    end: u64,
    /// Entry bytes the stream may still start sending.
    bytes_left: usize,
    /// Entries read but not yet yielded, the first at `next - chunk.len()`.
    chunk: VecDeque<Vec<u8>>,
    /// Entries the next read asks for.
    chunk_len: u64,
    _permit: ReadPermit,
}

impl Open {
    /// The next entry, reading a chunk if none is buffered; `None` at the
    /// end of the range or of the byte budget.
    fn next_entry(&mut self) -> Option<Result<LeafEntry, Status>> {
        if self.bytes_left == 0 {
            return None;
        }
        if self.chunk.is_empty() {
            if self.next >= self.end {
                return None;
            }
            let to = self.end.min(self.next + self.chunk_len);
            match (self.read)(self.next, to) {
                Ok(chunk) => {
                    let bytes: usize = chunk.iter().map(Vec::len).sum();
                    let average = (bytes / chunk.len().max(1)).max(1);
                    self.chunk_len = ((CHUNK_BYTES / average) as u64).clamp(1, MAX_CHUNK);
                    self.chunk = chunk.into();
                    self.next = to;
                }
                Err(status) => return Some(Err(status)),
            }
        }
        let index = self.next - self.chunk.len() as u64;
        let data = self.chunk.pop_front()?;
        self.bytes_left = self.bytes_left.saturating_sub(data.len());
        Some(Ok(LeafEntry { index, data }))
    }
}

impl Stream for EntryStream {
    type Item = Result<LeafEntry, Status>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if Instant::now() >= self.deadline && matches!(*state, State::Open(_)) {
            *state = State::Expired;
        }
        let item = match &mut *state {
            State::Open(open) => open.next_entry(),
            State::Expired => Some(Err(deadline_exceeded())),
            State::Done => None,
        };
        if !matches!(item, Some(Ok(_))) {
            // The end, an error or the deadline: nothing more follows, and
            // the permit goes back now.
            *state = State::Done;
        }
        Poll::Ready(item)
    }
}

impl Drop for EntryStream {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// Drops what a stream holds once `deadline` passes, polled or not.
async fn expire_at(deadline: Instant, state: std::sync::Weak<Mutex<State>>) {
    tokio::time::sleep_until(deadline).await;
    if let Some(state) = state.upgrade() {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, State::Open(_)) {
            *state = State::Expired;
        }
    }
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded(
        "the stream's deadline passed; ask again from the next index (read faster)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_stream::StreamExt as _;
    use tonic::Code;

    /// A reader over `count` entries of `size` bytes each, counting the
    /// entries it has read.
    fn reader(count: u64, size: usize, reads: &Arc<AtomicUsize>) -> ChunkReader {
        let reads = Arc::clone(reads);
        Box::new(move |start, end| {
            assert!(end <= count, "read past the log: {start}..{end}");
            reads.fetch_add((end - start) as usize, Ordering::SeqCst);
            Ok((start..end).map(|i| vec![i as u8; size]).collect())
        })
    }

    fn gate(max_concurrent: usize) -> ReadGate {
        ReadGate::new(ReadLimits {
            max_concurrent,
            ..ReadLimits::default()
        })
    }

    async fn indexes(stream: EntryStream) -> Vec<u64> {
        stream.map(|e| e.unwrap().index).collect().await
    }

    #[tokio::test]
    async fn a_large_range_ends_early_at_the_entry_cap() {
        let reads = Arc::new(AtomicUsize::new(0));
        let stream = gate(1)
            .entries(10, u64::MAX, None, reader(5000, 10, &reads))
            .unwrap();
        let got = indexes(stream).await;
        assert_eq!(got, (10..1034).collect::<Vec<_>>());
        assert_eq!(reads.load(Ordering::SeqCst), 1024);
    }

    #[tokio::test]
    async fn a_stream_ends_after_the_entry_that_crosses_the_byte_cap() {
        let limits = ReadLimits {
            max_bytes: 1000,
            ..ReadLimits::default()
        };
        let reads = Arc::new(AtomicUsize::new(0));
        let stream = ReadGate::new(limits)
            .entries(0, 100, None, reader(100, 300, &reads))
            .unwrap();
        assert_eq!(indexes(stream).await, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn reads_only_as_the_stream_is_consumed() {
        let reads = Arc::new(AtomicUsize::new(0));
        let mut stream = gate(1)
            .entries(0, 1000, None, reader(1000, 1000, &reads))
            .unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            0,
            "nothing read before a poll"
        );
        stream.next().await.unwrap().unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), FIRST_CHUNK as usize);
        for _ in 1..FIRST_CHUNK {
            stream.next().await.unwrap().unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), FIRST_CHUNK as usize);
        // The next chunk is sized to CHUNK_BYTES of entries like these.
        stream.next().await.unwrap().unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            FIRST_CHUNK as usize + CHUNK_BYTES / 1000
        );
    }

    #[tokio::test]
    async fn reads_over_the_cap_are_refused_until_one_ends() {
        let gate = gate(2);
        let reads = Arc::new(AtomicUsize::new(0));
        let first = gate.entries(0, 10, None, reader(10, 1, &reads)).unwrap();
        let second = gate.admit(None).unwrap();
        let refused = gate
            .entries(0, 10, None, reader(10, 1, &reads))
            .err()
            .unwrap();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.message().contains("retry later"), "{refused:?}");
        assert_eq!(reads.load(Ordering::SeqCst), 0);
        // A finished stream gives its permit back before it is dropped.
        assert_eq!(indexes(first).await.len(), 10);
        let again = gate.admit(None).unwrap();
        drop(second);
        // So does a stream dropped half read.
        let mut third = gate.entries(0, 10, None, reader(10, 1, &reads)).unwrap();
        third.next().await.unwrap().unwrap();
        assert!(gate.admit(None).is_err());
        drop(third);
        assert!(gate.admit(None).is_ok());
        drop(again);
    }

    #[tokio::test]
    async fn one_peer_cannot_take_every_permit() {
        let gate = ReadGate::new(ReadLimits {
            max_concurrent: 4,
            max_per_peer: 2,
            ..ReadLimits::default()
        });
        let host = |last: u8| Some(IpAddr::from([192, 0, 2, last]));
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        let held = [gate.admit(host(1)).unwrap(), gate.admit(host(1)).unwrap()];
        let refused = gate.admit(host(1)).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(refused.message().contains("your address"), "{refused:?}");
        // Another address still gets in; one /64 is one peer.
        let other = gate.admit(host(2)).unwrap();
        let in_64 = gate.admit(v6(1)).unwrap();
        assert!(gate.admit(v6(2)).is_err(), "the server's cap");
        drop(in_64);
        let in_64 = gate.admit(v6(2)).unwrap();
        assert!(gate
            .admit(v6(3))
            .unwrap_err()
            .message()
            .contains("server's limit"));
        drop((held, other, in_64));
        assert!(
            gate.peers.lock().unwrap().is_empty(),
            "no address is left counted"
        );
        assert!(gate.admit(host(1)).is_ok());
    }

    #[test]
    fn the_flags_default_to_the_defaults() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            reads: ReadLimitArgs,
        }
        let parsed = |args: &[&str]| Cli::parse_from([&["log-server"], args].concat()).reads;
        assert_eq!(parsed(&[]).limits(), ReadLimits::default());
        let set = parsed(&[
            "--max-entry-reads=8",
            "--max-entry-reads-per-peer=2",
            "--entries-per-call=10",
            "--entry-bytes-per-call=1000",
            "--entries-deadline=5s",
        ]);
        assert_eq!(
            set.limits(),
            ReadLimits {
                max_concurrent: 8,
                max_per_peer: 2,
                max_entries: 10,
                max_bytes: 1000,
                deadline: Duration::from_secs(5),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_frees_an_unpolled_stream_and_ends_a_polled_one() {
        let gate = gate(1);
        let reads = Arc::new(AtomicUsize::new(0));
        let mut stream = gate
            .entries(0, 1000, None, reader(1000, 1, &reads))
            .unwrap();
        stream.next().await.unwrap().unwrap();
        assert!(gate.admit(None).is_err());
        // Never polled again: the timer alone gives the permit back.
        tokio::time::sleep(ReadLimits::default().deadline).await;
        tokio::task::yield_now().await;
        assert!(gate.admit(None).is_ok());
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream() {
        let gate = gate(1);
        let failing: ChunkReader = Box::new(|_, _| Err(Status::internal("storage error")));
        let mut stream = gate.entries(0, 10, None, failing).unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            Code::Internal
        );
        assert!(stream.next().await.is_none());
        assert!(gate.admit(None).is_ok());
    }
}
