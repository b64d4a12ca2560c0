//! `weight_field` and `niwf`: weights generated from a continuous capability coordinate, with
//! committed regions that later training cannot disturb — Non-Interfering Weight Fields
//! (Chaudhry 2026, arXiv 2602.18628), brought to clorch's task streams, on MLPs and on conv
//! nets (see "On conv nets" below).
//!
//! # The algorithm as implemented
//!
//! The model is a field of weight configurations over a coordinate space R^d (see `field`):
//! W(z) = W0 + Σ_b κ_b(z) ΔW_b for every layer's weights and biases (a conv net's linear
//! layers), W0 the trainer's network and ΔW_b one full-size basis per task, centred at the
//! task's coordinate c_b with a compact bump κ_b (κ_b(c_b) = 1, exactly 0 at distance ρ and
//! beyond).
//!
//! * **Task identity.** Each task gets its own coordinate, placed by the method at distance
//!   ≥ `spacing` from every other (`spacing` · (⌊i/d⌋ + 1) on axis i mod d), and the network
//!   has one head per task (`network.heads: per_task`, required, as for CLNP): at test time
//!   the task's head says which coordinate to use. Every head's columns are computed with the
//!   weights generated at its task's coordinate, so evaluation needs no other task id. The
//!   coordinates are fixed, not learnt: what decides a committed task's weights at test time
//!   never moves.
//! * **Training a task**: the task loss of the network with weights W(c_t), one optimiser
//!   step on W0 (the trainer's optimiser) and on every basis that reaches c_t (each basis has
//!   its own optimiser state), plus, with the soft lock, λ_lock·L_lock.
//! * **Commit** (after each task, `niwf` only): anchors are drawn in the ball of radius
//!   `anchor_radius`·ρ around c_t (the first is c_t itself) and the generated weights there,
//!   W(a), are snapshotted. They are stored factored — the snapshot of W0 and of the bases
//!   that reach the anchors — since W_snap(a) = W0_snap + Σ_b κ_b(a) ΔW_b,snap exactly. The
//!   region is the open ball of radius ρ around c_t.
//! * **Soft lock** (the paper's functional lock, on the generated weights):
//!   L_lock = Σ_r (1/N_r) Σ_a ‖W(a) − W_snap(a)‖² over every committed region's anchors. With
//!   Δ_p = (current − snapshot) of each parameter set p (W0 and the bases reaching the
//!   region), L_r = Σ_pq M_pq ⟨Δ_p, Δ_q⟩ with M = KᵀK/N_r, K_ap = κ_p(a) (κ = 1 for W0): the
//!   exact loss, and its gradient 2 Σ_q M_pq Δ_q, at the cost of a few vector operations. The
//!   anchors' κ differ, so the lock pins W0 and the task's basis each, not only their sum.
//! * **Separation**: a new task's coordinate is outside every committed region by
//!   construction, so its basis is 0 at every committed anchor: it learns with no change
//!   inside the committed regions. A task whose coordinate falls inside a region (`spacing`
//!   below ρ) is reported: `overlap` 1 and `overlap_region` in its `niwf.commit`, and a
//!   warning in the run's log.
//! * **Hard lock** (beyond the paper): the lock's constraints W(a) = W_snap(a) at anchors of
//!   several κ have one solution, W0 and the task's basis unchanged; the hard lock enforces it
//!   exactly: a commit freezes W0 and the task's basis, and bases created afterwards are
//!   silenced (κ = 0) inside every committed region. A committed task's generated weights,
//!   and its outputs, are then bit-identical forever. A task inside a committed region can
//!   learn nothing under it (its own basis is silenced at its coordinate): the warning says so.
//! * **Versions**: `rollback: [t, …]` keeps a copy of the field as committed after task t
//!   and evaluates it (variant `version:t`, exactly the outputs it had); `compose: [[i, j], …]`
//!   evaluates every head with the mean of the weights generated at c_i and c_j (variant
//!   `compose:i+j`).
//! * `weight_field` is the same model without commits, locks or versions (the ablation): W0
//!   keeps training on every task, so earlier tasks' generated weights move with it.
//!
//! # On conv nets
//!
//! One implementation serves both families (`family::FieldNet` says what differs):
//!
//! * **What the field generates**: the `linear` layers, which must come after the whole conv
//!   backbone — after the first `linear` layer only `linear`, `relu` and `flatten` are allowed,
//!   refused at `begin` otherwise. They are the per-task heads (`network.heads: per_task`) and
//!   any hidden linear layers. The backbone (convolutions, batch norm, residual blocks) is W0
//!   alone: one set of features for every coordinate, trained by the trainer's optimiser with
//!   the task loss at the task's coordinate.
//! * **`niwf` freezes the backbone at its first commit**, whatever the lock: a shared backbone
//!   that kept training would move every committed task's outputs, which no lock on the linear
//!   weights can prevent (on the unit tests' conv net, one task after task 0 moves its outputs
//!   under the soft lock by up to 17.8 without the freeze, 0.026 with it). So the backbone
//!   learns from the first task only, and later tasks learn through the linear field on its
//!   features. Batch norm is kept rather than refused: from the freeze on, the backbone runs
//!   in evaluation mode in training too, so batch norm normalises with its running statistics,
//!   which therefore stay as they were (the hard lock's outputs stay bit-identical with batch
//!   norm), and training sees the features evaluation sees. The optimiser still steps the
//!   whole W0 (soft lock); only its linear layers' new values are kept. The frozen backbone is
//!   still back-propagated through (its gradients unused): stopping at the first linear layer
//!   made no measurable difference on the MNIST CNN (a hard-lock run took 18–20 s either way).
//!   `weight_field` keeps training the backbone, batch norm statistics included, on every task.
//! * **The regions' snapshots, versions, the lock and `field_checksum`'s field part** cover the
//!   linear layers (the backbone cannot change after the snapshot); `field_checksum` also
//!   hashes the backbone's parameters.
//! * **Evaluation** runs the backbone once per batch, then the linear tail once per task
//!   coordinate (`convnet::forward_from`); drift references are run in chunks of 64 examples.
//!   `plasticity` events measure the trainer's network, W0 (the backbone and W0's linear
//!   layers), as for every conv-net method.
//!
//! # Deviations from the paper
//!
//! Only the abstract, figure 1's caption and a third-party summary of the paper could be
//! found. The paper infers the coordinate from the input (a GRU over pooled token states);
//! an input encoder frozen after the first task did not tell permuted-MNIST tasks apart (every
//! later task fell inside the first region), and a trainable one lets committed tasks' data
//! leave their regions. Here the coordinate is per task, which needs task identity, as CLNP
//! does. The field is a sum of compact bumps over full-size bases rather than a gated low-rank
//! bank: the low-rank bank on a frozen backbone learnt each new task far worse than SGD.
//! On conv nets the field covers the linear layers only and `niwf` freezes the conv backbone
//! after the first task (see "On conv nets"), where the paper's field generates every weight.
//!
//! # Events
//!
//! After each task (name prefix `weight_field.` or `niwf.`):
//!
//! * `<kind>.losses`: `{"steps": n, "lock": x, "separation": 0, "budget": 0}`, the mean of
//!   L_lock over the task's steps (the other two terms no longer exist);
//! * `niwf.commit`: `{"version": v, "task": t, "anchors": n, "radius_anchor": ρ_a,
//!   "radius_lock": ρ, "overlap": f, "overlap_region": r, "lock_before": x, "frozen_bases":
//!   [b…], "bases": K, "region_checksum": "…", "field_checksum": "…"}` — `overlap` the
//!   fraction of the task's examples inside an earlier region (all or none: they share the
//!   task's coordinate), `overlap_region` that region, `lock_before` L_lock over the earlier
//!   regions just before this commit (null with the hard lock);
//! * `<kind>.drift`: `{"tasks": [{"task": j, "examples": n, "max_abs_change": x,
//!   "changed_outputs": c, "inside": k, "max_abs_change_inside": y}, …]}` — for every
//!   finished task j, the change of its head's outputs on its first `drift_examples` held-out
//!   examples since task j ended (its commit); `changed_outputs` counts output values whose
//!   bits differ; `inside` (null without regions) counts the examples inside region j: all
//!   of them, since they share the task's coordinate.

