//! Figures of a report, drawn with plotters as PNG or SVG: what a researcher looks at before
//! trusting a table, and what goes into a paper or the HTML report.
//!
//! [`figures`] lists every figure a report supports, from its run summaries (finished runs
//! only, averaged over seeds; bands are 95% Student-t confidence intervals over seeds, as in
//! the tables):
//!
//! | kind | one per | file stem |
//! |---|---|---|
//! | [`FigureKind::AccuracyMatrix`]: heat map of R\[i\]\[j\] | group | `accuracy-matrix-<group>` |
//! | [`FigureKind::TaskAccuracy`]: each task's accuracy as training proceeds | group | `task-accuracy-<group>` |
//! | [`FigureKind::OnlineAccuracy`]: each task's final online accuracy, per group with band | classification stream | `online-accuracy-<stream>` |
//! | [`FigureKind::OnlineError`]: binned online error over examples, per group with band | regression stream | `online-error-<stream>` |
//! | [`FigureKind::Plasticity`]: dead units, effective rank, mean \|w\| over tasks | stream | `plasticity-<stream>` |
//! | [`FigureKind::Capacity`]: CLNP's capacity used and reused per layer over tasks | group with `clnp.capacity` events | `capacity-<group>` |
//!
//! `<group>` is the method, its grid point and (in comparisons) its experiment, made
//! file-name safe; `<stream>` likewise. Figures whose data is absent (no accuracy for a
//! regression stream, no plasticity measurements, no capacity events) are left out.
//!
//! Text is drawn with an embedded font (`style`), so rendering needs no system fonts. Each
//! figure kind is drawn by its own file; `axes`, `style` and `data` hold what they share.

mod axes;
mod canvas;
mod capacity;
mod data;
mod error;
mod matrix;
mod online;
mod plasticity;
mod style;
mod tasks;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, DrawingBackend};

pub use canvas::{PlotFormat, UnknownPlotFormat};
pub use error::PlotError;

use super::report::Report;
use canvas::DrawResult;
use capacity::CapacityFigure;
use data::Member;
use matrix::MatrixFigure;
use online::{OnlineFigure, OnlineMeasure};
use plasticity::PlasticityFigure;
use tasks::TaskCurves;

/// The kinds of figures (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FigureKind {
    /// Heat map of a group's mean accuracy matrix.
    AccuracyMatrix,
    /// Each task's accuracy as training proceeds, for a group.
    TaskAccuracy,
    /// Each task's final online accuracy over a classification stream, per group with band.
    OnlineAccuracy,
    /// Binned online error over a regression stream, per group with band.
    OnlineError,
    /// Dead units, effective rank and mean |w| over a stream, per group with band.
    Plasticity,
    /// CLNP's capacity used per layer, for a group.
    Capacity,
}

impl FigureKind {
    /// The kind's file-stem prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            FigureKind::AccuracyMatrix => "accuracy-matrix",
            FigureKind::TaskAccuracy => "task-accuracy",
            FigureKind::OnlineAccuracy => "online-accuracy",
            FigureKind::OnlineError => "online-error",
            FigureKind::Plasticity => "plasticity",
            FigureKind::Capacity => "capacity",
        }
    }

    /// Width and height in pixels (SVG user units).
    pub fn size(self) -> (u32, u32) {
        match self {
            FigureKind::AccuracyMatrix => (720, 620),
            FigureKind::Plasticity => (1400, 460),
            FigureKind::TaskAccuracy
            | FigureKind::OnlineAccuracy
            | FigureKind::OnlineError
            | FigureKind::Capacity => (960, 540),
        }
    }
}

/// What a figure draws.
#[derive(Clone, Debug, PartialEq)]
enum Body {
    Matrix(MatrixFigure),
    Tasks(TaskCurves),
    Online(OnlineFigure),
    Plasticity(PlasticityFigure),
    Capacity(CapacityFigure),
}

impl Body {
    /// The labels of the figure's legend, in order (none for the heat map).
    fn legend_labels(&self) -> Vec<String> {
        match self {
            Body::Matrix(_) => Vec::new(),
            Body::Tasks(f) => f.lines.iter().map(|(j, _)| format!("task {j}")).collect(),
            Body::Online(f) => f.lines.iter().map(|l| l.label.clone()).collect(),
            Body::Plasticity(f) => f.groups.iter().map(|g| g.label.clone()).collect(),
            Body::Capacity(f) => (0..f.layers.len()).map(|l| format!("hidden layer {}", l + 1)).collect(),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DB> {
        match self {
            Body::Matrix(f) => f.draw(root, title),
            Body::Tasks(f) => f.draw(root, title),
            Body::Online(f) => f.draw(root, title),
            Body::Plasticity(f) => f.draw(root, title),
            Body::Capacity(f) => f.draw(root, title),
        }
    }
}

/// One figure, with its data computed and ready to draw in either format.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    kind: FigureKind,
    name: String,
    title: String,
    /// The stream it shows.
    stream: String,
    /// The group it shows (method, grid point, experiment), `None` for a figure of the whole
    /// stream.
    group: Option<String>,
    body: Body,
}

impl Figure {
    /// The figure's kind.
    pub fn kind(&self) -> FigureKind {
        self.kind
    }

