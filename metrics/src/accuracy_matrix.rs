//! The accuracy matrix and the continual-learning metrics computed from it.
//!
//! Notation (0-indexed, T tasks): R\[i\]\[j\] is the accuracy on task j's held-out split after
//! training through task i; b_j is the accuracy of the untrained network on task j.
//! Every metric averages over T − 1 terms (the convention of Lopez-Paz & Ranzato 2017 and
//! Chaudhry et al. 2018), so it is undefined — not zero — for a one-task stream.

use std::fmt;

/// Why a metric cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The metric needs an entry that was not measured (e.g. a subsampled evaluation schedule).
    #[error("{metric} needs R[{after}][{on}], which was not measured")]
    Missing {
        /// The metric.
        metric: &'static str,
        /// Row i (after task i).
        after: usize,
        /// Column j (on task j).
        on: usize,
    },
    /// The metric needs b_j, the untrained network's accuracy, which was not measured.
    #[error("{metric} needs b[{on}] (accuracy before training), which was not measured")]
    MissingBaseline {
        /// The metric.
        metric: &'static str,
        /// Task j.
        on: usize,
    },
    /// The metric is not defined for this stream (e.g. BWT on one task).
    #[error("{metric} is undefined for a stream of {tasks} task(s); it needs at least 2")]
    Undefined {
        /// The metric.
        metric: &'static str,
        /// Tasks in the stream.
        tasks: usize,
    },
}

/// A T×T accuracy matrix with possibly missing entries, plus the untrained baselines b_j.
///
/// Stored sparsely: long streams evaluate a subsample of earlier tasks (O(T) entries), and a
/// dense 10,000-task matrix would take 1.6 GB.
#[derive(Clone, PartialEq)]
pub struct AccuracyMatrix {
    tasks: usize,
    entries: std::collections::HashMap<(usize, usize), f64>,
    baseline: Vec<Option<f64>>,
}

