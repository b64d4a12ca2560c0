//! `clorch report` (the tables of one experiment) and `clorch compare` (one table across
//! several experiments): the same options and outputs, over one store or several.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use report::{Filter, Format, Metric, Report, ReportOptions, Spread, TableKind};
use results::RunSource;
use runner::store::Store;

use super::exit;

/// The options `clorch report` and `clorch compare` share: what the table shows and where it
/// is written besides the terminal.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    /// Metric columns, comma-separated (acc, bwt, fwt, forgetting, final_online_acc, …).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<Metric>>,
    /// Keep only runs matching `key=value`: method, stream, seed, status, or any method
    /// parameter of the runs' specs, gridded or fixed (`lr=0.05`, `optimizer=adam`; numbers
    /// compare by value); repeat for several conditions.
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
    /// Write the long per-task accuracy table (run, method, param.*, seed, after_task,
    /// on_task, accuracy, loss) to this file: CSV, Parquet or JSON by its extension.
    #[arg(long, value_name = "FILE")]
    pub per_task: Option<PathBuf>,
    /// Write the long time series (run, stream, method, param.*, seed, task, on_task, bin,
    /// layer, metric, value: every online bin, accuracy-matrix entry, plasticity diagnostic
    /// per layer and method diagnostic) to this file: CSV, Parquet or JSON by its extension.
    #[arg(long, value_name = "FILE")]
    pub series: Option<PathBuf>,
    /// Write a self-contained HTML report (tables, figures as inline SVG, the recipe text and
    /// the clorch version) to this file; it opens offline in any browser.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl TableArgs {
    /// The report options these arguments ask for.
    pub fn options(&self) -> ReportOptions {
        ReportOptions {
            metrics: self.metrics.clone(),
            filters: self.filters.clone(),
            sort: self.sort,
            spread: if self.std { Spread::Std } else { Spread::Ci95 },
            precision: self.precision,
            all_runs: self.all_runs,
            series: self.series.is_some(),
            resolve_params: Some(resolve_params()),
        }
    }
}

/// The method registry's [`workers::method::MethodInfo::resolved_parameters`] for reports: every
/// parameter a run trains with, defaults included. A kind the registry does not know (a
/// store from another build) keeps the parameters its spec states.
pub(crate) fn resolve_params() -> report::ResolveParams {
    report::ResolveParams(|kind, given| {
        match workers::method::registry().into_iter().find(|m| m.kind == kind) {
            Some(method) => method.resolved_parameters(given),
            None => given.clone(),
        }
    })
}

/// Arguments of `clorch report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The results folder (e.g. results/quickstart).
    pub results: PathBuf,
    /// What to show and write.
    #[command(flatten)]
    pub table: TableArgs,
}

/// Arguments of `clorch compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Two or more results folders (e.g. results/pmnist-sgd results/pmnist-cbp).
    #[arg(required = true, num_args = 2..)]
    pub results: Vec<PathBuf>,
    /// What to show and write.
    #[command(flatten)]
    pub table: TableArgs,
}

/// Builds the report and prints it as Markdown.
pub fn print_table(store: &Store, options: &ReportOptions) -> Result<(), i32> {
    let report = Report::build(store, options).map_err(|e| {
        eprintln!("clorch report: {e}");
        exit::BAD_INPUT
    })?;
    print_report("run", &report, TableKind::Groups)
}

/// Prints `table` of `report` as Markdown on standard output; the error is the exit status,
/// its message printed (nothing for a closed pipe).
fn print_report(command: &str, report: &Report, table: TableKind) -> Result<(), i32> {
    let mut failed = None;
    let printed = crate::output::with_stdout(|out| {
        report.write(table, Format::Markdown, out).map_err(|e| match e {
            report::ReportError::Io(io) => io,
            other => {
                let message = other.to_string();
                failed = Some(other);
                std::io::Error::other(message)
            }
        })
    });
    match (printed, failed) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => {
            eprintln!("clorch {command}: {e}");
            Err(exit::BAD_INPUT)
        }
        (Err(e), None) => Err(e.exit_code(command)),
    }
}

