//! A run's peak memory, estimated from its spec before anything is allocated.
//!
//! What this engine holds, item by item: the process itself; the network's parameters, their
//! gradients and the optimiser's per-element state; what the method keeps that scales with
//! the network (EWC's Fisher and anchor per penalty, CLNP's frozen copy, a weight field and its
//! versions, …); the stream's data as held in memory (one copy of the MNIST digits as bytes, a
//! synthetic task's examples as floats, the rotation matrices); the activations of a
//! training or evaluation batch and of the plasticity probe; and the copy a checkpoint makes
//! of the state while it writes it. Sizes are the engine's own (f32 parameters, u8 pixels);
//! the estimate errs on the generous side for what it cannot know exactly (allocator slack,
//! decompression buffers), and a test holds it within a factor of two of the measured peak on
//! small real configurations.
//!
//! It reads nothing but the MNIST file headers and the CIFAR files' sizes, so the orchestrator
//! runs it for every planned run and the worker again before it loads its data.

use protocol::memory::MemoryEstimate;
use protocol::{Engine, Heads, RunSpec};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::method;
use crate::model::layer::{Network, Shape};
use crate::optim::OptimizerKind;
use crate::stream::{
    CifarFiles, CifarVariant, ClassIncrementalCifar100Spec, ContinualImagenetSpec, InputTransform,
    MnistFiles, OnlinePermutedMnistSpec, PermutedMnistSpec, SlowlyChangingRegressionSpec, SplitCifar100Spec,
    SplitCifar10Spec, SplitMnistSpec, SplitSetting, SplitTinyImagenetSpec, SyntheticPermutedSpec,
    TinyImagenetFiles, CIFAR_PIXELS, IMAGENET32_PIXELS, IMAGENET_CLASSES, TINY_PIXELS,
};

/// The worker process before it allocates for the run: the mapped code, the runtime, thread
/// stacks, the allocator's arenas. A run with a 4-unit network peaks at 23 MiB in a debug
/// build and about 11 MiB in a release build (the 1,000-task benchmark); the larger is taken.
const PROCESS_BYTES: u64 = 24 << 20;
/// Examples per evaluation pass (the engine's `Compute` chunk).
const EVAL_CHUNK: u64 = 500;
const F32: u64 = 4;
const F64: u64 = 8;

/// What the estimate needs to know of the stream.
struct StreamShape {
    inputs: u64,
    /// Outputs of one head.
    head_outputs: u64,
    head_per_task: bool,
    tasks: u64,
    /// Training examples of one task, and held-out examples of one task.
    train: u64,
    test: u64,
}

/// Why a spec cannot be estimated: parameters that do not parse, or MNIST headers that
/// cannot be read (the same problems building the run would meet, said earlier).
pub type EstimateError = String;

