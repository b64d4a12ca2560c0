//! Training throughput of the worker engine, single-threaded, next to the PyTorch figures of
//! `../shared/anchors` (PyTorch 2.15, one thread, this machine kind).
//!
//! `cargo bench -p clorch-workers --bench training` (add `-- --quick` for a shorter run).
//!
//! Times are the process's CPU time (user + system, from `/proc/self/stat`), not the wall
//! clock: the benchmark is single-threaded, so on an idle machine the two agree, and on a busy
//! one (a shared 2-core box) CPU time still measures the code rather than the neighbours.

use std::time::Duration;

/// CPU seconds this process has used (user + system), at the kernel's 10 ms resolution.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

use rand::Rng as _;
use workers::engine::{self, RunControl};
use workers::method::Compute;
use workers::model::Mlp;
use workers::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use workers::protocol::*;
use workers::rng;

/// Samples per second of plain SGD steps (forward, cross-entropy, backward, update) on random
/// data, measured for about `budget`.
fn mlp_samples_per_second(sizes: &[usize], batch: usize, budget: Duration) -> f64 {
    let mut r = rng::stream(0, "bench", 0);
    let mut net = Mlp::new(sizes, Activation::Relu, &mut r);
    let mut opt =
        Optimizer::new(OptimizerConfig { lr: 0.003, ..OptimizerConfig::defaults(OptimizerKind::Sgd) }, &net);
    let mut compute = Compute::new(&net, Engine::Fused, batch);
    let inputs: Vec<f32> = (0..batch * sizes[0]).map(|_| r.gen_range(-1.0..1.0)).collect();
    let classes: Vec<u32> = (0..batch).map(|_| r.gen_range(0..*sizes.last().unwrap() as u32)).collect();
    compute.set_batch(&inputs, &classes);
    let head = 0..*sizes.last().unwrap();
    let mut step = |compute: &mut Compute, net: &mut Mlp| {
        compute.loss_and_gradients(net, head.clone(), 0, |_| {});
        opt.step(net, &compute.grads);
    };
    for _ in 0..3 {
        step(&mut compute, &mut net);
    }
    let start = cpu_seconds();
    let mut steps = 0u64;
    while cpu_seconds() - start < budget.as_secs_f64() || steps < 3 {
        step(&mut compute, &mut net);
        steps += 1;
    }
    (steps * batch as u64) as f64 / (cpu_seconds() - start)
}

/// Microseconds per example of a whole run of slowly-changing regression (20-5-1, batch 1),
/// data generation, evaluation and events included.
fn regression_us_per_example(kind: &str, params: serde_json::Value, tasks: usize) -> f64 {
    let mut spec = RunSpec {
        protocol: PROTOCOL_VERSION,
        id: "bench".into(),
        experiment: "bench".into(),
        seed: 0,
        stream: StreamSpec::SlowlyChangingRegression(SlowlyChangingRegressionSpec {
            tasks,
            inputs: 20,
            slow_bits: 15,
            flip_every: 10_000,
            flip: FlipMode::One,
            target_hidden: 100,
            beta: 0.7,
            test_examples: 100,
        }),
        network: NetworkSpec {
            hidden: vec![5],
            activation: Activation::Relu,
            heads: Heads::Shared,
            engine: Engine::Fused,
        },
        method: MethodSpec {
            name: kind.into(),
            kind: kind.into(),
            params: serde_json::from_value(params).unwrap(),
        },
        training: TrainingSpec { batch_size: 1, epochs: 1, validation: 0 },
        eval: EvalSpec {
            before_training: false,
            tasks: EvalTasks::Subsample { earlier: 0 },
            plasticity: PlasticitySpec { every: 0, ..PlasticitySpec::default() },
            ..EvalSpec::default()
        },
        checkpoint: CheckpointSpec::default(),
        run_dir: None,
    };
    spec.id = spec.content_id();
    let start = cpu_seconds();
    engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap();
    (cpu_seconds() - start) * 1e6 / (tasks * 10_000) as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 500 } else { 3000 });
    workers::model::flush_denormals();
    println!("| workload | clorch | PyTorch 2.15 (1 thread) | ratio |");
    println!("|---|---:|---:|---:|");
    for (sizes, batch, torch) in [
        (vec![784, 100, 100, 10], 1, 1_288.0),
        (vec![784, 100, 100, 10], 32, 37_773.0),
        (vec![784, 100, 100, 10], 256, 113_243.0),
        (vec![784, 2000, 2000, 2000, 10], 1, 37.0),
        (vec![784, 2000, 2000, 2000, 10], 128, 1_137.0),
    ] {
        let s = mlp_samples_per_second(&sizes, batch, budget);
        let name: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        println!(
            "| MLP {} SGD, batch {batch} | {s:.0} samples/s | {torch:.0} samples/s | {:.2}× |",
            name.join("-"),
            s / torch
        );
    }
    let tasks = if quick { 5 } else { 30 };
    for (kind, params, reference) in [
        ("sgd", serde_json::json!({"lr": 0.01}), 549.0),
        ("cbp", serde_json::json!({"lr": 0.01, "replacement_rate": 1e-4, "accumulate": false}), 847.0),
    ] {
        let us = regression_us_per_example(kind, params, tasks);
        println!(
            "| slowly-changing regression 20-5-1 `{kind}`, batch 1 | {us:.2} µs/example | {reference:.0} µs/example (reference code) | {:.0}× |",
            reference / us
        );
    }
}
