//! Claiming a run folder before a new worker starts in it: wait until no earlier worker holds
//! it, then read where the new worker will resume.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use protocol::files;

use super::Ending;
use crate::store::Failure;
use crate::worker_side::{ResumePoint, WorkerSide};

/// How long to wait for an earlier worker of the same run (orphaned when its orchestrator
/// died, or a SLURM job still checkpointing after `scancel`) to release the run folder.
const FOLDER_WAIT: Duration = Duration::from_secs(300);

/// Waits until no worker holds the run folder, then reads where a new worker will resume:
/// the sequence number of the first event it will emit (0: from scratch), and whether it has
/// to fall back past checkpoints that fail verification. Holding the
/// folder's lock while reading means no orphaned worker can write a newer checkpoint between
/// this answer and the new worker's start.
///
/// With `trim_log`, `events.jsonl` is also cut back to the events before that point — what
/// the worker itself does first thing — so that an executor reading the file (rather than the
/// worker's standard output) never sees the previous attempt's events after the checkpoint,
/// nor a line it left half-written.
pub(crate) async fn claim(
    run_dir: &Path,
    trim_log: bool,
    worker: &dyn WorkerSide,
) -> Result<ResumePoint, Ending> {
    let lost = |reason: String| Ending::Broke(Failure::Lost { reason });
    let lock_path = run_dir.join(files::WORKER_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| lost(format!("{}: {e}", lock_path.display())))?;
    let waited = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if waited.elapsed() < FOLDER_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(lost(format!(
                    "{} is still held by another worker after {} s",
                    lock_path.display(),
                    FOLDER_WAIT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(lost(format!("{}: {e}", lock_path.display())))
            }
        }
    }
    let spec_path = run_dir.join(files::SPEC);
    let spec: protocol::RunSpec = std::fs::read(&spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| lost(format!("{}: {e}", spec_path.display())))?;
    let point = match spec.method.worker {
        Some(_) => crate::external::resume_point(&spec, run_dir),
        None => worker.resume_point(&spec, run_dir),
    };
    let point = point.map_err(|reason| Ending::Failed(Failure::Reported { reason }))?;
    if trim_log {
        let log = run_dir.join(files::EVENTS);
        trim_event_log(&log, point.next_seq).map_err(|e| lost(format!("{}: {e}", log.display())))?;
    }
    drop(file);
    Ok(point)
}

/// Cuts `events.jsonl` after its first `keep` lines (line `i` holds the event with sequence
/// number `i`). A file with fewer lines is left alone: the worker refuses it with a clear
/// message, which is the right place to report it.
fn trim_event_log(path: &Path, keep: u64) -> std::io::Result<()> {
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    let mut reader = BufReader::new(&file);
    let mut end = 0u64;
    let mut line = Vec::new();
    for _ in 0..keep {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        end += n as u64;
    }
    if end < total {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_whole_lines_and_drops_a_torn_tail() {
        let scratch = test_support::scratch("trim");
        let dir = scratch.path();
        let path = dir.join(files::EVENTS);
        std::fs::write(&path, "a\nbb\nccc\ndd").unwrap();
        trim_event_log(&path, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nbb\n");
        trim_event_log(&path, 5).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nbb\n", "fewer lines: left alone");
        trim_event_log(&path, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        trim_event_log(&dir.join("absent.jsonl"), 3).unwrap();
    }
}
