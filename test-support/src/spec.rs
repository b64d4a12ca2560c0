//! One builder for the run specs tests need, instead of a hand-written `RunSpec` per file.

use std::collections::BTreeMap;
use std::path::Path;

use protocol::{
    CheckpointSpec, EvalSpec, Heads, MethodSpec, NetworkSpec, RunSpec, StreamSpec, TrainingSpec,
    PROTOCOL_VERSION,
};
use serde_json::{json, Value};

/// A [`RunSpec`] under construction. Starts from a small synthetic stream (`tasks` tasks of 10
/// classes in 8 dimensions), a 16-unit ReLU network and plain `sgd` at lr 0.1.
#[derive(Clone, Debug)]
pub struct SpecBuilder {
    spec: RunSpec,
}

impl SpecBuilder {
    /// The synthetic starting point with `tasks` tasks.
    pub fn synthetic(tasks: usize) -> Self {
        let stream = json!({"synthetic_permuted": {"tasks": tasks, "dim": 8, "train_per_class": 10, "test_per_class": 5}});
        SpecBuilder {
            spec: RunSpec {
                protocol: PROTOCOL_VERSION,
                id: String::new(),
                experiment: "test".into(),
                seed: 1,
                stream: serde_json::from_value(stream).expect("a stream spec"),
                network: NetworkSpec::mlp(vec![16]),
                method: MethodSpec {
                    name: "sgd".into(),
                    kind: "sgd".into(),
                    params: BTreeMap::new(),
                    worker: None,
                },
                training: TrainingSpec { batch_size: 10, epochs: 1, validation: 0, threads: 1 },
                eval: EvalSpec::default(),
                checkpoint: CheckpointSpec::default(),
                run_dir: None,
            },
        }
    }

    /// A stream given as its wire JSON, `{"kind": {params}}`.
    pub fn stream(mut self, stream: Value) -> Self {
        self.spec.stream = serde_json::from_value::<StreamSpec>(stream).expect("a stream spec");
        self
    }

    /// Hidden-layer widths.
    pub fn hidden(mut self, hidden: &[usize]) -> Self {
        self.spec.network.hidden = hidden.to_vec();
        self
    }

    /// One output head per task.
    pub fn per_task_heads(mut self) -> Self {
        self.spec.network.heads = Heads::PerTask;
        self
    }

    /// The method `kind` (named after itself) with `params` (a JSON object).
    pub fn method(mut self, kind: &str, params: Value) -> Self {
        self.spec.method = method_spec(kind, params);
        self
    }

    /// Batch size and epochs.
    pub fn training(mut self, batch_size: usize, epochs: usize) -> Self {
        self.spec.training.batch_size = batch_size;
        self.spec.training.epochs = epochs;
        self
    }

    /// The experiment the run belongs to.
    pub fn experiment(mut self, name: &str) -> Self {
        self.spec.experiment = name.into();
        self
    }

    /// The root seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.spec.seed = seed;
        self
    }

    /// The run folder (checkpoints, `events.jsonl`).
    pub fn run_dir(mut self, dir: &Path) -> Self {
        self.spec.run_dir = Some(dir.to_path_buf());
        self
    }

    /// Changes anything else.
    pub fn with(mut self, change: impl FnOnce(&mut RunSpec)) -> Self {
        change(&mut self.spec);
        self
    }

    /// The spec, its id derived from its content.
    pub fn build(mut self) -> RunSpec {
        self.spec.id = self.spec.content_id();
        self.spec
    }

    /// The spec with the id it was given (tests that compare runs under one id).
    pub fn build_keeping_id(self) -> RunSpec {
        self.spec
    }
}

/// The method `kind`, named after itself, with `params` (a JSON object) and no external worker.
pub fn method_spec(kind: &str, params: Value) -> MethodSpec {
    let params = serde_json::from_value(params).expect("method parameters are an object");
    MethodSpec { name: kind.into(), kind: kind.into(), params, worker: None }
}
