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
    let table = text(&planned.stdout);
    assert!(table.starts_with("16 runs: 4 sweep points × 1 method × 2 grid points × 2 seeds\n"), "{table}");

    let run = clorch(&[&["run", "-m", path(&r), "--no-progress"][..], &sweep].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report = text(&clorch(&["report", path(&results)]).stdout);
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| synthetic_permuted")).collect();
    assert_eq!(rows.len(), 8, "{report}");
    for hidden in ["[8]", "[16]"] {
        for batch in [8, 16] {
            for lr in ["0.05", "0.1"] {
                let grid = format!("lr={lr}, network.hidden={hidden}, training.batch_size={batch} ");
                let row =
                    rows.iter().find(|r| r.contains(&grid)).unwrap_or_else(|| panic!("{grid}\n{report}"));
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
    // The machine tables give each axis a typed column of its own.
    let json = s.path("runs.json");
    let exported = clorch(&["report", path(&results), "--runs", "--json", path(&json)]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(rows.len(), 16);
    for row in &rows {
        assert!(row["param.training.batch_size"].is_i64(), "{row}");
        assert!(row["param.lr"].is_f64(), "{row}");
        assert!(row["param.network.hidden"].is_string() || row["param.network.hidden"].is_array(), "{row}");
    }
    let distinct =
        |key: &str| rows.iter().map(|r| r[key].to_string()).collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(
        (distinct("param.network.hidden"), distinct("param.training.batch_size"), distinct("param.lr")),
        (2, 2, 2)
    );
}

/// Issue 16, finding 2: every `clorch run` is logged with its overrides, the recipe text it
/// read is kept by hash, and the HTML report shows the recipe as it ran (after `seeds=3`, not
/// the file's `seeds: 2`) with the overrides.
#[test]
fn every_run_is_logged_and_the_report_shows_the_recipe_as_it_ran() {
    let s = Scratch::new("provenance");
    let r = s.recipe("provenance", TINY);
    let results = s.path("results-provenance");
    let out = clorch(&["run", path(&r), "seeds=3", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = s.path("report.html");
    assert!(clorch(&["report", path(&results), "--html", path(&page)]).status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("seeds: 3") && !html.contains("seeds: 2"), "the recipe as it ran");
    assert!(html.contains("overrides applied: seeds=3"), "the overrides");

    let report = clorch(&["report", path(&results)]);
    let note =
        format!("note: {}: the latest `clorch run` of {} had overrides: seeds=3", path(&results), path(&r));
    assert!(text(&report.stderr).contains(&note), "{}", text(&report.stderr));

    let again = clorch(&["run", path(&r), "--no-progress"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let log = results::read_invocations(&results).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].overrides, ["seeds=3"]);
    assert_eq!(log[0].argv[1..4], ["run", path(&r), "seeds=3"]);
    assert!(log[1].overrides.is_empty());
    assert_eq!(log[0].recipe_hash, log[1].recipe_hash);
    assert_eq!(log[0].clorch_version, env!("CARGO_PKG_VERSION"));
    let kept = results::invocation::read_invoked_recipe(&results, &log[0]).unwrap();
    assert_eq!(kept, std::fs::read_to_string(&r).unwrap());
    assert_eq!(
        std::fs::read_to_string(results.join("recipe.yaml")).unwrap(),
        kept,
        "no overrides: the file's text"
    );
}

/// Issue 16, finding 4: runs a later plan reuses take that plan's labels — in the report, the
/// status and after `clorch store rebuild` — instead of keeping the ones they were created with.
#[test]
fn reused_runs_take_the_labels_of_the_current_plan_everywhere() {
    let s = Scratch::new("labels");
    let body = TINY.replace("{name: sgd, lr: 0.05}", "{name: l2, lr: 0.05, weight_decay: 0.001}");
    let r = s.recipe("labels", &body);
    let results = s.path("results-labels");
    assert!(clorch(&["run", path(&r), "--no-progress"]).status.success());
    let out = clorch(&["run", path(&r), "methods.l2.weight_decay=[0.001,0.01]", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let check = |when: &str| {
        let report = text(&clorch(&["report", path(&results)]).stdout);
        assert!(report.contains("| weight_decay=0.001 |    2 |"), "{when}:\n{report}");
        assert!(report.contains("| weight_decay=0.01  |    2 |"), "{when}:\n{report}");
        let status = text(&clorch(&["status", path(&results)]).stdout);
        assert_eq!(status.matches("weight_decay=0.001 ").count(), 2, "{when}:\n{status}");
    };
    check("after the run");
    let rebuilt = clorch(&["store", "rebuild", path(&results)]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    check("after store rebuild");
}

/// Issue 16, finding 5: `clorch status` counts the runs of the latest plan, as the report does;
/// `--all` adds those of earlier plans.
#[test]
fn status_shows_the_latest_plans_runs_and_all_with_all() {
    let s = Scratch::new("status-plan");
    let r = s.recipe("status-plan", TINY);
    let results = s.path("results-status-plan");
    assert!(clorch(&["run", path(&r), "seeds=4", "--no-progress"]).status.success());
    assert!(clorch(&["run", path(&r), "--no-progress"]).status.success());
    let status = text(&clorch(&["status", path(&results)]).stdout);
    assert!(status.starts_with("status-plan: 2 runs\n2 finished"), "{status}");
    let all = text(&clorch(&["status", path(&results), "--all"]).stdout);
    assert!(all.starts_with("status-plan: 4 runs\n4 finished"), "{all}");
    let report = text(&clorch(&["report", path(&results)]).stdout);
    assert!(report.contains("|    2 |"), "{report}");
}

/// Issue 16, findings 3 and 5: after Ctrl-C the hint repeats the whole command (overrides and
/// `-o`, shell-quoted), and `clorch status` shows the interrupted run's checkpoint.
#[test]
fn ctrl_c_hints_the_whole_command_and_status_shows_the_checkpoint() {
    let s = Scratch::new("interrupt");
    let long =
        TINY.replace("tasks: 2,", "tasks: 400,").replace("train_per_class: 20", "train_per_class: 300");
    let r = s.recipe("interrupt", &long);
    let results = s.path("elsewhere");
    let mut child = std::process::Command::new(common::CLORCH)
        .args(["run", path(&r), "seeds=1", "network.hidden=[16]", "-o", path(&results), "--no-progress"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the run is past its second task: it is resumable from then on.
    loop {
        let events = std::fs::read_dir(results.join("runs"))
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("events.jsonl")).ok())
            .collect::<String>();
        if events.contains(r#""event":"task_started","task":2"#) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let hint = format!(
        "`{} run {} seeds=1 'network.hidden=[16]' -o {} --no-progress` resumes them",
        common::CLORCH,
        path(&r),
        path(&results)
    );
    assert!(text(&out.stderr).contains(&hint), "{}\nexpected {hint}", text(&out.stderr));
    let status = text(&clorch(&["status", path(&results)]).stdout);
    assert!(status.contains("interrupted") && status.contains("ago, resumable"), "{status}");
}

/// Issue 16, finding 6: `clorch validate` refuses what `clorch run` would refuse — a NIWF
/// rollback naming a task that `stream.tasks=3` removed, a results folder clorch did not write
/// — with exit 2 and without creating anything.
#[test]
fn validate_catches_what_run_would_refuse() {
    let s = Scratch::new("validate");
    // NIWF needs task identity: one head per task.
    let body = TINY
        .replace("tasks: 2,", "tasks: 5,")
        .replace("hidden: [8]}", "hidden: [8], heads: per_task}")
        .replace(
            "  - {name: sgd, lr: 0.05}",
            "  - {name: sgd, lr: 0.05}\n  - {name: niwf-hard, kind: niwf, lock: hard, rollback: [[0, 4]]}",
        );
    let r = s.recipe("validate", &body);
    assert!(clorch(&["validate", path(&r)]).status.success());
    for command in ["validate", "run"] {
        let out = clorch(&[command, path(&r), "stream.tasks=3"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.contains("method `niwf-hard`") && err.contains("name task 4, but the stream has 3 tasks"),
            "{err}"
        );
        assert!(!s.path("results-validate").exists(), "{command} created the results folder");
    }
    std::fs::create_dir(s.path("results-validate")).unwrap();
    std::fs::write(s.path("results-validate/notes.txt"), "mine").unwrap();
    let out = clorch(&["validate", path(&r)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("it is not a clorch results folder"), "{}", text(&out.stderr));
}

/// Issue 16, finding 2: `clorch compare` of an experiment and its rerun with an override names
/// the overridden key and both values, though the recipe files are the same.
#[test]
fn compare_names_what_differs_between_the_experiments() {
    let s = Scratch::new("compare");
    let r = s.recipe("compare", TINY);
    let (a, b) = (s.path("a"), s.path("b"));
    assert!(clorch(&["run", path(&r), "-o", path(&a), "--no-progress"]).status.success());
    let out = clorch(&["run", path(&r), "-o", path(&b), "training.epochs=2", "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = clorch(&["compare", path(&a), path(&b)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("differ in:")
            && err.contains(&format!("training.epochs  ({}: 1, {}: 2)", path(&a), path(&b))),
        "{err}"
    );
}
