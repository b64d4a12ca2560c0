//! `weight_field` and `niwf`: weights generated from a continuous capability coordinate, with
//! committed regions that later training cannot disturb — Non-Interfering Weight Fields
//! (Chaudhry 2026, arXiv 2602.18628), brought to clorch's MLP task streams.
//!
//! # The algorithm as implemented
//!
//! The model is a [`WeightField`] on the run's MLP (the backbone; see `model::field` for the
//! two-pass forward: backbone → coordinate encoder G → field F → top-k gates over low-rank
//! bases → second pass with W0 + Σ_b g_b B_b A_b). The coordinate is inferred from the
//! input: no task id is used at test time, and the network keeps one shared head.
//!
//! * **Training a task** (every step): task loss + λ_lock·L_lock + λ_sep·L_sep +
//!   λ_budget·L_budget on the second pass's outputs, one optimiser step (the recipe's
//!   optimiser, Adam by default) on every unfrozen field parameter. The backbone trains with
//!   the field during the first task (the trainer's optimiser) and is frozen afterwards.
//! * **Commit** (after each task, `niwf` only): the Gaussian (μ, Σ) of the task's training
//!   coordinates is fitted; `anchors` anchors are drawn inside its `anchor_mass` ellipsoid;
//!   the field's logits there are snapshotted (s_a = F(a)); the commit is recorded as a
//!   version (task, anchors, snapshot, checksums, and a copy of the whole field).
//! * **Soft lock** (the paper's): L_lock = (1/N) Σ_a ‖F(a) − s_a‖² over every committed
//!   anchor, L_sep = mean_i Σ_r max(0, ρ_r² − D_r(z_i)²)/ρ_r² with D_r the Mahalanobis
//!   distance to region r and ρ_r its anchors' radius. Zero right after a commit, positive
//!   once the field moves; committed outputs drift as far as the bases and G move.
//! * **Hard lock** (beyond the paper): a commit freezes G (so coordinates never move), every
//!   field component, and every basis with a gate above `freeze_threshold` on any training
//!   example or anchor of the task; bases it does not use are silenced inside the region
//!   (logit −∞); then `new_bases` fresh bases and a new field component are added. Component
//!   c's logits are multiplied by Π_{r committed before c} m_r, and a basis's logit gets
//!   Σ_{r committed while it was unfrozen} ln m_r, with m_r exactly 0 for the examples region r
//!   protects: those whose lock distance (a diagonal Gaussian of the task's inputs by default,
//!   `lock_space: coordinate` for the coordinate Gaussian) is within `lock_margin` × that of
//!   the task's farthest training example. For those examples the gates are the commit's,
//!   over frozen bases only: their outputs are bit-identical forever. The new component
//!   starts with output weights 0 and a bias that puts the fresh bases above the k-th largest
//!   logit the committed task had, so a new task (outside every region) starts on them — a
//!   basis outside the top-k gets no gradient and would never be tried.
//!
//!   Why the input space by default: the encoder G is frozen at the first commit, having seen
//!   only the first task. On permuted MNIST every later task's coordinates then fell inside
//!   the first region (Mahalanobis quantiles of task 1 w.r.t. region 0: median 2.0, 95% 3.3,
//!   against a lock radius of 5.9), so a coordinate-space hard lock froze everything and
//!   learnt nothing more; a diagonal Gaussian of the inputs told the tasks apart completely
//!   (own training examples up to 152, other tasks from 255 up).
//! * **Versions**: every commit keeps a copy of the field; `rollback: [t, …]` evaluates the
//!   field as committed after task t (variant `version:t`, exactly the outputs it had), and
//!   `compose: [[i, j], …]` evaluates every example with the mean of regions i's and j's
//!   mean gates (their training examples' mean gates under the committed field; variant
//!   `compose:i+j`).
//! * `weight_field` is the same model without commits, locks or versions (the ablation).
//!
//! # Deviations from the paper
//!
//! Only the abstract, figure 1's caption and a third-party summary of the paper could be
//! found; its method section (loss weights, anchor sampling, sparsity term) was not. The paper
//! runs a GRU over mean-pooled token states for the coordinate; an MLP example has no token
//! axis, so G is an MLP on the concatenated hidden features of the first pass. The gate budget
//! (Gini impurity) and the separation hinge's form are this implementation's choices. The
//! paper evaluates two tasks on Mistral-7B; here the tasks are clorch's streams.
//!
//! On online streams the learner is not told where tasks end, so there are no commits and the
//! backbone is never frozen: `niwf` then behaves as `weight_field`. The methods are meant for
//! one shared head: with one head per task, the heads of later tasks keep their initial
//! weights (the backbone's output layer is frozen with it) unless `adapt_output` gives the
//! output layer a bank.
//!
//! # Events
//!
//! After each task (name prefix `weight_field.` or `niwf.`):
//!
//! * `<kind>.losses`: `{"steps": n, "lock": x, "separation": x, "budget": x}`, the means of
//!   L_lock, L_sep and L_budget over the task's steps;
//! * `niwf.commit`: `{"version": v, "task": t, "anchors": n, "radius_anchor": ρ,
//!   "radius_lock": ρ, "overlap": f, "lock_before": x, "frozen_bases": [b…], "bases": K,
//!   "region_checksum": "…", "field_checksum": "…"}` — `overlap` is the fraction of the task's
//!   training examples that earlier regions protect (hard lock: the examples the task could
//!   not learn), `lock_before` L_lock over the earlier regions just before this commit (null
//!   with the hard lock, which has no functional lock); `radius_lock` is the lock test's
//!   radius (in coordinate space for the soft lock, where it only defines `inside`);
//! * `<kind>.drift`: `{"tasks": [{"task": j, "examples": n, "max_abs_change": x,
//!   "changed_outputs": c, "inside": k, "max_abs_change_inside": y}, …]}` — for every
//!   finished task j, the change of the network's outputs on its first `drift_examples`
//!   held-out examples since task j ended (its commit), `changed_outputs` the output values
//!   whose bits differ; `inside` counts the examples region j protects now (null without
//!   regions) and `max_abs_change_inside` is over those.
//!
//! The drift diagnostic keeps those examples' inputs in the method's state (and checkpoints):
//! `drift_examples × inputs` floats per task.

