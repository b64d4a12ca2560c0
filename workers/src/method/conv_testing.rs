//! Helpers for conv-net method tests: the conv-net counterparts of `context::testing` — a
//! small conv net with every stateful layer kind, synthetic tasks shaped for it, and step and
//! task contexts over it; image-shaped synthetic tasks for any input shape.

use std::ops::Range;

use super::context::Passes;
use super::{ContinualMethod, ConvCompute, StepContext, TaskContext};
use crate::model::convnet::{self, ConvNet, LayerSpec, Mode, Shape, Workspace};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::protocol::MethodPayload;
use crate::rng::{self, Rng};
use crate::stream::{InputTransform, SyntheticPermuted, SyntheticPermutedSpec, Task, TaskStream};

/// A 3×6×6-input conv net with a biased convolution, batch norm, max pooling, a residual
/// block with a projection, global average pooling and a linear layer of `outputs` units.
pub(crate) fn small_net(outputs: usize, seed: u64) -> ConvNet {
    let specs = [
        LayerSpec::Conv2d { channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
        LayerSpec::BatchNorm2d,
        LayerSpec::Relu,
        LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
        LayerSpec::BasicBlock { channels: 6, stride: 2, bias: false },
        LayerSpec::GlobalAvgPool,
        LayerSpec::Linear { units: outputs },
    ];
    ConvNet::new(Shape::new(3, 6, 6), &specs, &mut rng::stream(seed, "conv-test", 0)).unwrap()
}

/// Task `index` of a synthetic Gaussian-cluster stream with inputs shaped for `net` and
/// `classes` classes, `per_class` training examples per class.
pub(crate) fn conv_task(net: &ConvNet, classes: usize, index: usize, per_class: usize) -> Task {
    use crate::stream::{InputTransform, SyntheticPermuted, SyntheticPermutedSpec, TaskStream};
    let spec = SyntheticPermutedSpec {
        tasks: index + 1,
        classes,
        dim: net.input_shape().len(),
        train_per_class: per_class,
        test_per_class: 2,
        noise: 1.0,
        transform: InputTransform::Permute,
    };
    SyntheticPermuted::new(&spec, 5).task(index)
}

/// Runs `f` with a step context over `net` whose workspace holds an evaluation-mode forward
/// pass on `input` (whole samples), with the method rng `method-test/0`.
pub(crate) fn with_conv_step<R>(
    net: &mut ConvNet,
    grads: &mut ConvNet,
    optimizer: &mut Optimizer<ConvNet>,
    input: &[f32],
    f: impl FnOnce(&mut StepContext<'_, ConvNet>) -> R,
) -> R {
    let batch = input.len() / net.input_shape().len();
    let mut ws = Workspace::new(net, batch);
    ws.input.copy_from_slice(input);
    convnet::forward_pass(net, &mut ws, Mode::Eval).unwrap();
    let mut r = rng::stream(0, "method-test", 0);
    let head = 0..net.outputs();
    let mut cx = StepContext { net, grads, workspace: &ws, optimizer, rng: &mut r, task: 0, head, step: 0 };
    f(&mut cx)
}

/// Runs `f` with a task context over `net` for `task`, read through `head`, with a fresh
/// SGD optimiser, the method rng `rng` and a conv compute facility.
pub(crate) fn with_conv_task_of<R>(
    net: &mut ConvNet,
    task: &Task,
    head: Range<usize>,
    rng: &mut Rng,
    f: impl FnOnce(&mut TaskContext<'_, ConvNet>) -> R,
) -> (R, Vec<MethodPayload>) {
    let mut optimizer = sgd(net, OptimizerConfig::defaults(OptimizerKind::Sgd).lr);
    with_conv_task(net, &mut optimizer, task, head, task.index + 1, rng, f)
}

/// Trains `net` with `method` for the steps numbered `steps`, each on `batch` examples of
/// `task`'s training split taken in order and wrapping around, through the trainer's hooks
/// (a training-mode pass with `output_gradient`, then shape_gradients, update, after_update).
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
        compute.train_pass(net, head.clone(), task.index, |cx| method.output_gradient(cx)).unwrap();
        let (grads, workspace) = compute.step_parts();
        let mut cx =
            StepContext { net, grads, workspace, optimizer, rng, task: task.index, head: head.clone(), step };
        method.shape_gradients(&mut cx);
        method.update(&mut cx);
        method.after_update(&mut cx);
    }
}

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
