//! Split MNIST (Zenke et al. 2017): disjoint groups of digit classes, one group per task.
//!
//! Task t uses the training and test images whose label is in group t. The two settings of
//! van de Ven & Tolias (2019) differ in what the learner predicts:
//!
//! * task-incremental — one output head per task, chosen by the task id at training and test
//!   time; a label is mapped to its position within its group (classes `[4, 5]` become outputs
//!   0 and 1 of head 2), so every head has as many outputs as the largest group;
//! * class-incremental — one shared head over all 10 classes, labels unchanged, no task id at
//!   test time: the learner must tell digits of different tasks apart.

use std::path::PathBuf;
use std::sync::Arc;

use super::mnist::{LabelledImages, Mnist, MnistFiles, CLASSES};
use super::permuted::PIXEL_SCALE;
use serde::{Deserialize, Serialize};

use super::kind::StreamKind;
use super::split::{Inputs, Split, Targets};
use super::{Problem, StreamError, StreamInfo, Task, TaskStream};
use crate::model::layer::Shape;

/// Parameters of split MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitMnistSpec {
    /// Folder with the four MNIST IDX files (see [`PermutedMnistSpec::data_dir`](super::PermutedMnistSpec::data_dir)).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files' bytes ([`MnistFiles::fingerprint`]),
    /// filled in by the orchestrator when it plans the run. It stands for the data in the
    /// run's identity (the folder's path does not), and a worker refuses files that no longer
    /// match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The class groups, one task each, disjoint; default `[[0,1],[2,3],[4,5],[6,7],[8,9]]`.
    #[serde(default = "default_split_groups")]
    pub groups: Vec<Vec<u8>>,
    /// Task-incremental (one output head per task; the task id selects the head) or
    /// class-incremental (one shared head over all classes).
    #[serde(default)]
    pub setting: SplitSetting,
    /// Use only the first `n` training images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Use only the first `n` test images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<usize>,
    /// Random translations of training images by up to `shift` pixels on each axis (zero
    /// padding, then a crop back to 28×28; no flips, digits are not mirror-symmetric), the
    /// usual augmentation of MNIST CNNs; 0 (the default) leaves the images as they are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// The largest `shift`: a quarter of a digit's width.
const MAX_SHIFT: usize = 7;

fn default_split_groups() -> Vec<Vec<u8>> {
    (0..5).map(|g| vec![2 * g, 2 * g + 1]).collect()
}

/// The two evaluation settings of split MNIST (van de Ven & Tolias 2019).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSetting {
    /// One head per task; the task id selects it at training and test time.
    #[default]
    TaskIncremental,
    /// One shared head over all classes; no task id at test time.
    ClassIncremental,
}

/// Split MNIST: disjoint groups of classes, one group per task (Zenke et al. 2017).
pub struct SplitMnistKind;

impl StreamKind for SplitMnistKind {
    const KIND: &'static str = "split_mnist";
    const SUMMARY: &'static str = "disjoint groups of digit classes, one group per task";
    type Params = SplitMnistSpec;
    fn tasks(p: &SplitMnistSpec) -> usize {
        p.groups.len()
    }
    fn input_shape(p: &SplitMnistSpec) -> Result<Shape, StreamError> {
        super::mnist::image_shape(&p.data_dir)
    }
    fn head_per_task(p: &SplitMnistSpec) -> bool {
        p.setting == SplitSetting::TaskIncremental
    }
    fn check(p: &SplitMnistSpec) -> Result<(), String> {
        super::mnist::check_limits_positive(p.train_examples, p.test_examples)?;
        if p.shift > MAX_SHIFT {
            return Err(format!("`shift: {}`: at most {MAX_SHIFT} pixels", p.shift));
        }
        let mut seen = [false; 256];
        for group in &p.groups {
            if group.is_empty() {
                return Err("every class group needs at least one class".into());
            }
            for &c in group {
                if c > 9 {
                    return Err(format!("class {c} does not exist (MNIST classes are 0–9)"));
                }
                if std::mem::replace(&mut seen[c as usize], true) {
                    return Err(format!("class {c} appears in two groups; groups must be disjoint"));
                }
            }
        }
        Ok(())
    }
    fn check_data(p: &SplitMnistSpec) -> Result<(), StreamError> {
        super::mnist::check_folder(&p.data_dir, p.train_examples, p.test_examples)
    }
    fn fingerprint(dir: &std::path::Path) -> Result<String, StreamError> {
        MnistFiles::locate(dir)?.fingerprint()
    }
    fn build(p: &SplitMnistSpec, _seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        Ok(Box::new(SplitMnist::new(p)?))
    }
}

