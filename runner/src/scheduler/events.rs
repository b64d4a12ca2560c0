//! What the dispatcher tells its reporters. The dispatcher decides; reporters (the progress
//! bar, the status file) show — nextest's runner/reporter split, so neither rendering nor
//! file writing sits in the scheduling loop.

use std::time::Duration;

use crate::status::RunLine;
use crate::store::Failure;

/// Something that happened in the scheduler, in the order it happened.
#[derive(Debug)]
pub enum SchedulerEvent<'a> {
    /// A line an executor wants the user to see (a submitted job array, a reattached job).
    Note(&'a str),
    /// A first signal asked the attempts to stop; `notice` says what that means for them.
    StopRequested {
        /// The executor's wording.
        notice: &'a str,
    },
    /// A second signal: the workers are killed.
    KillRequested,
    /// A run finished; `seconds` is its last attempt's wall time.
    RunFinished {
        /// The run's short label.
        label: &'a str,
        /// Wall time of the attempt.
        seconds: f64,
    },
    /// A worker was stopped from outside; the run is queued again without using an attempt.
    RunResuming {
        /// The run's short label.
        label: &'a str,
    },
    /// A run failed for good: at once (`attempts` none) or after every allowed attempt broke.
    RunFailed {
        /// The run's short label.
        label: &'a str,
        /// Why.
        failure: &'a Failure,
        /// Attempts that broke, when the run failed by running out of them.
        attempts: Option<u32>,
    },
    /// An attempt broke and the run is tried again after `delay`.
    RetryScheduled {
        /// The run's short label.
        label: &'a str,
        /// Why the attempt broke.
        failure: &'a Failure,
        /// The number of the next attempt.
        attempt: u32,
        /// Attempts allowed.
        of: u32,
        /// How long the next attempt waits.
        delay: Duration,
    },
    /// The state of every run, about twice a second and after each ended attempt.
    Progress(&'a Board),
    /// The scheduler is done (every run ended, or a stop): the last state.
    Ended(&'a Board),
}

/// The state of the plan's runs at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Board {
    /// Runs of the plan.
    pub total: usize,
    /// Runs finished.
    pub done: usize,
    /// Runs failed.
    pub failed: usize,
    /// Runs' worth of tasks done: finished runs count 1, running ones the fraction of their
    /// tasks.
    pub work: f64,
    /// The running attempts, in plan order.
    pub running: Vec<Running>,
    /// One line per run, in plan order, with running runs' live task.
    pub runs: Vec<RunLine>,
}

/// One running worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Short label (id prefix, method, grid, seed).
    pub label: String,
    /// Task being trained.
    pub task: usize,
    /// Tasks in the stream.
    pub tasks: usize,
}
