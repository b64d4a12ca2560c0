use std::collections::BTreeMap;

use super::*;
use crate::method::params::parse;
use crate::method::{Compute, ContinualMethod};
use crate::model::Mlp;
use crate::optim::Optimizer;
use crate::protocol::{Activation, Engine, MethodSpec, StreamSpec};
use crate::rng::{self, Rng};
use crate::stream::{self, Task, TaskStream};
use crate::stream::{InputTransform, SyntheticPermutedSpec};

/// A miniature trainer: a synthetic stream, a backbone, the method and its contexts.
struct Harness {
    stream: Box<dyn TaskStream>,
    net: Mlp,
    optimizer: Optimizer,
    method: FieldMethod,
    rng: Rng,
    compute: Compute,
    reports: Vec<MethodPayload>,
}

impl Harness {
    /// On a small synthetic stream (4 tasks of 4 classes in 12 dimensions), net 12-16-12-4.
    fn new(kind: &str, params: serde_json::Value) -> Self {
        let spec = crate::stream::spec_of::<crate::stream::SyntheticPermutedKind>(&SyntheticPermutedSpec {
            tasks: 4,
            classes: 4,
            dim: 12,
            train_per_class: 40,
            test_per_class: 15,
            noise: 1.0,
            transform: InputTransform::Permute,
        });
        Self::on(spec, &[12, 16, 12, 16], kind, params)
    }

    fn on(spec: StreamSpec, sizes: &[usize], kind: &str, params: serde_json::Value) -> Self {
        let stream = stream::build(&spec, 3).unwrap();
        let net = Mlp::new(sizes, Activation::Relu, &mut rng::stream(3, "model.init", 0));
        let (method, config) = field_method(kind, params);
        let optimizer = Optimizer::new(config, &net);
        let compute = Compute::new(&net, Engine::Fused, 8);
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
        f: impl FnOnce(&mut FieldMethod, &mut TaskContext<'_>) -> R,
    ) -> R {
        let tasks = self.stream.info().tasks;
        let head = Self::head(task.index);
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
                self.compute.load(&task.train, &indices);
                let learner = self.method.learner().expect("a field method has a learner");
                let (workspace, targets) = self.compute.batch_mut();
                let totals = learner
                    .train_step(&mut LearnerStep {
                        net: &mut self.net,
                        optimizer: &mut self.optimizer,
                        rng: &mut self.rng,
                        workspace,
                        targets,
                        head: Self::head(t),
                        task: t,
                        step: 0,
                    })
                    .unwrap();
                assert!(totals.loss_sum.is_finite());
            }
        }
    }

    /// Task `t`'s head: 4 output columns of its own.
    fn head(t: usize) -> std::ops::Range<usize> {
        4 * t..4 * t + 4
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
        let learner = self.method.learner().unwrap();
        let mut out = Vec::new();
        self.compute
            .for_each_chunk_with(
                &self.net,
                &task.test,
                &indices,
                |net, ws| learner.forward(variant, net, ws),
                |ws, _| {
                    for row in ws.outputs().chunks_exact(16) {
                        out.extend_from_slice(&row[Self::head(t)]);
                    }
                },
            )
            .unwrap();
        out
    }

    fn accuracy(&mut self, t: usize) -> f64 {
        let task = self.stream.task(t);
        let learner = self.method.learner().unwrap();
        self.compute
            .evaluate_with(&self.net, &task.test, Self::head(t), None, |net, ws| {
                learner.forward(None, net, ws)
            })
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

/// A field method of `kind` with `params` (as a recipe gives them) and its optimiser.
fn field_method(kind: &str, params: serde_json::Value) -> (FieldMethod, OptimizerConfig) {
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

/// The generated weights at every anchor of region `r`, flattened.
fn anchor_weights(h: &mut Harness, r: usize) -> Vec<Vec<f32>> {
    let net = h.net.clone();
    let state = h.state();
    let d = state.field.dim;
    state.regions[r]
        .anchors
        .chunks_exact(d)
        .map(|a| state.field.generate(&net, a).params.buffers().flatten().copied().collect())
        .collect()
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
    h.compute.load(&task.train, &[0, 1]);
    let learner = h.method.learner().unwrap();
    let (workspace, targets) = h.compute.batch_mut();
    let err = learner
        .train_step(&mut LearnerStep {
            net: &mut h.net,
            optimizer: &mut h.optimizer,
            rng: &mut h.rng,
            workspace,
            targets,
            head: Harness::head(0),
            task: 1,
            step: 0,
        })
        .unwrap_err();
    assert!(err.to_string().contains("one head per task"), "{err}");
}

#[test]
fn the_state_round_trips_through_a_checkpoint() {
    let mut h = Harness::new("niwf", serde_json::json!({"rollback": [0], "drift_examples": 10}));
    h.train(0, 1);
    h.finish(0);
    h.train(1, 1);
    let mut saved = MethodState::default();
    h.method.save(&mut saved);
    let (mut other, _) = field_method("niwf", serde_json::json!({"rollback": [0], "drift_examples": 10}));
    other.load(&saved).unwrap();
    let mut again = MethodState::default();
    other.save(&mut again);
    assert_eq!(saved.meta, again.meta);
    assert!(saved.tensors == again.tensors);
    assert!(other.state.as_ref().unwrap().field == h.state().field);
}
