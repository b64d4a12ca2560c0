//! `clorch export tensorboard` read back by the `tensorboard` Python package's own event reader:
//! every run's scalars are there, and they are the numbers `clorch report` and the event logs
//! hold.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{clorch, text, Scratch, SMALL};

/// The Python of a venv with `tensorboard` installed: `CLORCH_TEST_TENSORBOARD_PYTHON`, or the
/// one `.ci/run` creates.
fn tensorboard_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLORCH_TEST_TENSORBOARD_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = test_support::repo_root().join(".ci/venvs/tensorboard/bin/python");
    p.is_file().then_some(p)
}

/// Reads every run folder under argv[1] with TensorBoard's EventAccumulator and prints
/// {folder: {tag: [[step, value], …]}} as JSON.
const READ: &str = r#"
import json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for name in sorted(os.listdir(sys.argv[1])):
    path = os.path.join(sys.argv[1], name)
    if not os.path.isdir(path):
        continue
    acc = EventAccumulator(path, size_guidance={"scalars": 0})
    acc.Reload()
    out[name] = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
"#;

#[test]
fn tensorboard_reads_back_the_reports_numbers() {
    let Some(python) = tensorboard_python() else {
        test_support::missing(
            "a Python with the tensorboard package",
            "python3 -m venv .ci/venvs/tensorboard && .ci/venvs/tensorboard/bin/pip install tensorboard (.ci/run does this)",
        );
        return;
    };
    let s = Scratch::new("tensorboard");
    let recipe = s.recipe("tb", SMALL);
    let results = s.path("results-tb");
    assert!(clorch(&["run", recipe.to_str().unwrap(), "--no-progress", "-q"]).status.success());
    let out = clorch(&["export", "tensorboard", results.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs_json = s.path("runs.json");
    let report =
        clorch(&["report", results.to_str().unwrap(), "--runs", "--json", runs_json.to_str().unwrap()]);
    assert!(report.status.success(), "{}", text(&report.stderr));

    let read = Command::new(&python)
        .args(["-c", READ])
        .arg(results.join("tensorboard"))
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read.stderr));
    let logs: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let logs = logs.as_object().unwrap();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&runs_json).unwrap()).unwrap();
    assert_eq!(logs.len(), rows.len(), "one folder per run: {:?}", logs.keys());

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0); // stored as f32
    for row in &rows {
        let id = row["run"].as_str().unwrap();
        let (folder, scalars) =
            logs.iter().find(|(name, _)| name.ends_with(id)).unwrap_or_else(|| panic!("no folder for {id}"));
        assert!(folder.starts_with(row["method"].as_str().unwrap()), "{folder}");
        let last = |tag: &str| -> f64 {
            let points = scalars[tag].as_array().unwrap_or_else(|| panic!("{folder}: no {tag}"));
            points.last().unwrap()[1].as_f64().unwrap()
        };
        for metric in ["acc", "bwt", "forgetting"] {
            let reported = row[metric].as_f64().unwrap();
            let logged = last(&format!("metrics/{metric}"));
            assert!(close(logged, reported), "{folder} {metric}: tensorboard {logged}, report {reported}");
        }
        // Every accuracy-matrix entry of the run's log is a task_<j>/accuracy point.
        let events =
            std::fs::read_to_string(results.join("runs").join(id).join(protocol::files::EVENTS)).unwrap();
        let mut entries = 0;
        for line in events.lines() {
            let event = protocol::line::decode(line.as_bytes()).unwrap();
            if let protocol::EventBody::Eval {
                after_task, on_task, accuracy: Some(a), variant: None, ..
            } = event.body
            {
                let step = after_task.map_or(0, |i| i as i64 + 1);
                let points = scalars[format!("task_{on_task}/accuracy")].as_array().unwrap();
                assert!(
                    points.iter().any(|p| p[0].as_i64() == Some(step) && close(p[1].as_f64().unwrap(), a)),
                    "{folder}: R[{after_task:?}][{on_task}] = {a} missing"
                );
                entries += 1;
            }
        }
        assert!(entries > 0);
        assert!(scalars["online/accuracy"].as_array().is_some_and(|p| !p.is_empty()));
        assert!(scalars["plasticity/layer0/effective_rank"].as_array().is_some_and(|p| !p.is_empty()));
    }
}
