//! A results folder's store, opened the way each command needs it.
//!
//! `clorch run` opens the store for writing and repairs it from the run folders when sled
//! reports damage or has silently lost writes ([`store::drift`]); the commands that only read
//! (`status`, `report`, `plot`, `compare`) use the store when they can and otherwise — while a
//! `clorch run` holds it, or when it is missing, damaged, behind the run folders or still says
//! a run is running after its orchestrator was killed — a temporary store rebuilt from the run
//! folders, which hold the same data, with a note saying why.

use std::path::{Path, PathBuf};

use super::{Store, StoreError, STORE_DIR};
use crate::store;

/// What opening for writing had to do, for the user to know.
#[derive(Debug, Default)]
pub struct Repairs {
    /// Messages, one line each.
    pub notes: Vec<String>,
}

/// Opens the store of `results_dir` for writing, rebuilding it from the run folders when it
/// is damaged, of another format, or behind the folders.
pub fn open_for_writing(results_dir: &Path) -> Result<(Store, Repairs), StoreError> {
    let mut repairs = Repairs::default();
    let store = match Store::open_for_writing(results_dir) {
        Ok(store) => store,
        Err(e @ (StoreError::Corrupt { .. } | StoreError::WrongFormat { .. })) => {
            let aside = set_aside(results_dir)?;
            let why = match &e {
                StoreError::WrongFormat { found, expected, .. } if found < expected => {
                    format!(
                        "the store has the format of an older clorch ({found}; this one writes {expected})"
                    )
                }
                _ => format!("the store is unusable ({e})"),
            };
            repairs.notes.push(format!(
                "{why}; moved it to {} and rebuilding it from the run folders",
                aside.display()
            ));
            let store = Store::open_for_writing(results_dir)?;
            store::rebuild(results_dir, &store)?;
            return Ok((store, repairs));
        }
        Err(e) => return Err(e),
    };
    let drift = store::drift(results_dir, &store)?;
    tracing::debug!("store of {} opened; {} run folder(s) ahead of it", results_dir.display(), drift.len());
    if !drift.is_empty() {
        let shown: Vec<String> = drift.iter().take(3).map(ToString::to_string).collect();
        let more = if drift.len() > 3 { format!(" (and {} more)", drift.len() - 3) } else { String::new() };
        repairs.notes.push(format!(
            "the store is behind the run folders ({}{more}); rebuilding it from them",
            shown.join("; ")
        ));
        store::rebuild(results_dir, &store)?;
        store.flush()?;
    }
    Ok((store, repairs))
}

fn set_aside(results_dir: &Path) -> Result<PathBuf, StoreError> {
    let from = results_dir.join(STORE_DIR);
    let to = results_dir.join(format!("{STORE_DIR}.damaged-{}", store::unix_now()));
    std::fs::rename(&from, &to).map_err(|e| StoreError::io(&from, e))?;
    Ok(to)
}

/// A store to read: the real one, or — when a running `clorch run` holds it, or it is
/// missing, damaged or stale — a temporary one rebuilt from the run folders. The note says
/// which. A folder with neither a store nor run folders is an error naming it.
pub fn open_for_reading(results_dir: &Path) -> Result<(Store, Option<String>), StoreError> {
    if !results_dir.join(STORE_DIR).exists() && !results_dir.join("experiment.json").exists() {
        return Err(StoreError::io(
            results_dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a clorch results folder (no store, no experiment.json); expected the folder `clorch run` \
                 wrote, e.g. results/<experiment>",
            ),
        ));
    }
    if let results::FolderState::Foreign(found) = results::inspect_folder(results_dir) {
        if results_dir.join("experiment.json").exists() {
            // Opening would create a store in a folder clorch did not write.
            return Err(StoreError::io(
                results_dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a clorch results folder (found {found})"),
                ),
            ));
        }
    }
    if !results_dir.join(STORE_DIR).exists() {
        // Opening would create an empty store and show an empty table: read the folders.
        if !has_run_folders(results_dir) {
            return Err(StoreError::io(
                results_dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no store and no run folders to rebuild it from; run `clorch run` on the recipe again",
                ),
            ));
        }
        return from_folders(results_dir, "there is no store".to_string());
    }
    match Store::open(results_dir) {
        Ok(store) => match stale(results_dir, &store)? {
            None => Ok((store, None)),
            Some(why) => {
                drop(store);
                from_folders(results_dir, why)
            }
        },
        Err(
            e @ (StoreError::Locked { .. } | StoreError::Corrupt { .. } | StoreError::WrongFormat { .. }),
        ) => {
            let why = match e {
                StoreError::Locked { .. } => "a run is in progress".to_string(),
                other => format!("the store is unusable: {other}"),
            };
            from_folders(results_dir, why)
        }
        Err(e) => Err(e),
    }
}

/// A temporary store rebuilt from the run folders, with the note saying why.
fn from_folders(results_dir: &Path, why: String) -> Result<(Store, Option<String>), StoreError> {
    let store = Store::temporary()?;
    store::rebuild(results_dir, &store)?;
    Ok((store, Some(format!("{why}; read from the run folders"))))
}

/// Whether `<results dir>/runs` holds at least one run folder.
fn has_run_folders(results_dir: &Path) -> bool {
    std::fs::read_dir(results_dir.join(store::folder::RUNS_DIR))
        .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false)
}

/// Why a store that opened cannot be read as it is: it is behind the run folders
/// ([`store::drift`]), or it says a run is running although no `clorch run` holds it (the
/// orchestrator was killed before it could record the stop).
fn stale(results_dir: &Path, store: &Store) -> Result<Option<String>, StoreError> {
    let drift = store::drift(results_dir, store)?;
    if !drift.is_empty() {
        let shown: Vec<String> = drift.iter().take(3).map(ToString::to_string).collect();
        let more = if drift.len() > 3 { format!(" (and {} more)", drift.len() - 3) } else { String::new() };
        return Ok(Some(format!("the store is behind the run folders ({}{more})", shown.join("; "))));
    }
    if let Some(run) = store.runs()?.into_iter().find(|r| r.status == results::RunStatus::Running) {
        return Ok(Some(format!(
            "the store says run {} is running, but no `clorch run` holds the folder",
            run.id
        )));
    }
    Ok(None)
}
