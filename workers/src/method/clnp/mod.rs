//! `clnp`: Continual Learning via Neural Pruning (Golkar, Kagan & Cho 2019, arXiv 1903.04476).
//!
//! A task-incremental method for a fixed-capacity ReLU network: each task is trained with a
//! sparsity penalty on the units still free, the units it barely uses are pruned afterwards,
//! and the units it keeps are frozen for good, so later tasks train only in the space left —
//! with zero forgetting at margin 0.
//!
//! # Algorithm, per task t
//!
//! 1. **Start** (`task_started`, t > 0): every free unit — all were pruned, so their weights
//!    are zero — is re-initialised (incoming row from the initial distribution, bias 0), and
//!    so are the rows of task t's head; their optimiser state is reset.
//! 2. **Train** on cross-entropy plus a sparsity penalty: with `penalty: activations`
//!    (default) α times the batch mean of Σ_i h_i over the free units (the local gradient
//!    α/B·Σ_x 1[h_i > 0]·input on unit i's row and bias), with `weights` α·Σ|w| over the
//!    weights the task may train (α·sign(w); biases carry none). Trainable are the rows of
//!    free units (their U→F and F→F weights, biases) and task t's head rows, which read every
//!    unit of the last hidden layer, used or free. Everything else has its gradient zeroed,
//!    and `after_update` copies the frozen rows back from a snapshot, since momentum and
//!    Adam's moments would move them even with a zero gradient.
//! 3. **Measure** (`task_finished`) on the task's validation split (`training.validation`
//!    examples held out by the trainer) — or, when there is none, on its training split, which
//!    the `clnp.capacity` event says (`measured_on`): each free unit's activity a_i
//!    (`activity`: mean ReLU output, or fraction of examples it fires on) and the unpruned
//!    accuracy A₀ on task t's head.
//! 4. **Graceful forgetting**: the network without the pruned units must get at least
//!    A₀·n − ⌊m·n⌋ of the n measured examples right (`margin` m; m = 0: not one example lost).
//!    With `thresholds: per_layer` (default) each hidden layer l gets its own θ_l, the largest
//!    admissible with the layers above it already pruned, searched from the output side down;
//!    with `global`, one θ for all layers. See [`pruning::choose_thresholds`]. The free units at
//!    or below θ_l are pruned — incoming row, bias and outgoing column zeroed —, the others
//!    are task t's active units.
//! 5. **Retrain** (`retrain_epochs` > 0, default 1): plain cross-entropy epochs on the task's
//!    training data with the pruned units held at zero and every frozen row frozen, so only
//!    the units the task keeps and its head move ([`retrain`]). The event's
//!    `accuracy_retrained` is the measured accuracy after it.
//! 6. **Freeze**: the active units join U, and every row of U and task t's head rows are
//!    frozen at their current values. Since every free unit now has zero outgoing weights, the
//!    F→U ("interference") weights and the F columns of every finished head are zero and
//!    frozen; nothing a later task does reaches the computation of task t's outputs. See
//!    [`partition`] for why freezing rows suffices.
//!
//! When a hidden layer has no free unit left, the task trains what remains (free units of
//! other layers, its head) and a `clnp.no_free_units` event says so.
//!
//! # Requirements, checked at `begin` / `task_started`
//!
//! One output head per task (`network.heads: per_task`, or a stream whose tasks have their own
//! heads), ReLU hidden units (activity is only meaningful, and a pruned unit only silent, for
//! ReLU), a classification stream (the margin is in accuracy), and task boundaries (not an
//! online stream, whose learner is never told where tasks end).
//!
//! # Events
//!
//! `clnp.capacity`, after each task:
//!
//! ```json
//! {"measured_on": "validation", "examples": 500, "activity": "mean_activation",
//!  "threshold": 0.0123, "evaluations": 12,
//!  "accuracy_unpruned": 0.974, "accuracy_pruned": 0.974, "accuracy_retrained": 0.978,
//!  "layers": [{"units": 200, "used": 61, "free": 139, "new": 61, "pruned": 139, "reused": 0,
//!              "threshold": 0.0123},
//!             {"units": 200, "used": 48, "free": 152, "new": 48, "pruned": 152, "reused": 0,
//!              "threshold": 0.0071}]}
//! ```
//!
//! `measured_on`: `validation` or `train` (the fallback); `examples`: n; `threshold`: the
//! largest θ_l, `null` when no unit was pruned; `evaluations`: pruned networks evaluated by the
//! search; `accuracy_retrained`: absent without retraining; per hidden layer: `threshold` (θ_l,
//! absent when the layer pruned nothing), `units`, `used` (|U| after the task), `free` (units
//! left for later tasks), `new`
//! (this task's active units, newly added to U), `pruned` (free units this task did not keep),
//! `reused` (units of U from earlier tasks that this task uses: its head depends on them through
//! non-zero weights, directly or through other units, and their activity on this task's
//! measured data exceeds its layer's θ_l — 0 when the layer pruned nothing —, the bar its own units had to
//! clear; the paper's reused features. Non-zero weights alone would count nearly every unit,
//! since the L1 subgradient leaves weights near, not at, zero).
//!
//! `clnp.no_free_units`, when a task starts with a full hidden layer:
//! `{"full_layers": [1], "free": [12, 0]}` (indices of the full layers; free units per layer).
//!
//! # Conv nets
//!
//! [`conv`] is the same method on convolutional networks: filters (output channels) are units,
//! pruning removes whole filters, and networks with batch norm or residual blocks are refused,
//! since they would break the zero-forgetting guarantee.
//!
//! # What the paper says, and where this differs
//!
//! The paper's full text was not reachable from where this was written; its abstract and
//! third-party summaries of it were. Followed from those: activation-based *neuron* pruning
//! (a unit goes when its average activity on held-out data is below a threshold), an L1
//! *weight* penalty to make the network sparse, the interference weights (free → used) held
//! at zero so earlier tasks suffer no deterioration, later tasks trained on the free units,
//! graceful forgetting (a margin of validation accuracy traded for capacity), and the free /
//! reused units per layer as diagnostics. Choices of this implementation, and differences:
//!
//! * The L1 penalty is on the free units' activations by default. One summary of the paper
//!   describes an L1 *weight* penalty (`penalty: weights`, kept); on permuted MNIST it left
//!   the first task holding 80–95% of each layer at every α that kept accuracy (the weights
//!   shrink, the units stay active), while the activation penalty silences whole units. Its
//!   gradient is the local one (each unit's own row and bias), not what it would send further
//!   down through the units feeding it.
//! * Per-layer thresholds, searched greedily from the output side down with one shared
//!   margin, each θ_l by bisection over the layer's sorted activities (1 + ⌈log₂ K_l⌉
//!   evaluations); if accuracy is not monotone in θ_l a larger admissible θ_l may exist.
//!   `thresholds: global` is the earlier single θ, whose choice is dominated by the layer of
//!   largest activities (it left the first layer nearly unpruned).
//! * One round of pruning and retraining per task, retraining without the L1 penalty; the
//!   paper's number of rounds and epochs was not available.
//! * The margin is checked on the pruned network before retraining (retraining usually
//!   raises accuracy, so the retrained network is within it too, but this is not enforced).
//! * Pruned units are re-initialised when the next task starts, not at pruning time, so a
//!   task's evaluation sees exactly the pruned network.
//! * Reuse is counted on the measured data: an earlier unit is reused when the task's head
//!   depends on it through non-zero weights and its activity exceeds the layer's θ_l.
//! * The network, data and schedule of the recipe are smaller than the paper's (see
//!   `recipes/clnp-permuted-mnist.yaml`).

