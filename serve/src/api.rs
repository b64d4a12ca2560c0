//! What the dashboard's page asks for, as JSON: an experiment's run table and group curves,
//! one run's detail, the comparison table and a run's log tail.
//!
//! Every answer is bounded: curves are thinned to [`bands::MAX_POINTS`], log tails to
//! [`LOG_TAIL_BYTES`], and nothing else grows with a run's length.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use results::{RunRecord, RunStatus};
use serde::Serialize;

use crate::bands::{self, Band};
use crate::series::PlasticityPoint;
use crate::watch::{Watched, WatchedRun};

/// The most of a worker's log one request returns (its end).
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// One line of the run table.
#[derive(Debug, Serialize)]
pub struct RunRow {
    id: String,
    stream: String,
    method: String,
    grid: String,
    seed: u64,
    status: &'static str,
    attempts: u32,
    /// Tasks completed (while running: the task being trained, from 0).
    task: usize,
    tasks: usize,
    /// Seconds left at the pace so far, while running.
    eta_seconds: Option<u64>,
    /// Seconds since the last checkpoint was received.
    checkpoint_age_seconds: Option<u64>,
    /// Why the run failed, or why its last attempt did while it is retried; a checkpoint
    /// fallback; a damaged event log.
    reason: Option<String>,
    /// The last online value (accuracy, or loss for regression).
    last_online: Option<f64>,
}

/// One (stream, method, grid point) group: its runs differ by seed only.
#[derive(Debug, Serialize)]
pub struct GroupView {
    stream: String,
    method: String,
    grid: String,
    runs: Vec<String>,
    /// Online accuracy (or loss) per bin, over seeds.
    online: Band,
    /// R\[j\]\[j\]: each task right after training it, over seeds.
    just_trained: Band,
    /// ACC after each task, over seeds.
    average: Band,
    /// Dead units (mean over layers) after each evaluated boundary, over seeds.
    dead: Band,
    /// Effective rank (mean over layers), over seeds.
    effective_rank: Band,
}

/// Everything the page shows of one experiment, but the comparison table.
#[derive(Debug, Serialize)]
pub struct ExperimentView {
    version: u64,
    name: String,
    dir: String,
    problem: Option<String>,
    /// `accuracy`, or `loss` when every run is a regression.
    measure: &'static str,
    recipe: Option<String>,
    counts: BTreeMap<&'static str, usize>,
    runs: Vec<RunRow>,
    groups: Vec<GroupView>,
}

/// One experiment in the list.
#[derive(Debug, Serialize)]
pub struct ExperimentSummary {
    index: usize,
    name: String,
    dir: String,
    version: u64,
    runs: usize,
    counts: BTreeMap<&'static str, usize>,
}

/// One run in detail.
#[derive(Debug, Serialize)]
pub struct RunView {
    version: u64,
    row: RunRow,
    measure: &'static str,
    online: Band,
    matrix_untrained: bool,
    matrix: Vec<Vec<Option<f64>>>,
    plasticity: Vec<PlasticityPoint>,
    spec: serde_json::Value,
}

fn counts(runs: &[&WatchedRun]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for r in runs {
        *counts.entry(r.record.status.name()).or_insert(0) += 1;
    }
    counts
}

/// The list of experiments.
pub fn experiments(all: &[&Watched]) -> Vec<ExperimentSummary> {
    all.iter()
        .enumerate()
        .map(|(index, w)| {
            let runs = w.current_runs();
            ExperimentSummary {
                index,
                name: w.label(),
                dir: w.dir.display().to_string(),
                version: w.version,
                runs: runs.len(),
                counts: counts(&runs),
            }
        })
        .collect()
}

fn measure_name(runs: &[&WatchedRun]) -> &'static str {
    if !runs.is_empty() && runs.iter().all(|r| !r.series.classification()) {
        "loss"
    } else {
        "accuracy"
    }
}

