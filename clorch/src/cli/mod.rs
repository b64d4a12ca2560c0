//! The command line: argument types and the dispatch to each command's library code.

pub mod bench;
pub mod cancel;
pub mod command_line;
pub mod data;
pub mod experiment;
pub mod export;
pub mod plot;
pub mod provenance;
pub mod report;
pub mod serve;
pub mod status;
pub mod store;
pub mod worker;
pub mod worker_check;

use std::path::Path;

use clap::{Parser, Subcommand};
use results::FolderState;

/// Checks, before anything is created, that `dir` is a results folder clorch wrote (or, with
/// `may_create`, a folder clorch may make one: new or empty). The error is the message to
/// print after the command's name; the command then exits with [`exit::BAD_INPUT`].
pub(crate) fn check_results_folder(dir: &Path, may_create: bool) -> Result<(), String> {
    match results::inspect_folder(dir) {
        FolderState::Experiment => Ok(()),
        FolderState::Missing | FolderState::Empty if may_create => Ok(()),
        FolderState::Missing => {
            Err(format!("{}: no such folder; expected the folder `clorch run` wrote", dir.display()))
        }
        FolderState::Empty => Err(format!(
            "{}: not a clorch results folder (it is empty); expected the folder `clorch run` wrote",
            dir.display()
        )),
        FolderState::Foreign(found) if may_create => Err(format!(
            "refusing to write into {}: it is not a clorch results folder (found {found}); \
             choose a new or empty folder, or one an earlier `clorch run` wrote",
            dir.display()
        )),
        FolderState::Foreign(found) => Err(format!(
            "{}: not a clorch results folder (found {found}); expected the folder `clorch run` wrote",
            dir.display()
        )),
    }
}

use crate::logging;

/// Exit statuses of `clorch` (other than `clorch worker`, whose statuses are part of the
/// worker protocol: `protocol::exit`).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Some runs failed (the others finished); `clorch status` says why.
    pub const RUNS_FAILED: i32 = 1;
    /// Bad input: a recipe, override, flag, data file or store that cannot be used; the
    /// message names it. Nothing was started.
    pub const BAD_INPUT: i32 = 2;
    /// The results folder is in use by another `clorch run` (or the data set by another
    /// `clorch data download`).
    pub const BUSY: i32 = 3;
    /// Standard output could not be written (not a closed pipe, which is success): sysexits'
    /// `EX_IOERR`.
    pub const OUTPUT: i32 = 74;
    /// `clorch data download` could not fetch a data set: no network, an HTTP error, a
    /// checksum mismatch, a transfer cut short (run it again to resume): sysexits'
    /// `EX_UNAVAILABLE`.
    pub const UNAVAILABLE: i32 = 69;
    /// Stopped by Ctrl-C or SIGTERM; the unfinished runs resume on the next `clorch run`.
    pub const STOPPED: i32 = 130;
}

/// clorch — continual-learning experiments: recipes in, runs on workers, comparison tables out.
///
/// Start with `clorch run recipes/quickstart.yaml`; `recipes/README.md` documents every
/// recipe key.
#[derive(Debug, Parser)]
#[command(name = "clorch", version, about, long_about)]
pub struct Cli {
    /// More diagnostics on standard error: `-v` adds what `clorch` decides (plan size,
    /// executor, retries, store repairs), `-vv` each attempt's start and resume point, `-vvv`
    /// everything. For `clorch worker`, `-v` gives debug lines in its log. `RUST_LOG`, when
    /// set, decides instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only results and what needs attention: no progress bar or per-run `finished`/`retrying`
    /// lines, no notes (`note: …`, `N finished runs skipped`), log lines of level error only.
    /// Failures, stop notices and the final table are still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe: every unfinished run (finished ones are skipped, interrupted ones resume
    /// from their checkpoints), then print the comparison table.
    Run(experiment::RunArgs),
    /// Check a recipe and list the runs it would launch, without running anything.
    Validate(experiment::ValidateArgs),
    /// Show each run of an experiment: status, attempts, task, checkpoint age, failure reason.
    Status(status::StatusArgs),
    /// Cancel the SLURM jobs of an experiment that a stopped `clorch run --executor slurm` left
    /// queued or running; the next `clorch run` resumes their runs from their checkpoints.
    Cancel(cancel::CancelArgs),
    /// Comparison tables of an experiment (Markdown on the terminal; CSV, Parquet, JSON,
    /// LaTeX and self-contained HTML files).
    Report(report::ReportArgs),
    /// One comparison table across several experiments (rows keyed by experiment, stream,
    /// method and grid point); the same options and outputs as `report`.
    Compare(report::CompareArgs),
    /// Figures of an experiment (accuracy matrices, per-task accuracy, online accuracy or
    /// error, plasticity diagnostics, CLNP capacity) as PNG or SVG files.
    Plot(plot::PlotArgs),
    /// A live dashboard of running experiments in the browser: run table, curves over seeds,
    /// accuracy matrices filling in, the comparison table, log tails (read-only).
    Serve(serve::ServeArgs),
    /// An experiment's results in other tools' formats (TensorBoard).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Maintenance of an experiment's store.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// The data sets the streams read: list them, download one (verified, resumable).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// List the continual-learning methods and their parameters with defaults.
    Methods,
    /// Measure the speed targets on this machine (training throughput next to PyTorch, the
    /// reference code's regression cost, parallel sweeps, memory on a 1,000-task stream).
    Bench(bench::BenchArgs),
    /// Run one run from a spec (started by `clorch run`; also usable by hand).
    Worker(worker::WorkerArgs),
    /// Check that an external worker keeps the protocol: every event on a tiny spec, a stop
    /// request and a kill mid-stream, and resumed runs equal to an uninterrupted one.
    WorkerCheck(worker_check::WorkerCheckArgs),
}

