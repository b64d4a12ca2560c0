//! How long a report takes over an experiment with 10^6 stored metric rows: 200 runs (4
//! methods × 5 grid points × 10 seeds) of a 70-task stream, each with the full accuracy matrix
//! (70 × 70 entries plus 70 baselines = 4,970 `eval` events), an online bin per task and a
//! plasticity measurement per boundary — 1,022,800 events in all. The target is at most 2 s
//! for `Report::build` plus rendering the grouped table.
//!
//! `cargo bench -p clorch-report --bench report` (release profile), or `cargo bench -p
//! clorch-report --bench report --profile dev` for the debug-profile figure (slower: this crate and sled are not
//! optimised there). Prints the time of each step; asserts nothing about time.

use std::collections::BTreeMap;
use std::time::Instant;

use protocol::*;
use report::{plot, Format, Report, ReportOptions, TableKind};
use results::{RunLabels, RunRecord, RunStatus};
use runner::store::Store;
use test_support::SpecBuilder;

const METHODS: [&str; 4] = ["sgd", "l2", "shrink_perturb", "cbp"];
const GRID: [f64; 5] = [0.001, 0.003, 0.01, 0.03, 0.1];
const SEEDS: u64 = 10;
const TASKS: usize = 70;

fn spec(method: &str, lr: f64, seed: u64) -> RunSpec {
    SpecBuilder::synthetic(TASKS)
        .experiment("bench")
        .seed(seed)
        .stream(serde_json::json!({"synthetic_permuted": {"tasks": TASKS, "classes": 10, "dim": 64, "train_per_class": 100, "test_per_class": 50, "noise": 2.5, "transform": "permute"}}))
        .hidden(&[64, 64])
        .method("sgd", serde_json::json!({ "lr": lr }))
        .with(|s| {
            s.method.name = method.into();
            s.training = TrainingSpec::default();
        })
        .build()
}

/// A deterministic accuracy in [0, 1) from the indices (no RNG needed for a benchmark).
fn accuracy(seed: u64, i: usize, j: usize) -> f64 {
    let h = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((i as u64) << 20) ^ j as u64;
    (h.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 11) as f64 / (1u64 << 53) as f64
}

fn layer(k: f64) -> LayerPlasticity {
    LayerPlasticity {
        units: 64,
        dead: 0.01 * k,
        dormant: 0.02 * k,
        effective_rank: 50.0 - k,
        stable_rank: 40,
        mean_abs_weight: 0.1 + 0.001 * k,
    }
}

/// Stores one run's events; returns how many.
fn add_run(store: &Store, order: u64, method: &str, lr: f64, seed: u64) -> u64 {
    let spec = spec(method, lr, seed);
    let mut grid = BTreeMap::new();
    grid.insert("lr".to_string(), serde_json::json!(lr));
    let labels = RunLabels { stream: "pmnist".into(), method: method.into(), grid, seed };
    let mut record = RunRecord::new(order, spec, labels, TASKS);
    let id = record.id.clone();
    let mut seq = 0u64;
    let mut push = |body: EventBody, record: &mut RunRecord| {
        let event = Event { run: id.clone(), seq, body };
        store.ingest(&event).expect("ingest");
        record.observe(&event, None);
        seq += 1;
    };
    push(
        EventBody::Started {
            protocol: PROTOCOL_VERSION,
            tasks: TASKS,
            inputs: 64,
            outputs: 10,
            heads: 1,
            parameters: 9_000,
            problem: "classification".into(),
        },
        &mut record,
    );
    for j in 0..TASKS {
        let body = EventBody::Eval {
            after_task: None,
            on_task: j,
            examples: 500,
            loss: 2.3,
            accuracy: Some(0.1 * accuracy(seed, 999, j)),
            variant: None,
        };
        push(body, &mut record);
    }
    let plasticity = |after: usize| EventBody::Plasticity {
        after_tasks: after,
        probe_task: after.min(TASKS - 1),
        probe_examples: 2_000,
        layers: vec![layer(after as f64), layer(after as f64 / 2.0)],
        mean_abs_weight: 0.1 + 0.001 * after as f64,
    };
    push(plasticity(0), &mut record);
    for i in 0..TASKS {
        push(EventBody::TaskStarted { task: i, head: 0, train_examples: 1_000 }, &mut record);
        let acc = 0.5 + 0.5 * accuracy(seed, i, i);
        push(
            EventBody::Online { task: i, bin: 0, examples: 1_000, loss: 1.0 - acc, accuracy: Some(acc) },
            &mut record,
        );
        for j in 0..TASKS {
            let acc = accuracy(seed, i, j);
            let body = EventBody::Eval {
                after_task: Some(i),
                on_task: j,
                examples: 500,
                loss: 1.0 - acc,
                accuracy: Some(acc),
                variant: None,
            };
            push(body, &mut record);
        }
        push(plasticity(i + 1), &mut record);
    }
    push(EventBody::Finished { tasks: TASKS, steps: 70_000, examples: 70_000 }, &mut record);
    record.status = RunStatus::Finished;
    record.attempts = 1;
    record.times.wall_seconds = Some(60.0);
    store.upsert_run(&record).expect("upsert");
    seq
}

