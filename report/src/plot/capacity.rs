//! The capacity CLNP has committed, per hidden layer, against the number of tasks trained, for
//! one group: the fraction of units used (`used / (used + free)` of its `clnp.capacity` method
//! events, see [`protocol::payload::ClnpCapacity`]) with its 95% band over seeds. A layer that
//! reaches 1 has nothing left for new tasks. Groups without such events have no figure.

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, BandPoint, Member};
use super::style;

/// A group's capacity lines, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CapacityFigure {
    /// Per hidden layer (input side first), the fraction used after each task.
    pub layers: Vec<Vec<BandPoint>>,
}

impl CapacityFigure {
    /// The figure of `member`'s finished runs, or `None` when they reported no capacity.
    pub fn of(member: &Member<'_>) -> Option<CapacityFigure> {
        let depth =
            member.runs.iter().flat_map(|r| r.series.capacity.iter().map(|c| c.layers.len())).max()?;
        let layers: Vec<Vec<BandPoint>> = (0..depth)
            .map(|l| {
                let points = member.runs.iter().flat_map(|r| {
                    r.series
                        .capacity
                        .iter()
                        .filter_map(move |c| Some((c.task, c.layers.get(l)?.used_fraction()?)))
                });
                data::band_by_key(points, |task| axes::after_task_x(Some(task)))
            })
            .collect();
        layers.iter().any(|l| !l.is_empty()).then_some(CapacityFigure { layers })
    }

    /// Draws a line per layer with `title`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let entries: Vec<LegendEntry> = (0..self.layers.len())
            .map(|l| LegendEntry { label: format!("hidden layer {}", l + 1), style: style::series_style(l) })
            .collect();
        let (plot, legend) = axes::with_legend_strip(&body, &entries);
        let x_max = self.layers.iter().flat_map(|l| l.iter().map(|p| p.x)).fold(1.0, f64::max);
        let mut chart = axes::chart(&plot, None, -0.2..x_max + 0.2, 0.0..1.02)?;
        axes::mesh(&mut chart, axes::AFTER_TASK, Ticks::AfterTask, "fraction of units used", Ticks::Real)?;
        for (l, points) in self.layers.iter().enumerate() {
            axes::band(&mut chart, points, style::series_style(l).colour)?;
        }
        for (l, points) in self.layers.iter().enumerate() {
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.mean)).collect();
            axes::line(&mut chart, &line, style::series_style(l))?;
        }
        axes::legend(&legend, &entries)
    }
}
