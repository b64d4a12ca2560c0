//! What `clorch status` shows, and how it works while `clorch run` holds the store.
//!
//! sled lets one process open a store, so a second process cannot read it while a run is
//! going. The running orchestrator therefore rewrites `status.json` in the results folder
//! (atomically: temporary file, rename) about once a second; `clorch status` reads that file
//! while the folder's lock is held, and the store itself otherwise.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::{self, RunRecord, RunStatus, Store};

/// File name of the snapshot inside a results folder.
pub const STATUS_FILE: &str = "status.json";

/// The state of an experiment's runs at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Experiment name.
    pub experiment: String,
    /// When the snapshot was taken (unix seconds).
    pub taken: u64,
    /// The orchestrator that wrote it, if one is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<u32>,
    /// One line per run, in recipe order.
    pub runs: Vec<RunLine>,
}

/// One run's line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunLine {
    /// Run id.
    pub id: String,
    /// Stream label.
    pub stream: String,
    /// Method label.
    pub method: String,
    /// Grid point, as text.
    pub grid: String,
    /// Seed.
    pub seed: u64,
    /// `pending`, `queued` (its SLURM job waits in the queue), `running`, `interrupted`,
    /// `finished` or `failed`.
    pub status: String,
    /// Attempts started.
    pub attempts: u32,
    /// Task being trained (running runs) or tasks done.
    pub task: usize,
    /// Tasks in the stream.
    pub tasks: usize,
    /// When the last checkpoint was received (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_at: Option<u64>,
    /// Why it failed, or why its last attempt broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when an attempt resumed from an older checkpoint because the newest failed
    /// verification: `fell back: checkpoint-0000000017.ckpt checksum mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_note: Option<String>,
    /// For an unfinished run, the newest checkpoint file in its folder and when it was written
    /// (unix seconds): a worker stopped by Ctrl-C writes one without announcing it in an
    /// event, and the next `clorch run` resumes from it. Looked up by [`of_store`] only: the
    /// live snapshot is rebuilt every second and lists no folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable: Option<(String, u64)>,
    /// The executor's reference to the current or last attempt (a SLURM job id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Seconds its attempts waited in the executor's queue, apart from their run time (a
    /// waiting job's wait counted up to the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_seconds: Option<u64>,
}

impl RunLine {
    /// The line of a stored run; `task` overrides the stored progress with a live one.
    pub fn of(record: &RunRecord, task: Option<usize>) -> RunLine {
        let reason = match &record.status {
            RunStatus::Failed { failure } => Some(failure.to_string()),
            RunStatus::Finished => None,
            _ => record.last_failure.as_ref().map(|f| format!("last attempt: {f}")),
        };
        RunLine {
            id: record.id.clone(),
            stream: record.labels.stream.clone(),
            method: record.labels.method.clone(),
            grid: record.labels.grid_text(),
            seed: record.labels.seed,
            status: match (&record.status, record.times.queued_since) {
                (RunStatus::Running, Some(_)) => "queued".to_string(),
                (status, _) => status.name().to_string(),
            },
            attempts: record.attempts,
            task: task.unwrap_or(record.progress.tasks_done),
            tasks: record.progress.tasks,
            checkpoint_at: record.last_checkpoint.as_ref().and_then(|c| c.received),
            reason,
            checkpoint_note: record.checkpoint_fallback.as_ref().map(|f| f.to_string()),
            resumable: None,
            job: record.executor_job.clone(),
            queued_seconds: queued_seconds(record, store::unix_now()),
        }
    }
}

/// Seconds `record`'s attempts waited in a queue, up to `now` for one still waiting; `None`
/// for runs that never queued (local workers).
fn queued_seconds(record: &RunRecord, now: u64) -> Option<u64> {
    let past = record.times.queue_seconds.map(|s| s.round() as u64);
    let waiting = record.times.queued_since.map(|since| now.saturating_sub(since));
    match (past, waiting) {
        (None, None) => None,
        (p, w) => Some(p.unwrap_or(0) + w.unwrap_or(0)),
    }
}

