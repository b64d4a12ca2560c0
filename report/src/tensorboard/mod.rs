//! `clorch export tensorboard`: an experiment's stored results as TensorBoard event files, so
//! that runs can be browsed in TensorBoard next to other tools' logs.
//!
//! One folder per run, named by method, grid point, seed and run id, holding one event file
//! with these scalars (`step` in brackets):
//!
//! * `online/accuracy`, `online/loss` — each online bin \[training examples seen by its end\];
//! * `task_<j>/accuracy`, `task_<j>/loss` — accuracy-matrix entry R\[i\]\[j\] [i + 1, tasks
//!   trained]; the untrained network's b_j at step 0;
//! * `metrics/acc`, `metrics/bwt`, `metrics/forgetting` — computed from the accuracy matrix as
//!   it stood after each task i \[i + 1\], where defined (every R\[i\]\[j\], j ≤ i, measured); the
//!   last equals `clorch report`'s value for the run;
//! * `plasticity/<layer>/{dead,dormant,effective_rank,stable_rank,mean_abs_weight}` and
//!   `plasticity/mean_abs_weight` \[tasks trained\].
//!
//! Events carry no wall-clock time of their own, so every scalar has the run's first start as
//! its wall time (0 when unknown): TensorBoard's "relative" and "wall" axes say nothing here,
//! its "step" axis everything. Hyper-parameters are in the folder name, not in TensorBoard's
//! hparams plugin.

mod record;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use metrics::AccuracyMatrix;
use protocol::{Event, EventBody};
use results::{RunRecord, RunSource};

use crate::ReportError;

/// The file that marks a folder as written by this export, so that exporting again may
/// replace it and nothing else.
pub const MARKER: &str = ".clorch-tensorboard";

/// What an export wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// The folder written.
    pub dir: PathBuf,
    /// Runs exported.
    pub runs: usize,
    /// Scalars written, over all runs.
    pub scalars: usize,
}

