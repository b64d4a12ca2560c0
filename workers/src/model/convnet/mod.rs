//! Convolutional networks: a sequence of layers (convolution, batch norm, ReLU, pooling,
//! flatten, linear, ResNet basic blocks) over the kernels of [`super::conv`], with the named
//! architectures of the continual-learning literature ([`architectures`]).
//!
//! Parameters live in plain `Vec<f32>` buffers per layer, because continual methods rewrite
//! them by unit: a convolution's weights are `out_channels × (in_channels·kh·kw)` row-major, so
//! output channel i is row i, as unit i of a [`Linear`] layer; the channels a layer feeds are
//! column blocks of the next layer's rows. A gradient (or an optimiser moment) is a `ConvNet`
//! of the same structure ([`ConvNet::zeros_like`]), so code that walks one walks the other.
//!
//! Batch norm keeps running statistics next to γ and β; they are state, not parameters: no
//! gradient, no optimiser, updated only by a training-mode forward pass. What a task boundary
//! does to them is the caller's decision — nothing here resets them — and the same network
//! evaluated in [`Mode::Eval`] uses them, in [`Mode::Train`] uses the batch's statistics.

pub mod architectures;
mod pass;

pub use pass::{
    backward, commit_statistics, forward, forward_from, forward_pass, loss_and_gradients, sgd_step, Mode,
    Workspace,
};

use rand::Rng as _;

use super::conv::{BatchNormConfig, Conv2dGeometry, GeometryError, PoolGeometry};
use super::mlp::Linear;
use crate::rng::Rng;

/// The shape of one sample's activations: channels × height × width (a flat vector of n
/// features is n × 1 × 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Channels (features of a flat vector).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl Shape {
    /// An image shape.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Shape { channels, height, width }
    }

    /// Floats per sample.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether a sample holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_flat(&self) -> bool {
        self.height == 1 && self.width == 1
    }
}

/// One layer of a network's architecture, without parameters: what a recipe describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    /// 2-d convolution with a square kernel, zero padding on every side.
    Conv2d {
        /// Output channels.
        channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride on both axes.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
        /// Whether the layer adds a bias per output channel.
        bias: bool,
    },
    /// Batch normalisation over the input's channels.
    BatchNorm2d,
    /// max(0, x).
    Relu,
    /// Max pooling (padded cells never win).
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Stride on both axes.
        stride: usize,
        /// Padding on every side, at most half the window.
        padding: usize,
    },
    /// Average pooling, padded cells counted as zeros.
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Stride on both axes.
        stride: usize,
        /// Padding on every side, at most half the window.
        padding: usize,
    },
    /// The mean of every channel's plane: C×H×W → C×1×1.
    GlobalAvgPool,
    /// C×H×W → (C·H·W)×1×1, in NCHW order (a no-op on the memory).
    Flatten,
    /// Fully connected layer on a flat input.
    Linear {
        /// Output units.
        units: usize,
    },
    /// ResNet basic block: 3×3 conv (stride) − BN − ReLU − 3×3 conv − BN, plus the input (or
    /// its 1×1 conv (stride) − BN projection when the stride or the channels change), ReLU.
    BasicBlock {
        /// Output channels.
        channels: usize,
        /// Stride of the first convolution and of the projection.
        stride: usize,
        /// Whether the block's convolutions have biases.
        bias: bool,
    },
}

/// A convolution's geometry and parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Input and output shapes, kernel, stride, padding.
    pub geometry: Conv2dGeometry,
    /// `out_channels × (in_channels·kh·kw)`, row-major (PyTorch's `[cout][cin][kh][kw]`).
    pub weight: Vec<f32>,
    /// One per output channel, when the layer has biases.
    pub bias: Option<Vec<f32>>,
}

/// A batch-norm layer's parameters (γ, β) and running statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// Channels normalised.
    pub channels: usize,
    /// Positions per channel and sample (height × width).
    pub plane: usize,
    /// ε and momentum.
    pub config: BatchNormConfig,
    /// Scale per channel.
    pub gamma: Vec<f32>,
    /// Shift per channel.
    pub beta: Vec<f32>,
    /// Running mean per channel (state, not a parameter).
    pub running_mean: Vec<f32>,
    /// Running unbiased variance per channel (state, not a parameter).
    pub running_var: Vec<f32>,
}

/// A ResNet basic block's layers.
#[derive(Clone, Debug, PartialEq)]
pub struct BasicBlock {
    /// First 3×3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm2d,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm2d,
    /// The 1×1 projection of the input and its batch norm, when the shape changes.
    pub shortcut: Option<(Conv2d, BatchNorm2d)>,
}

