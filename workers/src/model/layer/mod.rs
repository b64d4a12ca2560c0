//! Network layers: the registry of layer kinds a network spec names, the shapes flowing
//! between them, and the check that turns a spec's network into the model the engine builds.
//!
//! # Adding a layer kind
//!
//! One file in this folder with the kind's parameter struct (serde, `deny_unknown_fields`;
//! its fields are the recipe's keys) and an implementation of [`LayerKind`] — its name, one
//! line of summary, the shape it maps its input to (an error naming both shapes when the
//! input does not fit), its parameter count, and the [`Part`] it contributes to the built
//! model — one line in [`registry`], and tests of its `output_shape` and `parameters`. A kind
//! the engines cannot compute yet (a convolution before the conv kernels exist) adds a
//! [`Part`] variant, which [`Network::mlp`] refuses until a model computes it.
//!
//! # What the engines compute now
//!
//! Both gradient engines (the fused kernels and the dfdx reference) compute one form: a
//! multi-layer perceptron, i.e. `linear`, activation, `linear`, activation, …, ending in the
//! `linear` output head, with the same activation kind after every hidden `linear`. `hidden:
//! [100, 100]` with `activation: relu` is shorthand for `layers: [{linear: {units: 100}},
//! {relu: {}}, {linear: {units: 100}}, {relu: {}}]`; either way the output head (units = the
//! stream's outputs × heads) is appended. Any other list is refused when the orchestrator
//! plans (`clorch validate`) and again when a worker starts, naming the first layer that
//! breaks the form.

mod activation;
mod architecture;
mod basic_block;
mod batch_norm;
mod conv2d;
mod flatten;
mod kind;
mod linear;
mod network;
mod pool;
mod shape;

pub use activation::{LeakyReluKind, NoParams, ReluKind, SigmoidKind, TanhKind};
pub use architecture::hidden_layers;
pub use basic_block::{BasicBlockKind, BasicBlockParams};
pub use batch_norm::BatchNormKind;
pub use conv2d::{Conv2dKind, Conv2dParams, MAX_KERNEL};
pub use flatten::{FlattenKind, GlobalAvgPoolKind};
pub use kind::{lookup, registry, spec_of, LayerEntry, LayerKind};
pub use linear::{LinearKind, LinearParams};
pub use network::{Network, PlannedLayer};
pub use pool::{AvgPool2dKind, MaxPool2dKind, PoolParams};
pub use shape::Shape;

use crate::protocol::Activation;

/// What a layer contributes to the model the engine builds. Computing engines match on it: a
/// new kind that needs new kernels adds a variant here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A fully connected layer of `units` outputs (weights and biases).
    Linear {
        /// Output units.
        units: usize,
    },
    /// An element-wise non-linearity, without parameters.
    Activation(Activation),
    /// A 2-d convolution of `channels` square `kernel` filters.
    Conv2d {
        /// Output channels.
        channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Step between kernel positions.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
        /// Whether each output channel has a bias.
        bias: bool,
    },
    /// The maximum over square windows of each channel.
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Padding (−∞) on every side.
        padding: usize,
    },
    /// The mean over square windows of each channel, padding zeros counted.
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
        /// Zero padding on every side.
        padding: usize,
    },
    /// Per-channel batch normalisation with a learnt scale and shift.
    BatchNorm,
    /// A ResNet basic block of `channels`, its first convolution striding by `stride`.
    BasicBlock {
        /// Output channels.
        channels: usize,
        /// Stride of the first convolution and the shortcut.
        stride: usize,
        /// Whether the convolutions have biases.
        bias: bool,
    },
    /// The mean of each channel over the image.
    GlobalAvgPool,
    /// An image as one vector.
    Flatten,
}