/// Writes the event files of `source`'s current runs into `out`. `out` must not exist, be
/// empty, or hold an earlier export (its [`MARKER`]), which is replaced whole; anything else
/// is refused before a byte is written. The new export is built beside `out` and moved into
/// place, so a failed export leaves the previous one intact.
pub fn export(source: &dyn RunSource, out: &Path) -> Result<Exported, ReportError> {
    let io = |path: &Path, e: std::io::Error| ReportError::Output(format!("{}: {e}", path.display()));
    let replace = match fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(out, e)),
        Ok(entries) => {
            let names: Vec<String> =
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            if names.is_empty() {
                false
            } else if names.iter().any(|n| n == MARKER) {
                true
            } else {
                return Err(ReportError::Output(format!(
                    "{} holds files this export did not write ({}); give another --out",
                    out.display(),
                    names.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().map_or_else(|| "tensorboard".into(), |n| n.to_string_lossy().into_owned());
    let building = parent.join(format!(".{name}.building-{}", std::process::id()));
    fs::create_dir_all(&building).map_err(|e| io(&building, e))?;
    let result = write_all(source, &building);
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let _ = fs::remove_dir_all(&building);
            return Err(e);
        }
    };
    if replace {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        fs::rename(out, &old).map_err(|e| io(out, e))?;
        fs::rename(&building, out).map_err(|e| io(out, e))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        if out.exists() {
            fs::remove_dir(out).map_err(|e| io(out, e))?; // empty, checked above
        }
        fs::rename(&building, out).map_err(|e| io(out, e))?;
    }
    Ok(Exported { dir: out.to_path_buf(), ..summary })
}

fn write_all(source: &dyn RunSource, dir: &Path) -> Result<Exported, ReportError> {
    let io = |path: &Path, e: std::io::Error| ReportError::Output(format!("{}: {e}", path.display()));
    fs::write(
        dir.join(MARKER),
        "written by clorch export tensorboard; exporting again replaces this folder\n",
    )
    .map_err(|e| io(dir, e))?;
    let meta = source.experiment()?;
    let current: Option<Vec<String>> = meta.map(|m| m.runs).filter(|r| !r.is_empty());
    let mut runs = source.runs()?;
    if let Some(current) = &current {
        runs.retain(|r| current.contains(&r.id));
    }
    let mut scalars = 0;
    for run in &runs {
        let mut events = Vec::new();
        source.visit_events(&run.id, &mut |_, bytes| {
            let event: Event = serde_json::from_slice(bytes).map_err(|e| results::SourceError::Decode {
                what: format!("event of run {}", run.id),
                source: e,
            })?;
            events.push(event);
            Ok(())
        })?;
        let points = scalars_of(run, &events);
        scalars += points.len();
        let folder = dir.join(folder_name(run));
        fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        let wall = run.times.first_started.unwrap_or(0) as f64;
        let mut bytes = Vec::new();
        record::frame(&record::version_event(wall), &mut bytes);
        for (tag, step, value) in &points {
            record::frame(&record::scalar_event(wall, *step, tag, *value as f32), &mut bytes);
        }
        let file = folder.join(format!("events.out.tfevents.{}.clorch", wall as u64));
        fs::write(&file, bytes).map_err(|e| io(&file, e))?;
    }
    Ok(Exported { dir: dir.to_path_buf(), runs: runs.len(), scalars })
}

/// `<method>[-<grid>]-seed<seed>-<id>`, with anything but `[A-Za-z0-9._=-]` made `_`.
pub fn folder_name(run: &RunRecord) -> String {
    let grid = run.labels.grid_text().replace(", ", ",");
    let mut name = run.labels.method.clone();
    if !grid.is_empty() {
        name.push('-');
        name.push_str(&grid);
    }
    name.push_str(&format!("-seed{}-{}", run.labels.seed, run.id));
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-' | ',') { c } else { '_' })
        .collect()
}

/// Every scalar of one run as `(tag, step, value)`, in the order written.
pub fn scalars_of(run: &RunRecord, events: &[Event]) -> Vec<(String, i64, f64)> {
    let mut out = Vec::new();
    let mut examples: u64 = 0;
    // R[i][j] entries by row, for the metrics after each task.
    let mut rows: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
    let mut baselines: Vec<(usize, f64)> = Vec::new();
    let tasks = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Started { tasks, .. } => Some(*tasks),
            _ => None,
        })
        .unwrap_or(run.progress.tasks);
    for event in events {
        match &event.body {
            EventBody::Online { examples: n, loss, accuracy, .. } => {
                examples = examples.saturating_add(*n);
                let step = examples as i64;
                if let Some(a) = accuracy {
                    out.push(("online/accuracy".to_string(), step, *a));
                }
                out.push(("online/loss".to_string(), step, *loss));
            }
            EventBody::Eval { after_task, on_task, loss, accuracy, variant: None, .. } => {
                let step = after_task.map_or(0, |i| i as i64 + 1);
                if let Some(a) = accuracy {
                    out.push((format!("task_{on_task}/accuracy"), step, *a));
                    match after_task {
                        Some(i) => rows.entry(*i).or_default().push((*on_task, *a)),
                        None => baselines.push((*on_task, *a)),
                    }
                }
                out.push((format!("task_{on_task}/loss"), step, *loss));
            }
            EventBody::Plasticity { after_tasks, layers, mean_abs_weight, .. } => {
                let step = *after_tasks as i64;
                for (l, layer) in layers.iter().enumerate() {
                    let p = format!("plasticity/layer{l}");
                    out.push((format!("{p}/dead"), step, layer.dead));
                    out.push((format!("{p}/dormant"), step, layer.dormant));
                    out.push((format!("{p}/effective_rank"), step, layer.effective_rank));
                    out.push((format!("{p}/stable_rank"), step, layer.stable_rank as f64));
                    out.push((format!("{p}/mean_abs_weight"), step, layer.mean_abs_weight));
                }
                out.push(("plasticity/mean_abs_weight".to_string(), step, *mean_abs_weight));
            }
            // A worker's own measurements, at its step count when it gives one, else at the
            // training examples seen so far (the online curves' axis).
            EventBody::Scalar { name, value, step, .. } => {
                let at = step.map_or(examples as i64, |s| s as i64);
                out.push((format!("scalar/{name}"), at, *value));
            }
            _ => {}
        }
    }
    // ACC, BWT and forgetting as they stood after each task i: the matrix cut to i + 1 tasks.
    for &i in rows.keys() {
        if i >= tasks {
            continue;
        }
        let mut matrix = AccuracyMatrix::new(i + 1);
        for (&row, entries) in rows.range(..=i) {
            for &(j, a) in entries {
                if j <= i {
                    matrix.set(row, j, a);
                }
            }
        }
        for &(j, a) in &baselines {
            if j <= i {
                matrix.set_baseline(j, a);
            }
        }
        let step = i as i64 + 1;
        if let Ok(v) = matrix.average_accuracy() {
            out.push(("metrics/acc".to_string(), step, v));
        }
        if let Ok(v) = matrix.backward_transfer() {
            out.push(("metrics/bwt".to_string(), step, v));
        }
        if let Ok(v) = matrix.forgetting() {
            out.push(("metrics/forgetting".to_string(), step, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use results::fixtures::record;
    use test_support::events::{at as ev, eval};

    #[test]
    fn metrics_follow_the_matrix_task_by_task() {
        let run = record(0, 2, "sgd", 0.1, 3);
        let events: Vec<Event> = [
            EventBody::Online { task: 0, bin: 0, examples: 50, loss: 0.4, accuracy: Some(0.6) },
            eval(Some(0), 0, 0.9),
            eval(Some(0), 1, 0.2),
            EventBody::Online { task: 1, bin: 0, examples: 50, loss: 0.3, accuracy: Some(0.7) },
            eval(Some(1), 0, 0.7),
            eval(Some(1), 1, 0.8),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, b)| ev(i as u64, b))
        .collect();
        let scalars = scalars_of(&run, &events);
        let find = |tag: &str, step: i64| {
            scalars.iter().find(|(t, s, _)| t == tag && *s == step).map(|(_, _, v)| *v)
        };
        assert_eq!(find("online/accuracy", 100), Some(0.7), "steps count examples");
        assert_eq!(find("task_1/accuracy", 1), Some(0.2));
        assert_eq!(find("metrics/acc", 1), Some(0.9));
        assert_eq!(find("metrics/acc", 2), Some(0.75));
        assert!((find("metrics/bwt", 2).unwrap() - (0.7 - 0.9)).abs() < 1e-12);
        assert!((find("metrics/forgetting", 2).unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(find("metrics/bwt", 1), None, "undefined on one task");
        assert_eq!(folder_name(&run), format!("sgd-lr=0.1-seed3-{}", run.id));
    }

    #[test]
    fn an_export_replaces_its_own_folder_and_refuses_others() {
        let scratch = test_support::scratch("tb-folder");
        let store = crate::tests::fixture();
        let out = scratch.path().join("tb");
        let first = export(&store, &out).unwrap();
        assert!(first.runs > 0 && first.scalars > 0 && out.join(MARKER).is_file());
        export(&store, &out).unwrap();
        let foreign = scratch.path().join("mine");
        fs::create_dir(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "mine").unwrap();
        let err = export(&store, &foreign).unwrap_err().to_string();
        assert!(err.contains("notes.txt") && err.contains("did not write"), "{err}");
        assert_eq!(fs::read_to_string(foreign.join("notes.txt")).unwrap(), "mine");
        let leftovers: Vec<_> =
            fs::read_dir(scratch.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }
}
