//! The capacity CLNP has committed, per hidden layer, against the number of tasks trained, for
//! one group: the fraction of units used (`used / (used + free)` of its `clnp.capacity` method
//! events, see [`protocol::payload::ClnpCapacity`]; solid, with its 95% band over seeds) and
//! the fraction of the units earlier tasks committed that the task just trained reuses
//! (`reused / (used − new)`; dashed, same colour, from the second task on) — the paper's two
//! diagnostics: how much is left for later tasks, and which layers' features transfer. A layer
//! that reaches 1 used has nothing left for new tasks. Groups without such events have no figure.

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, BandPoint, Member};
use super::style::{self, Dash, SeriesStyle};
use crate::series::LayerCapacity;

/// A group's capacity lines, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CapacityFigure {
    /// Per hidden layer (input side first), the fraction used after each task.
    pub layers: Vec<Vec<BandPoint>>,
    /// Per hidden layer, the fraction of earlier tasks' units each task reused.
    pub reused: Vec<Vec<BandPoint>>,
}

impl CapacityFigure {
    /// The figure of `member`'s finished runs, or `None` when they reported no capacity.
    pub fn of(member: &Member<'_>) -> Option<CapacityFigure> {
        let depth =
            member.runs.iter().flat_map(|r| r.series.capacity.iter().map(|c| c.layers.len())).max()?;
        let per_layer = |fraction: fn(&LayerCapacity) -> Option<f64>| -> Vec<Vec<BandPoint>> {
            (0..depth)
                .map(|l| {
                    let points = member.runs.iter().flat_map(|r| {
                        r.series
                            .capacity
                            .iter()
                            .filter_map(move |c| Some((c.task, fraction(c.layers.get(l)?)?)))
                    });
                    data::band_by_key(points, |task| axes::after_task_x(Some(task)))
                })
                .collect()
        };
        let layers = per_layer(LayerCapacity::used_fraction);
        let reused = per_layer(LayerCapacity::reused_fraction);
        layers.iter().any(|l| !l.is_empty()).then_some(CapacityFigure { layers, reused })
    }

    /// Draws a line per layer with `title`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let reused_style = |l: usize| SeriesStyle { dash: Dash::Dashed, ..style::series_style(l) };
        let mut entries: Vec<LegendEntry> = (0..self.layers.len())
            .map(|l| LegendEntry {
                label: format!("hidden layer {} used", l + 1),
                style: style::series_style(l),
            })
            .collect();
        entries.extend(self.reused.iter().enumerate().filter(|(_, p)| !p.is_empty()).map(|(l, _)| {
            LegendEntry {
                label: format!("hidden layer {} reused (of earlier units)", l + 1),
                style: reused_style(l),
            }
        }));
        let (plot, legend) = axes::with_legend_strip(&body, &entries);
        let x_max = self.layers.iter().flat_map(|l| l.iter().map(|p| p.x)).fold(1.0, f64::max);
        let mut chart = axes::chart(&plot, None, -0.2..x_max + 0.2, 0.0..1.02)?;
        axes::mesh(&mut chart, axes::AFTER_TASK, Ticks::AfterTask, "fraction of units", Ticks::Real)?;
        for (l, points) in self.layers.iter().enumerate() {
            axes::band(&mut chart, points, style::series_style(l).colour)?;
        }
        for (l, points) in self.layers.iter().enumerate() {
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.mean)).collect();
            axes::line(&mut chart, &line, style::series_style(l))?;
        }
        for (l, points) in self.reused.iter().enumerate() {
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.mean)).collect();
            if !line.is_empty() {
                axes::line(&mut chart, &line, reused_style(l))?;
            }
        }
        axes::legend(&legend, &entries)
    }
}
