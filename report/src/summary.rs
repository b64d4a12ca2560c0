//! One run's numbers, computed from its stored events in a single pass.
//!
//! * ACC, BWT, FWT and forgetting come from the accuracy matrix built from `eval` events
//!   (`after_task: None` → b_j, else R\[i\]\[j\]) through [`AccuracyMatrix`]. They are null for
//!   regression (no accuracy) and where [`AccuracyMatrix`] says they are undefined (one task);
//!   a missing entry makes the metric null and flags the run with the entry's name.
//! * Online metrics come from `online` events: per task the accuracy of its last bin (highest
//!   `bin`) and the example-weighted mean loss over its bins. Final = the last task's; mean
//!   accuracy = mean over tasks; mean loss = example-weighted over the stream. A stream with
//!   some tasks lacking online bins has null online metrics and is flagged.
//! * Plasticity metrics come from the first and last `plasticity` events: dead fraction and
//!   effective rank averaged over hidden layers, and the event's mean |w|; changes are last
//!   minus first and need two events.
//!
//! * The series for plots ([`RunSeries`]) keep each task's online accuracy and loss, every
//!   plasticity measurement, every `clnp.capacity` report and, for regression streams only
//!   (whose error is plotted bin by bin), every online bin.
//!
//! Metrics are computed for finished runs only; other runs show their status and no numbers
//! (their series are kept, the plots use finished runs only). Memory per run is
//! O(T + evaluations + measurements), plus the online bins of a regression stream.

use metrics::{AccuracyMatrix, MetricError};
use protocol::{Event, EventBody, MethodPayload};

use super::decode::{self, Decoded};
use super::metric::Metric;
use super::series::{CapacityPoint, OnlineBin, PlasticityPoint, RunSeries, SeriesPoint};
use results::{RunLabels, RunRecord, RunStatus};

/// One entry of the accuracy matrix as measured: a row of the long per-task table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalRow {
    /// i of R\[i\]\[j\]; `None` for the untrained network (b_j).
    pub after_task: Option<usize>,
    /// j of R\[i\]\[j\].
    pub on_task: usize,
    /// Accuracy, absent for regression.
    pub accuracy: Option<f64>,
    /// Mean loss.
    pub loss: f64,
}

/// One run as the report sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The experiment the run belongs to (its name, or a name that tells it apart in a
    /// comparison of several experiments; see [`Report::compare`](super::Report::compare)).
    pub experiment: String,
    /// Position in the recipe's expansion.
    pub order: u64,
    /// Table labels.
    pub labels: RunLabels,
    /// The method's parameters as resolved in the run's spec, fixed and gridded, plus any
    /// other axis of the run's grid point (a sweep over a key outside the method): the
    /// `param.*` columns of the machine tables.
    pub params: crate::params::Params,
    /// Status when the report was made.
    pub status: RunStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Tasks in the stream.
    pub tasks: usize,
    /// Whether the stream is a regression problem (from the `started` event, else the spec).
    pub regression: bool,
    /// Metric values, indexed by [`Metric::index`]; `None` when undefined or not measured.
    pub values: [Option<f64>; Metric::ALL.len()],
    /// Why metrics that should exist are null (missing matrix entries, tasks without online
    /// bins, non-finite numbers). Non-empty means the run is flagged.
    pub flags: Vec<String>,
    /// The accuracy-matrix entries as measured, in event order.
    pub evals: Vec<EvalRow>,
    /// The measurements over the stream, for plots.
    pub series: RunSeries,
}

impl RunSummary {
    /// The value of `metric`, if defined.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        self.values[metric.index()]
    }

    /// Whether some metric that should exist is missing.
    pub fn flagged(&self) -> bool {
        !self.flags.is_empty()
    }

    /// Whether this is a model variant of a run (a weight field's rollback or composition,
    /// id `run#variant`), not a run of its own.
    pub fn is_variant(&self) -> bool {
        self.id.contains('#')
    }

    /// Whether the run counts in group statistics.
    pub fn finished(&self) -> bool {
        self.status == RunStatus::Finished
    }
}

/// A run's parameters for the `param.*` columns: its spec's method parameters, and every axis
/// of its grid point that is not one of them (an axis outside the method, such as
/// `training.batch_size`, labels the run too).
fn run_params(record: &RunRecord) -> crate::params::Params {
    let mut params = record.spec.method.params.clone();
    for (axis, value) in &record.labels.grid {
        params.entry(axis.clone()).or_insert_with(|| value.clone());
    }
    params
}

