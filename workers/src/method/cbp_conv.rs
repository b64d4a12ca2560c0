//! `cbp` on conv nets: continual backprop's generate-and-test over output channels, after
//! the reference's `lop/algos/convGnT.py` (its Continual ImageNet ConvNet), with the batch
//! norm reset of `lop/algos/cbp_conv.py` and `res_gnt.py` (its class-incremental CIFAR-100
//! ResNet-18). The recipe parameters and their meaning are those of the MLP version
//! ([`super::cbp`], whose module docs give the algorithm); what differs is what a unit is.
//!
//! # Units
//!
//! A unit is an output channel of a layer whose channels can be silenced by zeroing weights
//! — a `conv2d` or hidden `linear` layer followed (through an optional batch norm) by ReLU,
//! pooling or flatten and a consumer, and the first convolution of every basic block
//! ([`super::conv_units`] lists the rule and what it leaves out: a basic block's output
//! channels and a layer feeding an identity shortcut). A network with no such layer is
//! refused when the run begins (the method would be plain backprop under another name).
//!
//! # Per step and per unit group (channels i, consumer input h, P values per channel)
//!
//! h is what the consumer reads in this step's forward pass: the ReLU's output after any
//! pooling and flattening — convGnT's `features`, the pooled maps. With B the batch:
//!
//! - f_i ← η·f_i + (1 − η)·mean_{B,P} h_i, f̂_i = f_i / (1 − η^{a_i}) (one mean per channel);
//! - activity a_{i,p} = mean_B |h_{i,p}| (`contribution`) or mean_B |h_{i,p} − f̂_i|
//!   (`adaptable_contribution`);
//! - consumer a convolution (or a projecting block's convolution and projection): y_i =
//!   mean |W_out| over all of channel i's outgoing weights (every row, every kernel tap) ×
//!   mean_p a_{i,p} — convGnT's `weight.abs().mean(dim=(0, 2, 3))` times the mean over the
//!   map;
//! - consumer a linear layer (after `flatten` each position has its own weights): y_i =
//!   mean_p (mean_k |W[k, i·P + p]| · a_{i,p}) — convGnT's conv→linear formula with
//!   `num_last_filter_outputs` = P;
//! - `adaptable_contribution` divides by mean |W_in[i]| over the channel's whole kernel;
//! - ages, running utility, eligibility, counting and choosing exactly as the MLP version.
//!
//! Replacing channel r: its incoming kernel is redrawn from U(±1/√fan_in), its bias zeroed,
//! its batch norm channel (if any) reset to γ = 1, β = 0, running mean 0, running variance 1;
//! every outgoing block — the r-th kernel of each row of the next convolution, the H·W
//! columns of its flattened positions in the next linear layer — is set to zero. With Adam,
//! the moments and step counts of the row, bias, γ, β and outgoing blocks are reset. The
//! network's output is therefore unchanged at the moment of replacement, bar the old
//! channel's own contribution, which is gone.
//!
//! # Differences from the reference code
//!
//! - convGnT replaces ρ·(all units) per step, the MLP code here (and `cbp_conv.py`)
//!   ρ·(eligible units); this version uses the MLP version's rule, so a recipe's
//!   `replacement_rate` means the same on both families. `accumulate: false` (not in
//!   convGnT) is available as in the MLP version.
//! - convGnT redraws hidden *linear* layers from its Kaiming bound gain·√(3/fan_in); here
//!   every layer is redrawn from the network's own initial distribution U(±1/√fan_in)
//!   (PyTorch's default, which is also convGnT's bound for convolutions). `res_gnt.py` draws
//!   from a normal distribution matching its Kaiming-normal ResNet initialisation; clorch's
//!   ResNet is initialised with PyTorch's default, and redraws from it.
//! - convGnT resets no batch norm (its network has none); `res_gnt.py` and `cbp_conv.py`
//!   reset γ, β and the running statistics as here. None of them resets γ's and β's Adam
//!   state (they keep no Adam state for it or use SGD); here it is reset with the rest of
//!   the unit, as for a fresh unit.
//! - `res_gnt.py` also replaces basic-block output channels, zeroing only the next
//!   convolution's columns while the identity path still carries them (and uses the
//!   instantaneous utility of `cbp_conv.py`, `decay_rate: 0`, computed only when a
//!   replacement is due); those channels are not units here (see above) and the utility is
//!   the running, bias-corrected one of the MLP version and convGnT.
//! - `bias_correction` (a no-op in the reference, see [`super::cbp`]) adds, for each
//!   output k of the consumer, f̂_r · Σ (the weights of block r in row k) to that output's
//!   bias before zeroing: exact for a channel at its mean away from zero padding; a consumer
//!   without biases gets nothing, and a batch norm after the consumer removes the shift in
//!   training mode anyway.
//!
//! # Events
//!
//! `cbp.replaced` after each task, as the MLP version, with one entry per unit group in
//! network order.