mod config;
mod region;
mod state;
#[cfg(test)]
mod tests;

pub use config::{LockKind, NiwfConfig, WeightFieldConfig};
pub use region::LockSpace;

use crate::protocol::payload::{FieldDrift, FieldLosses, MethodPayload, NiwfCommit, TaskDrift};
use serde::{Deserialize, Serialize};

use super::{
    Compute, ContinualMethod, Learner, LearnerStep, MethodError, MethodKind, MethodState, TaskContext,
};
use crate::model::field::{
    FieldEngine, Gates, LockTerm, RegionMasks, SeparationRegion, SeparationTerm, StepTerms, WeightField,
};
use crate::model::{loss, BatchLoss, Layers, Mlp, Workspace};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::stream::Split;
use config::{CommitSettings, Settings};
use region::{Region, RegionSet, RegionShape};

/// The `weight_field` kind: the field without commits (the ablation).
pub struct WeightFieldKind;

impl MethodKind for WeightFieldKind {
    const KIND: &'static str = "weight_field";
    const SUMMARY: &'static str =
        "weights generated per example from a learned capability coordinate (NIWF without commits)";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    type Config = WeightFieldConfig;
    fn check(c: &WeightFieldConfig) -> Result<(), String> {
        c.check()
    }
    fn build(c: WeightFieldConfig, optimizer: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(FieldMethod::new(c.settings(), *optimizer))
    }
}

/// The `niwf` kind: commits with a soft or hard lock, versions, rollback and composition.
pub struct Niwf;

impl MethodKind for Niwf {
    const KIND: &'static str = "niwf";
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const SUMMARY: &'static str =
        "non-interfering weight fields: commit each task's coordinate region, locked softly or structurally";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    type Config = NiwfConfig;
    fn check(c: &NiwfConfig) -> Result<(), String> {
        c.check()
    }
    fn check_stream(c: &NiwfConfig, tasks: usize) -> Result<(), String> {
        c.settings().commit.map_or(Ok(()), |commit| tasks_named_exist(&commit, tasks))
    }
    fn build(c: NiwfConfig, optimizer: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(FieldMethod::new(c.settings(), *optimizer))
    }
}

/// Every task `rollback` and `compose` name is one of the stream's `tasks`.
fn tasks_named_exist(commit: &CommitSettings, tasks: usize) -> Result<(), String> {
    match commit.rollback.iter().chain(commit.compose.iter().flatten()).find(|&&t| t >= tasks) {
        Some(t) => Err(format!(
            "`rollback`/`compose` name task {t}, but the stream has {tasks} tasks (0 to {})",
            tasks.saturating_sub(1)
        )),
        None => Ok(()),
    }
}

