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
mod kind;
mod linear;
mod network;
mod shape;

pub use activation::{LeakyReluKind, NoParams, ReluKind, SigmoidKind, TanhKind};
pub use kind::{lookup, registry, spec_of, LayerEntry, LayerKind};
pub use linear::{LinearKind, LinearParams};
pub use network::{Network, PlannedLayer};
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
}
