//! `redo`: recycling dormant neurons (Sokar, Agarwal, Castro & Evci 2023, "The dormant neuron
//! phenomenon in deep reinforcement learning").
//!
//! Units whose activity falls far below their layer's typical activity stop contributing and,
//! under ReLU, often stop learning. Every `every_steps` optimiser steps ReDo scores every hidden
//! unit i of layer ℓ by
//!
//! ```text
//! s_i = E_x |h_i(x)| / ( (1/H) Σ_k E_x |h_k(x)| + 1e-9 )      (τ-dormant score)
//! ```
//!
//! ([`Features::dormant_scores`]) and recycles each unit with s_i ≤ τ: its incoming weights are
//! redrawn from the initial distribution and its bias zeroed ([`Mlp::reinitialize_incoming`]),
//! its outgoing weights are set to zero — so the network's function is unchanged at that
//! moment, up to the dormant unit's own small contribution, which disappears — and the
//! optimiser state of those weights is cleared (`Optimizer::reset_incoming` /
//! `reset_outgoing`).
//!
//! Where the scores come from follows the reference code (`google/dopamine`,
//! `labs/redo/recycled_dqn_agents.py`): after the update, on a separate batch of
//! `batch_size_statistics` = 256 states sampled from the replay buffer, i.e. recent training
//! inputs, through the updated network. Supervised streams have no replay buffer, so ReDo keeps
//! its own: the last `probe` training inputs it has seen (a ring buffer, checkpointed), scored
//! with the network after the step's update. Recycling follows every `every_steps`-th update
//! (the reference counts updates from 0 and skips update 0, so its first recycling is one update
//! later).
//!
//! Differences from the reference: its incoming weights are redrawn with the network's own
//! initialiser (Xavier there, Kaiming-uniform here, as `Mlp::new`); it resets Adam's moments of
//! the recycled weights but not of the bias and keeps Adam's global step count, while clorch's
//! optimisers keep their state per element and `reset_incoming` also restarts the bias's
//! moments and bias correction, as for a fresh unit.
//!
//! ReDo works on online streams too: it is step-based and needs no task boundaries. Conv nets
//! have their own version, [`super::redo_conv`], with output channels as units.
//!
//! # Events
//!
//! `redo.recycled` after each task: `{"per_layer": [n_0, n_1, …], "total": n}`, the units of
//! each hidden layer recycled during the task (a unit recycled twice counts twice).

use serde::{Deserialize, Serialize};

use super::{ContinualMethod, MethodError, MethodKind, MethodState, StepContext, TaskContext};
use crate::metrics::Features;
use crate::model::convnet::ConvNet;
use crate::model::{fused, Mlp, Workspace};
use crate::optim::{OptimizerConfig, OptimizerKind};
use crate::protocol::payload::{MethodPayload, RedoRecycled};

/// Hyper-parameters of `redo`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedoConfig {
    /// F: recycle after every F-th optimiser step (default 1000, the paper's recycling period
    /// for its DQN agents). A whole number ≥ 1.
    #[serde(serialize_with = "super::params::whole_number")]
    pub every_steps: f64,
    /// τ: units with τ-dormant score s_i ≤ τ are recycled (default 0.1, the paper's τ for its
    /// value-based agents). ≥ 0; 0 recycles only units that are silent on the whole probe.
    pub tau: f64,
    /// Recent training inputs the scores are measured on (default 256, the reference code's
    /// `batch_size_statistics`). A whole number ≥ 1.
    #[serde(serialize_with = "super::params::whole_number")]
    pub probe: f64,
}

impl Default for RedoConfig {
    fn default() -> Self {
        RedoConfig { every_steps: 1000.0, tau: 0.1, probe: 256.0 }
    }
}

/// The ring buffer of recent training inputs, row-major, `capacity × dim` (shared with the
/// conv-net version, [`super::redo_conv`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Probe {
    pub(super) inputs: Vec<f32>,
    pub(super) dim: usize,
    /// Rows holding an input (grows to the capacity, then stays).
    pub(super) filled: usize,
    /// Row the next input is written to.
    pub(super) next: usize,
}

