//! Encoding and verified decoding of the checkpoint container (layout in the
//! [`checkpoint`](crate::checkpoint) module docs). Tensor bytes are copied in bulk, never
//! through serde, so a 40 MB model encodes in tens of milliseconds. The reader checks, in
//! order: length, magic, version, checksum, header, table; it returns an error — never
//! panics — on any input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::container::{check_name, Checkpoint, Dtype, Shape, Tensor, TensorData};
use super::error::FormatError;

/// The first 8 bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"CLORCHCK";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the trailing BLAKE3 checksum.
pub const CHECKSUM_LEN: usize = 32;

/// Magic, version and header length.
const PREFIX_LEN: usize = 8 + 4 + 8;

#[derive(Serialize)]
struct HeaderOut<'a> {
    meta: &'a serde_json::Value,
    tensors: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    offset: u64,
    length: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    meta: serde_json::Value,
    tensors: Vec<EntryIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    offset: u64,
    length: u64,
}

impl Checkpoint {
    /// Encodes the checkpoint (layout in the [`checkpoint`](crate::checkpoint) module docs);
    /// the last 32 bytes are the BLAKE3 of everything before them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut offset = 0u64;
        let entries: Vec<EntryOut<'_>> = self
            .iter()
            .map(|(name, tensor)| {
                let length = tensor.data().byte_len() as u64;
                let entry =
                    EntryOut { name, dtype: tensor.dtype(), shape: tensor.shape().dims(), offset, length };
                offset += length;
                entry
            })
            .collect();
        let header = HeaderOut { meta: self.meta(), tensors: entries };
        let header = serde_json::to_vec(&header)
            .expect("a serde_json::Value and plain table entries always serialise");
        let data_len = offset as usize;

        let total = PREFIX_LEN + header.len() + data_len + CHECKSUM_LEN;
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for (_, tensor) in self.iter() {
            encode_data(tensor.data(), &mut bytes);
        }
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        debug_assert_eq!(bytes.len(), total);
        bytes
    }

    /// Decodes and verifies a checkpoint (magic, version, checksum, header, tensor table).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
        decode(bytes).map(|(checkpoint, _)| checkpoint)
    }
}

/// The hex BLAKE3 recorded in an encoded checkpoint's trailer (the checksum events and the
/// store quote). Only meaningful for bytes from [`Checkpoint::to_bytes`] or a verified file.
pub(super) fn recorded_checksum_hex(bytes: &[u8]) -> String {
    let trailer = &bytes[bytes.len() - CHECKSUM_LEN..];
    let mut array = [0u8; CHECKSUM_LEN];
    array.copy_from_slice(trailer);
    blake3::Hash::from_bytes(array).to_hex().to_string()
}

