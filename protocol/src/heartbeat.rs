//! Heartbeats: a worker says it is alive, and where it is, by writing a line to its standard
//! error at least every `--heartbeat` seconds (10 by default):
//!
//! ```text
//! clorch-progress task=3 tasks=10 step=1200
//! ```
//!
//! The orchestrator treats silence (no event and no heartbeat) for longer than the recipe's
//! `heartbeat` limit as a hung worker, kills it and retries. Heartbeats are not stored; other
//! lines on standard error are the worker's log.

use std::fmt;

/// Prefix of every heartbeat line.
pub const PREFIX: &str = "clorch-progress ";

/// One heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Task being trained, from 0.
    pub task: usize,
    /// Tasks in the stream.
    pub tasks: usize,
    /// Optimiser steps taken in total.
    pub step: u64,
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}task={} tasks={} step={}", self.task, self.tasks, self.step)
    }
}

impl Heartbeat {
    /// Reads a heartbeat line (prefix included); `None` for any other line. `step` may be
    /// absent (0).
    pub fn parse(line: &str) -> Option<Heartbeat> {
        let rest = line.strip_prefix(PREFIX)?;
        let (mut task, mut tasks, mut step) = (None, None, 0);
        for part in rest.split_whitespace() {
            if let Some(v) = part.strip_prefix("task=") {
                task = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("tasks=") {
                tasks = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("step=") {
                step = v.parse().ok()?;
            }
        }
        Some(Heartbeat { task: task?, tasks: tasks?, step })
    }

    /// Whether a line of a worker's standard error is a heartbeat (not a log line).
    pub fn is_heartbeat(line: &str) -> bool {
        line.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_round_trip_and_other_lines_are_not_heartbeats() {
        let h = Heartbeat { task: 3, tasks: 10, step: 99 };
        assert_eq!(h.to_string(), "clorch-progress task=3 tasks=10 step=99");
        assert_eq!(Heartbeat::parse(&h.to_string()), Some(h));
        assert_eq!(Heartbeat::parse("clorch-progress task=3 tasks=10"), Some(Heartbeat { step: 0, ..h }));
        assert_eq!(Heartbeat::parse("clorch-progress task=x tasks=10"), None);
        assert_eq!(Heartbeat::parse("task=3 tasks=10"), None);
        assert!(!Heartbeat::is_heartbeat("WARN checkpoint fell back"));
    }
}
