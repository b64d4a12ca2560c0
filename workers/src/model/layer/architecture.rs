//! Named architectures: `network.architecture` as shorthand for the layer lists of the papers'
//! image benchmarks. Each expands to its hidden layers; the output head (a `linear` layer
//! sized from the stream) is appended like any other network's.
//!
//! Shapes follow the reference code, read from it:
//! * `convnet` — loss of plasticity, `lop/nets/conv_net.py`: conv 5×5 → 32, ReLU, max pool 2;
//!   conv 3×3 → 64, ReLU, max pool 2; conv 3×3 → 128, ReLU, max pool 2; flatten (512 values on
//!   a 32×32 input); linear 128, ReLU; linear 128, ReLU.
//! * `resnet18` — loss of plasticity, `lop/nets/torchvision_modified_resnet.py`: torchvision's
//!   ResNet-18 with a 3×3 stride-1 stem, no max pool, biased convolutions; stages of 64, 128,
//!   256, 512 channels, two basic blocks each, the later stages striding by 2; global average
//!   pool.
//! * `reduced_resnet18` — GEM (`model/common.py`), Mammoth and Avalanche: the same layout with
//!   20 base filters (20, 40, 80, 160) and unbiased convolutions. GEM pools with
//!   `avg_pool2d(out, 4)`, which on the 4×4 maps of a 32×32 input is the global average pool
//!   used here; on larger inputs (TinyImageNet) the global pool keeps the head at 160 inputs, as
//!   Mammoth does.
//! * `cnn_mnist` — PyTorch's MNIST example without its two dropout layers: conv 3×3 → 32, ReLU,
//!   conv 3×3 → 64, ReLU, max pool 2, flatten (9,216 values), linear 128, ReLU.
//!
//! Initialisation is the engine's (PyTorch's layer defaults), not each paper's own scheme; the
//! engine documents it.

use serde_json::json;

use crate::protocol::{Architecture, LayerSpec, Params};

fn layer(kind: &str, params: serde_json::Value) -> LayerSpec {
    let serde_json::Value::Object(map) = params else { unreachable!("layer parameters are objects") };
    LayerSpec::new(kind, Params::from_iter(map))
}

fn conv(channels: usize, kernel: usize, padding: usize, bias: bool) -> LayerSpec {
    layer(
        "conv2d",
        json!({ "channels": channels, "kernel": kernel, "stride": 1, "padding": padding, "bias": bias }),
    )
}

fn relu() -> LayerSpec {
    layer("relu", json!({}))
}

fn max_pool(kernel: usize) -> LayerSpec {
    layer("max_pool2d", json!({ "kernel": kernel }))
}

fn linear(units: usize) -> LayerSpec {
    layer("linear", json!({ "units": units }))
}

fn resnet(base: usize, bias: bool) -> Vec<LayerSpec> {
    let mut layers = vec![conv(base, 3, 1, bias), layer("batch_norm", json!({})), relu()];
    for (stage, stride) in [1, 2, 2, 2].into_iter().enumerate() {
        let channels = base << stage;
        layers.push(layer("basic_block", json!({ "channels": channels, "stride": stride, "bias": bias })));
        layers.push(layer("basic_block", json!({ "channels": channels, "stride": 1, "bias": bias })));
    }
    layers.push(layer("global_avg_pool", json!({})));
    layers
}

