//! Permuted MNIST and its online variant.
//!
//! Every task shows the same digits with its own fixed permutation of the pixels (Goodfellow et
//! al. 2013; Kirkpatrick et al. 2017), so tasks are equally hard and unrelated in input space
//! while the labels keep their meaning. Task t's permutation is a Fisher–Yates shuffle of the
//! pixel indices drawn from `rng::stream(seed, "stream.permutation", t)`, so it depends on the
//! seed and the task index only — the same in every run with that seed, whatever else the
//! recipe says.

use std::path::PathBuf;
use std::sync::Arc;

use super::mnist::{LabelledImages, Mnist, MnistFiles, CLASSES};
use serde::{Deserialize, Serialize};

use super::kind::StreamKind;
use super::split::{Inputs, Split, Targets};
use super::{sample, Problem, StreamError, StreamInfo, Task, TaskStream};
use crate::rng;

/// Parameters of (online) permuted MNIST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermutedMnistSpec {
    /// Folder with `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` (MNIST or
    /// Fashion-MNIST, full or subset).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files' bytes ([`MnistFiles::fingerprint`]),
    /// filled in by the orchestrator when it plans the run. It stands for the data in the
    /// run's identity (the folder's path does not), and a worker refuses files that no longer
    /// match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of tasks (permutations).
    pub tasks: usize,
    /// Leave the first task's pixels in their natural order.
    #[serde(default)]
    pub first_unpermuted: bool,
    /// Use only the first `n` training images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Use only the first `n` test images (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_examples: Option<usize>,
}

/// Permuted MNIST: every task applies its own fixed random permutation to the pixels of the
/// same digits (Goodfellow et al. 2013; Kirkpatrick et al. 2017).
pub struct PermutedMnistKind;

/// Online permuted MNIST (Dohare et al. 2024): every example is seen once, in batches of one,
/// and the learner is not told where tasks begin; online accuracy is the prediction made before
/// each example's update, averaged per task.
pub struct OnlinePermutedMnistKind;

impl StreamKind for PermutedMnistKind {
    const KIND: &'static str = "permuted_mnist";
    const SUMMARY: &'static str = "the same digits under a fixed random pixel permutation per task";
    type Params = PermutedMnistSpec;
    fn tasks(p: &PermutedMnistSpec) -> usize {
        p.tasks
    }
    fn check(p: &PermutedMnistSpec) -> Result<(), String> {
        super::mnist::check_limits_positive(p.train_examples, p.test_examples)
    }
    fn check_data(p: &PermutedMnistSpec) -> Result<(), StreamError> {
        super::mnist::check_folder(&p.data_dir, p.train_examples, p.test_examples)
    }
    fn fingerprint(dir: &std::path::Path) -> Result<String, StreamError> {
        MnistFiles::locate(dir)?.fingerprint()
    }
    fn build(p: &PermutedMnistSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        Ok(Box::new(PermutedMnist::new(p, seed, false)?))
    }
}

impl StreamKind for OnlinePermutedMnistKind {
    const KIND: &'static str = "online_permuted_mnist";
    const SUMMARY: &'static str =
        "permuted MNIST seen once, one example at a time, task boundaries unannounced";
    const ONLINE: bool = true;
    type Params = PermutedMnistSpec;
    // The same data and checks as the offline stream; only the protocol differs.
    fn tasks(p: &PermutedMnistSpec) -> usize {
        PermutedMnistKind::tasks(p)
    }
    fn check(p: &PermutedMnistSpec) -> Result<(), String> {
        PermutedMnistKind::check(p)
    }
    fn check_data(p: &PermutedMnistSpec) -> Result<(), StreamError> {
        PermutedMnistKind::check_data(p)
    }
    fn fingerprint(dir: &std::path::Path) -> Result<String, StreamError> {
        PermutedMnistKind::fingerprint(dir)
    }
    fn build(p: &PermutedMnistSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        Ok(Box::new(PermutedMnist::new(p, seed, true)?))
    }
}

/// Grey levels 0–255 become pixel values in [0, 1].
pub(crate) const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// (Online) permuted MNIST over one loaded copy of the digits.
#[derive(Debug)]
pub struct PermutedMnist {
    info: StreamInfo,
    mnist: Mnist,
    seed: u64,
    first_unpermuted: bool,
}

impl PermutedMnist {
    /// Loads the digits of `spec.data_dir` (truncated as the spec says). `online` selects the
    /// online protocol of Dohare et al. (2024): each example once, batch size 1, no
    /// task-boundary signal.
    pub fn new(spec: &PermutedMnistSpec, seed: u64, online: bool) -> Result<Self, StreamError> {
        let files = MnistFiles::locate(&spec.data_dir)?;
        files.verify_fingerprint(spec.fingerprint.as_deref())?;
        let mnist = Mnist::load(&files, spec.train_examples, spec.test_examples)?;
        Ok(Self::from_mnist(mnist, spec.tasks, spec.first_unpermuted, seed, online))
    }

    /// The stream over already loaded digits.
    pub(crate) fn from_mnist(
        mnist: Mnist,
        tasks: usize,
        first_unpermuted: bool,
        seed: u64,
        online: bool,
    ) -> Self {
        let info = StreamInfo {
            tasks,
            inputs: mnist.pixels(),
            head_outputs: CLASSES,
            head_per_task: false,
            problem: Problem::Classification,
            online,
        };
        PermutedMnist { info, mnist, seed, first_unpermuted }
    }

