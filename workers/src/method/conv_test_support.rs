//! Test helpers for the conv-net versions of methods: the conv counterparts of
//! `context::testing` (a task shaped for a conv net, a task context, training steps through
//! the trainer's hooks).

use std::ops::Range;

use super::{ContinualMethod, ConvCompute, Passes, StepContext, TaskContext};
use crate::model::convnet::{ConvNet, Shape};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::protocol::MethodPayload;
use crate::rng::Rng;
use crate::stream::{InputTransform, SyntheticPermuted, SyntheticPermutedSpec, Task, TaskStream};

/// Task `index` of a synthetic Gaussian-cluster stream whose examples are `input`-shaped
/// images (flattened in NCHW order): `classes` classes, `per_class` training examples each.
pub(crate) fn image_task(input: Shape, classes: usize, index: usize, per_class: usize) -> Task {
    let spec = SyntheticPermutedSpec {
        tasks: index + 1,
        classes,
        dim: input.len(),
        train_per_class: per_class,
        test_per_class: per_class,
        noise: 1.0,
        transform: InputTransform::Permute,
    };
    SyntheticPermuted::new(&spec, 5).task(index)
}

/// Runs `f` with a task context over `net` for `task`, read through `head`, with `optimizer`
/// and a conv compute facility; returns what `f` returned and the method's report.
pub(crate) fn with_conv_task<R>(
    net: &mut ConvNet,
    optimizer: &mut Optimizer<ConvNet>,
    task: &Task,
    head: Range<usize>,
    tasks_total: usize,
    rng: &mut Rng,
    f: impl FnOnce(&mut TaskContext<'_, ConvNet>) -> R,
) -> (R, Vec<MethodPayload>) {
    let mut compute = ConvCompute::new(net, 8);
    let mut report = Vec::new();
    let r = f(&mut TaskContext {
        task,
        head,
        tasks_total,
        net,
        optimizer,
        rng,
        compute: &mut compute,
        report: &mut report,
    });
    (r, report)
}

/// An SGD optimiser (learning rate `lr`) for `net`.
pub(crate) fn sgd(net: &ConvNet, lr: f32) -> Optimizer<ConvNet> {
    Optimizer::for_parameters(OptimizerConfig { lr, ..OptimizerConfig::defaults(OptimizerKind::Sgd) }, net)
}

/// Trains `net` with `method` for the steps numbered `steps`, each on `batch` examples of
/// `task`'s training split taken in order and wrapping around, through the trainer's hooks
/// (output_gradient, shape_gradients, update, after_update).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_conv_steps(
    method: &mut dyn ContinualMethod<ConvNet>,
    net: &mut ConvNet,
    optimizer: &mut Optimizer<ConvNet>,
    rng: &mut Rng,
    task: &Task,
    head: Range<usize>,
    steps: Range<u64>,
    batch: usize,
) {
    let mut compute = ConvCompute::new(net, batch);
    let n = task.train.len();
    for step in steps {
        let indices: Vec<usize> = (0..batch).map(|k| (step as usize * batch + k) % n).collect();
        compute.load_batch(&task.train, &indices);
        compute
            .train_pass(net, head.clone(), task.index, |cx| method.output_gradient(cx))
            .expect("the test network trains on this batch");
        let (grads, workspace) = compute.step_parts();
        let mut cx =
            StepContext { net, grads, workspace, optimizer, rng, task: task.index, head: head.clone(), step };
        method.shape_gradients(&mut cx);
        method.update(&mut cx);
        method.after_update(&mut cx);
    }
}
