//! `clorch bench`: the speed targets, measured side by side on this machine.
//!
//! * P1 — slowly-changing regression (20-5-1, batch 1) with `sgd` and `cbp`, µs of CPU per
//!   example, next to the loss-of-plasticity reference code (PyTorch, one thread).
//! * P2 — MLP SGD steps at several batch sizes, samples/s of CPU, next to PyTorch 2.15 on one
//!   thread, and the big network's share of the core's FMA peak (on the widest vectors the
//!   CPU has, as P7).
//! * P3 — a sweep of 40 short runs through `clorch run` with `-j 1` and `-j 2`: the speed-up, and
//!   the orchestration overhead per run (wall time per run minus the same run's cost in
//!   process).
//! * P4 — a 1,000-task stream (evaluation on a subsample): the worker's and orchestrator's
//!   resident memory at task 100 and at the end, and the store's size per task.
//!
//! * P5 — `clorch serve` on 200 runs × 1,000 tasks: time to the first page, an event's delay
//!   to the page, the server's CPU while runs write ([`serve`]).
//! * P6 — worker event lines taken in per second of CPU: seal checked, parsed, stored, the
//!   run's progress updated ([`ingest`]).
//! * P7 — conv-net SGD steps on 3×32×32 inputs (loss of plasticity's ConvNet at batch 1, 32,
//!   100; the reduced ResNet-18 at batch 10, 32, 128), samples/s of CPU next to PyTorch 2.15 on
//!   one thread (the committed figures of this machine kind), with GFLOP/s and the share of
//!   the FMA peak on 512-bit vectors, which faer's GEMM uses.
//!
//! * P8 — `training.threads`: the biggest P7 workloads and P2's big MLP by the wall clock with
//!   their matrix products on 1 thread and on every core (at most 4), and the speed-up.
//!
//! Single-threaded figures use CPU time ([`workers::bench::cpu_seconds`]); P3 and P4 are about
//! processes and use the wall clock and `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workers::bench;
use workers::engine::{self, RunControl};

mod ingest;
mod serve;

/// Which parts to run and how long to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Shorter measurements (seconds, not minutes): numbers are noisier.
    pub quick: bool,
    /// Parts to run (`p1` … `p8`); all when empty.
    pub only: Vec<String>,
    /// Scratch folder for P3 and P4.
    pub scratch: PathBuf,
    /// A Python with PyTorch: P7 measures PyTorch in the same run instead of showing the
    /// committed figures.
    pub torch: Option<PathBuf>,
}

/// One row of the result table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Target id (P1 …).
    pub id: &'static str,
    /// What was measured.
    pub workload: String,
    /// The measurement.
    pub clorch: String,
    /// The reference figure.
    pub reference: String,
    /// The target.
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

/// One core's FMA peak on the widest vectors it has (faer's GEMM uses 512-bit ones where the
/// CPU has them, so a share of a 256-bit peak would overstate): GFLOP/s and the width.
fn fma_peak() -> (f64, &'static str) {
    bench::fma512_peak_gflops(Duration::from_millis(500))
        .map(|p| (p, "512-bit"))
        .unwrap_or_else(|| (bench::fma_peak_gflops(Duration::from_millis(500)), "256-bit"))
}

