//! The run's randomness: kill points and call mixes, reproducible from
//! the seed a failed run names.

/// A small xorshift64* generator: enough randomness for kill points and
/// call mixes, reproducible from a seed, and no dependency for it.
#[derive(Debug, Clone)]
pub(super) struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub(super) fn new(seed: u64) -> Self {
        // SplitMix64 scrambles the seed; `| 1` keeps the state non-zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`. Requires `low <= high`.
    pub(super) fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "an empty range {low}..={high}");
        low + self.next_u64() % (high - low + 1)
    }
}
