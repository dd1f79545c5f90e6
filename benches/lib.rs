//! What the load generator, the benchmarks and the crash test share:
//!
//! - [`workload`]: the event mix, realistic and distinct, signed up front;
//! - [`http`]: a std-only HTTP/1.1 GET for `/checkpoint` and the tiles;
//! - [`crash`]: the crash harness, which SIGKILLs a real `log-server` under
//!   that load again and again and checks that nothing acknowledged is lost.
//!
//! Users: `loadgen` (its flat mode drives a running log with the workload;
//! `loadgen crash` runs the crash harness's long mode), the `storage`
//! benchmark (its batches are workload events), and the end-to-end
//! crate's `crash_recovery` test (the harness's short mode, in CI).
//!
//! It holds no log logic: formats, signatures and proofs come from the
//! verifier, and the server is only ever reached over its sockets, as a
//! separate process, so a harness bug cannot hide a server bug by sharing
//! its code.

pub mod crash;
pub mod http;
pub mod workload;
