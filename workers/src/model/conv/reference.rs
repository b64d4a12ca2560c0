//! Reference results the kernels are tested against, computed and differentiated by dfdx.
//!
//! dfdx 0.13 builds its `conv2d` and `pool2d` only with its `nightly` feature (they need
//! `generic_const_exprs`), and its `BatchNorm2D` takes compile-time channel counts only. So the
//! references are composed of dfdx's stable run-time-shaped operations, differentiated by its
//! tape: a convolution is a `gather` of every window's inputs (the index of an appended zero
//! for padded cells) reshaped into a matrix and multiplied by the transposed weights; pooling
//! is the same `gather` reduced by `max` or `mean` over the window; batch norm is the
//! composition of dfdx's own `BatchNorm2D`. The window indices come from a direct formula,
//! independent of the kernels' im2col. Running statistics are checked against a loop in `f64`.

use dfdx::prelude::{
    Axes2, Axes3, Axis, Backward, BroadcastTo, Cpu, GatherTo, MaxTo, MeanTo, NoneTape, OwnedTape, PermuteTo,
    Rank0, ReshapeTo, SumTo, Tensor, TensorFromVec, Trace, TryMatMul,
};
use rand::Rng as _;

use super::{Conv2dGeometry, PoolGeometry};
use crate::rng::Rng;

type T4 = Tensor<(usize, usize, usize, usize), f32, Cpu>;

/// `len` values uniform in (−1, 1).
pub fn random(r: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| r.gen_range(-1.0f32..1.0)).collect()
}

/// Asserts `|actual − expected| ≤ tol · max|expected|` element-wise: relative error measured
/// against the largest magnitude, so near-zero entries of a large tensor do not demand
/// digits that f32 sums cannot hold.
pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol * scale, "{what}: [{i}] {a} vs {e} (scale {scale})");
    }
}

/// Results of a layer's forward pass and its backward pass for a given output gradient.
pub struct Expected {
    pub output: Vec<f32>,
    pub grad_input: Vec<f32>,
    /// Weight gradient (convolution) or γ gradient (batch norm); empty for pooling.
    pub grad_weight: Vec<f32>,
    /// Bias gradient (convolution) or β gradient (batch norm); empty for pooling.
    pub grad_bias: Vec<f32>,
}

fn image(dev: &Cpu, x: &[f32], shape: (usize, usize, usize, usize)) -> T4 {
    dev.tensor_from_vec(x.to_vec(), shape)
}

