//! `flatten` and `global_avg_pool`: the two ways from an image to a vector.

use super::activation::NoParams;
use super::{LayerKind, Part, Shape};

/// Every value of an image as one vector, channel-major (PyTorch's `flatten(1)` of NCHW), so
/// the weights of a following `linear` layer line up with PyTorch's.
pub struct FlattenKind;

impl LayerKind for FlattenKind {
    const KIND: &'static str = "flatten";
    const SUMMARY: &'static str = "an image as one vector (channel, row, column order); a vector unchanged";
    type Params = NoParams;

    fn output_shape(_: &NoParams, input: Shape) -> Result<Shape, String> {
        Ok(Shape::Vector(input.len()))
    }

    fn parameters(_: &NoParams, _: Shape) -> usize {
        0
    }

    fn part(_: &NoParams) -> Part {
        Part::Flatten
    }
}

/// The mean of each channel over the whole image (PyTorch's `AdaptiveAvgPool2d(1)` then
/// flatten), the ResNets' last step before the head.
pub struct GlobalAvgPoolKind;

impl LayerKind for GlobalAvgPoolKind {
    const KIND: &'static str = "global_avg_pool";
    const SUMMARY: &'static str = "the mean of each channel over the image: a vector of the channels";
    type Params = NoParams;

    fn output_shape(_: &NoParams, input: Shape) -> Result<Shape, String> {
        match input {
            Shape::Image { channels, .. } => Ok(Shape::Vector(channels)),
            Shape::Vector(_) => Err(format!("averages the channels of an image, found {input}")),
        }
    }

    fn parameters(_: &NoParams, _: Shape) -> usize {
        0
    }

    fn part(_: &NoParams) -> Part {
        Part::GlobalAvgPool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_become_vectors() {
        let image = Shape::Image { channels: 128, height: 2, width: 2 };
        assert_eq!(FlattenKind::output_shape(&NoParams {}, image), Ok(Shape::Vector(512)));
        assert_eq!(FlattenKind::output_shape(&NoParams {}, Shape::Vector(7)), Ok(Shape::Vector(7)));
        assert_eq!(GlobalAvgPoolKind::output_shape(&NoParams {}, image), Ok(Shape::Vector(128)));
        assert!(GlobalAvgPoolKind::output_shape(&NoParams {}, Shape::Vector(7)).is_err());
    }
}