impl Probe {
    pub(super) fn push(&mut self, batch: &[f32], dim: usize, capacity: usize) {
        if self.dim != dim {
            *self = Probe { inputs: vec![0.0; capacity * dim], dim, filled: 0, next: 0 };
        }
        for row in batch.chunks_exact(dim) {
            self.inputs[self.next * dim..(self.next + 1) * dim].copy_from_slice(row);
            self.next = (self.next + 1) % capacity;
            self.filled = (self.filled + 1).min(capacity);
        }
    }
}

/// ReDo: recycles τ-dormant hidden units every F steps.
///
/// State: the probe of recent inputs (`probe`, with its fill level and position in the meta)
/// and the units recycled during the current task. Fresh weights draw from the method's
/// random stream, which the trainer checkpoints.
pub struct Redo {
    every_steps: u64,
    tau: f64,
    capacity: usize,
    probe: Probe,
    recycled: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    dim: usize,
    filled: usize,
    next: usize,
    recycled: Vec<u64>,
}

impl Redo {
    /// The τ-dormant units of each hidden layer of `net` on the probe.
    fn dormant_units(&self, net: &Mlp) -> Vec<Vec<usize>> {
        let rows = self.probe.filled;
        let mut ws = Workspace::new(&net.sizes(), rows);
        ws.input.copy_from_slice(&self.probe.inputs[..rows * self.probe.dim]);
        fused::forward(net, &mut ws);
        (0..net.hidden_layers())
            .map(|l| match Features::new(ws.hidden(l), rows, net.layers()[l].outputs) {
                Ok(features) => features
                    .dormant_scores()
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| s <= self.tau)
                    .map(|(i, _)| i)
                    .collect(),
                // Non-finite activations: the run is diverging, and the trainer stops it at the
                // next loss; there is nothing meaningful to score.
                Err(e) => {
                    tracing::warn!("redo: hidden layer {l} not scored: {e}");
                    Vec::new()
                }
            })
            .collect()
    }
}

