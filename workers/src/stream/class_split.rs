//! One image data set cut into tasks by class: the single implementation behind split CIFAR-10,
//! split CIFAR-100, class-incremental CIFAR-100 and Continual ImageNet, which differ only in
//! which classes form each task and in what the network's head predicts.
//!
//! A task is a list of classes; its examples are the images of those classes (in file order,
//! class after class), and its labels are mapped to head outputs by the [`HeadLayout`]. Only
//! per-class row lists are kept; a task's rows and label map are built when the task is asked
//! for, so a 5,000-task Continual ImageNet stream costs no more memory than a 5-task one.

use std::sync::Arc;

use super::augment::Augment;
use super::image::{ImageData, ImageSet, Normalization};
use super::split::{Inputs, Split, Targets};
use super::{Problem, StreamError, StreamInfo, Task, TaskStream};
use crate::model::layer::Shape;

/// What the head predicts, and so how labels become outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadLayout {
    /// Task-incremental: one head per task, the task id selects it; a class is its position
    /// within the task's list (split MNIST's task-incremental setting).
    PerTask,
    /// One shared head whose outputs are positions within the current task's list: Continual
    /// ImageNet's binary tasks, where output 0 is "the first class of this task" in every
    /// task (the loss-of-plasticity code's single two-output head).
    SharedPositions,
    /// Class-incremental with a fixed output: one shared head over every class of the data set,
    /// labels unchanged (split MNIST's class-incremental setting).
    AllClasses,
    /// Class-incremental with a growing output: one shared head over the stream's classes in
    /// the order tasks introduce them (a class is its position in that order); task t may use
    /// only the outputs of the classes introduced in tasks 0..=t ([`Task::active_outputs`]),
    /// and trains and tests on the images of all of them, as the loss-of-plasticity
    /// incremental CIFAR-100 experiment does.
    Growing,
}

/// A data set cut into tasks by class.
pub(crate) struct ClassSplit {
    info: StreamInfo,
    train: ImageSet,
    test: ImageSet,
    lut: Arc<[[f32; 256]]>,
    plane: usize,
    classes: usize,
    groups: Vec<Vec<u16>>,
    layout: HeadLayout,
    train_rows: Vec<Vec<u32>>,
    test_rows: Vec<Vec<u32>>,
}

impl std::fmt::Debug for ClassSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassSplit").field("info", &self.info).field("layout", &self.layout).finish()
    }
}

impl ClassSplit {
    /// The stream over `data`, one task per group. Every class of a group must exist and have
    /// at least one training and one test image (the error names the stream and the task);
    /// [`HeadLayout::PerTask`], [`HeadLayout::SharedPositions`] and [`HeadLayout::Growing`]
    /// also need a class to appear at most once within a group, and `Growing` once in the whole
    /// stream.
    pub(crate) fn new(
        stream: &'static str,
        data: ImageData,
        groups: Vec<Vec<u16>>,
        layout: HeadLayout,
        normalization: &Normalization,
    ) -> Result<Self, StreamError> {
        let Shape::Image { channels, height, width } = data.shape else {
            unreachable!("image data sets have image shapes")
        };
        let invalid = |reason: String| StreamError::Invalid { stream, reason };
        normalization.check(channels).map_err(invalid)?;
        let train_rows = data.train.rows_by_class(data.classes);
        let test_rows = data.test.rows_by_class(data.classes);
        let mut seen = vec![false; data.classes];
        for (t, group) in groups.iter().enumerate() {
            for (i, &c) in group.iter().enumerate() {
                let c = c as usize;
                if c >= data.classes {
                    return Err(invalid(format!(
                        "task {t}: class {c} does not exist (the data has {})",
                        data.classes
                    )));
                }
                if group[..i].contains(&group[i]) || (layout == HeadLayout::Growing && seen[c]) {
                    return Err(invalid(format!("task {t}: class {c} appears twice")));
                }
                seen[c] = true;
                for (rows, which) in [(&train_rows, "training"), (&test_rows, "test")] {
                    if rows[c].is_empty() {
                        return Err(invalid(format!("task {t}: class {c} has no {which} image in the data")));
                    }
                }
            }
        }
        let widest = groups.iter().map(Vec::len).max().unwrap_or(0);
        let info = StreamInfo {
            tasks: groups.len(),
            inputs: data.shape.len(),
            input_shape: data.shape,
            head_outputs: match layout {
                HeadLayout::PerTask | HeadLayout::SharedPositions => widest,
                HeadLayout::AllClasses => data.classes,
                HeadLayout::Growing => groups.iter().map(Vec::len).sum(),
            },
            head_per_task: layout == HeadLayout::PerTask,
            problem: Problem::Classification,
            online: false,
            augment: None,
        };
        Ok(ClassSplit {
            info,
            lut: normalization.tables(),
            plane: height * width,
            classes: data.classes,
            train: data.train,
            test: data.test,
            groups,
            layout,
            train_rows,
            test_rows,
        })
    }

