//! The recipe parameters of `weight_field` and `niwf`, and the settings built from them.
//!
//! The paper's full method section was not available (only its abstract, figure 1's caption
//! and a summary could be found), so the defaults follow the project's outline: K = 16 bases
//! of rank 4, d = 8, top-4 gates, 256 anchors in the 95% ellipsoid. Every other default is
//! this implementation's choice and says so.

use serde::{Deserialize, Serialize};

use super::region::LockSpace;
use crate::model::field::FieldSpec;
use crate::protocol::payload::{FieldDrift, FieldLosses, MethodPayload};

/// How a commit protects a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// The paper's functional lock: λ_lock·L_lock keeps the field's logits at the anchors near
    /// their snapshot, λ_sep·L_sep pushes new coordinates out of committed regions. Everything
    /// stays trainable, so committed outputs can still drift a little.
    Soft,
    /// Structural non-interference (beyond the paper): the encoder, the field components and
    /// every basis the region uses are frozen, the other bases are silenced inside it, and
    /// new capacity (an extension component, fresh bases) is masked to exactly 0 inside it.
    /// Outputs of examples whose coordinate lies in a committed region never change again.
    Hard,
}

/// Hyper-parameters of `weight_field`: the field without commits or locks (the ablation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightFieldConfig {
    /// K: low-rank bases per adapted layer (default 16, the outline's).
    pub bases: usize,
    /// r: rank of each basis B_b A_b (default 4, the outline's).
    pub rank: usize,
    /// d: dimension of the capability coordinate (default 8, the outline's).
    pub coordinate_dim: usize,
    /// k: gates kept per example, the softmax runs over the k largest logits (default 4, the
    /// outline's).
    pub top_k: usize,
    /// Hidden units of the coordinate encoder G (default 64; our choice).
    pub encoder_hidden: usize,
    /// Hidden units of the field network F and of each extension (default 32; our choice).
    pub field_hidden: usize,
    /// Give the output layer a bank too; hidden layers always have one (default false: the
    /// outline adapts hidden layers).
    pub adapt_output: bool,
    /// Train the backbone on the first task, then freeze it (default true, the outline's);
    /// false keeps it at its random initialisation.
    pub train_backbone: bool,
    /// λ of the gate budget: mean Gini impurity 1 − Σ_b g_b² of the gates (default 1e-3; the
    /// paper's sparsity term is not known).
    pub lambda_budget: f64,
    /// Held-out examples per task whose outputs are kept after the task and compared with
    /// later outputs in `<kind>.drift` events (default 500; 0 turns the diagnostic off). Their
    /// inputs stay in the method's state and checkpoints: 500 MNIST images are 1.6 MB a task.
    pub drift_examples: usize,
}

impl Default for WeightFieldConfig {
    fn default() -> Self {
        WeightFieldConfig {
            bases: 16,
            rank: 4,
            coordinate_dim: 8,
            top_k: 4,
            encoder_hidden: 64,
            field_hidden: 32,
            adapt_output: false,
            train_backbone: true,
            lambda_budget: 1e-3,
            drift_examples: 500,
        }
    }
}

