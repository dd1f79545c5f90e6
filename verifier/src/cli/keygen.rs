//! `verifier keygen`: create an Ed25519 key for a submitter, a reviewer or
//! a witness.
//!
//! The signer key goes to `--out`, created with mode 0600 and never over an
//! existing file: overwriting a key would silently orphan everything signed
//! with it. Only the verifier key line is printed, so that
//! `verifier keygen … >> <data-dir>/submitters` puts it on a log's
//! allowlist. With `--cosigner` the line is the key's C2SP
//! `cosignature/v1` verifier key (type `0x04`) instead, the one logs and
//! clients list for a `verifier witness` that signs with this file.

use super::outcome::{Failure, Outcome, Report};
use crate::cosignature::CosignerSigningKey;
use crate::files::{self, Access};
use crate::keys::SigningKey;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `verifier keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// The key's name: no spaces and no '+', for example `pipeline.example`.
    #[arg(long)]
    name: String,
    /// Where to write the signer key; must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// Print the witness cosigner verifier key instead of the note
    /// verifier key: the key is for `verifier witness --key`.
    #[arg(long)]
    cosigner: bool,
}

pub fn run(args: Args) -> Outcome {
    let key = SigningKey::generate(&args.name)
        .map_err(|e| Failure::unchecked(format!("--name {}: {e}", args.name)))?;
    write_secret(&args.out, &key.to_signer_string())?;
    let verifier_key = key.verifier_key().to_string();
    let cosigner_key = CosignerSigningKey::new(key.clone())
        .verifier_key()
        .to_string();
    Ok(Report {
        human: if args.cosigner {
            cosigner_key.clone()
        } else {
            verifier_key.clone()
        },
        json: json!({
            "key_id": key.key_id(),
            "verifier_key": verifier_key,
            "cosigner_verifier_key": cosigner_key,
            "file": args.out.display().to_string(),
        }),
    })
}

/// Creates `path` with mode 0600 holding `secret` and a newline, refusing
/// anything already there (a symbolic link included). It is written
/// whole or not at all (see [`files::create_atomically`]), so a failed run
/// can simply be repeated.
fn write_secret(path: &Path, secret: &str) -> Result<(), Failure> {
    files::create_atomically(path, format!("{secret}\n").as_bytes(), Access::Secret).map_err(|e| {
        Failure::unchecked(match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} already exists; keygen never overwrites a key",
                path.display()
            ),
            _ => format!("cannot create {}: {e}", path.display()),
        })
    })
}
