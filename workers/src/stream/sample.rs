//! The few random draws the streams need, written out over raw ChaCha words.
//!
//! `rand`'s `gen_range`, `shuffle` and `rand_distr`'s normal sampler are only value-stable
//! within one major release; a stream's data must stay identical across upgrades (the run id
//! hashes the spec, not the library versions), so every draw here is built from
//! `RngCore::next_u64`, whose values ChaCha fixes.

use rand::RngCore;

use crate::rng::Rng;

/// A uniform integer in `0..n` (`n` ≥ 1), by rejection: no modulo bias.
pub(crate) fn below(rng: &mut Rng, n: u64) -> u64 {
    debug_assert!(n > 0, "below(0) has no value to return");
    // Largest multiple of n that fits in u64's range; draws at or above it are rejected
    // (probability < n / 2^64).
    let zone = u64::MAX - (u64::MAX - n + 1) % n;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % n;
        }
    }
}

/// A uniform float in [0, 1) with 53 random bits.
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box–Muller; the second value of each pair is discarded so that
/// every draw consumes exactly two words and draws never depend on earlier ones).
pub(crate) fn normal(rng: &mut Rng) -> f64 {
    // 1 − u lies in (0, 1], so the logarithm is finite.
    let u = 1.0 - unit(rng);
    let v = unit(rng);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub(crate) fn permutation(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// Fair random bits, 64 per generator word.
pub(crate) struct Bits<'a> {
    rng: &'a mut Rng,
    word: u64,
    left: u32,
}

impl<'a> Bits<'a> {
    /// Bits drawn from `rng`.
    pub(crate) fn new(rng: &'a mut Rng) -> Self {
        Bits { rng, word: 0, left: 0 }
    }

    /// The next bit, 0 or 1.
    pub(crate) fn next(&mut self) -> u8 {
        if self.left == 0 {
            self.word = self.rng.next_u64();
            self.left = 64;
        }
        let b = (self.word & 1) as u8;
        self.word >>= 1;
        self.left -= 1;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = stream(1, "test", 0);
        let mut seen = [0usize; 7];
        for _ in 0..7_000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn permutations_are_permutations() {
        let mut rng = stream(2, "test", 0);
        let p = permutation(&mut rng, 784);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<u32>>());
        assert_ne!(p, sorted, "a shuffle of 784 items left them in order");
        assert!(permutation(&mut rng, 0).is_empty());
        assert_eq!(permutation(&mut rng, 1), vec![0]);
    }

    #[test]
    fn normal_draws_have_unit_moments() {
        let mut rng = stream(3, "test", 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn bits_are_fair_and_use_whole_words() {
        let mut rng = stream(4, "test", 0);
        let mut bits = Bits::new(&mut rng);
        let ones: u32 = (0..64_000).map(|_| bits.next() as u32).sum();
        assert!((31_000..33_000).contains(&ones), "{ones} ones in 64,000 bits");
        let mut a = stream(5, "test", 0);
        let word = a.next_u64();
        let mut b = stream(5, "test", 0);
        let mut bits = Bits::new(&mut b);
        let first: u64 = (0..64).map(|i| (bits.next() as u64) << i).sum();
        assert_eq!(first, word);
    }
}