/// Hyper-parameters of `niwf`: the field with commits, locks and versions. The first ten are
/// those of [`WeightFieldConfig`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NiwfConfig {
    /// See [`WeightFieldConfig::bases`] (default 16).
    pub bases: usize,
    /// See [`WeightFieldConfig::rank`] (default 4).
    pub rank: usize,
    /// See [`WeightFieldConfig::coordinate_dim`] (default 8).
    pub coordinate_dim: usize,
    /// See [`WeightFieldConfig::top_k`] (default 4).
    pub top_k: usize,
    /// See [`WeightFieldConfig::encoder_hidden`] (default 64).
    pub encoder_hidden: usize,
    /// See [`WeightFieldConfig::field_hidden`] (default 32).
    pub field_hidden: usize,
    /// See [`WeightFieldConfig::adapt_output`] (default false).
    pub adapt_output: bool,
    /// See [`WeightFieldConfig::train_backbone`] (default true).
    pub train_backbone: bool,
    /// See [`WeightFieldConfig::lambda_budget`] (default 1e-3).
    pub lambda_budget: f64,
    /// See [`WeightFieldConfig::drift_examples`] (default 500).
    pub drift_examples: usize,
    /// `soft` (the paper's functional lock, default) or `hard` (structural non-interference).
    pub lock: LockKind,
    /// Anchors drawn per commit (default 256, the outline's).
    pub anchors: usize,
    /// Probability mass of the ellipsoid the anchors are drawn in, in (0, 1) (default 0.95,
    /// the outline's).
    pub anchor_mass: f64,
    /// λ_lock of the functional lock, soft lock only (default 1; our choice).
    pub lambda_lock: f64,
    /// λ_sep of the separation hinge, soft lock only (default 0.1; our choice).
    pub lambda_sep: f64,
    /// Hard lock: where a region's lock test measures — `input` (a diagonal Gaussian of the
    /// task's inputs, default) or `coordinate` (the region's Gaussian in coordinate space, the
    /// paper's space). Our choice: the coordinate, fitted to the first task and frozen with
    /// the encoder, does not tell permuted-MNIST tasks apart (every later task's coordinates
    /// fell inside the first region), so a hard lock in coordinate space learns nothing new.
    pub lock_space: LockSpace,
    /// Hard lock: a region's lock radius over the farthest of the task's training examples
    /// (in coordinate space at least the anchors' radius), ≥ 1 (default 1.1; our choice).
    pub lock_margin: f64,
    /// Hard lock: width of the masks' rise outside a locked ellipsoid, as a fraction of its
    /// radius, > 0 (default 0.5; our choice).
    pub mask_width: f64,
    /// Hard lock: fresh bases added at every commit, so later tasks have capacity once the
    /// committed regions have frozen the bank (default 4 = k; our choice).
    pub new_bases: usize,
    /// Hard lock: a basis is frozen by a commit when its gate exceeds this on any training
    /// coordinate or anchor of the task, in [0, 1) (default 0: every basis the region uses).
    /// Bases below it are silenced inside the region instead, which changes the region's
    /// outputs once, at the commit, and never afterwards.
    pub freeze_threshold: f64,
    /// Versions to evaluate besides the current model: a list of task indices t, each
    /// evaluated as `eval` events with variant `version:t` once task t is committed (default
    /// none). In a recipe a list is a grid axis, so write `rollback: [[0, 2]]`.
    pub rollback: Vec<usize>,
    /// Compositions to evaluate: pairs [i, j] of task indices, each evaluated as `eval`
    /// events with variant `compose:i+j` (every example gets the mean of the two regions'
    /// mean gates) once both are committed (default none; recipe: `compose: [[[0, 1]]]`).
    pub compose: Vec<[usize; 2]>,
}

