//! The recipe parameters of `weight_field` and `niwf`, and the settings built from them.
//!
//! The paper's method section was not available (only its abstract), so every default is this
//! implementation's choice and says why.

use serde::{Deserialize, Serialize};

use crate::protocol::payload::{FieldDrift, FieldLosses, MethodPayload};

/// How a commit protects a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// The paper's functional lock: λ_lock · mean over the region's anchors of
    /// ‖W(a) − W_snap(a)‖², the generated weights against their snapshot. Everything stays
    /// trainable, so committed weights can move a little, at a cost.
    Soft,
    /// The lock made exact (beyond the paper): the parameters a committed region's generated
    /// weights depend on (W0 and the task's own ΔW) are frozen, and later bases are silenced
    /// inside the region, so its weights, and outputs, stay bit-identical.
    Hard,
}

/// Hyper-parameters of `weight_field`: the field without commits or locks (the ablation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightFieldConfig {
    /// d: dimension of the capability coordinate space (default 8).
    pub coordinate_dim: usize,
    /// ρ: radius of a basis's support around its task's coordinate, and of a committed region
    /// (default 1).
    pub radius: f64,
    /// Distance between task coordinates: task i sits at `spacing · (⌊i/d⌋ + 1)` on axis
    /// `i mod d` (default 3 = 3ρ: supports and regions never touch). Below 2ρ tasks overlap.
    pub spacing: f64,
    /// Held-out examples per task whose outputs are kept after the task and compared with
    /// later outputs in `<kind>.drift` events (default 500; 0 turns the diagnostic off). Their
    /// inputs stay in the method's state and checkpoints: 500 MNIST images are 1.6 MB a task.
    pub drift_examples: usize,
}

impl Default for WeightFieldConfig {
    fn default() -> Self {
        WeightFieldConfig { coordinate_dim: 8, radius: 1.0, spacing: 3.0, drift_examples: 500 }
    }
}

/// Hyper-parameters of `niwf`: the field with commits, locks and versions. The first four are
/// those of [`WeightFieldConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NiwfConfig {
    /// See [`WeightFieldConfig::coordinate_dim`] (default 8).
    pub coordinate_dim: usize,
    /// See [`WeightFieldConfig::radius`] (default 1).
    pub radius: f64,
    /// See [`WeightFieldConfig::spacing`] (default 3).
    pub spacing: f64,
    /// See [`WeightFieldConfig::drift_examples`] (default 500).
    pub drift_examples: usize,
    /// `soft` (the paper's functional lock, default) or `hard` (the lock made exact).
    pub lock: LockKind,
    /// Anchors per commit: the task's coordinate and `anchors − 1` points drawn uniformly in
    /// the ball of radius `anchor_radius · ρ` around it (default 16).
    pub anchors: usize,
    /// Radius of the anchors' ball as a fraction of ρ, in (0, 1] (default 0.5).
    pub anchor_radius: f64,
    /// λ_lock of the soft lock (default 100: strong enough that on MNIST the committed
    /// outputs barely move; see the module docs).
    pub lambda_lock: f64,
    /// Versions to evaluate besides the current model: a list of task indices t, each
    /// evaluated as `eval` events with variant `version:t` once task t is committed (default
    /// none). In a recipe a list is a grid axis, so write `rollback: [[0, 2]]`.
    pub rollback: Vec<usize>,
    /// Compositions to evaluate: pairs [i, j] of task indices, each evaluated as `eval`
    /// events with variant `compose:i+j` (the mean of the two regions' generated weights)
    /// once both are committed (default none; recipe: `compose: [[[0, 1]]]`).
    pub compose: Vec<[usize; 2]>,
}

impl Default for NiwfConfig {
    fn default() -> Self {
        let w = WeightFieldConfig::default();
        NiwfConfig {
            coordinate_dim: w.coordinate_dim,
            radius: w.radius,
            spacing: w.spacing,
            drift_examples: w.drift_examples,
            lock: LockKind::Soft,
            anchors: 16,
            anchor_radius: 0.5,
            lambda_lock: 100.0,
            rollback: Vec::new(),
            compose: Vec::new(),
        }
    }
}

