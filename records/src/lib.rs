//! An experiment's results as files and records: the run records the orchestrator keeps
//! ([`RunRecord`], [`ExperimentMeta`]), the results folder they are written to ([`folder`]),
//! and [`RunSource`], what a report reads.
//!
//! Both the runner (which writes results) and the report (which reads them) depend on this
//! crate and on nothing of each other: it has no database, no async runtime and no data frames.
#![warn(missing_docs)]

mod error;
pub mod folder;
pub mod invocation;
pub mod log;
mod record;
mod source;

#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;

pub use error::{FolderError, Result};
pub use folder::{
    inspect_folder, read_events_file, read_experiment_files, read_run_record, read_run_spec, run_dir,
    write_experiment_files, write_run_record, write_run_spec, EventsFileSummary, FolderState,
};
pub use invocation::{append_invocation, read_invocations, Invocation};
pub use record::{
    recipe_hash, unix_now, CheckpointFallback, CheckpointRef, ExperimentMeta, Failure, Progress,
    RejectedCheckpoint, RunLabels, RunRecord, RunStatus, RunTimes,
};
pub use source::{EventVisitor, RunSource, SourceError};

/// Version of the store's layout and record encoding, recorded in [`ExperimentMeta`]. Bump it
/// when a change makes old stores unreadable; old stores are then rebuilt from their run
/// folders.
/// Format 2 stores events in blocks of 64 per sled entry (format 1: one entry per event).
pub const STORE_FORMAT: u32 = 2;
