//! What the recipe module needs to know about methods and streams, supplied by the caller.
//!
//! Method kinds, their parameters and the checks of their values, and the checks of a stream's
//! data, belong to the worker crate, which owns the implementations. The recipe module asks
//! through this trait and reports the answers at the recipe's YAML positions, so the worker's
//! knowledge stays in one place and the recipe module stays testable with a fake.

pub use protocol::stream::{ParamProblem, ParamSegment};
use protocol::{MethodSpec, Params, RunSpec, StreamSpec};

/// One problem the checker found, optionally naming the key it is about (a parameter of the
/// method, a field of the stream) so the error can point at that key's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The parameter or field the problem is about (`lr`, `data_dir`), if one.
    pub key: Option<String>,
    /// One lowercase line saying what is wrong and what is expected.
    pub message: String,
}

impl SpecProblem {
    /// A problem of the method or stream as a whole.
    pub fn new(message: impl Into<String>) -> SpecProblem {
        SpecProblem { key: None, message: message.into() }
    }

    /// A problem of one parameter or field.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> SpecProblem {
        SpecProblem { key: Some(key.into()), message: message.into() }
    }
}

impl From<String> for SpecProblem {
    fn from(message: String) -> SpecProblem {
        SpecProblem::new(message)
    }
}

/// The worker-side knowledge a recipe is validated against.
pub trait SpecChecker {
    /// Registered method kinds, for "unknown method kind" messages and suggestions.
    fn method_kinds(&self) -> Vec<String>;

    /// Parameter names `kind` accepts (the optimiser's keys included), or `None` for an
    /// unknown kind.
    fn method_parameters(&self, kind: &str) -> Option<Vec<String>>;

    /// Value checks (types, ranges) of one grid point of a method. Called once per grid point,
    /// after the parameter names were checked against [`SpecChecker::method_parameters`].
    fn check_method(&self, method: &MethodSpec) -> Result<(), SpecProblem>;

    /// Registered stream kinds, for "unknown stream kind" messages and suggestions.
    fn stream_kinds(&self) -> Vec<String>;

    /// A stream's parameters with every default filled in, in the order the stream declares
    /// them — the form run ids hash — or where they do not parse.
    fn normalize_stream(&self, kind: &str, params: &Params) -> Result<StreamSpec, ParamProblem>;

    /// Tasks the stream yields.
    fn stream_tasks(&self, stream: &StreamSpec) -> Result<usize, SpecProblem>;

    /// Parameter and data checks of a stream (files exist, headers valid). Relative data
    /// folders have already been resolved against the recipe file's folder.
    fn check_stream(&self, stream: &StreamSpec) -> Result<(), SpecProblem>;

    /// A digest of the data files in `dir` as a stream of `kind` reads them.
    fn fingerprint(&self, kind: &str, dir: &std::path::Path) -> Result<String, String>;

    /// Checks a whole run's parts against each other (a task-incremental method needs
    /// per-task heads, an online stream announces no task boundaries, …).
    fn check_run(&self, spec: &RunSpec) -> Result<(), String>;
}