/// The rows and label map of one task.
#[derive(Debug)]
struct GroupTask {
    train_rows: Arc<[u32]>,
    test_rows: Arc<[u32]>,
    /// Label → output index within the head (task-incremental), or `None` for the identity.
    map: Option<Arc<[u8; 256]>>,
    head: usize,
}

/// Split MNIST over one loaded copy of the digits.
#[derive(Debug)]
pub struct SplitMnist {
    info: StreamInfo,
    mnist: Mnist,
    tasks: Vec<GroupTask>,
}

impl SplitMnist {
    /// Loads the digits of `spec.data_dir` and selects each group's rows. The groups must have
    /// been validated (non-empty, disjoint, classes 0–9; [`super::validate`] does it). Fails
    /// when a group has no training or no test example (possible with `train_examples` /
    /// `test_examples` small).
    pub fn new(spec: &SplitMnistSpec) -> Result<Self, StreamError> {
        let files = MnistFiles::locate(&spec.data_dir)?;
        files.verify_fingerprint(spec.fingerprint.as_deref())?;
        let mnist = Mnist::load(&files, spec.train_examples, spec.test_examples)?;
        let mut stream = Self::from_mnist(mnist, &spec.groups, spec.setting)?;
        if spec.shift > 0 {
            stream.info.augment = Some(super::augment::Augment { padding: spec.shift, flip: false });
        }
        Ok(stream)
    }

    /// The stream over already loaded digits.
    pub(crate) fn from_mnist(
        mnist: Mnist,
        groups: &[Vec<u8>],
        setting: SplitSetting,
    ) -> Result<Self, StreamError> {
        let task_incremental = setting == SplitSetting::TaskIncremental;
        let mut tasks = Vec::with_capacity(groups.len());
        for (t, group) in groups.iter().enumerate() {
            let rows = |data: &LabelledImages, which: &str| -> Result<Arc<[u32]>, StreamError> {
                let rows: Vec<u32> =
                    (0..data.len() as u32).filter(|&i| group.contains(&data.labels[i as usize])).collect();
                if rows.is_empty() {
                    return Err(StreamError::Invalid {
                        stream: "split_mnist",
                        reason: format!(
                            "task {t} (classes {group:?}) has no {which} example among the loaded \
                             images; raise `{which}_examples` or check the groups"
                        ),
                    });
                }
                Ok(rows.into())
            };
            let map = task_incremental.then(|| {
                let mut m = [0u8; 256];
                for (position, &class) in group.iter().enumerate() {
                    m[class as usize] = position as u8;
                }
                Arc::new(m)
            });
            tasks.push(GroupTask {
                train_rows: rows(&mnist.train, "train")?,
                test_rows: rows(&mnist.test, "test")?,
                map,
                head: if task_incremental { t } else { 0 },
            });
        }
        let info = StreamInfo {
            tasks: groups.len(),
            inputs: mnist.pixels(),
            input_shape: Shape::Image { channels: 1, height: mnist.rows, width: mnist.cols },
            head_outputs: if task_incremental {
                groups.iter().map(Vec::len).max().unwrap_or(0)
            } else {
                CLASSES
            },
            head_per_task: task_incremental,
            problem: Problem::Classification,
            online: false,
            augment: None,
        };
        Ok(SplitMnist { info, mnist, tasks })
    }
}

