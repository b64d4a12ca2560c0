//! Plasticity diagnostics over the stream, one figure per stream with three panels — dead-unit
//! fraction, effective rank and mean |w| (hidden layers averaged, as in the tables) — against
//! the task just trained (`init`: the untrained network; the accuracy matrix's numbering), a
//! line per group with its 95% band over seeds. Rising dead
//! units, falling effective rank and growing weights are the usual companions of lost
//! plasticity (Dohare et al. 2024; Lyle et al. 2023).

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

use super::axes::{self, LegendEntry, Ticks};
use super::canvas::DrawResult;
use super::data::{self, BandPoint, Member};
use super::style;
use crate::PlasticityPoint;

/// One group's three series.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PlasticityLines {
    /// Legend label.
    pub label: String,
    /// Colour index of the group.
    pub colour: usize,
    /// Dead-unit fraction per measurement.
    pub dead: Vec<BandPoint>,
    /// Effective rank per measurement.
    pub effective_rank: Vec<BandPoint>,
    /// Mean |w| per measurement.
    pub mean_abs_weight: Vec<BandPoint>,
}

/// The plasticity figure of one stream, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PlasticityFigure {
    /// One entry per group with measurements.
    pub groups: Vec<PlasticityLines>,
}

impl PlasticityFigure {
    /// The figure over `members` (groups of one stream); `None` when none measured
    /// plasticity.
    pub fn of(members: &[(String, usize, &Member<'_>)]) -> Option<PlasticityFigure> {
        let groups: Vec<PlasticityLines> = members
            .iter()
            .filter_map(|(label, colour, member)| {
                let band = |f: fn(&PlasticityPoint) -> Option<f64>| {
                    let points = member.runs.iter().flat_map(|r| {
                        r.series.plasticity.iter().filter_map(move |p| Some((p.after_tasks, f(p)?)))
                    });
                    data::band_by_key(points, |trained| axes::after_task_x(trained.checked_sub(1)))
                };
                let lines = PlasticityLines {
                    label: label.clone(),
                    colour: *colour,
                    dead: band(|p| p.dead),
                    effective_rank: band(|p| p.effective_rank),
                    mean_abs_weight: band(|p| Some(p.mean_abs_weight)),
                };
                let empty = lines.dead.is_empty()
                    && lines.effective_rank.is_empty()
                    && lines.mean_abs_weight.is_empty();
                (!empty).then_some(lines)
            })
            .collect();
        (!groups.is_empty()).then_some(PlasticityFigure { groups })
    }

    /// Draws the three panels with `title` and a legend of groups.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let entries: Vec<LegendEntry> = self
            .groups
            .iter()
            .map(|g| LegendEntry { label: g.label.clone(), style: style::series_style(g.colour) })
            .collect();
        let (plots, legend) = axes::with_legend_strip(&body, &entries);
        let panels = plots.split_evenly((1, 3));
        type Pick = fn(&PlasticityLines) -> &Vec<BandPoint>;
        // (panel, axis, series, whether the value is a fraction in [0, 1])
        let specs: [(&str, &str, Pick, bool); 3] = [
            ("Dead units", "fraction of units never active", |g| &g.dead, true),
            ("Effective rank", "effective rank of the features", |g| &g.effective_rank, false),
            ("Mean |w|", "mean absolute weight", |g| &g.mean_abs_weight, false),
        ];
        for (panel, (name, y_desc, pick, fraction)) in panels.iter().zip(specs) {
            let all = || self.groups.iter().flat_map(|g| pick(g).iter());
            let Some((x0, x1)) = data::padded_range(all().map(|p| p.x)) else {
                axes::empty_note(panel, &format!("{name}: not measured"))?;
                continue;
            };
            let (mut y0, mut y1) =
                data::padded_range(all().flat_map(|p| [p.low, p.high])).unwrap_or((0.0, 1.0));
            if fraction {
                (y0, y1) = (y0.max(0.0), y1.clamp(0.05, 1.0));
            }
            let mut chart = axes::chart(panel, Some(name), x0..x1, y0..y1)?;
            axes::mesh(&mut chart, axes::AFTER_TASK, Ticks::AfterTask, y_desc, Ticks::Real)?;
            for g in &self.groups {
                axes::band(&mut chart, pick(g), style::series_style(g.colour).colour)?;
            }
            for g in &self.groups {
                let points: Vec<(f64, f64)> = pick(g).iter().map(|p| (p.x, p.mean)).collect();
                axes::line(&mut chart, &points, style::series_style(g.colour))?;
            }
        }
        axes::legend(&legend, &entries)
    }
}
