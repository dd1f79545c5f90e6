//! Talking to a log: its one URL serves C2SP tiles (read over HTTP) and
//! gRPC (for submitting and lookups by hash).
//!
//! Nothing fetched here is trusted. Checkpoints are verified against the
//! log's key before use, and every proof built from fetched tiles is
//! verified against a signed root, which is what authenticates the tiles.
//!
//! Nor is the server trusted to end its answers: redirects are not
//! followed, every request has a deadline and so does the whole command
//! ([`ClientArgs`]), a body that arrives too slowly is abandoned, and no
//! answer is read beyond the size its resource can have.

use super::outcome::Failure;
use super::witness_policy::{WitnessArgs, WitnessPolicy};
use crate::checkpoint::SignedCheckpoint;
use crate::keys::VerifierKey;
use crate::tiles::{HashTileSource, TileId, TileKind, TILE_WIDTH};
use crate::tls::{certificate_error, ClientTls, ClientTlsArgs};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

/// The most bytes an entry bundle may have: 256 maximal entries, with room
/// to spare. Anything larger is refused unread.
const MAX_ENTRY_BUNDLE: u64 = 256 * (65_535 + 2) + 1024;

/// The most bytes `/checkpoint` may have. A checkpoint body is three short
/// lines; even with the hundred signatures a signed note may carry it is a
/// few KiB, so this is generous. A larger answer is refused unread.
pub const MAX_CHECKPOINT_BYTES: u64 = 64 * 1024;

/// How long a response body may arrive slowly before `--min-rate` applies:
/// time for TCP to open its window on a slow link.
const MIN_RATE_GRACE: Duration = Duration::from_secs(5);

/// How long the verifier waits on the log: `--timeout`, `--request-timeout`
/// and `--min-rate`, which every command that talks to a log takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Give up the whole command after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    timeout: u64,
    /// Give up one request (connecting, sending it, reading the whole
    /// answer) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    request_timeout: u64,
    /// Abandon an answer whose body, after its first 5 seconds, has
    /// arrived at fewer bytes per second than this on average (0: no
    /// minimum).
    #[arg(long, value_name = "BYTES_PER_SECOND", default_value_t = 1024)]
    min_rate: u64,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

impl ClientArgs {
    /// What `https://` and gRPC over TLS trust and present: `--ca-file`,
    /// `--client-cert`, `--client-key`.
    pub fn tls(&self) -> Result<ClientTls, Failure> {
        self.tls.load().map_err(Failure::unchecked)
    }

    /// The limits, with the command's deadline counted from now.
    pub fn limits(&self) -> Result<Limits, Failure> {
        if self.timeout == 0 || self.request_timeout == 0 {
            return Err(Failure::unchecked(
                "--timeout and --request-timeout must be at least 1 second",
            ));
        }
        let whole = Duration::from_secs(self.timeout);
        Ok(Limits {
            request: Duration::from_secs(self.request_timeout),
            command: Some((Instant::now() + whole, whole)),
            min_rate: self.min_rate,
        })
    }
}

/// What bounds each request to a log, and the command as a whole.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest one request may take.
    request: Duration,
    /// When the command must end, and how long it was given (for messages);
    /// `None` for a long-running command such as `monitor`.
    command: Option<(Instant, Duration)>,
    /// The slowest average rate, in bytes per second, at which a body may
    /// arrive once [`MIN_RATE_GRACE`] has passed.
    min_rate: u64,
}

impl Default for Limits {
    /// The defaults of [`ClientArgs`], without a deadline for the command.
    fn default() -> Self {
        Self {
            request: Duration::from_secs(30),
            command: None,
            min_rate: 1024,
        }
    }
}

/// How long one request may take, and which limit says so.
#[derive(Debug, Clone, Copy)]
struct Budget {
    time: Duration,
    /// Whether the command's deadline, not the per-request one, binds.
    by_command: bool,
    /// The limit that binds, as given.
    given: Duration,
}

impl Budget {
    /// Why a request that ran out of time was abandoned.
    fn exceeded(&self) -> String {
        if self.by_command {
            format!(
                "the command's --timeout of {} s ran out",
                self.given.as_secs()
            )
        } else {
            format!(
                "no complete answer within --request-timeout {} s",
                self.given.as_secs()
            )
        }
    }
}

impl Limits {
    /// The time the next request may take: the per-request limit or what is
    /// left of the command's, whichever is less; none left is a failure.
    fn budget(&self) -> Result<Budget, Failure> {
        let per_request = Budget {
            time: self.request,
            by_command: false,
            given: self.request,
        };
        let Some((deadline, whole)) = self.command else {
            return Ok(per_request);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::unchecked(format!(
                "the command's --timeout of {} s ran out",
                whole.as_secs()
            )));
        }
        Ok(if left < self.request {
            Budget {
                time: left,
                by_command: true,
                given: whole,
            }
        } else {
            per_request
        })
    }
}

