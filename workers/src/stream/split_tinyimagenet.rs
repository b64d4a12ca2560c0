//! Split TinyImageNet: TinyImageNet's 200 classes in `tasks` tasks of `200 / tasks` (10 tasks of
//! 20 by default, as in most continual-learning benchmarks that use it), 3×64×64 images, over
//! the same class-split stream as the CIFAR streams. The test images are the annotated
//! validation images (50 per class); normalisation uses TinyImageNet's usual training-set
//! statistics, and `augment` crops 64×64 from the image padded by 4 pixels and flips.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::augment::Augment;
use super::class_split::{class_groups, ClassSplit, HeadLayout};
use super::image::Normalization;
use super::kind::StreamKind;
use super::tinyimagenet::TinyImagenetFiles;
use super::{ClassOrder, SplitSetting, StreamError, TaskStream};
use crate::model::layer::Shape;

/// Parameters of split TinyImageNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTinyImagenetSpec {
    /// The `tiny-imagenet-200` folder.
    pub data_dir: PathBuf,
    /// Fingerprint of the data files, filled in by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Number of tasks; must divide the number of classes (200).
    #[serde(default = "ten")]
    pub tasks: usize,
    /// Task-incremental (one head per task) or class-incremental (one head over all classes).
    #[serde(default)]
    pub setting: SplitSetting,
    /// A class order drawn from the run's seed (the default) or `wnids.txt`'s.
    #[serde(default)]
    pub class_order: ClassOrder,
    /// Per-channel normalisation with TinyImageNet's statistics.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Random crops and horizontal flips of training images.
    #[serde(default = "yes")]
    pub augment: bool,
}

fn ten() -> usize {
    10
}

fn yes() -> bool {
    true
}

/// TinyImageNet's training-set statistics as commonly quoted.
fn tiny_normalization() -> Normalization {
    Normalization { mean: vec![0.4802, 0.4481, 0.3975], std: vec![0.2302, 0.2265, 0.2262] }
}

/// Split TinyImageNet.
pub struct SplitTinyImagenetKind;

impl StreamKind for SplitTinyImagenetKind {
    const KIND: &'static str = "split_tinyimagenet";
    const SUMMARY: &'static str = "TinyImageNet's 200 classes (64×64 colour images) in tasks of equal size";
    type Params = SplitTinyImagenetSpec;
    fn input_shape(_: &SplitTinyImagenetSpec) -> Result<Shape, StreamError> {
        Ok(Shape::Image { channels: 3, height: 64, width: 64 })
    }
    fn tasks(p: &SplitTinyImagenetSpec) -> usize {
        p.tasks
    }
    fn head_per_task(p: &SplitTinyImagenetSpec) -> bool {
        p.setting == SplitSetting::TaskIncremental
    }
    fn check(p: &SplitTinyImagenetSpec) -> Result<(), String> {
        super::kind::at_most("tasks", p.tasks, 200)
    }
    fn check_data(p: &SplitTinyImagenetSpec) -> Result<(), StreamError> {
        let files = TinyImagenetFiles::locate(&p.data_dir)?;
        divides(p.tasks, files.wnids.len())
    }
    fn fingerprint(dir: &Path) -> Result<String, StreamError> {
        TinyImagenetFiles::locate(dir)?.fingerprint()
    }
    fn build(p: &SplitTinyImagenetSpec, seed: u64) -> Result<Box<dyn TaskStream>, StreamError> {
        let files = TinyImagenetFiles::locate(&p.data_dir)?;
        divides(p.tasks, files.wnids.len())?;
        files.verify_fingerprint(p.fingerprint.as_deref())?;
        let classes = files.wnids.len();
        let purpose = format!("stream.{}.class_order", Self::KIND);
        let order = (p.class_order == ClassOrder::Seeded).then_some((seed, purpose.as_str()));
        let groups = class_groups(classes, p.tasks, order);
        let layout = match p.setting {
            SplitSetting::TaskIncremental => HeadLayout::PerTask,
            SplitSetting::ClassIncremental => HeadLayout::AllClasses,
        };
        let normalization = if p.normalize { tiny_normalization() } else { Normalization::identity(3) };
        let mut stream = ClassSplit::new(Self::KIND, files.load()?, groups, layout, &normalization)?;
        if p.augment {
            stream.set_augment(Augment::standard());
        }
        Ok(Box::new(stream))
    }
}

/// The tasks must cut the folder's classes into equal groups.
fn divides(tasks: usize, classes: usize) -> Result<(), StreamError> {
    if tasks == 0 || !classes.is_multiple_of(tasks) {
        return Err(StreamError::Invalid {
            stream: SplitTinyImagenetKind::KIND,
            reason: format!("`tasks` is {tasks}; it must divide the folder's {classes} classes evenly"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layer::Shape;
    use crate::stream::tinyimagenet::tests::{expected, write_fixture};
    use crate::stream::{build, spec_of, validate, Target};

    fn spec(
        dir: &Path,
        tasks: usize,
        setting: SplitSetting,
        class_order: ClassOrder,
    ) -> crate::protocol::StreamSpec {
        spec_of::<SplitTinyImagenetKind>(&SplitTinyImagenetSpec {
            data_dir: dir.to_path_buf(),
            fingerprint: None,
            tasks,
            setting,
            class_order,
            normalize: false,
            augment: true,
        })
    }

    #[test]
    fn tasks_partition_the_classes_with_images_of_64_by_64() {
        let dir = test_support::scratch("split-tiny");
        write_fixture(dir.path(), 4, 2, 1);
        let s = build(&spec(dir.path(), 2, SplitSetting::TaskIncremental, ClassOrder::Canonical), 1).unwrap();
        let info = s.info();
        assert_eq!(info.input_shape, Shape::Image { channels: 3, height: 64, width: 64 });
        assert_eq!((info.tasks, info.head_outputs, info.head_per_task, info.inputs), (2, 2, true, 12_288));
        assert!(info.augment.is_some());
        let task = s.task(1);
        assert_eq!((task.train.len(), task.test.len()), (4, 2));
        // Task 1 is classes 2 and 3; its first training image is class 2's first, image 2000.
        let mut x = vec![0.0; 12_288];
        task.train.gather_inputs(&[0], &mut x);
        assert_eq!(x[64 * 9 + 17], expected(2000, 9, 17) as f32 / 255.0);
        assert_eq!((task.train.target(0), task.train.target(3)), (Target::Class(0), Target::Class(1)));
        let seeded = |seed| {
            let s = build(&spec(dir.path(), 4, SplitSetting::ClassIncremental, ClassOrder::Seeded), seed)
                .unwrap();
            (0..4).map(|t| s.task(t).test.target(0)).collect::<Vec<_>>()
        };
        let a = seeded(1);
        let mut classes: Vec<u32> = a
            .iter()
            .map(|t| match t {
                Target::Class(c) => *c,
                Target::Real(_) => unreachable!(),
            })
            .collect();
        classes.sort_unstable();
        assert_eq!(classes, [0, 1, 2, 3], "one class per task, each once, labels kept");
        assert_eq!(a, seeded(1));
        assert!((2..40).any(|seed| seeded(seed) != a), "the order depends on the seed");
        let m = validate(&spec(dir.path(), 3, SplitSetting::TaskIncremental, ClassOrder::Seeded))
            .unwrap_err()
            .to_string();
        assert!(m.contains("`tasks` is 3; it must divide the folder's 4 classes evenly"), "{m}");
    }
}
