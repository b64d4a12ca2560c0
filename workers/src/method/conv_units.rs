//! The units of a conv net that continual backprop ([`super::cbp_conv`]) and ReDo
//! ([`super::redo_conv`]) reinitialise, and the surgery that does it.
//!
//! Both methods rely on one property: a unit whose outgoing weights are zero contributes
//! nothing downstream, so it can be given fresh incoming weights without changing the
//! network's output. In a conv net the unit is an output channel, and that property holds
//! only where every path out of the channel goes through weights that can be zeroed. A
//! **unit group** is a layer whose channels have that property:
//!
//! - a `conv2d` or `linear` layer followed by ReLU — directly or through a `batch_norm` —
//!   then by any number of `max_pool2d`, `avg_pool2d`, `global_avg_pool` and `flatten`
//!   (each keeps channel c's values apart from the others'), then by its **consumer**: a
//!   `conv2d`, a `linear`, or a `basic_block` whose input goes through a 1×1 projection
//!   (its first convolution and its projection are then both consumers);
//! - the first convolution of every `basic_block`: conv1 → bn1 → ReLU → conv2.
//!
//! Channel c of a group owns, in every row of each consumer's weights, the contiguous block
//! of columns `c·b .. (c+1)·b` with b = row length / channels: the c-th kernel (kh·kw
//! weights) of a convolution, the c-th H·W columns of a linear layer after `flatten`, column
//! c after `global_avg_pool` or of a hidden linear layer.
//!
//! Not units: a `basic_block`'s output channels (the identity path carries them on whatever
//! the next weights are — the loss-of-plasticity ResNet code replaces them anyway, and zeroes
//! only the next convolution's columns, so there a replacement changes the output), a layer
//! feeding a `basic_block` without projection (the same reason: the stem of ResNet-18), a
//! layer with anything else between its ReLU and its consumer, and the output layer.
//!
//! Reinitialising channel r ([`UnitGroup::reinitialize`]): its incoming row is redrawn from
//! the network's own initial distribution U(±1/√fan_in) (PyTorch's default, what
//! [`ConvNet::new`] draws, and the bound of `get_layer_bound` for convolutions in the
//! reference code), its bias set to 0; a batch norm between the layer and its ReLU gets
//! γ = 1, β = 0, running mean 0 and running variance 1 for that channel, as `cbp_conv.py`
//! and `res_gnt.py` reset it. [`UnitGroup::for_each_outgoing`] visits the channel's
//! outgoing blocks (to zero them, or their optimiser state), [`UnitGroup::for_each_incoming`]
//! the row, bias, γ and β (for their optimiser state).

use rand::Rng as _;

use crate::model::convnet::{BatchNorm2d, Conv2d, ConvNet, Layer, Workspace};
use crate::model::Linear;
use crate::optim::Optimizer;
use crate::rng::Rng;

/// Where a group's units live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Site {
    /// A `conv2d` or `linear` layer at `layer`, its batch norm at `norm`, its ReLU at `relu`,
    /// its consumer at `consumer`.
    Chain {
        /// The layer whose output channels are the units.
        layer: usize,
        /// The batch norm between it and the ReLU.
        norm: Option<usize>,
        /// The ReLU.
        relu: usize,
        /// The `conv2d`, `linear` or projecting `basic_block` that reads the units.
        consumer: usize,
    },
    /// The first convolution of the `basic_block` at `layer`.
    Block {
        /// The block.
        layer: usize,
    },
}

/// A layer's channels that can be replaced without changing the network's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UnitGroup {
    /// Where the units live.
    pub(super) site: Site,
    /// Units (channels).
    pub(super) channels: usize,
    /// Values per sample and channel of the ReLU's output (height × width).
    pub(super) relu_positions: usize,
    /// Values per sample and channel of the consumer's input (after pooling or flattening).
    pub(super) input_positions: usize,
}

/// A consumer's weights, read-only: `weight` is rows × `row` values, channel c owns columns
/// `c·block .. (c+1)·block` of every row.
struct Matrix<'a> {
    weight: &'a [f32],
    row: usize,
    block: usize,
}

