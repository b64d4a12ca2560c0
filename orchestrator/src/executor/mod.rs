//! Executors start worker attempts and report what happens to them as typed messages; the
//! scheduler does not know whether a run went to a local process or a cluster job.

pub mod local;

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
    /// The worker process (or job) started.
    Started {
        /// Process id or job id, for `status` and for reattaching.
        handle: String,
    },
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
}

/// `90 s`, `30 min`, `2 h`.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{:.3} s", d.as_secs_f64()).trim_end_matches('0').trim_end_matches('.').to_string() + ""
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