/// Per-task online accumulators.
#[derive(Clone, Copy, Default)]
struct OnlineTask {
    last_bin: Option<usize>,
    last_accuracy: Option<f64>,
    loss_sum: f64,
    examples: u64,
}

/// Folds a run's events into its summary; see the module docs for the definitions.
pub(crate) struct Summarizer {
    tasks: usize,
    regression: bool,
    evals: Vec<EvalRow>,
    online: Vec<OnlineTask>,
    stream_loss_sum: f64,
    stream_examples: u64,
    plasticity: Vec<PlasticityPoint>,
    online_bins: Vec<OnlineBin>,
    capacity: Vec<CapacityPoint>,
    /// `online` events for tasks beyond the stream (flagged once, not per event).
    online_out_of_range: u64,
    flags: Vec<String>,
    /// Evaluations of other versions of the model (weight fields' rollbacks and compositions),
    /// by variant label; each becomes an extra row of the report.
    variants: std::collections::BTreeMap<String, Vec<EvalRow>>,
    /// Every measured value, when the series export was asked for ([`Summarizer::with_points`]).
    points: Option<Vec<SeriesPoint>>,
}

impl Summarizer {
    pub(crate) fn new(record: &RunRecord) -> Self {
        let tasks = record.progress.tasks;
        Summarizer {
            tasks,
            regression: record.spec.stream.kind == "slowly_changing_regression",
            evals: Vec::new(),
            online: vec![OnlineTask::default(); tasks],
            stream_loss_sum: 0.0,
            stream_examples: 0,
            plasticity: Vec::new(),
            online_bins: Vec::new(),
            capacity: Vec::new(),
            online_out_of_range: 0,
            flags: Vec::new(),
            variants: std::collections::BTreeMap::new(),
            points: None,
        }
    }

    /// Also keeps every measured value in long format (the series export).
    pub(crate) fn with_points(mut self, keep: bool) -> Self {
        self.points = keep.then(Vec::new);
        self
    }

    pub(crate) fn add(&mut self, event: &Event) {
        match &event.body {
            EventBody::Started { tasks, problem, .. } => {
                self.regression = problem == "regression";
                if *tasks != self.tasks {
                    self.flags.push(format!("the started event says {tasks} tasks, the spec {}", self.tasks));
                }
            }
            EventBody::Eval { after_task, on_task, loss, accuracy, variant: Some(variant), .. } => {
                if let Some(points) = &mut self.points {
                    SeriesPoint::eval(points, (*after_task, *on_task), *loss, *accuracy, Some(variant));
                }
                self.variants.entry(variant.clone()).or_default().push(EvalRow {
                    after_task: *after_task,
                    on_task: *on_task,
                    accuracy: *accuracy,
                    loss: *loss,
                })
            }
            EventBody::Eval { after_task, on_task, loss, accuracy, variant: None, .. } => {
                self.eval(*after_task, *on_task, *loss, *accuracy)
            }
            EventBody::Online { task, bin, examples, loss, accuracy } => {
                self.online(*task, *bin, *examples, *loss, *accuracy)
            }
            EventBody::Plasticity { after_tasks, layers, mean_abs_weight, .. } => {
                if let Some(points) = &mut self.points {
                    SeriesPoint::plasticity(points, *after_tasks, layers, *mean_abs_weight);
                }
                self.plasticity.push(PlasticityPoint::of(*after_tasks, layers, *mean_abs_weight));
            }
            EventBody::Method { task, payload } => {
                if let Some(points) = &mut self.points {
                    match serde_json::to_value(payload) {
                        Ok(value) => SeriesPoint::method(points, *task, &value),
                        Err(e) => self.flags.push(format!("a method event could not be re-encoded: {e}")),
                    }
                }
                if let MethodPayload::ClnpCapacity(capacity) = payload {
                    self.capacity.push(CapacityPoint::of(*task, capacity))
                }
                if let MethodPayload::NiwfCommit(commit) = payload {
                    if commit.overlap > 0.0 {
                        let region = commit
                            .overlap_region
                            .map_or_else(|| "an earlier region".to_string(), |r| format!("region {r}"));
                        // The hard lock (no functional lock, `lock_before` null) silences new
                        // capacity inside committed regions: those examples learnt nothing.
                        let learnt = if commit.lock_before.is_none() { ", nothing learnt" } else { "" };
                        self.flags.push(format!(
                            "task {}: {:.0}% of its examples inside {region}{learnt}",
                            commit.task,
                            commit.overlap * 100.0
                        ));
                    }
                }
            }
            EventBody::Scalar { task, name, value, .. } => {
                if let Some(points) = &mut self.points {
                    points.push(SeriesPoint::scalar(*task, name, *value));
                }
            }
            EventBody::TaskStarted { .. }
            | EventBody::Checkpoint { .. }
            | EventBody::Finished { .. }
            | EventBody::Failed { .. } => {}
        }
    }