/// A consumer's weights and bias, mutable.
struct MatrixMut<'a> {
    weight: &'a mut [f32],
    bias: Option<&'a mut [f32]>,
    row: usize,
    block: usize,
}

/// The incoming side of a group, mutable.
enum Producer<'a> {
    Conv(&'a mut Conv2d),
    Linear(&'a mut Linear),
}

/// The unit groups of `net`, input side first (see the module docs).
pub(super) fn unit_groups(net: &ConvNet) -> Vec<UnitGroup> {
    let layers = &net.layers;
    let mut groups = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        match layer {
            Layer::BasicBlock(b) => {
                let shape = net.output_shape_of(l);
                groups.push(UnitGroup {
                    site: Site::Block { layer: l },
                    channels: b.bn1.channels,
                    relu_positions: shape.height * shape.width,
                    input_positions: shape.height * shape.width,
                });
            }
            Layer::Conv2d(_) | Layer::Linear(_) => {
                let channels = net.output_shape_of(l).channels;
                let mut j = l + 1;
                let norm = matches!(layers.get(j), Some(Layer::BatchNorm2d(_))).then_some(j);
                if norm.is_some() {
                    j += 1;
                }
                if !matches!(layers.get(j), Some(Layer::Relu)) {
                    continue;
                }
                let relu = j;
                j += 1;
                while matches!(
                    layers.get(j),
                    Some(Layer::MaxPool2d(_) | Layer::AvgPool2d(_) | Layer::GlobalAvgPool | Layer::Flatten)
                ) {
                    j += 1;
                }
                let consumes = match layers.get(j) {
                    Some(Layer::Conv2d(_) | Layer::Linear(_)) => true,
                    Some(Layer::BasicBlock(b)) => b.shortcut.is_some(),
                    _ => false,
                };
                let input = net.output_shape_of(j - 1).len();
                if !consumes || !input.is_multiple_of(channels) {
                    continue;
                }
                let shape = net.output_shape_of(relu);
                groups.push(UnitGroup {
                    site: Site::Chain { layer: l, norm, relu, consumer: j },
                    channels,
                    relu_positions: shape.height * shape.width,
                    input_positions: input / channels,
                });
            }
            _ => {}
        }
    }
    groups
}

/// One line naming the layers of `net` that hold units, or saying there are none; for
/// errors and logs.
pub(super) fn describe(groups: &[UnitGroup]) -> String {
    if groups.is_empty() {
        return "no layer of this network has replaceable units: a conv2d or linear layer needs \
                ReLU (after an optional batch_norm), then only pooling or flatten, then a conv2d, \
                linear or projecting basic_block; every basic_block's first convolution qualifies"
            .into();
    }
    let names: Vec<String> = groups
        .iter()
        .map(|g| match g.site {
            Site::Chain { layer, .. } => format!("layer {layer} ({} channels)", g.channels),
            Site::Block { layer } => format!("layer {layer}'s first convolution ({} channels)", g.channels),
        })
        .collect();
    format!("units in {}", names.join(", "))
}