/// P7: conv-net training throughput beside PyTorch: measured now with `--torch`, else the
/// committed figures of this machine kind.
fn conv_nets(budget: Duration, options: &BenchOptions) -> Result<Vec<Row>, String> {
    use workers::model::convnet::architectures;
    let torch = match &options.torch {
        Some(python) => Some(torch_conv(python, options)?),
        None => None,
    };
    let peak = fma_peak();
    let mut rows = Vec::new();
    for &(name, outputs, batch, committed) in &bench::CONV_ANCHORS {
        let (reference, source) = match &torch {
            Some(measured) => {
                let found = measured.iter().find(|(net, b, _)| net.contains(name) && *b == batch);
                let Some(&(_, _, s)) = found else {
                    return Err(format!("P7: the PyTorch script gave no figure for {name} at batch {batch}"));
                };
                (s, "measured now")
            }
            None => (committed, "committed figure"),
        };
        let mut rng = workers::rng::stream(0, "bench", 0);
        let net = match name {
            "convnet" => architectures::convnet(outputs, &mut rng),
            _ => architectures::reduced_resnet18(outputs, &mut rng),
        }
        .map_err(|e| format!("P7 {name}: {e}"))?;
        let flops = 3.0 * 2.0 * architectures::forward_macs(&net) as f64;
        let s = bench::conv_samples_per_second(&net, batch, budget, 3);
        let gflops = s * flops / 1e9;
        rows.push(Row {
            id: "P7",
            workload: format!("`{name}` SGD step on 3×32×32, batch {batch}"),
            clorch: format!(
                "{s:.0} samples/s ({:.2}×; {gflops:.0} GFLOP/s = {:.0}% of the {:.0} GFLOP/s {} FMA peak)",
                s / reference,
                100.0 * gflops / peak.0,
                peak.0,
                peak.1
            ),
            reference: format!("{reference:.0} samples/s ({source})"),
            target: "≥ PyTorch".into(),
            met: s >= reference,
        });
    }
    Ok(rows)
}

/// P8: what `training.threads` gains on the largest conv workloads, by the wall clock.
fn threaded_conv_nets(budget: Duration) -> Result<Vec<Row>, String> {
    use workers::model::convnet::architectures;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.clamp(2, 4);
    let row = |workload: String, one: f64, many: f64| Row {
        id: "P8",
        workload: format!("{workload}, `threads: {threads}` ({cores} cores)"),
        clorch: format!("{many:.0} samples/s ({:.2}× one thread)", many / one),
        reference: format!("{one:.0} samples/s on one thread (wall clock)"),
        target: "faster than one thread".into(),
        met: many > one,
    };
    let mut rows = Vec::new();
    for (name, batch) in [("convnet", 100), ("reduced_resnet18", 128)] {
        let mut rng = workers::rng::stream(0, "bench", 0);
        let net = match name {
            "convnet" => architectures::convnet(2, &mut rng),
            _ => architectures::reduced_resnet18(100, &mut rng),
        }
        .map_err(|e| format!("P8 {name}: {e}"))?;
        let one = bench::conv_samples_per_wall_second(&net, batch, budget, 3, 1)?;
        let many = bench::conv_samples_per_wall_second(&net, batch, budget, 3, threads)?;
        rows.push(row(format!("`{name}` SGD step on 3×32×32, batch {batch}"), one, many));
    }
    // An MLP's step is nearly all products: the bound of what the setting can give.
    let sizes = [784, 2000, 2000, 2000, 10];
    let one = bench::mlp_samples_per_wall_second(&sizes, 128, budget, 1)?;
    let many = bench::mlp_samples_per_wall_second(&sizes, 128, budget, threads)?;
    rows.push(row("MLP 784-2000-2000-2000-10 SGD step, batch 128".into(), one, many));
    Ok(rows)
}

/// The PyTorch conv-net script, run by `--torch` (also in `../shared/anchors`).
const TORCH_CONV: &str = include_str!("torch_conv.py");

/// Runs [`TORCH_CONV`] with `python` on one thread for the P7 nets: (net, batch, samples/s).
fn torch_conv(python: &Path, options: &BenchOptions) -> Result<Vec<(String, usize, f64)>, String> {
    let dir = options.scratch.join("p7");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("torch_conv.py");
    std::fs::write(&script, TORCH_CONV).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut rows = Vec::new();
    for net in ["lop_convnet", "reduced_resnet18"] {
        let json = dir.join(format!("{net}.json"));
        let min_time = if options.quick { "0.5" } else { "3" };
        let out = Command::new(python)
            .arg(&script)
            .args(["--only", net, "--min-time", min_time, "--repeats", "3", "--json"])
            .arg(&json)
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("--torch {}: {e}", python.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(format!(
                "--torch {}: the PyTorch benchmark failed ({}): {last}",
                python.display(),
                out.status
            ));
        }
        let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
        for row in value["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(name), Some(batch), Some(s)) =
                (row["net"].as_str(), row["batch"].as_u64(), row["samples_per_s"].as_f64())
            else {
                return Err(format!("{}: a row without net, batch and samples_per_s: {row}", json.display()));
            };
            rows.push((name.to_string(), batch as usize, s));
        }
    }
    Ok(rows)
}