impl ContinualMethod for Redo {
    fn after_update(&mut self, cx: &mut StepContext<'_>) {
        let dim = cx.net.sizes()[0];
        self.probe.push(&cx.workspace.input, dim, self.capacity);
        if !(cx.step + 1).is_multiple_of(self.every_steps) {
            return;
        }
        let dormant = self.dormant_units(cx.net);
        if self.recycled.len() < dormant.len() {
            self.recycled.resize(dormant.len(), 0);
        }
        for (layer, units) in dormant.iter().enumerate() {
            for &unit in units {
                cx.net.reinitialize_incoming(layer, unit, cx.rng);
                cx.net.params.layers[layer + 1].fill_column(unit, 0.0);
                cx.optimizer.reset_incoming(layer, unit);
                cx.optimizer.reset_outgoing(layer, unit);
            }
            self.recycled[layer] += units.len() as u64;
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        let mut per_layer = std::mem::take(&mut self.recycled);
        per_layer.resize(cx.net.hidden_layers(), 0);
        let total: u64 = per_layer.iter().sum();
        cx.report.push(MethodPayload::RedoRecycled(RedoRecycled { per_layer, total }));
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        save_probe(&self.probe, &self.recycled, state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        (self.probe, self.recycled) = load_probe(state, self.capacity)?;
        Ok(())
    }
}

/// Writes the probe and the per-layer recycled counts into `state`.
pub(super) fn save_probe(probe: &Probe, recycled: &[u64], state: &mut MethodState) {
    let meta = Meta { dim: probe.dim, filled: probe.filled, next: probe.next, recycled: recycled.to_vec() };
    state.meta = serde_json::to_value(meta).expect("integers serialise");
    state.put_f32("probe", probe.inputs.clone());
}

/// Reads back what [`save_probe`] wrote, for a probe of `capacity` rows.
pub(super) fn load_probe(state: &MethodState, capacity: usize) -> Result<(Probe, Vec<u64>), MethodError> {
    let meta: Meta = serde_json::from_value(state.meta.clone())
        .map_err(|e| MethodError::State(format!("redo probe position: {e}")))?;
    let inputs = state.f32("probe")?.to_vec();
    if inputs.len() != capacity * meta.dim || meta.filled > capacity || meta.next >= capacity.max(1) {
        return Err(MethodError::State(format!(
            "redo probe of {} values, {} filled, next {}, does not fit {} rows of {} inputs",
            inputs.len(),
            meta.filled,
            meta.next,
            capacity,
            meta.dim
        )));
    }
    Ok((Probe { inputs, dim: meta.dim, filled: meta.filled, next: meta.next }, meta.recycled))
}

/// The `redo` kind.
pub struct RedoKind;

impl MethodKind for RedoKind {
    const KIND: &'static str = "redo";
    const SUMMARY: &'static str =
        "recycles τ-dormant hidden units every F steps: fresh incoming, zero outgoing weights (Sokar et al. 2023)";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    type Config = RedoConfig;
    fn check(c: &RedoConfig) -> Result<(), String> {
        for (name, v) in [("every_steps", c.every_steps), ("probe", c.probe)] {
            if !(v >= 1.0 && v.fract() == 0.0 && v <= 1e12) {
                return Err(format!("`{name}` must be a whole number ≥ 1, not {v}"));
            }
        }
        if !(c.tau.is_finite() && c.tau >= 0.0) {
            return Err(format!("`tau` must be a number ≥ 0, not {}", c.tau));
        }
        Ok(())
    }
    fn build(c: RedoConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(Redo {
            every_steps: c.every_steps as u64,
            tau: c.tau,
            capacity: c.probe as usize,
            probe: Probe::default(),
            recycled: Vec::new(),
        })
    }
    fn build_conv(c: RedoConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(super::redo_conv::ConvRedo::new(&c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::context::testing::{synthetic_task, train_steps, with_step, with_task_of};
    use crate::model::{init_bound, Layers};
    use crate::optim::Optimizer;
    use crate::protocol::Activation;
    use crate::rng;

    fn redo(every_steps: u64, tau: f64, probe: usize) -> Redo {
        Redo { every_steps, tau, capacity: probe, probe: Probe::default(), recycled: Vec::new() }
    }

    fn outputs(net: &Mlp, input: &[f32]) -> Vec<f32> {
        let mut ws = Workspace::new(&net.sizes(), input.len() / net.sizes()[0]);
        ws.input.copy_from_slice(input);
        fused::forward(net, &mut ws);
        ws.outputs().to_vec()
    }

    #[test]
    fn a_forced_dormant_unit_is_recycled_without_changing_the_output_and_others_are_untouched() {
        let mut net = Mlp::new(&[5, 8, 6, 3], Activation::Relu, &mut rng::stream(1, "t", 0));
        // Unit 2 of the first hidden layer: zero incoming weights and bias, so ReLU holds it at 0.
        net.params.layers[0].row_mut(2).fill(0.0);
        net.params.layers[0].bias[2] = 0.0;
        let config = OptimizerConfig::defaults(OptimizerKind::Adam);
        let mut opt = Optimizer::new(config, &net);
        // Give every weight Adam state, so clearing shows.
        let mut grads = Layers::zeros_like(&net.params);
        grads.buffers_mut().flatten().enumerate().for_each(|(i, g)| *g = 0.01 * ((i % 7) as f32 - 3.0));
        // A dead ReLU unit gets no gradient, so it stays dead through the update.
        grads.layers[0].row_mut(2).fill(0.0);
        grads.layers[0].bias[2] = 0.0;
        let mut r = rng::stream(4, "inputs", 0);
        let batch: Vec<f32> = (0..16 * 5).map(|_| rand::Rng::gen_range(&mut r, -1.0f32..1.0)).collect();
        let mut method = redo(1, 0.1, 16);
        let (mut before_recycling, mut opt_before) = (net.clone(), opt.clone());
        with_step(&mut net, &mut grads, &mut opt, &batch, |cx| {
            cx.optimizer.step(cx.net, cx.grads);
            before_recycling = cx.net.clone();
            opt_before = cx.optimizer.clone();
            method.after_update(cx);
        });
        // Which units the scores call dormant, measured independently on the same inputs.
        let mut ws = Workspace::new(&before_recycling.sizes(), 16);
        ws.input.copy_from_slice(&batch);
        fused::forward(&before_recycling, &mut ws);
        let expected: Vec<Vec<usize>> = (0..2)
            .map(|l| {
                let scores = Features::new(ws.hidden(l), 16, [8, 6][l]).unwrap().dormant_scores();
                (0..scores.len()).filter(|&i| scores[i] <= 0.1).collect()
            })
            .collect();
        // On these inputs only the forced unit is dormant.
        assert_eq!(expected, [vec![2], vec![]]);
        assert_eq!(method.recycled, [1, 0]);

        let bound = init_bound(Some(Activation::Relu), 5);
        let unit = net.layers()[0].row(2);
        assert!(unit.iter().all(|w| w.abs() <= bound) && unit.iter().any(|&w| w != 0.0), "{unit:?}");
        assert_eq!(net.layers()[0].bias[2], 0.0);
        assert!((0..6).all(|k| net.layers()[1].row(k)[2] == 0.0));
        // The output is bit-identical on any input: the new unit's outgoing weights are zero and
        // the old one contributed exactly zero.
        for input in [&batch[..], &[0.3, -1.0, 2.0, 0.5, 0.1][..]] {
            assert_eq!(outputs(&net, input), outputs(&before_recycling, input));
        }
        // Everything not attached to a recycled unit is untouched, weights and Adam state.
        let recycled = |l: usize, i: usize| expected.get(l).is_some_and(|u| u.contains(&i));
        for (l, (a, b)) in net.layers().iter().zip(before_recycling.layers()).enumerate() {
            for i in 0..a.outputs {
                for j in 0..a.inputs {
                    let attached = recycled(l, i) || (l > 0 && recycled(l - 1, j));
                    if !attached {
                        assert_eq!(a.row(i)[j], b.row(i)[j], "layer {l} weight {i},{j}");
                    }
                }
                if !recycled(l, i) {
                    assert_eq!(a.bias[i], b.bias[i]);
                }
            }
        }
        for ((name, now, _), (_, was)) in opt.states_mut().into_iter().zip(opt_before.states()) {
            let fresh = if name.ends_with("power") { 1.0 } else { 0.0 };
            assert!(
                now.layers[0].row(2).iter().chain([&now.layers[0].bias[2]]).all(|&v| v == fresh),
                "{name}"
            );
            assert!((0..6).all(|k| now.layers[1].row(k)[2] == fresh), "{name}");
            assert_ne!(was.layers[1].row(0)[2], fresh, "{name} had state to clear");
            assert_eq!(now.layers[2], was.layers[2], "{name} of the output layer");
        }
    }

    #[test]
    fn recycling_happens_after_every_f_th_step_only() {
        let mut net = Mlp::new(&[5, 8, 3], Activation::Relu, &mut rng::stream(2, "t", 0));
        net.params.layers[0].row_mut(4).fill(0.0);
        net.params.layers[0].bias[4] = -1.0;
        let task = synthetic_task(&net, 0, 6);
        let mut opt = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), &net);
        let mut r = rng::stream(3, "method", 0);
        let mut method = redo(4, 0.0, 8);
        train_steps(&mut method, &mut net, &mut opt, &mut r, &task, 0..3, 0..3, 2);
        assert!(method.recycled.is_empty(), "nothing before step 4");
        assert!(net.layers()[0].row(4).iter().all(|&w| w == 0.0));
        train_steps(&mut method, &mut net, &mut opt, &mut r, &task, 0..3, 3..4, 2);
        assert_eq!(method.recycled, [1]);
        assert!(net.layers()[0].row(4).iter().any(|&w| w != 0.0));
        let (_, report) = with_task_of(&mut net, &task, 0..3, &mut r, |cx| method.task_finished(cx).unwrap());
        assert_eq!(report, [MethodPayload::RedoRecycled(RedoRecycled { per_layer: vec![1], total: 1 })]);
        assert!(method.recycled.is_empty());
    }

    #[test]
    fn the_probe_keeps_the_latest_inputs_and_survives_a_checkpoint() {
        let mut probe = Probe::default();
        probe.push(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 2);
        assert_eq!((probe.inputs.as_slice(), probe.filled, probe.next), (&[5.0, 6.0, 3.0, 4.0][..], 2, 1));
        let mut method = redo(3, 0.1, 2);
        method.probe = probe;
        method.recycled = vec![3, 1];
        let mut state = MethodState::default();
        method.save(&mut state);
        let mut restored = redo(3, 0.1, 2);
        restored.load(&state).unwrap();
        assert_eq!((restored.probe.clone(), restored.recycled.clone()), (method.probe.clone(), vec![3, 1]));
        let err = redo(3, 0.1, 5).load(&state).unwrap_err().to_string();
        assert!(err.contains("does not fit 5 rows of 2 inputs"), "{err}");
    }
}