/// A committed version: the whole field as it was right after the commit of `task`.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    task: usize,
    field: WeightField,
}

/// What a finished task's outputs were, for the drift diagnostic.
#[derive(Clone, Debug, PartialEq)]
struct Reference {
    task: usize,
    /// `examples × inputs`.
    inputs: Vec<f32>,
    /// `examples × outputs`, right after the task (after its commit).
    outputs: Vec<f32>,
}

/// Sums of the auxiliary losses over the current task's steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Running {
    steps: u64,
    lock: f64,
    separation: f64,
    budget: f64,
}

/// Everything the method holds once built.
struct FieldState {
    field: WeightField,
    /// The optimiser of the field's parameters (the trainer's is the backbone's).
    optimizer: Optimizer,
    backbone_frozen: bool,
    regions: Vec<Region>,
    versions: Vec<Version>,
    references: Vec<Reference>,
    running: Running,
    field_grads: Layers,
    backbone_grads: Layers,
}

/// `weight_field` and `niwf`.
pub struct FieldMethod {
    settings: Settings,
    optimizer_config: OptimizerConfig,
    engine: FieldEngine,
    state: Option<FieldState>,
}

fn not_built() -> MethodError {
    MethodError::Failed("the weight field was used before `begin` or `load` built it".into())
}

impl FieldMethod {
    fn new(settings: Settings, optimizer_config: OptimizerConfig) -> Self {
        FieldMethod { settings, optimizer_config, engine: FieldEngine::new(), state: None }
    }

    fn hard(&self) -> bool {
        matches!(&self.settings.commit, Some(c) if c.lock == LockKind::Hard)
    }
}

/// The optimiser's view of the field's parameters: the run's optimiser works on an [`Mlp`]'s
/// parameter set, so the field's is lent to one for the step.
fn parameter_set(params: Layers) -> Mlp {
    Mlp { params, activation: crate::protocol::Activation::Relu }
}

/// One optimiser step on the field's parameters.
fn step_field(optimizer: &mut Optimizer, field: &mut WeightField, grads: &Layers) {
    let mut set = parameter_set(std::mem::replace(&mut field.params, Layers { layers: Vec::new() }));
    optimizer.step(&mut set, grads);
    field.params = set.params;
}

/// Extends the optimiser's state to parameter layers added to the field (fresh values).
fn grow_optimizer(optimizer: &mut Optimizer, field: &WeightField) {
    for (_, set, fresh) in optimizer.states_mut() {
        for layer in &field.params.layers[set.layers.len()..] {
            let mut l = crate::model::Linear::zeros(layer.inputs, layer.outputs);
            l.weight.fill(fresh);
            l.bias.fill(fresh);
            set.layers.push(l);
        }
    }
}

/// Zeroes the moments of frozen parameters, so their later (masked, zero) gradients leave
/// them exactly where they are under SGD with momentum and Adam alike.
fn settle_frozen(optimizer: &mut Optimizer, field: &WeightField) {
    for (name, set, _) in optimizer.states_mut() {
        if name == "moment1" || name == "moment2" {
            field.zero_frozen(set);
        }
    }
}

/// The inputs and coordinates of examples `indices` of `split`, in chunks of 500.
fn inputs_and_coordinates(
    engine: &FieldEngine,
    net: &Mlp,
    field: &WeightField,
    compute: &mut Compute,
    split: &Split,
    indices: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    let mut x = Vec::with_capacity(indices.len() * net.sizes()[0]);
    let mut z = Vec::with_capacity(indices.len() * field.layout.spec.coordinate_dim);
    for chunk in indices.chunks(500) {
        compute.load(split, chunk);
        x.extend_from_slice(&compute.workspace.input);
        z.extend(engine.coordinates(net, field, &compute.workspace.input, chunk.len()));
    }
    (x, z)
}

/// The gates of `n` examples `x`, in chunks of 500.
fn gates_of(
    engine: &FieldEngine,
    net: &Mlp,
    field: &WeightField,
    masks: Option<&dyn RegionMasks>,
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    let inputs = x.len() / n.max(1);
    let mut out = Vec::with_capacity(n * field.bases());
    for chunk in x.chunks(500 * inputs.max(1)) {
        out.extend(engine.gates_of_inputs(net, field, masks, chunk, chunk.len() / inputs));
    }
    out
}

