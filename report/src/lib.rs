//! Comparison tables from a store: per-run metrics, statistics over seeds per
//! (stream, method, grid point), and the long per-task accuracy table, rendered as Markdown,
//! CSV, Parquet, JSON or LaTeX; figures ([`plot`]) as PNG or SVG; and a self-contained HTML
//! page with both. A report reads a [`RunSource`](results::RunSource) and nothing else, so it
//! works the same on the live store and on one rebuilt from the run folders, and builds
//! without the runner's database and async runtime.
//!
//! [`Report::compare`] builds one report over several experiments' stores: groups are then
//! keyed by (experiment, stream, method, grid point) and every table gains an `experiment`
//! column (`Experiment` in Markdown, LaTeX and HTML).
//!
//! # Tables and their columns
//!
//! Machine formats (CSV, Parquet, JSON; [`Report::frame`]) use these column names:
//!
//! * groups: `stream, method, grid, param.*, runs, finished`, then per chosen metric
//!   `<metric>_mean, <metric>_std, <metric>_ci95` (Float64) and `<metric>_n` (Int64).
//!   `runs` is the number of runs of the group, `<metric>_n` the finished runs where the
//!   metric is defined: a cell with `_n < runs` is incomplete.
//! * runs: `run, stream, method, grid, param.*, seed, status, failure, attempts, tasks`, one
//!   Float64 column per chosen metric, `flagged, flags`.
//! * per-task: `run, stream, method, grid, param.*, seed, after_task, on_task, accuracy, loss`
//!   (`after_task` null for the untrained network's b_j).
//! * series ([`ReportOptions::series`]): `run, stream, method, grid, param.*, seed, task,
//!   on_task, bin, layer, metric, value`, one row per measured value (see
//!   [`frame::series_frame`]).
//!
//! `param.<name>` is one typed column per method parameter of the runs' resolved specs (Int64,
//! Float64, Boolean or String); every integer is Int64, nullable where it can be missing.
//! Parquet files open with pyarrow 12 and later (no view types; see `parquet.rs`).
//!
//! In a comparison every table starts with an `experiment` column (String).
//!
//! Metric names: `acc, bwt, fwt, forgetting, final_online_acc, mean_online_acc,
//! final_online_loss, mean_online_loss, dead, dead_change, effective_rank,
//! effective_rank_change, mean_abs_weight, mean_abs_weight_change, wall_seconds`
//! ([`Metric`]). Undefined metrics are null, never NaN.
//!
//! Markdown and LaTeX show group cells as `mean ± half-width` (95% CI by default, or the
//! standard deviation), append `(n/N)` to incomplete cells and mark the best complete value
//! per column in bold.
#![warn(missing_docs)]

mod decode;
mod error;
mod filter;
pub mod frame;
mod group;
mod html;
mod metric;
mod params;
mod parquet;
pub mod plot;
mod render;
#[allow(clippy::module_inception)]
mod report;
mod series;
mod stats;
mod summary;
pub mod tensorboard;
mod text;

pub use error::ReportError;
pub use filter::{Filter, InvalidFilter, UnknownFilterKey};
pub use group::GroupSummary;
pub use metric::{Better, Metric, UnknownMetric};
pub use params::{Params, ResolveParams, PARAM_PREFIX};
pub use render::{Format, TableKind, UnknownFormat};
pub use report::{ExperimentInfo, Report, ReportOptions, Spread};
pub use series::{CapacityPoint, LayerCapacity, OnlineBin, PlasticityPoint, RunSeries, SeriesPoint};
pub use stats::{student_t_quantile, Summary};
pub use summary::{EvalRow, RunSummary};

#[cfg(test)]
mod tests;