    /// Adds one stored event, given as its JSON bytes (see `report::decode`: `eval` and
    /// `online` events skip the full decoding).
    pub(crate) fn add_stored(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        match decode::decode(bytes)? {
            Decoded::Eval { after_task, on_task, loss, accuracy } => {
                self.eval(after_task, on_task, loss, accuracy)
            }
            Decoded::Online { task, bin, examples, loss, accuracy } => {
                self.online(task, bin, examples, loss, accuracy)
            }
            Decoded::Other(event) => self.add(&event),
        }
        Ok(())
    }

    fn eval(&mut self, after_task: Option<usize>, on_task: usize, loss: f64, accuracy: Option<f64>) {
        if let Some(points) = &mut self.points {
            SeriesPoint::eval(points, (after_task, on_task), loss, accuracy, None);
        }
        self.evals.push(EvalRow { after_task, on_task, accuracy, loss });
    }

    fn online(&mut self, task: usize, bin: usize, examples: u64, loss: f64, accuracy: Option<f64>) {
        if let Some(points) = &mut self.points {
            SeriesPoint::online(points, task, bin, loss, accuracy);
        }
        if self.regression {
            self.online_bins.push(OnlineBin { task, bin, examples, loss, accuracy });
        }
        let Some(slot) = self.online.get_mut(task) else {
            self.online_out_of_range += 1;
            return;
        };
        let later = match slot.last_bin {
            Some(b) => bin >= b,
            None => true,
        };
        if later {
            slot.last_bin = Some(bin);
            slot.last_accuracy = accuracy;
        }
        slot.loss_sum += loss * examples as f64;
        slot.examples += examples;
        self.stream_loss_sum += loss * examples as f64;
        self.stream_examples += examples;
    }

    /// The summary of the run, labelled with `experiment`.
    /// The run's summary, followed by one summary per evaluated variant (an earlier version or
    /// a composition of a weight field), labelled `method [variant]` so it groups as its own
    /// row. A variant's rows hold only the entries it was evaluated on (usually the last row
    /// of R), so only the metrics those define are reported, without flags for the rest.
    pub(crate) fn finish_all(mut self, record: &RunRecord, experiment: &str) -> Vec<RunSummary> {
        let variants = std::mem::take(&mut self.variants);
        let tasks = self.tasks;
        let regression = self.regression;
        let mut out = vec![self.finish(record, experiment)];
        for (variant, evals) in variants {
            let mut values = [None; Metric::ALL.len()];
            if record.status == RunStatus::Finished && !regression {
                let mut part = Summarizer::new(record);
                part.evals = evals.clone();
                part.matrix_metrics(&mut values);
                // A variant is a frozen snapshot or a mixture evaluated beside the model: its
                // rows hold no history of its own, so backward and forward transfer and
                // forgetting computed from them would be meaningless (a rollback's "0"). It
                // reports ACC and its accuracies only.
                for metric in [Metric::Bwt, Metric::Fwt, Metric::Forgetting] {
                    values[metric.index()] = None;
                }
            }
            let mut labels = record.labels.clone();
            labels.method = format!("{} [{variant}]", labels.method);
            out.push(RunSummary {
                id: format!("{}#{variant}", record.id),
                experiment: experiment.to_string(),
                order: record.order,
                labels,
                params: run_params(record),
                status: record.status.clone(),
                attempts: record.attempts,
                tasks,
                regression,
                values,
                flags: Vec::new(),
                evals,
                series: RunSeries::default(),
            });
        }
        out
    }

    fn finish(mut self, record: &RunRecord, experiment: &str) -> RunSummary {
        let mut values = [None; Metric::ALL.len()];
        let finished = record.status == RunStatus::Finished;
        if finished {
            self.matrix_metrics(&mut values);
            self.online_metrics(&mut values);
            self.plasticity_metrics(&mut values);
            values[Metric::WallSeconds.index()] = record.times.wall_seconds;
            for metric in Metric::ALL {
                let slot = &mut values[metric.index()];
                if slot.is_some_and(|v: f64| !v.is_finite()) {
                    self.flags.push(format!("{} is not a finite number", metric.name()));
                    *slot = None;
                }
            }
        }
        if !finished {
            self.flags.clear();
        }
        let series = RunSeries {
            task_online_accuracy: self.online.iter().map(|t| t.last_accuracy).collect(),
            task_online_loss: self
                .online
                .iter()
                .map(|t| (t.examples > 0).then(|| t.loss_sum / t.examples as f64))
                .collect(),
            online_bins: self.online_bins,
            plasticity: self.plasticity,
            capacity: self.capacity,
            points: self.points.unwrap_or_default(),
        };
        RunSummary {
            id: record.id.clone(),
            experiment: experiment.to_string(),
            order: record.order,
            labels: record.labels.clone(),
            params: run_params(record),
            status: record.status.clone(),
            attempts: record.attempts,
            tasks: self.tasks,
            regression: self.regression,
            values,
            flags: self.flags,
            evals: self.evals,
            series,
        }
    }

