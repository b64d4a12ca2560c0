//! `clorch store`: maintenance of an experiment's store.

use std::path::PathBuf;

use super::exit;
use runner::store::{self, Store, STORE_DIR};

/// `clorch store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Recreate the store from the run folders (spec.json, run.json, events.jsonl), which are
    /// the source of truth; the old store is kept beside it as `store.old-<time>`.
    Rebuild {
        /// The results folder.
        results: PathBuf,
    },
}

/// Runs a `clorch store` subcommand.
pub fn run(command: &StoreCommand) -> i32 {
    match command {
        StoreCommand::Rebuild { results } => {
            if let Err(message) = super::check_results_folder(results, false) {
                eprintln!("clorch store rebuild: {message}");
                return exit::BAD_INPUT;
            }
            let _lock = match runner::lock::acquire(results) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("clorch store rebuild: {e}");
                    return exit::BUSY;
                }
            };
            let old = results.join(STORE_DIR);
            if old.exists() {
                let aside = results.join(format!("{STORE_DIR}.old-{}", store::unix_now()));
                if let Err(e) = std::fs::rename(&old, &aside) {
                    eprintln!("clorch store rebuild: moving {} aside: {e}", old.display());
                    return exit::BAD_INPUT;
                }
                eprintln!("kept the previous store as {}", aside.display());
            }
            let rebuilt = Store::open(results).and_then(|s| {
                let summary = store::rebuild(results, &s)?;
                s.flush()?;
                Ok(summary)
            });
            match rebuilt {
                Ok(summary) => {
                    println!(
                        "rebuilt {} runs and {} events from {}",
                        summary.runs,
                        summary.events,
                        results.display()
                    );
                    for path in &summary.truncated_tails {
                        println!("ignored the cut-short last line of {}", path.display());
                    }
                    for path in &summary.skipped {
                        println!("skipped {} (no run.json)", path.display());
                    }
                    exit::OK
                }
                Err(e) => {
                    eprintln!("clorch store rebuild: {e}");
                    exit::BAD_INPUT
                }
            }
        }
    }
}
