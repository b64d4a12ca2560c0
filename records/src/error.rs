//! Errors of reading and writing the files of a results folder.
//!
//! The store's own errors (locks, damaged databases) are the runner's; these are the ones any
//! reader of the folder meets, so they live with the folder's layout.

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a results folder's files.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file of a run folder or of the results folder does not hold what it should.
    #[error("{file}: {reason}")]
    BadFile {
        /// The file.
        file: PathBuf,
        /// What is wrong, naming the field where possible.
        reason: String,
    },
    /// A line of an `events.jsonl` other than a truncated last line is not a valid event.
    #[error("{file}:{line}: corrupt event line: {reason}")]
    CorruptEventLine {
        /// The `events.jsonl` file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Why the line is invalid.
        reason: String,
    },
}

impl FolderError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FolderError::Io { path: path.into(), source }
    }

    /// A file that does not hold what it should.
    pub fn bad_file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        FolderError::BadFile { file: file.into(), reason: reason.into() }
    }
}

/// The folder's result type.
pub type Result<T, E = FolderError> = std::result::Result<T, E>;
