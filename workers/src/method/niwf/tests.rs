use std::collections::BTreeMap;

use super::*;
use crate::method::params::parse;
use crate::method::{self, ContinualMethod};
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
        Self::on(spec, &[12, 16, 12, 4], kind, params)
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
        let outputs = self.net.sizes().last().copied().unwrap();
        let tasks = self.stream.info().tasks;
        let mut cx = TaskContext {
            task,
            head: 0..outputs,
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
        let outputs = self.net.sizes().last().copied().unwrap();
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
                        head: 0..outputs,
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
        let learner = self.method.learner().unwrap();
        let mut out = Vec::new();
        self.compute
            .for_each_chunk_with(
                &self.net,
                &task.test,
                &indices,
                |net, ws| learner.forward(variant, net, ws),
                |ws, _| out.extend_from_slice(ws.outputs()),
            )
            .unwrap();
        out
    }

    fn accuracy(&mut self, t: usize) -> f64 {
        let task = self.stream.task(t);
        let outputs = self.net.sizes().last().copied().unwrap();
        let learner = self.method.learner().unwrap();
        self.compute
            .evaluate_with(&self.net, &task.test, 0..outputs, None, |net, ws| learner.forward(None, net, ws))
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

#[test]
fn the_hard_lock_keeps_a_committed_tasks_outputs_bit_identical() {
    let mut h = Harness::new("niwf", serde_json::json!({"lock": "hard", "lr": 0.01}));
    h.train(0, 3);
    h.finish(0);
    let committed = h.outputs(0, None);
    let accuracy_0 = h.accuracy(0);
    let params_after_commit_field = h.state().field.clone();
    // Every held-out example of task 0 lies in its region (the input-space lock covers the
    // task's inputs), so the guarantee covers all of them.
    let drift = &h.niwf_drifts()[0].tasks[0];
    assert_eq!(drift.inside, Some(drift.examples), "{drift:?}");
    // An input far from every task's inputs lies outside every region.
    let task = h.stream.task(0);
    h.compute.load(&task.test, &[0]);
    let far: Vec<f32> = h.compute.workspace.input.iter().map(|v| 25.0 * v + 3.0).collect();
    let far_before = {
        let mut ws = Workspace::new(&h.net.sizes(), 1);
        ws.input.copy_from_slice(&far);
        let net = h.net.clone();
        let regions = h.state().regions.clone();
        FieldEngine::new().predict(
            &net,
            &params_after_commit_field,
            Gates::Field(Some(&RegionSet(&regions))),
            &mut ws,
        );
        ws.outputs().to_vec()
    };
    for t in 1..4 {
        h.train(t, 3);
        h.finish(t);
    }
    assert_eq!(
        bits(&h.outputs(0, None)),
        bits(&committed),
        "task 0's outputs changed after three more tasks"
    );
    assert_eq!(h.accuracy(0), accuracy_0);
    // ... while outside the regions the field still changes (here through the fresh bases and
    // extensions each commit adds: this stream's tasks share one input distribution, so every
    // later task falls inside the first region and trains nothing; see the permuted-MNIST test
    // below for a stream whose tasks the input-space lock tells apart).
    let net = h.net.clone();
    let mut ws = Workspace::new(&net.sizes(), 1);
    ws.input.copy_from_slice(&far);
    let state = h.state();
    assert!(state.field.params.layers.len() > params_after_commit_field.params.layers.len());
    let masks = RegionSet(&state.regions);
    assert!(masks.0.iter().all(|r| r.mask(&far, &[0.0; 8]) == 1.0));
    FieldEngine::new().predict(&net, &state.field, Gates::Field(Some(&masks)), &mut ws);
    assert_ne!(bits(ws.outputs()), bits(&far_before));
    // The drift diagnostic agrees: no output of any committed task changed.
    let last = &h.niwf_drifts().last().unwrap().tasks;
    assert_eq!(last.iter().map(|entry| entry.task).collect::<Vec<_>>(), [0, 1, 2, 3]);
    for entry in last {
        assert_eq!(entry.changed_outputs, 0, "{entry:?}");
    }
}

#[test]
fn without_a_lock_the_field_forgets() {
    // The ablation changes the outputs of a finished task: the hard lock's test above is not
    // vacuous.
    let mut h = Harness::new("weight_field", serde_json::json!({"lr": 0.01}));
    h.train(0, 3);
    h.finish(0);
    let before = h.outputs(0, None);
    h.train(1, 3);
    h.finish(1);
    assert_ne!(bits(&h.outputs(0, None)), bits(&before));
    assert!(h.niwf_drifts().is_empty(), "the ablation reports under its own name");
    let drift = &h.weight_field_drifts().last().unwrap().tasks[0];
    assert!(drift.max_abs_change > 0.0, "{drift:?}");
    assert_eq!((drift.inside, drift.max_abs_change_inside), (None, None));
}

#[test]
fn the_soft_lock_loss_is_zero_right_after_a_commit_and_grows_as_the_field_moves() {
    let mut h = Harness::new("niwf", serde_json::json!({"lr": 0.01, "anchors": 64}));
    h.train(0, 2);
    h.finish(0);
    let commit = h.commits()[0].clone();
    assert_eq!(commit.lock_before, Some(0.0), "no region before the first commit: {commit:?}");
    // The first step after the commit measures L_lock before its update: exactly 0.
    let task = h.stream.task(1);
    h.compute.load(&task.train, &[0, 1, 2, 3, 4, 5, 6, 7]);
    {
        let learner = h.method.learner().unwrap();
        let (workspace, targets) = h.compute.batch_mut();
        learner
            .train_step(&mut LearnerStep {
                net: &mut h.net,
                optimizer: &mut h.optimizer,
                rng: &mut h.rng,
                workspace,
                targets,
                head: 0..4,
                task: 1,
                step: 0,
            })
            .unwrap();
    }
    assert_eq!(h.state().running.steps, 1);
    assert_eq!(h.state().running.lock, 0.0);
    h.train(1, 2);
    let (engine, net) = (FieldEngine::new(), h.net.clone());
    let state = h.state();
    let moved = lock_loss(&engine, &net, &state.field, &state.regions);
    assert!(moved > 0.0, "L_lock after training task 1: {moved}");
    h.finish(1);
    // The second commit reports the loss its first region had reached.
    let lock_before = h.commits()[1].lock_before.expect("a soft lock measures L_lock");
    assert!((lock_before - moved).abs() <= 1e-9 * moved.max(1.0), "{lock_before} vs {moved}");
}

#[test]
fn anchors_lie_inside_their_regions_ellipsoid_and_commits_are_versions() {
    let mut h = Harness::new("niwf", serde_json::json!({"anchors": 100, "anchor_mass": 0.9}));
    for t in 0..2 {
        h.train(t, 1);
        h.finish(t);
    }
    let state = h.state();
    assert_eq!(state.regions.len(), 2);
    assert_eq!(state.versions.iter().map(|v| v.task).collect::<Vec<_>>(), vec![0, 1]);
    for region in &state.regions {
        assert_eq!(region.anchor_count(), 100);
        // √χ²_8(0.9) = √13.3616.
        assert!((region.radius_anchor - 13.361566f64.sqrt()).abs() < 1e-5);
        for a in region.anchors.chunks(region.dim()) {
            assert!(region.distance(a) <= region.radius_anchor * (1.0 + 1e-9));
        }
        assert_eq!(region.snapshot.len(), 100 * region.width);
    }
    let commits = h.commits();
    assert_eq!((commits[1].version, commits[1].task), (1, 1));
    assert_ne!(commits[0].field_checksum, commits[1].field_checksum);
}

#[test]
fn rollback_returns_a_versions_outputs_exactly_and_composition_mixes_two_regions() {
    let mut h =
        Harness::new("niwf", serde_json::json!({"lr": 0.01, "rollback": [0, 3], "compose": [[0, 1]]}));
    assert!(h.method.learner().unwrap().variants().is_empty());
    h.train(0, 2);
    h.finish(0);
    assert_eq!(h.method.learner().unwrap().variants(), vec!["version:0".to_string()]);
    let committed: Vec<Vec<f32>> = (0..4).map(|t| h.outputs(t, None)).collect();
    h.train(1, 3);
    h.finish(1);
    assert_eq!(
        h.method.learner().unwrap().variants(),
        vec!["version:0".to_string(), "compose:0+1".to_string()]
    );
    // The soft lock lets task 0's outputs move, and version 0 still has the old ones, on every
    // task's data.
    assert_ne!(bits(&h.outputs(0, None)), bits(&committed[0]));
    for (t, outputs) in committed.iter().enumerate() {
        assert_eq!(bits(&h.outputs(t, Some("version:0"))), bits(outputs), "task {t}");
    }
    // A composition gives every example the same gates: the mean of the two regions' mean
    // gates.
    let state = h.state();
    let mix: Vec<f32> = state.regions[0]
        .mean_gates
        .iter()
        .zip(&state.regions[1].mean_gates)
        .map(|(a, b)| 0.5 * (a + b))
        .collect();
    let sum: f32 = mix.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "mixed gates sum to {sum}");
    let field = state.field.clone();
    let task = h.stream.task(2);
    let n = task.test.len().min(500);
    let indices: Vec<usize> = (0..n).collect();
    h.compute.load(&task.test, &indices);
    let mut ws = h.compute.workspace.clone();
    FieldEngine::new().predict(&h.net, &field, Gates::Fixed(&mix), &mut ws);
    assert_eq!(bits(&h.outputs(2, Some("compose:0+1"))[..n * 4]), bits(ws.outputs()));
    // Unknown variants are errors, not panics.
    let mut ws = h.compute.workspace.clone();
    let net = h.net.clone();
    for bad in ["version:2", "version:x", "compose:0", "compose:0+9", "other"] {
        let err = h.method.learner().unwrap().forward(Some(bad), &net, &mut ws).unwrap_err().to_string();
        assert!(err.contains(bad), "{err}");
    }
}