mod conv;
mod conv_units;
mod partition;
mod pruning;
mod retrain;

pub use pruning::{Activity, Thresholds};

use serde::{Deserialize, Serialize};

use self::partition::{Correct, Partition};
use self::pruning::{choose_thresholds, measure_activity, reached_units, remove_units};
use super::{ContinualMethod, MethodError, MethodKind, MethodState, StepContext, TaskContext};
use crate::model::convnet::ConvNet;
use crate::model::{Layers, Mlp};
use crate::optim::OptimizerConfig;
use crate::protocol::payload::{ClnpNoFreeUnits, MeasuredOn, MethodPayload};
use crate::protocol::Activation;
use crate::stream::Target;

/// Hyper-parameters of `clnp`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClnpConfig {
    /// α of the sparsity penalty (see `penalty`; default 0.02, measured on permuted MNIST with
    /// the activation penalty — with `penalty: weights` values around 1e-4…1e-3 fit; the
    /// paper's value was not available).
    pub alpha: f64,
    /// m, the graceful-forgetting margin: the fraction of the measured examples the pruned
    /// network may get wrong beyond the unpruned one, in [0, 1] (default 0: no loss at all).
    pub margin: f64,
    /// How a unit's activity is measured: `mean_activation` (mean ReLU output, default) or
    /// `firing_rate` (fraction of examples on which it is positive).
    pub activity: Activity,
    /// What α penalises: `weights` (α·Σ|w| over the weights the task trains) or
    /// `activations` (α times the batch mean of Σ_i h_i over the free units, local gradient).
    pub penalty: Penalty,
    /// Where the pruning threshold applies: `per_layer` (θ_l per hidden layer, default) or
    /// `global` (one θ for all, whose choice is dominated by the layer of largest activities).
    pub thresholds: Thresholds,
    /// Epochs of plain cross-entropy on the task's training data after pruning, with the pruned
    /// units held out (0: none).
    pub retrain_epochs: usize,
    /// Batch size of that retraining.
    pub retrain_batch_size: usize,
}

