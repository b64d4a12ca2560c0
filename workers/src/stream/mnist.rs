//! The four MNIST files of a data folder (MNIST, Fashion-MNIST, or a subset in the same format).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::idx::{read_idx, read_idx_header, IdxHeader};
use super::StreamError;

/// Number of classes in MNIST and Fashion-MNIST; labels must lie in `0..CLASSES`.
pub const CLASSES: usize = 10;

/// The file names of the standard distribution, without the optional `.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The paths of the four IDX files in a data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistFiles {
    /// `train-images-idx3-ubyte[.gz]`.
    pub train_images: PathBuf,
    /// `train-labels-idx1-ubyte[.gz]`.
    pub train_labels: PathBuf,
    /// `t10k-images-idx3-ubyte[.gz]`.
    pub test_images: PathBuf,
    /// `t10k-labels-idx1-ubyte[.gz]`.
    pub test_labels: PathBuf,
}

/// What the headers of the four files say, without their data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MnistShape {
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// Image rows (28 for MNIST).
    pub rows: usize,
    /// Image columns (28 for MNIST).
    pub cols: usize,
}

impl MnistShape {
    /// Pixels per image, the input size of the streams built on it.
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }
}

/// Looks for `name` or `name.gz` in `dir`; the uncompressed file wins when both exist.
fn find(dir: &Path, name: &str) -> Result<PathBuf, StreamError> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(StreamError::Data {
        path: dir.to_path_buf(),
        reason: format!(
            "missing `{name}` (or `{name}.gz`); the data folder must exist and hold the four \
             MNIST IDX files {TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES}, {TEST_LABELS}, \
             raw or gzip-compressed"
        ),
    })
}

impl MnistFiles {
    /// Finds the four files in `dir`, each raw or with `.gz`. The error names the folder and
    /// the first missing file.
    pub fn locate(dir: &Path) -> Result<MnistFiles, StreamError> {
        if !dir.is_dir() {
            return Err(StreamError::Data {
                path: dir.to_path_buf(),
                reason: "the data folder does not exist (or is not a folder); it must hold the \
                         four MNIST IDX files"
                    .into(),
            });
        }
        Ok(MnistFiles {
            train_images: find(dir, TRAIN_IMAGES)?,
            train_labels: find(dir, TRAIN_LABELS)?,
            test_images: find(dir, TEST_IMAGES)?,
            test_labels: find(dir, TEST_LABELS)?,
        })
    }

