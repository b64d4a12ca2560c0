//! The CIFAR streams: split CIFAR-10, split CIFAR-100 and class-incremental CIFAR-100.
//!
//! * `split_cifar10` — the 10 classes in 5 tasks of 2 (Zenke et al. 2017; van de Ven & Tolias
//!   2019 for the two settings), `[0, 1]`, `[2, 3]`, … unless `class_order: seeded`;
//! * `split_cifar100` — the 100 fine classes in `tasks` tasks of `100 / tasks` classes (10 or 20
//!   tasks in the literature), the class order a permutation drawn from the run's seed unless
//!   `class_order: canonical`;
//! * `class_incremental_cifar100` — Dohare et al. (2024)'s incremental CIFAR-100: classes are
//!   added `100 / tasks` at a time (5 over 20 tasks by default) in a seeded order; task t trains
//!   and tests on every class introduced so far and the shared head's active outputs grow with
//!   them ([`Task::active_outputs`](super::Task::active_outputs)). The reference also holds out
//!   50 training images per class for validation (`training.validation` does that here), pads
//!   crops by reflection rather than zeros and rotates by up to 15°, which `augment` does not.
//!
//! Inputs are normalised per channel with the data set's usual statistics
//! ([`Normalization`]) unless `normalize: false` (pixels in [0, 1]); `augment` (default on, as
//! in the literature) asks the trainer for random crops and flips of training images
//! ([`super::augment`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::layer::Shape;

use super::augment::Augment;
use super::cifar::{CifarFiles, CifarVariant};
use super::class_split::{class_groups, ClassSplit, HeadLayout};
use super::image::Normalization;
use super::kind::StreamKind;
use super::{SplitSetting, StreamError, TaskStream};

/// In which order classes are dealt out to tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassOrder {
    /// A permutation of the classes drawn from the run's seed: each seed is another split.
    #[default]
    Seeded,
    /// The data set's own order: task 0 has classes 0, 1, …
    Canonical,
}

fn yes() -> bool {
    true
}

fn canonical() -> ClassOrder {
    ClassOrder::Canonical
}

/// Parameters of split CIFAR-10.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitCifar10Spec {
    /// Folder of the CIFAR-10 binary version (`cifar-10-batches-bin`).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files, filled in by the orchestrator (see split MNIST's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Task-incremental (one head per task) or class-incremental (one head over 10 classes).
    #[serde(default)]
    pub setting: SplitSetting,
    /// Canonical pairs `[0, 1]`, `[2, 3]`, … (the default) or a seeded class order.
    #[serde(default = "canonical")]
    pub class_order: ClassOrder,
    /// Per-channel normalisation with CIFAR-10's statistics.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Random crops (4-pixel zero padding) and horizontal flips of training images.
    #[serde(default = "yes")]
    pub augment: bool,
}

/// Parameters of split CIFAR-100.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitCifar100Spec {
    /// Folder of the CIFAR-100 binary version (`cifar-100-binary`).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files, filled in by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of tasks, a divisor of 100 (10 or 20 in the literature).
    #[serde(default = "ten")]
    pub tasks: usize,
    /// Task-incremental (one head per task) or class-incremental (one head over 100 classes).
    #[serde(default)]
    pub setting: SplitSetting,
    /// A class order drawn from the run's seed (the default) or the canonical one.
    #[serde(default)]
    pub class_order: ClassOrder,
    /// Per-channel normalisation with CIFAR-100's statistics.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Random crops and horizontal flips of training images.
    #[serde(default = "yes")]
    pub augment: bool,
}

/// Parameters of class-incremental CIFAR-100.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassIncrementalCifar100Spec {
    /// Folder of the CIFAR-100 binary version (`cifar-100-binary`).
    pub data_dir: PathBuf,
    /// Fingerprint of the data files, filled in by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of increments, a divisor of 100; `100 / tasks` classes are added per task.
    #[serde(default = "twenty")]
    pub tasks: usize,
    /// A class order drawn from the run's seed (the default) or the canonical one.
    #[serde(default)]
    pub class_order: ClassOrder,
    /// Per-channel normalisation with CIFAR-100's statistics.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Random crops and horizontal flips of training images.
    #[serde(default = "yes")]
    pub augment: bool,
}