mod config;
mod family;
mod field;
mod state;
#[cfg(test)]
mod tests;

pub use config::{LockKind, NiwfConfig, WeightFieldConfig};

use std::marker::PhantomData;
use std::ops::Range;

use crate::protocol::payload::{FieldDrift, FieldLosses, MethodPayload, NiwfCommit, TaskDrift};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::{
    ContinualMethod, Learner, LearnerStep, MethodError, MethodKind, MethodState, Passes, TaskContext,
};
use crate::model::convnet::ConvNet;
use crate::model::{BatchLoss, Layers, Mlp, Parameters};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use config::{CommitSettings, Settings};
use family::{field_part, set_field_part, with_field_part, FieldNet};
use field::{axpy, axpy_layers, difference, dot, Basis, Field};

/// The `weight_field` kind: the field without commits (the ablation).
pub struct WeightFieldKind;

impl MethodKind for WeightFieldKind {
    const KIND: &'static str = "weight_field";
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const NEEDS_TASK_HEADS: bool = true;
    const SUMMARY: &'static str =
        "weights generated from a per-task capability coordinate (NIWF without commits; per-task heads)";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    type Config = WeightFieldConfig;
    fn check(c: &WeightFieldConfig) -> Result<(), String> {
        c.check()
    }
    fn build(c: WeightFieldConfig, optimizer: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(FieldMethod::<Mlp>::new(c.settings(), *optimizer))
    }
    fn build_conv(
        c: WeightFieldConfig,
        optimizer: &OptimizerConfig,
    ) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(FieldMethod::<ConvNet>::new(c.settings(), *optimizer)))
    }
}

