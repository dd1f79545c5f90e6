//! What a crash run does: the load, the kills, and how the server is
//! started.

use std::path::PathBuf;
use std::time::Duration;

/// What to run: the load, the kills, and how the server is started.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    /// The log's data directory, new or empty: the first start creates it.
    pub data_dir: PathBuf,
    /// The storage backend, `redb` or `sled`.
    pub storage: String,
    /// The log's origin.
    pub origin: String,
    /// How many times to SIGKILL the server.
    pub kills: usize,
    /// How many clients append concurrently.
    pub clients: usize,
    /// How many distinct events each client appends over the whole run.
    /// Together they must outlast the kills (see [`run`](super::run) and
    /// [`fit_load_to_kills`](Self::fit_load_to_kills)). Events not yet
    /// sent when the last kill's restart is published are mostly left
    /// unsent (see `events_after_last_kill`).
    pub events_per_client: u64,
    /// Once the server's last start is published, each client sends at
    /// most this many events it never sent before, besides finishing the
    /// ones it had sent, and stops.
    pub events_after_last_kill: u64,
    /// The most events in one `AppendBatch` call. Each call is, at random,
    /// a unary `Append` (half of them) or an `AppendBatch` of 2 up to this
    /// many events.
    pub max_batch: usize,
    /// Between two kills the driver waits for a random number of new
    /// acknowledgements, from 1 up to this many.
    pub max_acks_between_kills: u64,
    /// Seeds every random choice: the kill points and each client's mix of
    /// unary and batch calls.
    pub seed: u64,
    /// The `log-server` binary to run.
    pub server_binary: PathBuf,
    /// Extra arguments for `log-server serve`, after `--data-dir`,
    /// `--listen 127.0.0.1:0`, `--origin` and `--storage`.
    pub server_args: Vec<String>,
    /// How long to wait for any one step (a start, the next
    /// acknowledgements, the end of the load) before declaring the run
    /// stuck. A watchdog, never a means of synchronisation.
    pub stall_timeout: Duration,
}

impl CrashConfig {
    /// The short mode's defaults for `server_binary` on `storage`: 20
    /// kills, 8 clients of 700 events, seed 1. The end-to-end test passes
    /// the binary it just built; `loadgen crash` the one it was given.
    pub fn new(data_dir: impl Into<PathBuf>, storage: &str, server_binary: PathBuf) -> Self {
        Self {
            data_dir: data_dir.into(),
            storage: storage.to_owned(),
            origin: format!("log.example.test/crash-{storage}"),
            kills: 20,
            clients: 8,
            events_per_client: 700,
            events_after_last_kill: 25,
            max_batch: 32,
            max_acks_between_kills: 200,
            seed: 1,
            server_binary,
            server_args: Vec::new(),
            stall_timeout: Duration::from_secs(120),
        }
    }

    /// Raises `events_per_client`, if need be, so that the load outlasts
    /// `kills` gaps of up to `max_acks_between_kills` acknowledgements
    /// whatever the seed: three quarters of the load is the gap budget
    /// (the rest absorbs overshoot and the wind-down), so the clients
    /// together need
    /// `kills × max_acks_between_kills × 4/3` events. This is how a long
    /// mode's load grows with its kills. Call it after setting `kills`,
    /// `clients` and `max_acks_between_kills`.
    pub fn fit_load_to_kills(&mut self) {
        let needed = self.kills as u64 * self.max_acks_between_kills * 4
            / (3 * self.clients.max(1) as u64)
            + 1;
        self.events_per_client = self.events_per_client.max(needed);
    }

    /// Every event of the run, over all clients.
    pub(super) fn total_events(&self) -> u64 {
        self.clients as u64 * self.events_per_client
    }

    /// The largest gap between kills that the events can always cover:
    /// at most three quarters of the load is spent on kill gaps, the rest
    /// absorbs the acknowledgements that land while a kill is under way
    /// and keeps the load running after the last restart.
    pub(super) fn gap_limit(&self) -> u64 {
        let budget = self.total_events() * 3 / 4 / (self.kills.max(1) as u64);
        self.max_acks_between_kills.min(budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitted_load_covers_the_widest_gaps() {
        for (kills, clients) in [(20, 8), (500, 8), (30, 3), (1, 1), (7, 64)] {
            let mut config = CrashConfig::new("/nonexistent", "redb", PathBuf::new());
            config.kills = kills;
            config.clients = clients;
            config.fit_load_to_kills();
            assert_eq!(
                config.gap_limit(),
                config.max_acks_between_kills,
                "{kills} kills, {clients} clients"
            );
        }
    }

    #[test]
    fn the_short_mode_keeps_its_load() {
        let mut config = CrashConfig::new("/nonexistent", "sled", PathBuf::new());
        config.fit_load_to_kills();
        assert_eq!(config.events_per_client, 700, "20 kills need only 667");
    }
}
