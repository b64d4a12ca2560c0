//! Report tests on small stores whose numbers are computed by hand.

use std::collections::BTreeMap;

use metrics::AccuracyMatrix;
use polars::prelude::{DataType, ParquetReader, SerReader};
use protocol::payload::{CbpReplaced, ClnpActivity, ClnpCapacity, ClnpLayer, MeasuredOn, NiwfCommit};
use protocol::{Event, EventBody, LayerPlasticity, MethodPayload};

use super::*;
use results::{RunLabels, RunRecord, RunStatus};
use runner::store::Store;

/// What one fixture run measures.
pub(crate) struct Measured {
    /// R[i][j].
    pub matrix: Vec<Vec<f64>>,
    /// b_j.
    pub baseline: Vec<f64>,
    /// Per task, the online accuracies of its bins (each bin 10 examples, loss = 1 − acc).
    pub online: Vec<Vec<f64>>,
    /// (dead, effective rank, mean |w|) at each plasticity measurement (two layers, equal).
    pub plasticity: Vec<(f64, f64, f64)>,
}

fn layer(dead: f64, rank: f64) -> LayerPlasticity {
    LayerPlasticity {
        units: 16,
        dead,
        dormant: dead,
        effective_rank: rank,
        stable_rank: 3,
        mean_abs_weight: 0.1,
    }
}

/// The events a worker would emit for `m`.
pub(crate) fn events(id: &str, m: &Measured, finish: bool) -> Vec<Event> {
    let tasks = m.matrix.len();
    let mut out = Vec::new();
    let mut push = |body| {
        let seq = out.len() as u64;
        out.push(Event { run: id.to_string(), seq, body });
    };
    push(EventBody::Started {
        protocol: 1,
        tasks,
        inputs: 8,
        outputs: 10,
        heads: 1,
        parameters: 100,
        problem: "classification".into(),
    });
    for (j, &b) in m.baseline.iter().enumerate() {
        push(EventBody::Eval {
            after_task: None,
            on_task: j,
            examples: 50,
            loss: 2.3,
            accuracy: Some(b),
            variant: None,
        });
    }
    let plasticity = |i: usize| {
        let (dead, rank, w) = m.plasticity[i];
        EventBody::Plasticity {
            after_tasks: i,
            probe_task: i,
            probe_examples: 100,
            layers: vec![layer(dead, rank), layer(dead, rank)],
            mean_abs_weight: w,
        }
    };
    if !m.plasticity.is_empty() {
        push(plasticity(0));
    }
    for i in 0..tasks {
        push(EventBody::TaskStarted { task: i, head: 0, train_examples: 100 });
        for (bin, &acc) in m.online[i].iter().enumerate() {
            push(EventBody::Online { task: i, bin, examples: 10, loss: 1.0 - acc, accuracy: Some(acc) });
        }
        for (j, &acc) in m.matrix[i].iter().enumerate() {
            push(EventBody::Eval {
                after_task: Some(i),
                on_task: j,
                examples: 50,
                loss: 1.0 - acc,
                accuracy: Some(acc),
                variant: None,
            });
        }
        if m.plasticity.len() > i + 1 {
            push(plasticity(i + 1));
        }
    }
    if finish {
        push(EventBody::Finished { tasks, steps: 10, examples: 200 });
    }
    out
}

pub(crate) fn record(order: u64, method: &str, seed: u64, tasks: usize, status: RunStatus) -> RunRecord {
    let mut r = results::fixtures::record(order, tasks, method, 0.1, seed);
    r.status = status;
    r.attempts = 1;
    r
}

/// Adds a run with its events to `store`.
pub(crate) fn add(
    store: &Store,
    order: u64,
    method: &str,
    seed: u64,
    m: &Measured,
    status: RunStatus,
) -> RunRecord {
    let finish = status == RunStatus::Finished;
    let mut r = record(order, method, seed, m.matrix.len(), status);
    for e in events(&r.id, m, finish) {
        store.ingest(&e).unwrap();
        r.observe(&e, None);
    }
    r.times.wall_seconds = Some(10.0 + seed as f64);
    store.upsert_run(&r).unwrap();
    r
}

pub(crate) fn sgd(k: usize) -> Measured {
    let k = k as f64;
    Measured {
        matrix: vec![vec![0.90 + 0.01 * k, 0.10], vec![0.60 + 0.02 * k, 0.95]],
        baseline: vec![0.1, 0.1],
        online: vec![vec![0.5, 0.7], vec![0.8]],
        plasticity: vec![(0.0, 12.0, 0.1), (0.1, 11.0, 0.2), (0.2, 10.0, 0.3)],
    }
}

pub(crate) fn cbp(k: usize) -> Measured {
    let k = k as f64;
    Measured {
        matrix: vec![vec![0.90, 0.15], vec![0.85 + 0.01 * k, 0.93]],
        baseline: vec![0.1, 0.1],
        online: vec![vec![0.6, 0.8], vec![0.9]],
        plasticity: vec![(0.0, 12.0, 0.1), (0.0, 12.0, 0.1), (0.0, 12.0, 0.1)],
    }
}

pub(crate) fn l2(k: usize) -> Measured {
    let k = k as f64;
    Measured {
        matrix: vec![vec![0.90, 0.10], vec![0.80 + 0.02 * k, 0.90]],
        baseline: vec![0.1, 0.1],
        online: vec![vec![0.5, 0.75], vec![0.85]],
        plasticity: vec![(0.0, 12.0, 0.1), (0.05, 11.5, 0.15), (0.05, 11.0, 0.2)],
    }
}

/// sgd × 3 seeds (finished), cbp × 3 seeds (the third still running), l2 × 2 seeds.
pub(crate) fn fixture() -> Store {
    let store = Store::temporary().unwrap();
    let mut order = 0;
    let mut next = || {
        order += 1;
        order
    };
    for k in 0..3 {
        add(&store, next(), "sgd", k as u64 + 1, &sgd(k), RunStatus::Finished);
    }
    for k in 0..3 {
        let status = if k < 2 { RunStatus::Finished } else { RunStatus::Running };
        add(&store, next(), "cbp", k as u64 + 1, &cbp(k), status);
    }
    for k in 0..2 {
        add(&store, next(), "l2", k as u64 + 1, &l2(k), RunStatus::Finished);
    }
    store
}

fn close(a: Option<f64>, b: f64, tol: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < tol)
}