/// Runs the benchmarks, printing each row as it is measured; returns all rows.
pub fn run(options: &BenchOptions, mut print: impl FnMut(&Row)) -> Result<Vec<Row>, String> {
    let wants = |id: &str| options.only.is_empty() || options.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    let budget = Duration::from_millis(if options.quick { 500 } else { 3000 });
    workers::model::flush_denormals();
    let mut rows = Vec::new();
    let mut push = |row: Row, rows: &mut Vec<Row>| {
        print(&row);
        rows.push(row);
    };
    if wants("p1") {
        let tasks = if options.quick { 5 } else { 30 };
        for (kind, params, reference, target) in [
            ("sgd", serde_json::json!({"lr": 0.01}), 549.0, 1.8),
            (
                "cbp",
                serde_json::json!({"lr": 0.01, "replacement_rate": 1e-4, "accumulate": false}),
                847.0,
                2.8,
            ),
        ] {
            let us = bench::run_cost_per_example(&bench::regression_spec(kind, params, tasks))
                .map_err(|e| format!("P1 {kind}: {e}"))?;
            push(
                Row {
                    id: "P1",
                    workload: format!("slowly-changing regression 20-5-1, batch 1, `{kind}`"),
                    clorch: format!("{us:.2} µs/example ({:.0}×)", reference / us),
                    reference: format!("{reference:.0} µs/example"),
                    target: format!("≤ {target:.1} µs (≥ 300×)"),
                    met: us <= target,
                },
                &mut rows,
            );
        }
    }
    if wants("p2") {
        let (peak, width) = fma_peak();
        for (sizes, batch, torch) in bench::MLP_ANCHORS {
            let s = bench::mlp_samples_per_second(sizes, batch, budget);
            let gflops = s * bench::flops_per_example(sizes) / 1e9;
            let of_peak = gflops / peak;
            let big = sizes[1] == 2000 && batch == 128;
            let name: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
            push(
                Row {
                    id: "P2",
                    workload: format!("MLP {} SGD step, batch {batch}", name.join("-")),
                    clorch: format!(
                        "{s:.0} samples/s ({:.2}×; {gflops:.1} GFLOP/s = {:.0}% of the {peak:.0} GFLOP/s {width} FMA peak)",
                        s / torch,
                        100.0 * of_peak
                    ),
                    reference: format!("{torch:.0} samples/s"),
                    target: if big { "≥ PyTorch; ≥ 70% of FMA peak".into() } else { "≥ PyTorch".into() },
                    met: s >= torch && (!big || of_peak >= 0.7),
                },
                &mut rows,
            );
        }
    }
    if wants("p3") {
        for row in sweep(options)? {
            push(row, &mut rows);
        }
    }
    if wants("p4") {
        for row in long_stream(options)? {
            push(row, &mut rows);
        }
    }
    if wants("p5") {
        for row in serve::dashboard(&options.scratch, options.quick)? {
            push(row, &mut rows);
        }
    }
    if wants("p6") {
        for row in ingest::ingest(&options.scratch, options.quick)? {
            push(row, &mut rows);
        }
    }
    if wants("p7") {
        for row in conv_nets(budget, options)? {
            push(row, &mut rows);
        }
    }
    if wants("p8") {
        for row in threaded_conv_nets(budget)? {
            push(row, &mut rows);
        }
    }
    Ok(rows)
}

/// The Markdown table header matching [`row_line`].
pub fn header() -> String {
    "| id | workload | clorch | reference | target | met |\n|---|---|---|---|---|:-:|".into()
}