/// A layer with its parameters (or, in a gradient, their gradients).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// 2-d convolution.
    Conv2d(Conv2d),
    /// Batch normalisation.
    BatchNorm2d(BatchNorm2d),
    /// max(0, x).
    Relu,
    /// Max pooling.
    MaxPool2d(PoolGeometry),
    /// Average pooling.
    AvgPool2d(PoolGeometry),
    /// Mean over each channel's plane.
    GlobalAvgPool,
    /// Reinterprets a sample as a flat vector.
    Flatten,
    /// Fully connected layer.
    Linear(Linear),
    /// ResNet basic block.
    BasicBlock(Box<BasicBlock>),
}

/// Why a list of layers does not make a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvNetError {
    /// The list is empty.
    #[error("a network needs at least one layer")]
    Empty,
    /// A layer's geometry does not fit its input.
    #[error("layer {layer} ({kind}) on a {input:?} input: {source}")]
    Geometry {
        /// Index of the layer.
        layer: usize,
        /// Its kind.
        kind: &'static str,
        /// Its input shape.
        input: Shape,
        /// Why.
        source: GeometryError,
    },
    /// A linear layer after a layer whose output is not flat.
    #[error(
        "layer {layer} (linear) needs a flat input, got {input:?}: add flatten or global_avg_pool before it"
    )]
    NotFlat {
        /// Index of the layer.
        layer: usize,
        /// Its input shape.
        input: Shape,
    },
    /// A linear layer with no units.
    #[error("layer {layer} (linear) needs at least one unit")]
    NoUnits {
        /// Index of the layer.
        layer: usize,
    },
    /// A training-mode batch norm would see one value per channel (the unbiased variance
    /// divides by n − 1); PyTorch refuses it too.
    #[error("batch norm in training mode needs more than one value per channel: batch {batch} of {plane} positions")]
    SingleValueBatchNorm {
        /// Samples.
        batch: usize,
        /// Positions per channel.
        plane: usize,
    },
}

/// A sequential convolutional network.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNet {
    input: Shape,
    /// Output shape of each layer.
    shapes: Vec<Shape>,
    /// The layers, input side first.
    pub layers: Vec<Layer>,
}

/// U(−1/√fan_in, 1/√fan_in): PyTorch's default initialisation of `Conv2d` and `Linear`
/// weights (Kaiming-uniform with a = √5) and biases.
fn uniform(rng: &mut Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..len).map(|_| rng.gen_range(-bound..=bound)).collect()
}

impl Conv2d {
    fn new(geometry: Conv2dGeometry, bias: bool, rng: &mut Rng) -> Self {
        let fan_in = geometry.k();
        let weight = uniform(rng, geometry.out_channels * fan_in, fan_in);
        let bias = bias.then(|| uniform(rng, geometry.out_channels, fan_in));
        Conv2d { geometry, weight, bias }
    }

    /// Output channel `channel`'s weights (its row).
    pub fn row(&self, channel: usize) -> &[f32] {
        let k = self.geometry.k();
        &self.weight[channel * k..(channel + 1) * k]
    }

    /// Output channel `channel`'s weights, mutable.
    pub fn row_mut(&mut self, channel: usize) -> &mut [f32] {
        let k = self.geometry.k();
        &mut self.weight[channel * k..(channel + 1) * k]
    }

    fn output_shape(&self) -> Shape {
        let g = &self.geometry;
        Shape::new(g.out_channels, g.out_h(), g.out_w())
    }
}

impl BatchNorm2d {
    fn new(shape: Shape) -> Self {
        let c = shape.channels;
        BatchNorm2d {
            channels: c,
            plane: shape.height * shape.width,
            config: BatchNormConfig::default(),
            gamma: vec![1.0; c],
            beta: vec![0.0; c],
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
        }
    }
}