pub(crate) fn render(report: &Report, table: TableKind, format: Format) -> String {
    let mut out = Vec::new();
    report.write(table, format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn group_statistics_match_hand_computed_values() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let names: Vec<&str> = report.groups().iter().map(|g| g.method.as_str()).collect();
    assert_eq!(names, ["sgd", "cbp", "l2"], "groups follow the recipe's order");
    let sgd = &report.groups()[0];
    assert_eq!((sgd.runs, sgd.finished, sgd.grid_text.as_str()), (3, 3, "lr=0.1"));
    // ACC per seed = (R[1][0] + R[1][1]) / 2 = 0.775, 0.785, 0.795.
    let acc = sgd.cell(Metric::Acc);
    assert_eq!(acc.n, 3);
    assert!(close(acc.mean, 0.785, 1e-12));
    assert!(close(acc.std, 0.01, 1e-12));
    // t_{0.975,2} · 0.01 / √3, t_{0.975,2} = 0.95 / √(2 · 0.975 · 0.025) = 4.302652729749464
    assert!(close(acc.ci95, 0.024_841_377_117_503_31, 1e-12), "{:?}", acc.ci95);
    // BWT = R[1][0] − R[0][0] = −0.30, −0.29, −0.28; forgetting is its negative here.
    assert!(close(sgd.cell(Metric::Bwt).mean, -0.29, 1e-12));
    assert!(close(sgd.cell(Metric::Forgetting).mean, 0.29, 1e-12));
    assert!(close(sgd.cell(Metric::Fwt).mean, 0.0, 1e-12));
    assert!(close(sgd.cell(Metric::Fwt).ci95, 0.0, 1e-12));
    // Online: last bins 0.7 and 0.8.
    assert!(close(sgd.cell(Metric::FinalOnlineAcc).mean, 0.8, 1e-12));
    assert!(close(sgd.cell(Metric::MeanOnlineAcc).mean, 0.75, 1e-12));
    // Loss = 1 − acc, example-weighted: task 1 → 0.2; stream (0.5 + 0.3 + 0.2)/3.
    assert!(close(sgd.cell(Metric::FinalOnlineLoss).mean, 0.2, 1e-12));
    assert!(close(sgd.cell(Metric::MeanOnlineLoss).mean, 1.0 / 3.0, 1e-12));
    // Plasticity: last (0.2, 10, 0.3), first (0, 12, 0.1).
    assert!(close(sgd.cell(Metric::Dead).mean, 0.2, 1e-12));
    assert!(close(sgd.cell(Metric::DeadChange).mean, 0.2, 1e-12));
    assert!(close(sgd.cell(Metric::EffectiveRank).mean, 10.0, 1e-12));
    assert!(close(sgd.cell(Metric::EffectiveRankChange).mean, -2.0, 1e-12));
    assert!(close(sgd.cell(Metric::MeanAbsWeight).mean, 0.3, 1e-12));
    assert!(close(sgd.cell(Metric::MeanAbsWeightChange).mean, 0.2, 1e-12));
    assert!(close(sgd.cell(Metric::WallSeconds).mean, 12.0, 1e-12));

    // cbp: two of three finished. ACC = 0.89, 0.895; t_{0.975,1} = 12.706204736174707.
    let cbp = &report.groups()[1];
    assert_eq!((cbp.runs, cbp.finished), (3, 2));
    let acc = cbp.cell(Metric::Acc);
    assert_eq!(acc.n, 2);
    assert!(cbp.incomplete(Metric::Acc));
    assert!(close(acc.mean, 0.8925, 1e-12));
    let std = 0.005 / 2f64.sqrt();
    assert!(close(acc.std, std, 1e-12));
    assert!(close(acc.ci95, 12.706_204_736_174_707 * std / 2f64.sqrt(), 1e-12));
}

#[test]
fn report_numbers_equal_the_accuracy_matrix_functions() {
    let store = fixture();
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    for run in report.runs().iter().filter(|r| r.finished()) {
        let record = store.run(&run.id).unwrap().unwrap();
        let k = (record.labels.seed - 1) as usize;
        let m = match run.labels.method.as_str() {
            "sgd" => sgd(k),
            "cbp" => cbp(k),
            _ => l2(k),
        };
        let mut matrix = AccuracyMatrix::from_rows(&m.matrix);
        for (j, &b) in m.baseline.iter().enumerate() {
            matrix.set_baseline(j, b);
        }
        assert_eq!(run.value(Metric::Acc), Some(matrix.average_accuracy().unwrap()));
        assert_eq!(run.value(Metric::Bwt), Some(matrix.backward_transfer().unwrap()));
        assert_eq!(run.value(Metric::Fwt), Some(matrix.forward_transfer().unwrap()));
        assert_eq!(run.value(Metric::Forgetting), Some(matrix.forgetting().unwrap()));
        assert!(!run.flagged(), "{:?}", run.flags);
    }
}

#[test]
fn incomplete_cells_are_flagged_and_never_best() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    // cbp has the highest ACC mean (0.8925) but only 2 of 3 runs: l2 (0.855) is best.
    assert!(close(report.best(Metric::Acc), 0.855, 1e-12));
    assert!(close(report.best(Metric::Forgetting), 0.09, 1e-12));
    assert_eq!(report.best(Metric::MeanAbsWeight), None, "no direction, no best");
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(md.contains("| 0.893 ± 0.032 (2/3) |"), "{md}");
    assert!(md.contains("**0.855 ± 0.064**"), "{md}");
    assert!(md.contains("2/3"), "{md}");
}

