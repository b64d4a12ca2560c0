//! The rehearsal memory: a fixed number of training examples kept for replay.
//!
//! Every rehearsal method keeps the same things per example — its input values as the network
//! saw them, its target, the head it was trained on and, for dark experience replay, the
//! network's logits at the time — so one buffer serves them all, and nothing in it knows what
//! the network is: an input is a row of floats, logits are a row of floats.
//!
//! Which slot an example goes to is the caller's policy: [`Buffer::offer`] is reservoir
//! sampling over every example offered (Vitter's algorithm R, as Mammoth's `reservoir`):
//! example n (0-based count of examples offered so far) goes to slot n while n < capacity,
//! otherwise to slot j ~ U{0, …, n} when j < capacity, else it is dropped — so after N offers
//! every example is in the buffer with probability capacity / N. [`Buffer::push`] appends
//! (A-GEM's per-task episodic memory). The random numbers come from the method's stream,
//! which the trainer checkpoints; with the buffer's own contents saved in [`MethodState`] a
//! resumed run continues bit-identically.

use std::ops::Range;

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::method::{MethodError, MethodState};
use crate::rng::Rng;
use crate::stream::Target;

/// A replay buffer of at most `capacity` examples. The storage grows with the examples
/// actually kept, so a large `buffer_size` on a short stream costs only what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    capacity: usize,
    /// Logits kept per example (0: none; dark experience replay keeps the output layer's),
    /// known from the first example stored, like the input size.
    logit_width: usize,
    /// Input values per example.
    dim: usize,
    /// Examples offered to the reservoir so far (stored or not).
    seen: u64,
    inputs: Vec<f32>,
    logits: Vec<f32>,
    targets: Vec<Target>,
    heads: Vec<Range<usize>>,
}

/// One example as stored.
#[derive(Clone, Debug)]
pub struct Example<'a> {
    /// Input values.
    pub input: &'a [f32],
    /// Target.
    pub target: Target,
    /// Output columns of the head the example was trained on.
    pub head: Range<usize>,
    /// The network's outputs (every head) when it was stored; empty when not kept.
    pub logits: &'a [f32],
}

/// Scalars of a saved buffer.
#[derive(Serialize, Deserialize)]
struct Meta {
    capacity: usize,
    logit_width: usize,
    dim: usize,
    seen: u64,
    len: usize,
    /// `true` when the targets are classes (`targets` as u32), `false` for reals (f32).
    classes: bool,
}

impl Buffer {
    /// An empty buffer of `capacity` examples.
    pub fn new(capacity: usize) -> Self {
        Buffer {
            capacity,
            logit_width: 0,
            dim: 0,
            seen: 0,
            inputs: Vec::new(),
            logits: Vec::new(),
            targets: Vec::new(),
            heads: Vec::new(),
        }
    }

