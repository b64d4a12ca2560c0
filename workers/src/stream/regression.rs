//! Slowly-changing regression (Dohare et al. 2024, Nature, "Loss of plasticity in deep
//! continual learning", Methods and Extended Data Fig. 2; formerly the bit-flipping problem).
//!
//! An input is m = `inputs` bits with values 0 or 1 (as `torch.randint(2)` in the reference
//! code, `lop/slowly_changing_regression/slowly_changing_regression.py`): the first f =
//! `slow_bits` change slowly, the other m − f are redrawn for every example. The slow bits
//! start uniformly random; every T = `flip_every` examples one of them, chosen uniformly,
//! flips (`flip: one`), or all of them are redrawn (`flip: all`, what the reference code does
//! without `flip_one`). Each T-example period is one task.
//!
//! The target is a fixed random network drawn once per run (`"stream.regression.target"`,
//! the reference's `FixLTUNet`): `target_hidden` linear threshold units (LTUs) whose input
//! weights and bias are each −1 or +1 with probability ½, and a linear output whose weights
//! and bias are ±1 likewise. Unit i fires (outputs 1, else 0) when its pre-activation
//! z_i = Σ_j w_ij x_j + b_i exceeds the threshold
//!
//! θ_i = β · (m + 1) − S_i,  S_i = number of negative weights among w_i1 … w_im and b_i
//!
//! (the bias counted as the (m+1)-th input, which is always 1). With 0/1 inputs, z_i equals
//! the number of the m + 1 inputs that agree with unit i's weight pattern (1 where the weight
//! is +1, 0 where it is −1) minus S_i, so unit i fires exactly when more than β·(m + 1) of
//! its inputs agree with its pattern. The target is y = Σ_i v_i h_i + c.
//!
//! The reference code's threshold (`threshold: reference_code`): `lop/nets/fix_ltu_net.py`
//! (github.com/shibhansh/loss-of-plasticity) computes S_i = (m − Σ_j w_ij + b_i) / 2 over the
//! m input weights w_ij and the bias b_i. Since m − Σ_j w_ij = 2 n_i, with n_i the number of
//! negative input weights, that is n_i + b_i / 2 instead of the paper's n_i + [b_i = −1].
//! Pre-activations are integers, so for b_i = +1 both thresholds admit the same z_i (at
//! m = 20, β = 0.7: z_i > 14.7 − n_i and z_i > 14.2 − n_i both mean z_i ≥ 15 − n_i); for
//! b_i = −1 the reference asks for z_i ≥ 16 − n_i where the paper's definition asks for
//! z_i ≥ 14 − n_i. The default, `threshold: paper`, is the paper's definition written above;
//! `reference_code` is there to compare with the published curves, which the reference code
//! produced. Its higher thresholds let fewer units fire: at m = 20, β = 0.7, 100 units, the
//! variance of the target over random inputs, averaged over 50 random target networks, is
//! about 3.8 with `paper` and 2.8 with `reference_code`. Like the reference, the output layer has a ±1 bias c, and the learner
//! sees the m bits without the constant bias bit.
//!
//! Everything about task t is a function of (seed, t): the slow-bit state comes from its own
//! stream (`"stream.regression.slow_bits"`, and `"stream.regression.flips"` for the flips),
//! computed for all tasks when the stream is built (t × f bits), and the fast bits of the
//! task's training and held-out examples from `"stream.regression.train"` /
//! `"stream.regression.test"`, index t.

use serde::{Deserialize, Serialize};

use super::kind::StreamKind;
use super::split::{Inputs, Split, Targets};
use super::{sample, Problem, StreamError, StreamInfo, Task, TaskStream};
use crate::model::layer::Shape;
use crate::rng;

