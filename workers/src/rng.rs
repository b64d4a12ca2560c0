//! Seeded random streams.
//!
//! Every random number of a run comes from a ChaCha8 stream derived from the run's seed, a
//! purpose label and an index (a task, a layer). Streams never depend on the clock, on thread
//! order or on how many numbers another purpose drew, so adding a draw in one place does not
//! shift the numbers of another, and ChaCha's value stability across `rand_chacha` releases
//! keeps results identical across upgrades.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The generator used throughout: ChaCha with 8 rounds.
pub type Rng = ChaCha8Rng;

/// A generator for `(seed, purpose, index)`; the same triple always gives the same stream.
pub fn stream(seed: u64, purpose: &str, index: u64) -> Rng {
    let mut hasher = blake3::Hasher::new_derive_key("clorch rng v1");
    hasher.update(&seed.to_le_bytes());
    hasher.update(&(purpose.len() as u64).to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.update(&index.to_le_bytes());
    Rng::from_seed(*hasher.finalize().as_bytes())
}

/// The exact position of a generator, for checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte key, hex.
    pub seed: [u8; 32],
    /// ChaCha stream number.
    pub stream: u64,
    /// Words consumed so far (as two halves: JSON has no 128-bit integers).
    pub word_pos_hi: u64,
    /// Low half of the word position.
    pub word_pos_lo: u64,
}

impl RngState {
    /// Captures a generator's position.
    pub fn capture(rng: &Rng) -> RngState {
        let pos = rng.get_word_pos();
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos_hi: (pos >> 64) as u64,
            word_pos_lo: pos as u64,
        }
    }

    /// Rebuilds the generator at the captured position.
    pub fn restore(&self) -> Rng {
        let mut rng = Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(((self.word_pos_hi as u128) << 64) | self.word_pos_lo as u128);
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_depend_on_every_part_of_their_name() {
        let a = stream(1, "init", 0).next_u64();
        assert_eq!(a, stream(1, "init", 0).next_u64());
        assert_ne!(a, stream(2, "init", 0).next_u64());
        assert_ne!(a, stream(1, "data", 0).next_u64());
        assert_ne!(a, stream(1, "init", 1).next_u64());
    }

    #[test]
    fn captured_state_resumes_the_same_numbers() {
        let mut rng = stream(7, "x", 3);
        for _ in 0..13 {
            rng.next_u32();
        }
        let state = RngState::capture(&rng);
        let expected: Vec<u32> = (0..5).map(|_| rng.next_u32()).collect();
        let mut back = state.restore();
        let got: Vec<u32> = (0..5).map(|_| back.next_u32()).collect();
        assert_eq!(expected, got);
    }
}