/// The itemised estimate of `spec`'s peak memory.
pub fn estimate(spec: &RunSpec) -> Result<MemoryEstimate, EstimateError> {
    // The method first, as the worker builds it: checking it is cheap, and its error is the
    // one to show when both it and the data are wrong.
    let (_, optimizer) = method::build(&spec.method).map_err(|e| e.to_string())?;
    let mut e = MemoryEstimate::default();
    e.add("program and runtime", PROCESS_BYTES);
    let shape = stream(spec, &mut e)?;
    let heads = if shape.head_per_task || spec.network.heads == Heads::PerTask { shape.tasks } else { 1 };
    let outputs = shape.head_outputs.saturating_mul(heads);
    let outputs = usize::try_from(outputs).map_err(|_| format!("{outputs} output units"))?;
    let inputs = usize::try_from(shape.inputs).map_err(|_| format!("{} inputs", shape.inputs))?;
    let image = crate::stream::input_shape(&spec.stream).unwrap_or(Shape::Vector(inputs));
    let plan = Network::plan(&spec.network, image, outputs).map_err(|e| format!("network: {e}"))?;
    if plan.is_convolutional() {
        conv_network(spec, &plan, optimizer.kind, optimizer.momentum != 0.0, &shape, &mut e);
        return Ok(e);
    }
    let (sizes, _) = Network::plan(&spec.network, Shape::Vector(inputs), outputs)
        .and_then(|n| n.mlp())
        .map_err(|e| format!("network: {e}"))?;
    let sizes: Vec<u64> = sizes.iter().map(|&s| s as u64).collect();
    let parameters: u64 =
        sizes.windows(2).fold(0u64, |n, w| n.saturating_add((w[0] + 1).saturating_mul(w[1])));
    let units: u64 = sizes.iter().fold(0u64, |n, &s| n.saturating_add(s));
    let hidden = &sizes[1..sizes.len() - 1];
    let p = parameters.saturating_mul(F32);
    e.add("network parameters", p);
    e.add("gradients", p);

    let moments = match optimizer.kind {
        OptimizerKind::Sgd if optimizer.momentum != 0.0 => 1,
        OptimizerKind::Sgd => 0,
        // Two moments and the two per-element bias-correction powers.
        OptimizerKind::Adam => 4,
    };
    e.add(format!("optimiser state ({:?})", optimizer.kind).to_lowercase(), p.saturating_mul(moments));
    let method = method_state(spec, &shape, &sizes, parameters, optimizer.kind);
    for (what, bytes) in &method {
        e.add(what.clone(), *bytes);
    }
    let method_bytes = method.iter().fold(0u64, |n, (_, b)| n.saturating_add(*b));

    let batch = spec.training.batch_size.max(1) as u64;
    // Values and deltas of every layer for the largest pass, training batch or evaluation chunk.
    let rows = batch.max(EVAL_CHUNK);
    e.add("activations", rows.saturating_mul(units).saturating_mul(2 * F32));
    if spec.network.engine == Engine::Autograd {
        // dfdx's own parameter and gradient tensors, and its saved activations.
        let tape = rows.saturating_mul(units).saturating_mul(2 * F32);
        e.add("autograd tensors", p.saturating_mul(2).saturating_add(tape));
    }
    let plasticity = &spec.eval.plasticity;
    if plasticity.every > 0 {
        let probe = (plasticity.probe as u64).min(shape.test.max(shape.train)).max(1);
        let widest = hidden.iter().copied().max().unwrap_or(0);
        let features: u64 = hidden.iter().fold(0u64, |n, &s| n.saturating_add(s));
        // The probe's hidden values, and one layer's matrix with its SVD workspace in f64.
        let svd = probe.saturating_mul(widest).saturating_mul(3 * F64);
        e.add("plasticity probe", probe.saturating_mul(features).saturating_mul(F32).saturating_add(svd));
    }
    let optimiser_bytes = p.saturating_mul(moments);
    let state = p.saturating_add(optimiser_bytes).saturating_add(method_bytes);
    // The state gathered into named tensors while it is written.
    e.add("checkpoint copy", state);
    Ok(e)
}

/// Examples per evaluation chunk of a conv net at least (`method::ConvCompute`).
const CONV_EVAL_CHUNK: u64 = 64;

/// The network, optimiser, activation and probe items of a conv-net run. Per example a layer
/// keeps its output; a residual block also its two convolutions' outputs, its first batch
/// norm's rectified output and its projection's two outputs; back-propagation adds six
/// buffers as large as the largest activation (two for the gradient, four for a block's
/// scratch), and the convolutions share an unfolded-input buffer as large as the largest
/// layer's kernel size × output positions. The method's own state is
/// [`conv_method_state`].
fn conv_network(
    spec: &RunSpec,
    plan: &Network,
    optimizer: OptimizerKind,
    momentum: bool,
    shape: &StreamShape,
    e: &mut MemoryEstimate,
) {
    use crate::model::layer::Part;
    let parameters = plan.parameters() as u64;
    let p = parameters.saturating_mul(F32);
    e.add("network parameters", p);
    e.add("gradients", p);
    let moments = match optimizer {
        OptimizerKind::Sgd if momentum => 1,
        OptimizerKind::Sgd => 0,
        OptimizerKind::Adam => 4,
    };
    e.add(format!("optimiser state ({optimizer:?})").to_lowercase(), p.saturating_mul(moments));
    let mut values = 0u64;
    let mut largest = plan.layers.first().map_or(0, |l| l.input.len()) as u64;
    let mut unfolded = 0u64;
    for layer in &plan.layers {
        let out = layer.output.len() as u64;
        largest = largest.max(out);
        let (per_position, copies) = match layer.part {
            Part::Conv2d { kernel, .. } => ((layer.input.channels() * kernel * kernel) as u64, 1),
            Part::BasicBlock { .. } => ((layer.input.channels().max(layer.output.channels()) * 9) as u64, 6),
            _ => (0, 1),
        };
        values = values.saturating_add(out.saturating_mul(copies));
        let positions = match layer.output {
            Shape::Image { height, width, .. } => (height * width) as u64,
            Shape::Vector(_) => 1,
        };
        unfolded = unfolded.max(per_position.saturating_mul(positions));
    }
    let batch = spec.training.batch_size.max(1) as u64;
    let rows = batch.max(CONV_EVAL_CHUNK);
    let per_example =
        values.saturating_add(largest.saturating_mul(6)).saturating_add(unfolded.saturating_mul(2));
    e.add("activations", rows.saturating_mul(per_example).saturating_mul(F32));
    let mut method_bytes = 0u64;
    for (what, bytes) in conv_method_state(spec, shape, plan, optimizer, per_example.saturating_mul(F32)) {
        method_bytes = method_bytes.saturating_add(bytes);
        e.add(what, bytes);
    }
    let plasticity = &spec.eval.plasticity;
    if plasticity.every > 0 {
        let probe = (plasticity.probe as u64).min(shape.test.max(shape.train)).max(1);
        // One pooled feature per channel of every rectified layer (`diagnostics::conv_plasticity`).
        let channels: Vec<u64> = plan
            .layers
            .iter()
            .filter(|l| matches!(l.part, Part::Activation(_) | Part::BasicBlock { .. }))
            .map(|l| l.output.channels() as u64)
            .collect();
        let widest = channels.iter().copied().max().unwrap_or(0);
        let features = channels.iter().fold(0u64, |n, &c| n.saturating_add(c));
        let svd = probe.saturating_mul(widest).saturating_mul(3 * F64);
        e.add("plasticity probe", probe.saturating_mul(features).saturating_mul(F32).saturating_add(svd));
    }
    e.add("checkpoint copy", p.saturating_mul(1 + moments).saturating_add(method_bytes));
}

