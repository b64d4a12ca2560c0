//! `redo` on conv nets: recycling dormant channels (Sokar, Agarwal, Castro & Evci 2023; the
//! MLP version, [`super::redo`], describes the method and its reference code).
//!
//! A unit is an output channel of a unit group ([`super::conv_units`]: a `conv2d` or hidden
//! `linear` layer followed, through an optional batch norm, by ReLU, pooling or flatten and
//! a consumer whose weights can silence it; the first convolution of every basic block).
//! Every `every_steps` optimiser steps, channel i of each group is scored on the probe of
//! recent training inputs by
//!
//! ```text
//! s_i = mean_{x,p} |h_i(x)_p| / ( (1/C) Σ_k mean_{x,p} |h_k(x)_p| + 1e-9 )
//! ```
//!
//! with h the ReLU's output (before any pooling) and p its positions — the paper's τ-dormant
//! score with the expectation taken over the feature map too, as the reference code averages
//! a convolution's activations over every axis but the channel's. Each channel with s_i ≤ τ
//! is recycled: its incoming kernel redrawn from the network's initial distribution
//! U(±1/√fan_in), its bias zeroed, its batch norm channel (if any) reset to γ = 1, β = 0,
//! running mean 0 and variance 1, every outgoing block (its kernel in each row of the next
//! convolution, its flattened positions' columns in the next linear layer) zeroed, and the
//! optimiser state of all of those weights cleared — so the network's output is unchanged
//! at that moment, up to the dormant channel's own small contribution.
//!
//! Differences from the reference code, besides those of the MLP version: the probe passes
//! through the network in evaluation mode (batch norm on its running statistics) in chunks
//! of 64 inputs, so that a large probe through a ResNet fits in memory and each channel's
//! score does not depend on how the probe is cut; the reference's networks have no batch
//! norm. Batch norm's channel reset follows continual backprop's reference code
//! (`cbp_conv.py`), ReDo's reference having none to reset. Basic blocks' output channels and
//! layers feeding an identity shortcut are not recycled (see [`super::conv_units`]); a
//! network with no unit group is refused when the run begins.
//!
//! # Events
//!
//! `redo.recycled` after each task, as the MLP version, with one entry per unit group in
//! network order.

use super::conv_units::{describe, unit_groups, UnitGroup};
use super::redo::{load_probe, save_probe, Probe, RedoConfig};
use super::{ContinualMethod, MethodError, MethodState, StepContext, TaskContext};
use crate::metrics::DORMANT_EPSILON;
use crate::model::convnet::{forward_pass, ConvNet, Mode, Workspace};
use crate::protocol::payload::{MethodPayload, RedoRecycled};

/// Probe inputs per forward pass.
const CHUNK: usize = 64;

/// ReDo on a conv net: recycles τ-dormant channels every F steps.
pub struct ConvRedo {
    every_steps: u64,
    tau: f64,
    capacity: usize,
    probe: Probe,
    recycled: Vec<u64>,
    groups: Vec<UnitGroup>,
}

