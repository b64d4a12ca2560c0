//! The IDX file format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number `00 00 TT NN` — two zero bytes, the data type `TT`
//! (0x08: unsigned bytes, the only type these datasets use) and the number of dimensions `NN`
//! — followed by `NN` big-endian u32 sizes and then the data, row-major, with nothing after
//! it. MNIST labels are `0x00000801` (one dimension: the count), images `0x00000803` (count ×
//! rows × columns). Gzip is recognised by its magic bytes `1f 8b`, not by the file name, so a
//! decompressed file that kept its `.gz` name still reads.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::StreamError;

/// The IDX data type code of unsigned bytes.
const UNSIGNED_BYTE: u8 = 0x08;

/// Dimensions above this are certainly a corrupt header (no dataset has 2^8 axes).
const MAX_DIMS: u8 = 16;

/// The header of an IDX file: its shape, before any data is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxHeader {
    /// The file the header was read from.
    pub path: PathBuf,
    /// Sizes of the dimensions, outermost first (for MNIST images: count, rows, columns).
    pub dims: Vec<usize>,
    /// Whether the file is gzip-compressed.
    pub gzip: bool,
}

impl IdxHeader {
    /// The magic number, `0x0000_08NN` with `NN` the number of dimensions.
    pub fn magic(&self) -> u32 {
        0x0800 | self.dims.len() as u32
    }

    /// Number of data bytes the header announces: the product of the dimensions.
    pub fn payload_len(&self) -> usize {
        // `read_header` has checked that the product fits.
        self.dims.iter().product()
    }

    /// Bytes of the header itself: 4 for the magic number and 4 per dimension.
    pub fn header_len(&self) -> usize {
        4 + 4 * self.dims.len()
    }
}

/// An IDX file's contents: its dimensions and its bytes, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes of the dimensions, outermost first.
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes, row-major.
    pub data: Vec<u8>,
}

fn data_error(path: &Path, reason: impl Into<String>) -> StreamError {
    StreamError::Data { path: path.to_path_buf(), reason: reason.into() }
}