/// A response body that must keep arriving at `--min-rate` on average once
/// [`MIN_RATE_GRACE`] has passed; checked whenever bytes arrive, while the
/// request's deadline catches a body that stops altogether.
struct RateFloor<R> {
    inner: R,
    started: Instant,
    min_rate: u64,
    received: u64,
    /// Set when the body fell below the rate: bytes so far, seconds taken.
    too_slow: Option<(u64, f64)>,
}

impl<R: std::io::Read> std::io::Read for RateFloor<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.received += n as u64;
        let elapsed = self.started.elapsed();
        if n > 0 && too_slow(self.min_rate, self.received, elapsed) {
            self.too_slow = Some((self.received, elapsed.as_secs_f64()));
            return Err(std::io::Error::other("below the minimum transfer rate"));
        }
        Ok(n)
    }
}

/// Whether `received` bytes in `elapsed` fall below `min_rate` bytes per
/// second on average, once [`MIN_RATE_GRACE`] has passed.
fn too_slow(min_rate: u64, received: u64, elapsed: Duration) -> bool {
    min_rate > 0
        && elapsed > MIN_RATE_GRACE
        && (received as f64) < min_rate as f64 * elapsed.as_secs_f64()
}

/// `--log` and `--vkey`, which every command that talks to a log takes:
/// where the log is, and the key its checkpoints must verify under; and
/// `--witness`/`--quorum`, the cosignatures they must carry.
#[derive(clap::Args)]
pub struct LogArgs {
    /// The log's URL.
    #[arg(long)]
    log: String,
    /// The log's verifier key, inline or as a file.
    #[arg(long)]
    vkey: String,
    #[command(flatten)]
    witnesses: WitnessArgs,
    #[command(flatten)]
    client: ClientArgs,
}

impl LogArgs {
    /// The log to talk to, holding the witness policy its checkpoints must
    /// meet and the limits on waiting for it, and its key; or why they
    /// cannot be used. The command's `--timeout` starts now.
    pub fn open(&self) -> Result<(Log, VerifierKey), Failure> {
        let key = verifier_key(&self.vkey)?;
        let log = Log::new(&self.log)?
            .with_tls(&self.client.tls()?)
            .with_witness_policy(self.witnesses.policy()?)
            .with_limits(self.client.limits()?);
        Ok((log, key))
    }
}

/// A log's base URL, the witnesses its checkpoints must be cosigned by,
/// and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Log {
    base: String,
    agent: ureq::Agent,
    tls: ClientTls,
    policy: WitnessPolicy,
    limits: Limits,
}

