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

/// The signal the orchestrator sends to ask a worker to checkpoint and stop (SIGTERM); also
/// what `scancel` and SLURM preemption send.
pub const STOP: i32 = 15;
/// Ctrl-C in a terminal (SIGINT): a worker run by hand stops as on [`STOP`].
pub const INTERRUPT: i32 = 2;
/// SLURM's warning ahead of a job's time limit (SIGUSR1, `sbatch --signal=B:USR1@…`): the job
/// script passes it on, and the worker stops as on [`STOP`].
pub const WARNING: i32 = 10;
/// What ends a worker that did not stop within the grace period (SIGKILL); it cannot be
/// caught, and the next attempt resumes from the last checkpoint.
pub const KILL: i32 = 9;

/// Signal numbers (Linux) that ask a worker to checkpoint and stop: SIGTERM, SIGINT, SIGUSR1.
/// A worker must handle all three alike.
pub const STOP_SIGNALS: [i32; 3] = [STOP, INTERRUPT, WARNING];

/// The name of a protocol signal as `kill -NAME`, `trap` and SLURM write it (`TERM`, `INT`,
/// `USR1`, `KILL`); `None` for any other number.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    match signal {
        STOP => Some("TERM"),
        INTERRUPT => Some("INT"),
        WARNING => Some("USR1"),
        KILL => Some("KILL"),
        _ => None,
    }
}

/// The flag a locally started worker is given to stop when its standard input closes.
pub const WATCH_STDIN_FLAG: &str = "--watch-stdin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_signal_has_a_name() {
        for signal in STOP_SIGNALS.into_iter().chain([KILL]) {
            assert!(signal_name(signal).is_some(), "{signal}");
        }
        assert_eq!(signal_name(STOP), Some("TERM"));
        assert_eq!(signal_name(WARNING), Some("USR1"));
        assert_eq!(signal_name(1), None);
    }
}
