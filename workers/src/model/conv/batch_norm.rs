//! 2-d batch normalisation over NCHW tensors: per channel, statistics over samples and
//! positions, then an affine map `γ·x̂ + β`.
//!
//! Training mode normalises with the batch's mean and biased variance, and moves the running
//! statistics towards the batch's (`running ← (1−m)·running + m·batch`, with the unbiased
//! variance, as PyTorch). Evaluation mode normalises with the running statistics and leaves
//! them alone. Each sample's plane is summed in `f32` over eight lanes and the planes are added
//! in `f64`: a channel of a batch of 128 32×32 maps sums 131,072 values, past what one `f32`
//! sum holds to 1e-4. The forward pass saves each channel's mean and
//! 1/σ for the backward pass, which recomputes x̂ from the layer's input rather than storing it.

/// Batch-norm hyper-parameters, PyTorch's defaults by [`Default`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance under the square root.
    pub eps: f32,
    /// Weight of the batch statistics in the running statistics' update.
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig { eps: 1e-5, momentum: 0.1 }
    }
}

/// Σ v over eight interleaved lanes: a plain `f32` fold is a sequential chain the compiler
/// may not reorder, eight independent ones vectorise.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&x| f(x)).sum::<f32>()
}

/// (Σ dy, Σ dy·x) over eight interleaved lanes.
#[inline(always)]
fn lane_sums2(dy: &[f32], x: &[f32]) -> (f32, f32) {
    let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
    let (cd, cx) = (dy.chunks_exact(8), x.chunks_exact(8));
    let (rd, rx) = (cd.remainder(), cx.remainder());
    for (d, v) in cd.zip(cx) {
        for i in 0..8 {
            a[i] += d[i];
            b[i] += d[i] * v[i];
        }
    }
    let tail = rd.iter().zip(rx).fold((0.0f32, 0.0f32), |(s, t), (&d, &v)| (s + d, t + d * v));
    (a.iter().sum::<f32>() + tail.0, b.iter().sum::<f32>() + tail.1)
}

/// The `plane`-long runs of channel `c` over a batch: one per sample.
fn channel_runs(data: &[f32], channels: usize, plane: usize, c: usize) -> impl Iterator<Item = &[f32]> {
    data.chunks_exact(channels * plane).map(move |sample| &sample[c * plane..(c + 1) * plane])
}

fn check_sizes(channels: usize, plane: usize, input: &[f32], output: &[f32], params: [&[f32]; 2]) {
    assert!(plane > 0 && channels > 0, "batch norm over an empty plane");
    assert_eq!(input.len() % (channels * plane), 0, "batch norm input size");
    assert_eq!(output.len(), input.len(), "batch norm output size");
    for p in params {
        assert_eq!(p.len(), channels, "batch norm per-channel size");
    }
}

