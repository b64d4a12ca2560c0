//! Speed measurements of the worker engine, shared by `cargo bench -p clorch-workers` and
//! `clorch bench`.
//!
//! Times are CPU time of this process (user + system, from `getrusage`), not wall
//! clock: every measurement here is single-threaded, so on an idle machine the two agree, and
//! on a busy one (a shared 2-core box) CPU time still measures the code rather than its
//! neighbours.

use std::time::Duration;

use crate::stream::{FlipMode, SlowlyChangingRegressionSpec};

use rand::Rng as _;

use crate::engine::{self, RunControl, RunError};
use crate::method::Compute;
use crate::model::convnet::{self, ConvNet};
use crate::model::Mlp;
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::protocol::*;
use crate::rng;

/// The PyTorch anchors of `../shared/anchors` (PyTorch 2.15, one thread, this machine kind):
/// network sizes, batch size, samples per second of an SGD step.
pub const MLP_ANCHORS: [(&[usize], usize, f64); 5] = [
    (&[784, 100, 100, 10], 1, 1_288.0),
    (&[784, 100, 100, 10], 32, 37_773.0),
    (&[784, 100, 100, 10], 256, 113_243.0),
    (&[784, 2000, 2000, 2000, 10], 1, 37.0),
    (&[784, 2000, 2000, 2000, 10], 128, 1_137.0),
];

/// The conv-net anchors of `../shared/anchors` (PyTorch 2.15, one thread, best of 3, this
/// machine kind): architecture, outputs, batch size, samples per second of an SGD step on
/// random 3×32×32 inputs in training mode.
pub const CONV_ANCHORS: [(&str, usize, usize, f64); 6] = [
    ("convnet", 2, 1, 302.0),
    ("convnet", 2, 32, 949.0),
    ("convnet", 2, 100, 887.0),
    ("reduced_resnet18", 100, 10, 99.0),
    ("reduced_resnet18", 100, 32, 103.0),
    ("reduced_resnet18", 100, 128, 106.0),
];

/// The other conv-net anchors of `../shared/anchors` (no speed target, same format): the
/// loss-of-plasticity ResNet-18 (batch 90 there, as its reference code) and the MNIST CNN.
pub const CONV_EXTRA_ANCHORS: [(&str, usize, usize, f64); 6] = [
    ("resnet18", 100, 1, 8.4),
    ("resnet18", 100, 32, 20.5),
    ("resnet18", 100, 90, 20.7),
    ("cnn_mnist", 10, 1, 170.0),
    ("cnn_mnist", 10, 32, 602.0),
    ("cnn_mnist", 10, 128, 626.0),
];

/// Training samples per second of plain SGD steps (forward, cross-entropy, backward, update)
/// of `net` in training mode on random inputs and classes, best of `repeats` runs of about
/// `budget` of CPU time each.
pub fn conv_samples_per_second(net: &ConvNet, batch: usize, budget: Duration, repeats: usize) -> f64 {
    conv_samples_per(net, batch, budget, repeats, cpu_seconds)
}

/// [`conv_samples_per_second`] by the wall clock, with the matrix products on `threads`
/// threads as `training.threads` runs them: what a run with that setting gains.
pub fn conv_samples_per_wall_second(
    net: &ConvNet,
    batch: usize,
    budget: Duration,
    repeats: usize,
    threads: usize,
) -> Result<f64, String> {
    let start = std::time::Instant::now();
    crate::model::threads::with_threads(threads, || {
        conv_samples_per(net, batch, budget, repeats, || start.elapsed().as_secs_f64())
    })
}

/// Samples per second of SGD steps on `net`, the seconds read from `clock`.
fn conv_samples_per(
    net: &ConvNet,
    batch: usize,
    budget: Duration,
    repeats: usize,
    clock: impl Fn() -> f64,
) -> f64 {
    let mut r = rng::stream(0, "bench", 1);
    let mut net = net.clone();
    let mut ws = convnet::Workspace::new(&net, batch);
    let mut grads = net.zeros_like();
    let outputs = net.outputs() as u32;
    ws.input.iter_mut().for_each(|v| *v = r.gen_range(-1.0..1.0));
    let classes: Vec<u32> = (0..batch).map(|_| r.gen_range(0..outputs)).collect();
    let mut step = |net: &mut ConvNet| {
        convnet::loss_and_gradients(net, &mut ws, convnet::Mode::Train, &classes, &mut grads)
            .expect("the benchmark networks run in training mode");
        convnet::sgd_step(net, &grads, 0.01);
    };
    for _ in 0..3 {
        step(&mut net);
    }
    let mut best = 0.0f64;
    for _ in 0..repeats {
        let start = clock();
        let mut steps = 0u64;
        while clock() - start < budget.as_secs_f64() || steps < 2 {
            step(&mut net);
            steps += 1;
        }
        best = best.max((steps * batch as u64) as f64 / (clock() - start));
    }
    best
}

