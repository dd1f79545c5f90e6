//! RFC 9162 §2.1 Merkle tree hashing and proof verification.
//!
//! - Leaf hash: `SHA-256(0x00 || entry)`.
//! - Node hash: `SHA-256(0x01 || left || right)`.
//! - The empty tree's root is `SHA-256("")`.
//!
//! Proof verification is `tlog_tiles`' port of Go's `sumdb/tlog`, whose
//! record and tree proofs are exactly RFC 9162's inclusion and consistency
//! proofs, ordered from the leaf upwards. This module gives them the log's
//! own error type and adds [`CompactRange`], the O(log n) right edge of a
//! tree that both the sequencer and a streaming auditor need.

pub use tlog_tiles::{Hash, HashReader, EMPTY_HASH};

/// RFC 9162 leaf hash: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    tlog_tiles::record_hash(entry)
}

/// RFC 9162 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog_tiles::node_hash(left, right)
}

/// Why a proof did not verify. Every variant means the log's claim is
/// false or malformed; none is an I/O problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not inside the tree the proof claims to be against.
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old tree is larger than the new one: a rollback, not a proof.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
    },
    /// The inclusion proof does not lead from the leaf to the root.
    #[error(
        "inclusion proof for index {index} does not match the root of the tree of size {size}"
    )]
    Inclusion {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The consistency proof does not connect the two roots.
    #[error("consistency proof from size {old_size} to size {new_size} does not match the roots")]
    Consistency {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
    },
    /// The proof has the wrong number of hashes for the two sizes, or the
    /// sizes admit no proof that implies both roots (an empty old tree, or
    /// equal sizes).
    #[error("{len} hashes do not make a consistency proof from size {old_size} to size {new_size} that implies both roots")]
    ConsistencyShape {
        /// The older checkpoint's size.
        old_size: u64,
        /// The newer checkpoint's size.
        new_size: u64,
        /// The number of hashes given.
        len: usize,
    },
}

/// Verifies an RFC 9162 §2.1.3.2 inclusion proof that the leaf with hash
/// `leaf` is at `index` in the tree of `size` leaves with root `root`.
///
/// Requires `index < size`; otherwise the claim is malformed.
pub fn verify_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    leaf: Hash,
    root: Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)
        .map_err(|_| ProofError::Inclusion { index, size })
}

/// Verifies an RFC 9162 §2.1.4.2 consistency proof that the tree of
/// `new_size` with root `new_root` extends the tree of `old_size` with root
/// `old_root`.
///
/// Every tree extends the empty tree, so `old_size == 0` only requires an
/// empty proof and `old_root == EMPTY_HASH`. Equal sizes require an empty
/// proof and equal roots.
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    old_root: Hash,
    new_size: u64,
    new_root: Hash,
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    let fail = ProofError::Consistency { old_size, new_size };
    if old_size == 0 {
        return if proof.is_empty() && old_root == EMPTY_HASH {
            Ok(())
        } else {
            Err(fail)
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root)
        .map_err(|_| fail)
}