/// The `niwf` kind: commits with a soft or hard lock, versions, rollback and composition.
pub struct Niwf;

impl MethodKind for Niwf {
    const KIND: &'static str = "niwf";
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const NEEDS_TASK_HEADS: bool = true;
    const SUMMARY: &'static str =
        "non-interfering weight fields: commit each task's generated weights, locked softly or exactly (per-task heads)";
    const DEFAULT_OPTIMIZER: OptimizerKind = OptimizerKind::Adam;
    type Config = NiwfConfig;
    fn check(c: &NiwfConfig) -> Result<(), String> {
        c.check()
    }
    fn check_stream(c: &NiwfConfig, tasks: usize) -> Result<(), String> {
        c.settings().commit.map_or(Ok(()), |commit| tasks_named_exist(&commit, tasks))
    }
    fn build(c: NiwfConfig, optimizer: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(FieldMethod::<Mlp>::new(c.settings(), *optimizer))
    }
    fn build_conv(c: NiwfConfig, optimizer: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(FieldMethod::<ConvNet>::new(c.settings(), *optimizer)))
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

/// A committed region: its anchors and the snapshot of the generated weights there, factored.
#[derive(Clone, Debug, PartialEq)]
struct Region {
    task: usize,
    /// `anchors × d`.
    anchors: Vec<f32>,
    /// W0's field layers at the commit.
    w0: Layers,
    /// (basis, ΔW_b at the commit) for every basis reaching an anchor.
    bases: Vec<(usize, Layers)>,
}

/// A committed version kept for `rollback`: W0 and the field right after the commit of `task`.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    task: usize,
    /// W0's field layers (a conv net's backbone is frozen since the first commit).
    w0: Layers,
    field: Field,
}

/// What a finished task's outputs were, for the drift diagnostic.
#[derive(Clone, Debug, PartialEq)]
struct Reference {
    task: usize,
    /// `examples × inputs`.
    inputs: Vec<f32>,
    /// `examples × head width`, right after the task (after its commit).
    outputs: Vec<f32>,
}

