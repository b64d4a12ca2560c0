//! `clnp` on convolutional networks: the same algorithm as the MLP version (see the parent
//! module), with the output channels of convolutions — filters — as units besides the units of
//! hidden linear layers. Zero forgetting holds bitwise here too: an earlier task's outputs are
//! computed from frozen rows only, and the free→used kernels they could read are zero.
//!
//! What the model family changes, and nothing else (see [`conv_units`](super::conv_units) for
//! which weights belong to a unit):
//! - **Units** are the output channels of every `conv2d` and the units of every hidden
//!   `linear` layer, each followed directly by a `relu`; the last layer must be `linear` (the
//!   per-task heads). Pruning removes a whole filter: its kernels, its bias and the kernels
//!   (or, at the conv→linear boundary, the linear columns of its flattened plane) it feeds.
//! - **Activity** of a channel on an example is the mean of its ReLU output over the feature
//!   map (`mean_activation`) or the fraction of positions where it is positive (`firing_rate`);
//!   averaged over the measured examples as for an MLP unit.
//! - **The activation penalty** is α·mean_x Σ_i mean_p h_i(x, p): a channel's term is its mean
//!   over the map, so its local gradient is the input patches of the positions where it fires,
//!   scaled by α/(B·P).
//! - **Refused networks**: `batch_norm` and `basic_block` layers, at `begin`. A used channel's
//!   output after batch norm depends on running statistics that every later task's batches
//!   move, and a residual block adds its input (free channels of later tasks included) into its
//!   output, so freezing rows would no longer fix what an earlier task computes; supporting
//!   them (frozen per-channel statistics, masked shortcuts) is not done.
//! - **Re-initialisation** of free filters at a task's start draws from the conv net's initial
//!   distribution, PyTorch's U(±1/√fan_in), with bias 0.
//! - **Heads** may be narrower than their share of the output layer (a growing head with
//!   `network.heads: per_task`); the MLP version requires equal shares. Overlapping heads are
//!   refused at the task that reuses a frozen row.
//! - **Checkpoints** store the frozen snapshot's tensors; `load` has no network, so they are
//!   put into the trained network's structure when the method first sees it.

use serde::{Deserialize, Serialize};

use super::conv_units::Units;
use super::partition::{Correct, Partition};
use super::pruning::{choose_thresholds, Activity, Thresholds};
use super::{ClnpConfig, FinishedTask, Penalty};
use crate::method::conv_state::SavedConvNet;
use crate::method::{ContinualMethod, MethodError, MethodState, Passes, StepContext, TaskContext};
use crate::model::convnet::ConvNet;
use crate::protocol::payload::{ClnpNoFreeUnits, MeasuredOn, MethodPayload};
use crate::stream::Target;

/// What [`ConvNeuralPruning::save`] writes as metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    /// Input length, units per hidden unit layer, outputs; empty before `begin`.
    sizes: Vec<usize>,
    finished: Vec<FinishedTask>,
    /// Names of the frozen snapshot's tensors.
    frozen: Vec<String>,
}

/// CLNP's state on a conv net: the partition of the units, the finished tasks and the values
/// the frozen rows keep.
pub(crate) struct ConvNeuralPruning {
    alpha: f32,
    margin: f64,
    activity: Activity,
    penalty: Penalty,
    thresholds: Thresholds,
    retrain_epochs: usize,
    retrain_batch_size: usize,
    /// Sizes as in [`Meta::sizes`]; empty until `begin` (or `load`).
    sizes: Vec<usize>,
    units: Option<Units>,
    partition: Partition,
    finished: Vec<FinishedTask>,
    /// Parameter values at the end of the last finished task; only frozen rows are read.
    frozen: Option<ConvNet>,
    /// The snapshot as a checkpoint holds it, until the network is at hand.
    restored: Option<SavedConvNet>,
    /// Why the restored snapshot did not fit the network, reported at the next task boundary.
    failure: Option<String>,
}

fn fail(message: String) -> MethodError {
    MethodError::Failed(format!("clnp: {message}"))
}

impl ConvNeuralPruning {
    /// A fresh method with `config`'s hyper-parameters.
    pub(crate) fn new(config: &ClnpConfig) -> Self {
        ConvNeuralPruning {
            alpha: config.alpha as f32,
            margin: config.margin,
            activity: config.activity,
            penalty: config.penalty,
            thresholds: config.thresholds,
            retrain_epochs: config.retrain_epochs,
            retrain_batch_size: config.retrain_batch_size,
            sizes: Vec::new(),
            units: None,
            partition: Partition::default(),
            finished: Vec::new(),
            frozen: None,
            restored: None,
            failure: None,
        }
    }