/// What a method keeps beyond a conv net and its optimiser, by item — the counterpart of
/// [`method_state`], with a conv net's units being its channels (and the linear layers'
/// units) and `activations` the bytes one example's pass keeps.
fn conv_method_state(
    spec: &RunSpec,
    shape: &StreamShape,
    plan: &Network,
    optimizer: OptimizerKind,
    activations: u64,
) -> Vec<(String, u64)> {
    use crate::model::layer::Part;
    let p = (plan.parameters() as u64).saturating_mul(F32);
    let outputs = plan.layers.last().map_or(0, |l| l.output.len()) as u64;
    let kind = spec.method.kind.as_str();
    match kind {
        "er" | "der" | "derpp" | "agem" => rehearsal_state(spec, shape, outputs, activations, p),
        "weight_aligning" => {
            // The previous network and a chunk of its evaluation.
            let workspace = CONV_EVAL_CHUNK.saturating_mul(activations);
            vec![("previous network (weight_aligning)".into(), p.saturating_add(workspace))]
        }
        "cbp" | "redo" => {
            // Per channel (or linear unit) its statistics, and one map's worth of per-position
            // activity and outgoing magnitudes for the layer being tested.
            let mut units = 0u64;
            let mut widest = 0u64;
            for layer in &plan.layers {
                if matches!(layer.part, Part::Conv2d { .. } | Part::BasicBlock { .. } | Part::Linear { .. }) {
                    units = units.saturating_add(layer.output.channels() as u64);
                    widest = widest.max(layer.output.len() as u64);
                }
            }
            let statistics = units.saturating_mul(16 * F64).saturating_add(widest.saturating_mul(2 * F32));
            vec![(format!("channel statistics ({kind})"), statistics)]
        }
        "weight_field" | "niwf" => {
            // The field covers the linear layers over the backbone.
            let linear: u64 = plan
                .layers
                .iter()
                .filter(|l| matches!(l.part, Part::Linear { .. }))
                .fold(0u64, |n, l| n.saturating_add(l.parameters as u64));
            field_state(spec, shape, &[outputs], linear.saturating_mul(F32), optimizer)
        }
        // Per-parameter state is the same for both families.
        _ => method_state(spec, shape, &[0], plan.parameters() as u64, optimizer),
    }
}

/// This process's peak resident memory so far (`VmHWM` of `/proc/self/status`, Linux only):
/// what a worker reports at its end beside its estimate, so the estimate can be checked
/// against real runs. `VmHWM` counts from the process's last `exec`, unlike `getrusage`,
/// whose figure includes the parent's at the time of the fork.
pub fn measured_peak() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

fn params<T: DeserializeOwned>(spec: &RunSpec) -> Result<T, EstimateError> {
    let map: serde_json::Map<String, Value> =
        spec.stream.params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| format!("stream `{}`: {e}", spec.stream.kind))
}

