//! Executors start worker attempts and report what happens to them as typed messages; the
//! scheduler does not know whether a run went to a local process or a cluster job.
//!
//! Two executors exist, chosen by `clorch run --executor`: [`local`] (a child process per
//! attempt, events read from its standard output) and [`slurm`] (a SLURM job array per batch of
//! attempts, events read from each run folder's `events.jsonl` on a shared filesystem). Both
//! speak the same [`Message`]s, so the scheduler, the store and the reports treat every run
//! alike; [`Executor`] is the one type the scheduler holds.

mod folder;
pub mod local;
pub mod slurm;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use workers::protocol::Event;

use crate::store::Failure;

/// One attempt of one run to start.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Run id.
    pub run: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The run folder (holds `spec.json`; receives `events.jsonl`, checkpoints, `worker.log`).
    pub run_dir: PathBuf,
    /// The executor's handle of an attempt that an earlier `clorch run` started and that may
    /// still be going (a SLURM job): watch it instead of starting another worker. `None`: start
    /// a new one. Only set for handles [`Executor::can_reattach`] accepts.
    pub reattach: Option<String>,
}

/// One attempt to start, with the channel the scheduler controls it through.
#[derive(Debug)]
pub struct Attempt {
    /// What to start.
    pub launch: Launch,
    /// Stop and kill requests from the scheduler.
    pub control: mpsc::UnboundedReceiver<Control>,
}

/// What an attempt reports to the scheduler.
#[derive(Debug)]
pub struct Report {
    /// Run id.
    pub run: String,
    /// Attempt number.
    pub attempt: u32,
    /// What happened.
    pub message: Message,
}

/// The messages of an attempt, in the order they happen.
#[derive(Debug)]
pub enum Message {
    /// The attempt is about to start the worker, which will resume at event `next_seq` (0:
    /// from scratch) and emit every later event again; the scheduler drops the stored events
    /// from there. Sent while no other worker of the run can be writing its folder.
    Resuming {
        /// Sequence number of the first event the worker will emit.
        next_seq: u64,
    },
    /// The attempt was handed to a queue (a SLURM job was submitted); the worker starts
    /// later. The handle is saved at once, so a later `clorch run` can reattach to the job
    /// instead of submitting it again.
    Queued {
        /// The job id.
        handle: String,
    },
    /// The worker process (or job) started.
    Started {
        /// Process id or job id, for `status` and for reattaching.
        handle: String,
    },
    /// Something the user should know that is not an event of the run (a job array was
    /// submitted, the queue could not be read); printed as one line.
    Note(String),
    /// An event from the worker.
    Event(Box<Event>),
    /// The worker said where it is (a heartbeat; not stored).
    Progress {
        /// Task being trained.
        task: usize,
        /// Tasks in the stream.
        tasks: usize,
    },
    /// The attempt ended.
    Ended(Ending),
}

/// How an attempt ended — every way is data, so the store and `status` can show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The worker exited cleanly (it should have emitted `finished`; the scheduler checks).
    Exited,
    /// The worker checkpointed and stopped because it was asked to (or was preempted).
    Interrupted,
    /// The worker reported a failure a retry cannot fix (bad spec or data, divergence).
    Failed(Failure),
    /// The attempt broke in a way another attempt may not: a crash, a signal, a timeout,
    /// silence, a failure to start.
    Broke(Failure),
    /// The scheduler stopped watching, but the attempt goes on without it (a SLURM job keeps
    /// running after Ctrl-C); its handle stays in the store, and the next `clorch run`
    /// reattaches to it.
    Detached,
}

/// What an exit status of `clorch worker` ([`workers::protocol::exit`]) means for the attempt;
/// `reason` gives the worker's last message, for failures it reported.
pub(crate) fn worker_ending(code: i32, reason: impl FnOnce() -> String) -> Ending {
    use workers::protocol::exit;
    match code {
        exit::FINISHED => Ending::Exited,
        exit::INTERRUPTED => Ending::Interrupted,
        exit::FAILED | exit::BAD_SPEC => Ending::Failed(Failure::Reported { reason: reason() }),
        exit_code => Ending::Broke(Failure::Crashed { exit_code }),
    }
}

/// Commands the scheduler sends to a running attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Ask the worker to checkpoint and exit.
    Stop,
    /// Kill it now.
    Kill,
}

/// Limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock limit of the attempt.
    pub timeout: Option<Duration>,
    /// Longest silence (no event and no heartbeat) tolerated.
    pub heartbeat: Duration,
    /// How long a stopped worker may take to checkpoint before it is killed.
    pub grace: Duration,
}

/// The sending half every attempt reports through.
pub type Reports = mpsc::UnboundedSender<Report>;

/// Where attempts run. The scheduler calls these methods only; each variant decides how
/// attempts start, how many may run at once, and what a stop means for them.
#[derive(Clone, Debug)]
pub enum Executor {
    /// Child processes of this orchestrator.
    Local(local::LocalExecutor),
    /// Jobs of a SLURM cluster.
    Slurm(Box<slurm::SlurmExecutor>),
}

impl Executor {
    /// Attempts the scheduler may have going at once when the recipe asks for `parallel`:
    /// that many local workers; any number of SLURM jobs (each job array carries `parallel`
    /// as its throttle, so the cluster bounds them).
    pub fn capacity(&self, parallel: usize) -> usize {
        match self {
            Executor::Local(_) => parallel.max(1),
            Executor::Slurm(_) => usize::MAX,
        }
    }

    /// Starts a batch of attempts (each reports through `reports` until its `Ended`): local
    /// workers one by one, SLURM attempts as one job array. Must be called inside the
    /// scheduler's runtime.
    pub fn start(&self, batch: Vec<Attempt>, limits: Limits, reports: Reports) {
        match self {
            Executor::Local(local) => {
                for Attempt { launch, control } in batch {
                    let local = local.clone();
                    let reports = reports.clone();
                    tokio::spawn(async move { local.run_attempt(launch, limits, reports, control).await });
                }
            }
            Executor::Slurm(slurm) => slurm.start(batch, limits, reports),
        }
    }

    /// Whether `handle` (a stored [`crate::store::RunRecord::executor_job`]) names an attempt
    /// this executor can watch again: a SLURM job; never a local process, which died with its
    /// orchestrator's pipe.
    pub fn can_reattach(&self, handle: &str) -> bool {
        match self {
            Executor::Local(_) => false,
            Executor::Slurm(_) => slurm::JobId::parse(handle).is_some(),
        }
    }

    /// Why this executor must not start a run whose last attempt has `handle` and may still
    /// be going under another executor, or `None` when it may. A local `clorch run` refuses
    /// runs with a SLURM job that may be running, so one run never has two workers.
    pub fn refuses(&self, handle: &str) -> Option<String> {
        match self {
            Executor::Local(_) if slurm::JobId::parse(handle).is_some() => Some(format!(
                "its SLURM job {handle} may still be running; `clorch run --executor slurm` reattaches to it \
                 and `clorch cancel` cancels it"
            )),
            _ => None,
        }
    }

    /// The line printed when a first Ctrl-C (or SIGTERM) stops the scheduler with `active`
    /// attempts going.
    pub fn stop_notice(&self, active: usize) -> String {
        match self {
            Executor::Local(_) => format!(
                "stopping: asking {active} worker(s) to checkpoint and exit (press Ctrl-C again to stop at once)"
            ),
            Executor::Slurm(_) => format!(
                "stopping: leaving {active} SLURM job(s) queued or running; `clorch run` reattaches to them, \
                 `clorch cancel` cancels them"
            ),
        }
    }
}
