//! The report's tables as polars DataFrames: what CSV, Parquet and JSON are written from, and
//! what a researcher loads back with pandas or polars.
//!
//! Types are chosen for loading: metric values are Float64 (null where undefined), every
//! integer (counts, task indices, seeds) Int64 — the type pandas and R read without surprise;
//! a nullable integer such as `after_task` stays an integer, never a float — labels String,
//! and one typed `param.<name>` column per method parameter (see [`crate::ResolveParams`] for
//! where the values come from).
//!
//! A comparison of several experiments ([`Report::compare`]) puts an `experiment` column
//! first in every table; a report of one experiment has none, so its tables keep the columns
//! they always had.

use polars::prelude::{Column, DataFrame, PolarsResult};

use super::metric::Metric;
use super::params::{param_columns, Params};
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
    /// Grid point as text (`lr=0.01, rho=0.9`; empty without a grid), for reading; the
    /// typed values are the `param.*` columns.
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
    /// Series export: the task (online: trained; eval: row i of R, null for b_j; plasticity
    /// and method events: the task last trained, null before the first).
    pub const TASK: &str = "task";
    /// Series export: online bin within the task.
    pub const BIN: &str = "bin";
    /// Series export: hidden layer, input side first (per-layer diagnostics).
    pub const LAYER: &str = "layer";
    /// Series export: what the value measures (`online.accuracy`, `eval.loss`,
    /// `plasticity.dead`, `cbp.replaced.replaced`, …).
    pub const METRIC: &str = "metric";
    /// Series export: the measured value.
    pub const VALUE: &str = "value";
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

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Seeds are u64 in specs; a seed beyond i64 (none a recipe writes in practice) is null
/// rather than a wrapped negative number.
fn seed(s: u64) -> Option<i64> {
    i64::try_from(s).ok()
}

