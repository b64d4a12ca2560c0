//! `training.threads`: a run's numbers do not depend on how many threads its matrix products
//! use, so the count stays out of the run id and a run may resume with another one.

use std::sync::atomic::Ordering;

use test_support::{method_spec, Captured, SpecBuilder};
use workers::engine::{self, RunControl, RunOutcome};
use workers::protocol::*;
use workers::stream::{SplitMnistSpec, SplitSetting};

fn events(spec: &RunSpec) -> String {
    let out = Captured::default();
    assert_eq!(
        engine::run(spec, Box::new(out.clone()), &RunControl::default()).unwrap(),
        RunOutcome::Finished
    );
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// Task-incremental split MNIST (0/1, 2/3: about a fifth of the images each) on the shipped
/// subset's first `train` images, or `None` when
/// the data is not checked out (a failure under `CI=true`).
fn split_mnist(
    train: usize,
    network: serde_json::Value,
    method: &str,
    params: serde_json::Value,
) -> Option<RunSpec> {
    let stream = workers::stream::spec_of::<workers::stream::SplitMnistKind>(&SplitMnistSpec {
        data_dir: test_support::mnist_dir()?,
        fingerprint: None,
        groups: vec![vec![0, 1], vec![2, 3]],
        setting: SplitSetting::TaskIncremental,
        train_examples: Some(train),
        test_examples: Some(200),
        shift: 2,
    });
    Some(
        SpecBuilder::synthetic(2)
            .training(64, 1)
            .with(|s| {
                s.stream = stream;
                s.network = serde_json::from_value(network).unwrap();
                s.method = method_spec(method, params);
                s.eval.plasticity.probe = 64;
            })
            .build(),
    )
}

/// Runs `spec` with 1 thread, with 3, and stopped at `stop` with 3 threads then resumed with 2:
/// the three event logs are the same bytes, and the id never changed.
fn assert_threads_change_nothing(spec: RunSpec, stop: u64) {
    let one = events(&spec);
    assert!(one.contains("\"finished\""), "{one}");

    let mut three = spec.clone();
    three.training.threads = 3;
    assert_eq!(three.content_id(), spec.content_id());
    assert_eq!(events(&three), one, "3 threads changed the events");

    let dir = test_support::scratch("threads-resume");
    let mut stopped = three.clone();
    stopped.run_dir = Some(dir.path().to_path_buf());
    let control = RunControl::default();
    control.stop_at_step.store(stop, Ordering::Relaxed);
    let outcome = engine::run(&stopped, Box::new(std::io::sink()), &control).unwrap();
    assert!(matches!(outcome, RunOutcome::Interrupted { .. }), "{outcome:?}");
    let mut resumed = stopped.clone();
    resumed.training.threads = 2;
    engine::run(&resumed, Box::new(std::io::sink()), &RunControl::default()).unwrap();
    let log = std::fs::read_to_string(dir.path().join(workers::protocol::files::EVENTS)).unwrap();
    assert_eq!(log, one, "stopping with 3 threads and resuming with 2 changed the events");
}

/// A conv net big enough that faer splits its products (64 and 128 channels at batch 64).
#[test]
fn a_conv_net_gives_the_same_events_with_any_thread_count() {
    let network = serde_json::json!({"layers": [
        {"conv2d": {"channels": 64, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
        {"max_pool2d": {"kernel": 2}},
        {"conv2d": {"channels": 128, "kernel": 3, "padding": 1}}, {"relu": {}},
        {"global_avg_pool": {}}
    ]});
    let Some(spec) = split_mnist(1024, network, "sgd", serde_json::json!({"lr": 0.05, "momentum": 0.9}))
    else {
        return;
    };
    assert_threads_change_nothing(spec, 3);
}

/// The fused MLP engine, wide enough to split.
#[test]
fn an_mlp_gives_the_same_events_with_any_thread_count() {
    let network = serde_json::json!({"hidden": [1024, 1024]});
    let Some(spec) = split_mnist(1024, network, "adam", serde_json::json!({"lr": 1e-3})) else { return };
    assert_threads_change_nothing(spec, 5);
}

#[test]
fn a_thread_count_the_engine_cannot_use_is_refused_before_training() {
    let mut spec = SpecBuilder::synthetic(2).build();
    spec.training.threads = 0;
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err();
    assert!(err.to_string().contains("training.threads: expected 1 to 1024, found 0"), "{err}");
    spec.training.threads = 2;
    spec.network.engine = Engine::Autograd;
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err();
    assert!(err.to_string().contains("`engine: autograd` runs on one thread"), "{err}");
}
