//! Tests of CLNP's hooks on a small synthetic stream, driven the way the trainer drives them.
//! The end-to-end guarantee through the engine is tested in `workers/tests/clnp.rs`.

use std::collections::BTreeMap;
use std::ops::Range;

use super::*;
use crate::method::Compute;
use crate::model::{fused, Workspace};
use crate::optim::{Optimizer, OptimizerKind};
use crate::protocol::payload::{ClnpActivity, ClnpCapacity};
use crate::protocol::{Engine, MethodSpec};
use crate::rng::{self, Rng};
use crate::stream::{FlipMode, InputTransform, SlowlyChangingRegressionSpec, SyntheticPermutedSpec};
use crate::stream::{SlowlyChangingRegression, SyntheticPermuted, Task, TaskStream};

const CLASSES: usize = 3;
const TASKS: usize = 3;

/// A network, its optimiser and compute facility, a stream, and the method under test.
struct Harness {
    net: Mlp,
    optimizer: Optimizer,
    compute: Compute,
    rng: Rng,
    stream: SyntheticPermuted,
    method: NeuralPruning,
    report: Vec<MethodPayload>,
}

fn harness(
    config: ClnpConfig,
    optimizer: OptimizerKind,
    hidden: &[usize],
    activation: Activation,
) -> Harness {
    let spec = SyntheticPermutedSpec {
        tasks: TASKS,
        classes: CLASSES,
        dim: 8,
        train_per_class: 60,
        test_per_class: 10,
        noise: 1.0,
        transform: InputTransform::Permute,
    };
    let mut sizes = vec![8];
    sizes.extend(hidden);
    sizes.push(CLASSES * TASKS);
    let net = Mlp::new(&sizes, activation, &mut rng::stream(1, "clnp-test", 0));
    let lr = if optimizer == OptimizerKind::Adam { 0.01 } else { 0.1 };
    let opt_config = OptimizerConfig { lr, momentum: 0.9, ..OptimizerConfig::defaults(optimizer) };
    Harness {
        optimizer: Optimizer::new(opt_config, &net),
        compute: Compute::new(&net, Engine::Fused, 16),
        rng: rng::stream(1, "clnp-test", 1),
        stream: SyntheticPermuted::new(&spec, 4),
        method: NeuralPruning::new(&config),
        report: Vec::new(),
        net,
    }
}

fn head(task: usize) -> Range<usize> {
    task * CLASSES..(task + 1) * CLASSES
}

impl Harness {
    /// Task `t` with a validation split of 30 training examples.
    fn task(&self, t: usize) -> Task {
        let mut task = self.stream.task(t);
        let n = task.train.len();
        task.validation = Some(task.train.subset(&(0..30).collect::<Vec<_>>()));
        task.train = task.train.subset(&(30..n).collect::<Vec<_>>());
        task
    }

    fn hook(&mut self, t: usize, which: &str) -> Result<(), MethodError> {
        let task = self.task(t);
        let mut cx = TaskContext {
            task: &task,
            head: head(t),
            tasks_total: TASKS,
            net: &mut self.net,
            optimizer: &mut self.optimizer,
            rng: &mut self.rng,
            compute: &mut self.compute,
            report: &mut self.report,
        };
        match which {
            "begin" => self.method.begin(&mut cx),
            "start" => self.method.task_started(&mut cx),
            _ => self.method.task_finished(&mut cx),
        }
    }

    /// `steps` optimiser steps on task `t`, as the trainer takes them; `check` runs after each.
    fn train(&mut self, t: usize, steps: usize, mut check: impl FnMut(&Mlp)) {
        let task = self.task(t);
        let n = task.train.len();
        for s in 0..steps {
            let indices: Vec<usize> = (s * 16..s * 16 + 16).map(|i| i % n).collect();
            self.compute.load(&task.train, &indices);
            self.compute.loss_and_gradients(&self.net, head(t), t, |_| {});
            let mut cx = StepContext {
                net: &mut self.net,
                grads: &mut self.compute.grads,
                workspace: &self.compute.workspace,
                optimizer: &mut self.optimizer,
                rng: &mut self.rng,
                task: t,
                head: head(t),
                step: s as u64,
            };
            self.method.shape_gradients(&mut cx);
            self.method.update(&mut cx);
            self.method.after_update(&mut cx);
            check(&self.net);
        }
    }

    /// The outputs of `net` on the first 20 test examples of task `t` (all heads).
    fn outputs(&self, net: &Mlp, t: usize) -> Vec<f32> {
        let task = self.task(t);
        let mut ws = Workspace::new(&net.sizes(), 20);
        task.test.gather_inputs(&(0..20).collect::<Vec<_>>(), &mut ws.input);
        fused::forward(net, &mut ws);
        ws.outputs().to_vec()
    }