#[test]
fn the_whole_state_survives_save_and_load() {
    let mut h = Harness::new(
        "niwf",
        serde_json::json!({"lock": "hard", "lr": 0.01, "rollback": [0], "compose": [[0, 1]], "anchors": 32}),
    );
    for t in 0..2 {
        h.train(t, 1);
        h.finish(t);
    }
    h.train(2, 1);
    let mut saved = MethodState::default();
    h.method.save(&mut saved);
    let (mut copy, _) = field_method(
        "niwf",
        serde_json::json!({"lock": "hard", "lr": 0.01, "rollback": [0], "compose": [[0, 1]], "anchors": 32}),
    );
    copy.load(&saved).unwrap();
    let mut again = MethodState::default();
    copy.save(&mut again);
    assert_eq!(again, saved);
    let a = h.state();
    let b = copy.state.as_ref().unwrap();
    assert_eq!(a.field, b.field);
    assert_eq!(a.regions, b.regions);
    assert_eq!(a.versions, b.versions);
    assert_eq!(a.references, b.references);
    assert_eq!(a.running, b.running);
    assert_eq!(a.backbone_frozen, b.backbone_frozen);
    assert_eq!(a.optimizer.states(), b.optimizer.states());
    // A checkpoint of another shape is refused with a message.
    let mut broken = saved.clone();
    broken.tensors.remove("region.0.anchors");
    let err = copy.load(&broken).unwrap_err().to_string();
    assert!(err.contains("region.0.anchors"), "{err}");
}

