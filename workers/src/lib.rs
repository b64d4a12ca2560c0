//! The clorch worker engine: everything that happens inside one continual-learning run.
//!
//! A run reads a [`protocol::RunSpec`], builds its task stream, network and continual method,
//! trains through the stream, and emits [`protocol::Event`]s. The orchestrator depends on
//! [`protocol`] only; the model code is the one place that names dfdx.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod engine;
pub mod method;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod rng;
pub mod stream;

/// The wire format, its own crate so the orchestrator can read it without the engine;
/// re-exported so `crate::protocol::…` paths keep naming it.
pub use protocol;