/// The model's outputs on `n` examples `inputs` (`n × inputs`), in chunks of 500 from the
/// first (the batches evaluation uses, so the numbers are the ones evaluation sees).
fn outputs(
    engine: &FieldEngine,
    net: &Mlp,
    field: &WeightField,
    masks: Option<&dyn RegionMasks>,
    inputs: &[f32],
    n: usize,
) -> Vec<f32> {
    let sizes = net.sizes();
    let width = *sizes.last().expect("output layer");
    let mut out = Vec::with_capacity(n * width);
    let mut start = 0;
    while start < n {
        let end = (start + 500).min(n);
        let mut ws = Workspace::new(&sizes, end - start);
        ws.input.copy_from_slice(&inputs[start * sizes[0]..end * sizes[0]]);
        engine.predict(net, field, Gates::Field(masks), &mut ws);
        out.extend_from_slice(ws.outputs());
        start = end;
    }
    out
}

/// L_lock of `regions` for the current field: mean over their anchors of ‖F(a) − s_a‖².
fn lock_loss(engine: &FieldEngine, net: &Mlp, field: &WeightField, regions: &[Region]) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0usize);
    for r in regions {
        let n = r.anchor_count();
        let logits = engine.field_logits(net, field, &r.anchors, n);
        let k = field.bases();
        for i in 0..n {
            for b in 0..r.width {
                let diff = (logits[i * k + b] - r.snapshot[i * r.width + b]) as f64;
                sum += diff * diff;
            }
        }
        count += n;
    }
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

impl FieldState {
    fn masks(&self, hard: bool) -> Option<RegionSet<'_>> {
        hard.then_some(RegionSet(&self.regions))
    }
}

/// Commits the task just trained: region, anchors, snapshot, locks, version. Returns the
/// `niwf.commit` event's payload.
fn commit(
    settings: &Settings,
    commit: &CommitSettings,
    engine: &FieldEngine,
    state: &mut FieldState,
    cx: &mut TaskContext<'_>,
) -> Result<NiwfCommit, MethodError> {
    let hard = commit.lock == LockKind::Hard;
    let task = cx.task;
    let d = settings.spec.coordinate_dim;
    let n = task.train.len();
    let all: Vec<usize> = (0..n).collect();
    let (x, z) = inputs_and_coordinates(engine, cx.net, &state.field, cx.compute, &task.train, &all);
    let inputs = x.len() / n.max(1);
    let shape = RegionShape {
        anchor_mass: commit.anchor_mass,
        anchors: commit.anchors,
        // A soft lock has no lock test; its regions measure `inside` in coordinate space.
        lock_space: if hard { commit.lock_space } else { LockSpace::Coordinate },
        lock_margin: commit.lock_margin,
        mask_width: commit.mask_width,
    };
    let mut region = Region::fit(task.index, &z, d, &x, shape, cx.rng).map_err(MethodError::Failed)?;
    let inside_earlier = (0..n)
        .filter(|&i| {
            let (xi, zi) = (&x[i * inputs..(i + 1) * inputs], &z[i * d..(i + 1) * d]);
            state.regions.iter().any(|r| r.contains(xi, zi))
        })
        .count();
    let overlap = inside_earlier as f64 / n as f64;
    let lock_before = (!hard).then(|| lock_loss(engine, cx.net, &state.field, &state.regions));
    let anchors = region.anchor_count();
    region.snapshot = engine.field_logits(cx.net, &state.field, &region.anchors, anchors);
    region.width = state.field.bases();
    let mut frozen = Vec::new();
    if hard {
        // The bases this region uses, under the gating it was trained with.
        let mut used = vec![false; state.field.bases()];
        let mut mark = |gates: &[f32]| {
            for row in gates.chunks_exact(used.len()) {
                for (u, &g) in used.iter_mut().zip(row) {
                    *u |= g > commit.freeze_threshold;
                }
            }
        };
        let before = RegionSet(&state.regions);
        mark(&gates_of(engine, cx.net, &state.field, Some(&before), &x, n));
        mark(&engine.gates(cx.net, &state.field, &region.anchors, anchors));
        frozen =
            (0..used.len()).filter(|&b| used[b] && state.field.layout.basis_locked_by[b].is_none()).collect();
        let index = state.regions.len();
        state.field.lock_bases(&frozen, index);
        state.field.freeze_encoder();
        state.field.freeze_components();
        // Fresh bases start with a logit above the k-th largest logit the field gave any
        // training coordinate of this task, so that a new task, outside every region, starts on
        // them (see `WeightField::add_component`).
        let favour = {
            let k = state.field.bases();
            let top_k = settings.spec.top_k;
            let mut highest = f32::NEG_INFINITY;
            for chunk in z.chunks(500 * d) {
                let logits = engine.field_logits(cx.net, &state.field, chunk, chunk.len() / d);
                for row in logits.chunks_exact(k) {
                    let mut sorted = row.to_vec();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    highest = highest.max(sorted[top_k - 1]);
                }
            }
            highest + 1.0
        };
        state.regions.push(region);
        let old = state.field.bases();
        if commit.new_bases > 0 {
            state.field.add_block(commit.new_bases, cx.rng);
        }
        let fresh = old..state.field.bases();
        state.field.add_component(state.regions.len(), fresh, favour, cx.rng);
        grow_optimizer(&mut state.optimizer, &state.field);
        settle_frozen(&mut state.optimizer, &state.field);
        state.field_grads = Layers::zeros_like(&state.field.params);
    } else {
        state.regions.push(region);
    }
    // The region's mean gates over the task's training examples under the committed
    // function: its capability as one gate vector, for compositions.
    let mean_gates = {
        let after = state.masks(hard);
        let after = after.as_ref().map(|m| m as &dyn RegionMasks);
        let k = state.field.bases();
        let gates = gates_of(engine, cx.net, &state.field, after, &x, n);
        let mut sum = vec![0.0f64; k];
        for row in gates.chunks_exact(k) {
            for (m, &g) in sum.iter_mut().zip(row) {
                *m += g as f64;
            }
        }
        sum.iter().map(|&v| (v / n as f64) as f32).collect::<Vec<f32>>()
    };
    let region = state.regions.last_mut().expect("just pushed");
    region.mean_gates = mean_gates;
    let region_checksum = region.checksum();
    let value = NiwfCommit {
        anchors,
        bases: state.field.bases(),
        field_checksum: state.field.checksum(),
        frozen_bases: frozen,
        lock_before,
        overlap,
        radius_anchor: region.radius_anchor,
        radius_lock: region.lock.radius,
        region_checksum,
        task: task.index,
        version: state.versions.len(),
    };
    state.versions.push(Version { task: task.index, field: state.field.clone() });
    Ok(value)
}