impl UnitGroup {
    /// The ReLU's output after a forward pass: `batch × channels × relu_positions`.
    pub(super) fn relu_values<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        match self.site {
            Site::Chain { relu, .. } => ws.layer_output(relu),
            Site::Block { layer } => ws.block_hidden(layer).expect("the site is a basic block"),
        }
    }

    /// What the consumer reads after a forward pass: `batch × channels × input_positions`.
    pub(super) fn consumer_input<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        match self.site {
            Site::Chain { consumer, .. } => ws.layer_output(consumer - 1),
            Site::Block { layer } => ws.block_hidden(layer).expect("the site is a basic block"),
        }
    }

    /// Whether each of a channel's input positions has its own outgoing weights (a linear
    /// consumer) rather than sharing a kernel (a convolution).
    pub(super) fn weights_per_position(&self, net: &ConvNet) -> bool {
        matches!(self.site, Site::Chain { consumer, .. } if matches!(net.layers[consumer], Layer::Linear(_)))
    }

    /// Unit `unit`'s incoming weights.
    pub(super) fn incoming_row<'a>(&self, net: &'a ConvNet, unit: usize) -> &'a [f32] {
        match (self.site, &net.layers[self.layer()]) {
            (Site::Chain { .. }, Layer::Conv2d(c)) => c.row(unit),
            (Site::Chain { .. }, Layer::Linear(l)) => l.row(unit),
            (Site::Block { .. }, Layer::BasicBlock(b)) => b.conv1.row(unit),
            (site, layer) => unreachable!("{site:?} does not fit {layer:?}"),
        }
    }

    /// The layer index the group's site starts at.
    fn layer(&self) -> usize {
        match self.site {
            Site::Chain { layer, .. } | Site::Block { layer } => layer,
        }
    }

    fn consumers<'a>(&self, net: &'a ConvNet) -> Vec<Matrix<'a>> {
        let channels = self.channels;
        let conv = |c: &'a Conv2d| {
            let row = c.geometry.k();
            Matrix { weight: &c.weight, row, block: row / channels }
        };
        match self.site {
            Site::Chain { consumer, .. } => match &net.layers[consumer] {
                Layer::Conv2d(c) => vec![conv(c)],
                Layer::Linear(l) => {
                    vec![Matrix { weight: &l.weight, row: l.inputs, block: l.inputs / channels }]
                }
                Layer::BasicBlock(b) => {
                    let (projection, _) = b.shortcut.as_ref().expect("a consuming block projects");
                    vec![conv(&b.conv1), conv(projection)]
                }
                layer => unreachable!("layer {consumer} is no consumer: {layer:?}"),
            },
            Site::Block { layer } => match &net.layers[layer] {
                Layer::BasicBlock(b) => vec![conv(&b.conv2)],
                layer => unreachable!("not a basic block: {layer:?}"),
            },
        }
    }

    fn consumers_mut<'a>(&self, net: &'a mut ConvNet) -> Vec<MatrixMut<'a>> {
        let channels = self.channels;
        let conv = |c: &'a mut Conv2d| {
            let row = c.geometry.k();
            MatrixMut { weight: &mut c.weight, bias: c.bias.as_deref_mut(), row, block: row / channels }
        };
        match self.site {
            Site::Chain { consumer, .. } => match &mut net.layers[consumer] {
                Layer::Conv2d(c) => vec![conv(c)],
                Layer::Linear(l) => {
                    let (row, block) = (l.inputs, l.inputs / channels);
                    vec![MatrixMut { weight: &mut l.weight, bias: Some(&mut l.bias), row, block }]
                }
                Layer::BasicBlock(b) => {
                    let b = &mut **b;
                    let (projection, _) = b.shortcut.as_mut().expect("a consuming block projects");
                    vec![conv(&mut b.conv1), conv(projection)]
                }
                layer => unreachable!("layer {consumer} is no consumer: {layer:?}"),
            },
            Site::Block { layer } => match &mut net.layers[layer] {
                Layer::BasicBlock(b) => vec![conv(&mut b.conv2)],
                layer => unreachable!("not a basic block: {layer:?}"),
            },
        }
    }

    fn parts_mut<'a>(&self, net: &'a mut ConvNet) -> (Producer<'a>, Option<&'a mut BatchNorm2d>) {
        match self.site {
            Site::Chain { layer, norm, .. } => {
                let (before, after) = net.layers.split_at_mut(layer + 1);
                let producer = match &mut before[layer] {
                    Layer::Conv2d(c) => Producer::Conv(c),
                    Layer::Linear(l) => Producer::Linear(l),
                    other => unreachable!("layer {layer} produces no units: {other:?}"),
                };
                let norm = norm.map(|n| match &mut after[n - layer - 1] {
                    Layer::BatchNorm2d(n) => n,
                    other => unreachable!("layer {n} is no batch norm: {other:?}"),
                });
                (producer, norm)
            }
            Site::Block { layer } => match &mut net.layers[layer] {
                Layer::BasicBlock(b) => {
                    let b = &mut **b;
                    (Producer::Conv(&mut b.conv1), Some(&mut b.bn1))
                }
                other => unreachable!("not a basic block: {other:?}"),
            },
        }
    }

    /// The outgoing weight magnitudes into `out`: with [`Self::weights_per_position`],
    /// mean_k |W[k, c·P + p]| for every channel c and position p (`channels × P` values);
    /// otherwise the mean |w| over all of channel c's outgoing weights (every consumer's rows
    /// and kernel taps; `channels` values).
    pub(super) fn outgoing_magnitudes(&self, net: &ConvNet, out: &mut Vec<f32>) {
        let consumers = self.consumers(net);
        out.clear();
        if self.weights_per_position(net) {
            let m = &consumers[0];
            out.resize(m.row, 0.0);
            for row in m.weight.chunks_exact(m.row) {
                for (o, &w) in out.iter_mut().zip(row) {
                    *o += w.abs();
                }
            }
            let rows = (m.weight.len() / m.row) as f32;
            out.iter_mut().for_each(|o| *o /= rows);
            return;
        }
        out.resize(self.channels, 0.0);
        let mut count = 0usize;
        for m in &consumers {
            for row in m.weight.chunks_exact(m.row) {
                for (o, block) in out.iter_mut().zip(row.chunks_exact(m.block)) {
                    *o += block.iter().map(|w| w.abs()).sum::<f32>();
                }
                count += m.block;
            }
        }
        out.iter_mut().for_each(|o| *o /= count as f32);
    }

    /// Gives unit `unit` fresh incoming weights (U(±1/√fan_in)), a zero bias, and its batch
    /// norm channel the initial γ = 1, β = 0, running mean 0, running variance 1.
    pub(super) fn reinitialize(&self, net: &mut ConvNet, unit: usize, rng: &mut Rng) {
        let (producer, norm) = self.parts_mut(net);
        let (weight, bias, fan_in) = match producer {
            Producer::Conv(c) => (&mut c.weight, c.bias.as_deref_mut(), c.geometry.k()),
            Producer::Linear(l) => (&mut l.weight, Some(&mut l.bias[..]), l.inputs),
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        for w in &mut weight[unit * fan_in..(unit + 1) * fan_in] {
            *w = rng.gen_range(-bound..=bound);
        }
        if let Some(bias) = bias {
            bias[unit] = 0.0;
        }
        if let Some(n) = norm {
            n.gamma[unit] = 1.0;
            n.beta[unit] = 0.0;
            n.running_mean[unit] = 0.0;
            n.running_var[unit] = 1.0;
        }
    }

    /// Calls `f` on each trainable piece of unit `unit`'s incoming side in `net` (a network,
    /// or an optimiser state shaped like one): its row, its bias, its batch norm's γ and β.
    pub(super) fn for_each_incoming(&self, net: &mut ConvNet, unit: usize, mut f: impl FnMut(&mut [f32])) {
        let (producer, norm) = self.parts_mut(net);
        match producer {
            Producer::Conv(c) => {
                f(c.row_mut(unit));
                if let Some(b) = c.bias.as_mut() {
                    f(&mut b[unit..=unit]);
                }
            }
            Producer::Linear(l) => {
                f(l.row_mut(unit));
                f(&mut l.bias[unit..=unit]);
            }
        }
        if let Some(n) = norm {
            f(&mut n.gamma[unit..=unit]);
            f(&mut n.beta[unit..=unit]);
        }
    }

    /// Calls `f` on each of unit `unit`'s outgoing blocks in `net` (a network, or an
    /// optimiser state shaped like one), one per row of each consumer, with the bias of that
    /// row's output when the consumer has biases.
    pub(super) fn for_each_outgoing(
        &self,
        net: &mut ConvNet,
        unit: usize,
        mut f: impl FnMut(&mut [f32], Option<&mut f32>),
    ) {
        for m in self.consumers_mut(net) {
            let MatrixMut { weight, mut bias, row, block } = m;
            for (k, r) in weight.chunks_exact_mut(row).enumerate() {
                f(&mut r[unit * block..(unit + 1) * block], bias.as_deref_mut().map(|b| &mut b[k]));
            }
        }
    }

    /// Resets every optimiser state of unit `unit`'s incoming row, bias, γ, β and outgoing
    /// blocks to a fresh element's value, as if they had never been updated.
    pub(super) fn reset_optimizer(&self, optimizer: &mut Optimizer<ConvNet>, unit: usize) {
        for (_, state, fresh) in optimizer.states_mut() {
            self.for_each_incoming(state, unit, |xs| xs.fill(fresh));
            self.for_each_outgoing(state, unit, |xs, _| xs.fill(fresh));
        }
    }
}

