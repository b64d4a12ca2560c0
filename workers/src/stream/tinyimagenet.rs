//! TinyImageNet (Le & Yang 2015, Stanford CS231N): 200 ImageNet classes at 64×64, read from the
//! folder the public archive unpacks to.
//!
//! Source: <http://cs231n.stanford.edu/tiny-imagenet-200.zip> (MD5
//! `90528d7ca1a48142e341f4ef8d21d0de`, the value third-party loaders check). The folder
//! `tiny-imagenet-200/` holds:
//!
//! * `wnids.txt` — the 200 WordNet ids, one per line; a class's index is its line (0-based);
//! * `train/<wnid>/images/<wnid>_<k>.JPEG` — 500 training images per class, read in the order
//!   of `k`;
//! * `val/val_annotations.txt` — one line per validation image, tab-separated: file name,
//!   wnid, then a bounding box (ignored); `val/images/val_<k>.JPEG`, read in the file's line
//!   order. The validation images (50 per class) are the streams' test images: the archive's
//!   `test/` images have no labels.
//!
//! Every image is a baseline JPEG of 64×64 pixels, most in colour and some grey (which are
//! repeated into three equal channels). Decoding is zune-jpeg's, without its SIMD paths, so the
//! pixels are the same on every machine; an image of any other size is refused (the decoder is
//! told the 64×64 limit, so a corrupt header cannot make it allocate more). JPEG is lossy:
//! pixels are exact only relative to this decoder, and another decoder (libjpeg, PIL) may differ
//! by a level or two — runs are comparable among themselves, and to published numbers only up
//! to that.

use std::path::{Path, PathBuf};

use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::image::{check_dir, fingerprint_files, require_file, verify_fingerprint, ImageData, ImageSet};
use super::StreamError;
use crate::model::layer::Shape;

/// Height and width of every image.
pub const TINY_SIDE: usize = 64;

/// Bytes of one image: 3 channels × 64 × 64.
pub const TINY_PIXELS: usize = 3 * TINY_SIDE * TINY_SIDE;

const HOLDS: &str =
    "TinyImageNet as unpacked from tiny-imagenet-200.zip (wnids.txt, train/<wnid>/images/*.JPEG, \
                     val/val_annotations.txt, val/images/*.JPEG)";

/// The files of a TinyImageNet folder, listed in the order they are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TinyImagenetFiles {
    /// The folder.
    pub dir: PathBuf,
    /// The class ids, in `wnids.txt`'s order.
    pub wnids: Vec<String>,
    /// Training images with their classes, class after class.
    pub train: Vec<(PathBuf, u16)>,
    /// Validation images with their classes, in `val_annotations.txt`'s order.
    pub val: Vec<(PathBuf, u16)>,
}

fn data_error(path: &Path, reason: impl Into<String>) -> StreamError {
    StreamError::Data { path: path.to_path_buf(), reason: reason.into() }
}

fn read_text(path: &Path) -> Result<String, StreamError> {
    std::fs::read_to_string(path).map_err(|e| data_error(path, format!("cannot read as text: {e}")))
}

/// The number in a file name `<prefix>_<k>.JPEG`, for ordering; names without one sort last.
fn image_number(path: &Path) -> (u64, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let k =
        name.rsplit_once('_').and_then(|(_, rest)| rest.split('.').next()?.parse().ok()).unwrap_or(u64::MAX);
    (k, name)
}

