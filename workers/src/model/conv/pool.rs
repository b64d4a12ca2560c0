//! Max, average and global average pooling over NCHW planes, forward and backward.
//!
//! Every `(sample, channel)` plane pools on its own, so the kernels loop over planes. Max
//! pooling records the winning position of every window in the forward pass (first maximum in
//! row-major order, as PyTorch), which makes its backward pass a scatter without comparisons.

use super::{GeometryError, Window};

/// The shape of a pooling window over `channels` planes of `in_h × in_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// Planes per sample.
    pub channels: usize,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Window rows.
    pub kernel_h: usize,
    /// Window columns.
    pub kernel_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Padding rows (each side): ignored by max pooling, zeros for average pooling.
    pub pad_h: usize,
    /// Padding columns (each side).
    pub pad_w: usize,
}

impl PoolGeometry {
    /// A square window with equal stride and padding on both axes (PyTorch's
    /// `max_pool2d(x, kernel, stride, padding)`), checked.
    pub fn square(
        channels: usize,
        in_h: usize,
        in_w: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self, GeometryError> {
        let g = PoolGeometry {
            channels,
            in_h,
            in_w,
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
            ("channels", self.channels),
            ("input height", self.in_h),
            ("input width", self.in_w),
            ("kernel height", self.kernel_h),
            ("kernel width", self.kernel_w),
            ("vertical stride", self.stride_h),
            ("horizontal stride", self.stride_w),
        ] {
            if v == 0 {
                return Err(GeometryError::Zero { what });
            }
        }
        for (pad, kernel) in [(self.pad_h, self.kernel_h), (self.pad_w, self.kernel_w)] {
            if 2 * pad > kernel {
                return Err(GeometryError::PoolPadding { pad, kernel });
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

    /// Floats of one input sample.
    pub fn input_len(&self) -> usize {
        self.channels * self.in_h * self.in_w
    }

    /// Floats of one output sample.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_h() * self.out_w()
    }

    /// The window's input rows (or columns) `[lo, hi)` for output index `o` along an axis.
    fn window(o: usize, stride: usize, pad: usize, kernel: usize, input: usize) -> (usize, usize) {
        let start = o * stride;
        (start.saturating_sub(pad), (start + kernel).saturating_sub(pad).min(input))
    }
}

/// Max pooling of `batch` samples; `argmax` receives, per output, the winner's index within
/// its input plane, for [`max_pool_backward`].
pub fn max_pool_forward(
    g: &PoolGeometry,
    batch: usize,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) {
    pulp::Arch::new().dispatch(|| max_pool_forward_impl(g, batch, input, output, argmax))
}

#[inline(always)]
fn max_pool_forward_impl(
    g: &PoolGeometry,
    batch: usize,
    input: &[f32],
    output: &mut [f32],
    argmax: &mut [u32],
) {
    let (oh, ow, plane_in) = (g.out_h(), g.out_w(), g.in_h * g.in_w);
    assert_eq!(input.len(), batch * g.input_len(), "max pool input size");
    assert_eq!(output.len(), batch * g.output_len(), "max pool output size");
    assert_eq!(argmax.len(), output.len(), "max pool argmax size");
    let planes = input
        .chunks_exact(plane_in)
        .zip(output.chunks_exact_mut(oh * ow).zip(argmax.chunks_exact_mut(oh * ow)));
    for (src, (dst, arg)) in planes {
        for oy in 0..oh {
            let (y0, y1) = PoolGeometry::window(oy, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
            for ox in 0..ow {
                let (x0, x1) = PoolGeometry::window(ox, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
                let mut best = f32::NEG_INFINITY;
                let mut at = y0 * g.in_w + x0;
                for y in y0..y1 {
                    for (x, &v) in src[y * g.in_w + x0..y * g.in_w + x1].iter().enumerate() {
                        if v > best {
                            best = v;
                            at = y * g.in_w + x0 + x;
                        }
                    }
                }
                dst[oy * ow + ox] = best;
                arg[oy * ow + ox] = at as u32;
            }
        }
    }
}

/// The input gradient of max pooling (overwritten): each output's gradient goes to its
/// window's winner.
pub fn max_pool_backward(
    g: &PoolGeometry,
    batch: usize,
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
) {
    pulp::Arch::new().dispatch(|| max_pool_backward_impl(g, batch, grad_output, argmax, grad_input))
}

#[inline(always)]
fn max_pool_backward_impl(
    g: &PoolGeometry,
    batch: usize,
    grad_output: &[f32],
    argmax: &[u32],
    grad_input: &mut [f32],
) {
    let (plane_out, plane_in) = (g.out_h() * g.out_w(), g.in_h * g.in_w);
    assert_eq!(grad_output.len(), batch * g.output_len(), "max pool output gradient size");
    assert_eq!(argmax.len(), grad_output.len(), "max pool argmax size");
    assert_eq!(grad_input.len(), batch * g.input_len(), "max pool input gradient size");
    grad_input.fill(0.0);
    let planes = grad_input
        .chunks_exact_mut(plane_in)
        .zip(grad_output.chunks_exact(plane_out).zip(argmax.chunks_exact(plane_out)));
    for (dst, (dy, arg)) in planes {
        for (&d, &a) in dy.iter().zip(arg) {
            dst[a as usize] += d;
        }
    }
}

/// Average pooling of `batch` samples, padded cells counted as zeros (every window divides by
/// `kh·kw`).
pub fn avg_pool_forward(g: &PoolGeometry, batch: usize, input: &[f32], output: &mut [f32]) {
    pulp::Arch::new().dispatch(|| avg_pool_forward_impl(g, batch, input, output))
}

#[inline(always)]
fn avg_pool_forward_impl(g: &PoolGeometry, batch: usize, input: &[f32], output: &mut [f32]) {
    let (oh, ow, plane_in) = (g.out_h(), g.out_w(), g.in_h * g.in_w);
    assert_eq!(input.len(), batch * g.input_len(), "average pool input size");
    assert_eq!(output.len(), batch * g.output_len(), "average pool output size");
    let scale = 1.0 / (g.kernel_h * g.kernel_w) as f32;
    for (src, dst) in input.chunks_exact(plane_in).zip(output.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (y0, y1) = PoolGeometry::window(oy, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
            for ox in 0..ow {
                let (x0, x1) = PoolGeometry::window(ox, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    sum += src[y * g.in_w + x0..y * g.in_w + x1].iter().sum::<f32>();
                }
                dst[oy * ow + ox] = sum * scale;
            }
        }
    }
}

/// The input gradient of average pooling (overwritten).
pub fn avg_pool_backward(g: &PoolGeometry, batch: usize, grad_output: &[f32], grad_input: &mut [f32]) {
    pulp::Arch::new().dispatch(|| avg_pool_backward_impl(g, batch, grad_output, grad_input))
}

#[inline(always)]
fn avg_pool_backward_impl(g: &PoolGeometry, batch: usize, grad_output: &[f32], grad_input: &mut [f32]) {
    let (oh, ow, plane_in) = (g.out_h(), g.out_w(), g.in_h * g.in_w);
    assert_eq!(grad_output.len(), batch * g.output_len(), "average pool output gradient size");
    assert_eq!(grad_input.len(), batch * g.input_len(), "average pool input gradient size");
    let scale = 1.0 / (g.kernel_h * g.kernel_w) as f32;
    grad_input.fill(0.0);
    for (dst, dy) in grad_input.chunks_exact_mut(plane_in).zip(grad_output.chunks_exact(oh * ow)) {
        for oy in 0..oh {
            let (y0, y1) = PoolGeometry::window(oy, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
            for ox in 0..ow {
                let (x0, x1) = PoolGeometry::window(ox, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
                let d = dy[oy * ow + ox] * scale;
                for y in y0..y1 {
                    for v in &mut dst[y * g.in_w + x0..y * g.in_w + x1] {
                        *v += d;
                    }
                }
            }
        }
    }
}

/// The mean of every plane of `plane` floats: `input` is `planes × plane`, `output` `planes`
/// (a `batch × channels` matrix when the planes are a batch's channels).
pub fn global_avg_pool_forward(plane: usize, input: &[f32], output: &mut [f32]) {
    pulp::Arch::new().dispatch(|| global_avg_pool_forward_impl(plane, input, output))
}

#[inline(always)]
fn global_avg_pool_forward_impl(plane: usize, input: &[f32], output: &mut [f32]) {
    assert_eq!(input.len(), output.len() * plane, "global average pool sizes");
    let scale = 1.0 / plane as f32;
    for (o, src) in output.iter_mut().zip(input.chunks_exact(plane)) {
        *o = src.iter().sum::<f32>() * scale;
    }
}

/// The input gradient of global average pooling (overwritten).
pub fn global_avg_pool_backward(plane: usize, grad_output: &[f32], grad_input: &mut [f32]) {
    pulp::Arch::new().dispatch(|| global_avg_pool_backward_impl(plane, grad_output, grad_input))
}

#[inline(always)]
fn global_avg_pool_backward_impl(plane: usize, grad_output: &[f32], grad_input: &mut [f32]) {
    assert_eq!(grad_input.len(), grad_output.len() * plane, "global average pool sizes");
    let scale = 1.0 / plane as f32;
    for (&d, dst) in grad_output.iter().zip(grad_input.chunks_exact_mut(plane)) {
        dst.fill(d * scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::conv::reference::{self, assert_close};
    use crate::rng;
    use rand::Rng as _;

    /// Max and average pooling agree with dfdx on random shapes: odd and rectangular sizes,
    /// overlapping and strided windows, padding, batch 1 to 4.
    #[test]
    fn pooling_matches_dfdx() {
        let mut r = rng::stream(21, "test", 0);
        for case in 0..120 {
            let (kh, kw): (usize, usize) =
                if case % 3 == 2 { (r.gen_range(1..=4), r.gen_range(1..=4)) } else { (2, 2) };
            let (kh, kw) = if case % 3 == 1 { (3, 3) } else { (kh, kw) };
            let (ph, pw) = (r.gen_range(0..=kh / 2), r.gen_range(0..=kw / 2));
            let g = PoolGeometry {
                channels: r.gen_range(1..=5),
                in_h: r.gen_range(kh.saturating_sub(2 * ph).max(1)..=11),
                in_w: r.gen_range(kw.saturating_sub(2 * pw).max(1)..=11),
                kernel_h: kh,
                kernel_w: kw,
                stride_h: r.gen_range(1..=3),
                stride_w: r.gen_range(1..=3),
                pad_h: ph,
                pad_w: pw,
            };
            g.check().expect("the drawn geometry fits");
            let batch = r.gen_range(1..=4);
            let x = reference::random(&mut r, batch * g.input_len());
            let dy = reference::random(&mut r, batch * g.output_len());
            let mut y = vec![f32::NAN; dy.len()];
            let mut dx = vec![f32::NAN; x.len()];
            let what = format!("{g:?} batch {batch}");
            let max = case % 2 == 0;
            let expected = reference::dfdx_pool2d(&g, batch, max, &x, &dy);
            if max {
                let mut arg = vec![0; dy.len()];
                max_pool_forward(&g, batch, &x, &mut y, &mut arg);
                max_pool_backward(&g, batch, &dy, &arg, &mut dx);
            } else {
                avg_pool_forward(&g, batch, &x, &mut y);
                avg_pool_backward(&g, batch, &dy, &mut dx);
            }
            assert_close(&y, &expected.output, 1e-4, &format!("output {what} max {max}"));
            assert_close(&dx, &expected.grad_input, 1e-4, &format!("input gradient {what} max {max}"));
        }
    }

    #[test]
    fn global_average_pooling_matches_dfdx() {
        let mut r = rng::stream(22, "test", 0);
        for _ in 0..50 {
            let shape = (r.gen_range(1..=4), r.gen_range(1..=6), r.gen_range(1..=9), r.gen_range(1..=9));
            let plane = shape.2 * shape.3;
            let x = reference::random(&mut r, shape.0 * shape.1 * plane);
            let dy = reference::random(&mut r, shape.0 * shape.1);
            let expected = reference::dfdx_global_avg_pool(shape, &x, &dy);
            let mut y = vec![f32::NAN; dy.len()];
            let mut dx = vec![f32::NAN; x.len()];
            global_avg_pool_forward(plane, &x, &mut y);
            global_avg_pool_backward(plane, &dy, &mut dx);
            assert_close(&y, &expected.output, 1e-4, &format!("output {shape:?}"));
            assert_close(&dx, &expected.grad_input, 1e-4, &format!("input gradient {shape:?}"));
        }
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_maximum_and_padding_never_wins() {
        let g = PoolGeometry::square(1, 2, 2, 2, 2, 1).unwrap();
        assert_eq!((g.out_h(), g.out_w()), (2, 2));
        let x = [-1.0, -1.0, -3.0, -1.0];
        let mut y = [0.0; 4];
        let mut arg = [0; 4];
        max_pool_forward(&g, 1, &x, &mut y, &mut arg);
        assert_eq!(y, [-1.0, -1.0, -3.0, -1.0]);
        let g = PoolGeometry::square(1, 2, 2, 2, 2, 0).unwrap();
        let mut y = [0.0; 1];
        let mut arg = [0; 1];
        max_pool_forward(&g, 1, &x, &mut y, &mut arg);
        let mut dx = [0.0; 4];
        max_pool_backward(&g, 1, &[1.0], &arg, &mut dx);
        assert_eq!(dx, [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(
            PoolGeometry::square(1, 4, 4, 2, 2, 2),
            Err(GeometryError::PoolPadding { pad: 2, kernel: 2 })
        );
    }
}
