//! `cbp`: continual backpropagation (Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood, Sutton,
//! "Loss of plasticity in deep continual learning", Nature 632, 2024; reference code
//! `lop/algos/gnt.py` and `lop/algos/cbp.py` in github.com/shibhansh/loss-of-plasticity).
//!
//! Backprop loses plasticity because the diversity of the initial random weights is used up;
//! continual backprop keeps injecting it. After every optimiser step it reinitialises a small
//! fraction ρ of the mature hidden units whose utility is lowest: their incoming weights are
//! redrawn from the initial distribution and their outgoing weights set to zero, so the new
//! unit adds nothing to the network's output until gradient descent gives it a role.
//!
//! # The algorithm, per step and per hidden layer l (output units are never replaced)
//!
//! With decay rate η, for every unit i of layer l, h_i its post-activation value in the
//! forward pass of this step (taken before the update, as the reference keeps the features of
//! that pass), W_in the weights into layer l and W_out the weights out of it (both after the
//! update, as the reference reads them after `opt.step()`):
//!
//! 1. age a_i ← a_i + 1; bias correction c_i = 1 − η^{a_i};
//! 2. running mean activation f_i ← η·f_i + (1 − η)·mean_batch h_i, and f̂_i = f_i / c_i
//!    (the mean *including* this batch — the reference's order);
//! 3. instantaneous utility y_i:
//!    - `contribution`: y_i = mean_batch |h_i| · mean_k |W_out[k, i]|;
//!    - `adaptable_contribution`: y_i = mean_k |W_out[k, i]| · mean_batch |h_i − f̂_i| /
//!      mean_j |W_in[i, j]|;
//! 4. utility u_i ← η·u_i + (1 − η)·y_i, ranked by û_i = u_i / c_i;
//! 5. eligible units: a_i > m (maturity threshold). With `accumulate`, the layer's counter
//!    c_l ← c_l + ρ·|eligible| and ⌊c_l⌋ units are replaced (c_l keeps the fraction);
//!    otherwise ⌊ρ·|eligible|⌋, and when ρ·|eligible| < 1 one unit with probability
//!    ρ·|eligible| (drawn from the method's random stream). No eligible unit: nothing happens
//!    (the counter does not grow).
//! 6. the eligible units with the lowest û (ties: lowest index) are replaced: incoming row
//!    redrawn by [`Mlp::reinitialize_incoming`] (Kaiming-uniform with the activation's gain,
//!    the initial distribution), bias 0, outgoing column 0, u = f = a = 0; with Adam, the
//!    moment estimates and step counts of the row, the bias and the outgoing column are reset
//!    ([`crate::optim::Optimizer::reset_incoming`], [`crate::optim::Optimizer::reset_outgoing`]),
//!    as `AdamGnT` does.
//!
//! Steps 1–5 run for every hidden layer before any unit is replaced (the reference's
//! `test_features` then `gen_new_features`), so a replacement in layer l does not change the
//! weight magnitudes that layer l + 1's utilities see in the same step.
//!
//! The paper writes the utility with sums over k (eq. 1) and j; the reference code — and
//! this implementation — uses means. Within a layer the two differ by a constant factor
//! (n_{l+1} for `contribution`, n_{l+1}/n_{l−1} for `adaptable_contribution`), and units are
//! only ranked within their layer, so the same units are replaced.
//!
//! # Deviations and choices, each checked against the reference
//!
//! - `bias_correction` (off by default): before a unit's outgoing weights are zeroed, the next
//!   layer's bias absorbs their average contribution, b_next += W_out[:, r]·f̂_r, so the
//!   network's output is unchanged in expectation. `gnt.py` writes this correction too, but
//!   resets f_r to 0 in `test_features` before `gen_new_features` adds W_out·f_r / c_r, so in
//!   the reference it always adds zero: the published results are those of `bias_correction:
//!   false`. Here the option, when on, uses f̂_r as it was before the reset.
//! - SGD's momentum velocity of a replaced unit is kept (the reference resets optimiser state
//!   for `AdamGnT` only); plain SGD has no state.
//! - `replacement_rate: 0` turns the method off entirely (no ages, no utilities), as in the
//!   reference, so it then equals backprop exactly.
//! - A unit whose incoming weights are all exactly zero has an `adaptable_contribution` of
//!   0 / 0 or y / 0; the reference gets NaN or +∞ there. We define 0 / 0 = 0 and y / 0 = +∞
//!   so the ranking stays deterministic on every platform (NaN's sign is not).
//! - `accumulate` defaults to true, what the reference's online permuted MNIST experiment
//!   hard-codes (`online_expr.py`); its slowly-changing-regression script runs the
//!   probabilistic branch (`accumulate: false`), as does `GnT`'s own default. Both replace
//!   ρ·|eligible| units per step in expectation.
//!
//! Conv nets have their own version, [`super::cbp_conv`], with output channels as units.
//!
//! # Events
//!
//! At the end of every task whose boundaries the learner sees (not on online streams),
//! `cbp.replaced` = `{"task": [r_0, r_1, …], "total": [t_0, t_1, …]}`: per hidden layer, the
//! units replaced during that task and since the run began.

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{ContinualMethod, MethodError, MethodKind, MethodState, StepContext, TaskContext};
use crate::model::convnet::ConvNet;
use crate::model::Mlp;
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::protocol::payload::{CbpReplaced, MethodPayload};
use crate::rng::Rng;

/// How a unit's instantaneous utility is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Utility {
    /// mean_batch |h_i| · mean_k |W_out[k, i]|: how much the unit feeds its consumers (the
    /// paper's contribution utility, eq. 1).
    Contribution,
    /// mean_k |W_out[k, i]| · mean_batch |h_i − f̂_i| / mean_j |W_in[i, j]|: the
    /// mean-corrected contribution divided by the incoming weight magnitude (the paper's
    /// overall utility, and what every reference experiment configures).
    AdaptableContribution,
}