impl BasicBlock {
    fn new(
        input: Shape,
        channels: usize,
        stride: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Self, GeometryError> {
        let g1 = Conv2dGeometry::square(input.channels, input.height, input.width, channels, 3, stride, 1)?;
        let conv1 = Conv2d::new(g1, bias, rng);
        let mid = conv1.output_shape();
        let conv2 = Conv2d::new(
            Conv2dGeometry::square(channels, mid.height, mid.width, channels, 3, 1, 1)?,
            bias,
            rng,
        );
        let shortcut = if stride != 1 || input.channels != channels {
            let g =
                Conv2dGeometry::square(input.channels, input.height, input.width, channels, 1, stride, 0)?;
            Some((Conv2d::new(g, bias, rng), BatchNorm2d::new(mid)))
        } else {
            None
        };
        Ok(BasicBlock { bn1: BatchNorm2d::new(mid), bn2: BatchNorm2d::new(mid), conv1, conv2, shortcut })
    }

    fn output_shape(&self) -> Shape {
        self.conv2.output_shape()
    }
}

/// Calls `f` on every pair of corresponding trainable buffers of `a` and `b` (same structure).
fn zip_layer(a: &mut Layer, b: &Layer, f: &mut impl FnMut(&mut [f32], &[f32])) {
    fn conv(a: &mut Conv2d, b: &Conv2d, f: &mut impl FnMut(&mut [f32], &[f32])) {
        f(&mut a.weight, &b.weight);
        if let (Some(x), Some(y)) = (a.bias.as_mut(), b.bias.as_ref()) {
            f(x, y);
        }
    }
    fn norm(a: &mut BatchNorm2d, b: &BatchNorm2d, f: &mut impl FnMut(&mut [f32], &[f32])) {
        f(&mut a.gamma, &b.gamma);
        f(&mut a.beta, &b.beta);
    }
    match (a, b) {
        (Layer::Conv2d(a), Layer::Conv2d(b)) => conv(a, b, f),
        (Layer::BatchNorm2d(a), Layer::BatchNorm2d(b)) => norm(a, b, f),
        (Layer::Linear(a), Layer::Linear(b)) => {
            f(&mut a.weight, &b.weight);
            f(&mut a.bias, &b.bias);
        }
        (Layer::BasicBlock(a), Layer::BasicBlock(b)) => {
            conv(&mut a.conv1, &b.conv1, f);
            norm(&mut a.bn1, &b.bn1, f);
            conv(&mut a.conv2, &b.conv2, f);
            norm(&mut a.bn2, &b.bn2, f);
            if let (Some((ac, an)), Some((bc, bn))) = (a.shortcut.as_mut(), b.shortcut.as_ref()) {
                conv(ac, bc, f);
                norm(an, bn, f);
            }
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "networks of different structure"
        ),
    }
}

impl ConvNet {
    /// Builds the layers `specs` on `input`-shaped samples, initialised as PyTorch initialises
    /// them (convolution and linear weights and biases U(±1/√fan_in), γ = 1, β = 0, running
    /// mean 0 and variance 1), drawing from `rng`.
    pub fn new(input: Shape, specs: &[LayerSpec], rng: &mut Rng) -> Result<Self, ConvNetError> {
        if specs.is_empty() {
            return Err(ConvNetError::Empty);
        }
        let mut shape = input;
        let mut layers = Vec::with_capacity(specs.len());
        let mut shapes = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let geometry = |kind, source| ConvNetError::Geometry { layer: index, kind, input: shape, source };
            let pool = |kernel, stride, padding| {
                PoolGeometry::square(shape.channels, shape.height, shape.width, kernel, stride, padding)
            };
            let layer = match *spec {
                LayerSpec::Conv2d { channels, kernel, stride, padding, bias } => {
                    let g = Conv2dGeometry::square(
                        shape.channels,
                        shape.height,
                        shape.width,
                        channels,
                        kernel,
                        stride,
                        padding,
                    )
                    .map_err(|e| geometry("conv2d", e))?;
                    Layer::Conv2d(Conv2d::new(g, bias, rng))
                }
                LayerSpec::BatchNorm2d => Layer::BatchNorm2d(BatchNorm2d::new(shape)),
                LayerSpec::Relu => Layer::Relu,
                LayerSpec::MaxPool2d { kernel, stride, padding } => {
                    Layer::MaxPool2d(pool(kernel, stride, padding).map_err(|e| geometry("max_pool2d", e))?)
                }
                LayerSpec::AvgPool2d { kernel, stride, padding } => {
                    Layer::AvgPool2d(pool(kernel, stride, padding).map_err(|e| geometry("avg_pool2d", e))?)
                }
                LayerSpec::GlobalAvgPool => Layer::GlobalAvgPool,
                LayerSpec::Flatten => Layer::Flatten,
                LayerSpec::Linear { units } => {
                    if !shape.is_flat() {
                        return Err(ConvNetError::NotFlat { layer: index, input: shape });
                    }
                    if units == 0 {
                        return Err(ConvNetError::NoUnits { layer: index });
                    }
                    let fan_in = shape.channels;
                    Layer::Linear(Linear {
                        inputs: fan_in,
                        outputs: units,
                        weight: uniform(rng, units * fan_in, fan_in),
                        bias: uniform(rng, units, fan_in),
                    })
                }
                LayerSpec::BasicBlock { channels, stride, bias } => Layer::BasicBlock(Box::new(
                    BasicBlock::new(shape, channels, stride, bias, rng)
                        .map_err(|e| geometry("basic_block", e))?,
                )),
            };
            shape = match &layer {
                Layer::Conv2d(c) => c.output_shape(),
                Layer::BatchNorm2d(_) | Layer::Relu => shape,
                Layer::MaxPool2d(g) | Layer::AvgPool2d(g) => Shape::new(g.channels, g.out_h(), g.out_w()),
                Layer::GlobalAvgPool => Shape::new(shape.channels, 1, 1),
                Layer::Flatten => Shape::new(shape.len(), 1, 1),
                Layer::Linear(l) => Shape::new(l.outputs, 1, 1),
                Layer::BasicBlock(b) => b.output_shape(),
            };
            layers.push(layer);
            shapes.push(shape);
        }
        Ok(ConvNet { input, shapes, layers })
    }

