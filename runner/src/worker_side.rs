//! What the runner needs to know about the worker implementation it launches, supplied by the
//! caller.
//!
//! Method kinds and parameters, stream checks, data fingerprints, whether a network fits a
//! stream, and where an interrupted run resumes are all the engine's knowledge. The runner
//! asks through this trait instead of depending on the engine, so it builds without dfdx and
//! the one binary that links the engine (`clorch`) hands its implementation in; tests can hand
//! in a fake.

use std::path::Path;

use protocol::RunSpec;

use crate::recipe::SpecChecker;

/// The worker engine's side of planning and resuming runs: the recipe checks of
/// [`SpecChecker`] (method and stream registries, data fingerprints, whole-run checks) plus
/// what the executors ask. Errors are one-line messages, shown
/// as they are.
pub trait WorkerSide: SpecChecker + Send + Sync + std::fmt::Debug {
    /// The sequence number of the first event a worker started on `spec` in `run_dir` will
    /// emit: 0 from scratch, or the event after its latest valid checkpoint.
    fn resume_point(&self, spec: &RunSpec, run_dir: &Path) -> Result<u64, String>;
}
