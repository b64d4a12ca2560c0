//! Accuracy on each task as training proceeds through the stream, for one group: one line per
//! task j through R\[i\]\[j\] against the task i just trained (`init` for the untrained
//! network's b_j), the mean over seeds with its 95% confidence band. The x axis numbers tasks
//! as the accuracy matrix's rows do, so a point here is a cell of the heat map. A line rises
//! when its task is trained and falls as later tasks overwrite it: forgetting, task by task.
//!
//! Lines are coloured along viridis in task order. Streams with more than [`MAX_LINES`] tasks
//! show that many, evenly spread (first and last always).

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, BandPoint, Member};
use super::style::{self, SeriesStyle};

/// Most task lines on one figure.
pub(super) const MAX_LINES: usize = 10;

/// The lines of one group, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TaskCurves {
    /// Tasks in the stream.
    pub tasks: usize,
    /// Per task shown: its index and its points (x = the task just trained, −1 untrained:
    /// [`axes::after_task_x`]), each with its band over seeds, in order.
    pub lines: Vec<(usize, Vec<BandPoint>)>,
}

impl TaskCurves {
    /// The curves of `member`'s finished runs, or `None` when they measured no accuracy.
    pub fn of(member: &Member<'_>) -> Option<TaskCurves> {
        let tasks = member.runs.iter().map(|r| r.tasks).max().unwrap_or(0);
        // Per task evaluated, per row (None = b_j): the accuracy of each seed.
        let mut seeds: BTreeMap<usize, BTreeMap<Option<usize>, Vec<f64>>> = BTreeMap::new();
        for run in &member.runs {
            for e in &run.evals {
                if let Some(acc) = e.accuracy.filter(|a| a.is_finite()) {
                    seeds.entry(e.on_task).or_default().entry(e.after_task).or_default().push(acc);
                }
            }
        }
        if tasks == 0 || !seeds.values().any(|rows| rows.keys().any(Option::is_some)) {
            return None;
        }
        let lines = data::spread_indices(tasks, MAX_LINES)
            .into_iter()
            .filter_map(|j| {
                let rows = seeds.get(&j)?;
                // BTreeMap order: None (untrained) first, then rows in order.
                let points: Vec<BandPoint> = rows
                    .iter()
                    .filter_map(|(&after, values)| BandPoint::of(axes::after_task_x(after), values))
                    .collect();
                (!points.is_empty()).then_some((j, points))
            })
            .collect();
        Some(TaskCurves { tasks, lines })
    }

    /// Draws the bands and lines with `title` and a legend of tasks.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let colour =
            |j: usize| style::viridis(if self.tasks > 1 { j as f64 / (self.tasks - 1) as f64 } else { 0.0 });
        let entries: Vec<LegendEntry> = self
            .lines
            .iter()
            .map(|(j, _)| LegendEntry { label: format!("task {j}"), style: SeriesStyle::solid(colour(*j)) })
            .collect();
        let (plot, legend) = axes::with_legend_strip(&body, &entries);
        let mut chart = axes::chart(&plot, None, -1.2..self.tasks as f64 - 0.8, 0.0..1.02)?;
        axes::mesh(&mut chart, axes::AFTER_TASK, Ticks::AfterTask, "accuracy on the task", Ticks::Real)?;
        for (j, points) in &self.lines {
            axes::band(&mut chart, points, colour(*j))?;
        }
        for (j, points) in &self.lines {
            let means: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.mean)).collect();
            axes::line(&mut chart, &means, SeriesStyle::solid(colour(*j)))?;
        }
        axes::legend(&legend, &entries)
    }
}
