//! The training loop of one run: through the stream, task by task, with evaluation, plasticity
//! probes, method hooks and checkpoints at deterministic points.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::schedule::{self, Cadence};
use super::sink::EventSink;
use super::Trainable;
use super::{RunControl, RunError};
use crate::method::{ContinualMethod, LearnerStep, Passes, StepContext, TaskContext};
use crate::model::BatchLoss;
use crate::optim::Optimizer;
use crate::protocol::{EventBody, Heads, RunSpec};
use crate::rng::{self, Rng};
use crate::stream::{augment_batch, Problem, StreamInfo, Task, TaskStream};

/// Where a run is in its stream. Checkpoints are taken only between optimiser steps, so this
/// (with the counters) is the whole position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// Task being trained (or about to start).
    pub task: usize,
    /// Pass over the task's training split.
    pub epoch: usize,
    /// Batches of the current pass already trained.
    pub batch: usize,
    /// Whether the task's start (event and method hook) has happened.
    pub task_begun: bool,
}

/// The online bin being filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct OnlineBin {
    /// Bin index within the current task.
    pub index: usize,
    /// Sum of per-example losses in the bin.
    pub loss_sum: f64,
    /// Correct predictions in the bin.
    pub correct: u64,
    /// Examples in the bin.
    pub examples: u64,
}

/// Counters of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// Optimiser steps taken.
    pub steps: u64,
    /// Training examples seen.
    pub examples: u64,
}

/// How a run ended: it finished its stream, or stopped at a checkpoint on request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The stream is done; `finished` was emitted.
    Finished,
    /// A stop was requested; the state was checkpointed to this file and the run can resume.
    Interrupted {
        /// The checkpoint written on the way out (absent without a run folder).
        checkpoint: Option<PathBuf>,
    },
}

/// Everything a run holds while it trains a network of family `M`.
pub(crate) struct Trainer<'a, M: Trainable> {
    pub spec: &'a RunSpec,
    pub stream: Box<dyn TaskStream>,
    pub info: StreamInfo,
    pub net: M,
    pub optimizer: Optimizer<M::Params>,
    pub method: Box<dyn ContinualMethod<M>>,
    pub method_rng: Rng,
    pub compute: M::Compute,
    pub sink: EventSink,
    pub cadence: Cadence,
    pub batch_size: usize,
    pub epochs: usize,
    pub position: Position,
    pub counters: Counters,
    pub bin: OnlineBin,
    pub control: &'a RunControl,
}

/// Whether every task has its own head.
pub(crate) fn per_task_heads(spec: &RunSpec, info: &StreamInfo) -> bool {
    info.head_per_task || spec.network.heads == Heads::PerTask
}