/// Hyper-parameters of `cbp`. Defaults follow the paper and the reference code.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CbpConfig {
    /// ρ: fraction of the eligible units replaced per step, in [0, 1] (default 1e-4, the
    /// reference's default and the largest value of its online permuted MNIST sweep). 0 turns
    /// the method off.
    pub replacement_rate: f64,
    /// m: a unit is eligible for replacement once its age (steps since it was (re)initialised)
    /// exceeds m (default 100, `ContinualBackprop`'s default and the reference configs').
    pub maturity_threshold: u64,
    /// η: decay rate of the running utility and mean activation, in [0, 1) (default 0.99, the
    /// paper's value "in all experiments").
    pub decay_rate: f64,
    /// The utility measure (default `adaptable_contribution`).
    pub utility: Utility,
    /// Carry the fractional number of units to replace over steps (default true, as the
    /// reference's online permuted MNIST runs); false replaces ⌊ρ·|eligible|⌋ units, or one
    /// with probability ρ·|eligible| when that is below 1.
    pub accumulate: bool,
    /// Add a replaced unit's mean contribution W_out[:, r]·f̂_r to the next layer's bias
    /// (default false; a no-op in the reference code, see the module docs).
    pub bias_correction: bool,
}

impl Default for CbpConfig {
    fn default() -> Self {
        CbpConfig {
            replacement_rate: 1e-4,
            maturity_threshold: 100,
            decay_rate: 0.99,
            utility: Utility::AdaptableContribution,
            accumulate: true,
            bias_correction: false,
        }
    }
}

/// What continual backprop tracks about the units of one hidden layer (of an MLP, or one
/// group of channels of a conv net, [`super::cbp_conv`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct LayerState {
    /// a_i: steps since unit i was (re)initialised.
    pub(super) age: Vec<u64>,
    /// u_i: running utility (not bias-corrected).
    pub(super) utility: Vec<f32>,
    /// f_i: running mean activation (not bias-corrected).
    pub(super) mean_activation: Vec<f32>,
    /// c_l: the fractional number of units still to replace (`accumulate`).
    pub(super) accumulated: f64,
    /// Units replaced since the last `cbp.replaced` report.
    pub(super) replaced_in_task: u64,
    /// Units replaced since the run began.
    pub(super) replaced_total: u64,
}

impl LayerState {
    pub(super) fn new(units: usize) -> Self {
        LayerState {
            age: vec![0; units],
            utility: vec![0.0; units],
            mean_activation: vec![0.0; units],
            ..LayerState::default()
        }
    }

    /// Step 4 for unit `i` given its instantaneous contribution `y` (activity × outgoing
    /// magnitude): divides by the incoming magnitude `incoming()` for the adaptable
    /// contribution utility, folds the result into the running utility with decay `eta` and
    /// returns the bias-corrected utility (`correction` = 1 − ηᵃ).
    pub(super) fn update_utility(
        &mut self,
        i: usize,
        y: f32,
        utility: Utility,
        incoming: impl FnOnce() -> f32,
        eta: f32,
        correction: f32,
    ) -> f32 {
        let y = match utility {
            Utility::AdaptableContribution if y != 0.0 => y / incoming(),
            Utility::AdaptableContribution => 0.0,
            Utility::Contribution => y,
        };
        let u = &mut self.utility[i];
        *u = eta * *u + (1.0 - eta) * y;
        *u / correction
    }

    /// After unit `r` was reinitialised: a newborn unit, age, utility and mean activation 0.
    pub(super) fn reborn(&mut self, r: usize) {
        self.age[r] = 0;
        self.utility[r] = 0.0;
        self.mean_activation[r] = 0.0;
    }

    /// Counts `n` units replaced this step.
    pub(super) fn count_replaced(&mut self, n: usize) {
        self.replaced_in_task += n as u64;
        self.replaced_total += n as u64;
    }
}

/// Per-layer buffers of one step, reused so a step allocates nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// 1 − η^{a_i}.
    correction: Vec<f32>,
    /// f̂_i, per hidden layer (kept until the replacements, for the bias correction).
    corrected_mean: Vec<Vec<f32>>,
    /// û_i.
    corrected_utility: Vec<f32>,
    /// mean_batch |h_i| or mean_batch |h_i − f̂_i|.
    activity: Vec<f32>,
    /// mean_k |W_out[k, i]|.
    outgoing: Vec<f32>,
    /// Indices of eligible units.
    eligible: Vec<usize>,
    /// Units chosen for replacement, per hidden layer, ascending.
    chosen: Vec<Vec<usize>>,
}

/// Continual backprop: the optimiser's update, then generate-and-test on the hidden units.
pub struct ContinualBackprop {
    replacement_rate: f64,
    maturity_threshold: u64,
    decay_rate: f32,
    /// The age from which 1 − η^a rounds to 1 in f32 (see [`saturation_age`]).
    saturation_age: u64,
    utility: Utility,
    accumulate: bool,
    bias_correction: bool,
    layers: Vec<LayerState>,
    scratch: Scratch,
}