    /// A fingerprint of the four files' bytes (BLAKE3, 16 hex digits). Part of a run's identity
    /// instead of the folder's path, so the same data reached by another path keeps its runs,
    /// and other data under the same path does not reuse them; a worker refuses data whose
    /// fingerprint changed after the experiment was planned.
    pub fn fingerprint(&self) -> Result<String, StreamError> {
        let mut hasher = blake3::Hasher::new();
        for path in [&self.train_images, &self.train_labels, &self.test_images, &self.test_labels] {
            let bytes = std::fs::read(path)
                .map_err(|e| StreamError::Data { path: path.clone(), reason: format!("cannot read: {e}") })?;
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(hasher.finalize().to_hex()[..16].to_string())
    }

    /// Checks the files against the fingerprint recorded when the run was planned (nothing to
    /// check when none was recorded, as for hand-written specs).
    pub fn verify_fingerprint(&self, expected: Option<&str>) -> Result<(), StreamError> {
        let Some(expected) = expected else { return Ok(()) };
        let found = self.fingerprint()?;
        if found != expected {
            return Err(StreamError::Data {
                path: self.train_images.parent().map(Path::to_path_buf).unwrap_or_default(),
                reason: format!(
                    "the data files changed since the experiment was planned (fingerprint {found}, \
                     expected {expected}); results would mix two datasets — restore the files or \
                     start a new experiment"
                ),
            });
        }
        Ok(())
    }

    /// Reads only the four headers (a few bytes each): images are count × rows × columns,
    /// labels a count equal to the images', and training and test images have the same size.
    /// Cheap, so the orchestrator runs it when it validates a recipe.
    pub fn check_headers(&self) -> Result<MnistShape, StreamError> {
        let train = pair_shape(&read_idx_header(&self.train_images)?, &read_idx_header(&self.train_labels)?)?;
        let test = pair_shape(&read_idx_header(&self.test_images)?, &read_idx_header(&self.test_labels)?)?;
        if (train.1, train.2) != (test.1, test.2) {
            return Err(StreamError::Data {
                path: self.test_images.clone(),
                reason: format!(
                    "images are {}×{}, but the training images ({}) are {}×{}",
                    test.1,
                    test.2,
                    self.train_images.display(),
                    train.1,
                    train.2
                ),
            });
        }
        Ok(MnistShape { train: train.0, test: test.0, rows: train.1, cols: train.2 })
    }
}

/// Checks that `images` is count × rows × columns with non-empty images and `labels` a list of
/// the same count; returns (count, rows, columns).
fn pair_shape(images: &IdxHeader, labels: &IdxHeader) -> Result<(usize, usize, usize), StreamError> {
    if images.dims.len() != 3 {
        return Err(StreamError::Data {
            path: images.path.clone(),
            reason: format!(
                "magic number 0x{:08X}, expected 0x00000803 (images: count × rows × columns)",
                images.magic()
            ),
        });
    }
    if labels.dims.len() != 1 {
        return Err(StreamError::Data {
            path: labels.path.clone(),
            reason: format!("magic number 0x{:08X}, expected 0x00000801 (labels: a list)", labels.magic()),
        });
    }
    let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if rows == 0 || cols == 0 {
        return Err(StreamError::Data {
            path: images.path.clone(),
            reason: format!("images of {rows}×{cols} pixels; expected at least one pixel"),
        });
    }
    if labels.dims[0] != count {
        return Err(StreamError::Data {
            path: labels.path.clone(),
            reason: format!(
                "{} labels, but {} holds {count} images; the counts must match",
                labels.dims[0],
                images.path.display()
            ),
        });
    }
    Ok((count, rows, cols))
}

/// Images and labels of one split (training or test), shared by every task that uses them.
#[derive(Clone)]
pub struct LabelledImages {
    /// `count × rows × cols` grey levels 0–255, row-major, image after image.
    pub images: Arc<[u8]>,
    /// One class in `0..10` per image.
    pub labels: Arc<[u8]>,
}

impl std::fmt::Debug for LabelledImages {
    /// A summary: the pixels themselves would fill a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LabelledImages {{ examples: {}, bytes: {} }}", self.len(), self.images.len())
    }
}

impl LabelledImages {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A loaded MNIST-format dataset.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training images (`train-*`).
    pub train: LabelledImages,
    /// The test images (`t10k-*`).
    pub test: LabelledImages,
    /// Image rows.
    pub rows: usize,
    /// Image columns.
    pub cols: usize,
}

impl Mnist {
    /// Pixels per image (`rows × cols`; 784 for MNIST).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// Loads the four files, keeping the first `train_examples` training and `test_examples`
    /// test examples when given (all when `None`). Checks shapes as
    /// [`MnistFiles::check_headers`] does, that every label is below 10, and that a requested
    /// number of examples is between 1 and the number the files hold.
    pub fn load(
        files: &MnistFiles,
        train_examples: Option<usize>,
        test_examples: Option<usize>,
    ) -> Result<Mnist, StreamError> {
        let shape = files.check_headers()?;
        let train = load_split(&files.train_images, &files.train_labels, train_examples, "train_examples")?;
        let test = load_split(&files.test_images, &files.test_labels, test_examples, "test_examples")?;
        Ok(Mnist { train, test, rows: shape.rows, cols: shape.cols })
    }
}

/// `train_examples` and `test_examples` of the MNIST streams: absent (every example) or ≥ 1.
pub(crate) fn check_limits_positive(train: Option<usize>, test: Option<usize>) -> Result<(), String> {
    for (limit, field) in [(train, "train_examples"), (test, "test_examples")] {
        if limit == Some(0) {
            return Err(format!("`{field}` must be ≥ 1 (leave it out to use every example)"));
        }
    }
    Ok(())
}

