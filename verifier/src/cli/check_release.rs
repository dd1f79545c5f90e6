//! `verifier check-release`: before installing an artifact, prove that it
//! is a logged release that the policy approves.
//!
//! The log is trusted for nothing it does not prove. The checkpoint is
//! verified under the log's key (and the witness policy); the releases for
//! the digest are found through the log's `FindEntries` lookup at that
//! checkpoint's size, and each one is proven to be in that tree, to hash
//! to its leaf, and to be a release of exactly this digest. The policy then
//! decides: a quorum of its reviewers must have signed this version and
//! digest, no attestation may come from a key it does not list or fail to
//! verify, the channel must be allowed, the submitter must be one that may
//! log releases, and (if the policy says so) the digest must not have been
//! released under two versions.
//!
//! What it leaves out: the lookup proves that what it returns is in the
//! log, not that it returned everything. A log that hides a release can
//! only make the answer "not logged" (refused) or hide a second version;
//! `verifier policy`, which reads every entry, catches the latter.

use super::outcome::{Failure, Outcome, Report};
use super::policy::{EventKind, Incident, Policy, ReleaseHistory, ReleaseReview};
use super::remote::{grpc, Log, LogArgs};
use super::state::proof_lines;
use crate::checkpoint::SignedCheckpoint;
use crate::event::{check_event, decode_entry};
use crate::hex;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::proto::{
    event::Kind, find_entries_request::Key, CodeRelease, FindEntriesRequest, FoundEntry,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// The most releases of one digest this command will check: far more
/// than any honest log holds, few enough that a hostile log cannot keep
/// it paging for ever.
const MAX_RELEASES: usize = 10_000;

/// Arguments of `verifier check-release`.
#[derive(clap::Args)]
pub struct Args {
    /// The artifact: a file to hash, or its digest as `sha256:<64 hex>`.
    artifact: String,
    #[command(flatten)]
    target: LogArgs,
    /// The policy file whose release rules the artifact must meet.
    #[arg(long)]
    policy: std::path::PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let digest = artifact_digest(&args.artifact)?;
    let policy = read_policy(&args.policy)?;
    let (log, key) = args.target.open()?;
    let signed = log.checkpoint(&key)?;
    let found = find_releases(&log, &signed, &digest)?;
    let releases = found
        .iter()
        .map(|entry| prove(&signed, &digest, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let verdict = judge(&policy, &releases);
    let shown = hex::encode(&digest);
    if releases.is_empty() {
        return Err(Failure::security_with(
            format!(
                "sha256:{shown} is not approved: no release of it is logged in the tree of size {}",
                signed.checkpoint.size
            ),
            vec![("checkpoint".into(), signed.note_text().to_owned())],
        ));
    }
    if !approved(&verdict) {
        return Err(Failure::security_with(
            format!("sha256:{shown} is not approved: {}", reasons(&verdict)),
            evidence(&signed, &releases),
        ));
    }
    Ok(report(&signed, &shown, &releases, &verdict))
}

/// The artifact's SHA-256: parsed from `sha256:<hex>`, or hashed from the
/// file, read as a stream so a large artifact costs no memory.
fn artifact_digest(artifact: &str) -> Result<[u8; 32], Failure> {
    if let Some(text) = artifact.strip_prefix("sha256:") {
        return hex::decode_digest(text).ok_or_else(|| {
            Failure::unchecked(format!("{artifact}: a digest is sha256: and 64 hex digits"))
        });
    }
    let mut file = std::fs::File::open(artifact)
        .map_err(|e| Failure::unchecked(format!("cannot read artifact {artifact}: {e}")))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| Failure::unchecked(format!("cannot read artifact {artifact}: {e}")))?;
    Ok(hasher.finalize().into())
}

fn read_policy(path: &Path) -> Result<Policy, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::unchecked(format!("--policy {}: {e}", path.display())))?;
    Policy::parse(&text)
        .map_err(|e| Failure::unchecked(format!("--policy {}: {e}", path.display())))
}

