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
    /// `pending`, `running`, `interrupted`, `finished` or `failed`.
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
            status: record.status.name().to_string(),
            attempts: record.attempts,
            task: task.unwrap_or(record.progress.tasks_done),
            tasks: record.progress.tasks,
            checkpoint_at: record.last_checkpoint.as_ref().and_then(|c| c.received),
            reason,
            checkpoint_note: record.checkpoint_fallback.as_ref().map(|f| f.to_string()),
        }
    }
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

/// A snapshot of a store (no orchestrator running).
pub fn of_store(store: &Store) -> store::Result<Snapshot> {
    let experiment = store.experiment()?.map(|m| m.name).unwrap_or_default();
    let runs = store.runs()?.iter().map(|r| RunLine::of(r, None)).collect();
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
    let summary: Vec<String> = ["finished", "running", "pending", "interrupted", "failed"]
        .iter()
        .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    out.push_str(&format!("{}\n\n", summary.join(", ")));
    let header =
        ["run", "stream", "method", "grid", "seed", "status", "attempts", "task", "checkpoint", "reason"];
    let mut rows: Vec<Vec<String>> = vec![header.map(String::from).to_vec()];
    for r in &snapshot.runs {
        rows.push(vec![
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
        ]);
    }
    out.push_str(&crate::columns::align(&rows));
    out
}

/// `12 s ago`, `-` without a checkpoint, then any fallback in brackets: `12 s ago (fell back:
/// checkpoint-0000000017.ckpt checksum mismatch)`.
fn checkpoint_cell(r: &RunLine, now: u64) -> String {
    let age = r.checkpoint_at.map_or("-".into(), |t| format!("{} ago", age(now.saturating_sub(t))));
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
}
