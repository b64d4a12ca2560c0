//! CLNP's view of a conv net: which layers hold units (the output channels of convolutions and
//! the units of hidden linear layers, each followed by a ReLU), which weights a unit's pruning
//! zeroes, and the per-unit operations on parameters, gradients and optimiser state.
//!
//! A unit (channel i of layer l) owns row i of l's weight — its incoming kernels — and bias i.
//! What it feeds is a block of columns in every row of the next unit layer l′ (the consumer):
//! a convolution reads channel i through columns `i·kh·kw .. (i+1)·kh·kw`; a linear layer
//! after `flatten` through the `H·W` columns of i's plane, after `global_avg_pool` through
//! column i. ReLU and pooling keep channels apart (a pruned channel is 0 everywhere, so its
//! pooled plane is 0 too), so a row of l′ splits into one equal block per unit of l: the block
//! width is the row length of l′ divided by l's units. Zeroing a unit's row, bias and block of
//! every consumer row makes it output 0 and removes it from everything downstream — the conv
//! counterpart of zeroing an MLP unit's row, bias and outgoing column.

use std::ops::Range;

use rand::Rng as _;

use super::partition::Partition;
use super::pruning::Activity;
use crate::method::ConvCompute;
use crate::model::convnet::{ConvNet, Layer, Workspace};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::stream::Split;

/// A layer whose outputs CLNP partitions into used and free units.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct UnitLayer {
    /// Index of the convolution or linear layer in `ConvNet::layers`.
    pub layer: usize,
    /// Index of the ReLU right after it, whose output is the units' activity.
    pub relu: usize,
    /// Units (output channels).
    pub units: usize,
    /// Positions per unit at the ReLU's output (H·W; 1 for a linear layer).
    pub plane: usize,
    /// Index of the next convolution or linear layer, which reads these units.
    pub consumer: usize,
    /// Columns of each consumer row that one unit feeds.
    pub block: usize,
}

/// The unit layers of a network and its output layer (the heads).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Units {
    /// Hidden unit layers, input side first.
    pub hidden: Vec<UnitLayer>,
    /// Index of the final linear layer.
    pub output: usize,
}

/// A unit layer's weight, bias (a convolution may have none) and row length.
type Parts<'a> = (&'a [f32], Option<&'a [f32]>, usize);

/// [`Parts`], mutable.
type PartsMut<'a> = (&'a mut [f32], Option<&'a mut [f32]>, usize);

/// A convolution's or linear layer's weight, bias (a convolution may have none) and row length.
fn parts(layer: &Layer) -> Option<Parts<'_>> {
    match layer {
        Layer::Conv2d(c) => Some((&c.weight, c.bias.as_deref(), c.geometry.k())),
        Layer::Linear(l) => Some((&l.weight, Some(&l.bias), l.inputs)),
        _ => None,
    }
}

/// [`parts`], mutable.
fn parts_mut(layer: &mut Layer) -> Option<PartsMut<'_>> {
    match layer {
        Layer::Conv2d(c) => {
            let k = c.geometry.k();
            Some((&mut c.weight, c.bias.as_deref_mut(), k))
        }
        Layer::Linear(l) => Some((&mut l.weight, Some(&mut l.bias), l.inputs)),
        _ => None,
    }
}

