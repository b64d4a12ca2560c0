//! NumPy `.npz` archives: a ZIP file of `.npy` arrays, as `numpy.savez` (stored) and
//! `numpy.savez_compressed` (deflate) write them — the format of the downsampled ImageNet
//! `_npz` downloads.
//!
//! Only what those files use is read, and everything else is refused with an error naming the
//! file: the ZIP central directory (with its ZIP64 forms, which NumPy writes for every member
//! since 1.16 via `force_zip64`), members stored or deflated, unencrypted; `.npy` versions 1–3
//! with a C-order array of little-endian integers. A member's bytes are checked against the
//! CRC-32 its directory entry records, so a corrupt download is an error, not silently wrong
//! pixels. Sizes are capped by what the directory declares: a member is read to exactly its
//! declared length, and a declared length deflate could not produce from the compressed bytes
//! (more than 1,032:1) is refused before anything is allocated.
//!
//! A ZIP reader crate would do the same with more code than this file; flate2 (already a
//! dependency) supplies the inflater.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::DeflateDecoder;

use super::StreamError;

/// One array of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NpyArray {
    /// The dtype as NumPy writes it (`|u1`, `<i8`, …).
    pub descr: String,
    /// The shape, outermost first.
    pub shape: Vec<usize>,
    /// The values' bytes, C order, little-endian.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// The values as integers, whatever their integer dtype.
    pub(crate) fn integers(&self) -> Vec<i64> {
        let (size, signed) = integer_dtype(&self.descr).expect("checked when read");
        self.data
            .chunks_exact(size)
            .map(|b| {
                let mut word = [0u8; 8];
                word[..size].copy_from_slice(b);
                let v = u64::from_le_bytes(word);
                let shift = 64 - 8 * size as u32;
                if signed {
                    ((v << shift) as i64) >> shift
                } else {
                    v as i64
                }
            })
            .collect()
    }
}

/// Bytes per value and signedness of an integer dtype NumPy writes little-endian or unordered;
/// `None` for anything else (floats, big-endian, objects). `<u8` is refused: its values above
/// 2⁶³ would not fit an i64, and no label array needs them.
fn integer_dtype(descr: &str) -> Option<(usize, bool)> {
    Some(match descr {
        "|u1" | "<u1" => (1, false),
        "|i1" | "<i1" => (1, true),
        "<u2" => (2, false),
        "<i2" => (2, true),
        "<u4" => (4, false),
        "<i4" => (4, true),
        "<i8" => (8, true),
        _ => return None,
    })
}