/// The loss-of-plasticity reference code on slowly-changing regression (20-5-1, batch 1,
/// PyTorch, one thread): method, its parameters here, µs per example there.
pub fn regression_anchors() -> [(&'static str, serde_json::Value, f64); 2] {
    [
        ("sgd", serde_json::json!({"lr": 0.01}), 549.0),
        ("cbp", serde_json::json!({"lr": 0.01, "replacement_rate": 1e-4, "accumulate": false}), 847.0),
    ]
}

/// CPU seconds this process has used (user + system, all threads), from `getrusage`; 0 if
/// the call fails.
pub fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| seconds(u.user_time()) + seconds(u.system_time()))
}

/// Training samples per second of plain SGD steps (forward, cross-entropy, backward, update)
/// of a ReLU MLP of `sizes` on random data, with the fused engine, measured for about
/// `budget` of CPU time.
pub fn mlp_samples_per_second(sizes: &[usize], batch: usize, budget: Duration) -> f64 {
    mlp_samples_per(sizes, batch, budget, cpu_seconds)
}

/// [`mlp_samples_per_second`] by the wall clock, the products on `threads` threads as
/// `training.threads` runs them.
pub fn mlp_samples_per_wall_second(
    sizes: &[usize],
    batch: usize,
    budget: Duration,
    threads: usize,
) -> Result<f64, String> {
    let start = std::time::Instant::now();
    crate::model::threads::with_threads(threads, || {
        mlp_samples_per(sizes, batch, budget, || start.elapsed().as_secs_f64())
    })
}

/// Samples per second of SGD steps on an MLP of `sizes`, the seconds read from `clock`.
fn mlp_samples_per(sizes: &[usize], batch: usize, budget: Duration, clock: impl Fn() -> f64) -> f64 {
    let mut r = rng::stream(0, "bench", 0);
    let mut net = Mlp::new(sizes, Activation::Relu, &mut r);
    let config = OptimizerConfig { lr: 0.003, ..OptimizerConfig::defaults(OptimizerKind::Sgd) };
    let mut opt = Optimizer::new(config, &net);
    let mut compute = Compute::new(&net, Engine::Fused, batch);
    let outputs = *sizes.last().expect("sizes are never empty");
    let inputs: Vec<f32> = (0..batch * sizes[0]).map(|_| r.gen_range(-1.0..1.0)).collect();
    let classes: Vec<u32> = (0..batch).map(|_| r.gen_range(0..outputs as u32)).collect();
    compute.set_batch(&inputs, &classes);
    let mut step = |compute: &mut Compute, net: &mut Mlp| {
        compute.loss_and_gradients(net, 0..outputs, 0, |_| {});
        opt.step(net, &compute.grads);
    };
    for _ in 0..3 {
        step(&mut compute, &mut net);
    }
    let start = clock();
    let mut steps = 0u64;
    while clock() - start < budget.as_secs_f64() || steps < 3 {
        step(&mut compute, &mut net);
        steps += 1;
    }
    (steps * batch as u64) as f64 / (clock() - start)
}

/// Floating-point operations of one training step per example: 6 per weight (2 forward, 4
/// backward: input gradients and weight gradients), the convention of the PyTorch anchor.
pub fn flops_per_example(sizes: &[usize]) -> f64 {
    6.0 * sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>()
}

