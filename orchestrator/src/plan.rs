//! Planning an experiment: a recipe checked against the worker crate's knowledge (method kinds
//! and parameters, stream data), its data located and fingerprinted, and its runs expanded.

use std::path::{Path, PathBuf};

use workers::protocol::{MethodSpec, Params, RunSpec, StreamSpec};
use workers::stream::{PathSegment, StreamError};

use crate::recipe::{ParamProblem, ParamSegment, PlannedRun, Recipe, RecipeErrors, SpecChecker, SpecProblem};

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

    fn stream_kinds(&self) -> Vec<String> {
        workers::stream::registry().iter().map(|s| s.kind.to_string()).collect()
    }

    fn normalize_stream(&self, kind: &str, params: &Params) -> Result<StreamSpec, ParamProblem> {
        let entry = workers::stream::lookup(kind)
            .map_err(|e| ParamProblem { path: Vec::new(), message: e.to_string() })?;
        let params = entry.normalize(params).map_err(|e| ParamProblem {
            path: e
                .path
                .into_iter()
                .map(|s| match s {
                    PathSegment::Key(k) => ParamSegment::Key(k),
                    PathSegment::Index(i) => ParamSegment::Index(i),
                })
                .collect(),
            message: e.message,
        })?;
        Ok(StreamSpec::new(kind, params))
    }

    fn stream_tasks(&self, stream: &StreamSpec) -> Result<usize, SpecProblem> {
        workers::stream::tasks(stream).map_err(stream_problem)
    }

    fn check_stream(&self, stream: &StreamSpec) -> Result<(), SpecProblem> {
        workers::stream::validate(stream).map_err(stream_problem)
    }

    fn fingerprint(&self, kind: &str, dir: &Path) -> Result<String, String> {
        workers::stream::fingerprint(kind, dir).map_err(|e| e.to_string())
    }

    fn check_run(&self, spec: &RunSpec) -> Result<(), String> {
        workers::engine::check_spec(spec)
    }
}

fn stream_problem(e: StreamError) -> SpecProblem {
    match e {
        StreamError::Data { path, reason } => {
            SpecProblem::at("data_dir", format!("{}: {reason}", path.display()))
        }
        StreamError::Invalid { reason, .. } => SpecProblem::new(reason),
        other @ StreamError::UnknownKind { .. } => SpecProblem::new(other.to_string()),
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
    let checker = WorkerChecker;
    let mut recipe = Recipe::load(path, overrides, &checker)?;
    for stream in &mut recipe.streams {
        let Some(dir) = stream.spec.data_dir() else { continue };
        let absolute = std::fs::canonicalize(&dir).map_err(|e| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: data folder {}: {e}", stream.name, dir.display()),
        })?;
        stream.spec.set_data_dir(&absolute);
        let print = checker.fingerprint(&stream.spec.kind, &absolute).map_err(|message| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: {message}", stream.name),
        })?;
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
        params.set(workers::protocol::stream::FINGERPRINT, serde_json::Value::String(print));
        // Normalised again so the fingerprint takes its declared place: run ids hash the order.
        stream.spec = checker.normalize_stream(&stream.spec.kind, &params).map_err(|e| PlanError::Data {
            recipe: path.to_path_buf(),
            message: format!("stream `{}`: {}", stream.name, e.message),
        })?;
    }
    let runs = recipe.expand();
    let mut problems: Vec<String> = Vec::new();
    for run in &runs {
        if let Err(message) = checker.check_run(&run.spec) {
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