/// The hidden layers of `architecture`, or `None` for `mlp`, whose layers come from
/// `network.hidden` and `network.activation`.
pub fn hidden_layers(architecture: Architecture) -> Option<Vec<LayerSpec>> {
    Some(match architecture {
        Architecture::Mlp => return None,
        Architecture::Convnet => vec![
            conv(32, 5, 0, true),
            relu(),
            max_pool(2),
            conv(64, 3, 0, true),
            relu(),
            max_pool(2),
            conv(128, 3, 0, true),
            relu(),
            max_pool(2),
            layer("flatten", json!({})),
            linear(128),
            relu(),
            linear(128),
            relu(),
        ],
        Architecture::Resnet18 => resnet(64, true),
        Architecture::ReducedResnet18 => resnet(20, false),
        Architecture::CnnMnist => vec![
            conv(32, 3, 0, true),
            relu(),
            conv(64, 3, 0, true),
            relu(),
            max_pool(2),
            layer("flatten", json!({})),
            linear(128),
            relu(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Network, Shape};
    use crate::protocol::{Architecture, NetworkSpec};

    fn planned(architecture: Architecture, input: Shape, outputs: usize) -> Network {
        let spec = NetworkSpec { architecture: Some(architecture), ..NetworkSpec::mlp(vec![]) };
        Network::plan(&spec, input, outputs).unwrap()
    }

    fn rgb(side: usize) -> Shape {
        Shape::Image { channels: 3, height: side, width: side }
    }

    // Parameter counts are PyTorch's `sum(p.numel() for p in model.parameters())` for the
    // reference code's modules, worked out from their shapes.
    #[test]
    fn convnet_has_the_reference_shapes() {
        let net = planned(Architecture::Convnet, rgb(32), 2);
        let flatten = net.layers.iter().find(|l| l.spec.kind == "flatten").unwrap();
        assert_eq!(flatten.output, Shape::Vector(512));
        let conv = (3 * 25 + 1) * 32 + (32 * 9 + 1) * 64 + (64 * 9 + 1) * 128;
        let fc = (512 + 1) * 128 + (128 + 1) * 128 + (128 + 1) * 2;
        assert_eq!(net.parameters(), conv + fc);
    }

    #[test]
    fn resnets_have_torchvisions_counts() {
        // torchvision's resnet18 has 11,689,512 parameters with 1,000 classes: 7×7 stem
        // (9,408) + BN (128) + blocks 11,166,912 (conv bias-free) + fc 513,000. Loss of
        // plasticity's variant: 3×3 stem with bias (1,792), and one bias per output channel of
        // the 16 block convolutions and 3 projections.
        let blocks = 11_689_512 - 9_408 - 128 - 513_000;
        let biases = 2 * (64 * 2 + 128 * 2 + 256 * 2 + 512 * 2) + 128 + 256 + 512;
        let net = planned(Architecture::Resnet18, rgb(32), 100);
        assert_eq!(net.parameters(), 1_792 + 128 + blocks + biases + 512 * 100 + 100);
        assert_eq!(net.layers.last().unwrap().input, Shape::Vector(512));
        let reduced = planned(Architecture::ReducedResnet18, rgb(32), 100);
        assert_eq!(reduced.layers.last().unwrap().input, Shape::Vector(160));
        let tiny = planned(Architecture::ReducedResnet18, rgb(64), 200);
        assert_eq!(tiny.layers.last().unwrap().input, Shape::Vector(160));
    }

    #[test]
    fn the_reduced_resnet_matches_gems_count() {
        // GEM's ResNet18(100, nf=20), 1,109,240 parameters. Worked out: stem 540 + BN 40; stage 1
        // 2 × (2·3,600 + 2·40); stage 2 (7,200 + 14,400 + 800 + 3·80) + (2·14,400 + 2·80);
        // stage 3 (28,800 + 57,600 + 3,200 + 3·160) + (2·57,600 + 2·160); stage 4
        // (115,200 + 230,400 + 12,800 + 3·320) + (2·230,400 + 2·320); head 160·100 + 100.
        let stage1 = 2 * (2 * 3_600 + 2 * 40);
        let stage2 = (7_200 + 14_400 + 800 + 3 * 80) + (2 * 14_400 + 2 * 80);
        let stage3 = (28_800 + 57_600 + 3_200 + 3 * 160) + (2 * 57_600 + 2 * 160);
        let stage4 = (115_200 + 230_400 + 12_800 + 3 * 320) + (2 * 230_400 + 2 * 320);
        let expected = 540 + 40 + stage1 + stage2 + stage3 + stage4 + 16_100;
        assert_eq!(expected, 1_109_240);
        assert_eq!(planned(Architecture::ReducedResnet18, rgb(32), 100).parameters(), expected);
    }

    #[test]
    fn cnn_mnist_flattens_9216_values() {
        let net = planned(Architecture::CnnMnist, Shape::Image { channels: 1, height: 28, width: 28 }, 10);
        let flatten = net.layers.iter().find(|l| l.spec.kind == "flatten").unwrap();
        assert_eq!(flatten.output, Shape::Vector(9_216));
        assert_eq!(net.parameters(), 320 + 18_496 + 9_217 * 128 + 129 * 10);
    }
}
