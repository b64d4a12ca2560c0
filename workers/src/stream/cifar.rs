//! The binary versions of CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read as distributed.
//!
//! Source: <https://www.cs.toronto.edu/~kriz/cifar.html>, "CIFAR-10 binary version (suitable for
//! C programs)" (`cifar-10-binary.tar.gz`, MD5 `c32a1d4ab5d03f1284b67883e8d87530` as the page
//! lists it) and "CIFAR-100 binary version" (`cifar-100-binary.tar.gz`, MD5
//! `03b5dce01913d631647c71ecec9e9cb8`). The binary version is chosen over the Python pickles
//! because it is a plain sequence of fixed-size records that needs no decoder:
//!
//! * CIFAR-10, folder `cifar-10-batches-bin/`: `data_batch_1.bin` … `data_batch_5.bin` (the
//!   50,000 training images) and `test_batch.bin` (10,000), each a sequence of 3,073-byte
//!   records: 1 label byte (0–9), then 3,072 pixel bytes — the 1,024 red values, the 1,024
//!   green, the 1,024 blue, each plane 32×32 row-major;
//! * CIFAR-100, folder `cifar-100-binary/`: `train.bin` (50,000) and `test.bin` (10,000),
//!   3,074-byte records: coarse label (0–19), fine label (0–99), then the 3,072 pixel bytes.
//!   The streams use the fine labels.
//!
//! The canonical files hold 10,000 records each (CIFAR-10) or 50,000 / 10,000 (CIFAR-100); any
//! whole number of records is accepted, so subsets and test fixtures load the same way, but a
//! size that is not a whole number of records is a truncated or foreign file and an error
//! naming it. The data folder's fingerprint is over the files as read (BLAKE3, like MNIST's).

use std::path::{Path, PathBuf};

use super::image::{check_dir, fingerprint_files, require_file, verify_fingerprint, ImageData, ImageSet};
use super::StreamError;
use crate::model::layer::Shape;

/// Bytes of one image: 3 channels × 32 × 32.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;

/// Which of the two data sets a folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarVariant {
    /// CIFAR-10: 10 classes, five training batches and a test batch.
    Cifar10,
    /// CIFAR-100: 100 fine classes in 20 coarse ones, one training and one test file.
    Cifar100,
}

impl CifarVariant {
    /// Label bytes before each record's pixels.
    fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 => 2,
        }
    }

    /// Bytes of one record.
    pub fn record(self) -> usize {
        self.label_bytes() + CIFAR_PIXELS
    }

    /// Classes of the label the streams use (CIFAR-100's fine label).
    pub fn classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 => 100,
        }
    }

    fn training_files(self) -> Vec<String> {
        match self {
            CifarVariant::Cifar10 => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            CifarVariant::Cifar100 => vec!["train.bin".into()],
        }
    }

    fn test_file(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "test_batch.bin",
            CifarVariant::Cifar100 => "test.bin",
        }
    }

    fn holds(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => {
                "the CIFAR-10 binary version (cifar-10-batches-bin: data_batch_1.bin … data_batch_5.bin, \
                 test_batch.bin)"
            }
            CifarVariant::Cifar100 => "the CIFAR-100 binary version (cifar-100-binary: train.bin, test.bin)",
        }
    }
}

/// The files of a CIFAR binary folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarFiles {
    /// The folder.
    pub dir: PathBuf,
    /// Which data set.
    pub variant: CifarVariant,
    /// The training files, in order (their records are concatenated).
    pub train: Vec<PathBuf>,
    /// The test file.
    pub test: PathBuf,
}

impl CifarFiles {
    /// Finds the files of `variant` in `dir`; the error names the folder and the first missing
    /// file.
    pub fn locate(dir: &Path, variant: CifarVariant) -> Result<CifarFiles, StreamError> {
        check_dir(dir, variant.holds())?;
        let train = variant
            .training_files()
            .iter()
            .map(|name| require_file(dir, name, variant.holds()))
            .collect::<Result<_, _>>()?;
        let test = require_file(dir, variant.test_file(), variant.holds())?;
        Ok(CifarFiles { dir: dir.to_path_buf(), variant, train, test })
    }

    fn all(&self) -> Vec<PathBuf> {
        self.train.iter().chain([&self.test]).cloned().collect()
    }

    /// The fingerprint of the files' bytes.
    pub fn fingerprint(&self) -> Result<String, StreamError> {
        fingerprint_files(&self.all())
    }

    /// Checks the files against the fingerprint recorded when the run was planned.
    pub fn verify_fingerprint(&self, expected: Option<&str>) -> Result<(), StreamError> {
        verify_fingerprint(&self.dir, &self.all(), expected)
    }

    /// Training and test image counts from the files' sizes alone (no read), each file a whole,
    /// non-zero number of records. Cheap, so recipe validation runs it.
    pub fn check_sizes(&self) -> Result<(usize, usize), StreamError> {
        let train = self.train.iter().map(|p| records(p, self.variant)).sum::<Result<usize, _>>()?;
        Ok((train, records(&self.test, self.variant)?))
    }

