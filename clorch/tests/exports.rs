//! Issue 16, exports: every table `clorch report` writes (groups, runs, per-task, series; as
//! Parquet and CSV) opens in pandas with pyarrow 12 and 14 — the versions on clusters — with the
//! documented types; `--where` selects on any method parameter, fixed or gridded.
//!
//! The Python environments come from `CLORCH_TEST_PYTHON_VENVS` (colon-separated venv folders),
//! which `.ci/run` sets after creating them with `.ci/python-venvs.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{clorch, text, Scratch};

/// A sweep over the learning rate beside a fixed-parameter method, two seeds each.
const SWEEP: &str = "
stream: {kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}
network: {hidden: [16]}
training: {batch_size: 8, epochs: 1}
eval: {plasticity: {every: 1, probe: 20}}
methods:
  - {name: sgd, lr: [0.05, 0.1]}
  - {name: l2, optimizer: adam, lr: 0.001, weight_decay: 0.001}
seeds: 2
";

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_sweep(s: &Scratch) -> PathBuf {
    let recipe = s.recipe("sweep", SWEEP);
    let out = clorch(&["run", arg(&recipe), "--no-progress", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.path("results-sweep")
}

/// The venvs to read with, or `None` (with a skip message; a failure under `CI=true`).
fn python_venvs() -> Option<Vec<PathBuf>> {
    let how =
        "run .ci/python-venvs.sh and set CLORCH_TEST_PYTHON_VENVS to the folders it prints (.ci/run does)";
    let Ok(list) = std::env::var("CLORCH_TEST_PYTHON_VENVS") else {
        test_support::missing("CLORCH_TEST_PYTHON_VENVS (pyarrow 12 and 14 venvs)", how);
        return None;
    };
    let venvs: Vec<PathBuf> = list.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    if venvs.is_empty() || venvs.iter().any(|v| !v.join("bin/python").exists()) {
        test_support::missing(&format!("a Python venv of CLORCH_TEST_PYTHON_VENVS={list}"), how);
        return None;
    }
    Some(venvs)
}

/// Reads every file with pandas and checks the types a researcher relies on; prints
/// `pyarrow <version> pandas <version>: ok` per venv.
const CHECK: &str = r#"
import sys, pandas as pd, pyarrow
files = sys.argv[1:]
for f in files:
    df = pd.read_parquet(f) if f.endswith(".parquet") else pd.read_csv(f)
    dtypes = {k: str(v) for k, v in df.dtypes.items()}
    assert len(df) > 0, f
    assert dtypes["param.lr"] == "float64", (f, dtypes)
    assert dtypes["param.weight_decay"] == "float64", (f, dtypes)
    assert "param.optimizer" in dtypes, (f, dtypes)
    if "seed" in dtypes:
        assert dtypes["seed"] == "int64", (f, dtypes)
    if "runs" in dtypes:
        assert dtypes["runs"] == "int64", (f, dtypes)
    if f.endswith(".parquet"):
        for name in ("after_task", "task", "layer", "bin"):
            if name in dtypes:
                assert dtypes[name] == "Int64", (f, name, dtypes)
                assert df[name].isna().any() or name == "bin" or name == "layer", (f, name)
    if "metric" in dtypes:
        metrics = set(df["metric"])
        for m in ("online.accuracy", "online.loss", "eval.accuracy", "plasticity.dead", "plasticity.effective_rank"):
            assert m in metrics, (f, m, sorted(metrics))
    assert set(df["method"]) == {"sgd", "l2"}, (f, set(df["method"]))
print("pyarrow", pyarrow.__version__, "pandas", pd.__version__, ": ok", len(files), "files")
"#;

#[test]
fn every_export_opens_in_pandas_with_pyarrow_12_and_14() {
    let Some(venvs) = python_venvs() else { return };
    let s = Scratch::new("exports-python");
    let results = run_sweep(&s);
    let mut files = Vec::new();
    for ext in ["parquet", "csv"] {
        let (groups, runs) = (s.path(&format!("groups.{ext}")), s.path(&format!("runs.{ext}")));
        let (per_task, series) = (s.path(&format!("per-task.{ext}")), s.path(&format!("series.{ext}")));
        let flag = format!("--{ext}");
        let out = clorch(&[
            "report",
            arg(&results),
            &flag,
            arg(&groups),
            "--per-task",
            arg(&per_task),
            "--series",
            arg(&series),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = clorch(&["report", arg(&results), "--runs", &flag, arg(&runs)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        files.extend([groups, runs, per_task, series]);
    }
    for venv in venvs {
        let out = Command::new(venv.join("bin/python"))
            .arg("-c")
            .arg(CHECK)
            .args(files.iter().map(|f| arg(f)))
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}{}", venv.display(), text(&out.stdout), text(&out.stderr));
        println!("{}: {}", venv.display(), text(&out.stdout).trim());
    }
}

/// Issue 16: `--where` on a fixed parameter (`optimizer`, `weight_decay`) and on a gridded one
/// compared by value (`0.050` is `0.05`); an unknown key names itself and the known ones.
#[test]
fn where_selects_on_any_resolved_parameter() {
    let s = Scratch::new("exports-where");
    let results = run_sweep(&s);
    let runs = |filters: &[&str]| -> Vec<String> {
        let csv = s.path("where.csv");
        let mut args = vec!["report", arg(&results), "--runs", "--csv", arg(&csv)];
        for f in filters {
            args.extend(["--where", f]);
        }
        let out = clorch(&args);
        assert!(out.status.success(), "{filters:?}: {}", text(&out.stderr));
        let body = std::fs::read_to_string(&csv).unwrap();
        let header: Vec<&str> = body.lines().next().unwrap().split(',').collect();
        let method = header.iter().position(|h| *h == "method").unwrap();
        body.lines().skip(1).map(|l| l.split(',').nth(method).unwrap().to_string()).collect()
    };
    assert_eq!(runs(&["optimizer=adam"]), ["l2", "l2"]);
    assert_eq!(runs(&["lr=0.050"]), ["sgd", "sgd"]);
    assert_eq!(runs(&["param.lr=0.1", "optimizer=sgd"]), ["sgd", "sgd"]);
    assert_eq!(runs(&["weight_decay=1e-3"]), ["l2", "l2"]);
    assert_eq!(runs(&["momentum=0"]).len(), 4, "sgd's default momentum is a parameter too");

    let out = clorch(&["report", arg(&results), "--where", "optimiser=adam"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("`optimiser`") && err.contains("known keys:") && err.contains("optimizer"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Issue 16: the series export's extension decides its format; an unknown one is bad input
/// and nothing is written.
#[test]
fn series_files_take_their_format_from_the_extension() {
    let s = Scratch::new("exports-series");
    let results = run_sweep(&s);
    let json = s.path("series.json");
    let out = clorch(&["report", arg(&results), "--series", arg(&json)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let first = &rows[0];
    for key in
        ["run", "stream", "method", "param.lr", "seed", "task", "on_task", "bin", "layer", "metric", "value"]
    {
        assert!(first.get(key).is_some(), "no {key} in {first}");
    }
    let bad = s.path("series.xlsx");
    let out = clorch(&["report", arg(&results), "--series", arg(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected .csv, .parquet or .json"), "{}", text(&out.stderr));
    assert!(!bad.exists());
}