impl Units {
    /// The unit layers of `net`, or why CLNP cannot keep its guarantee on it: every layer
    /// must be a convolution, ReLU, pooling, flatten or linear layer (batch norm's running
    /// statistics and a residual block's shortcut would let later tasks change what earlier
    /// tasks compute), every convolution and hidden linear layer must be followed directly by
    /// a ReLU (pruning by activity needs units that are exactly silent), and the last layer
    /// must be linear (the heads).
    pub fn of(net: &ConvNet) -> Result<Units, String> {
        let layers = &net.layers;
        for (l, layer) in layers.iter().enumerate() {
            let refused = match layer {
                Layer::BatchNorm2d(_) => Some("batch_norm"),
                Layer::BasicBlock(_) => Some("basic_block"),
                _ => None,
            };
            if let Some(kind) = refused {
                return Err(format!(
                    "layer {l} is a `{kind}`, which clnp does not support: its zero-forgetting guarantee \
                     rests on frozen units computing exactly what they did, and batch norm's running \
                     statistics (moved by every later task's batches) and a residual block's shortcut \
                     (which adds free channels into used ones) break it; use conv2d, relu, pooling, \
                     flatten and linear layers"
                ));
            }
        }
        let output = match layers.last() {
            Some(Layer::Linear(_)) => layers.len() - 1,
            _ => return Err("the network's last layer must be `linear` (the task heads)".into()),
        };
        let mut hidden = Vec::new();
        for (l, layer) in layers[..output].iter().enumerate() {
            let units = match layer {
                Layer::Conv2d(c) => c.geometry.out_channels,
                Layer::Linear(lin) => lin.outputs,
                _ => continue,
            };
            if !matches!(layers.get(l + 1), Some(Layer::Relu)) {
                return Err(format!(
                    "layer {l} must be followed directly by `relu`: pruning by activity needs units that \
                     are exactly silent"
                ));
            }
            let consumer = (l + 1..layers.len())
                .find(|&k| parts(&layers[k]).is_some())
                .expect("the last layer is linear");
            let row = parts(&layers[consumer]).expect("a consumer has weights").2;
            let shape = net.output_shape_of(l + 1);
            hidden.push(UnitLayer {
                layer: l,
                relu: l + 1,
                units,
                plane: shape.height * shape.width,
                consumer,
                block: row / units,
            });
        }
        Ok(Units { hidden, output })
    }

    /// The sizes `Partition::new` expects: input length, units per hidden layer, outputs.
    pub fn sizes(&self, net: &ConvNet) -> Vec<usize> {
        let mut sizes = vec![net.input_shape().len()];
        sizes.extend(self.hidden.iter().map(|h| h.units));
        sizes.push(net.outputs());
        sizes
    }

    /// Zeroes the gradient of every row the current task may not train (used units, and in the
    /// output layer every row frozen or outside `head`) and adds α·sign(w) to the weights of
    /// the rows it may train (the L1 weight penalty; biases carry none).
    pub fn shape_gradients(
        &self,
        p: &Partition,
        net: &ConvNet,
        grads: &mut ConvNet,
        head: &Range<usize>,
        alpha: f32,
    ) {
        let rows =
            self.hidden.iter().enumerate().map(|(h, u)| (u.layer, Some(h))).chain([(self.output, None)]);
        for (l, hidden) in rows {
            let (w, _, k) = parts(&net.layers[l]).expect("a unit layer");
            let (g, mut bias, _) = parts_mut(&mut grads.layers[l]).expect("a unit layer");
            for (row, (g, w)) in g.chunks_exact_mut(k).zip(w.chunks_exact(k)).enumerate() {
                let trainable = match hidden {
                    Some(h) => !p.is_used(h, row),
                    None => !p.frozen_outputs[row] && head.contains(&row),
                };
                if !trainable {
                    g.fill(0.0);
                    if let Some(b) = bias.as_deref_mut() {
                        b[row] = 0.0;
                    }
                } else if alpha != 0.0 {
                    for (g, &w) in g.iter_mut().zip(w) {
                        if w > 0.0 {
                            *g += alpha;
                        } else if w < 0.0 {
                            *g -= alpha;
                        }
                    }
                }
            }
        }
    }