impl ContinualBackprop {
    /// A fresh method for `config`; its state is sized from the network at the first step.
    pub fn new(config: &CbpConfig) -> Self {
        ContinualBackprop {
            replacement_rate: config.replacement_rate,
            maturity_threshold: config.maturity_threshold,
            decay_rate: config.decay_rate as f32,
            saturation_age: saturation_age(config.decay_rate as f32),
            utility: config.utility,
            accumulate: config.accumulate,
            bias_correction: config.bias_correction,
            layers: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Sizes the state for `net` on first use. A restored state must fit the network: the run
    /// id covers the network spec, so a checkpoint of another shape cannot reach here.
    fn ensure_state(&mut self, net: &Mlp) {
        let hidden = &net.layers()[..net.hidden_layers()];
        if self.layers.is_empty() {
            self.layers = hidden.iter().map(|layer| LayerState::new(layer.outputs)).collect();
        }
        assert!(
            self.layers.len() == hidden.len()
                && self.layers.iter().zip(hidden).all(|(s, layer)| s.age.len() == layer.outputs),
            "cbp state of {:?} units does not fit hidden layers of {:?}",
            self.layers.iter().map(|s| s.age.len()).collect::<Vec<_>>(),
            hidden.iter().map(|layer| layer.outputs).collect::<Vec<_>>()
        );
        // No-ops once sized (also after `load`, which restores the state but not the buffers).
        self.scratch.chosen.resize_with(hidden.len(), Vec::new);
        self.scratch.corrected_mean.resize_with(hidden.len(), Vec::new);
    }

    /// Steps 1–5 of the module docs for hidden layer `l`: updates ages, running means and
    /// utilities from this step's activations and chooses the units to replace into
    /// `scratch.chosen[l]`. Leaves f̂ in `scratch.corrected_mean[l]` for the bias correction.
    fn test_layer(&mut self, cx: &mut StepContext<'_>, l: usize) {
        let eta = self.decay_rate;
        let state = &mut self.layers[l];
        let s = &mut self.scratch;
        let units = state.age.len();
        let batch = cx.workspace.batch();
        let values = cx.workspace.hidden(l);

        // 1. Ages and bias corrections.
        s.correction.clear();
        for a in &mut state.age {
            *a = a.saturating_add(1);
            s.correction.push(if *a >= self.saturation_age { 1.0 } else { bias_correction(eta, *a) });
        }

        // 2. Running means, with this batch included.
        s.activity.clear();
        s.activity.resize(units, 0.0);
        for row in values.chunks_exact(units) {
            for (m, &h) in s.activity.iter_mut().zip(row) {
                *m += h;
            }
        }
        let corrected_mean = &mut s.corrected_mean[l];
        corrected_mean.clear();
        for ((f, m), &c) in state.mean_activation.iter_mut().zip(&s.activity).zip(&s.correction) {
            *f = eta * *f + (1.0 - eta) * (m / batch as f32);
            corrected_mean.push(*f / c);
        }

        // 3. Instantaneous utilities: the activity term…
        s.activity.fill(0.0);
        for row in values.chunks_exact(units) {
            match self.utility {
                Utility::Contribution => {
                    for (m, &h) in s.activity.iter_mut().zip(row) {
                        *m += h.abs();
                    }
                }
                Utility::AdaptableContribution => {
                    for ((m, &h), &f) in s.activity.iter_mut().zip(row).zip(corrected_mean.iter()) {
                        *m += (h - f).abs();
                    }
                }
            }
        }
        s.activity.iter_mut().for_each(|m| *m /= batch as f32);
        // …the outgoing weight magnitudes (column means of the next layer)…
        let next = &cx.net.layers()[l + 1];
        s.outgoing.clear();
        s.outgoing.resize(units, 0.0);
        for row in next.weight.chunks_exact(units) {
            for (o, &w) in s.outgoing.iter_mut().zip(row) {
                *o += w.abs();
            }
        }
        s.outgoing.iter_mut().for_each(|o| *o /= next.outputs as f32);
        // …and, 4., the running utility.
        let incoming = &cx.net.layers()[l];
        s.corrected_utility.clear();
        for i in 0..units {
            let y = s.outgoing[i] * s.activity[i];
            let corrected =
                state.update_utility(i, y, self.utility, || mean_abs(incoming.row(i)), eta, s.correction[i]);
            s.corrected_utility.push(corrected);
        }

        // 5. How many units to replace, and which.
        let rule = Selection {
            replacement_rate: self.replacement_rate,
            maturity_threshold: self.maturity_threshold,
            accumulate: self.accumulate,
        };
        rule.choose(state, &s.corrected_utility, &mut s.eligible, &mut s.chosen[l], cx.rng);
    }

    /// Step 6 for hidden layer `l`: reinitialises the units chosen by [`Self::test_layer`].
    fn replace_layer(&mut self, cx: &mut StepContext<'_>, l: usize) {
        let adam = cx.optimizer.config.kind == OptimizerKind::Adam;
        let state = &mut self.layers[l];
        let corrected_mean = &self.scratch.corrected_mean[l];
        for &r in &self.scratch.chosen[l] {
            cx.net.reinitialize_incoming(l, r, cx.rng);
            let next = &mut cx.net.layers_mut()[l + 1];
            let units = next.inputs;
            for k in 0..next.outputs {
                let w = &mut next.weight[k * units + r];
                if self.bias_correction {
                    next.bias[k] += *w * corrected_mean[r];
                }
                *w = 0.0;
            }
            if adam {
                cx.optimizer.reset_incoming(l, r);
                cx.optimizer.reset_outgoing(l, r);
            }
            state.reborn(r);
        }
        state.count_replaced(self.scratch.chosen[l].len());
    }
}

impl ContinualMethod for ContinualBackprop {
    fn after_update(&mut self, cx: &mut StepContext<'_>) {
        if self.replacement_rate == 0.0 {
            return;
        }
        self.ensure_state(cx.net);
        let hidden = self.layers.len();
        for l in 0..hidden {
            self.test_layer(cx, l);
        }
        for l in 0..hidden {
            if !self.scratch.chosen[l].is_empty() {
                self.replace_layer(cx, l);
            }
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        if self.replacement_rate == 0.0 {
            return Ok(());
        }
        self.ensure_state(cx.net);
        cx.report.push(report(&mut self.layers));
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        save_layers(&self.layers, state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        self.layers = load_layers(state)?;
        Ok(())
    }
}

/// Step 5 of the module docs: how many of a layer's units to replace, and which.
pub(super) struct Selection {
    /// ρ.
    pub(super) replacement_rate: f64,
    /// m.
    pub(super) maturity_threshold: u64,
    /// Carry the fraction over steps.
    pub(super) accumulate: bool,
}

impl Selection {
    /// Chooses into `chosen` (ascending) the eligible units (a_i > m) of `state` with the
    /// lowest bias-corrected utility `corrected_utility` (ties: lowest index), as many as the
    /// rule says, updating the layer's accumulated fraction; `eligible` is scratch space.
    pub(super) fn choose(
        &self,
        state: &mut LayerState,
        corrected_utility: &[f32],
        eligible: &mut Vec<usize>,
        chosen: &mut Vec<usize>,
        rng: &mut Rng,
    ) {
        chosen.clear();
        eligible.clear();
        eligible.extend((0..state.age.len()).filter(|&i| state.age[i] > self.maturity_threshold));
        if eligible.is_empty() {
            return;
        }
        let expected = self.replacement_rate * eligible.len() as f64;
        let count = if self.accumulate {
            state.accumulated += expected;
            let whole = state.accumulated.floor();
            state.accumulated -= whole;
            whole as usize
        } else if expected < 1.0 {
            usize::from(rng.gen::<f64>() < expected)
        } else {
            expected.floor() as usize
        };
        let count = count.min(eligible.len());
        if count == 0 {
            return;
        }
        // The `count` lowest û, ties broken by index: a total order, so the set is unique.
        let key = |&i: &usize| (corrected_utility[i], i);
        eligible.select_nth_unstable_by(count - 1, |a, b| {
            let (ua, ia) = key(a);
            let (ub, ib) = key(b);
            ua.total_cmp(&ub).then(ia.cmp(&ib))
        });
        chosen.extend_from_slice(&eligible[..count]);
        chosen.sort_unstable();
    }
}

/// The `cbp.replaced` report of `layers`; starts the next task's counts.
pub(super) fn report(layers: &mut [LayerState]) -> MethodPayload {
    let task: Vec<u64> = layers.iter().map(|s| s.replaced_in_task).collect();
    let total: Vec<u64> = layers.iter().map(|s| s.replaced_total).collect();
    layers.iter_mut().for_each(|s| s.replaced_in_task = 0);
    MethodPayload::CbpReplaced(CbpReplaced { task, total })
}

/// Writes every layer's state (ages, utilities, means, counters) into `state`.
pub(super) fn save_layers(layers: &[LayerState], state: &mut MethodState) {
    for (l, s) in layers.iter().enumerate() {
        state.put_u64(format!("age.{l}"), s.age.clone());
        state.put_f32(format!("utility.{l}"), s.utility.clone());
        state.put_f32(format!("mean_activation.{l}"), s.mean_activation.clone());
        state.put_u64(format!("replaced.{l}"), vec![s.replaced_in_task, s.replaced_total]);
    }
    let accumulated: Vec<f64> = layers.iter().map(|s| s.accumulated).collect();
    state.meta = serde_json::json!({"layers": layers.len(), "accumulated": accumulated});
}

/// Reads back what [`save_layers`] wrote.
pub(super) fn load_layers(state: &MethodState) -> Result<Vec<LayerState>, MethodError> {
    let bad = |what: &str| MethodError::State(format!("cbp: {what}"));
    let layers =
        state.meta.get("layers").and_then(|v| v.as_u64()).ok_or_else(|| bad("`layers` is missing"))?;
    let accumulated: Vec<f64> = state
        .meta
        .get("accumulated")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| bad("`accumulated` is missing"))?;
    if accumulated.len() as u64 != layers {
        return Err(bad("`accumulated` does not have one value per layer"));
    }
    let mut restored = Vec::new();
    for (l, &accumulated) in accumulated.iter().enumerate() {
        let age = state.u64(&format!("age.{l}"))?.to_vec();
        let utility = state.f32(&format!("utility.{l}"))?.to_vec();
        let mean_activation = state.f32(&format!("mean_activation.{l}"))?.to_vec();
        let replaced = state.u64(&format!("replaced.{l}"))?;
        if utility.len() != age.len() || mean_activation.len() != age.len() || replaced.len() != 2 {
            return Err(bad(&format!("the tensors of layer {l} disagree in length")));
        }
        restored.push(LayerState {
            age,
            utility,
            mean_activation,
            accumulated,
            replaced_in_task: replaced[0],
            replaced_total: replaced[1],
        });
    }
    Ok(restored)
}

/// The bias correction 1 − η^a of a unit of age a ≥ 1 (η^a in f64, the result in f32 like the
/// reference's float tensors).
pub(super) fn bias_correction(eta: f32, age: u64) -> f32 {
    (1.0 - (eta as f64).powi(i32::try_from(age).unwrap_or(i32::MAX))) as f32
}

/// The smallest age from which [`bias_correction`] is exactly 1 (it only grows with the age),
/// so that older units skip the power: 1,650 steps at η = 0.99, 1 at η = 0.
pub(super) fn saturation_age(eta: f32) -> u64 {
    let (mut below, mut at) = (0u64, i32::MAX as u64);
    while at - below > 1 {
        let middle = below + (at - below) / 2;
        if bias_correction(eta, middle) == 1.0 {
            at = middle;
        } else {
            below = middle;
        }
    }
    at
}

/// mean_j |x_j|, summed in 8 interleaved lanes: one running sum is a chain of dependent
/// additions that the compiler may not reorder, and over every incoming row of a wide layer
/// it cost CBP more than the forward and backward passes together at batch size 1.
pub(super) fn mean_abs(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x.abs();
        }
    }
    let sum = lanes.iter().sum::<f32>() + rest.iter().map(|x| x.abs()).sum::<f32>();
    sum / xs.len() as f32
}

/// The `cbp` kind.
pub struct Cbp;

impl MethodKind for Cbp {
    const KIND: &'static str = "cbp";
    const SUMMARY: &'static str =
        "continual backprop: reinitialise a fraction of mature low-utility hidden units after each step";
    type Config = CbpConfig;
    fn check(c: &CbpConfig) -> Result<(), String> {
        if !(0.0..=1.0).contains(&c.replacement_rate) {
            return Err(format!("`replacement_rate` must lie in [0, 1], not {}", c.replacement_rate));
        }
        if !(0.0..1.0).contains(&c.decay_rate) {
            return Err(format!("`decay_rate` must lie in [0, 1), not {}", c.decay_rate));
        }
        Ok(())
    }
    fn build(c: CbpConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(ContinualBackprop::new(&c))
    }
    fn build_conv(c: CbpConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(super::cbp_conv::ConvContinualBackprop::new(&c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::with_step;
    use crate::model::{fused, init_bound, Layers, Workspace};
    use crate::optim::Optimizer;
    use crate::protocol::Activation;
    use crate::rng;

    fn config(replacement_rate: f64, maturity_threshold: u64, accumulate: bool) -> CbpConfig {
        CbpConfig { replacement_rate, maturity_threshold, accumulate, ..CbpConfig::default() }
    }

    fn random_net(sizes: &[usize], seed: u64) -> Mlp {
        Mlp::new(sizes, Activation::Relu, &mut rng::stream(seed, "cbp-test", 0))
    }

    fn random_input(len: usize, seed: u64) -> Vec<f32> {
        let mut r = rng::stream(seed, "cbp-test-input", 0);
        (0..len).map(|_| r.gen_range(-1.0..1.0)).collect()
    }

    fn sgd(net: &Mlp) -> Optimizer {
        Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), net)
    }

    fn outputs(net: &Mlp, input: &[f32]) -> Vec<f32> {
        let sizes = net.sizes();
        let mut ws = Workspace::new(&sizes, input.len() / sizes[0]);
        ws.input.copy_from_slice(input);
        fused::forward(net, &mut ws);
        ws.outputs().to_vec()
    }

    /// Runs `steps` generate-and-test steps on `input` (activations of the unchanged first
    /// forward pass) and returns the units replaced in each step, per hidden layer.
    fn run(
        method: &mut ContinualBackprop,
        net: &mut Mlp,
        opt: &mut Optimizer,
        input: &[f32],
        steps: usize,
    ) -> Vec<Vec<u64>> {
        let mut grads = Layers::zeros_like(&net.params);
        with_step(net, &mut grads, opt, input, |cx| {
            (0..steps)
                .map(|_| {
                    let before: Vec<u64> = method.layers.iter().map(|s| s.replaced_total).collect();
                    method.after_update(cx);
                    method
                        .layers
                        .iter()
                        .enumerate()
                        .map(|(l, s)| s.replaced_total - before.get(l).copied().unwrap_or(0))
                        .collect()
                })
                .collect()
        })
    }

    /// The 2-2-2 ReLU network of the hand-worked example: W1 = [[1, 2], [−1, 0.5]], b1 = [0, 0.5],
    /// W2 = [[0.5, −1], [1.5, 2]], b2 = 0.
    fn tiny_net() -> Mlp {
        let mut net = random_net(&[2, 2, 2], 0);
        net.params.layers[0].weight = vec![1.0, 2.0, -1.0, 0.5];
        net.params.layers[0].bias = vec![0.0, 0.5];
        net.params.layers[1].weight = vec![0.5, -1.0, 1.5, 2.0];
        net.params.layers[1].bias = vec![0.0, 0.0];
        net
    }

    fn assert_close(actual: &[f32], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((*a as f64 - e).abs() < 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn utilities_and_their_bias_correction_match_the_hand_worked_example() {
        // Step 1, batch x = (1, 1), (0, 2): h_0 = (3, 4), h_1 = (0, 1.5). Step 2, batch x = (1, 0):
        // h_0 = 1, h_1 = 0. Outgoing magnitudes mean_k |W2[k, i]| = (1, 1.5); incoming
        // magnitudes mean_j |W1[i, j]| = (1.5, 0.75). η = 0.5, so c = 1 − 0.5^a = 0.5, then 0.75.
        let mut net = tiny_net();
        let mut opt = sgd(&net);
        let cfg = CbpConfig { decay_rate: 0.5, ..config(1e-4, 100, true) };
        let mut m = ContinualBackprop::new(&cfg);
        run(&mut m, &mut net, &mut opt, &[1.0, 1.0, 0.0, 2.0], 1);
        // f = 0.5·mean h = (1.75, 0.375); f̂ = f / 0.5 = (3.5, 0.75).
        assert_close(&m.layers[0].mean_activation, &[1.75, 0.375]);
        assert_close(&m.scratch.corrected_mean[0], &[3.5, 0.75]);
        // mean |h − f̂| = (0.5, 0.75); y = (1·0.5/1.5, 1.5·0.75/0.75) = (1/3, 1.5);
        // u = 0.5·y = (1/6, 0.75); û = u / 0.5 = (1/3, 1.5).
        assert_close(&m.layers[0].utility, &[1.0 / 6.0, 0.75]);
        assert_close(&m.scratch.corrected_utility, &[1.0 / 3.0, 1.5]);
        assert_eq!(m.layers[0].age, vec![1, 1]);

        run(&mut m, &mut net, &mut opt, &[1.0, 0.0], 1);
        // f = 0.5·f + 0.5·h = (1.375, 0.1875); f̂ = f / 0.75 = (11/6, 0.25).
        assert_close(&m.layers[0].mean_activation, &[1.375, 0.1875]);
        assert_close(&m.scratch.corrected_mean[0], &[11.0 / 6.0, 0.25]);
        // |h − f̂| = (5/6, 0.25); y = (1·(5/6)/1.5, 1.5·0.25/0.75) = (5/9, 0.5);
        // u = 0.5·u + 0.5·y = (13/36, 0.625); û = u / 0.75 = (13/27, 5/6).
        assert_close(&m.layers[0].utility, &[13.0 / 36.0, 0.625]);
        assert_close(&m.scratch.corrected_utility, &[13.0 / 27.0, 5.0 / 6.0]);
        assert_eq!(m.layers[0].age, vec![2, 2]);

        // The contribution utility on the same steps: y = mean |h| · (1, 1.5).
        let mut net = tiny_net();
        let cfg = CbpConfig { utility: Utility::Contribution, ..cfg };
        let mut m = ContinualBackprop::new(&cfg);
        run(&mut m, &mut net, &mut opt, &[1.0, 1.0, 0.0, 2.0], 1);
        // y = (3.5·1, 0.75·1.5) = (3.5, 1.125); u = 0.5·y; û = y.
        assert_close(&m.layers[0].utility, &[1.75, 0.5625]);
        assert_close(&m.scratch.corrected_utility, &[3.5, 1.125]);
        run(&mut m, &mut net, &mut opt, &[1.0, 0.0], 1);
        // y = (1·1, 0·1.5); u = (0.5·1.75 + 0.5, 0.5·0.5625) = (1.375, 0.28125); û = u / 0.75.
        assert_close(&m.layers[0].utility, &[1.375, 0.28125]);
        assert_close(&m.scratch.corrected_utility, &[1.375 / 0.75, 0.375]);
    }

    #[test]
    fn accumulating_replaces_the_whole_part_and_carries_the_fraction() {
        // m = 0: every unit is eligible at every step (its age is at least 1).
        let mut net = random_net(&[3, 10, 2], 1);
        let mut opt = sgd(&net);
        let input = random_input(3 * 4, 1);
        // ρ·|eligible| = 0.25·10 = 2.5 per step: 2, 3, 2, 3, …
        let mut m = ContinualBackprop::new(&config(0.25, 0, true));
        let counts = run(&mut m, &mut net, &mut opt, &input, 6);
        assert_eq!(counts, vec![vec![2], vec![3], vec![2], vec![3], vec![2], vec![3]]);
        // ρ·|eligible| = (1/32)·8 = 0.25 per step: one unit every fourth step.
        let mut net = random_net(&[3, 8, 2], 1);
        let mut m = ContinualBackprop::new(&config(1.0 / 32.0, 0, true));
        let counts = run(&mut m, &mut net, &mut opt, &input, 8);
        let flat: Vec<u64> = counts.into_iter().map(|c| c[0]).collect();
        assert_eq!(flat, vec![0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn without_accumulation_it_replaces_the_floor_or_one_unit_with_the_right_probability() {
        let mut net = random_net(&[3, 10, 2], 2);
        let mut opt = sgd(&net);
        let input = random_input(3 * 4, 2);
        // ρ·|eligible| = 2.5: ⌊2.5⌋ = 2 every step, the fraction is dropped.
        let mut m = ContinualBackprop::new(&config(0.25, 0, false));
        let counts = run(&mut m, &mut net, &mut opt, &input, 5);
        assert!(counts.iter().all(|c| c == &vec![2]), "{counts:?}");
        // ρ·|eligible| = 0.3: one unit with probability 0.3. Over n = 20,000 steps the count is
        // Binomial(n, 0.3): mean 6,000, standard deviation 64.8; allow 4 of them.
        let mut m = ContinualBackprop::new(&config(0.03, 0, false));
        let counts = run(&mut m, &mut net, &mut opt, &input, 20_000);
        assert!(counts.iter().all(|c| c[0] <= 1));
        let total: u64 = counts.iter().map(|c| c[0]).sum();
        assert!((total as f64 - 6_000.0).abs() < 4.0 * 64.8, "{total} replacements in 20,000 steps");
        // The accumulating mode replaces the same expected number, deterministically.
        let mut m = ContinualBackprop::new(&config(0.03, 0, true));
        let total: u64 = run(&mut m, &mut net, &mut opt, &input, 20_000).iter().map(|c| c[0]).sum();
        assert!((5_999..=6_000).contains(&total), "{total}");
    }

    /// A 4-4-4-3 network in which unit 2 of the first hidden layer and unit 3 of the second
    /// never fire on `input` (bias −100): the lowest utilities.
    fn net_with_dead_units(input: &[f32]) -> Mlp {
        let mut net = random_net(&[4, 4, 4, 3], 3);
        net.params.layers[0].bias[2] = -100.0;
        net.params.layers[1].bias[3] = -100.0;
        net.params.layers[2].bias = vec![0.1, -0.2, 0.3];
        let sizes = net.sizes();
        let mut ws = Workspace::new(&sizes, input.len() / 4);
        ws.input.copy_from_slice(input);
        fused::forward(&net, &mut ws);
        assert!(ws.hidden(0).chunks(4).all(|h| h[2] == 0.0 && h[0] + h[1] + h[3] > 0.0));
        assert!(ws.hidden(1).chunks(4).all(|h| h[3] == 0.0));
        net
    }

    #[test]
    fn replacing_a_silent_unit_leaves_the_output_bit_identical_and_resets_the_unit() {
        let input = random_input(4 * 6, 3);
        let mut net = net_with_dead_units(&input);
        let before = net.clone();
        let out_before = outputs(&net, &input);
        let mut opt = sgd(&net);
        // ρ·|eligible| = 0.25·4 = 1 unit per layer.
        let mut m = ContinualBackprop::new(&config(0.25, 0, false));
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), vec![vec![1, 1]]);
        assert_eq!(m.scratch.chosen, vec![vec![2], vec![3]]);
        assert_eq!(outputs(&net, &input), out_before);

        // Exactly this changed: the incoming row of each new unit (redrawn from U(−b, b)), its
        // bias (0) and its outgoing column (0). Layer 0's column is zeroed before layer 1's
        // new unit redraws its whole row, as in the reference.
        let mut expected = before.clone();
        for (l, r) in [(0, 2), (1, 3)] {
            let bound = init_bound(Some(Activation::Relu), net.params.layers[l].inputs);
            let row = net.params.layers[l].row(r).to_vec();
            assert!(row.iter().all(|w| w.abs() <= bound));
            assert_ne!(row, before.params.layers[l].row(r));
            expected.params.layers[l + 1].fill_column(r, 0.0);
            expected.params.layers[l].row_mut(r).copy_from_slice(&row);
            expected.params.layers[l].bias[r] = 0.0;
            // The unit starts over; the others age.
            let s = &m.layers[l];
            assert_eq!((s.age[r], s.utility[r], s.mean_activation[r]), (0, 0.0, 0.0));
            assert!((0..4).filter(|&i| i != r).all(|i| s.age[i] == 1 && s.utility[i] > 0.0));
        }
        assert_eq!(net, expected);
    }

    #[test]
    fn a_new_unit_adds_nothing_so_the_output_is_that_of_the_network_without_the_old_unit() {
        let input = random_input(5 * 8, 4);
        let mut net = random_net(&[5, 6, 6, 2], 4);
        let before = net.clone();
        let mut opt = sgd(&net);
        let mut m = ContinualBackprop::new(&config(0.5, 0, false));
        run(&mut m, &mut net, &mut opt, &input, 1);
        let mut without = before.clone();
        for (l, chosen) in m.scratch.chosen.iter().enumerate() {
            assert_eq!(chosen.len(), 3);
            for &r in chosen {
                without.params.layers[l + 1].fill_column(r, 0.0);
            }
        }
        assert_eq!(outputs(&net, &input), outputs(&without, &input));
        assert_ne!(outputs(&net, &input), outputs(&before, &input), "the removed units did contribute");
    }

    #[test]
    fn bias_correction_keeps_the_output_when_the_unit_fires_at_its_mean() {
        // One example and η = 0.5: after one step f̂ = h exactly, so moving W_out[:, r]·f̂_r
        // into the next bias reproduces the output up to rounding.
        let input = random_input(5, 5);
        for correct in [false, true] {
            let mut net = random_net(&[5, 6, 6, 2], 5);
            let out_before = outputs(&net, &input);
            let mut opt = sgd(&net);
            let cfg = CbpConfig { decay_rate: 0.5, bias_correction: correct, ..config(0.5, 0, false) };
            let mut m = ContinualBackprop::new(&cfg);
            run(&mut m, &mut net, &mut opt, &input, 1);
            let out_after = outputs(&net, &input);
            let change = out_before.iter().zip(&out_after).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            if correct {
                assert!(change < 1e-5, "{out_before:?} vs {out_after:?}");
            } else {
                assert!(change > 1e-3, "without the correction the output moves: {change}");
            }
        }
    }

    #[test]
    fn adam_state_is_reset_for_exactly_the_row_the_bias_and_the_column() {
        let input = random_input(4 * 6, 3);
        let mut net = net_with_dead_units(&input);
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Adam), &net);
        for (i, (_, state, _)) in opt.states_mut().into_iter().enumerate() {
            state.buffers_mut().for_each(|b| b.fill(0.1 * (i + 2) as f32));
        }
        let before = opt.clone();
        // Only the first hidden layer is mature (age 10 > m = 5): one unit, the silent unit 2.
        let mut m = ContinualBackprop::new(&config(0.25, 5, false));
        m.ensure_state(&net);
        m.layers[0].age = vec![10; 4];
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), vec![vec![1, 0]]);
        let r = 2;
        for ((name, after, fresh), (_, old)) in opt.states_mut().into_iter().zip(before.states()) {
            let mut expected = old.clone();
            expected.layers[0].row_mut(r).fill(fresh);
            expected.layers[0].bias[r] = fresh;
            expected.layers[1].fill_column(r, fresh);
            assert_eq!(after, &expected, "{name}");
            assert_ne!(after, old, "{name}");
        }
    }

