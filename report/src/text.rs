//! The human-readable renderers: Markdown (padded, readable raw on a terminal), LaTeX
//! (booktabs) and HTML. All draw the same [`TextTable`] through one cell reader, so they always
//! show the same numbers.

use std::io::{self, Write};

use super::report::{Report, Spread};
use super::summary::RunSummary;
use results::RunStatus;

/// One cell, kept structured until a renderer formats it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    /// A label.
    Text(String),
    /// An integer count.
    Integer(u64),
    /// A single value (a run's metric, an accuracy); `None` where undefined.
    Number(Option<f64>),
    /// A group's value: mean ± spread over `n` of `expected` runs.
    Stat { mean: Option<f64>, spread: Option<f64>, n: usize, expected: usize, best: bool },
}

/// Headers, which columns are numeric (right-aligned), and rows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TextTable {
    pub headers: Vec<(String, String)>,
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<Cell>>,
    pub legend: Option<String>,
}

impl TextTable {
    fn new() -> Self {
        TextTable { headers: Vec::new(), numeric: Vec::new(), rows: Vec::new(), legend: None }
    }

    fn column(&mut self, markdown: &str, latex: &str, numeric: bool) {
        self.headers.push((markdown.to_string(), latex.to_string()));
        self.numeric.push(numeric);
    }
}

/// The grouped table: `[Experiment], Stream, Method, [Grid], Runs`, one column per metric.
/// The experiment column is there in comparisons only, the grid column when some group has a
/// grid point.
pub(crate) fn groups_table(report: &Report) -> TextTable {
    let groups = report.groups();
    let with_grid = groups.iter().any(|g| !g.grid_text.is_empty());
    let mut t = TextTable::new();
    if report.is_comparison() {
        t.column("Experiment", "Experiment", false);
    }
    t.column("Stream", "Stream", false);
    t.column("Method", "Method", false);
    if with_grid {
        t.column("Grid", "Grid", false);
    }
    t.column("Runs", "Runs", true);
    for &m in report.metrics() {
        t.column(m.header(), m.latex_header(), true);
    }
    let best: Vec<Option<f64>> = report.metrics().iter().map(|&m| report.best(m)).collect();
    for g in groups {
        let mut row = Vec::with_capacity(t.headers.len());
        if report.is_comparison() {
            row.push(Cell::Text(g.experiment.clone()));
        }
        row.extend([Cell::Text(g.stream.clone()), Cell::Text(g.method.clone())]);
        if with_grid {
            row.push(Cell::Text(g.grid_text.clone()));
        }
        row.push(if g.finished < g.runs {
            Cell::Text(format!("{}/{}", g.finished, g.runs))
        } else {
            Cell::Integer(g.runs as u64)
        });
        for (&m, best) in report.metrics().iter().zip(&best) {
            let s = g.cell(m);
            row.push(Cell::Stat {
                mean: s.mean,
                spread: match report.spread() {
                    Spread::Ci95 => s.ci95,
                    Spread::Std => s.std,
                },
                n: s.n,
                expected: g.expected(m),
                best: !g.variant && g.flagged == 0 && !g.incomplete(m) && s.mean.is_some() && s.mean == *best,
            });
        }
        t.rows.push(row);
    }
    let spread = match report.spread() {
        Spread::Ci95 => "± is the 95% confidence half-width of the mean (Student t over seeds)",
        Spread::Std => "± is the sample standard deviation over seeds",
    };
    t.legend = Some(format!(
        "{spread}; (n/N): only n of the group's N runs have a value; bold: best complete value."
    ));
    t
}

/// The columns that say which run a row is about, shared by the per-run and per-task tables:
/// `[Experiment], Run, Stream, Method, [Grid], Seed`.
struct RunIdentity {
    comparison: bool,
    with_grid: bool,
}

impl RunIdentity {
    fn of(report: &Report) -> Self {
        let with_grid = report.runs().iter().any(|r| !r.labels.grid.is_empty());
        RunIdentity { comparison: report.is_comparison(), with_grid }
    }

    fn columns(&self, t: &mut TextTable) {
        if self.comparison {
            t.column("Experiment", "Experiment", false);
        }
        for h in ["Run", "Stream", "Method"] {
            t.column(h, h, false);
        }
        if self.with_grid {
            t.column("Grid", "Grid", false);
        }
        t.column("Seed", "Seed", true);
    }

    /// The identity cells of `run`, in a row with room for `width` cells.
    fn cells(&self, run: &RunSummary, width: usize) -> Vec<Cell> {
        let mut row = Vec::with_capacity(width);
        if self.comparison {
            row.push(Cell::Text(run.experiment.clone()));
        }
        row.extend([
            Cell::Text(run.id.clone()),
            Cell::Text(run.labels.stream.clone()),
            Cell::Text(run.labels.method.clone()),
        ]);
        if self.with_grid {
            row.push(Cell::Text(run.labels.grid_text()));
        }
        row.push(Cell::Integer(run.labels.seed));
        row
    }
}

