//! Experiment management end to end (issue 16): sweeps over any recipe key, the provenance of
//! every invocation, resume hints, labels and the runs `status` counts, and `validate`
//! catching what `run` would refuse.

use std::path::Path;

mod common;
use common::{clorch, text, Scratch};

/// One method on a two-task synthetic stream: a fraction of a second per run.
const TINY: &str = "
stream: {kind: synthetic_permuted, tasks: 2, classes: 4, dim: 16, train_per_class: 20, test_per_class: 10}
network: {hidden: [8]}
training: {batch_size: 8, epochs: 1}
methods:
  - {name: sgd, lr: 0.05}
seeds: 2
";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The labels of every run record in a results folder, as stored in `run.json`.
fn stored_labels(results: &Path) -> Vec<serde_json::Value> {
    let mut labels = Vec::new();
    for entry in std::fs::read_dir(results.join("runs")).unwrap() {
        let file = entry.unwrap().path().join("run.json");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        labels.push(json["record"]["labels"].clone());
    }
    labels
}

/// Issue 16's acceptance sweep: `network.hidden` × `training.batch_size` × `methods.sgd.lr`
/// with two seeds, in Hydra's multirun syntax, runs 16 runs; every axis is a label with its
/// JSON type and a part of the report's rows.
#[test]
fn a_multirun_sweep_over_network_batch_size_and_lr_runs_and_reports_each_axis() {
    let s = Scratch::new("sweep");
    let r = s.recipe("sweep", TINY);
    let results = s.path("results-sweep");
    let sweep = ["network.hidden=[8],[16]", "training.batch_size=8,16", "methods.sgd.lr=0.05,0.1"];

    let refused = clorch(&[&["validate", path(&r)][..], &sweep].concat());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("pass -m (--multirun)"), "{}", text(&refused.stderr));

    let planned = clorch(&[&["validate", "-m", path(&r)][..], &sweep].concat());
    assert!(planned.status.success(), "{}", text(&planned.stderr));
    assert!(text(&planned.stdout).starts_with("16 runs"), "{}", text(&planned.stdout));

    let run = clorch(&[&["run", "-m", path(&r), "--no-progress"][..], &sweep].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = text(&clorch(&["report", path(&results)]).stdout);
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| synthetic_permuted")).collect();
    assert_eq!(rows.len(), 8, "{report}");
    for hidden in ["[8]", "[16]"] {
        for batch in [8, 16] {
            for lr in ["0.05", "0.1"] {
                let grid = format!("lr={lr}, network.hidden={hidden}, training.batch_size={batch} ");
                let row = rows.iter().find(|r| r.contains(&grid)).unwrap_or_else(|| panic!("{grid}\n{report}"));
                assert!(row.contains("|    2 |"), "{row}");
            }
        }
    }
    let labels = stored_labels(&results);
    assert_eq!(labels.len(), 16);
    for l in &labels {
        assert!(l["grid"]["network.hidden"].is_array(), "{l}");
        assert!(l["grid"]["training.batch_size"].is_u64(), "{l}");
        assert!(l["grid"]["lr"].is_f64(), "{l}");
    }
}
