//! Figures from small stores: which figures exist, their numbers, and the files they become
//! (non-empty, of the stated size, not blank).

use std::collections::BTreeMap;

use protocol::{Event, EventBody};

use super::*;
use crate::tests::{add, capacity_event, fixture, sgd};
use crate::{GroupSummary, ReportOptions, RunSummary};
use results::RunStatus;
use runner::store::Store;

/// The report fixture plus CLNP capacity events on the cbp runs and a finished regression run
/// on its own stream.
pub(crate) fn rich_store() -> Store {
    let store = fixture();
    for run in store.runs().unwrap().iter().filter(|r| r.labels.method == "cbp") {
        for task in 0..2 {
            let used = 8 + 4 * task as u64 + run.labels.seed;
            let body = capacity_event(task, &[(used, 16 - used), (4, 12)]);
            store.ingest(&Event { run: run.id.clone(), seq: 1_000 + task as u64, body }).unwrap();
        }
    }
    add_regression(&store, 50, 1);
    add_regression(&store, 51, 2);
    store
}

/// A regression run with 2 tasks × 400 online bins of 10 examples, loss falling within each
/// task.
fn add_regression(store: &Store, order: u64, seed: u64) {
    let mut r = results::fixtures::record(order, 2, "sgd", 0.01, seed);
    r.status = RunStatus::Finished;
    r.labels.stream = "regression".into();
    let id = r.id.clone();
    let mut events = vec![EventBody::Started {
        protocol: 1,
        tasks: 2,
        inputs: 20,
        outputs: 1,
        heads: 1,
        parameters: 100,
        problem: "regression".into(),
    }];
    for task in 0..2 {
        for bin in 0..400 {
            let loss = 1.0 / (1.0 + bin as f64) + 0.01 * seed as f64;
            events.push(EventBody::Online { task, bin, examples: 10, loss, accuracy: None });
        }
        events.push(EventBody::Eval {
            after_task: Some(task),
            on_task: task,
            examples: 10,
            loss: 0.1,
            accuracy: None,
            variant: None,
        });
    }
    events.push(EventBody::Finished { tasks: 2, steps: 800, examples: 8_000 });
    for (seq, body) in events.into_iter().enumerate() {
        let e = Event { run: id.clone(), seq: seq as u64, body };
        store.ingest(&e).unwrap();
        r.observe(&e, None);
    }
    store.upsert_run(&r).unwrap();
}

/// Width and height from a PNG's IHDR chunk (bytes 16..24, big-endian).
pub(crate) fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Pixels of an 8-bit RGB or RGBA PNG that are not (nearly) white.
pub(crate) fn non_white_pixels(bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf[..info.buffer_size()].chunks(channels).filter(|p| p[..3].iter().any(|&c| c < 245)).count()
}

/// The `width` and `height` attributes of an SVG document's root element.
fn svg_size(svg: &str) -> (u32, u32) {
    let start = svg.find("<svg").expect("an <svg element");
    let tag = &svg[start..start + svg[start..].find('>').unwrap()];
    let attribute = |name: &str| -> u32 {
        let key = format!(" {name}=\"");
        let from = tag.find(&key).unwrap_or_else(|| panic!("no {name} in {tag}")) + key.len();
        tag[from..from + tag[from..].find('"').unwrap()].parse().unwrap()
    };
    (attribute("width"), attribute("height"))
}

fn kinds(figures: &[Figure]) -> Vec<(FigureKind, &str)> {
    figures.iter().map(|f| (f.kind(), f.name())).collect()
}

#[test]
fn every_kind_of_figure_is_made_when_its_data_exists() {
    let report = Report::build(&rich_store(), &ReportOptions::default()).unwrap();
    let figures = figures(&report);
    assert_eq!(
        kinds(&figures),
        [
            (FigureKind::AccuracyMatrix, "accuracy-matrix-synthetic-sgd-lr-0.1"),
            (FigureKind::TaskAccuracy, "task-accuracy-synthetic-sgd-lr-0.1"),
            (FigureKind::AccuracyMatrix, "accuracy-matrix-synthetic-cbp-lr-0.1"),
            (FigureKind::TaskAccuracy, "task-accuracy-synthetic-cbp-lr-0.1"),
            (FigureKind::Capacity, "capacity-synthetic-cbp-lr-0.1"),
            (FigureKind::AccuracyMatrix, "accuracy-matrix-synthetic-l2-lr-0.1"),
            (FigureKind::TaskAccuracy, "task-accuracy-synthetic-l2-lr-0.1"),
            (FigureKind::OnlineAccuracy, "online-accuracy-synthetic"),
            (FigureKind::Plasticity, "plasticity-synthetic"),
            (FigureKind::OnlineError, "online-error-regression"),
        ]
    );
    assert!(figures[0].title().starts_with("Accuracy matrix: sgd (lr=0.1) on synthetic (mean of 3 seeds)"));
}