/// One row as a Markdown table line.
pub fn row_line(row: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        row.id,
        row.workload,
        row.clorch,
        row.reference,
        row.target,
        if row.met { "✓" } else { "✗" }
    )
}

fn clorch_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the clorch executable: {e}"))
}

fn run_recipe(recipe: &Path, parallel: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(clorch_exe()?)
        .args(["run", recipe.to_str().unwrap_or_default(), "--no-progress", "-j", &parallel.to_string()])
        .output()
        .map_err(|e| format!("starting clorch run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "clorch run {} failed: {}",
            recipe.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(start.elapsed())
}

/// A sweep of short runs: parallel speed-up and overhead per run.
fn sweep(options: &BenchOptions) -> Result<Vec<Row>, String> {
    let runs = 40;
    let tasks = if options.quick { 2 } else { 4 };
    let body = format!(
        "stream: {{kind: synthetic_permuted, tasks: {tasks}, classes: 10, dim: 64, train_per_class: 100, test_per_class: 20}}\n\
         network: {{hidden: [128, 128]}}\ntraining: {{batch_size: 16, epochs: 2}}\nmethods: [{{name: sgd, lr: 0.05}}]\n\
         eval: {{plasticity: {{probe: 200}}}}\nseeds: {runs}\n"
    );
    let dir = options.scratch.join("p3");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Each figure is the best of `repeats` measurements, alternating orchestrated and
    // in-process sweeps: on a shared VM a single measurement varies by ±10 ms per run, as
    // much as the overhead itself.
    let repeats = if options.quick { 1 } else { 3 };
    let mut wall = [Duration::MAX, Duration::MAX];
    let mut in_process = f64::MAX;
    for repeat in 0..repeats {
        for (i, parallel) in [1usize, 2].into_iter().enumerate() {
            let name = format!("sweep-j{parallel}-{repeat}");
            let recipe = dir.join(format!("{name}.yaml"));
            let text =
                format!("name: {name}\noutput: {}\n{body}", dir.join(format!("results-{name}")).display());
            std::fs::write(&recipe, text).map_err(|e| format!("{}: {e}", recipe.display()))?;
            wall[i] = wall[i].min(run_recipe(&recipe, parallel)?);
        }
        // The same runs in this process, without the orchestrator: the work itself.
        let plan = runner::plan::plan(
            &dir.join(format!("sweep-j1-{repeat}.yaml")),
            &[],
            runner::recipe::Multirun::Off,
            &crate::builtin::BuiltinWorker,
        )
        .map_err(|e| e.to_string())?;
        let start = Instant::now();
        for planned in &plan.runs {
            engine::run(&planned.spec, Box::new(std::io::sink()), &RunControl::default())
                .map_err(|e| e.to_string())?;
        }
        in_process = in_process.min(start.elapsed().as_secs_f64() / runs as f64);
    }
    let per_run = wall[0].as_secs_f64() / runs as f64;
    let overhead_ms = (per_run - in_process) * 1e3;
    let speedup = wall[0].as_secs_f64() / wall[1].as_secs_f64();
    Ok(vec![
        Row {
            id: "P3",
            workload: format!(
                "sweep of {runs} short runs (~{:.0} ms each), `-j 2` vs `-j 1`",
                in_process * 1e3
            ),
            clorch: format!(
                "{:.1} s vs {:.1} s: {speedup:.2}×",
                wall[1].as_secs_f64(),
                wall[0].as_secs_f64()
            ),
            reference: "—".into(),
            target: "≥ 1.8×".into(),
            met: speedup >= 1.8,
        },
        Row {
            id: "P3",
            workload: "orchestration overhead per run (`-j 1` wall time per run − the run in process)".into(),
            clorch: format!("{overhead_ms:.1} ms"),
            reference: "—".into(),
            target: "≤ 20 ms".into(),
            met: overhead_ms <= 20.0,
        },
    ])
}

/// Resident memory of a process, in KiB. From `/proc`: `getrusage` has only this process's
/// and its waited-for children's peak, not another live process's current RSS.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The children of a process. From `/proc`: no portable call lists another process's children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let ppid =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() { folder_bytes(&p) } else { e.metadata().map_or(0, |m| m.len()) };
        }
    }
    total
}