/// Every entry the log returns for the digest at the checkpoint's size,
/// page by page. A page that is not about that tree, or that does not
/// move forward, is the log misbehaving.
fn find_releases(
    log: &Log,
    signed: &SignedCheckpoint,
    digest: &[u8; 32],
) -> Result<Vec<FoundEntry>, Failure> {
    let size = signed.checkpoint.size;
    super::block_on(async {
        let mut client = grpc(log).await?;
        let mut found = Vec::new();
        let mut start_index = 0;
        loop {
            let request = FindEntriesRequest {
                key: Some(Key::ArtifactSha256(digest.to_vec())),
                tree_size: size,
                start_index,
                limit: 0,
            };
            let page = log
                .rpc("FindEntries", client.find_entries(request))
                .await?
                .map_err(|status| {
                    Failure::unchecked(format!(
                        "FindEntries on {}: {}: {}",
                        log.url(),
                        status.code(),
                        status.message()
                    ))
                })?
                .into_inner();
            if page.tree_size != size {
                return Err(Failure::security(format!(
                    "asked for releases in the tree of size {size}, the log answered for size {}",
                    page.tree_size
                )));
            }
            let last = page.entries.last().map(|e| e.index);
            found.extend(page.entries);
            if found.len() > MAX_RELEASES {
                return Err(Failure::unchecked(format!(
                    "the log returned more than {MAX_RELEASES} releases of this digest"
                )));
            }
            if page.next_start_index == 0 {
                return Ok(found);
            }
            if last.is_none_or(|last| page.next_start_index <= last)
                || page.next_start_index >= size
            {
                return Err(Failure::security(format!(
                    "the log's next page would start at {}, which does not move past the last \
                     one in a tree of size {size}",
                    page.next_start_index
                )));
            }
            start_index = page.next_start_index;
        }
    })
}

/// A release proven to be in the checkpoint's tree.
#[derive(Debug, Clone)]
struct LoggedRelease {
    index: u64,
    leaf: Hash,
    proof: Vec<Hash>,
    submitter: String,
    release: CodeRelease,
}

/// Proves one returned entry: it hashes to the returned leaf, the proof
/// puts that leaf at its index under the checkpoint's root, and it is a
/// well-formed release of exactly `digest`. Any failure is the log's.
fn prove(
    signed: &SignedCheckpoint,
    digest: &[u8; 32],
    found: &FoundEntry,
) -> Result<LoggedRelease, Failure> {
    let index = found.index;
    let size = signed.checkpoint.size;
    let leaf = leaf_hash(&found.data);
    if found.leaf_hash != leaf.0 {
        return Err(Failure::security(format!(
            "the log's entry {index} does not hash to the leaf hash it came with"
        )));
    }
    let proof = found
        .inclusion_proof
        .iter()
        .map(|h| h.as_slice().try_into().map(Hash))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            Failure::security(format!(
                "the log's inclusion proof for entry {index} holds a hash that is not 32 bytes"
            ))
        })?;
    verify_inclusion(&proof, index, size, leaf, signed.checkpoint.root).map_err(|e| {
        Failure::security_with(
            format!("the log's inclusion proof for entry {index} fails: {e}"),
            vec![
                ("checkpoint".into(), signed.note_text().to_owned()),
                ("leaf hash".into(), leaf.to_string()),
                ("inclusion proof".into(), proof_lines(&proof)),
            ],
        )
    })?;
    let not_a_release = |why: String| {
        Failure::security(format!(
            "the log returned entry {index} for sha256:{}, but {why}",
            hex::encode(digest)
        ))
    };
    let entry = decode_entry(&found.data).map_err(|e| not_a_release(e.to_string()))?;
    let submission = entry.signed_event.unwrap_or_default();
    let event = check_event(&submission.event).map_err(|e| not_a_release(e.to_string()))?;
    let Some(Kind::CodeRelease(release)) = event.kind else {
        return Err(not_a_release("it is not a code release".into()));
    };
    if release.artifact_sha256 != digest {
        return Err(not_a_release(format!(
            "it releases sha256:{}",
            hex::encode(&release.artifact_sha256)
        )));
    }
    Ok(LoggedRelease {
        index,
        leaf,
        proof,
        submitter: submission.key_id,
        release,
    })
}

/// What the policy says of one logged release.
#[derive(Debug)]
struct Judged {
    /// Its log index.
    index: u64,
    /// Its reviewers, quorum and channel.
    review: ReleaseReview,
    /// Every rule it breaks on its own: review, channel, submitter.
    broken: Vec<Incident>,
    /// The one-version rule, if this release gives the digest a second
    /// version.
    conflict: Option<Incident>,
}

