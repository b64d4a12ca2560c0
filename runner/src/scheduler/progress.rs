//! Live progress on the terminal: runs done / running / failed / total, each running worker's
//! current task, and an ETA from the tasks completed so far, with the scheduler's one-line
//! messages above it. The bar is hidden when standard error is not a terminal (CI, tests,
//! pipes), where only the one-line messages are printed.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::{Board, SchedulerEvent};
use super::reporter::{ReportError, Reporter};
use crate::status::age;

/// Work is counted in thousandths of a run, so partly done runs move the bar and the ETA.
const UNITS_PER_RUN: u64 = 1000;
/// Running workers named on the bar's second line; the rest are counted.
const NAMED: usize = 8;

/// The progress display, a [`Reporter`].
pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A display for `total` runs; `visible` false gives messages only; `quiet` keeps only
    /// the messages that need attention ([`needs_attention`]).
    pub fn new(total: usize, visible: bool, quiet: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(
            Some(total as u64 * UNITS_PER_RUN),
            if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {prefix} ETA {eta}\n{wide_msg}")
                .expect("a valid template")
                .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        Progress { bar, quiet }
    }

    fn update(&self, board: &Board) {
        self.bar.set_position((board.work * UNITS_PER_RUN as f64) as u64);
        self.bar.set_prefix(prefix(board));
        self.bar.set_message(running(board));
    }

    /// Prints a line above the bar (or plainly when the bar is hidden).
    fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
}

impl Reporter for Progress {
    fn report(&mut self, event: &SchedulerEvent<'_>) -> Result<(), ReportError> {
        match event {
            SchedulerEvent::Progress(board) => self.update(board),
            SchedulerEvent::Ended(_) => self.bar.finish_and_clear(),
            other if self.quiet && !needs_attention(other) => {}
            other => {
                if let Some(text) = line(other) {
                    self.line(&text);
                }
            }
        }
        Ok(())
    }
}

/// Whether `-q` still prints the event's line: failures and what a signal did. Runs that
/// finished, resumed or are retried, and executor notes, are left out.
fn needs_attention(event: &SchedulerEvent<'_>) -> bool {
    matches!(
        event,
        SchedulerEvent::RunFailed { .. }
            | SchedulerEvent::StopRequested { .. }
            | SchedulerEvent::KillRequested
    )
}

/// The line printed for an event, if it has one.
fn line(event: &SchedulerEvent<'_>) -> Option<String> {
    Some(match event {
        SchedulerEvent::Note(text) => text.to_string(),
        SchedulerEvent::StopRequested { notice } => notice.to_string(),
        SchedulerEvent::KillRequested => "stopping at once: killing the workers".to_string(),
        SchedulerEvent::RunFinished { label, seconds } => format!("finished {label} ({seconds:.1} s)"),
        SchedulerEvent::RunResuming { label } => {
            format!("resuming {label}: the worker was stopped from outside")
        }
        SchedulerEvent::RunFailed { label, failure, attempts: None } => {
            format!("failed   {label}: {failure}")
        }
        SchedulerEvent::RunFailed { label, failure, attempts: Some(n) } => {
            format!("failed   {label} after {n} attempts: {failure}")
        }
        SchedulerEvent::RetryScheduled { label, failure, attempt, of, delay } => {
            format!("retrying {label} in {} (attempt {attempt} of {of}): {failure}", age(delay.as_secs()))
        }
        SchedulerEvent::Progress(_) | SchedulerEvent::Ended(_) => return None,
    })
}

/// The bar's counts.
fn prefix(board: &Board) -> String {
    format!("{}/{} done, {} running, {} failed", board.done, board.total, board.running.len(), board.failed)
}

/// The bar's second line: each running worker's task, the first few by name.
fn running(board: &Board) -> String {
    let mut msg: Vec<String> = board
        .running
        .iter()
        .take(NAMED)
        .map(|r| format!("{} task {}/{}", r.label, r.task + 1, r.tasks))
        .collect();
    if board.running.len() > NAMED {
        msg.push(format!("… {} more", board.running.len() - NAMED));
    }
    msg.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::super::events::Running;
    use super::*;
    use crate::store::Failure;

    const LABEL: &str = "0123abcd sgd seed 0";

    #[test]
    fn run_endings_print_their_lines() {
        let crash = Failure::Crashed { exit_code: 3 };
        let cases = [
            (
                SchedulerEvent::RunFinished { label: LABEL, seconds: 2.345 },
                "finished 0123abcd sgd seed 0 (2.3 s)",
            ),
            (
                SchedulerEvent::RunResuming { label: LABEL },
                "resuming 0123abcd sgd seed 0: the worker was stopped from outside",
            ),
            (
                SchedulerEvent::RunFailed { label: LABEL, failure: &crash, attempts: None },
                &format!("failed   0123abcd sgd seed 0: {crash}"),
            ),
            (
                SchedulerEvent::RunFailed { label: LABEL, failure: &crash, attempts: Some(3) },
                &format!("failed   0123abcd sgd seed 0 after 3 attempts: {crash}"),
            ),
            (
                SchedulerEvent::RetryScheduled {
                    label: LABEL,
                    failure: &crash,
                    attempt: 2,
                    of: 3,
                    delay: Duration::from_secs(1),
                },
                &format!("retrying 0123abcd sgd seed 0 in 1 s (attempt 2 of 3): {crash}"),
            ),
        ];
        for (event, text) in cases {
            assert_eq!(line(&event).as_deref(), Some(text));
        }
    }

    #[test]
    fn quiet_keeps_failures_and_stops_only() {
        let crash = Failure::Crashed { exit_code: 3 };
        assert!(needs_attention(&SchedulerEvent::RunFailed {
            label: LABEL,
            failure: &crash,
            attempts: None
        }));
        assert!(needs_attention(&SchedulerEvent::KillRequested));
        assert!(!needs_attention(&SchedulerEvent::RunFinished { label: LABEL, seconds: 1.0 }));
        assert!(!needs_attention(&SchedulerEvent::Note("submitted")));
        assert!(!needs_attention(&SchedulerEvent::RunResuming { label: LABEL }));
    }

    #[test]
    fn notes_and_stops_print_as_given() {
        assert_eq!(line(&SchedulerEvent::Note("submitted")).as_deref(), Some("submitted"));
        assert_eq!(
            line(&SchedulerEvent::StopRequested { notice: "stopping: …" }).as_deref(),
            Some("stopping: …")
        );
        assert_eq!(
            line(&SchedulerEvent::KillRequested).as_deref(),
            Some("stopping at once: killing the workers")
        );
    }

    #[test]
    fn the_bar_counts_runs_and_names_at_most_eight_workers() {
        let worker = |i: usize| Running { label: format!("r{i}"), task: i, tasks: 10 };
        let board = Board {
            total: 20,
            done: 3,
            failed: 1,
            work: 4.5,
            running: (0..10).map(worker).collect(),
            runs: Vec::new(),
        };
        assert_eq!(prefix(&board), "3/20 done, 10 running, 1 failed");
        let text = running(&board);
        assert!(text.starts_with("r0 task 1/10 · r1 task 2/10 · "), "{text}");
        assert!(text.ends_with("r7 task 8/10 · … 2 more"), "{text}");
        assert_eq!(line(&SchedulerEvent::Progress(&board)), None);
    }
}
