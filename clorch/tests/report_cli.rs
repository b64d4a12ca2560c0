//! `clorch compare`, `clorch plot` and `clorch report --html` end to end, on two small
//! experiments run by the binary.

use std::path::{Path, PathBuf};

use test_support::{scratch, TempDir};

mod common;
use common::{clorch, text};

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a 3-task synthetic experiment named `name` with `methods`; returns its results folder.
fn experiment(s: &TempDir, name: &str, methods: &str) -> PathBuf {
    let results = s.path().join(format!("results-{name}"));
    let recipe = s.path().join(format!("{name}.yaml"));
    let body = format!(
        "name: {name}\noutput: {}\n
stream: {{kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}}
network: {{hidden: [16]}}
training: {{batch_size: 8, epochs: 2}}
methods:
{methods}
seeds: 2
",
        results.display()
    );
    std::fs::write(&recipe, body).unwrap();
    let out = clorch(&["run", arg(&recipe), "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    results
}

#[test]
fn compare_plot_and_html_work_on_experiments_the_binary_ran() {
    let s = scratch("all");
    let a = experiment(&s, "alpha", "  - {name: sgd, lr: 0.05}");
    let b =
        experiment(&s, "beta", "  - {name: sgd, lr: 0.05}\n  - {name: l2, lr: 0.05, weight_decay: 0.001}");

    // One table across both: a row per experiment and method.
    let csv = s.path().join("compare.csv");
    let out = clorch(&["compare", arg(&a), arg(&b), "--metrics", "acc,forgetting", "--csv", arg(&csv)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("| Experiment |"), "{table}");
    for row in [
        "| alpha      | synthetic_permuted | sgd ",
        "| beta       | synthetic_permuted | sgd ",
        "| beta       | synthetic_permuted | l2 ",
    ] {
        assert!(table.contains(row), "no `{row}` in\n{table}");
    }
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv.starts_with(
            "experiment,stream,method,grid,param.lr,param.momentum,param.optimizer,param.weight_decay,runs,\
             finished,acc_mean,"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4);

    // Bad uses are refused with a reason.
    let out = clorch(&["compare", arg(&a), arg(&a)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is given twice"), "{}", text(&out.stderr));
    let out = clorch(&["compare", arg(&a)]);
    assert_eq!(out.status.code(), Some(2), "one folder is not a comparison");
    let out = clorch(&["compare", arg(&a), arg(&s.path().join("nowhere"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a clorch results folder"), "{}", text(&out.stderr));

    // Figures: listed on stdout, written where asked.
    let plots = s.path().join("plots");
    let out = clorch(&["plot", arg(&b), "--out", arg(&plots), "--format", "svg"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
    let names: Vec<String> =
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "accuracy-matrix-synthetic-permuted-sgd.svg",
            "task-accuracy-synthetic-permuted-sgd.svg",
            "accuracy-matrix-synthetic-permuted-l2.svg",
            "task-accuracy-synthetic-permuted-l2.svg",
            "online-accuracy-synthetic-permuted.svg",
            "plasticity-synthetic-permuted.svg",
        ]
    );
    for f in &files {
        assert!(std::fs::read_to_string(f).unwrap().contains("<svg"), "{}", f.display());
    }
    let out = clorch(&["plot", arg(&a)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(a.join("plots/online-accuracy-synthetic-permuted.png").is_file(), "default folder and format");
    let out = clorch(&["plot", arg(&a), "--format", "pdf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown figure format `pdf`; expected png or svg"),
        "{}",
        text(&out.stderr)
    );

    // The HTML report, for one experiment and for the comparison.
    let page = s.path().join("alpha.html");
    let out = clorch(&["report", arg(&a), "--html", arg(&page)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<h1>Experiment: alpha</h1>")
            && html.contains(r#"<table id="results-table""#)
            && html.contains("<svg")
    );
    assert!(html.contains("<pre>name: alpha\n"), "the recipe text");
    let page = s.path().join("both.html");
    let out = clorch(&["compare", arg(&a), arg(&b), "--html", arg(&page)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h1>Comparison: alpha, beta</h1>"), "{html}");
    assert!(html.contains("<th>Experiment</th>"));
}