impl Default for NiwfConfig {
    fn default() -> Self {
        let w = WeightFieldConfig::default();
        NiwfConfig {
            bases: w.bases,
            rank: w.rank,
            coordinate_dim: w.coordinate_dim,
            top_k: w.top_k,
            encoder_hidden: w.encoder_hidden,
            field_hidden: w.field_hidden,
            adapt_output: w.adapt_output,
            train_backbone: w.train_backbone,
            lambda_budget: w.lambda_budget,
            drift_examples: w.drift_examples,
            lock: LockKind::Soft,
            anchors: 256,
            anchor_mass: 0.95,
            lambda_lock: 1.0,
            lambda_sep: 0.1,
            lock_space: LockSpace::Input,
            lock_margin: 1.1,
            mask_width: 0.5,
            new_bases: 4,
            freeze_threshold: 0.0,
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
    pub anchor_mass: f64,
    pub lambda_lock: f32,
    pub lambda_sep: f32,
    pub lock_space: LockSpace,
    pub lock_margin: f64,
    pub mask_width: f64,
    pub new_bases: usize,
    pub freeze_threshold: f32,
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
    pub spec: FieldSpec,
    pub train_backbone: bool,
    pub lambda_budget: f32,
    pub drift_examples: usize,
    /// `None` for `weight_field`.
    pub commit: Option<CommitSettings>,
}

/// The largest basis count, rank, coordinate dimension or hidden width of a field (and the
/// most `new_bases`): the field's matrices are products of these (recipes/README.md, "Bounds").
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

fn check_architecture(
    bases: usize,
    rank: usize,
    coordinate_dim: usize,
    top_k: usize,
    encoder_hidden: usize,
    field_hidden: usize,
    lambda_budget: f64,
) -> Result<(), String> {
    for (name, v) in [
        ("bases", bases),
        ("rank", rank),
        ("coordinate_dim", coordinate_dim),
        ("top_k", top_k),
        ("encoder_hidden", encoder_hidden),
        ("field_hidden", field_hidden),
    ] {
        if v == 0 {
            return Err(format!("`{name}` must be at least 1"));
        }
        if v > MAX_SIZE {
            return Err(format!("`{name}` is {v}; at most {MAX_SIZE} is supported"));
        }
    }
    if top_k > bases {
        return Err(format!("`top_k` ({top_k}) cannot exceed `bases` ({bases})"));
    }
    non_negative("lambda_budget", lambda_budget)
}

fn non_negative(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{name}` must be a number ≥ 0, not {v}"))
    }
}

impl WeightFieldConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        check_architecture(
            self.bases,
            self.rank,
            self.coordinate_dim,
            self.top_k,
            self.encoder_hidden,
            self.field_hidden,
            self.lambda_budget,
        )?;
        at_most("drift_examples", self.drift_examples, MAX_EXAMPLES)
    }

    pub(super) fn settings(&self) -> Settings {
        Settings {
            kind: FieldKind::WeightField,
            spec: FieldSpec {
                bases: self.bases,
                rank: self.rank,
                coordinate_dim: self.coordinate_dim,
                top_k: self.top_k,
                encoder_hidden: self.encoder_hidden,
                field_hidden: self.field_hidden,
                adapt_output: self.adapt_output,
            },
            train_backbone: self.train_backbone,
            lambda_budget: self.lambda_budget as f32,
            drift_examples: self.drift_examples,
            commit: None,
        }
    }
}

impl NiwfConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        check_architecture(
            self.bases,
            self.rank,
            self.coordinate_dim,
            self.top_k,
            self.encoder_hidden,
            self.field_hidden,
            self.lambda_budget,
        )?;
        if self.anchors == 0 {
            return Err("`anchors` must be at least 1".into());
        }
        at_most("anchors", self.anchors, MAX_EXAMPLES)?;
        at_most("drift_examples", self.drift_examples, MAX_EXAMPLES)?;
        at_most("new_bases", self.new_bases, MAX_SIZE)?;
        if !(self.anchor_mass > 0.0 && self.anchor_mass < 1.0) {
            return Err(format!("`anchor_mass` must lie in (0, 1), not {}", self.anchor_mass));
        }
        non_negative("lambda_lock", self.lambda_lock)?;
        non_negative("lambda_sep", self.lambda_sep)?;
        if !(self.lock_margin.is_finite() && self.lock_margin >= 1.0) {
            return Err(format!("`lock_margin` must be a number ≥ 1, not {}", self.lock_margin));
        }
        if !(self.mask_width.is_finite() && self.mask_width > 0.0) {
            return Err(format!("`mask_width` must be a number > 0, not {}", self.mask_width));
        }
        if !(0.0..1.0).contains(&self.freeze_threshold) {
            return Err(format!("`freeze_threshold` must lie in [0, 1), not {}", self.freeze_threshold));
        }
        if let Some(pair) = self.compose.iter().find(|p| p[0] == p[1]) {
            return Err(format!("`compose` pairs two different tasks, not [{}, {}]", pair[0], pair[1]));
        }
        Ok(())
    }

    pub(super) fn settings(&self) -> Settings {
        Settings {
            kind: FieldKind::Niwf,
            spec: FieldSpec {
                bases: self.bases,
                rank: self.rank,
                coordinate_dim: self.coordinate_dim,
                top_k: self.top_k,
                encoder_hidden: self.encoder_hidden,
                field_hidden: self.field_hidden,
                adapt_output: self.adapt_output,
            },
            train_backbone: self.train_backbone,
            lambda_budget: self.lambda_budget as f32,
            drift_examples: self.drift_examples,
            commit: Some(CommitSettings {
                lock: self.lock,
                anchors: self.anchors,
                anchor_mass: self.anchor_mass,
                lambda_lock: self.lambda_lock as f32,
                lambda_sep: self.lambda_sep as f32,
                lock_space: self.lock_space,
                lock_margin: self.lock_margin,
                mask_width: self.mask_width,
                new_bases: self.new_bases,
                freeze_threshold: self.freeze_threshold as f32,
                rollback: self.rollback.clone(),
                compose: self.compose.clone(),
            }),
        }
    }
}