    #[test]
    fn sgd_momentum_is_left_alone_as_in_the_reference() {
        let input = random_input(4 * 6, 3);
        let mut net = net_with_dead_units(&input);
        let config_sgd = OptimizerConfig { momentum: 0.9, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
        let mut opt = Optimizer::new(config_sgd, &net);
        opt.moment1.as_mut().unwrap().buffers_mut().for_each(|b| b.fill(0.5));
        let before = opt.moment1.clone();
        let mut m = ContinualBackprop::new(&config(0.25, 0, false));
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), vec![vec![1, 1]]);
        assert_eq!(opt.moment1, before);
    }

    #[test]
    fn immature_units_are_never_replaced() {
        // ρ = 1 replaces every eligible unit: with m = 3 the units are replaced every 4th step,
        // when their age reaches 4.
        let mut net = random_net(&[3, 8, 2], 6);
        let mut opt = sgd(&net);
        let input = random_input(3 * 2, 6);
        let mut m = ContinualBackprop::new(&config(1.0, 3, true));
        let counts: Vec<u64> =
            run(&mut m, &mut net, &mut opt, &input, 12).into_iter().map(|c| c[0]).collect();
        assert_eq!(counts, vec![0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 8]);

        // Mixed ages: a unit replaced in a step was older than m after that step's increment.
        let mut net = random_net(&[3, 8, 8, 2], 7);
        let mut m = ContinualBackprop::new(&config(0.3, 4, true));
        let mut grads = Layers::zeros_like(&net.params);
        let mut replaced = 0;
        with_step(&mut net, &mut grads, &mut opt, &random_input(3 * 2, 7), |cx| {
            for _ in 0..300 {
                let ages: Vec<Vec<u64>> = m.layers.iter().map(|s| s.age.clone()).collect();
                m.after_update(cx);
                for (l, s) in m.layers.iter().enumerate() {
                    for (i, &a) in s.age.iter().enumerate() {
                        let old = ages.get(l).map_or(0, |a| a[i]);
                        if a == 0 {
                            assert!(old + 1 > 4, "unit {i} of layer {l} replaced at age {}", old + 1);
                            replaced += 1;
                        } else {
                            assert_eq!(a, old + 1);
                        }
                    }
                }
            }
        });
        assert!(replaced > 100, "{replaced}");
    }

