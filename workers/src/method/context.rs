//! What a method sees at each hook, and the compute facility it shares with the trainer.

use std::ops::Range;

use crate::engine::Trainable;
use crate::model::{fused, loss, Autograd, BatchLoss, Layers, Mlp, Targets, Workspace};
use crate::optim::Optimizer;
use crate::protocol::{Engine, MethodPayload};
use crate::rng::Rng;
use crate::stream::{Split, Target, Task};

/// The state of one training step, after back-propagation.
pub struct StepContext<'a, M: Trainable = Mlp> {
    /// The network (before the update in `shape_gradients` and `update`, after it in
    /// `after_update`).
    pub net: &'a mut M,
    /// Gradients of the mean loss on this batch.
    pub grads: &'a mut M::Params,
    /// This batch's inputs and every layer's values, from the forward pass before the update.
    pub workspace: &'a M::Workspace,
    /// The optimiser and its per-element state.
    pub optimizer: &'a mut Optimizer<M::Params>,
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
pub struct OutputContext<'a, M: Trainable = Mlp> {
    /// The network (not yet updated).
    pub net: &'a M,
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
pub struct TaskContext<'a, M: Trainable = Mlp> {
    /// The task starting or just finished.
    pub task: &'a Task,
    /// Output columns of its head.
    pub head: Range<usize>,
    /// Tasks in the stream.
    pub tasks_total: usize,
    /// The network.
    pub net: &'a mut M,
    /// The optimiser.
    pub optimizer: &'a mut Optimizer<M::Params>,
    /// The method's random stream.
    pub rng: &'a mut Rng,
    /// Forward/backward passes over data, for methods that measure the network.
    pub compute: &'a mut M::Compute,
    /// Diagnostics to emit as `method` events, in this order.
    pub report: &'a mut Vec<MethodPayload>,
}