/// Helpers for the conv-net method tests: small networks and a step context over them.
#[cfg(test)]
pub(super) mod testing {
    use rand::Rng as _;

    use super::super::StepContext;
    use crate::model::convnet::{forward_pass, ConvNet, LayerSpec, Mode, Shape, Workspace};
    use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
    use crate::rng;

    /// 2×6×6 → conv 3 (batch norm, ReLU, max pool 2) → conv 4 (ReLU, flatten) → linear 5
    /// (ReLU) → linear 3: unit groups of 3 channels (consumer a conv, 9 positions), 4 channels
    /// (consumer a linear layer, 9 positions each) and 5 units.
    pub(in crate::method) fn chain_net(seed: u64) -> ConvNet {
        use LayerSpec::{Flatten, Linear, MaxPool2d, Relu};
        let conv = |channels| LayerSpec::Conv2d { channels, kernel: 3, stride: 1, padding: 1, bias: true };
        let specs = [
            conv(3),
            LayerSpec::BatchNorm2d,
            Relu,
            MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            conv(4),
            Relu,
            Flatten,
            Linear { units: 5 },
            Relu,
            Linear { units: 3 },
        ];
        ConvNet::new(Shape::new(2, 6, 6), &specs, &mut rng::stream(seed, "conv-units-test", 0)).unwrap()
    }

