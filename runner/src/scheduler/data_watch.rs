//! The data a plan was fingerprinted against, watched until each attempt starts.
//!
//! A run's id names its data by fingerprint, so data files that change while an experiment
//! runs (replaced, re-downloaded, truncated by a full disk) would mix two datasets in one
//! table. The worker refuses such data itself, but all it can name is a folder; checked here,
//! before an attempt starts, the refusal names the recipe's `data_dir` at its line and column
//! like every other recipe error. Hashing the data again for every attempt would cost a sweep
//! of thousands of runs real time, so the files' sizes and modification times are compared
//! first and the fingerprint is computed again only when they moved.

use std::path::PathBuf;
use std::time::SystemTime;

use protocol::StreamSpec;

use crate::recipe::Recipe;
use crate::worker_side::WorkerSide;

/// One data folder of the plan.
struct Watched {
    kind: String,
    dir: PathBuf,
    fingerprint: String,
    /// Size and modification time of every file in the folder when last verified.
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
    /// The recipe problem to report at the `data_dir`'s position, message left to fill in.
    at: crate::recipe::RecipeError,
}

/// The plan's data folders and what they held.
pub(super) struct DataWatch {
    watched: Vec<Watched>,
}

fn listing(dir: &std::path::Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_file().then(|| (entry.path(), meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

impl DataWatch {
    /// Notes every data folder of `recipe` (planned: absolute and fingerprinted) as it is now.
    pub(super) fn new(recipe: &Recipe) -> DataWatch {
        let mut watched: Vec<Watched> = Vec::new();
        // Sweep points share streams: each (kind, folder) once.
        for stream in recipe.sweep.iter().flat_map(|point| point.streams.iter()) {
            let (Some(dir), Some(fingerprint)) = (stream.spec.data_dir(), stream.spec.fingerprint()) else {
                continue;
            };
            if watched.iter().any(|w| w.dir == dir && w.kind == stream.spec.kind) {
                continue;
            }
            let at = recipe.error_at(&stream.key.key(protocol::stream::DATA_DIR), String::new());
            let fingerprint = fingerprint.to_string();
            watched.push(Watched {
                kind: stream.spec.kind.clone(),
                files: listing(&dir),
                dir,
                fingerprint,
                at,
            });
        }
        DataWatch { watched }
    }

    /// Whether the data of `stream` still has the fingerprint it was planned with; the error
    /// is the recipe problem to record as the run's failure.
    pub(super) fn check(&mut self, stream: &StreamSpec, worker: &dyn WorkerSide) -> Result<(), String> {
        let Some(dir) = stream.data_dir() else { return Ok(()) };
        let Some(watched) = self.watched.iter_mut().find(|w| w.dir == dir && w.kind == stream.kind) else {
            return Ok(());
        };
        let files = listing(&watched.dir);
        if files == watched.files {
            return Ok(());
        }
        let fail = |message: String| {
            let mut error = watched.at.clone();
            error.message = message;
            error.to_string()
        };
        match worker.fingerprint(&watched.kind, &watched.dir) {
            Ok(print) if print == watched.fingerprint => {
                watched.files = files;
                Ok(())
            }
            Ok(print) => Err(fail(format!(
                "the data files in {} changed since the experiment was planned (fingerprint {print}, \
                 expected {}); results would mix two datasets — restore the files, or run the recipe \
                 again to plan new runs on the new data",
                watched.dir.display(),
                watched.fingerprint
            ))),
            Err(message) => Err(fail(format!(
                "the data files changed since the experiment was planned and can no longer be read: {message}"
            ))),
        }
    }
}