    /// Asks the trainer to augment training images ([`StreamInfo::augment`]).
    pub(crate) fn set_augment(&mut self, augment: Augment) {
        self.info.augment = Some(augment);
    }

    /// The classes task `index` trains and tests on, in output order for `Growing`.
    fn task_classes(&self, index: usize) -> Vec<u16> {
        match self.layout {
            HeadLayout::Growing => self.groups[..=index].concat(),
            _ => self.groups[index].clone(),
        }
    }

    fn split(
        &self,
        set: &ImageSet,
        rows_of: &[Vec<u32>],
        classes: &[u16],
        map: &Arc<[u32]>,
        head: usize,
    ) -> Split {
        let rows: Arc<[u32]> = classes.iter().flat_map(|&c| rows_of[c as usize].iter().copied()).collect();
        Split {
            inputs: Inputs::Channels {
                data: set.images.clone(),
                dim: self.info.inputs,
                plane: self.plane,
                lut: self.lut.clone(),
            },
            targets: Targets::WideClasses { labels: set.labels.clone(), map: map.clone() },
            rows: Some(rows),
            permutation: None,
            head,
        }
    }
}

impl TaskStream for ClassSplit {
    fn info(&self) -> &StreamInfo {
        &self.info
    }

    fn task(&self, index: usize) -> Task {
        assert!(index < self.info.tasks, "task {index} of a {}-task stream", self.info.tasks);
        let classes = self.task_classes(index);
        // Classes outside the task never occur among its rows; u32::MAX marks them.
        let mut map = vec![u32::MAX; self.classes];
        for (position, &c) in classes.iter().enumerate() {
            map[c as usize] = match self.layout {
                HeadLayout::AllClasses => c as u32,
                _ => position as u32,
            };
        }
        let map: Arc<[u32]> = map.into();
        // A network with one head per task (`heads: per_task`) gives each binary task of
        // Continual ImageNet its own head; the growing and all-class heads are one head by nature.
        let head = match self.layout {
            HeadLayout::PerTask | HeadLayout::SharedPositions => index,
            HeadLayout::AllClasses | HeadLayout::Growing => 0,
        };
        Task {
            index,
            train: self.split(&self.train, &self.train_rows, &classes, &map, head),
            test: self.split(&self.test, &self.test_rows, &classes, &map, head),
            validation: None,
            active_outputs: (self.layout == HeadLayout::Growing).then_some(classes.len()),
        }
    }
}

