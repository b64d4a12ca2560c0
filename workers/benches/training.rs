//! Training throughput of the worker engine, single-threaded, next to the PyTorch figures of
//! `../shared/anchors` (PyTorch 2.15, one thread, this machine kind).
//!
//! `cargo bench -p clorch-workers --bench training` (add `-- --quick` for a shorter run).
//! `clorch bench` prints the same table and adds the orchestrator's figures.

use std::time::Duration;

use workers::bench;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let budget = Duration::from_millis(if quick { 500 } else { 3000 });
    workers::model::flush_denormals();
    println!("| workload | clorch | PyTorch 2.15 (1 thread) | ratio |");
    println!("|---|---:|---:|---:|");
    for (sizes, batch, torch) in bench::MLP_ANCHORS {
        let s = bench::mlp_samples_per_second(sizes, batch, budget);
        let name: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        println!(
            "| MLP {} SGD, batch {batch} | {s:.0} samples/s | {torch:.0} samples/s | {:.2}× |",
            name.join("-"),
            s / torch
        );
    }
    let tasks = if quick { 5 } else { 30 };
    for (kind, params, reference) in bench::regression_anchors() {
        let us = bench::run_cost_per_example(&bench::regression_spec(kind, params, tasks))
            .expect("the benchmark spec runs");
        println!(
            "| slowly-changing regression 20-5-1 `{kind}`, batch 1 | {us:.2} µs/example | {reference:.0} µs/example (reference code) | {:.0}× |",
            reference / us
        );
    }
    println!("\nfp32 FMA peak of this core: {:.1} GFLOP/s", bench::fma_peak_gflops(budget));
}
