//! Checkpoints: everything a run needs to resume bit-exactly after a crash, in one verified
//! file.
//!
//! A [`Checkpoint`] is a JSON metadata value (position in the stream, RNG states, counters)
//! plus named f32/u32/u64/u8 tensors (parameters, optimiser moments, method state). It
//! encodes with [`Checkpoint::to_bytes`] into the container below, is written durably with
//! [`Checkpoint::write_atomic`], and a run folder's checkpoints are managed with [`list`],
//! [`prune`] and [`newest_valid`].
//!
//! # File layout (format version 1)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "CLORCHCK"
//! 8       4     format version, u32 little-endian (1)
//! 12      8     header length H, u64 little-endian
//! 20      H     header, UTF-8 JSON:
//!               {"meta": <any JSON>,
//!                "tensors": [{"name", "dtype": "f32"|"u32"|"u64"|"u8",
//!                             "shape": [dims], "offset", "length"}, …]}
//! 20+H    D     tensor bytes, little-endian, row-major; entry i occupies
//!               [offset_i, offset_i + length_i) of this section (offsets and lengths in bytes)
//! 20+H+D  32    BLAKE3 of bytes [0, 20+H+D)
//! ```
//!
//! The writer lists tensors in name order, back to back from offset 0, so equal checkpoints
//! encode to equal bytes; the reader insists on exactly that layout (contiguous entries in
//! table order covering the whole section), which leaves garbage no room to hide. A file
//! from another format version is refused with an error that says whether it is newer or
//! older.

mod container;
mod error;
mod folder;
mod format;

pub use container::{Checkpoint, Dtype, Element, Shape, Tensor, TensorData, MAX_NAME_LEN};
pub use error::{CheckpointError, FormatError};
pub use folder::{
    file_name, list, newest_valid, newest_valid_where, parse_index, prune, CheckpointFile, Refusal,
    RejectedCheckpoint, Resume, ValidCheckpoint,
};
pub use format::{CHECKSUM_LEN, FORMAT_VERSION, MAGIC};

#[cfg(test)]
mod tests;
