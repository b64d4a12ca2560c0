//! Labelled colour images as the image loaders return them, and what every image stream shares:
//! per-channel normalisation and the data files' fingerprint.
//!
//! Images are kept as bytes, channels first (all red values, then green, then blue, each plane
//! row-major), which is the CIFAR binary layout and the downsampled-ImageNet layout, so loading
//! copies nothing into another order and a 50,000-image CIFAR split costs 150 MB.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::StreamError;
use crate::model::layer::Shape;

/// Images and labels of one split (training or test), shared by every task that uses them.
#[derive(Clone)]
pub struct ImageSet {
    /// `count × channels × height × width` bytes, image after image, channels first.
    pub images: Arc<[u8]>,
    /// One class per image, below the data set's class count (0-based).
    pub labels: Arc<[u16]>,
}

impl std::fmt::Debug for ImageSet {
    /// A summary: the pixels themselves would fill a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageSet {{ examples: {}, bytes: {} }}", self.len(), self.images.len())
    }
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows of each class, in file order: `rows[c]` lists the images of class `c`.
    pub(crate) fn rows_by_class(&self, classes: usize) -> Vec<Vec<u32>> {
        let mut rows = vec![Vec::new(); classes];
        for (i, &label) in self.labels.iter().enumerate() {
            rows[label as usize].push(i as u32);
        }
        rows
    }
}

/// A loaded image data set: its training and test images and their common shape.
#[derive(Clone, Debug)]
pub struct ImageData {
    /// The training images.
    pub train: ImageSet,
    /// The test images.
    pub test: ImageSet,
    /// Shape of one image (always [`Shape::Image`]).
    pub shape: Shape,
    /// Number of classes; every label is below it.
    pub classes: usize,
}

/// Per-channel mean and standard deviation of pixel values scaled to [0, 1]: inputs are
/// `(byte / 255 − mean[c]) / std[c]`, as torchvision's `ToTensor` then `Normalize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Mean of each channel (red, green, blue).
    pub mean: Vec<f32>,
    /// Standard deviation of each channel; every value > 0.
    pub std: Vec<f32>,
}

impl Normalization {
    /// CIFAR-10's training-set statistics as the literature quotes them (e.g. the
    /// loss-of-plasticity code and most PyTorch CIFAR recipes).
    pub fn cifar10() -> Self {
        Normalization { mean: vec![0.4914, 0.4822, 0.4465], std: vec![0.2470, 0.2435, 0.2616] }
    }

    /// CIFAR-100's training-set statistics, the values the loss-of-plasticity class-incremental
    /// CIFAR-100 experiment uses.
    pub fn cifar100() -> Self {
        Normalization { mean: vec![0.5071, 0.4865, 0.4409], std: vec![0.2673, 0.2564, 0.2762] }
    }

    /// No normalisation: pixels scaled to [0, 1] only.
    pub fn identity(channels: usize) -> Self {
        Normalization { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Every value finite, every std > 0, one mean and one std per channel.
    pub(crate) fn check(&self, channels: usize) -> Result<(), String> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(format!(
                "`normalize` needs {channels} means and {channels} stds (one per channel), not {} and {}",
                self.mean.len(),
                self.std.len()
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("`normalize.std` values must be finite and > 0, not {s}"));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("`normalize.mean` values must be finite, not {m}"));
        }
        Ok(())
    }

    /// One table per channel: entry `v` is `(v / 255 − mean) / std` in f32, so gathering an
    /// input is a lookup and equals the formula bit for bit.
    pub(crate) fn tables(&self) -> Arc<[[f32; 256]]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&mean, &std)| std::array::from_fn(|v| (v as f32 / 255.0 - mean) / std))
            .collect()
    }
}

/// A fingerprint of files' bytes (BLAKE3 over each file's length and bytes, 16 hex digits), as
/// [`MnistFiles::fingerprint`](super::MnistFiles::fingerprint): it stands for the data in a
/// run's identity, and a worker refuses files that changed since the run was planned.
pub(crate) fn fingerprint_files(paths: &[PathBuf]) -> Result<String, StreamError> {
    let mut hasher = blake3::Hasher::new();
    for path in paths {
        let bytes = std::fs::read(path)
            .map_err(|e| StreamError::Data { path: path.clone(), reason: format!("cannot read: {e}") })?;
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().to_hex()[..16].to_string())
}

/// Checks `paths` against the fingerprint recorded when the run was planned (nothing to check
/// when none was).
pub(crate) fn verify_fingerprint(
    dir: &Path,
    paths: &[PathBuf],
    expected: Option<&str>,
) -> Result<(), StreamError> {
    let Some(expected) = expected else { return Ok(()) };
    let found = fingerprint_files(paths)?;
    if found != expected {
        return Err(StreamError::Data {
            path: dir.to_path_buf(),
            reason: format!(
                "the data files changed since the experiment was planned (fingerprint {found}, expected \
                 {expected}); results would mix two datasets — restore the files or start a new experiment"
            ),
        });
    }
    Ok(())
}

/// The data folder itself: an error naming it when it is missing.
pub(crate) fn check_dir(dir: &Path, holds: &str) -> Result<(), StreamError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(StreamError::Data {
            path: dir.to_path_buf(),
            reason: format!("the data folder does not exist (or is not a folder); it must hold {holds}"),
        })
    }
}

/// A file of the data folder that must exist.
pub(crate) fn require_file(dir: &Path, name: &str, holds: &str) -> Result<PathBuf, StreamError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(StreamError::Data {
            path: dir.to_path_buf(),
            reason: format!("missing `{name}`; the folder must hold {holds}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_tables_equal_the_formula_bit_for_bit() {
        let n = Normalization::cifar100();
        let tables = n.tables();
        assert_eq!(tables.len(), 3);
        for (c, table) in tables.iter().enumerate() {
            for v in [0u8, 1, 128, 254, 255] {
                let expected = (v as f32 / 255.0 - n.mean[c]) / n.std[c];
                assert_eq!(table[v as usize].to_bits(), expected.to_bits(), "channel {c}, byte {v}");
            }
        }
        assert_eq!(Normalization::identity(1).tables()[0][51], 0.2);
    }

    #[test]
    fn normalisation_needs_one_positive_std_per_channel() {
        assert!(Normalization::cifar10().check(3).is_ok());
        let m = Normalization::cifar10().check(1).unwrap_err();
        assert!(m.contains("needs 1 means and 1 stds (one per channel), not 3 and 3"), "{m}");
        let bad = Normalization { mean: vec![0.5], std: vec![0.0] };
        assert!(bad.check(1).unwrap_err().contains("must be finite and > 0, not 0"));
    }

    #[test]
    fn rows_are_grouped_by_class_in_file_order() {
        let set = ImageSet { images: vec![0; 5].into(), labels: vec![2, 0, 2, 1, 2].into() };
        assert_eq!(set.rows_by_class(4), vec![vec![1], vec![3], vec![0, 2, 4], vec![]]);
    }
}
