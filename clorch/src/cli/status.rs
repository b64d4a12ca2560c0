//! `clorch status`: where each run of an experiment is.

use std::path::PathBuf;

use super::exit;
use runner::status;

/// Arguments of `clorch status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The results folder (e.g. results/quickstart).
    pub results: PathBuf,
    /// Also the runs of earlier plans (before an edit of the recipe or other overrides), which
    /// the store keeps; by default only the latest plan's runs, the ones reports show.
    #[arg(long)]
    pub all: bool,
}

/// Prints the status table: the live snapshot while a `clorch run` holds the folder, the
/// store otherwise.
pub fn run(args: &StatusArgs) -> i32 {
    let live = runner::lock::inspect(&args.results).is_some_and(|(_, held)| held);
    let snapshot = if live {
        match status::read(&args.results) {
            Some(s) => s,
            None => {
                eprintln!(
                    "clorch status: a run is starting in {}; try again in a moment",
                    args.results.display()
                );
                return exit::BUSY;
            }
        }
    } else {
        let (store, note) = match runner::store::open_for_reading(&args.results) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("clorch status: {e}");
                return exit::BAD_INPUT;
            }
        };
        if let Some(note) = note {
            crate::logging::note(format_args!("note: {note}"));
        }
        match status::of_store(&store, args.all) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("clorch status: {e}");
                return exit::BAD_INPUT;
            }
        }
    };
    match crate::output::print(status::render(&snapshot, runner::store::unix_now())) {
        Ok(()) => exit::OK,
        Err(e) => e.exit_code("status"),
    }
}