    /// Reads every file, checking sizes and labels.
    pub fn load(&self) -> Result<ImageData, StreamError> {
        let mut train = Parts::default();
        for path in &self.train {
            read_records(path, self.variant, &mut train)?;
        }
        let mut test = Parts::default();
        read_records(&self.test, self.variant, &mut test)?;
        Ok(ImageData {
            train: train.finish(),
            test: test.finish(),
            shape: Shape::Image { channels: 3, height: 32, width: 32 },
            classes: self.variant.classes(),
        })
    }
}

/// Images and labels as they are read, before they are shared.
#[derive(Default)]
struct Parts {
    images: Vec<u8>,
    labels: Vec<u16>,
}

impl Parts {
    fn finish(self) -> ImageSet {
        ImageSet { images: self.images.into(), labels: self.labels.into() }
    }
}

/// Records in `path`, from its size.
fn records(path: &Path, variant: CifarVariant) -> Result<usize, StreamError> {
    let len = std::fs::metadata(path)
        .map_err(|e| StreamError::Data { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?
        .len();
    let record = variant.record() as u64;
    if len == 0 || len % record != 0 {
        return Err(StreamError::Data {
            path: path.to_path_buf(),
            reason: format!(
                "{len} bytes is not a whole number of {record}-byte records ({} label byte(s) and \
                 {CIFAR_PIXELS} pixels each); the file is truncated or not the binary version",
                variant.label_bytes()
            ),
        });
    }
    Ok((len / record) as usize)
}

/// Appends the records of `path` to `parts`.
fn read_records(path: &Path, variant: CifarVariant, parts: &mut Parts) -> Result<(), StreamError> {
    let count = records(path, variant)?;
    let bytes = std::fs::read(path)
        .map_err(|e| StreamError::Data { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?;
    // The size is checked again on the bytes read: the file may have changed since.
    if bytes.len() != count * variant.record() {
        return Err(StreamError::Data {
            path: path.to_path_buf(),
            reason: format!(
                "changed while being read ({} bytes, expected {})",
                bytes.len(),
                count * variant.record()
            ),
        });
    }
    parts.images.reserve(count * CIFAR_PIXELS);
    parts.labels.reserve(count);
    for (i, record) in bytes.chunks_exact(variant.record()).enumerate() {
        let (labels, pixels) = record.split_at(variant.label_bytes());
        let label = match variant {
            CifarVariant::Cifar10 => labels[0],
            CifarVariant::Cifar100 => {
                if labels[0] >= 20 {
                    return Err(StreamError::Data {
                        path: path.to_path_buf(),
                        reason: format!(
                            "coarse label {} of record {i}; expected a superclass 0 to 19",
                            labels[0]
                        ),
                    });
                }
                labels[1]
            }
        };
        if label as usize >= variant.classes() {
            return Err(StreamError::Data {
                path: path.to_path_buf(),
                reason: format!(
                    "label {label} of record {i}; expected a class 0 to {}",
                    variant.classes() - 1
                ),
            });
        }
        parts.labels.push(label as u16);
        parts.images.extend_from_slice(pixels);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Pixel `k` of image `i`: distinct per image, channel and position within 256 values.
    pub(crate) fn pixel(i: usize, k: usize) -> u8 {
        ((i * 31 + k * 7 + k / 1024) % 256) as u8
    }

    /// Writes `count` records starting at image `first`, image `i` of class `label(i)`.
    fn records_bytes(
        variant: CifarVariant,
        first: usize,
        count: usize,
        label: &dyn Fn(usize) -> u8,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for i in first..first + count {
            if variant == CifarVariant::Cifar100 {
                out.push(label(i) / 5);
            }
            out.push(label(i));
            out.extend((0..CIFAR_PIXELS).map(|k| pixel(i, k)));
        }
        out
    }

    /// A CIFAR binary folder of `per_file` training records per training file and `test`
    /// test records; image `i` (numbered across the training files, then the test file on its
    /// own from 0) has class `i % classes`.
    pub(crate) fn write_fixture(dir: &Path, variant: CifarVariant, per_file: usize, test: usize) {
        let classes = variant.classes();
        let label = |i: usize| (i % classes) as u8;
        for (f, name) in variant.training_files().iter().enumerate() {
            std::fs::write(dir.join(name), records_bytes(variant, f * per_file, per_file, &label)).unwrap();
        }
        std::fs::write(dir.join(variant.test_file()), records_bytes(variant, 0, test, &label)).unwrap();
    }

    fn err(r: Result<impl std::fmt::Debug, StreamError>) -> String {
        r.expect_err("should have failed").to_string()
    }

    #[test]
    fn cifar10_pixels_and_labels_load_bit_exact() {
        let dir = test_support::scratch("cifar10");
        write_fixture(dir.path(), CifarVariant::Cifar10, 7, 4);
        let files = CifarFiles::locate(dir.path(), CifarVariant::Cifar10).unwrap();
        assert_eq!(files.check_sizes().unwrap(), (35, 4));
        let data = files.load().unwrap();
        assert_eq!((data.train.len(), data.test.len(), data.classes), (35, 4, 10));
        assert_eq!(data.shape, Shape::Image { channels: 3, height: 32, width: 32 });
        for i in 0..35 {
            assert_eq!(data.train.labels[i], (i % 10) as u16);
            let image = &data.train.images[i * CIFAR_PIXELS..(i + 1) * CIFAR_PIXELS];
            assert!(image.iter().enumerate().all(|(k, &v)| v == pixel(i, k)), "image {i}");
        }
        // The red plane first: byte 1 of a record is red (0, 0), byte 1 + 1024 green (0, 0).
        let raw = std::fs::read(dir.path().join("data_batch_2.bin")).unwrap();
        assert_eq!(
            (raw[1], raw[1 + 1024 + 33]),
            (data.train.images[7 * CIFAR_PIXELS], data.train.images[7 * CIFAR_PIXELS + 1024 + 33])
        );
        assert_eq!(&data.test.labels[..], &[0, 1, 2, 3]);
        assert_eq!(
            &data.test.images[3 * CIFAR_PIXELS..4 * CIFAR_PIXELS],
            &(0..CIFAR_PIXELS).map(|k| pixel(3, k)).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn cifar100_uses_the_fine_label_and_checks_the_coarse_one() {
        let dir = test_support::scratch("cifar100");
        write_fixture(dir.path(), CifarVariant::Cifar100, 230, 100);
        let files = CifarFiles::locate(dir.path(), CifarVariant::Cifar100).unwrap();
        let data = files.load().unwrap();
        assert_eq!((data.train.len(), data.test.len(), data.classes), (230, 100, 100));
        assert_eq!(data.train.labels[199], 99);
        assert_eq!(data.train.images[199 * CIFAR_PIXELS + 3071], pixel(199, 3071));
        let path = dir.path().join("test.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3 * 3074] = 20;
        std::fs::write(&path, &bytes).unwrap();
        let m = err(files.load());
        assert!(m.contains("test.bin: coarse label 20 of record 3; expected a superclass 0 to 19"), "{m}");
        bytes[3 * 3074] = 0;
        bytes[5 * 3074 + 1] = 100;
        std::fs::write(&path, &bytes).unwrap();
        let m = err(files.load());
        assert!(m.contains("test.bin: label 100 of record 5; expected a class 0 to 99"), "{m}");
    }

    #[test]
    fn bad_labels_truncation_and_missing_files_are_named() {
        let dir = test_support::scratch("cifar-bad");
        write_fixture(dir.path(), CifarVariant::Cifar10, 3, 2);
        let path = dir.path().join("data_batch_4.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3073] = 10;
        std::fs::write(&path, &bytes).unwrap();
        let files = CifarFiles::locate(dir.path(), CifarVariant::Cifar10).unwrap();
        let m = err(files.load());
        assert!(m.contains("data_batch_4.bin: label 10 of record 1; expected a class 0 to 9"), "{m}");
        std::fs::write(&path, &bytes[..3073 * 2 + 100]).unwrap();
        for m in [err(files.check_sizes()), err(files.load())] {
            assert!(
                m.contains("data_batch_4.bin: 6246 bytes is not a whole number of 3073-byte records"),
                "{m}"
            );
        }
        std::fs::write(&path, b"").unwrap();
        assert!(err(files.check_sizes()).contains("data_batch_4.bin: 0 bytes"));
        // A CIFAR-100 file where CIFAR-10 is expected: 3,074-byte records.
        std::fs::write(&path, vec![0u8; 3074 * 3]).unwrap();
        assert!(err(files.check_sizes()).contains("not a whole number of 3073-byte records"));
        std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
        let m = err(CifarFiles::locate(dir.path(), CifarVariant::Cifar10));
        assert!(m.contains("missing `test_batch.bin`") && m.contains(&*dir.path().to_string_lossy()), "{m}");
        let m = err(CifarFiles::locate(&dir.path().join("absent"), CifarVariant::Cifar100));
        assert!(m.contains("absent: the data folder does not exist"), "{m}");
    }

    #[test]
    fn a_changed_file_no_longer_matches_its_fingerprint() {
        let dir = test_support::scratch("cifar-print");
        write_fixture(dir.path(), CifarVariant::Cifar100, 2, 1);
        let files = CifarFiles::locate(dir.path(), CifarVariant::Cifar100).unwrap();
        let print = files.fingerprint().unwrap();
        assert_eq!(print.len(), 16);
        files.verify_fingerprint(Some(&print)).unwrap();
        write_fixture(dir.path(), CifarVariant::Cifar100, 3, 1);
        assert!(
            err(files.verify_fingerprint(Some(&print))).contains("changed since the experiment was planned")
        );
    }
}