    /// 2×6×6 → conv 4 (batch norm, ReLU) → projecting basic block 5 → global average pool →
    /// linear 3: unit groups of 4 channels (consumers the block's first convolution and
    /// projection) and the block's 5 hidden channels.
    pub(in crate::method) fn block_net(seed: u64) -> ConvNet {
        let specs = [
            LayerSpec::Conv2d { channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
            LayerSpec::BatchNorm2d,
            LayerSpec::Relu,
            LayerSpec::BasicBlock { channels: 5, stride: 1, bias: true },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { units: 3 },
        ];
        ConvNet::new(Shape::new(2, 6, 6), &specs, &mut rng::stream(seed, "conv-units-test", 1)).unwrap()
    }

    /// `samples` inputs for either network, U(−1, 1).
    pub(in crate::method) fn inputs(samples: usize, seed: u64) -> Vec<f32> {
        let mut r = rng::stream(seed, "conv-units-input", 0);
        (0..samples * 72).map(|_| r.gen_range(-1.0..1.0)).collect()
    }

    /// The network's outputs on `input` in `mode` (running statistics untouched).
    pub(in crate::method) fn outputs(net: &ConvNet, input: &[f32], mode: Mode) -> Vec<f32> {
        let mut ws = Workspace::new(net, input.len() / net.input_shape().len());
        ws.input.copy_from_slice(input);
        forward_pass(net, &mut ws, mode).unwrap();
        ws.outputs().to_vec()
    }

    /// A fresh optimiser of `kind` for `net`.
    pub(in crate::method) fn optimizer(kind: OptimizerKind, net: &ConvNet) -> Optimizer<ConvNet> {
        let config = OptimizerConfig { momentum: 0.9, ..OptimizerConfig::defaults(kind) };
        Optimizer::for_parameters(config, net)
    }

    /// Runs `f` with a step context (step `step`) whose workspace holds a training-mode
    /// forward pass of `net` on `input`.
    pub(in crate::method) fn with_step<R>(
        net: &mut ConvNet,
        optimizer: &mut Optimizer<ConvNet>,
        input: &[f32],
        step: u64,
        f: impl FnOnce(&mut StepContext<'_, ConvNet>) -> R,
    ) -> R {
        let mut ws = Workspace::new(net, input.len() / net.input_shape().len());
        ws.input.copy_from_slice(input);
        forward_pass(net, &mut ws, Mode::Train).unwrap();
        let mut grads = net.zeros_like();
        let mut r = rng::stream(0, "conv-method-test", 0);
        let head = 0..net.outputs();
        let mut cx = StepContext {
            net,
            grads: &mut grads,
            workspace: &ws,
            optimizer,
            rng: &mut r,
            task: 0,
            head,
            step,
        };
        f(&mut cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::convnet::{LayerSpec, Shape};
    use crate::rng;

    fn conv(channels: usize, kernel: usize, padding: usize) -> LayerSpec {
        LayerSpec::Conv2d { channels, kernel, stride: 1, padding, bias: true }
    }

    #[test]
    fn units_are_found_where_zeroed_outgoing_weights_silence_them_and_nowhere_else() {
        use LayerSpec::{BasicBlock, Flatten, GlobalAvgPool, MaxPool2d, Relu};
        let specs = [
            conv(4, 3, 1), // 0: → BN, ReLU, max pool → conv 2: a group
            LayerSpec::BatchNorm2d,
            Relu,
            MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            conv(5, 3, 1), // 4: → ReLU → projecting block 6: a group
            Relu,
            BasicBlock { channels: 6, stride: 1, bias: false }, // 6: its conv1 is a group
            BasicBlock { channels: 6, stride: 1, bias: false }, // 7: identity block: conv1 only
            conv(3, 1, 0), // 8: → ReLU → flatten → linear 11: a group of 3 × 16 positions
            Relu,
            Flatten,
            LayerSpec::Linear { units: 7 }, // 11: → ReLU → linear: a group
            Relu,
            LayerSpec::Linear { units: 2 }, // 13: output
        ];
        let net = ConvNet::new(Shape::new(2, 8, 8), &specs, &mut rng::stream(1, "units", 0)).unwrap();
        let groups = unit_groups(&net);
        let sites: Vec<Site> = groups.iter().map(|g| g.site).collect();
        assert_eq!(
            sites,
            [
                Site::Chain { layer: 0, norm: Some(1), relu: 2, consumer: 4 },
                Site::Chain { layer: 4, norm: None, relu: 5, consumer: 6 },
                Site::Block { layer: 6 },
                Site::Block { layer: 7 },
                Site::Chain { layer: 8, norm: None, relu: 9, consumer: 11 },
                Site::Chain { layer: 11, norm: None, relu: 12, consumer: 13 },
            ]
        );
        let sizes: Vec<(usize, usize, usize)> =
            groups.iter().map(|g| (g.channels, g.relu_positions, g.input_positions)).collect();
        assert_eq!(sizes, [(4, 64, 16), (5, 16, 16), (6, 16, 16), (6, 16, 16), (3, 16, 16), (7, 1, 1)]);
        assert!(describe(&groups).contains("layer 6's first convolution (6 channels)"));

        // A conv feeding an identity block, and a network without hidden units, have none.
        let specs = [conv(6, 3, 1), Relu, BasicBlock { channels: 6, stride: 1, bias: false }];
        let net = ConvNet::new(Shape::new(2, 8, 8), &specs, &mut rng::stream(1, "units", 0)).unwrap();
        assert_eq!(unit_groups(&net).iter().map(|g| g.site).collect::<Vec<_>>(), [Site::Block { layer: 2 }]);
        let net = ConvNet::new(
            Shape::new(2, 8, 8),
            &[conv(6, 3, 1), Relu, GlobalAvgPool],
            &mut rng::stream(1, "u", 0),
        )
        .unwrap();
        assert!(unit_groups(&net).is_empty());
        assert!(describe(&[]).contains("no layer"));
    }
}
