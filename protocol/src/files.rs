//! The files of a run folder, by owner. A worker writes only its own; the orchestrator writes
//! only its own; neither touches the other's.
//!
//! | file | written by | what |
//! |---|---|---|
//! | [`SPEC`] | orchestrator, before the first attempt | the [`crate::RunSpec`] |
//! | [`EVENTS`] | worker | every event, one JSON line each, `seq` = line number |
//! | [`WORKER_LOCK`] | worker (held while it runs) | an advisory `flock`: one worker per folder |
//! | [`WORKER_LOG`] | the worker's standard error | levelled log lines and heartbeats |
//! | `*.ckpt` | worker | checkpoints, named by the worker; the `checkpoint` event names them |
//! | [`RESUME`] | an external worker, after each checkpoint | where its next attempt resumes |
//! | [`RUN_RECORD`] | orchestrator | the run's status as the orchestrator last saw it |

/// The run spec the worker reads.
pub const SPEC: &str = "spec.json";
/// The worker's event log.
pub const EVENTS: &str = "events.jsonl";
/// The lock a worker holds on its run folder while it runs. The orchestrator takes it too,
/// briefly, before starting a new attempt, so that an orphaned worker of an earlier attempt
/// cannot write a checkpoint after the new attempt read where to resume.
pub const WORKER_LOCK: &str = "worker.lock";
/// The worker's standard error.
pub const WORKER_LOG: &str = "worker.log";
/// The orchestrator's record of the run.
pub const RUN_RECORD: &str = "run.json";
/// An external worker's resume manifest ([`crate::resume::ResumeManifest`]).
pub const RESUME: &str = "resume.json";