/// The spec of a slowly-changing-regression run (20-5-1 ReLU learner, batch 1) with `kind`.
pub fn regression_spec(kind: &str, params: serde_json::Value, tasks: usize) -> RunSpec {
    let mut spec = RunSpec {
        protocol: PROTOCOL_VERSION,
        id: String::new(),
        experiment: "bench".into(),
        seed: 0,
        stream: crate::stream::spec_of::<crate::stream::SlowlyChangingRegressionKind>(
            &SlowlyChangingRegressionSpec {
                tasks,
                inputs: 20,
                slow_bits: 15,
                flip_every: 10_000,
                flip: FlipMode::One,
                target_hidden: 100,
                beta: 0.7,
                threshold: Default::default(),
                test_examples: 100,
            },
        ),
        network: NetworkSpec {
            hidden: vec![5],
            layers: Vec::new(),
            architecture: None,
            activation: Activation::Relu,
            heads: Heads::Shared,
            engine: Engine::Fused,
        },
        method: MethodSpec {
            name: kind.into(),
            kind: kind.into(),
            params: serde_json::from_value(params).unwrap_or_default(),
            worker: None,
        },
        training: TrainingSpec { batch_size: 1, epochs: 1, validation: 0, threads: 1 },
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
    spec
}

/// Microseconds of CPU per example of a whole run (data generation, evaluation and events
/// included), with the examples per task of its stream.
pub fn run_cost_per_example(spec: &RunSpec) -> Result<f64, RunError> {
    let tasks = crate::stream::tasks(&spec.stream).map_err(RunError::Stream)?;
    let examples = match spec.stream.params.get("flip_every").and_then(serde_json::Value::as_u64) {
        Some(flip_every) => (tasks as u64 * flip_every) as f64,
        None => tasks as f64,
    };
    let start = cpu_seconds();
    engine::run(spec, Box::new(std::io::sink()), &RunControl::default())?;
    Ok((cpu_seconds() - start) * 1e6 / examples)
}

/// The core's single-precision FMA throughput on 512-bit vectors in GFLOP/s, or `None` on a
/// CPU without AVX-512. [`fma_peak_gflops`] dispatches through pulp, which stops at 256-bit
/// AVX2 on stable Rust, while faer's GEMM runs AVX-512 kernels where the CPU has them: on such a
/// core (Zen 5: about 205 against 115 GFLOP/s) this is the peak the conv kernels are judged by.
pub fn fma512_peak_gflops(budget: Duration) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps,
        };
        #[target_feature(enable = "avx512f")]
        fn probe(iterations: u64) -> f32 {
            // Twelve independent chains hide the FMA latency, as in `fma_peak_gflops`.
            let a = _mm512_set1_ps(0.999_999);
            let b = _mm512_set1_ps(1e-7);
            let mut acc: [__m512; 12] = [_mm512_set1_ps(1.0); 12];
            for _ in 0..iterations {
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(*x, a, b);
                }
            }
            let mut sum = _mm512_setzero_ps();
            for x in acc {
                sum = _mm512_add_ps(sum, x);
            }
            _mm512_reduce_add_ps(sum)
        }
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return None;
        }
        let mut iterations = 1u64 << 20;
        loop {
            let start = cpu_seconds();
            // SAFETY: the CPU has AVX-512F, checked above.
            let sink = unsafe { probe(iterations) };
            let elapsed = cpu_seconds() - start;
            if elapsed >= budget.as_secs_f64() || iterations > 1 << 40 {
                std::hint::black_box(sink);
                return Some((iterations * 12 * 16 * 2) as f64 / elapsed / 1e9);
            }
            iterations *= 2;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = budget;
        None
    }
}

/// The core's single-precision FMA throughput in GFLOP/s, measured with independent fused
/// multiply-adds on the widest vectors the CPU offers (runtime dispatch through `pulp`, so the
/// binary stays portable). The peak every kernel is judged against.
pub fn fma_peak_gflops(budget: Duration) -> f64 {
    struct Probe {
        iterations: u64,
    }
    impl pulp::WithSimd for Probe {
        type Output = (f32, u64);
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, simd: S) -> (f32, u64) {
            // Twelve independent chains hide the FMA latency (4 cycles × 2 pipes + slack).
            let a = simd.splat_f32s(0.999_999);
            let b = simd.splat_f32s(1e-7);
            let mut acc = [simd.splat_f32s(1.0); 12];
            for _ in 0..self.iterations {
                for x in acc.iter_mut() {
                    *x = simd.mul_add_f32s(*x, a, b);
                }
            }
            let mut sum = simd.splat_f32s(0.0);
            for x in acc {
                sum = simd.add_f32s(sum, x);
            }
            let lanes = core::mem::size_of::<S::f32s>() / 4;
            (simd.reduce_sum_f32s(sum), lanes as u64)
        }
    }
    let arch = pulp::Arch::new();
    let mut iterations = 1u64 << 20;
    loop {
        let start = cpu_seconds();
        let (sink, lanes) = arch.dispatch(Probe { iterations });
        let elapsed = cpu_seconds() - start;
        if elapsed >= budget.as_secs_f64() || iterations > 1 << 40 {
            std::hint::black_box(sink);
            return (iterations * 12 * lanes * 2) as f64 / elapsed / 1e9;
        }
        iterations *= 2;
    }
}
