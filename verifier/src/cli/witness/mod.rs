//! `verifier witness`: a C2SP tlog-witness server.
//!
//! It cosigns a log's checkpoint only after verifying the log's signature
//! and a consistency proof from the last checkpoint it cosigned for that
//! log, so a log that shows two histories can get this witness's
//! cosignature on at most one of them. Clients that require cosignatures
//! from independent witnesses are thereby protected from split views.
//!
//! Start-up order: read the key, read every `--log` key, open and
//! re-verify every log's state (refusing a damaged one), bind, print
//! `witness: cosigner key <vkey>` and `listening on <addr>` on stdout, then
//! serve. On SIGINT or SIGTERM it stops accepting connections, lets
//! requests in flight finish (a cosignature being written is always
//! completed), and exits 0.

mod cosigning;
mod http;
mod state;
#[cfg(test)]
mod test_support;

use super::outcome::{Failure, Outcome, Report};
use crate::cosignature::CosignerSigningKey;
use crate::keys::{SigningKey, VerifierKey};
use crate::serving::{LimitArgs, Limits, Server};
use crate::tls::TlsArgs;
use cosigning::Witness;
use serde_json::json;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long one request, reading its body included, may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `verifier witness`.
#[derive(clap::Args)]
pub struct Args {
    /// The witness's signer key file, as written by `verifier keygen`
    /// (`--cosigner` prints the verifier key clients need). Its name is
    /// the witness's name. It must sign nothing but cosignatures.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Directory of the witness's state: per log, the last checkpoint it
    /// cosigned. Losing it lets the witness be fooled by a rollback.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// A log to witness: its signed-note verifier key, inline or in a
    /// file. The key's name is the log's origin. Repeat for more logs.
    #[arg(long = "log", value_name = "VKEY", required = true)]
    logs: Vec<String>,
    /// Address to serve `POST /add-checkpoint` on.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: SocketAddr,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Serves until SIGINT or SIGTERM; exits 2 without serving if a key or
/// the state cannot be read or verified.
pub fn run(args: Args) -> Outcome {
    super::log_to_stderr();
    let cosigner = CosignerSigningKey::new(signer_key(&args.key)?);
    let log_keys = args
        .logs
        .iter()
        .map(|arg| log_key(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let witness = Witness::open(cosigner, log_keys, &args.state)?;
    let cosigner_key = witness.cosigner_key().to_string();
    super::block_on(serve(witness, args.listen, args.limits.limits(), &args.tls))?;
    Ok(Report {
        human: "witness: stopped".into(),
        json: json!({ "stopped": true, "cosigner_key": cosigner_key }),
    })
}

/// Binds, announces, and serves until a shutdown signal.
async fn serve(
    witness: Witness,
    listen: SocketAddr,
    limits: Limits,
    tls: &TlsArgs,
) -> Result<(), Failure> {
    let transport = tls.transport(listen, None).map_err(Failure::unchecked)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::unchecked(format!("--listen {listen}: cannot bind: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::unchecked(format!("--listen {listen}: {e}")))?;
    println!("witness: cosigner key {}", witness.cosigner_key());
    println!("witness: serving {}://{address}", transport.scheme());
    println!("listening on {address}");
    let _ = std::io::stdout().flush();
    tracing::info!(%address, "serving C2SP tlog-witness");
    Server::with_handshake(listener, transport, limits)
        .serve(
            http::router(Arc::new(witness), REQUEST_TIMEOUT),
            crate::serving::shutdown_signal(),
        )
        .await;
    Ok(())
}

/// Reads the witness's signer key file.
fn signer_key(path: &Path) -> Result<SigningKey, Failure> {
    let text =
        crate::files::read_secret(path).map_err(|e| Failure::unchecked(format!("--key: {e}")))?;
    SigningKey::parse(&text)
        .map_err(|e| Failure::unchecked(format!("--key {}: {e}", path.display())))
}

/// Reads one `--log`: a verifier key, or else a file holding one.
fn log_key(arg: &str) -> Result<VerifierKey, Failure> {
    super::remote::key_arg("--log", arg, "verifier key", VerifierKey::parse)
}