/// The data checks of the MNIST streams that keep no data: the four files exist, their
/// headers are well formed, a gzip file's payload decompresses (checksum included) to exactly
/// the size its header announces — streamed and discarded, so a corrupt download is a
/// validation error (exit 2) rather than a failed run — and the example limits fit.
/// The digits' image shape, one grey channel of the files' rows × columns (28 × 28 for MNIST),
/// from the headers alone.
pub(crate) fn image_shape(dir: &Path) -> Result<crate::model::layer::Shape, StreamError> {
    let shape = MnistFiles::locate(dir)?.check_headers()?;
    Ok(crate::model::layer::Shape::Image { channels: 1, height: shape.rows, width: shape.cols })
}

pub(crate) fn check_folder(dir: &Path, train: Option<usize>, test: Option<usize>) -> Result<(), StreamError> {
    let files = MnistFiles::locate(dir)?;
    let shape = files.check_headers()?;
    for path in [&files.train_images, &files.train_labels, &files.test_images, &files.test_labels] {
        super::idx::verify_idx(path)?;
    }
    check_limit(train, shape.train, "train_examples", &files.train_images)?;
    check_limit(test, shape.test, "test_examples", &files.test_images)?;
    Ok(())
}

/// Checks that a requested example count is in `1..=available`.
pub(crate) fn check_limit(
    limit: Option<usize>,
    available: usize,
    field: &str,
    images: &Path,
) -> Result<usize, StreamError> {
    match limit {
        None => Ok(available),
        Some(n) if n >= 1 && n <= available => Ok(n),
        Some(n) => Err(StreamError::Data {
            path: images.to_path_buf(),
            reason: format!(
                "`{field}` is {n}, but the file holds {available} examples; use 1 to {available}"
            ),
        }),
    }
}