impl TaskStream for SplitMnist {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn task(&self, index: usize) -> Task {
        let g = &self.tasks[index];
        let dim = self.info.inputs;
        let split = |data: &LabelledImages, rows: &Arc<[u32]>| Split {
            inputs: Inputs::Bytes { data: data.images.clone(), dim, scale: PIXEL_SCALE },
            targets: Targets::Classes { labels: data.labels.clone(), map: g.map.clone() },
            rows: Some(rows.clone()),
            permutation: None,
            head: g.head,
        };
        Task {
            index,
            train: split(&self.mnist.train, &g.train_rows),
            test: split(&self.mnist.test, &g.test_rows),
            validation: None,
            active_outputs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::mnist::tests::{real_data_dir, write_fixture};
    use crate::stream::Target;

    fn spec(dir: &std::path::Path, groups: Vec<Vec<u8>>, setting: SplitSetting) -> SplitMnistSpec {
        SplitMnistSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            groups,
            setting,
            train_examples: None,
            test_examples: None,
            shift: 0,
        }
    }

    #[test]
    fn task_incremental_maps_labels_into_per_task_heads() {
        let dir = test_support::scratch("split-ti");
        write_fixture(dir.path(), 50, 20);
        let groups = vec![vec![0, 1], vec![7, 3, 5], vec![9]];
        let s = SplitMnist::new(&spec(dir.path(), groups.clone(), SplitSetting::TaskIncremental)).unwrap();
        assert_eq!(s.info().tasks, 3);
        assert_eq!(s.info().head_outputs, 3, "the largest group");
        assert!(s.info().head_per_task);
        for (t, group) in groups.iter().enumerate() {
            let task = s.task(t);
            assert_eq!((task.train.head(), task.test.head()), (t, t));
            // The fixture's labels cycle 0..10: each class has 5 training and 2 test images.
            assert_eq!(task.train.len(), 5 * group.len());
            assert_eq!(task.test.len(), 2 * group.len());
            let mut x = vec![0.0; 6];
            for i in 0..task.train.len() {
                let Target::Class(out) = task.train.target(i) else { panic!("classification") };
                // Pixel 0 of the fixture is 10 × label.
                task.train.gather_inputs(&[i], &mut x);
                let label = (x[0] * 255.0 / 10.0).round() as u8;
                assert_eq!(group[out as usize], label, "output {out} of task {t} is class {label}");
            }
        }
    }

    #[test]
    fn class_incremental_keeps_labels_and_one_head() {
        let dir = test_support::scratch("split-ci");
        write_fixture(dir.path(), 40, 20);
        let s = SplitMnist::new(&spec(
            dir.path(),
            vec![vec![0, 1], vec![2, 3], vec![4, 5]],
            SplitSetting::ClassIncremental,
        ))
        .unwrap();
        assert_eq!(s.info().head_outputs, 10);
        assert!(!s.info().head_per_task);
        let task = s.task(2);
        assert_eq!(task.train.head(), 0);
        let labels: Vec<Target> = (0..task.train.len()).map(|i| task.train.target(i)).collect();
        assert_eq!(labels, [4, 5, 4, 5, 4, 5, 4, 5].map(Target::Class));
    }

    #[test]
    fn a_group_without_examples_is_an_error() {
        let dir = test_support::scratch("split-empty");
        write_fixture(dir.path(), 8, 20);
        let e = SplitMnist::new(&spec(dir.path(), vec![vec![0], vec![9]], SplitSetting::TaskIncremental))
            .unwrap_err()
            .to_string();
        assert!(e.contains("task 1 (classes [9]) has no train example"), "{e}");
    }

    #[test]
    fn real_split_mnist_covers_every_image_once() {
        let Some(dir) = real_data_dir() else { return };
        let groups: Vec<Vec<u8>> = (0..5).map(|g| vec![2 * g, 2 * g + 1]).collect();
        let s = SplitMnist::new(&spec(&dir, groups, SplitSetting::TaskIncremental)).unwrap();
        let (train, test): (usize, usize) = (0..5)
            .map(|t| s.task(t))
            .map(|t| (t.train.len(), t.test.len()))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!((train, test), (8_000, 2_000));
        assert_eq!(s.info().input_shape, Shape::Image { channels: 1, height: 28, width: 28 });
        let task = s.task(3);
        assert!((0..task.test.len()).all(|i| matches!(task.test.target(i), Target::Class(0 | 1))));
    }
}