impl TinyImagenetFiles {
    /// Lists the folder: the class ids, every training image, every annotated validation image.
    /// A missing file or folder, a repeated or unknown class id, or a class without training
    /// images is an error naming the file.
    pub fn locate(dir: &Path) -> Result<TinyImagenetFiles, StreamError> {
        check_dir(dir, HOLDS)?;
        let wnids_path = require_file(dir, "wnids.txt", HOLDS)?;
        let wnids: Vec<String> = read_text(&wnids_path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if wnids.is_empty() || wnids.len() > u16::MAX as usize {
            return Err(data_error(
                &wnids_path,
                format!("{} class ids; expected one per line (200)", wnids.len()),
            ));
        }
        let class_of = |wnid: &str| wnids.iter().position(|w| w == wnid);
        if let Some(w) = wnids.iter().enumerate().find(|(i, w)| class_of(w) != Some(*i)).map(|(_, w)| w) {
            return Err(data_error(&wnids_path, format!("class id {w} appears twice")));
        }
        let mut train = Vec::new();
        for (c, wnid) in wnids.iter().enumerate() {
            let folder = dir.join("train").join(wnid).join("images");
            let entries = std::fs::read_dir(&folder).map_err(|e| {
                data_error(&folder, format!("cannot list the training images of class {wnid}: {e}"))
            })?;
            let mut images: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("jpeg") || x.eq_ignore_ascii_case("jpg"))
                })
                .collect();
            if images.is_empty() {
                return Err(data_error(&folder, format!("no training image (*.JPEG) of class {wnid}")));
            }
            images.sort_by_key(|p| image_number(p));
            train.extend(images.into_iter().map(|p| (p, c as u16)));
        }
        let annotations = dir.join("val").join("val_annotations.txt");
        if !annotations.is_file() {
            return Err(data_error(
                dir,
                format!("missing `val/val_annotations.txt`; the folder must hold {HOLDS}"),
            ));
        }
        let mut val = Vec::new();
        for (n, line) in read_text(&annotations)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut fields = line.split('\t');
            let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
                return Err(data_error(
                    &annotations,
                    format!("line {}: expected `<file>\\t<wnid>\\t…`", n + 1),
                ));
            };
            let class = class_of(wnid.trim()).ok_or_else(|| {
                data_error(&annotations, format!("line {}: class id {wnid} is not in wnids.txt", n + 1))
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(data_error(&annotations, format!("line {}: `{file}` is not a file name", n + 1)));
            }
            val.push((dir.join("val").join("images").join(file.trim()), class as u16));
        }
        if val.is_empty() {
            return Err(data_error(&annotations, "no validation image is annotated"));
        }
        Ok(TinyImagenetFiles { dir: dir.to_path_buf(), wnids, train, val })
    }

    fn all(&self) -> Vec<PathBuf> {
        let lists = [self.dir.join("wnids.txt"), self.dir.join("val").join("val_annotations.txt")];
        lists.into_iter().chain(self.train.iter().chain(&self.val).map(|(p, _)| p.clone())).collect()
    }

    /// The fingerprint of the listing files and of every image read.
    pub fn fingerprint(&self) -> Result<String, StreamError> {
        fingerprint_files(&self.all())
    }

    /// Checks the files against the fingerprint recorded when the run was planned.
    pub fn verify_fingerprint(&self, expected: Option<&str>) -> Result<(), StreamError> {
        verify_fingerprint(&self.dir, &self.all(), expected)
    }

    /// Decodes every image.
    pub fn load(&self) -> Result<ImageData, StreamError> {
        let set = |list: &[(PathBuf, u16)]| -> Result<ImageSet, StreamError> {
            let mut images = vec![0u8; list.len() * TINY_PIXELS];
            for ((path, _), out) in list.iter().zip(images.chunks_exact_mut(TINY_PIXELS)) {
                decode(path, out)?;
            }
            Ok(ImageSet { images: images.into(), labels: list.iter().map(|&(_, c)| c).collect() })
        };
        Ok(ImageData {
            train: set(&self.train)?,
            test: set(&self.val)?,
            shape: Shape::Image { channels: 3, height: TINY_SIDE, width: TINY_SIDE },
            classes: self.wnids.len(),
        })
    }
}