    fn capacity(&self) -> &ClnpCapacity {
        self.report
            .iter()
            .rev()
            .find_map(|p| match p {
                MethodPayload::ClnpCapacity(c) => Some(c),
                _ => None,
            })
            .expect("a capacity event")
    }
}

fn head_columns(outputs: &[f32], t: usize) -> Vec<u32> {
    outputs.chunks_exact(CLASSES * TASKS).flat_map(|row| row[head(t)].iter().map(|v| v.to_bits())).collect()
}

fn config(alpha: f64, margin: f64) -> ClnpConfig {
    ClnpConfig { alpha, margin, penalty: Penalty::Weights, retrain_epochs: 0, ..ClnpConfig::default() }
}

#[test]
fn after_a_task_the_pruned_units_are_zero_and_nothing_free_feeds_a_used_unit() {
    let mut h = harness(config(1e-3, 0.05), OptimizerKind::Sgd, &[24, 16], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 60, |_| {});
    h.hook(0, "finish").unwrap();
    let p = &h.method.partition;
    let layers = h.net.layers();
    let (mut used, mut free) = (0, 0);
    for l in 0..2 {
        for unit in 0..layers[l].outputs {
            let outgoing: Vec<f32> = (0..layers[l + 1].outputs).map(|r| layers[l + 1].row(r)[unit]).collect();
            if p.is_used(l, unit) {
                used += 1;
                assert_eq!(p.owner[l][unit], 1, "task 0 owns its units");
            } else {
                free += 1;
                assert!(layers[l].row(unit).iter().all(|&w| w == 0.0), "pruned row {l}/{unit}");
                assert_eq!(layers[l].bias[unit], 0.0);
                assert!(outgoing.iter().all(|&w| w == 0.0), "pruned unit {l}/{unit} still feeds something");
            }
        }
    }
    assert!(used > 0 && free > 0, "the test needs both kinds: {used} used, {free} free");
    // The event matches the partition.
    let c = h.capacity().clone();
    assert_eq!(
        (c.measured_on, c.examples, c.activity),
        (MeasuredOn::Validation, 30, ClnpActivity::MeanActivation)
    );
    assert_eq!(c.layers.len(), 2);
    for (l, layer) in c.layers.iter().enumerate() {
        assert_eq!(layer.units, layers[l].outputs);
        assert_eq!(layer.used, p.used_counts()[l]);
        assert_eq!(layer.new, p.used_counts()[l]);
        assert_eq!(layer.free, p.free_counts()[l]);
        assert_eq!(layer.pruned, p.free_counts()[l]);
        assert_eq!(layer.reused, 0, "nothing to reuse on the first task");
    }
    let (before, after) = (c.accuracy_unpruned, c.accuracy_pruned);
    assert!(after >= before - 0.05 - 1e-12, "margin respected: {before} → {after}");
    assert!(
        p.frozen_outputs[..CLASSES].iter().all(|&f| f) && !p.frozen_outputs[CLASSES..].iter().any(|&f| f)
    );
}

#[test]
fn later_tasks_leave_every_output_of_an_earlier_head_bit_identical_even_with_adam() {
    let mut h = harness(config(1e-3, 0.0), OptimizerKind::Adam, &[24, 16], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 60, |_| {});
    h.hook(0, "finish").unwrap();
    let after_task0 = h.net.clone();
    let reference = head_columns(&h.outputs(&after_task0, 0), 0);
    let frozen = h.method.partition.clone();

    h.hook(1, "start").unwrap();
    // Free units and head 1 were re-initialised: non-zero rows again.
    for l in 0..2 {
        for unit in h.method.partition.free_units(l) {
            assert!(
                h.net.layers()[l].row(unit).iter().any(|&w| w != 0.0),
                "free unit {l}/{unit} not re-initialised"
            );
        }
    }
    assert!(head(1).all(|r| h.net.layers()[2].row(r).iter().any(|&w| w != 0.0)));
    let mut checked = 0;
    h.train(1, 40, |net| {
        // Every frozen row equals its value at the end of task 0, bit for bit.
        for (l, (a, b)) in net.params.layers.iter().zip(&after_task0.params.layers).enumerate() {
            for row in (0..a.outputs).filter(|&r| frozen.is_frozen(l, r)) {
                assert_eq!(a.row(row), b.row(row), "frozen row {l}/{row} moved");
                assert_eq!(a.bias[row].to_bits(), b.bias[row].to_bits());
            }
        }
        checked += 1;
    });
    assert_eq!(checked, 40);
    let changed = h.net.params.layers[0].weight != after_task0.params.layers[0].weight;
    assert!(changed, "task 1 trained something");
    h.hook(1, "finish").unwrap();
    h.hook(2, "start").unwrap();
    h.train(2, 40, |_| {});
    h.hook(2, "finish").unwrap();
    assert_eq!(head_columns(&h.outputs(&h.net, 0), 0), reference, "head 0's outputs changed");
    let c = h.capacity();
    let sizes: Vec<usize> = c.layers.iter().map(|l| l.used + l.free).collect();
    assert_eq!(sizes, [24, 16]);
}