/// Decodes a checkpoint and returns it with its verified checksum.
pub(super) fn decode(bytes: &[u8]) -> Result<(Checkpoint, blake3::Hash), FormatError> {
    let min = PREFIX_LEN + CHECKSUM_LEN;
    if bytes.len() < min {
        return Err(FormatError::TooShort { len: bytes.len() as u64, min: min as u64 });
    }
    let magic = &bytes[..8];
    if magic != MAGIC {
        return Err(FormatError::BadMagic { found: magic.escape_ascii().to_string() });
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > FORMAT_VERSION {
        return Err(FormatError::NewerVersion { found: version, supported: FORMAT_VERSION });
    }
    if version < FORMAT_VERSION {
        return Err(FormatError::OlderVersion { found: version, supported: FORMAT_VERSION });
    }

    let (payload, trailer) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let computed = blake3::hash(payload);
    let mut recorded = [0u8; CHECKSUM_LEN];
    recorded.copy_from_slice(trailer);
    let recorded = blake3::Hash::from_bytes(recorded);
    // blake3::Hash's equality is constant-time; that is incidental here.
    if computed != recorded {
        return Err(FormatError::Checksum {
            recorded: recorded.to_hex().to_string(),
            computed: computed.to_hex().to_string(),
        });
    }

    let mut header_len = [0u8; 8];
    header_len.copy_from_slice(&payload[12..20]);
    let header_len = u64::from_le_bytes(header_len);
    let available = (payload.len() - PREFIX_LEN) as u64;
    if header_len > available {
        return Err(FormatError::HeaderLength { header_len, available });
    }
    let header_end = PREFIX_LEN + header_len as usize;
    let header: HeaderIn = serde_json::from_slice(&payload[PREFIX_LEN..header_end])
        .map_err(|e| FormatError::Header { message: e.to_string() })?;
    let data = &payload[header_end..];

    let mut tensors = BTreeMap::new();
    let mut cursor = 0u64;
    for entry in header.tensors {
        let (name, tensor, end) = decode_entry(entry, cursor, data)?;
        if tensors.insert(name.clone(), tensor).is_some() {
            return Err(FormatError::Table { name, problem: "appears twice".into() });
        }
        cursor = end;
    }
    if cursor != data.len() as u64 {
        return Err(FormatError::DataLength { covered: cursor, available: data.len() as u64 });
    }
    Ok((Checkpoint::from_parts(header.meta, tensors), computed))
}

/// Checks one table entry against the running offset and the data section, and decodes it.
fn decode_entry(entry: EntryIn, cursor: u64, data: &[u8]) -> Result<(String, Tensor, u64), FormatError> {
    let name = entry.name;
    let problem = |problem: String| FormatError::Table { name: name.clone(), problem };
    if let Err(e) = check_name(&name) {
        return Err(problem(e.to_string()));
    }
    let dims = entry
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| problem(format!("shape {:?} does not fit this machine", entry.shape)))?;
    let shape = Shape::from(dims);
    let expected = shape
        .elements()
        .and_then(|n| n.checked_mul(entry.dtype.size()))
        .map(|n| n as u64)
        .ok_or_else(|| problem(format!("shape {shape} overflows")))?;
    if entry.length != expected {
        return Err(problem(format!(
            "length {} bytes, but shape {shape} of {} needs {expected}",
            entry.length, entry.dtype
        )));
    }
    if entry.offset != cursor {
        return Err(problem(format!(
            "offset {} where the previous entry ends at {cursor} (entries must be contiguous)",
            entry.offset
        )));
    }
    let end = cursor.checked_add(entry.length).filter(|&end| end <= data.len() as u64).ok_or_else(|| {
        problem(format!(
            "bytes [{cursor}, {cursor} + {}) run past the data section ({} bytes)",
            entry.length,
            data.len()
        ))
    })?;
    let bytes = &data[cursor as usize..end as usize];
    let tensor = Tensor::from_parts(shape, decode_data(entry.dtype, bytes));
    Ok((name, tensor, end))
}

fn encode_data(data: &TensorData, out: &mut Vec<u8>) {
    fn put<const N: usize, T: Copy>(values: &[T], out: &mut Vec<u8>, le: fn(T) -> [u8; N]) {
        let start = out.len();
        out.resize(start + values.len() * N, 0);
        for (chunk, &v) in out[start..].chunks_exact_mut(N).zip(values) {
            chunk.copy_from_slice(&le(v));
        }
    }
    match data {
        TensorData::F32(v) => put(v, out, f32::to_le_bytes),
        TensorData::U32(v) => put(v, out, u32::to_le_bytes),
        TensorData::U64(v) => put(v, out, u64::to_le_bytes),
        TensorData::U8(v) => out.extend_from_slice(v),
    }
}

/// `bytes.len()` is a multiple of the dtype's size (checked by the caller).
fn decode_data(dtype: Dtype, bytes: &[u8]) -> TensorData {
    fn get<const N: usize, T>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|chunk| {
                let mut array = [0u8; N];
                array.copy_from_slice(chunk);
                from_le(array)
            })
            .collect()
    }
    match dtype {
        Dtype::F32 => TensorData::F32(get(bytes, f32::from_le_bytes)),
        Dtype::U32 => TensorData::U32(get(bytes, u32::from_le_bytes)),
        Dtype::U64 => TensorData::U64(get(bytes, u64::from_le_bytes)),
        Dtype::U8 => TensorData::U8(bytes.to_vec()),
    }
}
