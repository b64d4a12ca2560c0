//! The curves of one run, kept up to date one event at a time, so that drawing them never
//! re-reads a run's events.

use protocol::{Event, EventBody};
use results::RunRecord;
use serde::Serialize;

/// One online bin: performance on each example before the update on it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OnlinePoint {
    /// Task the bin belongs to.
    pub task: usize,
    /// Training examples seen by the end of the bin, over the whole stream.
    pub examples: u64,
    /// Mean loss over the bin.
    pub loss: f64,
    /// Fraction correct (classification only).
    pub accuracy: Option<f64>,
}

/// One accuracy-matrix entry R\[i\]\[j\].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MatrixEntry {
    /// i: tasks trained through (`None`: the untrained network).
    pub after_task: Option<usize>,
    /// j: the task evaluated.
    pub on_task: usize,
    /// Fraction correct (classification only).
    pub accuracy: Option<f64>,
    /// Mean loss.
    pub loss: f64,
}

/// Plasticity diagnostics after some tasks, averaged over the hidden layers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PlasticityPoint {
    /// Tasks trained so far.
    pub after_tasks: usize,
    /// Mean over layers of the fraction of dead units.
    pub dead: f64,
    /// Mean over layers of the τ-dormant fraction.
    pub dormant: f64,
    /// Mean over layers of the effective rank.
    pub effective_rank: f64,
    /// Mean |w| over all weight matrices.
    pub mean_abs_weight: f64,
}

/// Everything the dashboard draws about one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSeries {
    /// Tasks in the stream.
    pub tasks: usize,
    /// `classification` or `regression`, once the run has started.
    pub problem: Option<String>,
    /// Online bins in stream order.
    pub online: Vec<OnlinePoint>,
    /// Accuracy-matrix entries in the order they arrived (variant rows left out: they are not
    /// part of R).
    pub matrix: Vec<MatrixEntry>,
    /// Plasticity diagnostics in the order they arrived.
    pub plasticity: Vec<PlasticityPoint>,
    /// R\[j\]\[j\] by task, kept as entries arrive (a view asks for it every second).
    diagonal: Vec<f64>,
    /// Σ R\[i\]\[j\] over j ≤ i and the count of those entries, by row i.
    row_sums: Vec<(f64, usize)>,
}

impl RunSeries {
    /// Empty curves for a run with `record`'s stream length.
    pub fn new(record: &RunRecord) -> RunSeries {
        RunSeries { tasks: record.progress.tasks, ..RunSeries::default() }
    }

    /// Whether the run measures accuracy (classification) rather than loss alone.
    pub fn classification(&self) -> bool {
        self.problem.as_deref() != Some("regression")
    }

    /// Adds one event, in sequence order.
    pub fn observe(&mut self, event: &Event) {
        match &event.body {
            EventBody::Started { tasks, problem, .. } => {
                self.tasks = *tasks;
                self.problem = Some(problem.clone());
            }
            EventBody::Online { task, examples, loss, accuracy, .. } => {
                let before = self.online.last().map_or(0, |p| p.examples);
                self.online.push(OnlinePoint {
                    task: *task,
                    examples: before.saturating_add(*examples),
                    loss: *loss,
                    accuracy: *accuracy,
                });
            }
            EventBody::Eval { after_task, on_task, loss, accuracy, variant: None, .. } => {
                self.matrix.push(MatrixEntry {
                    after_task: *after_task,
                    on_task: *on_task,
                    accuracy: *accuracy,
                    loss: *loss,
                });
                if let Some(i) = *after_task {
                    let value = self.measure(*accuracy, *loss);
                    if i == *on_task {
                        if self.diagonal.len() <= i {
                            self.diagonal.resize(i + 1, f64::NAN);
                        }
                        self.diagonal[i] = value;
                    }
                    if *on_task <= i {
                        if self.row_sums.len() <= i {
                            self.row_sums.resize(i + 1, (0.0, 0));
                        }
                        self.row_sums[i].0 += value;
                        self.row_sums[i].1 += 1;
                    }
                }
            }
            EventBody::Plasticity { after_tasks, layers, mean_abs_weight, .. } => {
                let n = layers.len().max(1) as f64;
                let mean = |f: fn(&protocol::LayerPlasticity) -> f64| layers.iter().map(f).sum::<f64>() / n;
                self.plasticity.push(PlasticityPoint {
                    after_tasks: *after_tasks,
                    dead: mean(|l| l.dead),
                    dormant: mean(|l| l.dormant),
                    effective_rank: mean(|l| l.effective_rank),
                    mean_abs_weight: *mean_abs_weight,
                });
            }
            _ => {}
        }
    }