    /// Finds the unit layers of `net` and, the first time, sets up an empty partition and the
    /// snapshot; puts a restored snapshot into `net`'s structure.
    fn ensure_initialised(&mut self, net: &ConvNet) -> Result<(), MethodError> {
        if self.units.is_none() {
            let units = Units::of(net).map_err(fail)?;
            let sizes = units.sizes(net);
            if self.sizes.is_empty() {
                self.sizes.clone_from(&sizes);
                self.partition = Partition::new(&sizes);
            } else if self.sizes != sizes {
                return Err(MethodError::State(format!(
                    "clnp: the checkpoint's partition is of sizes {:?}, the network's are {sizes:?}",
                    self.sizes
                )));
            }
            self.units = Some(units);
        }
        if let Some(restored) = self.restored.take() {
            match restored.to_net(net) {
                Ok(frozen) => self.frozen = Some(frozen),
                Err(why) => self.failure = Some(why),
            }
        }
        if self.frozen.is_none() {
            self.frozen = Some(net.clone());
        }
        match self.failure.take() {
            Some(why) => Err(MethodError::State(format!("clnp: {why}"))),
            None => Ok(()),
        }
    }
}

impl ContinualMethod<ConvNet> for ConvNeuralPruning {
    fn begin(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        let width = cx.net.outputs();
        // A head may be narrower than its share (a growing head, as class-incremental CIFAR-100's
        // with per-task heads: task t reads the first outputs of its share); heads that overlap
        // are caught at `task_started`.
        if cx.tasks_total > 1 && cx.head.len() * cx.tasks_total > width {
            return Err(fail(format!(
                "needs one output head per task (`network.heads: per_task`), but the network has \
                 {width} outputs for {} tasks with heads of {} outputs",
                cx.tasks_total,
                cx.head.len()
            )));
        }
        if !cx.task.train.is_empty() && matches!(cx.task.train.target(0), Target::Real(_)) {
            return Err(fail(
                "needs a classification stream: its graceful-forgetting margin is an accuracy".into(),
            ));
        }
        self.sizes.clear();
        self.units = None;
        self.frozen = None;
        self.ensure_initialised(cx.net)
    }

    fn task_started(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        self.ensure_initialised(cx.net)?;
        if let Some(f) =
            self.finished.iter().find(|f| f.head_start < cx.head.end && cx.head.start < f.head_end)
        {
            return Err(fail(format!(
                "task {} uses output rows {}..{}, which task {} already used and froze; CLNP needs \
                 one head per task (`network.heads: per_task`)",
                cx.task.index, cx.head.start, cx.head.end, f.task
            )));
        }
        let units = self.units.as_ref().expect("initialised");
        if !self.finished.is_empty() {
            for (h, u) in units.hidden.iter().enumerate() {
                for unit in self.partition.free_units(h).collect::<Vec<_>>() {
                    Units::reinitialise(cx.net, cx.optimizer, u.layer, unit, cx.rng);
                }
            }
            for row in cx.head.clone() {
                Units::reinitialise(cx.net, cx.optimizer, units.output, row, cx.rng);
            }
        }
        let free = self.partition.free_counts();
        let full: Vec<usize> = free.iter().enumerate().filter(|(_, &f)| f == 0).map(|(l, _)| l).collect();
        if !full.is_empty() {
            cx.report.push(MethodPayload::ClnpNoFreeUnits(ClnpNoFreeUnits { free, full_layers: full }));
        }
        Ok(())
    }

    fn shape_gradients(&mut self, cx: &mut StepContext<'_, ConvNet>) {
        if self.ensure_initialised(cx.net).is_err() {
            // Reported at the next task boundary; train nothing meanwhile.
            cx.grads.clear();
            return;
        }
        let units = self.units.as_ref().expect("initialised");
        match self.penalty {
            Penalty::Weights => {
                units.shape_gradients(&self.partition, cx.net, cx.grads, &cx.head, self.alpha)
            }
            Penalty::Activations => {
                units.add_activation_penalty(&self.partition, cx.net, cx.grads, cx.workspace, self.alpha);
                units.shape_gradients(&self.partition, cx.net, cx.grads, &cx.head, 0.0);
            }
        }
    }

    fn after_update(&mut self, cx: &mut StepContext<'_, ConvNet>) {
        if let (Some(units), Some(frozen)) = (&self.units, &self.frozen) {
            if self.partition.any_frozen() {
                units.restore(&self.partition, cx.net, frozen);
            }
        }
    }

