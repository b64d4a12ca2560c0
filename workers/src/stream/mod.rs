//! Task streams: sequences of tasks, each with a training split and a held-out split.
//!
//! A stream is built once per run from its [`StreamSpec`](crate::protocol::StreamSpec) through the
//! [`registry`]; tasks are cheap handles that share
//! the underlying data through `Arc`s, so a 1,000-task permuted-MNIST stream holds one copy of
//! the digits plus 1,000 permutations built on demand. Everything is deterministic in the run's
//! seed.

mod augment;
mod cifar;
mod class_split;
mod continual_imagenet;
mod idx;
mod image;
mod imagenet32;
mod kind;
mod mnist;
mod npz;
mod permuted;
mod regression;
mod sample;
pub(crate) mod split;
mod split_cifar;
mod split_mnist;
mod split_tinyimagenet;
mod synthetic;
mod tinyimagenet;

pub use augment::{augment_batch, Augment};
pub use cifar::{CifarFiles, CifarVariant, CIFAR_PIXELS};
pub use continual_imagenet::{ContinualImagenetKind, ContinualImagenetSpec};
pub use idx::{read_idx, read_idx_header, verify_idx, IdxArray, IdxHeader};
pub use image::{ImageData, ImageSet, Normalization};
pub use imagenet32::{read_batch, Imagenet32Batch, Imagenet32Files, IMAGENET32_PIXELS, IMAGENET_CLASSES};
pub use kind::{
    build, fingerprint, head_per_task, input_shape, is_online, lookup, normalize, registry, spec_of, tasks,
    validate, StreamEntry, StreamKind,
};
pub use mnist::{LabelledImages, Mnist, MnistFiles, MnistShape};
pub use permuted::{
    ExampleOrder, OnlinePermutedMnistKind, OnlinePermutedMnistSpec, PermutedMnist, PermutedMnistKind,
    PermutedMnistSpec,
};
pub use regression::{
    FlipMode, LtuNetwork, SlowlyChangingRegression, SlowlyChangingRegressionKind,
    SlowlyChangingRegressionSpec, Threshold,
};
pub use split::{Split, Target};
pub use split_cifar::{
    ClassIncrementalCifar100Kind, ClassIncrementalCifar100Spec, ClassOrder, SplitCifar100Kind,
    SplitCifar100Spec, SplitCifar10Kind, SplitCifar10Spec,
};
pub use split_mnist::{SplitMnist, SplitMnistKind, SplitMnistSpec, SplitSetting};
pub use split_tinyimagenet::{SplitTinyImagenetKind, SplitTinyImagenetSpec};
pub use synthetic::{InputTransform, SyntheticPermuted, SyntheticPermutedKind, SyntheticPermutedSpec};
pub use tinyimagenet::{TinyImagenetFiles, TINY_PIXELS, TINY_SIDE};

use std::path::PathBuf;

use crate::model::layer::Shape;

/// Whether a stream's targets are classes or real numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Targets are class indices within the task's head; loss is cross-entropy.
    Classification,
    /// Targets are real numbers; loss is squared error.
    Regression,
}

/// Shape and protocol of a stream.
///
/// # Heads
///
/// Every split names a head ([`Split::head`]); which head the network really uses is the
/// trainer's decision, by this rule:
///
/// * `head_per_task = true` (task-incremental split MNIST): the stream's targets are only
///   meaningful within the task's own head — label positions within the task's class group —
///   so the network must have one head per task (`tasks` heads of `head_outputs` outputs,
///   whatever the network spec says) and task t uses head [`Split::head`] = t, at training
///   and at test time;
/// * `head_per_task = false`: targets mean the same in every task (a digit class, a class of
///   the synthetic clusters, a real number). With a shared head (the network spec's default)
///   every task uses head 0 and [`Split::head`] is ignored; with one head per task
///   (`heads: per_task`) task t uses head [`Split::head`], which is t for permuted MNIST, the
///   synthetic stream, slowly-changing regression and Continual ImageNet (whose targets are
///   positions within the task's pair, so a head per task is a fresh head per task), and 0 for
///   the class-incremental settings of the split streams and for class-incremental CIFAR-100
///   (one shared head over all classes is what those settings mean).
///
/// A task may use only the first [`Task::active_outputs`] outputs of its head (a growing
/// output); the trainer then reads only those.
///
/// A network with one head per task therefore has `tasks` heads; head indices are always
/// below `tasks`.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    /// Number of tasks.
    pub tasks: usize,
    /// Input features per example: [`input_shape`](Self::input_shape) flattened, which is
    /// what the MLP engines read.
    pub inputs: usize,
    /// The shape of one example, channels first: an image for the MNIST and image streams
    /// (MNIST is 1×28×28, CIFAR 3×32×32), a vector otherwise. Examples are always gathered
    /// flat, in this shape's row-major order, so a convolutional network reads them as
    /// channels × height × width and an MLP reads the same values as a vector of
    /// [`inputs`](Self::inputs).
    pub input_shape: Shape,
    /// Outputs of one head (classes per head; 1 for regression).
    pub head_outputs: usize,
    /// Whether the stream itself requires one head per task (task-incremental split MNIST);
    /// see the rule above.
    pub head_per_task: bool,
    /// Classification or regression.
    pub problem: Problem,
    /// Online protocol: each example once, batch size 1, and no task-boundary signal to the
    /// learner (online permuted MNIST and slowly-changing regression, as in Dohare et al.
    /// 2024). Since the learner is not told where tasks begin, a network with one head per
    /// task contradicts it; the orchestrator should reject that combination.
    pub online: bool,
    /// Random crops and flips the trainer applies to each training batch of an image stream
    /// ([`augment_batch`], with the example's position in the epoch's order), never to held-out
    /// examples; `None` for streams that are not augmented.
    pub augment: Option<Augment>,
}