    /// Adds the local gradient of the activation penalty α·mean_x Σ_i mean_p h_i(x, p) over the
    /// free units (p: positions of unit i's plane; one for a linear unit), from the batch's
    /// values in `ws`: where h_i(x, p) > 0, row i gains α/(B·P) times the input patch that
    /// position read and bias i gains α/(B·P). As in the MLP version, nothing is sent further
    /// down through the units feeding it.
    pub fn add_activation_penalty(
        &self,
        p: &Partition,
        net: &ConvNet,
        grads: &mut ConvNet,
        ws: &Workspace,
        alpha: f32,
    ) {
        let batch = ws.batch();
        if alpha == 0.0 || batch == 0 {
            return;
        }
        for (h, u) in self.hidden.iter().enumerate() {
            let input: &[f32] = if u.layer == 0 { &ws.input } else { ws.layer_output(u.layer - 1) };
            let values = ws.layer_output(u.relu);
            let scale = alpha / (batch * u.plane) as f32;
            let per_sample_in = input.len() / batch;
            let per_sample_out = u.units * u.plane;
            match (&net.layers[u.layer], &mut grads.layers[u.layer]) {
                (Layer::Linear(_), Layer::Linear(g)) => {
                    for x in 0..batch {
                        let a = &input[x * per_sample_in..(x + 1) * per_sample_in];
                        for (i, &v) in values[x * per_sample_out..(x + 1) * per_sample_out].iter().enumerate()
                        {
                            if v > 0.0 && !p.is_used(h, i) {
                                for (g, &a) in g.row_mut(i).iter_mut().zip(a) {
                                    *g += scale * a;
                                }
                                g.bias[i] += scale;
                            }
                        }
                    }
                }
                (Layer::Conv2d(c), Layer::Conv2d(g)) => {
                    let geo = &c.geometry;
                    let (out_h, out_w) = (geo.out_h(), geo.out_w());
                    let (kh, kw) = (geo.kernel_h, geo.kernel_w);
                    for x in 0..batch {
                        let a = &input[x * per_sample_in..(x + 1) * per_sample_in];
                        let v = &values[x * per_sample_out..(x + 1) * per_sample_out];
                        for i in (0..u.units).filter(|&i| !p.is_used(h, i)) {
                            let plane = &v[i * u.plane..(i + 1) * u.plane];
                            let row = g.row_mut(i);
                            let mut fired = 0usize;
                            for oy in 0..out_h {
                                for ox in 0..out_w {
                                    if plane[oy * out_w + ox] <= 0.0 {
                                        continue;
                                    }
                                    fired += 1;
                                    for ci in 0..geo.in_channels {
                                        for ky in 0..kh {
                                            let iy = (oy * geo.stride_h + ky).wrapping_sub(geo.pad_h);
                                            if iy >= geo.in_h {
                                                continue;
                                            }
                                            for kx in 0..kw {
                                                let ix = (ox * geo.stride_w + kx).wrapping_sub(geo.pad_w);
                                                if ix >= geo.in_w {
                                                    continue;
                                                }
                                                row[(ci * kh + ky) * kw + kx] +=
                                                    scale * a[(ci * geo.in_h + iy) * geo.in_w + ix];
                                            }
                                        }
                                    }
                                }
                            }
                            if let Some(b) = g.bias.as_mut() {
                                b[i] += scale * fired as f32;
                            }
                        }
                    }
                }
                _ => unreachable!("a unit layer and its gradient have the same kind"),
            }
        }
    }

    /// Copies every frozen row (weights and bias) of `snapshot` into `net`: undoes whatever
    /// the optimiser did to them (momentum, Adam's moments).
    pub fn restore(&self, p: &Partition, net: &mut ConvNet, snapshot: &ConvNet) {
        let rows =
            self.hidden.iter().enumerate().map(|(h, u)| (u.layer, Some(h))).chain([(self.output, None)]);
        for (l, hidden) in rows {
            let (s, sb, k) = parts(&snapshot.layers[l]).expect("a unit layer");
            let (w, mut b, _) = parts_mut(&mut net.layers[l]).expect("a unit layer");
            for row in 0..w.len() / k {
                let frozen = match hidden {
                    Some(h) => p.is_used(h, row),
                    None => p.frozen_outputs[row],
                };
                if frozen {
                    w[row * k..(row + 1) * k].copy_from_slice(&s[row * k..(row + 1) * k]);
                    if let (Some(b), Some(sb)) = (b.as_deref_mut(), sb) {
                        b[row] = sb[row];
                    }
                }
            }
        }
    }

