//! The compute facility of conv-net runs: the conv-net counterpart of [`Compute`](super::Compute).
//!
//! Training passes run batch norm on the batch's statistics and then move its running
//! statistics on (as a PyTorch forward pass in `train()` mode does); evaluation runs on the
//! running statistics and changes nothing, in fixed chunks from the split's start, so the same
//! examples are always evaluated in the same batches.

use std::ops::Range;

use super::context::{BatchTargets, OutputContext, Passes};
use crate::model::convnet::{self, ConvNet, Mode, Workspace};
use crate::model::{loss, BatchLoss, Targets};
use crate::protocol::Engine;
use crate::stream::{Split, Target};

/// Examples per evaluation chunk at least; a conv net's activations per example are large
/// (about 1.5 MB through a reduced ResNet-18), so chunks are smaller than an MLP's 500.
const EVAL_CHUNK: usize = 64;

/// Runs a conv net on data for the trainer and the methods.
pub struct ConvCompute {
    /// Buffers of the last pass.
    pub workspace: Workspace,
    /// Gradients of the last training pass (its structure is also what sizes the workspace).
    pub grads: ConvNet,
    targets: BatchTargets,
    indices: Vec<usize>,
    chunk: usize,
}

impl ConvCompute {
    /// Buffers for `net` at training batches of `batch`.
    pub fn new(net: &ConvNet, batch: usize) -> Self {
        ConvCompute {
            workspace: Workspace::new(net, batch.max(1)),
            grads: net.zeros_like(),
            targets: BatchTargets::default(),
            indices: Vec::new(),
            chunk: batch.max(EVAL_CHUNK),
        }
    }