#[test]
fn png_and_svg_files_are_written_with_the_stated_size_and_are_not_blank() {
    let report = Report::build(&rich_store(), &ReportOptions::default()).unwrap();
    let scratch = test_support::scratch("files");
    for format in [PlotFormat::Png, PlotFormat::Svg] {
        let dir = scratch.path().join(format.extension());
        let files = write_figures(&report, &dir, format).unwrap();
        let figures = figures(&report);
        assert_eq!(files.len(), figures.len());
        for (file, figure) in files.iter().zip(&figures) {
            assert_eq!(file, &dir.join(figure.file_name(format)));
            let bytes = std::fs::read(file).unwrap();
            assert!(!bytes.is_empty(), "{}", file.display());
            match format {
                PlotFormat::Png => {
                    assert_eq!(png_size(&bytes), figure.size(), "{}", file.display());
                    let (w, h) = figure.size();
                    let inked = non_white_pixels(&bytes);
                    assert!(
                        inked > (w * h) as usize / 50,
                        "{}: only {inked} non-white pixels",
                        file.display()
                    );
                }
                PlotFormat::Svg => {
                    let svg = String::from_utf8(bytes).unwrap();
                    assert_eq!(svg_size(&svg), figure.size(), "{}", file.display());
                    assert!(svg.contains("<text") && svg.contains("<polyline"), "{}", file.display());
                    assert!(svg.trim_end().ends_with("</svg>"));
                }
            }
        }
    }
}

#[test]
fn the_heat_map_averages_the_matrix_over_finished_seeds() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let figures = figures(&report);
    let Body::Matrix(sgd) = &figures[0].body else { panic!("{:?}", figures[0].kind()) };
    assert_eq!(sgd.block, 1);
    // R[i][j] of seeds k = 0, 1, 2: [[0.90 + 0.01k, 0.10], [0.60 + 0.02k, 0.95]].
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
    assert!(close(sgd.cells[0][0], 0.91) && close(sgd.cells[0][1], 0.10));
    assert!(close(sgd.cells[1][0], 0.62) && close(sgd.cells[1][1], 0.95));
    // cbp: the running third seed is left out: R[1][0] = 0.85 + 0.01k over k = 0, 1.
    let Body::Matrix(cbp) = &figures[2].body else { panic!() };
    assert!(close(cbp.cells[1][0], 0.855));
    // Task curves: task 0 is at b_0 = 0.1 untrained, then R[0][0], R[1][0].
    let Body::Tasks(curves) = &figures[1].body else { panic!() };
    let (j, points) = &curves.lines[0];
    assert_eq!(*j, 0);
    let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    assert_eq!(xs, [-1.0, 0.0, 1.0], "init, then the heat map's rows i = 0, 1");
    assert!((points[2].mean - 0.62).abs() < 1e-12);
}

/// Issue 16: one task numbering in every figure — a point of a task curve at x = i is the heat
/// map's row i (`after training task i`), and the per-task curves carry 95% bands over seeds.
#[test]
fn task_curves_number_tasks_as_the_heat_map_and_have_bands() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let figures = figures(&report);
    let Body::Matrix(matrix) = &figures[0].body else { panic!() };
    let Body::Tasks(curves) = &figures[1].body else { panic!() };
    for (j, points) in &curves.lines {
        for p in points.iter().filter(|p| p.x >= 0.0) {
            let cell = matrix.cells[p.x as usize][*j].unwrap();
            assert!((p.mean - cell).abs() < 1e-12, "task {j} at x = {}: {} vs cell {cell}", p.x, p.mean);
        }
    }
    // sgd seeds k = 0, 1, 2 give R[1][0] = 0.60, 0.62, 0.64: a band of t_{0.975,2} · 0.02 / √3.
    let after_1 = curves.lines[0].1.iter().find(|p| p.x == 1.0).unwrap();
    let half = 4.302_652_729_749_464 * 0.02 / 3f64.sqrt();
    assert!((after_1.high - after_1.mean - half).abs() < 1e-9, "{after_1:?}");
    let svg = figures[1].to_svg().unwrap();
    assert!(svg.contains("after training task i (init = untrained)"));
    assert!(svg.contains("\ninit\n</text>"), "the untrained network's tick");
    assert!(svg.contains("<polygon"), "bands drawn");
    let heat = figures[0].to_svg().unwrap();
    assert!(heat.contains("after training task i"));
}

