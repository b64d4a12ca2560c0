//! The SLURM executor: attempts run as tasks of job arrays on a cluster that shares the
//! results folder (and the clorch executable) with the machine `clorch run` runs on.
//!
//! # How a batch runs
//!
//! 1. Each run folder is claimed as for a local worker (no earlier worker holds it; the
//!    resume point is read) and its `events.jsonl` is cut back to that point.
//! 2. The batch's run folders are listed in `<results>/slurm/batch-NNNN.runs` next to a job
//!    script, and submitted as one array: `sbatch --parsable --array=0-N%K …` (K: the
//!    recipe's `parallel`, if given), with `--cpus-per-task`, `--mem`, `--partition`,
//!    `--account`, `--time` and further flags from the recipe's `slurm:` section and
//!    `--signal=B:USR1@<signal_seconds>`. Batches over [`ARRAY_LIMIT`] runs become several
//!    arrays (SLURM's default `MaxArraySize` is 1001).
//! 3. Each task's script runs `clorch worker` on its run folder. The orchestrator follows the
//!    folder's `events.jsonl` (noticing when a resumed worker cuts it back), the worker's
//!    heartbeats in `worker.log`, and `jobs.log`, where the script notes each start and the
//!    worker's exit status; it reads job states with `squeue` every [`POLL`] (sooner when a
//!    script notes an exit).
//! 4. A job that is over ends the attempt by the worker's exit status, as for a local worker;
//!    without one (the job was killed), by the job's state from `squeue` or, once the
//!    controller has forgotten the job, `sacct`. Without accounting (`sacct` fails) such an
//!    attempt counts as lost and is retried from its checkpoint within `max_attempts`.
//!
//! # Stopping and reattaching
//!
//! Ctrl-C stops the orchestrator, not the jobs: each attempt ends as
//! [`Ending::Detached`](super::Ending::Detached) and its job id stays in the store. The next
//! `clorch run --executor slurm` reattaches to the jobs still queued or running instead of
//! submitting them again; `clorch cancel` cancels them.

mod commands;
mod job;
mod script;
mod tail;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use commands::{scancel, version, Cancel, CommandError};
pub use job::{JobId, JobState, JOBS_LOG};
pub use script::SLURM_DIR;

use super::{Attempt, Executor, Limits, Reports, Setup};
use crate::recipe::SlurmSettings;
use crate::worker_side::WorkerSide;

/// Most tasks in one job array.
pub const ARRAY_LIMIT: usize = 1000;

/// How often job states are read with `squeue`.
pub const POLL: Duration = Duration::from_secs(10);

/// How to submit and follow SLURM jobs.
#[derive(Clone, Debug)]
pub struct SlurmExecutor {
    /// The clorch executable the jobs run: this one (or `CLORCH_WORKER`), which must be on a
    /// filesystem the nodes share.
    pub program: PathBuf,
    /// The results folder (absolute); batches are written to its `slurm/` folder.
    pub results_dir: PathBuf,
    /// Where jobs start: the directory `clorch run` was started in, so relative data folders
    /// in specs resolve the same way on the nodes.
    pub workdir: PathBuf,
    /// `--job-name` of every job (`clorch-<experiment>`).
    pub job_name: String,
    /// The recipe's `slurm:` settings (defaults when it has none).
    pub settings: SlurmSettings,
    /// Tasks of one array running at once (`%K`), if bounded.
    pub throttle: Option<usize>,
    /// Interval between `squeue` reads.
    pub poll: Duration,
    /// The worker implementation, which says where a run resumes.
    pub worker: Arc<dyn WorkerSide>,
}

impl SlurmExecutor {
    /// An executor for the experiment of `setup` (its recipe's `slurm:` settings, defaults
    /// when it has none), with workers started from the running executable (or the program
    /// named by `CLORCH_WORKER`) in the current directory.
    pub fn new(setup: &Setup<'_>) -> std::io::Result<SlurmExecutor> {
        let program = match std::env::var_os("CLORCH_WORKER") {
            Some(p) => std::fs::canonicalize(PathBuf::from(p))?,
            None => std::env::current_exe()?,
        };
        Ok(SlurmExecutor {
            program,
            results_dir: setup.results_dir.clone(),
            workdir: std::env::current_dir()?,
            job_name: format!("clorch-{}", setup.recipe.name),
            settings: setup.recipe.slurm.clone().unwrap_or_default(),
            throttle: setup.parallel,
            poll: POLL,
            worker: setup.worker.clone(),
        })
    }
}

/// Job arrays on a cluster: any number of jobs (each array carries `parallel` as its throttle,
/// so the cluster bounds them), which outlive the orchestrator and are reattached.
impl Executor for SlurmExecutor {
    fn capacity(&self, _parallel: usize) -> usize {
        usize::MAX
    }

    /// Submits the new attempts of `batch` as job arrays and reattaches to the others, then
    /// follows them all until each has ended.
    fn start(&self, batch: Vec<Attempt>, limits: Limits, reports: Reports) {
        let executor = self.clone();
        tokio::spawn(async move { watch::run(executor, batch, limits, reports).await });
    }

    fn can_reattach(&self, handle: &str) -> bool {
        JobId::parse(handle).is_some()
    }

    fn refuses(&self, _handle: &str) -> Option<String> {
        None
    }

    fn stop_notice(&self, active: usize) -> String {
        format!(
            "stopping: leaving {active} SLURM job(s) queued or running; `clorch run` reattaches to them, \
             `clorch cancel` cancels them"
        )
    }
}

/// Whether SLURM's commands answer here (`sbatch --version`), checked before anything is
/// written: without SLURM there is nothing to do.
pub fn preflight() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(version()).map(drop).map_err(|e| e.to_string())
}