fn ten() -> usize {
    10
}

fn twenty() -> usize {
    20
}

/// `tasks` must cut 100 classes into equal groups.
fn check_divides(tasks: usize) -> Result<(), String> {
    if tasks == 0 || 100 % tasks != 0 {
        return Err(format!(
            "`tasks` is {tasks}; it must divide the 100 classes evenly (1, 2, 4, 5, 10, 20, 25, 50 or 100)"
        ));
    }
    Ok(())
}

/// The classes of each task.
fn groups(classes: usize, tasks: usize, order: ClassOrder, seed: u64, kind: &str) -> Vec<Vec<u16>> {
    let purpose = format!("stream.{kind}.class_order");
    class_groups(classes, tasks, (order == ClassOrder::Seeded).then_some((seed, purpose.as_str())))
}

fn check_folder(dir: &Path, variant: CifarVariant) -> Result<(), StreamError> {
    CifarFiles::locate(dir, variant)?.check_sizes().map(|_| ())
}

/// Loads the data and builds the stream.
#[allow(clippy::too_many_arguments)]
fn build_stream(
    kind: &'static str,
    dir: &Path,
    fingerprint: Option<&str>,
    variant: CifarVariant,
    groups: Vec<Vec<u16>>,
    layout: HeadLayout,
    normalize: bool,
    augment: bool,
) -> Result<Box<dyn TaskStream>, StreamError> {
    let files = CifarFiles::locate(dir, variant)?;
    files.verify_fingerprint(fingerprint)?;
    let normalization = match (normalize, variant) {
        (false, _) => Normalization::identity(3),
        (true, CifarVariant::Cifar10) => Normalization::cifar10(),
        (true, CifarVariant::Cifar100) => Normalization::cifar100(),
    };
    let mut stream = ClassSplit::new(kind, files.load()?, groups, layout, &normalization)?;
    if augment {
        stream.set_augment(Augment::standard());
    }
    Ok(Box::new(stream))
}

fn layout(setting: SplitSetting) -> HeadLayout {
    match setting {
        SplitSetting::TaskIncremental => HeadLayout::PerTask,
        SplitSetting::ClassIncremental => HeadLayout::AllClasses,
    }
}

/// Split CIFAR-10: 5 tasks of 2 classes.
pub struct SplitCifar10Kind;

impl StreamKind for SplitCifar10Kind {
    const KIND: &'static str = "split_cifar10";
    const SUMMARY: &'static str = "CIFAR-10's classes in 5 tasks of 2 (32×32 colour images)";
    type Params = SplitCifar10Spec;
    fn input_shape(_: &SplitCifar10Spec) -> Result<Shape, StreamError> {
        Ok(Shape::Image { channels: 3, height: 32, width: 32 })
    }
    fn tasks(_: &SplitCifar10Spec) -> usize {
        5
    }
    fn head_per_task(p: &SplitCifar10Spec) -> bool {
        p.setting == SplitSetting::TaskIncremental
    }
    fn check_data(p: &SplitCifar10Spec) -> Result<(), StreamError> {
        check_folder(&p.data_dir, CifarVariant::Cifar10)
    }
    fn fingerprint(dir: &Path) -> Result<String, StreamError> {
        CifarFiles::locate(dir, CifarVariant::Cifar10)?.fingerprint()
    }
    fn build(p: &SplitCifar10Spec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        let groups = groups(10, 5, p.class_order, seed, Self::KIND);
        let (dir, print) = (&p.data_dir, p.fingerprint.as_deref());
        build_stream(
            Self::KIND,
            dir,
            print,
            CifarVariant::Cifar10,
            groups,
            layout(p.setting),
            p.normalize,
            p.augment,
        )
    }
}

/// Split CIFAR-100: `tasks` tasks of `100 / tasks` classes.
pub struct SplitCifar100Kind;