use super::cbp::{
    bias_correction, mean_abs, report, saturation_age, CbpConfig, LayerState, Selection, Utility,
};
use super::conv_units::{describe, unit_groups, UnitGroup};
use super::{ContinualMethod, MethodError, MethodState, StepContext, TaskContext};
use crate::model::convnet::ConvNet;
use crate::optim::OptimizerKind;

/// Per-group buffers of one step, reused so a step allocates little.
#[derive(Debug, Default)]
struct Scratch {
    /// 1 − η^{a_i}.
    correction: Vec<f32>,
    /// f̂_i per group (kept until the replacements, for the bias correction).
    corrected_mean: Vec<Vec<f32>>,
    /// û_i.
    corrected_utility: Vec<f32>,
    /// Sums per channel, then activities per channel and position.
    sums: Vec<f32>,
    activity: Vec<f32>,
    /// Outgoing weight magnitudes.
    outgoing: Vec<f32>,
    /// Indices of eligible units.
    eligible: Vec<usize>,
    /// Units chosen for replacement, per group, ascending.
    chosen: Vec<Vec<usize>>,
}

/// Continual backprop on a conv net: the optimiser's update, then generate-and-test on the
/// output channels of every unit group.
pub struct ConvContinualBackprop {
    replacement_rate: f64,
    maturity_threshold: u64,
    decay_rate: f32,
    saturation_age: u64,
    utility: Utility,
    accumulate: bool,
    bias_correction: bool,
    groups: Vec<UnitGroup>,
    layers: Vec<LayerState>,
    scratch: Scratch,
}