/// A member of the archive as its central directory entry describes it.
#[derive(Debug)]
struct Member {
    name: String,
    method: u16,
    flags: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

/// The largest ratio of output to input deflate can reach (258 bytes per 2 bits, rounded up).
const MAX_DEFLATE_RATIO: u64 = 1032;

fn data_error(path: &Path, reason: impl Into<String>) -> StreamError {
    StreamError::Data { path: path.to_path_buf(), reason: reason.into() }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Reads the arrays `names` (member names without `.npy`) of the archive at `path`, in that
/// order; an array missing from the archive is an error naming what the archive holds.
pub(crate) fn read_npz(path: &Path, names: &[&str]) -> Result<Vec<NpyArray>, StreamError> {
    let io = |e: std::io::Error| data_error(path, format!("cannot read: {e}"));
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let members = central_directory(path, &mut file, len)?;
    names
        .iter()
        .map(|name| {
            let wanted = format!("{name}.npy");
            let member = members.iter().find(|m| m.name == wanted).ok_or_else(|| {
                let held: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                data_error(path, format!("no array `{name}` in the archive (it holds {held:?}); expected an .npz of NumPy arrays"))
            })?;
            read_member(path, &mut file, len, member)
        })
        .collect()
}

/// The central directory's entries, found through the end-of-central-directory record (and
/// its ZIP64 form).
fn central_directory(path: &Path, file: &mut File, len: u64) -> Result<Vec<Member>, StreamError> {
    let io = |e: std::io::Error| data_error(path, format!("cannot read: {e}"));
    let not_zip = || {
        data_error(
            path,
            "no ZIP end-of-central-directory record; the file is truncated or not an .npz archive",
        )
    };
    // The record is 22 bytes plus a comment of at most 65,535.
    let tail_len = len.min(22 + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| le32(&tail, i) == 0x0605_4b50)
        .ok_or_else(not_zip)?;
    let mut entries = le16(&tail, eocd + 10) as u64;
    let mut cd_size = le32(&tail, eocd + 12) as u64;
    let mut cd_offset = le32(&tail, eocd + 16) as u64;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // ZIP64: a locator 20 bytes before the record points to the ZIP64 record.
        if eocd < 20 || le32(&tail, eocd - 20) != 0x0706_4b50 {
            return Err(data_error(path, "ZIP64 sizes without a ZIP64 locator; the archive is damaged"));
        }
        let at = le64(&tail, eocd - 12);
        let mut record = [0u8; 56];
        if at.checked_add(56).is_none_or(|end| end > len) {
            return Err(data_error(path, "the ZIP64 record lies outside the file; the archive is truncated"));
        }
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        file.read_exact(&mut record).map_err(io)?;
        if le32(&record, 0) != 0x0606_4b50 {
            return Err(data_error(
                path,
                "no ZIP64 end-of-central-directory record where the locator points",
            ));
        }
        entries = le64(&record, 32);
        cd_size = le64(&record, 40);
        cd_offset = le64(&record, 48);
    }
    // An .npz of the downsampled ImageNet has 2 or 3 members; a directory of millions is not one.
    if entries > 1024 || cd_offset.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(data_error(
            path,
            format!("a central directory of {entries} entries, {cd_size} bytes at {cd_offset}, in a {len}-byte file; the archive is damaged"),
        ));
    }
    let mut cd = vec![0u8; cd_size as usize];
    file.seek(SeekFrom::Start(cd_offset)).map_err(io)?;
    file.read_exact(&mut cd).map_err(io)?;
    let mut members = Vec::new();
    let mut at = 0usize;
    let damaged =
        || data_error(path, "a central directory entry runs past the directory; the archive is damaged");
    for _ in 0..entries {
        if at + 46 > cd.len() || le32(&cd, at) != 0x0201_4b50 {
            return Err(damaged());
        }
        let (name_len, extra_len, comment_len) =
            (le16(&cd, at + 28) as usize, le16(&cd, at + 30) as usize, le16(&cd, at + 32) as usize);
        let end = at + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return Err(damaged());
        }
        let name = String::from_utf8_lossy(&cd[at + 46..at + 46 + name_len]).into_owned();
        let mut m = Member {
            name,
            flags: le16(&cd, at + 8),
            method: le16(&cd, at + 10),
            crc: le32(&cd, at + 16),
            compressed: le32(&cd, at + 20) as u64,
            size: le32(&cd, at + 24) as u64,
            local_offset: le32(&cd, at + 42) as u64,
        };
        zip64_extra(&cd[at + 46 + name_len..at + 46 + name_len + extra_len], &mut m)
            .ok_or_else(|| data_error(path, format!("member `{}`: a malformed ZIP64 extra field", m.name)))?;
        members.push(m);
        at = end;
    }
    Ok(members)
}

/// Replaces the 32-bit fields that say "see ZIP64" (all ones) by the extra field's 64-bit
/// values, in the order the format fixes; `None` when the field is too short.
fn zip64_extra(mut extra: &[u8], m: &mut Member) -> Option<()> {
    while extra.len() >= 4 {
        let (id, size) = (le16(extra, 0), le16(extra, 2) as usize);
        let body = extra.get(4..4 + size)?;
        if id == 0x0001 {
            let mut values = body.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
            for field in [&mut m.size, &mut m.compressed, &mut m.local_offset] {
                if *field == 0xFFFF_FFFF {
                    *field = values.next()?;
                }
            }
        }
        extra = &extra[4 + size..];
    }
    Some(())
}

