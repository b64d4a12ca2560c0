//! Executors start worker attempts and report what happens to them as typed messages; the
//! scheduler does not know whether a run went to a local process or a cluster job.
//!
//! Two executors exist, chosen by `clorch run --executor`: [`local`] (a child process per
//! attempt, events read from its standard output) and [`slurm`] (a SLURM job array per batch of
//! attempts, events read from each run folder's `events.jsonl` on a shared filesystem). Both
//! speak the same [`Message`]s, so the scheduler, the store and the reports treat every run
//! alike; the [`Executor`] trait is all the scheduler and the command line know of them.
//! Adding an executor is one file implementing it plus one line in [`registry`] — no `match`
//! over executors anywhere else.

mod folder;
pub mod local;
mod registry;
pub mod slurm;

use std::path::PathBuf;
use std::time::Duration;

use protocol::Event;
use tokio::sync::mpsc;

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
        /// Set when it falls back past checkpoints that fail verification (the worker logs
        /// the same to its `worker.log`); `None` also when the executor cannot tell.
        fallback: Option<results::CheckpointFallback>,
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

/// What an exit status of `clorch worker` ([`protocol::exit`]) means for the attempt;
/// `reason` gives the worker's last message, for failures it reported.
pub(crate) fn worker_ending(code: i32, reason: impl FnOnce() -> String) -> Ending {
    use protocol::exit::{meaning, Meaning};
    match meaning(code) {
        Meaning::Finished => Ending::Exited,
        Meaning::Interrupted => Ending::Interrupted,
        Meaning::Failed => Ending::Failed(Failure::Reported { reason: reason() }),
        Meaning::Crashed => Ending::Broke(Failure::Crashed { exit_code: code }),
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

pub use registry::{by_name, registry, ExecutorKind, Setup};

/// Where attempts run. The scheduler calls these methods only; each executor decides how
/// attempts start, how many may run at once, and what a stop means for them.
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// Attempts the scheduler may have going at once when the recipe asks for `parallel`.
    fn capacity(&self, parallel: usize) -> usize;

    /// Starts a batch of attempts; each reports through `reports` until its `Ended`. Must be
    /// called inside the scheduler's runtime.
    fn start(&self, batch: Vec<Attempt>, limits: Limits, reports: Reports);

    /// Whether `handle` (a stored [`crate::store::RunRecord::executor_job`]) names an attempt
    /// this executor can watch again.
    fn can_reattach(&self, handle: &str) -> bool;

    /// Why this executor must not start a run whose last attempt has `handle` and may still
    /// be going under another executor, or `None` when it may — so one run never has two
    /// workers.
    fn refuses(&self, handle: &str) -> Option<String>;

    /// The line printed when a first Ctrl-C (or SIGTERM) stops the scheduler with `active`
    /// attempts going.
    fn stop_notice(&self, active: usize) -> String;
}
