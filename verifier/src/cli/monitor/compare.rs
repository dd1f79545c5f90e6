//! Deciding whether two verified checkpoints of one log can both be
//! honest, with the proof taken from the log's own tiles.
//!
//! - Equal sizes: the same root is one tree; different roots are a fork,
//!   and the two signed notes alone prove it.
//! - Different sizes: the RFC 9162 consistency proof is built from the
//!   tiles of the larger tree, which must be one the log serves (the
//!   monitor's own view, or the checkpoint the log just served). If it
//!   verifies against both roots, the larger tree extends the smaller.
//!
//! A proof that fails is only a split view if it proves one: the tiles are
//! authenticated by the larger signed root, so a proof that leads to that
//! root but implies another root for the smaller tree shows the log signed
//! two histories ([`relate`] decides, as [`Evidence::check`] will for
//! anyone reading the evidence file). A proof that fails without leading to the larger
//! root shows only that the log served tiles that do not match its own
//! signed root: a serious fault, reported as one, but not evidence of a
//! fork, so it raises no alarm that the evidence file could not back.

use crate::checkpoint::SignedCheckpoint;
use crate::cli::outcome::Failure;
use crate::cli::remote::Log;
use crate::cli::state::prove_consistency;
use crate::evidence::Evidence;
use crate::merkle::{Hash, HashReader as _};
use crate::relation::relate;
use crate::tiles::TiledHashReader;

/// What comparing two checkpoints of one log showed.
#[derive(Debug)]
pub enum Comparison {
    /// One is a prefix of the other (or they are the same tree).
    Consistent,
    /// They cannot both be honest; the evidence proves it.
    SplitView(Box<Evidence>),
}

/// Compares `own` and `other`, both verified under the log's key, through
/// [`relate`]. The larger of the two must be a tree the log serves tiles
/// for. `context` goes into the evidence, for people. `Err` says why the
/// comparison could not be made.
pub fn compare(
    log: &Log,
    own: &SignedCheckpoint,
    other: &SignedCheckpoint,
    context: &str,
) -> Result<Comparison, String> {
    let (small, large) = if own.checkpoint.size <= other.checkpoint.size {
        (own, other)
    } else {
        (other, own)
    };
    let proof = evidence_proof(log, small, large)?;
    let Err(conflict) = relate(small, large, proof) else {
        return Ok(Comparison::Consistent);
    };
    match conflict.split_view(context) {
        Some(evidence) => Ok(Comparison::SplitView(Box::new(evidence))),
        None => Err(format!(
            "the consistency proof {} → {} built from the log's tiles fails, but proves \
             no fork ({}): the log serves tiles that do not match its signed root",
            small.checkpoint.size,
            large.checkpoint.size,
            conflict.summary()
        )),
    }
}

/// The proof from `small` to `large` as evidence files carry it: RFC
/// 9162's, built from the log's tiles, preceded by the larger tree's root
/// over its first `m` leaves when `m` is a power of two (RFC 9162 leaves
/// that hash out, and without it no fork can be shown). Empty for equal
/// sizes, which the two notes decide alone, and from the empty tree.
fn evidence_proof(
    log: &Log,
    small: &SignedCheckpoint,
    large: &SignedCheckpoint,
) -> Result<Vec<Hash>, String> {
    let (m, n) = (small.checkpoint.size, large.checkpoint.size);
    let proof = prove_consistency(log, small, large).map_err(reason)?;
    if m == 0 || m == n || !m.is_power_of_two() {
        return Ok(proof);
    }
    let level = u8::try_from(m.trailing_zeros()).expect("at most 63");
    let tiles = log.hash_tiles(n);
    let subtree = TiledHashReader::new(&tiles)
        .read_hashes(&[tlog_tiles::stored_hash_index(level, 0)])
        .map_err(|e| format!("reading the root of the first {m} leaves from tiles: {e}"))?;
    Ok(subtree.into_iter().chain(proof).collect())
}