#[test]
fn a_larger_margin_prunes_at_least_as_much_and_stays_within_it() {
    let mut strict = harness(config(1e-3, 0.0), OptimizerKind::Sgd, &[32, 32], Activation::Relu);
    strict.hook(0, "begin").unwrap();
    strict.hook(0, "start").unwrap();
    strict.train(0, 80, |_| {});
    let mut lax = harness(config(1e-3, 0.1), OptimizerKind::Sgd, &[32, 32], Activation::Relu);
    lax.net = strict.net.clone();
    lax.hook(0, "begin").unwrap();
    strict.hook(0, "finish").unwrap();
    lax.hook(0, "finish").unwrap();
    let pruned = |h: &Harness| -> usize { h.capacity().layers.iter().map(|l| l.pruned).sum() };
    assert!(pruned(&lax) >= pruned(&strict), "{} < {}", pruned(&lax), pruned(&strict));
    let c = strict.capacity();
    assert!(c.accuracy_pruned >= c.accuracy_unpruned, "{c:?}");
    let c = lax.capacity();
    // 30 validation examples: m = 0.1 allows 3 mistakes more.
    let loss = (c.accuracy_unpruned - c.accuracy_pruned) * 30.0;
    assert!(loss <= 3.0 + 1e-9, "lost {loss} examples");
}

#[test]
fn a_full_layer_is_reported_and_the_task_trains_what_is_left() {
    let mut h = harness(config(0.0, 0.0), OptimizerKind::Sgd, &[6, 5], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 20, |_| {});
    h.hook(0, "finish").unwrap();
    // Pretend task 0 kept every unit of both layers.
    for owner in h.method.partition.owner.iter_mut() {
        owner.fill(1);
    }
    for (f, p) in h.method.frozen.buffers_mut().zip(h.net.params.buffers()) {
        f.copy_from_slice(p);
    }
    let before = h.net.clone();
    h.report.clear();
    h.hook(1, "start").unwrap();
    assert_eq!(
        h.report,
        [MethodPayload::ClnpNoFreeUnits(ClnpNoFreeUnits { free: vec![0, 0], full_layers: vec![0, 1] })]
    );
    h.train(1, 20, |_| {});
    for (l, (a, b)) in h.net.params.layers.iter().zip(&before.params.layers).enumerate() {
        for row in 0..a.outputs {
            let moved = a.row(row) != b.row(row) || a.bias[row] != b.bias[row];
            assert_eq!(moved, l == 2 && head(1).contains(&row), "layer {l} row {row}");
        }
    }
    h.hook(1, "finish").unwrap();
    let c = h.capacity();
    assert_eq!((c.threshold, c.evaluations), (None, 0));
    // Head 1 reads the used units of the last layer: they are reused, and so is every unit of
    // layer 0 that feeds them.
    assert!(c.layers[1].reused > 0, "{c:?}");
    assert_eq!(c.layers[1].new, 0);
}

#[test]
fn the_training_split_stands_in_when_there_is_no_validation_split_and_the_event_says_so() {
    let mut h = harness(config(1e-3, 0.0), OptimizerKind::Sgd, &[8], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 10, |_| {});
    let task = h.stream.task(0);
    let mut cx = TaskContext {
        task: &task,
        head: head(0),
        tasks_total: TASKS,
        net: &mut h.net,
        optimizer: &mut h.optimizer,
        rng: &mut h.rng,
        compute: &mut h.compute,
        report: &mut h.report,
    };
    h.method.task_finished(&mut cx).unwrap();
    assert_eq!((h.capacity().measured_on, h.capacity().examples), (MeasuredOn::Train, CLASSES * 60));
}

