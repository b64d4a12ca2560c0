//! Accuracy on each task as training proceeds through the stream, for one group: one line per
//! task j through R\[i\]\[j\] against the number of tasks trained (i + 1; 0 is the untrained
//! network, b_j), averaged over seeds. A line rises when its task is trained and falls as later
//! tasks overwrite it: forgetting, task by task.
//!
//! Lines are coloured along viridis in task order. Streams with more than [`MAX_LINES`] tasks
//! show that many, evenly spread (first and last always).

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, Member};
use super::style;

/// Most task lines on one figure.
pub(super) const MAX_LINES: usize = 10;

/// The lines of one group, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TaskCurves {
    /// Tasks in the stream.
    pub tasks: usize,
    /// Per task shown: its index and its (tasks trained, mean accuracy) points in order.
    pub lines: Vec<(usize, Vec<(f64, f64)>)>,
}

impl TaskCurves {
    /// The curves of `member`'s finished runs, or `None` when they measured no accuracy.
    pub fn of(member: &Member<'_>) -> Option<TaskCurves> {
        let tasks = member.runs.iter().map(|r| r.tasks).max().unwrap_or(0);
        let entries = data::mean_entries(&member.runs);
        if tasks == 0 || !entries.keys().any(|(after, _)| after.is_some()) {
            return None;
        }
        let lines = data::spread_indices(tasks, MAX_LINES)
            .into_iter()
            .map(|j| {
                let mut points: Vec<(f64, f64)> = entries
                    .iter()
                    .filter(|((_, on), _)| *on == j)
                    .map(|(&(after, _), &acc)| (after.map_or(0.0, |i| (i + 1) as f64), acc))
                    .collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                (j, points)
            })
            .filter(|(_, points)| !points.is_empty())
            .collect();
        Some(TaskCurves { tasks, lines })
    }

    /// Draws the lines with `title` and a legend of tasks.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let colour =
            |j: usize| style::viridis(if self.tasks > 1 { j as f64 / (self.tasks - 1) as f64 } else { 0.0 });
        let entries: Vec<LegendEntry> = self
            .lines
            .iter()
            .map(|(j, _)| LegendEntry { label: format!("task {j}"), colour: colour(*j) })
            .collect();
        let (plot, legend) = axes::with_legend_strip(&body, &entries);
        let mut chart = axes::chart(&plot, None, -0.2..self.tasks as f64 + 0.2, 0.0..1.02)?;
        axes::mesh(
            &mut chart,
            "tasks trained (0 = untrained)",
            Ticks::Integer,
            "accuracy on the task",
            Ticks::Real,
        )?;
        for (j, points) in &self.lines {
            axes::line(&mut chart, points, colour(*j))?;
        }
        axes::legend(&legend, &entries)
    }
}
