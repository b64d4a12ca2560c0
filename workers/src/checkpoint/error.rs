//! Why a checkpoint cannot be built, read, written or found.

use std::io;
use std::path::PathBuf;

use super::container::{Dtype, Shape};

/// What is wrong with the bytes of a checkpoint (no file context: see
/// [`CheckpointError::Invalid`], which adds the path).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Shorter than the fixed parts of the format.
    #[error(
        "{len} bytes is too short for a checkpoint (at least {min}: magic, version, header \
         length and checksum); torn write?"
    )]
    TooShort {
        /// Bytes present.
        len: u64,
        /// Bytes the fixed parts need.
        min: u64,
    },
    /// The first 8 bytes are not `CLORCHCK`.
    #[error("not a clorch checkpoint: the file starts with {found:?}, not \"CLORCHCK\"")]
    BadMagic {
        /// The first 8 bytes, escaped.
        found: String,
    },
    /// Written by a newer clorch.
    #[error(
        "checkpoint format version {found} is newer than this clorch reads (version \
         {supported}); resume it with the clorch that wrote it"
    )]
    NewerVersion {
        /// Version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Written by an older clorch whose format this build no longer reads.
    #[error(
        "checkpoint format version {found} is older than this clorch reads (version \
         {supported}); resume it with the clorch that wrote it, or restart the run"
    )]
    OlderVersion {
        /// Version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The trailing BLAKE3 does not match the contents.
    #[error(
        "checksum mismatch: the file records BLAKE3 {recorded} but its contents hash to \
         {computed} (torn write or corruption?)"
    )]
    Checksum {
        /// The checksum stored in the last 32 bytes, hex.
        recorded: String,
        /// The checksum of everything before it, hex.
        computed: String,
    },
    /// The header length field points past the data.
    #[error("the header length {header_len} runs past the end of the file ({available} bytes left)")]
    HeaderLength {
        /// The header length field.
        header_len: u64,
        /// Bytes between the fixed prefix and the checksum.
        available: u64,
    },
    /// The header is not JSON of the expected form.
    #[error("the header is not valid: {message}")]
    Header {
        /// serde_json's message (names the field and position).
        message: String,
    },
    /// An entry of the tensor table is inconsistent.
    #[error("tensor table entry `{name}`: {problem}")]
    Table {
        /// The tensor's name as recorded.
        name: String,
        /// What is inconsistent.
        problem: String,
    },
    /// The tensor table does not account for every data byte.
    #[error("the tensor table covers {covered} bytes but the data section holds {available}")]
    DataLength {
        /// Bytes the table describes.
        covered: u64,
        /// Bytes in the data section.
        available: u64,
    },
}

impl FormatError {
    /// A few words for tables (`clorch status`): what is wrong, without the numbers.
    pub fn summary(&self) -> &'static str {
        match self {
            FormatError::TooShort { .. } => "too short (torn write?)",
            FormatError::BadMagic { .. } => "not a checkpoint",
            FormatError::NewerVersion { .. } => "newer format version",
            FormatError::OlderVersion { .. } => "older format version",
            FormatError::Checksum { .. } => "checksum mismatch",
            FormatError::HeaderLength { .. } | FormatError::Header { .. } => "bad header",
            FormatError::Table { .. } | FormatError::DataLength { .. } => "bad tensor table",
        }
    }
}

/// Every way building, reading or writing checkpoints can fail.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A checkpoint file failed verification.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// A file-system operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done ("create", "rename into place", …).
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint that verifies but that its reader does not accept: another run's (its
    /// spec differs), run state this worker cannot use, or events it covers that are
    /// damaged. Skipped like a corrupt one.
    #[error("{}: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// A few words for tables (`another run's`, `events.jsonl damaged`).
        summary: &'static str,
        /// Why it is not accepted.
        reason: String,
    },
    /// A file name given to [`super::Checkpoint::write_atomic`] is not a plain file name.
    #[error("invalid checkpoint file name {name:?}: {reason}")]
    InvalidFileName {
        /// The name given.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// No tensor of that name.
    #[error("the checkpoint has no tensor named `{name}`")]
    MissingTensor {
        /// The name asked for.
        name: String,
    },
    /// The tensor exists with another element type.
    #[error("tensor `{name}` holds {found} values, not {expected}")]
    WrongDtype {
        /// The tensor.
        name: String,
        /// The type asked for.
        expected: Dtype,
        /// The type stored.
        found: Dtype,
    },
    /// The tensor exists with another shape.
    #[error("tensor `{name}` has shape {found}, not the expected {expected}")]
    WrongShape {
        /// The tensor.
        name: String,
        /// The shape asked for.
        expected: Shape,
        /// The shape stored.
        found: Shape,
    },
    /// The data given to a `put` does not fill its shape.
    #[error("tensor `{name}`: shape {shape} holds {expected} values but {len} were given")]
    LengthMismatch {
        /// The tensor.
        name: String,
        /// The shape given.
        shape: Shape,
        /// Elements the shape holds (saturating at `usize::MAX`).
        expected: usize,
        /// Elements given.
        len: usize,
    },
    /// Two tensors with one name: a bug in whoever assembles the checkpoint.
    #[error("tensor `{name}` is already in the checkpoint")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor name that the hierarchical naming scheme rejects.
    #[error("invalid tensor name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
}

impl CheckpointError {
    /// A few words for tables (`clorch status`): `checksum mismatch`, `unreadable`, …
    pub fn summary(&self) -> &'static str {
        match self {
            CheckpointError::Invalid { source, .. } => source.summary(),
            CheckpointError::Io { .. } => "unreadable",
            CheckpointError::Refused { summary, .. } => summary,
            _ => "invalid",
        }
    }

    /// The message without the file's path in front (for a file named next to it).
    pub fn without_path(&self) -> String {
        match self {
            CheckpointError::Invalid { source, .. } => source.to_string(),
            CheckpointError::Io { action, source, .. } => format!("cannot {action}: {source}"),
            CheckpointError::Refused { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}
