//! The contract between clorch's orchestrator and its workers — everything the two sides agree
//! on, and nothing else: no training code, no scheduler, no store.
//!
//! A worker (the built-in `clorch worker`, or any program in any language) is started with a
//! run folder holding [`files::SPEC`], a [`RunSpec`] as JSON. It writes [`Event`]s, one JSON
//! object per line sealed with a checksum ([`mod@line`]), to its standard output and to
//! [`files::EVENTS`]; [`heartbeat`] lines to its standard error; it checkpoints and exits when [`control`] asks it to; and its exit status
//! is one of [`exit`]'s. `docs/protocol.md` in the repository is the prose version of this
//! crate (how a worker is started, every event with an example, checkpoints and resume, what
//! the orchestrator does with each exit code), and `docs/schemas/*.json` are JSON Schemas
//! generated from these types ([`schema`]): the one source a worker in another language is
//! written from. Tests keep both in step with the types.
//!
//! # Versions
//!
//! [`PROTOCOL_VERSION`] is in every spec and in the `started` event. A worker refuses a spec of
//! another version; fields added later are optional and skipped when absent, so old run
//! folders keep their ids and bytes.

#![warn(missing_docs)]

pub mod control;
pub mod describe;
mod event;
pub mod exit;
pub mod files;
pub mod heartbeat;
mod layer;
pub mod line;
pub mod memory;
pub mod payload;
pub mod resume;
pub mod schema;
mod spec;
pub mod stream;

pub use event::{Event, EventBody, LayerPlasticity};
pub use layer::LayerSpec;
pub use payload::MethodPayload;
pub use spec::{
    Activation, Architecture, CheckpointSpec, Engine, EvalSpec, EvalTasks, Heads, MethodSpec, NetworkSpec,
    PlasticitySpec, RunSpec, TrainingSpec, WorkerCommand, MAX_THREADS,
};
pub use stream::{Params, StreamSpec};

/// Version of the [`RunSpec`] / [`Event`] format. A worker refuses specs of another version.
pub const PROTOCOL_VERSION: u32 = 1;
