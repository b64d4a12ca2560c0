//! The parts of a rehearsal step that every rehearsal method shares: moving examples between
//! a batch and the buffer, the losses on replayed examples, and gradient arithmetic.
//!
//! The losses act on a batch's outputs and write d(loss)/d(outputs); the gradient arithmetic
//! acts on parameter-shaped buffers. Only [`ReplayNet`] knows the network, so a model family
//! needs only its own passes here.

use std::ops::Range;

use super::buffer::{Buffer, Example};
use crate::engine::Trainable;
use crate::method::MethodError;
use crate::model::convnet::{self, ConvNet, Mode};
use crate::model::{fused, loss, BatchLoss, Mlp, Parameters, Targets, Workspace};
use crate::rng::Rng;
use crate::stream::Target;

/// What a rehearsal step needs of a network family: its own passes over a workspace it can
/// size, fill and read. The MLP's passes are the fused kernels; a conv net's training pass
/// runs batch norm on the batch's statistics and moves its running statistics on, as every
/// PyTorch forward pass in `train()` mode does (so a step with two replay passes moves them
/// three times, as Mammoth's does), and its prediction pass uses the running statistics.
pub trait ReplayNet: Trainable {
    /// A workspace for batches of `batch` examples.
    fn workspace(&self, batch: usize) -> Self::Workspace;
    /// Resizes `ws` for batches of `batch`.
    fn set_batch(&self, ws: &mut Self::Workspace, batch: usize);
    /// The batch's inputs.
    fn input(ws: &Self::Workspace) -> &[f32];
    /// The batch's inputs, to fill.
    fn input_mut(ws: &mut Self::Workspace) -> &mut [f32];
    /// The outputs after a pass, `batch × outputs`.
    fn output_values(ws: &Self::Workspace) -> &[f32];
    /// The outputs and the output gradient, to read one and write the other.
    fn outputs_and_grad(ws: &mut Self::Workspace) -> (&[f32], &mut [f32]);
    /// A training pass on the workspace's input.
    fn train_forward(&mut self, ws: &mut Self::Workspace) -> Result<(), MethodError>;
    /// A prediction pass (evaluation mode) on the workspace's input.
    fn predict(&self, ws: &mut Self::Workspace);
    /// Back-propagates the output gradient after [`ReplayNet::train_forward`], overwriting `grads`.
    fn backward(&self, ws: &mut Self::Workspace, grads: &mut Self::Params);
}

impl ReplayNet for Mlp {
    fn workspace(&self, batch: usize) -> Workspace {
        Workspace::new(&self.sizes(), batch)
    }

    fn set_batch(&self, ws: &mut Workspace, batch: usize) {
        ws.set_batch(batch);
    }

    fn input(ws: &Workspace) -> &[f32] {
        &ws.input
    }

    fn input_mut(ws: &mut Workspace) -> &mut [f32] {
        &mut ws.input
    }

    fn output_values(ws: &Workspace) -> &[f32] {
        ws.outputs()
    }

    fn outputs_and_grad(ws: &mut Workspace) -> (&[f32], &mut [f32]) {
        (ws.values.last().expect("a network has an output layer"), &mut ws.output_grad)
    }

    fn train_forward(&mut self, ws: &mut Workspace) -> Result<(), MethodError> {
        fused::forward(self, ws);
        Ok(())
    }

    fn predict(&self, ws: &mut Workspace) {
        fused::forward(self, ws);
    }

    fn backward(&self, ws: &mut Workspace, grads: &mut crate::model::Layers) {
        fused::backward(self, ws, grads);
    }
}

impl ReplayNet for ConvNet {
    fn workspace(&self, batch: usize) -> convnet::Workspace {
        convnet::Workspace::new(self, batch.max(1))
    }

    fn set_batch(&self, ws: &mut convnet::Workspace, batch: usize) {
        ws.set_batch(self, batch);
    }

    fn input(ws: &convnet::Workspace) -> &[f32] {
        &ws.input
    }

    fn input_mut(ws: &mut convnet::Workspace) -> &mut [f32] {
        &mut ws.input
    }

    fn output_values(ws: &convnet::Workspace) -> &[f32] {
        ws.outputs()
    }

    fn outputs_and_grad(ws: &mut convnet::Workspace) -> (&[f32], &mut [f32]) {
        ws.outputs_and_grad()
    }

    fn train_forward(&mut self, ws: &mut convnet::Workspace) -> Result<(), MethodError> {
        convnet::forward(self, ws, Mode::Train).map_err(|e| MethodError::Failed(e.to_string()))
    }

