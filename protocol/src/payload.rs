//! The payloads of `method` events: one type per diagnostic a method reports after a task.
//!
//! On the wire a method event is `{…,"event":"method","task":t,"name":"clnp.capacity",
//! "values":{…}}`: `name` says which payload `values` holds, namespaced by the method that
//! reports it. [`MethodPayload`] is that pair as one type, so a worker cannot emit values of a
//! shape the orchestrator does not know, and a consumer reads fields instead of looking up
//! keys. A `name` that is not one of the variants below is a decode error (naming the known
//! ones), as is a payload of a known name in another shape: the list is closed on purpose, so
//! that every number that reaches a report has a documented meaning.
//!
//! # Field order
//!
//! These payloads were first written as `serde_json::json!` objects, whose keys come out
//! sorted. Each struct declares its fields in that alphabetical order, so that runs keep the
//! exact bytes (and so the `(run, seq)` identity of their events) they had before the types
//! existed. Keep new fields in that order too.
//!
//! # Non-finite numbers
//!
//! JSON has no NaN or infinity; serde_json writes them as `null`. A measured number that came
//! out non-finite is still a diagnostic worth keeping, not a reason for the orchestrator to
//! refuse the worker's event line, so the plain numbers below read `null` back as NaN (and
//! write it as `null` again).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A method's diagnostic after a task, tagged on the wire by `name` with the payload as
/// `values`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "name", content = "values")]
pub enum MethodPayload {
    /// Continual backprop's replaced units.
    #[serde(rename = "cbp.replaced")]
    CbpReplaced(CbpReplaced),
    /// ClassP's update sparsity over the task.
    #[serde(rename = "classp.sparsity")]
    ClasspSparsity(ClasspSparsity),
    /// CLNP's capacity after pruning the task.
    #[serde(rename = "clnp.capacity")]
    ClnpCapacity(ClnpCapacity),
    /// CLNP started a task with a hidden layer that has no free unit.
    #[serde(rename = "clnp.no_free_units")]
    ClnpNoFreeUnits(ClnpNoFreeUnits),
    /// NIWF committed the task's region and a version of the field.
    #[serde(rename = "niwf.commit")]
    NiwfCommit(NiwfCommit),
    /// NIWF: how far the outputs on finished tasks have moved.
    #[serde(rename = "niwf.drift")]
    NiwfDrift(FieldDrift),
    /// NIWF's auxiliary losses over the task.
    #[serde(rename = "niwf.losses")]
    NiwfLosses(FieldLosses),
    /// ReDo's recycled dormant units.
    #[serde(rename = "redo.recycled")]
    RedoRecycled(RedoRecycled),
    /// Weight aligning's rescaling of the new classes' output rows.
    #[serde(rename = "weight_aligning.gamma")]
    WeightAligningGamma(WeightAligningGamma),
    /// `weight_field` (NIWF without commits): how far the outputs on finished tasks have moved.
    #[serde(rename = "weight_field.drift")]
    WeightFieldDrift(FieldDrift),
    /// `weight_field`'s auxiliary losses over the task.
    #[serde(rename = "weight_field.losses")]
    WeightFieldLosses(FieldLosses),
}

impl MethodPayload {
    /// The `name` this payload has on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            MethodPayload::CbpReplaced(_) => "cbp.replaced",
            MethodPayload::ClasspSparsity(_) => "classp.sparsity",
            MethodPayload::ClnpCapacity(_) => "clnp.capacity",
            MethodPayload::ClnpNoFreeUnits(_) => "clnp.no_free_units",
            MethodPayload::NiwfCommit(_) => "niwf.commit",
            MethodPayload::NiwfDrift(_) => "niwf.drift",
            MethodPayload::NiwfLosses(_) => "niwf.losses",
            MethodPayload::RedoRecycled(_) => "redo.recycled",
            MethodPayload::WeightAligningGamma(_) => "weight_aligning.gamma",
            MethodPayload::WeightFieldDrift(_) => "weight_field.drift",
            MethodPayload::WeightFieldLosses(_) => "weight_field.losses",
        }
    }
}

/// `cbp.replaced`: units continual backprop re-initialised, per hidden layer (input side
/// first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CbpReplaced {
    /// Units replaced during the task just finished.
    pub task: Vec<u64>,
    /// Units replaced since the run began.
    pub total: Vec<u64>,
}

/// `classp.sparsity`: how selective ClassP's thresholded updates were.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClasspSparsity {
    /// Fraction of parameters whose accumulated importance is still 0 — never updated since
    /// the run began (1 before any update).
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub never_updated: f64,
    /// Fraction of (parameter, step) pairs of the task whose gradient passed the threshold and
    /// were updated.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub updated: f64,
}

