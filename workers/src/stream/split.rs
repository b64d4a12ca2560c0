//! A set of examples of one task, as a view over shared data.

use std::sync::Arc;

/// Where a split's inputs come from: a shared table of rows, stored compactly.
#[derive(Clone)]
pub(crate) enum Inputs {
    /// Bytes scaled by `scale` (MNIST pixels: 1/255, so values lie in [0, 1]).
    Bytes { data: Arc<[u8]>, dim: usize, scale: f32 },
    /// Ready-made floats.
    Floats { data: Arc<[f32]>, dim: usize },
    /// Bytes of channels-first images, each channel through its own table (`x = lut[c][byte]`):
    /// per-channel normalisation done while gathering, so the training and the held-out
    /// examples of an image stream are normalised alike without the trainer knowing the data
    /// set's statistics, and every value is exactly `(byte / 255 − mean) / std` as computed
    /// once in f32. `plane` is height × width.
    Channels { data: Arc<[u8]>, dim: usize, plane: usize, lut: Arc<[[f32; 256]]> },
}

/// Where a split's targets come from.
#[derive(Clone)]
pub(crate) enum Targets {
    /// A class label per source row, mapped to an output index of the task's head by `map`
    /// (identity when absent).
    Classes { labels: Arc<[u8]>, map: Option<Arc<[u8; 256]>> },
    /// One real target per source row.
    Reals(Arc<[f32]>),
    /// A class label per source row from more than 256 classes (ImageNet's 1,000), mapped to an
    /// output index of the task's head by `map[label]`. The image streams use it for every data
    /// set, so one stream implementation serves CIFAR and ImageNet alike.
    WideClasses { labels: Arc<[u16]>, map: Arc<[u32]> },
}

/// One example's target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Output index within the task's head.
    Class(u32),
    /// A real-valued target.
    Real(f32),
}

/// The examples of one split of one task: rows of a shared table, optionally with the task's
/// input permutation applied on the fly (so a permuted task costs one permutation, not a copy
/// of the data).
#[derive(Clone)]
pub struct Split {
    pub(crate) inputs: Inputs,
    pub(crate) targets: Targets,
    /// Source rows forming the split, in order; all rows when `None`.
    pub(crate) rows: Option<Arc<[u32]>>,
    /// `x[k] = source[permutation[k]]` when present.
    pub(crate) permutation: Option<Arc<[u32]>>,
    /// Output head the task uses.
    pub(crate) head: usize,
}

