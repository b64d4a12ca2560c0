//! Rehearsal: methods that keep a small memory of past training examples and train on them
//! again alongside the current task — experience replay (`er`), dark experience replay (`der`,
//! `derpp`, Buzzega et al. 2020) and averaged gradient episodic memory (`agem`, Chaudhry et al.
//! 2019).
//!
//! Each takes over the training step as a [`Learner`](super::Learner): a step needs forward and
//! backward passes over buffer examples besides the current batch. The memory
//! ([`buffer::Buffer`]), the losses on replayed examples and the gradient arithmetic
//! ([`replay`]) do not know what the network is; only [`replay::ReplayNet`] does, so the same
//! methods train MLPs and conv nets. The buffer is part of the method's checkpointed state, so a resumed run replays the same
//! examples in the same order.
//!
//! Buffer sizes count examples, as in the papers and Mammoth (`--buffer_size`). The replay
//! batch defaults to the size of the current batch, as Mammoth's `--minibatch_size` defaults to
//! `--batch_size`.

mod agem;
pub mod buffer;
#[cfg(test)]
mod conv_tests;
mod der;
mod er;
pub mod replay;

pub use agem::AgemKind;
pub use der::{DerKind, DerppKind};
pub use er::ErKind;

/// The largest `buffer_size` accepted: 10⁷ examples (31 GB of 784-pixel MNIST inputs), far
/// beyond any benchmark's memory and a guard against a misplaced exponent.
const MAX_BUFFER: f64 = 1e7;

/// Checks `buffer_size` and `replay_batch_size`; one line saying what is wrong.
fn check_sizes(buffer_size: f64, replay_batch_size: Option<f64>) -> Result<(), String> {
    if !(buffer_size >= 1.0 && buffer_size.fract() == 0.0 && buffer_size <= MAX_BUFFER) {
        return Err(format!(
            "`buffer_size` must be a whole number of examples in [1, 10^7], not {buffer_size}"
        ));
    }
    if let Some(r) = replay_batch_size {
        if !(r >= 1.0 && r.fract() == 0.0 && r <= MAX_BUFFER) {
            return Err(format!(
                "`replay_batch_size` must be a whole number of examples in [1, 10^7] (or null: the training batch's size), not {r}"
            ));
        }
    }
    Ok(())
}

/// Checks a weight of a loss term (α, β).
fn check_weight(name: &str, value: f64) -> Result<(), String> {
    if !(value.is_finite() && (0.0..=1e6).contains(&value)) {
        return Err(format!("`{name}` must be a number in [0, 10^6], not {value}"));
    }
    Ok(())
}

/// Examples replayed with a current batch of `batch`: the configured count, or the batch's.
fn replay_count(configured: Option<usize>, batch: usize) -> usize {
    configured.unwrap_or(batch)
}

/// Serialises an optional whole-number parameter as the integer it is, or null.
fn whole_or_null<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => super::params::whole_number(v, s),
        None => s.serialize_none(),
    }
}

/// A learner's evaluation forms: rehearsal methods have only the network itself.
fn no_variant(kind: &str, variant: Option<&str>) -> Result<(), super::MethodError> {
    match variant {
        None => Ok(()),
        Some(v) => Err(super::MethodError::Failed(format!("{kind}: no evaluation variant `{v}`"))),
    }
}

/// Helpers for the rehearsal methods' tests: random batches and single learner steps.
#[cfg(test)]
mod testing {
    use rand::Rng as _;

    use super::replay::ReplayNet;
    use crate::method::{Learner, LearnerStep};
    use crate::model::{loss, BatchLoss, Layers, Mlp, Targets, Workspace};
    use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
    use crate::rng::{self, Rng};

    /// A batch's inputs (rows of the network's input size) and classes.
    pub type Batch = (Vec<f32>, Vec<u32>);

    /// `n` examples of random inputs in [−1, 1] and classes below 4, shaped for `net`.
    pub fn batch_of(net: &Mlp, n: usize, r: &mut Rng) -> Batch {
        let dim = net.sizes()[0];
        let inputs = (0..n * dim).map(|_| r.gen_range(-1.0f32..=1.0)).collect();
        let classes = (0..n).map(|_| r.gen_range(0..4)).collect();
        (inputs, classes)
    }

    /// Plain SGD (lr 0.01).
    pub fn sgd(net: &Mlp) -> Optimizer {
        Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), net)
    }

    /// One learner step of `method` on the batch with a fresh plain-SGD optimiser and the
    /// method stream `seed`.
    pub fn step_on(
        method: &mut dyn Learner<Mlp>,
        net: &mut Mlp,
        inputs: &[f32],
        classes: &[u32],
        head: std::ops::Range<usize>,
        seed: u64,
    ) -> BatchLoss {
        let mut ws = Workspace::new(&net.sizes(), classes.len());
        ws.input.copy_from_slice(inputs);
        let mut optimizer = sgd(net);
        let mut r = rng::stream(seed, "rehearsal-test", 0);
        method
            .train_step(&mut LearnerStep {
                net,
                optimizer: &mut optimizer,
                rng: &mut r,
                workspace: &mut ws,
                targets: Targets::Classes(classes),
                head,
                task: 0,
                step: 0,
            })
            .unwrap()
    }

    /// The gradient of the mean cross-entropy of the batch on `head`.
    pub fn gradient(net: &Mlp, inputs: &[f32], classes: &[u32], head: std::ops::Range<usize>) -> Layers {
        let mut ws = Workspace::new(&net.sizes(), classes.len());
        ws.input.copy_from_slice(inputs);
        net.predict(&mut ws);
        let width = ws.output_width();
        let outputs = ws.values.last().expect("output layer").clone();
        loss::evaluate(&outputs, width, head, Targets::Classes(classes), Some(&mut ws.output_grad));
        let mut grads = Layers::zeros_like(&net.params);
        net.backward(&mut ws, &mut grads);
        grads
    }

    /// Whether two networks' parameters agree to 1e-6 relative: the same sums taken in
    /// another order (replayed rows come in the buffer's sampled order).
    pub fn close(a: &Mlp, b: &Mlp) -> bool {
        a.params
            .buffers()
            .zip(b.params.buffers())
            .all(|(a, b)| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs())))
    }

    /// `net` after one plain-SGD step with `grads`.
    pub fn stepped(net: &Mlp, grads: &Layers) -> Mlp {
        let mut next = net.clone();
        sgd(net).step(&mut next, grads);
        next
    }

    /// Pearson's χ² of `counts` against the same `expected` count in every cell.
    pub fn pearson(counts: &[u64], expected: f64) -> f64 {
        counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
    }

    /// The 99.9% quantile of χ² with k degrees of freedom by the Wilson–Hilferty
    /// approximation, k(1 − 2/(9k) + z·√(2/(9k)))³ with z = Φ⁻¹(0.999) = 3.090232. For
    /// k = 1999 it gives 2200.12; the exact quantile, by bisection on the regularised lower
    /// incomplete gamma function P(k/2, x/2) summed as its power series, is 2200.11.
    pub fn chi_square_999(k: f64) -> f64 {
        let z = 3.090_232;
        let a = 2.0 / (9.0 * k);
        k * (1.0 - a + z * a.sqrt()).powi(3)
    }
}