    /// Examples held.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The most examples it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Input values per example (0 before the first example).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Example `slot`.
    pub fn example(&self, slot: usize) -> Example<'_> {
        let w = self.logit_width;
        Example {
            input: &self.inputs[slot * self.dim..(slot + 1) * self.dim],
            target: self.targets[slot],
            head: self.heads[slot].clone(),
            logits: &self.logits[slot * w..(slot + 1) * w],
        }
    }

    /// Offers one example to the reservoir (algorithm R); returns the slot it went to.
    pub fn offer(&mut self, example: Example<'_>, rng: &mut Rng) -> Option<usize> {
        let n = self.seen;
        self.seen += 1;
        let slot = if self.len() < self.capacity {
            // While filling, example n goes to slot n.
            Some(self.len())
        } else {
            let j = rng.gen_range(0..=n);
            (j < self.capacity as u64).then_some(j as usize)
        };
        if let Some(slot) = slot {
            self.store(slot, example);
        }
        slot
    }

    /// Appends an example while there is room (policies other than the reservoir); returns
    /// whether it was stored.
    pub fn push(&mut self, example: Example<'_>) -> bool {
        if self.len() >= self.capacity {
            return false;
        }
        self.seen += 1;
        self.store(self.len(), example);
        true
    }

    /// Writes `example` into `slot` (the next free slot, or one already filled).
    fn store(&mut self, slot: usize, example: Example<'_>) {
        if self.is_empty() {
            self.dim = example.input.len();
            self.logit_width = example.logits.len();
        }
        assert_eq!(example.input.len(), self.dim, "a buffer holds inputs of one size");
        assert_eq!(example.logits.len(), self.logit_width, "a buffer holds logits of one width");
        let (d, w) = (self.dim, self.logit_width);
        if slot == self.len() {
            self.inputs.extend_from_slice(example.input);
            self.logits.extend_from_slice(example.logits);
            self.targets.push(example.target);
            self.heads.push(example.head);
        } else {
            self.inputs[slot * d..(slot + 1) * d].copy_from_slice(example.input);
            self.logits[slot * w..(slot + 1) * w].copy_from_slice(example.logits);
            self.targets[slot] = example.target;
            self.heads[slot] = example.head;
        }
    }

    /// `n` distinct slots drawn uniformly from those filled (all of them, in random order,
    /// when fewer are filled) — Mammoth's `get_data`, a sample without replacement.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<usize> {
        let filled = self.len();
        rand::seq::index::sample(rng, filled, n.min(filled)).into_vec()
    }

    /// Writes the buffer under `prefix.*`.
    pub fn save(&self, prefix: &str, state: &mut MethodState) {
        let classes = !matches!(self.targets.first(), Some(Target::Real(_)));
        let meta = Meta {
            capacity: self.capacity,
            logit_width: self.logit_width,
            dim: self.dim,
            seen: self.seen,
            len: self.len(),
            classes,
        };
        if let serde_json::Value::Object(map) = &mut state.meta {
            map.insert(prefix.into(), serde_json::to_value(meta).expect("plain scalars"));
        } else {
            state.meta = serde_json::json!({ prefix: meta });
        }
        state.put_f32(format!("{prefix}.inputs"), self.inputs.clone());
        state.put_f32(format!("{prefix}.logits"), self.logits.clone());
        let heads = self.heads.iter().flat_map(|h| [h.start as u64, h.end as u64]).collect();
        state.put_u64(format!("{prefix}.heads"), heads);
        if classes {
            let t = self.targets.iter().map(|t| if let Target::Class(c) = t { *c } else { 0 }).collect();
            state.put_u32(format!("{prefix}.targets"), t);
        } else {
            let t = self.targets.iter().map(|t| if let Target::Real(r) = t { *r } else { 0.0 }).collect();
            state.put_f32(format!("{prefix}.targets"), t);
        }
    }

    /// Restores what [`Buffer::save`] wrote, checking it against this buffer's capacity (the
    /// run's configuration).
    pub fn load(&mut self, prefix: &str, state: &MethodState) -> Result<(), MethodError> {
        let bad = |what: String| MethodError::State(format!("replay buffer `{prefix}`: {what}"));
        let meta = state.meta.get(prefix).ok_or_else(|| bad("missing".into()))?;
        let meta: Meta = serde_json::from_value(meta.clone()).map_err(|e| bad(e.to_string()))?;
        if meta.capacity != self.capacity {
            return Err(bad(format!(
                "saved with room for {} examples, the run keeps {}",
                meta.capacity, self.capacity
            )));
        }
        let n = meta.len;
        let inputs = state.f32(&format!("{prefix}.inputs"))?;
        let logits = state.f32(&format!("{prefix}.logits"))?;
        let heads = state.u64(&format!("{prefix}.heads"))?;
        let targets: Vec<Target> = if meta.classes {
            state.u32(&format!("{prefix}.targets"))?.iter().map(|&c| Target::Class(c)).collect()
        } else {
            state.f32(&format!("{prefix}.targets"))?.iter().map(|&r| Target::Real(r)).collect()
        };
        if n > self.capacity
            || inputs.len() != n * meta.dim
            || logits.len() != n * meta.logit_width
            || heads.len() != 2 * n
            || targets.len() != n
        {
            return Err(bad(format!("sizes do not match its {n} examples")));
        }
        self.dim = meta.dim;
        self.logit_width = meta.logit_width;
        self.seen = meta.seen;
        self.inputs = inputs.to_vec();
        self.logits = logits.to_vec();
        self.targets = targets;
        self.heads = heads.chunks_exact(2).map(|h| h[0] as usize..h[1] as usize).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::rehearsal::testing::{chi_square_999, pearson};
    use crate::rng;

    fn item(value: &[f32]) -> Example<'_> {
        Example { input: value, target: Target::Class(0), head: 0..2, logits: &[] }
    }

    /// Pearson's χ² of how often each of `items` items ends up in a buffer of `capacity`, over
    /// `trials` independent streams, each item offered once in order by `offer`.
    fn inclusion_chi_square(
        items: usize,
        capacity: usize,
        trials: usize,
        mut offer: impl FnMut(&mut Buffer, f32, &mut Rng),
    ) -> f64 {
        let mut counts = vec![0u64; items];
        let mut r = rng::stream(7, "reservoir-test", 0);
        for _ in 0..trials {
            let mut buffer = Buffer::new(capacity);
            for i in 0..items {
                offer(&mut buffer, i as f32, &mut r);
            }
            assert_eq!(buffer.len(), capacity);
            for slot in 0..buffer.len() {
                counts[buffer.example(slot).input[0] as usize] += 1;
            }
        }
        pearson(&counts, (trials * capacity) as f64 / items as f64)
    }

    #[test]
    fn the_reservoir_keeps_every_example_with_the_same_probability() {
        let (items, capacity, trials) = (2000, 50, 2000);
        let threshold = chi_square_999((items - 1) as f64);
        let reservoir = inclusion_chi_square(items, capacity, trials, |b, v, r| {
            b.offer(item(&[v]), r);
        });
        // The counts of one trial sum to `capacity` exactly (a sample without replacement), so
        // the statistic is a little below a multinomial's χ²: the test errs on the safe side.
        assert!(reservoir < threshold, "χ² = {reservoir:.1} ≥ {threshold:.1}");
        // The statistic has the power to see a biased buffer: replacing a random slot on every
        // offer once full keeps recent examples far more often.
        let recent = inclusion_chi_square(items, capacity, trials, |b, v, r| {
            if b.len() < b.capacity() {
                b.push(item(&[v]));
            } else {
                let slot = r.gen_range(0..b.capacity());
                b.store(slot, item(&[v]));
            }
        });
        assert!(recent > 10.0 * threshold, "χ² of the biased buffer = {recent:.1}");
    }

    #[test]
    fn samples_are_distinct_filled_slots() {
        let mut r = rng::stream(1, "t", 0);
        let mut b = Buffer::new(10);
        for i in 0..4 {
            b.offer(item(&[i as f32]), &mut r);
        }
        let mut s = b.sample(3, &mut r);
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|&i| i < 4));
        let mut all = b.sample(8, &mut r);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_saved_buffer_loads_equal_and_a_mismatched_one_is_refused() {
        let mut r = rng::stream(2, "t", 0);
        let mut b = Buffer::new(3);
        for i in 0..7 {
            let x = [i as f32, -(i as f32)];
            let logits = [i as f32 * 0.5, 1.0];
            b.offer(Example { input: &x, target: Target::Class(i % 2), head: 2..4, logits: &logits }, &mut r);
        }
        let mut state = MethodState::default();
        b.save("buffer", &mut state);
        let mut restored = Buffer::new(3);
        restored.load("buffer", &state).unwrap();
        assert_eq!(restored, b);
        assert_eq!(restored.seen, 7);
        let err = Buffer::new(4).load("buffer", &state).unwrap_err().to_string();
        assert!(err.contains("room for 3 examples"), "{err}");
        state.tensors.remove("buffer.heads");
        assert!(Buffer::new(3).load("buffer", &state).is_err());
    }
}