/// `clnp.capacity`: what CLNP's graceful forgetting kept of the task and how much of the
/// network is committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClnpCapacity {
    /// Accuracy on the measured examples of the network without the pruned units.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub accuracy_pruned: f64,
    /// Accuracy on the measured examples of the pruned network after retraining
    /// (`retrain_epochs` > 0); absent without retraining and in lines written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_retrained: Option<f64>,
    /// Accuracy on the measured examples before pruning (A₀).
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub accuracy_unpruned: f64,
    /// The activity measure the threshold applies to.
    pub activity: ClnpActivity,
    /// Pruned networks evaluated by the threshold search.
    pub evaluations: usize,
    /// Examples measured (n).
    pub examples: usize,
    /// One entry per hidden layer, input side first.
    pub layers: Vec<ClnpLayer>,
    /// Which split the activities and accuracies were measured on.
    pub measured_on: MeasuredOn,
    /// θ: free units of activity ≤ θ were pruned; `null` when none was. With per-layer
    /// thresholds, the largest θ_l (each layer's own is in `layers`).
    pub threshold: Option<f64>,
}

/// The activity of a hidden unit CLNP prunes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClnpActivity {
    /// Mean ReLU output over the measured examples.
    MeanActivation,
    /// Fraction of the measured examples on which the unit's output is positive.
    FiringRate,
}

/// The split a method measured a finished task on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasuredOn {
    /// The validation examples held out of the task's training data.
    Validation,
    /// The training examples, the fallback when the task has no validation split: the numbers
    /// then flatter the pruned network.
    Train,
}

/// One hidden layer of a [`ClnpCapacity`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClnpLayer {
    /// Units still free for later tasks.
    pub free: usize,
    /// This task's active units, newly committed.
    pub new: usize,
    /// Free units this task did not keep.
    pub pruned: usize,
    /// Units committed by earlier tasks that this task uses: its head depends on them through
    /// non-zero weights and their activity on its data exceeds θ (the paper's reused features).
    pub reused: usize,
    /// θ_l: this layer's free units of activity ≤ θ_l were pruned; absent when none was, and
    /// in lines written before per-layer thresholds (whose one θ is the event's `threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Units in the layer.
    pub units: usize,
    /// Units committed (frozen) after the task, its own included.
    pub used: usize,
}

/// `clnp.no_free_units`: a task starts with hidden layers that have no free unit, so it trains
/// only what is left elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClnpNoFreeUnits {
    /// Free units per hidden layer, input side first.
    pub free: Vec<usize>,
    /// Indices of the hidden layers without a free unit.
    pub full_layers: Vec<usize>,
}

/// `niwf.commit`: the region and version NIWF committed for the task just trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NiwfCommit {
    /// Anchors sampled in the task's region.
    pub anchors: usize,
    /// Bases of the field after the commit (fresh ones included).
    pub bases: usize,
    /// BLAKE3 of the committed field's parameters, hex.
    pub field_checksum: String,
    /// Bases the hard lock froze for this region (empty with the soft lock).
    pub frozen_bases: Vec<usize>,
    /// L_lock over the earlier regions just before this commit; `null` with the hard lock,
    /// which has no functional lock.
    pub lock_before: Option<f64>,
    /// Fraction of the task's training examples that earlier regions protect (hard lock: the
    /// examples the task could not learn).
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub overlap: f64,
    /// The committed region the task fell inside, when `overlap` is above 0 (absent in runs
    /// written before it existed, and when the task is outside every region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_region: Option<usize>,
    /// Radius of the region's anchor distribution, in coordinate space.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub radius_anchor: f64,
    /// Radius of the lock test (in coordinate space for the soft lock, where it only defines
    /// `inside` of the drift payload).
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub radius_lock: f64,
    /// BLAKE3 of the committed region, hex.
    pub region_checksum: String,
    /// The task committed.
    pub task: usize,
    /// The version number of the committed field (0 for the first commit); `rollback`
    /// evaluates it as variant `version:<task>`.
    pub version: usize,
}

/// `niwf.drift` / `weight_field.drift`: for every finished task, how much the model's outputs
/// on its first held-out examples have changed since that task ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldDrift {
    /// One entry per finished task, in the order they finished.
    pub tasks: Vec<TaskDrift>,
}

/// One finished task of a [`FieldDrift`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDrift {
    /// Output values whose bits differ from those right after the task.
    pub changed_outputs: usize,
    /// Held-out examples compared.
    pub examples: usize,
    /// Examples the task's region protects now; `null` without regions (`weight_field`).
    pub inside: Option<usize>,
    /// Largest |change| of an output value.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub max_abs_change: f64,
    /// Largest |change| over the examples inside the region; `null` without regions.
    pub max_abs_change_inside: Option<f64>,
    /// The finished task.
    pub task: usize,
}

/// `niwf.losses` / `weight_field.losses`: the auxiliary losses, each the mean over the task's
/// steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldLosses {
    /// L_budget, the gates' Gini impurity.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub budget: f64,
    /// L_lock, the committed anchors' squared logit change.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub lock: f64,
    /// L_sep, the separation hinge against earlier regions.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub separation: f64,
    /// Training steps the means are over.
    pub steps: u64,
}