impl Default for ClnpConfig {
    fn default() -> Self {
        ClnpConfig {
            alpha: 0.02,
            margin: 0.0,
            activity: Activity::MeanActivation,
            penalty: Penalty::Activations,
            thresholds: Thresholds::PerLayer,
            retrain_epochs: 5,
            retrain_batch_size: 32,
        }
    }
}

/// What the sparsity penalty applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// α·Σ|w| over the weights the task trains: sparse weights, but on permuted MNIST most
    /// units stay active, so the first task commits most of each layer.
    Weights,
    /// α·mean_x Σ_i h_i(x) over the free hidden units (see
    /// [`Partition::add_activation_penalty`](partition::Partition::add_activation_penalty)):
    /// silences whole units, which is what pruning by activity removes.
    #[default]
    Activations,
}

/// A finished task: which head it used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FinishedTask {
    /// Index in the stream.
    task: usize,
    /// First output row of its head.
    head_start: usize,
    /// One past its last output row.
    head_end: usize,
}

/// What [`NeuralPruning::save`] writes as metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    sizes: Vec<usize>,
    finished: Vec<FinishedTask>,
}

/// The method's state: the partition of the units, the finished tasks and the values the frozen
/// rows must keep.
pub struct NeuralPruning {
    alpha: f32,
    margin: f64,
    activity: Activity,
    penalty: Penalty,
    thresholds: Thresholds,
    retrain_epochs: usize,
    retrain_batch_size: usize,
    /// Network sizes; empty until `begin` (or `load`).
    sizes: Vec<usize>,
    partition: Partition,
    finished: Vec<FinishedTask>,
    /// Parameter values at the end of the last finished task; only frozen rows are read.
    frozen: Layers,
}

impl NeuralPruning {
    fn new(config: &ClnpConfig) -> Self {
        NeuralPruning {
            alpha: config.alpha as f32,
            margin: config.margin,
            activity: config.activity,
            penalty: config.penalty,
            thresholds: config.thresholds,
            retrain_epochs: config.retrain_epochs,
            retrain_batch_size: config.retrain_batch_size,
            sizes: Vec::new(),
            partition: Partition::default(),
            finished: Vec::new(),
            frozen: Layers { layers: Vec::new() },
        }
    }

    /// Sets up an empty partition for `net` (every unit free) if none exists yet.
    fn ensure_initialised(&mut self, net: &Mlp) {
        if self.sizes.is_empty() {
            self.sizes = net.sizes();
            self.partition = Partition::new(&self.sizes);
            self.frozen = net.params.clone();
        }
    }