/// ACC, BWT, FWT, forgetting, online accuracies, dead units and effective rank (the default
/// columns for classification); cbp is incomplete, FWT ties between sgd and l2.
const GOLDEN_MARKDOWN: &str = r"| Stream    | Method | Grid   | Runs |                 ACC |                  BWT |                 FWT |          Forgetting |   Final online acc. |    Mean online acc. |          Dead units |            Eff. rank |
|:----------|:-------|:-------|-----:|--------------------:|---------------------:|--------------------:|--------------------:|--------------------:|--------------------:|--------------------:|---------------------:|
| synthetic | sgd    | lr=0.1 |    3 |       0.785 ± 0.025 |       -0.290 ± 0.025 |   **0.000 ± 0.000** |       0.290 ± 0.025 |       0.800 ± 0.000 |       0.750 ± 0.000 |       0.200 ± 0.000 |       10.000 ± 0.000 |
| synthetic | cbp    | lr=0.1 |  2/3 | 0.893 ± 0.032 (2/3) | -0.045 ± 0.064 (2/3) | 0.050 ± 0.000 (2/3) | 0.045 ± 0.064 (2/3) | 0.900 ± 0.000 (2/3) | 0.850 ± 0.000 (2/3) | 0.000 ± 0.000 (2/3) | 12.000 ± 0.000 (2/3) |
| synthetic | l2     | lr=0.1 |    2 |   **0.855 ± 0.064** |   **-0.090 ± 0.127** |   **0.000 ± 0.000** |   **0.090 ± 0.127** |   **0.850 ± 0.000** |   **0.800 ± 0.000** |   **0.050 ± 0.000** |   **11.000 ± 0.000** |

± is the 95% confidence half-width of the mean (Student t over seeds); (n/N): only n of the group's N runs have a value; bold: best complete value.
";

const GOLDEN_LATEX: &str = r"\begin{tabular}{lllrrrr}
\toprule
Stream & Method & Grid & Runs & ACC & Forgetting & Mean $|w|$ \\
\midrule
synthetic & sgd & lr=0.1 & 3 & $0.785 \pm 0.025$ & $0.290 \pm 0.025$ & $0.300 \pm 0.000$ \\
synthetic & cbp & lr=0.1 & 2/3 & $0.893 \pm 0.032$ (2/3) & $0.045 \pm 0.064$ (2/3) & $0.100 \pm 0.000$ (2/3) \\
synthetic & l2 & lr=0.1 & 2 & $\mathbf{0.855 \pm 0.064}$ & $\mathbf{0.090 \pm 0.127}$ & $0.200 \pm 0.000$ \\
\bottomrule
\end{tabular}
";

#[test]
fn markdown_renders_the_golden_table() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert_eq!(md, GOLDEN_MARKDOWN, "\n{md}");
}

#[test]
fn latex_renders_the_golden_table() {
    let options = ReportOptions {
        metrics: Some(vec![Metric::Acc, Metric::Forgetting, Metric::MeanAbsWeight]),
        ..ReportOptions::default()
    };
    let report = Report::build(&fixture(), &options).unwrap();
    let tex = render(&report, TableKind::Groups, Format::Latex);
    assert_eq!(tex, GOLDEN_LATEX, "\n{tex}");
}

/// Issue 16: every integer is Int64 (seeds were UInt64, counts UInt32), `after_task` stays an
/// integer with nulls, and each method parameter is a typed `param.*` column.
#[test]
fn parquet_round_trips_with_typed_columns() {
    let options = ReportOptions { series: true, ..ReportOptions::default() };
    let report = Report::build(&fixture(), &options).unwrap();
    for table in [TableKind::Groups, TableKind::Runs, TableKind::PerTask, TableKind::Series] {
        let df = report.frame(table).unwrap();
        let bytes = {
            let mut out = Vec::new();
            report.write(table, Format::Parquet, &mut out).unwrap();
            out
        };
        let back = ParquetReader::new(std::io::Cursor::new(bytes)).finish().unwrap();
        assert!(back.equals_missing(&df), "{table:?}:\n{df}\n{back}");
        assert_eq!(back.schema(), df.schema());
    }
    let groups = report.frame(TableKind::Groups).unwrap();
    let dtype = |name: &str| groups.column(name).unwrap().dtype().clone();
    assert_eq!(dtype("stream"), DataType::String);
    assert_eq!(dtype("runs"), DataType::Int64);
    assert_eq!(dtype("param.lr"), DataType::Float64);
    assert_eq!(dtype("acc_mean"), DataType::Float64);
    assert_eq!(dtype("acc_ci95"), DataType::Float64);
    assert_eq!(dtype("acc_n"), DataType::Int64);
    let runs = report.frame(TableKind::Runs).unwrap();
    for name in ["seed", "attempts", "tasks"] {
        assert_eq!(runs.column(name).unwrap().dtype(), &DataType::Int64, "{name}");
    }
    assert_eq!(runs.column("param.lr").unwrap().dtype(), &DataType::Float64);
    let per_task = report.frame(TableKind::PerTask).unwrap();
    assert_eq!(per_task.column("after_task").unwrap().dtype(), &DataType::Int64);
    assert_eq!(per_task.column("param.lr").unwrap().dtype(), &DataType::Float64);
    assert_eq!(per_task.column("after_task").unwrap().null_count(), 2 * 8, "b_j rows");
    assert_eq!(per_task.height(), 8 * (2 + 4));
}

#[test]
fn machine_tables_have_the_documented_columns() {
    let options = ReportOptions { metrics: Some(vec![Metric::Acc]), ..ReportOptions::default() };
    let report = Report::build(&fixture(), &options).unwrap();
    let names = |t| -> Vec<String> {
        report.frame(t).unwrap().get_column_names().iter().map(|n| n.to_string()).collect()
    };
    assert_eq!(
        names(TableKind::Groups),
        [
            "stream", "method", "grid", "param.lr", "runs", "finished", "acc_mean", "acc_std", "acc_ci95",
            "acc_n"
        ]
    );
    assert_eq!(
        names(TableKind::Runs),
        [
            "run", "stream", "method", "grid", "param.lr", "seed", "status", "failure", "attempts", "tasks",
            "acc", "flagged", "flags"
        ]
    );
    assert_eq!(
        names(TableKind::PerTask),
        ["run", "stream", "method", "grid", "param.lr", "seed", "after_task", "on_task", "accuracy", "loss"]
    );
    assert_eq!(
        names(TableKind::Series),
        [
            "run", "stream", "method", "grid", "param.lr", "seed", "task", "on_task", "bin", "layer",
            "metric", "value"
        ]
    );
    let csv = render(&report, TableKind::Groups, Format::Csv);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("stream,method,grid,param.lr,runs,finished,acc_mean,acc_std,acc_ci95,acc_n")
    );
    let sgd: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(sgd[..6], ["synthetic", "sgd", "lr=0.1", "0.1", "3", "3"], "{csv}");
    assert!((sgd[6].parse::<f64>().unwrap() - 0.785).abs() < 1e-12, "{csv}");
    assert_eq!(sgd[9], "3");
    let json = render(&report, TableKind::Groups, Format::Json);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[1]["method"], "cbp");
    assert_eq!(rows[1]["acc_n"], 2);
    assert!(
        json.lines()
            .nth(1)
            .unwrap()
            .starts_with(r#"{"stream":"synthetic","method":"sgd","grid":"lr=0.1","param.lr":0.1,"runs":3"#),
        "{json}"
    );
    // The running run has no numbers and no flags; JSON writes its nulls as null.
    let runs = render(&report, TableKind::Runs, Format::Json);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[5]["status"], "running");
    assert_eq!(runs[5]["acc"], serde_json::Value::Null);
    assert_eq!(runs[5]["flagged"], false);
}

