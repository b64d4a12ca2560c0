//! End-to-end properties of the baseline methods that need whole runs: EWC with λ = 0 is its
//! optimiser, Weight Aligning without distillation is plain backprop until its first alignment,
//! and Weight Aligning — which does nothing on streams whose tasks share their classes — resumes
//! bit-identically on class-incremental split MNIST.

use std::sync::atomic::Ordering;

use test_support::{method_spec as method, Captured, SpecBuilder};
use workers::engine::{self, RunControl, RunOutcome};
use workers::protocol::files::EVENTS as EVENT_LOG;
use workers::protocol::*;
use workers::stream::{SplitMnistSpec, SplitSetting};

fn synthetic_spec(method: MethodSpec) -> RunSpec {
    SpecBuilder::synthetic(3)
        .stream(serde_json::json!({"synthetic_permuted": {
            "tasks": 3, "classes": 4, "dim": 12, "train_per_class": 40, "test_per_class": 10, "noise": 1.5
        }}))
        .hidden(&[16, 12])
        .training(8, 2)
        .seed(3)
        .with(|s| {
            s.experiment = "baselines".into();
            s.method = method;
            s.checkpoint = CheckpointSpec { every_steps: Some(7), every_tasks: Some(1), keep: 2 };
            s.id = "same-run".into();
        })
        .build_keeping_id()
}

/// Class-incremental split MNIST on a few thousand digits, or `None` (with a note) when the data
/// is not checked out.
fn split_mnist_spec(method: MethodSpec) -> Option<RunSpec> {
    let data = test_support::mnist_dir()?;
    let mut spec = synthetic_spec(method);
    spec.stream = workers::stream::spec_of::<workers::stream::SplitMnistKind>(&SplitMnistSpec {
        data_dir: data,
        fingerprint: None,
        groups: vec![vec![0, 1], vec![2, 3], vec![4, 5]],
        setting: SplitSetting::ClassIncremental,
        train_examples: Some(1500),
        test_examples: Some(300),
        shift: 0,
    });
    spec.network.hidden = vec![32];
    spec.training = TrainingSpec { batch_size: 16, epochs: 2, validation: 0, threads: 1 };
    spec.eval.plasticity.probe = 100;
    Some(spec)
}

fn events(spec: &RunSpec) -> Vec<String> {
    let out = Captured::default();
    assert_eq!(
        engine::run(spec, Box::new(out.clone()), &RunControl::default()).unwrap(),
        RunOutcome::Finished
    );
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn ewc_with_lambda_zero_is_its_optimiser_byte_for_byte() {
    for (optimizer, plain) in [("sgd", "sgd"), ("adam", "adam")] {
        let ewc = synthetic_spec(method(
            "ewc",
            serde_json::json!({"lambda": 0, "optimizer": optimizer, "lr": 0.05}),
        ));
        let reference = synthetic_spec(method(plain, serde_json::json!({"lr": 0.05})));
        let (a, b) = (events(&ewc), events(&reference));
        assert!(a.len() > 20);
        assert_eq!(a, b, "ewc (λ = 0, {optimizer}) and {plain}");
        // A positive λ changes the run after the first task, and only then.
        let strong = synthetic_spec(method(
            "ewc",
            serde_json::json!({"lambda": 10, "optimizer": optimizer, "lr": 0.05}),
        ));
        let c = events(&strong);
        let first_change = c.iter().zip(&b).position(|(x, y)| x != y).expect("λ > 0 changes the run");
        assert!(
            b[..first_change].iter().any(|e| e.contains(r#""event":"task_started","task":1"#)),
            "{}",
            b[first_change]
        );
    }
}

#[test]
fn weight_aligning_without_distillation_is_backprop_until_its_first_alignment() {
    let Some(wa) =
        split_mnist_spec(method("weight_aligning", serde_json::json!({"distillation": 0, "lr": 0.05})))
    else {
        return;
    };
    let sgd = split_mnist_spec(method("sgd", serde_json::json!({"lr": 0.05}))).unwrap();
    let (a, b) = (events(&wa), events(&sgd));
    let aligned =
        a.iter().position(|e| e.contains(r#""event":"method""#)).expect("an alignment after task 1");
    let event: serde_json::Value = serde_json::from_str(&a[aligned]).unwrap();
    assert_eq!((event["task"].as_u64(), event["name"].as_str()), (Some(1), Some("weight_aligning.gamma")));
    assert_eq!(event["values"]["old_classes"], serde_json::json!([0, 1]));
    assert_eq!(event["values"]["new_classes"], serde_json::json!([2, 3]));
    let gamma = event["values"]["gamma"].as_f64().unwrap();
    assert!(gamma > 0.0 && gamma < 1.0, "new classes' rows are the longer ones after training: γ = {gamma}");
    assert_eq!(a[..aligned], b[..aligned]);
    // After it, the runs part: the evaluation after task 1 sees the aligned network.
    assert_ne!(a[aligned + 1..], b[aligned..]);
}

/// One call of a worker that is asked to stop before it starts: it resumes from the run folder,
/// takes one step (or starts the next task), checkpoints and returns. Whether it stopped, not
/// thread timing, decides where: every step of the run becomes a resume point.
fn run_one_step(spec: &RunSpec) -> bool {
    let control = RunControl::default();
    control.stop.store(true, Ordering::Relaxed);
    matches!(engine::run(spec, Box::new(std::io::sink()), &control).unwrap(), RunOutcome::Interrupted { .. })
}

#[test]
fn weight_aligning_resumes_bit_identically_on_class_incremental_split_mnist() {
    let Some(mut spec) = split_mnist_spec(method("weight_aligning", serde_json::json!({"lr": 0.05}))) else {
        return;
    };
    spec.stream.params.set("train_examples", serde_json::json!(600));
    let dir = |name: &str| test_support::scratch(&format!("baselines-{name}")).keep();
    let reference_dir = dir("reference");
    let _ = std::fs::remove_dir_all(&reference_dir);
    spec.run_dir = Some(reference_dir.clone());
    events(&spec);
    let reference = std::fs::read_to_string(reference_dir.join(EVENT_LOG)).unwrap();
    assert!(reference.contains("weight_aligning.gamma") && reference.contains(r#""task":2"#));
    // Stopped and resumed after every single step, through distillation and two alignments.
    let resumed_dir = dir("resumed");
    let _ = std::fs::remove_dir_all(&resumed_dir);
    spec.run_dir = Some(resumed_dir.clone());
    let mut stops = 0;
    while run_one_step(&spec) {
        stops += 1;
        assert!(stops < 1000);
    }
    assert!(stops > 40, "{stops}");
    let resumed = std::fs::read_to_string(resumed_dir.join(EVENT_LOG)).unwrap();
    assert_eq!(resumed, reference);
    let _ = std::fs::remove_dir_all(&resumed_dir);
    let _ = std::fs::remove_dir_all(&reference_dir);
}
