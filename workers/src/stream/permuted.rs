//! Permuted MNIST and its online variant.
//!
//! Every task shows the same digits with its own fixed permutation of the pixels (Goodfellow et
//! al. 2013; Kirkpatrick et al. 2017), so tasks are equally hard and unrelated in input space
//! while the labels keep their meaning. Task t's permutation is a Fisher–Yates shuffle of the
//! pixel indices drawn from `rng::stream(seed, "stream.permutation", t)`, so it depends on the
//! seed and the task index only — the same in every run with that seed, whatever else the
//! recipe says.
//!
//! Online permuted MNIST also chooses the order in which a task's training digits are shown
//! (`order`): `shuffled` (the default) draws a fresh order for every task from
//! `rng::stream(seed, "stream.online_order", t)`, as the reference code does
//! (`lop/permuted_mnist/online_expr.py` draws a new `randperm` of the examples per task);
//! `file` shows them in the order the data files store them, every task alike — what clorch
//! did before `order` existed (the trainer shuffles only offline streams, per epoch). The
//! held-out digits keep their stored order: evaluation does not depend on it.

use std::path::PathBuf;
use std::sync::Arc;

use super::mnist::{LabelledImages, Mnist, MnistFiles, CLASSES};
use serde::{Deserialize, Serialize};

use super::kind::StreamKind;
use super::split::{Inputs, Split, Targets};
use super::{sample, Problem, StreamError, StreamInfo, Task, TaskStream};
use crate::model::layer::Shape;
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

/// Parameters of online permuted MNIST: those of [`PermutedMnistSpec`] (same keys, same
/// meaning) and the order of the training examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlinePermutedMnistSpec {
    /// As [`PermutedMnistSpec::data_dir`].
    pub data_dir: PathBuf,
    /// As [`PermutedMnistSpec::fingerprint`].
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
    /// The order in which each task's training digits are shown (default `shuffled`).
    #[serde(default)]
    pub order: ExampleOrder,
}

impl OnlinePermutedMnistSpec {
    /// The data part, as permuted MNIST's parameters.
    pub fn data(&self) -> PermutedMnistSpec {
        PermutedMnistSpec {
            data_dir: self.data_dir.clone(),
            fingerprint: self.fingerprint.clone(),
            tasks: self.tasks,
            first_unpermuted: self.first_unpermuted,
            train_examples: self.train_examples,
            test_examples: self.test_examples,
        }
    }
}