/// `redo.recycled`: dormant units ReDo re-initialised during the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RedoRecycled {
    /// Per hidden layer, input side first.
    pub per_layer: Vec<u64>,
    /// Over all hidden layers.
    pub total: u64,
}

/// `weight_aligning.gamma`: the factor γ the new classes' output rows (and biases, if aligned)
/// were scaled by, so that their mean norm equals the old classes'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WeightAligningGamma {
    /// γ = `mean_norm_old / mean_norm_new`.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub gamma: f64,
    /// Mean L2 norm of the new classes' output rows before scaling.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub mean_norm_new: f64,
    /// Mean L2 norm of the old classes' output rows.
    #[serde(deserialize_with = "number_or_null")]
    #[schemars(with = "Option<f64>")]
    pub mean_norm_old: f64,
    /// Classes first seen in this task.
    pub new_classes: Vec<usize>,
    /// Classes seen in earlier tasks.
    pub old_classes: Vec<usize>,
}

/// Reads a number that serde_json wrote as `null` because it was not finite (see the module
/// documentation) as NaN.
pub(crate) fn number_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventBody};

    /// Method event lines written by the worker before the payloads were typed (when they were
    /// `json!` objects): one of every name, plus the `null`-bearing and multi-task shapes.
    const WRITTEN_BEFORE: &str = include_str!("../testdata/method-events.jsonl");

    #[test]
    fn lines_written_before_the_types_decode_and_keep_their_bytes() {
        let mut names = std::collections::BTreeSet::new();
        for line in WRITTEN_BEFORE.lines() {
            let event: Event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let EventBody::Method { payload, .. } = &event.body else { panic!("not a method event: {line}") };
            assert!(line.contains(&format!(r#""name":"{}","values""#, payload.name())), "{line}");
            names.insert(payload.name());
            assert_eq!(serde_json::to_string(&event).unwrap(), line);
        }
        assert_eq!(names.len(), 11, "every payload has a line: {names:?}");
    }

    #[test]
    fn typed_fields_carry_the_values() {
        let line = WRITTEN_BEFORE.lines().find(|l| l.contains("weight_field.drift")).unwrap();
        let event: Event = serde_json::from_str(line).unwrap();
        let EventBody::Method { task: 0, payload: MethodPayload::WeightFieldDrift(drift) } = event.body
        else {
            panic!("{line}")
        };
        let t = &drift.tasks[0];
        assert_eq!((t.task, t.examples, t.inside, t.max_abs_change_inside), (0, 500, None, None));
        let line = WRITTEN_BEFORE.lines().find(|l| l.contains(r#""threshold":null"#)).unwrap();
        let EventBody::Method { payload: MethodPayload::ClnpCapacity(c), .. } =
            serde_json::from_str::<Event>(line).unwrap().body
        else {
            panic!("{line}")
        };
        assert_eq!(
            (c.threshold, c.activity, c.measured_on),
            (None, ClnpActivity::MeanActivation, MeasuredOn::Validation)
        );
        assert!(c.layers.iter().all(|l| l.used + l.free == l.units), "{c:?}");
    }

    #[test]
    fn unknown_names_and_wrong_shapes_are_decode_errors() {
        let line = r#"{"run":"a","seq":1,"event":"method","task":0,"name":"cbp.utility","values":[1,2]}"#;
        let err = serde_json::from_str::<Event>(line).unwrap_err().to_string();
        assert!(err.contains("unknown variant `cbp.utility`"), "{err}");
        assert!(err.contains("`clnp.capacity`") && err.contains("`weight_field.losses`"), "{err}");
        let line =
            r#"{"run":"a","seq":1,"event":"method","task":0,"name":"redo.recycled","values":{"total":3}}"#;
        let err = serde_json::from_str::<Event>(line).unwrap_err().to_string();
        assert!(err.contains("missing field `per_layer`"), "{err}");
    }

    #[test]
    fn non_finite_numbers_survive_a_round_trip_as_null() {
        let event = Event {
            run: "a".into(),
            seq: 4,
            body: EventBody::Method {
                task: 1,
                payload: MethodPayload::NiwfLosses(FieldLosses {
                    budget: f64::INFINITY,
                    lock: f64::NAN,
                    separation: 0.5,
                    steps: 10,
                }),
            },
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(
            line,
            r#"{"run":"a","seq":4,"event":"method","task":1,"name":"niwf.losses","values":{"budget":null,"lock":null,"separation":0.5,"steps":10}}"#
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        let EventBody::Method { payload: MethodPayload::NiwfLosses(l), .. } = &back.body else { panic!() };
        assert!(l.budget.is_nan() && l.lock.is_nan() && l.separation == 0.5);
        assert_eq!(serde_json::to_string(&back).unwrap(), line);
    }
}
