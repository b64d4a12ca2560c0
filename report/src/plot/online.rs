//! Online performance over the stream, one figure per stream with a line per group and its
//! 95% confidence band over seeds: the loss-of-plasticity picture (Dohare et al. 2024).
//!
//! * Classification: each task's final online accuracy (its last bin, measured before each
//!   example's update) against the task index. A plastic learner stays level; a learner
//!   losing plasticity declines task after task.
//! * Regression: the online error (the bins' mean squared error) against the examples seen,
//!   consecutive bins merged (example-weighted) so a line has at most [`MAX_POINTS`] points.
//!   Seeds are aligned bin by bin (their streams have the same bins).

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, BandPoint, Member};
use super::style;
use crate::RunSummary;

/// Most points per regression line.
pub(super) const MAX_POINTS: usize = 300;

/// What the figure plots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnlineMeasure {
    /// Each task's final online accuracy.
    Accuracy,
    /// Binned online error over examples.
    Error,
}

/// One group's line.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct OnlineLine {
    /// Legend label.
    pub label: String,
    /// Colour index of the group.
    pub colour: usize,
    /// Mean and band at each x.
    pub points: Vec<BandPoint>,
}

/// The online figure of one stream, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct OnlineFigure {
    /// What is plotted.
    pub measure: OnlineMeasure,
    /// One line per group with data.
    pub lines: Vec<OnlineLine>,
}

/// Each task's final online accuracy over `runs` (seeds), as a band per task index.
pub(super) fn task_accuracy_band(runs: &[&RunSummary]) -> Vec<BandPoint> {
    let points = runs.iter().flat_map(|r| {
        r.series.task_online_accuracy.iter().enumerate().filter_map(|(task, acc)| acc.map(|a| (task, a)))
    });
    data::band_by_key(points, |task| task as f64)
}

/// The binned online error over `runs` (seeds): per run, consecutive bins merged into display
/// bins of `width` bins each (example-weighted); x is the examples seen at a display bin's end
/// in the longest run.
pub(super) fn binned_error_band(runs: &[&RunSummary]) -> Vec<BandPoint> {
    let bins = runs.iter().map(|r| r.series.online_bins.len()).max().unwrap_or(0);
    if bins == 0 {
        return Vec::new();
    }
    let width = bins.div_ceil(MAX_POINTS);
    let mut x_end: Vec<f64> = Vec::new();
    let mut per_run: Vec<Vec<Option<f64>>> = Vec::with_capacity(runs.len());
    for run in runs {
        let mut merged = Vec::with_capacity(bins.div_ceil(width));
        let mut seen = 0u64;
        let mut ends = Vec::with_capacity(bins.div_ceil(width));
        for chunk in run.series.online_bins.chunks(width) {
            let examples: u64 = chunk.iter().map(|b| b.examples).sum();
            let loss: f64 = chunk.iter().map(|b| b.loss * b.examples as f64).sum();
            seen += examples;
            ends.push(seen as f64);
            merged.push((examples > 0).then(|| loss / examples as f64));
        }
        if ends.len() > x_end.len() {
            x_end = ends;
        }
        per_run.push(merged);
    }
    data::band_by_index(&per_run, |i| x_end[i])
}

impl OnlineFigure {
    /// The figure over `members` (groups of one stream) measuring `measure`; `None` when no
    /// group has online data.
    pub fn of(members: &[(String, usize, &Member<'_>)], measure: OnlineMeasure) -> Option<OnlineFigure> {
        let lines: Vec<OnlineLine> = members
            .iter()
            .map(|(label, colour, member)| OnlineLine {
                label: label.clone(),
                colour: *colour,
                points: match measure {
                    OnlineMeasure::Accuracy => task_accuracy_band(&member.runs),
                    OnlineMeasure::Error => binned_error_band(&member.runs),
                },
            })
            .filter(|l| !l.points.is_empty())
            .collect();
        (!lines.is_empty()).then_some(OnlineFigure { measure, lines })
    }

    /// Draws the lines and bands with `title` and a legend of groups.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let entries: Vec<LegendEntry> = self
            .lines
            .iter()
            .map(|l| LegendEntry { label: l.label.clone(), style: style::series_style(l.colour) })
            .collect();
        let (plot, legend) = axes::with_legend_strip(&body, &entries);
        let all = || self.lines.iter().flat_map(|l| l.points.iter());
        let (x0, x1) = data::padded_range(all().map(|p| p.x)).unwrap_or((0.0, 1.0));
        let (y_range, x_desc, x_ticks, y_desc) = match self.measure {
            OnlineMeasure::Accuracy => {
                let low = all().map(|p| p.low).fold(f64::INFINITY, f64::min).clamp(0.0, 1.0);
                ((low - 0.05).max(0.0)..1.02, "task", Ticks::Integer, "final online accuracy of the task")
            }
            OnlineMeasure::Error => {
                let (lo, hi) = data::padded_range(all().flat_map(|p| [p.low, p.high])).unwrap_or((0.0, 1.0));
                (lo.max(0.0)..hi, "examples seen", Ticks::Count, "online error (mean squared)")
            }
        };
        let mut chart = axes::chart(&plot, None, x0..x1, y_range)?;
        axes::mesh(&mut chart, x_desc, x_ticks, y_desc, Ticks::Real)?;
        for line in &self.lines {
            axes::band(&mut chart, &line.points, style::series_style(line.colour).colour)?;
        }
        for line in &self.lines {
            let points: Vec<(f64, f64)> = line.points.iter().map(|p| (p.x, p.mean)).collect();
            axes::line(&mut chart, &points, style::series_style(line.colour))?;
        }
        axes::legend(&legend, &entries)
    }
}
