//! The clorch runner: recipes in, runs planned, scheduled onto executors (local worker
//! processes or SLURM jobs), their events stored.
//!
//! It knows the worker engine only through [`WorkerSide`], which the binary supplies, and the
//! wire format through `protocol`; it writes the results that the report reads through
//! `results::RunSource`, and builds neither figures nor tables.
#![warn(missing_docs)]

pub mod budget;
pub mod columns;
pub mod executor;
pub mod external;
pub mod lock;
pub mod plan;
pub mod recipe;
pub mod scheduler;
pub mod status;
pub mod store;
mod worker_side;

pub use worker_side::{ResumePoint, WorkerSide};
