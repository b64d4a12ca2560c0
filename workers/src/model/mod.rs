//! The learner's network and its two gradient engines. The only module that names dfdx.

pub mod activation;
mod autograd;
pub mod conv;
pub mod convnet;
pub mod fused;
pub mod layer;
pub mod loss;
mod mlp;
mod parameters;
pub mod threads;

pub use autograd::Autograd;
pub use fused::Workspace;
pub use loss::{BatchLoss, Targets};
pub use mlp::{init_bound, Layers, Linear, Mlp};
pub use parameters::{NamedTensor, Parameters};

/// Makes the CPU flush denormal floats to zero. Denormal arithmetic is two orders of magnitude
/// slower and appears as weights decay towards zero; no result that matters depends on it.
pub fn flush_denormals() {
    dfdx::flush_denormals_to_zero();
}