    /// Removes units: zeroes each one's incoming row, bias and its block of every consumer row
    /// (on parameters, or on a gradient to mask it). `removed[h]` lists units of hidden layer h.
    pub fn remove(&self, net: &mut ConvNet, removed: &[Vec<usize>]) {
        for (u, units) in self.hidden.iter().zip(removed) {
            for &i in units {
                let (w, b, k) = parts_mut(&mut net.layers[u.layer]).expect("a unit layer");
                w[i * k..(i + 1) * k].fill(0.0);
                if let Some(b) = b {
                    b[i] = 0.0;
                }
                let (w, _, k) = parts_mut(&mut net.layers[u.consumer]).expect("a consumer");
                for row in w.chunks_exact_mut(k) {
                    row[i * u.block..(i + 1) * u.block].fill(0.0);
                }
            }
        }
    }

    /// Draws row `row` of unit layer `layer` (an index into `ConvNet::layers`) afresh from
    /// PyTorch's default U(±1/√fan_in), the conv net's initial distribution, with bias 0 (as
    /// the MLP version), and resets the optimiser's state of that row and bias.
    pub fn reinitialise(
        net: &mut ConvNet,
        optimizer: &mut Optimizer<ConvNet>,
        layer: usize,
        row: usize,
        rng: &mut Rng,
    ) {
        let (w, b, k) = parts_mut(&mut net.layers[layer]).expect("a unit layer");
        let bound = 1.0 / (k as f32).sqrt();
        for w in &mut w[row * k..(row + 1) * k] {
            *w = rng.gen_range(-bound..=bound);
        }
        if let Some(b) = b {
            b[row] = 0.0;
        }
        for (_, state, fresh) in optimizer.states_mut() {
            let (w, b, k) = parts_mut(&mut state.layers[layer]).expect("a unit layer");
            w[row * k..(row + 1) * k].fill(fresh);
            if let Some(b) = b {
                b[row] = fresh;
            }
        }
    }

    /// Every hidden unit's activity on all examples of `split`: per example, the mean over
    /// its plane of the ReLU output (`mean_activation`) or the fraction of positions where it
    /// is positive (`firing_rate`); summed in f64 and divided by the number of examples.
    pub fn measure_activity(
        &self,
        compute: &mut ConvCompute,
        net: &ConvNet,
        split: &Split,
        kind: Activity,
    ) -> Vec<Vec<f64>> {
        let mut sums: Vec<Vec<f64>> = self.hidden.iter().map(|u| vec![0.0; u.units]).collect();
        let indices: Vec<usize> = (0..split.len()).collect();
        compute.for_each_chunk(net, split, &indices, |ws, _| {
            for (u, sum) in self.hidden.iter().zip(sums.iter_mut()) {
                for sample in ws.layer_output(u.relu).chunks_exact(u.units * u.plane) {
                    for (s, plane) in sum.iter_mut().zip(sample.chunks_exact(u.plane)) {
                        let total: f64 = plane
                            .iter()
                            .map(|&h| match kind {
                                Activity::MeanActivation => f64::from(h.max(0.0)),
                                Activity::FiringRate => f64::from(u8::from(h > 0.0)),
                            })
                            .sum();
                        *s += total / u.plane as f64;
                    }
                }
            }
        });
        let n = split.len().max(1) as f64;
        sums.iter_mut().flatten().for_each(|s| *s /= n);
        sums
    }

    /// The hidden units the outputs `head` depend on through non-zero weights:
    /// `reached[h][i]` for hidden layer h.
    pub fn reached(&self, net: &ConvNet, head: &Range<usize>) -> Vec<Vec<bool>> {
        let mut reached: Vec<Vec<bool>> = self.hidden.iter().map(|u| vec![false; u.units]).collect();
        // Rows of the layer above that are reached: the head rows, then each layer's reached units.
        let mut above: Vec<bool> = (0..net.outputs()).map(|r| head.contains(&r)).collect();
        for (h, u) in self.hidden.iter().enumerate().rev() {
            let (w, _, k) = parts(&net.layers[u.consumer]).expect("a consumer");
            for (row, _) in w.chunks_exact(k).zip(&above).filter(|(_, &r)| r) {
                for (i, block) in row.chunks_exact(u.block).enumerate() {
                    reached[h][i] |= block.iter().any(|&w| w != 0.0);
                }
            }
            above = reached[h].clone();
        }
        reached
    }
}