/// Decodes the 64×64 JPEG at `path` into `out`, channels first; grey images fill all three
/// channels.
pub fn decode(path: &Path, out: &mut [u8]) -> Result<(), StreamError> {
    let bytes = std::fs::read(path).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    // Strict: a truncated or damaged file is an error, not an image padded with guesses.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(TINY_SIDE)
        .set_max_height(TINY_SIDE)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&bytes[..]), options);
    let pixels = decoder.decode().map_err(|e| data_error(path, format!("not a readable JPEG: {e:?}")))?;
    let (w, h) = decoder.dimensions().unwrap_or((0, 0));
    if (w, h) != (TINY_SIDE, TINY_SIDE) {
        return Err(data_error(path, format!("a {w}×{h} image; TinyImageNet's are {TINY_SIDE}×{TINY_SIDE}")));
    }
    let plane = TINY_SIDE * TINY_SIDE;
    match pixels.len() / plane {
        3 if pixels.len() == 3 * plane => {
            for (k, rgb) in pixels.chunks_exact(3).enumerate() {
                out[k] = rgb[0];
                out[plane + k] = rgb[1];
                out[2 * plane + k] = rgb[2];
            }
        }
        1 if pixels.len() == plane => {
            for c in 0..3 {
                out[c * plane..(c + 1) * plane].copy_from_slice(&pixels);
            }
        }
        _ => {
            return Err(data_error(
                path,
                format!(
                    "decoded to {} bytes; expected {plane} (grey) or {} (colour)",
                    pixels.len(),
                    3 * plane
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A baseline JPEG whose every 8×8 block has a single colour (its DCT has a DC term only),
    /// so any conforming decoder reproduces it: `blocks` gives (Y, Cb, Cr) per block, row-major,
    /// for a `width`×`height` image (multiples of 8). The quantiser is all ones; the Huffman
    /// tables are the standard luminance DC table and a two-symbol AC table (EOB only is used).
    pub(crate) fn flat_jpeg(width: usize, height: usize, blocks: &[[u8; 3]]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        let segment = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
            out.extend([0xFF, marker]);
            out.extend(((body.len() + 2) as u16).to_be_bytes());
            out.extend(body);
        };
        let mut dqt = vec![0u8];
        dqt.extend([1u8; 64]);
        segment(&mut out, 0xDB, &dqt);
        let mut sof = vec![8];
        sof.extend((height as u16).to_be_bytes());
        sof.extend((width as u16).to_be_bytes());
        sof.push(3);
        for id in 1..=3 {
            sof.extend([id, 0x11, 0]);
        }
        segment(&mut out, 0xC0, &sof);
        // DC: the standard table (code lengths of categories 0–11).
        let dc_counts = [0u8, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        let mut dht = vec![0x00];
        dht.extend(dc_counts);
        dht.extend(0u8..12);
        segment(&mut out, 0xC4, &dht);
        let mut dht = vec![0x10];
        dht.extend([0u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        dht.extend([0x00, 0x01]);
        segment(&mut out, 0xC4, &dht);
        segment(&mut out, 0xDA, &[3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]);
        // Canonical codes of the DC table: (code, length) per category.
        let mut dc_codes = Vec::new();
        let (mut code, mut category) = (0u32, 0);
        for (i, &n) in dc_counts.iter().enumerate() {
            for _ in 0..n {
                dc_codes.push((code, i as u32 + 1));
                code += 1;
                category += 1;
            }
            code <<= 1;
        }
        assert_eq!(category, 12);
        let mut bits = BitWriter::default();
        let mut previous = [0i32; 3];
        for block in blocks {
            for (c, &value) in block.iter().enumerate() {
                // DC of a flat block of value v, level-shifted: 8 (v − 128).
                let dc = 8 * (value as i32 - 128);
                let diff = dc - previous[c];
                previous[c] = dc;
                let size = 32 - diff.unsigned_abs().leading_zeros();
                let (code, len) = dc_codes[size as usize];
                bits.put(code, len);
                if size > 0 {
                    let v = if diff < 0 { (diff - 1) as u32 & ((1 << size) - 1) } else { diff as u32 };
                    bits.put(v, size);
                }
                bits.put(0b00, 2); // EOB
            }
        }
        out.extend(bits.finish());
        out.extend([0xFF, 0xD9]);
        out
    }

    /// Entropy-coded bits, MSB first, with 0xFF stuffing and 1-padding.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        acc: u32,
        n: u32,
    }

    impl BitWriter {
        fn put(&mut self, value: u32, len: u32) {
            for i in (0..len).rev() {
                self.acc = (self.acc << 1) | ((value >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    self.push();
                }
            }
        }

        fn push(&mut self) {
            let byte = self.acc as u8;
            self.bytes.push(byte);
            if byte == 0xFF {
                self.bytes.push(0);
            }
            self.acc = 0;
            self.n = 0;
        }

        fn finish(mut self) -> Vec<u8> {
            while self.n != 0 {
                self.put(1, 1);
            }
            self.bytes
        }
    }

    /// Grey level of block `b` of image `i` (Cb = Cr = 128: R = G = B exactly).
    pub(crate) fn grey(i: usize, b: usize) -> u8 {
        (16 + (i * 37 + b * 11) % 220) as u8
    }

    /// A 64×64 grey-blocked JPEG for image `i`.
    pub(crate) fn image(i: usize) -> Vec<u8> {
        let blocks: Vec<[u8; 3]> = (0..64).map(|b| [grey(i, b), 128, 128]).collect();
        flat_jpeg(64, 64, &blocks)
    }

    /// The expected pixel (any channel) at (y, x) of image `i`.
    pub(crate) fn expected(i: usize, y: usize, x: usize) -> u8 {
        grey(i, (y / 8) * 8 + x / 8)
    }

    /// A TinyImageNet folder of `classes` classes (wnids `n000…`), `train` training images per
    /// class and `val` validation images per class; training image j of class c is image
    /// `1000 c + j`, validation image k (annotated in order, classes cycling) is image `500000 + k`.
    pub(crate) fn write_fixture(dir: &Path, classes: usize, train: usize, val: usize) {
        let wnid = |c: usize| format!("n{c:08}");
        let wnids: Vec<String> = (0..classes).map(wnid).collect();
        std::fs::write(dir.join("wnids.txt"), wnids.join("\n") + "\n").unwrap();
        for (c, w) in wnids.iter().enumerate() {
            let folder = dir.join("train").join(w).join("images");
            std::fs::create_dir_all(&folder).unwrap();
            // Written in reverse so that listing order differs from the read order.
            for j in (0..train).rev() {
                std::fs::write(folder.join(format!("{w}_{j}.JPEG")), image(1000 * c + j)).unwrap();
            }
        }
        let images = dir.join("val").join("images");
        std::fs::create_dir_all(&images).unwrap();
        let mut annotations = String::new();
        for k in 0..classes * val {
            std::fs::write(images.join(format!("val_{k}.JPEG")), image(500_000 + k)).unwrap();
            annotations += &format!("val_{k}.JPEG\t{}\t0\t0\t63\t63\n", wnid(k % classes));
        }
        std::fs::write(dir.join("val").join("val_annotations.txt"), annotations).unwrap();
    }

    fn err(r: Result<impl std::fmt::Debug, StreamError>) -> String {
        r.expect_err("should have failed").to_string()
    }

    fn check_image(data: &[u8], i: usize) {
        let plane = TINY_SIDE * TINY_SIDE;
        for c in 0..3 {
            for y in 0..64 {
                for x in 0..64 {
                    assert_eq!(
                        data[c * plane + y * 64 + x],
                        expected(i, y, x),
                        "image {i}, channel {c}, ({y}, {x})"
                    );
                }
            }
        }
    }

    #[test]
    fn the_folder_loads_with_pixels_and_labels_exact() {
        let dir = test_support::scratch("tiny");
        write_fixture(dir.path(), 3, 12, 2);
        let files = TinyImagenetFiles::locate(dir.path()).unwrap();
        assert_eq!((files.wnids.len(), files.train.len(), files.val.len()), (3, 36, 6));
        let data = files.load().unwrap();
        assert_eq!((data.classes, data.shape.len()), (3, TINY_PIXELS));
        for (n, &label) in data.train.labels.iter().enumerate() {
            let (c, j) = (n / 12, n % 12);
            assert_eq!(label as usize, c);
            check_image(&data.train.images[n * TINY_PIXELS..(n + 1) * TINY_PIXELS], 1000 * c + j);
        }
        assert_eq!(&data.test.labels[..], &[0, 1, 2, 0, 1, 2]);
        check_image(&data.test.images[5 * TINY_PIXELS..], 500_005);
        let print = files.fingerprint().unwrap();
        files.verify_fingerprint(Some(&print)).unwrap();
        std::fs::write(&files.val[0].0, image(7)).unwrap();
        assert!(
            err(files.verify_fingerprint(Some(&print))).contains("changed since the experiment was planned")
        );
    }

    #[test]
    fn colour_channels_come_out_red_green_blue() {
        let dir = test_support::scratch("tiny-colour");
        let path = dir.path().join("c.JPEG");
        // Cr above neutral: red up, green down, blue unchanged (BT.601: R = Y + 1.402 (Cr − 128)).
        std::fs::write(&path, flat_jpeg(64, 64, &[[100, 128, 178]; 64])).unwrap();
        let mut out = vec![0u8; TINY_PIXELS];
        decode(&path, &mut out).unwrap();
        let near = |v: u8, want: f64| (v as f64 - want).abs() <= 1.5;
        assert!(near(out[0], 100.0 + 1.402 * 50.0), "red {}", out[0]);
        assert!(near(out[4096], 100.0 - 0.714_136 * 50.0), "green {}", out[4096]);
        assert!(near(out[8193], 100.0), "blue {}", out[8193]);
    }

    #[test]
    fn malformed_images_and_listings_are_named() {
        let dir = test_support::scratch("tiny-bad");
        write_fixture(dir.path(), 2, 2, 1);
        let files = TinyImagenetFiles::locate(dir.path()).unwrap();
        let bad = &files.train[1].0;
        let bytes = image(3);
        std::fs::write(bad, &bytes[..bytes.len() / 2]).unwrap();
        let m = err(files.load());
        assert!(m.contains("n00000000_1.JPEG: not a readable JPEG"), "{m}");
        std::fs::write(bad, flat_jpeg(32, 32, &[[50, 128, 128]; 16])).unwrap();
        let m = err(files.load());
        assert!(m.contains("n00000000_1.JPEG: a 32×32 image; TinyImageNet's are 64×64"), "{m}");
        std::fs::write(bad, flat_jpeg(128, 64, &[[50, 128, 128]; 128])).unwrap();
        assert!(err(files.load()).contains("n00000000_1.JPEG"));
        let annotations = dir.path().join("val/val_annotations.txt");
        std::fs::write(&annotations, "val_0.JPEG\tn99999999\t0\t0\t1\t1\n").unwrap();
        let m = err(TinyImagenetFiles::locate(dir.path()));
        assert!(m.contains("val_annotations.txt: line 1: class id n99999999 is not in wnids.txt"), "{m}");
        std::fs::write(&annotations, "../../wnids.txt\tn00000000\n").unwrap();
        assert!(err(TinyImagenetFiles::locate(dir.path())).contains("is not a file name"));
        std::fs::write(dir.path().join("wnids.txt"), "n00000000\nn00000000\n").unwrap();
        assert!(err(TinyImagenetFiles::locate(dir.path()))
            .contains("wnids.txt: class id n00000000 appears twice"));
        std::fs::remove_dir_all(dir.path().join("train/n00000000")).unwrap();
        std::fs::write(dir.path().join("wnids.txt"), "n00000000\nn00000001\n").unwrap();
        let m = err(TinyImagenetFiles::locate(dir.path()));
        assert!(m.contains("cannot list the training images of class n00000000"), "{m}");
    }
}