    /// The shape of one input sample.
    pub fn input_shape(&self) -> Shape {
        self.input
    }

    /// The shape of layer `layer`'s output.
    pub fn output_shape_of(&self, layer: usize) -> Shape {
        self.shapes[layer]
    }

    /// Outputs per sample (all heads side by side).
    pub fn outputs(&self) -> usize {
        self.shapes.last().expect("a network has layers").len()
    }

    /// All zeros, shaped like `self`: the gradient (or optimiser moment) of this network.
    pub fn zeros_like(&self) -> ConvNet {
        let mut zeros = self.clone();
        zeros.clear();
        zeros
    }

    /// Sets every trainable buffer and every running statistic to zero.
    pub fn clear(&mut self) {
        fn norm(n: &mut BatchNorm2d) {
            for v in [&mut n.gamma, &mut n.beta, &mut n.running_mean, &mut n.running_var] {
                v.fill(0.0);
            }
        }
        fn conv(c: &mut Conv2d) {
            c.weight.fill(0.0);
            if let Some(b) = c.bias.as_mut() {
                b.fill(0.0);
            }
        }
        for layer in &mut self.layers {
            match layer {
                Layer::Conv2d(c) => conv(c),
                Layer::BatchNorm2d(n) => norm(n),
                Layer::Linear(l) => l.clear(),
                Layer::BasicBlock(b) => {
                    conv(&mut b.conv1);
                    norm(&mut b.bn1);
                    conv(&mut b.conv2);
                    norm(&mut b.bn2);
                    if let Some((c, n)) = b.shortcut.as_mut() {
                        conv(c);
                        norm(n);
                    }
                }
                Layer::Relu
                | Layer::MaxPool2d(_)
                | Layer::AvgPool2d(_)
                | Layer::GlobalAvgPool
                | Layer::Flatten => {}
            }
        }
    }

    /// Calls `f` on every trainable buffer of `self` with the corresponding buffer of `other`
    /// (a network of the same structure: its gradient, a moment), in a fixed order; running
    /// statistics are not trainable and not visited.
    pub fn zip_buffers_mut(&mut self, other: &ConvNet, mut f: impl FnMut(&mut [f32], &[f32])) {
        assert_eq!(self.layers.len(), other.layers.len(), "networks of different structure");
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            zip_layer(a, b, &mut f);
        }
    }

    /// Number of trainable parameters (PyTorch's `sum(p.numel() for p in parameters())`).
    pub fn parameter_count(&self) -> usize {
        let conv = |c: &Conv2d| c.weight.len() + c.bias.as_ref().map_or(0, Vec::len);
        let norm = |n: &BatchNorm2d| n.gamma.len() + n.beta.len();
        self.layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv2d(c) => conv(c),
                Layer::BatchNorm2d(n) => norm(n),
                Layer::Linear(l) => l.len(),
                Layer::BasicBlock(b) => {
                    conv(&b.conv1)
                        + norm(&b.bn1)
                        + conv(&b.conv2)
                        + norm(&b.bn2)
                        + b.shortcut.as_ref().map_or(0, |(c, n)| conv(c) + norm(n))
                }
                Layer::Relu
                | Layer::MaxPool2d(_)
                | Layer::AvgPool2d(_)
                | Layer::GlobalAvgPool
                | Layer::Flatten => 0,
            })
            .sum()
    }
}