fn reason(failure: Failure) -> String {
    match failure {
        Failure::Security(finding) => finding.summary,
        Failure::Unchecked(reason) => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::evidence::Verdict;
    use crate::keys::SigningKey;
    use crate::merkle::leaf_hash;
    use crate::tile_builder::{MemoryTiles, TileBuilder};
    use crate::tiles::{TileId, TileKind};
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use std::sync::Arc;

    fn log_key() -> SigningKey {
        SigningKey::from_seed("log.example/monitor-test", [9; 32]).unwrap()
    }

    /// A tree of `size` leaves; from leaf `fork_at` on, `branch` changes them.
    fn tree(size: u64, fork_at: u64, branch: &str) -> (MemoryTiles, Vec<SignedCheckpoint>) {
        let key = log_key();
        let mut builder = TileBuilder::new();
        let mut tiles = MemoryTiles::default();
        let mut checkpoints = vec![signed(&key, 0, builder.root())];
        for i in 0..size {
            let leaf = if i < fork_at {
                format!("leaf {i}")
            } else {
                format!("leaf {i} of {branch}")
            };
            builder.append(leaf_hash(leaf.as_bytes()));
            tiles.apply(builder.take_changed());
            checkpoints.push(signed(&key, i + 1, builder.root()));
        }
        (tiles, checkpoints)
    }

    fn signed(key: &SigningKey, size: u64, root: Hash) -> SignedCheckpoint {
        let body = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root,
        };
        SignedCheckpoint::verify(&body.sign(key), &key.verifier_key()).unwrap()
    }

    /// Serves `tiles` as a log's hash tiles on a loopback port, each byte
    /// flipped if `garbage`; returns the log.
    fn serve(tiles: MemoryTiles, garbage: bool) -> Log {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let tile = |State(served): State<Arc<(MemoryTiles, bool)>>, Path(path): Path<String>| async move {
            let (tiles, garbage) = &*served;
            let Ok(id) = TileId::parse(&format!("tile/{path}")) else {
                return Err(StatusCode::BAD_REQUEST);
            };
            let TileKind::Hashes { level } = id.kind else {
                return Err(StatusCode::NOT_FOUND);
            };
            let width = usize::from(id.width) * 32;
            match tiles.0.get(&(level, id.index)) {
                Some(hashes) if hashes.len() >= width => Ok(hashes[..width]
                    .iter()
                    .map(|b| if *garbage { !b } else { *b })
                    .collect::<Vec<u8>>()),
                _ => Err(StatusCode::NOT_FOUND),
            }
        };
        let app = axum::Router::new()
            .route("/tile/{*path}", axum::routing::get(tile))
            .with_state(Arc::new((tiles, garbage)));
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
        });
        Log::new(&url).unwrap()
    }

    fn check(log: &Log, own: &SignedCheckpoint, other: &SignedCheckpoint) -> Comparison {
        compare(log, own, other, "unit test").unwrap()
    }

    fn assert_proven(comparison: Comparison) -> Evidence {
        let Comparison::SplitView(evidence) = comparison else {
            panic!("expected a split view, got {comparison:?}");
        };
        let verdict = evidence.check(&log_key().verifier_key()).unwrap();
        assert!(matches!(verdict, Verdict::Proven { .. }), "{verdict:?}");
        *evidence
    }

    #[test]
    fn equal_sizes_are_decided_without_the_network() {
        let (_, honest) = tree(20, 20, "a");
        let (_, forked) = tree(20, 7, "b");
        // Nothing listens on port 9 of loopback: any request would fail.
        let offline = Log::new("http://127.0.0.1:9").unwrap();
        assert!(matches!(
            check(&offline, &honest[20], &honest[20]),
            Comparison::Consistent
        ));
        let evidence = assert_proven(check(&offline, &honest[20], &forked[20]));
        assert!(evidence.proof().is_empty());
    }

    #[test]
    fn a_prefix_of_the_own_view_is_consistent() {
        let (tiles, checkpoints) = tree(300, 300, "a");
        let log = serve(tiles, false);
        for size in [1, 4, 5, 256, 299] {
            assert!(
                matches!(
                    check(&log, &checkpoints[300], &checkpoints[size]),
                    Comparison::Consistent
                ),
                "size {size}"
            );
        }
    }

    #[test]
    fn a_served_tree_that_extends_the_own_view_is_consistent() {
        let (tiles, checkpoints) = tree(40, 40, "a");
        let log = serve(tiles, false);
        assert!(matches!(
            check(&log, &checkpoints[13], &checkpoints[40]),
            Comparison::Consistent
        ));
    }

    #[test]
    fn a_smaller_checkpoint_of_another_history_is_a_proven_split_view() {
        let (tiles, own) = tree(300, 300, "a");
        let (_, other) = tree(300, 3, "b");
        let log = serve(tiles, false);
        for size in [5, 8, 257] {
            let evidence = assert_proven(check(&log, &own[300], &other[size]));
            assert_eq!(evidence.notes()[0], other[size].note_text(), "size {size}");
        }
    }

    #[test]
    fn a_power_of_two_size_gets_the_subtree_root_the_evidence_needs() {
        let (tiles, own) = tree(11, 11, "a");
        let (_, other) = tree(8, 4, "b");
        let log = serve(tiles, false);
        let evidence = assert_proven(check(&log, &own[11], &other[8]));
        let rfc_proof = prove_consistency(&log, &own[8], &own[11]).unwrap();
        assert_eq!(evidence.proof().len(), rfc_proof.len() + 1);
        assert_eq!(evidence.proof()[0], own[8].checkpoint.root);
    }

    #[test]
    fn tiles_that_do_not_match_the_signed_root_prove_nothing() {
        let (tiles, own) = tree(40, 40, "a");
        let (_, other) = tree(20, 3, "b");
        let log = serve(tiles, true);
        let error = compare(&log, &own[40], &other[20], "unit test").unwrap_err();
        assert!(error.contains("proves no fork"), "{error}");
    }

    #[test]
    fn missing_tiles_are_an_error_not_a_verdict() {
        let (_, own) = tree(40, 40, "a");
        let log = serve(MemoryTiles::default(), false);
        let error = compare(&log, &own[40], &own[20], "unit test").unwrap_err();
        assert!(error.contains("tile"), "{error}");
    }
}