impl Log {
    /// Parses `--log <url>`: `https://host[:port][/prefix]`, or `http://`
    /// for a log on loopback or behind a trusted network. `https://` trusts
    /// the web PKI's roots until [`Log::with_tls`]. Requests get the
    /// default [`Limits`], with no deadline for the command.
    pub fn new(url: &str) -> Result<Self, Failure> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Failure::unchecked(format!(
                "--log {url}: not an http:// or https:// URL"
            )));
        }
        let tls = ClientTls::default();
        Ok(Self {
            base: base.to_owned(),
            agent: agent(&tls),
            tls,
            policy: WitnessPolicy::default(),
            limits: Limits::default(),
        })
    }

    /// Reaches an `https://` log with `tls`: a private CA instead of the
    /// web PKI's roots, a client certificate.
    pub fn with_tls(mut self, tls: &ClientTls) -> Self {
        self.agent = agent(tls);
        self.tls = tls.clone();
        self
    }

    /// Bounds every request to this log by `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Requires every checkpoint fetched with [`Log::checkpoint`] to meet
    /// `policy`.
    pub fn with_witness_policy(mut self, policy: WitnessPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The witness policy checkpoints of this log must meet.
    pub fn witness_policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// The URL, for gRPC.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// GETs `path`, refusing an answer of more than `cap` bytes without
    /// reading past the cap, a redirect, and an answer that breaks the
    /// [`Limits`]; `Ok(None)` on 404.
    fn get_at_most(&self, path: &str, cap: u64) -> Result<Option<Vec<u8>>, Failure> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let fail = |e: &dyn std::fmt::Display| Failure::unchecked(format!("GET {url}: {e}"));
        let budget = self.limits.budget()?;
        let failed = |e: ureq::Error| match e {
            ureq::Error::Timeout(_) => fail(&budget.exceeded()),
            e => match certificate_error(&e) {
                Some(reason) => fail(&reason),
                None => fail(&e),
            },
        };
        let mut response = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(budget.time))
            .build()
            .call()
            .map_err(failed)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status @ 300..=399 => {
                let to = response
                    .headers()
                    .get("location")
                    .map_or("nowhere".into(), |l| String::from_utf8_lossy(l.as_bytes()));
                return Err(fail(&format!(
                    "the log answered a redirect (HTTP {status}) to {to}, which the verifier \
                     does not follow"
                )));
            }
            status => {
                // The server's one-line reason, such as a TLS port's
                // answer to plain HTTP; no more than a line is read.
                let mut reason = Vec::new();
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(256)
                    .read_to_end(&mut reason);
                let reason = String::from_utf8_lossy(&reason);
                return Err(fail(&match reason.lines().next().map(str::trim) {
                    Some(line) if !line.is_empty() => format!("HTTP {status}: {line}"),
                    _ => format!("HTTP {status}"),
                }));
            }
        }
        let too_large = || fail(&format!("the answer is larger than {cap} bytes; not read"));
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > cap) {
            return Err(too_large());
        }
        let mut body = RateFloor {
            inner: response.body_mut().as_reader(),
            started: Instant::now(),
            min_rate: self.limits.min_rate,
            received: 0,
            too_slow: None,
        };
        let mut bytes = Vec::new();
        let read = (&mut body).take(cap + 1).read_to_end(&mut bytes);
        if let Some((received, seconds)) = body.too_slow {
            return Err(fail(&format!(
                "abandoned: {received} bytes in {seconds:.1} s, slower than --min-rate {} \
                 bytes/s",
                self.limits.min_rate
            )));
        }
        read.map_err(|e| failed(ureq::Error::from(e)))?;
        if bytes.len() as u64 > cap {
            return Err(too_large());
        }
        Ok(Some(bytes))
    }

    /// Runs one gRPC call under the per-request deadline and what is left
    /// of the command's; the call's own status is the caller's to judge,
    /// except a TLS failure (with TLS 1.3 a refused client certificate
    /// shows only at the first call), which fails the command.
    pub async fn rpc<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<Result<T, tonic::Status>, Failure> {
        let budget = self.limits.budget()?;
        let answer = tokio::time::timeout(budget.time, call).await.map_err(|_| {
            Failure::unchecked(format!("{what} on {}: {}", self.base, budget.exceeded()))
        })?;
        if let Err(status) = &answer {
            let reason = certificate_error(status).or_else(|| {
                connection_failed(status)
                    .then(|| self.tls_refusal())
                    .flatten()
            });
            if let Some(reason) = reason {
                return Err(Failure::unchecked(format!(
                    "{what} on {}: {reason}",
                    self.base
                )));
            }
        }
        Ok(answer)
    }

    /// Why the log refuses TLS connections, if it does. A gRPC call on a
    /// refused connection reports only "connection closed": with TLS 1.3
    /// the server refuses a client certificate after the handshake, and
    /// the gRPC client drops its alert. One HTTPS request reads it.
    fn tls_refusal(&self) -> Option<String> {
        if !self.base.starts_with("https://") {
            return None;
        }
        let url = format!("{}/checkpoint", self.base);
        let request = self.agent.get(&url).config();
        match request
            .timeout_global(Some(self.limits.request))
            .build()
            .call()
        {
            Err(e) => certificate_error(&e),
            Ok(_) => None,
        }
    }

    /// Holds a stream that has delivered `received` bytes since `started`
    /// to `--min-rate`, as [`RateFloor`] holds a body: `Err` names what was
    /// abandoned.
    pub fn check_rate(&self, what: &str, received: u64, started: Instant) -> Result<(), Failure> {
        let elapsed = started.elapsed();
        let min_rate = self.limits.min_rate;
        if too_slow(min_rate, received, elapsed) {
            return Err(Failure::unchecked(format!(
                "{what} on {}: abandoned: {received} bytes in {:.1} s, slower than --min-rate \
                 {min_rate} bytes/s",
                self.base,
                elapsed.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// Fetches `/checkpoint` and verifies it with the log's key and the
    /// witness policy. A note that does not verify is a security finding:
    /// the log (or someone in between) served a checkpoint the log's key
    /// did not sign, or one the required witnesses did not cosign.
    pub fn checkpoint(&self, key: &VerifierKey) -> Result<SignedCheckpoint, Failure> {
        let signed = self.log_signed_checkpoint(key)?;
        self.policy.check(&signed, key, "the log's checkpoint")?;
        Ok(signed)
    }

    /// Fetches `/checkpoint` and verifies the log's signature only, for a
    /// caller that applies the witness policy once the size is right.
    pub fn log_signed_checkpoint(&self, key: &VerifierKey) -> Result<SignedCheckpoint, Failure> {
        let note = self
            .get_at_most("checkpoint", MAX_CHECKPOINT_BYTES)?
            .ok_or_else(|| Failure::unchecked(format!("{}/checkpoint: not found", self.base)))?;
        SignedCheckpoint::verify(&note, key).map_err(|e| {
            Failure::security_with(
                format!(
                    "the log's checkpoint does not verify under {}: {e}",
                    key.key_id()
                ),
                vec![(
                    "served checkpoint".into(),
                    String::from_utf8_lossy(&note).into_owned(),
                )],
            )
        })
    }

    /// A tile of the tree of `size` entries. A tile the tree must have but
    /// the log does not serve is withheld data: a security finding.
    /// Nothing is read beyond what a full tile of its kind can hold.
    pub fn tile(&self, tile: TileId, size: u64) -> Result<Vec<u8>, Failure> {
        let cap = match tile.kind {
            TileKind::Hashes { .. } => TILE_WIDTH * 32,
            TileKind::Entries => MAX_ENTRY_BUNDLE,
        };
        self.get_at_most(&tile.path(), cap)?.ok_or_else(|| {
            Failure::security(format!(
                "the log does not serve {}, which its tree of size {size} must have",
                tile.path()
            ))
        })
    }

    /// The hash tiles of the tree of `size` entries, as a proof source.
    pub fn hash_tiles(&self, size: u64) -> RemoteTiles<'_> {
        RemoteTiles {
            log: self,
            size,
            cache: RefCell::new(HashMap::new()),
        }
    }
}

/// Hash tiles fetched on demand and kept for the life of one command.
pub struct RemoteTiles<'a> {
    log: &'a Log,
    size: u64,
    cache: RefCell<HashMap<(u8, u64), Vec<u8>>>,
}

impl HashTileSource for RemoteTiles<'_> {
    type Error = String;

    fn hash_tile(&self, level: u8, index: u64) -> Result<Vec<u8>, String> {
        if let Some(tile) = self.cache.borrow().get(&(level, index)) {
            return Ok(tile.clone());
        }
        let tile = TileId::hash_tile_in_tree(level, index, self.size)
            .ok_or_else(|| format!("hash tile {level}/{index} is outside the tree"))?;
        debug_assert!(matches!(tile.kind, TileKind::Hashes { .. }));
        let bytes = self.log.tile(tile, self.size).map_err(|f| match f {
            Failure::Security(finding) => finding.summary,
            Failure::Unchecked(reason) => reason,
        })?;
        if bytes.len() != usize::from(tile.width) * 32 {
            return Err(format!(
                "{} has {} bytes, not {}",
                tile.path(),
                bytes.len(),
                usize::from(tile.width) * 32
            ));
        }
        self.cache
            .borrow_mut()
            .insert((level, index), bytes.clone());
        Ok(bytes)
    }
}

/// Opens a gRPC connection to the log, for submitting and lookups by hash.
/// Connecting, and every call's answer, are bounded by the log's
/// [`Limits`]; [`Log::rpc`] bounds a whole call.
pub async fn grpc(
    log: &Log,
) -> Result<crate::proto::log_client::LogClient<tonic::transport::Channel>, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::unchecked(format!("gRPC {}: {e}", log.url()));
    let budget = log.limits.budget()?;
    let endpoint =
        tonic::transport::Endpoint::from_shared(log.url().to_owned()).map_err(|e| fail(&e))?;
    let endpoint = log
        .tls
        .endpoint(endpoint)
        .map_err(|e| fail(&e))?
        .connect_timeout(budget.time)
        .timeout(log.limits.request);
    let channel = tokio::time::timeout(budget.time, endpoint.connect())
        .await
        .map_err(|_| fail(&budget.exceeded()))?
        .map_err(|e| match certificate_error(&e) {
            Some(reason) => fail(&reason),
            None => fail(&e),
        })?;
    Ok(crate::proto::log_client::LogClient::new(channel))
}

/// Whether a gRPC call failed because its connection did (rather than
/// being answered with a status).
fn connection_failed(status: &tonic::Status) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(error) = next {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// The HTTP client for a log: `tls` for `https://`, and no redirects: a
/// redirect could send the verifier anywhere, and a log has no reason to
/// answer one, so it is reported, not followed.
fn agent(tls: &ClientTls) -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .tls_config(tls.http())
        .build()
        .new_agent()
}

/// Reads a verifier key given inline (`name+id+key`) or as a file holding one.
pub fn verifier_key(arg: &str) -> Result<VerifierKey, Failure> {
    key_arg("--vkey", arg, "verifier key", VerifierKey::parse)
}

/// Reads a key that `flag` gives inline or as a file holding one, with
/// `parse`; errors name the flag and the argument.
pub fn key_arg<K>(
    flag: &str,
    arg: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<K, crate::keys::KeyError>,
) -> Result<K, Failure> {
    if let Ok(key) = parse(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        Failure::unchecked(format!(
            "{flag} {arg}: not a {what}, and cannot read it as a file: {e}"
        ))
    })?;
    parse(&text).map_err(|e| Failure::unchecked(format!("{flag} {arg}: {e}")))
}