    /// Task `task`'s pixel permutation (`x[k] = image[p[k]]`), or `None` for the unpermuted
    /// first task.
    pub fn permutation(&self, task: usize) -> Option<Arc<[u32]>> {
        if task == 0 && self.first_unpermuted {
            return None;
        }
        let mut rng = rng::stream(self.seed, "stream.permutation", task as u64);
        Some(sample::permutation(&mut rng, self.info.inputs).into())
    }
}

fn split(data: &LabelledImages, dim: usize, permutation: &Option<Arc<[u32]>>, head: usize) -> Split {
    Split {
        inputs: Inputs::Bytes { data: data.images.clone(), dim, scale: PIXEL_SCALE },
        targets: Targets::Classes { labels: data.labels.clone(), map: None },
        rows: None,
        permutation: permutation.clone(),
        head,
    }
}

impl TaskStream for PermutedMnist {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Costs one shuffle of the pixel indices; the digits are shared.
    fn task(&self, index: usize) -> Task {
        assert!(index < self.info.tasks, "task {index} of a {}-task stream", self.info.tasks);
        let p = self.permutation(index);
        let dim = self.info.inputs;
        Task {
            index,
            train: split(&self.mnist.train, dim, &p, index),
            test: split(&self.mnist.test, dim, &p, index),
            validation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::mnist::tests::{real_data_dir, write_fixture};
    use crate::stream::Target;

    fn fixture_stream(dir: &std::path::Path, seed: u64, first_unpermuted: bool) -> PermutedMnist {
        let spec = PermutedMnistSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            tasks: 5,
            first_unpermuted,
            train_examples: Some(20),
            test_examples: None,
        };
        PermutedMnist::new(&spec, seed, false).unwrap()
    }

    #[test]
    fn tasks_permute_the_same_scaled_digits() {
        let dir = test_support::scratch("permuted");
        write_fixture(dir.path(), 30, 10);
        let s = fixture_stream(dir.path(), 7, true);
        assert_eq!(
            s.info(),
            &StreamInfo {
                tasks: 5,
                inputs: 6,
                head_outputs: 10,
                head_per_task: false,
                problem: Problem::Classification,
                online: false
            }
        );
        let t0 = s.task(0);
        assert_eq!((t0.train.len(), t0.test.len(), t0.train.dim()), (20, 10, 6));
        let mut x = vec![0.0; 12];
        t0.train.gather_inputs(&[13, 0], &mut x);
        // Example 13 has label 3: pixels 30..36, scaled by 1/255, in natural order.
        let expect: Vec<f32> = (30..36).chain(0..6).map(|v| v as f32 * PIXEL_SCALE).collect();
        assert_eq!(x, expect);
        assert_eq!(t0.train.target(13), Target::Class(3));
        for t in 1..5 {
            let task = s.task(t);
            assert_eq!(task.train.head(), t);
            assert_eq!(task.train.target(13), Target::Class(3), "labels keep their meaning");
            let p = s.permutation(t).unwrap();
            let mut xt = vec![0.0; 6];
            task.train.gather_inputs(&[13], &mut xt);
            for k in 0..6 {
                assert_eq!(xt[k], x[p[k] as usize]);
            }
            let mut sorted = xt.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, x[..6], "a permutation keeps every pixel once");
        }
    }

    #[test]
    fn permutations_depend_on_seed_and_task_only() {
        let dir = test_support::scratch("permuted-seed");
        write_fixture(dir.path(), 20, 10);
        let a = fixture_stream(dir.path(), 1, false);
        let b = fixture_stream(dir.path(), 1, true);
        let c = fixture_stream(dir.path(), 2, false);
        assert!(a.permutation(0).is_some());
        assert_eq!(b.permutation(0), None);
        for t in 1..5 {
            assert_eq!(a.permutation(t), b.permutation(t));
        }
        let all: Vec<_> = (0..5).map(|t| a.permutation(t).unwrap()).collect();
        let others: Vec<_> = (0..5).map(|t| c.permutation(t).unwrap()).collect();
        assert_ne!(all, others, "another seed gives other permutations");
    }

    #[test]
    fn real_permuted_mnist_has_784_pixels_in_unit_range() {
        let Some(dir) = real_data_dir() else { return };
        let spec = PermutedMnistSpec {
            data_dir: dir,
            fingerprint: None,
            tasks: 3,
            first_unpermuted: false,
            train_examples: None,
            test_examples: None,
        };
        let s = PermutedMnist::new(&spec, 11, true).unwrap();
        assert!(s.info().online);
        assert_eq!(s.info().inputs, 784);
        let task = s.task(2);
        assert_eq!((task.train.len(), task.test.len()), (8_000, 2_000));
        let p = s.permutation(2).unwrap();
        let mut sorted = p.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<u32>>());
        let idx: Vec<usize> = (0..64).map(|i| i * 31).collect();
        let mut x = vec![0.0; 64 * 784];
        task.test.gather_inputs(&idx, &mut x);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(x.iter().any(|&v| v > 0.9) && x.contains(&0.0));
    }
}