    fn fail(message: String) -> MethodError {
        MethodError::Failed(format!("clnp: {message}"))
    }
}

impl ContinualMethod for NeuralPruning {
    fn begin(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        let sizes = cx.net.sizes();
        let width = sizes.last().copied().unwrap_or(0);
        if cx.tasks_total > 1 && cx.head.len() * cx.tasks_total != width {
            return Err(Self::fail(format!(
                "needs one output head per task (`network.heads: per_task`), but the network has \
                 {width} outputs for {} tasks with heads of {} outputs",
                cx.tasks_total,
                cx.head.len()
            )));
        }
        if cx.net.activation != Activation::Relu {
            return Err(Self::fail(format!(
                "needs ReLU hidden units (`network.activation: relu`), not `{}`: activity-based \
                 pruning relies on units that are exactly silent",
                cx.net.activation.name()
            )));
        }
        if !cx.task.train.is_empty() && matches!(cx.task.train.target(0), Target::Real(_)) {
            return Err(Self::fail(
                "needs a classification stream: its graceful-forgetting margin is an accuracy".into(),
            ));
        }
        self.sizes.clear();
        self.ensure_initialised(cx.net);
        Ok(())
    }

    fn task_started(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        self.ensure_initialised(cx.net);
        if let Some(f) =
            self.finished.iter().find(|f| f.head_start < cx.head.end && cx.head.start < f.head_end)
        {
            return Err(Self::fail(format!(
                "task {} uses output rows {}..{}, which task {} already used and froze; CLNP needs \
                 one head per task (`network.heads: per_task`; class-incremental split MNIST \
                 shares one head)",
                cx.task.index, cx.head.start, cx.head.end, f.task
            )));
        }
        if !self.finished.is_empty() {
            for l in 0..self.partition.hidden_layers() {
                let free: Vec<usize> = self.partition.free_units(l).collect();
                for unit in free {
                    cx.net.reinitialize_incoming(l, unit, cx.rng);
                    cx.optimizer.reset_incoming(l, unit);
                }
            }
            let output = self.sizes.len() - 2;
            for row in cx.head.clone() {
                cx.net.reinitialize_incoming(output, row, cx.rng);
                cx.optimizer.reset_incoming(output, row);
            }
        }
        let free = self.partition.free_counts();
        let full: Vec<usize> = free.iter().enumerate().filter(|(_, &f)| f == 0).map(|(l, _)| l).collect();
        if !full.is_empty() {
            cx.report.push(MethodPayload::ClnpNoFreeUnits(ClnpNoFreeUnits { free, full_layers: full }));
        }
        Ok(())
    }

    fn shape_gradients(&mut self, cx: &mut StepContext<'_>) {
        self.ensure_initialised(cx.net);
        match self.penalty {
            Penalty::Weights => self.partition.shape_gradients(cx.net, cx.grads, &cx.head, self.alpha),
            Penalty::Activations => {
                self.partition.add_activation_penalty(cx.grads, cx.workspace, self.alpha);
                self.partition.shape_gradients(cx.net, cx.grads, &cx.head, 0.0);
            }
        }
    }

