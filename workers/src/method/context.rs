//! What a method sees at each hook, and the compute facility it shares with the trainer.

use std::ops::Range;

use crate::model::{fused, loss, Autograd, BatchLoss, Layers, Mlp, Targets, Workspace};
use crate::optim::Optimizer;
use crate::protocol::Engine;
use crate::rng::Rng;
use crate::stream::{Split, Target, Task};

/// The state of one training step, after back-propagation.
pub struct StepContext<'a> {
    /// The network (before the update in `shape_gradients` and `update`, after it in
    /// `after_update`).
    pub net: &'a mut Mlp,
    /// Gradients of the mean loss on this batch.
    pub grads: &'a mut Layers,
    /// This batch's inputs and every layer's values, from the forward pass before the update.
    pub workspace: &'a Workspace,
    /// The optimiser and its per-element state.
    pub optimizer: &'a mut Optimizer,
    /// The method's own random stream.
    pub rng: &'a mut Rng,
    /// Index of the task being trained.
    pub task: usize,
    /// Output columns of the task's head.
    pub head: Range<usize>,
    /// Optimiser steps taken before this one.
    pub step: u64,
}

/// The network's outputs on a batch and the loss gradient, before back-propagation.
pub struct OutputContext<'a> {
    /// The network (not yet updated).
    pub net: &'a Mlp,
    /// The batch's inputs, `batch × inputs`.
    pub input: &'a [f32],
    /// The outputs, `batch × width`.
    pub outputs: &'a [f32],
    /// d(loss)/d(outputs), `batch × width`; methods add their terms.
    pub output_grad: &'a mut [f32],
    /// Output width (all heads).
    pub width: usize,
    /// Output columns of the task's head.
    pub head: Range<usize>,
    /// Index of the task being trained.
    pub task: usize,
}

/// A task boundary.
pub struct TaskContext<'a> {
    /// The task starting or just finished.
    pub task: &'a Task,
    /// Output columns of its head.
    pub head: Range<usize>,
    /// Tasks in the stream.
    pub tasks_total: usize,
    /// The network.
    pub net: &'a mut Mlp,
    /// The optimiser.
    pub optimizer: &'a mut Optimizer,
    /// The method's random stream.
    pub rng: &'a mut Rng,
    /// Forward/backward passes over data, for methods that measure the network.
    pub compute: &'a mut Compute,
    /// Diagnostics to emit as `method` events: (name, values).
    pub report: &'a mut Vec<(String, serde_json::Value)>,
}

/// Runs the network on data: batches gathered from splits, forward and backward passes through
/// the run's engine. The trainer and the methods share one, so its buffers are allocated once.
pub struct Compute {
    engine: Engine,
    autograd: Option<Autograd>,
    /// Buffers of the last pass.
    pub workspace: Workspace,
    /// Gradients of the last backward pass.
    pub grads: Layers,
    classes: Vec<u32>,
    reals: Vec<f32>,
    indices: Vec<usize>,
    chunk: usize,
}

impl Compute {
    /// A compute facility for `net` with the given engine; `batch` sizes the buffers.
    pub fn new(net: &Mlp, engine: Engine, batch: usize) -> Self {
        let sizes = net.sizes();
        Compute {
            engine,
            autograd: (engine == Engine::Autograd).then(Autograd::new),
            workspace: Workspace::new(&sizes, batch),
            grads: Layers::zeros_like(&net.params),
            classes: Vec::new(),
            reals: Vec::new(),
            indices: Vec::new(),
            chunk: 500,
        }
    }

    /// Gathers examples `indices` of `split` into the workspace input and the target buffers.
    pub fn load(&mut self, split: &Split, indices: &[usize]) {
        self.workspace.set_batch(indices.len());
        split.gather_inputs(indices, &mut self.workspace.input);
        self.classes.clear();
        self.reals.clear();
        for &i in indices {
            match split.target(i) {
                Target::Class(c) => self.classes.push(c),
                Target::Real(r) => self.reals.push(r),
            }
        }
    }

    /// Loads a batch given directly as inputs (`batch × inputs`, row-major) and classes —
    /// for benchmarks and for methods that build their own batches.
    pub fn set_batch(&mut self, inputs: &[f32], classes: &[u32]) {
        self.workspace.set_batch(classes.len());
        self.workspace.input.copy_from_slice(inputs);
        self.classes.clear();
        self.classes.extend_from_slice(classes);
        self.reals.clear();
    }