/// What the trainer asks of a model family's compute facility ([`Compute`] for MLPs,
/// [`ConvCompute`](super::ConvCompute) for conv nets): batches gathered from splits, a
/// training pass with the loss on a head, evaluation in fixed chunks.
pub trait Passes<M: Trainable>: Send + Sized {
    /// A facility for `net` with the given engine; `batch` sizes the training buffers.
    fn for_network(net: &M, engine: Engine, batch: usize) -> Self;
    /// Gathers examples `indices` of `split` into the input and target buffers.
    fn load_batch(&mut self, split: &Split, indices: &[usize]);
    /// The loaded batch's inputs, for augmentation in place.
    fn input_mut(&mut self) -> &mut [f32];
    /// The workspace (whose input holds the loaded batch) and the batch's targets.
    fn batch_parts(&mut self) -> (&mut M::Workspace, Targets<'_>);
    /// A training pass on the loaded batch: forward, loss on `head`, `hook` to adjust the
    /// output gradient, backward. Returns the batch's loss totals (before any update), or why
    /// the network cannot train on this batch (a batch norm that would see one value).
    fn train_pass(
        &mut self,
        net: &mut M,
        head: Range<usize>,
        task: usize,
        hook: impl FnMut(&mut OutputContext<'_, M>),
    ) -> Result<BatchLoss, String>;
    /// The gradients and the workspace of the last training pass, borrowed together.
    fn step_parts(&mut self) -> (&mut M::Params, &M::Workspace);
    /// Examples per chunk of an evaluation or of [`Passes::for_each_chunk_by`].
    fn chunk(&self) -> usize;
    /// The buffer the chunked passes list a chunk's example indices in, kept between calls
    /// so they allocate once.
    fn index_buffer(&mut self) -> &mut Vec<usize>;
    /// The outputs in `ws` after a forward pass of `net`, and how many there are per example.
    fn outputs<'w>(net: &M, ws: &'w M::Workspace) -> (&'w [f32], usize);
    /// Loss and accuracy of `net` itself on the first `max` examples of `split`.
    fn evaluate_net(&mut self, net: &M, split: &Split, head: Range<usize>, max: Option<usize>) -> BatchLoss;

    /// Loss and accuracy of `net` on the first `max` examples of `split` (all when `None`),
    /// with `forward` as the model's prediction: it fills the workspace's outputs from its
    /// input (the network's own pass, or a method's own model, see
    /// [`Learner`](super::Learner)). The chunks are always the same — from the split's start,
    /// in steps of [`Passes::chunk`] — so the same examples are evaluated in the same batches
    /// every time, and memory stays bounded.
    fn evaluate_by<E>(
        &mut self,
        net: &M,
        split: &Split,
        head: Range<usize>,
        max: Option<usize>,
        mut forward: impl FnMut(&M, &mut M::Workspace) -> Result<(), E>,
    ) -> Result<BatchLoss, E> {
        let n = max.map_or(split.len(), |m| m.min(split.len()));
        let mut total = BatchLoss::default();
        let mut start = 0;
        while start < n {
            let end = (start + self.chunk()).min(n);
            let mut indices = std::mem::take(self.index_buffer());
            indices.clear();
            indices.extend(start..end);
            self.load_batch(split, &indices);
            *self.index_buffer() = indices;
            let (ws, targets) = self.batch_parts();
            forward(net, ws)?;
            let (outputs, width) = Self::outputs(net, ws);
            total.add(loss::evaluate(outputs, width, head.clone(), targets, None));
            start = end;
        }
        Ok(total)
    }

    /// Calls `visit` with the workspace and the targets after `forward` has run on each chunk
    /// of examples `indices` of `split`, in order (chunks of [`Passes::chunk`]); stops at
    /// `forward`'s first error.
    fn for_each_chunk_by<E>(
        &mut self,
        net: &M,
        split: &Split,
        indices: &[usize],
        mut forward: impl FnMut(&M, &mut M::Workspace) -> Result<(), E>,
        mut visit: impl FnMut(&M::Workspace, Targets<'_>),
    ) -> Result<(), E> {
        for chunk in indices.chunks(self.chunk()) {
            self.load_batch(split, chunk);
            let (ws, targets) = self.batch_parts();
            forward(net, ws)?;
            visit(ws, targets);
        }
        Ok(())
    }
}

impl Passes<Mlp> for Compute {
    fn for_network(net: &Mlp, engine: Engine, batch: usize) -> Self {
        Compute::new(net, engine, batch)
    }

    fn load_batch(&mut self, split: &Split, indices: &[usize]) {
        self.load(split, indices)
    }

    fn input_mut(&mut self) -> &mut [f32] {
        &mut self.workspace.input
    }

    fn batch_parts(&mut self) -> (&mut Workspace, Targets<'_>) {
        self.batch_mut()
    }

    fn train_pass(
        &mut self,
        net: &mut Mlp,
        head: Range<usize>,
        task: usize,
        hook: impl FnMut(&mut OutputContext<'_, Mlp>),
    ) -> Result<BatchLoss, String> {
        Ok(self.loss_and_gradients(net, head, task, hook))
    }

    fn step_parts(&mut self) -> (&mut Layers, &Workspace) {
        (&mut self.grads, &self.workspace)
    }

    fn chunk(&self) -> usize {
        self.chunk
    }

    fn index_buffer(&mut self) -> &mut Vec<usize> {
        &mut self.indices
    }

    fn outputs<'w>(_: &Mlp, ws: &'w Workspace) -> (&'w [f32], usize) {
        (ws.outputs(), ws.output_width())
    }

    fn evaluate_net(
        &mut self,
        net: &Mlp,
        split: &Split,
        head: Range<usize>,
        max: Option<usize>,
    ) -> BatchLoss {
        self.evaluate(net, split, head, max)
    }
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
    targets: BatchTargets,
    indices: Vec<usize>,
    chunk: usize,
}

/// The targets of a loaded batch, classes or reals as its split has them: what both compute
/// facilities keep beside their workspace.
#[derive(Default)]
pub(super) struct BatchTargets {
    classes: Vec<u32>,
    reals: Vec<f32>,
}

impl BatchTargets {
    /// Replaces them by the targets of examples `indices` of `split`.
    pub(super) fn load(&mut self, split: &Split, indices: &[usize]) {
        self.classes.clear();
        self.reals.clear();
        for &i in indices {
            match split.target(i) {
                Target::Class(c) => self.classes.push(c),
                Target::Real(r) => self.reals.push(r),
            }
        }
    }

    /// Replaces them by `classes`.
    fn set_classes(&mut self, classes: &[u32]) {
        self.classes.clear();
        self.classes.extend_from_slice(classes);
        self.reals.clear();
    }

    /// The targets, as the loss reads them.
    pub(super) fn get(&self) -> Targets<'_> {
        if self.reals.is_empty() {
            Targets::Classes(&self.classes)
        } else {
            Targets::Reals(&self.reals)
        }
    }
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
            targets: BatchTargets::default(),
            indices: Vec::new(),
            chunk: 500,
        }
    }

    /// Gathers examples `indices` of `split` into the workspace input and the target buffers.
    pub fn load(&mut self, split: &Split, indices: &[usize]) {
        self.workspace.set_batch(indices.len());
        split.gather_inputs(indices, &mut self.workspace.input);
        self.targets.load(split, indices);
    }

    /// Loads a batch given directly as inputs (`batch × inputs`, row-major) and classes —
    /// for benchmarks and for methods that build their own batches.
    pub fn set_batch(&mut self, inputs: &[f32], classes: &[u32]) {
        self.workspace.set_batch(classes.len());
        self.workspace.input.copy_from_slice(inputs);
        self.targets.set_classes(classes);
    }