/// The roots `(old_root, new_root)` that an RFC 9162 §2.1.4.2 consistency
/// proof from `old_size` to `new_size` implies, without trusting either.
///
/// This is what makes a bad proof into evidence: if the implied new root
/// is the signed root of the larger tree, the proof's hashes are that
/// tree's own nodes (short of a SHA-256 collision), so the implied old root
/// is the root the larger tree really has over its first `old_size` leaves.
///
/// Requires `0 < old_size < new_size`. `proof` is the RFC's
/// `consistency_path` after its step 2: when `old_size` is a power of two
/// the old tree is a complete subtree of the new one, RFC 9162 proofs leave
/// its root out and the verifier prepends it, so here it must already be
/// the first hash, and it is the old root returned. Otherwise the proof is
/// exactly RFC 9162's and both roots are computed from it:
///
/// 1. `fn = old_size - 1`, `sn = new_size - 1`; shift both right while
///    `fn`'s lowest bit is set.
/// 2. `fr = sr = proof[0]`.
/// 3. For each later hash `c`: fail if `sn == 0`. If `fn` is odd or
///    `fn == sn`, `fr = H(0x01 || c || fr)`, `sr = H(0x01 || c || sr)` and,
///    if `fn` is even, shift both right until `fn` is odd or 0; otherwise
///    `sr = H(0x01 || sr || c)`. Then shift both right once.
/// 4. Fail unless `sn == 0`: the proof had the wrong length.
pub fn consistency_roots(
    proof: &[Hash],
    old_size: u64,
    new_size: u64,
) -> Result<(Hash, Hash), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    let shape = ProofError::ConsistencyShape {
        old_size,
        new_size,
        len: proof.len(),
    };
    if old_size == 0 || old_size == new_size {
        return Err(shape);
    }
    let Some((&first, rest)) = proof.split_first() else {
        return Err(shape);
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut old_root, mut new_root) = (first, first);
    for &c in rest {
        if s == 0 {
            return Err(shape);
        }
        if f & 1 == 1 || f == s {
            old_root = node_hash(c, old_root);
            new_root = node_hash(c, new_root);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            new_root = node_hash(new_root, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(shape);
    }
    Ok((old_root, new_root))
}

/// The right edge of a Merkle tree: the roots of its maximal perfect
/// subtrees, largest (leftmost) first. It is all that is needed to append
/// leaves and to compute the root, in O(log n) memory at any size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactRange {
    size: u64,
    /// One hash per set bit of `size`, from the most significant bit down.
    peaks: Vec<Hash>,
}

/// A compact range could not be rebuilt from the given parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tree of size {size} has {expected} perfect subtrees, not {actual}")]
pub struct CompactRangeError {
    size: u64,
    expected: u32,
    actual: usize,
}

