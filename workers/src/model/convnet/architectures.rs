//! The named architectures a recipe may ask for by name, built as conv-net models. Their
//! layers come from the layer registry's expansion of `network.architecture` (one description,
//! with the shapes of the code that defined them; the speed anchors in
//! `shared/anchors/torch_conv.py` use the same shapes). The reduced ResNet-18 pools globally
//! where GEM's code calls `avg_pool2d(out, 4)`: the same on its 4×4 maps of a 32×32 input.
//!
//! Initialisation is PyTorch's default for every layer. The loss-of-plasticity code
//! re-initialises its ResNet-18 (Kaiming-normal convolutions, zero biases); a recipe that
//! wants that draws new weights into the same buffers.

use super::ConvNet;
use crate::model::layer::{self, Network};
use crate::protocol::{Architecture, NetworkSpec};
use crate::rng::Rng;

/// Input of the CIFAR and Continual-ImageNet (32×32) architectures.
const RGB_32: layer::Shape = layer::Shape::Image { channels: 3, height: 32, width: 32 };

/// Input of the MNIST architecture.
const MNIST: layer::Shape = layer::Shape::Image { channels: 1, height: 28, width: 28 };

/// `architecture` with an output head of `outputs` on `input`, as a recipe's
/// `network.architecture` plans it (the layer registry holds the shapes,
/// [`crate::model::layer::hidden_layers`]), built with initial weights from `rng`.
pub fn build(
    architecture: Architecture,
    input: layer::Shape,
    outputs: usize,
    rng: &mut Rng,
) -> Result<ConvNet, String> {
    let spec = NetworkSpec { architecture: Some(architecture), ..NetworkSpec::mlp(Vec::new()) };
    let (input, layers) = Network::plan(&spec, input, outputs)?.conv_specs()?;
    ConvNet::new(input, &layers, rng).map_err(|e| e.to_string())
}

/// Loss of plasticity's Continual-ImageNet ConvNet on 3×32×32.
pub fn convnet(outputs: usize, rng: &mut Rng) -> Result<ConvNet, String> {
    build(Architecture::Convnet, RGB_32, outputs, rng)
}

/// Loss of plasticity's ResNet-18 for CIFAR-100 on 3×32×32.
pub fn resnet18(outputs: usize, rng: &mut Rng) -> Result<ConvNet, String> {
    build(Architecture::Resnet18, RGB_32, outputs, rng)
}

/// The reduced ResNet-18 (20 base filters) on 3×32×32.
pub fn reduced_resnet18(outputs: usize, rng: &mut Rng) -> Result<ConvNet, String> {
    build(Architecture::ReducedResnet18, RGB_32, outputs, rng)
}

/// The MNIST CNN on 1×28×28.
pub fn cnn_mnist(outputs: usize, rng: &mut Rng) -> Result<ConvNet, String> {
    build(Architecture::CnnMnist, MNIST, outputs, rng)
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
