//! Continual ImageNet (Dohare et al. 2024, "Loss of plasticity in deep continual learning"):
//! a long sequence of binary classification tasks, each between two ImageNet classes, on the
//! 32×32 downsampled images.
//!
//! What the reference code (`lop/imagenet/` of <https://github.com/shibhansh/loss-of-plasticity>)
//! does, and what is followed here:
//!
//! * every class contributes 700 images: the first 600 train, the next 100 test
//!   (`train_per_class`, `test_per_class`);
//! * a run's class order is a permutation of the 1,000 classes (one of 30 pre-drawn orders
//!   there, one per run index; drawn from the run's seed here), repeated as often as the number
//!   of tasks needs (5,000 tasks of 2 classes use each class 10 times, in the same order);
//! * task t is classes `order[2t]` and `order[2t + 1]` (positions modulo 1,000), labelled 0
//!   and 1 in that order; one two-output head serves every task.
//!
//! What differs:
//!
//! * the reference reads per-class `.npy` files its authors prepared from the downsampled
//!   training set (their order of images within a class is not documented); here the 700 images
//!   of a class are its first 700 in the order of the public batch files
//!   (`train_data_batch_1.npz` first);
//! * the reference feeds raw 0–255 values to its network; here pixels are scaled to [0, 1]
//!   (and normalised per channel with ImageNet's usual statistics when `normalize: true`);
//! * the reference zeroes its output layer at the start of every task; the shared head here is
//!   not reset by the stream. `network.heads: per_task` gives each task a fresh head instead.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::augment::Augment;
use super::class_split::{ClassSplit, HeadLayout};
use super::image::{ImageData, ImageSet, Normalization};
use super::imagenet32::{read_batch, Imagenet32Files, IMAGENET32_PIXELS, IMAGENET_CLASSES};
use super::kind::{at_most, StreamKind};
use super::{ClassOrder, StreamError, TaskStream};
use crate::model::layer::Shape;

/// Parameters of Continual ImageNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinualImagenetSpec {
    /// Folder of the downsampled ImageNet 32×32 training batches (npz variant).
    pub data_dir: PathBuf,
    /// Fingerprint of the training batches, filled in by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of tasks (5,000 in the paper).
    #[serde(default = "default_tasks")]
    pub tasks: usize,
    /// Classes per task (2: binary tasks).
    #[serde(default = "two")]
    pub classes_per_task: usize,
    /// Training images per class (the first ones of the class).
    #[serde(default = "default_train")]
    pub train_per_class: usize,
    /// Test images per class (the ones after the training images).
    #[serde(default = "default_test")]
    pub test_per_class: usize,
    /// A class order drawn from the run's seed (the default) or the canonical one.
    #[serde(default)]
    pub class_order: ClassOrder,
    /// Per-channel normalisation with ImageNet's statistics; pixels in [0, 1] otherwise.
    #[serde(default)]
    pub normalize: bool,
    /// Random crops and flips of training images (the reference uses none).
    #[serde(default)]
    pub augment: bool,
}

fn default_tasks() -> usize {
    5000
}

fn two() -> usize {
    2
}

fn default_train() -> usize {
    600
}

fn default_test() -> usize {
    100
}

