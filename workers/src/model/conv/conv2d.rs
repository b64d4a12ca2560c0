//! 2-d convolution forward and backward: im2col over a chunk of samples, then one faer GEMM
//! per chunk. With `training.threads` the chunks' independent work (the forward pass, the
//! input gradient) runs one chunk per thread, and the weight gradient, a sum over chunks,
//! keeps its order with each chunk's product split across the threads; a chunk's arithmetic
//! is the same either way, so the numbers are too.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::im2col::{col2im_add, im2col};
use super::{GeometryError, Window};

/// The im2col matrix of a chunk is kept near this many floats (1 MiB), so that writing it and
/// the GEMM's reading it stay in the core's L2 cache; a chunk holds at least one sample.
const CHUNK_FLOATS: usize = 1 << 18;

/// The shape of one convolution: input planes, output channels, kernel, stride and padding
/// (zeros, on both sides), per axis. Dilation 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel rows.
    pub kernel_h: usize,
    /// Kernel columns.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above and below.
    pub pad_h: usize,
    /// Zero columns added left and right.
    pub pad_w: usize,
}

impl Conv2dGeometry {
    /// A square kernel with the same stride and padding on both axes (PyTorch's `Conv2d(cin,
    /// cout, kernel, stride, padding)` on an `in_h × in_w` input), checked.
    pub fn square(
        in_channels: usize,
        in_h: usize,
        in_w: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, GeometryError> {
        let g = Conv2dGeometry {
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            pad_h: padding,
            pad_w: padding,
        };
        g.check()?;
        Ok(g)
    }

    /// Whether the kernels can compute this geometry.
    pub fn check(&self) -> Result<(), GeometryError> {
        for (what, v) in [
            ("input channels", self.in_channels),
            ("input height", self.in_h),
            ("input width", self.in_w),
            ("output channels", self.out_channels),
            ("kernel height", self.kernel_h),
            ("kernel width", self.kernel_w),
            ("vertical stride", self.stride_h),
            ("horizontal stride", self.stride_w),
        ] {
            if v == 0 {
                return Err(GeometryError::Zero { what });
            }
        }
        self.sliding().check_fits()
    }

    fn sliding(&self) -> Window {
        Window {
            in_h: self.in_h,
            in_w: self.in_w,
            kernel_h: self.kernel_h,
            kernel_w: self.kernel_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            pad_h: self.pad_h,
            pad_w: self.pad_w,
        }
    }

    /// Output rows.
    pub fn out_h(&self) -> usize {
        self.sliding().out_h().unwrap_or(0)
    }

    /// Output columns.
    pub fn out_w(&self) -> usize {
        self.sliding().out_w().unwrap_or(0)
    }

    /// Weights per output channel (the GEMM's inner dimension): `in_channels·kh·kw`.
    pub fn k(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Floats of one input sample.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.in_h * self.in_w
    }

    /// Floats of one output sample.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.out_h() * self.out_w()
    }

    /// Multiply-adds of one sample's forward pass.
    pub fn macs(&self) -> usize {
        self.k() * self.output_len()
    }

    /// Samples per GEMM.
    fn chunk(&self, batch: usize) -> usize {
        let per_sample = self.k() * self.out_h() * self.out_w();
        (CHUNK_FLOATS / per_sample.max(1)).clamp(1, batch.max(1))
    }
}

/// Scratch of the convolution kernels, shared by every layer of a network and grown to the
/// largest need (no allocation once every layer has run once).
#[derive(Clone, Debug, Default)]
pub struct ConvScratch {
    cols: Vec<f32>,
    product: Vec<f32>,
}

impl ConvScratch {
    fn buffers(&mut self, cols: usize, product: usize) -> (&mut [f32], &mut [f32]) {
        if self.cols.len() < cols {
            self.cols.resize(cols, 0.0);
        }
        if self.product.len() < product {
            self.product.resize(product, 0.0);
        }
        (&mut self.cols[..cols], &mut self.product[..product])
    }
}

/// Σ v over eight interleaved lanes, which vectorise (a plain `f32` fold is one sequential
/// chain).
#[inline(always)]
fn lane_sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

fn gemm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, accumulate: bool, par: Par) {
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, 1.0f32, par);
}

thread_local! {
    /// Each thread's scratch for the chunks it convolves when a layer's chunks run in
    /// parallel (`training.threads`), kept between calls like a network's own scratch.
    static CHUNK_SCRATCH: std::cell::RefCell<ConvScratch> = std::cell::RefCell::default();
}