impl std::fmt::Debug for Split {
    /// A summary: the shared data itself would fill a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("examples", &self.len())
            .field("dim", &self.dim())
            .field("head", &self.head)
            .field("permuted", &self.permutation.is_some())
            .finish()
    }
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match &self.rows {
            Some(rows) => rows.len(),
            None => match &self.inputs {
                Inputs::Bytes { data, dim, .. } | Inputs::Channels { data, dim, .. } => data.len() / dim,
                Inputs::Floats { data, dim } => data.len() / dim,
            },
        }
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input features per example.
    pub fn dim(&self) -> usize {
        match &self.inputs {
            Inputs::Bytes { dim, .. } | Inputs::Floats { dim, .. } | Inputs::Channels { dim, .. } => *dim,
        }
    }

    /// The head this task uses when the network has one head per task: the task index, except
    /// in the class-incremental settings (always 0). Whether the network has one head per task
    /// is decided by [`super::StreamInfo::head_per_task`] and the network spec; see the rule
    /// on [`super::StreamInfo`]. With a shared head, every task uses head 0 and this value is
    /// ignored.
    pub fn head(&self) -> usize {
        self.head
    }

    /// The examples `indices` (positions in this split) as a split of their own, sharing the
    /// data: how a task's training split is divided into what is trained on and a held-out
    /// validation part.
    pub fn subset(&self, indices: &[usize]) -> Split {
        let rows: Arc<[u32]> = indices.iter().map(|&i| self.source_row(i) as u32).collect();
        Split { rows: Some(rows), ..self.clone() }
    }

    pub(crate) fn source_row(&self, i: usize) -> usize {
        match &self.rows {
            Some(rows) => rows[i] as usize,
            None => i,
        }
    }

    /// Writes the inputs of examples `indices` (positions in this split) into `x`, row after
    /// row; `x.len()` must be `indices.len() × dim()`. Runs once per batch, so it allocates
    /// nothing and decides the storage layout once per call, not once per value.
    pub fn gather_inputs(&self, indices: &[usize], x: &mut [f32]) {
        let dim = self.dim();
        assert_eq!(x.len(), indices.len() * dim, "gather buffer of the wrong size");
        let rows = x.chunks_exact_mut(dim).zip(indices.iter().map(|&i| self.source_row(i)));
        match (&self.inputs, self.permutation.as_deref()) {
            (Inputs::Bytes { data, scale, .. }, Some(p)) => {
                for (out, r) in rows {
                    let src = &data[r * dim..(r + 1) * dim];
                    for (o, &k) in out.iter_mut().zip(p) {
                        *o = src[k as usize] as f32 * scale;
                    }
                }
            }
            (Inputs::Bytes { data, scale, .. }, None) => {
                for (out, r) in rows {
                    let src = &data[r * dim..(r + 1) * dim];
                    for (o, &v) in out.iter_mut().zip(src) {
                        *o = v as f32 * scale;
                    }
                }
            }
            (Inputs::Floats { data, .. }, Some(p)) => {
                for (out, r) in rows {
                    let src = &data[r * dim..(r + 1) * dim];
                    for (o, &k) in out.iter_mut().zip(p) {
                        *o = src[k as usize];
                    }
                }
            }
            (Inputs::Floats { data, .. }, None) => {
                for (out, r) in rows {
                    out.copy_from_slice(&data[r * dim..(r + 1) * dim]);
                }
            }
            (Inputs::Channels { data, plane, lut, .. }, permutation) => {
                // Image streams never permute pixels; a permutation would mix channels' tables.
                assert!(permutation.is_none(), "per-channel inputs cannot be permuted");
                for (out, r) in rows {
                    let src = &data[r * dim..(r + 1) * dim];
                    for ((o, s), table) in
                        out.chunks_exact_mut(*plane).zip(src.chunks_exact(*plane)).zip(lut.iter())
                    {
                        for (o, &v) in o.iter_mut().zip(s) {
                            *o = table[v as usize];
                        }
                    }
                }
            }
        }
    }

    /// The target of example `i`.
    pub fn target(&self, i: usize) -> Target {
        let r = self.source_row(i);
        match &self.targets {
            Targets::Classes { labels, map } => {
                let label = labels[r];
                Target::Class(match map {
                    Some(m) => m[label as usize] as u32,
                    None => label as u32,
                })
            }
            Targets::Reals(values) => Target::Real(values[r]),
            Targets::WideClasses { labels, map } => Target::Class(map[labels[r] as usize]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_split(permutation: Option<Vec<u32>>, rows: Option<Vec<u32>>) -> Split {
        // Three rows of four pixels: row r holds 10r, 10r + 1, 10r + 2, 10r + 3.
        let data: Vec<u8> = (0..3).flat_map(|r| (0..4).map(move |k| 10 * r + k)).collect();
        Split {
            inputs: Inputs::Bytes { data: data.into(), dim: 4, scale: 0.5 },
            targets: Targets::Classes { labels: vec![7, 8, 9].into(), map: None },
            rows: rows.map(Into::into),
            permutation: permutation.map(Into::into),
            head: 0,
        }
    }

    #[test]
    fn gathers_rows_through_row_lists_and_permutations() {
        let s = bytes_split(None, None);
        assert_eq!(s.len(), 3);
        let mut x = vec![0.0; 8];
        s.gather_inputs(&[2, 0], &mut x);
        assert_eq!(x, [10.0, 10.5, 11.0, 11.5, 0.0, 0.5, 1.0, 1.5]);

        let s = bytes_split(Some(vec![3, 0, 2, 1]), Some(vec![1, 2]));
        assert_eq!(s.len(), 2);
        let mut x = vec![0.0; 4];
        s.gather_inputs(&[0], &mut x);
        assert_eq!(x, [6.5, 5.0, 6.0, 5.5], "row 1, pixels 3, 0, 2, 1");
        assert_eq!(s.target(1), Target::Class(9));

        let floats = Split {
            inputs: Inputs::Floats { data: vec![1.0, 2.0, 3.0, 4.0].into(), dim: 2 },
            targets: Targets::Reals(vec![0.5, -0.5].into()),
            rows: None,
            permutation: Some(vec![1, 0].into()),
            head: 3,
        };
        let mut x = vec![0.0; 4];
        floats.gather_inputs(&[1, 1], &mut x);
        assert_eq!(x, [4.0, 3.0, 4.0, 3.0]);
        assert_eq!(floats.target(0), Target::Real(0.5));
        assert_eq!(format!("{floats:?}"), "Split { examples: 2, dim: 2, head: 3, permuted: true }");
    }

    #[test]
    fn channels_are_normalised_each_with_its_own_affine() {
        // Two images of 2 channels × 2 pixels: image r holds 10r, 10r + 1 | 10r + 2, 10r + 3.
        let data: Vec<u8> = (0..2).flat_map(|r| (0..4).map(move |k| 10 * r + k)).collect();
        let s = Split {
            inputs: Inputs::Channels {
                data: data.into(),
                dim: 4,
                plane: 2,
                lut: vec![
                    std::array::from_fn(|v| v as f32 * 0.5 - 1.0),
                    std::array::from_fn(|v| v as f32 * 2.0 + 0.25),
                ]
                .into(),
            },
            targets: Targets::WideClasses {
                labels: vec![999, 3].into(),
                map: Arc::from(map_of(&[(999, 1), (3, 0)])),
            },
            rows: None,
            permutation: None,
            head: 0,
        };
        assert_eq!(s.len(), 2);
        let mut x = vec![0.0; 8];
        s.gather_inputs(&[1, 0], &mut x);
        assert_eq!(x, [4.0, 4.5, 24.25, 26.25, -1.0, -0.5, 4.25, 6.25]);
        assert_eq!((s.target(0), s.target(1)), (Target::Class(1), Target::Class(0)));
    }

    fn map_of(pairs: &[(usize, u32)]) -> Vec<u32> {
        let mut map = vec![u32::MAX; 1000];
        pairs.iter().for_each(|&(label, out)| map[label] = out);
        map
    }

    #[test]
    fn class_maps_translate_labels_to_head_outputs() {
        let mut map = [0u8; 256];
        map[8] = 1;
        let s = Split {
            targets: Targets::Classes { labels: vec![7, 8, 9].into(), map: Some(Arc::new(map)) },
            ..bytes_split(None, Some(vec![1]))
        };
        assert_eq!(s.target(0), Target::Class(1));
    }
}
