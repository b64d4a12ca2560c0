//! `max_pool2d` and `avg_pool2d`: pooling over square windows of each channel.
//!
//! As PyTorch's `MaxPool2d` and `AvgPool2d` with their defaults: the stride defaults to the
//! kernel side, padding is with −∞ for the maximum and with zeros counted in the average
//! (`count_include_pad = True`), and windows that would start in the padding are dropped
//! (floor mode).

use serde::{Deserialize, Serialize};

use super::conv2d::{check_window, window_output};
use super::{LayerKind, Part, Shape};

/// Parameters of the pooling layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolParams {
    /// Side of the square window.
    pub kernel: usize,
    /// Step between windows; the kernel side when left out (non-overlapping windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Padding on every side; at most half the kernel side, as PyTorch requires.
    #[serde(default)]
    pub padding: usize,
}

impl PoolParams {
    /// The stride in effect.
    pub fn stride(&self) -> usize {
        self.stride.unwrap_or(self.kernel)
    }

    fn output(&self, input: Shape) -> Result<Shape, String> {
        check_window(self.kernel, self.stride(), self.padding)?;
        if 2 * self.padding > self.kernel {
            return Err(format!(
                "`padding` must be at most half the kernel side {}, found {}",
                self.kernel, self.padding
            ));
        }
        match input {
            Shape::Image { channels, height, width } => Ok(Shape::Image {
                channels,
                height: window_output(height, self.kernel, self.stride(), self.padding)?,
                width: window_output(width, self.kernel, self.stride(), self.padding)?,
            }),
            Shape::Vector(_) => Err(format!("takes an image, found {input}")),
        }
    }
}

/// The maximum over each window.
pub struct MaxPool2dKind;

impl LayerKind for MaxPool2dKind {
    const KIND: &'static str = "max_pool2d";
    const SUMMARY: &'static str =
        "the maximum over square `kernel` windows of each channel, every `stride` (default: the kernel)";
    type Params = PoolParams;

    fn output_shape(p: &PoolParams, input: Shape) -> Result<Shape, String> {
        p.output(input)
    }

    fn parameters(_: &PoolParams, _: Shape) -> usize {
        0
    }

    fn part(p: &PoolParams) -> Part {
        Part::MaxPool2d { kernel: p.kernel, stride: p.stride(), padding: p.padding }
    }
}

/// The mean over each window.
pub struct AvgPool2dKind;

impl LayerKind for AvgPool2dKind {
    const KIND: &'static str = "avg_pool2d";
    const SUMMARY: &'static str =
        "the mean over square `kernel` windows of each channel, every `stride` (default: the kernel)";
    type Params = PoolParams;

    fn output_shape(p: &PoolParams, input: Shape) -> Result<Shape, String> {
        p.output(input)
    }

    fn parameters(_: &PoolParams, _: Shape) -> usize {
        0
    }

    fn part(p: &PoolParams) -> Part {
        Part::AvgPool2d { kernel: p.kernel, stride: p.stride(), padding: p.padding }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_halves_by_default_and_floors_odd_sides() {
        let two = PoolParams { kernel: 2, stride: None, padding: 0 };
        let image = |c, h, w| Shape::Image { channels: c, height: h, width: w };
        assert_eq!(MaxPool2dKind::output_shape(&two, image(32, 28, 28)), Ok(image(32, 14, 14)));
        // LoP ConvNet's last pool: 128×4×4 → 128×2×2; an odd side floors (PyTorch: 5 → 2).
        assert_eq!(AvgPool2dKind::output_shape(&two, image(128, 5, 4)), Ok(image(128, 2, 2)));
        let overlapping = PoolParams { kernel: 3, stride: Some(2), padding: 1 };
        assert_eq!(MaxPool2dKind::output_shape(&overlapping, image(4, 8, 8)), Ok(image(4, 4, 4)));
        assert_eq!(MaxPool2dKind::part(&overlapping), Part::MaxPool2d { kernel: 3, stride: 2, padding: 1 });
        assert_eq!(MaxPool2dKind::parameters(&two, image(4, 8, 8)), 0);
    }

    #[test]
    fn bad_windows_and_vectors_are_refused() {
        let wide = PoolParams { kernel: 3, stride: None, padding: 2 };
        assert!(MaxPool2dKind::output_shape(&wide, Shape::Image { channels: 1, height: 4, width: 4 })
            .unwrap_err()
            .contains("at most half"));
        let two = PoolParams { kernel: 2, stride: None, padding: 0 };
        assert!(AvgPool2dKind::output_shape(&two, Shape::Vector(4)).unwrap_err().contains("takes an image"));
        let err = MaxPool2dKind::output_shape(&PoolParams { kernel: 3, stride: None, padding: 0 }, {
            Shape::Image { channels: 1, height: 2, width: 2 }
        })
        .unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