/// Sums of the auxiliary losses over the current task's steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Running {
    steps: u64,
    lock: f64,
}

/// A task that fell inside a committed region.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Overlap {
    task: usize,
    region: usize,
}

/// Everything the method holds once built.
struct FieldState {
    field: Field,
    /// One optimiser per basis (the trainer's is W0's).
    optimizers: Vec<Optimizer>,
    /// Frozen by the first hard-lock commit.
    w0_frozen: bool,
    regions: Vec<Region>,
    versions: Vec<Version>,
    references: Vec<Reference>,
    running: Running,
    commits: usize,
    overlaps: Vec<Overlap>,
}

impl FieldState {
    /// Whether a conv net's backbone is frozen: by `niwf`'s first commit (an MLP is all field).
    fn backbone_frozen(&self, settings: &Settings) -> bool {
        settings.commit.is_some() && self.commits > 0
    }
}

/// `weight_field` and `niwf` on networks of family `M`.
pub struct FieldMethod<M: FieldNet = Mlp> {
    settings: Settings,
    optimizer_config: OptimizerConfig,
    state: Option<FieldState>,
    /// The gradient of the last training pass (scratch, allocated at the first step).
    grads: Option<M::Params>,
    family: PhantomData<fn() -> M>,
}

fn not_built() -> MethodError {
    MethodError::Failed("the weight field was used before `begin` or `load` built it".into())
}

fn checksum<'a>(buffers: impl Iterator<Item = &'a [f32]>) -> String {
    let mut hasher = blake3::Hasher::new();
    for buffer in buffers {
        for v in buffer {
            hasher.update(&v.to_le_bytes());
        }
    }
    hasher.finalize().to_hex().to_string()
}

/// L_lock of `regions` (Σ over regions of the mean over anchors of ‖W(a) − W_snap(a)‖²) and,
/// when `grads` is given, `weight` × its gradient added to `grads[p]` (p = 0 for W0, 1 + b for
/// basis b; only the trainable ones).
fn lock(
    field: &Field,
    w0: &Layers,
    regions: &[Region],
    weight: f32,
    mut grads: Option<&mut Vec<Option<Layers>>>,
    trainable: &dyn Fn(usize) -> bool,
) -> f64 {
    let d = field.dim;
    let mut total = 0.0f64;
    for region in regions {
        let n = region.anchors.len() / d;
        // Participants: W0, then every basis reaching an anchor now or at the commit.
        let mut parts: Vec<usize> = vec![0];
        for b in 0..field.bases.len() {
            let reaches = region.anchors.chunks_exact(d).any(|a| field.kappa(b, a) != 0.0);
            if reaches || region.bases.iter().any(|(s, _)| *s == b) {
                parts.push(1 + b);
            }
        }
        let kappa = |p: usize, a: &[f32]| if p == 0 { 1.0 } else { field.kappa(p - 1, a) };
        let m: Vec<Vec<f64>> = parts
            .iter()
            .map(|&p| {
                parts
                    .iter()
                    .map(|&q| {
                        region
                            .anchors
                            .chunks_exact(d)
                            .map(|a| (kappa(p, a) * kappa(q, a)) as f64)
                            .sum::<f64>()
                            / n as f64
                    })
                    .collect()
            })
            .collect();
        let deltas: Vec<Layers> = parts
            .iter()
            .map(|&p| {
                if p == 0 {
                    difference(w0, &region.w0)
                } else {
                    let current = &field.bases[p - 1].delta;
                    match region.bases.iter().find(|(s, _)| *s == p - 1) {
                        Some((_, snap)) => difference(current, snap),
                        None => current.clone(),
                    }
                }
            })
            .collect();
        for i in 0..parts.len() {
            for j in 0..parts.len() {
                if m[i][j] != 0.0 {
                    total += m[i][j] * dot(&deltas[i], &deltas[j]);
                }
            }
        }
        if let Some(grads) = grads.as_deref_mut() {
            for (i, &p) in parts.iter().enumerate() {
                if !trainable(p) {
                    continue;
                }
                let g = grads[p].get_or_insert_with(|| Layers::zeros_like(w0));
                for (j, delta) in deltas.iter().enumerate() {
                    if m[i][j] != 0.0 {
                        axpy(g, 2.0 * weight * m[i][j] as f32, delta);
                    }
                }
            }
        }
    }
    total
}