/// A 1,000-task stream: memory at task 100 and at the end, store size per task.
fn long_stream(options: &BenchOptions) -> Result<Vec<Row>, String> {
    let tasks = 1000;
    let dir = options.scratch.join("p4");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let results = dir.join("results");
    let recipe = dir.join("long.yaml");
    let text = format!(
        "name: long\noutput: {}\n\
         stream: {{kind: synthetic_permuted, tasks: {tasks}, classes: 10, dim: 32, train_per_class: 60, test_per_class: 10}}\n\
         network: {{hidden: [64, 64]}}\ntraining: {{batch_size: 8, epochs: 2}}\nmethods: [{{name: sgd, lr: 0.05}}]\n\
         eval: {{tasks: {{subsample: {{earlier: 5}}}}, plasticity: {{every: 50, probe: 100}}}}\n\
         checkpoint: {{every_tasks: 50}}\nseeds: 1\n",
        results.display()
    );
    std::fs::write(&recipe, text).map_err(|e| format!("{}: {e}", recipe.display()))?;
    let mut child = Command::new(clorch_exe()?)
        .args(["run", recipe.to_str().unwrap_or_default(), "--no-progress", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting clorch run: {e}"))?;
    let orchestrator = child.id();
    // (task, orchestrator KiB, worker KiB, store bytes)
    let mut at_100: Option<(usize, u64, u64, u64)> = None;
    let mut last: Option<(usize, u64, u64, u64)> = None;
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        std::thread::sleep(Duration::from_millis(20));
        let Some(snapshot) = runner::status::read(&results) else { continue };
        let Some(run) = snapshot.runs.first() else { continue };
        let worker = children(orchestrator).into_iter().find_map(|c| rss_kib(c).map(|r| (c, r)));
        let (Some(o), Some((_, w))) = (rss_kib(orchestrator), worker) else { continue };
        let sample =
            (run.task, o, w, folder_bytes(&results.join("store")) + folder_bytes(&results.join("runs")));
        if run.task >= 100 && at_100.is_none() {
            at_100 = Some(sample);
        }
        last = Some(sample);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("the 1,000-task run failed".into());
    }
    let (Some(a), Some(b)) = (at_100, last) else {
        return Err("the 1,000-task run ended before memory could be sampled".into());
    };
    let end_bytes = folder_bytes(&results.join("store")) + folder_bytes(&results.join("runs"));
    let ratio = |x: u64, y: u64| y as f64 / x.max(1) as f64;
    let per_task = |bytes: u64, t: usize| bytes as f64 / t.max(1) as f64 / 1024.0;
    Ok(vec![
        Row {
            id: "P4",
            workload: format!("1,000-task stream: worker RSS at task {} vs task {}", a.0, b.0),
            clorch: format!("{} KiB → {} KiB ({:.2}×)", a.2, b.2, ratio(a.2, b.2)),
            reference: "—".into(),
            target: "≤ 1.2×".into(),
            met: ratio(a.2, b.2) <= 1.2,
        },
        Row {
            id: "P4",
            workload: format!("1,000-task stream: orchestrator RSS at task {} vs task {}", a.0, b.0),
            clorch: format!("{} KiB → {} KiB ({:.2}×)", a.1, b.1, ratio(a.1, b.1)),
            reference: "—".into(),
            target: "≤ 1.2×".into(),
            met: ratio(a.1, b.1) <= 1.2,
        },
        Row {
            id: "P4",
            workload: "1,000-task stream: store + run folder size per task".into(),
            clorch: format!(
                "{:.1} KiB/task at task {}, {:.1} KiB/task at the end",
                per_task(a.3, a.0),
                a.0,
                per_task(end_bytes, tasks)
            ),
            reference: "—".into(),
            target: "linear in tasks".into(),
            met: per_task(end_bytes, tasks) <= 1.5 * per_task(a.3, a.0).max(1e-9),
        },
    ])
}
