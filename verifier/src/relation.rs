//! How two checkpoints of one log relate, decided once for everyone: the
//! trusted state, the monitor, the witness and `check-evidence` all ask
//! [`decide`] (or [`relate`], which adds the evidence).
//!
//! `old` is the checkpoint held (trusted, cosigned, or the smaller of a
//! pair), `new` the one compared with it, and `proof` a consistency proof
//! from the smaller tree to the larger:
//!
//! | relation          | when                                                         |
//! |-------------------|--------------------------------------------------------------|
//! | [`Relation::Same`]    | equal sizes, equal roots, no proof hashes                |
//! | [`Relation::Extends`] | `new` is larger and the proof leads from `old`'s root to `new`'s (RFC 9162 §2.1.4.2); every tree extends the empty tree, with an empty proof |
//! | [`Relation::Rollback`] | `new` is smaller than `old`                             |
//! | [`Relation::Fork`]    | equal sizes, different roots: the two notes alone prove it |
//! | [`Relation::DoesNotExtend`] | anything else: the proof does not show that `new` extends `old` |
//!
//! A failed proof proves misbehaviour only in one case ([`Inconsistency::Proven`]):
//! it leads to the larger tree's signed root yet implies another root over
//! its first `m` leaves than the signed root of size `m` (see
//! [`consistency_roots`]). Otherwise it proves nothing by itself, since
//! anyone can write a bad proof; a caller that built it from the log's own
//! tiles still knows that the log serves tiles that do not match its
//! signed root.
//!
//! Two proof forms are accepted: RFC 9162's, and, when `m` is a power of
//! two, RFC 9162's preceded by the larger tree's root over its first `m`
//! leaves, which RFC 9162 leaves out and without which no fork at such a
//! size can be shown (the form evidence files carry).
//!
//! What it leaves out: where proofs come from. Callers fetch tiles or read
//! requests; this module only decides.

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::evidence::Evidence;
use crate::merkle::{consistency_roots, Hash, EMPTY_HASH};

/// How `new` relates to `old`. Its `Display` is a one-line summary.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Relation {
    /// One tree.
    Same {
        /// Both sizes.
        size: u64,
    },
    /// `new` is a larger tree whose first `from` leaves are `old`'s.
    Extends {
        /// `old`'s size.
        from: u64,
        /// `new`'s size.
        to: u64,
    },
    /// `new` is a smaller tree than `old`.
    Rollback {
        /// `old`'s size.
        from: u64,
        /// `new`'s size.
        to: u64,
    },
    /// Two different trees of one size.
    Fork {
        /// Both sizes.
        size: u64,
        /// `old`'s root, then `new`'s.
        roots: [Hash; 2],
    },
    /// The proof does not show that `new` extends `old`.
    DoesNotExtend {
        /// `old`'s size.
        from: u64,
        /// `new`'s size.
        to: u64,
        /// Whether that proves misbehaviour, and why.
        why: Inconsistency,
    },
}

/// Why a proof does not show that one tree extends another.
#[derive(Debug, Clone, PartialEq)]
pub enum Inconsistency {
    /// The proof leads to the larger tree's signed root, so its hashes are
    /// that tree's own nodes, and they give its first `m` leaves another
    /// root than the smaller tree's signed one: two histories, proven.
    Proven {
        /// The root the larger tree has over its first `m` leaves.
        implied: Hash,
        /// The smaller tree's signed root.
        signed: Hash,
    },
    /// The proof is malformed or does not reach the larger signed root.
    Unproven {
        /// One line saying what is wrong with it.
        reason: String,
    },
}

impl Relation {
    /// Whether `new` may follow `old`: the same tree or an extension.
    pub fn is_consistent(&self) -> bool {
        matches!(self, Self::Same { .. } | Self::Extends { .. })
    }