/// Opens a results folder for reading, printing any note; the error is printed.
pub(crate) fn open_store(command: &str, results: &Path) -> Result<Store, i32> {
    match runner::store::open_for_reading(results) {
        Ok((store, note)) => {
            if let Some(note) = note {
                crate::logging::note(format_args!("note: {}: {note}", results.display()));
            }
            Ok(store)
        }
        Err(e) => {
            eprintln!("clorch {command}: {e}");
            Err(exit::BAD_INPUT)
        }
    }
}

/// `clorch report`.
pub fn run(args: &ReportArgs) -> i32 {
    let store = match open_store("report", &args.results) {
        Ok(s) => s,
        Err(code) => return code,
    };
    super::provenance::note_overrides(&args.results);
    match Report::build(&store, &args.table.options()) {
        Ok(report) => emit("report", &report, &args.table),
        Err(e) => {
            eprintln!("clorch report: {e}");
            exit::BAD_INPUT
        }
    }
}

/// `clorch compare`.
pub fn compare(args: &CompareArgs) -> i32 {
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in &args.results {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen.contains(&key) {
            eprintln!("clorch compare: {} is given twice; name each results folder once", dir.display());
            return exit::BAD_INPUT;
        }
        seen.push(key);
    }
    let mut stores = Vec::with_capacity(args.results.len());
    for dir in &args.results {
        match open_store("compare", dir) {
            Ok(s) => stores.push(s),
            Err(code) => return code,
        }
    }
    let refs: Vec<&dyn RunSource> = stores.iter().map(|s| s as &dyn RunSource).collect();
    let labels: Vec<String> = args.results.iter().map(|d| d.display().to_string()).collect();
    args.results.iter().for_each(|dir| super::provenance::note_overrides(dir));
    super::provenance::note_differences(&labels, &refs);
    match Report::compare(&refs, &args.table.options()) {
        Ok(report) => emit("compare", &report, &args.table),
        Err(e) => {
            eprintln!("clorch compare: {e}");
            exit::BAD_INPUT
        }
    }
}

/// Writes the files `args` asks for, then prints the table as Markdown.
fn emit(command: &str, report: &Report, args: &TableArgs) -> i32 {
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
    for (path, kind) in [(&args.per_task, TableKind::PerTask), (&args.series, TableKind::Series)] {
        if let Some(p) = path {
            match format_of(p) {
                Ok(format) => targets.push((kind, format, p)),
                Err(message) => {
                    eprintln!("clorch {command}: {message}");
                    return exit::BAD_INPUT;
                }
            }
        }
    }
    for (table, format, path) in targets {
        if let Err(e) = write_file(path, |w| report.write(table, format, w)) {
            eprintln!("clorch {command}: {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
    }
    if let Some(path) = &args.html {
        if let Err(e) = write_file(path, |w| report.write_html(w)) {
            eprintln!("clorch {command}: {}: {e}", path.display());
            return exit::BAD_INPUT;
        }
        eprintln!("wrote {}", path.display());
    }
    match print_report(command, report, table) {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}

/// The machine format a long table's file asks for by its extension.
fn format_of(path: &Path) -> Result<Format, String> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.parse::<Format>() {
        Ok(format @ (Format::Csv | Format::Parquet | Format::Json)) => Ok(format),
        _ => Err(format!(
            "{}: cannot tell the format from the extension `{extension}`; expected .csv, .parquet or .json",
            path.display()
        )),
    }
}

/// Creates `path` and fills it through `fill`, buffered.
fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), report::ReportError>,
) -> Result<(), String> {
    let file = File::create(path).map_err(|e| e.to_string())?;
    let mut w = BufWriter::new(file);
    fill(&mut w).map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())
}