/// Runs the field on `ws.input`: every basis's head gets the outputs of the network with the
/// weights generated at its task's coordinate; other columns those of W0. Hidden values are
/// those of the last basis (the latest task).
fn forward_field<M: FieldNet>(field: &Field, w0: &M, ws: &mut M::Workspace) {
    M::forward(w0, ws);
    if field.bases.is_empty() {
        return;
    }
    let width = w0.outputs();
    let mut out = M::output_values(ws).to_vec();
    let mut net = w0.clone();
    for basis in &field.bases {
        field.generate_into(w0, &basis.center, &mut net);
        M::forward_field_layers(&net, ws);
        for (o, row) in out.chunks_exact_mut(width).zip(M::output_values(ws).chunks_exact(width)) {
            o[basis.head.clone()].copy_from_slice(&row[basis.head.clone()]);
        }
    }
    M::outputs_mut(ws).copy_from_slice(&out);
}

/// The outputs of `net` on `n` examples `inputs`, in chunks of `M::CHUNK` (500 for an MLP,
/// the evaluation's batches).
fn outputs_of<M: FieldNet>(field: &Field, w0: &M, inputs: &[f32], n: usize, head: Range<usize>) -> Vec<f32> {
    let (len, width) = (w0.input_len(), w0.outputs());
    let mut out = Vec::with_capacity(n * head.len());
    let mut start = 0;
    while start < n {
        let end = (start + M::CHUNK).min(n);
        let mut ws = w0.workspace(end - start);
        M::input_values(&mut ws).copy_from_slice(&inputs[start * len..end * len]);
        forward_field(field, w0, &mut ws);
        for row in M::output_values(&ws).chunks_exact(width) {
            out.extend_from_slice(&row[head.clone()]);
        }
        start = end;
    }
    out
}

impl<M: FieldNet> FieldMethod<M> {
    fn new(settings: Settings, optimizer_config: OptimizerConfig) -> Self {
        FieldMethod { settings, optimizer_config, state: None, grads: None, family: PhantomData }
    }

    fn hard(&self) -> bool {
        matches!(&self.settings.commit, Some(c) if c.lock == LockKind::Hard)
    }
}

/// The basis of `task`, created (at the next free coordinate) if it has none.
fn basis_for(
    state: &mut FieldState,
    settings: &Settings,
    config: OptimizerConfig,
    hard: bool,
    like: &Layers,
    task: usize,
    head: Range<usize>,
) -> Result<usize, MethodError> {
    if let Some(b) = state.field.basis_of(task) {
        return Ok(b);
    }
    if let Some(other) = state.field.bases.iter().find(|b| b.head.start < head.end && head.start < b.head.end)
    {
        return Err(MethodError::Failed(format!(
            "{}: tasks {} and {task} share output columns (heads {:?} and {head:?}); the field needs task \
             identity, one head per task (`network.heads: per_task` on a stream whose tasks have heads of \
             their own)",
            settings.kind, other.task, other.head
        )));
    }
    let center = state.field.place(state.field.bases.len());
    if let Some(region) = (0..state.field.regions.len()).find(|&r| state.field.inside(r, &center)) {
        tracing::warn!(
            "{}: task {task}: 100% of its examples inside region {region} (task {}){}",
            settings.kind,
            state.regions[region].task,
            if hard { ", nothing learnt" } else { "" }
        );
        state.overlaps.push(Overlap { task, region });
    }
    let silenced_in = if hard { (0..state.field.regions.len()).collect() } else { Vec::new() };
    let delta = Layers::zeros_like(like);
    state.optimizers.push(Optimizer::for_parameters(config, &delta));
    state.field.bases.push(Basis { task, head, center, delta, frozen: false, silenced_in });
    Ok(state.field.bases.len() - 1)
}