/// What commits do.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CommitSettings {
    pub lock: LockKind,
    pub anchors: usize,
    pub anchor_radius: f64,
    pub lambda_lock: f32,
    pub rollback: Vec<usize>,
    pub compose: Vec<[usize; 2]>,
}

/// Which of the two methods a field method is. They report the same diagnostics, each under
/// its own name, so that a run's events say which model produced them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FieldKind {
    WeightField,
    Niwf,
}

impl FieldKind {
    pub fn losses(self, losses: FieldLosses) -> MethodPayload {
        match self {
            FieldKind::WeightField => MethodPayload::WeightFieldLosses(losses),
            FieldKind::Niwf => MethodPayload::NiwfLosses(losses),
        }
    }

    pub fn drift(self, drift: FieldDrift) -> MethodPayload {
        match self {
            FieldKind::WeightField => MethodPayload::WeightFieldDrift(drift),
            FieldKind::Niwf => MethodPayload::NiwfDrift(drift),
        }
    }
}

/// The method's name in error messages.
impl std::fmt::Display for FieldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldKind::WeightField => "weight_field",
            FieldKind::Niwf => "niwf",
        })
    }
}

/// Everything the method needs from its configuration.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Settings {
    pub kind: FieldKind,
    pub coordinate_dim: usize,
    pub radius: f32,
    pub spacing: f32,
    pub drift_examples: usize,
    /// `None` for `weight_field`.
    pub commit: Option<CommitSettings>,
}

/// The largest coordinate dimension (recipes/README.md, "Bounds").
const MAX_SIZE: usize = 65_536;
/// The most anchors per commit and drift examples per task.
const MAX_EXAMPLES: usize = 1_000_000;

fn at_most(name: &str, v: usize, max: usize) -> Result<(), String> {
    if v > max {
        Err(format!("`{name}` is {v}; at most {max} is supported"))
    } else {
        Ok(())
    }
}

fn positive(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("`{name}` must be a number > 0, not {v}"))
    }
}

fn check_geometry(coordinate_dim: usize, radius: f64, spacing: f64, drift: usize) -> Result<(), String> {
    if coordinate_dim == 0 {
        return Err("`coordinate_dim` must be at least 1".into());
    }
    at_most("coordinate_dim", coordinate_dim, MAX_SIZE)?;
    positive("radius", radius)?;
    positive("spacing", spacing)?;
    at_most("drift_examples", drift, MAX_EXAMPLES)
}

impl WeightFieldConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        check_geometry(self.coordinate_dim, self.radius, self.spacing, self.drift_examples)
    }

    pub(super) fn settings(&self) -> Settings {
        Settings {
            kind: FieldKind::WeightField,
            coordinate_dim: self.coordinate_dim,
            radius: self.radius as f32,
            spacing: self.spacing as f32,
            drift_examples: self.drift_examples,
            commit: None,
        }
    }
}

impl NiwfConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        check_geometry(self.coordinate_dim, self.radius, self.spacing, self.drift_examples)?;
        if self.anchors == 0 {
            return Err("`anchors` must be at least 1".into());
        }
        at_most("anchors", self.anchors, MAX_EXAMPLES)?;
        if !(self.anchor_radius > 0.0 && self.anchor_radius <= 1.0) {
            return Err(format!("`anchor_radius` must lie in (0, 1], not {}", self.anchor_radius));
        }
        if !(self.lambda_lock.is_finite() && self.lambda_lock >= 0.0) {
            return Err(format!("`lambda_lock` must be a number ≥ 0, not {}", self.lambda_lock));
        }
        if let Some(pair) = self.compose.iter().find(|p| p[0] == p[1]) {
            return Err(format!("`compose` pairs two different tasks, not [{}, {}]", pair[0], pair[1]));
        }
        Ok(())
    }

    pub(super) fn settings(&self) -> Settings {
        Settings {
            kind: FieldKind::Niwf,
            coordinate_dim: self.coordinate_dim,
            radius: self.radius as f32,
            spacing: self.spacing as f32,
            drift_examples: self.drift_examples,
            commit: Some(CommitSettings {
                lock: self.lock,
                anchors: self.anchors,
                anchor_radius: self.anchor_radius,
                lambda_lock: self.lambda_lock as f32,
                rollback: self.rollback.clone(),
                compose: self.compose.clone(),
            }),
        }
    }
}
