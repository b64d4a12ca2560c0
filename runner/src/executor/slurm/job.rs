//! SLURM's words for a job: array task ids, job states, and the run folder's `jobs.log` where
//! each job script notes when it started and how its worker exited.

use std::fmt;
use std::path::Path;

/// One task of a job array, `<array job id>_<index>`: the handle of a SLURM attempt, stored
/// as the run's `executor_job`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    /// The array's job id, as `sbatch --parsable` printed it.
    pub array: u64,
    /// The array index (the line of the batch's runs list, from 0).
    pub index: u32,
}

impl JobId {
    /// Reads `123_4`; anything else (a local process id, a plain job id) is `None`.
    pub fn parse(text: &str) -> Option<JobId> {
        let (array, index) = text.split_once('_')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(array) || !digits(index) {
            return None;
        }
        Some(JobId { array: array.parse().ok()?, index: index.parse().ok()? })
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.array, self.index)
    }
}

/// Where a job stands, from `squeue`'s or `sacct`'s state names (`%T`, `State`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not running yet, or again (`PENDING`, `REQUEUED`, `SUSPENDED`, held, …): its worker is
    /// not working, so no time limit or silence counts.
    Waiting(String),
    /// Its script runs (`RUNNING`, `COMPLETING`, `CONFIGURING`, `SIGNALING`, `STAGE_OUT`).
    Running,
    /// Over for good (`COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `NODE_FAIL`,
    /// `OUT_OF_MEMORY`, `PREEMPTED`, `BOOT_FAIL`, `DEADLINE`, `REVOKED`).
    Ended(String),
}

impl JobState {
    /// Classifies a state name; `sacct`'s `CANCELLED by 0` counts as `CANCELLED`.
    pub fn parse(text: &str) -> JobState {
        let name =
            text.split_whitespace().next().unwrap_or_default().trim_end_matches('+').to_ascii_uppercase();
        match name.as_str() {
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "SIGNALING" | "STAGE_OUT" => JobState::Running,
            "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY"
            | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" => JobState::Ended(name),
            _ => JobState::Waiting(name),
        }
    }
}

/// File in each run folder where the job script appends `start <job> <restart> <host>` before
/// it starts the worker and `exit <job> <restart> <status>` after the worker exits. The exit
/// status comes from here rather than from `sacct`, which clusters without accounting lack.
pub const JOBS_LOG: &str = "jobs.log";

/// What `jobs.log` says about the latest start of one job (a requeued job starts again under
/// the same id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobRecord {
    /// The job never started (or its script could not write the file).
    NotStarted,
    /// Its script started a worker and has not written its exit (it runs, or it was killed).
    Started,
    /// The worker exited with this status (a shell status: 128 + n for signal n).
    Exited(i32),
}

/// Reads `jobs.log` in `run_dir` for `job`; a missing file means the job never started.
pub fn read_job_record(run_dir: &Path, job: JobId) -> std::io::Result<JobRecord> {
    let text = match std::fs::read_to_string(run_dir.join(JOBS_LOG)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(JobRecord::NotStarted),
        Err(e) => return Err(e),
    };
    Ok(job_record(&text, job))
}

fn job_record(text: &str, job: JobId) -> JobRecord {
    let id = job.to_string();
    let mut record = JobRecord::NotStarted;
    // Only whole lines: the script may be writing the last one.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(who)) = (words.next(), words.next()) else { continue };
        if who != id {
            continue;
        }
        match kind {
            "start" => record = JobRecord::Started,
            "exit" => {
                let status = words.nth(1).and_then(|s| s.parse().ok());
                if let (JobRecord::Started, Some(status)) = (&record, status) {
                    record = JobRecord::Exited(status);
                }
            }
            _ => {}
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_array_tasks_only() {
        assert_eq!(JobId::parse("123_4"), Some(JobId { array: 123, index: 4 }));
        assert_eq!(JobId::parse("123_4").unwrap().to_string(), "123_4");
        for bad in ["4242", "123_", "_4", "123_4_5", "12a_4", "123_[0-3]", ""] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn states_are_classified() {
        assert_eq!(JobState::parse("PENDING"), JobState::Waiting("PENDING".into()));
        assert_eq!(JobState::parse("REQUEUED"), JobState::Waiting("REQUEUED".into()));
        assert_eq!(JobState::parse("RUNNING"), JobState::Running);
        assert_eq!(JobState::parse("COMPLETING"), JobState::Running);
        assert_eq!(JobState::parse("CANCELLED by 0"), JobState::Ended("CANCELLED".into()));
        assert_eq!(JobState::parse("TIMEOUT"), JobState::Ended("TIMEOUT".into()));
        assert_eq!(JobState::parse("FAILED"), JobState::Ended("FAILED".into()));
    }

    #[test]
    fn the_latest_start_of_the_job_decides() {
        let job = JobId { array: 7, index: 1 };
        let log = "start 6_1 0 n1\nexit 6_1 0 75\nstart 7_1 0 n1\nexit 7_1 0 75\nstart 7_1 1 n2\n";
        assert_eq!(job_record(log, job), JobRecord::Started, "requeued, running again");
        assert_eq!(job_record(&format!("{log}exit 7_1 1 0\n"), job), JobRecord::Exited(0));
        assert_eq!(job_record(&format!("{log}exit 7_1 1 0"), job), JobRecord::Started, "a torn last line");
        assert_eq!(job_record(log, JobId { array: 6, index: 1 }), JobRecord::Exited(75));
        assert_eq!(job_record(log, JobId { array: 8, index: 1 }), JobRecord::NotStarted);
        assert_eq!(job_record("", job), JobRecord::NotStarted);
    }
}
