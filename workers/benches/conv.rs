//! Training throughput of the conv-net kernels, single-threaded, next to the PyTorch figures of
//! `../shared/anchors` (PyTorch 2.15, one thread, this machine kind): SGD steps (forward,
//! cross-entropy, backward, update) in training mode on random inputs (3×32×32; 1×28×28 for the
//! MNIST CNN), best of 3.
//!
//! `cargo bench -p clorch-workers --bench conv` (add `-- --quick` for a shorter run, `-- --all`
//! for the anchors without a speed target). GFLOP/s
//! counts 2 FLOPs per multiply-add of the convolutions and linear layers and a training step
//! as 3 forward passes, as the anchor script does. Times are CPU time of this process, as in
//! the `training` bench.

use std::time::Duration;

use workers::bench;
use workers::model::convnet::architectures;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `-- --all` adds the anchors without a speed target (the wide ResNet-18, the MNIST CNN).
    let all = std::env::args().any(|a| a == "--all");
    let budget = Duration::from_millis(if quick { 500 } else { 3000 });
    workers::model::flush_denormals();
    let peak = bench::fma_peak_gflops(Duration::from_millis(500));
    let peak512 = bench::fma512_peak_gflops(Duration::from_millis(500));
    println!(
        "| net | batch | clorch samples/s | GFLOP/s | share of 256-bit FMA peak | share of 512-bit FMA peak | PyTorch 2.15 (1 thread) | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let extra: &[_] = if all { &bench::CONV_EXTRA_ANCHORS } else { &[] };
    for &(name, outputs, batch, torch) in bench::CONV_ANCHORS.iter().chain(extra) {
        let mut r = workers::rng::stream(0, "bench", 0);
        let net = match name {
            "convnet" => architectures::convnet(outputs, &mut r),
            "resnet18" => architectures::resnet18(outputs, &mut r),
            "cnn_mnist" => architectures::cnn_mnist(outputs, &mut r),
            _ => architectures::reduced_resnet18(outputs, &mut r),
        }
        .expect("the named architectures build");
        let flops = 3.0 * 2.0 * architectures::forward_macs(&net) as f64;
        let s = bench::conv_samples_per_second(&net, batch, budget, 3);
        let gflops = s * flops / 1e9;
        let share512 = peak512.map_or("—".to_string(), |p| format!("{:.0}%", 100.0 * gflops / p));
        println!(
            "| {name} | {batch} | {s:.1} | {gflops:.1} | {:.0}% | {share512} | {torch:.0} | {:.2}× |",
            100.0 * gflops / peak,
            s / torch
        );
    }
    println!("\nfp32 FMA peak of this core: {peak:.1} GFLOP/s on 256-bit vectors (pulp's dispatch)");
    if let Some(p) = peak512 {
        println!(
            "fp32 FMA peak of this core on 512-bit vectors (faer's GEMM kernels use them): {p:.1} GFLOP/s"
        );
    }
}
