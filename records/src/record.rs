//! The records the store keeps about an experiment and its runs.
//!
//! A [`RunRecord`] is what `clorch status` shows and what `clorch run` resumes from: the run's
//! spec and table labels, its [`RunStatus`], how many attempts it took, its progress through
//! the stream and its last good checkpoint. Every way a run can end is data ([`Failure`]), so a
//! worker that could not be started is told apart from one that crashed, was killed by a
//! signal, timed out or went silent — the habit of nextest's `ExecutionResult`.
//!
//! Times are unix seconds stamped by the orchestrator; they never enter a run's numbers.

use std::collections::BTreeMap;
use std::fmt;

use protocol::{Event, EventBody, RunSpec};
use serde::{Deserialize, Serialize};

/// The labels a run carries into comparison tables. Runs with equal `(stream, method, grid)`
/// form one group (they differ by seed only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLabels {
    /// The recipe's name for the task stream (e.g. `pmnist`).
    pub stream: String,
    /// The recipe's name for the method entry (e.g. `cbp`).
    pub method: String,
    /// What varies across the experiment's runs besides stream, method and seed, with each
    /// value's JSON type: the sweep point's keys by dotted path (`network.hidden`,
    /// `training.batch_size`) and the method's grid point by parameter name (`lr`; names have
    /// no dots). Recomputed from each plan, so it follows the recipe. Fixed values are in the
    /// spec, not here.
    #[serde(default)]
    pub grid: BTreeMap<String, serde_json::Value>,
    /// The run's root seed.
    pub seed: u64,
}

impl RunLabels {
    /// The grid point as `key=value` pairs in key order, joined by `", "` (`lr=0.01, rho=0.9`);
    /// empty for a method without a grid. String values are written without quotes. This is
    /// the `grid` column of every report table.
    pub fn grid_text(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.grid.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(key);
            out.push('=');
            match value {
                serde_json::Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
        }
        out
    }
}

/// Every state a run can be in. The scheduler owns the transitions; the store records them.
///
/// `pending → running → finished`, or `running → failed` (possibly back to `pending` for a
/// retry), or `running → interrupted → running` when the orchestrator stops and resumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunStatus {
    /// Not started yet, or waiting for its next attempt (from scratch or from its last
    /// checkpoint).
    Pending,
    /// A worker is working on it now.
    Running,
    /// Stopped before it finished, without a failure: Ctrl-C, or the orchestrator went away.
    /// It resumes from its last checkpoint (or from scratch if it has none).
    Interrupted,
    /// It completed its stream (a `finished` event was received).
    Finished,
    /// It ended without finishing, and no further attempt is scheduled.
    Failed {
        /// How it ended.
        failure: Failure,
    },
}

impl RunStatus {
    /// The state's name as shown in tables and `clorch status` (`pending`, `running`,
    /// `interrupted`, `finished`, `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Finished => "finished",
            RunStatus::Failed { .. } => "failed",
        }
    }

    /// Whether `clorch run` has nothing more to do for this run.
    pub fn is_done(&self) -> bool {
        matches!(self, RunStatus::Finished | RunStatus::Failed { .. })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunStatus::Failed { failure } => write!(f, "failed: {failure}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Every way an attempt can end without finishing. Failures of the worker to start are kept
/// apart from failures of a started worker, because their remedies differ (fix the
/// installation vs. look at the run's log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Failure {
    /// The worker process (or SLURM job) could not be started at all.
    SpawnFailed {
        /// The operating system's or the executor's message.
        reason: String,
    },
    /// The worker said why it cannot go on (a `failed` event) and exited.
    Reported {
        /// The `reason` of the `failed` event.
        reason: String,
    },
    /// The worker exited with a non-zero code without a `failed` event: a panic or an
    /// unhandled error.
    Crashed {
        /// The exit code.
        exit_code: i32,
    },
    /// The worker exited with code 0 before its `finished` event: it broke the protocol's
    /// promise to end every successful run with `finished`.
    ExitedEarly,
    /// The worker was killed by a signal it did not ask for (out-of-memory killer,
    /// segmentation fault, a user's `kill`).
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The attempt ran past its time limit and was stopped.
    TimedOut {
        /// The limit, in seconds.
        limit_seconds: u64,
    },
    /// The worker emitted no event for too long and was stopped as hung.
    Silent {
        /// Seconds without an event when it was stopped.
        silent_seconds: u64,
    },
    /// The worker's output broke the protocol: a malformed line, another run's id, or an
    /// event that contradicts one already stored under the same sequence number.
    Protocol {
        /// What was wrong, naming the line or event.
        reason: String,
    },
    /// The executor lost track of the attempt (a SLURM node failure or a job cancelled from
    /// outside).
    Lost {
        /// The executor's message.
        reason: String,
    },
}

impl Failure {
    /// Whether a started worker failed (as opposed to one that never started).
    pub fn worker_started(&self) -> bool {
        !matches!(self, Failure::SpawnFailed { .. })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::SpawnFailed { reason } => write!(f, "worker could not be started: {reason}"),
            Failure::Reported { reason } => write!(f, "{reason}"),
            Failure::Crashed { exit_code } => write!(f, "worker crashed (exit code {exit_code})"),
            Failure::ExitedEarly => f.write_str("worker exited with code 0 before finishing"),
            Failure::Signaled { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "worker killed by signal {signal} ({name})"),
                None => write!(f, "worker killed by signal {signal}"),
            },
            Failure::TimedOut { limit_seconds } => {
                write!(f, "timed out after {limit_seconds} s")
            }
            Failure::Silent { silent_seconds } => {
                write!(f, "no event for {silent_seconds} s; stopped as hung")
            }
            Failure::Protocol { reason } => write!(f, "protocol violation: {reason}"),
            Failure::Lost { reason } => write!(f, "executor lost the attempt: {reason}"),
        }
    }
}

