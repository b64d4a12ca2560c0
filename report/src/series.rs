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
}

impl LayerCapacity {
    /// `used / (used + free)`; `None` for a layer without units.
    pub fn used_fraction(&self) -> Option<f64> {
        let total = self.used + self.free;
        (total > 0.0).then(|| self.used / total)
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
            .map(|l| LayerCapacity { used: l.used as f64, free: l.free as f64 })
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
    }
}