/// Opens `path` for reading, decompressing when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool), StreamError> {
    let file = File::open(path).map_err(|e| data_error(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut reader, &mut magic).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    let gzip = n == 2 && magic == [0x1f, 0x8b];
    // Put the two peeked bytes back in front of the rest.
    let rest = std::io::Cursor::new(magic[..n].to_vec()).chain(reader);
    Ok(if gzip { (Box::new(MultiGzDecoder::new(rest)), true) } else { (Box::new(rest), false) })
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn read_error(path: &Path, gzip: bool, e: std::io::Error) -> StreamError {
    if gzip {
        data_error(path, format!("gzip data cannot be decompressed: {e}"))
    } else {
        data_error(path, format!("cannot read: {e}"))
    }
}

/// Reads and checks the magic number and dimensions from the start of `reader`.
fn read_header(path: &Path, reader: &mut dyn Read, gzip: bool) -> Result<IdxHeader, StreamError> {
    let mut magic = [0u8; 4];
    let n = read_up_to(reader, &mut magic).map_err(|e| read_error(path, gzip, e))?;
    if n < 4 {
        return Err(data_error(
            path,
            format!("not an IDX file: {n} bytes, shorter than the 4-byte magic number"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(data_error(
            path,
            format!(
                "not an IDX file: magic number 0x{:08X}, expected 0x000008NN (e.g. 0x00000801 \
                 for labels, 0x00000803 for images)",
                u32::from_be_bytes(magic)
            ),
        ));
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(data_error(
            path,
            format!("IDX data type 0x{:02X}, expected 0x08 (unsigned bytes, as in MNIST)", magic[2]),
        ));
    }
    let ndims = magic[3];
    if ndims == 0 || ndims > MAX_DIMS {
        return Err(data_error(
            path,
            format!("IDX header declares {ndims} dimensions, expected 1 to {MAX_DIMS}"),
        ));
    }
    let mut sizes = vec![0u8; 4 * ndims as usize];
    let n = read_up_to(reader, &mut sizes).map_err(|e| read_error(path, gzip, e))?;
    if n < sizes.len() {
        return Err(data_error(
            path,
            format!("truncated IDX header: {ndims} dimensions need {} size bytes, found {n}", sizes.len()),
        ));
    }
    let dims: Vec<usize> =
        sizes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
        return Err(data_error(path, format!("IDX dimensions {dims:?} overflow the address space")));
    }
    Ok(IdxHeader { path: path.to_path_buf(), dims, gzip })
}

/// Reads only the header of an IDX file: cheap (a few bytes, also for gzip files), so recipe
/// validation can check shapes without loading data. For an uncompressed file the file size
/// is also compared with the size the header announces; a gzip file's payload is checked when
/// it is read with [`read_idx`].
pub fn read_idx_header(path: &Path) -> Result<IdxHeader, StreamError> {
    let (mut reader, gzip) = open(path)?;
    let header = read_header(path, &mut reader, gzip)?;
    if !gzip {
        let size = std::fs::metadata(path)
            .map_err(|e| data_error(path, format!("cannot read file size: {e}")))?
            .len();
        let expected = (header.header_len() + header.payload_len()) as u64;
        if size != expected {
            return Err(size_error(&header, size.saturating_sub(header.header_len() as u64), false));
        }
    }
    Ok(header)
}

/// The error for a payload of `found` bytes where the header announced another size;
/// `at_least` when reading stopped early, so `found` is a lower bound.
fn size_error(header: &IdxHeader, found: u64, at_least: bool) -> StreamError {
    let expected = header.payload_len() as u64;
    let what = if found < expected { "truncated" } else { "trailing bytes" };
    let dims = header.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" × ");
    data_error(
        &header.path,
        format!(
            "{what}: header announces {dims} = {expected} data bytes{}, found {}{found}",
            if header.gzip { " (after decompression)" } else { "" },
            if at_least { "at least " } else { "" }
        ),
    )
}

/// Trailing bytes counted exactly for an error message; past this many the message gives a
/// lower bound, so a file that holds far more than its header says (a gzip "bomb") is
/// refused without decompressing all of it.
const TRAILING_COUNT_LIMIT: u64 = 1 << 20;

/// Reads exactly the payload the header announces from `reader` — kept when `keep`, else
/// decompressed and discarded while counted — and checks that the input ends there. Never
/// reads more than [`TRAILING_COUNT_LIMIT`] bytes past the announced size, and never holds
/// more than the announced size in memory: the buffer grows with the data, capped at the
/// announced size, so a corrupt header reserves nothing the data has not proved.
fn read_payload(header: &IdxHeader, reader: &mut dyn Read, keep: bool) -> Result<Vec<u8>, StreamError> {
    let (path, gzip) = (header.path.as_path(), header.gzip);
    let expected = header.payload_len();
    let mut data = Vec::new();
    let mut payload = reader.take(expected as u64);
    let got = if keep {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = read_up_to(&mut payload, &mut chunk).map_err(|e| read_error(path, gzip, e))?;
            if n == 0 {
                break;
            }
            if data.len() + n > data.capacity() {
                // Double, but never past the announced size (`take` keeps len + n within it).
                let want = (data.capacity() * 2).max(data.len() + n).min(expected);
                data.reserve_exact(want - data.len());
            }
            data.extend_from_slice(&chunk[..n]);
        }
        data.len() as u64
    } else {
        std::io::copy(&mut payload, &mut std::io::sink()).map_err(|e| read_error(path, gzip, e))?
    };
    if got < expected as u64 {
        return Err(size_error(header, got, false));
    }
    // Reading on to the end also makes the gzip decoder check its CRC and length trailer.
    let extra = std::io::copy(&mut reader.take(TRAILING_COUNT_LIMIT), &mut std::io::sink())
        .map_err(|e| read_error(path, gzip, e))?;
    if extra > 0 {
        return Err(size_error(header, expected as u64 + extra, extra == TRAILING_COUNT_LIMIT));
    }
    Ok(data)
}

/// Checks a whole IDX file without keeping its data: the header as [`read_idx_header`] does,
/// and for a gzip file also that the payload decompresses (checksum included) to exactly the
/// announced size. Costs one decompression, bounded by the header's size, in constant memory
/// — so recipe validation finds a corrupt download before any run starts.
pub fn verify_idx(path: &Path) -> Result<IdxHeader, StreamError> {
    let (mut reader, gzip) = open(path)?;
    let header = read_header(path, &mut reader, gzip)?;
    if gzip {
        read_payload(&header, &mut reader, false)?;
        Ok(header)
    } else {
        read_idx_header(path)
    }
}

/// Reads an IDX file of unsigned bytes, raw or gzip-compressed.
///
/// Checks the magic number (two zero bytes, then data type 0x08, then 1 to 16 dimensions),
/// and that the data is exactly as long as the product of the dimensions — neither
/// truncated nor followed by trailing bytes. Decompressed data is capped by the size the
/// header declares (read through `Read::take`, never more). Errors name the file and say what was expected
/// and what was found.
pub fn read_idx(path: &Path) -> Result<IdxArray, StreamError> {
    let (mut reader, gzip) = open(path)?;
    let header = read_header(path, &mut reader, gzip)?;
    let data = read_payload(&header, &mut reader, true)?;
    Ok(IdxArray { dims: header.dims, data })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// The bytes of an IDX file of unsigned bytes with `dims` and `data`.
    pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, UNSIGNED_BYTE, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn message(r: Result<IdxArray, StreamError>) -> String {
        r.expect_err("the file should have been rejected").to_string()
    }

    #[test]
    fn reads_raw_and_gzip_files_alike() {
        let dir = test_support::scratch("idx-good");
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8 * 7).collect();
        let bytes = idx_bytes(&[2, 3, 4], &data);
        std::fs::write(dir.path().join("raw"), &bytes).unwrap();
        // Named without `.gz` on purpose: gzip is detected by content.
        std::fs::write(dir.path().join("compressed"), gzip(&bytes)).unwrap();
        for name in ["raw", "compressed"] {
            let a = read_idx(&dir.path().join(name)).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
            let h = read_idx_header(&dir.path().join(name)).unwrap();
            assert_eq!(h.dims, vec![2, 3, 4]);
            assert_eq!(h.magic(), 0x0803);
            assert_eq!(h.gzip, name == "compressed");
        }
    }

    #[test]
    fn reads_a_full_size_mnist_training_file() {
        // 60,000 × 28 × 28 = 47,040,000 bytes, the size of the full MNIST training images.
        let dir = test_support::scratch("idx-full");
        let data: Vec<u8> = (0..60_000 * 784).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), idx_bytes(&[60_000, 28, 28], &data))
            .unwrap();
        let a = read_idx(&dir.path().join("train-images-idx3-ubyte")).unwrap();
        assert_eq!(a.dims, vec![60_000, 28, 28]);
        assert!(a.data == data);
    }

    #[test]
    fn rejects_a_wrong_magic_number() {
        let dir = test_support::scratch("idx-magic");
        let mut bytes = idx_bytes(&[3], &[1, 2, 3]);
        bytes[0] = 0x12;
        std::fs::write(dir.path().join("labels"), &bytes).unwrap();
        let m = message(read_idx(&dir.path().join("labels")));
        assert!(m.contains("labels"), "{m}");
        assert!(m.contains("magic number 0x12000801"), "{m}");
        assert!(m.contains("expected 0x000008NN"), "{m}");
    }

    #[test]
    fn rejects_other_data_types_and_dimension_counts() {
        let dir = test_support::scratch("idx-type");
        let mut bytes = idx_bytes(&[1], &[0, 0, 0, 0]);
        bytes[2] = 0x0D; // f32
        std::fs::write(dir.path().join("floats"), &bytes).unwrap();
        let m = message(read_idx(&dir.path().join("floats")));
        assert!(m.contains("floats") && m.contains("data type 0x0D, expected 0x08"), "{m}");

        std::fs::write(dir.path().join("nodims"), [0, 0, 8, 0]).unwrap();
        let m = message(read_idx(&dir.path().join("nodims")));
        assert!(m.contains("nodims") && m.contains("0 dimensions, expected 1 to 16"), "{m}");

        std::fs::write(dir.path().join("short"), [0, 0, 8, 3, 0, 0]).unwrap();
        let m = message(read_idx(&dir.path().join("short")));
        assert!(m.contains("short") && m.contains("truncated IDX header"), "{m}");

        std::fs::write(dir.path().join("tiny"), [0, 0]).unwrap();
        let m = message(read_idx(&dir.path().join("tiny")));
        assert!(m.contains("tiny") && m.contains("shorter than the 4-byte magic"), "{m}");
    }

    #[test]
    fn rejects_truncated_payloads_raw_and_gzip() {
        let dir = test_support::scratch("idx-truncated");
        let bytes = idx_bytes(&[2, 5], &[9; 7]);
        std::fs::write(dir.path().join("raw"), &bytes).unwrap();
        std::fs::write(dir.path().join("gz"), gzip(&bytes)).unwrap();
        let m = message(read_idx(&dir.path().join("raw")));
        assert!(m.contains("raw: truncated"), "{m}");
        assert!(m.contains("2 × 5 = 10 data bytes, found 7"), "{m}");
        let m = read_idx_header(&dir.path().join("raw")).unwrap_err().to_string();
        assert!(m.contains("10 data bytes, found 7"), "{m}");
        let m = message(read_idx(&dir.path().join("gz")));
        assert!(m.contains("gz: truncated"), "{m}");
        assert!(m.contains("10 data bytes (after decompression), found 7"), "{m}");
    }

    #[test]
    fn rejects_trailing_bytes() {
        let dir = test_support::scratch("idx-trailing");
        let bytes = idx_bytes(&[4], &[1, 2, 3, 4, 5, 6]);
        std::fs::write(dir.path().join("raw"), &bytes).unwrap();
        std::fs::write(dir.path().join("gz"), gzip(&bytes)).unwrap();
        for name in ["raw", "gz"] {
            let m = message(read_idx(&dir.path().join(name)));
            assert!(m.contains(&format!("{name}: trailing bytes")), "{m}");
            assert!(m.contains("4 data bytes") && m.contains("found 6"), "{m}");
        }
        let m = read_idx_header(&dir.path().join("raw")).unwrap_err().to_string();
        assert!(m.contains("trailing bytes") && m.contains("found 6"), "{m}");
    }

    #[test]
    fn rejects_corrupt_gzip_and_missing_files() {
        let dir = test_support::scratch("idx-corrupt");
        let mut gz = gzip(&idx_bytes(&[3], &[1, 2, 3]));
        let n = gz.len();
        gz[n / 2..].iter_mut().for_each(|b| *b ^= 0x5A);
        std::fs::write(dir.path().join("broken.gz"), &gz).unwrap();
        let m = message(read_idx(&dir.path().join("broken.gz")));
        assert!(m.contains("broken.gz") && m.contains("gzip data cannot be decompressed"), "{m}");

        let m = message(read_idx(&dir.path().join("absent")));
        assert!(m.contains("absent") && m.contains("cannot open"), "{m}");
    }

    #[test]
    fn refuses_a_gzip_bomb_without_decompressing_it_all() {
        // The header declares 16 bytes; the stream holds 8 MiB more (zeros compress ~1000:1).
        let dir = test_support::scratch("idx-bomb");
        let bytes = idx_bytes(&[16], &vec![0u8; 16 + (8 << 20)]);
        let gz = gzip(&bytes);
        assert!(gz.len() < 256 << 10, "{}", gz.len());
        std::fs::write(dir.path().join("bomb.gz"), &gz).unwrap();
        for m in [
            message(read_idx(&dir.path().join("bomb.gz"))),
            verify_idx(&dir.path().join("bomb.gz")).unwrap_err().to_string(),
        ] {
            assert!(m.contains("bomb.gz: trailing bytes"), "{m}");
            // Reading stopped 1 MiB past the declared size: a lower bound, not the 8 MiB.
            assert!(m.contains(&format!("found at least {}", 16 + (1 << 20))), "{m}");
        }
    }

    #[test]
    fn verify_finds_corrupt_and_truncated_gzip_payloads_that_the_header_check_misses() {
        let dir = test_support::scratch("idx-verify");
        let bytes = idx_bytes(&[64, 64], &(0..64 * 64).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>());
        let gz = gzip(&bytes);
        std::fs::write(dir.path().join("good.gz"), &gz).unwrap();
        assert_eq!(verify_idx(&dir.path().join("good.gz")).unwrap().dims, vec![64, 64]);
        // Cut off mid-stream: the header still reads.
        std::fs::write(dir.path().join("cut.gz"), &gz[..gz.len() / 2]).unwrap();
        // Garbled CRC trailer: only a full decompression notices.
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 8] ^= 0xFF;
        std::fs::write(dir.path().join("crc.gz"), &bad).unwrap();
        for name in ["cut.gz", "crc.gz"] {
            let path = dir.path().join(name);
            assert!(read_idx_header(&path).is_ok(), "{name}");
            let m = verify_idx(&path).unwrap_err().to_string();
            assert!(m.contains(name), "{m}");
        }
    }
}
