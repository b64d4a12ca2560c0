//! The named architectures a recipe may ask for by name, with the shapes of the code that
//! defined them (the speed anchors in `shared/anchors/torch_conv.py` use the same shapes).
//!
//! Initialisation is PyTorch's default for every layer. The loss-of-plasticity code
//! re-initialises its ResNet-18 (Kaiming-normal convolutions, zero biases); a recipe that
//! wants that draws new weights into the same buffers.

use super::{ConvNet, ConvNetError, LayerSpec, Shape};
use crate::rng::Rng;

/// Input of the CIFAR and Continual-ImageNet (32×32) architectures.
pub const RGB_32: Shape = Shape { channels: 3, height: 32, width: 32 };

/// Input of the MNIST architecture.
pub const MNIST: Shape = Shape { channels: 1, height: 28, width: 28 };

fn conv(channels: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> LayerSpec {
    LayerSpec::Conv2d { channels, kernel, stride, padding, bias }
}

const POOL2: LayerSpec = LayerSpec::MaxPool2d { kernel: 2, stride: 2, padding: 0 };

/// The loss-of-plasticity Continual-ImageNet ConvNet (`lop/nets/conv_net.py`) on 3×32×32:
/// conv 5×5 32, ReLU, max-pool 2; conv 3×3 64, ReLU, max-pool 2; conv 3×3 128, ReLU,
/// max-pool 2 (128×2×2); fc 512→128, ReLU, fc 128→128, ReLU, fc 128→`outputs`.
pub fn convnet_specs(outputs: usize) -> Vec<LayerSpec> {
    vec![
        conv(32, 5, 1, 0, true),
        LayerSpec::Relu,
        POOL2,
        conv(64, 3, 1, 0, true),
        LayerSpec::Relu,
        POOL2,
        conv(128, 3, 1, 0, true),
        LayerSpec::Relu,
        POOL2,
        LayerSpec::Flatten,
        LayerSpec::Linear { units: 128 },
        LayerSpec::Relu,
        LayerSpec::Linear { units: 128 },
        LayerSpec::Relu,
        LayerSpec::Linear { units: outputs },
    ]
}

/// A CIFAR-style ResNet-18: 3×3 stride-1 stem conv − BN − ReLU (no max-pool), four stages of
/// two basic blocks with `nf`, 2·`nf`, 4·`nf`, 8·`nf` channels (strides 1, 2, 2, 2), pooling
/// to one value per channel, linear head. `bias` puts biases on every convolution.
fn resnet18_specs(nf: usize, bias: bool, pool: LayerSpec, outputs: usize) -> Vec<LayerSpec> {
    let mut specs = vec![conv(nf, 3, 1, 1, bias), LayerSpec::BatchNorm2d, LayerSpec::Relu];
    for (stage, stride) in [1, 2, 2, 2].into_iter().enumerate() {
        let channels = nf << stage;
        specs.push(LayerSpec::BasicBlock { channels, stride, bias });
        specs.push(LayerSpec::BasicBlock { channels, stride: 1, bias });
    }
    specs.extend([pool, LayerSpec::Flatten, LayerSpec::Linear { units: outputs }]);
    specs
}

/// The loss-of-plasticity ResNet-18 for CIFAR-100 (`lop/nets/torchvision_modified_resnet.py`):
/// widths 64…512, biases on every convolution, batch norm, adaptive average pooling.
pub fn resnet18_specs_lop(outputs: usize) -> Vec<LayerSpec> {
    resnet18_specs(64, true, LayerSpec::GlobalAvgPool, outputs)
}

/// The reduced ResNet-18 of GEM, Mammoth and Avalanche for split CIFAR-100: 20 base filters,
/// no convolution biases, batch norm, `avg_pool2d(4)` on the final 4×4 maps.
pub fn reduced_resnet18_specs(outputs: usize) -> Vec<LayerSpec> {
    resnet18_specs(20, false, LayerSpec::AvgPool2d { kernel: 4, stride: 4, padding: 0 }, outputs)
}

/// A small MNIST CNN on 1×28×28: conv 3×3 32, ReLU, conv 3×3 64, ReLU, max-pool 2
/// (64×12×12), fc 9216→128, ReLU, fc 128→`outputs`.
pub fn cnn_mnist_specs(outputs: usize) -> Vec<LayerSpec> {
    vec![
        conv(32, 3, 1, 0, true),
        LayerSpec::Relu,
        conv(64, 3, 1, 0, true),
        LayerSpec::Relu,
        POOL2,
        LayerSpec::Flatten,
        LayerSpec::Linear { units: 128 },
        LayerSpec::Relu,
        LayerSpec::Linear { units: outputs },
    ]
}

/// [`convnet_specs`] built on [`RGB_32`].
pub fn convnet(outputs: usize, rng: &mut Rng) -> Result<ConvNet, ConvNetError> {
    ConvNet::new(RGB_32, &convnet_specs(outputs), rng)
}

/// [`resnet18_specs_lop`] built on [`RGB_32`].
pub fn resnet18(outputs: usize, rng: &mut Rng) -> Result<ConvNet, ConvNetError> {
    ConvNet::new(RGB_32, &resnet18_specs_lop(outputs), rng)
}

/// [`reduced_resnet18_specs`] built on [`RGB_32`].
pub fn reduced_resnet18(outputs: usize, rng: &mut Rng) -> Result<ConvNet, ConvNetError> {
    ConvNet::new(RGB_32, &reduced_resnet18_specs(outputs), rng)
}

/// [`cnn_mnist_specs`] built on [`MNIST`].
pub fn cnn_mnist(outputs: usize, rng: &mut Rng) -> Result<ConvNet, ConvNetError> {
    ConvNet::new(MNIST, &cnn_mnist_specs(outputs), rng)
}

/// Multiply-adds of one sample's forward pass through the convolutions and linear layers
/// (the FLOP convention of the PyTorch anchors: 2 FLOPs per multiply-add, a training step ≈ 3
/// forward passes).
pub fn forward_macs(net: &ConvNet) -> usize {
    use super::Layer;
    net.layers
        .iter()
        .map(|layer| match layer {
            Layer::Conv2d(c) => c.geometry.macs(),
            Layer::Linear(l) => l.inputs * l.outputs,
            Layer::BasicBlock(b) => {
                b.conv1.geometry.macs()
                    + b.conv2.geometry.macs()
                    + b.shortcut.as_ref().map_or(0, |(c, _)| c.geometry.macs())
            }
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    /// Parameter counts equal PyTorch's `sum(p.numel())` for the same modules, computed here
    /// from the layer shapes.
    #[test]
    fn named_architectures_have_pytorchs_parameter_counts() {
        let mut r = rng::stream(0, "test", 0);
        let conv =
            |cin: usize, cout: usize, k: usize, bias: bool| cin * cout * k * k + if bias { cout } else { 0 };
        let linear = |i: usize, o: usize| i * o + o;
        let bn = |c: usize| 2 * c;
        let convnet_count = conv(3, 32, 5, true)
            + conv(32, 64, 3, true)
            + conv(64, 128, 3, true)
            + linear(512, 128)
            + linear(128, 128)
            + linear(128, 2);
        assert_eq!(convnet_count, 177_218);
        assert_eq!(convnet(2, &mut r).unwrap().parameter_count(), convnet_count);

        let resnet = |nf: usize, bias: bool, outputs: usize| {
            let mut n = conv(3, nf, 3, bias) + bn(nf);
            let mut cin = nf;
            for stage in 0..4 {
                let c = nf << stage;
                // first block (projection when the stride or width changes), second block
                n += conv(cin, c, 3, bias) + bn(c) + conv(c, c, 3, bias) + bn(c);
                if stage > 0 || cin != c {
                    n += conv(cin, c, 1, bias) + bn(c);
                }
                n += 2 * (conv(c, c, 3, bias) + bn(c));
                cin = c;
            }
            n + linear(8 * nf, outputs)
        };
        let reduced = resnet(20, false, 100);
        assert_eq!(reduced, 1_109_240);
        assert_eq!(reduced_resnet18(100, &mut r).unwrap().parameter_count(), reduced);
        let lop = resnet(64, true, 100);
        assert_eq!(resnet18(100, &mut r).unwrap().parameter_count(), lop);
        let mnist = conv(1, 32, 3, true) + conv(32, 64, 3, true) + linear(9216, 128) + linear(128, 10);
        assert_eq!(mnist, 1_199_882);
        assert_eq!(cnn_mnist(10, &mut r).unwrap().parameter_count(), mnist);
    }

    /// Forward multiply-adds as the anchor script counts them (its README: 11.6, 109 and 24
    /// MFLOP per forward pass; 1.11 GFLOP for the wide ResNet-18).
    #[test]
    fn forward_flops_match_the_anchor_figures() {
        let mut r = rng::stream(0, "test", 0);
        let mflop = |net: ConvNet| 2.0 * forward_macs(&net) as f64 / 1e6;
        assert!((mflop(convnet(2, &mut r).unwrap()) - 11.6).abs() < 0.1);
        assert!((mflop(reduced_resnet18(100, &mut r).unwrap()) - 109.0).abs() < 1.0);
        assert!((mflop(cnn_mnist(10, &mut r).unwrap()) - 24.0).abs() < 0.5);
        assert!((mflop(resnet18(100, &mut r).unwrap()) - 1110.0).abs() < 10.0);
    }
}