#[test]
fn unsuitable_networks_and_streams_fail_at_begin_with_one_clear_line() {
    // Shared head: 3 outputs for 3 tasks.
    let mut h = harness(config(1e-5, 0.0), OptimizerKind::Sgd, &[8], Activation::Relu);
    h.net = Mlp::new(&[8, 8, CLASSES], Activation::Relu, &mut rng::stream(0, "t", 0));
    let err = h.hook(0, "begin").unwrap_err().to_string();
    assert!(err.contains("heads: per_task") && err.contains("3 outputs for 3 tasks"), "{err}");
    let mut h = harness(config(1e-5, 0.0), OptimizerKind::Sgd, &[8], Activation::Tanh);
    let err = h.hook(0, "begin").unwrap_err().to_string();
    assert!(err.contains("relu") && err.contains("tanh"), "{err}");
    assert!(!err.contains('\n'));
    // Regression: the margin is an accuracy.
    let regression = SlowlyChangingRegressionSpec {
        tasks: TASKS,
        inputs: 8,
        slow_bits: 4,
        flip_every: 20,
        flip: FlipMode::One,
        target_hidden: 5,
        beta: 0.7,
        threshold: Default::default(),
        test_examples: 5,
    };
    let task = SlowlyChangingRegression::new(&regression, 0).task(0);
    let mut h = harness(config(1e-5, 0.0), OptimizerKind::Sgd, &[8], Activation::Relu);
    h.net = Mlp::new(&[8, 8, TASKS], Activation::Relu, &mut rng::stream(0, "t", 0));
    let mut cx = TaskContext {
        task: &task,
        head: 0..1,
        tasks_total: TASKS,
        net: &mut h.net,
        optimizer: &mut h.optimizer,
        rng: &mut h.rng,
        compute: &mut h.compute,
        report: &mut h.report,
    };
    let err = h.method.begin(&mut cx).unwrap_err().to_string();
    assert!(err.contains("needs a classification stream"), "{err}");
}

