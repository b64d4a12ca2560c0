use std::collections::BTreeMap;

use super::*;
use crate::method::params::parse;
use crate::method::ContinualMethod;
use crate::model::convnet::{LayerSpec, Shape};
use crate::model::Mlp;
use crate::optim::Optimizer;
use crate::protocol::{Activation, Engine, MethodSpec, StreamSpec};
use crate::rng::{self, Rng};
use crate::stream::{self, Task, TaskStream};
use crate::stream::{InputTransform, SyntheticPermutedSpec};

/// A miniature trainer: a synthetic stream, a backbone, the method and its contexts.
struct Harness<M: FieldNet = Mlp> {
    stream: Box<dyn TaskStream>,
    net: M,
    optimizer: Optimizer<M::Params>,
    method: FieldMethod<M>,
    rng: Rng,
    compute: M::Compute,
    reports: Vec<MethodPayload>,
}

/// A synthetic stream of 4 tasks of 4 classes in `dim` dimensions.
fn synthetic(dim: usize) -> StreamSpec {
    crate::stream::spec_of::<crate::stream::SyntheticPermutedKind>(&SyntheticPermutedSpec {
        tasks: 4,
        classes: 4,
        dim,
        train_per_class: 40,
        test_per_class: 15,
        noise: 1.0,
        transform: InputTransform::Permute,
    })
}

impl Harness {
    /// On a small synthetic stream (4 tasks of 4 classes in 12 dimensions), net 12-16-12-4.
    fn new(kind: &str, params: serde_json::Value) -> Self {
        Self::on(synthetic(12), &[12, 16, 12, 16], kind, params)
    }

    fn on(spec: StreamSpec, sizes: &[usize], kind: &str, params: serde_json::Value) -> Self {
        let net = Mlp::new(sizes, Activation::Relu, &mut rng::stream(3, "model.init", 0));
        Harness::with_net(spec, net, kind, params)
    }
}

impl Harness<ConvNet> {
    /// On the same stream as 3×6×6 images, a conv net with batch norm, max pooling and a
    /// residual block, then two linear layers (12 hidden units, 16 outputs).
    fn conv(kind: &str, params: serde_json::Value) -> Self {
        let specs = [
            LayerSpec::Conv2d { channels: 8, kernel: 3, stride: 1, padding: 1, bias: true },
            LayerSpec::BatchNorm2d,
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 },
            LayerSpec::BasicBlock { channels: 12, stride: 1, bias: false },
            LayerSpec::Flatten,
            LayerSpec::Linear { units: 12 },
            LayerSpec::Relu,
            LayerSpec::Linear { units: 16 },
        ];
        let input = Shape::new(3, 6, 6);
        let net = ConvNet::new(input, &specs, &mut rng::stream(3, "model.init", 0)).unwrap();
        Harness::with_net(synthetic(input.len()), net, kind, params)
    }
}

impl<M: FieldNet> Harness<M> {
    fn with_net(spec: StreamSpec, net: M, kind: &str, params: serde_json::Value) -> Self {
        let stream = stream::build(&spec, 3).unwrap();
        let (method, config) = field_method(kind, params);
        let optimizer = Optimizer::for_parameters(config, net.parameters());
        let compute = M::Compute::for_network(&net, Engine::Fused, 8);
        let mut h = Harness {
            stream,
            net,
            optimizer,
            method,
            rng: rng::stream(3, "method", 0),
            compute,
            reports: Vec::new(),
        };
        let first = h.stream.task(0);
        h.with_task(&first, |m, cx| m.begin(cx)).unwrap();
        h
    }