impl StreamKind for SplitCifar100Kind {
    const KIND: &'static str = "split_cifar100";
    const SUMMARY: &'static str = "CIFAR-100's classes in 10 or 20 tasks, seeded class order";
    type Params = SplitCifar100Spec;
    fn input_shape(_: &SplitCifar100Spec) -> Result<Shape, StreamError> {
        Ok(Shape::Image { channels: 3, height: 32, width: 32 })
    }
    fn tasks(p: &SplitCifar100Spec) -> usize {
        p.tasks
    }
    fn head_per_task(p: &SplitCifar100Spec) -> bool {
        p.setting == SplitSetting::TaskIncremental
    }
    fn check(p: &SplitCifar100Spec) -> Result<(), String> {
        check_divides(p.tasks)
    }
    fn check_data(p: &SplitCifar100Spec) -> Result<(), StreamError> {
        check_folder(&p.data_dir, CifarVariant::Cifar100)
    }
    fn fingerprint(dir: &Path) -> Result<String, StreamError> {
        CifarFiles::locate(dir, CifarVariant::Cifar100)?.fingerprint()
    }
    fn build(p: &SplitCifar100Spec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        let groups = groups(100, p.tasks, p.class_order, seed, Self::KIND);
        let (dir, print) = (&p.data_dir, p.fingerprint.as_deref());
        build_stream(
            Self::KIND,
            dir,
            print,
            CifarVariant::Cifar100,
            groups,
            layout(p.setting),
            p.normalize,
            p.augment,
        )
    }
}

/// Class-incremental CIFAR-100: classes added in increments, the output growing with them.
pub struct ClassIncrementalCifar100Kind;