    /// Targets of the loaded batch.
    pub fn targets(&self) -> Targets<'_> {
        self.targets.get()
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
        let targets = self.targets.get();
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
        let plain = |net: &Mlp, ws: &mut Workspace| {
            fused::forward(net, ws);
            Ok::<(), std::convert::Infallible>(())
        };
        match self.evaluate_with(net, split, head, max, plain) {
            Ok(total) => total,
            Err(never) => match never {},
        }
    }

    /// [`Compute::evaluate`] with another model's forward pass: `forward` fills the
    /// workspace's values from its input (a method with its own model, see
    /// [`Learner`](super::Learner)); in the same chunks of 500 from the split's start
    /// ([`Passes::evaluate_by`]).
    pub fn evaluate_with<E>(
        &mut self,
        net: &Mlp,
        split: &Split,
        head: Range<usize>,
        max: Option<usize>,
        forward: impl FnMut(&Mlp, &mut Workspace) -> Result<(), E>,
    ) -> Result<BatchLoss, E> {
        self.evaluate_by(net, split, head, max, forward)
    }

    /// Per-example gradients: for each example `indices[i]` of `split`, one forward and one
    /// backward pass on a batch of one, so `visit(i, grads)` sees the gradient of that
    /// example's own loss on `head` — cross-entropy, i.e. −∇ log p(y | x), or the squared
    /// error (z − y)² — with respect to every weight and bias. `target(outputs, stored)` picks
    /// the y the loss is taken against from the head's outputs (logits) and the stored target:
    /// return `stored` for the empirical Fisher, a sample of the model's prediction for the
    /// true Fisher (EWC). Uses the run's engine; leaves the workspace and `grads` holding the
    /// last example's pass.
    #[allow(clippy::too_many_arguments)]
    pub fn example_gradients(
        &mut self,
        net: &Mlp,
        split: &Split,
        indices: &[usize],
        head: Range<usize>,
        task: usize,
        mut target: impl FnMut(&[f32], Target) -> Target,
        mut visit: impl FnMut(usize, &Layers),
    ) {
        for (i, &example) in indices.iter().enumerate() {
            self.load(split, &[example]);
            let stored = split.target(example);
            let _ = self.loss_and_gradients(net, head.clone(), task, |cx| {
                let chosen = target(&cx.outputs[cx.head.clone()], stored);
                if chosen != stored {
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
                    loss::evaluate(cx.outputs, cx.width, cx.head.clone(), targets, Some(cx.output_grad));
                }
            });
            visit(i, &self.grads);
        }
    }

    /// Calls `visit` with the workspace after a forward pass over each chunk of examples
    /// `indices` of `split` (hidden values in `workspace.values`).
    pub fn for_each_chunk(
        &mut self,
        net: &Mlp,
        split: &Split,
        indices: &[usize],
        visit: impl FnMut(&Workspace, Targets<'_>),
    ) {
        let plain = |net: &Mlp, ws: &mut Workspace| {
            fused::forward(net, ws);
            Ok::<(), std::convert::Infallible>(())
        };
        match self.for_each_chunk_with(net, split, indices, plain, visit) {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }

    /// [`Compute::for_each_chunk`] with another model's forward pass (see
    /// [`Compute::evaluate_with`]).
    pub fn for_each_chunk_with<E>(
        &mut self,
        net: &Mlp,
        split: &Split,
        indices: &[usize],
        forward: impl FnMut(&Mlp, &mut Workspace) -> Result<(), E>,
        visit: impl FnMut(&Workspace, Targets<'_>),
    ) -> Result<(), E> {
        self.for_each_chunk_by(net, split, indices, forward, visit)
    }

    /// The workspace (whose input holds the loaded batch) and the batch's targets, borrowed
    /// together, for a method that runs its own passes on the batch.
    pub fn batch_mut(&mut self) -> (&mut Workspace, Targets<'_>) {
        (&mut self.workspace, self.targets.get())
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

    /// Task `index` of a synthetic Gaussian-cluster stream shaped for `net`: as many inputs as
    /// the network has, one class per output, `per_class` training examples per class.
    pub(crate) fn synthetic_task(net: &Mlp, index: usize, per_class: usize) -> Task {
        use crate::stream::{InputTransform, SyntheticPermutedSpec};
        use crate::stream::{SyntheticPermuted, TaskStream};
        let sizes = net.sizes();
        let spec = SyntheticPermutedSpec {
            tasks: index + 1,
            classes: *sizes.last().unwrap(),
            dim: sizes[0],
            train_per_class: per_class,
            test_per_class: 2,
            noise: 1.0,
            transform: InputTransform::Permute,
        };
        SyntheticPermuted::new(&spec, 5).task(index)
    }

    /// Runs `f` with a task context over `net` for `task`, read through `head`, with a fresh
    /// SGD optimiser, the method rng `rng` and a fused compute facility.
    pub(crate) fn with_task_of<R>(
        net: &mut Mlp,
        task: &Task,
        head: Range<usize>,
        rng: &mut Rng,
        f: impl FnOnce(&mut TaskContext<'_>) -> R,
    ) -> (R, Vec<MethodPayload>) {
        use crate::optim::{OptimizerConfig, OptimizerKind};
        let mut optimizer = Optimizer::new(OptimizerConfig::defaults(OptimizerKind::Sgd), net);
        let mut compute = Compute::new(net, Engine::Fused, 8);
        let mut report = Vec::new();
        let r = f(&mut TaskContext {
            task,
            head,
            tasks_total: task.index + 1,
            net,
            optimizer: &mut optimizer,
            rng,
            compute: &mut compute,
            report: &mut report,
        });
        (r, report)
    }

    /// Runs `f` with a task context over `net` for a small synthetic task on every output.
    pub(crate) fn with_task<R>(net: &mut Mlp, f: impl FnOnce(&mut TaskContext<'_>) -> R) -> R {
        let task = synthetic_task(net, 0, 4);
        let head = 0..*net.sizes().last().unwrap();
        with_task_of(net, &task, head, &mut rng::stream(0, "method-test", 1), f).0
    }

    /// Trains `net` with `method` for the steps numbered `steps` (the trainer's step counter),
    /// each on `batch` examples of `task`'s training split taken in order and wrapping around,
    /// through the same hooks as the trainer (output_gradient, shape_gradients, update,
    /// after_update).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn train_steps(
        method: &mut dyn super::super::ContinualMethod,
        net: &mut Mlp,
        optimizer: &mut Optimizer,
        rng: &mut Rng,
        task: &Task,
        head: Range<usize>,
        steps: Range<u64>,
        batch: usize,
    ) {
        let mut compute = Compute::new(net, Engine::Fused, batch);
        let n = task.train.len();
        for step in steps {
            let indices: Vec<usize> = (0..batch).map(|k| (step as usize * batch + k) % n).collect();
            compute.load(&task.train, &indices);
            compute.loss_and_gradients(net, head.clone(), task.index, |cx| method.output_gradient(cx));
            let mut cx = StepContext {
                net,
                grads: &mut compute.grads,
                workspace: &compute.workspace,
                optimizer,
                rng,
                task: task.index,
                head: head.clone(),
                step,
            };
            method.shape_gradients(&mut cx);
            method.update(&mut cx);
            method.after_update(&mut cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Activation;
    use crate::rng;
    use crate::stream::{InputTransform, SyntheticPermutedSpec};

    #[test]
    fn another_models_forward_evaluates_in_the_same_chunks_and_passes_its_errors_on() {
        let spec = crate::stream::spec_of::<crate::stream::SyntheticPermutedKind>(&SyntheticPermutedSpec {
            tasks: 1,
            classes: 3,
            dim: 5,
            train_per_class: 10,
            test_per_class: 400,
            noise: 1.0,
            transform: InputTransform::Permute,
        });
        let task = crate::stream::build(&spec, 1).unwrap().task(0);
        let net = Mlp::new(&[5, 7, 3], Activation::Tanh, &mut rng::stream(1, "t", 0));
        let mut compute = Compute::new(&net, Engine::Fused, 8);
        let plain = compute.evaluate(&net, &task.test, 0..3, None);
        // The same forward pass through `evaluate_with` gives the same totals, in chunks of
        // at most 500 that start at the split's first example.
        let mut batches = Vec::new();
        let with = compute
            .evaluate_with(&net, &task.test, 0..3, None, |net, ws| {
                batches.push(ws.batch());
                fused::forward(net, ws);
                Ok::<(), String>(())
            })
            .unwrap();
        assert_eq!(with, plain);
        assert_eq!(batches, vec![500, 500, 200]);
        let err = compute.evaluate_with(&net, &task.test, 0..3, Some(10), |_, _| Err("no model".to_string()));
        assert_eq!(err, Err("no model".to_string()));
        let mut seen = 0;
        let indices: Vec<usize> = (0..task.test.len()).collect();
        compute
            .for_each_chunk_with(
                &net,
                &task.test,
                &indices,
                |_, _| Ok::<(), ()>(()),
                |ws, targets| {
                    assert_eq!(ws.batch(), targets.len());
                    seen += targets.len();
                },
            )
            .unwrap();
        assert_eq!(seen, 1200);
        // `batch_mut` lends the loaded batch and its targets together.
        compute.load(&task.train, &[0, 1, 2]);
        let (ws, targets) = compute.batch_mut();
        assert_eq!((ws.batch(), targets.len()), (3, 3));
    }
}
