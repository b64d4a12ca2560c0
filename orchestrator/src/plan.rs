//! Planning an experiment: a recipe checked against the worker crate's knowledge (method kinds
//! and parameters, stream data), its data located and fingerprinted, and its runs expanded.

use std::path::{Path, PathBuf};

use workers::protocol::{MethodSpec, StreamSpec};
use workers::stream::{MnistFiles, StreamError};

use crate::recipe::{PlannedRun, Recipe, RecipeErrors, SpecChecker, SpecProblem};

/// The worker crate's method registry and stream checks, as the recipe module asks for them.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerChecker;

impl SpecChecker for WorkerChecker {
    fn method_kinds(&self) -> Vec<String> {
        workers::method::registry().iter().map(|m| m.kind.to_string()).collect()
    }

    fn method_parameters(&self, kind: &str) -> Option<Vec<String>> {
        workers::method::lookup(kind).ok().map(|m| m.parameter_names())
    }

    fn check_method(&self, method: &MethodSpec) -> Result<(), SpecProblem> {
        workers::method::validate(method).map_err(|e| match e {
            workers::method::MethodError::Parameter { message, .. } => {
                // The worker names the parameter in backquotes first; point at it when it does.
                let key = message.split('`').nth(1).filter(|k| method.params.contains_key(*k));
                match key {
                    Some(k) => SpecProblem::at(k, message.clone()),
                    None => SpecProblem::new(message),
                }
            }
            other => SpecProblem::new(other.to_string()),
        })
    }

    fn check_stream(&self, stream: &StreamSpec) -> Result<(), SpecProblem> {
        workers::stream::validate(stream).map_err(|e| match e {
            StreamError::Data { path, reason } => {
                SpecProblem::at("data_dir", format!("{}: {reason}", path.display()))
            }
            StreamError::Invalid { reason, .. } => SpecProblem::new(reason),
        })
    }
}

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
pub fn plan(path: &Path, overrides: &[String]) -> Result<Plan, PlanError> {
    let mut recipe = Recipe::load(path, overrides, &WorkerChecker)?;
    for stream in &mut recipe.streams {
        let Some(dir) = stream.spec.data_dir_mut() else { continue };
        let absolute = std::fs::canonicalize(&*dir).map_err(|e| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: data folder {}: {e}", stream.name, dir.display()),
        })?;
        *dir = absolute.clone();
        let print = MnistFiles::locate(&absolute).and_then(|f| f.fingerprint()).map_err(|e| {
            PlanError::Data { recipe: path.to_path_buf(), message: format!("stream `{}`: {e}", stream.name) }
        })?;
        if let Some(slot) = stream.spec.fingerprint_mut() {
            if let Some(pinned) = slot.as_ref().filter(|p| **p != print) {
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
            *slot = Some(print);
        }
    }
    let runs = recipe.expand();
    let mut problems: Vec<String> = Vec::new();
    for run in &runs {
        if let Err(message) = workers::engine::check_spec(&run.spec) {
            let line = format!("stream `{}`, method `{}`: {message}", run.stream, run.method);
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
