//! Events: what a worker writes, one JSON object per line.
//!
//! Every line looks like `{"run":"3f9a…","seq":12,"event":"eval",…}`:
//!
//! * `run` — the run id, the same as [`RunSpec::id`](crate::RunSpec::id);
//! * `seq` — 0, 1, 2, … without gaps within a run. A resumed worker continues the numbering from
//!   its checkpoint and re-emits exactly the events an uninterrupted run would have emitted
//!   after that point, so `(run, seq)` identifies an event's content: storing an event twice
//!   changes nothing;
//! * `event` — the kind, one of the variants of [`EventBody`] in snake case; the remaining
//!   fields are those of that variant.
//!
//! Events contain no wall-clock times: the same spec yields the same bytes on every machine.
//! The orchestrator stamps times when it receives events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::MethodPayload;

/// One line of a worker's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Run id ([`RunSpec::id`](crate::RunSpec::id)).
    pub run: String,
    /// Position of the event in the run's stream: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The kinds of events, tagged by `"event"` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    /// The run began (emitted once, not again on resume).
    Started {
        /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the worker.
        protocol: u32,
        /// Tasks in the stream.
        tasks: usize,
        /// Input features per example.
        inputs: usize,
        /// Network outputs (all heads together).
        outputs: usize,
        /// Number of output heads.
        heads: usize,
        /// Trainable parameters of the network.
        parameters: usize,
        /// `classification` or `regression`.
        problem: String,
    },
    /// Training on a task began.
    TaskStarted {
        /// Task index, from 0.
        task: usize,
        /// Output head the task uses.
        head: usize,
        /// Training examples per pass.
        train_examples: usize,
    },
    /// Online performance over a bin of training examples, each measured by the prediction
    /// made before that example's update.
    Online {
        /// Task the bin belongs to.
        task: usize,
        /// Bin index within the task, from 0.
        bin: usize,
        /// Examples in the bin.
        examples: u64,
        /// Mean loss (cross-entropy, or squared error for regression).
        loss: f64,
        /// Fraction predicted correctly; absent for regression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
    },
    /// One entry of the accuracy matrix: performance on task `on_task`'s held-out split after
    /// training through task `after_task` (absent: before any training, the b_j of forward
    /// transfer).
    ///
    /// With a `variant`, the entry measures another form of the model than the one being
    /// trained, evaluated at the same point on the same examples: methods with versioned
    /// models (NIWF) report `version:t` (the model as committed after task t, a rollback)
    /// and `compose:i+j` (the gates of the regions committed after tasks i and j, mixed).
    /// Such entries are not part of the accuracy matrix R: consumers that build R must skip
    /// events whose `variant` is present. Absent on every ordinary entry, so runs without
    /// variants produce exactly the events they did before the field existed.
    Eval {
        /// i of R\[i\]\[j\], or absent for the untrained network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_task: Option<usize>,
        /// j of R\[i\]\[j\].
        on_task: usize,
        /// Held-out examples evaluated.
        examples: usize,
        /// Mean loss.
        loss: f64,
        /// Fraction correct; absent for regression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy: Option<f64>,
        /// Which other form of the model this entry measures (see above); absent for the
        /// model itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
    },
    /// Plasticity diagnostics of the hidden layers on a probe batch of task
    /// `min(after_tasks, T−1)`.
    Plasticity {
        /// Tasks trained so far (0 = the untrained network).
        after_tasks: usize,
        /// Task whose data formed the probe batch.
        probe_task: usize,
        /// Examples in the probe batch.
        probe_examples: usize,
        /// One entry per hidden layer, input side first.
        layers: Vec<LayerPlasticity>,
        /// Mean |w| over all weight matrices (biases excluded).
        mean_abs_weight: f64,
    },
    /// Method-specific diagnostics (e.g. CLNP's free units), after a task. `name` says which
    /// one (namespaced by method: `clnp.capacity`, …) and `values` holds it; the names and
    /// their shapes are the variants of [`MethodPayload`]. JSON has no NaN: a number of
    /// `values` written as `null` where `null` has no meaning of its own was not finite.
    Method {
        /// Task just finished.
        task: usize,
        /// The diagnostic, as the `name` and `values` fields.
        #[serde(flatten)]
        payload: MethodPayload,
    },
    /// A free-form measurement of the worker's own (a regulariser's value, a learning rate,
    /// a GPU's memory): stored and exported with the run's series like the other curves,
    /// never part of the accuracy matrix. External workers use it for whatever the closed
    /// list of `method` payloads does not name.
    Scalar {
        /// Task being trained (or just finished) when it was measured.
        task: usize,
        /// What was measured: 1 to 64 characters of `A-Z a-z 0-9 _ . / -`, the same name
        /// for the same quantity throughout a run.
        #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_./-]{1,64}$"))]
        name: String,
        /// Its value; `null` when it was not finite.
        #[serde(deserialize_with = "crate::payload::number_or_null")]
        #[schemars(with = "Option<f64>")]
        value: f64,
        /// Optimiser steps taken in total when it was measured, if the worker counts them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<u64>,
    },
    /// A checkpoint was written and synced.
    Checkpoint {
        /// Tasks completed when it was written.
        tasks_done: usize,
        /// Optimiser steps taken in total.
        step: u64,
        /// File name inside the run folder.
        file: String,
        /// BLAKE3 of the file's payload, hex.
        checksum: String,
    },
    /// The run completed its stream.
    Finished {
        /// Tasks trained.
        tasks: usize,
        /// Optimiser steps taken.
        steps: u64,
        /// Training examples seen (with repetitions over epochs).
        examples: u64,
    },
    /// The run cannot go on; the worker exits non-zero after this event.
    Failed {
        /// One line saying what went wrong.
        reason: String,
    },
}

