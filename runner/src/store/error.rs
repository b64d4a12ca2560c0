//! Errors of the store and of the run folders it is rebuilt from.
//!
//! Opening a store can fail in ways that call for different remedies, so each is its own
//! variant: [`StoreError::Locked`] (another `clorch` process holds the experiment — wait or stop
//! it), [`StoreError::Corrupt`] (rebuild the store from the run folders),
//! [`StoreError::WrongFormat`] (use the clorch version that wrote it, or rebuild) and
//! [`StoreError::Io`] (permissions, disk full).

use std::path::PathBuf;

/// Everything that can go wrong in the store or while reading run folders.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open. sled allows one process per store; for clorch that
    /// process is the orchestrator of a `clorch run` on the same experiment.
    #[error(
        "the store at {path} is in use by another process (is a `clorch run` of this experiment \
         still going?): {detail}"
    )]
    Locked {
        /// The store folder.
        path: PathBuf,
        /// The lock error as the operating system reported it.
        detail: String,
    },
    /// The store's files are damaged. The run folders are the source of truth: rebuild the
    /// store from them.
    #[error("the store at {path} is corrupt ({detail}); rebuild it from the run folders")]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// What the storage engine found.
        detail: String,
    },
    /// The store was written by a clorch with another store format.
    #[error(
        "the store at {path} has format version {found}, but this clorch reads version \
         {expected}; use the clorch that wrote it, or rebuild the store from the run folders"
    )]
    WrongFormat {
        /// The store folder.
        path: PathBuf,
        /// The version found in the store.
        found: u32,
        /// [`super::STORE_FORMAT`].
        expected: u32,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The storage engine failed in a way that is neither I/O nor corruption (an engine bug or
    /// an unsupported configuration).
    #[error("the store at {path} failed: {detail}")]
    Engine {
        /// The store folder, or `<temporary>`.
        path: PathBuf,
        /// The engine's message.
        detail: String,
    },
    /// A record in the store does not decode: it was written by another format or damaged.
    #[error("the store's {what} does not decode: {source}")]
    Decode {
        /// Which record (`run 3f9a…`, `event 3f9a…#12`, `experiment metadata`).
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An event arrived whose `(run, seq)` is stored with different content. Events are
    /// deterministic, so this means a resumed worker diverged from its first attempt or the
    /// store was not truncated before the resume.
    #[error(
        "event {seq} of run {run} differs from the one already stored under that number \
         (a resumed worker must re-emit identical events; truncate the run's events first)"
    )]
    EventConflict {
        /// The run id.
        run: String,
        /// The sequence number.
        seq: u64,
    },
    /// A run id that cannot be a key (empty, or containing a NUL byte, which separates the id
    /// from the sequence number in event keys).
    #[error("invalid run id {id:?}: run ids are non-empty and contain no NUL byte")]
    InvalidRunId {
        /// The id.
        id: String,
    },
    /// A file of the results folder could not be read or written, or does not hold what it
    /// should.
    #[error(transparent)]
    Folder(#[from] results::FolderError),
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), source }
    }

    pub(crate) fn bad_file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::Folder(results::FolderError::bad_file(file, reason))
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
