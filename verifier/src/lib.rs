//! The client side of the data-flow and code-release transparency log.
//!
//! Everything an outside party needs to check the log, and nothing of the
//! server: RFC 9162 hashing and proof verification ([`merkle`]), C2SP
//! signed-note keys and checkpoints ([`keys`], [`checkpoint`]), C2SP
//! tlog-tiles paths and entry bundles ([`tiles`]), the rules for signed
//! events and log entries ([`event`]), C2SP tlog-proof offline proof
//! bundles ([`bundle`]), C2SP tlog-cosignature witness cosignatures and
//! quorum checks ([`cosignature`]), and the request and response bodies
//! of C2SP tlog-witness ([`witness_protocol`]).
//!
//! What it leaves out: storage, networking and async. The proof math reads
//! hashes through one trait ([`merkle::HashReader`]), so the same code runs
//! over the server's database, over tiles a client fetched, and over test
//! vectors. The log server depends on this crate for every format it
//! speaks; this crate never depends on the server.
//!
//! The proof math and signed notes come from `tlog_tiles` and `signed_note`
//! (Cloudflare's ports of Go's `sumdb/tlog` and `sumdb/note`). This crate
//! adds what they lack: C2SP tile paths and entry bundles, a streaming
//! compact range, and the log's own event rules.

pub mod audit;
pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod cosignature;
pub mod event;
pub mod evidence;
pub mod files;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod hex;
pub mod keys;
pub mod merkle;
pub mod relation;
pub mod tile_builder;
pub mod tiles;
pub mod witness_protocol;

pub use tlog_proto::v1 as proto;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "serve")]
pub mod grpc_routes;
#[cfg(feature = "serve")]
pub mod serving;
#[cfg(feature = "serve")]
pub mod tls;