/// The classes `0..classes` in the order of a seeded permutation (`Some(seed)`) or in their
/// canonical order (`None`), cut into `tasks` groups of equal size.
pub(crate) fn class_groups(classes: usize, tasks: usize, order: Option<(u64, &str)>) -> Vec<Vec<u16>> {
    let order: Vec<u16> = match order {
        Some((seed, purpose)) => {
            super::sample::permutation(&mut crate::rng::stream(seed, purpose, 0), classes)
                .into_iter()
                .map(|c| c as u16)
                .collect()
        }
        None => (0..classes as u16).collect(),
    };
    order.chunks(classes / tasks).map(<[u16]>::to_vec).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stream::Target;

    /// A data set of 1×1×2 images: image i of class i % classes, its two bytes i and 255 − i;
    /// `train` and `test` images.
    pub(crate) fn tiny(classes: usize, train: usize, test: usize) -> ImageData {
        let set = |n: usize| ImageSet {
            images: (0..n).flat_map(|i| [i as u8, 255 - i as u8]).collect(),
            labels: (0..n).map(|i| (i % classes) as u16).collect(),
        };
        ImageData {
            train: set(train),
            test: set(test),
            shape: Shape::Image { channels: 1, height: 1, width: 2 },
            classes,
        }
    }

    fn labels(split: &Split) -> Vec<(u8, u32)> {
        let mut x = vec![0.0; 2];
        (0..split.len())
            .map(|i| {
                split.gather_inputs(&[i], &mut x);
                let Target::Class(out) = split.target(i) else { panic!("classification") };
                ((x[0] * 255.0).round() as u8, out)
            })
            .collect()
    }

    fn build(groups: Vec<Vec<u16>>, layout: HeadLayout) -> ClassSplit {
        ClassSplit::new("test", tiny(6, 24, 12), groups, layout, &Normalization::identity(1)).unwrap()
    }

    #[test]
    fn per_task_heads_map_classes_to_positions_within_the_task() {
        let s = build(vec![vec![4, 1], vec![0, 2, 3]], HeadLayout::PerTask);
        assert_eq!((s.info().tasks, s.info().head_outputs, s.info().head_per_task), (2, 3, true));
        assert_eq!(s.info().input_shape, Shape::Image { channels: 1, height: 1, width: 2 });
        let task = s.task(0);
        assert_eq!((task.train.head(), s.task(1).test.head(), task.active_outputs), (0, 1, None));
        // Class 4's images 4, 10, 16, 22 first, then class 1's.
        assert_eq!(
            labels(&task.train),
            [(4, 0), (10, 0), (16, 0), (22, 0), (1, 1), (7, 1), (13, 1), (19, 1)]
        );
        assert_eq!(labels(&s.task(1).test), [(0, 0), (6, 0), (2, 1), (8, 1), (3, 2), (9, 2)]);
    }

    #[test]
    fn shared_and_all_class_heads() {
        let s = build(vec![vec![5, 3], vec![1, 0]], HeadLayout::SharedPositions);
        assert_eq!((s.info().head_outputs, s.info().head_per_task, s.task(1).train.head()), (2, false, 1));
        assert_eq!(labels(&s.task(0).test), [(5, 0), (11, 0), (3, 1), (9, 1)]);
        let s = build(vec![vec![5, 3], vec![0]], HeadLayout::AllClasses);
        assert_eq!((s.info().head_outputs, s.info().head_per_task), (6, false));
        assert_eq!(labels(&s.task(0).test), [(5, 5), (11, 5), (3, 3), (9, 3)]);
    }

    #[test]
    fn a_growing_head_adds_the_classes_of_each_task_and_keeps_the_old_ones() {
        let s = build(vec![vec![2, 5], vec![0], vec![4, 1, 3]], HeadLayout::Growing);
        assert_eq!((s.info().head_outputs, s.info().head_per_task), (6, false));
        let actives: Vec<_> = (0..3).map(|t| s.task(t).active_outputs).collect();
        assert_eq!(actives, [Some(2), Some(3), Some(6)]);
        assert_eq!(labels(&s.task(1).test), [(2, 0), (8, 0), (5, 1), (11, 1), (0, 2), (6, 2)]);
        let task = s.task(2);
        assert_eq!(task.train.len(), 24, "every class seen so far");
        assert!(labels(&task.train).iter().all(|&(_, out)| out < 6));
        let e = ClassSplit::new(
            "test",
            tiny(6, 24, 12),
            vec![vec![2], vec![2]],
            HeadLayout::Growing,
            &Normalization::identity(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stream `test`: task 1: class 2 appears twice"), "{e}");
    }

    #[test]
    fn groups_are_checked_against_the_data() {
        let fail = |groups: Vec<Vec<u16>>, data: ImageData| {
            ClassSplit::new("test", data, groups, HeadLayout::PerTask, &Normalization::identity(1))
                .unwrap_err()
                .to_string()
        };
        assert!(
            fail(vec![vec![6]], tiny(6, 24, 12)).contains("task 0: class 6 does not exist (the data has 6)")
        );
        assert!(fail(vec![vec![1, 1]], tiny(6, 24, 12)).contains("task 0: class 1 appears twice"));
        assert!(fail(vec![vec![0], vec![5]], tiny(6, 24, 5)).contains("task 1: class 5 has no test image"));
        let e = ClassSplit::new(
            "test",
            tiny(6, 6, 6),
            vec![vec![0]],
            HeadLayout::PerTask,
            &Normalization::cifar10(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs 1 means and 1 stds"), "{e}");
    }

    #[test]
    fn normalisation_applies_to_training_and_test_inputs() {
        let norm = Normalization { mean: vec![0.5], std: vec![0.25] };
        let s = ClassSplit::new("test", tiny(2, 4, 4), vec![vec![0, 1]], HeadLayout::PerTask, &norm).unwrap();
        let task = s.task(0);
        let mut x = vec![0.0; 2];
        for split in [&task.train, &task.test] {
            split.gather_inputs(&[1], &mut x);
            // Row 1 of the task is image 2 (class 0's second image): bytes 2 and 253.
            assert_eq!(x, [(2.0 / 255.0 - 0.5) / 0.25, (253.0 / 255.0 - 0.5) / 0.25]);
        }
    }

    #[test]
    fn class_groups_are_seeded_or_canonical() {
        assert_eq!(class_groups(6, 3, None), [vec![0, 1], vec![2, 3], vec![4, 5]]);
        let a = class_groups(100, 10, Some((1, "order")));
        assert_eq!(a, class_groups(100, 10, Some((1, "order"))));
        assert_ne!(a, class_groups(100, 10, Some((2, "order"))));
        let mut all: Vec<u16> = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<u16>>());
        assert!(a.iter().all(|g| g.len() == 10));
    }
}
