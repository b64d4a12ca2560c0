//! Downsampled ImageNet 32×32 (Chrabaszcz, Loshchilov & Hutter 2017, "A Downsampled Variant of
//! ImageNet as an Alternative to the CIFAR datasets", arXiv:1707.08819), read as distributed.
//!
//! Source: <https://image-net.org/download-images> (after registration), "Downsampled ImageNet
//! 32x32": `Imagenet32_train_npz.zip` unpacks to `train_data_batch_1.npz` …
//! `train_data_batch_10.npz` (1,281,167 images in all), `Imagenet32_val_npz.zip` to
//! `val_data.npz` (50,000). The same data also ships as Python pickles (`Imagenet32_train.zip`);
//! the `npz` variant is the one read here, because an `.npz` is a ZIP of `.npy` arrays — a
//! format fixed by NumPy's documentation that [`super::npz`] reads in a few hundred lines with
//! the inflater already in the tree — while the pickles would need an interpreter for Python's
//! pickle opcodes and NumPy's array reconstruction, and they differ between Python 2 and 3
//! writers.
//!
//! Each file holds `data`, `uint8` of shape (N, 3072): the 1,024 red values, then green, then
//! blue, each plane 32×32 row-major (the CIFAR layout); `labels`, N integers numbering the
//! 1,000 classes from **1** (stored 0-based here); and, in training files, `mean`, the mean
//! image, which is not used. No checksums are published for these files; the data folder's
//! BLAKE3 fingerprint guards a run against files changing under it, and each member's CRC-32
//! against a corrupt download.

use std::path::{Path, PathBuf};

use super::image::{check_dir, fingerprint_files, require_file, verify_fingerprint};
use super::npz::read_npz;
use super::StreamError;

/// Classes of ImageNet-1k.
pub const IMAGENET_CLASSES: usize = 1000;

/// Bytes of one image: 3 channels × 32 × 32.
pub const IMAGENET32_PIXELS: usize = 3 * 32 * 32;

const HOLDS: &str = "the downsampled ImageNet 32×32 training batches in the npz variant \
                     (train_data_batch_1.npz … train_data_batch_10.npz, from Imagenet32_train_npz.zip)";

/// The batch files of a downsampled ImageNet 32×32 folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imagenet32Files {
    /// The folder.
    pub dir: PathBuf,
    /// `train_data_batch_1.npz` … `train_data_batch_10.npz`, in order.
    pub train: Vec<PathBuf>,
    /// `val_data.npz`, when the folder has it (no stream needs it).
    pub val: Option<PathBuf>,
}

/// The images and 0-based labels of one batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imagenet32Batch {
    /// `count × 3072` bytes, image after image, channels first.
    pub images: Vec<u8>,
    /// One class in `0..1000` per image.
    pub labels: Vec<u16>,
}

impl Imagenet32Files {
    /// Finds the ten training batches (and the validation file if present) in `dir`.
    pub fn locate(dir: &Path) -> Result<Imagenet32Files, StreamError> {
        check_dir(dir, HOLDS)?;
        let train = (1..=10)
            .map(|i| require_file(dir, &format!("train_data_batch_{i}.npz"), HOLDS))
            .collect::<Result<_, _>>()?;
        let val = Some(dir.join("val_data.npz")).filter(|p| p.is_file());
        Ok(Imagenet32Files { dir: dir.to_path_buf(), train, val })
    }

    /// The fingerprint of the training batches' bytes (the files the streams read).
    pub fn fingerprint(&self) -> Result<String, StreamError> {
        fingerprint_files(&self.train)
    }

    /// Checks the training batches against the fingerprint recorded when the run was planned.
    pub fn verify_fingerprint(&self, expected: Option<&str>) -> Result<(), StreamError> {
        verify_fingerprint(&self.dir, &self.train, expected)
    }
}