/// Parameters of slowly-changing regression (Dohare et al. 2024, Methods).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowlyChangingRegressionSpec {
    /// Number of tasks; a task is the `flip_every` examples between two changes of the slow
    /// bits, so the stream has `tasks × flip_every` examples.
    pub tasks: usize,
    /// Input bits m (default 20).
    #[serde(default = "default_regression_inputs")]
    pub inputs: usize,
    /// How many of them change slowly (default 15); the others are redrawn every example.
    #[serde(default = "default_regression_slow_bits")]
    pub slow_bits: usize,
    /// Examples between changes of the slow bits, T (default 10,000).
    #[serde(default = "default_regression_flip_every")]
    pub flip_every: usize,
    /// What changes every T examples: one slow bit chosen at random, or all of them redrawn.
    #[serde(default)]
    pub flip: FlipMode,
    /// Linear-threshold units of the target network (default 100).
    #[serde(default = "default_regression_target_hidden")]
    pub target_hidden: usize,
    /// β of the threshold θ_i = β·(m+1) − S_i (default 0.7).
    #[serde(default = "default_regression_beta")]
    pub beta: f64,
    /// How S_i is counted: `paper` (default) or `reference_code` (see the module doc). Left
    /// out of normalised parameters when `paper`, so specs written before it existed keep
    /// their run ids.
    #[serde(default, skip_serializing_if = "Threshold::is_paper")]
    pub threshold: Threshold,
    /// Held-out examples per task for evaluation (default 1,000).
    #[serde(default = "default_regression_test_examples")]
    pub test_examples: usize,
}

fn default_regression_inputs() -> usize {
    20
}
fn default_regression_slow_bits() -> usize {
    15
}
fn default_regression_flip_every() -> usize {
    10_000
}
fn default_regression_target_hidden() -> usize {
    100
}
fn default_regression_beta() -> f64 {
    0.7
}
fn default_regression_test_examples() -> usize {
    1_000
}

/// How the slow bits of slowly-changing regression change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlipMode {
    /// One slow bit, chosen uniformly at random, flips (the paper's setting).
    #[default]
    One,
    /// All slow bits are redrawn.
    All,
}

/// Which S_i the target network's thresholds θ_i = β·(m+1) − S_i use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// The paper's: S_i counts unit i's negative weights, the bias included.
    #[default]
    Paper,
    /// `fix_ltu_net.py`'s: S_i = (m − Σ_j w_ij + b_i) / 2.
    ReferenceCode,
}

impl Threshold {
    /// Whether this is the default, `paper`.
    pub fn is_paper(&self) -> bool {
        *self == Threshold::Paper
    }
}

/// Slowly-changing regression (Dohare et al. 2024): 20 input bits, 15 of which change slowly;
/// the target is a fixed random network of linear threshold units.
pub struct SlowlyChangingRegressionKind;

impl StreamKind for SlowlyChangingRegressionKind {
    const KIND: &'static str = "slowly_changing_regression";
    const SUMMARY: &'static str =
        "a fixed random LTU network's output on inputs whose slow bits flip every T examples";
    const ONLINE: bool = true;
    type Params = SlowlyChangingRegressionSpec;
    fn tasks(p: &SlowlyChangingRegressionSpec) -> usize {
        p.tasks
    }
    fn input_shape(p: &SlowlyChangingRegressionSpec) -> Result<Shape, StreamError> {
        Ok(Shape::Vector(p.inputs))
    }
    fn check(s: &SlowlyChangingRegressionSpec) -> Result<(), String> {
        if s.slow_bits > s.inputs {
            return Err(format!("`slow_bits` ({}) cannot exceed `inputs` ({})", s.slow_bits, s.inputs));
        }
        if s.inputs == 0 || s.flip_every == 0 || s.target_hidden == 0 || s.test_examples == 0 {
            return Err("`inputs`, `flip_every`, `target_hidden` and `test_examples` must be ≥ 1".into());
        }
        super::kind::at_most("inputs", s.inputs, 65_536)?;
        super::kind::at_most("target_hidden", s.target_hidden, 65_536)?;
        super::kind::at_most("flip_every", s.flip_every, 1_000_000_000)?;
        super::kind::at_most("test_examples", s.test_examples, 10_000_000)?;
        if !(s.beta.is_finite() && (0.0..=1.0).contains(&s.beta)) {
            return Err(format!("`beta` must lie in [0, 1], not {}", s.beta));
        }
        if s.flip_every > u32::MAX as usize || s.test_examples > u32::MAX as usize {
            return Err(format!("`flip_every` and `test_examples` must be below {}", u32::MAX));
        }
        Ok(())
    }
    fn build(p: &SlowlyChangingRegressionSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        Ok(Box::new(SlowlyChangingRegression::new(p, seed)))
    }
}