    #[test]
    fn output_units_are_never_replaced() {
        let mut net = random_net(&[3, 8, 8, 4], 8);
        net.params.layers[2].bias = vec![0.1, 0.2, 0.3, 0.4];
        let before = net.clone();
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Adam), &net);
        let mut m = ContinualBackprop::new(&config(0.3, 2, true));
        run(&mut m, &mut net, &mut opt, &random_input(3 * 2, 8), 50);
        assert_eq!(m.layers.len(), 2, "state covers the hidden layers only");
        let (out, old) = (&net.params.layers[2], &before.params.layers[2]);
        assert_eq!(out.bias, old.bias);
        for k in 0..out.outputs {
            // Output rows are never redrawn: each weight is its old value or a zeroed column.
            assert!(out.row(k).iter().zip(old.row(k)).all(|(&w, &w0)| w == w0 || w == 0.0));
        }
        let adam_bias = &opt.beta1_power.as_ref().unwrap().layers[2].bias;
        assert!(adam_bias.iter().all(|&p| p == 1.0), "the output biases' Adam state is never touched");
    }

    #[test]
    fn a_zero_replacement_rate_is_plain_backprop() {
        let mut net = random_net(&[3, 8, 2], 9);
        let before = net.clone();
        let mut opt = sgd(&net);
        let mut m = ContinualBackprop::new(&config(0.0, 0, false));
        run(&mut m, &mut net, &mut opt, &random_input(6, 9), 20);
        assert_eq!(net, before);
        assert!(m.layers.is_empty());
    }

    #[test]
    fn saved_state_restores_every_counter_and_continues_identically() {
        let input = random_input(3 * 4, 10);
        let mut net = random_net(&[3, 8, 8, 2], 10);
        let mut opt = sgd(&net);
        let mut m = ContinualBackprop::new(&config(0.07, 3, true));
        run(&mut m, &mut net, &mut opt, &input, 37);
        let mut state = MethodState::default();
        m.save(&mut state);
        let mut restored = ContinualBackprop::new(&config(0.07, 3, true));
        restored.load(&state).unwrap();
        assert_eq!(restored.layers, m.layers);
        assert!(m.layers.iter().all(|s| s.replaced_total > 0 && s.accumulated > 0.0));
        let mut net2 = net.clone();
        let mut opt2 = opt.clone();
        run(&mut m, &mut net, &mut opt, &input, 20);
        run(&mut restored, &mut net2, &mut opt2, &input, 20);
        assert_eq!(net, net2);
        assert_eq!(restored.layers, m.layers);

        state.tensors.remove("utility.1");
        let err = ContinualBackprop::new(&CbpConfig::default()).load(&state).unwrap_err().to_string();
        assert!(err.contains("utility.1"), "{err}");
    }

    #[test]
    fn the_bias_correction_is_skipped_only_where_it_is_exactly_one() {
        for eta in [0.0f32, 0.5, 0.9, 0.99, 0.999] {
            let a = saturation_age(eta);
            assert_eq!(bias_correction(eta, a), 1.0, "η = {eta}");
            assert!(a == 1 || bias_correction(eta, a - 1) < 1.0, "η = {eta}");
            assert_eq!(bias_correction(eta, a + 1000), 1.0);
        }
        assert_eq!(saturation_age(0.0), 1);
        // 0.99^a < 2^−25 from a ≈ 1,725 on; f32 rounds 1 − 0.99^a to 1 a little earlier.
        assert!((1_600..1_800).contains(&saturation_age(0.99)), "{}", saturation_age(0.99));
    }

    #[test]
    fn mean_abs_is_the_mean_magnitude_whatever_the_length() {
        for n in [1, 7, 8, 9, 20, 31, 32, 33, 784] {
            let xs: Vec<f32> =
                (0..n).map(|j| if j % 3 == 0 { -(j as f32) } else { j as f32 * 0.5 }).collect();
            let expected = xs.iter().map(|x| x.abs() as f64).sum::<f64>() / n as f64;
            assert!((mean_abs(&xs) as f64 - expected).abs() <= 1e-6 * expected.max(1.0), "n = {n}");
        }
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let check = |c: CbpConfig| Cbp::check(&c);
        assert!(check(CbpConfig::default()).is_ok());
        let err = check(CbpConfig { replacement_rate: 1.5, ..CbpConfig::default() }).unwrap_err();
        assert!(err.contains("replacement_rate") && err.contains("[0, 1]"), "{err}");
        let err = check(CbpConfig { decay_rate: 1.0, ..CbpConfig::default() }).unwrap_err();
        assert!(err.contains("decay_rate") && err.contains("[0, 1)"), "{err}");
        assert!(check(CbpConfig { replacement_rate: f64::NAN, ..CbpConfig::default() }).is_err());
        let parsed: Result<CbpConfig, _> = serde_json::from_value(serde_json::json!({"utility": "weight"}));
        let err = parsed.unwrap_err().to_string();
        assert!(err.contains("contribution") && err.contains("adaptable_contribution"), "{err}");
    }
}