/// Reads and checks one member: its local header, its bytes (inflated when deflated, capped at
/// the declared size), their CRC-32, and the `.npy` inside.
fn read_member(path: &Path, file: &mut File, len: u64, m: &Member) -> Result<NpyArray, StreamError> {
    let fail = |reason: String| data_error(path, format!("member `{}`: {reason}", m.name));
    let io = |e: std::io::Error| fail(format!("cannot read: {e}"));
    if m.flags & 1 != 0 {
        return Err(fail("encrypted; expected a plain .npz".into()));
    }
    let stored = match m.method {
        0 => true,
        8 => false,
        other => return Err(fail(format!("compression method {other}; expected stored (0) or deflate (8)"))),
    };
    if (stored && m.size != m.compressed)
        || (!stored && m.size > m.compressed.saturating_mul(MAX_DEFLATE_RATIO) + 1024)
    {
        return Err(fail(format!(
            "declares {} bytes from {} compressed; the archive is damaged",
            m.size, m.compressed
        )));
    }
    let mut local = [0u8; 30];
    if m.local_offset.checked_add(30).is_none_or(|end| end > len) {
        return Err(fail("its local header lies outside the file; the archive is truncated".into()));
    }
    file.seek(SeekFrom::Start(m.local_offset)).map_err(io)?;
    file.read_exact(&mut local).map_err(io)?;
    if le32(&local, 0) != 0x0403_4b50 {
        return Err(fail("no local header where the directory points; the archive is damaged".into()));
    }
    let start = m.local_offset + 30 + le16(&local, 26) as u64 + le16(&local, 28) as u64;
    if start.checked_add(m.compressed).is_none_or(|end| end > len) {
        return Err(fail(format!(
            "{} compressed bytes run past the end of the file; the archive is truncated",
            m.compressed
        )));
    }
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let raw = BufReader::new(&mut *file).take(m.compressed);
    let reader: Box<dyn Read + '_> = if stored { Box::new(raw) } else { Box::new(DeflateDecoder::new(raw)) };
    let mut bytes = Vec::with_capacity(m.size as usize);
    reader.take(m.size + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("does not inflate: {e}")))?;
    if bytes.len() as u64 != m.size {
        return Err(fail(format!(
            "holds {} bytes, but the directory declares {}; the archive is damaged",
            bytes.len(),
            m.size
        )));
    }
    let crc = crc32fast::hash(&bytes);
    if crc != m.crc {
        return Err(fail(format!(
            "CRC-32 {crc:08x}, but the directory records {:08x}; the download is corrupt",
            m.crc
        )));
    }
    parse_npy(bytes).map_err(fail)
}

