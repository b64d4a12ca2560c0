//! The data sets clorch's streams read, and `clorch data download`: fetched from their
//! publishers (or a local mirror), resumed after a cut transfer, verified against pinned
//! SHA-256 checksums, and laid out in the folder a recipe's `data_dir` points at.
//!
//! [`catalogue`] says what exists and where; [`download`] moves one file over HTTP(S);
//! [`unpack`] opens tar.gz archives without letting them write outside their folder;
//! [`install`](mod@install) puts a whole data set in place, never over files clorch did not write.

pub mod catalogue;
pub mod download;
pub mod install;
mod sha256;
pub mod unpack;

pub use catalogue::{Dataset, RemoteFile, Source, Unpack};
pub use download::{DownloadError, Downloader};
pub use install::{install, InstallError, Installed};
pub use unpack::UnpackError;

/// What a download is doing, for a progress display; `file` is the published file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A transfer begins at byte `offset` (non-zero when a partial download is resumed);
    /// `total` is the file's size when the server or the catalogue says it.
    Transfer { file: &'a str, url: &'a str, offset: u64, total: Option<u64> },
    /// `done` bytes of the file are on disk.
    Bytes { file: &'a str, done: u64 },
    /// The complete file's SHA-256 is being computed.
    Verifying { file: &'a str },
    /// The verified file was already there from an earlier, interrupted run.
    Reused { file: &'a str },
    /// A verified archive is being unpacked.
    Unpacking { file: &'a str },
}