/// `output = conv(input, weight) + bias` for `batch` samples. `input` is `batch × in_channels
/// × in_h × in_w`, `weight` `out_channels × k` row-major (PyTorch's `[cout][cin][kh][kw]`
/// order), `bias` one per output channel, `output` `batch × out_channels × out_h × out_w`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    batch: usize,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut ConvScratch,
) {
    // The data movement around the GEMM (im2col, the layout copies) is compiled for the
    // widest vectors the CPU has, chosen at run time: the crate itself targets baseline x86-64.
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || forward_impl(g, batch, input, weight, bias, output, scratch),
    )
}

#[inline(always)]
fn forward_impl(
    g: &Conv2dGeometry,
    batch: usize,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut ConvScratch,
) {
    let co = g.out_channels;
    assert_eq!(input.len(), batch * g.input_len(), "conv2d input size");
    assert_eq!(output.len(), batch * g.output_len(), "conv2d output size");
    assert_eq!(weight.len(), co * g.k(), "conv2d weight size");
    assert!(bias.is_none_or(|b| b.len() == co), "conv2d bias size");
    let chunk = g.chunk(batch);
    let par = crate::model::threads::gemm_par();
    if par == Par::Seq || chunk >= batch {
        // One chunk at a time, each product on the run's threads.
        let chunks = input.chunks(chunk * g.input_len()).zip(output.chunks_mut(chunk * g.output_len()));
        for (x, out) in chunks {
            forward_chunk(g, x, weight, bias, out, scratch, par);
        }
    } else {
        // Chunks are independent: one per thread at a time, each product on its own thread.
        // Each output element is computed as the sequential path computes it.
        input.par_chunks(chunk * g.input_len()).zip(output.par_chunks_mut(chunk * g.output_len())).for_each(
            |(x, out)| {
                CHUNK_SCRATCH.with_borrow_mut(|scratch| {
                    pulp::Arch::new().dispatch(
                        #[inline(always)]
                        || forward_chunk(g, x, weight, bias, out, scratch, Par::Seq),
                    )
                })
            },
        );
    }
}

/// [`forward_impl`] on the samples of `input` (a whole number of them), into `out`.
#[inline(always)]
fn forward_chunk(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut ConvScratch,
    par: Par,
) {
    let (k, co, hw) = (g.k(), g.out_channels, g.out_h() * g.out_w());
    let n = input.len() / g.input_len();
    let width = n * hw;
    let (cols, product) = scratch.buffers(k * width, if n == 1 { 0 } else { co * width });
    im2col(g, input, n, cols);
    let w = MatRef::from_row_major_slice(weight, co, k);
    let c = MatRef::from_row_major_slice(cols, k, width);
    if n == 1 {
        // One sample: the channel-major product is the sample's NCHW block.
        match bias {
            Some(b) => {
                for (row, &bv) in out.chunks_exact_mut(hw).zip(b) {
                    row.fill(bv);
                }
                gemm(MatMut::from_row_major_slice_mut(out, co, width), w, c, true, par);
            }
            None => gemm(MatMut::from_row_major_slice_mut(out, co, width), w, c, false, par),
        }
    } else {
        gemm(MatMut::from_row_major_slice_mut(product, co, width), w, c, false, par);
        for (ch, row) in product.chunks_exact(width).enumerate() {
            let bv = bias.map_or(0.0, |b| b[ch]);
            for (s, src) in row.chunks_exact(hw).enumerate() {
                let dst = &mut out[s * co * hw + ch * hw..s * co * hw + (ch + 1) * hw];
                if bv == 0.0 {
                    dst.copy_from_slice(src);
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = v + bv;
                    }
                }
            }
        }
    }
}

