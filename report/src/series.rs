//! A run's measurements over its stream, kept beside its summary numbers for the plots: the
//! online performance of each task and bin, the plasticity diagnostics at each measurement and
//! the capacity a method reports after each task.
//!
//! # Method events read here
//!
//! CLNP (Golkar et al. 2019) reports how much of the network it has committed after each task
//! as a `clnp.capacity` method event ([`ClnpCapacity`]): per hidden layer, input side first,
//! `used` units are committed to earlier tasks (frozen), `free` ones are still trainable. The
//! fraction used is `used / (used + free)`. Runs of other methods have no such events and
//! simply no capacity series. The event's shape was checked when it was decoded.

use protocol::payload::ClnpCapacity;
use protocol::LayerPlasticity;

/// One bin of online performance (see the `online` event).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineBin {
    /// Task the bin belongs to.
    pub task: usize,
    /// Bin index within the task.
    pub bin: usize,
    /// Examples in the bin.
    pub examples: u64,
    /// Mean loss over the bin (squared error for regression).
    pub loss: f64,
    /// Fraction predicted correctly; absent for regression.
    pub accuracy: Option<f64>,
}

/// Plasticity diagnostics of one measurement, averaged over hidden layers (as the table's
/// `dead` and `effective_rank`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlasticityPoint {
    /// Tasks trained when measured (0 = the untrained network).
    pub after_tasks: usize,
    /// Dead-unit fraction, mean over hidden layers; `None` without hidden layers.
    pub dead: Option<f64>,
    /// Effective rank, mean over hidden layers; `None` without hidden layers.
    pub effective_rank: Option<f64>,
    /// Mean |w| over all weight matrices.
    pub mean_abs_weight: f64,
}

impl PlasticityPoint {
    /// The layer-averaged point of one `plasticity` event.
    pub fn of(after_tasks: usize, layers: &[LayerPlasticity], mean_abs_weight: f64) -> Self {
        let mean = |f: fn(&LayerPlasticity) -> f64| {
            (!layers.is_empty()).then(|| layers.iter().map(f).sum::<f64>() / layers.len() as f64)
        };
        PlasticityPoint {
            after_tasks,
            dead: mean(|l| l.dead),
            effective_rank: mean(|l| l.effective_rank),
            mean_abs_weight,
        }
    }
}

/// One hidden layer's capacity as CLNP reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerCapacity {
    /// Units committed to earlier tasks.
    pub used: f64,
    /// Units still free to train.
    pub free: f64,
    /// Units the task just finished committed (its footprint).
    pub new: f64,
    /// Units committed by earlier tasks that the task just finished reuses.
    pub reused: f64,
}

impl LayerCapacity {
    /// `used / (used + free)`; `None` for a layer without units.
    pub fn used_fraction(&self) -> Option<f64> {
        let total = self.used + self.free;
        (total > 0.0).then(|| self.used / total)
    }

    /// The fraction of the units earlier tasks committed that this task reuses,
    /// `reused / (used − new)`; `None` when earlier tasks committed none (the first task).
    pub fn reused_fraction(&self) -> Option<f64> {
        let before = self.used - self.new;
        (before > 0.0).then(|| self.reused / before)
    }
}

/// The capacity report after one task.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityPoint {
    /// The task just finished.
    pub task: usize,
    /// Per hidden layer, input side first.
    pub layers: Vec<LayerCapacity>,
}

impl CapacityPoint {
    /// The point of the `clnp.capacity` event after `task`.
    pub fn of(task: usize, capacity: &ClnpCapacity) -> CapacityPoint {
        let layers = capacity
            .layers
            .iter()
            .map(|l| LayerCapacity {
                used: l.used as f64,
                free: l.free as f64,
                new: l.new as f64,
                reused: l.reused as f64,
            })
            .collect();
        CapacityPoint { task, layers }
    }
}

