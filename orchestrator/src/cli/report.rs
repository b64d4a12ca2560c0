//! `clorch report`: comparison tables from a results folder.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use super::exit;
use crate::report::{Filter, Format, Metric, Report, ReportOptions, Spread, TableKind};
use crate::store::Store;

/// Arguments of `clorch report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The results folder (e.g. results/quickstart).
    pub results: PathBuf,
    /// Metric columns, comma-separated (acc, bwt, fwt, forgetting, final_online_acc, …).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<Metric>>,
    /// Keep only runs matching `key=value` (method, stream, seed, status, or a grid
    /// parameter); repeat for several conditions.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<Filter>,
    /// Sort by a metric, best first.
    #[arg(long)]
    pub sort: Option<Metric>,
    /// Show ± one standard deviation instead of the 95% confidence half-width.
    #[arg(long)]
    pub std: bool,
    /// Decimals in Markdown and LaTeX.
    #[arg(long, default_value_t = 3)]
    pub precision: usize,
    /// One row per run instead of per method and grid point.
    #[arg(long)]
    pub runs: bool,
    /// Include runs of earlier versions of an edited recipe.
    #[arg(long)]
    pub all_runs: bool,
    /// Also write the table as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write the table as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also write the table as Parquet to this file.
    #[arg(long, value_name = "FILE")]
    pub parquet: Option<PathBuf>,
    /// Also write the table as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the table as LaTeX (booktabs) to this file.
    #[arg(long, value_name = "FILE")]
    pub latex: Option<PathBuf>,
    /// Write the long per-task accuracy table (run, method, seed, after_task, on_task,
    /// accuracy, loss) as Parquet to this file.
    #[arg(long, value_name = "FILE")]
    pub per_task: Option<PathBuf>,
}

/// Builds the report and prints it as Markdown.
pub fn print_table(store: &Store, options: &ReportOptions) -> Result<(), i32> {
    let report = Report::build(store, options).map_err(|e| {
        eprintln!("clorch report: {e}");
        exit::BAD_INPUT
    })?;
    let mut out = std::io::stdout().lock();
    report.write(TableKind::Groups, Format::Markdown, &mut out).map_err(|e| {
        eprintln!("clorch report: {e}");
        exit::BAD_INPUT
    })
}

/// `clorch report`.
pub fn run(args: &ReportArgs) -> i32 {
    let (store, note) = match crate::results::open_for_reading(&args.results) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clorch report: {e}");
            return exit::BAD_INPUT;
        }
    };
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let options = ReportOptions {
        metrics: args.metrics.clone(),
        filters: args.filters.clone(),
        sort: args.sort,
        spread: if args.std { Spread::Std } else { Spread::Ci95 },
        precision: args.precision,
        all_runs: args.all_runs,
    };
    let report = match Report::build(&store, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clorch report: {e}");
            return exit::BAD_INPUT;
        }
    };
    let table = if args.runs { TableKind::Runs } else { TableKind::Groups };
    let mut targets: Vec<(TableKind, Format, &PathBuf)> = Vec::new();
    for (path, format) in [
        (&args.markdown, Format::Markdown),
        (&args.csv, Format::Csv),
        (&args.parquet, Format::Parquet),
        (&args.json, Format::Json),
        (&args.latex, Format::Latex),
    ] {
        if let Some(p) = path {
            targets.push((table, format, p));
        }
    }
    if let Some(p) = &args.per_task {
        targets.push((TableKind::PerTask, Format::Parquet, p));
    }
    for (table, format, path) in targets {
        let written = File::create(path).map_err(|e| e.to_string()).and_then(|f| {
            let mut w = BufWriter::new(f);
            report.write(table, format, &mut w).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            eprintln!("clorch report: {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = report.write(table, Format::Markdown, &mut out) {
        eprintln!("clorch report: {e}");
        return exit::BAD_INPUT;
    }
    exit::OK
}