/// Runs the command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let role = match cli.command {
        Command::Worker(_) => logging::Role::Worker,
        _ => logging::Role::Orchestrator,
    };
    logging::init(role, cli.verbose, cli.quiet);
    match cli.command {
        Command::Run(args) => experiment::run(&args),
        Command::Validate(args) => experiment::validate(&args),
        Command::Status(args) => status::run(&args),
        Command::Cancel(args) => cancel::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Compare(args) => report::compare(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Export(command) => export::run(&command),
        Command::Store(command) => store::run(&command),
        Command::Data(command) => data::run(&command),
        Command::Methods => match crate::output::print(methods_table()) {
            Ok(()) => exit::OK,
            Err(e) => e.exit_code("methods"),
        },
        Command::Worker(args) => worker::run(&args),
        Command::WorkerCheck(args) => worker_check::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

/// Runs one future on a runtime of its own, for commands that talk to SLURM outside the
/// scheduler.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}

/// The `clorch methods` listing: per method kind its summary, then every parameter a recipe
/// may set with its default, typed and written as in a recipe (`100`, `0.001`, `true`,
/// `"separate"`; a list-valued parameter inside one more list, `[[]]`, since a bare list is a
/// grid axis). The optimiser's settings are listed per optimiser the method accepts, and only
/// those it accepts (the list is checked against validation by a test).
pub fn methods_table() -> String {
    let recipe_value = |value: &serde_json::Value| match value {
        serde_json::Value::Array(_) => format!("[{value}]"),
        other => other.to_string(),
    };
    let assignment = |name: &str, value: &serde_json::Value| format!("{name} = {}", recipe_value(value));
    let assignments = |params: Vec<(String, serde_json::Value)>| -> String {
        params.iter().map(|(name, value)| assignment(name, value)).collect::<Vec<_>>().join(", ")
    };
    let mut out = String::new();
    for m in workers::method::registry() {
        out.push_str(&format!("{:<16} {}\n", m.kind, m.summary));
        let optimizers = m.optimizers();
        let name = |k| workers::method::optimizer_name(k);
        if let [default, others @ ..] = optimizers.as_slice() {
            if others.is_empty() {
                out.push_str(&format!("{:<16}   {}\n", "", assignments(m.optimizer_parameters(*default))));
            } else {
                let alternatives: Vec<String> = others.iter().map(|k| format!("\"{}\"", name(*k))).collect();
                out.push_str(&format!(
                    "{:<16}   optimizer = \"{}\"  (or {})\n",
                    "",
                    name(*default),
                    alternatives.join(", ")
                ));
                for k in &optimizers {
                    let label = format!("{}:", name(*k));
                    out.push_str(&format!(
                        "{:<16}   {label:<5} {}\n",
                        "",
                        assignments(m.optimizer_parameters(*k))
                    ));
                }
            }
        }
        for (param, default) in m.own_parameters() {
            out.push_str(&format!("{:<16}   {}\n", "", assignment(&param, &default)));
        }
    }
    out
}
