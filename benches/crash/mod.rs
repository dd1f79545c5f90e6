//! The crash harness: SIGKILL a real `log-server` again and again while
//! concurrent clients append, restart it on the same data directory each
//! time, and check after every restart and at the end that
//!
//! - the server starts each time;
//! - every acknowledged event is stored at exactly the index it was given;
//! - the log holds each submitted event once, and nothing else;
//! - the tree is consistent with every checkpoint ever handed out, and
//!   every such checkpoint is signed by the log;
//! - the root recomputed from the served tiles equals the signed root.
//!
//! [`run`] is the whole test, driven by a [`CrashConfig`]: the end-to-end
//! test `tests/crash_recovery.rs` runs a short mode in CI, and
//! `loadgen crash` a long mode against any `log-server` binary.
//!
//! Kills are timed by acknowledgements, never by the clock: between two
//! kills the driver waits for a random number (1 to
//! [`CrashConfig::max_acks_between_kills`], drawn from a seeded xorshift
//! generator) of new acknowledgements, observed through a `watch` channel.
//! Clients learn of a kill through the errors it causes and wait, on another
//! `watch` channel, for the next start to be published, which happens only
//! after that start has been checked. An event whose answer was lost is
//! resubmitted; it must come back either as new or as a `duplicate` carrying
//! its original index, and the checks tell which is true.
//!
//! The parts, one job each:
//!
//! - `config` and `report`: what to run, and what a run saw or why it
//!   failed;
//! - `driver`: the kill loop, which owns the server's lifecycle (`server`:
//!   start, wait for `listening on`, SIGKILL, keep the tail of stderr);
//! - `client`: the appenders, which survive kills by resubmitting;
//! - `shared` and `book`: what the driver and the clients share, and the
//!   book of every answer and checkpoint handed out, each verified as it
//!   arrives;
//! - `check` and `tiles`: the checks after each restart, against the book,
//!   on entries read back and tiles rebuilt over plain HTTP;
//! - `rng`: the seeded generator behind kill points and call mixes.

mod book;
mod check;
mod client;
mod config;
mod driver;
mod report;
mod rng;
mod server;
mod shared;
mod tiles;

pub use config::CrashConfig;
pub use driver::run;
pub use report::{CrashError, CrashReport, KillRecord};
