//! The lines of a run's `worker.log`: what `clorch worker` writes to its standard error, as the
//! executors keep it. Four kinds of line share the file:
//!
//! - heartbeats, `clorch-progress task=… tasks=… step=…` ([`protocol::heartbeat::Heartbeat`]), read for
//!   progress (the local executor keeps them out of the file; a SLURM job's log has them);
//! - attempt headers, `=== attempt 2 ===`, written by the executors;
//! - log lines, `2026-12-02T06:40:01.123456Z  WARN checkpoint: …`: levelled diagnostics of the
//!   worker's tracing subscriber, one line per event;
//! - the worker's own last words, `clorch worker: <reason>`, printed once as it exits: when it
//!   failed, the reason the run's record and `clorch status` show.
//!
//! [`ReasonTracker`] picks the failure reason out of them, so that a log line written after the
//! error (or an error-free log) never passes for the reason.

use protocol::heartbeat::Heartbeat;

/// Prefix of the line `clorch worker` prints last when it stops or fails.
pub const WORKER_MESSAGE_PREFIX: &str = "clorch worker: ";

/// Prefix of the headers the executors write before each attempt's lines.
pub const ATTEMPT_HEADER_PREFIX: &str = "=== ";

/// The levels a log line can carry, as the subscriber writes them.
const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// Whether `line` is a log line of the worker's tracing subscriber: an optional RFC 3339 UTC
/// time stamp, a level, then `target: message`.
pub fn is_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else { return false };
    let level = if is_timestamp(first) { words.next() } else { Some(first) };
    level.is_some_and(|l| LEVELS.contains(&l)) && words.next().is_some_and(|t| t.ends_with(':'))
}

/// `2026-12-02T06:40:01Z`, with or without fractional seconds.
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && word.ends_with('Z')
}

/// Follows an attempt's `worker.log` lines to name the reason the worker gave for failing:
/// its last `clorch worker: …` line (without the prefix); failing that, the last line that is
/// not a heartbeat, header or log line (a program that is not `clorch worker`, such as a
/// wrapper script, saying why); failing that, the last log line. An attempt header starts
/// afresh, so an earlier attempt's words are not taken for a later one's.
#[derive(Clone, Debug, Default)]
pub struct ReasonTracker {
    worker: Option<String>,
    other: Option<String>,
    log: Option<String>,
}

impl ReasonTracker {
    /// Takes the next line (without its line break).
    pub fn push(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() || Heartbeat::is_heartbeat(line) {
            return;
        }
        if line.starts_with(ATTEMPT_HEADER_PREFIX) {
            *self = ReasonTracker::default();
        } else if let Some(reason) = line.strip_prefix(WORKER_MESSAGE_PREFIX) {
            self.worker = Some(reason.to_string());
        } else if is_log_line(line) {
            self.log = Some(line.to_string());
        } else {
            self.other = Some(line.to_string());
        }
    }

    /// The reason, if any line gave one.
    pub fn reason(&self) -> Option<&str> {
        self.worker.as_deref().or(self.other.as_deref()).or(self.log.as_deref())
    }
}

/// The failure reason in `text`, a log's (last) lines, as [`ReasonTracker`] picks it.
pub fn failure_reason(text: &str) -> Option<String> {
    let mut tracker = ReasonTracker::default();
    for line in text.lines() {
        tracker.push(line);
    }
    tracker.reason().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_recognised() {
        assert!(is_log_line("2026-12-02T06:40:01.123456Z  WARN checkpoint: a.ckpt: bad"));
        assert!(is_log_line("2026-12-02T06:40:01Z ERROR workers::engine: x"));
        assert!(is_log_line(" INFO checkpoint: resuming from b.ckpt"));
        assert!(!is_log_line("clorch worker: run diverged at task 2"));
        assert!(!is_log_line("WARNING: something"));
        assert!(!is_log_line("boom: out of memory"));
        assert!(!is_log_line(""));
    }

    #[test]
    fn the_reason_is_the_workers_own_line_not_a_log_line_after_it() {
        let log = "=== attempt 1 ===\n\
                   2026-12-02T06:40:01.1Z  INFO checkpoint: resuming from checkpoint-0000000003.ckpt\n\
                   clorch-progress task=1 tasks=3 step=9\n\
                   clorch worker: diverged: loss is NaN at task 1\n\
                   2026-12-02T06:40:02.2Z  WARN redo: hidden layer 0 not scored: late\n\
                   clorch-progress task=1 tasks=3 step=9\n";
        assert_eq!(failure_reason(log).as_deref(), Some("diverged: loss is NaN at task 1"));
        // Without the worker's line: another program's words, then a log line.
        assert_eq!(
            failure_reason(
                "2026-12-02T06:40:01Z  WARN x: y\nboom: out of memory\n2026-12-02T06:40:02Z  INFO x: z"
            )
            .as_deref(),
            Some("boom: out of memory")
        );
        assert_eq!(
            failure_reason("2026-12-02T06:40:01Z  WARN checkpoint: y").as_deref(),
            Some("2026-12-02T06:40:01Z  WARN checkpoint: y")
        );
        // A new attempt forgets the previous one's reason.
        assert_eq!(failure_reason("clorch worker: old\n=== attempt 2 ===\n"), None);
    }
}
