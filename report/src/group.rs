//! Groups of runs that differ only by seed, and their statistics per metric.

use std::collections::{BTreeMap, HashMap};

use super::metric::{Better, Metric};
use super::stats::Summary;
use super::summary::RunSummary;

/// The runs sharing `(experiment, stream, method, grid point)`, summarised per metric over
/// their finished runs.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSummary {
    /// The experiment (see [`RunSummary::experiment`]).
    pub experiment: String,
    /// Stream label.
    pub stream: String,
    /// Method label.
    pub method: String,
    /// Grid point.
    pub grid: BTreeMap<String, serde_json::Value>,
    /// The method's resolved parameters (equal for every run of the group: the same method
    /// entry at the same grid point).
    pub params: crate::params::Params,
    /// The grid point as text (`lr=0.01, rho=0.9`).
    pub grid_text: String,
    /// Runs of the group in the (filtered) store: the count every cell should reach.
    pub runs: usize,
    /// Finished runs of the group.
    pub finished: usize,
    /// Finished runs with a metric that should exist missing (see [`RunSummary::flags`]).
    pub flagged: usize,
    /// Whether the group is a model variant of its runs (a weight field's rollback or
    /// composition row, `method [variant]`): it has ACC and its own accuracies only, and never
    /// takes part in the best-value marking.
    pub variant: bool,
    /// Statistics per metric, indexed by [`Metric::index`], over the finished runs where the
    /// metric is defined.
    pub cells: [Summary; Metric::ALL.len()],
}

impl GroupSummary {
    /// The statistics of `metric`.
    pub fn cell(&self, metric: Metric) -> &Summary {
        &self.cells[metric.index()]
    }

    /// Whether `metric`'s cell averages fewer runs than the group has (unfinished runs, or
    /// finished runs where the metric is missing). Such cells are shown as `… (n/N)`. A metric
    /// no finished run of a complete group has is undefined for the group (BWT of a one-task
    /// stream, accuracy of a regression, FWT of a rollback row), not incomplete.
    pub fn incomplete(&self, metric: Metric) -> bool {
        self.cell(metric).n < self.runs && !self.undefined(metric)
    }

    /// Whether every run finished, none is flagged for a missing measurement, and none has
    /// `metric`: it does not apply to this group.
    pub fn undefined(&self, metric: Metric) -> bool {
        self.cell(metric).n == 0 && self.finished == self.runs && self.flagged == 0
    }

    /// The count a cell of `metric` should reach: the group's runs, or 0 when the metric does
    /// not apply to the group.
    pub fn expected(&self, metric: Metric) -> usize {
        if self.undefined(metric) {
            0
        } else {
            self.runs
        }
    }

    /// Whether `run` belongs to this group: same experiment, stream, method and grid point.
    pub fn contains(&self, run: &RunSummary) -> bool {
        run.experiment == self.experiment
            && run.labels.stream == self.stream
            && run.labels.method == self.method
            && run.labels.grid == self.grid
    }
}

/// Groups `runs` (already in expansion order) by `(experiment, stream, method, grid)`, in order
/// of first appearance.
pub(crate) fn group(runs: &[RunSummary]) -> Vec<GroupSummary> {
    let mut index: HashMap<(&str, &str, &str, String), usize> = HashMap::new();
    let mut members: Vec<Vec<&RunSummary>> = Vec::new();
    for run in runs {
        let grid_key = serde_json::to_string(&run.labels.grid).expect("grid values serialise");
        let key = (run.experiment.as_str(), run.labels.stream.as_str(), run.labels.method.as_str(), grid_key);
        let next = members.len();
        let i = *index.entry(key).or_insert(next);
        if i == next {
            members.push(Vec::new());
        }
        members[i].push(run);
    }
    members
        .into_iter()
        .map(|runs| {
            let first = runs[0];
            let mut cells = [Summary::default(); Metric::ALL.len()];
            let mut values = Vec::with_capacity(runs.len());
            for metric in Metric::ALL {
                values.clear();
                values.extend(runs.iter().filter(|r| r.finished()).filter_map(|r| r.value(metric)));
                cells[metric.index()] = Summary::of(&values);
            }
            GroupSummary {
                experiment: first.experiment.clone(),
                stream: first.labels.stream.clone(),
                method: first.labels.method.clone(),
                grid: first.labels.grid.clone(),
                params: first.params.clone(),
                grid_text: first.labels.grid_text(),
                runs: runs.len(),
                finished: runs.iter().filter(|r| r.finished()).count(),
                flagged: runs.iter().filter(|r| r.finished() && r.flagged()).count(),
                variant: first.is_variant(),
                cells,
            }
        })
        .collect()
}

/// The best mean of `metric` over the groups' complete cells (every run of the group has a
/// value), or `None` when the metric has no direction or no complete cell. Incomplete cells
/// never win: a mean over fewer seeds than planned is not a fair comparison; nor do variant
/// rows (rollbacks, compositions), which are not methods of their own, nor groups with a
/// flagged run (a task inside a committed region reaches zero forgetting by learning nothing:
/// its 0.000 must not look like the best value).
pub(crate) fn best(groups: &[GroupSummary], metric: Metric) -> Option<f64> {
    let complete =
        groups.iter().filter(|g| g.runs > 0 && !g.variant && g.flagged == 0 && !g.incomplete(metric));
    let means = complete.filter_map(|g| g.cell(metric).mean);
    match metric.better() {
        Better::Higher => means.reduce(f64::max),
        Better::Lower => means.reduce(f64::min),
        Better::Neither => None,
    }
}

/// Orders `items` by `key` best first (descending for [`Better::Higher`] and
/// [`Better::Neither`], ascending for [`Better::Lower`]), nulls last; ties keep their order.
pub(crate) fn sort_best_first<T>(items: &mut [T], metric: Metric, key: impl Fn(&T) -> Option<f64>) {
    items.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => match metric.better() {
            Better::Lower => x.total_cmp(&y),
            Better::Higher | Better::Neither => y.total_cmp(&x),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}
