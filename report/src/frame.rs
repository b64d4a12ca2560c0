//! The report's tables as polars DataFrames: what CSV, Parquet and JSON are written from, and
//! what a researcher loads back with pandas or polars.
//!
//! Types are chosen for loading: metric values are Float64 (null where undefined), counts
//! and task indices UInt32, seeds UInt64, labels String.
//!
//! A comparison of several experiments ([`Report::compare`]) puts an `experiment` column
//! first in every table; a report of one experiment has none, so its tables keep the columns
//! they always had.

use polars::prelude::{Column, DataFrame, PolarsResult};

use super::metric::Metric;
use super::report::Report;

/// Column names shared by the tables.
pub mod columns {
    /// Experiment label (comparisons only).
    pub const EXPERIMENT: &str = "experiment";
    /// Run id.
    pub const RUN: &str = "run";
    /// Stream label.
    pub const STREAM: &str = "stream";
    /// Method label.
    pub const METHOD: &str = "method";
    /// Grid point as text (`lr=0.01, rho=0.9`; empty without a grid).
    pub const GRID: &str = "grid";
    /// Root seed.
    pub const SEED: &str = "seed";
    /// Run status name.
    pub const STATUS: &str = "status";
    /// One-line failure reason of a failed run.
    pub const FAILURE: &str = "failure";
    /// Attempts started.
    pub const ATTEMPTS: &str = "attempts";
    /// Tasks in the stream.
    pub const TASKS: &str = "tasks";
    /// Whether a metric that should exist is missing.
    pub const FLAGGED: &str = "flagged";
    /// Why, `; `-separated.
    pub const FLAGS: &str = "flags";
    /// Runs in a group.
    pub const RUNS: &str = "runs";
    /// Finished runs in a group.
    pub const FINISHED: &str = "finished";
    /// Row i of R\[i\]\[j\]; null for the untrained network.
    pub const AFTER_TASK: &str = "after_task";
    /// Column j of R\[i\]\[j\].
    pub const ON_TASK: &str = "on_task";
    /// Held-out accuracy.
    pub const ACCURACY: &str = "accuracy";
    /// Held-out loss.
    pub const LOSS: &str = "loss";
    /// Suffix of a group's mean of a metric (`acc_mean`).
    pub const MEAN_SUFFIX: &str = "_mean";
    /// Suffix of a group's sample standard deviation (`acc_std`).
    pub const STD_SUFFIX: &str = "_std";
    /// Suffix of a group's 95% confidence half-width (`acc_ci95`).
    pub const CI95_SUFFIX: &str = "_ci95";
    /// Suffix of the number of values behind a group's cell (`acc_n`).
    pub const N_SUFFIX: &str = "_n";
}

use columns::*;

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn string_column(name: &str, values: Vec<String>) -> Column {
    Column::new(name.into(), values)
}

/// `columns`, with the `experiment` column first when `report` is a comparison.
fn with_experiment(
    report: &Report,
    experiments: impl FnOnce() -> Vec<String>,
    columns: Vec<Column>,
) -> Vec<Column> {
    if !report.is_comparison() {
        return columns;
    }
    let mut all = Vec::with_capacity(columns.len() + 1);
    all.push(string_column(EXPERIMENT, experiments()));
    all.extend(columns);
    all
}