#[test]
fn a_task_reusing_a_frozen_head_is_refused() {
    let mut h = harness(config(1e-5, 0.0), OptimizerKind::Sgd, &[8], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.hook(0, "finish").unwrap();
    let task = h.task(1);
    let mut cx = TaskContext {
        task: &task,
        head: head(0),
        tasks_total: TASKS,
        net: &mut h.net,
        optimizer: &mut h.optimizer,
        rng: &mut h.rng,
        compute: &mut h.compute,
        report: &mut h.report,
    };
    let err = h.method.task_started(&mut cx).unwrap_err().to_string();
    assert!(err.contains("task 1 uses output rows 0..3, which task 0 already used"), "{err}");
}

#[test]
fn the_saved_state_restores_a_method_that_continues_identically() {
    let mut h = harness(config(1e-3, 0.0), OptimizerKind::Adam, &[16, 12], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 30, |_| {});
    h.hook(0, "finish").unwrap();
    h.hook(1, "start").unwrap();
    h.train(1, 5, |_| {});
    let mut state = MethodState::default();
    h.method.save(&mut state);
    let mut restored = NeuralPruning::new(&config(1e-3, 0.0));
    restored.load(&state).unwrap();
    assert_eq!(restored.partition, h.method.partition);
    assert_eq!(restored.finished, h.method.finished);
    assert_eq!(restored.frozen, h.method.frozen);
    assert_eq!(restored.sizes, h.method.sizes);
    let mut again = MethodState::default();
    restored.save(&mut again);
    assert_eq!(again, state);

    // Both continue to the same bits.
    let (net, optimizer, rng) = (h.net.clone(), h.optimizer.clone(), h.rng.clone());
    h.train(1, 10, |_| {});
    h.hook(1, "finish").unwrap();
    let mut other = harness(config(1e-3, 0.0), OptimizerKind::Adam, &[16, 12], Activation::Relu);
    (other.net, other.optimizer, other.rng, other.method) = (net, optimizer, rng, restored);
    other.train(1, 10, |_| {});
    other.hook(1, "finish").unwrap();
    assert_eq!(other.net, h.net);
    assert_eq!(other.report.last(), h.report.last());

    // A state that does not fit is refused.
    state.put_u32("owner.1", vec![0; 3]);
    let err = NeuralPruning::new(&config(1e-3, 0.0)).load(&state).unwrap_err().to_string();
    assert!(err.contains("owner.1") && err.contains("3 units"), "{err}");
}

#[test]
fn parameters_are_checked() {
    let spec = |params: serde_json::Value| MethodSpec {
        name: "c".into(),
        kind: "clnp".into(),
        params: serde_json::from_value::<BTreeMap<String, serde_json::Value>>(params).unwrap(),
        worker: None,
    };
    crate::method::validate(&spec(
        serde_json::json!({"alpha": 1e-4, "margin": 0.01, "activity": "firing_rate"}),
    ))
    .unwrap();
    let err = crate::method::validate(&spec(serde_json::json!({"margin": 2}))).unwrap_err().to_string();
    assert!(err.contains("`margin` must lie in [0, 1]"), "{err}");
    let err = crate::method::validate(&spec(serde_json::json!({"alpha": -1}))).unwrap_err().to_string();
    assert!(err.contains("`alpha` must be a number ≥ 0"), "{err}");
    let err =
        crate::method::validate(&spec(serde_json::json!({"activity": "mean"}))).unwrap_err().to_string();
    assert!(err.contains("mean_activation") && err.contains("firing_rate"), "{err}");
}

#[test]
fn retraining_moves_only_the_kept_units_and_the_head_and_keeps_earlier_heads_bit_identical() {
    let retraining = ClnpConfig { retrain_epochs: 2, ..config(1e-3, 0.05) };
    let mut h = harness(retraining, OptimizerKind::Adam, &[24, 16], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 60, |_| {});
    h.hook(0, "finish").unwrap();
    let c = h.capacity().clone();
    assert!(c.accuracy_retrained.is_some(), "{c:?}");
    let after_task0 = h.net.clone();
    let reference = head_columns(&h.outputs(&after_task0, 0), 0);
    let frozen = h.method.partition.clone();

    h.hook(1, "start").unwrap();
    h.train(1, 40, |_| {});
    let before_finish = h.net.clone();
    h.hook(1, "finish").unwrap();
    let p = h.method.partition.clone();
    let layers = h.net.layers();
    for l in 0..3 {
        for row in 0..layers[l].outputs {
            let (a, b) = (&layers[l], &after_task0.layers()[l]);
            if frozen.is_frozen(l, row) {
                // Task 0's units and head: bit-identical through task 1's training and retraining.
                assert_eq!(a.row(row), b.row(row), "frozen row {l}/{row} moved");
                assert_eq!(a.bias[row].to_bits(), b.bias[row].to_bits());
            } else if l < 2 && !p.is_used(l, row) {
                // Pruned by task 1: zero in, zero out.
                assert!(a.row(row).iter().all(|&w| w == 0.0) && a.bias[row] == 0.0, "pruned {l}/{row}");
                assert!((0..layers[l + 1].outputs).all(|r| layers[l + 1].row(r)[row] == 0.0));
            }
        }
    }
    let kept_moved = (0..2).any(|l| {
        (0..layers[l].outputs)
            .filter(|&u| p.owner[l][u] == 2)
            .any(|u| layers[l].row(u) != before_finish.layers()[l].row(u))
    });
    assert!(kept_moved, "retraining trained the units task 1 kept");
    h.hook(2, "start").unwrap();
    h.train(2, 40, |_| {});
    h.hook(2, "finish").unwrap();
    assert_eq!(head_columns(&h.outputs(&h.net, 0), 0), reference, "head 0's outputs changed");
}

#[test]
fn per_layer_thresholds_are_reported_per_layer_and_the_event_threshold_is_their_largest() {
    let mut h = harness(config(1e-3, 0.05), OptimizerKind::Sgd, &[24, 16], Activation::Relu);
    h.hook(0, "begin").unwrap();
    h.hook(0, "start").unwrap();
    h.train(0, 60, |_| {});
    h.hook(0, "finish").unwrap();
    let c = h.capacity();
    let largest = c.layers.iter().filter_map(|l| l.threshold).reduce(f64::max);
    assert_eq!(c.threshold, largest, "{c:?}");
    for l in &c.layers {
        assert_eq!(l.threshold.is_some(), l.pruned > 0, "{l:?}");
    }
    assert!(c.accuracy_retrained.is_none(), "no retraining configured");
}

#[test]
fn the_activation_penalty_silences_units_so_the_first_task_keeps_fewer() {
    let kept = |penalty: Penalty, alpha: f64| -> usize {
        let c = ClnpConfig { alpha, margin: 0.05, penalty, retrain_epochs: 0, ..ClnpConfig::default() };
        let mut h = harness(c, OptimizerKind::Sgd, &[32, 32], Activation::Relu);
        h.hook(0, "begin").unwrap();
        h.hook(0, "start").unwrap();
        h.train(0, 150, |_| {});
        h.hook(0, "finish").unwrap();
        h.capacity().layers.iter().map(|l| l.new).sum()
    };
    let plain = kept(Penalty::Activations, 0.0);
    let sparse = kept(Penalty::Activations, 0.05);
    assert!(sparse < plain, "α = 0.05 keeps {sparse} units, α = 0 keeps {plain}");
}