#[test]
fn bad_parameters_get_one_clear_line() {
    let check = |kind: &str, params: serde_json::Value| -> String {
        let params: BTreeMap<String, serde_json::Value> = serde_json::from_value(params).unwrap();
        match method::validate(&MethodSpec { name: kind.into(), kind: kind.into(), params, worker: None }) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    assert!(
        check("niwf", serde_json::json!({"top_k": 20})).contains("`top_k` (20) cannot exceed `bases` (16)")
    );
    assert!(check("niwf", serde_json::json!({"anchor_mass": 1.0})).contains("anchor_mass"));
    assert!(check("niwf", serde_json::json!({"lock": "firm"})).contains("soft"));
    assert!(check("niwf", serde_json::json!({"lock_margin": 0.5})).contains("lock_margin"));
    assert!(check("niwf", serde_json::json!({"compose": [[1, 1]]})).contains("two different tasks"));
    assert!(check("niwf", serde_json::json!({"lock_space": "pixels"})).contains("input"));
    // `weight_field` has no commit parameters.
    assert!(check("weight_field", serde_json::json!({"lambda_lock": 1.0})).contains("lambda_lock"));
    assert!(check("weight_field", serde_json::json!({"rank": 0})).contains("`rank` must be at least 1"));
    assert_eq!(check("niwf", serde_json::json!({"lock": "hard", "new_bases": 0})), "");
    // Tasks beyond the stream are refused when the run begins.
    let (mut m, _) = field_method("niwf", serde_json::json!({"rollback": [7]}));
    let mut h = Harness::new("niwf", serde_json::json!({}));
    let first = h.stream.task(0);
    let err = h.with_task(&first, |_, cx| m.begin(cx)).unwrap_err().to_string();
    assert!(err.contains("task 7") && err.contains("4 tasks"), "{err}");
}

#[test]
fn on_permuted_mnist_the_hard_lock_learns_new_tasks_and_keeps_old_outputs() {
    let Some(data) = test_support::mnist_dir() else { return };
    let spec =
        crate::stream::spec_of::<crate::stream::PermutedMnistKind>(&crate::stream::PermutedMnistSpec {
            data_dir: data,
            fingerprint: None,
            tasks: 3,
            first_unpermuted: true,
            train_examples: Some(1500),
            test_examples: Some(300),
        });
    let mut h =
        Harness::on(spec, &[784, 32, 16, 10], "niwf", serde_json::json!({"lock": "hard", "lr": 0.003}));
    h.train(0, 2);
    h.finish(0);
    let committed = h.outputs(0, None);
    let mut learnt = Vec::new();
    for t in 1..3 {
        let before = h.accuracy(t);
        h.train(t, 2);
        h.finish(t);
        learnt.push((before, h.accuracy(t)));
    }
    assert_eq!(bits(&h.outputs(0, None)), bits(&committed));
    for (t, (before, after)) in learnt.iter().enumerate() {
        assert!(after - before > 0.3, "task {} was not learnt: {before} → {after}", t + 1);
    }
    // The permuted tasks' inputs lie outside the first task's region.
    for commit in &h.commits()[1..] {
        assert!(commit.overlap < 0.01, "{commit:?}");
    }
}