/// One task of a stream.
#[derive(Clone, Debug)]
pub struct Task {
    /// Index in the stream, from 0.
    pub index: usize,
    /// Training examples, in the order the stream chose. The trainer shuffles them per epoch
    /// for offline streams only; an online stream's examples are shown in exactly this order
    /// (online permuted MNIST draws a fresh order per task unless `order: file`).
    pub train: Split,
    /// Held-out examples for evaluation.
    pub test: Split,
    /// Examples held out of the training split for methods that measure the network after a
    /// task (CLNP's pruning threshold); never trained on. Set by the trainer from
    /// `training.validation`, `None` when that is 0.
    pub validation: Option<Split>,
    /// How many outputs of the head this task may use, counted from output 0, when fewer than
    /// [`StreamInfo::head_outputs`]: a class-incremental stream whose output grows
    /// (class-incremental CIFAR-100) has one head over every class of the stream, but at task t
    /// only the classes seen in tasks 0..=t exist; a trainer is to mask the logits of the
    /// outputs from `active_outputs` on (−∞ before the softmax, as the loss-of-plasticity code
    /// does), at training and at test time. Targets of the task always lie below it. `None`:
    /// every output of the head is active.
    pub active_outputs: Option<usize>,
}

/// A built stream.
pub trait TaskStream: Send + Sync {
    /// Shape and protocol of the stream.
    fn info(&self) -> &StreamInfo;
    /// Task `index` (< `info().tasks`). Cheap: shares the stream's data.
    fn task(&self, index: usize) -> Task;
}