/// An experiment's run table and group curves.
pub fn experiment(w: &Watched, now: u64) -> ExperimentView {
    let runs = w.current_runs();
    let mut groups: Vec<(String, Vec<&WatchedRun>)> = Vec::new();
    for r in &runs {
        let labels = &r.record.labels;
        let key = format!("{}\u{0}{}\u{0}{}", labels.stream, labels.method, labels.grid_text());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    ExperimentView {
        version: w.version,
        name: w.label(),
        dir: w.dir.display().to_string(),
        problem: w.meta_problem.clone(),
        measure: measure_name(&runs),
        recipe: w.meta.as_ref().map(|m| m.recipe.clone()),
        counts: counts(&runs),
        runs: runs.iter().map(|r| row(r, now)).collect(),
        groups: groups.into_iter().map(|(_, members)| group(&members)).collect(),
    }
}

fn group(members: &[&WatchedRun]) -> GroupView {
    let labels = &members[0].record.labels;
    let curves =
        |f: &dyn Fn(&WatchedRun) -> Vec<f64>| -> Vec<Vec<f64>> { members.iter().map(|r| f(r)).collect() };
    let longest = members.iter().max_by_key(|r| r.series.online.len()).expect("a group has a run");
    let examples: Vec<f64> = longest.series.online.iter().map(|p| p.examples as f64).collect();
    let plasticity_x: Vec<f64> = members
        .iter()
        .max_by_key(|r| r.series.plasticity.len())
        .map(|r| r.series.plasticity.iter().map(|p| p.after_tasks as f64).collect())
        .unwrap_or_default();
    GroupView {
        stream: labels.stream.clone(),
        method: labels.method.clone(),
        grid: labels.grid_text(),
        runs: members.iter().map(|r| r.record.id.clone()).collect(),
        online: bands::band(&curves(&|r| r.series.online_values()), Some(&examples)),
        just_trained: bands::band(&curves(&|r| r.series.just_trained()), None),
        average: bands::band(&curves(&|r| r.series.average_so_far()), None),
        dead: bands::band(
            &curves(&|r| r.series.plasticity.iter().map(|p| p.dead).collect()),
            Some(&plasticity_x),
        ),
        effective_rank: bands::band(
            &curves(&|r| r.series.plasticity.iter().map(|p| p.effective_rank).collect()),
            Some(&plasticity_x),
        ),
    }
}

fn row(r: &WatchedRun, now: u64) -> RunRow {
    let record = &r.record;
    let mut reasons = Vec::new();
    match &record.status {
        RunStatus::Failed { failure } => reasons.push(failure.to_string()),
        _ => {
            if let Some(f) = &record.last_failure {
                reasons.push(format!("attempt failed: {f}"));
            }
        }
    }
    if let Some(fallback) = &record.checkpoint_fallback {
        reasons.push(fallback.to_string());
    }
    if let Some(p) = &r.problem {
        reasons.push(p.clone());
    }
    RunRow {
        id: record.id.clone(),
        stream: record.labels.stream.clone(),
        method: record.labels.method.clone(),
        grid: record.labels.grid_text(),
        seed: record.labels.seed,
        status: record.status.name(),
        attempts: record.attempts,
        task: record.progress.tasks_done,
        tasks: record.progress.tasks,
        eta_seconds: eta(record, now),
        checkpoint_age_seconds: record
            .last_checkpoint
            .as_ref()
            .and_then(|c| c.received)
            .map(|t| now.saturating_sub(t)),
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        last_online: r.series.last_online().filter(|v| v.is_finite()),
    }
}

/// Time left at the pace of the run so far: seconds per completed task over all attempts.
fn eta(record: &RunRecord, now: u64) -> Option<u64> {
    if record.status != RunStatus::Running || record.progress.tasks_done == 0 {
        return None;
    }
    let current = record.times.last_started.map_or(0, |t| now.saturating_sub(t)) as f64;
    let spent = record.times.wall_seconds.unwrap_or(0.0) + current;
    let per_task = spent / record.progress.tasks_done as f64;
    let left = record.progress.tasks.saturating_sub(record.progress.tasks_done) as f64;
    Some((per_task * left).round() as u64)
}

/// One run in detail.
pub fn run(w: &Watched, r: &WatchedRun, now: u64) -> RunView {
    let values = r.series.online_values();
    let examples: Vec<f64> = r.series.online.iter().map(|p| p.examples as f64).collect();
    let (matrix_untrained, matrix) = r.series.matrix_rows();
    RunView {
        version: w.version,
        row: row(r, now),
        measure: if r.series.classification() { "accuracy" } else { "loss" },
        online: bands::band(&[values], Some(&examples)),
        matrix_untrained,
        matrix,
        plasticity: thin(&r.series.plasticity),
        spec: serde_json::to_value(&r.record.spec).unwrap_or(serde_json::Value::Null),
    }
}

fn thin<T: Copy>(points: &[T]) -> Vec<T> {
    let step = points.len().div_ceil(bands::MAX_POINTS).max(1);
    points.iter().step_by(step).copied().collect()
}

/// The end of a run's `worker.log`: at most [`LOG_TAIL_BYTES`], starting at a line.
pub fn log_tail(r: &WatchedRun) -> String {
    let path = r.dir.join(protocol::files::WORKER_LOG);
    // Only a regular file in the run folder: a symlink planted there is not followed.
    let Ok(meta) = std::fs::symlink_metadata(&path) else { return String::new() };
    if !meta.is_file() {
        return String::new();
    }
    let Ok(mut file) = std::fs::File::open(&path) else { return String::new() };
    let start = meta.len().saturating_sub(LOG_TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    match (start > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text.into_owned(),
    }
}

/// The comparison table: the Markdown `clorch report` prints, and its cells for the page.
#[derive(Debug, Serialize)]
pub struct TableView {
    version: u64,
    /// Exactly what `clorch report <dir>` prints.
    markdown: String,
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
    /// The lines after the table (what ± means, …).
    notes: Vec<String>,
}

/// One table cell: its text, and whether `clorch report` marks it best.
#[derive(Debug, Serialize)]
pub struct Cell {
    text: String,
    best: bool,
}

/// Builds the comparison table as `clorch report` does.
pub fn table(w: &Watched) -> Result<TableView, String> {
    let report = report::Report::build(w, &report::ReportOptions::default()).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    report
        .write(report::TableKind::Groups, report::Format::Markdown, &mut bytes)
        .map_err(|e| e.to_string())?;
    let markdown = String::from_utf8_lossy(&bytes).into_owned();
    let (header, rows, notes) = parse_markdown(&markdown);
    Ok(TableView { version: w.version, markdown, header, rows, notes })
}

/// Splits a Markdown table into header cells and rows (the separator line dropped, `**bold**`
/// cells marked best); other lines are notes.
fn parse_markdown(markdown: &str) -> (Vec<String>, Vec<Vec<Cell>>, Vec<String>) {
    let cells = |line: &str| -> Vec<String> {
        line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
    };
    let mut header = Vec::new();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for line in markdown.lines() {
        if !line.trim_start().starts_with('|') {
            if !line.trim().is_empty() {
                notes.push(line.to_string());
            }
        } else if header.is_empty() {
            header = cells(line);
        } else if !line.contains("---") {
            rows.push(
                cells(line)
                    .into_iter()
                    .map(|text| match text.strip_prefix("**").and_then(|t| t.strip_suffix("**")) {
                        Some(inner) => Cell { text: inner.to_string(), best: true },
                        None => Cell { text, best: false },
                    })
                    .collect(),
            );
        }
    }
    (header, rows, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_table_splits_into_cells_with_best_marks() {
        let md = "| stream | method | ACC |\n|---|---|---:|\n| s | sgd | **0.900 ± 0.010** |\n| s | cbp | 0.800 |\n\n± is the 95% CI\n";
        let (header, rows, notes) = parse_markdown(md);
        assert_eq!(header, ["stream", "method", "ACC"]);
        assert_eq!(rows.len(), 2);
        assert!(rows[0][2].best && rows[0][2].text == "0.900 ± 0.010");
        assert!(!rows[1][2].best);
        assert_eq!(notes, ["± is the 95% CI"]);
    }
}
