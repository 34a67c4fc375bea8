//! Deterministic randomness: ChaCha8 streams seeded from the scenario's seed.
//!
//! Only the raw ChaCha8 output is used (no `rand` distributions), so a plan depends on the
//! seed and this file alone, not on the sampling algorithms of a dependency's version.
//! Each concern draws from its own stream, so changing, say, the fault rates does not
//! change which orders succeed.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Order lifecycles, money, users, disputes, timestamps.
    Stories = 1,
    /// User ids, by random access (user `i` is always the same UUID).
    UserIds = 2,
    /// Duplicates, reordering, lateness and bad-input faults.
    Delivery = 3,
}

/// A deterministic random source.
#[derive(Debug, Clone)]
pub(crate) struct Dice(ChaCha8Rng);

impl Dice {
    pub(crate) fn new(seed: u64, stream: Stream) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream as u64);
        Dice(rng)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0 .. n` (0 when `n` is 0), without modulo bias.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        // Reject the top partial block so every residue is equally likely.
        let zone = u64::MAX - (u64::MAX - n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % n;
            }
        }
    }

    /// Uniform in `lo ..= hi` (`lo` when `hi < lo`).
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// True with probability `p` (always false for 0, always true for 1).
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        self.unit() < p
    }

    /// An index drawn with the given weights (0 when all weights are 0).
    pub(crate) fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        0
    }

    /// One element of a non-empty slice, uniformly (the first when called on one element).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// Sixteen bytes at a fixed position of this stream: random access for user ids.
    pub(crate) fn bytes_at(&mut self, index: u64) -> [u8; 16] {
        self.0.set_word_pos(u128::from(index) * 4);
        let mut out = [0_u8; 16];
        self.0.fill_bytes(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_same_numbers() {
        let a: Vec<u64> = (0..8)
            .map(|_| Dice::new(7, Stream::Stories).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Dice::new(7, Stream::Stories);
        let mut y = Dice::new(7, Stream::Delivery);
        assert_ne!(x.next_u64(), y.next_u64());
    }

    #[test]
    fn ranges_and_weights_stay_in_bounds() {
        let mut d = Dice::new(1, Stream::Stories);
        for _ in 0..10_000 {
            assert!(d.below(7) < 7);
            let b = d.between(3, 5);
            assert!((3..=5).contains(&b));
            assert_ne!(d.weighted(&[0, 5, 0, 1]), 0);
            let u = d.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(d.between(9, 2), 9);
        assert!(!d.chance(0.0) && d.chance(1.0));
        assert_eq!(d.below(0), 0);
    }

    #[test]
    fn random_access_bytes_do_not_depend_on_order() {
        let mut a = Dice::new(5, Stream::UserIds);
        let mut b = Dice::new(5, Stream::UserIds);
        let first = a.bytes_at(3);
        b.bytes_at(10);
        assert_eq!(b.bytes_at(3), first);
        assert_ne!(a.bytes_at(4), first);
    }

    #[test]
    fn chance_roughly_matches_probability() {
        let mut d = Dice::new(2, Stream::Delivery);
        let hits = (0..100_000).filter(|_| d.chance(0.3)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
    }
}