    fn predict(&self, ws: &mut convnet::Workspace) {
        convnet::forward_pass(self, ws, Mode::Eval)
            .expect("an evaluation-mode pass has no batch-size condition");
    }

    fn backward(&self, ws: &mut convnet::Workspace, grads: &mut ConvNet) {
        convnet::backward(self, ws, grads);
    }
}

/// A workspace and gradient buffers for the passes over replayed examples, allocated once
/// and rebuilt for a network of another shape. Not part of the checkpoint: each step
/// overwrites them before reading.
pub struct Scratch<M: ReplayNet> {
    /// The replay batch's buffers.
    pub ws: M::Workspace,
    /// The gradients of one pass.
    pub grads: M::Params,
    /// The step's gradient, for methods that combine several passes.
    pub total: M::Params,
    shape: (usize, usize),
}

impl<M: ReplayNet> Scratch<M> {
    /// Buffers for `net` and a batch of `batch` examples.
    pub fn new(net: &M, batch: usize) -> Self {
        let grads = net.parameters().zeros_like();
        Scratch {
            ws: net.workspace(batch),
            total: grads.clone(),
            grads,
            shape: (net.parameter_count(), net.outputs()),
        }
    }

    /// Reallocates when `net` is not the shape these buffers were made for, then sizes the
    /// workspace for `batch`.
    pub fn fit<'s>(slot: &'s mut Option<Scratch<M>>, net: &M, batch: usize) -> &'s mut Scratch<M> {
        if slot.as_ref().is_none_or(|s| s.shape != (net.parameter_count(), net.outputs())) {
            *slot = Some(Scratch::new(net, batch));
        }
        let scratch = slot.as_mut().expect("set above");
        net.set_batch(&mut scratch.ws, batch);
        scratch
    }
}

/// The target of example `i` of a batch's targets.
pub fn target_of(targets: Targets<'_>, i: usize) -> Target {
    match targets {
        Targets::Classes(c) => Target::Class(c[i]),
        Targets::Reals(r) => Target::Real(r[i]),
    }
}

/// Offers every example of the batch in `input` (rows of `dim`) to the reservoir, with its
/// target, `head` and, when `logits` is not empty, its row of `logits` (`width` per example).
pub fn offer_batch(
    buffer: &mut Buffer,
    input: &[f32],
    targets: Targets<'_>,
    head: Range<usize>,
    logits: &[f32],
    rng: &mut Rng,
) {
    let n = targets.len();
    let dim = input.len() / n.max(1);
    let width = logits.len() / n.max(1);
    for i in 0..n {
        let example = Example {
            input: &input[i * dim..(i + 1) * dim],
            target: target_of(targets, i),
            head: head.clone(),
            logits: &logits[i * width..(i + 1) * width],
        };
        buffer.offer(example, rng);
    }
}

/// Copies the inputs of buffer examples `slots` into rows `first..` of `input` (rows of the
/// buffer's input size).
pub fn gather(buffer: &Buffer, slots: &[usize], input: &mut [f32], first: usize) {
    let dim = buffer.dim();
    for (k, &slot) in slots.iter().enumerate() {
        let row = first + k;
        input[row * dim..(row + 1) * dim].copy_from_slice(buffer.example(slot).input);
    }
}

/// Loads buffer examples `slots` as the whole batch of `ws`.
pub fn load<M: ReplayNet>(net: &M, buffer: &Buffer, slots: &[usize], ws: &mut M::Workspace) {
    net.set_batch(ws, slots.len());
    gather(buffer, slots, M::input_mut(ws), 0);
}

/// The task loss of replayed examples, each on its own head against its stored target
/// (cross-entropy on the head's columns, or the squared error of a regression output):
/// `outputs` holds their rows (`width` each, in the order of `slots`), and `weight / n` times
/// each example's gradient is added to its row of `grad`, n = `slots.len()` — so `weight` is
/// the term's factor and the term is a mean over the replayed examples. Returns the loss totals.
pub fn replay_loss(
    outputs: &[f32],
    width: usize,
    buffer: &Buffer,
    slots: &[usize],
    weight: f32,
    grad: &mut [f32],
) -> BatchLoss {
    let mut total = BatchLoss::default();
    let mut row_grad = vec![0.0f32; width];
    let scale = weight / slots.len().max(1) as f32;
    for (k, &slot) in slots.iter().enumerate() {
        let example = buffer.example(slot);
        let row = &outputs[k * width..(k + 1) * width];
        let (class, real);
        let targets = match example.target {
            Target::Class(c) => {
                class = [c];
                Targets::Classes(&class)
            }
            Target::Real(r) => {
                real = [r];
                Targets::Reals(&real)
            }
        };
        total.add(loss::evaluate(row, width, example.head, targets, Some(&mut row_grad)));
        for (g, &d) in grad[k * width..(k + 1) * width].iter_mut().zip(&row_grad) {
            *g += scale * d;
        }
    }
    total
}