/// Keeps the task's reference outputs and measures every reference against the current
/// model. Returns the drift event's payload.
fn drift(
    settings: &Settings,
    engine: &FieldEngine,
    state: &mut FieldState,
    hard: bool,
    cx: &mut TaskContext<'_>,
) -> Option<FieldDrift> {
    if settings.drift_examples == 0 {
        return None;
    }
    let test = &cx.task.test;
    let n = settings.drift_examples.min(test.len());
    let inputs_per = cx.net.sizes()[0];
    let mut inputs = Vec::with_capacity(n * inputs_per);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        cx.compute.load(test, chunk);
        inputs.extend_from_slice(&cx.compute.workspace.input);
    }
    let masks = hard.then_some(RegionSet(&state.regions));
    let masks = masks.as_ref().map(|m| m as &dyn RegionMasks);
    let current = outputs(engine, cx.net, &state.field, masks, &inputs, n);
    state.references.push(Reference { task: cx.task.index, inputs, outputs: current });
    let width = *cx.net.sizes().last().expect("output layer");
    let d = settings.spec.coordinate_dim;
    let mut tasks = Vec::new();
    for reference in &state.references {
        let n = reference.outputs.len() / width;
        let now = outputs(engine, cx.net, &state.field, masks, &reference.inputs, n);
        let region = state.regions.iter().find(|r| r.task == reference.task);
        let inside: Option<Vec<bool>> = region.map(|r| {
            let z = engine.coordinates(cx.net, &state.field, &reference.inputs, n);
            (0..n)
                .map(|i| {
                    r.contains(
                        &reference.inputs[i * inputs_per..(i + 1) * inputs_per],
                        &z[i * d..(i + 1) * d],
                    )
                })
                .collect()
        });
        let (mut max_change, mut max_inside, mut changed) = (0.0f64, 0.0f64, 0usize);
        for i in 0..n {
            for k in 0..width {
                let (a, b) = (reference.outputs[i * width + k], now[i * width + k]);
                if a.to_bits() != b.to_bits() {
                    changed += 1;
                }
                let change = (a as f64 - b as f64).abs();
                max_change = max_change.max(change);
                if inside.as_ref().is_some_and(|v| v[i]) {
                    max_inside = max_inside.max(change);
                }
            }
        }
        tasks.push(TaskDrift {
            changed_outputs: changed,
            examples: n,
            inside: inside.as_ref().map(|v| v.iter().filter(|&&x| x).count()),
            max_abs_change: max_change,
            max_abs_change_inside: inside.as_ref().map(|_| max_inside),
            task: reference.task,
        });
    }
    Some(FieldDrift { tasks })
}