/// The conventional name of a signal number on this platform, for failure messages.
fn signal_name(signal: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(signal).ok().map(|s| s.as_str())
}

/// The checkpoint a run resumes from: the latest `checkpoint` event received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// File name inside the run folder.
    pub file: String,
    /// Sequence number of the `checkpoint` event. A resumed worker re-emits the events after
    /// it, so the store drops its events above this number before resuming.
    pub seq: u64,
    /// Tasks completed when it was written.
    pub tasks_done: usize,
    /// Optimiser steps taken when it was written.
    pub step: u64,
    /// When the orchestrator received it (unix seconds), for "last checkpoint 3 min ago";
    /// absent when unknown (rebuilt from a folder without the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
}

/// How far a run has come through its stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Tasks completed. While running, the task being trained is `tasks_done` (0-based).
    pub tasks_done: usize,
    /// Tasks in the stream.
    pub tasks: usize,
    /// Sequence number of the last event observed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

/// When a run was worked on (unix seconds) and how long it took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTimes {
    /// Start of the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started: Option<u64>,
    /// Start of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started: Option<u64>,
    /// When the `finished` event arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// Wall-clock seconds spent in attempts, summed over attempts (resumed work is not
    /// double-counted; repeated work after a crash is). Time waiting in a queue is not run
    /// time: it is `queue_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// Since when the current attempt waits in the executor's queue (a pending SLURM job);
    /// `None` once its worker runs. A run waiting there is shown as queued, not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_since: Option<u64>,
    /// Seconds attempts waited in the executor's queue before their workers started, summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_seconds: Option<f64>,
}

/// Everything the orchestrator knows about one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The run id, equal to `spec.id`.
    pub id: String,
    /// Position of the run in the recipe's expansion; report rows and groups follow it.
    pub order: u64,
    /// What the worker trains.
    pub spec: RunSpec,
    /// Labels for tables.
    pub labels: RunLabels,
    /// Where the run stands.
    pub status: RunStatus,
    /// Attempts started so far (0 before the first).
    pub attempts: u32,
    /// The checkpoint to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// Progress through the stream.
    pub progress: Progress,
    /// Times.
    #[serde(default)]
    pub times: RunTimes,
    /// The failure of the most recent failed attempt, kept when the run is retried so that
    /// `clorch status` can say why attempt 2 is running. Equals the status's failure when the
    /// status is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// The last lines of the worker's log (stderr) of the most recent failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// The executor's reference to the current or last attempt (a SLURM job id), to find its
    /// logs and to cancel it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_job: Option<String>,
    /// The latest attempt that could not resume from the run's newest checkpoint because it
    /// failed verification, and resumed from an older one (or from the beginning). Kept after
    /// later attempts: the work between the two checkpoints was done twice. Absent in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_fallback: Option<CheckpointFallback>,
}

/// A checkpoint newer than the one a run resumed from that did not read or verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedCheckpoint {
    /// File name inside the run folder.
    pub file: String,
    /// A few words for tables (`checksum mismatch`, `too short (torn write?)`).
    pub summary: String,
    /// The full reason, as the worker's log gives it.
    pub reason: String,
}