impl CompactRange {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the range of a tree of `size` leaves from the roots of its
    /// maximal perfect subtrees, leftmost first: exactly the hashes at the
    /// stored indexes `tlog_tiles::sub_tree_index(0, size, vec![])`.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let expected = size.count_ones();
        if peaks.len() != expected as usize {
            return Err(CompactRangeError {
                size,
                expected,
                actual: peaks.len(),
            });
        }
        Ok(Self { size, peaks })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the maximal perfect subtrees, leftmost first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        self.append_visiting(leaf, |_, _, _| {});
    }

    /// Appends one leaf hash and calls `completed(level, index, hash)` for
    /// every subtree this completes, the leaf itself (level 0) first. The
    /// subtree at `level` with `index` covers leaves
    /// `[index·2^level, (index+1)·2^level)`; this is how the sequencer fills
    /// the upper hash tiles without re-reading anything.
    pub fn append_visiting(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let mut hash = leaf;
        let mut level = 0u8;
        let mut index = self.size;
        completed(level, index, &hash);
        while (self.size >> level) & 1 == 1 {
            let left = self.peaks.pop().expect("a set size bit always has a peak");
            hash = node_hash(left, hash);
            level += 1;
            index >>= 1;
            completed(level, index, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The RFC 9162 root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&last) = peaks.next() else {
            return EMPTY_HASH;
        };
        peaks.fold(last, |right, &left| node_hash(left, right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    /// RFC 9162 §2.1.1 MTH, written recursively from the definition.
    fn reference_root(hashes: &[Hash]) -> Hash {
        match hashes.len() {
            0 => EMPTY_HASH,
            1 => hashes[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(reference_root(&hashes[..k]), reference_root(&hashes[k..]))
            }
        }
    }

    #[test]
    fn compact_range_root_matches_the_definition_at_every_size() {
        let all = leaves(300);
        let mut range = CompactRange::new();
        assert_eq!(range.root(), EMPTY_HASH);
        for (i, &leaf) in all.iter().enumerate() {
            range.append(leaf);
            assert_eq!(range.root(), reference_root(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn visited_subtrees_are_the_perfect_subtrees_they_claim() {
        let all = leaves(64);
        let mut range = CompactRange::new();
        let mut seen = Vec::new();
        for &leaf in &all {
            range.append_visiting(leaf, |level, index, hash| seen.push((level, index, *hash)));
        }
        assert_eq!(seen.len(), 127, "a perfect tree of 64 leaves has 127 nodes");
        for (level, index, hash) in seen {
            let width = 1usize << level;
            let start = index as usize * width;
            assert_eq!(hash, reference_root(&all[start..start + width]));
        }
    }

    #[test]
    fn from_peaks_resumes_where_the_range_left_off() {
        let all = leaves(100);
        let mut whole = CompactRange::new();
        all[..77].iter().for_each(|&h| whole.append(h));
        let mut resumed = CompactRange::from_peaks(77, whole.peaks().to_vec()).unwrap();
        all[77..].iter().for_each(|&h| {
            whole.append(h);
            resumed.append(h);
        });
        assert_eq!(resumed, whole);
        assert!(CompactRange::from_peaks(77, vec![EMPTY_HASH; 3]).is_err());
    }

    #[test]
    fn consistency_from_the_empty_tree_needs_the_empty_root() {
        let root = reference_root(&leaves(5));
        assert_eq!(verify_consistency(&[], 0, EMPTY_HASH, 5, root), Ok(()));
        assert!(verify_consistency(&[], 0, root, 5, root).is_err());
        assert!(verify_consistency(&[root], 0, EMPTY_HASH, 5, root).is_err());
    }

    #[test]
    fn out_of_range_claims_are_named() {
        let root = reference_root(&leaves(4));
        assert_eq!(
            verify_inclusion(&[], 4, 4, root, root),
            Err(ProofError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            verify_consistency(&[], 5, root, 4, root),
            Err(ProofError::SizesOutOfOrder {
                old_size: 5,
                new_size: 4
            })
        );
    }

    /// RFC 9162 §2.1.4.1 SUBPROOF, written recursively from the definition.
    fn reference_subproof(m: usize, hashes: &[Hash], complete: bool) -> Vec<Hash> {
        let n = hashes.len();
        if m == n {
            return if complete {
                vec![]
            } else {
                vec![reference_root(hashes)]
            };
        }
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        let mut proof;
        if m <= k {
            proof = reference_subproof(m, &hashes[..k], complete);
            proof.push(reference_root(&hashes[k..]));
        } else {
            proof = reference_subproof(m - k, &hashes[k..], false);
            proof.push(reference_root(&hashes[..k]));
        }
        proof
    }

    #[test]
    fn consistency_roots_are_the_roots_of_both_trees_at_every_size_pair() {
        let all = leaves(70);
        for n in 2..=all.len() {
            let new_root = reference_root(&all[..n]);
            for m in 1..n {
                let old_root = reference_root(&all[..m]);
                let proof = reference_subproof(m, &all[..n], true);
                let (m, n) = (m as u64, n as u64);
                assert_eq!(verify_consistency(&proof, m, old_root, n, new_root), Ok(()));
                let mut path = proof.clone();
                if m.is_power_of_two() {
                    path.insert(0, old_root);
                }
                assert_eq!(
                    consistency_roots(&path, m, n),
                    Ok((old_root, new_root)),
                    "{m} -> {n}"
                );
                let shape = |len| {
                    Err(ProofError::ConsistencyShape {
                        old_size: m,
                        new_size: n,
                        len,
                    })
                };
                let mut longer = path.clone();
                longer.push(old_root);
                assert_eq!(consistency_roots(&longer, m, n), shape(path.len() + 1));
                assert_eq!(
                    consistency_roots(&path[..path.len() - 1], m, n),
                    shape(path.len() - 1)
                );
            }
        }
    }

    #[test]
    fn consistency_roots_need_two_different_non_empty_sizes() {
        let root = reference_root(&leaves(4));
        let shape = |old_size, new_size, len| {
            Err(ProofError::ConsistencyShape {
                old_size,
                new_size,
                len,
            })
        };
        assert_eq!(consistency_roots(&[root], 0, 4), shape(0, 4, 1));
        assert_eq!(consistency_roots(&[root], 4, 4), shape(4, 4, 1));
        assert_eq!(consistency_roots(&[], 4, 4), shape(4, 4, 0));
        assert_eq!(
            consistency_roots(&[root], 5, 4),
            Err(ProofError::SizesOutOfOrder {
                old_size: 5,
                new_size: 4
            })
        );
    }
}