/// Issue 16: legends of 20 groups with long grid labels: every group has its own colour and
/// line pattern, and every label is drawn whole (wrapped, never cut).
#[test]
fn twenty_groups_have_distinct_looks_and_whole_legend_labels() {
    let lines: Vec<online::OnlineLine> = (0..20)
        .map(|i| online::OnlineLine {
            label: format!("niwf-{i} (lambda_lock={i}.5, lock=hard, lock_space=input, mask_width=0.25)"),
            colour: i,
            points: vec![
                data::BandPoint { x: 0.0, mean: 0.5, low: 0.4, high: 0.6 },
                data::BandPoint { x: 1.0, mean: 0.6, low: 0.5, high: 0.7 },
            ],
        })
        .collect();
    let looks: std::collections::HashSet<_> =
        lines.iter().map(|l| format!("{:?}", style::series_style(l.colour))).collect();
    assert_eq!(looks.len(), 20);
    let labels: Vec<String> = lines.iter().map(|l| l.label.clone()).collect();
    let figure = Figure {
        kind: FigureKind::OnlineAccuracy,
        name: "online".into(),
        title: "t".into(),
        stream: "s".into(),
        group: None,
        body: Body::Online(online::OnlineFigure { measure: OnlineMeasure::Accuracy, lines }),
    };
    let svg = figure.to_svg().unwrap();
    let texts: String = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].trim().to_string()))
        .collect::<Vec<_>>()
        .concat()
        .replace(' ', "");
    for label in labels {
        assert!(texts.contains(&label.replace(' ', "")), "`{label}` not drawn whole");
    }
    // No label falls off the bottom: the figure grows with its legend.
    let height = figure.size().1;
    assert!(height > FigureKind::OnlineAccuracy.size().1, "{height}");
    for t in svg.split("<text").skip(1) {
        let y: f64 = t.split("y=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(y < height as f64 - 8.0, "text at y = {y} of {height}");
    }
    // Dashed and dotted lines are drawn as segments: many more polylines than the 20 lines.
    assert!(svg.matches("<polyline").count() > 100, "dashed lines drawn");
}

#[test]
fn online_plasticity_and_capacity_bands_follow_the_seeds() {
    let report = Report::build(&rich_store(), &ReportOptions::default()).unwrap();
    let figures = figures(&report);
    let find = |kind| figures.iter().find(|f| f.kind() == kind).unwrap();
    let Body::Online(online) = &find(FigureKind::OnlineAccuracy).body else { panic!() };
    let labels: Vec<&str> = online.lines.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["sgd (lr=0.1)", "cbp (lr=0.1)", "l2 (lr=0.1)"]);
    // sgd: every seed ends task 0 at 0.7 and task 1 at 0.8: no spread.
    let sgd = &online.lines[0].points;
    assert_eq!(sgd.iter().map(|p| p.x).collect::<Vec<_>>(), [0.0, 1.0]);
    for (p, want) in sgd.iter().zip([0.7, 0.8]) {
        assert!((p.mean - want).abs() < 1e-12 && p.high - p.low < 1e-12, "{p:?}");
    }

    let Body::Plasticity(plasticity) = &find(FigureKind::Plasticity).body else { panic!() };
    let sgd = &plasticity.groups[0];
    assert_eq!(sgd.dead.iter().map(|p| p.x).collect::<Vec<_>>(), [-1.0, 0.0, 1.0], "init, tasks 0 and 1");
    assert!((sgd.effective_rank[2].mean - 10.0).abs() < 1e-12);

    let Body::Capacity(capacity) = &find(FigureKind::Capacity).body else { panic!() };
    assert_eq!(capacity.layers.len(), 2);
    // Finished cbp seeds 1 and 2: used = 8 + 4·task + seed of 16 units.
    let first = &capacity.layers[0];
    assert_eq!(first.iter().map(|p| p.x).collect::<Vec<_>>(), [0.0, 1.0], "after tasks 0 and 1");
    assert!((first[0].mean - 9.5 / 16.0).abs() < 1e-12, "{first:?}");
    assert!((first[1].mean - 13.5 / 16.0).abs() < 1e-12);
    assert!(first[0].high > first[0].mean, "two seeds with different values have a band");
    assert!(capacity.layers[1].iter().all(|p| (p.mean - 0.25).abs() < 1e-12));

    let Body::Online(error) = &find(FigureKind::OnlineError).body else { panic!() };
    assert_eq!(error.measure, OnlineMeasure::Error);
    let points = &error.lines[0].points;
    // 800 bins merged 3 at a time (at most 300 points): 267 points, x = examples seen.
    assert_eq!(points.len(), 267);
    assert_eq!((points[0].x, points.last().unwrap().x), (30.0, 8_000.0));
    // First display bin: bins 0..3 of task 0, losses 1, 1/2, 1/3 (+ 0.01·seed, seeds 1 and 2).
    let expected = (1.0 + 0.5 + 1.0 / 3.0) / 3.0 + 0.015;
    assert!((points[0].mean - expected).abs() < 1e-12, "{:?}", points[0]);
}