/// The per-run table: `[experiment], run, stream, method, grid, seed, status, failure, attempts, tasks`,
/// one Float64 column per chosen metric (named [`Metric::name`]), `flagged, flags`.
pub fn runs_frame(report: &Report) -> PolarsResult<DataFrame> {
    let runs = report.runs();
    let mut cols = vec![
        string_column(RUN, runs.iter().map(|r| r.id.clone()).collect()),
        string_column(STREAM, runs.iter().map(|r| r.labels.stream.clone()).collect()),
        string_column(METHOD, runs.iter().map(|r| r.labels.method.clone()).collect()),
        string_column(GRID, runs.iter().map(|r| r.labels.grid_text()).collect()),
        Column::new(SEED.into(), runs.iter().map(|r| r.labels.seed).collect::<Vec<u64>>()),
        string_column(STATUS, runs.iter().map(|r| r.status.name().to_string()).collect()),
        Column::new(
            FAILURE.into(),
            runs.iter()
                .map(|r| match &r.status {
                    results::RunStatus::Failed { failure } => Some(failure.to_string()),
                    _ => None,
                })
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new(ATTEMPTS.into(), runs.iter().map(|r| r.attempts).collect::<Vec<u32>>()),
        Column::new(TASKS.into(), runs.iter().map(|r| count(r.tasks)).collect::<Vec<u32>>()),
    ];
    for &metric in report.metrics() {
        let values: Vec<Option<f64>> = runs.iter().map(|r| r.value(metric)).collect();
        cols.push(Column::new(metric.name().into(), values));
    }
    cols.push(Column::new(FLAGGED.into(), runs.iter().map(|r| r.flagged()).collect::<Vec<bool>>()));
    cols.push(Column::new(
        FLAGS.into(),
        runs.iter().map(|r| r.flagged().then(|| r.flags.join("; "))).collect::<Vec<Option<String>>>(),
    ));
    let cols = with_experiment(report, || runs.iter().map(|r| r.experiment.clone()).collect(), cols);
    DataFrame::new(runs.len(), cols)
}

/// The grouped table: `[experiment], stream, method, grid, runs, finished`, then for each chosen metric
/// `<name>_mean, <name>_std, <name>_ci95` (Float64) and `<name>_n` (UInt32).
pub fn groups_frame(report: &Report) -> PolarsResult<DataFrame> {
    let groups = report.groups();
    let mut cols = vec![
        string_column(STREAM, groups.iter().map(|g| g.stream.clone()).collect()),
        string_column(METHOD, groups.iter().map(|g| g.method.clone()).collect()),
        string_column(GRID, groups.iter().map(|g| g.grid_text.clone()).collect()),
        Column::new(RUNS.into(), groups.iter().map(|g| count(g.runs)).collect::<Vec<u32>>()),
        Column::new(FINISHED.into(), groups.iter().map(|g| count(g.finished)).collect::<Vec<u32>>()),
    ];
    for &metric in report.metrics() {
        let stat = |f: fn(&super::stats::Summary) -> Option<f64>| -> Vec<Option<f64>> {
            groups.iter().map(|g| f(g.cell(metric))).collect()
        };
        let [mean, std, ci95, n] = group_metric_columns(metric);
        cols.push(Column::new(mean.into(), stat(|s| s.mean)));
        cols.push(Column::new(std.into(), stat(|s| s.std)));
        cols.push(Column::new(ci95.into(), stat(|s| s.ci95)));
        let counts: Vec<u32> = groups.iter().map(|g| count(g.cell(metric).n)).collect();
        cols.push(Column::new(n.into(), counts));
    }
    let cols = with_experiment(report, || groups.iter().map(|g| g.experiment.clone()).collect(), cols);
    DataFrame::new(groups.len(), cols)
}

/// The long per-task table, one row per accuracy-matrix entry measured:
/// `[experiment], run, stream, method, grid, seed, after_task, on_task, accuracy, loss`.
pub fn per_task_frame(report: &Report) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = report.runs().iter().flat_map(|r| r.evals.iter().map(move |e| (r, e))).collect();
    let cols = vec![
        string_column(RUN, rows.iter().map(|(r, _)| r.id.clone()).collect()),
        string_column(STREAM, rows.iter().map(|(r, _)| r.labels.stream.clone()).collect()),
        string_column(METHOD, rows.iter().map(|(r, _)| r.labels.method.clone()).collect()),
        string_column(GRID, rows.iter().map(|(r, _)| r.labels.grid_text()).collect()),
        Column::new(SEED.into(), rows.iter().map(|(r, _)| r.labels.seed).collect::<Vec<u64>>()),
        Column::new(
            AFTER_TASK.into(),
            rows.iter().map(|(_, e)| e.after_task.map(count)).collect::<Vec<Option<u32>>>(),
        ),
        Column::new(ON_TASK.into(), rows.iter().map(|(_, e)| count(e.on_task)).collect::<Vec<u32>>()),
        Column::new(ACCURACY.into(), rows.iter().map(|(_, e)| e.accuracy).collect::<Vec<Option<f64>>>()),
        Column::new(LOSS.into(), rows.iter().map(|(_, e)| e.loss).collect::<Vec<f64>>()),
    ];
    let cols = with_experiment(report, || rows.iter().map(|(r, _)| r.experiment.clone()).collect(), cols);
    DataFrame::new(rows.len(), cols)
}

/// The grouped table's columns for `metric`, in order: `<name>_mean`, `<name>_std`,
/// `<name>_ci95`, `<name>_n`.
pub fn group_metric_columns(metric: Metric) -> [String; 4] {
    let name = metric.name();
    [
        format!("{name}{MEAN_SUFFIX}"),
        format!("{name}{STD_SUFFIX}"),
        format!("{name}{CI95_SUFFIX}"),
        format!("{name}{N_SUFFIX}"),
    ]
}