impl ContinualMethod for FieldMethod {
    fn begin(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        if let Some(commit) = &self.settings.commit {
            tasks_named_exist(commit, cx.tasks_total)
                .map_err(|e| MethodError::Failed(format!("niwf: {e}")))?;
        }
        let field = WeightField::new(&cx.net.sizes(), self.settings.spec.clone(), cx.rng)
            .map_err(|e| MethodError::Failed(format!("{}: {e}", self.settings.kind)))?;
        let optimizer = Optimizer::new(self.optimizer_config, &parameter_set(field.params.clone()));
        self.state = Some(FieldState {
            field_grads: Layers::zeros_like(&field.params),
            backbone_grads: Layers::zeros_like(&cx.net.params),
            field,
            optimizer,
            backbone_frozen: !self.settings.train_backbone,
            regions: Vec::new(),
            versions: Vec::new(),
            references: Vec::new(),
            running: Running::default(),
        });
        Ok(())
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        let hard = self.hard();
        let kind = self.settings.kind;
        let state = self.state.as_mut().ok_or_else(not_built)?;
        // The backbone trains on the first task only.
        state.backbone_frozen = true;
        let r = std::mem::take(&mut state.running);
        if r.steps > 0 {
            let steps = r.steps as f64;
            cx.report.push(kind.losses(FieldLosses {
                budget: r.budget / steps,
                lock: r.lock / steps,
                separation: r.separation / steps,
                steps: r.steps,
            }));
        }
        if let Some(commit_settings) = &self.settings.commit {
            let value = commit(&self.settings, commit_settings, &self.engine, state, cx)?;
            cx.report.push(MethodPayload::NiwfCommit(value));
        }
        if let Some(value) = drift(&self.settings, &self.engine, state, hard, cx) {
            cx.report.push(kind.drift(value));
        }
        Ok(())
    }

    fn save(&self, out: &mut MethodState) {
        if let Some(state) = &self.state {
            state::save(state, out);
        }
    }

    fn load(&mut self, saved: &MethodState) -> Result<(), MethodError> {
        self.state = state::load(saved, self.optimizer_config)?;
        Ok(())
    }

    fn learner(&mut self) -> Option<&mut dyn Learner> {
        Some(self)
    }
}