/// Reads one batch file: `data` must be (N, 3072) bytes, `labels` N integers in 1..=1000.
pub fn read_batch(path: &Path) -> Result<Imagenet32Batch, StreamError> {
    let mut arrays = read_npz(path, &["data", "labels"])?;
    let labels = arrays.pop().expect("two arrays");
    let data = arrays.pop().expect("two arrays");
    let fail = |reason: String| StreamError::Data { path: path.to_path_buf(), reason };
    if data.descr != "|u1" || data.shape.len() != 2 || data.shape[1] != IMAGENET32_PIXELS {
        return Err(fail(format!(
            "`data` is {} of shape {:?}; expected uint8 (|u1) of shape (N, {IMAGENET32_PIXELS}): 32×32 images, \
             3 channels (for 64×64 files use the 32×32 download)",
            data.descr, data.shape
        )));
    }
    let count = data.shape[0];
    if labels.shape != [count] {
        return Err(fail(format!("`labels` has shape {:?}, but `data` holds {count} images", labels.shape)));
    }
    let labels = labels
        .integers()
        .into_iter()
        .enumerate()
        .map(|(i, label)| match label {
            1..=1000 => Ok(label as u16 - 1),
            _ => Err(fail(format!(
                "label {label} of image {i}; expected a class 1 to 1000 (the files number classes from 1)"
            ))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Imagenet32Batch { images: data.data, labels })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stream::npz::tests::{npy, zip};

    /// Pixel `k` of image `i` of a fixture.
    pub(crate) fn pixel(i: usize, k: usize) -> u8 {
        ((i * 13 + k * 5 + k / 1024) % 256) as u8
    }

    /// A batch file of images `first..first + labels.len()` with the given 1-based labels, as
    /// `numpy.savez_compressed` writes one (deflated, ZIP64 entries).
    pub(crate) fn batch_bytes(first: usize, labels: &[i64]) -> Vec<u8> {
        let n = labels.len();
        let data: Vec<u8> =
            (first..first + n).flat_map(|i| (0..IMAGENET32_PIXELS).map(move |k| pixel(i, k))).collect();
        let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        let mean = vec![0u8; IMAGENET32_PIXELS];
        zip(
            &[
                ("data.npy", npy("|u1", &[n, IMAGENET32_PIXELS], &data)),
                ("labels.npy", npy("<i8", &[n], &label_bytes)),
                ("mean.npy", npy("|u1", &[IMAGENET32_PIXELS], &mean)),
            ],
            true,
            true,
        )
    }

    /// A folder of ten training batches holding `per_class` images of each of the 1,000 classes:
    /// image i (numbered across the batches) has 1-based label 1 + (i mod 1000).
    pub(crate) fn write_fixture(dir: &Path, per_class: usize) {
        let per_batch = per_class * IMAGENET_CLASSES / 10;
        for b in 0..10 {
            let first = b * per_batch;
            let labels: Vec<i64> =
                (first..first + per_batch).map(|i| 1 + (i % IMAGENET_CLASSES) as i64).collect();
            std::fs::write(dir.join(format!("train_data_batch_{}.npz", b + 1)), batch_bytes(first, &labels))
                .unwrap();
        }
    }

    fn err(r: Result<impl std::fmt::Debug, StreamError>) -> String {
        r.expect_err("should have failed").to_string()
    }

    #[test]
    fn batches_load_bit_exact_with_labels_from_zero() {
        let dir = test_support::scratch("imagenet32");
        write_fixture(dir.path(), 1);
        std::fs::write(dir.path().join("val_data.npz"), batch_bytes(0, &[1000, 1, 7])).unwrap();
        let files = Imagenet32Files::locate(dir.path()).unwrap();
        assert_eq!(files.train.len(), 10);
        let val = read_batch(files.val.as_ref().unwrap()).unwrap();
        assert_eq!(val.labels, [999, 0, 6]);
        assert!(val
            .images
            .iter()
            .enumerate()
            .all(|(j, &v)| v == pixel(j / IMAGENET32_PIXELS, j % IMAGENET32_PIXELS)));
        let third = read_batch(&files.train[2]).unwrap();
        assert_eq!((third.labels.len(), third.labels[0], third.labels[99]), (100, 200, 299));
        assert_eq!(third.images[5 * IMAGENET32_PIXELS + 2048], pixel(205, 2048), "blue (0, 0) of image 205");
        let print = files.fingerprint().unwrap();
        files.verify_fingerprint(Some(&print)).unwrap();
        std::fs::write(&files.train[9], batch_bytes(0, &[1])).unwrap();
        assert!(
            err(files.verify_fingerprint(Some(&print))).contains("changed since the experiment was planned")
        );
    }

    #[test]
    fn bad_labels_shapes_and_missing_batches_are_named() {
        let dir = test_support::scratch("imagenet32-bad");
        let path = dir.path().join("train_data_batch_1.npz");
        std::fs::write(&path, batch_bytes(0, &[3, 0])).unwrap();
        let m = err(read_batch(&path));
        assert!(m.contains("train_data_batch_1.npz: label 0 of image 1; expected a class 1 to 1000"), "{m}");
        std::fs::write(&path, batch_bytes(0, &[1001])).unwrap();
        assert!(err(read_batch(&path)).contains("label 1001 of image 0"));
        let sixty_four = zip(
            &[
                ("data.npy", npy("|u1", &[1, 12_288], &[0; 12_288])),
                ("labels.npy", npy("<i8", &[1], &1i64.to_le_bytes())),
            ],
            false,
            false,
        );
        std::fs::write(&path, sixty_four).unwrap();
        let m = err(read_batch(&path));
        assert!(
            m.contains("`data` is |u1 of shape [1, 12288]; expected uint8 (|u1) of shape (N, 3072)"),
            "{m}"
        );
        let mismatched = zip(
            &[("data.npy", npy("|u1", &[1, 3072], &[0; 3072])), ("labels.npy", npy("<i8", &[2], &[0; 16]))],
            false,
            false,
        );
        std::fs::write(&path, mismatched).unwrap();
        assert!(err(read_batch(&path)).contains("`labels` has shape [2], but `data` holds 1 images"));
        let m = err(Imagenet32Files::locate(dir.path()));
        assert!(m.contains("missing `train_data_batch_2.npz`"), "{m}");
    }
}
