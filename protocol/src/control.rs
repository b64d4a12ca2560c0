//! How the orchestrator controls a running worker. There are two requests, both by POSIX
//! signal, so that any program (and a SLURM node, which forwards signals) can honour them:
//!
//! * **checkpoint and stop** — [`STOP_SIGNALS`]: the worker finishes the step it is in, writes a
//!   checkpoint, emits its `checkpoint` event and exits with [`crate::exit::INTERRUPTED`].
//!   SLURM sends `SIGUSR1` ahead of a time limit (`--signal=B:USR1@…`) and `SIGTERM` on
//!   `scancel` or preemption. The orchestrator waits a grace period, then kills.
//! * **kill** — `SIGKILL`, after the grace period or on a second Ctrl-C. The next attempt
//!   resumes from the last checkpoint.
//!
//! A locally started worker is also given `--watch-stdin` with a pipe as standard input: when
//! the pipe closes (the orchestrator died, however it died) the worker stops as on a stop
//! signal, so no worker outlives its orchestrator unsupervised.
//!
//! # Resuming
//!
//! A worker started in a run folder that holds checkpoints resumes from the newest one that
//! verifies: it truncates [`crate::files::EVENTS`] after the last event that checkpoint covers,
//! and emits every later event again, byte for byte as an uninterrupted run would — so
//! `(run, seq)` names an event's content, and ingesting an event twice changes nothing.

/// Signal numbers (Linux) that ask a worker to checkpoint and stop: SIGTERM, SIGINT, SIGUSR1.
pub const STOP_SIGNALS: [i32; 3] = [15, 2, 10];

/// The flag a locally started worker is given to stop when its standard input closes.
pub const WATCH_STDIN_FLAG: &str = "--watch-stdin";
