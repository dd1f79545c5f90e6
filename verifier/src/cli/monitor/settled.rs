//! The trees of one log already compared with the monitor's own view.
//!
//! Once a checkpoint has been compared with the own view (found to be a
//! prefix of it, or a split view already raised), the answer never
//! changes: the own view only moves forward by consistency proofs, so a
//! prefix of it stays a prefix of every later view, and two histories stay
//! two. A peer repeating such a checkpoint is therefore answered from
//! here, without a request to the log. Trees are keyed by size and root,
//! so a note with other cosignatures is the same tree.
//!
//! The set is bounded: past [`CAPACITY`] trees the oldest are forgotten
//! and would be compared again, at the cost the gossip rate allows.

use crate::merkle::Hash;
use std::collections::{HashSet, VecDeque};

/// The most trees remembered per log: about 200 KiB.
pub const CAPACITY: usize = 4096;

/// Trees already compared, oldest first.
#[derive(Debug, Default)]
pub struct Settled {
    order: VecDeque<(u64, [u8; 32])>,
    set: HashSet<(u64, [u8; 32])>,
}

impl Settled {
    /// Whether the tree of `size` leaves with `root` was compared already.
    pub fn contains(&self, size: u64, root: &Hash) -> bool {
        self.set.contains(&(size, root.0))
    }

    /// Remembers the tree of `size` leaves with `root`, forgetting the
    /// oldest beyond [`CAPACITY`].
    pub fn insert(&mut self, size: u64, root: &Hash) {
        if !self.set.insert((size, root.0)) {
            return;
        }
        self.order.push_back((size, root.0));
        if self.order.len() > CAPACITY {
            let oldest = self.order.pop_front().expect("over capacity");
            self.set.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn trees_are_known_by_size_and_root() {
        let mut settled = Settled::default();
        let root = leaf_hash(b"a");
        settled.insert(5, &root);
        settled.insert(5, &root);
        assert!(settled.contains(5, &root));
        assert!(!settled.contains(6, &root));
        assert!(!settled.contains(5, &leaf_hash(b"b")));
        assert_eq!(settled.order.len(), 1);
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_capacity() {
        let mut settled = Settled::default();
        let root = leaf_hash(b"a");
        for size in 0..=CAPACITY as u64 {
            settled.insert(size, &root);
        }
        assert!(!settled.contains(0, &root));
        assert!(settled.contains(1, &root));
        assert!(settled.contains(CAPACITY as u64, &root));
        assert_eq!(settled.set.len(), CAPACITY);
    }
}
