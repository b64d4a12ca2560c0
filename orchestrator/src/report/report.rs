//! Building a report from a store: summarise each run, filter, group, choose and sort.

use super::error::ReportError;
use super::filter::{self, Filter};
use super::group::{self, GroupSummary};
use super::metric::Metric;
use super::summary::{RunSummary, Summarizer};
use crate::store::Store;

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
        }
    }
}

/// An experiment's results: per-run summaries and per-group statistics, ready to render.
#[derive(Clone, Debug)]
pub struct Report {
    experiment: Option<String>,
    runs: Vec<RunSummary>,
    groups: Vec<GroupSummary>,
    metrics: Vec<Metric>,
    spread: Spread,
    precision: usize,
}

impl Report {
    /// Builds the report of everything in `store` that passes `options.filters`. Reads each
    /// selected run's events once.
    pub fn build(store: &Store, options: &ReportOptions) -> Result<Report, ReportError> {
        let meta = store.experiment()?;
        let current: Option<std::collections::HashSet<String>> = meta
            .as_ref()
            .filter(|m| !options.all_runs && !m.runs.is_empty())
            .map(|m| m.runs.iter().cloned().collect());
        let experiment = meta.map(|m| m.name);
        let mut all = store.runs()?;
        if let Some(current) = &current {
            all.retain(|r| current.contains(&r.id));
        }
        let records = filter::apply(&options.filters, all, |r| (&r.labels, &r.status))?;
        let mut runs = Vec::with_capacity(records.len());
        for record in &records {
            let mut summarizer = Summarizer::new(record);
            for event in store.events(&record.id) {
                summarizer.add(&event?);
            }
            runs.push(summarizer.finish(record));
        }
        let mut groups = group::group(&runs);
        let metrics = match &options.metrics {
            Some(chosen) => chosen.clone(),
            None => default_metrics(&runs),
        };
        if let Some(metric) = options.sort {
            group::sort_best_first(&mut groups, metric, |g| g.cell(metric).mean);
            group::sort_best_first(&mut runs, metric, |r| r.value(metric));
        }
        Ok(Report { experiment, runs, groups, metrics, spread: options.spread, precision: options.precision })
    }

    /// The experiment's name, if the store has its metadata.
    pub fn experiment(&self) -> Option<&str> {
        self.experiment.as_deref()
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