/// The per-run table: `[Experiment], Run, Stream, Method, [Grid], Seed, Status, Attempts`, the
/// metrics, then `Flags`.
pub(crate) fn runs_table(report: &Report) -> TextTable {
    let runs = report.runs();
    let identity = RunIdentity::of(report);
    let mut t = TextTable::new();
    identity.columns(&mut t);
    for (h, numeric) in [("Status", false), ("Attempts", true)] {
        t.column(h, h, numeric);
    }
    for &m in report.metrics() {
        t.column(m.header(), m.latex_header(), true);
    }
    t.column("Flags", "Flags", false);
    for r in runs {
        let mut row = identity.cells(r, t.headers.len());
        let status = match &r.status {
            RunStatus::Failed { failure } => format!("failed: {failure}"),
            other => other.name().to_string(),
        };
        row.extend([Cell::Text(status), Cell::Integer(r.attempts.into())]);
        row.extend(report.metrics().iter().map(|&m| Cell::Number(r.value(m))));
        row.push(Cell::Text(r.flags.join("; ")));
        t.rows.push(row);
    }
    t
}

/// The long per-task table: `[Experiment], Run, Stream, Method, [Grid], Seed, After task,
/// On task, Accuracy, Loss`; `after task` is `—` for the untrained network.
pub(crate) fn per_task_table(report: &Report) -> TextTable {
    let identity = RunIdentity::of(report);
    let mut t = TextTable::new();
    identity.columns(&mut t);
    for h in ["After task", "On task", "Accuracy", "Loss"] {
        t.column(h, h, true);
    }
    for r in report.runs() {
        for e in &r.evals {
            let mut row = identity.cells(r, t.headers.len());
            row.push(match e.after_task {
                Some(i) => Cell::Integer(i as u64),
                None => Cell::Text("—".into()),
            });
            row.push(Cell::Integer(e.on_task as u64));
            row.push(Cell::Number(e.accuracy));
            row.push(Cell::Number(Some(e.loss)));
            t.rows.push(row);
        }
    }
    t
}

/// The long time-series table: the run's identity, then `Task, On task, Bin, Layer, Metric,
/// Value` (empty where a row has no such index).
pub(crate) fn series_table(report: &Report) -> TextTable {
    let identity = RunIdentity::of(report);
    let mut t = TextTable::new();
    identity.columns(&mut t);
    for h in ["Task", "On task", "Bin", "Layer"] {
        t.column(h, h, true);
    }
    t.column("Metric", "Metric", false);
    t.column("Value", "Value", true);
    let index = |i: Option<usize>| i.map_or(Cell::Text(String::new()), |i| Cell::Integer(i as u64));
    for r in report.runs() {
        for p in &r.series.points {
            let mut row = identity.cells(r, t.headers.len());
            row.extend([index(p.task), index(p.on_task), index(p.bin), index(p.layer)]);
            row.push(Cell::Text(p.metric.to_string()));
            row.push(Cell::Number(Some(p.value)));
            t.rows.push(row);
        }
    }
    t
}

