//! Small run records and specs for the tests of the crates that read and write run records
//! (the store, the report), so each builds its fixtures the same way.

use std::collections::BTreeMap;

use protocol::{
    Activation, CheckpointSpec, Engine, EvalSpec, Heads, InputTransform, MethodSpec, NetworkSpec, RunSpec,
    StreamSpec, SyntheticPermutedSpec, TrainingSpec, PROTOCOL_VERSION,
};

use crate::{RunLabels, RunRecord};

/// A small synthetic spec with its content id filled in.
pub fn spec(tasks: usize, method: &str, lr: f64, seed: u64) -> RunSpec {
    let mut params = BTreeMap::new();
    params.insert("lr".to_string(), serde_json::json!(lr));
    let mut spec = RunSpec {
        protocol: PROTOCOL_VERSION,
        id: String::new(),
        experiment: "test".into(),
        seed,
        stream: StreamSpec::SyntheticPermuted(SyntheticPermutedSpec {
            tasks,
            classes: 10,
            dim: 8,
            train_per_class: 10,
            test_per_class: 5,
            noise: 1.0,
            transform: InputTransform::Permute,
        }),
        network: NetworkSpec {
            hidden: vec![16],
            activation: Activation::Relu,
            heads: Heads::Shared,
            engine: Engine::Fused,
        },
        method: MethodSpec { name: method.into(), kind: "sgd".into(), params },
        training: TrainingSpec::default(),
        eval: EvalSpec::default(),
        checkpoint: CheckpointSpec::default(),
        run_dir: None,
    };
    spec.id = spec.content_id();
    spec
}

/// A pending record for [`spec`] with grid `{lr}` and stream label `synthetic`.
pub fn record(order: u64, tasks: usize, method: &str, lr: f64, seed: u64) -> RunRecord {
    let mut grid = BTreeMap::new();
    grid.insert("lr".to_string(), serde_json::json!(lr));
    let labels = RunLabels { stream: "synthetic".into(), method: method.into(), grid, seed };
    RunRecord::new(order, spec(tasks, method, lr, seed), labels)
}