    /// Whether the two checkpoints and the proof alone show that the log
    /// signed two histories.
    pub fn is_proven_misbehaviour(&self) -> bool {
        matches!(
            self,
            Self::Fork { .. }
                | Self::DoesNotExtend {
                    why: Inconsistency::Proven { .. },
                    ..
                }
        )
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Same { size } => {
                write!(f, "both checkpoints are of the same tree of size {size}")
            }
            Self::Extends { from: 0, to } => {
                write!(
                    f,
                    "the tree of size {to} extends the empty tree, as every tree does"
                )
            }
            Self::Extends { from, to } => write!(
                f,
                "the proof shows that the tree of size {to} extends the tree of size {from}"
            ),
            Self::Rollback { from, to } => write!(
                f,
                "rollback: the log now shows a tree of size {to} after having signed size {from}"
            ),
            Self::Fork { size, roots } => write!(
                f,
                "fork: two signed checkpoints for size {size} with different roots, {} and {}",
                roots[0], roots[1]
            ),
            Self::DoesNotExtend {
                from,
                to,
                why: Inconsistency::Proven { implied, signed },
            } => write!(
                f,
                "the tree of size {to} does not extend the signed tree of size {from}: by the \
                 consistency proof, its first {from} leaves have root {implied}, not {signed}"
            ),
            Self::DoesNotExtend {
                from,
                to,
                why: Inconsistency::Unproven { reason },
            } => write!(
                f,
                "the tree of size {to} is not shown to extend the tree of size {from}: {reason}"
            ),
        }
    }
}

/// Decides how `new` relates to `old`, two checkpoint bodies of one log,
/// given `proof` (see the module documentation for its forms).
///
/// Sound only for bodies whose signatures were verified under the log's
/// key; the origins are not compared.
pub fn decide(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Relation {
    let (from, to) = (old.size, new.size);
    let unproven = |reason: String| Relation::DoesNotExtend {
        from,
        to,
        why: Inconsistency::Unproven { reason },
    };
    if to < from {
        return Relation::Rollback { from, to };
    }
    if to == from {
        return if old.root != new.root {
            Relation::Fork {
                size: to,
                roots: [old.root, new.root],
            }
        } else if !proof.is_empty() {
            unproven(format!(
                "a consistency proof between two trees of size {to} must be empty, not {} hashes",
                proof.len()
            ))
        } else {
            Relation::Same { size: to }
        };
    }
    if from == 0 {
        return if old.root != EMPTY_HASH {
            unproven(format!(
                "the signed tree of size 0 has root {}, not the empty tree's root {EMPTY_HASH}",
                old.root
            ))
        } else if !proof.is_empty() {
            unproven(format!(
                "a consistency proof from the empty tree must be empty, not {} hashes",
                proof.len()
            ))
        } else {
            Relation::Extends { from, to }
        };
    }
    match consistency_roots(proof, from, to) {
        Ok((_, implied_new)) if implied_new != new.root => unproven(format!(
            "the consistency proof does not lead to the signed root of the tree of size {to}, \
             so it proves nothing (anyone can write a bad proof)"
        )),
        Ok((implied, _)) if implied != old.root => Relation::DoesNotExtend {
            from,
            to,
            why: Inconsistency::Proven {
                implied,
                signed: old.root,
            },
        },
        Ok(_) => Relation::Extends { from, to },
        Err(shape) if from.is_power_of_two() => {
            // Perhaps RFC 9162's form, which leaves the old root out: it
            // can show consistency, never a fork.
            let seeded: Vec<Hash> = std::iter::once(old.root)
                .chain(proof.iter().copied())
                .collect();
            match consistency_roots(&seeded, from, to) {
                Ok((_, implied_new)) if implied_new == new.root => Relation::Extends { from, to },
                Ok(_) => unproven(format!(
                    "the consistency proof does not lead from the root of size {from} to the \
                     root of size {to}, and it cannot show a fork: for a smaller size that is a \
                     power of two the proof must begin with the larger tree's root over its \
                     first {from} leaves"
                )),
                Err(_) => unproven(format!("the consistency proof is malformed: {shape}")),
            }
        }
        Err(shape) => unproven(format!("the consistency proof is malformed: {shape}")),
    }
}

/// Two signed checkpoints that cannot follow one another, with everything
/// that shows it: both notes, byte for byte, and the proof.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// How they relate: a rollback, a fork, or a proof that fails.
    pub relation: Relation,
    /// The checkpoint held.
    pub old: SignedCheckpoint,
    /// The checkpoint compared with it.
    pub new: SignedCheckpoint,
    /// The consistency proof given.
    pub proof: Vec<Hash>,
}