impl Learner for FieldMethod {
    fn train_step(&mut self, cx: &mut LearnerStep<'_>) -> Result<BatchLoss, MethodError> {
        let hard = self.hard();
        let settings = &self.settings;
        let state = self.state.as_mut().ok_or_else(not_built)?;
        let train_backbone = settings.train_backbone && !state.backbone_frozen;
        let soft = settings.commit.as_ref().filter(|c| c.lock == LockKind::Soft);
        let whitening: Vec<(Vec<f32>, Vec<f32>)> = match soft {
            Some(c) if c.lambda_sep > 0.0 && state.field.encoder_trainable() => {
                state.regions.iter().map(|r| (r.mean_f32(), r.whitening_t())).collect()
            }
            _ => Vec::new(),
        };
        let terms = StepTerms {
            lock: match soft {
                Some(c) if c.lambda_lock > 0.0 => state
                    .regions
                    .iter()
                    .map(|r| LockTerm {
                        anchors: &r.anchors,
                        targets: &r.snapshot,
                        count: r.anchor_count(),
                        width: r.width,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            lock_weight: soft.map_or(0.0, |c| c.lambda_lock),
            separation: soft.filter(|_| !whitening.is_empty()).map(|c| SeparationTerm {
                regions: state
                    .regions
                    .iter()
                    .zip(&whitening)
                    .map(|(r, (mean, w))| SeparationRegion {
                        mean,
                        whitening_t: w,
                        radius: r.radius_anchor as f32,
                    })
                    .collect(),
                weight: c.lambda_sep,
            }),
            budget_weight: settings.lambda_budget,
        };
        let width = cx.workspace.output_width();
        let head = cx.head.clone();
        let targets = cx.targets;
        let mut output_gradient = |outputs: &[f32], grad: &mut [f32]| {
            loss::evaluate(outputs, width, head.clone(), targets, Some(grad))
        };
        let masks = hard.then_some(RegionSet(&state.regions));
        let masks = masks.as_ref().map(|m| m as &dyn RegionMasks);
        let ws = &mut *cx.workspace;
        let result = self.engine.train_step(
            cx.net,
            &state.field,
            train_backbone,
            masks,
            &ws.input,
            &mut ws.values,
            &mut output_gradient,
            &terms,
            &mut state.field_grads,
            &mut state.backbone_grads,
        );
        let finite = [result.task.loss_sum, result.lock, result.separation, result.budget]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            // The trainer stops the run as diverged when the task loss is not finite; an
            // auxiliary term alone going non-finite is reported the same way.
            let mut task = result.task;
            task.loss_sum = f64::NAN;
            return Ok(task);
        }
        drop(terms);
        drop(whitening);
        step_field(&mut state.optimizer, &mut state.field, &state.field_grads);
        if train_backbone {
            cx.optimizer.step(cx.net, &state.backbone_grads);
        }
        state.running.steps += 1;
        state.running.lock += result.lock;
        state.running.separation += result.separation;
        state.running.budget += result.budget;
        Ok(result.task)
    }

    fn forward(&mut self, variant: Option<&str>, net: &Mlp, ws: &mut Workspace) -> Result<(), MethodError> {
        let hard = self.hard();
        let state = self.state.as_ref().ok_or_else(not_built)?;
        let unknown = || {
            MethodError::Failed(format!(
                "{}: no evaluation variant `{}`",
                self.settings.kind,
                variant.unwrap_or("")
            ))
        };
        match variant {
            None => {
                let masks = state.masks(hard);
                self.engine.predict(
                    net,
                    &state.field,
                    Gates::Field(masks.as_ref().map(|m| m as &dyn RegionMasks)),
                    ws,
                );
            }
            Some(v) => {
                if let Some(t) = v.strip_prefix("version:") {
                    let t: usize = t.parse().map_err(|_| unknown())?;
                    let index = state.versions.iter().position(|v| v.task == t).ok_or_else(unknown)?;
                    let masks = hard.then(|| RegionSet(&state.regions[..=index]));
                    let masks = masks.as_ref().map(|m| m as &dyn RegionMasks);
                    self.engine.predict(net, &state.versions[index].field, Gates::Field(masks), ws);
                } else if let Some(pair) = v.strip_prefix("compose:") {
                    let (i, j) = pair.split_once('+').ok_or_else(unknown)?;
                    let i: usize = i.parse().map_err(|_| unknown())?;
                    let j: usize = j.parse().map_err(|_| unknown())?;
                    let gates_of =
                        |t: usize| state.regions.iter().find(|r| r.task == t).map(|r| &r.mean_gates);
                    let (a, b) = (gates_of(i).ok_or_else(unknown)?, gates_of(j).ok_or_else(unknown)?);
                    let k = state.field.bases();
                    let mix: Vec<f32> = (0..k)
                        .map(|q| 0.5 * (a.get(q).copied().unwrap_or(0.0) + b.get(q).copied().unwrap_or(0.0)))
                        .collect();
                    self.engine.predict(net, &state.field, Gates::Fixed(&mix), ws);
                } else {
                    return Err(unknown());
                }
            }
        }
        Ok(())
    }

    fn variants(&self) -> Vec<String> {
        let (Some(commit), Some(state)) = (&self.settings.commit, &self.state) else { return Vec::new() };
        let committed = |t: usize| state.regions.iter().any(|r| r.task == t);
        let mut out: Vec<String> =
            commit.rollback.iter().filter(|&&t| committed(t)).map(|t| format!("version:{t}")).collect();
        out.extend(
            commit
                .compose
                .iter()
                .filter(|p| committed(p[0]) && committed(p[1]))
                .map(|p| format!("compose:{}+{}", p[0], p[1])),
        );
        out
    }
}