    /// Targets of the loaded batch.
    pub fn targets(&self) -> Targets<'_> {
        if self.reals.is_empty() {
            Targets::Classes(&self.classes)
        } else {
            Targets::Reals(&self.reals)
        }
    }

    /// Forward pass on the loaded batch (values in `workspace`).
    pub fn forward(&mut self, net: &Mlp) {
        fused::forward(net, &mut self.workspace);
    }

    /// Forward pass, loss on `head`, `hook` to adjust the output gradient, backward pass into
    /// `grads`. Returns the batch's loss totals (measured before any update: the online
    /// performance).
    pub fn loss_and_gradients(
        &mut self,
        net: &Mlp,
        head: Range<usize>,
        task: usize,
        mut hook: impl FnMut(&mut OutputContext<'_>),
    ) -> BatchLoss {
        let targets =
            if self.reals.is_empty() { Targets::Classes(&self.classes) } else { Targets::Reals(&self.reals) };
        let mut totals = BatchLoss::default();
        let mut output_gradient = |ws: &mut Workspace| {
            let width = ws.output_width();
            let outputs = ws.values.last().expect("output layer");
            totals = loss::evaluate(outputs, width, head.clone(), targets, Some(&mut ws.output_grad));
            hook(&mut OutputContext {
                net,
                input: &ws.input,
                outputs,
                output_grad: &mut ws.output_grad,
                width,
                head: head.clone(),
                task,
            });
        };
        match &self.autograd {
            Some(engine) => {
                engine.forward_backward(net, &mut self.workspace, &mut self.grads, &mut output_gradient)
            }
            None => {
                fused::forward(net, &mut self.workspace);
                output_gradient(&mut self.workspace);
                fused::backward(net, &mut self.workspace, &mut self.grads);
            }
        }
        totals
    }

    /// Loss and accuracy of `net` on the first `max` examples of `split` (all when `None`),
    /// in chunks so memory stays bounded.
    pub fn evaluate(
        &mut self,
        net: &Mlp,
        split: &Split,
        head: Range<usize>,
        max: Option<usize>,
    ) -> BatchLoss {
        let n = max.map_or(split.len(), |m| m.min(split.len()));
        let mut total = BatchLoss::default();
        let mut start = 0;
        while start < n {
            let end = (start + self.chunk).min(n);
            let mut indices = std::mem::take(&mut self.indices);
            indices.clear();
            indices.extend(start..end);
            self.load(split, &indices);
            self.indices = indices;
            self.forward(net);
            let width = self.workspace.output_width();
            total.add(loss::evaluate(self.workspace.outputs(), width, head.clone(), self.targets(), None));
            start = end;
        }
        total
    }

    /// Calls `visit` with the workspace after a forward pass over each chunk of examples
    /// `indices` of `split` (hidden values in `workspace.values`).
    pub fn for_each_chunk(
        &mut self,
        net: &Mlp,
        split: &Split,
        indices: &[usize],
        mut visit: impl FnMut(&Workspace, Targets<'_>),
    ) {
        for chunk in indices.chunks(self.chunk) {
            self.load(split, chunk);
            self.forward(net);
            let targets = if self.reals.is_empty() {
                Targets::Classes(&self.classes)
            } else {
                Targets::Reals(&self.reals)
            };
            visit(&self.workspace, targets);
        }
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        self.engine
    }
}

/// Helpers for method tests: a step context over a given network, gradients and optimiser.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::rng;

    /// Runs `f` with a step context whose workspace holds a forward pass of `net` on `input`.
    pub(crate) fn with_step<R>(
        net: &mut Mlp,
        grads: &mut Layers,
        optimizer: &mut Optimizer,
        input: &[f32],
        f: impl FnOnce(&mut StepContext<'_>) -> R,
    ) -> R {
        let sizes = net.sizes();
        let batch = input.len() / sizes[0];
        let mut ws = Workspace::new(&sizes, batch);
        ws.input.copy_from_slice(input);
        fused::forward(net, &mut ws);
        let mut r = rng::stream(0, "method-test", 0);
        let head = 0..*sizes.last().unwrap();
        let mut cx =
            StepContext { net, grads, workspace: &ws, optimizer, rng: &mut r, task: 0, head, step: 0 };
        f(&mut cx)
    }
}