/// Issue 16: the long time series holds every online bin, accuracy-matrix entry, plasticity
/// diagnostic (per layer and averaged) and method number, with one task numbering: the task
/// trained (online) or last trained (the rest; null before the first).
#[test]
fn the_series_table_holds_every_measurement_in_long_format() {
    let store = Store::temporary().unwrap();
    let r = add(&store, 0, "cbp", 1, &sgd(0), RunStatus::Finished);
    let replaced = CbpReplaced { task: vec![3, 1], total: vec![5, 2] };
    let bodies = [
        EventBody::Method { task: 1, payload: MethodPayload::CbpReplaced(replaced) },
        capacity_event(1, &[(3, 1)]),
    ];
    for (seq, body) in bodies.into_iter().enumerate() {
        store.ingest(&Event { run: r.id.clone(), seq: 100 + seq as u64, body }).unwrap();
    }
    let report = Report::build(&store, &ReportOptions { series: true, ..ReportOptions::default() }).unwrap();
    let df = report.frame(TableKind::Series).unwrap();
    /// (task, on_task, bin, layer, value) of a row.
    type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>, f64);
    let rows = |metric: &str| -> Vec<Row> {
        let pick = |name: &str, i: usize| df.column(name).unwrap().i64().unwrap().get(i);
        let metrics = df.column("metric").unwrap().str().unwrap();
        let values = df.column("value").unwrap().f64().unwrap();
        (0..df.height())
            .filter(|&i| metrics.get(i) == Some(metric))
            .map(|i| {
                (
                    pick("task", i),
                    pick("on_task", i),
                    pick("bin", i),
                    pick("layer", i),
                    values.get(i).unwrap(),
                )
            })
            .collect()
    };
    // online bins of sgd(0): task 0 has two bins, task 1 one.
    assert_eq!(
        rows("online.accuracy"),
        [
            (Some(0), None, Some(0), None, 0.5),
            (Some(0), None, Some(1), None, 0.7),
            (Some(1), None, Some(0), None, 0.8)
        ]
    );
    assert_eq!(rows("online.loss").len(), 3);
    // b_j has no task; R[i][j] its row.
    let eval = rows("eval.accuracy");
    assert_eq!(eval.len(), 2 + 4);
    assert_eq!(eval[0], (None, Some(0), None, None, 0.1));
    assert_eq!(eval[2], (Some(0), Some(0), None, None, 0.90));
    // Plasticity after 0, 1, 2 tasks: the task last trained is none, 0, 1; two layers each.
    let dead = rows("plasticity.dead");
    let per_layer: Vec<_> = dead.iter().filter(|r| r.3.is_some()).map(|r| (r.0, r.3)).collect();
    assert_eq!(
        per_layer,
        [
            (None, Some(0)),
            (None, Some(1)),
            (Some(0), Some(0)),
            (Some(0), Some(1)),
            (Some(1), Some(0)),
            (Some(1), Some(1))
        ]
    );
    assert_eq!(dead.iter().filter(|r| r.3.is_none()).count(), 3, "layer means");
    // The method events' numbers, by path; a `layers` list's index goes to the layer column.
    assert_eq!(rows("cbp.replaced.task.1"), [(Some(1), None, None, None, 1.0)]);
    assert_eq!(rows("cbp.replaced.total.0"), [(Some(1), None, None, None, 5.0)]);
    assert_eq!(rows("clnp.capacity.layers.used"), [(Some(1), None, None, Some(0), 3.0)]);
    assert_eq!(rows("clnp.capacity.layers.free"), [(Some(1), None, None, Some(0), 1.0)]);
    // Without asking, the report keeps no points.
    let plain = Report::build(&store, &ReportOptions::default()).unwrap();
    assert_eq!(plain.frame(TableKind::Series).unwrap().height(), 0);
}

/// Issue 16: an axis of a run's grid point outside the method's parameters (a sweep over
/// `training.batch_size`) is a typed column too, and `--where` selects on it.
#[test]
fn grid_axes_outside_the_method_become_typed_columns() {
    let store = Store::temporary().unwrap();
    for (order, batch) in [(0, 16), (1, 32)] {
        let mut r = add(&store, order, "sgd", 1 + order, &sgd(0), RunStatus::Finished);
        r.labels.grid.insert("training.batch_size".into(), serde_json::json!(batch));
        store.upsert_run(&r).unwrap();
    }
    let options = ReportOptions {
        filters: vec!["training.batch_size=32".parse().unwrap()],
        ..ReportOptions::default()
    };
    let report = Report::build(&store, &options).unwrap();
    assert_eq!(report.runs().len(), 1);
    let runs = Report::build(&store, &ReportOptions::default()).unwrap().frame(TableKind::Runs).unwrap();
    let column = runs.column("param.training.batch_size").unwrap();
    assert_eq!(column.dtype(), &DataType::Int64);
    assert_eq!(column.i64().unwrap().iter().collect::<Vec<_>>(), [Some(16), Some(32)]);
}

