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
/// [`SpecChecker`] plus what `plan` and the executors ask. Errors are one-line messages, shown
/// as they are.
pub trait WorkerSide: SpecChecker + Send + Sync + std::fmt::Debug {
    /// The fingerprint of the data files in `data_dir` (which stands for the data in a run's
    /// identity), or why they cannot be read.
    fn fingerprint(&self, data_dir: &Path) -> Result<String, String>;

    /// Whether the stream, network and method of `spec` fit together (checked once per run
    /// when planning, so a misfit is reported before anything starts).
    fn check_spec(&self, spec: &RunSpec) -> Result<(), String>;

    /// The sequence number of the first event a worker started on `spec` in `run_dir` will
    /// emit: 0 from scratch, or the event after its latest valid checkpoint.
    fn resume_point(&self, spec: &RunSpec, run_dir: &Path) -> Result<u64, String>;
}
