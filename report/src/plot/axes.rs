//! Helpers every figure shares: the title, a chart with labelled axes and a light grid, lines
//! with markers, confidence bands, and a legend in its own strip beside the plot (so it never
//! hides data).

use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::{
    Cartesian2d, ChartBuilder, ChartContext, Circle, DashedLineSeries, DrawingArea, DrawingAreaErrorKind,
    DrawingBackend, LineSeries, PathElement, Polygon, Rectangle, Text,
};
use plotters::style::{Color, RGBColor, ShapeStyle, BLACK};

use super::canvas::DrawResult;
use super::data::BandPoint;
use super::style::{self, SeriesStyle};

/// A chart with f64 axes.
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One legend entry: a label and its series' look.
pub(super) struct LegendEntry {
    /// What the series is.
    pub label: String,
    /// Its colour and line pattern.
    pub style: SeriesStyle,
}

/// Widest legend line in characters; a longer label wraps onto more lines (never cut).
const LEGEND_CHARS: usize = 34;

/// Pixels per legend line, and the approximate width of a character of the legend's font.
const LEGEND_ROW: i32 = 16;
const LEGEND_CHAR_PX: f64 = 7.6;

/// `label` broken into lines of at most `width` characters, after a space or a comma where it
/// can (`cbp (lr=0.01, rho=1e-4)` keeps its parts), mid-word only for a word longer than a
/// line. Every character of `label` is kept: joined again, the lines give back the label.
pub(super) fn wrap(label: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    // Words keep their trailing separator, so joining the lines restores the text exactly.
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in label.chars() {
        word.push(c);
        if c == ' ' || c == ',' {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    for word in words {
        if line.chars().count() + word.trim_end().chars().count() > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        line.push_str(&word);
        while line.trim_end().chars().count() > width {
            let head: String = line.chars().take(width).collect();
            let rest: String = line.chars().skip(width).collect();
            lines.push(head);
            line = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `title` across the top of `root` and returns the area below it. A title too long
/// for the width is set smaller (down to 11 px) rather than cut off.
pub(super) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let size = title_size(root.dim_in_pixel().0, title.chars().count());
    root.titled(title, style::small(size))
}

/// The title's font size in pixels: [`style::TITLE_SIZE`], or smaller so that `chars`
/// characters (about 0.56 em each in DejaVu Sans) fit in `width` pixels less a margin.
fn title_size(width: u32, chars: usize) -> u32 {
    let fits = (width.saturating_sub(24)) as f64 / (chars.max(1) as f64 * 0.56);
    (fits.floor() as u32).clamp(11, style::TITLE_SIZE)
}

/// Splits `area` into the plot (left) and a legend strip (right) wide enough for `entries`;
/// without entries the legend strip is empty.
pub(super) fn with_legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let longest = entries
        .iter()
        .flat_map(|e| wrap(&e.label, LEGEND_CHARS))
        .map(|l| l.trim_end().chars().count())
        .max()
        .unwrap_or(0);
    let width = if entries.is_empty() { 0 } else { (44.0 + longest as f64 * LEGEND_CHAR_PX).ceil() as u32 };
    let total = area.dim_in_pixel().0;
    area.split_horizontally(total.saturating_sub(width))
}

/// A chart over `x` × `y` in `area`, with an optional caption (panel title) and room for tick
/// labels and axis descriptions.
pub(super) fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: Option<&str>,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(12).margin_right(20).x_label_area_size(46).y_label_area_size(64);
    if let Some(caption) = caption {
        builder.caption(caption, style::panel_title());
    }
    builder.build_cartesian_2d(x, y)
}

/// Whether `v` is (numerically) a whole number.
fn whole(v: f64) -> bool {
    (v - v.round()).abs() < 1e-9
}

/// A tick label: integers without decimals, other values with as few decimals as read well.
pub(super) fn tick(v: f64) -> String {
    if whole(v) {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_string()
    }
}

/// Large counts (examples seen) as `12k`, `1.5M`.
pub(super) fn count_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", tick(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", tick(v / 1e3))
    } else {
        tick(v)
    }
}

/// The description of every axis that counts progress through the stream. One numbering in
/// every figure, the accuracy matrix's: task i is the i-th task (from 0), a point at i is the
/// network after training task i, and `init` (at −1) the untrained network.
pub(super) const AFTER_TASK: &str = "after training task i (init = untrained)";

/// The x position of the network after training task `after` (`None`: untrained, at −1).
pub(super) fn after_task_x(after: Option<usize>) -> f64 {
    after.map_or(-1.0, |i| i as f64)
}

/// How an axis labels its ticks.
#[derive(Clone, Copy)]
pub(super) enum Ticks {
    /// Whole numbers only (task indices); other ticks stay unlabelled.
    Integer,
    /// Task indices on an [`AFTER_TASK`] axis: whole numbers, −1 as `init`.
    AfterTask,
    /// Whole numbers times a factor (block indices of a long stream's matrix, shown as the
    /// first task of each block).
    IntegerTimes(usize),
    /// Any value, compactly.
    Real,
    /// Large counts with k/M suffixes.
    Count,
}

/// The label of tick `v` on an axis labelled as `ticks` says.
pub(super) fn label_of(ticks: Ticks, v: f64) -> String {
    match ticks {
        Ticks::Integer | Ticks::AfterTask if !whole(v) => String::new(),
        Ticks::AfterTask if v.round() as i64 == -1 => "init".into(),
        Ticks::AfterTask if v < -1.0 => String::new(),
        Ticks::Integer | Ticks::AfterTask => tick(v),
        Ticks::IntegerTimes(k) if whole(v) => tick(v * k as f64),
        Ticks::IntegerTimes(_) => String::new(),
        Ticks::Real => tick(v),
        Ticks::Count => count_tick(v),
    }
}