#[test]
fn long_streams_are_shown_in_blocks_and_with_a_few_task_lines() {
    let tasks = 130;
    let mut run = RunSummary {
        id: "r".into(),
        experiment: "x".into(),
        order: 0,
        labels: results::RunLabels { stream: "s".into(), method: "m".into(), grid: BTreeMap::new(), seed: 1 },
        params: BTreeMap::new(),
        status: RunStatus::Finished,
        attempts: 1,
        tasks,
        regression: false,
        values: Default::default(),
        flags: vec![],
        evals: vec![],
        series: Default::default(),
    };
    for i in 0..tasks {
        run.evals.push(crate::EvalRow { after_task: Some(i), on_task: i, accuracy: Some(1.0), loss: 0.0 });
        if i > 0 {
            let row = crate::EvalRow { after_task: Some(i), on_task: 0, accuracy: Some(0.5), loss: 0.0 };
            run.evals.push(row);
        }
    }
    let group = GroupSummary {
        experiment: "x".into(),
        stream: "s".into(),
        method: "m".into(),
        grid: BTreeMap::new(),
        params: BTreeMap::new(),
        grid_text: String::new(),
        runs: 1,
        finished: 1,
        variant: false,
        flagged: 0,
        cells: Default::default(),
    };
    let member = data::Member { group: &group, runs: vec![&run] };
    let m = MatrixFigure::of(&member).unwrap();
    assert_eq!((m.block, m.cells.len()), (3, 44));
    // Block (0, 0) holds R[0][0] = 1, R[1][0] = R[2][0] = 0.5 and R[1][1] = R[2][2] = 1.
    assert_eq!(m.cells[0][0], Some(0.8));
    assert_eq!(m.cells[0][5], None, "never measured");
    let t = TaskCurves::of(&member).unwrap();
    let shown: Vec<usize> = t.lines.iter().map(|(j, _)| *j).collect();
    assert_eq!(shown.len(), tasks::MAX_LINES);
    assert_eq!((shown[0], shown[9]), (0, 129));
    // Drawing a long stream works too.
    let figure = Figure {
        kind: FigureKind::AccuracyMatrix,
        name: "m".into(),
        title: "m".into(),
        stream: "s".into(),
        group: Some("m".into()),
        body: Body::Matrix(m),
    };
    assert!(figure.to_svg().unwrap().contains("<rect"));
}

#[test]
fn regression_only_and_unfinished_stores_make_no_accuracy_figures() {
    let store = Store::temporary().unwrap();
    add_regression(&store, 0, 1);
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    assert_eq!(kinds(&figures(&report)), [(FigureKind::OnlineError, "online-error-regression")]);
    let store = Store::temporary().unwrap();
    add(&store, 0, "sgd", 1, &sgd(0), RunStatus::Running);
    let report = Report::build(&store, &ReportOptions::default()).unwrap();
    assert!(figures(&report).is_empty(), "unfinished runs are not plotted");
    let scratch = test_support::scratch("empty");
    assert!(write_figures(&report, &scratch.path().join("plots"), PlotFormat::Png).unwrap().is_empty());
}

#[test]
fn writing_into_an_unusable_folder_names_it() {
    let report = Report::build(&fixture(), &ReportOptions::default()).unwrap();
    let scratch = test_support::scratch("unwritable");
    let blocker = scratch.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let err = write_figures(&report, &blocker.join("plots"), PlotFormat::Svg).unwrap_err().to_string();
    assert!(err.starts_with(&blocker.join("plots").display().to_string()), "{err}");
}