/// Commits the task just trained: anchors, snapshot, freezing (hard lock), version.
fn commit<M: FieldNet>(
    settings: &Settings,
    commit: &CommitSettings,
    config: OptimizerConfig,
    state: &mut FieldState,
    cx: &mut TaskContext<'_, M>,
) -> Result<NiwfCommit, MethodError> {
    let hard = commit.lock == LockKind::Hard;
    let task = cx.task.index;
    let w0 = field_part::<M>(cx.net.parameters());
    let b = basis_for(state, settings, config, hard, &w0, task, cx.head.clone())?;
    let d = settings.coordinate_dim;
    let center = state.field.bases[b].center.clone();
    let radius = commit.anchor_radius as f32 * settings.radius;
    let mut anchors = center.clone();
    for _ in 1..commit.anchors {
        // Uniform in the ball: a Gaussian direction, a radius r·U^(1/d).
        let mut dir: Vec<f32> = (0..d)
            .map(|_| {
                let (u1, u2): (f32, f32) = (cx.rng.gen_range(f32::EPSILON..1.0), cx.rng.gen());
                (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        let norm = dir.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        let r = radius * cx.rng.gen::<f32>().powf(1.0 / d as f32);
        dir.iter_mut().zip(&center).for_each(|(v, c)| *v = c + *v / norm * r);
        anchors.extend(dir);
    }
    let lock_before = (!hard).then(|| lock(&state.field, &w0, &state.regions, 0.0, None, &|_| false));
    let reaching: Vec<(usize, Layers)> = (0..state.field.bases.len())
        .filter(|&j| anchors.chunks_exact(d).any(|a| state.field.kappa(j, a) != 0.0))
        .map(|j| (j, state.field.bases[j].delta.clone()))
        .collect();
    let region = Region { task, anchors, w0: w0.clone(), bases: reaching };
    let region_checksum = checksum(
        std::iter::once(region.anchors.as_slice())
            .chain(region.w0.buffers())
            .chain(region.bases.iter().flat_map(|(_, l)| l.buffers())),
    );
    state.regions.push(region);
    state.field.regions.push(center);
    let mut frozen = Vec::new();
    if hard {
        state.field.bases[b].frozen = true;
        state.w0_frozen = true;
        frozen.push(b);
    }
    let overlap = state.overlaps.iter().find(|o| o.task == task).copied();
    let field_checksum = checksum(
        cx.net
            .parameters()
            .slices()
            .into_iter()
            .chain(state.field.bases.iter().flat_map(|b| b.delta.buffers())),
    );
    let version = state.commits;
    state.commits += 1;
    if commit.rollback.contains(&task) {
        state.versions.push(Version { task, w0, field: state.field.clone() });
    }
    Ok(NiwfCommit {
        anchors: commit.anchors,
        bases: state.field.bases.len(),
        field_checksum,
        frozen_bases: frozen,
        lock_before,
        overlap: if overlap.is_some() { 1.0 } else { 0.0 },
        overlap_region: overlap.map(|o| o.region),
        radius_anchor: radius as f64,
        radius_lock: settings.radius as f64,
        region_checksum,
        task,
        version,
    })
}

/// Keeps the task's reference outputs and measures every reference against the current
/// model. Returns the drift event's payload.
fn drift<M: FieldNet>(
    settings: &Settings,
    state: &mut FieldState,
    cx: &mut TaskContext<'_, M>,
) -> Option<FieldDrift> {
    if settings.drift_examples == 0 {
        return None;
    }
    let test = &cx.task.test;
    let n = settings.drift_examples.min(test.len());
    let mut inputs = Vec::with_capacity(n * cx.net.input_len());
    for chunk in (0..n).collect::<Vec<_>>().chunks(M::CHUNK) {
        cx.compute.load_batch(test, chunk);
        inputs.extend_from_slice(cx.compute.input_mut());
    }
    let head_of = |field: &Field, task: usize, fallback: Range<usize>| {
        field.basis_of(task).map_or(fallback, |b| field.bases[b].head.clone())
    };
    let head = head_of(&state.field, cx.task.index, cx.head.clone());
    let current = outputs_of(&state.field, cx.net, &inputs, n, head);
    state.references.push(Reference { task: cx.task.index, inputs, outputs: current });
    let regions = settings.commit.is_some();
    let mut tasks = Vec::new();
    for reference in &state.references {
        let head = head_of(&state.field, reference.task, cx.head.clone());
        let n = reference.outputs.len() / head.len().max(1);
        let now = outputs_of(&state.field, cx.net, &reference.inputs, n, head);
        let (mut max_change, mut changed) = (0.0f64, 0usize);
        for (&a, &b) in reference.outputs.iter().zip(&now) {
            if a.to_bits() != b.to_bits() {
                changed += 1;
            }
            max_change = max_change.max((a as f64 - b as f64).abs());
        }
        tasks.push(TaskDrift {
            changed_outputs: changed,
            examples: n,
            inside: regions.then_some(n),
            max_abs_change: max_change,
            max_abs_change_inside: regions.then_some(max_change),
            task: reference.task,
        });
    }
    Some(FieldDrift { tasks })
}

impl<M: FieldNet> ContinualMethod<M> for FieldMethod<M> {
    fn begin(&mut self, cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        if let Some(commit) = &self.settings.commit {
            tasks_named_exist(commit, cx.tasks_total)
                .map_err(|e| MethodError::Failed(format!("niwf: {e}")))?;
        }
        cx.net.check().map_err(|e| MethodError::Failed(format!("{}: {e}", self.settings.kind)))?;
        self.state = Some(FieldState {
            field: Field {
                radius: self.settings.radius,
                spacing: self.settings.spacing,
                dim: self.settings.coordinate_dim,
                bases: Vec::new(),
                regions: Vec::new(),
            },
            optimizers: Vec::new(),
            w0_frozen: false,
            regions: Vec::new(),
            versions: Vec::new(),
            references: Vec::new(),
            running: Running::default(),
            commits: 0,
            overlaps: Vec::new(),
        });
        Ok(())
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, M>) -> Result<(), MethodError> {
        let kind = self.settings.kind;
        let config = self.optimizer_config;
        let state = self.state.as_mut().ok_or_else(not_built)?;
        let r = std::mem::take(&mut state.running);
        if r.steps > 0 {
            cx.report.push(kind.losses(FieldLosses {
                budget: 0.0,
                lock: r.lock / r.steps as f64,
                separation: 0.0,
                steps: r.steps,
            }));
        }
        if let Some(commit_settings) = &self.settings.commit {
            let value = commit(&self.settings, commit_settings, config, state, cx)?;
            cx.report.push(MethodPayload::NiwfCommit(value));
        }
        if let Some(value) = drift(&self.settings, state, cx) {
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
        self.state = state::load(saved, &self.settings, self.optimizer_config)?;
        Ok(())
    }

    fn learner(&mut self) -> Option<&mut dyn Learner<M>> {
        Some(self)
    }
}

impl<M: FieldNet> Learner<M> for FieldMethod<M> {
    fn train_step(&mut self, cx: &mut LearnerStep<'_, M>) -> Result<BatchLoss, MethodError> {
        let hard = self.hard();
        let config = self.optimizer_config;
        let settings = &self.settings;
        let state = self.state.as_mut().ok_or_else(not_built)?;
        let w0 = field_part::<M>(cx.net.parameters());
        let b = basis_for(state, settings, config, hard, &w0, cx.task, cx.head.clone())?;
        let scratch = self.grads.get_or_insert_with(|| cx.net.parameters().zeros_like());
        let z = state.field.bases[b].center.clone();
        let net = state.field.generate(&*cx.net, &z);
        let frozen_backbone = state.backbone_frozen(settings);
        let task = M::train_pass(&net, cx.workspace, cx.head.clone(), cx.targets, frozen_backbone, scratch)?;
        if !task.loss_sum.is_finite() {
            return Ok(task);
        }
        let pass_grads = field_part::<M>(scratch);
        let w0_trainable = !state.w0_frozen;
        let field = &state.field;
        let trainable = |p: usize| if p == 0 { w0_trainable } else { !field.bases[p - 1].frozen };
        // grads[p]: W0 (p = 0) and basis p − 1.
        let mut grads: Vec<Option<Layers>> = vec![None; 1 + field.bases.len()];
        if w0_trainable {
            grads[0] = Some(pass_grads.clone());
        }
        for (j, basis) in field.bases.iter().enumerate() {
            let k = field.kappa(j, &z);
            if k != 0.0 && !basis.frozen {
                let mut g = pass_grads.clone();
                if k != 1.0 {
                    g.buffers_mut().for_each(|b| b.iter_mut().for_each(|v| *v *= k));
                }
                grads[1 + j] = Some(g);
            }
        }
        let soft = settings.commit.as_ref().filter(|c| c.lock == LockKind::Soft && c.lambda_lock > 0.0);
        let lock_value = match soft {
            Some(c) if !state.regions.is_empty() => {
                lock(field, &w0, &state.regions, c.lambda_lock, Some(&mut grads), &trainable)
            }
            _ => 0.0,
        };
        if !lock_value.is_finite() {
            let mut task = task;
            task.loss_sum = f64::NAN;
            return Ok(task);
        }
        M::keep_statistics(cx.net, cx.workspace);
        if let Some(g) = &grads[0] {
            set_field_part::<M>(scratch, g);
            M::step(cx.optimizer, cx.net, scratch, frozen_backbone);
        }
        for (j, g) in grads.iter().enumerate().skip(1) {
            if let Some(g) = g {
                state.optimizers[j - 1].step_parameters(&mut state.field.bases[j - 1].delta, g);
            }
        }
        state.running.steps += 1;
        state.running.lock += lock_value;
        Ok(task)
    }

    fn forward(&mut self, variant: Option<&str>, net: &M, ws: &mut M::Workspace) -> Result<(), MethodError> {
        let state = self.state.as_ref().ok_or_else(not_built)?;
        let unknown = || {
            MethodError::Failed(format!(
                "{}: no evaluation variant `{}`",
                self.settings.kind,
                variant.unwrap_or("")
            ))
        };
        match variant {
            None => forward_field(&state.field, net, ws),
            Some(v) => {
                if let Some(t) = v.strip_prefix("version:") {
                    let t: usize = t.parse().map_err(|_| unknown())?;
                    let version = state.versions.iter().find(|v| v.task == t).ok_or_else(unknown)?;
                    forward_field(&version.field, &with_field_part(net, &version.w0), ws);
                } else if let Some(pair) = v.strip_prefix("compose:") {
                    let (i, j) = pair.split_once('+').ok_or_else(unknown)?;
                    let i: usize = i.parse().map_err(|_| unknown())?;
                    let j: usize = j.parse().map_err(|_| unknown())?;
                    let committed = |t: usize| state.regions.iter().any(|r| r.task == t);
                    if !committed(i) || !committed(j) {
                        return Err(unknown());
                    }
                    let f = &state.field;
                    let (bi, bj) = (f.basis_of(i).ok_or_else(unknown)?, f.basis_of(j).ok_or_else(unknown)?);
                    let mut mix = f.generate(net, &f.bases[bi].center);
                    let other = field_part::<M>(f.generate(net, &f.bases[bj].center).parameters());
                    let mixed = M::field_layers_mut(mix.parameters_mut());
                    for l in mixed {
                        l.weight.iter_mut().chain(l.bias.iter_mut()).for_each(|v| *v *= 0.5);
                    }
                    axpy_layers(M::field_layers_mut(mix.parameters_mut()), 0.5, &other);
                    M::forward(&mix, ws);
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
        let mut out: Vec<String> = commit
            .rollback
            .iter()
            .filter(|&&t| state.versions.iter().any(|v| v.task == t))
            .map(|t| format!("version:{t}"))
            .collect();
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