/// An `.npy` file: magic, version, header dictionary, data.
fn parse_npy(mut bytes: Vec<u8>) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy array (no \\x93NUMPY magic)".into());
    }
    let (header_len, offset) = match bytes[6] {
        1 => (le16(&bytes, 8) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (le32(&bytes, 8) as usize, 12),
        v => return Err(format!(".npy version {v}; expected 1, 2 or 3")),
    };
    let header = bytes
        .get(offset..offset + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("the .npy header runs past the array or is not text")?;
    let descr = quoted_after(header, "'descr':")
        .ok_or_else(|| format!("no 'descr' in the .npy header {header:?}"))?;
    if integer_dtype(&descr).is_none() {
        return Err(format!("dtype {descr}; expected little-endian integers (|u1, <i8, …)"));
    }
    match header.split_once("'fortran_order':").map(|(_, rest)| rest.trim_start()) {
        Some(rest) if rest.starts_with("False") => {}
        Some(_) => return Err("a Fortran-order array; expected C order".into()),
        None => return Err(format!("no 'fortran_order' in the .npy header {header:?}")),
    }
    let shape =
        shape_after(header).ok_or_else(|| format!("no readable 'shape' in the .npy header {header:?}"))?;
    let (size, _) = integer_dtype(&descr).unwrap();
    // The values stay where they were read (a batch of downsampled ImageNet is 393 MB).
    bytes.drain(..offset + header_len);
    let expected = shape.iter().try_fold(size, |n, &d| n.checked_mul(d));
    if expected != Some(bytes.len()) {
        return Err(format!(
            "shape {shape:?} of {descr} needs {expected:?} bytes, but the array holds {}",
            bytes.len()
        ));
    }
    Ok(NpyArray { descr, shape, data: bytes })
}

/// The single-quoted string after `key`.
fn quoted_after(header: &str, key: &str) -> Option<String> {
    let rest = header.split_once(key)?.1.trim_start().strip_prefix('\'')?;
    Some(rest.split_once('\'')?.0.to_string())
}

/// The tuple of integers after `'shape':`.
fn shape_after(header: &str) -> Option<Vec<usize>> {
    let rest = header.split_once("'shape':")?.1.trim_start().strip_prefix('(')?;
    let inside = rest.split_once(')')?.0;
    inside
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A version-1 `.npy` of `descr` and `shape` over `data`, header padded as NumPy pads it.
    pub(crate) fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let tuple =
            if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    /// A ZIP archive of `members` (name, bytes), deflated or stored; with `zip64`, each local
    /// and directory entry carries ZIP64 sizes as NumPy's `force_zip64` writes them.
    pub(crate) fn zip(members: &[(&str, Vec<u8>)], deflate: bool, zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut directory = Vec::new();
        for (name, bytes) in members {
            let body = if deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            } else {
                bytes.clone()
            };
            let (size, csize, offset) = (bytes.len() as u64, body.len() as u64, out.len() as u64);
            let small = |v: u64| if zip64 { 0xFFFF_FFFFu32 } else { v as u32 };
            // The directory's ZIP64 field holds size, compressed size and offset; the local
            // header's only the two sizes.
            let (mut extra, mut local_extra) = (Vec::new(), Vec::new());
            if zip64 {
                extra.extend(1u16.to_le_bytes());
                extra.extend(24u16.to_le_bytes());
                extra.extend(size.to_le_bytes());
                extra.extend(csize.to_le_bytes());
                extra.extend(offset.to_le_bytes());
                local_extra.extend(1u16.to_le_bytes());
                local_extra.extend(16u16.to_le_bytes());
                local_extra.extend(size.to_le_bytes());
                local_extra.extend(csize.to_le_bytes());
            }
            let method: u16 = if deflate { 8 } else { 0 };
            let crc = crc32fast::hash(bytes);
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 4]);
            out.extend(crc.to_le_bytes());
            out.extend(small(csize).to_le_bytes());
            out.extend(small(size).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend((local_extra.len() as u16).to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(&local_extra);
            out.extend(&body);
            directory.extend(0x0201_4b50u32.to_le_bytes());
            directory.extend([20, 0, 20, 0, 0, 0]);
            directory.extend(method.to_le_bytes());
            directory.extend([0; 4]);
            directory.extend(crc.to_le_bytes());
            directory.extend(small(csize).to_le_bytes());
            directory.extend(small(size).to_le_bytes());
            directory.extend((name.len() as u16).to_le_bytes());
            directory.extend((extra.len() as u16).to_le_bytes());
            // Comment length, disk, internal and external attributes.
            directory.extend([0; 6]);
            directory.extend(0u32.to_le_bytes());
            directory.extend(small(offset).to_le_bytes());
            directory.extend(name.as_bytes());
            directory.extend(&extra);
        }
        let cd_offset = out.len() as u32;
        out.extend(&directory);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((members.len() as u16).to_le_bytes());
        out.extend((directory.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend([0; 2]);
        out
    }

    fn err(r: Result<impl std::fmt::Debug, StreamError>) -> String {
        r.expect_err("should have failed").to_string()
    }

    fn archive(deflate: bool, zip64: bool) -> Vec<u8> {
        let data: Vec<u8> = (0..24u8).collect();
        let labels: Vec<u8> = [1i64, 1000, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        zip(
            &[("data.npy", npy("|u1", &[3, 8], &data)), ("labels.npy", npy("<i8", &[3], &labels))],
            deflate,
            zip64,
        )
    }

    #[test]
    fn reads_stored_deflated_and_zip64_archives_alike() {
        let dir = test_support::scratch("npz");
        for (deflate, zip64) in [(false, false), (true, false), (false, true), (true, true)] {
            let path = dir.path().join("a.npz");
            std::fs::write(&path, archive(deflate, zip64)).unwrap();
            let arrays = read_npz(&path, &["labels", "data"]).unwrap();
            assert_eq!((arrays[0].shape.clone(), arrays[0].integers()), (vec![3], vec![1, 1000, -3]));
            assert_eq!(arrays[1].shape, [3, 8]);
            assert_eq!(arrays[1].data, (0..24).collect::<Vec<u8>>(), "deflate {deflate}, zip64 {zip64}");
        }
    }

    /// Archives written by Python's `zipfile` exactly as `numpy.savez` and
    /// `numpy.savez_compressed` write them (ZIP64 local headers from `force_zip64`, a data
    /// descriptor-free layout, sizes in both directory and extra field): `data` |u1 (2, 3072)
    /// with byte k equal to 7k mod 256, `labels` <i8 [1, 1000], `mean` |u1 zeros (3072,).
    #[test]
    fn reads_archives_as_numpy_writes_them() {
        for name in ["savez.npz", "savez_compressed.npz"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stream/testdata").join(name);
            let arrays = read_npz(&path, &["data", "labels", "mean"]).unwrap();
            assert_eq!(arrays[0].shape, [2, 3072]);
            assert!(arrays[0].data.iter().enumerate().all(|(k, &v)| v as usize == k * 7 % 256), "{name}");
            assert_eq!(arrays[1].integers(), [1, 1000]);
            assert_eq!((arrays[2].shape.clone(), arrays[2].data.len()), (vec![3072], 3072));
        }
    }

    #[test]
    fn damage_is_reported_with_the_file_and_the_member() {
        let dir = test_support::scratch("npz-bad");
        let path = dir.path().join("b.npz");
        let good = archive(false, false);
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(err(read_npz(&path, &["data"])).contains("b.npz: no ZIP end-of-central-directory record"));
        let mut flipped = good.clone();
        // A byte of data.npy's pixels: 30-byte local header, 8-byte name, 64-byte .npy header.
        flipped[30 + 8 + 64 + 5] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let m = err(read_npz(&path, &["data"]));
        assert!(m.contains("b.npz: member `data.npy`: CRC-32") && m.contains("download is corrupt"), "{m}");
        std::fs::write(&path, &good).unwrap();
        let m = err(read_npz(&path, &["mean"]));
        assert!(
            m.contains("no array `mean` in the archive (it holds [\"data.npy\", \"labels.npy\"])"),
            "{m}"
        );
        let floats = zip(&[("data.npy", npy("<f4", &[1], &[0; 4]))], false, false);
        std::fs::write(&path, floats).unwrap();
        assert!(err(read_npz(&path, &["data"])).contains("dtype <f4; expected little-endian integers"));
        let short = zip(&[("data.npy", npy("|u1", &[2, 3], &[0; 5]))], true, false);
        std::fs::write(&path, short).unwrap();
        let m = err(read_npz(&path, &["data"]));
        assert!(m.contains("shape [2, 3] of |u1 needs Some(6) bytes, but the array holds 5"), "{m}");
    }
}
