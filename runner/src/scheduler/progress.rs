//! Live progress on the terminal: runs done / running / failed / total, each running worker's
//! current task, and an ETA from the tasks completed so far. Hidden when standard error is not
//! a terminal (CI, tests, pipes), where only the one-line messages are printed.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Work is counted in thousandths of a run, so partly done runs move the bar and the ETA.
const UNITS_PER_RUN: u64 = 1000;

/// The progress display.
pub struct Progress {
    bar: ProgressBar,
}

/// One running worker, for the display.
pub struct Running<'a> {
    /// Short label (method, grid, seed).
    pub label: &'a str,
    /// Task being trained.
    pub task: usize,
    /// Tasks in the stream.
    pub tasks: usize,
}

impl Progress {
    /// A display for `total` runs; `visible` false gives messages only.
    pub fn new(total: usize, visible: bool) -> Progress {
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
        Progress { bar }
    }

    /// Redraws with the current counts; `work` is the number of runs' worth of tasks done
    /// (finished runs count 1, running ones the fraction of their tasks).
    pub fn update(&self, done: usize, failed: usize, total: usize, work: f64, running: &[Running<'_>]) {
        self.bar.set_position((work * UNITS_PER_RUN as f64) as u64);
        self.bar.set_prefix(format!("{done}/{total} done, {} running, {failed} failed", running.len()));
        let mut msg: Vec<String> =
            running.iter().take(8).map(|r| format!("{} task {}/{}", r.label, r.task + 1, r.tasks)).collect();
        if running.len() > 8 {
            msg.push(format!("… {} more", running.len() - 8));
        }
        self.bar.set_message(msg.join(" · "));
    }

    /// Prints a line above the bar (or plainly when the bar is hidden).
    pub fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
