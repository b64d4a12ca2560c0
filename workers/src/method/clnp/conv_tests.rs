//! Tests of `clnp` on conv nets: zero forgetting bitwise after three tasks, the activation
//! penalty's gradient, pruning's zeroed blocks, and the refused layers.

use super::conv::ConvNeuralPruning;
use super::conv_units::Units;
use super::partition::Partition;
use super::ClnpConfig;
use crate::method::conv_testing::{image_task, train_conv_steps, with_conv_task};
use crate::method::{ContinualMethod, ConvCompute, MethodState, Passes};
use crate::model::convnet::{self, ConvNet, Layer, LayerSpec, Mode, Shape, Workspace};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::protocol::payload::MethodPayload;
use crate::rng;
use crate::stream::Task;

const INPUT: Shape = Shape { channels: 1, height: 6, width: 6 };

/// conv(1→4, 3×3, pad 1) − ReLU − max pool 2 − conv(4→5, 3×3, pad 1) − ReLU − flatten −
/// linear(6): three heads of two outputs.
fn net() -> ConvNet {
    let specs = [
        LayerSpec::Conv2d { channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
        LayerSpec::Relu,
        LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
        LayerSpec::Conv2d { channels: 5, kernel: 3, stride: 1, padding: 1, bias: true },
        LayerSpec::Relu,
        LayerSpec::Flatten,
        LayerSpec::Linear { units: 6 },
    ];
    ConvNet::new(INPUT, &specs, &mut rng::stream(7, "clnp-conv", 0)).unwrap()
}

/// The logits of head `t` (outputs 2t, 2t + 1) on task `t`'s test examples.
fn outputs(net: &ConvNet, task: &Task) -> Vec<f32> {
    let n = task.test.len();
    let mut ws = Workspace::new(net, n);
    task.test.gather_inputs(&(0..n).collect::<Vec<_>>(), &mut ws.input);
    convnet::forward_pass(net, &mut ws, Mode::Eval).unwrap();
    let t = task.index;
    ws.outputs().chunks_exact(6).flat_map(|row| row[2 * t..2 * t + 2].to_vec()).collect()
}

/// The defining property: with SGD momentum (which moves parameters even at zero gradient),
/// an earlier task's outputs after the later tasks equal those right after it, bit for bit —
/// R[i][j] == R[j][j] at the level of logits —, while the later tasks did train filters.
#[test]
fn earlier_tasks_outputs_are_bitwise_unchanged_after_later_tasks() {
    let mut net = net();
    let tasks: Vec<Task> = (0..3).map(|t| image_task(INPUT, 2, t, 24)).collect();
    let config = OptimizerConfig { lr: 0.05, momentum: 0.9, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
    let mut opt = Optimizer::for_parameters(config, &net);
    let mut r = rng::stream(1, "clnp-conv", 1);
    let mut method =
        ConvNeuralPruning::new(&ClnpConfig { alpha: 0.01, retrain_epochs: 1, ..ClnpConfig::default() });
    let mut after_own: Vec<Vec<f32>> = Vec::new();
    let mut reports = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let head = 2 * t..2 * t + 2;
        let (started, report) = with_conv_task(&mut net, &mut opt, task, head.clone(), 3, &mut r, |cx| {
            if t == 0 {
                method.begin(cx)?;
            }
            method.task_started(cx)
        });
        started.unwrap();
        reports.extend(report);
        train_conv_steps(&mut method, &mut net, &mut opt, &mut r, task, head.clone(), 0..60, 8);
        let (finished, report) =
            with_conv_task(&mut net, &mut opt, task, head, 3, &mut r, |cx| method.task_finished(cx));
        finished.unwrap();
        reports.extend(report);
        after_own.push(outputs(&net, task));
        for j in 0..t {
            let now = outputs(&net, &tasks[j]);
            let same = now.iter().zip(&after_own[j]).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "task {j}'s outputs changed while training task {t}");
        }
    }
    let capacity: Vec<_> = reports
        .iter()
        .filter_map(|p| match p {
            MethodPayload::ClnpCapacity(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(capacity.len(), 3);
    // Task 0 pruned some filters and kept some; a later task took some of the free ones.
    let first = &capacity[0].layers;
    assert!(first.iter().all(|l| l.used > 0), "{first:?}");
    assert!(first.iter().any(|l| l.free > 0), "{first:?}");
    let later_new: usize = capacity[1..].iter().flat_map(|c| &c.layers).map(|l| l.new).sum();
    assert!(later_new > 0, "later tasks kept no filter: {capacity:?}");
    for c in &capacity {
        assert!(c.accuracy_pruned >= c.accuracy_unpruned, "margin 0 loses no example: {c:?}");
    }
}

/// The penalty's gradient on a first-layer filter is the exact gradient of
/// α·mean_x Σ_i mean_p h_i(x, p) with respect to that filter (its input does not depend on
/// any weight), checked against central differences; used filters get none.
#[test]
fn the_activation_penalty_gradient_matches_finite_differences() {
    let net = net();
    let units = Units::of(&net).unwrap();
    let mut partition = Partition::new(&units.sizes(&net));
    partition.owner[0][1] = 1;
    let task = image_task(INPUT, 2, 0, 3);
    let mut compute = ConvCompute::new(&net, 6);
    compute.load_batch(&task.train, &(0..6).collect::<Vec<_>>());
    let (ws, _) = compute.batch_parts();
    convnet::forward_pass(&net, ws, Mode::Eval).unwrap();
    let ws = ws.clone();
    let mut grads = net.zeros_like();
    let alpha = 0.5;
    units.add_activation_penalty(&partition, &net, &mut grads, &ws, alpha);
    let penalty = |net: &ConvNet| -> f64 {
        let mut w = ws.clone();
        convnet::forward_pass(net, &mut w, Mode::Eval).unwrap();
        let h = w.layer_output(1);
        let (units, plane) = (4, 36);
        let mut total = 0.0f64;
        for x in 0..6 {
            for i in (0..units).filter(|&i| i != 1) {
                let s: f64 = h[(x * units + i) * plane..(x * units + i + 1) * plane]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum();
                total += s / plane as f64;
            }
        }
        f64::from(alpha) * total / 6.0
    };
    let Layer::Conv2d(g) = &grads.layers[0] else { unreachable!() };
    assert!(g.row(1).iter().all(|&v| v == 0.0), "a used filter gets no penalty");
    assert!(g.row(0).iter().any(|&v| v != 0.0), "the test needs a free filter that fires");
    for unit in [0, 2] {
        for k in 0..9 {
            let (mut up, mut down) = (net.clone(), net.clone());
            let h = 1e-3f32;
            let Layer::Conv2d(c) = &mut up.layers[0] else { unreachable!() };
            c.row_mut(unit)[k] += h;
            let Layer::Conv2d(c) = &mut down.layers[0] else { unreachable!() };
            c.row_mut(unit)[k] -= h;
            let numeric = (penalty(&up) - penalty(&down)) / (2.0 * f64::from(h));
            let analytic = f64::from(g.row(unit)[k]);
            assert!((analytic - numeric).abs() < 2e-3, "filter {unit} weight {k}: {analytic} vs {numeric}");
        }
    }
    // The second layer's penalty reached its bias through the fired positions.
    let Layer::Conv2d(g1) = &grads.layers[3] else { unreachable!() };
    assert!(g1.bias.as_ref().unwrap().iter().any(|&b| b > 0.0));
}

/// Removing a filter zeroes its kernels and bias, its kernel blocks in the next convolution,
/// and at the conv→linear boundary the linear columns of its flattened plane.
#[test]
fn removal_zeroes_a_filter_and_everything_it_feeds() {
    let mut net = net();
    let units = Units::of(&net).unwrap();
    assert_eq!(
        units.hidden.iter().map(|u| (u.layer, u.consumer, u.block)).collect::<Vec<_>>(),
        [(0, 3, 9), (3, 6, 9)]
    );
    let before = net.clone();
    units.remove(&mut net, &[vec![2], vec![4]]);
    let (Layer::Conv2d(c0), Layer::Conv2d(c1), Layer::Linear(out)) =
        (&net.layers[0], &net.layers[3], &net.layers[6])
    else {
        unreachable!()
    };
    assert!(c0.row(2).iter().all(|&w| w == 0.0) && c0.bias.as_ref().unwrap()[2] == 0.0);
    for row in 0..4 {
        let r = c1.row(row);
        assert!(r[18..27].iter().all(|&w| w == 0.0), "kernel from filter 2 into filter {row}");
        assert!(r[..18].iter().chain(&r[27..]).all(|&w| w != 0.0));
    }
    assert!(c1.row(4).iter().all(|&w| w == 0.0));
    for k in 0..6 {
        let r = out.row(k);
        assert!(r[36..45].iter().all(|&w| w == 0.0) && r[..36].iter().all(|&w| w != 0.0));
    }
    assert_eq!(net.layers[0..1].len(), before.layers[0..1].len());
    // The head depends on every filter but the removed ones.
    let reached = units.reached(&net, &(0..2));
    assert_eq!(reached, vec![vec![true, true, false, true], vec![true, true, true, true, false]]);
}

/// Batch norm and residual blocks are refused at `begin`, saying why; so is a head shared by
/// the tasks.
#[test]
fn batch_norm_residual_blocks_and_shared_heads_are_refused() {
    let task = image_task(INPUT, 2, 0, 2);
    let mut r = rng::stream(0, "t", 0);
    for (extra, kind) in [
        (LayerSpec::BatchNorm2d, "batch_norm"),
        (LayerSpec::BasicBlock { channels: 4, stride: 1, bias: false }, "basic_block"),
    ] {
        let specs = [
            LayerSpec::Conv2d { channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
            extra,
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { units: 2 },
        ];
        let mut net = ConvNet::new(INPUT, &specs, &mut rng::stream(1, "t", 0)).unwrap();
        let mut opt = Optimizer::for_parameters(OptimizerConfig::defaults(OptimizerKind::Sgd), &net);
        let (result, _) = with_conv_task(&mut net, &mut opt, &task, 0..2, 1, &mut r, |cx| {
            ConvNeuralPruning::new(&ClnpConfig::default()).begin(cx)
        });
        let err = result.unwrap_err().to_string();
        assert!(err.contains(&format!("is a `{kind}`")) && err.contains("zero-forgetting"), "{err}");
    }
    let mut net = net();
    let mut opt = Optimizer::for_parameters(OptimizerConfig::defaults(OptimizerKind::Sgd), &net);
    let (result, _) = with_conv_task(&mut net, &mut opt, &task, 0..6, 3, &mut r, |cx| {
        ConvNeuralPruning::new(&ClnpConfig::default()).begin(cx)
    });
    assert!(result.unwrap_err().to_string().contains("one output head per task"));
}

/// A method restored from a checkpoint mid-task (frozen snapshot, partition, finished heads)
/// trains on to the same bits as the original.
#[test]
fn a_checkpoint_restores_the_partition_and_the_frozen_snapshot() {
    let mut net = net();
    let tasks: Vec<Task> = (0..2).map(|t| image_task(INPUT, 2, t, 16)).collect();
    let config = OptimizerConfig { lr: 0.05, momentum: 0.9, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
    let mut opt = Optimizer::for_parameters(config, &net);
    let mut r = rng::stream(2, "t", 0);
    let mut method = ConvNeuralPruning::new(&ClnpConfig { retrain_epochs: 0, ..ClnpConfig::default() });
    let (res, _) = with_conv_task(&mut net, &mut opt, &tasks[0], 0..2, 3, &mut r, |cx| {
        method.begin(cx)?;
        method.task_started(cx)
    });
    res.unwrap();
    train_conv_steps(&mut method, &mut net, &mut opt, &mut r, &tasks[0], 0..2, 0..20, 8);
    let (res, _) =
        with_conv_task(&mut net, &mut opt, &tasks[0], 0..2, 3, &mut r, |cx| method.task_finished(cx));
    res.unwrap();
    let (res, _) =
        with_conv_task(&mut net, &mut opt, &tasks[0], 0..2, 3, &mut r, |cx| method.task_started(cx));
    assert!(res.unwrap_err().to_string().contains("already used and froze"));
    let (res, _) =
        with_conv_task(&mut net, &mut opt, &tasks[1], 2..4, 3, &mut r, |cx| method.task_started(cx));
    res.unwrap();
    train_conv_steps(&mut method, &mut net, &mut opt, &mut r, &tasks[1], 2..4, 0..5, 8);
    let mut state = MethodState::default();
    method.save(&mut state);
    let mut restored = ConvNeuralPruning::new(&ClnpConfig { retrain_epochs: 0, ..ClnpConfig::default() });
    restored.load(&state).unwrap();
    let (mut net_b, mut opt_b, mut r_b) = (net.clone(), opt.clone(), r.clone());
    train_conv_steps(&mut method, &mut net, &mut opt, &mut r, &tasks[1], 2..4, 5..15, 8);
    train_conv_steps(&mut restored, &mut net_b, &mut opt_b, &mut r_b, &tasks[1], 2..4, 5..15, 8);
    assert_eq!(net, net_b);
}