#[test]
fn missing_matrix_entries_null_the_metric_and_flag_the_run() {
    let store = Store::temporary().unwrap();
    let r = add(&store, 0, "sgd", 1, &sgd(0), RunStatus::Finished);
    // Drop the run's R[0][0] entry: BWT and forgetting need it, ACC and FWT do not.
    let kept: Vec<Event> = store
        .events(&r.id)
        .map(Result::unwrap)
        .filter(|e| !matches!(e.body, EventBody::Eval { after_task: Some(0), on_task: 0, .. }))
        .collect();
    let fresh = Store::temporary().unwrap();
    fresh.upsert_run(&r).unwrap();
    for e in &kept {
        fresh.ingest(e).unwrap();
    }
    let options = ReportOptions {
        metrics: Some(vec![Metric::Acc, Metric::Bwt, Metric::Fwt, Metric::Forgetting]),
        ..ReportOptions::default()
    };
    let report = Report::build(&fresh, &options).unwrap();
    let run = &report.runs()[0];
    assert!(run.value(Metric::Acc).is_some() && run.value(Metric::Fwt).is_some());
    assert_eq!((run.value(Metric::Bwt), run.value(Metric::Forgetting)), (None, None));
    assert_eq!(
        run.flags,
        ["BWT needs R[0][0], which was not measured", "forgetting needs R[0][0], which was not measured"]
    );
    let group = &report.groups()[0];
    assert!(group.incomplete(Metric::Bwt) && !group.incomplete(Metric::Acc));
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(md.contains("— (0/1)"), "{md}");
    let runs = report.frame(TableKind::Runs).unwrap();
    assert_eq!(runs.column("flagged").unwrap().bool().unwrap().get(0), Some(true));
}

#[test]
fn undefined_metrics_are_null_not_nan() {
    // One task: ACC is defined, transfer and forgetting are not, and nothing is flagged.
    let store = Store::temporary().unwrap();
    let one = Measured {
        matrix: vec![vec![0.8]],
        baseline: vec![0.1],
        online: vec![vec![0.7]],
        plasticity: vec![],
    };
    add(&store, 0, "sgd", 1, &one, RunStatus::Finished);
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let run = &report.runs()[0];
    assert_eq!(run.value(Metric::Acc), Some(0.8));
    for m in [Metric::Bwt, Metric::Fwt, Metric::Forgetting, Metric::Dead, Metric::DeadChange] {
        assert_eq!(run.value(m), None, "{m}");
    }
    assert!(!run.flagged());
    // Default columns drop metrics no run has.
    assert_eq!(report.metrics(), [Metric::Acc, Metric::FinalOnlineAcc, Metric::MeanOnlineAcc]);
    let csv = render(&report, TableKind::Groups, Format::Csv);
    assert!(!csv.to_lowercase().contains("nan"), "{csv}");
}

#[test]
fn regression_runs_report_online_loss_instead_of_accuracy() {
    let store = Store::temporary().unwrap();
    let mut r = record(0, "sgd", 1, 2, RunStatus::Finished);
    let id = r.id.clone();
    let mut seq = 0;
    let mut ev = |body| {
        seq += 1;
        Event { run: id.clone(), seq: seq - 1, body }
    };
    let mut list = vec![ev(EventBody::Started {
        protocol: 1,
        tasks: 2,
        inputs: 20,
        outputs: 1,
        heads: 1,
        parameters: 100,
        problem: "regression".into(),
    })];
    for (task, losses) in [(0usize, [4.0, 2.0]), (1, [3.0, 1.0])] {
        for (bin, loss) in losses.into_iter().enumerate() {
            list.push(ev(EventBody::Online { task, bin, examples: 100, loss, accuracy: None }));
        }
        list.push(ev(EventBody::Eval {
            after_task: Some(task),
            on_task: task,
            examples: 10,
            loss: 0.5,
            accuracy: None,
            variant: None,
        }));
    }
    list.push(ev(EventBody::Finished { tasks: 2, steps: 400, examples: 400 }));
    for e in &list {
        store.ingest(e).unwrap();
        r.observe(e, None);
    }
    store.upsert_run(&r).unwrap();
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let run = &report.runs()[0];
    assert!(run.regression);
    assert_eq!(run.value(Metric::Acc), None);
    assert_eq!(run.value(Metric::FinalOnlineAcc), None);
    assert_eq!(run.value(Metric::FinalOnlineLoss), Some(2.0));
    assert_eq!(run.value(Metric::MeanOnlineLoss), Some(2.5));
    assert!(!run.flagged(), "{:?}", run.flags);
    assert_eq!(report.metrics(), [Metric::FinalOnlineLoss, Metric::MeanOnlineLoss]);
    assert_eq!(report.best(Metric::MeanOnlineLoss), Some(2.5));
}

#[test]
fn filters_metrics_and_sort_shape_the_tables() {
    let store = fixture();
    let options = ReportOptions {
        filters: vec!["method=sgd".parse().unwrap(), "method=l2".parse().unwrap()],
        metrics: Some(vec![Metric::Forgetting]),
        sort: Some(Metric::Forgetting),
        ..ReportOptions::default()
    };
    let report = Report::build(&store, &options).unwrap();
    let methods: Vec<&str> = report.groups().iter().map(|g| g.method.as_str()).collect();
    assert_eq!(methods, ["l2", "sgd"], "lower forgetting first");
    let seeds: Vec<(&str, u64)> =
        report.runs().iter().map(|r| (r.labels.method.as_str(), r.labels.seed)).collect();
    assert_eq!(seeds, [("l2", 2), ("l2", 1), ("sgd", 3), ("sgd", 2), ("sgd", 1)]);
    let options = ReportOptions {
        filters: vec!["lr=0.1".parse().unwrap(), "seed=1".parse().unwrap()],
        ..ReportOptions::default()
    };
    let report = Report::build(&store, &options).unwrap();
    assert_eq!(report.runs().len(), 3);
    assert!(report.groups().iter().all(|g| g.runs == 1));
    let err = Report::build(
        &store,
        &ReportOptions { filters: vec!["alpha=1".parse().unwrap()], ..ReportOptions::default() },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no run has a label or method parameter `alpha`"), "{err}");
}

#[test]
fn formats_parse_by_name_or_extension() {
    assert_eq!("md".parse::<Format>().unwrap(), Format::Markdown);
    assert_eq!("LaTeX".parse::<Format>().unwrap(), Format::Latex);
    assert_eq!("tex".parse::<Format>().unwrap(), Format::Latex);
    assert_eq!("parquet".parse::<Format>().unwrap(), Format::Parquet);
    let err = "xlsx".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("unknown format `xlsx`"), "{err}");
}