impl StreamKind for ClassIncrementalCifar100Kind {
    const KIND: &'static str = "class_incremental_cifar100";
    const SUMMARY: &'static str =
        "CIFAR-100 with classes added in increments and a growing output (Dohare et al. 2024)";
    type Params = ClassIncrementalCifar100Spec;
    fn input_shape(_: &ClassIncrementalCifar100Spec) -> Result<Shape, StreamError> {
        Ok(Shape::Image { channels: 3, height: 32, width: 32 })
    }
    fn tasks(p: &ClassIncrementalCifar100Spec) -> usize {
        p.tasks
    }
    fn check(p: &ClassIncrementalCifar100Spec) -> Result<(), String> {
        check_divides(p.tasks)
    }
    fn check_data(p: &ClassIncrementalCifar100Spec) -> Result<(), StreamError> {
        check_folder(&p.data_dir, CifarVariant::Cifar100)
    }
    fn fingerprint(dir: &Path) -> Result<String, StreamError> {
        CifarFiles::locate(dir, CifarVariant::Cifar100)?.fingerprint()
    }
    fn build(p: &ClassIncrementalCifar100Spec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        let groups = groups(100, p.tasks, p.class_order, seed, Self::KIND);
        let (dir, print) = (&p.data_dir, p.fingerprint.as_deref());
        build_stream(
            Self::KIND,
            dir,
            print,
            CifarVariant::Cifar100,
            groups,
            HeadLayout::Growing,
            p.normalize,
            p.augment,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StreamSpec;
    use crate::stream::cifar::tests::write_fixture;
    use crate::stream::{build, spec_of, validate, Target};

    fn cifar10(dir: &Path, setting: SplitSetting, class_order: ClassOrder) -> StreamSpec {
        spec_of::<SplitCifar10Kind>(&SplitCifar10Spec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            setting,
            class_order,
            normalize: true,
            augment: true,
        })
    }

    /// The true classes of a task's training images, in order, each once (a task's rows are
    /// class after class).
    fn classes_of(task: &crate::stream::Task) -> Vec<u16> {
        let crate::stream::split::Targets::WideClasses { labels, .. } = &task.train.targets else {
            panic!("image streams use wide class labels")
        };
        let mut classes: Vec<u16> = (0..task.train.len()).map(|i| labels[task.train.source_row(i)]).collect();
        classes.dedup();
        classes
    }

    #[test]
    fn split_cifar10_has_five_canonical_pairs_with_per_task_heads() {
        let dir = test_support::scratch("split-cifar10");
        write_fixture(dir.path(), CifarVariant::Cifar10, 20, 20);
        let spec = cifar10(dir.path(), SplitSetting::TaskIncremental, ClassOrder::Canonical);
        validate(&spec).unwrap();
        let s = build(&spec, 3).unwrap();
        let info = s.info();
        assert_eq!((info.tasks, info.inputs, info.head_outputs, info.head_per_task), (5, 3072, 2, true));
        assert!(info.augment.is_some());
        for t in 0..5 {
            let task = s.task(t);
            assert_eq!(classes_of(&task), [2 * t as u16, 2 * t as u16 + 1]);
            // 100 training images, 10 of each class; 20 test images, 2 of each.
            assert_eq!((task.train.len(), task.test.len(), task.train.head()), (20, 4, t));
            assert_eq!(task.train.target(19), Target::Class(1));
        }
        let s =
            build(&cifar10(dir.path(), SplitSetting::ClassIncremental, ClassOrder::Canonical), 3).unwrap();
        assert_eq!((s.info().head_outputs, s.info().head_per_task), (10, false));
        assert_eq!(s.task(4).test.target(3), Target::Class(9));
    }

    #[test]
    fn a_seeded_order_partitions_the_classes_and_depends_on_the_seed() {
        let dir = test_support::scratch("split-cifar100");
        write_fixture(dir.path(), CifarVariant::Cifar100, 200, 100);
        let spec = |tasks: usize, class_order| {
            spec_of::<SplitCifar100Kind>(&SplitCifar100Spec {
                data_dir: dir.path().to_path_buf(),
                fingerprint: None,
                tasks,
                setting: SplitSetting::TaskIncremental,
                class_order,
                normalize: false,
                augment: false,
            })
        };
        let order = |tasks: usize, order: ClassOrder, seed: u64| -> Vec<Vec<u16>> {
            let s = build(&spec(tasks, order), seed).unwrap();
            (0..s.info().tasks).map(|t| classes_of(&s.task(t))).collect()
        };
        let a = order(20, ClassOrder::Seeded, 1);
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|g| g.len() == 5));
        let mut all = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<u16>>(), "each class in exactly one task");
        assert_eq!(a, order(20, ClassOrder::Seeded, 1));
        assert_ne!(a, order(20, ClassOrder::Seeded, 2));
        assert_eq!(order(10, ClassOrder::Canonical, 1)[3], (30..40).collect::<Vec<u16>>());
        let s = build(&spec(10, ClassOrder::Seeded), 1).unwrap();
        assert_eq!((s.info().head_outputs, s.info().augment), (10, None));
        let m = validate(&spec(30, ClassOrder::Seeded)).unwrap_err().to_string();
        assert!(m.contains("stream `split_cifar100`: `tasks` is 30; it must divide the 100 classes"), "{m}");
    }

    #[test]
    fn class_incremental_cifar100_grows_its_output_five_classes_at_a_time() {
        let dir = test_support::scratch("ci-cifar100");
        write_fixture(dir.path(), CifarVariant::Cifar100, 200, 100);
        let spec = spec_of::<ClassIncrementalCifar100Kind>(&ClassIncrementalCifar100Spec {
            data_dir: dir.path().to_path_buf(),
            fingerprint: None,
            tasks: 20,
            class_order: ClassOrder::Seeded,
            normalize: true,
            augment: true,
        });
        let s = build(&spec, 7).unwrap();
        assert_eq!((s.info().tasks, s.info().head_outputs, s.info().head_per_task), (20, 100, false));
        let mut previous: Vec<u16> = Vec::new();
        for t in 0..20 {
            let task = s.task(t);
            assert_eq!(task.active_outputs, Some(5 * (t + 1)));
            let classes = classes_of(&task);
            assert_eq!(&classes[..previous.len()], &previous[..], "old classes stay, in their order");
            assert_eq!(classes.len(), 5 * (t + 1));
            // Two training images per class; targets are the classes' positions in the order.
            assert_eq!(task.train.len(), 10 * (t + 1));
            assert_eq!(task.train.target(task.train.len() - 1), Target::Class(5 * t as u32 + 4));
            previous = classes;
        }
        let m = validate(&StreamSpec::new(
            "class_incremental_cifar100",
            serde_json::from_value(serde_json::json!({ "data_dir": dir.path().join("nowhere") })).unwrap(),
        ))
        .unwrap_err()
        .to_string();
        assert!(m.contains("nowhere: the data folder does not exist"), "{m}");
    }
}
