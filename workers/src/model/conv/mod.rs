//! Kernels of convolutional networks: 2-d convolution, max and average pooling, global average
//! pooling and 2-d batch normalisation, forward and backward, on `f32` tensors in NCHW layout
//! (sample, channel, row, column — PyTorch's and dfdx's layout, so inputs, checkpoints and
//! reference results need no transposition) over buffers the caller preallocates.
//!
//! # Why these kernels
//!
//! dfdx allocates a tensor per operation and its CPU convolution runs one small GEMM per
//! sample and group; at the batch sizes of continual learning (1 to 128) allocation and
//! per-call overhead dominate. These kernels reuse the caller's buffers and scratch, and spend
//! their time in faer's single-threaded GEMM — the same call as the MLP's fused engine — over
//! as many samples at once as fit the cache.
//!
//! # Convolution layout
//!
//! A convolution is one matrix product per chunk of samples: the weights, `out_channels ×
//! (in_channels·kh·kw)` row-major (one output channel per row, as a linear layer's unit, so
//! continual methods rewrite a channel as one row), times the im2col matrix of the chunk,
//! `(in_channels·kh·kw) × (samples·out_h·out_w)`. The product is channel-major; it is written
//! into the NCHW output with the bias in the same pass (a copy of contiguous rows), except for a
//! one-sample chunk whose product already is the sample's NCHW block. The backward pass
//! rebuilds the im2col matrix rather than storing it from the forward pass: storing it would
//! take `kh·kw` times the memory of every layer's input.
//!
//! The crate is compiled for baseline x86-64 (SSE2); every kernel's loops run under pulp's
//! run-time dispatch, compiled for AVX2 and FMA where the CPU has them: that raised a whole SGD
//! step's throughput by about a fifth on this machine (convnet at batch 32: 2,519 → 3,090
//! samples/s). faer dispatches its own GEMM kernels (AVX-512 where present).
//!
//! # Differences from PyTorch and dfdx
//!
//! - Max pooling sends a window's gradient to its first maximum (row-major order), as PyTorch
//!   does; dfdx sends it to every element equal to the maximum. The two agree unless a window
//!   holds ties, which the random inputs of the tests never do. Padded cells never win.
//! - Average pooling counts padded cells in the divisor (`count_include_pad=True`, PyTorch's
//!   default and dfdx's only mode), so every window divides by `kh·kw`.
//! - Batch normalisation's running variance is the unbiased batch variance (n/(n−1)), as in
//!   PyTorch and dfdx's `BatchNorm2D`; normalisation itself uses the biased one.
//!
//! # What the tests compare against
//!
//! dfdx 0.13 compiles its `conv2d` and `pool2d` only with its `nightly` feature (they need
//! `generic_const_exprs`, which stable Rust lacks), and its `BatchNorm2D` takes compile-time
//! channel counts. The references are therefore compositions of dfdx's stable run-time-shaped
//! operations, differentiated by dfdx's tape: a convolution is a `gather` of every window's
//! inputs into a matrix times the transposed weights, pooling the same `gather` reduced by
//! `max` or `mean`, batch norm the operations of dfdx's own `BatchNorm2D`. Running statistics
//! and evaluation mode are checked against loops in `f64`. Outputs and every gradient agree to
//! 1e-4 of the largest magnitude, on 80 convolution, 120 pooling, 50 global-pooling and 110
//! batch-norm shapes.

mod batch_norm;
mod conv2d;
mod im2col;
mod pool;

pub use batch_norm::{
    batch_norm_backward, batch_norm_eval_backward, batch_norm_eval_forward, batch_norm_train_forward,
    BatchNormConfig,
};
pub use conv2d::{conv2d_backward, conv2d_forward, Conv2dGeometry, ConvScratch};
pub use pool::{
    avg_pool_backward, avg_pool_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool_backward, max_pool_forward, PoolGeometry,
};

/// A layer geometry that cannot compute: the reason, for the caller to report.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// A size that must be positive (channels, kernel, stride, input) is zero.
    #[error("{what} must be positive")]
    Zero {
        /// Which size.
        what: &'static str,
    },
    /// The kernel does not fit the padded input.
    #[error("a {kernel_h}×{kernel_w} kernel does not fit a {in_h}×{in_w} input padded by {pad_h}×{pad_w}")]
    KernelTooLarge {
        /// Kernel rows.
        kernel_h: usize,
        /// Kernel columns.
        kernel_w: usize,
        /// Input rows.
        in_h: usize,
        /// Input columns.
        in_w: usize,
        /// Padding rows (each side).
        pad_h: usize,
        /// Padding columns (each side).
        pad_w: usize,
    },
    /// Pooling padding beyond half the kernel would make windows of padding only (PyTorch
    /// refuses them too).
    #[error("pooling padding {pad} exceeds half the kernel {kernel}")]
    PoolPadding {
        /// The padding.
        pad: usize,
        /// The kernel size along the same axis.
        kernel: usize,
    },
}

/// Output size along one axis: `(input + 2·pad − kernel) / stride + 1`, or `None` when the
/// kernel does not fit.
fn output_size(input: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    (input + 2 * pad).checked_sub(kernel).map(|span| span / stride + 1)
}

/// A sliding window over a padded input: what convolutions and pooling share, so both
/// geometries size their outputs and refuse a window that does not fit the same way.
struct Window {
    in_h: usize,
    in_w: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride_h: usize,
    stride_w: usize,
    pad_h: usize,
    pad_w: usize,
}

impl Window {
    fn out_h(&self) -> Option<usize> {
        output_size(self.in_h, self.kernel_h, self.stride_h, self.pad_h)
    }

    fn out_w(&self) -> Option<usize> {
        output_size(self.in_w, self.kernel_w, self.stride_w, self.pad_w)
    }

    /// The window fits the padded input along both axes.
    fn check_fits(&self) -> Result<(), GeometryError> {
        if self.out_h().is_none() || self.out_w().is_none() {
            return Err(GeometryError::KernelTooLarge {
                kernel_h: self.kernel_h,
                kernel_w: self.kernel_w,
                in_h: self.in_h,
                in_w: self.in_w,
                pad_h: self.pad_h,
                pad_w: self.pad_w,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod reference;