/// ImageNet's usual per-channel statistics (of the full-resolution training set, as
/// torchvision's ImageNet recipes quote them).
fn imagenet_normalization() -> Normalization {
    Normalization { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
}

/// Every ImageNet class has at least 732 training images; 1,300 is the most any has.
const MAX_PER_CLASS: usize = 1300;

/// Continual ImageNet: binary tasks between ImageNet classes.
pub struct ContinualImagenetKind;

impl StreamKind for ContinualImagenetKind {
    const KIND: &'static str = "continual_imagenet";
    const SUMMARY: &'static str =
        "binary tasks between downsampled 32×32 ImageNet classes (Dohare et al. 2024)";
    type Params = ContinualImagenetSpec;
    fn input_shape(_: &ContinualImagenetSpec) -> Result<Shape, StreamError> {
        Ok(Shape::Image { channels: 3, height: 32, width: 32 })
    }
    fn tasks(p: &ContinualImagenetSpec) -> usize {
        p.tasks
    }
    fn check(p: &ContinualImagenetSpec) -> Result<(), String> {
        if p.classes_per_task == 0 || p.train_per_class == 0 || p.test_per_class == 0 {
            return Err("`classes_per_task`, `train_per_class` and `test_per_class` must be ≥ 1".into());
        }
        at_most("classes_per_task", p.classes_per_task, IMAGENET_CLASSES)?;
        at_most(
            "train_per_class + test_per_class",
            p.train_per_class.saturating_add(p.test_per_class),
            MAX_PER_CLASS,
        )
    }
    fn check_data(p: &ContinualImagenetSpec) -> Result<(), StreamError> {
        Imagenet32Files::locate(&p.data_dir).map(|_| ())
    }
    fn fingerprint(dir: &Path) -> Result<String, StreamError> {
        Imagenet32Files::locate(dir)?.fingerprint()
    }
    fn build(p: &ContinualImagenetSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        let files = Imagenet32Files::locate(&p.data_dir)?;
        files.verify_fingerprint(p.fingerprint.as_deref())?;
        let data = load_per_class(&files, p.train_per_class, p.test_per_class)?;
        let order: Vec<u16> = match p.class_order {
            ClassOrder::Seeded => {
                let mut r = crate::rng::stream(seed, "stream.continual_imagenet.class_order", 0);
                super::sample::permutation(&mut r, IMAGENET_CLASSES).into_iter().map(|c| c as u16).collect()
            }
            ClassOrder::Canonical => (0..IMAGENET_CLASSES as u16).collect(),
        };
        let k = p.classes_per_task;
        let groups =
            (0..p.tasks).map(|t| (0..k).map(|j| order[(t * k + j) % IMAGENET_CLASSES]).collect()).collect();
        let normalization = if p.normalize { imagenet_normalization() } else { Normalization::identity(3) };
        let mut stream =
            ClassSplit::new(Self::KIND, data, groups, HeadLayout::SharedPositions, &normalization)?;
        if p.augment {
            stream.set_augment(Augment::standard());
        }
        Ok(Box::new(stream))
    }
}

/// The first `train + test` images of every class, in batch-file order: the first `train` of a
/// class to the training set, the rest to the test set, each set class after class. Stops
/// reading batches once every class is complete; a class the files cannot fill is an error.
fn load_per_class(files: &Imagenet32Files, train: usize, test: usize) -> Result<ImageData, StreamError> {
    let need = train + test;
    let mut train_images = vec![0u8; IMAGENET_CLASSES * train * IMAGENET32_PIXELS];
    let mut test_images = vec![0u8; IMAGENET_CLASSES * test * IMAGENET32_PIXELS];
    let mut have = vec![0usize; IMAGENET_CLASSES];
    let mut complete = 0;
    for path in &files.train {
        if complete == IMAGENET_CLASSES {
            break;
        }
        let batch = read_batch(path)?;
        for (image, &label) in batch.images.chunks_exact(IMAGENET32_PIXELS).zip(&batch.labels) {
            let c = label as usize;
            let j = have[c];
            let slot = match j {
                _ if j < train => {
                    &mut train_images[(c * train + j) * IMAGENET32_PIXELS..][..IMAGENET32_PIXELS]
                }
                _ if j < need => {
                    &mut test_images[(c * test + j - train) * IMAGENET32_PIXELS..][..IMAGENET32_PIXELS]
                }
                _ => continue,
            };
            slot.copy_from_slice(image);
            have[c] += 1;
            complete += usize::from(have[c] == need);
        }
    }
    if let Some(c) = have.iter().position(|&n| n < need) {
        return Err(StreamError::Data {
            path: files.dir.clone(),
            reason: format!(
                "class {} (label {} in the files) has {} images in the training batches; \
                 `train_per_class` + `test_per_class` = {need}",
                c,
                c + 1,
                have[c]
            ),
        });
    }
    let labels = |per: usize| -> std::sync::Arc<[u16]> {
        (0..IMAGENET_CLASSES).flat_map(|c| std::iter::repeat_n(c as u16, per)).collect()
    };
    Ok(ImageData {
        train: ImageSet { images: train_images.into(), labels: labels(train) },
        test: ImageSet { images: test_images.into(), labels: labels(test) },
        shape: Shape::Image { channels: 3, height: 32, width: 32 },
        classes: IMAGENET_CLASSES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::imagenet32::tests::{pixel, write_fixture};
    use crate::stream::{build, spec_of, validate, Target};

    fn spec(dir: &Path, tasks: usize, class_order: ClassOrder) -> crate::protocol::StreamSpec {
        spec_of::<ContinualImagenetKind>(&ContinualImagenetSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            tasks,
            classes_per_task: 2,
            train_per_class: 2,
            test_per_class: 1,
            class_order,
            normalize: false,
            augment: false,
        })
    }

    #[test]
    fn binary_tasks_take_the_first_images_of_each_class_in_file_order() {
        let dir = test_support::scratch("continual-imagenet");
        // Four images per class: image i is of class i mod 1000, so class c holds images
        // c, c + 1000, c + 2000, c + 3000; the first two train, the third tests, the fourth is unused.
        write_fixture(dir.path(), 4);
        let s = build(&spec(dir.path(), 3, ClassOrder::Canonical), 1).unwrap();
        let info = s.info();
        assert_eq!((info.tasks, info.head_outputs, info.head_per_task, info.inputs), (3, 2, false, 3072));
        let task = s.task(1);
        assert_eq!((task.train.len(), task.test.len()), (4, 2));
        let mut x = vec![0.0; 3072];
        for (i, image, class_position) in [(0, 2, 0), (1, 1002, 0), (2, 3, 1), (3, 1003, 1)] {
            task.train.gather_inputs(&[i], &mut x);
            assert!(x.iter().enumerate().all(|(k, &v)| v == pixel(image, k) as f32 / 255.0), "train row {i}");
            assert_eq!(task.train.target(i), Target::Class(class_position));
        }
        task.test.gather_inputs(&[1], &mut x);
        assert!(x.iter().enumerate().all(|(k, &v)| v == pixel(2003, k) as f32 / 255.0));
        assert_eq!(task.test.target(1), Target::Class(1));
    }

    #[test]
    fn the_seeded_order_repeats_after_every_class_was_used() {
        let dir = test_support::scratch("continual-imagenet-order");
        write_fixture(dir.path(), 3);
        let pairs = |seed: u64| {
            let s = build(&spec(dir.path(), 1001, ClassOrder::Seeded), seed).unwrap();
            // The classes of a task's first and last training images.
            (0..1001)
                .map(|t| {
                    let task = s.task(t);
                    let crate::stream::split::Targets::WideClasses { labels, .. } = &task.train.targets
                    else {
                        panic!("wide labels")
                    };
                    (labels[task.train.source_row(0)], labels[task.train.source_row(task.train.len() - 1)])
                })
                .collect::<Vec<_>>()
        };
        let a = pairs(1);
        let mut classes: Vec<u16> = a[..500].iter().flat_map(|&(x, y)| [x, y]).collect();
        classes.sort_unstable();
        assert_eq!(classes, (0..1000).collect::<Vec<u16>>(), "500 tasks use every class once");
        assert_eq!(a[500], a[0], "then the order repeats");
        assert_ne!(a, pairs(2));
    }

    #[test]
    fn a_class_the_files_cannot_fill_is_an_error() {
        let dir = test_support::scratch("continual-imagenet-short");
        write_fixture(dir.path(), 2);
        let m =
            build(&spec(dir.path(), 1, ClassOrder::Canonical), 1).err().expect("too few images").to_string();
        assert!(m.contains("class 0 (label 1 in the files) has 2 images in the training batches"), "{m}");
        assert!(m.contains("`train_per_class` + `test_per_class` = 3"), "{m}");
        let bad = crate::protocol::StreamSpec::new(
            "continual_imagenet",
            serde_json::from_value(serde_json::json!({ "data_dir": dir.path(), "train_per_class": 1300 }))
                .unwrap(),
        );
        let m = validate(&bad).unwrap_err().to_string();
        assert!(m.contains("`train_per_class + test_per_class` is 1400; at most 1300"), "{m}");
    }
}
