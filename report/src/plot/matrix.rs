//! The accuracy matrix of one group as a heat map: row i is the network after training task
//! i, column j the task evaluated, colour the accuracy R\[i\]\[j\] averaged over seeds.
//! Forgetting shows as colour fading down a column below the diagonal, forward transfer as
//! colour above it.
//!
//! Streams longer than [`MAX_CELLS`] tasks are shown in blocks of k × k entries (the mean of
//! the entries measured in the block), so the figure stays readable and small. Unmeasured
//! entries (a subsampled evaluation schedule) are grey. Cells carry their value as text when
//! the matrix is at most [`MAX_ANNOTATED`] wide.

use plotters::coord::Shift;
use plotters::prelude::{ChartBuilder, DrawingArea, DrawingBackend, Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, BLACK};

use super::axes::{self, Ticks};
use super::canvas::DrawResult;
use super::data::{self, Member};
use super::style;

/// Most cells per side before entries are averaged in blocks.
pub(super) const MAX_CELLS: usize = 60;

/// Most cells per side that carry their value as text.
pub(super) const MAX_ANNOTATED: usize = 12;

/// A group's mean accuracy matrix, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct MatrixFigure {
    /// Mean accuracy per (row block, column block); `None` where nothing was measured.
    pub cells: Vec<Vec<Option<f64>>>,
    /// Tasks per block side (1 unless the stream is longer than [`MAX_CELLS`]).
    pub block: usize,
}

impl MatrixFigure {
    /// The matrix of `member`'s finished runs, or `None` when they measured no accuracy
    /// (regression streams).
    pub fn of(member: &Member<'_>) -> Option<MatrixFigure> {
        let tasks = member.runs.iter().map(|r| r.tasks).max().unwrap_or(0);
        let entries = data::mean_entries(&member.runs);
        if tasks == 0 || !entries.keys().any(|(after, _)| after.is_some()) {
            return None;
        }
        let block = tasks.div_ceil(MAX_CELLS);
        let side = tasks.div_ceil(block);
        let mut sums = vec![vec![(0.0, 0u32); side]; side];
        for (&(after, on), &acc) in &entries {
            let Some(i) = after else { continue };
            if i < tasks && on < tasks {
                let slot = &mut sums[i / block][on / block];
                slot.0 += acc;
                slot.1 += 1;
            }
        }
        let cells = sums
            .into_iter()
            .map(|row| row.into_iter().map(|(sum, n)| (n > 0).then(|| sum / n as f64)).collect())
            .collect();
        Some(MatrixFigure { cells, block })
    }

    /// Draws the heat map with `title`, and a colour bar on the right.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        let body = axes::titled(root, title)?;
        let width = body.dim_in_pixel().0;
        let (main, bar) = body.split_horizontally(width.saturating_sub(90));
        let side = self.cells.len();
        let extent = -0.5..side as f64 - 0.5;
        let mut chart = axes::chart(&main, None, extent.clone(), side as f64 - 0.5..-0.5)?;
        let (x_desc, y_desc) = if self.block == 1 {
            ("evaluated on task j".to_string(), "after training task i".to_string())
        } else {
            (
                format!("evaluated on task j (blocks of {} tasks)", self.block),
                format!("after training task i (blocks of {})", self.block),
            )
        };
        let ticks = Ticks::IntegerTimes(self.block);
        let format = move |v: &f64| axes::label_of(ticks, *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(side.min(10))
            .y_labels(side.min(10))
            .x_label_formatter(&format)
            .y_label_formatter(&format)
            .label_style(style::label())
            .axis_desc_style(style::axis())
            .axis_style(BLACK.mix(0.6))
            .draw()?;
        let cells = self.cells.iter().enumerate().flat_map(|(i, row)| {
            row.iter().enumerate().map(move |(j, value)| {
                let colour = value.map_or(style::MISSING, style::viridis);
                let (x, y) = (j as f64, i as f64);
                Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], colour.filled())
            })
        });
        chart.draw_series(cells)?;
        if side <= MAX_ANNOTATED {
            let font = if side <= 6 { 14 } else { 11 };
            let centred = Pos::new(HPos::Center, VPos::Center);
            let labels = self.cells.iter().enumerate().flat_map(|(i, row)| {
                row.iter().enumerate().filter_map(move |(j, value)| {
                    let v = (*value)?;
                    let text_style = style::small(font).pos(centred).color(style::text_on(style::viridis(v)));
                    Some(Text::new(format!("{v:.2}"), (j as f64, i as f64), text_style))
                })
            });
            chart.draw_series(labels)?;
        }
        colour_bar(&bar)
    }
}

/// The accuracy scale: viridis from 0 (bottom) to 1 (top), labelled.
fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_left(4)
        .x_label_area_size(46)
        .y_label_area_size(0)
        .right_y_label_area_size(40)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    let y_format = |v: &f64| axes::tick(*v);
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_formatter(&y_format)
        .label_style(style::label())
        .axis_style(BLACK.mix(0.6))
        .draw()?;
    let steps = 100;
    chart.draw_series((0..steps).map(|k| {
        let (lo, hi) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, lo), (1.0, hi)], style::viridis((lo + hi) / 2.0).filled())
    }))?;
    chart.draw_series(std::iter::once(Rectangle::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.6))))?;
    Ok(())
}
