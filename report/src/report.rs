//! Building a report from one store, or a comparison from several: summarise each run,
//! filter, group, choose and sort.

use std::path::PathBuf;

use super::error::ReportError;
use super::filter::{self, Filter};
use super::group::{self, GroupSummary};
use super::metric::Metric;
use super::summary::{RunSummary, Summarizer};
use results::{RunRecord, RunSource, SourceError};

/// What ± shows in rendered group cells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// The 95% confidence half-width of the mean, t_{0.975, n−1} · std / √n.
    #[default]
    Ci95,
    /// The sample standard deviation (n − 1).
    Std,
}

/// What a report shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// Metric columns, in order; `None` picks [`Metric::DEFAULT`] narrowed to the metrics some
    /// run has (online loss only when some run is a regression stream).
    pub metrics: Option<Vec<Metric>>,
    /// Conditions on runs (see [`Filter`]).
    pub filters: Vec<Filter>,
    /// Sort groups and runs by this metric, best first; `None` keeps the recipe's order.
    pub sort: Option<Metric>,
    /// What ± shows.
    pub spread: Spread,
    /// Decimals in Markdown and LaTeX (machine formats keep full precision).
    pub precision: usize,
    /// Include runs that are not in the recipe's latest expansion (kept from earlier versions
    /// of an edited recipe).
    pub all_runs: bool,
    /// Keep every measured value for the long time-series table
    /// ([`TableKind::Series`](crate::TableKind::Series)); off by default because it holds
    /// every online bin in memory.
    pub series: bool,
    /// Fills in the parameters a run's spec leaves at their defaults, so that `param.*`
    /// columns and `--where` see every parameter the run trains with (`optimizer=adam`,
    /// `lr=0.01`); `None` keeps the parameters the specs state.
    pub resolve_params: Option<super::params::ResolveParams>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            metrics: None,
            filters: Vec::new(),
            sort: None,
            spread: Spread::Ci95,
            precision: 3,
            all_runs: false,
            series: false,
            resolve_params: None,
        }
    }
}

/// One experiment a report draws on: what a published table must say about where its numbers
/// come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExperimentInfo {
    /// The name runs and groups carry ([`RunSummary::experiment`]): the experiment's name, else
    /// its results folder's name; in a comparison where two experiments share a name, the
    /// results folder's path.
    pub label: String,
    /// The experiment's name, if the store has its metadata.
    pub name: Option<String>,
    /// The recipe's text exactly as it was run, if the store has it.
    pub recipe: Option<String>,
    /// The clorch version that created or last updated the experiment, if known.
    pub clorch_version: Option<String>,
    /// The results folder, `None` for a temporary store.
    pub results_dir: Option<PathBuf>,
}

/// An experiment's results, or several experiments' side by side: per-run summaries and
/// per-group statistics, ready to render.
#[derive(Clone, Debug)]
pub struct Report {
    experiments: Vec<ExperimentInfo>,
    runs: Vec<RunSummary>,
    groups: Vec<GroupSummary>,
    metrics: Vec<Metric>,
    spread: Spread,
    precision: usize,
}

impl Report {
    /// Builds the report of everything in `store` that passes `options.filters`. Reads each
    /// selected run's events once.
    pub fn build(store: &dyn RunSource, options: &ReportOptions) -> Result<Report, ReportError> {
        Report::compare(&[store], options)
    }

    /// Builds one report over several experiments' stores: groups are keyed by
    /// `(experiment, stream, method, grid point)`, so the same method in two experiments is two
    /// rows, and tables gain an `Experiment` column when there is more than one experiment.
    /// Filters apply to the runs of all stores together (a key must exist in some store). Rows
    /// follow the order of `stores`, then each recipe's order (or `options.sort`).
    pub fn compare(stores: &[&dyn RunSource], options: &ReportOptions) -> Result<Report, ReportError> {
        let mut experiments = Vec::with_capacity(stores.len());
        let mut all = Vec::new();
        for (index, store) in stores.iter().enumerate() {
            let meta = store.experiment()?;
            let current: Option<std::collections::HashSet<String>> = meta
                .as_ref()
                .filter(|m| !options.all_runs && !m.runs.is_empty())
                .map(|m| m.runs.iter().cloned().collect());
            let mut records = store.runs()?;
            if let Some(current) = &current {
                records.retain(|r| current.contains(&r.id));
            }
            if let Some(resolve) = options.resolve_params {
                // The report's own copy of each record: the store is not written.
                for r in &mut records {
                    r.spec.method.params = (resolve.0)(&r.spec.method.kind, &r.spec.method.params);
                }
            }
            all.extend(records.into_iter().map(|r| (index, r)));
            let results_dir = store.results_dir().map(PathBuf::from);
            let folder_name =
                results_dir.as_ref().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
            let label = meta
                .as_ref()
                .map(|m| m.name.clone())
                .or(folder_name)
                .unwrap_or_else(|| format!("experiment {}", index + 1));
            experiments.push(ExperimentInfo {
                label,
                name: meta.as_ref().map(|m| m.name.clone()),
                recipe: meta.as_ref().map(|m| m.recipe.clone()),
                clorch_version: meta.map(|m| m.clorch_version),
                results_dir,
            });
        }
        disambiguate(&mut experiments);
        let records =
            filter::apply(&options.filters, all, |(_, r)| (&r.labels, &r.status, &r.spec.method.params))?;
        let labels: Vec<&str> = experiments.iter().map(|e| e.label.as_str()).collect();
        let mut runs = summarize_all(stores, &labels, &records, options.series)?;
        let mut groups = group::group(&runs);
        let metrics = match &options.metrics {
            Some(chosen) => chosen.clone(),
            None => default_metrics(&runs),
        };
        if let Some(metric) = options.sort {
            group::sort_best_first(&mut groups, metric, |g| g.cell(metric).mean);
            group::sort_best_first(&mut runs, metric, |r| r.value(metric));
        }
        Ok(Report {
            experiments,
            runs,
            groups,
            metrics,
            spread: options.spread,
            precision: options.precision,
        })
    }

