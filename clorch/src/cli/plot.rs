//! `clorch plot`: the figures of an experiment as PNG or SVG files.

use std::path::PathBuf;

use super::exit;
use super::report::open_store;
use report::plot::{self, PlotFormat};
use report::{Filter, Report, ReportOptions};

/// Arguments of `clorch plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// The results folder (e.g. results/quickstart).
    pub results: PathBuf,
    /// Folder for the figures (created if needed); default `<results>/plots`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// File format: png or svg.
    #[arg(long, default_value = "png")]
    pub format: PlotFormat,
    /// Keep only runs matching `key=value` (method, stream, seed, status, or a grid
    /// parameter); repeat for several conditions.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub filters: Vec<Filter>,
    /// Include runs of earlier versions of an edited recipe.
    #[arg(long)]
    pub all_runs: bool,
}

/// `clorch plot`: writes every figure and prints each file's path.
pub fn run(args: &PlotArgs) -> i32 {
    let store = match open_store("plot", &args.results) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = ReportOptions {
        filters: args.filters.clone(),
        all_runs: args.all_runs,
        resolve_params: Some(super::report::resolve_params()),
        ..ReportOptions::default()
    };
    let report = match Report::build(&store, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clorch plot: {e}");
            return exit::BAD_INPUT;
        }
    };
    let out = args.out.clone().unwrap_or_else(|| args.results.join("plots"));
    match plot::write_figures(&report, &out, args.format) {
        Ok(files) if files.is_empty() => {
            eprintln!("clorch plot: nothing to plot: no selected run has finished");
            exit::OK
        }
        Ok(files) => {
            let printed = crate::output::with_stdout(|out| {
                files.iter().try_for_each(|f| writeln!(out, "{}", f.display()))
            });
            printed.map_or_else(|e| e.exit_code("plot"), |()| exit::OK)
        }
        Err(e) => {
            eprintln!("clorch plot: {e}");
            exit::BAD_INPUT
        }
    }
}