    /// The file stem, unique among a report's figures (`accuracy-matrix-sgd-lr-0.1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The title drawn on the figure.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The stream the figure shows (what the HTML report groups figures by).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The group (method and grid point) the figure shows; `None` when it compares the
    /// stream's groups.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Width and height in pixels: the kind's, taller when the legend needs it (a sweep of
    /// many groups lists every one, labels whole).
    pub fn size(&self) -> (u32, u32) {
        let (width, height) = self.kind.size();
        let labels = self.body.legend_labels();
        (width, height.max(axes::legend_height(labels.iter().map(String::as_str))))
    }

    /// The figure as an SVG document (`<svg width=… height=…>`, text in `sans-serif`).
    pub fn to_svg(&self) -> Result<String, PlotError> {
        canvas::svg(&self.name, self.size(), |root| self.body.draw(root, &self.title))
    }

    /// The figure as a PNG image (8-bit RGB), text drawn with the embedded font.
    pub fn to_png(&self) -> Result<Vec<u8>, PlotError> {
        canvas::png(&self.name, self.size(), |root| self.body.draw(root, &self.title))
    }

    /// The figure's bytes in `format`.
    pub fn render(&self, format: PlotFormat) -> Result<Vec<u8>, PlotError> {
        match format {
            PlotFormat::Png => self.to_png(),
            PlotFormat::Svg => self.to_svg().map(String::into_bytes),
        }
    }

    /// `<name>.<png|svg>`.
    pub fn file_name(&self, format: PlotFormat) -> String {
        format!("{}.{}", self.name, format.extension())
    }
}

/// Gives out unique file stems.
#[derive(Default)]
struct Names(HashSet<String>);

impl Names {
    fn take(&mut self, kind: FigureKind, subject: &str) -> String {
        let base = format!("{}-{}", kind.prefix(), data::slug(subject));
        let mut name = base.clone();
        let mut k = 2;
        while !self.0.insert(name.clone()) {
            name = format!("{base}-{k}");
            k += 1;
        }
        name
    }
}

fn seeds_text(n: usize) -> String {
    if n == 1 {
        "1 seed".into()
    } else {
        format!("mean of {n} seeds")
    }
}

/// Every figure `report` supports, in a stable order: per group (in table order) its matrix,
/// task curves and capacity; then per stream (in order of first appearance) its online and
/// plasticity figures. Empty when no run has finished.
pub fn figures(report: &Report) -> Vec<Figure> {
    let members = data::members(report);
    let mut names = Names::default();
    let mut out = Vec::new();
    let mut push =
        |kind: FigureKind, subject: &str, title: String, (stream, group): (&str, Option<&str>), body| {
            let (stream, group) = (stream.to_string(), group.map(str::to_string));
            out.push(Figure { kind, name: names.take(kind, subject), title, stream, group, body });
        };
    for member in &members {
        let label = data::group_label(report, member.group);
        let subject = format!("{} {label}", member.group.stream);
        let of = (member.group.stream.as_str(), Some(label.as_str()));
        let seeds = seeds_text(member.runs.len());
        if let Some(m) = MatrixFigure::of(member) {
            let title = format!("Accuracy matrix: {label} on {} ({seeds})", member.group.stream);
            push(FigureKind::AccuracyMatrix, &subject, title, of, Body::Matrix(m));
        }
        if let Some(t) = TaskCurves::of(member) {
            let title = format!("Accuracy on each task: {label} on {} ({seeds})", member.group.stream);
            push(FigureKind::TaskAccuracy, &subject, title, of, Body::Tasks(t));
        }
        if let Some(c) = CapacityFigure::of(member) {
            let title =
                format!("CLNP capacity used and reused: {label} on {} ({seeds})", member.group.stream);
            push(FigureKind::Capacity, &subject, title, of, Body::Capacity(c));
        }
    }
    let mut streams: Vec<&str> = Vec::new();
    for member in &members {
        if !streams.contains(&member.group.stream.as_str()) {
            streams.push(&member.group.stream);
        }
    }
    for stream in streams {
        let of_stream: Vec<(String, usize, &Member<'_>)> = members
            .iter()
            .filter(|m| m.group.stream == stream)
            .enumerate()
            .map(|(i, m)| (data::group_label(report, m.group), i, m))
            .collect();
        let (regression, classification): (Vec<_>, Vec<_>) =
            of_stream.iter().cloned().partition(|(_, _, m)| m.runs.iter().any(|r| r.regression));
        if let Some(f) = OnlineFigure::of(&classification, OnlineMeasure::Accuracy) {
            let title = format!("Final online accuracy of each task: {stream} (mean, 95% CI over seeds)");
            push(FigureKind::OnlineAccuracy, stream, title, (stream, None), Body::Online(f));
        }
        if let Some(f) = OnlineFigure::of(&regression, OnlineMeasure::Error) {
            let title = format!("Online error over the stream: {stream} (mean, 95% CI over seeds)");
            push(FigureKind::OnlineError, stream, title, (stream, None), Body::Online(f));
        }
        if let Some(f) = PlasticityFigure::of(&of_stream) {
            let title =
                format!("Plasticity diagnostics: {stream} (hidden layers averaged; mean, 95% CI over seeds)");
            push(FigureKind::Plasticity, stream, title, (stream, None), Body::Plasticity(f));
        }
    }
    out
}

/// Draws every figure of `report` into `dir` (created if needed) in `format` and returns the
/// files written, in [`figures`] order.
pub fn write_figures(report: &Report, dir: &Path, format: PlotFormat) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Write { path: dir.to_path_buf(), source })?;
    let mut written = Vec::new();
    for figure in figures(report) {
        let bytes = figure.render(format)?;
        let path = dir.join(figure.file_name(format));
        std::fs::write(&path, bytes).map_err(|source| PlotError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests;