/// A run's measurements over the stream, in event order. Memory is O(T + online bins +
/// plasticity measurements + capacity reports).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSeries {
    /// Per task, the online accuracy of its last bin (what `final_online_acc` takes for the last
    /// task); `None` for tasks without bins and for regression.
    pub task_online_accuracy: Vec<Option<f64>>,
    /// Per task, the example-weighted mean online loss over its bins; `None` without bins.
    pub task_online_loss: Vec<Option<f64>>,
    /// Every online bin, in event order, for regression streams (their error is plotted bin
    /// by bin); empty for classification, whose plots need only the per-task values above
    /// (a stream with an online bin per example would otherwise hold millions).
    pub online_bins: Vec<OnlineBin>,
    /// Every plasticity measurement, in event order.
    pub plasticity: Vec<PlasticityPoint>,
    /// Every `clnp.capacity` report, in event order.
    pub capacity: Vec<CapacityPoint>,
    /// Every measured value in long format, in event order, when the report was asked for
    /// the series export ([`ReportOptions::series`](crate::ReportOptions::series)); empty
    /// otherwise (a stream with an online bin per example would hold millions).
    pub points: Vec<SeriesPoint>,
}

/// One measured value of a run, a row of the series export (see `frame::series_frame`).
/// Tasks are numbered as in the accuracy matrix: `task` is the task being trained (online
/// bins) or the task last trained (evaluations, plasticity, method events; `None` before the
/// first), so one task number means the same point of the stream in every row.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoint {
    /// The task (see above).
    pub task: Option<usize>,
    /// Column j of R\[i\]\[j\] for evaluations.
    pub on_task: Option<usize>,
    /// Online bin within the task.
    pub bin: Option<usize>,
    /// Hidden layer, input side first, for per-layer diagnostics.
    pub layer: Option<usize>,
    /// What is measured: `online.loss`, `online.accuracy`, `eval.loss`, `eval.accuracy`,
    /// `plasticity.<field>`, `<method event>.<field path>` (`cbp.replaced.replaced`), or
    /// `scalar.<name>` for a worker's own `scalar` events.
    pub metric: std::borrow::Cow<'static, str>,
    /// The value.
    pub value: f64,
}

impl SeriesPoint {
    fn new(metric: impl Into<std::borrow::Cow<'static, str>>, value: f64) -> SeriesPoint {
        SeriesPoint { task: None, on_task: None, bin: None, layer: None, metric: metric.into(), value }
    }

    /// The rows of one online bin.
    pub(crate) fn online(
        out: &mut Vec<SeriesPoint>,
        task: usize,
        bin: usize,
        loss: f64,
        accuracy: Option<f64>,
    ) {
        let at = |p: SeriesPoint| SeriesPoint { task: Some(task), bin: Some(bin), ..p };
        out.push(at(SeriesPoint::new("online.loss", loss)));
        if let Some(a) = accuracy {
            out.push(at(SeriesPoint::new("online.accuracy", a)));
        }
    }

    /// The rows of one accuracy-matrix entry; `variant` names a model variant's evaluation.
    pub(crate) fn eval(
        out: &mut Vec<SeriesPoint>,
        (after_task, on_task): (Option<usize>, usize),
        loss: f64,
        accuracy: Option<f64>,
        variant: Option<&str>,
    ) {
        let name = |field: &'static str| -> std::borrow::Cow<'static, str> {
            match variant {
                None => format!("eval.{field}").into(),
                Some(v) => format!("eval.{v}.{field}").into(),
            }
        };
        let at = |p: SeriesPoint| SeriesPoint { task: after_task, on_task: Some(on_task), ..p };
        out.push(at(SeriesPoint::new(name("loss"), loss)));
        if let Some(a) = accuracy {
            out.push(at(SeriesPoint::new(name("accuracy"), a)));
        }
    }

