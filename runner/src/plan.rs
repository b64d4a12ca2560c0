//! Planning an experiment: a recipe checked against the worker's knowledge (method kinds and
//! parameters, stream data; a [`WorkerSide`] the caller supplies), its data located and
//! fingerprinted, and its runs expanded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::recipe::{Multirun, PlannedRun, Recipe, RecipeErrors};
use crate::worker_side::WorkerSide;

/// A recipe ready to run.
#[derive(Debug)]
pub struct Plan {
    /// The validated recipe, its data folders absolute and fingerprinted.
    pub recipe: Recipe,
    /// Its runs, in expansion order.
    pub runs: Vec<PlannedRun>,
}

/// Why an experiment cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The recipe (or an override) is wrong.
    #[error("{0}")]
    Recipe(#[from] RecipeErrors),
    /// A data folder that validated could not be read for its fingerprint, or the stream,
    /// network and method of a run do not fit together.
    #[error("{recipe}: {message}")]
    Data {
        /// The recipe file.
        recipe: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Loads `path` with `overrides`, makes every data folder absolute (workers may run in another
/// directory, or on a cluster node), records each data set's fingerprint, and expands the runs.
/// `multirun` says whether comma lists among the overrides are sweeps (`-m`).
pub fn plan(
    path: &Path,
    overrides: &[String],
    multirun: Multirun,
    worker: &dyn WorkerSide,
) -> Result<Plan, PlanError> {
    let mut recipe = Recipe::load_with(path, overrides, multirun, worker)?;
    // Sweep points share most streams: each data folder is fingerprinted once.
    let mut prints: HashMap<PathBuf, String> = HashMap::new();
    for stream in recipe.sweep.iter_mut().flat_map(|point| point.streams.iter_mut()) {
        let Some(dir) = stream.spec.data_dir() else { continue };
        let absolute = std::fs::canonicalize(&dir).map_err(|e| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: data folder {}: {e}", stream.name, dir.display()),
        })?;
        stream.spec.set_data_dir(&absolute);
        let print = match prints.get(&absolute) {
            Some(print) => print.clone(),
            None => {
                let print =
                    worker.fingerprint(&stream.spec.kind, &absolute).map_err(|message| PlanError::Data {
                        recipe: path.to_path_buf(),
                        message: format!("stream `{}`: {message}", stream.name),
                    })?;
                prints.insert(absolute.clone(), print.clone());
                print
            }
        };
        if let Some(pinned) = stream.spec.fingerprint().filter(|p| **p != print) {
            return Err(PlanError::Data {
                recipe: path.to_path_buf(),
                message: format!(
                    "stream `{}`: the files in {} have fingerprint {print}, but the recipe pins \
                     {pinned}; point `data_dir` at the pinned data or remove `fingerprint`",
                    stream.name,
                    absolute.display()
                ),
            });
        }
        let mut params = stream.spec.params.clone();
        params.set(protocol::stream::FINGERPRINT, serde_json::Value::String(print));
        // Normalised again so the fingerprint takes its declared place: run ids hash the order.
        stream.spec = worker.normalize_stream(&stream.spec.kind, &params).map_err(|e| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: {}", stream.name, e.message),
        })?;
    }
    let runs = recipe.expand();
    let mut problems: Vec<String> = Vec::new();
    for run in &runs {
        if let Err(message) = worker.check_run(&run.spec) {
            let sweep: Vec<String> = run
                .grid
                .iter()
                .filter(|(key, _)| key.contains('.'))
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            let at = if sweep.is_empty() {
                String::new()
            } else {
                format!(" (at sweep point {})", sweep.join(" "))
            };
            let line = format!("stream `{}`, method `{}`{at}: {message}", run.stream, run.method);
            if !problems.contains(&line) {
                problems.push(line);
            }
        }
    }
    if !problems.is_empty() {
        return Err(PlanError::Data { recipe: path.to_path_buf(), message: problems.join("\n") });
    }
    Ok(Plan { recipe, runs })
}