    fn after_update(&mut self, cx: &mut StepContext<'_>) {
        if self.partition.any_frozen() {
            self.partition.restore(cx.net, &self.frozen);
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_>) -> Result<(), MethodError> {
        self.ensure_initialised(cx.net);
        let task = cx.task;
        let (split, measured_on) = match &task.validation {
            Some(v) if !v.is_empty() => (v, MeasuredOn::Validation),
            _ => (&task.train, MeasuredOn::Train),
        };
        let n = split.len();
        let head = cx.head.clone();
        let hidden = self.partition.hidden_layers();
        let baseline = cx.compute.evaluate(cx.net, split, head.clone(), None).correct;
        let activity = measure_activity(cx.compute, cx.net, split, self.activity);
        let candidates = self.partition.candidates(&activity);
        let allowed_loss = (self.margin * n as f64 + 1e-9).floor() as u64;
        let mut scratch = cx.net.clone();
        let net: &Mlp = cx.net;
        let compute = &mut *cx.compute;
        let choice =
            choose_thresholds(&candidates, hidden, baseline, allowed_loss, self.thresholds, |removed| {
                for (s, p) in scratch.params.buffers_mut().zip(net.params.buffers()) {
                    s.copy_from_slice(p);
                }
                remove_units(&mut scratch, removed);
                compute.evaluate(&scratch, split, head.clone(), None).correct
            });
        remove_units(cx.net, &choice.removed);
        let retrained = (self.retrain_epochs > 0).then(|| {
            retrain::retrain(
                cx,
                &self.partition,
                &self.frozen,
                &choice.removed,
                self.retrain_epochs,
                self.retrain_batch_size,
            );
            cx.compute.evaluate(cx.net, split, head.clone(), None).correct
        });

        // Units this task keeps join U; the ones pruned stay free.
        let (before, new) = self.partition.commit(cx.task.index, &candidates, &choice.removed, &head)?;
        self.finished.push(FinishedTask { task: cx.task.index, head_start: head.start, head_end: head.end });
        for (f, p) in self.frozen.buffers_mut().zip(cx.net.params.buffers()) {
            f.copy_from_slice(p);
        }
        let reached = reached_units(cx.net, &head);
        let correct = Correct { unpruned: baseline, retrained };
        cx.report.push(MethodPayload::ClnpCapacity(self.partition.capacity(
            &before,
            &new,
            &choice,
            &reached,
            &activity,
            self.activity,
            n,
            correct,
            measured_on,
        )));
        Ok(())
    }

    fn save(&self, state: &mut MethodState) {
        let meta = Meta { sizes: self.sizes.clone(), finished: self.finished.clone() };
        state.meta = serde_json::to_value(meta).expect("CLNP metadata always serialises");
        if self.sizes.is_empty() {
            return;
        }
        self.partition.save(state);
        state.put_layers("frozen", &self.frozen);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        let meta: Meta = serde_json::from_value(state.meta.clone())
            .map_err(|e| MethodError::State(format!("clnp metadata: {e}")))?;
        self.sizes = meta.sizes;
        self.finished = meta.finished;
        self.partition = Partition::load(&self.sizes, state)?;
        if self.sizes.is_empty() {
            return Ok(());
        }
        self.frozen = Layers::zeros(&self.sizes);
        state.read_layers_into("frozen", &mut self.frozen)
    }
}

/// The `clnp` kind.
pub struct Clnp;

impl MethodKind for Clnp {
    const NEEDS_TASK_BOUNDARIES: bool = true;
    const NEEDS_TASK_HEADS: bool = true;
    const KIND: &'static str = "clnp";
    const SUMMARY: &'static str =
        "continual learning via neural pruning: L1, prune low-activity units, freeze the rest (per-task heads)";
    type Config = ClnpConfig;
    fn check(c: &ClnpConfig) -> Result<(), String> {
        if !(c.alpha.is_finite() && c.alpha >= 0.0) {
            return Err(format!("`alpha` must be a number ≥ 0, not {}", c.alpha));
        }
        if !(c.margin.is_finite() && (0.0..=1.0).contains(&c.margin)) {
            return Err(format!(
                "`margin` must lie in [0, 1] (a fraction of the measured examples), not {}",
                c.margin
            ));
        }
        if c.retrain_batch_size == 0 {
            return Err("`retrain_batch_size` must be at least 1".into());
        }
        Ok(())
    }
    fn build(c: ClnpConfig, _: &OptimizerConfig) -> Box<dyn ContinualMethod> {
        Box::new(NeuralPruning::new(&c))
    }
    fn build_conv(c: ClnpConfig, _: &OptimizerConfig) -> Option<Box<dyn ContinualMethod<ConvNet>>> {
        Some(Box::new(conv::ConvNeuralPruning::new(&c)))
    }
}

#[cfg(test)]
mod conv_tests;
#[cfg(test)]
mod tests;
