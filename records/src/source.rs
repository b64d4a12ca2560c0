//! What a report reads: one experiment's metadata, its run records and each run's stored
//! events.
//!
//! The report builds tables and figures from these three and nothing else, so it depends on
//! this trait rather than on the store that implements it (sled, in the runner): reports then
//! build without the runner's database and async runtime, and their tests can feed them any
//! source.

use std::path::Path;

use crate::record::{ExperimentMeta, RunRecord};

/// What can go wrong reading a [`RunSource`]: the source itself fails (its own error, shown as
/// it is), or a stored record does not decode.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source failed to read (its own error type, e.g. the runner's `StoreError`).
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
    /// A stored record does not decode: it was written by another format or damaged.
    #[error("the store's {what} does not decode: {source}")]
    Decode {
        /// Which record (`event 3f9a…#12`).
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl SourceError {
    /// Wraps a source's own error.
    pub fn read(error: impl std::error::Error + Send + Sync + 'static) -> SourceError {
        SourceError::Read(Box::new(error))
    }
}

/// What [`RunSource::visit_events`] hands each event to: its sequence number and its stored
/// JSON bytes; an error stops the visit.
pub type EventVisitor<'a> = dyn FnMut(u64, &[u8]) -> Result<(), SourceError> + 'a;

/// One experiment's stored results, as a report reads them. `Sync` because a report summarises
/// runs on several threads.
pub trait RunSource: Sync {
    /// The experiment's results folder, or `None` for a source that has none (a temporary
    /// store).
    fn results_dir(&self) -> Option<&Path>;

    /// The experiment's metadata, if it has been written.
    fn experiment(&self) -> Result<Option<ExperimentMeta>, SourceError>;

    /// Every run record, in the recipe's expansion order (`order`, then id).
    fn runs(&self) -> Result<Vec<RunRecord>, SourceError>;

    /// Hands each stored event of run `run` to `visit` in sequence order, as its sequence
    /// number and its JSON bytes exactly as stored (undecoded: a report decodes only the fields
    /// it needs, which is most of its speed). Stops at the first error, of the source or of
    /// `visit`.
    fn visit_events(&self, run: &str, visit: &mut EventVisitor<'_>) -> Result<(), SourceError>;
}
