//! `conv2d`: a 2-d convolution over an image, square kernel, zero padding.
//!
//! Square kernels, one stride and one padding for both axes: every architecture of the
//! benchmarks (loss of plasticity's ConvNet and ResNet-18, the reduced ResNet-18 of GEM and
//! Mammoth, MNIST CNNs) uses only those, and one number each keeps recipes short.

use serde::{Deserialize, Serialize};

use super::{LayerKind, Part, Shape};

/// A convolution: `channels` output maps, each a `kernel × kernel` filter over every input
/// channel plus a bias.
pub struct Conv2dKind;

/// The largest kernel side accepted (recipes/README.md, "Bounds").
pub const MAX_KERNEL: usize = 32;

/// Parameters of `conv2d`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dParams {
    /// Output channels (≥ 1).
    pub channels: usize,
    /// Side of the square kernel (1 to [`MAX_KERNEL`]).
    pub kernel: usize,
    /// Step between kernel positions (≥ 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zeros added on every side of the input (below the kernel side).
    #[serde(default)]
    pub padding: usize,
    /// Whether each output channel has a bias (off before batch norm, as ResNets have it).
    #[serde(default = "yes")]
    pub bias: bool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// The output side of a sliding window of `kernel` with `stride` over `side` padded by
/// `padding` on both ends, or why the window does not fit (shared with the pooling layers).
pub(super) fn window_output(
    side: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<usize, String> {
    let padded = side + 2 * padding;
    if kernel > padded {
        return Err(format!("a kernel of {kernel} does not fit a side of {side} padded by {padding}"));
    }
    Ok((padded - kernel) / stride + 1)
}

/// Checks the window parameters shared by convolutions and pooling.
pub(super) fn check_window(kernel: usize, stride: usize, padding: usize) -> Result<(), String> {
    if kernel == 0 || kernel > MAX_KERNEL {
        return Err(format!("`kernel` must be 1 to {MAX_KERNEL}, found {kernel}"));
    }
    if stride == 0 || stride > MAX_KERNEL {
        return Err(format!("`stride` must be 1 to {MAX_KERNEL}, found {stride}"));
    }
    if padding >= kernel {
        return Err(format!("`padding` must be below the kernel side {kernel}, found {padding}"));
    }
    Ok(())
}

impl LayerKind for Conv2dKind {
    const KIND: &'static str = "conv2d";
    const SUMMARY: &'static str = "2-d convolution: `channels` maps from square `kernel` filters over \
                                   every input channel, with `stride`, zero `padding` and `bias`";
    type Params = Conv2dParams;

    fn output_shape(p: &Conv2dParams, input: Shape) -> Result<Shape, String> {
        if p.channels == 0 {
            return Err("`channels` must be ≥ 1 (a layer without outputs)".into());
        }
        check_window(p.kernel, p.stride, p.padding)?;
        match input {
            Shape::Image { height, width, .. } => Ok(Shape::Image {
                channels: p.channels,
                height: window_output(height, p.kernel, p.stride, p.padding)?,
                width: window_output(width, p.kernel, p.stride, p.padding)?,
            }),
            Shape::Vector(_) => Err(format!("takes an image, found {input}")),
        }
    }

    fn parameters(p: &Conv2dParams, input: Shape) -> usize {
        let channels_in = match input {
            Shape::Image { channels, .. } => channels,
            Shape::Vector(_) => 0,
        };
        p.channels * channels_in * p.kernel * p.kernel + if p.bias { p.channels } else { 0 }
    }

    fn part(p: &Conv2dParams) -> Part {
        Part::Conv2d {
            channels: p.channels,
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
            bias: p.bias,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(channels: usize, side: usize) -> Shape {
        Shape::Image { channels, height: side, width: side }
    }

    #[test]
    fn convolutions_map_sides_as_pytorch_does() {
        let p = |channels, kernel, stride, padding| Conv2dParams {
            channels,
            kernel,
            stride,
            padding,
            bias: true,
        };
        // LoP ConvNet's first layer: 3×32×32 → 32×28×28.
        assert_eq!(Conv2dKind::output_shape(&p(32, 5, 1, 0), image(3, 32)), Ok(image(32, 28)));
        assert_eq!(Conv2dKind::parameters(&p(32, 5, 1, 0), image(3, 32)), 32 * 3 * 25 + 32);
        // ResNet's stride-2 3×3 with padding 1 halves an even side and rounds an odd one up.
        assert_eq!(Conv2dKind::output_shape(&p(8, 3, 2, 1), image(4, 32)), Ok(image(8, 16)));
        assert_eq!(Conv2dKind::output_shape(&p(8, 3, 2, 1), image(4, 7)), Ok(image(8, 4)));
        let unbiased = Conv2dParams { bias: false, ..p(8, 1, 2, 0) };
        assert_eq!(Conv2dKind::parameters(&unbiased, image(4, 7)), 32);
        let tall = Shape::Image { channels: 1, height: 9, width: 5 };
        assert_eq!(
            Conv2dKind::output_shape(&p(2, 3, 1, 0), tall),
            Ok(Shape::Image { channels: 2, height: 7, width: 3 })
        );
    }

    #[test]
    fn windows_that_do_not_fit_are_named() {
        let p = |kernel, stride, padding| Conv2dParams { channels: 4, kernel, stride, padding, bias: true };
        let err = Conv2dKind::output_shape(&p(5, 1, 0), image(1, 4)).unwrap_err();
        assert!(err.contains("kernel of 5 does not fit a side of 4"), "{err}");
        assert!(Conv2dKind::output_shape(&p(0, 1, 0), image(1, 4)).unwrap_err().contains("`kernel`"));
        assert!(Conv2dKind::output_shape(&p(3, 0, 0), image(1, 4)).unwrap_err().contains("`stride`"));
        assert!(Conv2dKind::output_shape(&p(3, 1, 3), image(1, 4)).unwrap_err().contains("`padding`"));
        let err = Conv2dKind::output_shape(&p(3, 1, 1), Shape::Vector(10)).unwrap_err();
        assert!(err.contains("takes an image, found a vector of 10"), "{err}");
        let zero = Conv2dParams { channels: 0, ..p(3, 1, 1) };
        assert!(Conv2dKind::output_shape(&zero, image(1, 4)).is_err());
    }
}