/// An attempt resumed from an older checkpoint than the newest, which failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFallback {
    /// The attempt that fell back (0 when not known yet).
    pub attempt: u32,
    /// The checkpoints skipped, newest first.
    pub rejected: Vec<RejectedCheckpoint>,
    /// The file it resumed from; `None`: no checkpoint verified, it started from the beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
}

impl fmt::Display for CheckpointFallback {
    /// `fell back: checkpoint-0000000017.ckpt checksum mismatch` (one entry per skipped file),
    /// then `; started over` when no checkpoint verified.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fell back: ")?;
        for (i, r) in self.rejected.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", r.file, r.summary)?;
        }
        if self.resumed_from.is_none() {
            f.write_str("; started over")?;
        }
        Ok(())
    }
}

impl RunRecord {
    /// A pending run that has never been attempted. `id` is taken from the spec.
    pub fn new(order: u64, spec: RunSpec, labels: RunLabels, tasks: usize) -> Self {
        RunRecord {
            id: spec.id.clone(),
            order,
            spec,
            labels,
            status: RunStatus::Pending,
            attempts: 0,
            last_checkpoint: None,
            progress: Progress { tasks_done: 0, tasks, last_seq: None },
            times: RunTimes::default(),
            last_failure: None,
            log_tail: None,
            executor_job: None,
            checkpoint_fallback: None,
        }
    }

    /// Updates progress and the last checkpoint from one of the run's events, received at
    /// `now` (unix seconds). The status is left alone: the scheduler decides it (a `finished`
    /// event is only final once the worker exits cleanly). Feed events in sequence order; the
    /// rebuild replays a run's events through this same function.
    pub fn observe(&mut self, event: &Event, now: Option<u64>) {
        self.progress.last_seq = Some(self.progress.last_seq.map_or(event.seq, |s| s.max(event.seq)));
        match &event.body {
            EventBody::Started { tasks, .. } => self.progress.tasks = *tasks,
            EventBody::TaskStarted { task, .. } => self.progress.tasks_done = *task,
            EventBody::Checkpoint { tasks_done, step, file, .. } => {
                self.progress.tasks_done = *tasks_done;
                self.last_checkpoint = Some(CheckpointRef {
                    file: file.clone(),
                    seq: event.seq,
                    tasks_done: *tasks_done,
                    step: *step,
                    received: now,
                });
            }
            EventBody::Finished { tasks, .. } => self.progress.tasks_done = *tasks,
            EventBody::Online { .. }
            | EventBody::Eval { .. }
            | EventBody::Plasticity { .. }
            | EventBody::Method { .. }
            | EventBody::Scalar { .. }
            | EventBody::Failed { .. } => {}
        }
    }
}

/// What the store knows about the experiment as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentMeta {
    /// The experiment's name (the results folder is named after it).
    pub name: String,
    /// The recipe as the latest `clorch run` ran it: the file's text exactly as read, or, when
    /// overrides changed it, the recipe with them applied under a comment that names them
    /// (the file's own text is then in `recipes/<hash>.yaml`, see [`crate::invocation`]).
    pub recipe: String,
    /// [`recipe_hash`] of `recipe`: tells `clorch run` whether the recipe changed since.
    pub recipe_hash: String,
    /// The clorch version that created or last updated the experiment.
    pub clorch_version: String,
    /// The store format version ([`crate::STORE_FORMAT`]).
    pub store_format: u32,
    /// When the experiment was created (unix seconds).
    pub created: u64,
    /// When it was last updated (unix seconds).
    pub updated: u64,
    /// Ids of the runs of the recipe's latest expansion, in order. Reports show these; runs
    /// of earlier versions of an edited recipe stay stored (and are shown with `--all-runs`),
    /// but do not mix into the current table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
}

impl ExperimentMeta {
    /// Metadata for a new experiment created at `now` (unix seconds) from `recipe`'s text.
    pub fn new(name: impl Into<String>, recipe: impl Into<String>, now: u64) -> Self {
        let recipe = recipe.into();
        ExperimentMeta {
            name: name.into(),
            recipe_hash: recipe_hash(&recipe),
            recipe,
            clorch_version: env!("CARGO_PKG_VERSION").to_string(),
            store_format: crate::STORE_FORMAT,
            created: now,
            updated: now,
            runs: Vec::new(),
        }
    }
}

/// The hash of a recipe's text: BLAKE3, 64 hex digits. Any byte changed (comments included)
/// changes it; the recipe module decides what a change means for the runs.
pub fn recipe_hash(recipe: &str) -> String {
    blake3::hash(recipe.as_bytes()).to_hex().to_string()
}