/// Gradients of [`conv2d_forward`] given `grad_output` (shaped like its output): the weight
/// gradient into `grad_weight` and the bias gradient into `grad_bias` (both overwritten), and,
/// when asked for (not for a network's first layer), the input gradient into `grad_input`
/// (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    g: &Conv2dGeometry,
    batch: usize,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut ConvScratch,
) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || backward_impl(g, batch, input, weight, grad_output, grad_input, grad_weight, grad_bias, scratch),
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_impl(
    g: &Conv2dGeometry,
    batch: usize,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    mut grad_input: Option<&mut [f32]>,
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
    scratch: &mut ConvScratch,
) {
    let (k, co, hw) = (g.k(), g.out_channels, g.out_h() * g.out_w());
    assert_eq!(input.len(), batch * g.input_len(), "conv2d input size");
    assert_eq!(grad_output.len(), batch * g.output_len(), "conv2d output gradient size");
    assert_eq!(weight.len(), co * k, "conv2d weight size");
    assert_eq!(grad_weight.len(), co * k, "conv2d weight gradient size");
    if let Some(gi) = grad_input.as_deref_mut() {
        assert_eq!(gi.len(), batch * g.input_len(), "conv2d input gradient size");
        gi.fill(0.0);
    }
    if let Some(gb) = grad_bias {
        assert_eq!(gb.len(), co, "conv2d bias gradient size");
        gb.fill(0.0);
        for sample in grad_output.chunks_exact(g.output_len()) {
            for (b, plane) in gb.iter_mut().zip(sample.chunks_exact(hw)) {
                *b += lane_sum(plane);
            }
        }
    }
    let chunk = g.chunk(batch);
    let (in_step, out_step) = (chunk * g.input_len(), chunk * g.output_len());
    let par = crate::model::threads::gemm_par();
    if par == Par::Seq || chunk >= batch {
        let chunks = input.chunks(in_step).zip(grad_output.chunks(out_step)).enumerate();
        for (c, (x, go)) in chunks {
            let gi = grad_input.as_deref_mut().map(|gi| &mut gi[c * in_step..(c * in_step + x.len())]);
            backward_chunk(g, x, weight, go, gi, Some((grad_weight, c > 0)), scratch, par);
        }
        return;
    }
    // The input gradients of the chunks are independent: in parallel, a chunk per thread. The
    // weight gradient sums over the chunks: in the sequential path's order, each chunk's
    // product split across the threads, so it keeps its bits.
    if let Some(gi) = grad_input {
        gi.par_chunks_mut(in_step)
            .zip(grad_output.par_chunks(out_step))
            .zip(input.par_chunks(in_step))
            .for_each(|((gi, go), x)| {
                CHUNK_SCRATCH.with_borrow_mut(|scratch| {
                    pulp::Arch::new().dispatch(
                        #[inline(always)]
                        || backward_chunk(g, x, weight, go, Some(gi), None, scratch, Par::Seq),
                    )
                })
            });
    }
    for (c, (x, go)) in input.chunks(in_step).zip(grad_output.chunks(out_step)).enumerate() {
        backward_chunk(g, x, weight, go, None, Some((&mut *grad_weight, c > 0)), scratch, par);
    }
}