#[test]
fn a_store_rebuilt_from_run_folders_gives_the_same_report() {
    use results::{run_dir, write_experiment_files, write_run_spec, ExperimentMeta};
    use runner::store::rebuild;
    use std::io::Write;
    let scratch = test_support::scratch("report-rebuild");
    let results = scratch.path();
    let live = Store::open(results).unwrap();
    let meta = ExperimentMeta::new("fixture", "name: fixture\n", 1);
    write_experiment_files(results, &meta).unwrap();
    live.put_experiment(&meta).unwrap();
    type Plan = (&'static str, fn(usize) -> Measured, usize);
    let plan: [Plan; 3] = [("sgd", sgd, 3), ("cbp", cbp, 3), ("l2", l2, 2)];
    let mut order = 0;
    for (method, measure, seeds) in plan {
        for k in 0..seeds {
            let finished = !(method == "cbp" && k == 2);
            let status = if finished { RunStatus::Finished } else { RunStatus::Running };
            let mut r = record(order, method, k as u64 + 1, 2, RunStatus::Running);
            order += 1;
            let dir = run_dir(results, &r.id);
            live.save_run(&r).unwrap();
            write_run_spec(&dir, &r.spec).unwrap();
            let mut file = std::fs::File::create(dir.join(protocol::files::EVENTS)).unwrap();
            for e in events(&r.id, &measure(k), finished) {
                file.write_all(protocol::line::encode(&e).as_bytes()).unwrap();
                live.ingest(&e).unwrap();
                r.observe(&e, None);
            }
            r.status = status;
            live.save_run(&r).unwrap();
        }
    }
    live.flush().unwrap();
    let rebuilt = Store::temporary().unwrap();
    rebuild(results, &rebuilt).unwrap();
    let options = ReportOptions { metrics: Some(Metric::ALL.to_vec()), ..ReportOptions::default() };
    let a = Report::build(&live, &options).unwrap();
    let b = Report::build(&rebuilt, &options).unwrap();
    // The running run becomes interrupted in the rebuild (the orchestrator is gone); that is
    // the only difference, and it changes no number.
    assert_eq!(rebuilt.runs().unwrap().iter().filter(|r| r.status == RunStatus::Interrupted).count(), 1);
    for table in [TableKind::Groups, TableKind::PerTask] {
        for format in [Format::Markdown, Format::Latex, Format::Csv, Format::Json] {
            assert_eq!(render(&a, table, format), render(&b, table, format), "{table:?} {format}");
        }
        assert!(a.frame(table).unwrap().equals_missing(&b.frame(table).unwrap()));
    }
    assert_eq!(a.experiment(), Some("fixture"));
    assert_eq!(b.experiment(), Some("fixture"));
    drop(live);
}

#[test]
fn grid_values_of_any_type_group_and_render() {
    let store = Store::temporary().unwrap();
    let mut r = record(0, "cbp", 1, 2, RunStatus::Finished);
    let mut grid = BTreeMap::new();
    grid.insert("opt".to_string(), serde_json::json!("adam"));
    grid.insert("rho".to_string(), serde_json::json!(1e-4));
    r.labels = RunLabels { grid, ..r.labels };
    for e in events(&r.id, &sgd(0), true) {
        store.ingest(&e).unwrap();
    }
    store.upsert_run(&r).unwrap();
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    assert_eq!(report.groups()[0].grid_text, "opt=adam, rho=0.0001");
    let tex = render(&report, TableKind::Runs, Format::Latex);
    assert!(tex.contains("opt=adam, rho=0.0001"), "{tex}");
}

#[test]
fn runs_and_per_task_tables_render_status_and_baselines() {
    let store = fixture();
    let mut failed =
        record(99, "l2", 9, 2, RunStatus::Failed { failure: results::Failure::Signaled { signal: 9 } });
    failed.attempts = 3;
    store.upsert_run(&failed).unwrap();
    let options = ReportOptions { filters: vec!["method=l2".parse().unwrap()], ..ReportOptions::default() };
    let report = Report::build(&store, &options).unwrap();
    let md = render(&report, TableKind::Runs, Format::Markdown);
    assert!(md.contains("| failed: worker killed by signal 9 (SIGKILL) |        3 |"), "{md}");
    assert!(md.contains("| finished"), "{md}");
    // The failed run makes the l2 group incomplete: 2 of 3 finished.
    assert_eq!((report.groups()[0].finished, report.groups()[0].runs), (2, 3));
    let per_task = render(&report, TableKind::PerTask, Format::Markdown);
    assert_eq!(per_task.lines().filter(|l| l.contains("|          — |")).count(), 4, "{per_task}");
    let tex = render(&report, TableKind::PerTask, Format::Latex);
    assert!(tex.contains(" & --- & 0 & $0.100$ & $2.300$ \\\\"), "{tex}");
}

#[test]
fn the_spread_can_be_the_standard_deviation() {
    let options = ReportOptions {
        metrics: Some(vec![Metric::Acc]),
        spread: Spread::Std,
        precision: 4,
        ..ReportOptions::default()
    };
    let report = Report::build(&fixture(), &options).unwrap();
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(md.contains(" 0.7850 ± 0.0100 |"), "{md}");
    assert!(md.contains(" **0.8550 ± 0.0071** |"), "{md}");
    assert!(md.contains("± is the sample standard deviation over seeds"), "{md}");
}

#[test]
fn stray_evaluations_and_non_finite_numbers_flag_the_run() {
    let store = Store::temporary().unwrap();
    let mut r = add(&store, 0, "sgd", 1, &sgd(0), RunStatus::Finished);
    let stray = Event {
        run: r.id.clone(),
        seq: 1_000,
        body: EventBody::Eval {
            after_task: Some(7),
            on_task: 0,
            examples: 5,
            loss: 0.1,
            accuracy: Some(0.9),
            variant: None,
        },
    };
    store.ingest(&stray).unwrap();
    // JSON cannot carry NaN or infinity, but finite losses can still overflow a sum.
    let huge = Event {
        run: r.id.clone(),
        seq: 1_001,
        body: EventBody::Online { task: 1, bin: 1, examples: 10, loss: 1e308, accuracy: Some(0.8) },
    };
    store.ingest(&huge).unwrap();
    r.times.wall_seconds = Some(5.0);
    store.upsert_run(&r).unwrap();
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let run = &report.runs()[0];
    assert_eq!(
        run.flags,
        [
            "1 evaluations name tasks outside the stream of 2 tasks; ignored",
            "final_online_loss is not a finite number",
            "mean_online_loss is not a finite number",
        ]
    );
    assert_eq!(run.value(Metric::MeanOnlineLoss), None);
    assert_eq!(run.value(Metric::FinalOnlineAcc), Some(0.8));
    assert!(run.value(Metric::Acc).is_some(), "the stray entry does not spoil the matrix");
}

fn named(store: Store, name: &str) -> Store {
    store.put_experiment(&results::ExperimentMeta::new(name, format!("name: {name}\n"), 1)).unwrap();
    store
}

#[test]
fn a_comparison_keys_groups_by_experiment_and_names_it_in_every_table() {
    let (a, b) = (named(fixture(), "first"), named(fixture(), "second"));
    let options = ReportOptions { metrics: Some(vec![Metric::Acc]), ..ReportOptions::default() };
    let report = Report::compare(&[&a, &b], &options).unwrap();
    assert!(report.is_comparison());
    assert_eq!(report.experiment(), None);
    let labels: Vec<&str> = report.experiments().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["first", "second"]);
    assert_eq!(report.experiments()[1].recipe.as_deref(), Some("name: second\n"));
    let groups: Vec<(&str, &str)> =
        report.groups().iter().map(|g| (g.experiment.as_str(), g.method.as_str())).collect();
    assert_eq!(
        groups,
        [
            ("first", "sgd"),
            ("first", "cbp"),
            ("first", "l2"),
            ("second", "sgd"),
            ("second", "cbp"),
            ("second", "l2")
        ]
    );
    // Same numbers as each experiment's own report; the best value is marked in both.
    let single = Report::build(&a, &options).unwrap();
    for (g, s) in report.groups()[3..].iter().zip(single.groups()) {
        assert_eq!(g.cells, s.cells);
    }
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(md.starts_with("| Experiment | Stream    | Method | Grid   | Runs |"), "{md}");
    assert_eq!(md.matches("**0.855 ± 0.064**").count(), 2, "{md}");
    let tex = render(&report, TableKind::Groups, Format::Latex);
    assert!(tex.contains("Experiment & Stream & Method") && tex.contains("second & synthetic & l2"), "{tex}");
    for table in [TableKind::Groups, TableKind::Runs, TableKind::PerTask] {
        let df = report.frame(table).unwrap();
        assert_eq!(df.get_column_names()[0].as_str(), "experiment", "{table:?}");
        let first = df.column("experiment").unwrap().str().unwrap().get(0).map(str::to_string);
        assert_eq!(first.as_deref(), Some("first"));
    }
    assert_eq!(report.frame(TableKind::PerTask).unwrap().height(), 2 * 8 * (2 + 4));
    // A single experiment keeps its columns.
    assert_eq!(single.frame(TableKind::Groups).unwrap().get_column_names()[0].as_str(), "stream");
}

