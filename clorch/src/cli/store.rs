//! `clorch store`: maintenance of an experiment's store.

use std::path::{Path, PathBuf};

use super::exit;
use runner::store::{self, Store, STORE_DIR};

/// `clorch store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Recreate the store from the run folders (spec.json, run.json, events.jsonl), which are
    /// the source of truth; the new store is built beside the old one and replaces it only when
    /// complete, and the old store is kept beside it as `store.old-<time>`.
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
            // Build beside the old store and swap only once complete: a folder that cannot be
            // read must not leave a partial store that reads like a complete one.
            let now = store::unix_now();
            let old = results.join(STORE_DIR);
            let new = results.join(format!("{STORE_DIR}.new-{now}"));
            let rebuilt = Store::open_at(&new, results).and_then(|s| {
                let summary = store::rebuild(results, &s)?;
                s.flush()?;
                Ok(summary)
            });
            let rebuilt = match rebuilt {
                Ok(summary) => swap_in(&new, &old, now).map(|()| summary),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&new);
                    let kept = if old.exists() {
                        format!("the store at {} was left as it was", old.display())
                    } else {
                        "no store was created".to_string()
                    };
                    Err(format!("{e}; {kept}"))
                }
            };
            match rebuilt {
                Ok(summary) => {
                    let printed = crate::output::with_stdout(|out| {
                        writeln!(
                            out,
                            "rebuilt {} runs and {} events from {}",
                            summary.runs,
                            summary.events,
                            results.display()
                        )?;
                        for path in &summary.truncated_tails {
                            writeln!(out, "ignored the cut-short last line of {}", path.display())?;
                        }
                        for path in &summary.skipped {
                            writeln!(out, "skipped {} (no run.json)", path.display())?;
                        }
                        Ok(())
                    });
                    match printed {
                        Ok(()) => exit::OK,
                        Err(e) => e.exit_code("store rebuild"),
                    }
                }
                Err(message) => {
                    eprintln!("clorch store rebuild: {message}");
                    exit::BAD_INPUT
                }
            }
        }
    }
}

/// Replaces the store `old` (if any) by the complete store `new`, keeping the old one beside
/// it as `store.old-<now>`. On failure the old store is put back.
fn swap_in(new: &Path, old: &Path, now: u64) -> Result<(), String> {
    let aside = old.with_file_name(format!("{STORE_DIR}.old-{now}"));
    let had_old = old.exists();
    if had_old {
        std::fs::rename(old, &aside).map_err(|e| format!("moving {} aside: {e}", old.display()))?;
    }
    if let Err(e) = std::fs::rename(new, old) {
        if had_old {
            let _ = std::fs::rename(&aside, old);
        }
        let _ = std::fs::remove_dir_all(new);
        return Err(format!(
            "moving the rebuilt store into {}: {e}; the store was left as it was",
            old.display()
        ));
    }
    if had_old {
        eprintln!("kept the previous store as {}", aside.display());
    }
    Ok(())
}