/// Training-mode forward pass of `input` (`batch × channels × plane`): writes `output`,
/// updates the running statistics and saves each channel's batch mean and 1/σ (`save_mean`,
/// `save_inv_std`) for [`batch_norm_backward`]. Needs more than one value per channel (the
/// unbiased variance divides by n−1), as PyTorch.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_forward(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    output: &mut [f32],
    save_mean: &mut [f32],
    save_inv_std: &mut [f32],
) {
    pulp::Arch::new().dispatch(|| {
        batch_norm_train_forward_impl(
            config,
            channels,
            plane,
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            output,
            save_mean,
            save_inv_std,
        )
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn batch_norm_train_forward_impl(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    output: &mut [f32],
    save_mean: &mut [f32],
    save_inv_std: &mut [f32],
) {
    check_sizes(channels, plane, input, output, [gamma, beta]);
    for p in [&*running_mean, &*running_var, &*save_mean, &*save_inv_std] {
        assert_eq!(p.len(), channels, "batch norm per-channel size");
    }
    let n = input.len() / channels;
    assert!(n > 1, "batch norm in training mode needs more than one value per channel");
    let m = config.momentum as f64;
    for c in 0..channels {
        let sum: f64 = channel_runs(input, channels, plane, c).map(|r| lane_sum(r, |v| v) as f64).sum();
        let mean = sum / n as f64;
        let mf = mean as f32;
        let sq: f64 = channel_runs(input, channels, plane, c)
            .map(|r| lane_sum(r, |v| (v - mf) * (v - mf)) as f64)
            .sum();
        let var = sq / n as f64;
        let inv_std = 1.0 / (var + config.eps as f64).sqrt();
        save_mean[c] = mf;
        save_inv_std[c] = inv_std as f32;
        running_mean[c] = ((1.0 - m) * running_mean[c] as f64 + m * mean) as f32;
        running_var[c] = ((1.0 - m) * running_var[c] as f64 + m * var * n as f64 / (n - 1) as f64) as f32;
        affine(input, output, channels, plane, c, (gamma[c] as f64 * inv_std) as f32, mean, beta[c]);
    }
}

/// `output = a·x + (β − mean·a)` on channel `c`, where `a = γ/σ`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn affine(
    input: &[f32],
    output: &mut [f32],
    channels: usize,
    plane: usize,
    c: usize,
    a: f32,
    mean: f64,
    beta: f32,
) {
    let b = (beta as f64 - mean * a as f64) as f32;
    for (src, dst) in input.chunks_exact(channels * plane).zip(output.chunks_exact_mut(channels * plane)) {
        for (d, &v) in dst[c * plane..(c + 1) * plane].iter_mut().zip(&src[c * plane..(c + 1) * plane]) {
            *d = v * a + b;
        }
    }
}

/// Evaluation-mode forward pass: normalises with the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_forward(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    output: &mut [f32],
) {
    pulp::Arch::new().dispatch(|| {
        batch_norm_eval_forward_impl(
            config,
            channels,
            plane,
            input,
            gamma,
            beta,
            running_mean,
            running_var,
            output,
        )
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn batch_norm_eval_forward_impl(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    output: &mut [f32],
) {
    check_sizes(channels, plane, input, output, [gamma, beta]);
    check_sizes(channels, plane, input, output, [running_mean, running_var]);
    for c in 0..channels {
        let inv_std = 1.0 / (running_var[c] as f64 + config.eps as f64).sqrt();
        let a = (gamma[c] as f64 * inv_std) as f32;
        affine(input, output, channels, plane, c, a, running_mean[c] as f64, beta[c]);
    }
}

/// Σ dy and Σ dy·x over channel `c`, in f64.
#[inline(always)]
fn channel_sums(input: &[f32], grad_output: &[f32], channels: usize, plane: usize, c: usize) -> (f64, f64) {
    channel_runs(grad_output, channels, plane, c).zip(channel_runs(input, channels, plane, c)).fold(
        (0.0, 0.0),
        |(s, sx), (dy, x)| {
            let (a, b) = lane_sums2(dy, x);
            (s + a as f64, sx + b as f64)
        },
    )
}

/// Training-mode backward pass (the batch statistics depend on the input): the input
/// gradient (overwritten) and the gradients of γ and β (overwritten), from the layer's
/// `input` and the mean and 1/σ its forward pass saved.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    pulp::Arch::new().dispatch(|| {
        batch_norm_backward_impl(
            channels,
            plane,
            input,
            gamma,
            save_mean,
            save_inv_std,
            grad_output,
            grad_input,
            grad_gamma,
            grad_beta,
        )
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn batch_norm_backward_impl(
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    save_mean: &[f32],
    save_inv_std: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    check_sizes(channels, plane, input, grad_output, [gamma, save_mean]);
    check_sizes(channels, plane, input, grad_input, [save_inv_std, grad_gamma]);
    assert_eq!(grad_beta.len(), channels, "batch norm per-channel size");
    let n = (input.len() / channels) as f64;
    for c in 0..channels {
        let (mean, inv_std) = (save_mean[c] as f64, save_inv_std[c] as f64);
        let (sum_dy, sum_dy_x) = channel_sums(input, grad_output, channels, plane, c);
        let d_beta = sum_dy;
        let d_gamma = inv_std * (sum_dy_x - mean * sum_dy);
        grad_beta[c] = d_beta as f32;
        grad_gamma[c] = d_gamma as f32;
        // dx = a·(dy − dβ/n − x̂·dγ/n), a = γ/σ, x̂ = (x − mean)/σ: dx = a·dy + p·x + q.
        let a = gamma[c] as f64 * inv_std;
        let p = -a * inv_std * d_gamma / n;
        let q = -a * d_beta / n - p * mean;
        let (a, p, q) = (a as f32, p as f32, q as f32);
        let runs = grad_output
            .chunks_exact(channels * plane)
            .zip(input.chunks_exact(channels * plane))
            .zip(grad_input.chunks_exact_mut(channels * plane));
        for ((dy, x), dx) in runs {
            let range = c * plane..(c + 1) * plane;
            for ((d, &g), &v) in dx[range.clone()].iter_mut().zip(&dy[range.clone()]).zip(&x[range]) {
                *d = a * g + p * v + q;
            }
        }
    }
}

/// Evaluation-mode backward pass (the running statistics are constants): input gradient
/// `γ/σ·dy` and the gradients of γ and β, all overwritten.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_backward(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    pulp::Arch::new().dispatch(|| {
        batch_norm_eval_backward_impl(
            config,
            channels,
            plane,
            input,
            gamma,
            running_mean,
            running_var,
            grad_output,
            grad_input,
            grad_gamma,
            grad_beta,
        )
    })
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn batch_norm_eval_backward_impl(
    config: &BatchNormConfig,
    channels: usize,
    plane: usize,
    input: &[f32],
    gamma: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    grad_output: &[f32],
    grad_input: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    check_sizes(channels, plane, input, grad_output, [gamma, running_mean]);
    check_sizes(channels, plane, input, grad_input, [running_var, grad_gamma]);
    assert_eq!(grad_beta.len(), channels, "batch norm per-channel size");
    for c in 0..channels {
        let inv_std = 1.0 / (running_var[c] as f64 + config.eps as f64).sqrt();
        let (sum_dy, sum_dy_x) = channel_sums(input, grad_output, channels, plane, c);
        grad_beta[c] = sum_dy as f32;
        grad_gamma[c] = (inv_std * (sum_dy_x - running_mean[c] as f64 * sum_dy)) as f32;
        let a = (gamma[c] as f64 * inv_std) as f32;
        for (dy, dx) in
            grad_output.chunks_exact(channels * plane).zip(grad_input.chunks_exact_mut(channels * plane))
        {
            for (d, &g) in dx[c * plane..(c + 1) * plane].iter_mut().zip(&dy[c * plane..(c + 1) * plane]) {
                *d = a * g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv::reference::{self, assert_close};
    use crate::rng;
    use rand::Rng as _;

    fn draw_shape(r: &mut crate::rng::Rng) -> (usize, usize, usize, usize) {
        loop {
            let shape = (r.gen_range(1..=4), r.gen_range(1..=6), r.gen_range(1..=9), r.gen_range(1..=9));
            if shape.0 * shape.2 * shape.3 > 1 {
                return shape;
            }
        }
    }

    /// Training mode agrees with the dfdx composition (output, input, γ and β gradients) and
    /// the running statistics move as PyTorch moves them, on random shapes and offsets.
    #[test]
    fn training_mode_matches_dfdx_and_running_statistics_follow_pytorch() {
        let mut r = rng::stream(31, "test", 0);
        let config = BatchNormConfig::default();
        for _ in 0..60 {
            let shape = draw_shape(&mut r);
            let (batch, c, h, w) = shape;
            let plane = h * w;
            // Channels with offsets and spreads of their own, as after a convolution.
            let offset = r.gen_range(-3.0..3.0f32);
            let spread = r.gen_range(0.1..4.0f32);
            let x: Vec<f32> =
                reference::random(&mut r, batch * c * plane).iter().map(|v| v * spread + offset).collect();
            let gamma: Vec<f32> = (0..c).map(|_| r.gen_range(0.5..1.5)).collect();
            let beta = reference::random(&mut r, c);
            let dy = reference::random(&mut r, x.len());
            let expected = reference::dfdx_batch_norm(shape, &x, &gamma, &beta, config.eps, &dy);

            let mut running_mean = reference::random(&mut r, c);
            let mut running_var: Vec<f32> = (0..c).map(|_| r.gen_range(0.5..2.0)).collect();
            let (rm0, rv0) = (running_mean.clone(), running_var.clone());
            let mut y = vec![f32::NAN; x.len()];
            let (mut mean, mut inv_std) = (vec![0.0; c], vec![0.0; c]);
            batch_norm_train_forward(
                &config,
                c,
                plane,
                &x,
                &gamma,
                &beta,
                &mut running_mean,
                &mut running_var,
                &mut y,
                &mut mean,
                &mut inv_std,
            );
            let mut dx = vec![f32::NAN; x.len()];
            let (mut dg, mut db) = (vec![f32::NAN; c], vec![f32::NAN; c]);
            batch_norm_backward(c, plane, &x, &gamma, &mean, &inv_std, &dy, &mut dx, &mut dg, &mut db);
            let what = format!("{shape:?}");
            assert_close(&y, &expected.output, 1e-4, &format!("output {what}"));
            assert_close(&dx, &expected.grad_input, 1e-4, &format!("input gradient {what}"));
            assert_close(&dg, &expected.grad_weight, 1e-4, &format!("γ gradient {what}"));
            assert_close(&db, &expected.grad_bias, 1e-4, &format!("β gradient {what}"));

            let (means, vars) = reference::channel_stats(shape, &x);
            let m = config.momentum as f64;
            let want_mean: Vec<f32> =
                rm0.iter().zip(&means).map(|(&r, &b)| ((1.0 - m) * r as f64 + m * b) as f32).collect();
            let want_var: Vec<f32> =
                rv0.iter().zip(&vars).map(|(&r, &b)| ((1.0 - m) * r as f64 + m * b) as f32).collect();
            assert_close(&running_mean, &want_mean, 1e-5, &format!("running mean {what}"));
            assert_close(&running_var, &want_var, 1e-5, &format!("running variance {what}"));
        }
    }

    /// Evaluation mode normalises with the running statistics, and its gradients treat them as
    /// constants; checked against the formula in f64.
    #[test]
    fn evaluation_mode_uses_the_running_statistics() {
        let mut r = rng::stream(32, "test", 0);
        let config = BatchNormConfig::default();
        for _ in 0..50 {
            let (batch, c, h, w) = draw_shape(&mut r);
            let plane = h * w;
            let x = reference::random(&mut r, batch * c * plane);
            let gamma = reference::random(&mut r, c);
            let beta = reference::random(&mut r, c);
            let rm = reference::random(&mut r, c);
            let rv: Vec<f32> = (0..c).map(|_| r.gen_range(0.1..3.0)).collect();
            let dy = reference::random(&mut r, x.len());
            let mut y = vec![f32::NAN; x.len()];
            batch_norm_eval_forward(&config, c, plane, &x, &gamma, &beta, &rm, &rv, &mut y);
            let mut dx = vec![f32::NAN; x.len()];
            let (mut dg, mut db) = (vec![f32::NAN; c], vec![f32::NAN; c]);
            batch_norm_eval_backward(&config, c, plane, &x, &gamma, &rm, &rv, &dy, &mut dx, &mut dg, &mut db);
            let mut want_y = vec![0.0; x.len()];
            let mut want_dx = vec![0.0; x.len()];
            let mut want_dg = vec![0.0f64; c];
            let mut want_db = vec![0.0f64; c];
            for (i, (&v, &d)) in x.iter().zip(&dy).enumerate() {
                let ch = (i / plane) % c;
                let s = 1.0 / (rv[ch] as f64 + config.eps as f64).sqrt();
                let xhat = (v as f64 - rm[ch] as f64) * s;
                want_y[i] = (gamma[ch] as f64 * xhat + beta[ch] as f64) as f32;
                want_dx[i] = (gamma[ch] as f64 * s * d as f64) as f32;
                want_dg[ch] += d as f64 * xhat;
                want_db[ch] += d as f64;
            }
            let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<_>>();
            assert_close(&y, &want_y, 1e-5, "output");
            assert_close(&dx, &want_dx, 1e-5, "input gradient");
            assert_close(&dg, &f(want_dg), 1e-4, "γ gradient");
            assert_close(&db, &f(want_db), 1e-4, "β gradient");
        }
    }
}
