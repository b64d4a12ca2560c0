//! Where `clorch`'s diagnostics go: one tracing subscriber on standard error per process, set
//! up here and nowhere else.
//!
//! * `clorch worker` writes one line per event, with a UTC time stamp and without colours, e.g.
//!   `2026-12-02T06:40:01.123456Z  WARN checkpoint: checkpoint-0000000017.ckpt failed
//!   verification (…); resuming from the older checkpoint-0000000012.ckpt`. The executors keep
//!   its standard error as the run folder's `worker.log` (time stamps belong there: the log is
//!   not part of a run's deterministic output, `events.jsonl` is). Level `info` by default;
//!   `-q` gives `warn`, `-v` `debug`, `-vv` `trace`.
//! * Every other command (the orchestrator) logs its own decisions — the plan's size, the
//!   executor, each attempt's start and resume point, retries, store repairs — without time
//!   stamps (its lines sit among its own progress lines), coloured on a terminal. Level `warn`
//!   by default, so `clorch run` prints what it always printed; `-v` gives `info`, `-vv`
//!   `debug`, `-vvv` `trace`; `-q` gives `error` and also silences the notes and per-run
//!   progress lines ([`quiet`]).
//!
//! `RUST_LOG`, when set, replaces the level the flags choose for the log lines (with the
//! usual syntax: `RUST_LOG=debug`, `RUST_LOG=runner=debug,checkpoint=info`); `-q` still
//! silences the notes. Workers inherit `RUST_LOG` from their orchestrator, not its `-v`/`-q`.
//! The log lines' format is also what [`results::log::is_log_line`] recognises in a
//! `worker.log`, to tell them from the worker's failure reason.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// Whether `-q` was given.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether notes and progress lines are to be left out (`-q`).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints `text` to standard error unless `-q` was given: for notes that inform but ask for
/// nothing (`note: …`, `4 finished runs skipped`).
pub fn note(text: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("{text}");
    }
}

/// Which process is logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `clorch worker`: lines into `worker.log`.
    Worker,
    /// Every other command.
    Orchestrator,
}

/// The level the flags choose: `verbose` counts `-v`, `quiet` is `-q` (clap keeps them apart).
pub fn level(role: Role, verbose: u8, quiet: bool) -> &'static str {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let default = match role {
        Role::Worker => 2,
        Role::Orchestrator => 1,
    };
    let index = if quiet { default - 1 } else { (default + verbose as usize).min(LEVELS.len() - 1) };
    LEVELS[index]
}

/// Installs the subscriber of this process (once; a second call does nothing).
pub fn init(role: Role, verbose: u8, quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder().parse_lossy(spec),
        _ => EnvFilter::new(level(role, verbose, quiet)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match role {
        Role::Worker => builder.with_ansi(false).try_init(),
        Role::Orchestrator => builder.without_time().with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_move_the_level_from_each_roles_default() {
        assert_eq!(level(Role::Worker, 0, false), "info");
        assert_eq!(level(Role::Worker, 1, false), "debug");
        assert_eq!(level(Role::Worker, 0, true), "warn");
        assert_eq!(level(Role::Orchestrator, 0, false), "warn");
        assert_eq!(level(Role::Orchestrator, 1, false), "info");
        assert_eq!(level(Role::Orchestrator, 2, false), "debug");
        assert_eq!(level(Role::Orchestrator, 9, false), "trace");
        assert_eq!(level(Role::Orchestrator, 0, true), "error");
    }
}
