//! Small run records for the tests of the crates that read and write run records (the store,
//! the report), so each builds its fixtures the same way.

use std::collections::BTreeMap;

use protocol::{RunSpec, TrainingSpec};
use test_support::SpecBuilder;

use crate::{RunLabels, RunRecord};

/// A small synthetic spec (`tasks` tasks, `sgd` at `lr` labelled `method`) with its content id.
pub fn spec(tasks: usize, method: &str, lr: f64, seed: u64) -> RunSpec {
    SpecBuilder::synthetic(tasks)
        .stream(serde_json::json!({"synthetic_permuted": {
            "tasks": tasks, "classes": 10, "dim": 8, "train_per_class": 10, "test_per_class": 5,
            "noise": 1.0, "transform": "permute"
        }}))
        .method("sgd", serde_json::json!({ "lr": lr }))
        .seed(seed)
        .with(|s| {
            s.method.name = method.into();
            s.training = TrainingSpec::default();
        })
        .build()
}

/// A pending record for [`spec`] with grid `{lr}` and stream label `synthetic`.
pub fn record(order: u64, tasks: usize, method: &str, lr: f64, seed: u64) -> RunRecord {
    let mut grid = BTreeMap::new();
    grid.insert("lr".to_string(), serde_json::json!(lr));
    let labels = RunLabels { stream: "synthetic".into(), method: method.into(), grid, seed };
    RunRecord::new(order, spec(tasks, method, lr, seed), labels, tasks)
}