    /// The rows of one plasticity measurement: each layer's diagnostics, the layer means the
    /// tables use, and mean |w|.
    pub(crate) fn plasticity(
        out: &mut Vec<SeriesPoint>,
        after_tasks: usize,
        layers: &[LayerPlasticity],
        mean_abs_weight: f64,
    ) {
        let task = after_tasks.checked_sub(1);
        for (i, l) in layers.iter().enumerate() {
            for (field, value) in [
                ("plasticity.units", l.units as f64),
                ("plasticity.dead", l.dead),
                ("plasticity.dormant", l.dormant),
                ("plasticity.effective_rank", l.effective_rank),
                ("plasticity.stable_rank", l.stable_rank as f64),
                ("plasticity.mean_abs_weight", l.mean_abs_weight),
            ] {
                out.push(SeriesPoint { task, layer: Some(i), ..SeriesPoint::new(field, value) });
            }
        }
        let mean = PlasticityPoint::of(after_tasks, layers, mean_abs_weight);
        for (field, value) in
            [("plasticity.dead", mean.dead), ("plasticity.effective_rank", mean.effective_rank)]
        {
            if let Some(v) = value {
                out.push(SeriesPoint { task, ..SeriesPoint::new(field, v) });
            }
        }
        out.push(SeriesPoint { task, ..SeriesPoint::new("plasticity.mean_abs_weight", mean_abs_weight) });
    }

    /// The rows of one method event: every number in its values (booleans as 0/1), named by
    /// the event's name and the field's path; an index into a `layers` list goes to the
    /// `layer` column instead of the name.
    /// A worker's free-form `scalar` event, as metric `scalar.<name>`.
    pub(crate) fn scalar(task: usize, name: &str, value: f64) -> SeriesPoint {
        SeriesPoint { task: Some(task), ..SeriesPoint::new(format!("scalar.{name}"), value) }
    }

    pub(crate) fn method(out: &mut Vec<SeriesPoint>, task: usize, payload: &serde_json::Value) {
        let Some(name) = payload.get("name").and_then(|n| n.as_str()) else {
            return;
        };
        let Some(values) = payload.get("values") else {
            return;
        };
        flatten(out, task, name.to_string(), None, values);
    }
}

fn flatten(
    out: &mut Vec<SeriesPoint>,
    task: usize,
    path: String,
    layer: Option<usize>,
    value: &serde_json::Value,
) {
    use serde_json::Value;
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Object(map) => {
            for (key, v) in map {
                flatten(out, task, format!("{path}.{key}"), layer, v);
            }
            None
        }
        Value::Array(items) => {
            let per_layer = path.ends_with(".layers") && layer.is_none();
            for (i, v) in items.iter().enumerate() {
                if per_layer {
                    flatten(out, task, path.clone(), Some(i), v);
                } else {
                    flatten(out, task, format!("{path}.{i}"), layer, v);
                }
            }
            None
        }
        Value::String(_) | Value::Null => None,
    };
    if let Some(v) = number {
        out.push(SeriesPoint { task: Some(task), layer, ..SeriesPoint::new(path, v) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_points_keep_each_layers_used_fraction() {
        let capacity: ClnpCapacity = serde_json::from_value(serde_json::json!({
            "accuracy_pruned": 0.9, "accuracy_unpruned": 0.9, "activity": "firing_rate", "evaluations": 3,
            "examples": 10, "measured_on": "train", "threshold": null,
            "layers": [
                {"free": 24, "new": 40, "pruned": 3, "reused": 0, "units": 64, "used": 40},
                {"free": 0, "new": 0, "pruned": 0, "reused": 0, "units": 0, "used": 0}
            ]
        }))
        .unwrap();
        let p = CapacityPoint::of(2, &capacity);
        assert_eq!(p.task, 2);
        assert_eq!(p.layers[0].used_fraction(), Some(40.0 / 64.0));
        assert_eq!(p.layers[1].used_fraction(), None);
        assert_eq!(p.layers[0].reused_fraction(), None, "nothing was committed before");
        let later = LayerCapacity { used: 50.0, free: 14.0, new: 10.0, reused: 10.0 };
        assert_eq!(later.reused_fraction(), Some(0.25));
    }
}
