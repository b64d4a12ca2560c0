//! Sweeps: an experiment repeated over other values of any key that shapes its runs — network
//! width, batch size, the stream's settings — written as a `sweep:` section of dotted keys
//! (`sweep: {network.hidden: [[100, 100], [400, 400]], training.batch_size: [16, 32]}`) or, as
//! in Hydra's multirun, as comma lists on the command line with `-m`
//! (`network.hidden=[100,100],[400,400] training.batch_size=16,32`).
//!
//! A sweep over a method parameter (`methods.sgd.lr`) is that method's grid axis, as if the
//! list were written in the entry: the runs and their ids are the grid's. Every other axis
//! multiplies the whole recipe: each sweep point is the recipe with the axes' values set the
//! way an override sets them, validated like any recipe. A point whose values equal the
//! recipe's own gives exactly the runs the recipe gives without the sweep — same specs, same
//! ids — so adding a sweep keeps the finished runs.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::messages::{describe_json, show_value};
use super::path::KeyPath;

/// Top-level sections whose keys shape what a run trains; only these can be swept. The rest
/// (name, output, parallel, seeds, slurm, …) say how or where the runs run.
const SWEEPABLE: [&str; 7] = ["stream", "streams", "network", "training", "methods", "eval", "checkpoint"];

/// One swept key with its values, in the order written.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Axis {
    /// The dotted key, as an override writes it (`network.hidden`, `methods.sgd.lr`).
    pub key: String,
    /// The values, none repeated, at least one.
    pub values: Vec<Json>,
    /// Where the axis was written.
    pub origin: Origin,
}

/// Where an axis comes from, to point at it in messages.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Origin {
    /// The recipe's `sweep:` section.
    File,
    /// A comma-list override given with `-m`, as written.
    Override(String),
}

impl Axis {
    /// Path of the axis's value `index` in the recipe text (for axes of the `sweep:` section).
    pub fn value_path(&self, index: usize) -> KeyPath {
        KeyPath::root().key("sweep").key(self.key.as_str()).index(index)
    }

    /// Whether the axis names a method entry's parameter (`methods.<entry>.<param>`): it is
    /// then that entry's grid axis rather than a sweep of the whole recipe.
    pub fn is_method_parameter(&self) -> bool {
        let steps: Vec<&str> = self.key.split('.').collect();
        steps.len() == 3 && steps[0] == "methods"
    }
}

/// Why a sweep key or its values cannot be used; `None` when they can. `values` is what was
/// written for the key.
pub(super) fn check_axis(key: &str, values: &[Json]) -> Result<(), (Option<usize>, String)> {
    let root = key.split('.').next().unwrap_or_default();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err((None, "expected a dotted key with non-empty keys between the dots".into()));
    }
    if root == "seeds" {
        return Err((None, "`seeds` cannot be swept: every sweep point already runs with every seed".into()));
    }
    if root == "sweep" {
        return Err((None, "a sweep cannot sweep `sweep`".into()));
    }
    if !SWEEPABLE.contains(&root) {
        return Err((
            None,
            format!(
                "`{root}` does not change what a run trains, so it cannot be swept; sweepable \
                 keys are under: {}",
                SWEEPABLE.join(", ")
            ),
        ));
    }
    if values.is_empty() {
        return Err((None, "expected a non-empty list of values, found an empty list".into()));
    }
    for (j, value) in values.iter().enumerate() {
        if let Some(i) = values[..j].iter().position(|v| v == value) {
            return Err((
                Some(j),
                format!(
                    "sweep value {} is listed twice (also at position {i}); it would give the same runs twice",
                    show_value(value)
                ),
            ));
        }
    }
    Ok(())
}

/// A problem of the `sweep:` section: where in it, and what.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct SectionProblem {
    /// The axis's key, unless the section as a whole is wrong.
    pub key: Option<String>,
    /// The position of the offending value in the axis's list, if one value is.
    pub index: Option<usize>,
    /// What is wrong and what is expected.
    pub message: String,
}

/// The axes of a `sweep:` section's value, or why it is not a mapping of dotted keys to lists.
pub(super) fn read_section(section: Json) -> Result<Vec<Axis>, Vec<SectionProblem>> {
    let Json::Object(map) = section else {
        return Err(vec![SectionProblem {
            key: None,
            index: None,
            message: format!(
                "expected a mapping of dotted keys to lists of values (`network.hidden: [[100], [400]]`), found {}",
                describe_json(&section)
            ),
        }]);
    };
    let mut axes = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in map {
        let Json::Array(values) = value else {
            problems.push(SectionProblem {
                key: Some(key.clone()),
                index: None,
                message: format!("expected a list of the values to sweep, found {}", describe_json(&value)),
            });
            continue;
        };
        match check_axis(&key, &values) {
            Ok(()) => axes.push(Axis { key, values, origin: Origin::File }),
            Err((index, message)) => problems.push(SectionProblem { key: Some(key), index, message }),
        }
    }
    if problems.is_empty() {
        Ok(axes)
    } else {
        Err(problems)
    }
}

/// Every combination of the axes' values, as the value index of each axis: the first axis
/// varies slowest, each axis's values in the order written. One empty point without axes.
pub(super) fn points(axes: &[&Axis]) -> Vec<Vec<usize>> {
    let mut points = vec![Vec::new()];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|point| {
                (0..axis.values.len()).map(move |j| {
                    let mut point = point.clone();
                    point.push(j);
                    point
                })
            })
            .collect();
    }
    points
}

/// A point's values by dotted key, as run labels carry them.
pub(super) fn values_of(axes: &[&Axis], point: &[usize]) -> BTreeMap<String, Json> {
    axes.iter().zip(point).map(|(axis, &j)| (axis.key.clone(), axis.values[j].clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points_vary_the_first_axis_slowest() {
        let a =
            Axis { key: "network.hidden".into(), values: vec![json!([1]), json!([2])], origin: Origin::File };
        let b = Axis {
            key: "training.batch_size".into(),
            values: vec![json!(16), json!(32)],
            origin: Origin::File,
        };
        assert_eq!(points(&[&a, &b]), vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1]]);
        assert_eq!(points(&[]), vec![Vec::<usize>::new()]);
        assert_eq!(values_of(&[&a, &b], &[1, 0])["network.hidden"], json!([2]));
    }

    #[test]
    fn only_keys_that_shape_runs_can_be_swept() {
        assert!(check_axis("training.batch_size", &[json!(1), json!(2)]).is_ok());
        assert!(check_axis("parallel", &[json!(1)])
            .unwrap_err()
            .1
            .contains("does not change what a run trains"));
        assert!(check_axis("seeds", &[json!(1)]).unwrap_err().1.contains("every seed"));
        assert!(check_axis("network.hidden", &[]).unwrap_err().1.contains("empty list"));
        let (at, message) = check_axis("training.epochs", &[json!(1), json!(2), json!(1)]).unwrap_err();
        assert_eq!(at, Some(2));
        assert!(message.contains("listed twice"), "{message}");
    }
}