    /// Calls `visit` with the workspace after an evaluation-mode forward pass over each chunk
    /// of examples `indices` of `split` (every layer's output in the workspace).
    pub fn for_each_chunk(
        &mut self,
        net: &ConvNet,
        split: &Split,
        indices: &[usize],
        visit: impl FnMut(&Workspace, Targets<'_>),
    ) {
        match self.for_each_chunk_by(net, split, indices, plain, visit) {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }
}

impl ConvCompute {
    /// Per-example gradients, the conv-net counterpart of
    /// [`Compute::example_gradients`](super::Compute::example_gradients): for each example
    /// `indices[i]` of `split`, one forward and one backward pass on a batch of one, so
    /// `visit(i, grads)` sees the gradient of that example's own loss on `head` (cross-entropy
    /// −∇ log p(y | x), or the squared error) with respect to every trainable buffer.
    /// `target(outputs, stored)` picks the y from the head's outputs and the stored target.
    ///
    /// The passes run in evaluation mode: batch norm normalises with its running statistics,
    /// so each gradient is that of the function the network computes when it predicts, and
    /// the running statistics do not move. (In training mode a batch of one would be
    /// normalised by its own statistics — a different function of the parameters, and
    /// undefined where a map is 1×1.) Leaves the workspace and `grads` holding the last
    /// example's pass.
    pub fn example_gradients(
        &mut self,
        net: &ConvNet,
        split: &Split,
        indices: &[usize],
        head: Range<usize>,
        mut target: impl FnMut(&[f32], Target) -> Target,
        mut visit: impl FnMut(usize, &ConvNet),
    ) {
        let width = net.outputs();
        for (i, &example) in indices.iter().enumerate() {
            self.load_batch(split, &[example]);
            eval_forward(net, &mut self.workspace);
            let ws = &mut self.workspace;
            let chosen = target(&ws.outputs()[head.clone()], split.target(example));
            let (classes, reals);
            let targets = match chosen {
                Target::Class(c) => {
                    classes = [c];
                    Targets::Classes(&classes)
                }
                Target::Real(r) => {
                    reals = [r];
                    Targets::Reals(&reals)
                }
            };
            let mut output_grad = std::mem::take(&mut ws.output_grad);
            loss::evaluate(ws.outputs(), width, head.clone(), targets, Some(&mut output_grad));
            ws.output_grad = output_grad;
            convnet::backward(net, ws, &mut self.grads);
            visit(i, &self.grads);
        }
    }
}

/// An evaluation-mode pass: it cannot fail (only a training-mode batch norm on one value per
/// channel can, and evaluation uses the running statistics).
fn eval_forward(net: &ConvNet, ws: &mut Workspace) {
    convnet::forward_pass(net, ws, Mode::Eval).expect("an evaluation-mode pass has no batch-size condition");
}

/// [`eval_forward`] as the forward pass of the chunked loops.
fn plain(net: &ConvNet, ws: &mut Workspace) -> Result<(), std::convert::Infallible> {
    eval_forward(net, ws);
    Ok(())
}

impl Passes<ConvNet> for ConvCompute {
    fn for_network(net: &ConvNet, _engine: Engine, batch: usize) -> Self {
        ConvCompute::new(net, batch)
    }

    fn load_batch(&mut self, split: &Split, indices: &[usize]) {
        self.workspace.set_batch(&self.grads, indices.len());
        split.gather_inputs(indices, &mut self.workspace.input);
        self.targets.load(split, indices);
    }

    fn input_mut(&mut self) -> &mut [f32] {
        &mut self.workspace.input
    }

    fn batch_parts(&mut self) -> (&mut Workspace, Targets<'_>) {
        (&mut self.workspace, self.targets.get())
    }

    fn train_pass(
        &mut self,
        net: &mut ConvNet,
        head: Range<usize>,
        task: usize,
        mut hook: impl FnMut(&mut OutputContext<'_, ConvNet>),
    ) -> Result<BatchLoss, String> {
        convnet::forward_pass(net, &mut self.workspace, Mode::Train).map_err(|e| e.to_string())?;
        let targets = self.targets.get();
        let ws = &mut self.workspace;
        let width = net.outputs();
        let mut output_grad = std::mem::take(&mut ws.output_grad);
        let totals = loss::evaluate(ws.outputs(), width, head.clone(), targets, Some(&mut output_grad));
        hook(&mut OutputContext {
            net,
            input: &ws.input,
            outputs: ws.outputs(),
            output_grad: &mut output_grad,
            width,
            head,
            task,
        });
        ws.output_grad = output_grad;
        convnet::backward(net, ws, &mut self.grads);
        convnet::commit_statistics(net, ws);
        Ok(totals)
    }

    fn step_parts(&mut self) -> (&mut ConvNet, &Workspace) {
        (&mut self.grads, &self.workspace)
    }

    fn chunk(&self) -> usize {
        self.chunk
    }

    fn index_buffer(&mut self) -> &mut Vec<usize> {
        &mut self.indices
    }

    fn outputs<'w>(net: &ConvNet, ws: &'w Workspace) -> (&'w [f32], usize) {
        (ws.outputs(), net.outputs())
    }

    fn evaluate_net(
        &mut self,
        net: &ConvNet,
        split: &Split,
        head: Range<usize>,
        max: Option<usize>,
    ) -> BatchLoss {
        match self.evaluate_by(net, split, head, max, plain) {
            Ok(total) => total,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::conv_testing::{conv_task, small_net};
    use crate::model::Parameters;

    /// In evaluation mode the examples of a batch do not interact, so the per-example
    /// gradients average to the gradient of a batch pass in evaluation mode; and the
    /// target the caller picks is the one the loss is taken against.
    #[test]
    fn per_example_gradients_average_to_the_evaluation_mode_batch_gradient() {
        let mut net = small_net(5, 4);
        let task = conv_task(&net, 5, 0, 3);
        let mut compute = ConvCompute::new(&net, 8);
        // Move the running statistics away from (0, 1) with one training-mode pass.
        let all: Vec<usize> = (0..task.train.len()).collect();
        compute.load_batch(&task.train, &all[..8]);
        compute.train_pass(&mut net, 0..5, 0, |_| {}).unwrap();
        let indices = [1, 4, 6, 9, 13];
        let mut mean = net.zeros_like();
        let mut seen = Vec::new();
        compute.example_gradients(
            &net,
            &task.train,
            &indices,
            1..5,
            |logits, stored| {
                assert_eq!(logits.len(), 4);
                match stored {
                    Target::Class(c) => Target::Class((c + 1) % 4),
                    other => other,
                }
            },
            |i, g| {
                seen.push(i);
                for (m, g) in mean.slices_mut().into_iter().zip(g.slices()) {
                    for (m, &g) in m.iter_mut().zip(g) {
                        *m += g / indices.len() as f32;
                    }
                }
            },
        );
        assert_eq!(seen, [0, 1, 2, 3, 4]);

        let mut ws = Workspace::new(&net, indices.len());
        task.train.gather_inputs(&indices, &mut ws.input);
        convnet::forward_pass(&net, &mut ws, Mode::Eval).unwrap();
        let classes: Vec<u32> = indices
            .iter()
            .map(|&i| match task.train.target(i) {
                Target::Class(c) => (c + 1) % 4,
                Target::Real(_) => unreachable!(),
            })
            .collect();
        let mut output_grad = std::mem::take(&mut ws.output_grad);
        loss::evaluate(ws.outputs(), 5, 1..5, Targets::Classes(&classes), Some(&mut output_grad));
        ws.output_grad = output_grad;
        let mut batch = net.zeros_like();
        convnet::backward(&net, &mut ws, &mut batch);
        for (a, b) in mean.slices().iter().zip(batch.slices()) {
            for (&a, &b) in a.iter().zip(b) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
        assert!(batch.slices().iter().flat_map(|s| s.iter()).any(|&g| g != 0.0));
    }
}
