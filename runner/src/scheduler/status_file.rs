//! The status-file reporter: keeps `status.json` in the results folder up to date for
//! `clorch status`, which cannot open the store while `clorch run` holds it.

use std::path::PathBuf;
use std::sync::Arc;

use super::clock::Clock;
use super::events::{Board, SchedulerEvent};
use super::reporter::{ReportError, Reporter};
use crate::status::{self, Snapshot};

/// Writes a snapshot at each progress event (marked with this process, so `status` knows an
/// orchestrator is live) and a last one, unmarked, when the scheduler ends.
#[derive(Debug)]
pub struct StatusFile {
    results_dir: PathBuf,
    experiment: String,
    clock: Arc<dyn Clock>,
}

impl StatusFile {
    /// A writer of `experiment`'s status into `results_dir`, stamped by `clock`.
    pub fn new(results_dir: PathBuf, experiment: String, clock: Arc<dyn Clock>) -> StatusFile {
        StatusFile { results_dir, experiment, clock }
    }

    fn write(&self, board: &Board, live: bool) -> Result<(), ReportError> {
        let snapshot = Snapshot {
            experiment: self.experiment.clone(),
            taken: self.clock.unix_seconds(),
            orchestrator: live.then(std::process::id),
            runs: board.runs.clone(),
        };
        status::write(&self.results_dir, &snapshot)?;
        Ok(())
    }
}

impl Reporter for StatusFile {
    fn report(&mut self, event: &SchedulerEvent<'_>) -> Result<(), ReportError> {
        match event {
            SchedulerEvent::Progress(board) => self.write(board, true),
            SchedulerEvent::Ended(board) => self.write(board, false),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::status::RunLine;

    /// A clock stopped at one moment.
    #[derive(Debug)]
    struct Stopped(u64);

    impl Clock for Stopped {
        fn now(&self) -> Instant {
            Instant::now()
        }

        fn unix_seconds(&self) -> u64 {
            self.0
        }
    }

    fn board() -> Board {
        let line = RunLine {
            id: "r1".into(),
            stream: "s".into(),
            method: "sgd".into(),
            grid: String::new(),
            seed: 0,
            status: "running".into(),
            attempts: 1,
            task: 2,
            tasks: 5,
            checkpoint_at: None,
            reason: None,
            checkpoint_note: None,
            resumable: None,
            job: None,
            queued_seconds: None,
        };
        Board { total: 1, done: 0, failed: 0, work: 0.4, running: Vec::new(), runs: vec![line] }
    }

    #[test]
    fn progress_marks_the_file_live_and_the_end_unmarks_it() {
        let scratch = test_support::scratch("status-file");
        let dir = scratch.path().to_path_buf();
        let mut reporter = StatusFile::new(dir.clone(), "x".into(), Arc::new(Stopped(1234)));
        let board = board();
        reporter.report(&SchedulerEvent::Progress(&board)).unwrap();
        let live = status::read(&dir).unwrap();
        let expected = Snapshot {
            experiment: "x".into(),
            taken: 1234,
            orchestrator: Some(std::process::id()),
            runs: board.runs.clone(),
        };
        assert_eq!(live, expected);
        reporter.report(&SchedulerEvent::Note("ignored")).unwrap();
        assert_eq!(status::read(&dir).unwrap(), expected);
        reporter.report(&SchedulerEvent::Ended(&board)).unwrap();
        assert_eq!(status::read(&dir).unwrap(), Snapshot { orchestrator: None, ..expected });
    }
}