impl ConvContinualBackprop {
    /// A fresh method for `config`; its state is sized from the network at the first step.
    pub fn new(config: &CbpConfig) -> Self {
        ConvContinualBackprop {
            replacement_rate: config.replacement_rate,
            maturity_threshold: config.maturity_threshold,
            decay_rate: config.decay_rate as f32,
            saturation_age: saturation_age(config.decay_rate as f32),
            utility: config.utility,
            accumulate: config.accumulate,
            bias_correction: config.bias_correction,
            groups: Vec::new(),
            layers: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Finds the unit groups of `net` and sizes the state on first use. A restored state must
    /// fit: the run id covers the network spec, so a checkpoint of another shape cannot reach
    /// here.
    fn ensure_state(&mut self, net: &ConvNet) {
        if self.groups.is_empty() {
            self.groups = unit_groups(net);
        }
        if self.layers.is_empty() {
            self.layers = self.groups.iter().map(|g| LayerState::new(g.channels)).collect();
        }
        assert!(
            self.layers.len() == self.groups.len()
                && self.layers.iter().zip(&self.groups).all(|(s, g)| s.age.len() == g.channels),
            "cbp state of {:?} units does not fit the unit groups of {:?}",
            self.layers.iter().map(|s| s.age.len()).collect::<Vec<_>>(),
            self.groups.iter().map(|g| g.channels).collect::<Vec<_>>()
        );
        self.scratch.chosen.resize_with(self.groups.len(), Vec::new);
        self.scratch.corrected_mean.resize_with(self.groups.len(), Vec::new);
    }

    /// Ages, running means and utilities of group `g` from this step's activations; chooses
    /// the units to replace into `scratch.chosen[g]`.
    fn test_group(&mut self, cx: &mut StepContext<'_, ConvNet>, g: usize) {
        let eta = self.decay_rate;
        let group = &self.groups[g];
        let state = &mut self.layers[g];
        let s = &mut self.scratch;
        let (units, p) = (group.channels, group.input_positions);
        let batch = cx.workspace.batch();
        let values = group.consumer_input(cx.workspace);

        s.correction.clear();
        for a in &mut state.age {
            *a = a.saturating_add(1);
            s.correction.push(if *a >= self.saturation_age { 1.0 } else { bias_correction(eta, *a) });
        }

        // Running means over the batch and the positions, this batch included.
        s.sums.clear();
        s.sums.resize(units, 0.0);
        for sample in values.chunks_exact(units * p) {
            for (m, plane) in s.sums.iter_mut().zip(sample.chunks_exact(p)) {
                *m += plane.iter().sum::<f32>();
            }
        }
        let corrected_mean = &mut s.corrected_mean[g];
        corrected_mean.clear();
        let n = (batch * p) as f32;
        for ((f, m), &c) in state.mean_activation.iter_mut().zip(&s.sums).zip(&s.correction) {
            *f = eta * *f + (1.0 - eta) * (m / n);
            corrected_mean.push(*f / c);
        }

        // Activity per channel and position.
        s.activity.clear();
        s.activity.resize(units * p, 0.0);
        for sample in values.chunks_exact(units * p) {
            let planes =
                s.activity.chunks_exact_mut(p).zip(sample.chunks_exact(p)).zip(corrected_mean.iter());
            for ((a, plane), &f) in planes {
                let centre = if self.utility == Utility::Contribution { 0.0 } else { f };
                for (a, &h) in a.iter_mut().zip(plane) {
                    *a += (h - centre).abs();
                }
            }
        }
        s.activity.iter_mut().for_each(|a| *a /= batch as f32);

        // Outgoing magnitudes, the instantaneous and the running utility.
        group.outgoing_magnitudes(cx.net, &mut s.outgoing);
        let per_position = group.weights_per_position(cx.net);
        s.corrected_utility.clear();
        for i in 0..units {
            let a = &s.activity[i * p..(i + 1) * p];
            let y = if per_position {
                let o = &s.outgoing[i * p..(i + 1) * p];
                o.iter().zip(a).map(|(o, a)| o * a).sum::<f32>() / p as f32
            } else {
                s.outgoing[i] * (a.iter().sum::<f32>() / p as f32)
            };
            let incoming = || mean_abs(group.incoming_row(cx.net, i));
            let corrected = state.update_utility(i, y, self.utility, incoming, eta, s.correction[i]);
            s.corrected_utility.push(corrected);
        }

        let rule = Selection {
            replacement_rate: self.replacement_rate,
            maturity_threshold: self.maturity_threshold,
            accumulate: self.accumulate,
        };
        rule.choose(state, &s.corrected_utility, &mut s.eligible, &mut s.chosen[g], cx.rng);
    }

    /// Reinitialises the units of group `g` chosen by [`Self::test_group`].
    fn replace_group(&mut self, cx: &mut StepContext<'_, ConvNet>, g: usize) {
        let adam = cx.optimizer.config.kind == OptimizerKind::Adam;
        let group = &self.groups[g];
        let state = &mut self.layers[g];
        let corrected_mean = &self.scratch.corrected_mean[g];
        for &r in &self.scratch.chosen[g] {
            group.reinitialize(cx.net, r, cx.rng);
            let (correct, mean) = (self.bias_correction, corrected_mean[r]);
            group.for_each_outgoing(cx.net, r, |block, bias| {
                if let (true, Some(b)) = (correct, bias) {
                    *b += mean * block.iter().sum::<f32>();
                }
                block.fill(0.0);
            });
            if adam {
                group.reset_optimizer(cx.optimizer, r);
            }
            state.reborn(r);
        }
        state.count_replaced(self.scratch.chosen[g].len());
    }
}

impl ContinualMethod<ConvNet> for ConvContinualBackprop {
    fn begin(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        if self.replacement_rate > 0.0 && unit_groups(cx.net).is_empty() {
            return Err(MethodError::Failed(format!("cbp: {}", describe(&[]))));
        }
        Ok(())
    }

    fn after_update(&mut self, cx: &mut StepContext<'_, ConvNet>) {
        if self.replacement_rate == 0.0 {
            return;
        }
        self.ensure_state(cx.net);
        for g in 0..self.groups.len() {
            self.test_group(cx, g);
        }
        for g in 0..self.groups.len() {
            if !self.scratch.chosen[g].is_empty() {
                self.replace_group(cx, g);
            }
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        if self.replacement_rate == 0.0 {
            return Ok(());
        }
        self.ensure_state(cx.net);
        cx.report.push(report(&mut self.layers));
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        super::cbp::save_layers(&self.layers, state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        self.layers = super::cbp::load_layers(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::conv_units::testing::{block_net, chain_net, inputs, optimizer, outputs, with_step};
    use crate::method::conv_units::Site;
    use crate::model::convnet::{Layer, Mode};
    use crate::optim::Optimizer;

    fn config(replacement_rate: f64, maturity_threshold: u64) -> CbpConfig {
        CbpConfig { replacement_rate, maturity_threshold, accumulate: false, ..CbpConfig::default() }
    }

    /// Runs `steps` generate-and-test steps on the activations of one forward pass of
    /// `input`; returns the units replaced per group in each step.
    fn run(
        m: &mut ConvContinualBackprop,
        net: &mut ConvNet,
        opt: &mut Optimizer<ConvNet>,
        input: &[f32],
        steps: usize,
    ) -> Vec<Vec<u64>> {
        with_step(net, opt, input, 0, |cx| {
            (0..steps)
                .map(|_| {
                    let before: Vec<u64> = m.layers.iter().map(|s| s.replaced_total).collect();
                    m.after_update(cx);
                    m.layers
                        .iter()
                        .enumerate()
                        .map(|(g, s)| s.replaced_total - before.get(g).copied().unwrap_or(0))
                        .collect()
                })
                .collect()
        })
    }

    fn conv(net: &mut ConvNet, l: usize) -> &mut crate::model::convnet::Conv2d {
        match &mut net.layers[l] {
            Layer::Conv2d(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn norm(net: &mut ConvNet, l: usize) -> &mut crate::model::convnet::BatchNorm2d {
        match &mut net.layers[l] {
            Layer::BatchNorm2d(n) => n,
            Layer::BasicBlock(b) => &mut b.bn1,
            other => panic!("{other:?}"),
        }
    }

    fn linear(net: &mut ConvNet, l: usize) -> &mut crate::model::Linear {
        match &mut net.layers[l] {
            Layer::Linear(x) => x,
            other => panic!("{other:?}"),
        }
    }

    /// [`chain_net`] with a silent unit in each group: channel 1 of the first convolution (its
    /// batch norm outputs −1 everywhere), channel 2 of the second (bias −100), unit 3 of the
    /// hidden linear layer (bias −100).
    fn silent_chain_net() -> ConvNet {
        let mut net = chain_net(1);
        let n = norm(&mut net, 1);
        (n.gamma[1], n.beta[1]) = (0.0, -1.0);
        conv(&mut net, 4).bias.as_mut().unwrap()[2] = -100.0;
        linear(&mut net, 7).bias = vec![1.0, 1.0, 1.0, -100.0, 1.0];
        net
    }

    #[test]
    fn replacing_a_silent_channel_leaves_the_output_bit_identical_and_resets_the_channel() {
        let input = inputs(6, 1);
        let mut net = silent_chain_net();
        let before = net.clone();
        let out_before = [Mode::Train, Mode::Eval].map(|mode| outputs(&net, &input, mode));
        let mut opt = optimizer(OptimizerKind::Sgd, &net);
        // ρ·|eligible| = 0.34·(3, 4, 5) = 1.02, 1.36, 1.7: one unit per group.
        let mut m = ConvContinualBackprop::new(&config(0.34, 0));
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), [vec![1, 1, 1]]);
        assert_eq!(m.scratch.chosen, [vec![1], vec![2], vec![3]]);
        assert_eq!([Mode::Train, Mode::Eval].map(|mode| outputs(&net, &input, mode)), out_before);

        // Exactly this changed: each new unit's incoming row (redrawn within the initial bound),
        // its bias (0), the batch norm channel (initial values), the outgoing blocks (0).
        // Channel 1's kernels are zeroed before the second convolution's new channel 2
        // redraws its whole row, as the reference orders it.
        let mut expected = before.clone();
        for row in conv(&mut expected, 4).weight.chunks_exact_mut(27) {
            row[9..18].fill(0.0); // channel 1's 3×3 kernel in every row of the next conv
        }
        for (l, r, fan_in) in [(0, 1, 2 * 9), (4, 2, 3 * 9)] {
            let row = conv(&mut net, l).row(r).to_vec();
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(row.iter().all(|w| w.abs() <= bound) && row != conv(&mut expected, l).row(r));
            conv(&mut expected, l).row_mut(r).copy_from_slice(&row);
            conv(&mut expected, l).bias.as_mut().unwrap()[r] = 0.0;
        }
        let n = norm(&mut expected, 1);
        (n.gamma[1], n.beta[1], n.running_mean[1], n.running_var[1]) = (1.0, 0.0, 0.0, 1.0);
        for row in linear(&mut expected, 7).weight.chunks_exact_mut(36) {
            row[18..27].fill(0.0); // channel 2's nine flattened positions
        }
        let row = linear(&mut net, 7).row(3).to_vec();
        assert!(row.iter().all(|w| w.abs() <= 1.0 / 6.0) && row != linear(&mut expected, 7).row(3));
        linear(&mut expected, 7).row_mut(3).copy_from_slice(&row);
        linear(&mut expected, 7).bias[3] = 0.0;
        linear(&mut expected, 9).weight.chunks_exact_mut(5).for_each(|row| row[3] = 0.0);
        assert_eq!(net, expected);
        for (g, r) in [(0, 1), (1, 2), (2, 3)] {
            let s = &m.layers[g];
            assert_eq!((s.age[r], s.utility[r], s.mean_activation[r]), (0, 0.0, 0.0));
            assert!(s.age.iter().enumerate().all(|(i, &a)| i == r || a == 1));
        }
    }

    #[test]
    fn a_new_channel_adds_nothing_so_the_output_is_that_of_the_network_without_the_old_one() {
        let input = inputs(4, 2);
        for (mut net, seed) in [(chain_net(2), 2), (block_net(3), 3)] {
            let before = net.clone();
            let mut opt = optimizer(OptimizerKind::Adam, &net);
            let mut m = ConvContinualBackprop::new(&config(0.5, 0));
            run(&mut m, &mut net, &mut opt, &input, 1);
            let mut without = before.clone();
            let mut replaced = 0;
            for (group, chosen) in m.groups.iter().zip(&m.scratch.chosen) {
                assert!(!chosen.is_empty(), "seed {seed}");
                for &r in chosen {
                    group.for_each_outgoing(&mut without, r, |block, _| block.fill(0.0));
                    replaced += 1;
                }
            }
            for mode in [Mode::Train, Mode::Eval] {
                assert_eq!(outputs(&net, &input, mode), outputs(&without, &input, mode), "seed {seed}");
                assert_ne!(
                    outputs(&net, &input, mode),
                    outputs(&before, &input, mode),
                    "the old units did count"
                );
            }
            assert!(replaced >= 3);
        }
    }

    #[test]
    fn a_silent_channel_before_a_projecting_block_and_inside_it_is_replaced_without_a_trace() {
        let input = inputs(5, 4);
        let mut net = block_net(4);
        let n = norm(&mut net, 1);
        (n.gamma[2], n.beta[2]) = (0.0, -1.0);
        let n = norm(&mut net, 3);
        (n.gamma[0], n.beta[0]) = (0.0, -1.0);
        let out_before = [Mode::Train, Mode::Eval].map(|mode| outputs(&net, &input, mode));
        let mut opt = optimizer(OptimizerKind::Adam, &net);
        // ρ·|eligible| = 0.25·(4, 5): one unit per group.
        let mut m = ConvContinualBackprop::new(&config(0.25, 0));
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), [vec![1, 1]]);
        assert_eq!(m.groups.iter().map(|g| g.site).collect::<Vec<_>>()[1], Site::Block { layer: 3 });
        assert_eq!(m.scratch.chosen, [vec![2], vec![0]]);
        assert_eq!([Mode::Train, Mode::Eval].map(|mode| outputs(&net, &input, mode)), out_before);
        let Layer::BasicBlock(b) = &net.layers[3] else { panic!() };
        let (projection, _) = b.shortcut.as_ref().unwrap();
        // Channel 2's kernels in the block's first convolution and its projection, channel 0's
        // in the second convolution.
        // (Row 0 of the first convolution is the block's new channel 0, redrawn whole after
        // channel 2's kernels were zeroed, as the reference orders it.)
        assert!(b.conv1.weight.chunks_exact(36).skip(1).all(|row| row[18..27].iter().all(|&w| w == 0.0)));
        assert!(projection.weight.chunks_exact(4).all(|row| row[2] == 0.0));
        assert!(b.conv2.weight.chunks_exact(45).all(|row| row[0..9].iter().all(|&w| w == 0.0)));
        assert_eq!(
            (b.bn1.gamma[0], b.bn1.beta[0], b.bn1.running_mean[0], b.bn1.running_var[0]),
            (1.0, 0.0, 0.0, 1.0)
        );
        assert_eq!(b.conv1.bias.as_ref().unwrap()[0], 0.0);
    }

    #[test]
    fn utilities_follow_the_formula_on_a_hand_worked_case() {
        // 1×1×2 input → conv 1×1 (2 channels: x, −x) → ReLU → conv 1×1 (2 channels) → ReLU →
        // flatten → linear 2. Samples x = [1, 2] and [3, −1].
        use crate::model::convnet::{LayerSpec, Shape};
        let conv1x1 = |channels| LayerSpec::Conv2d { channels, kernel: 1, stride: 1, padding: 0, bias: true };
        let specs = [
            conv1x1(2),
            LayerSpec::Relu,
            conv1x1(2),
            LayerSpec::Relu,
            LayerSpec::Flatten,
            LayerSpec::Linear { units: 2 },
        ];
        let mut net = ConvNet::new(Shape::new(1, 1, 2), &specs, &mut crate::rng::stream(0, "t", 0)).unwrap();
        (conv(&mut net, 0).weight, conv(&mut net, 0).bias) = (vec![1.0, -1.0], Some(vec![0.0; 2]));
        (conv(&mut net, 2).weight, conv(&mut net, 2).bias) = (vec![0.5, -1.0, 2.0, 0.25], Some(vec![0.0; 2]));
        linear(&mut net, 5).weight = vec![1.0, -1.0, 0.5, 0.0, 0.0, 2.0, -0.5, 1.0];
        let input = [1.0, 2.0, 3.0, -1.0];
        // Hidden values (channel: sample 1, sample 2): first conv h0 = [1, 2], [3, 0];
        // h1 = [0, 0], [0, 1]. Second conv g0 = [0.5, 1], [1.5, 0]; g1 = [2, 4], [6, 0.25].
        for (utility, expected) in [
            // Group 0 (consumer a conv, one magnitude per channel): mean |h| = 1.5, 0.25;
            // mean |W_out| = (0.5 + 2)/2, (1 + 0.25)/2. Group 1 (consumer linear, per
            // position): mean_p(mean_k |W[k, 2c + p]| · mean_B |g_c,p|) =
            // (0.5·1 + 1.5·0.5)/2, (0.5·4 + 0.5·2.125)/2.
            (Utility::Contribution, [[1.875, 0.15625], [0.625, 1.53125]]),
            // Group 0 centred on f̂ = 1.5, 0.25: mean |h − f̂| = 1, 0.375, divided by
            // mean |W_in| = 1.
            (Utility::AdaptableContribution, [[1.25, 0.234375], [f32::NAN, f32::NAN]]),
        ] {
            let cfg = CbpConfig { decay_rate: 0.0, utility, ..config(1e-9, 1000) };
            let mut m = ConvContinualBackprop::new(&cfg);
            let mut opt = optimizer(OptimizerKind::Sgd, &net);
            run(&mut m, &mut net, &mut opt, &input, 1);
            // With η = 0 the running values are this step's.
            for (g, want) in expected.iter().enumerate() {
                for (i, &w) in want.iter().enumerate() {
                    if !w.is_nan() {
                        let got = m.layers[g].utility[i];
                        assert!((got - w).abs() < 1e-6, "{utility:?} group {g} unit {i}: {got} vs {w}");
                    }
                }
            }
            assert_eq!(m.layers[0].mean_activation, [1.5, 0.25]);
            assert_eq!(m.layers[1].mean_activation, [0.75, 3.0625]);
        }
    }

    #[test]
    fn adam_state_is_reset_for_exactly_the_row_bias_norm_and_outgoing_kernels() {
        let input = inputs(6, 1);
        let mut net = silent_chain_net();
        let mut opt = optimizer(OptimizerKind::Adam, &net);
        for (i, (_, state, _)) in opt.states_mut().into_iter().enumerate() {
            crate::model::Parameters::slices_mut(state)
                .into_iter()
                .for_each(|b| b.fill(0.1 * (i + 2) as f32));
        }
        let before = opt.clone();
        // Only the first group is mature: one unit, the silent channel 1.
        let mut m = ConvContinualBackprop::new(&config(0.34, 5));
        m.ensure_state(&net);
        m.layers[0].age = vec![10; 3];
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), [vec![1, 0, 0]]);
        for ((name, after, fresh), (_, old)) in opt.states_mut().into_iter().zip(before.states()) {
            let mut expected = old.clone();
            conv(&mut expected, 0).row_mut(1).fill(fresh);
            conv(&mut expected, 0).bias.as_mut().unwrap()[1] = fresh;
            let n = norm(&mut expected, 1);
            (n.gamma[1], n.beta[1]) = (fresh, fresh);
            conv(&mut expected, 4).weight.chunks_exact_mut(27).for_each(|row| row[9..18].fill(fresh));
            assert_eq!(after, &expected, "{name}");
            assert_ne!(after, old, "{name}");
        }
    }

    #[test]
    fn bias_correction_keeps_the_output_when_the_unit_fires_at_its_mean() {
        // One example and η = 0.5: after one step f̂ = h exactly, so moving W_out[:, r]·f̂_r
        // into the next bias reproduces the output up to rounding. Only the hidden linear
        // layer replaces a unit, where the correction is exact (one position per unit).
        let input = inputs(1, 9);
        for correct in [false, true] {
            let mut net = chain_net(9);
            linear(&mut net, 7).bias = vec![2.0; 5]; // every unit fires
            let out_before = outputs(&net, &input, Mode::Train);
            let mut opt = optimizer(OptimizerKind::Sgd, &net);
            // Accumulating ρ·|eligible| = 0.2·(3, 4, 5) = 0.6, 0.8, 1: one unit, in the last group.
            let cfg =
                CbpConfig { decay_rate: 0.5, bias_correction: correct, accumulate: true, ..config(0.2, 0) };
            let mut m = ConvContinualBackprop::new(&cfg);
            assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), [vec![0, 0, 1]]);
            let out_after = outputs(&net, &input, Mode::Train);
            let change = out_before.iter().zip(&out_after).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            if correct {
                assert!(change < 1e-5, "{out_before:?} vs {out_after:?}");
            } else {
                assert!(change > 1e-3, "without the correction the output moves: {change}");
            }
        }
    }

    #[test]
    fn sgd_momentum_is_left_alone_as_in_the_reference() {
        let input = inputs(6, 1);
        let mut net = silent_chain_net();
        let mut opt = optimizer(OptimizerKind::Sgd, &net);
        let v = opt.moment1.as_mut().unwrap();
        crate::model::Parameters::slices_mut(v).into_iter().for_each(|b| b.fill(0.5));
        let before = opt.moment1.clone();
        let mut m = ConvContinualBackprop::new(&config(0.34, 0));
        assert_eq!(run(&mut m, &mut net, &mut opt, &input, 1), [vec![1, 1, 1]]);
        assert_eq!(opt.moment1, before);
    }

    #[test]
    fn saved_state_restores_every_counter_and_continues_identically() {
        let input = inputs(3, 5);
        let mut net = block_net(5);
        let mut opt = optimizer(OptimizerKind::Adam, &net);
        let cfg = CbpConfig { accumulate: true, ..config(0.07, 3) };
        let mut m = ConvContinualBackprop::new(&cfg);
        run(&mut m, &mut net, &mut opt, &input, 37);
        let mut state = MethodState::default();
        m.save(&mut state);
        let mut restored = ConvContinualBackprop::new(&cfg);
        restored.load(&state).unwrap();
        assert_eq!(restored.layers, m.layers);
        assert!(m.layers.iter().all(|s| s.replaced_total > 0));
        let (mut net2, mut opt2) = (net.clone(), opt.clone());
        run(&mut m, &mut net, &mut opt, &input, 20);
        run(&mut restored, &mut net2, &mut opt2, &input, 20);
        assert_eq!(net, net2);
        assert_eq!(restored.layers, m.layers);
    }
}
