//! `batch_norm`: per-channel batch normalisation of an image (PyTorch's `BatchNorm2d`).
//!
//! Momentum 0.1 and ε = 1e-5, PyTorch's defaults, which every architecture here uses. In
//! training the batch's own statistics normalise and update the running ones (the variance
//! unbiased, as PyTorch keeps it); in evaluation the running statistics normalise. Running
//! statistics carry across task boundaries unchanged: after task t they describe a mix of the
//! recent tasks' data, which is what the reference implementations do (neither loss of
//! plasticity's nor Mammoth's code resets them), and part of what evaluating old tasks
//! measures.

use super::activation::NoParams;
use super::{LayerKind, Part, Shape};

/// Normalises each channel by its mean and variance, then scales and shifts it (γ, β).
pub struct BatchNormKind;

impl LayerKind for BatchNormKind {
    const KIND: &'static str = "batch_norm";
    const SUMMARY: &'static str = "per-channel batch normalisation of an image (momentum 0.1, ε 1e-5), \
                                   batch statistics in training and running ones in evaluation";
    type Params = NoParams;

    fn output_shape(_: &NoParams, input: Shape) -> Result<Shape, String> {
        match input {
            Shape::Image { .. } => Ok(input),
            Shape::Vector(_) => Err(format!("normalises the channels of an image, found {input}")),
        }
    }

    fn parameters(_: &NoParams, input: Shape) -> usize {
        match input {
            Shape::Image { channels, .. } => 2 * channels,
            Shape::Vector(_) => 0,
        }
    }

    fn part(_: &NoParams) -> Part {
        Part::BatchNorm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_keeps_the_image_and_learns_a_scale_and_shift_per_channel() {
        let image = Shape::Image { channels: 64, height: 16, width: 16 };
        assert_eq!(BatchNormKind::output_shape(&NoParams {}, image), Ok(image));
        assert_eq!(BatchNormKind::parameters(&NoParams {}, image), 128);
        assert!(BatchNormKind::output_shape(&NoParams {}, Shape::Vector(3))
            .unwrap_err()
            .contains("an image"));
    }
}
