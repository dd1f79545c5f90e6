//! `verifier attest`: a reviewer signs off a release event before it is
//! submitted.
//!
//! The reviewer signs, with Ed25519, `"tlog.v1 review\n" || version || "\n"
//! || artifact_sha256` (see `tlog.v1.ReviewerAttestation`), so a sign-off
//! covers exactly one version of exactly one artifact. The command reads a
//! release event in the JSON that `submit` reads, checks it is one, and
//! prints the same JSON with this reviewer's attestation added to
//! `attestations`; reviewers chain it, one after another. The input is
//! otherwise kept as written: nothing is re-encoded but the added entry.

use super::event_json::parse_events;
use super::outcome::{Failure, Outcome, Report};
use super::submit::signer_key;
use crate::event::review_signing_message;
use crate::keys::SigningKey;
use crate::proto::event::Kind;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Arguments of `verifier attest`.
#[derive(clap::Args)]
pub struct Args {
    /// The reviewer's signer key file, as written by `verifier keygen`.
    #[arg(long)]
    key: PathBuf,
    /// One release event in the protobuf JSON mapping of `tlog.v1.Event`.
    /// `-` or nothing reads standard input.
    event: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let key = signer_key(&args.key)?;
    let input = read_input(args.event.as_deref())?;
    let attested = attest(&key, &input).map_err(Failure::unchecked)?;
    let text = serde_json::to_string_pretty(&attested).expect("a JSON value serialises");
    Ok(Report {
        human: text,
        json: attested,
    })
}

/// Adds `key`'s attestation to the one release event in `input`, or says
/// why it cannot.
fn attest(key: &SigningKey, input: &[u8]) -> Result<Value, String> {
    let events = parse_events(input)?;
    let [(_, event)] = events.as_slice() else {
        return Err(format!(
            "{} events in the input; attest one release at a time",
            events.len()
        ));
    };
    let Some(Kind::CodeRelease(release)) = &event.kind else {
        return Err("the event is not a codeRelease".into());
    };
    let key_id = key.key_id();
    if release
        .attestations
        .iter()
        .any(|a| a.reviewer_key_id == key_id)
    {
        return Err(format!(
            "the release already carries an attestation by {key_id}"
        ));
    }
    let signature = key.sign(&review_signing_message(
        &release.version,
        &release.artifact_sha256,
    ));
    let attestation = json!({
        "reviewerKeyId": key_id,
        "signature": BASE64_STANDARD.encode(signature),
    });
    let mut value: Value = serde_json::from_slice(input).map_err(|e| e.to_string())?;
    let field = ["codeRelease", "code_release"]
        .into_iter()
        .find(|name| value.get(name).is_some())
        .expect("a parsed release event has its codeRelease field");
    let release = &mut value[field];
    match release.get_mut("attestations") {
        Some(Value::Array(list)) => list.push(attestation),
        _ => {
            release["attestations"] = Value::Array(vec![attestation]);
        }
    }
    Ok(value)
}

fn read_input(path: Option<&Path>) -> Result<Vec<u8>, Failure> {
    let mut input = Vec::new();
    match path {
        Some(p) if p != Path::new("-") => std::fs::read(p).map(|bytes| input = bytes),
        _ => std::io::stdin().read_to_end(&mut input).map(drop),
    }
    .map_err(|e| {
        let name = path.map_or("standard input".into(), |p| p.display().to_string());
        Failure::unchecked(format!("cannot read {name}: {e}"))
    })?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::VerifierKey;

    const RELEASE: &str = r#"{"occurredAt": "2026-11-22T09:15:00Z", "codeRelease": {
        "artifactName": "example-app-android", "version": "4.3.1",
        "artifactSha256": "LnpsfDL6XcBw5s2oI1JyQwH0jAsr+VlI2y6U0vWoHuk=",
        "sourceRepository": "https://git.example.com/app",
        "sourceCommit": "3f9c2a7d1e5b8c4a6f0d2e9b7a1c3d5e7f9b0a2c",
        "buildProvenanceSha256": "ICDnze2HvqrcanLAGMA0GSsfWOZdPaZFWx6L16SEXNU=",
        "releaseChannel": "stable"}}"#;

    fn reviewer(seed: u8) -> SigningKey {
        SigningKey::from_seed(&format!("reviewer-{seed}.example"), [seed; 32]).unwrap()
    }

    fn release_of(value: &Value) -> crate::proto::CodeRelease {
        let text = serde_json::to_vec(value).unwrap();
        match parse_events(&text).unwrap().remove(0).1.kind {
            Some(Kind::CodeRelease(release)) => release,
            other => panic!("not a release: {other:?}"),
        }
    }

    fn verifies(key: &VerifierKey, release: &crate::proto::CodeRelease, index: usize) -> bool {
        let attestation = &release.attestations[index];
        attestation.reviewer_key_id == key.key_id()
            && key.verify(
                &review_signing_message(&release.version, &release.artifact_sha256),
                &attestation.signature,
            )
    }

    #[test]
    fn reviewers_chain_attestations_that_verify_on_the_release() {
        let (a, b) = (reviewer(1), reviewer(2));
        let once = attest(&a, RELEASE.as_bytes()).unwrap();
        let twice = attest(&b, &serde_json::to_vec(&once).unwrap()).unwrap();
        let release = release_of(&twice);
        assert_eq!(release.attestations.len(), 2);
        assert!(verifies(&a.verifier_key(), &release, 0));
        assert!(verifies(&b.verifier_key(), &release, 1));
        assert_eq!(release.version, "4.3.1");
    }

    #[test]
    fn a_second_attestation_by_one_reviewer_is_refused() {
        let a = reviewer(1);
        let once = serde_json::to_vec(&attest(&a, RELEASE.as_bytes()).unwrap()).unwrap();
        let error = attest(&a, &once).unwrap_err();
        assert!(error.contains("already carries"), "{error}");
    }

    #[test]
    fn only_one_release_event_is_attested() {
        let flow = r#"{"occurredAt": "2026-11-22T09:15:00Z", "dataFlow": {"flowId": "f"}}"#;
        let error = attest(&reviewer(1), flow.as_bytes()).unwrap_err();
        assert!(error.contains("not a codeRelease"), "{error}");
        let two = format!("{RELEASE}\n{RELEASE}");
        let error = attest(&reviewer(1), two.as_bytes()).unwrap_err();
        assert!(error.starts_with("2 events"), "{error}");
    }
}