impl<M: Trainable> Trainer<'_, M> {
    /// Whether every task has its own head.
    pub fn per_task_heads(spec: &RunSpec, info: &StreamInfo) -> bool {
        per_task_heads(spec, info)
    }

    /// The output columns task `task` reads: its head, or the head's first
    /// [`Task::active_outputs`] when the stream's output grows (class-incremental CIFAR-100).
    /// Leaving the inactive logits out of the softmax is the same as masking them with −∞, as
    /// the loss-of-plasticity code does, at training and at evaluation time; a task is always
    /// evaluated over its own active outputs.
    pub fn head(&self, task: &Task) -> Range<usize> {
        let h = self.info.head_outputs;
        let index = if Self::per_task_heads(self.spec, &self.info) { task.train.head() } else { 0 };
        let active = task.active_outputs.map_or(h, |a| a.min(h));
        index * h..index * h + active
    }

    /// Task `t` as the learner trains on it: with `training.validation` examples moved from
    /// the training split into a validation split (a seeded sample, the same for every method).
    pub fn training_task(&self, t: usize) -> Task {
        let mut task = self.stream.task(t);
        let wanted = self.spec.training.validation;
        let n = task.train.len();
        if wanted > 0 && n > 1 {
            let held = wanted.min(n - 1);
            let mut r = rng::stream(self.spec.seed, "train.validation", t as u64);
            let mut order = rand::seq::index::sample(&mut r, n, n).into_vec();
            let rest = order.split_off(held);
            order.sort_unstable();
            let mut rest = rest;
            rest.sort_unstable();
            task.validation = Some(task.train.subset(&order));
            task.train = task.train.subset(&rest);
        }
        task
    }

    fn emit(&mut self, body: EventBody) -> Result<(), RunError> {
        self.sink.emit(body).map_err(RunError::Output)
    }

    /// The events of a fresh run before its first task: `started`, the untrained network's
    /// accuracy on every task (b_j) and its plasticity.
    pub fn begin(&mut self) -> Result<(), RunError> {
        let tasks = self.info.tasks;
        self.emit(EventBody::Started {
            protocol: crate::protocol::PROTOCOL_VERSION,
            tasks,
            inputs: self.info.inputs,
            outputs: self.net.outputs(),
            heads: if Self::per_task_heads(self.spec, &self.info) { tasks } else { 1 },
            parameters: self.net.parameter_count(),
            problem: match self.info.problem {
                Problem::Classification => "classification".into(),
                Problem::Regression => "regression".into(),
            },
        })?;
        let first = self.training_task(0);
        let head = self.head(&first);
        let mut report = Vec::new();
        self.method
            .begin(&mut TaskContext {
                task: &first,
                head,
                tasks_total: tasks,
                net: &mut self.net,
                optimizer: &mut self.optimizer,
                rng: &mut self.method_rng,
                compute: &mut self.compute,
                report: &mut report,
            })
            .map_err(RunError::Method)?;
        if self.spec.eval.before_training {
            for j in 0..tasks {
                self.evaluate(None, j)?;
            }
        }
        if schedule::measures_plasticity(&self.spec.eval, 0, tasks) {
            self.measure_plasticity(0)?;
        }
        Ok(())
    }

    /// Trains from the current position to the end of the stream, or until a stop request.
    pub fn run(&mut self) -> Result<RunOutcome, RunError> {
        let tasks = self.info.tasks;
        while self.position.task < tasks {
            let t = self.position.task;
            let task = self.training_task(t);
            let head = self.head(&task);
            self.control.task.store(t, Ordering::Relaxed);
            if !self.position.task_begun {
                self.emit(EventBody::TaskStarted {
                    task: t,
                    head: head.start / self.info.head_outputs.max(1),
                    train_examples: task.train.len(),
                })?;
                self.task_hook(&task, head.clone(), true)?;
                self.position.task_begun = true;
                self.bin = OnlineBin::default();
            }
            if let Some(outcome) = self.train_task(&task, head.clone())? {
                return Ok(outcome);
            }
            self.flush_bin(t)?;
            self.task_hook(&task, head, false)?;
            if schedule::evaluates_after(&self.spec.eval, t, tasks) {
                for j in schedule::tasks_evaluated_after(&self.spec.eval, t, tasks, self.spec.seed) {
                    self.evaluate(Some(t), j)?;
                }
            }
            if schedule::measures_plasticity(&self.spec.eval, t + 1, tasks) {
                self.measure_plasticity(t + 1)?;
            }
            self.position = Position { task: t + 1, ..Position::default() };
            if t + 1 < tasks && (t + 1).is_multiple_of(self.cadence.every_tasks) {
                self.checkpoint(true)?;
            }
            if t + 1 < tasks && self.control.should_stop(self.counters.steps) {
                return Ok(RunOutcome::Interrupted { checkpoint: self.checkpoint(false)? });
            }
        }
        self.emit(EventBody::Finished {
            tasks,
            steps: self.counters.steps,
            examples: self.counters.examples,
        })?;
        self.sink.sync().map_err(RunError::Output)?;
        Ok(RunOutcome::Finished)
    }

    /// Calls the method's task hook — unless the stream is online, whose learner is not told
    /// where tasks begin and end.
    fn task_hook(&mut self, task: &Task, head: Range<usize>, start: bool) -> Result<(), RunError> {
        if self.info.online {
            return Ok(());
        }
        let mut report = Vec::new();
        let mut cx = TaskContext {
            task,
            head,
            tasks_total: self.info.tasks,
            net: &mut self.net,
            optimizer: &mut self.optimizer,
            rng: &mut self.method_rng,
            compute: &mut self.compute,
            report: &mut report,
        };
        let result =
            if start { self.method.task_started(&mut cx) } else { self.method.task_finished(&mut cx) };
        result.map_err(RunError::Method)?;
        for payload in report {
            self.emit(EventBody::Method { task: task.index, payload })?;
        }
        Ok(())
    }

    /// Trains the passes of one task from the current position. Returns an outcome when the
    /// run stops early.
    fn train_task(&mut self, task: &Task, head: Range<usize>) -> Result<Option<RunOutcome>, RunError> {
        let n = task.train.len();
        let batch = self.batch_size.min(n.max(1));
        let batches = n.div_ceil(batch);
        let bin_size = self.spec.eval.online_bin.unwrap_or((n * self.epochs) as u64).max(1);
        let mut order: Vec<usize> = Vec::with_capacity(n);
        while self.position.epoch < self.epochs {
            order.clear();
            order.extend(0..n);
            if !self.info.online {
                let pass = (task.index * self.epochs + self.position.epoch) as u64;
                order.shuffle(&mut rng::stream(self.spec.seed, "train.order", pass));
            }
            while self.position.batch < batches {
                let start = self.position.batch * batch;
                let indices = &order[start..(start + batch).min(n)];
                let totals = self.step(task, indices, start, head.clone())?;
                self.position.batch += 1;
                self.record_online(task.index, totals, bin_size)?;
                if self.counters.steps.is_multiple_of(self.cadence.every_steps) {
                    self.checkpoint(true)?;
                }
                if self.control.should_stop(self.counters.steps) {
                    return Ok(Some(RunOutcome::Interrupted { checkpoint: self.checkpoint(false)? }));
                }
            }
            self.position.epoch += 1;
            self.position.batch = 0;
        }
        Ok(None)
    }

    /// One optimiser step on examples `indices` of the task's training split, the first at
    /// position `first` of this epoch's order (what an image stream's augmentation is drawn from,
    /// so a resumed run draws the same crops and flips).
    fn step(
        &mut self,
        task: &Task,
        indices: &[usize],
        first: usize,
        head: Range<usize>,
    ) -> Result<BatchLoss, RunError> {
        self.compute.load_batch(&task.train, indices);
        if let Some(augment) = self.info.augment {
            let (seed, epoch, shape) = (self.spec.seed, self.position.epoch, self.info.input_shape);
            augment_batch(&augment, shape, seed, task.index, epoch, first, self.compute.input_mut());
        }
        if let Some(learner) = self.method.learner() {
            // A method with its own model trains it itself (see `method::Learner`).
            let (workspace, targets) = self.compute.batch_parts();
            let totals = learner
                .train_step(&mut LearnerStep {
                    net: &mut self.net,
                    optimizer: &mut self.optimizer,
                    rng: &mut self.method_rng,
                    workspace,
                    targets,
                    head,
                    task: task.index,
                    step: self.counters.steps,
                })
                .map_err(RunError::Method)?;
            if !totals.loss_sum.is_finite() {
                return Err(RunError::Diverged { task: task.index, step: self.counters.steps });
            }
            return Ok(self.count_step(indices, totals));
        }
        let method = &mut self.method;
        let totals = self
            .compute
            .train_pass(&mut self.net, head.clone(), task.index, |cx| method.output_gradient(cx))
            .map_err(|e| {
                RunError::Spec(format!("network, at task {}, step {}: {e}", task.index, self.counters.steps))
            })?;
        if !totals.loss_sum.is_finite() {
            return Err(RunError::Diverged { task: task.index, step: self.counters.steps });
        }
        let (grads, workspace) = self.compute.step_parts();
        let mut cx = StepContext {
            net: &mut self.net,
            grads,
            workspace,
            optimizer: &mut self.optimizer,
            rng: &mut self.method_rng,
            task: task.index,
            head,
            step: self.counters.steps,
        };
        method.shape_gradients(&mut cx);
        method.update(&mut cx);
        method.after_update(&mut cx);
        Ok(self.count_step(indices, totals))
    }

    fn count_step(&mut self, indices: &[usize], totals: BatchLoss) -> BatchLoss {
        self.counters.steps += 1;
        self.counters.examples += indices.len() as u64;
        self.control.steps.store(self.counters.steps, Ordering::Relaxed);
        totals
    }

    fn record_online(&mut self, task: usize, totals: BatchLoss, bin_size: u64) -> Result<(), RunError> {
        self.bin.loss_sum += totals.loss_sum;
        self.bin.correct += totals.correct;
        self.bin.examples += totals.examples;
        if self.bin.examples >= bin_size {
            self.flush_bin(task)?;
        }
        Ok(())
    }

    fn flush_bin(&mut self, task: usize) -> Result<(), RunError> {
        if self.bin.examples == 0 {
            return Ok(());
        }
        let b = self.bin;
        self.emit(EventBody::Online {
            task,
            bin: b.index,
            examples: b.examples,
            loss: b.loss_sum / b.examples as f64,
            accuracy: (self.info.problem == Problem::Classification)
                .then(|| b.correct as f64 / b.examples as f64),
        })?;
        self.bin = OnlineBin { index: b.index + 1, ..OnlineBin::default() };
        Ok(())
    }

    /// Emits R\[after\]\[on\] (or b_on when `after` is `None`), then the same entry for
    /// every variant of a method's own model (rollbacks, compositions; see `method::Learner`).
    fn evaluate(&mut self, after: Option<usize>, on: usize) -> Result<(), RunError> {
        let task = self.stream.task(on);
        let head = self.head(&task);
        let max = self.spec.eval.max_examples;
        let variants = self.method.learner().map(|l| l.variants()).unwrap_or_default();
        for variant in std::iter::once(None).chain(variants.into_iter().map(Some)) {
            let totals = match self.method.learner() {
                Some(learner) => self
                    .compute
                    .evaluate_by(&self.net, &task.test, head.clone(), max, |net, ws| {
                        learner.forward(variant.as_deref(), net, ws)
                    })
                    .map_err(RunError::Method)?,
                None => self.compute.evaluate_net(&self.net, &task.test, head.clone(), max),
            };
            self.emit(EventBody::Eval {
                after_task: after,
                on_task: on,
                examples: totals.examples as usize,
                loss: totals.mean_loss(),
                accuracy: (self.info.problem == Problem::Classification).then(|| totals.accuracy()),
                variant,
            })?;
        }
        Ok(())
    }

    fn measure_plasticity(&mut self, after_tasks: usize) -> Result<(), RunError> {
        let probe_task = after_tasks.min(self.info.tasks - 1);
        let task = self.stream.task(probe_task);
        let learner = self.method.learner();
        let body = M::plasticity(
            &mut self.compute,
            &self.net,
            learner,
            &task,
            &self.spec.eval.plasticity,
            self.spec.seed,
            after_tasks,
        )?;
        self.emit(body)
    }

    /// Writes a checkpoint of the current state. `announce` checkpoints are part of the run's
    /// schedule and emit a `checkpoint` event; a checkpoint on a stop request is not, so the
    /// event stream of an interrupted and resumed run equals an uninterrupted one.
    pub fn checkpoint(&mut self, announce: bool) -> Result<Option<PathBuf>, RunError> {
        let Some(dir) = self.spec.run_dir.clone() else { return Ok(None) };
        self.sink.sync().map_err(RunError::Output)?;
        let (file, checksum) = super::snapshot::write(self, &dir, announce)?;
        if announce {
            self.emit(EventBody::Checkpoint {
                tasks_done: self.position.task,
                step: self.counters.steps,
                file: file.clone(),
                checksum,
            })?;
        }
        Ok(Some(dir.join(file)))
    }
}