#[test]
fn experiments_sharing_a_name_are_told_apart() {
    let report = Report::compare(&[&fixture(), &fixture()], &ReportOptions::default()).unwrap();
    let labels: Vec<&str> = report.experiments().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["experiment 1", "experiment 2"], "no metadata, no folder: their positions");
    let (a, b) = (named(fixture(), "same"), named(fixture(), "same"));
    let report = Report::compare(&[&a, &b], &ReportOptions::default()).unwrap();
    let labels: Vec<&str> = report.experiments().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(labels, ["same (1)", "same (2)"]);
    assert_eq!(report.groups().len(), 6, "their runs (same ids) stay in separate groups");
}

#[test]
fn filters_of_a_comparison_apply_to_all_experiments() {
    let (a, b) = (named(fixture(), "first"), named(Store::temporary().unwrap(), "empty"));
    let options = ReportOptions { filters: vec!["method=l2".parse().unwrap()], ..ReportOptions::default() };
    let report = Report::compare(&[&a, &b], &options).unwrap();
    assert_eq!(report.groups().len(), 1);
    assert_eq!(report.runs().len(), 2);
    assert!(report.is_comparison(), "an experiment without matching runs still counts");
    let options = ReportOptions { filters: vec!["rho=1".parse().unwrap()], ..ReportOptions::default() };
    let err = Report::compare(&[&a, &b], &options).unwrap_err().to_string();
    assert!(err.contains("no run has a label or method parameter `rho`"), "{err}");
}

/// A `clnp.capacity` event after `task` with `(used, free)` units per hidden layer.
pub(crate) fn capacity_event(task: usize, layers: &[(u64, u64)]) -> EventBody {
    let layers = layers
        .iter()
        .map(|&(used, free)| {
            let (used, free) = (used as usize, free as usize);
            ClnpLayer { free, new: 0, pruned: 0, reused: 0, threshold: None, units: used + free, used }
        })
        .collect();
    EventBody::Method {
        task,
        payload: MethodPayload::ClnpCapacity(ClnpCapacity {
            accuracy_pruned: 0.9,
            accuracy_retrained: None,
            accuracy_unpruned: 0.9,
            activity: ClnpActivity::MeanActivation,
            evaluations: 1,
            examples: 100,
            layers,
            measured_on: MeasuredOn::Validation,
            threshold: None,
        }),
    }
}

#[test]
fn capacity_events_become_the_series_and_other_method_events_are_skipped() {
    let store = Store::temporary().unwrap();
    let r = add(&store, 0, "clnp", 1, &sgd(0), RunStatus::Finished);
    store.ingest(&Event { run: r.id.clone(), seq: 500, body: capacity_event(0, &[(3, 1)]) }).unwrap();
    let other = EventBody::Method {
        task: 0,
        payload: MethodPayload::CbpReplaced(CbpReplaced { task: vec![1, 2], total: vec![1, 2] }),
    };
    store.ingest(&Event { run: r.id.clone(), seq: 501, body: other }).unwrap();
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let run = &report.runs()[0];
    assert!(run.flags.is_empty(), "{:?}", run.flags);
    assert_eq!(
        run.series.capacity,
        [CapacityPoint {
            task: 0,
            layers: vec![LayerCapacity { used: 3.0, free: 1.0, new: 0.0, reused: 0.0 }]
        }]
    );
}

#[test]
fn series_keep_each_task_and_measurement() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let run = &report.runs()[0];
    assert_eq!(run.series.task_online_accuracy, [Some(0.7), Some(0.8)]);
    let losses: Vec<f64> = run.series.task_online_loss.iter().map(|l| l.unwrap()).collect();
    assert!((losses[0] - 0.4).abs() < 1e-12 && (losses[1] - 0.2).abs() < 1e-12, "{losses:?}");
    assert!(run.series.online_bins.is_empty(), "classification keeps per-task values only");
    let after: Vec<usize> = run.series.plasticity.iter().map(|p| p.after_tasks).collect();
    assert_eq!(after, [0, 1, 2]);
    assert_eq!(run.series.plasticity[2].dead, Some(0.2));
}