/// Dark experience replay's term: the mean squared error between the outputs of replayed
/// examples and the logits stored with them, over every output column (all heads) and every
/// example, as PyTorch's `mse_loss` with its mean reduction (what Mammoth uses).
/// `weight` × its gradient, 2(z − ℓ)/(n·width), is added to `grad`. Returns the mean.
pub fn logit_mse(
    outputs: &[f32],
    width: usize,
    buffer: &Buffer,
    slots: &[usize],
    weight: f32,
    grad: &mut [f32],
) -> f64 {
    let count = (slots.len() * width).max(1);
    let scale = 2.0 * weight / count as f32;
    let mut sum = 0.0f64;
    for (k, &slot) in slots.iter().enumerate() {
        let stored = buffer.example(slot).logits;
        let rows = outputs[k * width..(k + 1) * width].iter().zip(&mut grad[k * width..(k + 1) * width]);
        for ((&z, g), &l) in rows.zip(stored) {
            let err = z - l;
            sum += f64::from(err * err);
            *g += scale * err;
        }
    }
    sum / count as f64
}

/// dst += src, buffer by buffer.
pub fn add<P: Parameters>(dst: &mut P, src: &P) {
    for (d, s) in dst.slices_mut().into_iter().zip(src.slices()) {
        for (d, &s) in d.iter_mut().zip(s) {
            *d += s;
        }
    }
}

/// Σ a·b over every entry, in f64.
pub fn dot<P: Parameters>(a: &P, b: &P) -> f64 {
    a.slices()
        .into_iter()
        .zip(b.slices())
        .map(|(a, b)| a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum::<f64>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer_of(logits: &[[f32; 3]], classes: &[u32]) -> Buffer {
        let mut b = Buffer::new(logits.len());
        for (l, &c) in logits.iter().zip(classes) {
            b.push(Example { input: &[0.0], target: Target::Class(c), head: 0..3, logits: l });
        }
        b
    }

    #[test]
    fn the_logit_term_vanishes_when_the_outputs_reproduce_the_stored_logits() {
        let stored = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]];
        let b = buffer_of(&stored, &[0, 1]);
        let outputs: Vec<f32> = stored.iter().flatten().copied().collect();
        let mut grad = vec![0.0; 6];
        assert_eq!(logit_mse(&outputs, 3, &b, &[0, 1], 0.7, &mut grad), 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
        // Off by one in one column: mean of 1/6, gradient 0.7 · 2 · 1 / 6 there only.
        let mut off = outputs.clone();
        off[4] += 1.0;
        let mse = logit_mse(&off, 3, &b, &[0, 1], 0.7, &mut grad);
        assert!((mse - 1.0 / 6.0).abs() < 1e-12);
        let expected: Vec<f32> = (0..6).map(|i| if i == 4 { 0.7 * 2.0 / 6.0 } else { 0.0 }).collect();
        assert_eq!(grad, expected);
    }

    #[test]
    fn the_replay_loss_is_the_mean_cross_entropy_on_each_examples_own_head() {
        let mut b = Buffer::new(2);
        b.push(Example { input: &[0.0], target: Target::Class(1), head: 0..2, logits: &[] });
        b.push(Example { input: &[0.0], target: Target::Class(0), head: 2..4, logits: &[] });
        let outputs = [0.0f32, 0.0, 9.0, 9.0, 5.0, 1.0, 2.0, 2.0];
        let mut grad = vec![0.0; 8];
        let total = replay_loss(&outputs, 4, &b, &[1, 0], 2.0, &mut grad);
        // Example 1 (first row) reads columns 2..4, example 0 (second row) columns 0..2.
        let expected = std::f64::consts::LN_2 + 4.0 + (1.0 + (-4.0f64).exp()).ln();
        assert!((total.loss_sum - expected).abs() < 1e-5, "{}", total.loss_sum);
        assert_eq!(&grad[..2], &[0.0, 0.0]);
        assert!((grad[2] - (0.5 - 1.0)).abs() < 1e-6 && (grad[3] - 0.5).abs() < 1e-6);
        assert_eq!(&grad[6..], &[0.0, 0.0]);
    }
}