fn load_split(
    images_path: &Path,
    labels_path: &Path,
    limit: Option<usize>,
    field: &str,
) -> Result<LabelledImages, StreamError> {
    let images = read_idx(images_path)?;
    let labels = read_idx(labels_path)?;
    // The headers were checked (including dims) by `check_headers`; read_idx re-reads them, so
    // check again in case a file changed in between.
    let (count, rows, cols) = pair_shape(
        &IdxHeader { path: images_path.to_path_buf(), dims: images.dims.clone(), gzip: false },
        &IdxHeader { path: labels_path.to_path_buf(), dims: labels.dims.clone(), gzip: false },
    )?;
    let n = check_limit(limit, count, field, images_path)?;
    if let Some(i) = labels.data[..n].iter().position(|&l| l as usize >= CLASSES) {
        return Err(StreamError::Data {
            path: labels_path.to_path_buf(),
            reason: format!("label {} of example {i}; expected a class 0 to 9", labels.data[i]),
        });
    }
    let pixels = rows * cols;
    Ok(LabelledImages { images: Arc::from(&images.data[..n * pixels]), labels: Arc::from(&labels.data[..n]) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stream::idx::tests::{gzip, idx_bytes};

    /// Writes a small MNIST-format folder: `train` and `test` images of 2×3 pixels whose
    /// pixels all equal 10 × label + k (k the pixel index), labels cycling through 0..10.
    /// The training files are gzip-compressed with `.gz`, the test files raw.
    pub(crate) fn write_fixture(dir: &Path, train: usize, test: usize) {
        let write = |name: &str, count: usize, gz: bool| {
            let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
            let images: Vec<u8> = labels.iter().flat_map(|&l| (0..6).map(move |k| 10 * l + k)).collect();
            let img = idx_bytes(&[count as u32, 2, 3], &images);
            let lab = idx_bytes(&[count as u32], &labels);
            let (img, lab, ext) = if gz { (gzip(&img), gzip(&lab), ".gz") } else { (img, lab, "") };
            std::fs::write(dir.join(format!("{name}-images-idx3-ubyte{ext}")), img).unwrap();
            std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte{ext}")), lab).unwrap();
        };
        write("train", train, true);
        write("t10k", test, false);
    }

    fn err(r: Result<impl std::fmt::Debug, StreamError>) -> String {
        r.expect_err("should have failed").to_string()
    }

    #[test]
    fn loads_a_mixed_raw_and_gzip_folder() {
        let dir = test_support::scratch("mnist-good");
        write_fixture(dir.path(), 30, 20);
        let files = MnistFiles::locate(dir.path()).unwrap();
        assert!(files.train_images.to_string_lossy().ends_with(".gz"));
        assert!(files.test_labels.ends_with("t10k-labels-idx1-ubyte"));
        let shape = files.check_headers().unwrap();
        assert_eq!(shape, MnistShape { train: 30, test: 20, rows: 2, cols: 3 });
        let m = Mnist::load(&files, None, Some(12)).unwrap();
        assert_eq!((m.train.len(), m.test.len(), m.pixels()), (30, 12, 6));
        assert_eq!(m.train.images.len(), 30 * 6);
        assert_eq!(&m.train.images[6 * 13..6 * 14], &[30, 31, 32, 33, 34, 35]);
        assert_eq!(m.test.labels[11], 1);
    }

    #[test]
    fn validation_finds_a_garbled_gzip_payload_before_any_run() {
        let dir = test_support::scratch("mnist-garbled");
        write_fixture(dir.path(), 30, 20);
        check_folder(dir.path(), None, None).unwrap();
        let path = dir.path().join("train-images-idx3-ubyte.gz");
        let mut gz = std::fs::read(&path).unwrap();
        // Keep the header's bytes readable; garble the end of the stream (data and CRC).
        let n = gz.len();
        gz[n - 10..].iter_mut().for_each(|b| *b ^= 0xA5);
        std::fs::write(&path, &gz).unwrap();
        assert!(MnistFiles::locate(dir.path()).unwrap().check_headers().is_ok());
        let m = err(check_folder(dir.path(), None, None));
        assert!(m.contains("train-images-idx3-ubyte.gz"), "{m}");
        // Truncated download: likewise.
        std::fs::write(&path, &gz[..n / 2]).unwrap();
        let m = err(check_folder(dir.path(), None, None));
        assert!(m.contains("train-images-idx3-ubyte.gz"), "{m}");
    }

    #[test]
    fn a_changed_file_no_longer_matches_its_fingerprint() {
        let dir = test_support::scratch("mnist-fingerprint");
        write_fixture(dir.path(), 5, 3);
        let files = MnistFiles::locate(dir.path()).unwrap();
        let print = files.fingerprint().unwrap();
        assert_eq!(print.len(), 16);
        files.verify_fingerprint(Some(&print)).unwrap();
        files.verify_fingerprint(None).unwrap();
        write_fixture(dir.path(), 6, 3);
        let m = err(files.verify_fingerprint(Some(&print)));
        assert!(m.contains("changed since the experiment was planned"), "{m}");
    }

    #[test]
    fn missing_folder_and_missing_file_are_named() {
        let dir = test_support::scratch("mnist-missing");
        let m = err(MnistFiles::locate(&dir.path().join("nowhere")));
        assert!(m.contains("nowhere") && m.contains("data folder does not exist"), "{m}");
        write_fixture(dir.path(), 10, 10);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let m = err(MnistFiles::locate(dir.path()));
        assert!(m.contains(&*dir.path().to_string_lossy()), "{m}");
        assert!(m.contains("missing `t10k-labels-idx1-ubyte` (or `t10k-labels-idx1-ubyte.gz`)"), "{m}");
        assert!(m.contains("must exist"), "{m}");
    }

    #[test]
    fn image_and_label_counts_must_match() {
        let dir = test_support::scratch("mnist-count");
        write_fixture(dir.path(), 10, 10);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[9], &[0; 9])).unwrap();
        let files = MnistFiles::locate(dir.path()).unwrap();
        for m in [err(files.check_headers()), err(Mnist::load(&files, None, None))] {
            assert!(m.contains("t10k-labels-idx1-ubyte: 9 labels"), "{m}");
            assert!(m.contains("t10k-images-idx3-ubyte holds 10 images"), "{m}");
        }
    }

    #[test]
    fn swapped_files_are_reported_by_magic_number() {
        let dir = test_support::scratch("mnist-swapped");
        write_fixture(dir.path(), 10, 10);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx_bytes(&[10], &[0; 10])).unwrap();
        let m = err(MnistFiles::locate(dir.path()).unwrap().check_headers());
        assert!(m.contains("t10k-images-idx3-ubyte: magic number 0x00000801, expected 0x00000803"), "{m}");
    }

    #[test]
    fn labels_must_be_classes() {
        let dir = test_support::scratch("mnist-labels");
        write_fixture(dir.path(), 10, 10);
        let mut labels: Vec<u8> = (0..10).collect();
        labels[4] = 12;
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[10], &labels)).unwrap();
        let m = err(Mnist::load(&MnistFiles::locate(dir.path()).unwrap(), None, None));
        assert!(m.contains("t10k-labels-idx1-ubyte: label 12 of example 4"), "{m}");
        // Truncation before the bad label loads fine.
        assert!(Mnist::load(&MnistFiles::locate(dir.path()).unwrap(), None, Some(4)).is_ok());
    }

    #[test]
    fn truncation_beyond_the_file_is_an_error() {
        let dir = test_support::scratch("mnist-limit");
        write_fixture(dir.path(), 10, 10);
        let files = MnistFiles::locate(dir.path()).unwrap();
        let m = err(Mnist::load(&files, Some(11), None));
        assert!(m.contains("train-images-idx3-ubyte.gz: `train_examples` is 11"), "{m}");
        assert!(m.contains("holds 10 examples"), "{m}");
        let m = err(Mnist::load(&files, None, Some(0)));
        assert!(m.contains("`test_examples` is 0"), "{m}");
    }

    #[test]
    fn training_and_test_images_must_have_one_size() {
        let dir = test_support::scratch("mnist-sizes");
        write_fixture(dir.path(), 10, 10);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx_bytes(&[10, 3, 2], &[0; 60])).unwrap();
        let m = err(MnistFiles::locate(dir.path()).unwrap().check_headers());
        assert!(m.contains("t10k-images-idx3-ubyte: images are 3×2"), "{m}");
    }

    /// The real 8,000 / 2,000 subset shipped in `data/mnist-10k`.
    pub(crate) fn real_data_dir() -> Option<PathBuf> {
        test_support::mnist_dir()
    }

    /// SHA-256 in hex, for checking the real files against their SHA256SUMS.
    fn sha256(data: &[u8]) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn real_files_match_their_checksums() {
        let Some(dir) = real_data_dir() else { return };
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let (hash, name) = line.split_once("  ").expect("`<hash>  <file>` lines");
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(sha256(&bytes), hash, "{name}");
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn reads_the_real_mnist_subset() {
        let Some(dir) = real_data_dir() else { return };
        let files = MnistFiles::locate(&dir).unwrap();
        let shape = files.check_headers().unwrap();
        assert_eq!(shape, MnistShape { train: 8_000, test: 2_000, rows: 28, cols: 28 });
        let m = Mnist::load(&files, None, None).unwrap();
        assert_eq!((m.train.len(), m.test.len()), (8_000, 2_000));
        assert_eq!(m.train.images.len(), 8_000 * 784);
        assert_eq!(m.test.images.len(), 2_000 * 784);
        // Real digits: black background, white strokes, every class present.
        for split in [&m.train, &m.test] {
            assert_eq!(split.images.iter().min(), Some(&0));
            assert_eq!(split.images.iter().max(), Some(&255));
            let mut counts = [0usize; 10];
            split.labels.iter().for_each(|&l| counts[l as usize] += 1);
            assert!(counts.iter().all(|&c| c > split.len() / 20), "{counts:?}");
        }
        let mean = m.train.images.iter().map(|&p| p as f64).sum::<f64>() / m.train.images.len() as f64;
        assert!((20.0..50.0).contains(&mean), "mean grey level {mean}");
    }
}