#[test]
fn evaluations_of_model_variants_become_rows_of_their_own() {
    let store = Store::temporary().unwrap();
    for seed in 0..2 {
        let r = add(&store, seed, "niwf", seed, &sgd(seed as usize), RunStatus::Finished);
        // A rollback to version 0 evaluated after the last task, on both tasks.
        let base = store.last_event_seq(&r.id).unwrap().unwrap() + 1;
        for (j, acc) in [(0usize, 0.91), (1, 0.12)] {
            store
                .ingest(&Event {
                    run: r.id.clone(),
                    seq: base + j as u64,
                    body: EventBody::Eval {
                        after_task: Some(1),
                        on_task: j,
                        examples: 50,
                        loss: 0.3,
                        accuracy: Some(acc),
                        variant: Some("version:0".into()),
                    },
                })
                .unwrap();
        }
    }
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let methods: Vec<&str> = report.groups().iter().map(|g| g.method.as_str()).collect();
    assert_eq!(methods, vec!["niwf", "niwf [version:0]"]);
    let variant = &report.groups()[1];
    assert!((variant.cell(Metric::Acc).mean.unwrap() - (0.91 + 0.12) / 2.0).abs() < 1e-12);
    // The main rows are untouched by the variant's evaluations.
    let main = &report.groups()[0];
    let expected =
        (sgd(0).matrix[1].iter().sum::<f64>() / 2.0 + sgd(1).matrix[1].iter().sum::<f64>() / 2.0) / 2.0;
    assert!((main.cell(Metric::Acc).mean.unwrap() - expected).abs() < 1e-12);
}

#[test]
fn a_metric_that_does_not_apply_to_a_group_is_a_dash_not_an_incomplete_cell() {
    let store = Store::temporary().unwrap();
    let one_task = |k: f64| Measured {
        matrix: vec![vec![0.9 + k]],
        baseline: vec![0.1],
        online: vec![vec![0.8]],
        plasticity: vec![],
    };
    add(&store, 0, "sgd", 0, &one_task(0.0), RunStatus::Finished);
    add(&store, 1, "sgd", 1, &one_task(0.01), RunStatus::Finished);
    let options = ReportOptions { metrics: Some(vec![Metric::Acc, Metric::Bwt]), ..ReportOptions::default() };
    let report = Report::build(&store, &options).unwrap();
    let group = &report.groups()[0];
    assert!(group.undefined(Metric::Bwt) && !group.incomplete(Metric::Bwt));
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(md.contains("—") && !md.contains("(0/2)"), "{md}");
}

/// Issue 20: a rollback or composition row is a snapshot evaluated beside the model; BWT, FWT
/// and forgetting computed from its rows meant nothing (a rollback's bold "0.000"). It shows
/// ACC only, and never takes the best-value marking, even with the highest ACC.
#[test]
fn variant_rows_show_acc_only_and_are_never_marked_best() {
    let store = Store::temporary().unwrap();
    for seed in 0..2 {
        let r = add(&store, seed, "niwf", seed, &sgd(seed as usize), RunStatus::Finished);
        let base = store.last_event_seq(&r.id).unwrap().unwrap() + 1;
        let rows = [(0usize, 0usize, 0.99), (1, 0, 0.99), (1, 1, 0.99)];
        for (k, (after, on, acc)) in rows.into_iter().enumerate() {
            let body = EventBody::Eval {
                after_task: Some(after),
                on_task: on,
                examples: 50,
                loss: 0.1,
                accuracy: Some(acc),
                variant: Some("version:1".into()),
            };
            store.ingest(&Event { run: r.id.clone(), seq: base + k as u64, body }).unwrap();
        }
    }
    let options = ReportOptions {
        metrics: Some(vec![Metric::Acc, Metric::Bwt, Metric::Forgetting]),
        ..ReportOptions::default()
    };
    let report = Report::build(&store, &options).unwrap();
    let variant = report.groups().iter().find(|g| g.method == "niwf [version:1]").unwrap();
    assert!(variant.variant && (variant.cell(Metric::Acc).mean.unwrap() - 0.99).abs() < 1e-12);
    for m in [Metric::Bwt, Metric::Fwt, Metric::Forgetting] {
        assert_eq!(variant.cell(m).n, 0, "{m:?}");
        assert!(variant.undefined(m), "{m:?} is a dash, not an incomplete cell");
    }
    let main = report.groups().iter().find(|g| g.method == "niwf").unwrap();
    assert_eq!(report.best(Metric::Acc), main.cell(Metric::Acc).mean);
    let md = render(&report, TableKind::Groups, Format::Markdown);
    let line = md.lines().find(|l| l.contains("niwf [version:1]")).unwrap();
    assert!(!line.contains("**") && line.contains("—"), "{line}");
    assert!(md.lines().any(|l| l.contains("| niwf ") && l.contains("**0.780")), "{md}");
}

/// Issue 20: a task committed inside an earlier region is flagged in the report, never a silent
/// bold zero.
#[test]
fn a_task_inside_a_committed_region_is_flagged() {
    let store = Store::temporary().unwrap();
    let r = add(&store, 0, "niwf", 0, &sgd(0), RunStatus::Finished);
    let base = store.last_event_seq(&r.id).unwrap().unwrap() + 1;
    for (k, (overlap, region)) in [(0.0, None), (1.0, Some(0))].into_iter().enumerate() {
        let commit = NiwfCommit {
            anchors: 4,
            bases: k + 1,
            field_checksum: "f".into(),
            frozen_bases: vec![k],
            lock_before: None,
            overlap,
            overlap_region: region,
            radius_anchor: 0.5,
            radius_lock: 1.0,
            region_checksum: "r".into(),
            task: k,
            version: k,
        };
        let body = EventBody::Method { task: k, payload: MethodPayload::NiwfCommit(commit) };
        store.ingest(&Event { run: r.id.clone(), seq: base + k as u64, body }).unwrap();
    }
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    let flags = &report.runs()[0].flags;
    assert_eq!(flags, &["task 1: 100% of its examples inside region 0, nothing learnt".to_string()]);
    // Its zero forgetting is not marked best: the group has a flagged run.
    let md = render(&report, TableKind::Groups, Format::Markdown);
    assert!(!md.contains("**"), "{md}");
}