impl Conflict {
    /// The relation as one line.
    pub fn summary(&self) -> String {
        self.relation.to_string()
    }

    /// The split-view evidence file for this conflict, if the notes and
    /// the proof alone prove misbehaviour; `context` says, for people,
    /// where each checkpoint came from.
    pub fn split_view(&self, context: &str) -> Option<Evidence> {
        self.relation
            .is_proven_misbehaviour()
            .then(|| Evidence::split_view(&self.old, &self.new, self.proof.clone(), context))
    }
}

/// Decides how `new` relates to `old`, both verified under the log's key:
/// `Ok` with [`Relation::Same`] or [`Relation::Extends`], or the conflict
/// and its evidence.
pub fn relate(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: Vec<Hash>,
) -> Result<Relation, Box<Conflict>> {
    let relation = decide(&old.checkpoint, &new.checkpoint, &proof);
    if relation.is_consistent() {
        return Ok(relation);
    }
    Err(Box::new(Conflict {
        relation,
        old: old.clone(),
        new: new.clone(),
        proof,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Verdict;
    use crate::keys::SigningKey;

    const ORIGIN: &str = "log.example/relation";

    fn key() -> SigningKey {
        SigningKey::from_seed(ORIGIN, [5; 32]).unwrap()
    }

    /// A tree held as `tlog_tiles` stored hashes; `salt` picks a history.
    struct Tree(Vec<Hash>);

    impl tlog_tiles::HashReader for Tree {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
        }
    }

    impl Tree {
        fn new(size: u64, salt: &str) -> Self {
            let mut tree = Self(Vec::new());
            for i in 0..size {
                let leaf = format!("{salt}{i}");
                let hashes = tlog_tiles::stored_hashes(i, leaf.as_bytes(), &tree).unwrap();
                tree.0.extend(hashes);
            }
            tree
        }

        fn signed(&self, size: u64) -> SignedCheckpoint {
            let body = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root: tlog_tiles::tree_hash(size, self).unwrap(),
            };
            SignedCheckpoint::verify(&body.sign(&key()), &key().verifier_key()).unwrap()
        }

        /// RFC 9162's proof from `m` to `n`.
        fn proof(&self, m: u64, n: u64) -> Vec<Hash> {
            tlog_tiles::prove_tree(n, m, self).unwrap()
        }

        /// The evidence form: RFC 9162's, preceded by the root over the
        /// first `m` leaves when `m` is a power of two.
        fn full_proof(&self, m: u64, n: u64) -> Vec<Hash> {
            let mut proof = self.proof(m, n);
            if m.is_power_of_two() {
                proof.insert(0, tlog_tiles::tree_hash(m, self).unwrap());
            }
            proof
        }
    }

    fn conflict(old: &SignedCheckpoint, new: &SignedCheckpoint, proof: Vec<Hash>) -> Conflict {
        *relate(old, new, proof.clone()).expect_err("a conflict")
    }

    #[test]
    fn the_same_tree_is_same() {
        let tree = Tree::new(9, "");
        assert_eq!(
            relate(&tree.signed(9), &tree.signed(9), vec![]),
            Ok(Relation::Same { size: 9 })
        );
        assert_eq!(
            relate(&tree.signed(0), &tree.signed(0), vec![]),
            Ok(Relation::Same { size: 0 })
        );
    }

    #[test]
    fn a_larger_tree_extends_by_either_proof_form() {
        let tree = Tree::new(40, "");
        for (m, n) in [(1, 2), (3, 7), (4, 9), (8, 40), (13, 40), (39, 40)] {
            let (old, new) = (tree.signed(m), tree.signed(n));
            let extends = Ok(Relation::Extends { from: m, to: n });
            assert_eq!(relate(&old, &new, tree.proof(m, n)), extends, "{m} -> {n}");
            assert_eq!(
                relate(&old, &new, tree.full_proof(m, n)),
                extends,
                "{m} -> {n}"
            );
        }
        assert_eq!(
            relate(&tree.signed(0), &tree.signed(5), vec![]),
            Ok(Relation::Extends { from: 0, to: 5 })
        );
    }

    #[test]
    fn a_smaller_tree_is_a_rollback_carrying_both_notes() {
        let tree = Tree::new(10, "");
        let (old, new) = (tree.signed(10), tree.signed(6));
        let found = conflict(&old, &new, vec![]);
        assert_eq!(found.relation, Relation::Rollback { from: 10, to: 6 });
        assert_eq!((&found.old, &found.new), (&old, &new));
        assert!(
            found.summary().starts_with("rollback: "),
            "{}",
            found.summary()
        );
        assert!(
            found.split_view("").is_none(),
            "a rollback alone proves nothing"
        );
    }

    #[test]
    fn two_roots_for_one_size_are_a_proven_fork() {
        let (a, b) = (Tree::new(9, "a"), Tree::new(9, "b"));
        let found = conflict(&a.signed(9), &b.signed(9), vec![]);
        assert!(matches!(found.relation, Relation::Fork { size: 9, .. }));
        assert!(found
            .summary()
            .starts_with("fork: two signed checkpoints for size 9 with different roots"));
        let evidence = found.split_view("unit test").unwrap();
        assert_eq!(
            evidence.check(&key().verifier_key()).unwrap(),
            Verdict::Proven {
                summary: found.summary()
            }
        );
        assert!(evidence.notes().contains(&a.signed(9).note_text()));
        assert!(evidence.notes().contains(&b.signed(9).note_text()));
    }

    #[test]
    fn a_proof_to_the_larger_root_implying_another_smaller_root_is_proven() {
        let (honest, other) = (Tree::new(20, "honest "), Tree::new(20, "other "));
        for m in [7, 8] {
            let proof = other.full_proof(m, 20);
            let found = conflict(&honest.signed(m), &other.signed(20), proof.clone());
            let Relation::DoesNotExtend {
                from,
                to,
                why: Inconsistency::Proven { implied, signed },
            } = found.relation.clone()
            else {
                panic!("{m}: {:?}", found.relation);
            };
            assert_eq!((from, to), (m, 20));
            assert_eq!(implied, other.signed(m).checkpoint.root);
            assert_eq!(signed, honest.signed(m).checkpoint.root);
            assert_eq!(found.proof, proof);
            let evidence = found.split_view("unit test").unwrap();
            assert_eq!(evidence.proof(), proof.as_slice());
            assert!(matches!(
                evidence.check(&key().verifier_key()),
                Ok(Verdict::Proven { .. })
            ));
        }
    }

    #[test]
    fn a_proof_that_leads_elsewhere_proves_nothing() {
        let (honest, other) = (Tree::new(20, "honest "), Tree::new(20, "other "));
        let mut tampered = honest.proof(7, 20);
        tampered[1] = crate::merkle::leaf_hash(b"tampered");
        let cases = [
            (
                honest.signed(7),
                honest.signed(20),
                tampered,
                "does not lead to the signed root",
            ),
            (
                honest.signed(7),
                honest.signed(20),
                honest.proof(7, 20)[1..].to_vec(),
                "malformed",
            ),
            (
                honest.signed(8),
                other.signed(20),
                other.proof(8, 20),
                "must begin with",
            ),
            (
                honest.signed(5),
                honest.signed(5),
                vec![EMPTY_HASH],
                "must be empty",
            ),
            (
                honest.signed(0),
                honest.signed(5),
                vec![EMPTY_HASH],
                "empty tree",
            ),
        ];
        for (old, new, proof, expected) in cases {
            let found = conflict(&old, &new, proof);
            assert!(
                matches!(
                    found.relation,
                    Relation::DoesNotExtend {
                        why: Inconsistency::Unproven { .. },
                        ..
                    }
                ),
                "{:?}",
                found.relation
            );
            assert!(found.summary().contains(expected), "{}", found.summary());
            assert!(found.split_view("").is_none());
        }
    }

    #[test]
    fn an_empty_tree_with_another_root_is_not_extended() {
        let tree = Tree::new(3, "");
        let odd = Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: crate::merkle::leaf_hash(b"x"),
        };
        let relation = decide(&odd, &tree.signed(3).checkpoint, &[]);
        assert!(
            relation.to_string().contains("not the empty tree's root"),
            "{relation}"
        );
        assert!(!relation.is_consistent());
    }
}
