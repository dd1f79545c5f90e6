//! The `tlog.v1` wire contract: messages and gRPC stubs generated from
//! `proto/tlog/v1/log.proto` (the log) and `proto/tlog/v1/gossip.proto`
//! (monitors gossiping checkpoints).
//!
//! The `.proto` file is the documentation of record: it defines the exact
//! bytes a submitter signs and the exact bytes that become a Merkle leaf.
//! This crate only compiles it, and holds the servers' codec ([`codec`]:
//! a request that does not decode is INVALID_ARGUMENT); behaviour lives in `verifier` (formats and
//! checks) and `log-server` (sequencing and storage).

#[cfg(feature = "server")]
pub mod codec;

/// Version 1 of the log protocol.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("tlog.v1");
    // The server traits, generated apart so they decode requests with
    // `codec::RequestCodec` (see build.rs).
    #[cfg(feature = "server")]
    include!(concat!(env!("OUT_DIR"), "/server/tlog.v1.rs"));
}