/// The stream's shape, and its data items added to `e`.
fn stream(spec: &RunSpec, e: &mut MemoryEstimate) -> Result<StreamShape, EstimateError> {
    let kind = spec.stream.kind.as_str();
    match kind {
        "permuted_mnist" | "online_permuted_mnist" | "split_mnist" => {
            let (dir, train_limit, test_limit, online, groups) = match kind {
                "permuted_mnist" => {
                    let s: PermutedMnistSpec = params(spec)?;
                    (s.data_dir, s.train_examples, s.test_examples, false, None)
                }
                "online_permuted_mnist" => {
                    let s: OnlinePermutedMnistSpec = params(spec)?;
                    (s.data_dir, s.train_examples, s.test_examples, true, None)
                }
                _ => {
                    let s: SplitMnistSpec = params(spec)?;
                    (s.data_dir, None, None, false, Some((s.groups, s.setting)))
                }
            };
            let files = MnistFiles::locate(&dir).map_err(|e| e.to_string())?;
            let shape = files.check_headers().map_err(|e| e.to_string())?;
            let pixels = (shape.rows * shape.cols) as u64;
            let train = train_limit.map_or(shape.train, |n| n.min(shape.train)) as u64;
            let test = test_limit.map_or(shape.test, |n| n.min(shape.test)) as u64;
            let held = (train + test).saturating_mul(pixels + 1);
            e.add("data (digits as bytes)", held);
            // Decompressing reads a whole file, then keeps the part asked for.
            e.add("data loading", (shape.train.max(shape.test) as u64).saturating_mul(pixels));
            if online {
                e.add("example order", train.saturating_mul(4));
            }
            let (tasks, head_outputs, head_per_task, per_task) = match groups {
                Some((groups, setting)) => {
                    let widest = groups.iter().map(Vec::len).max().unwrap_or(0) as u64;
                    let tasks = groups.len() as u64;
                    // A task's rows are a group's share of the digits.
                    let share = |n: u64| n.saturating_mul(widest) / 10 + 1;
                    e.add("task rows", (train + test).saturating_mul(4 * tasks.min(2)));
                    let (outputs, per_task) = match setting {
                        SplitSetting::TaskIncremental => (widest, true),
                        _ => (10, false),
                    };
                    (tasks, outputs, per_task, Some((share(train), share(test))))
                }
                None => (spec_tasks(spec)?, 10, false, None),
            };
            let (train, test) = per_task.unwrap_or((train, test));
            Ok(StreamShape { inputs: pixels, head_outputs, head_per_task, tasks, train, test })
        }
        "synthetic_permuted" => {
            let s: SyntheticPermutedSpec = params(spec)?;
            let (dim, classes) = (s.dim as u64, s.classes as u64);
            let train = (s.train_per_class as u64).saturating_mul(classes);
            let test = (s.test_per_class as u64).saturating_mul(classes);
            e.add("class centres", classes.saturating_mul(dim).saturating_mul(F64));
            // The task being trained and the one being evaluated, as f32 inputs and byte labels.
            let task = (train + test).saturating_mul(dim.saturating_mul(F32) + 1);
            e.add("task examples", task.saturating_mul(2));
            if s.transform == InputTransform::Rotate {
                // Q in f64, and the columns it is orthogonalised from.
                e.add("rotation matrices", dim.saturating_mul(dim).saturating_mul(2 * F64));
            }
            let tasks = s.tasks as u64;
            Ok(StreamShape { inputs: dim, head_outputs: classes, head_per_task: false, tasks, train, test })
        }
        "slowly_changing_regression" => {
            let s: SlowlyChangingRegressionSpec = params(spec)?;
            let (inputs, tasks) = (s.inputs as u64, s.tasks as u64);
            e.add("slow-bit schedule", tasks.saturating_mul(s.slow_bits as u64));
            e.add(
                "target network",
                (s.target_hidden as u64).saturating_mul(inputs + 2).saturating_mul(1 + F64),
            );
            let train = s.flip_every as u64;
            let test = s.test_examples as u64;
            // Bits as bytes and an f32 target per example, for a task and its held-out split.
            let task = (train + test).saturating_mul(inputs + F32 + F32);
            e.add("task examples", task.saturating_mul(2));
            Ok(StreamShape { inputs, head_outputs: 1, head_per_task: false, tasks, train, test })
        }
        "split_cifar10" | "split_cifar100" | "class_incremental_cifar100" => {
            let (dir, variant, tasks, setting, growing) = match kind {
                "split_cifar10" => {
                    let s: SplitCifar10Spec = params(spec)?;
                    (s.data_dir, CifarVariant::Cifar10, 5, Some(s.setting), false)
                }
                "split_cifar100" => {
                    let s: SplitCifar100Spec = params(spec)?;
                    (s.data_dir, CifarVariant::Cifar100, s.tasks.max(1) as u64, Some(s.setting), false)
                }
                _ => {
                    let s: ClassIncrementalCifar100Spec = params(spec)?;
                    (s.data_dir, CifarVariant::Cifar100, s.tasks.max(1) as u64, None, true)
                }
            };
            let files = CifarFiles::locate(&dir, variant).map_err(|e| e.to_string())?;
            let (train, test) = files.check_sizes().map_err(|e| e.to_string())?;
            let (train, test, classes) = (train as u64, test as u64, variant.classes() as u64);
            let pixels = CIFAR_PIXELS as u64;
            // Pixels as bytes and a 2-byte label per image; the growing Vec may hold twice that
            // while it loads, and each image's row in its class's list.
            let held = (train + test).saturating_mul(pixels + 2);
            e.add("data (images as bytes)", held);
            e.add("data loading", held.saturating_add((train + test).saturating_mul(4)));
            let (head_outputs, head_per_task) = match setting {
                Some(SplitSetting::TaskIncremental) => (classes / tasks, true),
                _ => (classes, false),
            };
            // A growing stream's last task holds every image; a split's a class group's share.
            let (task_train, task_test) =
                if growing { (train, test) } else { (train / tasks + 1, test / tasks + 1) };
            // The rows of the task being trained and of the one being evaluated.
            e.add("task rows", (task_train + task_test).saturating_mul(4 * 2));
            Ok(StreamShape {
                inputs: pixels,
                head_outputs,
                head_per_task,
                tasks,
                train: task_train,
                test: task_test,
            })
        }
        "split_tinyimagenet" => {
            let s: SplitTinyImagenetSpec = params(spec)?;
            let files = TinyImagenetFiles::locate(&s.data_dir).map_err(|e| e.to_string())?;
            let (train, test) = (files.train.len() as u64, files.val.len() as u64);
            let (classes, tasks) = (files.wnids.len() as u64, s.tasks.max(1) as u64);
            let pixels = TINY_PIXELS as u64;
            e.add("data (images as bytes)", (train + test).saturating_mul(pixels + 2));
            // The file list, and one image's file and decoded pixels at a time.
            e.add("data loading", (train + test).saturating_mul(256).saturating_add(4 * pixels));
            let (head_outputs, head_per_task) = match s.setting {
                SplitSetting::TaskIncremental => (classes / tasks, true),
                SplitSetting::ClassIncremental => (classes, false),
            };
            let (task_train, task_test) = (train / tasks + 1, test / tasks + 1);
            e.add("task rows", (task_train + task_test).saturating_mul(4 * 2));
            Ok(StreamShape {
                inputs: pixels,
                head_outputs,
                head_per_task,
                tasks,
                train: task_train,
                test: task_test,
            })
        }
        "continual_imagenet" => {
            let s: ContinualImagenetSpec = params(spec)?;
            let classes = IMAGENET_CLASSES as u64;
            let (per_train, per_test) = (s.train_per_class as u64, s.test_per_class as u64);
            let pixels = IMAGENET32_PIXELS as u64;
            e.add(
                "data (images as bytes)",
                classes.saturating_mul(per_train + per_test).saturating_mul(pixels + 2),
            );
            // One batch file at a time: its pixels and its labels as read (the largest of the
            // ten holds 128,117 images), and its labels as i64 before they become classes.
            e.add("data loading", 128_200u64.saturating_mul(pixels + 8 + 8));
            let k = s.classes_per_task as u64;
            let (train, test) = (k.saturating_mul(per_train), k.saturating_mul(per_test));
            e.add("task rows", (train + test).saturating_mul(4 * 2));
            // Each task's list of classes: a vector and its allocation.
            e.add("task class lists", (s.tasks as u64).saturating_mul(48 + 2 * k));
            Ok(StreamShape {
                inputs: pixels,
                head_outputs: k,
                head_per_task: false,
                tasks: s.tasks as u64,
                train,
                test,
            })
        }
        other => Err(format!("no memory estimate for stream kind `{other}`")),
    }
}