/// [`backward_impl`] on the samples of `input` (a whole number of them): the input gradient
/// into `grad_input` (added) when given, and the weight gradient into `grad_weight` when given
/// (added when its flag is set, else overwritten).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_chunk(
    g: &Conv2dGeometry,
    input: &[f32],
    weight: &[f32],
    grad_output: &[f32],
    grad_input: Option<&mut [f32]>,
    grad_weight: Option<(&mut [f32], bool)>,
    scratch: &mut ConvScratch,
    par: Par,
) {
    let (k, co, hw) = (g.k(), g.out_channels, g.out_h() * g.out_w());
    let n = input.len() / g.input_len();
    let width = n * hw;
    let (cols, product) = scratch.buffers(k * width, if n == 1 { 0 } else { co * width });
    // The output gradient, channel-major like the forward product.
    let go: &[f32] = if n == 1 {
        grad_output
    } else {
        for (ch, row) in product.chunks_exact_mut(width).enumerate() {
            for (s, dst) in row.chunks_exact_mut(hw).enumerate() {
                dst.copy_from_slice(&grad_output[s * co * hw + ch * hw..s * co * hw + (ch + 1) * hw]);
            }
        }
        product
    };
    let go = MatRef::from_row_major_slice(go, co, width);
    if let Some((grad_weight, accumulate)) = grad_weight {
        im2col(g, input, n, cols);
        // dW (+)= δ · colsᵀ
        gemm(
            MatMut::from_row_major_slice_mut(grad_weight, co, k),
            go,
            MatRef::from_row_major_slice(cols, k, width).transpose(),
            accumulate,
            par,
        );
    }
    if let Some(gi) = grad_input {
        // dcols = Wᵀ · δ, then scattered back onto the input positions.
        gemm(
            MatMut::from_row_major_slice_mut(cols, k, width),
            MatRef::from_row_major_slice(weight, co, k).transpose(),
            go,
            false,
            par,
        );
        col2im_add(g, cols, n, gi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv::reference::{self, assert_close};
    use crate::rng;
    use rand::Rng as _;

    /// With the chunks spread over threads (`training.threads`) every output and gradient has
    /// the bits of the one-thread computation, on batches of several chunks.
    #[test]
    fn threads_change_no_bit_of_a_convolution() {
        let mut r = rng::stream(12, "test", 0);
        let mut scratch = ConvScratch::default();
        for case in 0..12 {
            let side = r.gen_range(6..=20);
            let g = Conv2dGeometry::square(
                r.gen_range(1..=8),
                side,
                side,
                r.gen_range(1..=16),
                3,
                1 + case % 2,
                1,
            )
            .expect("a 3×3 kernel with padding 1 fits");
            let batch = CHUNK_FLOATS / g.macs().div_ceil(g.out_channels) * 3 + r.gen_range(1..=3);
            let x = reference::random(&mut r, batch * g.input_len());
            let w = reference::random(&mut r, g.out_channels * g.k());
            let b = reference::random(&mut r, g.out_channels);
            let dy = reference::random(&mut r, batch * g.output_len());
            let run = |scratch: &mut ConvScratch| {
                let mut y = vec![0.0; batch * g.output_len()];
                conv2d_forward(&g, batch, &x, &w, Some(&b), &mut y, scratch);
                let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
                conv2d_backward(&g, batch, &x, &w, &dy, Some(&mut dx), &mut dw, Some(&mut db), scratch);
                [y, dx, dw, db].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
            };
            let one = run(&mut scratch);
            for threads in [2, 3] {
                let many = crate::model::threads::with_threads(threads, || run(&mut ConvScratch::default()))
                    .unwrap();
                assert!(one == many, "{g:?} batch {batch}: {threads} threads changed bits");
            }
        }
    }

    /// Convolution outputs and all three gradients agree with dfdx on random geometries: odd
    /// and rectangular sizes, padding, strides per axis, batch 1 to 4, with and without bias;
    /// and on batches large enough to be split into several GEMM chunks.
    #[test]
    fn convolution_matches_dfdx() {
        let mut r = rng::stream(11, "test", 0);
        let mut scratch = ConvScratch::default();
        for case in 0..80 {
            let g = if case % 4 == 3 {
                Conv2dGeometry {
                    in_channels: r.gen_range(1..=4),
                    in_h: r.gen_range(5..=12),
                    in_w: r.gen_range(5..=12),
                    out_channels: r.gen_range(1..=5),
                    kernel_h: r.gen_range(1..=4),
                    kernel_w: r.gen_range(1..=4),
                    stride_h: r.gen_range(1..=3),
                    stride_w: r.gen_range(1..=3),
                    pad_h: r.gen_range(0..=2),
                    pad_w: r.gen_range(0..=2),
                }
            } else {
                let kernel = r.gen_range(1..=5usize);
                let padding = r.gen_range(0..=kernel / 2 + 1);
                let lo = kernel.saturating_sub(2 * padding).max(1);
                Conv2dGeometry::square(
                    r.gen_range(1..=6),
                    r.gen_range(lo..=13),
                    r.gen_range(lo..=13),
                    r.gen_range(1..=7),
                    kernel,
                    r.gen_range(1..=3),
                    padding,
                )
                .expect("the drawn geometry fits")
            };
            g.check().expect("the drawn geometry fits");
            let batch = if case < 4 {
                CHUNK_FLOATS / g.macs().div_ceil(g.out_channels) + 2
            } else {
                r.gen_range(1..=4)
            };
            let with_bias = case % 3 != 0;
            let x = reference::random(&mut r, batch * g.input_len());
            let w = reference::random(&mut r, g.out_channels * g.k());
            let b = reference::random(&mut r, g.out_channels);
            let dy = reference::random(&mut r, batch * g.output_len());
            let expected = reference::dfdx_conv2d(&g, batch, &x, &w, with_bias.then_some(&b[..]), &dy);

            let mut y = vec![f32::NAN; batch * g.output_len()];
            conv2d_forward(&g, batch, &x, &w, with_bias.then_some(&b[..]), &mut y, &mut scratch);
            let mut dx = vec![f32::NAN; x.len()];
            let mut dw = vec![f32::NAN; w.len()];
            let mut db = vec![f32::NAN; b.len()];
            conv2d_backward(
                &g,
                batch,
                &x,
                &w,
                &dy,
                Some(&mut dx),
                &mut dw,
                with_bias.then_some(&mut db[..]),
                &mut scratch,
            );
            let what = format!("{g:?} batch {batch}");
            assert_close(&y, &expected.output, 1e-4, &format!("output {what}"));
            assert_close(&dx, &expected.grad_input, 1e-4, &format!("input gradient {what}"));
            assert_close(&dw, &expected.grad_weight, 1e-4, &format!("weight gradient {what}"));
            if with_bias {
                assert_close(&db, &expected.grad_bias, 1e-4, &format!("bias gradient {what}"));
            }
        }
    }

    #[test]
    fn geometries_that_cannot_compute_are_refused() {
        assert!(matches!(
            Conv2dGeometry::square(3, 2, 2, 4, 5, 1, 1),
            Err(GeometryError::KernelTooLarge { .. })
        ));
        assert_eq!(
            Conv2dGeometry::square(3, 8, 8, 4, 3, 0, 1),
            Err(GeometryError::Zero { what: "vertical stride" })
        );
        let g = Conv2dGeometry::square(3, 32, 32, 32, 5, 1, 0).unwrap();
        assert_eq!((g.out_h(), g.out_w(), g.k()), (28, 28, 75));
    }
}
