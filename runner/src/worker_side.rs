//! What the runner needs to know about the worker implementation it launches, supplied by the
//! caller.
//!
//! Method kinds and parameters, stream checks, data fingerprints, whether a network fits a
//! stream, and where an interrupted run resumes are all the engine's knowledge. The runner
//! asks through this trait instead of depending on the engine, so it builds without dfdx and
//! the one binary that links the engine (`clorch`) hands its implementation in; tests can hand
//! in a fake.

use std::path::Path;

use protocol::memory::MemoryEstimate;
use protocol::RunSpec;
use results::CheckpointFallback;

use crate::recipe::SpecChecker;

/// The worker engine's side of planning and resuming runs: the recipe checks of
/// [`SpecChecker`] (method and stream registries, data fingerprints, whole-run checks) plus
/// what the executors ask. Errors are one-line messages, shown
/// as they are.
pub trait WorkerSide: SpecChecker + Send + Sync + std::fmt::Debug {
    /// Where a worker started on `spec` in `run_dir` will resume: the sequence number of the
    /// first event it will emit (0 from scratch, or the event after its latest valid
    /// checkpoint), and the checkpoints newer than that one it will skip because they fail
    /// verification.
    fn resume_point(&self, spec: &RunSpec, run_dir: &Path) -> Result<ResumePoint, String>;

    /// The worker's estimate of a run's peak memory, item by item, as it will check it itself
    /// before allocating; an error when the spec cannot be estimated (its data headers cannot be
    /// read).
    fn memory_estimate(&self, spec: &RunSpec) -> Result<MemoryEstimate, String>;
}

/// Where a new worker of a run resumes ([`WorkerSide::resume_point`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Sequence number of the first event it will emit.
    pub next_seq: u64,
    /// Set when the newest checkpoint (or more) fails verification and it resumes from an
    /// older one, or from the beginning. Its `attempt` is 0; the scheduler fills it in.
    pub fallback: Option<CheckpointFallback>,
}