fn spec_tasks(spec: &RunSpec) -> Result<u64, EstimateError> {
    crate::stream::tasks(&spec.stream).map(|t| t as u64).map_err(|e| e.to_string())
}

/// A method parameter as a count: the spec's value, else the method's default.
fn count(spec: &RunSpec, name: &str) -> u64 {
    let value = spec.method.params.get(name).cloned().or_else(|| {
        let info = method::lookup(&spec.method.kind).ok()?;
        info.own_parameters().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    });
    // Whole numbers written as floats (`500.0`) are accepted by the methods, so count them too.
    value.and_then(|v| v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))).unwrap_or(0)
}

/// A method parameter as text (`mode: separate`).
fn text(spec: &RunSpec, name: &str) -> String {
    let value = spec.method.params.get(name).cloned().or_else(|| {
        let info = method::lookup(&spec.method.kind).ok()?;
        info.own_parameters().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    });
    value.and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// What the method keeps beyond the network and its optimiser, by item.
fn method_state(
    spec: &RunSpec,
    shape: &StreamShape,
    sizes: &[u64],
    parameters: u64,
    optimizer: OptimizerKind,
) -> Vec<(String, u64)> {
    let p = parameters.saturating_mul(F32);
    let units: u64 = sizes[1..].iter().fold(0u64, |n, &s| n.saturating_add(s));
    let tasks = shape.tasks;
    match spec.method.kind.as_str() {
        "l2_init" => vec![("initial parameters (l2_init)".into(), p)],
        "classp" => vec![("accumulated gradients (classp)".into(), p)],
        "ewc" => {
            // One Fisher and one anchor per finished task (`separate`) or one running pair,
            // and the Fisher being estimated.
            let penalties = if text(spec, "mode") == "online" { 1 } else { tasks.saturating_sub(1).max(1) };
            vec![("Fisher and anchors (ewc)".into(), p.saturating_mul(penalties.saturating_mul(2) + 1))]
        }
        "weight_aligning" => {
            let workspace = EVAL_CHUNK.saturating_mul(units).saturating_mul(2 * F32);
            vec![("previous network (weight_aligning)".into(), p.saturating_add(workspace))]
        }
        "clnp" => vec![("frozen weights and masks (clnp)".into(), p.saturating_mul(2))],
        "cbp" | "redo" => {
            vec![(format!("unit statistics ({})", spec.method.kind), units.saturating_mul(16 * F64))]
        }
        "weight_field" | "niwf" => field_state(spec, shape, sizes, p, optimizer),
        "er" | "der" | "derpp" | "agem" => {
            let units: u64 = sizes.iter().fold(0u64, |n, &s| n.saturating_add(s));
            rehearsal_state(spec, shape, *sizes.last().unwrap_or(&0), units.saturating_mul(2 * F32), p)
        }
        _ => Vec::new(),
    }
}

/// A rehearsal method's buffer — per example its inputs and, for `der`/`derpp`, the logits of
/// the whole output layer (`outputs` units) as f32, a 4-byte target and a head range (two
/// 8-byte bounds) — and what its step adds: a replay batch's activations (`activations` bytes
/// per example, the network family's) and two more parameter-sized gradients.
fn rehearsal_state(
    spec: &RunSpec,
    shape: &StreamShape,
    outputs: u64,
    activations: u64,
    p: u64,
) -> Vec<(String, u64)> {
    let kind = spec.method.kind.as_str();
    let examples = count(spec, "buffer_size");
    let logits = if matches!(kind, "der" | "derpp") { outputs } else { 0 };
    let per_example = shape.inputs.saturating_add(logits).saturating_mul(F32).saturating_add(4 + 16);
    let buffer = examples.saturating_mul(per_example);
    let batch = spec.training.batch_size.max(1) as u64;
    let replay = match count(spec, "replay_batch_size") {
        0 => batch,
        r => r,
    };
    let rows = batch.saturating_add(replay);
    let step = rows.saturating_mul(activations).saturating_add(p.saturating_mul(2));
    vec![(format!("replay buffer ({kind})"), buffer), (format!("replay passes ({kind})"), step)]
}

/// A weight field: one network-sized basis per task with its gradients and optimiser, and for
/// `niwf` the snapshots of every region (W0 and the task's basis), the kept versions
/// (`rollback`) and each task's drift examples.
fn field_state(
    spec: &RunSpec,
    shape: &StreamShape,
    sizes: &[u64],
    p: u64,
    optimizer: OptimizerKind,
) -> Vec<(String, u64)> {
    let kind = spec.method.kind.as_str();
    let tasks = shape.tasks;
    let moments = if optimizer == OptimizerKind::Adam { 4 } else { 1 };
    let mut items = vec![(
        format!("weight field bases, their gradients and optimisers ({kind})"),
        p.saturating_mul(2 + moments).saturating_mul(tasks).saturating_add(p),
    )];
    if kind == "niwf" {
        let kept = spec.method.params.get("rollback").and_then(Value::as_array).map_or(0, |v| v.len() as u64);
        let regions = p.saturating_mul(2).saturating_mul(tasks);
        let versions = p.saturating_mul(tasks + 1).saturating_mul(kept);
        items.push(("committed regions and versions (niwf)".into(), regions.saturating_add(versions)));
    }
    let drift = count(spec, "drift_examples").min(shape.test);
    let outputs = *sizes.last().unwrap_or(&0);
    let references =
        drift.saturating_mul(shape.inputs + outputs).saturating_mul(F32).saturating_mul(shape.tasks);
    items.push((format!("drift references ({kind})"), references));
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use test_support::SpecBuilder;

    fn synthetic(dim: usize) -> SpecBuilder {
        SpecBuilder::synthetic(2)
            .stream(json!({"synthetic_permuted": {"tasks": 2, "dim": dim, "classes": 10}}))
    }

    fn total(spec: &RunSpec) -> u64 {
        estimate(spec).unwrap().total()
    }

    #[test]
    fn parameters_gradients_and_adam_scale_with_the_network() {
        let small = synthetic(100).hidden(&[100]).build();
        let wide = synthetic(100).hidden(&[4000, 4000]).build();
        let e = estimate(&wide).unwrap();
        let params = (101 * 4000 + 4001 * 4000 + 4001 * 10) * 4;
        assert!(e.items.iter().any(|i| i.what == "network parameters" && i.bytes == params), "{e}");
        assert!(total(&wide) > 3 * params && total(&wide) > 10 * total(&small), "{e}");
        let adam = synthetic(100).hidden(&[4000, 4000]).method("adam", json!({})).build();
        assert!(total(&adam) >= total(&wide) + 4 * params, "{}", estimate(&adam).unwrap());
    }

    #[test]
    fn separate_ewc_keeps_a_penalty_per_task() {
        let ewc = |mode: &str| {
            let spec =
                SpecBuilder::synthetic(50).hidden(&[1000]).method("ewc", json!({"mode": mode})).build();
            let e = estimate(&spec).unwrap();
            e.items.iter().find(|i| i.what.contains("ewc")).map(|i| i.bytes).unwrap()
        };
        // 49 Fisher–anchor pairs against one, each with the Fisher being estimated.
        assert_eq!(ewc("separate") * 3, ewc("online") * 99);
    }

    #[test]
    fn image_streams_hold_their_images_as_bytes() {
        let dir = test_support::scratch("memory-cifar");
        // 20 CIFAR-100 records of 3,074 bytes for training, 10 for testing.
        std::fs::write(dir.path().join("train.bin"), vec![0u8; 20 * 3074]).unwrap();
        std::fs::write(dir.path().join("test.bin"), vec![0u8; 10 * 3074]).unwrap();
        let cifar = |kind: &str| {
            let spec = SpecBuilder::synthetic(2)
                .stream(json!({ kind: {"data_dir": dir.path(), "tasks": 5} }))
                .hidden(&[10])
                .build();
            estimate(&spec).unwrap()
        };
        let e = cifar("class_incremental_cifar100");
        assert!(e.items.iter().any(|i| i.what == "data (images as bytes)" && i.bytes == 30 * 3074), "{e}");
        // The growing head has 100 outputs; split CIFAR-100's task-incremental heads 20 each, 5 of them.
        let params =
            |e: &MemoryEstimate| e.items.iter().find(|i| i.what == "network parameters").unwrap().bytes;
        assert_eq!(params(&e), (3073 * 10 + 11 * 100) * 4);
        assert_eq!(params(&cifar("split_cifar100")), (3073 * 10 + 11 * 100) * 4);
        let imagenet = SpecBuilder::synthetic(2)
            .stream(json!({"continual_imagenet": {"data_dir": "unread", "tasks": 10}}))
            .hidden(&[10])
            .build();
        let e = estimate(&imagenet).unwrap();
        assert!(
            e.items.iter().any(|i| i.what == "data (images as bytes)" && i.bytes == 700_000 * 3074),
            "{e}"
        );
        assert_eq!(params(&e), (3073 * 10 + 11 * 2) * 4);
    }

    #[test]
    fn a_replay_buffer_counts_its_examples_inputs_and_logits() {
        let buffer = |kind: &str, size: u64| {
            let spec = synthetic(100).hidden(&[50]).method(kind, json!({"buffer_size": size})).build();
            let e = estimate(&spec).unwrap();
            e.items.iter().find(|i| i.what == format!("replay buffer ({kind})")).map(|i| i.bytes).unwrap()
        };
        // 100 inputs (and 10 logits for der) as f32, a target and a head range per example.
        assert_eq!(buffer("er", 1000), 1000 * (100 * 4 + 20));
        assert_eq!(buffer("agem", 1000), buffer("er", 1000));
        assert_eq!(buffer("derpp", 200), 200 * (110 * 4 + 20));
        assert_eq!(buffer("der", 200), buffer("derpp", 200));
        let spec = synthetic(100).method("er", json!({"buffer_size": 1000.0})).build();
        let e = estimate(&spec).unwrap();
        assert!(
            e.items.iter().any(|i| i.what == "replay buffer (er)" && i.bytes == buffer("er", 1000)),
            "{e}"
        );
    }

    /// The estimate of `kind` with `params` for a conv net of `layers` on a class-incremental
    /// CIFAR-100 fixture (5 tasks, a head growing to 100 classes) in `dir`.
    fn conv_estimate(dir: &std::path::Path, layers: Value, kind: &str, params: Value) -> MemoryEstimate {
        std::fs::write(dir.join("train.bin"), vec![0u8; 20 * 3074]).unwrap();
        std::fs::write(dir.join("test.bin"), vec![0u8; 10 * 3074]).unwrap();
        let spec = SpecBuilder::synthetic(2)
            .stream(json!({"class_incremental_cifar100": {"data_dir": dir, "tasks": 5}}))
            .with(|s| s.network = serde_json::from_value(json!({ "layers": layers })).unwrap())
            .method(kind, params)
            .build();
        estimate(&spec).unwrap()
    }

    /// An item's bytes.
    fn item(e: &MemoryEstimate, what: &str) -> Option<u64> {
        e.items.iter().find(|i| i.what == what).map(|i| i.bytes)
    }

    #[test]
    fn a_conv_nets_replay_buffer_counts_its_images_and_logits() {
        let dir = test_support::scratch("memory-conv-buffer");
        let layers = json!([
            {"conv2d": {"channels": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
            {"global_avg_pool": {}}
        ]);
        let estimate_for =
            |kind: &str, params: Value| conv_estimate(dir.path(), layers.clone(), kind, params);
        // Per example a 3×32×32 image (and for der the 100 logits of the growing head) as f32,
        // a 4-byte target and a 16-byte head range.
        let er = estimate_for("er", json!({"buffer_size": 1000}));
        assert_eq!(item(&er, "replay buffer (er)"), Some(1000 * (3 * 32 * 32 * 4 + 20)), "{er}");
        let agem = estimate_for("agem", json!({"buffer_size": 1000}));
        assert_eq!(item(&agem, "replay buffer (agem)"), item(&er, "replay buffer (er)"));
        let derpp = estimate_for("derpp", json!({"buffer_size": 200}));
        assert_eq!(
            item(&derpp, "replay buffer (derpp)"),
            Some(200 * ((3 * 32 * 32 + 100) * 4 + 20)),
            "{derpp}"
        );
        // The buffer is checkpointed: the checkpoint copy grows by it and by the replay passes.
        let sgd = estimate_for("sgd", json!({}));
        let passes = item(&er, "replay passes (er)").expect("a replay-pass item");
        assert_eq!(
            item(&er, "checkpoint copy").unwrap(),
            item(&sgd, "checkpoint copy").unwrap() + 1000 * (3 * 32 * 32 * 4 + 20) + passes
        );
    }

    #[test]
    fn a_conv_nets_per_parameter_method_state_is_counted() {
        let dir = test_support::scratch("memory-conv-methods");
        let layers = json!([
            {"conv2d": {"channels": 4, "kernel": 3, "padding": 1}}, {"relu": {}},
            {"global_avg_pool": {}}, {"linear": {"units": 8}}, {"relu": {}}
        ]);
        let estimate_for =
            |kind: &str, params: Value| conv_estimate(dir.path(), layers.clone(), kind, params);
        let sgd = estimate_for("sgd", json!({}));
        let p = item(&sgd, "network parameters").unwrap();
        assert_eq!(item(&estimate_for("l2_init", json!({})), "initial parameters (l2_init)"), Some(p));
        // Separate EWC: a Fisher and an anchor for each of 4 finished tasks, and the one being
        // estimated.
        let ewc = estimate_for("ewc", json!({"mode": "separate"}));
        assert_eq!(item(&ewc, "Fisher and anchors (ewc)"), Some(9 * p), "{ewc}");
        assert_eq!(item(&estimate_for("clnp", json!({})), "frozen weights and masks (clnp)"), Some(2 * p));
        // CBP: 4 + 8 + 100 units (the conv's channels, the linear layer's, the head's).
        let cbp = estimate_for("cbp", json!({}));
        let widest = 4 * 32 * 32;
        assert_eq!(item(&cbp, "channel statistics (cbp)"), Some(112 * 16 * 8 + widest * 8), "{cbp}");
        // The checkpoint copy carries the method's state.
        assert_eq!(item(&ewc, "checkpoint copy").unwrap(), item(&sgd, "checkpoint copy").unwrap() + 9 * p);
    }

    #[test]
    fn huge_sizes_saturate_instead_of_overflowing() {
        let spec = synthetic(1_000_000_000).hidden(&[65_536, 65_536]).build();
        let e = estimate(&spec).unwrap();
        assert!(e.total() > 1 << 40, "{e}");
    }
}