/// Why a stream could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No stream of that kind is registered.
    #[error("unknown stream kind `{kind}`; known kinds: {known}")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        known: String,
    },
    /// A data file is missing, unreadable or malformed.
    #[error("{path}: {reason}")]
    Data {
        /// The offending file (or folder).
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A parameter of the stream is out of range.
    #[error("stream `{stream}`: {reason}")]
    Invalid {
        /// Stream kind.
        stream: &'static str,
        /// What is wrong and what was expected.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StreamSpec;
    use crate::stream::{PermutedMnistSpec, SplitMnistSpec, SplitSetting, SyntheticPermutedSpec};

    fn synthetic(json: serde_json::Value) -> StreamSpec {
        serde_json::from_value(serde_json::json!({ "synthetic_permuted": json })).unwrap()
    }

    fn permuted(dir: &std::path::Path, train_examples: Option<usize>) -> StreamSpec {
        crate::stream::spec_of::<crate::stream::PermutedMnistKind>(&PermutedMnistSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            tasks: 2,
            first_unpermuted: false,
            train_examples,
            test_examples: None,
        })
    }

    fn invalid(spec: &StreamSpec) -> String {
        validate(spec).expect_err("should be rejected").to_string()
    }

    #[test]
    fn build_gives_each_kind_its_shape() {
        let dir = test_support::scratch("build");
        mnist::tests::write_fixture(dir.path(), 20, 10);
        let s = build(&synthetic(serde_json::json!({ "tasks": 3, "dim": 8 })), 1).unwrap();
        assert_eq!((s.info().tasks, s.info().inputs, s.info().head_outputs), (3, 8, 10));
        assert_eq!(s.info().input_shape, Shape::Vector(8));
        // What validate reads from the parameters and headers is what the built stream gives.
        let spec = synthetic(serde_json::json!({ "tasks": 3, "dim": 8 }));
        assert_eq!(input_shape(&spec).unwrap(), Shape::Vector(8));
        assert_eq!(
            input_shape(&permuted(dir.path(), None)).unwrap(),
            Shape::Image { channels: 1, height: 2, width: 3 }
        );
        let s = build(&permuted(dir.path(), None), 1).unwrap();
        assert_eq!((s.info().inputs, s.task(1).train.len()), (6, 20));
        // MNIST-format streams are single-channel images (the fixture's are 2×3).
        assert_eq!(s.info().input_shape, Shape::Image { channels: 1, height: 2, width: 3 });
        let online = crate::stream::spec_of::<crate::stream::OnlinePermutedMnistKind>(
            &crate::stream::OnlinePermutedMnistSpec {
                data_dir: dir.path().to_path_buf(),
                fingerprint: None,
                tasks: 2,
                first_unpermuted: true,
                train_examples: None,
                test_examples: Some(5),
                order: crate::stream::ExampleOrder::Shuffled,
            },
        );
        let s = build(&online, 1).unwrap();
        assert!(s.info().online);
        assert_eq!(s.task(0).test.len(), 5);
        let split = crate::stream::spec_of::<crate::stream::SplitMnistKind>(&SplitMnistSpec {
            data_dir: dir.path().to_path_buf(),
            fingerprint: None,
            groups: vec![vec![0, 1], vec![2, 3]],
            setting: SplitSetting::TaskIncremental,
            train_examples: None,
            test_examples: None,
            shift: 0,
        });
        let s = build(&split, 1).unwrap();
        assert!(s.info().head_per_task);
        assert_eq!(s.info().input_shape, Shape::Image { channels: 1, height: 2, width: 3 });
        assert_eq!(input_shape(&split).unwrap(), s.info().input_shape);
        let regression: StreamSpec = serde_json::from_value(
            serde_json::json!({ "slowly_changing_regression": { "tasks": 2, "flip_every": 100 } }),
        )
        .unwrap();
        let s = build(&regression, 1).unwrap();
        assert_eq!(
            (s.info().inputs, s.info().problem, s.task(1).test.len()),
            (20, Problem::Regression, 1_000)
        );
    }

    #[test]
    fn validation_checks_parameters_without_data() {
        let m = invalid(&synthetic(serde_json::json!({ "tasks": 0 })));
        assert!(m.contains("stream `synthetic_permuted`: needs at least one task"), "{m}");
        let m = invalid(&synthetic(serde_json::json!({ "tasks": 1, "classes": 300 })));
        assert!(m.contains("`classes` is 300; at most 256"), "{m}");
        let m = invalid(&synthetic(serde_json::json!({ "tasks": 1, "noise": -1.0 })));
        assert!(m.contains("`noise` must be a finite number ≥ 0, not -1"), "{m}");
        let spec = crate::stream::spec_of::<crate::stream::SyntheticPermutedKind>(&SyntheticPermutedSpec {
            tasks: 1,
            classes: 2,
            dim: 2,
            train_per_class: 1,
            test_per_class: 1,
            noise: 0.0,
            transform: Default::default(),
        });
        assert!(validate(&spec).is_ok());
        let regression = |extra: serde_json::Value| -> StreamSpec {
            let mut v = serde_json::json!({ "tasks": 2 });
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(serde_json::json!({ "slowly_changing_regression": v })).unwrap()
        };
        assert!(validate(&regression(serde_json::json!({}))).is_ok());
        let m = invalid(&regression(serde_json::json!({ "slow_bits": 21 })));
        assert!(m.contains("`slow_bits` (21) cannot exceed `inputs` (20)"), "{m}");
        let m = invalid(&regression(serde_json::json!({ "beta": 1.5 })));
        assert!(m.contains("`beta` must lie in [0, 1], not 1.5"), "{m}");
        let split = |groups: Vec<Vec<u8>>| {
            crate::stream::spec_of::<crate::stream::SplitMnistKind>(&SplitMnistSpec {
                data_dir: "unused".into(),
                fingerprint: None,
                groups,
                setting: SplitSetting::ClassIncremental,
                train_examples: None,
                test_examples: None,
                shift: 0,
            })
        };
        let m = invalid(&split(vec![vec![0, 1], vec![1, 2]]));
        assert!(m.contains("class 1 appears in two groups"), "{m}");
        let m = invalid(&split(vec![vec![10]]));
        assert!(m.contains("class 10 does not exist"), "{m}");
    }

    #[test]
    fn validation_checks_data_folders_and_limits() {
        let dir = test_support::scratch("validate");
        let m = invalid(&permuted(&dir.path().join("absent"), None));
        assert!(m.contains("absent: the data folder does not exist"), "{m}");
        let m = invalid(&permuted(dir.path(), None));
        assert!(m.contains("missing `train-images-idx3-ubyte`"), "{m}");
        mnist::tests::write_fixture(dir.path(), 20, 10);
        assert!(validate(&permuted(dir.path(), Some(20))).is_ok());
        let m = invalid(&permuted(dir.path(), Some(21)));
        assert!(
            m.contains("train-images-idx3-ubyte.gz: `train_examples` is 21, but the file holds 20"),
            "{m}"
        );
        let m = invalid(&permuted(dir.path(), Some(0)));
        assert!(m.contains("`train_examples` must be ≥ 1"), "{m}");
    }
}