    /// The experiment's name, if the report is of one experiment whose store has its metadata.
    pub fn experiment(&self) -> Option<&str> {
        match self.experiments.as_slice() {
            [one] => one.name.as_deref(),
            _ => None,
        }
    }

    /// The experiments the report draws on, in the order given.
    pub fn experiments(&self) -> &[ExperimentInfo] {
        &self.experiments
    }

    /// Whether the report compares several experiments (its tables then name each row's
    /// experiment).
    pub fn is_comparison(&self) -> bool {
        self.experiments.len() > 1
    }

    /// The selected runs, in recipe order (or sorted).
    pub fn runs(&self) -> &[RunSummary] {
        &self.runs
    }

    /// The groups, in order of first appearance in the recipe (or sorted).
    pub fn groups(&self) -> &[GroupSummary] {
        &self.groups
    }

    /// The metric columns shown.
    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }

    /// What ± shows.
    pub fn spread(&self) -> Spread {
        self.spread
    }

    /// Decimals in Markdown and LaTeX.
    pub fn precision(&self) -> usize {
        self.precision
    }

    /// The best complete group mean of `metric` (marked in rendered tables), if any.
    pub fn best(&self, metric: Metric) -> Option<f64> {
        group::best(&self.groups, metric)
    }
}

/// Summarises one run from its stored events (plus one summary per evaluated model variant).
fn summarize(
    store: &dyn RunSource,
    record: &RunRecord,
    experiment: &str,
    points: bool,
) -> Result<Vec<RunSummary>, ReportError> {
    let mut summarizer = Summarizer::new(record).with_points(points);
    store.visit_events(&record.id, &mut |seq, bytes| {
        summarizer
            .add_stored(bytes)
            .map_err(|source| SourceError::Decode { what: format!("event {}#{seq}", record.id), source })
    })?;
    Ok(summarizer.finish_all(record, experiment))
}

/// Summarises `records` (each with the index of its store and experiment label), in order.
/// Runs are independent, so they are split into contiguous chunks summarised on up to
/// `available_parallelism` threads; the result does not depend on the number of threads.
fn summarize_all(
    stores: &[&dyn RunSource],
    labels: &[&str],
    records: &[(usize, RunRecord)],
    points: bool,
) -> Result<Vec<RunSummary>, ReportError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(records.len()).max(1);
    let chunk = records.len().div_ceil(threads).max(1);
    let one =
        |(index, record): &(usize, RunRecord)| summarize(stores[*index], record, labels[*index], points);
    let flat = |part: &[(usize, RunRecord)]| -> Result<Vec<RunSummary>, ReportError> {
        let mut out = Vec::with_capacity(part.len());
        for r in part {
            out.extend(one(r)?);
        }
        Ok(out)
    };
    if threads == 1 {
        return flat(records);
    }
    let parts: Vec<Result<Vec<RunSummary>, ReportError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = records.chunks(chunk).map(|part| scope.spawn(move || flat(part))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut runs = Vec::with_capacity(records.len());
    for part in parts {
        runs.extend(part?);
    }
    Ok(runs)
}

/// Gives experiments that share a label their results folder's path (or their position) as
/// label instead, so their groups stay apart.
fn disambiguate(experiments: &mut [ExperimentInfo]) {
    let labels: Vec<String> = experiments.iter().map(|e| e.label.clone()).collect();
    for (i, info) in experiments.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == info.label).count() > 1 {
            info.label = match &info.results_dir {
                Some(dir) => dir.display().to_string(),
                None => format!("{} ({})", info.label, i + 1),
            };
        }
    }
}

/// [`Metric::DEFAULT`] without the online-loss metrics unless some run is a regression
/// stream, and without metrics no run has. If that leaves nothing (no run finished yet), the
/// problem-appropriate defaults are kept so the table still shows what is missing.
fn default_metrics(runs: &[RunSummary]) -> Vec<Metric> {
    let any_regression = runs.iter().any(|r| r.regression);
    let appropriate: Vec<Metric> = Metric::DEFAULT
        .into_iter()
        .filter(|m| any_regression || !matches!(m, Metric::FinalOnlineLoss | Metric::MeanOnlineLoss))
        .collect();
    let present: Vec<Metric> =
        appropriate.iter().copied().filter(|&m| runs.iter().any(|r| r.value(m).is_some())).collect();
    if present.is_empty() {
        appropriate
    } else {
        present
    }
}
