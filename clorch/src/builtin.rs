//! The worker engine linked into this binary, as the runner's [`WorkerSide`]: the method
//! registry, stream checks, data fingerprints, spec checks and resume points of the workers
//! crate. The runner never names the engine, so this is the one place that connects the two
//! (the same engine runs as `clorch worker`).

use std::path::Path;

use protocol::memory::MemoryEstimate;
use protocol::{MethodSpec, Params, RunSpec, StreamSpec};
use results::{CheckpointFallback, RejectedCheckpoint};
use runner::recipe::{ParamProblem, SpecChecker, SpecProblem};
use runner::{ResumePoint, WorkerSide};
use workers::stream::StreamError;

/// The engine this binary links, as the runner asks for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinWorker;

impl SpecChecker for BuiltinWorker {
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
        workers::stream::normalize(kind, params)
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

impl WorkerSide for BuiltinWorker {
    fn resume_point(&self, spec: &RunSpec, run_dir: &Path) -> Result<ResumePoint, String> {
        let point = workers::engine::resume_point(spec, run_dir).map_err(|e| e.to_string())?;
        let fallback = (!point.rejected.is_empty()).then(|| CheckpointFallback {
            attempt: 0,
            rejected: point
                .rejected
                .into_iter()
                .map(|r| RejectedCheckpoint {
                    file: r.file,
                    summary: r.summary.to_string(),
                    reason: r.reason,
                })
                .collect(),
            resumed_from: point.resumed_from,
        });
        Ok(ResumePoint { next_seq: point.next_seq, fallback })
    }

    fn memory_estimate(&self, spec: &RunSpec) -> Result<MemoryEstimate, String> {
        workers::engine::memory::estimate(spec)
    }
}
