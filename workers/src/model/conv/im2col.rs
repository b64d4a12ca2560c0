//! The im2col matrix of a chunk of samples and its adjoint (col2im), the data movement that
//! turns a convolution into one GEMM.
//!
//! Row `(ci, ki, kj)` of the matrix holds, for every output position of every sample of the
//! chunk, the input value that kernel tap `(ki, kj)` of input channel `ci` multiplies; columns
//! run over `(sample, out_row, out_col)`. With stride 1 a row segment is a contiguous slice of
//! an input row, copied with `copy_from_slice`; padding becomes zeros at the segment's ends.

use super::conv2d::Conv2dGeometry;

/// The output columns `[lo, hi)` whose input column `ow·stride + kj − pad` lies inside the
/// input, for one kernel column `kj`.
fn valid_range(out: usize, input: usize, stride: usize, pad: usize, tap: usize) -> (usize, usize) {
    // ow·stride + tap ≥ pad  ⇔  ow ≥ ceil((pad − tap) / stride)
    let lo = if tap >= pad { 0 } else { (pad - tap).div_ceil(stride) };
    // ow·stride + tap − pad < input  ⇔  ow < (input + pad − tap) / stride (ceil)
    let hi = if input + pad <= tap { 0 } else { (input + pad - tap).div_ceil(stride).min(out) };
    (lo.min(hi), hi)
}

/// Fills `cols` (`k × samples·out_h·out_w`, row-major) from `samples` consecutive NCHW
/// samples in `input`.
#[inline(always)]
pub(super) fn im2col(g: &Conv2dGeometry, input: &[f32], samples: usize, cols: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = g.in_h * g.in_w;
    let sample_in = g.in_channels * plane;
    let per_sample = oh * ow;
    let width = samples * per_sample;
    debug_assert_eq!(cols.len(), g.k() * width);
    debug_assert_eq!(input.len(), samples * sample_in);
    let mut row = 0;
    for ci in 0..g.in_channels {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let (lo, hi) = valid_range(ow, g.in_w, g.stride_w, g.pad_w, kj);
                let dst_row = &mut cols[row * width..(row + 1) * width];
                for s in 0..samples {
                    let src_plane = &input[s * sample_in + ci * plane..s * sample_in + (ci + 1) * plane];
                    let dst_sample = &mut dst_row[s * per_sample..(s + 1) * per_sample];
                    for (y, dst) in dst_sample.chunks_exact_mut(ow).enumerate() {
                        let iy = (y * g.stride_h + ki).wrapping_sub(g.pad_h);
                        if iy >= g.in_h {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &src_plane[iy * g.in_w..(iy + 1) * g.in_w];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        if lo < hi {
                            let x0 = lo * g.stride_w + kj - g.pad_w;
                            if g.stride_w == 1 {
                                dst[lo..hi].copy_from_slice(&src[x0..x0 + hi - lo]);
                            } else {
                                for (d, &v) in
                                    dst[lo..hi].iter_mut().zip(src[x0..].iter().step_by(g.stride_w))
                                {
                                    *d = v;
                                }
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Adds the columns `cols` (laid out as [`im2col`] writes them) back onto the input positions
/// they were read from: `grad_input += col2im(cols)`.
#[inline(always)]
pub(super) fn col2im_add(g: &Conv2dGeometry, cols: &[f32], samples: usize, grad_input: &mut [f32]) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = g.in_h * g.in_w;
    let sample_in = g.in_channels * plane;
    let per_sample = oh * ow;
    let width = samples * per_sample;
    debug_assert_eq!(cols.len(), g.k() * width);
    debug_assert_eq!(grad_input.len(), samples * sample_in);
    let mut row = 0;
    for ci in 0..g.in_channels {
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                let (lo, hi) = valid_range(ow, g.in_w, g.stride_w, g.pad_w, kj);
                let src_row = &cols[row * width..(row + 1) * width];
                row += 1;
                if lo >= hi {
                    continue;
                }
                let x0 = lo * g.stride_w + kj - g.pad_w;
                for s in 0..samples {
                    let dst_plane =
                        &mut grad_input[s * sample_in + ci * plane..s * sample_in + (ci + 1) * plane];
                    let src_sample = &src_row[s * per_sample..(s + 1) * per_sample];
                    for (y, src) in src_sample.chunks_exact(ow).enumerate() {
                        let iy = (y * g.stride_h + ki).wrapping_sub(g.pad_h);
                        if iy >= g.in_h {
                            continue;
                        }
                        let dst = &mut dst_plane[iy * g.in_w..(iy + 1) * g.in_w];
                        if g.stride_w == 1 {
                            for (d, &v) in dst[x0..x0 + hi - lo].iter_mut().zip(&src[lo..hi]) {
                                *d += v;
                            }
                        } else {
                            for (d, &v) in dst[x0..].iter_mut().step_by(g.stride_w).zip(&src[lo..hi]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ranges_keep_exactly_the_columns_inside_the_input() {
        for input in 1..9 {
            for stride in 1..4 {
                for pad in 0..3 {
                    for kernel in 1..=(input + 2 * pad).min(5) {
                        let out = (input + 2 * pad - kernel) / stride + 1;
                        for tap in 0..kernel {
                            let (lo, hi) = valid_range(out, input, stride, pad, tap);
                            for o in 0..out {
                                let x = (o * stride + tap) as isize - pad as isize;
                                let inside = x >= 0 && (x as usize) < input;
                                assert_eq!(inside, (lo..hi).contains(&o), "{input} {stride} {pad} {tap} {o}");
                            }
                        }
                    }
                }
            }
        }
    }
}
