//! `basic_block`: the residual block of ResNet-18 and ResNet-34 (He et al. 2016).
//!
//! 3×3 convolution (with `stride`), batch norm, ReLU, 3×3 convolution, batch norm, then the
//! input added back and a final ReLU. When the block changes the channel count or strides,
//! the input passes through a 1×1 convolution with that stride and a batch norm first (the
//! "option B" projection shortcut that torchvision, loss of plasticity's ResNet and Mammoth
//! all use). One layer of the recipe, because a residual connection does not fit a plain
//! list of layers.

use serde::{Deserialize, Serialize};

use super::conv2d::window_output;
use super::{LayerKind, Part, Shape};

/// A residual basic block.
pub struct BasicBlockKind;

/// Parameters of `basic_block`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicBlockParams {
    /// Output channels of both convolutions (≥ 1).
    pub channels: usize,
    /// Stride of the first convolution and of the shortcut: 1 or 2.
    #[serde(default = "one")]
    pub stride: usize,
    /// Whether the convolutions have biases (loss of plasticity's ResNet: yes; torchvision's
    /// and the reduced ResNet-18: no).
    #[serde(default)]
    pub bias: bool,
}

fn one() -> usize {
    1
}

impl BasicBlockParams {
    /// Whether the shortcut needs the 1×1 projection for an input of `channels_in` channels.
    pub fn projects(&self, channels_in: usize) -> bool {
        self.stride != 1 || channels_in != self.channels
    }
}

impl LayerKind for BasicBlockKind {
    const KIND: &'static str = "basic_block";
    const SUMMARY: &'static str = "ResNet basic block: two 3×3 convolutions of `channels` with batch norm \
                                   and ReLU, the input added back (through a 1×1 projection when \
                                   `stride` or the channels change)";
    type Params = BasicBlockParams;

    fn output_shape(p: &BasicBlockParams, input: Shape) -> Result<Shape, String> {
        if p.channels == 0 {
            return Err("`channels` must be ≥ 1 (a block without outputs)".into());
        }
        if !(1..=2).contains(&p.stride) {
            return Err(format!("`stride` must be 1 or 2, found {}", p.stride));
        }
        match input {
            Shape::Image { height, width, .. } => Ok(Shape::Image {
                channels: p.channels,
                height: window_output(height, 3, p.stride, 1)?,
                width: window_output(width, 3, p.stride, 1)?,
            }),
            Shape::Vector(_) => Err(format!("takes an image, found {input}")),
        }
    }

    fn parameters(p: &BasicBlockParams, input: Shape) -> usize {
        let Shape::Image { channels: c_in, .. } = input else { return 0 };
        let c = p.channels;
        let bias = |n: usize| if p.bias { n } else { 0 };
        let main = c * c_in * 9 + bias(c) + 2 * c + c * c * 9 + bias(c) + 2 * c;
        let shortcut = if p.projects(c_in) { c * c_in + bias(c) + 2 * c } else { 0 };
        main + shortcut
    }

    fn part(p: &BasicBlockParams) -> Part {
        Part::BasicBlock { channels: p.channels, stride: p.stride, bias: p.bias }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(channels: usize, side: usize) -> Shape {
        Shape::Image { channels, height: side, width: side }
    }

    #[test]
    fn blocks_count_parameters_as_torchvision_does() {
        let same = BasicBlockParams { channels: 64, stride: 1, bias: false };
        assert_eq!(BasicBlockKind::output_shape(&same, image(64, 32)), Ok(image(64, 32)));
        // torchvision's resnet18 layer1[0]: 2 × (64·64·9) weights + 2 BN × 128 = 73,984.
        assert_eq!(BasicBlockKind::parameters(&same, image(64, 32)), 73_984);
        // layer2[0] with its downsample: 128·64·9 + 128·128·9 + 128·64 + 3 BN × 256 = 230,144.
        let down = BasicBlockParams { channels: 128, stride: 2, bias: false };
        assert_eq!(BasicBlockKind::output_shape(&down, image(64, 32)), Ok(image(128, 16)));
        assert_eq!(BasicBlockKind::parameters(&down, image(64, 32)), 230_144);
        let biased = BasicBlockParams { bias: true, ..down };
        assert_eq!(BasicBlockKind::parameters(&biased, image(64, 32)), 230_144 + 3 * 128);
    }

    #[test]
    fn strides_other_than_one_or_two_and_vectors_are_refused() {
        let p = BasicBlockParams { channels: 8, stride: 3, bias: false };
        assert!(BasicBlockKind::output_shape(&p, image(8, 8)).unwrap_err().contains("1 or 2"));
        let p = BasicBlockParams { channels: 8, stride: 1, bias: false };
        assert!(BasicBlockKind::output_shape(&p, Shape::Vector(8)).unwrap_err().contains("takes an image"));
    }
}