impl fmt::Debug for AccuracyMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "AccuracyMatrix ({} tasks)", self.tasks)?;
        for i in 0..self.tasks {
            for j in 0..self.tasks {
                match self.get(i, j) {
                    Some(v) => write!(f, " {v:.4}")?,
                    None => write!(f, "   -   ")?,
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl AccuracyMatrix {
    /// An empty matrix for `tasks` tasks.
    pub fn new(tasks: usize) -> Self {
        AccuracyMatrix { tasks, entries: std::collections::HashMap::new(), baseline: vec![None; tasks] }
    }

    /// Builds a full matrix from rows (tests and hand-made examples).
    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let mut m = AccuracyMatrix::new(rows.len());
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), rows.len(), "an accuracy matrix is square");
            for (j, &v) in row.iter().enumerate() {
                m.set(i, j, v);
            }
        }
        m
    }

    /// Number of tasks T.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Records R\[after\]\[on\].
    pub fn set(&mut self, after: usize, on: usize, accuracy: f64) {
        assert!(
            after < self.tasks && on < self.tasks,
            "R[{after}][{on}] is outside a {0}×{0} matrix",
            self.tasks
        );
        self.entries.insert((after, on), accuracy);
    }

    /// Records b\[on\].
    pub fn set_baseline(&mut self, on: usize, accuracy: f64) {
        self.baseline[on] = Some(accuracy);
    }

    /// R\[after\]\[on\], if measured.
    pub fn get(&self, after: usize, on: usize) -> Option<f64> {
        self.entries.get(&(after, on)).copied()
    }

    /// b\[on\], if measured.
    pub fn baseline(&self, on: usize) -> Option<f64> {
        self.baseline[on]
    }

    fn need(&self, metric: &'static str, after: usize, on: usize) -> Result<f64, MetricError> {
        self.get(after, on).ok_or(MetricError::Missing { metric, after, on })
    }

    fn need_two_tasks(&self, metric: &'static str) -> Result<(), MetricError> {
        if self.tasks < 2 {
            Err(MetricError::Undefined { metric, tasks: self.tasks })
        } else {
            Ok(())
        }
    }

    /// Average accuracy after the last task: ACC = (1/T) Σ_j R\[T−1\]\[j\].
    pub fn average_accuracy(&self) -> Result<f64, MetricError> {
        if self.tasks == 0 {
            return Err(MetricError::Undefined { metric: "ACC", tasks: 0 });
        }
        let last = self.tasks - 1;
        let mut sum = 0.0;
        for j in 0..self.tasks {
            sum += self.need("ACC", last, j)?;
        }
        Ok(sum / self.tasks as f64)
    }

    /// Backward transfer (Lopez-Paz & Ranzato 2017):
    /// BWT = 1/(T−1) Σ_{j<T−1} (R\[T−1\]\[j\] − R\[j\]\[j\]). Negative values are forgetting.
    pub fn backward_transfer(&self) -> Result<f64, MetricError> {
        self.need_two_tasks("BWT")?;
        let last = self.tasks - 1;
        let mut sum = 0.0;
        for j in 0..last {
            sum += self.need("BWT", last, j)? - self.need("BWT", j, j)?;
        }
        Ok(sum / last as f64)
    }

    /// Forward transfer (Lopez-Paz & Ranzato 2017):
    /// FWT = 1/(T−1) Σ_{j≥1} (R\[j−1\]\[j\] − b_j): how much training on earlier tasks helps a
    /// task before it is trained on.
    pub fn forward_transfer(&self) -> Result<f64, MetricError> {
        self.need_two_tasks("FWT")?;
        let mut sum = 0.0;
        for j in 1..self.tasks {
            let b = self.baseline(j).ok_or(MetricError::MissingBaseline { metric: "FWT", on: j })?;
            sum += self.need("FWT", j - 1, j)? - b;
        }
        Ok(sum / (self.tasks - 1) as f64)
    }

    /// Average forgetting (Chaudhry et al. 2018, "Riemannian walk"):
    /// F = 1/(T−1) Σ_{j<T−1} (max_{l<T−1} R\[l\]\[j\] − R\[T−1\]\[j\]).
    /// The maximum runs over the measured entries of column j before the last row and must
    /// include R\[j\]\[j\]; with a subsampled schedule it is a lower bound of the full-matrix
    /// value.
    pub fn forgetting(&self) -> Result<f64, MetricError> {
        self.need_two_tasks("forgetting")?;
        let last = self.tasks - 1;
        // One pass over the measured entries: the best earlier accuracy of each column.
        let mut best: Vec<Option<f64>> = vec![None; last];
        for (&(l, j), &v) in &self.entries {
            if l < last && j < last {
                best[j] = Some(best[j].map_or(v, |b: f64| b.max(v)));
            }
        }
        let mut sum = 0.0;
        for (j, best) in best.into_iter().enumerate() {
            self.need("forgetting", j, j)?;
            let best = best.expect("R[j][j] is measured, so column j has a best value");
            sum += best - self.need("forgetting", last, j)?;
        }
        Ok(sum / last as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// R = [[0.9, 0.1, 0.2],
    ///      [0.7, 0.8, 0.3],
    ///      [0.6, 0.75, 0.95]],  b = [0.1, 0.12, 0.08]
    fn example() -> AccuracyMatrix {
        let mut m =
            AccuracyMatrix::from_rows(&[vec![0.9, 0.1, 0.2], vec![0.7, 0.8, 0.3], vec![0.6, 0.75, 0.95]]);
        for (j, b) in [0.1, 0.12, 0.08].into_iter().enumerate() {
            m.set_baseline(j, b);
        }
        m
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let m = example();
        // ACC = (0.6 + 0.75 + 0.95) / 3
        assert!(close(m.average_accuracy().unwrap(), 2.3 / 3.0));
        // BWT = ((0.6 − 0.9) + (0.75 − 0.8)) / 2 = −0.175
        assert!(close(m.backward_transfer().unwrap(), -0.175));
        // FWT = ((0.1 − 0.12) + (0.3 − 0.08)) / 2 = 0.1
        assert!(close(m.forward_transfer().unwrap(), 0.1));
        // forgetting = ((max(0.9, 0.7) − 0.6) + (max(0.1, 0.8) − 0.75)) / 2 = 0.175
        assert!(close(m.forgetting().unwrap(), 0.175));
    }

    #[test]
    fn forgetting_uses_the_best_earlier_accuracy_not_the_diagonal() {
        // Task 0 improves after task 1 (0.95 > 0.9), then drops to 0.5.
        let m = AccuracyMatrix::from_rows(&[vec![0.9, 0.0, 0.0], vec![0.95, 0.9, 0.0], vec![0.5, 0.9, 0.9]]);
        assert!(close(m.forgetting().unwrap(), ((0.95 - 0.5) + 0.0) / 2.0));
        assert!(close(m.backward_transfer().unwrap(), ((0.5 - 0.9) + 0.0) / 2.0));
    }

    #[test]
    fn one_task_stream_has_accuracy_but_no_transfer() {
        let mut m = AccuracyMatrix::from_rows(&[vec![0.8]]);
        m.set_baseline(0, 0.1);
        assert!(close(m.average_accuracy().unwrap(), 0.8));
        for (name, r) in
            [("BWT", m.backward_transfer()), ("FWT", m.forward_transfer()), ("forgetting", m.forgetting())]
        {
            assert_eq!(r, Err(MetricError::Undefined { metric: name, tasks: 1 }));
        }
    }

    #[test]
    fn missing_entries_are_errors_that_name_the_entry() {
        let mut m = AccuracyMatrix::new(2);
        m.set(0, 0, 0.9);
        m.set(1, 1, 0.9);
        let err = m.average_accuracy().unwrap_err();
        assert_eq!(err, MetricError::Missing { metric: "ACC", after: 1, on: 0 });
        assert_eq!(err.to_string(), "ACC needs R[1][0], which was not measured");
        m.set(1, 0, 0.5);
        m.set(0, 1, 0.2);
        assert_eq!(m.forward_transfer(), Err(MetricError::MissingBaseline { metric: "FWT", on: 1 }));
        assert!(m.backward_transfer().is_ok());
    }
}