/// The order of an online stream's training examples within a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleOrder {
    /// A fresh order per task, drawn from the run's seed and the task index (the reference
    /// code's behaviour).
    #[default]
    Shuffled,
    /// The order of the data files, the same for every task.
    File,
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
    fn input_shape(p: &PermutedMnistSpec) -> Result<Shape, StreamError> {
        super::mnist::image_shape(&p.data_dir)
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
    type Params = OnlinePermutedMnistSpec;
    // The same data and checks as the offline stream; the protocol and the order differ.
    fn tasks(p: &OnlinePermutedMnistSpec) -> usize {
        p.tasks
    }
    fn input_shape(p: &OnlinePermutedMnistSpec) -> Result<Shape, StreamError> {
        PermutedMnistKind::input_shape(&p.data())
    }
    fn check(p: &OnlinePermutedMnistSpec) -> Result<(), String> {
        PermutedMnistKind::check(&p.data())
    }
    fn check_data(p: &OnlinePermutedMnistSpec) -> Result<(), StreamError> {
        PermutedMnistKind::check_data(&p.data())
    }
    fn fingerprint(dir: &std::path::Path) -> Result<String, StreamError> {
        PermutedMnistKind::fingerprint(dir)
    }
    fn build(p: &OnlinePermutedMnistSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        Ok(Box::new(PermutedMnist::new(&p.data(), seed, true)?.with_order(p.order)))
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
    /// How training examples are ordered within a task; `None` for the offline stream, whose
    /// trainer shuffles per epoch.
    order: Option<ExampleOrder>,
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
            input_shape: Shape::Image { channels: 1, height: mnist.rows, width: mnist.cols },
            head_outputs: CLASSES,
            head_per_task: false,
            problem: Problem::Classification,
            online,
            augment: None,
        };
        PermutedMnist { info, mnist, seed, first_unpermuted, order: None }
    }

    /// The stream with its training examples shown in `order` (online streams).
    pub fn with_order(mut self, order: ExampleOrder) -> Self {
        self.order = Some(order);
        self
    }

    /// The stored rows task `task` trains on, in the order shown: `None` for the stored order
    /// (offline, or `order: file`), else a fresh permutation of the training rows per task.
    pub fn example_order(&self, task: usize) -> Option<Arc<[u32]>> {
        match self.order? {
            ExampleOrder::File => None,
            ExampleOrder::Shuffled => {
                let mut rng = rng::stream(self.seed, "stream.online_order", task as u64);
                Some(sample::permutation(&mut rng, self.mnist.train.labels.len()).into())
            }
        }
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
        let mut train = split(&self.mnist.train, dim, &p, index);
        train.rows = self.example_order(index);
        Task {
            index,
            train,
            test: split(&self.mnist.test, dim, &p, index),
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
                input_shape: Shape::Image { channels: 1, height: 2, width: 3 },
                head_outputs: 10,
                head_per_task: false,
                problem: Problem::Classification,
                online: false,
                augment: None,
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

    fn online_stream(dir: &std::path::Path, seed: u64, order: ExampleOrder) -> Box<dyn TaskStream> {
        let spec = OnlinePermutedMnistSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            tasks: 4,
            first_unpermuted: false,
            train_examples: Some(20),
            test_examples: None,
            order,
        };
        crate::stream::build(&crate::stream::spec_of::<OnlinePermutedMnistKind>(&spec), seed).unwrap()
    }

    /// The stored rows a split shows, in order.
    fn shown(split: &Split) -> Vec<usize> {
        (0..split.len()).map(|i| split.source_row(i)).collect()
    }

    #[test]
    fn online_order_file_keeps_the_stored_order_and_shuffled_draws_one_per_task() {
        let dir = test_support::scratch("online-order");
        write_fixture(dir.path(), 30, 10);
        let file = online_stream(dir.path(), 3, ExampleOrder::File);
        let offline = fixture_stream(dir.path(), 3, false);
        let a = online_stream(dir.path(), 3, ExampleOrder::Shuffled);
        let b = online_stream(dir.path(), 3, ExampleOrder::Shuffled);
        let c = online_stream(dir.path(), 4, ExampleOrder::Shuffled);
        let stored: Vec<usize> = (0..20).collect();
        let mut orders = Vec::new();
        for t in 0..4 {
            // `file`: what the stream showed before `order` existed — the stored rows in order,
            // the same as the offline stream (whose trainer shuffles), and no row list at all.
            let task = file.task(t);
            assert!(task.train.rows.is_none());
            assert_eq!(shown(&task.train), stored);
            assert_eq!(shown(&offline.task(t).train), stored);
            // `shuffled`: a permutation of the same 20 rows, the same for the same seed.
            let (ta, tb) = (a.task(t), b.task(t));
            let order = shown(&ta.train);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, stored, "task {t} shows every example once");
            assert_ne!(order, stored, "task {t} is shuffled");
            assert_eq!(order, shown(&tb.train), "the same seed, the same order");
            assert_ne!(order, shown(&c.task(t).train), "another seed, another order");
            // Each shown example is its stored row: image and label travel together.
            let mut x = vec![0.0; 6];
            let mut y = vec![0.0; 6];
            for (i, &r) in order.iter().enumerate() {
                ta.train.gather_inputs(&[i], &mut x);
                task.train.gather_inputs(&[r], &mut y);
                assert_eq!((x.clone(), ta.train.target(i)), (y.clone(), task.train.target(r)));
            }
            assert_eq!(shown(&ta.test), shown(&task.test), "held-out digits keep their order");
            orders.push(order);
        }
        assert!(orders.windows(2).all(|w| w[0] != w[1]), "a fresh order per task");
    }

    #[test]
    fn online_order_defaults_to_shuffled_and_only_then_changes_the_spec() {
        let parse = |order: &str| -> OnlinePermutedMnistSpec {
            serde_json::from_str(&format!(r#"{{"data_dir": "d", "tasks": 2{order}}}"#)).unwrap()
        };
        assert_eq!(parse("").order, ExampleOrder::Shuffled);
        assert_eq!(parse(r#", "order": "file""#).order, ExampleOrder::File);
        let normalized = serde_json::to_value(parse("")).unwrap();
        assert_eq!(normalized["order"], "shuffled", "normalisation names the order, so ids change");
        // The offline stream takes no `order`.
        assert!(serde_json::from_str::<PermutedMnistSpec>(
            r#"{"data_dir": "d", "tasks": 2, "order": "file"}"#
        )
        .is_err());
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
