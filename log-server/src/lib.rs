//! The log operator's server.
//!
//! It validates and sequences signed events, stores them durably, signs
//! C2SP checkpoints, and serves gRPC and C2SP tiles on one port. Every
//! format it speaks comes from the `verifier` crate: the server never
//! re-implements what an outside party checks.
//!
//! Modules, in the order a submission meets them: [`grpc`] validates it,
//! [`sequencer`] integrates it into [`storage`] (deduplicating through
//! [`event_index`], indexing it for [`lookup`]), [`log`] proves and serves
//! it ([`find_entries`] by what it is about, [`entry_stream`] within a
//! cap on concurrent reads), [`routing`] decides what the one port
//! answers, [`http`] serves the tiles,
//! [`witnessing`] collects witness cosignatures on its checkpoints;
//! [`data_dir`], [`witness_config`] and [`server`] set it all up.

pub mod admission;
pub mod data_dir;
pub mod entry_stream;
pub mod event_index;
pub mod find_entries;
pub mod grpc;
pub mod http;
pub mod log;
pub mod lookup;
pub mod routing;
pub mod sequencer;
pub mod server;
pub mod storage;
#[cfg(test)]
mod test_events;
pub mod tile_cache;
pub mod witness_config;
pub mod witnessing;