impl EventBody {
    /// The `"event"` tag of this body.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Started { .. } => "started",
            EventBody::TaskStarted { .. } => "task_started",
            EventBody::Online { .. } => "online",
            EventBody::Eval { .. } => "eval",
            EventBody::Plasticity { .. } => "plasticity",
            EventBody::Method { .. } => "method",
            EventBody::Scalar { .. } => "scalar",
            EventBody::Checkpoint { .. } => "checkpoint",
            EventBody::Finished { .. } => "finished",
            EventBody::Failed { .. } => "failed",
        }
    }
}

/// Diagnostics of one hidden layer on a probe batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayerPlasticity {
    /// Units in the layer.
    pub units: usize,
    /// Fraction of units whose activation is 0 on every probe example (ReLU-family layers;
    /// 0 for others, which cannot be dead).
    pub dead: f64,
    /// τ-dormant ratio (Sokar et al. 2023): fraction of units with
    /// E|h_i| / (mean_k E|h_k| + 1e-9) ≤ τ.
    pub dormant: f64,
    /// Effective rank (Roy & Vetterli 2007) of the probe feature matrix.
    pub effective_rank: f64,
    /// Smallest k whose top-k singular values hold 99% of their sum.
    pub stable_rank: usize,
    /// Mean |w| of the layer's incoming weight matrix.
    pub mean_abs_weight: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_lines() {
        let e = Event {
            run: "abc".into(),
            seq: 3,
            body: EventBody::Eval {
                after_task: None,
                on_task: 2,
                examples: 100,
                loss: 0.1 + 0.2,
                accuracy: Some(0.93),
                variant: None,
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with(r#"{"run":"abc","seq":3,"event":"eval","on_task":2"#), "{line}");
        assert!(!line.contains("variant"), "{line}");
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        let mut v = e.clone();
        if let EventBody::Eval { variant, .. } = &mut v.body {
            *variant = Some("version:3".into());
        }
        let line = serde_json::to_string(&v).unwrap();
        assert!(line.ends_with(r#""variant":"version:3"}"#), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), v);
    }
}