    /// The measure the dashboard shows for an entry: accuracy for classification, loss for
    /// regression.
    fn measure(&self, accuracy: Option<f64>, loss: f64) -> f64 {
        if self.classification() {
            accuracy.unwrap_or(f64::NAN)
        } else {
            loss
        }
    }

    /// The last online bin's value.
    pub fn last_online(&self) -> Option<f64> {
        self.online.last().map(|p| self.measure(p.accuracy, p.loss))
    }

    /// The online curve's values, one per bin.
    pub fn online_values(&self) -> Vec<f64> {
        self.online.iter().map(|p| self.measure(p.accuracy, p.loss)).collect()
    }

    /// R\[j\]\[j\] for each task j trained so far: how well each task was learnt right after
    /// training it (plasticity, in the loss-of-plasticity papers' sense). NaN where not
    /// evaluated.
    pub fn just_trained(&self) -> Vec<f64> {
        self.diagonal.clone()
    }

    /// ACC after each task i: the mean of R\[i\]\[j\] over the tasks j ≤ i evaluated after it.
    /// NaN for a task after which nothing earlier was evaluated.
    pub fn average_so_far(&self) -> Vec<f64> {
        self.row_sums.iter().map(|&(s, n)| if n == 0 { f64::NAN } else { s / n as f64 }).collect()
    }

    /// The accuracy matrix as rows i (after task i) × columns j, `None` where not measured;
    /// row 0 is the untrained network when it was evaluated.
    pub fn matrix_rows(&self) -> (bool, Vec<Vec<Option<f64>>>) {
        let untrained = self.matrix.iter().any(|e| e.after_task.is_none());
        let offset = usize::from(untrained);
        let rows = self.matrix.iter().filter_map(|e| e.after_task).max().map_or(0, |m| m + 1) + offset;
        let mut out = vec![vec![None; self.tasks]; rows];
        for e in &self.matrix {
            let i = e.after_task.map_or(0, |i| i + offset);
            if let Some(cell) = out.get_mut(i).and_then(|row| row.get_mut(e.on_task)) {
                *cell = Some(self.measure(e.accuracy, e.loss)).filter(|v| v.is_finite());
            }
        }
        (untrained, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::events::{at as ev, eval};

    #[test]
    fn curves_follow_the_events() {
        let mut s = RunSeries::default();
        let started = EventBody::Started {
            protocol: 1,
            tasks: 2,
            inputs: 4,
            outputs: 2,
            heads: 1,
            parameters: 10,
            problem: "classification".into(),
        };
        let events = [
            started,
            eval(None, 0, 0.5),
            EventBody::Online { task: 0, bin: 0, examples: 100, loss: 0.7, accuracy: Some(0.6) },
            EventBody::Online { task: 0, bin: 1, examples: 50, loss: 0.5, accuracy: Some(0.8) },
            eval(Some(0), 0, 0.9),
            eval(Some(0), 1, 0.4),
            EventBody::Eval {
                after_task: Some(0),
                on_task: 0,
                examples: 10,
                loss: 0.0,
                accuracy: Some(1.0),
                variant: Some("version:0".into()),
            },
            eval(Some(1), 0, 0.7),
            eval(Some(1), 1, 0.95),
        ];
        for (i, body) in events.into_iter().enumerate() {
            s.observe(&ev(i as u64, body));
        }
        assert_eq!(s.online.iter().map(|p| p.examples).collect::<Vec<_>>(), [100, 150]);
        assert_eq!(s.online_values(), [0.6, 0.8]);
        assert_eq!(s.just_trained(), [0.9, 0.95], "variant rows are not R");
        assert_eq!(s.average_so_far(), [0.9, (0.7 + 0.95) / 2.0]);
        let (untrained, rows) = s.matrix_rows();
        assert!(untrained);
        assert_eq!(
            rows,
            vec![vec![Some(0.5), None], vec![Some(0.9), Some(0.4)], vec![Some(0.7), Some(0.95)]]
        );
    }
}