/// Per output position (sample, channel-or-none, row, column) and window tap, the index of
/// the input value it reads, or `padding` (one past the input) for a padded cell. Taps run
/// over `(channel, row, column)` for a convolution (`per_channel` false: every input channel
/// feeds every output), over `(row, column)` of the position's own channel for pooling.
#[allow(clippy::too_many_arguments)]
fn window_indices(
    batch: usize,
    channels: usize,
    (in_h, in_w): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    (oh, ow): (usize, usize),
    per_channel: bool,
) -> Vec<usize> {
    let padding = batch * channels * in_h * in_w;
    let mut idx = Vec::new();
    let out_channels = if per_channel { channels } else { 1 };
    for n in 0..batch {
        for oc in 0..out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let taps = if per_channel { oc..oc + 1 } else { 0..channels };
                    for c in taps {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * sh + ki) as isize - ph as isize;
                                let ix = (ox * sw + kj) as isize - pw as isize;
                                let inside =
                                    iy >= 0 && ix >= 0 && (iy as usize) < in_h && (ix as usize) < in_w;
                                idx.push(if inside {
                                    ((n * channels + c) * in_h + iy as usize) * in_w + ix as usize
                                } else {
                                    padding
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    idx
}

/// `x` with one more element, `fill`, that padded window cells read.
fn padded(dev: &Cpu, x: &[f32], fill: f32) -> Tensor<(usize,), f32, Cpu> {
    let mut v = x.to_vec();
    v.push(fill);
    let len = v.len();
    dev.tensor_from_vec(v, (len,))
}

/// The convolution of `batch` samples and its gradients for the output gradient `dy`
/// (bias optional), composed of dfdx operations.
pub fn dfdx_conv2d(
    g: &Conv2dGeometry,
    batch: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    dy: &[f32],
) -> Expected {
    let dev = Cpu::default();
    let (oh, ow, k, co) = (g.out_h(), g.out_w(), g.k(), g.out_channels);
    let idx = window_indices(
        batch,
        g.in_channels,
        (g.in_h, g.in_w),
        (g.kernel_h, g.kernel_w),
        (g.stride_h, g.stride_w),
        (g.pad_h, g.pad_w),
        (oh, ow),
        false,
    );
    let rows = batch * oh * ow;
    let xt = padded(&dev, x, 0.0);
    let wt = dev.tensor_from_vec(w.to_vec(), (co, k));
    let bt = dev.tensor_from_vec(b.map_or_else(|| vec![0.0; co], <[f32]>::to_vec), (co,));
    let idx = dev.tensor_from_vec(idx, (rows * k,));
    let cols = xt.leaky_trace().gather(idx).reshape_like(&(rows, k));
    // (samples·positions) × out_channels
    let y = cols.matmul(wt.leaky_trace().permute::<(usize, usize), Axes2<1, 0>>());
    let y = y + bt.leaky_trace().broadcast_like::<_, Axis<0>>(&(rows, co));
    let y_rows = y.retaped::<NoneTape>().as_vec();
    let dy_rows = nchw_to_rows(dy, batch, co, oh * ow);
    let grads = (y * dev.tensor_from_vec(dy_rows, (rows, co))).sum::<Rank0, _>().backward();
    let mut grad_input = grads.get(&xt).as_vec();
    grad_input.pop();
    Expected {
        output: rows_to_nchw(&y_rows, batch, co, oh * ow),
        grad_input,
        grad_weight: grads.get(&wt).as_vec(),
        grad_bias: grads.get(&bt).as_vec(),
    }
}

/// NCHW → `(sample·position) × channel`.
fn nchw_to_rows(v: &[f32], batch: usize, channels: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for n in 0..batch {
        for c in 0..channels {
            for p in 0..plane {
                out[(n * plane + p) * channels + c] = v[(n * channels + c) * plane + p];
            }
        }
    }
    out
}

/// `(sample·position) × channel` → NCHW.
fn rows_to_nchw(v: &[f32], batch: usize, channels: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for n in 0..batch {
        for c in 0..channels {
            for p in 0..plane {
                out[(n * channels + c) * plane + p] = v[(n * plane + p) * channels + c];
            }
        }
    }
    out
}

/// Max (`max` true) or average pooling of `batch` samples, and its input gradient, composed
/// of dfdx operations: padded cells read −∞ for max pooling and 0 for average pooling.
pub fn dfdx_pool2d(g: &PoolGeometry, batch: usize, max: bool, x: &[f32], dy: &[f32]) -> Expected {
    let dev = Cpu::default();
    let (oh, ow) = (g.out_h(), g.out_w());
    let idx = window_indices(
        batch,
        g.channels,
        (g.in_h, g.in_w),
        (g.kernel_h, g.kernel_w),
        (g.stride_h, g.stride_w),
        (g.pad_h, g.pad_w),
        (oh, ow),
        true,
    );
    let (rows, k) = (batch * g.channels * oh * ow, g.kernel_h * g.kernel_w);
    let xt = padded(&dev, x, if max { f32::NEG_INFINITY } else { 0.0 });
    let idx = dev.tensor_from_vec(idx, (rows * k,));
    let windows = xt.leaky_trace().gather(idx).reshape_like(&(rows, k));
    let y = if max { windows.max::<(usize,), Axis<1>>() } else { windows.mean::<(usize,), Axis<1>>() };
    let output = y.retaped::<NoneTape>().as_vec();
    let grads = (y * dev.tensor_from_vec(dy.to_vec(), (rows,))).sum::<Rank0, _>().backward();
    let mut grad_input = grads.get(&xt).as_vec();
    grad_input.pop();
    Expected { output, grad_input, grad_weight: Vec::new(), grad_bias: Vec::new() }
}

/// dfdx's mean over each sample's plane (global average pooling) and its input gradient.
pub fn dfdx_global_avg_pool(shape: (usize, usize, usize, usize), x: &[f32], dy: &[f32]) -> Expected {
    let dev = Cpu::default();
    let x = image(&dev, x, shape);
    let y = x.leaky_trace().mean::<(usize, usize), Axes2<2, 3>>();
    let output = y.retaped::<NoneTape>().as_vec();
    let grads = (y * dev.tensor_from_vec(dy.to_vec(), (shape.0, shape.1))).sum::<Rank0, _>().backward();
    Expected { output, grad_input: grads.get(&x).as_vec(), grad_weight: Vec::new(), grad_bias: Vec::new() }
}

/// Training-mode batch normalisation composed of dfdx operations exactly as dfdx's
/// `BatchNorm2D::train_fwd` composes it (biased batch variance, ε inside the square root),
/// with the gradients of input, γ and β.
pub fn dfdx_batch_norm(
    shape: (usize, usize, usize, usize),
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    dy: &[f32],
) -> Expected {
    let dev = Cpu::default();
    let c = shape.1;
    let x = image(&dev, x, shape);
    let gamma = dev.tensor_from_vec(gamma.to_vec(), (c,));
    let beta = dev.tensor_from_vec(beta.to_vec(), (c,));
    let xt = x.leaky_trace();
    let mean = xt.retaped::<OwnedTape<f32, Cpu>>().mean::<(usize,), Axes3<0, 2, 3>>();
    let centered = xt - mean.broadcast_like::<_, Axes3<0, 2, 3>>(&shape);
    let var = centered.retaped::<OwnedTape<f32, Cpu>>().square().mean::<(usize,), Axes3<0, 2, 3>>();
    let std = (var + eps).sqrt();
    let scale = (gamma.leaky_trace() / std).broadcast_like::<_, Axes3<0, 2, 3>>(&shape);
    let y = centered * scale + beta.leaky_trace().broadcast_like::<_, Axes3<0, 2, 3>>(&shape);
    let output = y.retaped::<NoneTape>().as_vec();
    let grads = (y * dev.tensor_from_vec(dy.to_vec(), shape)).sum::<Rank0, _>().backward();
    Expected {
        output,
        grad_input: grads.get(&x).as_vec(),
        grad_weight: grads.get(&gamma).as_vec(),
        grad_bias: grads.get(&beta).as_vec(),
    }
}

/// Per-channel mean and unbiased variance over samples and positions, in f64.
pub fn channel_stats(shape: (usize, usize, usize, usize), x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, w) = shape;
    let hw = h * w;
    let count = (n * hw) as f64;
    let mut means = vec![0.0; c];
    let mut vars = vec![0.0; c];
    for ch in 0..c {
        let values = || (0..n).flat_map(move |s| x[(s * c + ch) * hw..(s * c + ch + 1) * hw].iter());
        let mean = values().map(|&v| v as f64).sum::<f64>() / count;
        means[ch] = mean;
        vars[ch] = values().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (count - 1.0);
    }
    (means, vars)
}