    fn with_task<R>(
        &mut self,
        task: &Task,
        f: impl FnOnce(&mut FieldMethod<M>, &mut TaskContext<'_, M>) -> R,
    ) -> R {
        let tasks = self.stream.info().tasks;
        let head = head(task.index);
        let mut cx = TaskContext {
            task,
            head,
            tasks_total: tasks,
            net: &mut self.net,
            optimizer: &mut self.optimizer,
            rng: &mut self.rng,
            compute: &mut self.compute,
            report: &mut self.reports,
        };
        f(&mut self.method, &mut cx)
    }

    /// `passes` passes over task `t`'s training split in batches of 8.
    fn train(&mut self, t: usize, passes: usize) {
        let task = self.stream.task(t);
        let n = task.train.len();
        for pass in 0..passes {
            for start in (0..n).step_by(8) {
                let indices: Vec<usize> = (start..(start + 8).min(n)).map(|i| (i * 7 + pass) % n).collect();
                self.compute.load_batch(&task.train, &indices);
                let learner = self.method.learner().expect("a field method has a learner");
                let (workspace, targets) = self.compute.batch_parts();
                let totals = learner
                    .train_step(&mut LearnerStep {
                        net: &mut self.net,
                        optimizer: &mut self.optimizer,
                        rng: &mut self.rng,
                        workspace,
                        targets,
                        head: head(t),
                        task: t,
                        step: 0,
                    })
                    .unwrap();
                assert!(totals.loss_sum.is_finite());
            }
        }
    }

    fn finish(&mut self, t: usize) {
        let task = self.stream.task(t);
        self.with_task(&task, |m, cx| m.task_finished(cx)).unwrap();
    }

    /// The model's outputs (a variant of it) on task `t`'s held-out split, as evaluation
    /// computes them.
    fn outputs(&mut self, t: usize, variant: Option<&str>) -> Vec<f32> {
        let task = self.stream.task(t);
        let indices: Vec<usize> = (0..task.test.len()).collect();
        let mut ws = self.net.workspace(indices.len());
        task.test.gather_inputs(&indices, M::input_values(&mut ws));
        self.method.learner().unwrap().forward(variant, &self.net, &mut ws).unwrap();
        let width = self.net.outputs();
        M::output_values(&ws).chunks_exact(width).flat_map(|row| row[head(t)].to_vec()).collect()
    }

    fn accuracy(&mut self, t: usize) -> f64 {
        let task = self.stream.task(t);
        let learner = self.method.learner().unwrap();
        self.compute
            .evaluate_by(&self.net, &task.test, head(t), None, |net, ws| learner.forward(None, net, ws))
            .unwrap()
            .accuracy()
    }

    fn state(&mut self) -> &mut FieldState {
        self.method.state.as_mut().unwrap()
    }

    fn commits(&self) -> Vec<&NiwfCommit> {
        self.reports
            .iter()
            .filter_map(|p| if let MethodPayload::NiwfCommit(c) = p { Some(c) } else { None })
            .collect()
    }

    fn niwf_drifts(&self) -> Vec<&FieldDrift> {
        self.reports
            .iter()
            .filter_map(|p| if let MethodPayload::NiwfDrift(d) = p { Some(d) } else { None })
            .collect()
    }

    fn weight_field_drifts(&self) -> Vec<&FieldDrift> {
        let drifts = self.reports.iter();
        drifts
            .filter_map(|p| if let MethodPayload::WeightFieldDrift(d) = p { Some(d) } else { None })
            .collect()
    }
}

/// Task `t`'s head: 4 output columns of its own.
fn head(t: usize) -> std::ops::Range<usize> {
    4 * t..4 * t + 4
}

/// A field method of `kind` with `params` (as a recipe gives them) and its optimiser.
fn field_method<M: FieldNet>(kind: &str, params: serde_json::Value) -> (FieldMethod<M>, OptimizerConfig) {
    let params: BTreeMap<String, serde_json::Value> = serde_json::from_value(params).unwrap();
    let spec = MethodSpec { name: kind.into(), kind: kind.into(), params, worker: None };
    match kind {
        "niwf" => {
            let (c, o) = parse::<Niwf>(&spec).unwrap();
            (FieldMethod::new(c.settings(), o), o)
        }
        _ => {
            let (c, o) = parse::<WeightFieldKind>(&spec).unwrap();
            (FieldMethod::new(c.settings(), o), o)
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The generated weights (the field's layers) at every anchor of region `r`, flattened.
fn anchor_weights<M: FieldNet>(h: &mut Harness<M>, r: usize) -> Vec<Vec<f32>> {
    let net = h.net.clone();
    let state = h.state();
    let d = state.field.dim;
    state.regions[r].anchors.chunks_exact(d).map(|a| generated(&state.field, &net, a)).collect()
}

/// The field's layers generated at `z`, flattened.
fn generated<M: FieldNet>(field: &Field, net: &M, z: &[f32]) -> Vec<f32> {
    field_part::<M>(field.generate(net, z).parameters()).buffers().flatten().copied().collect()
}

fn largest_change(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn the_hard_lock_keeps_a_committed_tasks_weights_and_outputs_bit_identical_and_learns_the_next() {
    let mut h = Harness::new("niwf", serde_json::json!({"lock": "hard", "lr": 0.01, "drift_examples": 30}));
    h.train(0, 3);
    h.finish(0);
    let committed = h.outputs(0, None);
    let weights = anchor_weights(&mut h, 0);
    let before = h.accuracy(1);
    for t in 1..3 {
        h.train(t, 3);
        h.finish(t);
    }
    assert_eq!(bits(&h.outputs(0, None)), bits(&committed));
    let now = anchor_weights(&mut h, 0);
    assert!(weights.iter().zip(&now).all(|(a, b)| bits(a) == bits(b)), "generated weights moved");
    let drift = &h.niwf_drifts().last().unwrap().tasks;
    assert!(drift.iter().all(|t| t.changed_outputs == 0 && t.max_abs_change == 0.0), "{drift:?}");
    // The new task is learnt: well above its accuracy before training, and above chance.
    let after = h.accuracy(1);
    assert!(after > 0.6 && after > before + 0.2, "task 1: {before} → {after}");
    let commits = h.commits();
    assert_eq!(commits.len(), 3);
    assert!(commits.iter().all(|c| c.overlap == 0.0 && c.overlap_region.is_none()), "{commits:?}");
    assert_eq!(commits[1].frozen_bases, vec![1]);
}

#[test]
fn the_soft_lock_holds_the_generated_weights_at_the_anchors() {
    // The same run with and without the lock's weight: the lock keeps task 0's generated
    // weights where the commit left them, to far below the change without it.
    let mut change = Vec::new();
    for lambda in [0.0, 100.0] {
        let mut h = Harness::new("niwf", serde_json::json!({"lr": 0.01, "lambda_lock": lambda}));
        h.train(0, 3);
        h.finish(0);
        let weights = anchor_weights(&mut h, 0);
        h.train(1, 3);
        change.push(largest_change(&weights, &anchor_weights(&mut h, 0)));
    }
    assert!(change[0] > 0.01, "without the lock W0 moves: {change:?}");
    assert!(change[1] < change[0] / 10.0, "{change:?}");
}

#[test]
fn the_lock_loss_is_the_mean_squared_change_of_the_generated_weights() {
    let mut h = Harness::new("niwf", serde_json::json!({"lr": 0.01, "lambda_lock": 1.0}));
    h.train(0, 2);
    h.finish(0);
    let snapshot = anchor_weights(&mut h, 0);
    h.train(1, 1);
    let now = anchor_weights(&mut h, 0);
    let direct: f64 = snapshot
        .iter()
        .zip(&now)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>())
        .sum::<f64>()
        / snapshot.len() as f64;
    let net = h.net.params.clone();
    let state = h.state();
    let factored = lock(&state.field, &net, &state.regions, 0.0, None, &|_| false);
    assert!(direct > 0.0 && (factored - direct).abs() <= 1e-4 * direct, "{factored} vs {direct}");
}

#[test]
fn a_task_inside_a_committed_region_is_flagged_and_under_the_hard_lock_learns_nothing() {
    // spacing 0.5 < ρ = 1: task 1's coordinate lies inside region 0.
    let mut h = Harness::new("niwf", serde_json::json!({"lock": "hard", "lr": 0.01, "spacing": 0.5}));
    h.train(0, 2);
    h.finish(0);
    h.train(1, 2);
    h.finish(1);
    let commits = h.commits();
    assert_eq!((commits[1].overlap, commits[1].overlap_region), (1.0, Some(0)));
    assert_eq!((commits[0].overlap, commits[0].overlap_region), (0.0, None));
    let delta = &h.state().field.bases[1].delta;
    assert!(delta.buffers().flatten().all(|&v| v == 0.0), "the silenced basis was trained");
}

#[test]
fn a_version_reproduces_the_outputs_it_had_at_its_commit() {
    let mut h = Harness::new(
        "niwf",
        serde_json::json!({"lr": 0.01, "lambda_lock": 0.0, "rollback": [0], "compose": [[0, 1]]}),
    );
    h.train(0, 2);
    h.finish(0);
    let committed = h.outputs(0, None);
    assert_eq!(h.method.variants(), vec!["version:0".to_string()]);
    h.train(1, 2);
    h.finish(1);
    assert_ne!(bits(&h.outputs(0, None)), bits(&committed), "without a lock task 0 moves");
    assert_eq!(bits(&h.outputs(0, Some("version:0"))), bits(&committed));
    assert_eq!(h.method.variants(), vec!["version:0".to_string(), "compose:0+1".to_string()]);
    assert_eq!(h.outputs(1, Some("compose:0+1")).len(), h.outputs(1, None).len());
}

#[test]
fn weight_field_learns_each_task_and_forgets_without_commits() {
    let mut h = Harness::new("weight_field", serde_json::json!({"lr": 0.01, "drift_examples": 30}));
    h.train(0, 3);
    h.finish(0);
    let a0 = h.accuracy(0);
    h.train(1, 3);
    h.finish(1);
    let a1 = h.accuracy(1);
    assert!(a0 > 0.6 && a1 > 0.6, "{a0} {a1}");
    assert!(h.commits().is_empty() && h.method.variants().is_empty());
    let drift = &h.weight_field_drifts().last().unwrap().tasks[0];
    assert!(drift.max_abs_change > 0.0 && drift.inside.is_none(), "{drift:?}");
}

#[test]
fn two_tasks_on_one_head_are_refused() {
    let mut h = Harness::new("niwf", serde_json::json!({}));
    h.train(0, 1);
    let task = h.stream.task(1);
    // The same head, and one that shares some of its columns (a growing head).
    for shared in [head(0), 2..6] {
        h.compute.load_batch(&task.train, &[0, 1]);
        let learner = h.method.learner().unwrap();
        let (workspace, targets) = h.compute.batch_parts();
        let err = learner
            .train_step(&mut LearnerStep {
                net: &mut h.net,
                optimizer: &mut h.optimizer,
                rng: &mut h.rng,
                workspace,
                targets,
                head: shared,
                task: 1,
                step: 0,
            })
            .unwrap_err();
        assert!(err.to_string().contains("share output columns (heads 0..4 and"), "{err}");
        assert!(err.to_string().contains("one head per task"), "{err}");
    }
}

#[test]
fn the_state_round_trips_through_a_checkpoint() {
    let mut h = Harness::new("niwf", serde_json::json!({"rollback": [0], "drift_examples": 10}));
    h.train(0, 1);
    h.finish(0);
    h.train(1, 1);
    let mut saved = MethodState::default();
    h.method.save(&mut saved);
    let (mut other, _) =
        field_method::<Mlp>("niwf", serde_json::json!({"rollback": [0], "drift_examples": 10}));
    other.load(&saved).unwrap();
    let mut again = MethodState::default();
    other.save(&mut again);
    assert_eq!(saved.meta, again.meta);
    assert!(saved.tensors == again.tensors);
    assert!(other.state.as_ref().unwrap().field == h.state().field);
}

/// What training later tasks did to task 0 on a conv net, measured from task 0's commit.
#[derive(Debug)]
struct ConvChange {
    /// Largest change of task 0's head outputs on its held-out examples.
    outputs: f32,
    /// Whether any of those outputs changed in any bit.
    outputs_changed: bool,
    /// Largest change of the linear weights generated at task 0's coordinate.
    weights: f32,
    /// Largest change of the generated linear weights at region 0's anchors (`niwf`).
    anchors: Option<f32>,
    /// Whether any backbone tensor (running statistics included) changed in any bit.
    backbone_changed: bool,
    /// Task 1's accuracy before and after training it.
    task1: (f64, f64),
    /// The last drift event's entries.
    drift: Vec<TaskDrift>,
    /// Commits reported.
    commits: usize,
}

/// Every backbone tensor of the test conv net (layers before its first linear layer, 6).
fn backbone(net: &ConvNet) -> Vec<(String, Vec<u32>)> {
    net.tensors()
        .into_iter()
        .filter(|t| t.name.split('.').next().and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l < 6))
        .map(|t| (t.name, bits(t.values)))
        .collect()
}

/// Trains task 0 and commits it (`niwf`), then trains tasks 1..=`later`.
fn conv_change(kind: &str, params: serde_json::Value, later: usize) -> ConvChange {
    let mut h = Harness::conv(kind, params);
    h.train(0, 3);
    h.finish(0);
    let outputs = h.outputs(0, None);
    let field = h.state().field.clone();
    let weights = generated(&field, &h.net, &field.bases[0].center);
    let anchors = (kind == "niwf").then(|| anchor_weights(&mut h, 0));
    let backbone_then = backbone(&h.net);
    let before = h.accuracy(1);
    for t in 1..=later {
        h.train(t, 3);
        h.finish(t);
    }
    let now = h.outputs(0, None);
    let field = h.state().field.clone();
    let weights_now = generated(&field, &h.net, &field.bases[0].center);
    let anchors = anchors.map(|a| largest_change(&a, &anchor_weights(&mut h, 0)));
    let change = ConvChange {
        outputs: largest_change(std::slice::from_ref(&outputs), std::slice::from_ref(&now)),
        outputs_changed: bits(&outputs) != bits(&now),
        weights: largest_change(&[weights], &[weights_now]),
        anchors,
        backbone_changed: backbone(&h.net) != backbone_then,
        task1: (before, h.accuracy(1)),
        drift: h.niwf_drifts().into_iter().chain(h.weight_field_drifts()).last().unwrap().tasks.clone(),
        commits: h.commits().len(),
    };
    println!(
        "{kind} {}: task 0 outputs max |Δ| {}, generated weights at c_0 max |Δ| {}, at the anchors {:?}, \
         backbone changed {}, task 1 accuracy {:?}",
        h.method.settings.commit.as_ref().map_or("", |c| if c.lock == LockKind::Hard {
            "hard"
        } else {
            "soft"
        }),
        change.outputs,
        change.weights,
        change.anchors,
        change.backbone_changed,
        change.task1
    );
    change
}

#[test]
fn on_a_conv_net_the_hard_lock_keeps_task_0s_outputs_bit_identical_and_learns_the_next_tasks() {
    let c = conv_change("niwf", serde_json::json!({"lock": "hard", "lr": 0.01, "drift_examples": 30}), 2);
    assert!(!c.outputs_changed && c.outputs == 0.0, "{c:?}");
    assert_eq!((c.weights, c.anchors), (0.0, Some(0.0)), "{c:?}");
    // The frozen backbone's batch norm ran in evaluation mode: its statistics did not move.
    assert!(!c.backbone_changed, "{c:?}");
    let drift = &c.drift;
    assert!(drift.iter().all(|t| t.changed_outputs == 0 && t.max_abs_change == 0.0), "{drift:?}");
    let (before, after) = c.task1;
    assert!(after > 0.6 && after > before + 0.2, "task 1 through the frozen backbone: {before} → {after}");
}

#[test]
fn on_a_conv_net_the_soft_lock_holds_the_committed_linear_weights_far_better_than_weight_field() {
    let params = serde_json::json!({"lr": 0.01, "drift_examples": 30});
    let field = conv_change("weight_field", params.clone(), 1);
    let soft = conv_change("niwf", params, 1);
    assert!(field.weights > 0.01, "weight_field: W0 trains on task 1: {field:?}");
    assert!(soft.weights < field.weights / 10.0, "soft {soft:?}\nweight_field {field:?}");
    assert!(soft.anchors.unwrap() < field.weights / 10.0, "{soft:?}");
    assert!(soft.outputs < field.outputs, "soft {soft:?}\nweight_field {field:?}");
    assert!(!soft.backbone_changed, "niwf freezes the backbone at its first commit: {soft:?}");
    assert!(soft.task1.1 > 0.6, "{soft:?}");
}

#[test]
fn weight_field_on_a_conv_net_moves_earlier_tasks_outputs_and_the_backbone() {
    let c = conv_change("weight_field", serde_json::json!({"lr": 0.01, "drift_examples": 30}), 2);
    assert!(c.outputs_changed && c.outputs > 1e-3 && c.backbone_changed, "{c:?}");
    let drift = &c.drift[0];
    assert!(drift.max_abs_change > 1e-3 && drift.changed_outputs > 0, "{drift:?}");
    assert!(c.commits == 0 && c.task1.1 > 0.6, "{c:?}");
}

#[test]
fn a_conv_net_whose_linear_layers_do_not_follow_the_backbone_is_refused() {
    let specs = [
        LayerSpec::Conv2d { channels: 4, kernel: 3, stride: 1, padding: 1, bias: true },
        LayerSpec::Flatten,
        LayerSpec::Linear { units: 8 },
        LayerSpec::BatchNorm2d,
        LayerSpec::Linear { units: 16 },
    ];
    let net = ConvNet::new(Shape::new(3, 6, 6), &specs, &mut rng::stream(3, "model.init", 0)).unwrap();
    let mut h = Harness::conv("niwf", serde_json::json!({}));
    h.net = net;
    let task = h.stream.task(0);
    let err = h.with_task(&task, |m, cx| m.begin(cx)).unwrap_err().to_string();
    assert!(err.contains("niwf") && err.contains("layer 3") && err.contains("only linear, relu"), "{err}");
}

#[test]
fn every_named_conv_architecture_carries_a_field_on_its_linear_layers() {
    use crate::model::convnet::architectures;
    let mut r = rng::stream(3, "model.init", 0);
    for (name, build) in [
        ("cnn_mnist", architectures::cnn_mnist as fn(usize, &mut Rng) -> Result<ConvNet, String>),
        ("convnet", architectures::convnet),
        ("reduced_resnet18", architectures::reduced_resnet18),
        ("resnet18", architectures::resnet18),
    ] {
        let net = build(10, &mut r).unwrap();
        net.check().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!ConvNet::field_layers(&net).is_empty(), "{name}");
    }
}
