//! The experiment's store: what the orchestrator knows about an experiment and its runs, and
//! every event the workers emitted. The only module that names sled.
//!
//! # Layout
//!
//! One store per experiment, at `<results dir>/store/`: a sled 0.34 database opened by the
//! orchestrator process only (sled locks the database file: one process at a time). Values
//! are JSON bytes.
//!
//! | tree     | key                                         | value                          |
//! |----------|---------------------------------------------|--------------------------------|
//! | `meta`   | `format`                                    | [`STORE_FORMAT`] (JSON number) |
//! | `meta`   | `experiment`                                | [`ExperimentMeta`]             |
//! | `runs`   | run id (UTF-8)                              | [`RunRecord`]                  |
//! | `events` | run id, `0x00`, seq as u64 big-endian       | the [`Event`](workers::protocol::Event) as on the wire |
//!
//! Big-endian sequence numbers make a run's events one ordered key range, so reading them
//! back in order, finding the last one and truncating after a checkpoint are range scans. An
//! event's key is its identity (`(run, seq)` names its content, see `workers::protocol`), so
//! ingesting it twice changes nothing.
//!
//! The format version is checked on open; a store of another version is refused with
//! [`StoreError::WrongFormat`].
//!
//! # Source of truth
//!
//! sled 0.34 can lose its last writes after an abrupt stop, so the results folder — not the
//! store — is the source of truth (layout in [`folder`]): each run folder has `run.json` (the
//! record as the orchestrator last saved it, replaced atomically), `spec.json` and the
//! worker's `events.jsonl`; the results folder has `recipe.yaml` and `experiment.json`.
//! [`rebuild`] recreates a store from them, into a fresh store or a [`Store::temporary`] one
//! (when the real store is locked by a running `clorch run`, or corrupt).
//!
//! # Error kinds on open (sled 0.34.7)
//!
//! * Another process (or another handle in this process) has the store open: sled's `flock`
//!   fails with `EWOULDBLOCK` and sled returns `Error::Io` of kind `Other` with the message
//!   `could not acquire lock on "<store>/db": Os { code: 11, kind: WouldBlock, … }` →
//!   [`StoreError::Locked`].
//! * sled finds damaged data (a malformed `conf`, an inconsistent snapshot or log) and
//!   returns `Error::Corruption` → [`StoreError::Corrupt`]: rebuild.
//! * sled does **not** report damage to its log segments: a record whose checksum fails is
//!   taken for the torn tail of an abrupt stop, and the store opens with what came before it
//!   (with the first segment damaged, an empty store that looks new). [`drift`] compares the
//!   store with the run folders cheaply to notice such a loss.
//! * Another store format → [`StoreError::WrongFormat`]; other I/O → [`StoreError::Io`].

mod db;
mod error;
pub mod folder;
mod rebuild;
mod record;

pub use db::{EventBytes, Ingested, Store};
pub use error::{Result, StoreError};
pub use folder::{
    read_events_file, read_experiment_files, read_run_record, read_run_spec, run_dir, write_experiment_files,
    write_run_record, write_run_spec, EventsFileSummary,
};
pub use rebuild::{drift, rebuild, Drift, RebuildSummary};
pub use record::{
    recipe_hash, unix_now, CheckpointRef, ExperimentMeta, Failure, Progress, RunLabels, RunRecord, RunStatus,
    RunTimes,
};

/// Version of the store's layout and record encoding. Bump it when a change makes old stores
/// unreadable; old stores are then rebuilt from their run folders.
pub const STORE_FORMAT: u32 = 1;

/// The store's folder inside a results folder.
pub const STORE_DIR: &str = "store";

#[cfg(test)]
pub(crate) use record::tests::record as record_for_tests;