    fn matrix_metrics(&mut self, values: &mut [Option<f64>; Metric::ALL.len()]) {
        if self.regression {
            return;
        }
        let mut matrix = AccuracyMatrix::new(self.tasks);
        let mut out_of_range = 0usize;
        for row in &self.evals {
            let in_range = row.on_task < self.tasks && !matches!(row.after_task, Some(i) if i >= self.tasks);
            if !in_range {
                out_of_range += 1;
                continue;
            }
            let Some(accuracy) = row.accuracy else {
                continue;
            };
            match row.after_task {
                None => matrix.set_baseline(row.on_task, accuracy),
                Some(i) => matrix.set(i, row.on_task, accuracy),
            }
        }
        if out_of_range > 0 {
            self.flags.push(format!(
                "{out_of_range} evaluations name tasks outside the stream of {} tasks; ignored",
                self.tasks
            ));
        }
        let metrics: [(Metric, Result<f64, MetricError>); 4] = [
            (Metric::Acc, matrix.average_accuracy()),
            (Metric::Bwt, matrix.backward_transfer()),
            (Metric::Fwt, matrix.forward_transfer()),
            (Metric::Forgetting, matrix.forgetting()),
        ];
        for (metric, result) in metrics {
            match result {
                Ok(v) => values[metric.index()] = Some(v),
                Err(MetricError::Undefined { .. }) => {}
                Err(e @ (MetricError::Missing { .. } | MetricError::MissingBaseline { .. })) => {
                    self.flags.push(e.to_string())
                }
            }
        }
    }

    fn online_metrics(&mut self, values: &mut [Option<f64>; Metric::ALL.len()]) {
        if self.online_out_of_range > 0 {
            self.flags.push(format!(
                "{} online events name tasks outside the stream of {} tasks; ignored",
                self.online_out_of_range, self.tasks
            ));
        }
        if self.stream_examples == 0 && self.online.iter().all(|t| t.last_bin.is_none()) {
            return; // not measured at all
        }
        if let Some(missing) = self.online.iter().position(|t| t.last_bin.is_none()) {
            self.flags.push(format!("online metrics need every task's bins; task {missing} has none"));
            return;
        }
        let Some(last) = self.online.last() else {
            return;
        };
        if last.examples > 0 {
            values[Metric::FinalOnlineLoss.index()] = Some(last.loss_sum / last.examples as f64);
        }
        if self.stream_examples > 0 {
            values[Metric::MeanOnlineLoss.index()] = Some(self.stream_loss_sum / self.stream_examples as f64);
        }
        if self.regression {
            return;
        }
        let accuracies: Option<Vec<f64>> = self.online.iter().map(|t| t.last_accuracy).collect();
        match accuracies {
            Some(acc) => {
                values[Metric::FinalOnlineAcc.index()] = acc.last().copied();
                values[Metric::MeanOnlineAcc.index()] = Some(acc.iter().sum::<f64>() / acc.len() as f64);
            }
            None => self.flags.push("online accuracy is missing from some bins".into()),
        }
    }

    fn plasticity_metrics(&self, values: &mut [Option<f64>; Metric::ALL.len()]) {
        let (Some(first), Some(last)) = (self.plasticity.first(), self.plasticity.last()) else {
            return;
        };
        values[Metric::Dead.index()] = last.dead;
        values[Metric::EffectiveRank.index()] = last.effective_rank;
        values[Metric::MeanAbsWeight.index()] = Some(last.mean_abs_weight);
        if self.plasticity.len() >= 2 {
            let change = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
            values[Metric::DeadChange.index()] = change(first.dead, last.dead);
            values[Metric::EffectiveRankChange.index()] = change(first.effective_rank, last.effective_rank);
            values[Metric::MeanAbsWeightChange.index()] = Some(last.mean_abs_weight - first.mean_abs_weight);
        }
    }
}