/// The newest checkpoint file (`*.ckpt`) in a run folder and its modification time (unix
/// seconds); `None` when there is none or the folder cannot be read.
fn newest_checkpoint(dir: &Path) -> Option<(String, u64)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ckpt"))
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            let seconds = modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            Some((e.file_name().to_string_lossy().into_owned(), seconds))
        })
        .max_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
}

/// Writes the snapshot into the results folder, atomically.
pub fn write(results_dir: &Path, snapshot: &Snapshot) -> store::Result<()> {
    let bytes = serde_json::to_vec_pretty(snapshot).expect("a snapshot always serialises");
    Ok(store::folder::write_replacing(&results_dir.join(STATUS_FILE), &bytes)?)
}

/// Reads the snapshot a running orchestrator wrote.
pub fn read(results_dir: &Path) -> Option<Snapshot> {
    let bytes = std::fs::read(results_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A snapshot of a store (no orchestrator running): the runs of the latest plan — the ones
/// reports show — or, with `all`, also those of earlier plans that the store keeps (after an
/// edit or an override such as `seeds=5`).
pub fn of_store(store: &Store, all: bool) -> store::Result<Snapshot> {
    let meta = store.experiment()?;
    let current: Option<std::collections::HashSet<&str>> = meta
        .as_ref()
        .filter(|m| !all && !m.runs.is_empty())
        .map(|m| m.runs.iter().map(String::as_str).collect());
    let runs = store
        .runs()?
        .iter()
        .filter(|r| current.as_ref().is_none_or(|ids| ids.contains(r.id.as_str())))
        .map(|r| {
            let mut line = RunLine::of(r, None);
            if !r.status.is_done() {
                line.resumable = r.spec.run_dir.as_deref().and_then(newest_checkpoint);
            }
            line
        })
        .collect();
    let experiment = meta.map(|m| m.name).unwrap_or_default();
    Ok(Snapshot { experiment, taken: store::unix_now(), orchestrator: None, runs })
}

/// Renders a snapshot as a table with a summary line.
pub fn render(snapshot: &Snapshot, now: u64) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for r in &snapshot.runs {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let mut out = String::new();
    let live = match snapshot.orchestrator {
        Some(pid) => format!(
            " — running (orchestrator pid {pid}, updated {} s ago)",
            now.saturating_sub(snapshot.taken)
        ),
        None => String::new(),
    };
    out.push_str(&format!("{}: {} runs{live}\n", snapshot.experiment, snapshot.runs.len()));
    let summary: Vec<String> = ["finished", "running", "queued", "pending", "interrupted", "failed"]
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    out.push_str(&format!("{}\n\n", summary.join(", ")));
    let header =
        ["run", "stream", "method", "grid", "seed", "status", "attempts", "task", "checkpoint", "reason"];
    // A job column only where an executor gave jobs ids (SLURM), before the reason.
    let jobs = snapshot.runs.iter().any(|r| r.job.is_some());
    let mut rows: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
    if jobs {
        rows[0].insert(9, "job".into());
        rows[0].insert(10, "queued".into());
    }
    for r in &snapshot.runs {
        let mut row = vec![
            r.id.clone(),
            r.stream.clone(),
            r.method.clone(),
            if r.grid.is_empty() { "-".into() } else { r.grid.clone() },
            r.seed.to_string(),
            r.status.clone(),
            r.attempts.to_string(),
            format!("{}/{}", r.task.min(r.tasks), r.tasks),
            checkpoint_cell(r, now),
            r.reason.clone().unwrap_or_default(),
        ];
        if jobs {
            row.insert(9, r.job.clone().unwrap_or_else(|| "-".into()));
            row.insert(10, r.queued_seconds.map_or_else(|| "-".into(), age));
        }
        rows.push(row);
    }
    out.push_str(&crate::columns::align(&rows));
    out
}

/// `12 s ago`, `-` without a checkpoint, then any fallback in brackets: `12 s ago (fell back:
/// checkpoint-0000000017.ckpt checksum mismatch)`.
///
/// An unfinished run whose folder holds a checkpoint newer than the last announced one (the one
/// a stopped worker writes) shows that file's age and `resumable`.
fn checkpoint_cell(r: &RunLine, now: u64) -> String {
    let newer = r.resumable.as_ref().filter(|(_, t)| r.checkpoint_at.is_none_or(|at| *t > at));
    let age = match (newer, r.checkpoint_at) {
        (Some((_, t)), _) => format!("{} ago, resumable", age(now.saturating_sub(*t))),
        (None, Some(t)) => format!("{} ago", age(now.saturating_sub(t))),
        (None, None) => "-".into(),
    };
    match &r.checkpoint_note {
        Some(note) => format!("{age} ({note})"),
        None => age,
    }
}

/// `45 s`, `12 min`, `3 h`, `2 d`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_progress_and_reasons() {
        let line = |id: &str, status: &str, reason: Option<&str>| RunLine {
            id: id.into(),
            stream: "synthetic_permuted".into(),
            method: "sgd".into(),
            grid: String::new(),
            seed: 0,
            status: status.into(),
            attempts: 1,
            task: 2,
            tasks: 5,
            checkpoint_at: Some(100),
            reason: reason.map(Into::into),
            checkpoint_note: None,
            resumable: None,
            job: None,
            queued_seconds: None,
        };
        let snap = Snapshot {
            experiment: "x".into(),
            taken: 160,
            orchestrator: Some(42),
            runs: vec![line("a", "running", None), line("b", "failed", Some("worker crashed (exit code 3)"))],
        };
        let text = render(&snap, 170);
        assert!(text.contains("x: 2 runs — running (orchestrator pid 42, updated 10 s ago)"), "{text}");
        assert!(text.contains("1 running, 1 failed"), "{text}");
        assert!(text.contains("2/5") && text.contains("70 s ago"), "{text}");
        assert!(text.contains("worker crashed (exit code 3)"), "{text}");

        let mut fell = snap.runs[0].clone();
        fell.checkpoint_note = Some("fell back: checkpoint-0000000017.ckpt checksum mismatch".into());
        let text = render(&Snapshot { runs: vec![fell], ..snap }, 170);
        assert!(
            text.contains("70 s ago (fell back: checkpoint-0000000017.ckpt checksum mismatch)"),
            "{text}"
        );
    }

    /// Issue 16, finding 5: a run stopped by Ctrl-C shows the checkpoint it resumes from, and
    /// SLURM runs show their job ids.
    #[test]
    fn unannounced_checkpoints_and_job_ids_are_shown() {
        let stopped = RunLine {
            id: "a".into(),
            stream: "s".into(),
            method: "sgd".into(),
            grid: String::new(),
            seed: 0,
            status: "interrupted".into(),
            attempts: 1,
            task: 2,
            tasks: 5,
            checkpoint_at: None,
            reason: None,
            checkpoint_note: None,
            resumable: Some(("checkpoint-0000000040.ckpt".into(), 150)),
            job: Some("4242_0".into()),
            queued_seconds: Some(300),
        };
        let snap = Snapshot { experiment: "x".into(), taken: 160, orchestrator: None, runs: vec![stopped] };
        let text = render(&snap, 170);
        assert!(text.contains("20 s ago, resumable"), "{text}");
        assert!(text.contains(" job ") && text.contains("4242_0"), "{text}");
        assert!(text.contains(" queued ") && text.contains("5 min"), "{text}");
    }

    /// Issue 16, finding 5: a run whose SLURM job waits in the queue is `queued`, not
    /// `running`, and its wait is counted apart.
    #[test]
    fn a_waiting_job_is_queued_with_its_wait() {
        let mut record = results::fixtures::record(0, 3, "sgd", 0.1, 1);
        record.status = RunStatus::Running;
        record.executor_job = Some("77_1".into());
        record.times.queued_since = Some(1_000);
        record.times.queue_seconds = Some(60.0);
        assert_eq!(RunLine::of(&record, None).status, "queued");
        assert_eq!(queued_seconds(&record, 1_030), Some(90));
        record.times.queued_since = None;
        let line = RunLine::of(&record, None);
        assert_eq!((line.status.as_str(), line.queued_seconds), ("running", Some(60)));
    }
}