/// Applies the policy's release and submitter rules to each release, and
/// the one-version rule across them, in log order.
fn judge(policy: &Policy, releases: &[LoggedRelease]) -> Vec<Judged> {
    let mut history = ReleaseHistory::default();
    releases
        .iter()
        .map(|logged| {
            let review = policy.check_release(&logged.release);
            let mut broken = review.incidents();
            broken.extend(policy.check_submitter(&logged.submitter, EventKind::CodeRelease));
            Judged {
                index: logged.index,
                review,
                broken,
                conflict: history.record(policy, logged.index, &logged.release),
            }
        })
        .collect()
}

/// Approved when some release breaks no rule of its own and no release
/// gives the digest a second version: a digest re-released under another
/// version is refused whatever its reviews.
fn approved(verdict: &[Judged]) -> bool {
    verdict.iter().any(|judged| judged.broken.is_empty())
        && verdict.iter().all(|judged| judged.conflict.is_none())
}

/// Every broken rule, by entry, in one line.
fn reasons(verdict: &[Judged]) -> String {
    verdict
        .iter()
        .filter_map(|judged| {
            let rules: Vec<_> = judged
                .broken
                .iter()
                .chain(&judged.conflict)
                .map(Incident::to_string)
                .collect();
            (!rules.is_empty()).then(|| format!("entry {}: {}", judged.index, rules.join("; ")))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The checkpoint and each release's leaf and proof, so anyone can see
/// which logged entries the refusal is about.
fn evidence(signed: &SignedCheckpoint, releases: &[LoggedRelease]) -> Vec<(String, String)> {
    let mut evidence = vec![("checkpoint".to_owned(), signed.note_text().to_owned())];
    for logged in releases {
        evidence.push((
            format!("entry {} leaf hash and inclusion proof", logged.index),
            format!("{}\n{}", logged.leaf, proof_lines(&logged.proof)),
        ));
    }
    evidence
}

/// What was proven: the tree, then each release with its reviewers.
fn report(
    signed: &SignedCheckpoint,
    digest: &str,
    releases: &[LoggedRelease],
    verdict: &[Judged],
) -> Report {
    let size = signed.checkpoint.size;
    let mut human = format!(
        "approved: sha256:{digest} is a logged release that meets the policy \
         (proven in the tree of size {size}, root {})\n",
        signed.checkpoint.root
    );
    let mut json_releases = Vec::new();
    for (logged, judged) in releases.iter().zip(verdict) {
        let release = &logged.release;
        let status = if judged.broken.is_empty() {
            "approved".to_owned()
        } else {
            let rules: Vec<_> = judged.broken.iter().map(Incident::to_string).collect();
            format!("not approved: {}", rules.join("; "))
        };
        human.push_str(&format!(
            "entry {}: {} {} on channel {}, submitted by {}, reviewed by {} ({} of {} required): {status}\n",
            logged.index,
            release.artifact_name,
            release.version,
            release.release_channel,
            logged.submitter,
            judged.review.reviewers.join(", "),
            judged.review.reviewers.len(),
            judged.review.quorum,
        ));
        json_releases.push(json!({
            "index": logged.index,
            "leaf_hash": logged.leaf.to_string(),
            "artifact_name": release.artifact_name,
            "version": release.version,
            "channel": release.release_channel,
            "submitter": logged.submitter,
            "reviewers": judged.review.reviewers,
            "quorum": judged.review.quorum,
            "approved": judged.broken.is_empty(),
        }));
    }
    Report {
        human,
        json: json!({
            "artifact_sha256": digest,
            "tree_size": size,
            "root": signed.checkpoint.root.to_string(),
            "releases": json_releases,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::review_signing_message;
    use crate::keys::SigningKey;
    use crate::proto::ReviewerAttestation;

    const SUBMITTER: &str = "release.example+e73ccc49";

    fn key(name: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(name, [seed; 32]).unwrap()
    }

    fn policy() -> Policy {
        let a = key("reviewer-a.example", 1).verifier_key();
        let b = key("reviewer-b.example", 2).verifier_key();
        Policy::parse(&format!(
            r#"
[data_residency.eu_user_data]
regions = ["EU"]

[release]
reviewers = ["{a}", "{b}"]
quorum = 2
channels = ["stable"]
one_version_per_digest = true

[submitters]
"{SUBMITTER}" = ["code_release"]
"#
        ))
        .unwrap()
    }

    /// A release of `digest` as `version`, attested by `reviewers` over
    /// what each signs (normally the same version and digest).
    fn logged(index: u64, version: &str, reviewers: &[(&SigningKey, &[u8])]) -> LoggedRelease {
        let attestations = reviewers
            .iter()
            .map(|(reviewer, signed_digest)| ReviewerAttestation {
                reviewer_key_id: reviewer.key_id(),
                signature: reviewer
                    .sign(&review_signing_message(version, signed_digest))
                    .to_vec(),
            })
            .collect();
        LoggedRelease {
            index,
            leaf: Hash([0; 32]),
            proof: Vec::new(),
            submitter: SUBMITTER.into(),
            release: CodeRelease {
                artifact_name: "app".into(),
                version: version.into(),
                artifact_sha256: vec![7; 32],
                release_channel: "stable".into(),
                attestations,
                ..CodeRelease::default()
            },
        }
    }

    const DIGEST: &[u8] = &[7; 32];

    #[test]
    fn a_quorum_of_listed_reviewers_approves() {
        let (a, b) = (key("reviewer-a.example", 1), key("reviewer-b.example", 2));
        let verdict = judge(
            &policy(),
            &[logged(3, "1.0", &[(&a, DIGEST), (&b, DIGEST)])],
        );
        assert!(approved(&verdict), "{}", reasons(&verdict));
        assert_eq!(verdict[0].review.reviewers, [a.key_id(), b.key_id()]);
    }

    #[test]
    fn each_broken_rule_refuses_and_is_named() {
        let (a, b) = (key("reviewer-a.example", 1), key("reviewer-b.example", 2));
        let stranger = key("stranger.example", 3);
        let both: &[(&SigningKey, &[u8])] = &[(&a, DIGEST), (&b, DIGEST)];
        let mut wrong_channel = logged(1, "1.0", both);
        wrong_channel.release.release_channel = "nightly".into();
        let mut wrong_submitter = logged(1, "1.0", both);
        wrong_submitter.submitter = "etl.example+0a08733f".into();
        let cases = [
            (logged(1, "1.0", &[(&a, DIGEST)]), "release.quorum"),
            (
                logged(1, "1.0", &[(&a, DIGEST), (&stranger, DIGEST)]),
                "release.unknown_reviewer",
            ),
            (
                logged(1, "1.0", &[(&a, DIGEST), (&b, &[8; 32])]),
                "release.attestation",
            ),
            (wrong_channel, "release.channel"),
            (wrong_submitter, "submitter."),
        ];
        for (release, rule) in cases {
            let verdict = judge(&policy(), &[release]);
            assert!(!approved(&verdict), "{rule}");
            let why = reasons(&verdict);
            assert!(why.starts_with("entry 1: "), "{why}");
            assert!(why.contains(rule), "{rule}: {why}");
        }
    }

    #[test]
    fn one_approved_release_is_enough_but_a_second_version_refuses() {
        let (a, b) = (key("reviewer-a.example", 1), key("reviewer-b.example", 2));
        let both: &[(&SigningKey, &[u8])] = &[(&a, DIGEST), (&b, DIGEST)];
        let unreviewed_then_reviewed = [logged(1, "1.0", &[]), logged(5, "1.0", both)];
        assert!(approved(&judge(&policy(), &unreviewed_then_reviewed)));
        let two_versions = [logged(1, "1.0", both), logged(5, "2.0", both)];
        let verdict = judge(&policy(), &two_versions);
        assert!(!approved(&verdict));
        let why = reasons(&verdict);
        assert!(
            why.starts_with("entry 5: release.one_version_per_digest"),
            "{why}"
        );
    }

    #[test]
    fn the_artifact_is_a_digest_or_a_file_to_hash() {
        let digest = "ab".repeat(32);
        assert_eq!(
            artifact_digest(&format!("sha256:{digest}")).unwrap(),
            [0xab; 32]
        );
        for bad in [
            "sha256:ab",
            "sha256:",
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(
                matches!(artifact_digest(bad), Err(Failure::Unchecked(_))),
                "{bad}"
            );
        }
        let file = std::env::temp_dir().join(format!("artifact-abc-{}", std::process::id()));
        std::fs::write(&file, b"abc").unwrap();
        let hashed = artifact_digest(file.to_str().unwrap());
        std::fs::remove_file(&file).unwrap();
        // FIPS 180-2 appendix B.1.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hex::encode(&hashed.unwrap()), abc);
        let missing = std::env::temp_dir().join(format!("no-such-artifact-{}", std::process::id()));
        assert!(matches!(
            artifact_digest(missing.to_str().unwrap()),
            Err(Failure::Unchecked(_))
        ));
    }
}
