//! `--witness` and `--quorum`: which witnesses must have cosigned a
//! checkpoint before any command relies on it.
//!
//! A log's own signature only shows what its operator said. A checkpoint
//! that `k` independent witnesses cosigned can only hide a split view if
//! those `k` collude with the operator, so a client that asks for a quorum
//! refuses everything else, as a security finding (exit 1) carrying the
//! note it was served.

use super::outcome::Failure;
use crate::checkpoint::SignedCheckpoint;
use crate::cosignature::{verify_witnessed, CosignatureError, CosignerVerifierKey};
use crate::keys::VerifierKey;

/// The flags, as every command that reads a checkpoint takes them.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WitnessArgs {
    /// A witness's cosigner verifier key (C2SP cosignature/v1), inline or
    /// as a file. Repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many distinct listed witnesses must have cosigned each
    /// checkpoint [default: all listed].
    #[arg(long, value_name = "K", requires = "witnesses")]
    quorum: Option<usize>,
}

impl WitnessArgs {
    /// Reads the keys and checks that the quorum can be met at all.
    pub fn policy(&self) -> Result<WitnessPolicy, Failure> {
        let witnesses = self
            .witnesses
            .iter()
            .map(|arg| cosigner_key(arg))
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = self.quorum.unwrap_or(witnesses.len());
        if quorum > witnesses.len() {
            return Err(Failure::unchecked(format!(
                "--quorum {quorum} is more than the {} --witness keys given",
                witnesses.len()
            )));
        }
        Ok(WitnessPolicy { witnesses, quorum })
    }
}

/// The witnesses a checkpoint must carry cosignatures of. The default
/// requires none.
#[derive(Clone, Debug, Default)]
pub struct WitnessPolicy {
    witnesses: Vec<CosignerVerifierKey>,
    quorum: usize,
}

impl WitnessPolicy {
    /// Checks `signed` (already verified under `log_key`) against the
    /// policy. `what` names the checkpoint in the finding, such as "the
    /// log's checkpoint".
    pub fn check(
        &self,
        signed: &SignedCheckpoint,
        log_key: &VerifierKey,
        what: &str,
    ) -> Result<(), Failure> {
        if self.quorum == 0 {
            return Ok(());
        }
        verify_witnessed(&signed.note, log_key, &self.witnesses, self.quorum)
            .map(drop)
            .map_err(|e| {
                let summary = match e {
                    CosignatureError::QuorumNotReached { valid, needed, .. } => format!(
                        "{what} (size {}) carries valid cosignatures of {valid} of the listed \
                         witnesses; --quorum needs {needed}",
                        signed.checkpoint.size
                    ),
                    e => format!("{what} (size {}): {e}", signed.checkpoint.size),
                };
                Failure::security_with(
                    summary,
                    vec![("checkpoint".into(), signed.note_text().to_owned())],
                )
            })
    }

    /// Whether any cosignature is required.
    pub fn requires_witnesses(&self) -> bool {
        self.quorum > 0
    }

    /// A phrase for reports, such as "cosigned by 2 of 2 listed witnesses
    /// (quorum 2)".
    pub fn describe(&self, signed: &SignedCheckpoint, log_key: &VerifierKey) -> Option<String> {
        if !self.requires_witnesses() {
            return None;
        }
        let witnessed = verify_witnessed(&signed.note, log_key, &self.witnesses, 0).ok()?;
        Some(format!(
            "cosigned by {} of {} listed witnesses (quorum {})",
            witnessed.cosignatures.len(),
            self.witnesses.len(),
            self.quorum
        ))
    }
}

/// Reads a cosigner verifier key given inline or as a file holding one.
fn cosigner_key(arg: &str) -> Result<CosignerVerifierKey, Failure> {
    super::remote::key_arg(
        "--witness",
        arg,
        "cosigner verifier key",
        CosignerVerifierKey::parse,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::cosignature::{add_cosignatures, CosignerSigningKey};
    use crate::keys::SigningKey;
    use crate::merkle::leaf_hash;

    fn log_key() -> SigningKey {
        SigningKey::from_seed("log.example/policy", [7; 32]).unwrap()
    }

    fn witness(seed: u8) -> CosignerSigningKey {
        CosignerSigningKey::new(
            SigningKey::from_seed(&format!("witness.example/{seed}"), [seed; 32]).unwrap(),
        )
    }

    fn cosigned_by(witnesses: &[&CosignerSigningKey]) -> SignedCheckpoint {
        let body = Checkpoint {
            origin: "log.example/policy".into(),
            size: 3,
            root: leaf_hash(b"three"),
        };
        let note = body.sign(&log_key());
        let signed = SignedCheckpoint::verify(&note, &log_key().verifier_key()).unwrap();
        let cosignatures: Vec<_> = witnesses
            .iter()
            .map(|w| w.cosign(&body.to_body(), 1_700_000_000).unwrap())
            .collect();
        add_cosignatures(&signed, &cosignatures).unwrap()
    }

    fn policy(
        witnesses: &[&CosignerSigningKey],
        quorum: Option<usize>,
    ) -> Result<WitnessPolicy, Failure> {
        WitnessArgs {
            witnesses: witnesses
                .iter()
                .map(|w| w.verifier_key().to_string())
                .collect(),
            quorum,
        }
        .policy()
    }

    #[test]
    fn a_quorum_of_listed_witnesses_passes() {
        let (a, b) = (witness(1), witness(2));
        let signed = cosigned_by(&[&a, &b]);
        let key = log_key().verifier_key();
        assert_eq!(
            policy(&[&a, &b], Some(2))
                .unwrap()
                .check(&signed, &key, "it"),
            Ok(())
        );
        assert_eq!(
            policy(&[&a, &b], None).unwrap().check(&signed, &key, "it"),
            Ok(())
        );
    }

    #[test]
    fn too_few_cosignatures_is_a_finding_naming_the_count() {
        let (a, b) = (witness(1), witness(2));
        let signed = cosigned_by(&[&a]);
        let key = log_key().verifier_key();
        let Err(Failure::Security(finding)) =
            policy(&[&a, &b], Some(2))
                .unwrap()
                .check(&signed, &key, "the log's checkpoint")
        else {
            panic!("a missing cosignature must be a security finding");
        };
        assert!(
            finding.summary.contains("1 of the listed witnesses"),
            "{}",
            finding.summary
        );
        assert!(finding.summary.contains("needs 2"), "{}", finding.summary);
        assert_eq!(
            policy(&[&a, &b], Some(1))
                .unwrap()
                .check(&signed, &key, "it"),
            Ok(())
        );
    }

    #[test]
    fn cosignatures_of_unlisted_witnesses_do_not_count() {
        let (a, stranger) = (witness(1), witness(9));
        let signed = cosigned_by(&[&stranger]);
        let key = log_key().verifier_key();
        assert!(matches!(
            policy(&[&a], Some(1)).unwrap().check(&signed, &key, "it"),
            Err(Failure::Security(_))
        ));
    }

    #[test]
    fn no_witnesses_requires_nothing_and_an_impossible_quorum_is_refused() {
        let signed = cosigned_by(&[]);
        let key = log_key().verifier_key();
        assert_eq!(WitnessPolicy::default().check(&signed, &key, "it"), Ok(()));
        assert!(matches!(
            policy(&[&witness(1)], Some(2)),
            Err(Failure::Unchecked(reason)) if reason.contains("--quorum 2")
        ));
    }
}