    fn task_finished(&mut self, cx: &mut TaskContext<'_, ConvNet>) -> Result<(), MethodError> {
        self.ensure_initialised(cx.net)?;
        let units = self.units.clone().expect("initialised");
        let task = cx.task;
        let (split, measured_on) = match &task.validation {
            Some(v) if !v.is_empty() => (v, MeasuredOn::Validation),
            _ => (&task.train, MeasuredOn::Train),
        };
        let n = split.len();
        let head = cx.head.clone();
        let hidden = units.hidden.len();
        let baseline = cx.compute.evaluate_net(cx.net, split, head.clone(), None).correct;
        let activity = units.measure_activity(cx.compute, cx.net, split, self.activity);
        let candidates = self.partition.candidates(&activity);
        let allowed_loss = (self.margin * n as f64 + 1e-9).floor() as u64;
        let mut scratch = cx.net.clone();
        let net: &ConvNet = cx.net;
        let compute = &mut *cx.compute;
        let choice =
            choose_thresholds(&candidates, hidden, baseline, allowed_loss, self.thresholds, |removed| {
                scratch.clone_from(net);
                units.remove(&mut scratch, removed);
                compute.evaluate_net(&scratch, split, head.clone(), None).correct
            });
        units.remove(cx.net, &choice.removed);
        let retrained = if self.retrain_epochs > 0 {
            self.retrain(cx, &units, &choice.removed)?;
            Some(cx.compute.evaluate_net(cx.net, split, head.clone(), None).correct)
        } else {
            None
        };

        let (before, new) = self.partition.commit(cx.task.index, &candidates, &choice.removed, &head)?;
        self.finished.push(FinishedTask { task: cx.task.index, head_start: head.start, head_end: head.end });
        self.frozen = Some(cx.net.clone());
        let reached = units.reached(cx.net, &head);
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
        let frozen = match (&self.frozen, &self.restored) {
            (Some(frozen), _) => SavedConvNet::save(state, "frozen", frozen),
            (None, Some(restored)) => restored.save_again(state, "frozen"),
            (None, None) => Vec::new(),
        };
        let meta = Meta { sizes: self.sizes.clone(), finished: self.finished.clone(), frozen };
        state.meta = serde_json::to_value(meta).expect("CLNP metadata always serialises");
        if self.sizes.is_empty() {
            return;
        }
        self.partition.save(state);
    }

    fn load(&mut self, state: &MethodState) -> Result<(), MethodError> {
        let meta: Meta = serde_json::from_value(state.meta.clone())
            .map_err(|e| MethodError::State(format!("clnp metadata: {e}")))?;
        self.sizes = meta.sizes;
        self.finished = meta.finished;
        self.units = None;
        self.frozen = None;
        self.failure = None;
        self.restored = (!meta.frozen.is_empty())
            .then(|| SavedConvNet::read(state, "frozen", meta.frozen))
            .transpose()?;
        self.partition = Partition::load(&self.sizes, state)?;
        Ok(())
    }
}

impl ConvNeuralPruning {
    /// Retraining after pruning, as the MLP version's [`retrain`](super::retrain): plain
    /// cross-entropy epochs on the task's training data, frozen rows masked and restored, the
    /// pruned units' gradients masked and their weights zeroed again after every step.
    fn retrain(
        &self,
        cx: &mut TaskContext<'_, ConvNet>,
        units: &Units,
        removed: &[Vec<usize>],
    ) -> Result<(), MethodError> {
        use rand::seq::SliceRandom;
        let train = &cx.task.train;
        let n = train.len();
        if n == 0 {
            return Ok(());
        }
        let frozen = self.frozen.as_ref().expect("initialised");
        let mut order: Vec<usize> = (0..n).collect();
        for _ in 0..self.retrain_epochs {
            order.shuffle(cx.rng);
            for batch in order.chunks(self.retrain_batch_size.max(1)) {
                cx.compute.load_batch(train, batch);
                cx.compute.train_pass(cx.net, cx.head.clone(), cx.task.index, |_| {}).map_err(fail)?;
                let (grads, _) = cx.compute.step_parts();
                units.shape_gradients(&self.partition, cx.net, grads, &cx.head, 0.0);
                units.remove(grads, removed);
                cx.optimizer.step_parameters(cx.net, grads);
                if self.partition.any_frozen() {
                    units.restore(&self.partition, cx.net, frozen);
                }
                units.remove(cx.net, removed);
            }
        }
        Ok(())
    }
}