/// CPU seconds this process has used (user + system, all threads), from `getrusage` (`None`
/// if it fails). On a shared machine wall time depends on the other load; CPU time is the work
/// the report does.
fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// Wall and CPU seconds since `start`.
struct Timer {
    wall: Instant,
    cpu: Option<f64>,
}

impl Timer {
    fn start() -> Timer {
        Timer { wall: Instant::now(), cpu: cpu_seconds() }
    }

    fn text(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64();
        match (self.cpu, cpu_seconds()) {
            (Some(a), Some(b)) => format!("{wall:.3} s wall, {:.2} s CPU", b - a),
            _ => format!("{wall:.3} s wall"),
        }
    }

    fn wall(&self) -> f64 {
        self.wall.elapsed().as_secs_f64()
    }
}

fn main() {
    let started = Instant::now();
    let store = Store::temporary().expect("a temporary store");
    let mut events = 0;
    let mut order = 0;
    for method in METHODS {
        for lr in GRID {
            for seed in 0..SEEDS {
                events += add_run(&store, order, method, lr, seed);
                order += 1;
            }
        }
    }
    store.flush().expect("flush");
    println!("store: {order} runs, {events} events, built in {:.1} s", started.elapsed().as_secs_f64());

    // Where the time goes: reading the stored bytes alone, then decoding every event in full.
    let records = store.runs().expect("runs");
    let t = Timer::start();
    let mut bytes = 0usize;
    for r in &records {
        for stored in store.event_bytes(&r.id) {
            bytes += stored.expect("stored event").len();
        }
    }
    println!("reading the stored events: {} ({bytes} bytes)", t.text());
    let t = Timer::start();
    for r in &records {
        for event in store.events(&r.id) {
            std::hint::black_box(event.expect("event"));
        }
    }
    println!("reading and fully decoding them (Store::events): {}", t.text());

    let t = Timer::start();
    let report = Report::build(&store, &ReportOptions::default()).expect("report");
    let build = t.wall();
    let build_text = t.text();
    let rows: usize = report.runs().iter().map(|r| r.evals.len()).sum();

    let t = Timer::start();
    let mut markdown = Vec::new();
    report.write(TableKind::Groups, Format::Markdown, &mut markdown).expect("markdown");
    let mut csv = Vec::new();
    report.write(TableKind::Groups, Format::Csv, &mut csv).expect("csv");
    let render = t.wall();
    let render_text = t.text();

    let t = Timer::start();
    let mut parquet = Vec::new();
    report.write(TableKind::PerTask, Format::Parquet, &mut parquet).expect("per-task parquet");
    let per_task = t.text();

    let t = Timer::start();
    let figures = plot::figures(&report);
    let mut svg_bytes = 0;
    for figure in &figures {
        svg_bytes += figure.to_svg().expect("svg").len();
    }
    let plots = t.text();

    println!(
        "Report::build: {build_text} ({} runs, {} groups, {rows} accuracy-matrix rows)",
        report.runs().len(),
        report.groups().len()
    );
    println!("grouped table as Markdown and CSV: {render_text}");
    println!("build + grouped table: {:.3} s wall (target: at most 2 s)", build + render);
    println!("per-task table ({rows} rows) as Parquet: {per_task} ({} bytes)", parquet.len());
    println!("{} figures as SVG: {plots} ({svg_bytes} bytes)", figures.len());
}
