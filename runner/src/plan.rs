//! Planning an experiment: a recipe checked against the worker's knowledge (method kinds and
//! parameters, stream data; a [`WorkerSide`] the caller supplies), its data located and
//! fingerprinted, and its runs expanded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::budget::MemoryBudget;
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
    /// A data folder that validated could not be read for its fingerprint, the stream,
    /// network and method of a run do not fit together, or runs do not fit the memory budget.
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
    for p in 0..recipe.sweep.len() {
        for i in 0..recipe.sweep[p].streams.len() {
            let stream = &recipe.sweep[p].streams[i];
            let Some(dir) = stream.spec.data_dir() else { continue };
            // Problems of the data are the recipe's `data_dir`'s, at its line and column.
            let at_data_dir = |message: String| {
                PlanError::Recipe(
                    recipe.error_at(&stream.key.key(protocol::stream::DATA_DIR), message).into(),
                )
            };
            let absolute = std::fs::canonicalize(&dir)
                .map_err(|e| at_data_dir(format!("data folder {}: {e}", dir.display())))?;
            let print = match prints.get(&absolute) {
                Some(print) => print.clone(),
                None => {
                    let print = worker.fingerprint(&stream.spec.kind, &absolute).map_err(at_data_dir)?;
                    prints.insert(absolute.clone(), print.clone());
                    print
                }
            };
            if let Some(pinned) = stream.spec.fingerprint().filter(|p| **p != print) {
                return Err(at_data_dir(format!(
                    "the files in {} have fingerprint {print}, but the recipe pins {pinned}: the data \
                     changed since it was pinned; point `data_dir` at the pinned data or remove `fingerprint`",
                    absolute.display()
                )));
            }
            let mut params = stream.spec.params.clone();
            params.set(protocol::stream::DATA_DIR, serde_json::Value::String(absolute.display().to_string()));
            params.set(protocol::stream::FINGERPRINT, serde_json::Value::String(print));
            // Normalised again so the fingerprint takes its declared place: run ids hash the order.
            let normal =
                worker.normalize_stream(&stream.spec.kind, &params).map_err(|e| PlanError::Data {
                    recipe: path.to_path_buf(),
                    message: format!("stream `{}`: {}", stream.name, e.message),
                })?;
            recipe.sweep[p].streams[i].spec = normal;
        }
    }
    let runs = recipe.expand();
    let mut problems: Vec<String> = Vec::new();
    // An external worker checks its own specs (and refuses what it cannot train with BAD_SPEC).
    for run in runs.iter().filter(|r| r.spec.method.worker.is_none()) {
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

/// Checks every run of `plan` against the memory `budget` (shared by at most as many workers
/// as there are runs), with the worker's own estimate: a run that could not fit is refused
/// before anything is written, rather than aborting its worker attempt after attempt.
pub fn check_memory(plan: &Plan, budget: MemoryBudget, worker: &dyn WorkerSide) -> Result<(), PlanError> {
    let budget = budget.for_runs(plan.runs.len());
    let runs = plan.runs.iter().map(|r| (format!("stream `{}`, method `{}`", r.stream, r.method), &r.spec));
    // clorch cannot estimate an external worker's memory; it gets its share in
    // CLORCH_MAX_MEMORY and checks itself.
    let problems = crate::budget::check_runs(runs, &budget, |spec| match spec.method.worker {
        Some(_) => Ok(protocol::memory::MemoryEstimate::default()),
        None => worker.memory_estimate(spec),
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Data { recipe: plan.recipe.path.clone(), message: problems.join("\n") })
    }
}