/// `value` with `precision` decimals, without a sign on zero.
fn number(value: f64, precision: usize) -> String {
    let text = format!("{value:.precision$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// How one output format writes the pieces of a cell, so that the three renderers share one
/// reading of [`Cell`] and differ only in markup.
struct Markup {
    /// A label, escaped for the format.
    text: fn(&str) -> String,
    /// An undefined value.
    undefined: &'static str,
    /// Between a mean and its spread.
    plus_minus: &'static str,
    /// A number or `mean ± spread`, as the format sets mathematics.
    math: fn(String) -> String,
    /// The same, marked best.
    best: fn(String) -> String,
    /// The `(n/N)` note of a group that lacks runs.
    incomplete: fn(usize, usize) -> String,
}

const MARKDOWN: Markup = Markup {
    text: |s| s.replace('|', "\\|").replace('\n', " "),
    undefined: "—",
    plus_minus: " ± ",
    math: |s| s,
    best: |s| format!("**{s}**"),
    incomplete: |n, expected| format!(" ({n}/{expected})"),
};

const LATEX: Markup = Markup {
    text: latex_escape,
    undefined: "--",
    plus_minus: r" \pm ",
    math: |s| format!("${s}$"),
    best: |s| format!(r"$\mathbf{{{s}}}$"),
    incomplete: |n, expected| format!(" ({n}/{expected})"),
};

const HTML: Markup = Markup {
    text: html_escape,
    undefined: "—",
    plus_minus: "&nbsp;±&nbsp;",
    math: |s| s,
    best: |s| format!("<strong>{s}</strong>"),
    incomplete: |n, expected| format!(r#" <span class="incomplete">({n}/{expected})</span>"#),
};

fn render_cell(cell: &Cell, precision: usize, markup: &Markup) -> String {
    match cell {
        Cell::Text(s) => (markup.text)(s),
        Cell::Integer(i) => i.to_string(),
        Cell::Number(None) => markup.undefined.into(),
        Cell::Number(Some(v)) => (markup.math)(number(*v, precision)),
        Cell::Stat { mean, spread, n, expected, best } => {
            let mut text = match mean {
                None => markup.undefined.to_string(),
                Some(m) => {
                    let mut body = number(*m, precision);
                    if let Some(s) = spread {
                        body = format!("{body}{}{}", markup.plus_minus, number(*s, precision));
                    }
                    if *best {
                        (markup.best)(body)
                    } else {
                        (markup.math)(body)
                    }
                }
            };
            if n < expected {
                text.push_str(&(markup.incomplete)(*n, *expected));
            }
            text
        }
    }
}

/// Renders `table` as a Markdown pipe table with columns padded to equal width, then its
/// legend (if any) after a blank line.
pub(crate) fn write_markdown(table: &TextTable, precision: usize, out: &mut dyn Write) -> io::Result<()> {
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(|c| render_cell(c, precision, &MARKDOWN)).collect())
        .collect();
    let headers: Vec<String> = table.headers.iter().map(|(h, _)| h.replace('|', "\\|")).collect();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            let cells_max = cells.iter().map(|r| width(&r[i])).max().unwrap_or(0);
            width(&headers[i]).max(cells_max).max(3)
        })
        .collect();
    let line = |out: &mut dyn Write, row: &[String]| -> io::Result<()> {
        write!(out, "|")?;
        for (i, text) in row.iter().enumerate() {
            let pad = widths[i] - width(text);
            if table.numeric[i] {
                write!(out, " {}{text} |", " ".repeat(pad))?;
            } else {
                write!(out, " {text}{} |", " ".repeat(pad))?;
            }
        }
        writeln!(out)
    };
    line(out, &headers)?;
    write!(out, "|")?;
    for (i, w) in widths.iter().enumerate() {
        if table.numeric[i] {
            write!(out, "{}:|", "-".repeat(w + 1))?;
        } else {
            write!(out, ":{}|", "-".repeat(w + 1))?;
        }
    }
    writeln!(out)?;
    for row in &cells {
        line(out, row)?;
    }
    if let Some(legend) = &table.legend {
        writeln!(out)?;
        writeln!(out, "{legend}")?;
    }
    Ok(())
}

/// Escapes LaTeX's special characters in a label.
fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            '—' => out.push_str("---"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders `table` as a booktabs `tabular` (needs `\usepackage{booktabs}`): labels left,
/// numbers right, best values in bold math.
pub(crate) fn write_latex(table: &TextTable, precision: usize, out: &mut dyn Write) -> io::Result<()> {
    let spec: String = table.numeric.iter().map(|&n| if n { 'r' } else { 'l' }).collect();
    writeln!(out, "\\begin{{tabular}}{{{spec}}}")?;
    writeln!(out, "\\toprule")?;
    let headers: Vec<&str> = table.headers.iter().map(|(_, latex)| latex.as_str()).collect();
    writeln!(out, "{} \\\\", headers.join(" & "))?;
    writeln!(out, "\\midrule")?;
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| render_cell(c, precision, &LATEX)).collect();
        writeln!(out, "{} \\\\", cells.join(" & "))?;
    }
    writeln!(out, "\\bottomrule")?;
    writeln!(out, "\\end{{tabular}}")
}

/// Escapes `&`, `<`, `>` and `"` for HTML text and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Renders `table` as an HTML `<table>` (numbers right-aligned through the `num` class, best
/// values in `<strong>`, incomplete counts in `<span class="incomplete">`), then its legend as
/// a `<p class="legend">`.
/// Renders `table` as an HTML table with the id `id`, sortable by clicking a header (the
/// page's script sorts tables of class `sortable`). Numeric cells carry their full-precision
/// value in `data-sort`, so sorting is by value, not by the rounded text; undefined values
/// sort last.
pub(crate) fn write_html(
    table: &TextTable,
    precision: usize,
    id: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    let class = |numeric: bool| if numeric { r#" class="num""# } else { "" };
    writeln!(out, r#"<table id="{}" class="sortable">"#, html_escape(id))?;
    write!(out, "<thead><tr>")?;
    for ((header, _), &numeric) in table.headers.iter().zip(&table.numeric) {
        write!(out, "<th{}>{}</th>", class(numeric), html_escape(header))?;
    }
    writeln!(out, "</tr></thead>")?;
    writeln!(out, "<tbody>")?;
    for row in &table.rows {
        write!(out, "<tr>")?;
        for (cell, &numeric) in row.iter().zip(&table.numeric) {
            let key = match cell {
                Cell::Integer(i) => Some(i.to_string()),
                Cell::Number(v) | Cell::Stat { mean: v, .. } => {
                    Some(v.map_or(String::new(), |v| v.to_string()))
                }
                Cell::Text(_) => None,
            };
            let sort = key.map_or(String::new(), |k| format!(r#" data-sort="{k}""#));
            write!(out, "<td{}{sort}>{}</td>", class(numeric), render_cell(cell, precision, &HTML))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")?;
    if let Some(legend) = &table.legend {
        writeln!(out, r#"<p class="legend">{}</p>"#, html_escape(legend))?;
    }
    Ok(())
}