/// A task whose m − f fast bits are at most this many, and whose 2^(m−f) fast-bit patterns
/// are no more than its training examples, stores one input row (and target) per pattern and
/// each example as a row index: a task of 10,000 examples with 5 fast bits holds 32 rows and
/// 10,000 indices, and its targets cost 32 evaluations of the target network. Other tasks
/// store one row per example. The two layouts give identical examples.
const PATTERN_TABLE_MAX_FAST_BITS: usize = 16;

/// The target network: LTUs with ±1 weights, then a linear ±1 output.
#[derive(Clone, Debug, PartialEq)]
pub struct LtuNetwork {
    inputs: usize,
    /// `hidden × inputs` input weights, ±1.
    weights: Vec<i8>,
    /// One bias per unit, ±1.
    biases: Vec<i8>,
    /// θ_i per unit.
    thresholds: Vec<f64>,
    /// Output weights, ±1.
    out_weights: Vec<i8>,
    /// Output bias, ±1.
    out_bias: i8,
}

impl LtuNetwork {
    /// A network from its weights (`weights` is `hidden × inputs`, row-major), β and the way
    /// S_i is counted; the thresholds follow θ_i = β·(m + 1) − S_i. Panics when the lengths disagree (a
    /// programming error: specs never reach this with user-chosen lengths).
    pub fn from_weights(
        inputs: usize,
        weights: Vec<i8>,
        biases: Vec<i8>,
        out_weights: Vec<i8>,
        out_bias: i8,
        beta: f64,
        threshold: Threshold,
    ) -> Self {
        assert_eq!(weights.len(), biases.len() * inputs, "weights must be hidden × inputs");
        assert_eq!(out_weights.len(), biases.len(), "one output weight per unit");
        let thresholds = (0..biases.len())
            .map(|i| {
                let w = &weights[i * inputs..(i + 1) * inputs];
                let negative = w.iter().filter(|&&v| v < 0).count() as f64;
                let s_i = match threshold {
                    Threshold::Paper => negative + f64::from(u8::from(biases[i] < 0)),
                    // (m − Σ_j w_ij + b_i) / 2 = n_i + b_i / 2.
                    Threshold::ReferenceCode => {
                        let sum: i32 = w.iter().map(|&v| i32::from(v)).sum();
                        (inputs as f64 - f64::from(sum) + f64::from(biases[i])) / 2.0
                    }
                };
                beta * (inputs + 1) as f64 - s_i
            })
            .collect();
        LtuNetwork { inputs, weights, biases, thresholds, out_weights, out_bias }
    }

    /// Draws a network: every weight and bias is −1 or +1 with probability ½.
    fn random(rng: &mut rng::Rng, inputs: usize, hidden: usize, beta: f64, threshold: Threshold) -> Self {
        let mut bits = sample::Bits::new(rng);
        let mut sign = || if bits.next() == 1 { 1i8 } else { -1 };
        let weights = (0..hidden * inputs).map(|_| sign()).collect();
        let biases = (0..hidden).map(|_| sign()).collect();
        let out_weights = (0..hidden).map(|_| sign()).collect();
        let out_bias = sign();
        Self::from_weights(inputs, weights, biases, out_weights, out_bias, beta, threshold)
    }

    /// θ_i of every unit.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The units' outputs h_i ∈ {0, 1} for a 0/1 input of length m (panics otherwise).
    pub fn features<'a>(&'a self, x: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
        assert_eq!(x.len(), self.inputs, "input of the wrong length");
        (0..self.biases.len()).map(move |i| {
            let w = &self.weights[i * self.inputs..(i + 1) * self.inputs];
            let z: i32 =
                w.iter().zip(x).map(|(&w, &x)| w as i32 * x as i32).sum::<i32>() + self.biases[i] as i32;
            u8::from(z as f64 > self.thresholds[i])
        })
    }

    /// The target y = Σ_i v_i h_i + c for a 0/1 input.
    pub fn output(&self, x: &[u8]) -> f32 {
        let sum: i32 = self.features(x).zip(&self.out_weights).map(|(h, &v)| h as i32 * v as i32).sum();
        (sum + self.out_bias as i32) as f32
    }
}