/// The current time in unix seconds, for the orchestrator's own time stamps (never for run
/// numbers). A clock before 1970 reads as 0.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::record;
    use protocol::Event;

    #[test]
    fn statuses_serialise_as_tagged_data() {
        let status = RunStatus::Failed { failure: Failure::Signaled { signal: 9 } };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(json, r#"{"state":"failed","failure":{"kind":"signaled","signal":9}}"#);
        assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), status);
        assert_eq!(serde_json::to_string(&RunStatus::Pending).unwrap(), r#"{"state":"pending"}"#);
    }

    #[test]
    fn failures_read_as_one_line_reasons() {
        assert_eq!(Failure::Signaled { signal: 9 }.to_string(), "worker killed by signal 9 (SIGKILL)");
        assert_eq!(Failure::Crashed { exit_code: 101 }.to_string(), "worker crashed (exit code 101)");
        assert_eq!(
            RunStatus::Failed { failure: Failure::TimedOut { limit_seconds: 60 } }.to_string(),
            "failed: timed out after 60 s"
        );
        assert!(!Failure::SpawnFailed { reason: "no such file".into() }.worker_started());
        assert!(Failure::Silent { silent_seconds: 600 }.worker_started());
    }

    #[test]
    fn records_without_a_fallback_read_and_write_as_before() {
        let r = record(0, 2, "sgd", 0.01, 1);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("checkpoint_fallback"), "{json}");
        assert_eq!(serde_json::from_str::<RunRecord>(&json).unwrap(), r);
        let mut fell = r.clone();
        fell.checkpoint_fallback = Some(CheckpointFallback {
            attempt: 2,
            rejected: vec![RejectedCheckpoint {
                file: "checkpoint-0000000017.ckpt".into(),
                summary: "checksum mismatch".into(),
                reason: "checksum mismatch: …".into(),
            }],
            resumed_from: Some("checkpoint-0000000012.ckpt".into()),
        });
        let json = serde_json::to_string(&fell).unwrap();
        assert_eq!(serde_json::from_str::<RunRecord>(&json).unwrap(), fell);
        let shown = fell.checkpoint_fallback.as_ref().unwrap().to_string();
        assert_eq!(shown, "fell back: checkpoint-0000000017.ckpt checksum mismatch");
    }

    #[test]
    fn grid_text_is_sorted_and_unquoted() {
        let mut r = record(0, 2, "cbp", 0.01, 1);
        r.labels.grid.insert("opt".into(), serde_json::json!("adam"));
        r.labels.grid.insert("decay".into(), serde_json::json!(1e-4));
        assert_eq!(r.labels.grid_text(), "decay=0.0001, lr=0.01, opt=adam");
        r.labels.grid.clear();
        assert_eq!(r.labels.grid_text(), "");
    }

    #[test]
    fn observe_tracks_progress_and_the_latest_checkpoint() {
        let mut r = record(0, 3, "sgd", 0.1, 1);
        assert_eq!(r.progress.tasks, 3);
        let id = r.id.clone();
        let ev = |seq, body| Event { run: id.clone(), seq, body };
        r.observe(&ev(0, EventBody::TaskStarted { task: 1, head: 0, train_examples: 10 }), None);
        assert_eq!(r.progress.tasks_done, 1);
        r.observe(
            &ev(
                5,
                EventBody::Checkpoint {
                    tasks_done: 2,
                    step: 40,
                    file: "ckpt-2.bin".into(),
                    checksum: "00".into(),
                },
            ),
            Some(100),
        );
        let ckpt = r.last_checkpoint.clone().unwrap();
        assert_eq!((ckpt.seq, ckpt.tasks_done, ckpt.step, ckpt.received), (5, 2, 40, Some(100)));
        assert_eq!(r.progress.last_seq, Some(5));
        r.observe(&ev(9, EventBody::Finished { tasks: 3, steps: 60, examples: 600 }), None);
        assert_eq!(r.progress.tasks_done, 3);
        assert_eq!(r.status, RunStatus::Pending, "observe never decides the status");
    }

    #[test]
    fn experiment_meta_hashes_the_recipe_text() {
        let m = ExperimentMeta::new("quick", "name: quick\n", 7);
        assert_eq!(m.recipe_hash, recipe_hash("name: quick\n"));
        assert_ne!(m.recipe_hash, recipe_hash("name: quick \n"));
        assert_eq!(m.recipe_hash.len(), 64);
        assert_eq!((m.created, m.updated), (7, 7));
        assert_eq!(m.clorch_version, env!("CARGO_PKG_VERSION"));
    }
}