/// Draws the axes, tick labels, descriptions and a light grid.
pub(super) fn mesh<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    x_desc: &str,
    x_ticks: Ticks,
    y_desc: &str,
    y_ticks: Ticks,
) -> DrawResult<DB> {
    let x_format = move |v: &f64| label_of(x_ticks, *v);
    let y_format = move |v: &f64| label_of(y_ticks, *v);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style(style::label())
        .axis_desc_style(style::axis())
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .axis_style(BLACK.mix(0.6))
        .draw()
}

/// Draws a line through `points` in `look`'s colour and pattern, with a marker on each point
/// when there are few enough to tell apart (or a lone point, which a line would not show).
pub(super) fn line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[(f64, f64)],
    look: SeriesStyle,
) -> DrawResult<DB> {
    let colour = look.colour;
    let stroke = ShapeStyle::from(&colour).stroke_width(2);
    match look.dash.pattern() {
        None => {
            chart.draw_series(LineSeries::new(points.iter().copied(), stroke))?;
        }
        Some((dash, gap)) => {
            chart.draw_series(DashedLineSeries::new(points.iter().copied(), dash, gap, stroke))?;
        }
    }
    if points.len() <= 40 {
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    Ok(())
}

/// Draws the 95% confidence band of `points` (a filled polygon between `low` and `high`) in a
/// light shade of `colour`; nothing where every point is a single seed.
pub(super) fn band<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    points: &[BandPoint],
    colour: RGBColor,
) -> DrawResult<DB> {
    if points.len() < 2 || points.iter().all(|p| p.high - p.low <= 0.0) {
        return Ok(());
    }
    let outline: Vec<(f64, f64)> =
        points.iter().map(|p| (p.x, p.high)).chain(points.iter().rev().map(|p| (p.x, p.low))).collect();
    chart.draw_series(std::iter::once(Polygon::new(outline, colour.mix(style::BAND_OPACITY).filled())))?;
    Ok(())
}

/// The height in pixels a legend of `labels` takes, drawn by [`legend`] below a title: what a
/// figure's height must at least be for no label to fall off its bottom.
pub(super) fn legend_height<'a>(labels: impl IntoIterator<Item = &'a str>) -> u32 {
    let rows: i32 = labels.into_iter().map(|l| wrap(l, LEGEND_CHARS).len() as i32 * LEGEND_ROW + 6).sum();
    (30 + rows + 60).max(0) as u32
}

/// Draws `entries` top-down in `area`: a swatch in the series' colour and pattern, and the
/// whole label, wrapped onto as many lines as it needs.
pub(super) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> DrawResult<DB> {
    let mut y = 30;
    for entry in entries {
        let stroke = ShapeStyle::from(&entry.style.colour).stroke_width(3);
        match entry.style.dash.pattern() {
            None => area.draw(&PathElement::new(vec![(8, y), (32, y)], stroke))?,
            Some((dash, gap)) => {
                let mut x = 8;
                while x < 32 {
                    let end = (x + dash as i32).min(32);
                    area.draw(&PathElement::new(vec![(x, y), (end, y)], stroke))?;
                    x = end + gap as i32;
                }
            }
        }
        for (k, line) in wrap(&entry.label, LEGEND_CHARS).into_iter().enumerate() {
            area.draw(&Text::new(line, (38, y - 7 + LEGEND_ROW * k as i32), style::label()))?;
            if k > 0 {
                y += LEGEND_ROW;
            }
        }
        y += LEGEND_ROW + 6;
    }
    Ok(())
}

/// Writes `message` in the middle of `area` (a panel without data says so rather than
/// showing empty axes).
pub(super) fn empty_note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK.mix(0.15)))?;
    let x = (w as i32 / 2 - message.chars().count() as i32 * 7 / 2).max(4);
    area.draw(&Text::new(message.to_string(), (x, h as i32 / 2), style::label()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_compactly() {
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(0.1), "0.1");
        assert_eq!(tick(12.5), "12.5");
        assert_eq!(count_tick(12_000.0), "12k");
        assert_eq!(count_tick(1_500_000.0), "1.5M");
        assert_eq!(label_of(Ticks::Integer, 2.5), "");
        assert_eq!(label_of(Ticks::Integer, 2.0), "2");
        assert_eq!(label_of(Ticks::AfterTask, -1.0), "init");
        assert_eq!(label_of(Ticks::AfterTask, 0.0), "0");
        assert_eq!(label_of(Ticks::AfterTask, 0.5), "");
        assert_eq!(title_size(960, 40), 20);
        assert_eq!(title_size(720, 100), 12);
        assert_eq!(title_size(100, 500), 11);
    }

    #[test]
    fn legend_labels_wrap_whole_and_are_never_cut() {
        let label = "niwf (lambda_lock=10.0, lock=hard, lock_space=input, mask_width=0.25)";
        let lines = wrap(label, 34);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| l.trim_end().chars().count() <= 34), "{lines:?}");
        assert_eq!(lines.concat(), label);
        assert_eq!(lines[0], "niwf (lambda_lock=10.0, lock=hard, ");
        assert_eq!(wrap("sgd", 34), ["sgd"]);
        let long_word = "a".repeat(80);
        assert_eq!(wrap(&long_word, 34).concat(), long_word);
    }
}