/// The slowly-changing regression stream.
#[derive(Debug)]
pub struct SlowlyChangingRegression {
    info: StreamInfo,
    spec: SlowlyChangingRegressionSpec,
    seed: u64,
    target: LtuNetwork,
    /// `tasks × slow_bits` 0/1 values: the slow bits during each task.
    slow: Vec<u8>,
    /// Whether tasks store one row per fast-bit pattern (see [`PATTERN_TABLE_MAX_FAST_BITS`]).
    pattern_table: bool,
}

impl SlowlyChangingRegression {
    /// The stream for `spec` (validated by [`super::build`]) and the run's seed. Draws the
    /// target network and the slow-bit state of every task.
    pub fn new(spec: &SlowlyChangingRegressionSpec, seed: u64) -> Self {
        let fast = spec.inputs - spec.slow_bits;
        // A table of 2^fast rows pays off when it is smaller than the examples it replaces.
        let pattern_table = fast <= PATTERN_TABLE_MAX_FAST_BITS && (1usize << fast) <= spec.flip_every;
        Self::with_layout(spec, seed, pattern_table)
    }

    fn with_layout(spec: &SlowlyChangingRegressionSpec, seed: u64, pattern_table: bool) -> Self {
        let target = LtuNetwork::random(
            &mut rng::stream(seed, "stream.regression.target", 0),
            spec.inputs,
            spec.target_hidden,
            spec.beta,
            spec.threshold,
        );
        let info = StreamInfo {
            tasks: spec.tasks,
            inputs: spec.inputs,
            input_shape: Shape::Vector(spec.inputs),
            head_outputs: 1,
            head_per_task: false,
            problem: Problem::Regression,
            online: true,
            augment: None,
        };
        let slow = slow_bit_schedule(spec, seed);
        SlowlyChangingRegression { info, spec: spec.clone(), seed, target, slow, pattern_table }
    }

    /// The target network.
    pub fn target(&self) -> &LtuNetwork {
        &self.target
    }

    /// The slow bits (0/1) during task `task`.
    pub fn slow_bits(&self, task: usize) -> &[u8] {
        let f = self.spec.slow_bits;
        &self.slow[task * f..(task + 1) * f]
    }

    /// `examples` examples of task `task`, their fast bits drawn from `purpose`'s stream.
    fn split(&self, task: usize, purpose: &str, examples: usize) -> Split {
        let m = self.spec.inputs;
        let f = self.spec.slow_bits;
        let fast = m - f;
        let slow = self.slow_bits(task);
        let mut rng = rng::stream(self.seed, purpose, task as u64);
        let mut bits = sample::Bits::new(&mut rng);
        let mut x = vec![0u8; m];
        x[..f].copy_from_slice(slow);
        if self.pattern_table {
            // Row k of the table holds the fast bits of k, least significant bit first.
            let patterns = 1usize << fast;
            let mut data = Vec::with_capacity(patterns * m);
            let mut targets = Vec::with_capacity(patterns);
            for k in 0..patterns {
                for (j, xj) in x[f..].iter_mut().enumerate() {
                    *xj = ((k >> j) & 1) as u8;
                }
                data.extend(x.iter().map(|&b| b as f32));
                targets.push(self.target.output(&x));
            }
            let rows: Vec<u32> =
                (0..examples).map(|_| (0..fast).map(|j| (bits.next() as u32) << j).sum()).collect();
            Split {
                inputs: Inputs::Floats { data: data.into(), dim: m },
                targets: Targets::Reals(targets.into()),
                rows: Some(rows.into()),
                permutation: None,
                head: task,
            }
        } else {
            let mut data = Vec::with_capacity(examples * m);
            let mut targets = Vec::with_capacity(examples);
            for _ in 0..examples {
                x[f..].iter_mut().for_each(|b| *b = bits.next());
                data.extend(x.iter().map(|&b| b as f32));
                targets.push(self.target.output(&x));
            }
            Split {
                inputs: Inputs::Floats { data: data.into(), dim: m },
                targets: Targets::Reals(targets.into()),
                rows: None,
                permutation: None,
                head: task,
            }
        }
    }
}