impl ConvRedo {
    /// A fresh method for `config`.
    pub fn new(config: &RedoConfig) -> Self {
        ConvRedo {
            every_steps: config.every_steps as u64,
            tau: config.tau,
            capacity: config.probe as usize,
            probe: Probe::default(),
            recycled: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// The τ-dormant channels of each unit group of `net` on the probe.
    fn dormant_units(&self, net: &ConvNet) -> Vec<Vec<usize>> {
        let (rows, dim) = (self.probe.filled, self.probe.dim);
        let mut sums: Vec<Vec<f64>> = self.groups.iter().map(|g| vec![0.0; g.channels]).collect();
        let mut ws = Workspace::new(net, CHUNK.min(rows).max(1));
        for start in (0..rows).step_by(CHUNK) {
            let n = CHUNK.min(rows - start);
            ws.set_batch(net, n);
            ws.input.copy_from_slice(&self.probe.inputs[start * dim..(start + n) * dim]);
            forward_pass(net, &mut ws, Mode::Eval)
                .expect("an evaluation-mode pass has no batch-size condition");
            for (group, sums) in self.groups.iter().zip(&mut sums) {
                let p = group.relu_positions;
                for sample in group.relu_values(&ws).chunks_exact(group.channels * p) {
                    for (s, plane) in sums.iter_mut().zip(sample.chunks_exact(p)) {
                        *s += plane.iter().map(|&h| f64::from(h.abs())).sum::<f64>();
                    }
                }
            }
        }
        self.groups
            .iter()
            .zip(sums)
            .enumerate()
            .map(|(g, (group, sums))| {
                if sums.iter().any(|s| !s.is_finite()) {
                    // The run is diverging, and the trainer stops it at the next loss.
                    tracing::warn!("redo: unit group {g} not scored: non-finite activations");
                    return Vec::new();
                }
                let count = (rows * group.relu_positions) as f64;
                let means: Vec<f64> = sums.iter().map(|s| s / count).collect();
                let denominator = means.iter().sum::<f64>() / group.channels as f64 + DORMANT_EPSILON;
                (0..group.channels).filter(|&i| means[i] / denominator <= self.tau).collect()
            })
            .collect()
    }
}

impl ContinualMethod<ConvNet> for ConvRedo {
    fn begin(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        if unit_groups(cx.net).is_empty() {
            return Err(MethodError::Failed(format!("redo: {}", describe(&[]))));
        }
        Ok(())
    }

    fn after_update(&mut self, cx: &mut StepContext<'_, ConvNet>) {
        let dim = cx.net.input_shape().len();
        self.probe.push(&cx.workspace.input, dim, self.capacity);
        if !(cx.step + 1).is_multiple_of(self.every_steps) {
            return;
        }
        if self.groups.is_empty() {
            self.groups = unit_groups(cx.net);
        }
        let dormant = self.dormant_units(cx.net);
        if self.recycled.len() < dormant.len() {
            self.recycled.resize(dormant.len(), 0);
        }
        for ((group, units), recycled) in self.groups.iter().zip(&dormant).zip(&mut self.recycled) {
            for &unit in units {
                group.reinitialize(cx.net, unit, cx.rng);
                group.for_each_outgoing(cx.net, unit, |block, _| block.fill(0.0));
                group.reset_optimizer(cx.optimizer, unit);
            }
            *recycled += units.len() as u64;
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        let mut per_layer = std::mem::take(&mut self.recycled);
        per_layer.resize(unit_groups(cx.net).len(), 0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::conv_units::testing::{chain_net, inputs, optimizer, outputs, with_step};
    use crate::model::convnet::Layer;
    use crate::model::Parameters;
    use crate::optim::OptimizerKind;

    fn redo(every_steps: u64, tau: f64, probe: usize) -> ConvRedo {
        ConvRedo::new(&RedoConfig { every_steps: every_steps as f64, tau, probe: probe as f64 })
    }

    /// Channel scores measured independently: mean |ReLU output| per channel over inputs and
    /// positions, over the layer mean, in evaluation mode.
    fn scores(net: &ConvNet, input: &[f32], relu: usize, channels: usize) -> Vec<f64> {
        let mut ws = Workspace::new(net, input.len() / 72);
        ws.input.copy_from_slice(input);
        forward_pass(net, &mut ws, Mode::Eval).unwrap();
        let values = ws.layer_output(relu);
        let per_channel = values.len() / channels;
        let mut means = vec![0.0f64; channels];
        for (i, v) in values.iter().enumerate() {
            means[(i / (per_channel / (input.len() / 72))) % channels] += f64::from(v.abs());
        }
        means.iter_mut().for_each(|m| *m /= per_channel as f64);
        let layer = means.iter().sum::<f64>() / channels as f64;
        means.iter().map(|m| m / (layer + 1e-9)).collect()
    }

    #[test]
    fn a_dormant_channel_is_recycled_without_changing_the_output_and_an_active_one_is_not() {
        let input = inputs(8, 7);
        let mut net = chain_net(7);
        // Channel 1 of the first convolution: its batch norm outputs −1, ReLU holds it at 0.
        let Layer::BatchNorm2d(n) = &mut net.layers[1] else { panic!() };
        (n.gamma[1], n.beta[1]) = (0.0, -1.0);
        // Everything else clearly active.
        let Layer::Conv2d(c) = &mut net.layers[4] else { panic!() };
        c.bias = Some(vec![0.5; 4]);
        let Layer::Linear(l) = &mut net.layers[7] else { panic!() };
        l.bias = vec![0.5; 5];
        let expected: Vec<Vec<usize>> = [(2, 3), (5, 4), (8, 5)]
            .iter()
            .map(|&(relu, channels)| {
                let s = scores(&net, &input, relu, channels);
                (0..channels).filter(|&i| s[i] <= 0.1).collect()
            })
            .collect();
        assert_eq!(expected, [vec![1], vec![], vec![]], "only the forced channel is dormant here");

        let mut opt = optimizer(OptimizerKind::Sgd, &net);
        opt.moment1.as_mut().unwrap().slices_mut().into_iter().for_each(|b| b.fill(0.5));
        let mut method = redo(2, 0.1, 16);
        let before = net.clone();
        // Step 0 is not a recycling step (F = 2); step 1 is.
        with_step(&mut net, &mut opt, &input, 0, |cx| method.after_update(cx));
        assert_eq!(net, before);
        with_step(&mut net, &mut opt, &input, 1, |cx| method.after_update(cx));
        assert_eq!(method.recycled, [1, 0, 0]);
        for mode in [Mode::Train, Mode::Eval] {
            assert_eq!(outputs(&net, &input, mode), outputs(&before, &input, mode));
        }
        // Recycled: channel 1's kernel redrawn within U(±1/√18), bias 0, batch norm reset, its
        // kernels in the next convolution zero, and the momentum of all of those cleared.
        let Layer::Conv2d(c) = &net.layers[0] else { panic!() };
        let Layer::Conv2d(old) = &before.layers[0] else { panic!() };
        assert!(c.row(1).iter().all(|w| w.abs() <= 1.0 / 18f32.sqrt()) && c.row(1) != old.row(1));
        assert_eq!((c.row(0), c.row(2)), (old.row(0), old.row(2)), "active channels are untouched");
        assert_eq!(c.bias.as_ref().unwrap()[1], 0.0);
        let Layer::BatchNorm2d(n) = &net.layers[1] else { panic!() };
        assert_eq!((n.gamma[1], n.beta[1], n.running_mean[1], n.running_var[1]), (1.0, 0.0, 0.0, 1.0));
        let Layer::Conv2d(next) = &net.layers[4] else { panic!() };
        assert!(next.weight.chunks_exact(27).all(|row| row[9..18].iter().all(|&w| w == 0.0)));
        let v = opt.moment1.as_ref().unwrap();
        let Layer::Conv2d(vc) = &v.layers[0] else { panic!() };
        assert!(vc.row(1).iter().all(|&x| x == 0.0) && vc.row(0).iter().all(|&x| x == 0.5));
        let Layer::Conv2d(vn) = &v.layers[4] else { panic!() };
        assert!(vn.weight.chunks_exact(27).all(|row| row[9..18].iter().all(|&x| x == 0.0) && row[0] == 0.5));
    }

    #[test]
    fn the_probe_and_the_counts_survive_a_checkpoint() {
        let input = inputs(3, 8);
        let mut net = chain_net(8);
        let mut opt = optimizer(OptimizerKind::Adam, &net);
        let mut method = redo(5, 0.1, 4);
        with_step(&mut net, &mut opt, &input, 0, |cx| method.after_update(cx));
        method.recycled = vec![2, 0, 1];
        let mut state = MethodState::default();
        method.save(&mut state);
        let mut restored = redo(5, 0.1, 4);
        restored.load(&state).unwrap();
        assert_eq!((&restored.probe, &restored.recycled), (&method.probe, &method.recycled));
        assert_eq!(restored.probe.filled, 3);
        assert!(redo(5, 0.1, 6).load(&state).is_err());
    }
}