fn int_column(name: &str, values: Vec<i64>) -> Column {
    Column::new(name.into(), values)
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

/// The per-run table: `[experiment], run, stream, method, grid, param.*, seed, status, failure,
/// attempts, tasks`, one Float64 column per chosen metric (named [`Metric::name`]), `flagged,
/// flags`.
pub fn runs_frame(report: &Report) -> PolarsResult<DataFrame> {
    let runs = report.runs();
    let mut cols = run_identity(report, &runs.iter().collect::<Vec<_>>());
    cols.extend([
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
        int_column(ATTEMPTS, runs.iter().map(|r| i64::from(r.attempts)).collect()),
        int_column(TASKS, runs.iter().map(|r| count(r.tasks)).collect()),
    ]);
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

/// The grouped table: `[experiment], stream, method, grid, param.*, runs, finished`, then for
/// each chosen metric `<name>_mean, <name>_std, <name>_ci95` (Float64) and `<name>_n` (Int64).
pub fn groups_frame(report: &Report) -> PolarsResult<DataFrame> {
    let groups = report.groups();
    let mut cols = vec![
        string_column(STREAM, groups.iter().map(|g| g.stream.clone()).collect()),
        string_column(METHOD, groups.iter().map(|g| g.method.clone()).collect()),
        string_column(GRID, groups.iter().map(|g| g.grid_text.clone()).collect()),
    ];
    cols.extend(param_columns(
        &all_params(report),
        &groups.iter().map(|g| &g.params).collect::<Vec<&Params>>(),
    ));
    cols.extend([
        int_column(RUNS, groups.iter().map(|g| count(g.runs)).collect()),
        int_column(FINISHED, groups.iter().map(|g| count(g.finished)).collect()),
    ]);
    for &metric in report.metrics() {
        let stat = |f: fn(&super::stats::Summary) -> Option<f64>| -> Vec<Option<f64>> {
            groups.iter().map(|g| f(g.cell(metric))).collect()
        };
        let [mean, std, ci95, n] = group_metric_columns(metric);
        cols.push(Column::new(mean.into(), stat(|s| s.mean)));
        cols.push(Column::new(std.into(), stat(|s| s.std)));
        cols.push(Column::new(ci95.into(), stat(|s| s.ci95)));
        cols.push(int_column(&n, groups.iter().map(|g| count(g.cell(metric).n)).collect()));
    }
    let cols = with_experiment(report, || groups.iter().map(|g| g.experiment.clone()).collect(), cols);
    DataFrame::new(groups.len(), cols)
}

/// The long per-task table, one row per accuracy-matrix entry measured:
/// `[experiment], run, stream, method, grid, param.*, seed, after_task, on_task, accuracy, loss`.
pub fn per_task_frame(report: &Report) -> PolarsResult<DataFrame> {
    let rows: Vec<_> = report.runs().iter().flat_map(|r| r.evals.iter().map(move |e| (r, e))).collect();
    let mut cols = run_identity(report, &rows.iter().map(|(r, _)| *r).collect::<Vec<_>>());
    cols.extend([
        Column::new(
            AFTER_TASK.into(),
            rows.iter().map(|(_, e)| e.after_task.map(count)).collect::<Vec<Option<i64>>>(),
        ),
        int_column(ON_TASK, rows.iter().map(|(_, e)| count(e.on_task)).collect()),
        Column::new(ACCURACY.into(), rows.iter().map(|(_, e)| e.accuracy).collect::<Vec<Option<f64>>>()),
        Column::new(LOSS.into(), rows.iter().map(|(_, e)| e.loss).collect::<Vec<f64>>()),
    ]);
    let cols = with_experiment(report, || rows.iter().map(|(r, _)| r.experiment.clone()).collect(), cols);
    DataFrame::new(rows.len(), cols)
}

/// The long time-series table ([`ReportOptions::series`](super::ReportOptions::series)), one row
/// per measured value: `[experiment], run, stream, method, grid, param.*, seed, task, on_task,
/// bin, layer, metric, value`. It covers every online bin (loss, accuracy), every accuracy-
/// matrix entry (`eval.*`, `eval.<variant>.*` for weight fields' model variants), the plasticity
/// diagnostics per layer and averaged, and every number of the methods' own events.
pub fn series_frame(report: &Report) -> PolarsResult<DataFrame> {
    let rows: Vec<_> =
        report.runs().iter().flat_map(|r| r.series.points.iter().map(move |p| (r, p))).collect();
    let mut cols = run_identity(report, &rows.iter().map(|(r, _)| *r).collect::<Vec<_>>());
    let optional = |name: &str, f: fn(&super::series::SeriesPoint) -> Option<usize>| {
        Column::new(name.into(), rows.iter().map(|(_, p)| f(p).map(count)).collect::<Vec<Option<i64>>>())
    };
    cols.extend([
        optional(TASK, |p| p.task),
        optional(ON_TASK, |p| p.on_task),
        optional(BIN, |p| p.bin),
        optional(LAYER, |p| p.layer),
        string_column(METRIC, rows.iter().map(|(_, p)| p.metric.to_string()).collect()),
        Column::new(VALUE.into(), rows.iter().map(|(_, p)| p.value).collect::<Vec<f64>>()),
    ]);
    let cols = with_experiment(report, || rows.iter().map(|(r, _)| r.experiment.clone()).collect(), cols);
    DataFrame::new(rows.len(), cols)
}

/// Every run's parameters: what decides the `param.*` columns of every table.
fn all_params(report: &Report) -> Vec<&Params> {
    report.runs().iter().map(|r| &r.params).collect()
}

/// The columns naming a row's run (`runs`, one per row): `run, stream, method, grid, param.*,
/// seed`.
fn run_identity(report: &Report, runs: &[&super::summary::RunSummary]) -> Vec<Column> {
    let mut cols = vec![
        string_column(RUN, runs.iter().map(|r| r.id.clone()).collect()),
        string_column(STREAM, runs.iter().map(|r| r.labels.stream.clone()).collect()),
        string_column(METHOD, runs.iter().map(|r| r.labels.method.clone()).collect()),
        string_column(GRID, runs.iter().map(|r| r.labels.grid_text()).collect()),
    ];
    cols.extend(param_columns(
        &all_params(report),
        &runs.iter().map(|r| &r.params).collect::<Vec<&Params>>(),
    ));
    cols.push(Column::new(
        SEED.into(),
        runs.iter().map(|r| seed(r.labels.seed)).collect::<Vec<Option<i64>>>(),
    ));
    cols
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