/// The slow bits of every task, `tasks × slow_bits`: task 0's drawn uniformly; then, per
/// task, one uniformly chosen bit flipped (`one`) or all redrawn (`all`).
fn slow_bit_schedule(spec: &SlowlyChangingRegressionSpec, seed: u64) -> Vec<u8> {
    let f = spec.slow_bits;
    let mut slow = Vec::with_capacity(spec.tasks * f);
    let mut initial = rng::stream(seed, "stream.regression.slow_bits", 0);
    let mut bits = sample::Bits::new(&mut initial);
    slow.extend((0..f).map(|_| bits.next()));
    let mut flips = rng::stream(seed, "stream.regression.flips", 0);
    for t in 1..spec.tasks {
        let previous = slow.len() - f;
        slow.extend_from_within(previous..);
        let state = &mut slow[t * f..];
        match spec.flip {
            FlipMode::One if f > 0 => state[sample::below(&mut flips, f as u64) as usize] ^= 1,
            FlipMode::One => {}
            FlipMode::All => {
                let mut redraw = rng::stream(seed, "stream.regression.slow_bits", t as u64);
                let mut bits = sample::Bits::new(&mut redraw);
                state.iter_mut().for_each(|b| *b = bits.next());
            }
        }
    }
    slow
}

impl TaskStream for SlowlyChangingRegression {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Draws the task's `flip_every` training and `test_examples` held-out examples (their fast
    /// bits; the slow bits are fixed for the task).
    fn task(&self, index: usize) -> Task {
        assert!(index < self.info.tasks, "task {index} of a {}-task stream", self.info.tasks);
        Task {
            index,
            train: self.split(index, "stream.regression.train", self.spec.flip_every),
            test: self.split(index, "stream.regression.test", self.spec.test_examples),
            validation: None,
            active_outputs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Target;

    fn spec(tasks: usize, flip: FlipMode) -> SlowlyChangingRegressionSpec {
        SlowlyChangingRegressionSpec {
            tasks,
            inputs: 20,
            slow_bits: 15,
            flip_every: 200,
            flip,
            target_hidden: 100,
            beta: 0.7,
            threshold: Threshold::Paper,
            test_examples: 50,
        }
    }

    fn rows(split: &Split) -> Vec<Vec<f32>> {
        let mut x = vec![0.0; split.dim()];
        (0..split.len())
            .map(|i| {
                split.gather_inputs(&[i], &mut x);
                x.clone()
            })
            .collect()
    }

    fn targets(split: &Split) -> Vec<f32> {
        (0..split.len())
            .map(|i| match split.target(i) {
                Target::Real(y) => y,
                Target::Class(_) => panic!("regression targets are real"),
            })
            .collect()
    }

    #[test]
    fn threshold_counts_negative_weights_including_the_bias() {
        // m = 3, w = (+1, −1, +1): with b = −1, S = 2 and θ = 0.7·4 − 2 = 0.8.
        let net = LtuNetwork::from_weights(3, vec![1, -1, 1], vec![-1], vec![1], 0, 0.7, Threshold::Paper);
        assert!((net.thresholds()[0] - 0.8).abs() < 1e-12);
        // z = 1 + 1 − 1 = 1 > 0.8: 3 of the 4 inputs (x1 = 1, x2 = 0, x3 = 1, but not the
        // bias) agree with the pattern, 3 > 0.7·4 = 2.8.
        assert_eq!(net.output(&[1, 0, 1]), 1.0);
        // z = 1 − 1 = 0: only 2 agree.
        assert_eq!(net.output(&[1, 0, 0]), 0.0);
        assert_eq!(net.output(&[1, 1, 1]), 0.0);
        // With b = +1, S = 1, θ = 1.8: z = 2 for (1, 0, 0) now fires, z = 1 for (0, 0, 0) not.
        let net = LtuNetwork::from_weights(3, vec![1, -1, 1], vec![1], vec![-1], 1, 0.7, Threshold::Paper);
        assert!((net.thresholds()[0] - 1.8).abs() < 1e-12);
        assert_eq!(net.output(&[1, 0, 0]), -1.0 + 1.0);
        assert_eq!(net.output(&[0, 0, 0]), 1.0, "only the output bias");
        assert_eq!(net.output(&[0, 1, 0]), 1.0);
    }

    #[test]
    fn reference_code_threshold_counts_half_the_bias() {
        // m = 3, w = (+1, −1, +1): Σw = 1. b = −1: S = (3 − 1 − 1)/2 = 0.5, θ = 2.8 − 0.5 = 2.3
        // (the paper's 0.8); b = +1: S = 1.5, θ = 1.3 (the paper's 1.8).
        let t = Threshold::ReferenceCode;
        let net = LtuNetwork::from_weights(3, vec![1, -1, 1], vec![-1], vec![1], 0, 0.7, t);
        assert!((net.thresholds()[0] - 2.3).abs() < 1e-12);
        // z = 1 for (1, 0, 1) fired under the paper's threshold, not under this one.
        assert_eq!(net.output(&[1, 0, 1]), 0.0);
        let net = LtuNetwork::from_weights(3, vec![1, -1, 1], vec![1], vec![-1], 1, 0.7, t);
        assert!((net.thresholds()[0] - 1.3).abs() < 1e-12);
        // With b = +1, integer z admits the same inputs: z = 2 fires, z = 1 does not.
        assert_eq!(net.output(&[1, 0, 0]), 0.0);
        assert_eq!(net.output(&[0, 0, 0]), 1.0);
    }

    /// The variance of the target over `inputs` random inputs, averaged over `nets` random
    /// target networks with the default sizes.
    fn mean_target_variance(threshold: Threshold, nets: u64) -> f64 {
        let mut total = 0.0;
        for seed in 0..nets {
            let net = LtuNetwork::random(&mut rng::stream(seed, "test.target", 0), 20, 100, 0.7, threshold);
            let mut r = rng::stream(seed, "test.inputs", 0);
            let mut bits = sample::Bits::new(&mut r);
            let ys: Vec<f64> = (0..2_000)
                .map(|_| {
                    let x: Vec<u8> = (0..20).map(|_| bits.next()).collect();
                    f64::from(net.output(&x))
                })
                .collect();
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            total += ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / ys.len() as f64;
        }
        total / nets as f64
    }

    #[test]
    fn reference_code_threshold_gives_a_less_variable_target() {
        let paper = mean_target_variance(Threshold::Paper, 50);
        let reference = mean_target_variance(Threshold::ReferenceCode, 50);
        eprintln!("target variance over 50 networks: paper {paper:.3}, reference_code {reference:.3}");
        // Measured: paper ≈ 3.78, reference_code ≈ 2.81. The reference's threshold is higher by
        // 1.5 on units with b_i = −1 (and the same for integer z_i otherwise), so fewer units
        // fire and the target varies less.
        assert!(reference < paper, "paper {paper}, reference_code {reference}");
        // The same seed, same weights: the thresholds differ exactly on units with b_i = −1.
        let mut sp = spec(2, FlipMode::One);
        let a = SlowlyChangingRegression::new(&sp, 9);
        sp.threshold = Threshold::ReferenceCode;
        let b = SlowlyChangingRegression::new(&sp, 9);
        for (i, (p, r)) in a.target().thresholds().iter().zip(b.target().thresholds()).enumerate() {
            let d = r - p;
            let expect = if a.target().biases[i] < 0 { 1.5 } else { -0.5 };
            assert!((d - expect).abs() < 1e-12, "unit {i}: {p} → {r}");
        }
        assert_ne!(targets(&a.task(1).train), targets(&b.task(1).train));
    }

    #[test]
    fn paper_threshold_is_left_out_of_the_normalised_parameters() {
        let sp = spec(2, FlipMode::One);
        let text = serde_json::to_string(&sp).unwrap();
        assert!(!text.contains("threshold"), "{text}");
        let back: SlowlyChangingRegressionSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sp);
        let reference = SlowlyChangingRegressionSpec { threshold: Threshold::ReferenceCode, ..sp };
        let text = serde_json::to_string(&reference).unwrap();
        assert!(text.contains(r#""threshold":"reference_code""#), "{text}");
    }

    #[test]
    fn shapes_and_protocol() {
        let s = SlowlyChangingRegression::new(&spec(4, FlipMode::One), 3);
        assert_eq!(
            s.info(),
            &StreamInfo {
                tasks: 4,
                inputs: 20,
                input_shape: Shape::Vector(20),
                head_outputs: 1,
                head_per_task: false,
                problem: Problem::Regression,
                online: true,
                augment: None,
            }
        );
        let t = s.task(3);
        assert_eq!((t.train.len(), t.test.len(), t.train.dim(), t.train.head()), (200, 50, 20, 3));
        assert!(rows(&t.train).iter().flatten().all(|&v| v == 0.0 || v == 1.0));
        // θ_i = 0.7 · 21 − S_i with S_i a whole number of negative weights.
        for &th in s.target().thresholds() {
            let s_i = 0.7 * 21.0 - th;
            assert!((s_i - s_i.round()).abs() < 1e-9 && (0.0..=21.0).contains(&s_i), "θ = {th}");
        }
    }

    #[test]
    fn slow_bits_hold_within_a_task_and_one_flips_between_tasks() {
        let s = SlowlyChangingRegression::new(&spec(30, FlipMode::One), 8);
        let mut flipped = [0usize; 15];
        for t in 0..30 {
            let task = s.task(t);
            for split in [&task.train, &task.test] {
                let xs = rows(split);
                for x in &xs {
                    let slow: Vec<u8> = x[..15].iter().map(|&v| v as u8).collect();
                    assert_eq!(slow, s.slow_bits(t), "slow bits of task {t}");
                }
                // Each of the 5 fast bits takes both values within a task.
                for j in 15..20 {
                    assert!(xs.iter().any(|x| x[j] == 0.0) && xs.iter().any(|x| x[j] == 1.0), "bit {j}");
                }
            }
            if t > 0 {
                let diff: Vec<usize> =
                    (0..15).filter(|&j| s.slow_bits(t)[j] != s.slow_bits(t - 1)[j]).collect();
                assert_eq!(diff.len(), 1, "task {t} differs in bits {diff:?}");
                flipped[diff[0]] += 1;
            }
        }
        assert!(flipped.iter().filter(|&&n| n > 0).count() >= 8, "flips concentrate: {flipped:?}");
    }

    #[test]
    fn all_mode_redraws_every_slow_bit() {
        let s = SlowlyChangingRegression::new(&spec(40, FlipMode::All), 8);
        let changes: usize =
            (1..40).map(|t| (0..15).filter(|&j| s.slow_bits(t)[j] != s.slow_bits(t - 1)[j]).count()).sum();
        // Each bit changes with probability ½: about 39 × 7.5 ≈ 290 changes.
        assert!((200..380).contains(&changes), "{changes} changes");
    }

    #[test]
    fn targets_are_the_target_network_of_the_inputs() {
        let s = SlowlyChangingRegression::new(&spec(3, FlipMode::One), 5);
        let t = s.task(1);
        for (x, y) in rows(&t.train).iter().zip(targets(&t.train)) {
            let bits: Vec<u8> = x.iter().map(|&v| v as u8).collect();
            assert_eq!(s.target().output(&bits), y);
        }
        let ys = targets(&t.train);
        assert!(ys.iter().any(|&y| y != ys[0]), "a constant target would teach nothing");
    }

    #[test]
    fn determinism_and_both_layouts_agree() {
        let sp = spec(5, FlipMode::One);
        let a = SlowlyChangingRegression::new(&sp, 1);
        assert!(a.pattern_table, "5 fast bits and 200 examples use the table");
        let b = SlowlyChangingRegression::with_layout(&sp, 1, false);
        let c = SlowlyChangingRegression::new(&sp, 2);
        for t in 0..5 {
            let (ta, tb, tc) = (a.task(t), b.task(t), c.task(t));
            assert_eq!(rows(&ta.train), rows(&tb.train));
            assert_eq!(targets(&ta.train), targets(&tb.train));
            assert_eq!(rows(&ta.test), rows(&tb.test));
            assert_eq!(targets(&ta.test), targets(&tb.test));
            assert_ne!(rows(&ta.train), rows(&tc.train));
            assert_ne!(rows(&ta.train), rows(&ta.test), "held-out examples are other draws");
        }
        assert_ne!(a.target(), c.target());
    }

    #[test]
    fn without_fast_bits_every_example_is_the_slow_state() {
        let mut sp = spec(3, FlipMode::One);
        sp.slow_bits = 20;
        let s = SlowlyChangingRegression::new(&sp, 4);
        let t = s.task(2);
        let xs = rows(&t.train);
        assert!(xs.iter().all(|x| x == &xs[0]));
        let mut sp = spec(3, FlipMode::One);
        sp.slow_bits = 0;
        let s = SlowlyChangingRegression::new(&sp, 4);
        assert!(s.slow_bits(2).is_empty());
        assert_eq!(s.task(2).train.len(), 200);
    }
}
