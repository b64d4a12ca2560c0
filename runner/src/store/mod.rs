//! The experiment's store: what the orchestrator knows about an experiment and its runs, and
//! every event the workers emitted. The only module that names sled. It is the report's
//! [`RunSource`](results::RunSource) (see `source.rs`); the records and the results folder's
//! files it is rebuilt from are the `results` crate's.
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
//! | `events` | run id, `0x00`, seq as u64 big-endian       | the [`Event`](protocol::Event) as on the wire |
//!
//! Big-endian sequence numbers make a run's events one ordered key range, so reading them
//! back in order, finding the last one and truncating after a checkpoint are range scans. An
//! event's key is its identity (`(run, seq)` names its content, see `protocol`), so
//! ingesting it twice changes nothing.
//!
//! The format version is checked on open; a store of another version is refused with
//! [`StoreError::WrongFormat`].
//!
//! # Source of truth
//!
//! sled 0.34 can lose its last writes after an abrupt stop, so the results folder — not the
//! store — is the source of truth (layout in [`results::folder`]): each run folder has `run.json` (the
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

mod blocks;
mod db;
mod error;
mod open;
mod rebuild;
mod source;

pub use db::{EventBytes, Ingested, Store};
pub use error::{Result, StoreError};
pub use open::{open_for_reading, open_for_writing, Repairs};
pub use rebuild::{drift, rebuild, Drift, RebuildSummary};
pub use results::folder;
pub use results::{
    read_events_file, read_experiment_files, read_run_record, read_run_spec, recipe_hash, run_dir, unix_now,
    write_experiment_files, write_run_record, write_run_spec, CheckpointRef, EventsFileSummary,
    ExperimentMeta, Failure, Progress, RunLabels, RunRecord, RunStatus, RunTimes, STORE_FORMAT,
};

/// The store's folder inside a results folder.
pub const STORE_DIR: &str = "store";
