//! End-to-end runs of the worker engine: determinism, resume after interruption, and resume
//! from a crash, for every registered method.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use test_support::images::{hashed_pixel, write_cifar100};
use test_support::{Captured, SpecBuilder};
use workers::engine::{self, RunControl, RunOutcome};
use workers::protocol::files::EVENTS as EVENT_LOG;
use workers::protocol::*;
use workers::stream::{FlipMode, PermutedMnistSpec, SlowlyChangingRegressionSpec};

/// A fresh run folder that outlives the test's handle (the test removes it when it passes).
fn scratch(name: &str) -> PathBuf {
    test_support::scratch(&format!("engine-{name}")).keep()
}

fn synthetic_spec(kind: &str, params: serde_json::Value) -> RunSpec {
    let mut spec = SpecBuilder::synthetic(3)
        .stream(serde_json::json!({"synthetic_permuted": {
            "tasks": 3, "classes": 4, "dim": 12, "train_per_class": 40, "test_per_class": 10, "noise": 1.5
        }}))
        .hidden(&[16, 12])
        .method(kind, params)
        .training(8, 2)
        .seed(11)
        .with(|s| {
            s.eval.plasticity.probe = 50;
            s.checkpoint = CheckpointSpec { every_steps: Some(7), every_tasks: Some(1), keep: 2 };
        });
    // CLNP is task-incremental: it refuses a shared head.
    if matches!(kind, "clnp" | "niwf" | "weight_field") {
        spec = spec.per_task_heads();
    }
    spec.build()
}

fn run_to_end(spec: &RunSpec) -> Vec<u8> {
    let out = Captured::default();
    let control = RunControl::default();
    assert_eq!(engine::run(spec, Box::new(out.clone()), &control).unwrap(), RunOutcome::Finished);
    let bytes = out.0.lock().unwrap().clone();
    bytes
}

fn events_of(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(EVENT_LOG)).unwrap()
}

#[test]
fn the_same_spec_gives_byte_identical_events() {
    let spec = synthetic_spec("sgd", serde_json::json!({"lr": 0.05}));
    let a = run_to_end(&spec);
    let b = run_to_end(&spec);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let text = String::from_utf8(a).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.contains(r#""event":"finished""#), "{last}");
    // A different seed gives different numbers.
    let mut other = spec.clone();
    other.seed = 12;
    assert_ne!(text.into_bytes(), run_to_end(&other));
}

#[test]
fn autograd_and_fused_engines_train_alike() {
    let fused = synthetic_spec("adam", serde_json::json!({}));
    let mut auto = fused.clone();
    auto.network.engine = Engine::Autograd;
    let events = |bytes: Vec<u8>| -> Vec<Event> {
        String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let (a, b) = (events(run_to_end(&fused)), events(run_to_end(&auto)));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        if let (EventBody::Eval { accuracy: Some(p), .. }, EventBody::Eval { accuracy: Some(q), .. }) =
            (&x.body, &y.body)
        {
            // Rounding differences compound over 60 steps; accuracies stay within a few examples.
            assert!((p - q).abs() <= 0.1, "{x:?} vs {y:?}");
        }
    }
}

#[test]
fn a_layers_network_trains_exactly_like_the_hidden_network_it_spells_out() {
    let mut hidden = synthetic_spec("adam", serde_json::json!({}));
    hidden.network.activation = Activation::Tanh;
    let mut layered = hidden.clone();
    layered.network = serde_json::from_value(serde_json::json!({"layers": [
        {"linear": {"units": 16}}, {"tanh": {}}, {"linear": {"units": 12}}, {"tanh": {}}
    ]}))
    .unwrap();
    assert_eq!(hidden.network.hidden, vec![16, 12], "the helper's network changed");
    // The specs differ, so their ids do; under one id the events are the same bytes.
    assert_ne!(layered.content_id(), hidden.id);
    layered.id = hidden.id.clone();
    let events = run_to_end(&hidden);
    assert!(!events.is_empty());
    assert_eq!(String::from_utf8(run_to_end(&layered)).unwrap(), String::from_utf8(events).unwrap());
}

#[test]
fn a_network_the_engines_do_not_compute_is_refused_before_training() {
    let mut spec = synthetic_spec("sgd", serde_json::json!({"lr": 0.05}));
    spec.network = serde_json::from_value(serde_json::json!({"layers": [
        {"linear": {"units": 16}}, {"relu": {}}, {"linear": {"units": 12}}, {"tanh": {}}
    ]}))
    .unwrap();
    let err = engine::check_spec(&spec).unwrap_err();
    assert!(err.contains("`network.layers[3]` (`tanh`) differs from `network.layers[1]` (`relu`)"), "{err}");
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err().to_string();
    assert!(err.contains("the MLP engine computes alternating `linear` and activation layers"), "{err}");
}

/// Runs `spec`, stopping it once it has taken `stop_after` steps in total; returns whether it
/// was interrupted.
fn run_until(spec: &RunSpec, stop_after: u64) -> bool {
    let control = RunControl::default();
    control.stop_at_step.store(stop_after, Ordering::Relaxed);
    let outcome = engine::run(spec, Box::new(std::io::sink()), &control).unwrap();
    matches!(outcome, RunOutcome::Interrupted { .. })
}

fn assert_resume_is_bit_identical(kind: &str, params: serde_json::Value) {
    assert_spec_resumes_bit_identically(kind, synthetic_spec(kind, params), [3, 17, 40, 59], 30);
}

/// Runs `spec` through, then stopped at each of `stops` (and every 23 steps after) and resumed,
/// then crashed at step `crash` (torn log line, no stop checkpoint) and resumed: the events must
/// equal the uninterrupted run's every time.
fn assert_spec_resumes_bit_identically(label: &str, mut spec: RunSpec, stops: [u64; 4], crash: u64) {
    let kind = label;
    let reference_dir = scratch(&format!("{kind}-reference"));
    spec.run_dir = Some(reference_dir.clone());
    run_to_end(&spec);
    let reference = events_of(&reference_dir);

    for (i, stop_after) in stops.into_iter().enumerate() {
        let dir = scratch(&format!("{kind}-resume-{i}"));
        spec.run_dir = Some(dir.clone());
        let mut interrupted = 0;
        // Stop, resume, stop again later, … until the run finishes.
        let mut at = stop_after;
        while run_until(&spec, at) {
            interrupted += 1;
            at += 23;
            assert!(interrupted < 10);
        }
        assert!(interrupted >= 1, "{kind}: the run was never interrupted");
        assert_eq!(
            String::from_utf8(events_of(&dir)).unwrap(),
            String::from_utf8(reference.clone()).unwrap(),
            "{kind}: events after resuming from step {stop_after} differ"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // A crash: the worker dies without a checkpoint of its own, leaving a torn last line.
    let dir = scratch(&format!("{kind}-crash"));
    spec.run_dir = Some(dir.clone());
    assert!(run_until(&spec, crash));
    let mut log = std::fs::OpenOptions::new().append(true).open(dir.join(EVENT_LOG)).unwrap();
    log.write_all(br#"{"run":"torn","seq":99,"ev"#).unwrap();
    drop(log);
    // The newest checkpoint is the stop checkpoint; delete it so the run falls back to the last
    // scheduled one, as after SIGKILL.
    let newest = workers::checkpoint::list(&dir).unwrap().into_iter().last().unwrap();
    std::fs::remove_file(newest.path).unwrap();
    run_to_end(&spec);
    assert_eq!(events_of(&dir), reference, "{kind}: events after a crash and resume differ");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&reference_dir);
}

/// Parameters with which each method does something on the tiny synthetic stream (120 steps).
fn resume_params(kind: &str) -> serde_json::Value {
    match kind {
        "shrink_perturb" => serde_json::json!({"noise_std": 0.01}),
        // Mature after 5 steps, then about one unit per layer every 1–2 steps.
        "cbp" => serde_json::json!({"replacement_rate": 0.05, "maturity_threshold": 5}),
        // Recycle often enough, on a probe that wraps, that its contents and position matter.
        "redo" => serde_json::json!({"every_steps": 5, "tau": 0.5, "probe": 20}),
        "l2_init" => serde_json::json!({"weight_decay": 0.01}),
        // Adam's moments would move frozen weights; a margin prunes (and so frees and
        // re-initialises) units on this tiny stream.
        "clnp" => serde_json::json!({"optimizer": "adam", "lr": 0.01, "alpha": 1e-3, "margin": 0.05}),
        // A buffer far smaller than the 960 examples seen, so the reservoir replaces (and its
        // random numbers and contents matter) all through the run.
        "er" | "der" | "derpp" => serde_json::json!({"buffer_size": 20, "replay_batch_size": 6, "lr": 0.05}),
        // Ten examples per finished task in the memory; a reference batch of 16 of them.
        "agem" => serde_json::json!({"buffer_size": 30, "replay_batch_size": 16, "lr": 0.05}),
        _ => serde_json::json!({}),
    }
}

#[test]
fn every_method_resumes_bit_identically() {
    for m in workers::method::registry() {
        assert_resume_is_bit_identical(m.kind, resume_params(m.kind));
    }
}

#[test]
fn rehearsal_methods_change_the_run_on_the_resume_test_stream() {
    // Otherwise the resume test would not exercise their buffers.
    let sgd = String::from_utf8(run_to_end(&synthetic_spec("sgd", serde_json::json!({"lr": 0.05})))).unwrap();
    for kind in ["er", "der", "derpp", "agem"] {
        let text = String::from_utf8(run_to_end(&synthetic_spec(kind, resume_params(kind)))).unwrap();
        let finals = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.contains(r#""event":"eval""#) && l.contains(r#""after_task":2"#))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(finals(&text).len(), 3, "{kind}");
        assert_ne!(finals(&text), finals(&sgd), "{kind} trained like sgd");
    }
}

#[test]
fn niwf_with_a_hard_lock_versions_and_compositions_resumes_bit_identically() {
    // Commits grow the field (fresh bases, extensions), freeze parts of it and keep versions;
    // rollback and composition rows are evaluated from the checkpointed versions and regions.
    let params = serde_json::json!({"lock": "hard", "anchors": 32, "rollback": [0, 1], "compose": [[0, 1]], "drift_examples": 20});
    let text = String::from_utf8(run_to_end(&synthetic_spec("niwf", params.clone()))).unwrap();
    let events: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let variants: Vec<(Option<usize>, usize, &str)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Eval { after_task, on_task, variant: Some(v), .. } => {
                Some((*after_task, *on_task, v.as_str()))
            }
            _ => None,
        })
        .collect();
    // version:0 from the first evaluation on, version:1 and compose:0+1 once task 1 is committed.
    assert_eq!(variants.len(), 3 + 3 * 3 + 3 * 3, "{variants:?}");
    assert!(variants.contains(&(Some(2), 1, "compose:0+1")) && variants.contains(&(Some(0), 2, "version:0")));
    assert_resume_is_bit_identical("niwf", params);
}

#[test]
fn adam_with_momentum_state_resumes_bit_identically() {
    assert_resume_is_bit_identical("l2", serde_json::json!({"optimizer": "adam", "weight_decay": 0.001}));
}

#[test]
fn cbp_with_adam_and_the_probabilistic_count_resumes_bit_identically() {
    assert_resume_is_bit_identical(
        "cbp",
        serde_json::json!({"optimizer": "adam", "lr": 0.01, "replacement_rate": 0.03,
            "maturity_threshold": 5, "accumulate": false, "utility": "contribution"}),
    );
}

#[test]
fn cbp_replaces_units_on_the_resume_test_stream() {
    // Otherwise the resume test would not exercise its state.
    let text = String::from_utf8(run_to_end(&synthetic_spec("cbp", resume_params("cbp")))).unwrap();
    let reports: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "method" && e["name"] == "cbp.replaced")
        .collect();
    assert_eq!(reports.len(), 3, "one report per task");
    for (t, r) in reports.iter().enumerate() {
        let per_task: Vec<u64> = serde_json::from_value(r["values"]["task"].clone()).unwrap();
        assert!(per_task.iter().all(|&n| n >= 10), "task {t}: {per_task:?}");
    }
}

#[test]
fn a_corrupted_newest_checkpoint_falls_back_to_the_previous_one() {
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    let reference_dir = scratch("corrupt-reference");
    spec.run_dir = Some(reference_dir.clone());
    run_to_end(&spec);
    let dir = scratch("corrupt");
    spec.run_dir = Some(dir.clone());
    assert!(run_until(&spec, 45));
    let checkpoints = workers::checkpoint::list(&dir).unwrap();
    assert!(checkpoints.len() >= 2);
    let newest = &checkpoints.last().unwrap().path;
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(newest, bytes).unwrap();
    run_to_end(&spec);
    assert_eq!(events_of(&dir), events_of(&reference_dir));
}

#[test]
fn another_runs_checkpoint_in_the_folder_is_skipped_not_fatal() {
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    let reference_dir = scratch("foreign-reference");
    spec.run_dir = Some(reference_dir.clone());
    run_to_end(&spec);
    // Another run (another seed, so another spec) leaves a checkpoint.
    let mut other = spec.clone();
    other.seed += 1;
    let other_dir = scratch("foreign-other");
    other.run_dir = Some(other_dir.clone());
    assert!(run_until(&other, 30));
    let theirs = workers::checkpoint::list(&other_dir).unwrap().last().unwrap().path.clone();

    for (name, interrupt) in [("foreign-older", Some(45)), ("foreign-scratch", None)] {
        let dir = scratch(name);
        spec.run_dir = Some(dir.clone());
        if let Some(step) = interrupt {
            assert!(run_until(&spec, step));
        } else {
            std::fs::create_dir_all(&dir).unwrap();
        }
        // Newer than any of this run's checkpoints.
        let foreign = workers::checkpoint::file_name(1_000_000);
        std::fs::copy(&theirs, dir.join(&foreign)).unwrap();
        let point = engine::resume_point(&spec, &dir).unwrap();
        assert_eq!(point.rejected.len(), 1, "{name}: {point:?}");
        assert_eq!(point.rejected[0].file, foreign);
        assert_eq!(point.rejected[0].summary, "another run's");
        assert!(point.rejected[0].reason.contains("belongs to another run"), "{point:?}");
        assert_eq!(point.resumed_from.is_some(), interrupt.is_some(), "{name}: {point:?}");
        run_to_end(&spec);
        assert_eq!(events_of(&dir), events_of(&reference_dir), "{name}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&other_dir);
    let _ = std::fs::remove_dir_all(&reference_dir);
}

#[test]
fn a_bad_spec_fails_with_one_clear_line() {
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    spec.method.kind = "sdg".into();
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err();
    assert!(err.to_string().contains("unknown method kind `sdg`"), "{err}");
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    spec.stream = workers::stream::spec_of::<workers::stream::PermutedMnistKind>(&PermutedMnistSpec {
        data_dir: "/nonexistent/mnist".into(),
        fingerprint: None,
        tasks: 2,
        first_unpermuted: false,
        train_examples: None,
        test_examples: None,
    });
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/mnist"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

/// The example spec of the README: 5 tasks of permuted MNIST (mnist-10k) with `sgd` on
/// 784-100-100-10 learns the first task well and visibly forgets it.
#[test]
fn the_permuted_mnist_example_learns_then_forgets() {
    let root = test_support::repo_root();
    let Some(data) = test_support::mnist_dir() else { return };
    let text = std::fs::read_to_string(root.join("workers/examples/specs/permuted-mnist-sgd.json")).unwrap();
    let mut spec: RunSpec = serde_json::from_str(&text).unwrap();
    spec.stream.set_data_dir(&data);
    let events = String::from_utf8(run_to_end(&spec)).unwrap();
    let mut r = workers::metrics::AccuracyMatrix::new(5);
    for line in events.lines() {
        let e: Event = serde_json::from_str(line).unwrap();
        if let EventBody::Eval { after_task: Some(i), on_task: j, accuracy: Some(a), .. } = e.body {
            r.set(i, j, a);
        }
    }
    let (first, last) = (r.get(0, 0).unwrap(), r.get(4, 0).unwrap());
    assert!(first >= 0.90, "R[0][0] = {first}\n{r:?}");
    assert!(last < first - 0.05, "R[4][0] = {last}, R[0][0] = {first}\n{r:?}");
}

#[test]
fn parts_that_do_not_fit_together_are_refused_before_any_work() {
    // A task-incremental method with a shared head.
    let mut spec = synthetic_spec("clnp", serde_json::json!({}));
    spec.network.heads = Heads::Shared;
    let err = engine::check_spec(&spec).unwrap_err();
    assert!(err.contains("task-incremental") && err.contains("per_task"), "{err}");
    // An online stream cannot announce task boundaries or task ids.
    let mut online = synthetic_spec("ewc", serde_json::json!({}));
    online.stream = workers::stream::spec_of::<workers::stream::SlowlyChangingRegressionKind>(
        &SlowlyChangingRegressionSpec {
            tasks: 2,
            inputs: 20,
            slow_bits: 15,
            flip_every: 100,
            flip: FlipMode::One,
            target_hidden: 10,
            beta: 0.7,
            threshold: Default::default(),
            test_examples: 10,
        },
    );
    let err = engine::check_spec(&online).unwrap_err();
    assert!(err.contains("acts at task boundaries"), "{err}");
    online.method.kind = "sgd".into();
    assert!(engine::check_spec(&online).is_ok());
    online.network.heads = Heads::PerTask;
    let err = engine::check_spec(&online).unwrap_err();
    assert!(err.contains("per-task heads"), "{err}");
    // The worker refuses them too, with the same line.
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err();
    assert!(err.to_string().contains("task-incremental"), "{err}");
}

/// Issue 16, finding 6: a method parameter naming a task the stream does not have (NIWF's
/// `rollback` after `stream.tasks=3`) is refused when the run is checked, as `clorch validate`
/// checks it, instead of failing the run when training begins.
#[test]
fn tasks_a_method_names_must_exist_in_the_stream() {
    let spec = synthetic_spec("niwf", serde_json::json!({"rollback": [0, 4]}));
    let err = engine::check_spec(&spec).unwrap_err();
    assert!(err.contains("`rollback`/`compose` name task 4, but the stream has 3 tasks (0 to 2)"), "{err}");
    let spec = synthetic_spec("niwf", serde_json::json!({"rollback": [0, 2], "compose": [[0, 1]]}));
    assert!(engine::check_spec(&spec).is_ok());
    let spec = synthetic_spec("niwf", serde_json::json!({"compose": [[1, 3]]}));
    assert!(engine::check_spec(&spec).unwrap_err().contains("name task 3"));
}

fn cifar_spec(data: &Path, augment: bool) -> RunSpec {
    SpecBuilder::synthetic(4)
        .stream(serde_json::json!({"class_incremental_cifar100": {
            "data_dir": data, "tasks": 4, "augment": augment
        }}))
        .hidden(&[8])
        .method("sgd", serde_json::json!({}))
        .training(8, 2)
        .seed(5)
        .with(|s| s.checkpoint = CheckpointSpec { every_steps: Some(9), every_tasks: Some(1), keep: 2 })
        .build()
}

/// Class-incremental CIFAR-100 with augmentation: the trainer crops and flips every training
/// batch from (seed, task, epoch, position) alone, so a run stopped and resumed anywhere
/// writes the same events as one that ran through; and augmentation changes what is learnt.
#[test]
fn an_augmented_image_stream_with_a_growing_head_resumes_bit_identically() {
    let data = scratch("cifar100-data");
    write_cifar100(&data, 2, hashed_pixel);
    let mut spec = cifar_spec(&data, true);
    let reference_dir = scratch("cifar100-reference");
    spec.run_dir = Some(reference_dir.clone());
    run_to_end(&spec);
    let reference = events_of(&reference_dir);
    let text = String::from_utf8(reference.clone()).unwrap();
    assert_eq!(text.matches("\"task_started\"").count(), 4, "{text}");

    let dir = scratch("cifar100-resume");
    spec.run_dir = Some(dir.clone());
    let mut at = 11;
    while run_until(&spec, at) {
        at += 29;
    }
    assert_eq!(String::from_utf8(events_of(&dir)).unwrap(), text, "events after resuming differ");

    let mut plain = cifar_spec(&data, false);
    let plain_dir = scratch("cifar100-plain");
    plain.run_dir = Some(plain_dir.clone());
    run_to_end(&plain);
    assert_ne!(events_of(&plain_dir), reference, "augmentation changed nothing");
    for d in [data, reference_dir, dir, plain_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A growing head reads only the outputs of the classes seen so far: before training, the loss
/// on the first of four CIFAR-100 increments is a softmax over 25 outputs and on the last over
/// 100 (whose test images include the first's). For any one image, leaving logits out of the
/// softmax can only lower its loss, by ln 4 on average when the logits are alike; unmasked,
/// both losses would be a softmax over the same 100 outputs.
#[test]
fn a_growing_head_leaves_unseen_classes_out_of_the_softmax() {
    let data = scratch("cifar100-masking");
    write_cifar100(&data, 1, hashed_pixel);
    let mut spec = cifar_spec(&data, false);
    spec.eval.before_training = true;
    let dir = scratch("cifar100-masking-run");
    spec.run_dir = Some(dir.clone());
    run_to_end(&spec);
    let loss_before = |task: u64| -> f64 {
        let text = String::from_utf8(events_of(&dir)).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["event"] == "eval" && e["after_task"].is_null() && e["on_task"] == task)
            .and_then(|e| e["loss"].as_f64())
            .expect("an evaluation before training")
    };
    let (first, last) = (loss_before(0), loss_before(3));
    assert!(last - first > 0.7, "loss {first} on 25 active classes, {last} on 100");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small conv net with every stateful layer kind: a convolution, batch norm (running
/// statistics in the checkpoint), max pooling, a residual block with a projection, global
/// average pooling.
fn conv_spec(data: &Path, method: &str) -> RunSpec {
    let mut spec = cifar_spec(data, true);
    spec.network = serde_json::from_value(serde_json::json!({"layers": [
        {"conv2d": {"channels": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"relu": {}},
        {"max_pool2d": {"kernel": 4}},
        {"basic_block": {"channels": 6, "stride": 2}},
        {"global_avg_pool": {}}
    ]}))
    .unwrap();
    spec.method = test_support::method_spec(method, serde_json::json!({}));
    spec.eval.plasticity.probe = 40;
    spec.id = spec.content_id();
    spec
}

/// A conv net with batch norm on an augmented stream with a growing head: stopped and resumed
/// anywhere (mid-epoch, at task boundaries), its events equal an uninterrupted run's byte for
/// byte — the parameters, the optimiser's moments, batch norm's running statistics and the
/// augmentation all come back; and its plasticity events measure the two rectified layers.
#[test]
fn a_conv_net_with_batch_norm_and_augmentation_resumes_bit_identically() {
    let data = scratch("conv-data");
    write_cifar100(&data, 2, hashed_pixel);
    for method in ["adam", "l2"] {
        let mut spec = conv_spec(&data, method);
        let reference_dir = scratch(&format!("conv-{method}-reference"));
        spec.run_dir = Some(reference_dir.clone());
        run_to_end(&spec);
        let text = String::from_utf8(events_of(&reference_dir)).unwrap();
        assert_eq!(text.matches("\"task_started\"").count(), 4, "{text}");
        let plasticity = text.lines().find(|l| l.contains("\"plasticity\"")).expect("a plasticity event");
        let event: serde_json::Value = serde_json::from_str(plasticity).unwrap();
        assert_eq!(event["layers"].as_array().unwrap().len(), 2, "{plasticity}");

        let dir = scratch(&format!("conv-{method}-resume"));
        spec.run_dir = Some(dir.clone());
        let mut at = 5;
        while run_until(&spec, at) {
            at += 13;
        }
        assert_eq!(
            String::from_utf8(events_of(&dir)).unwrap(),
            text,
            "{method}: events after resuming differ"
        );
        for d in [reference_dir, dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let _ = std::fs::remove_dir_all(data);
}

/// What a conv net cannot be trained with is refused when the spec is checked, before any
/// data is read: a task-incremental method on a shared head, the autograd engine, and a batch
/// norm that a batch would give one value per channel. (Every registered method has a conv-net
/// version, so none is refused for lacking one.)
#[test]
fn a_conv_net_is_refused_with_what_it_cannot_train_with() {
    let data = scratch("conv-refusals");
    write_cifar100(&data, 1, hashed_pixel);
    assert!(workers::method::registry().iter().all(|m| m.trains_conv()));
    let err = engine::check_spec(&conv_spec(&data, "niwf")).unwrap_err();
    assert!(
        err.contains("method `niwf` (niwf) is task-incremental: it needs one output head per task"),
        "{err}"
    );
    assert!(engine::check_spec(&field_conv_spec(&data, "niwf")).is_ok());
    let mut spec = conv_spec(&data, "sgd");
    spec.network.engine = Engine::Autograd;
    assert!(engine::check_spec(&spec)
        .unwrap_err()
        .contains("`engine: autograd` computes multi-layer perceptrons"));
    let mut spec = conv_spec(&data, "sgd");
    spec.network = serde_json::from_value(serde_json::json!({"layers": [
        {"conv2d": {"channels": 4, "kernel": 32}}, {"batch_norm": {}}, {"relu": {}}, {"flatten": {}}
    ]}))
    .unwrap();
    spec.training.batch_size = 1;
    let err = engine::check_spec(&spec).unwrap_err();
    assert!(err.contains("layer 1 (`batch_norm`) normalises over the batch, and a batch of 1"), "{err}");
    spec.training.batch_size = 2;
    assert!(engine::check_spec(&spec).is_ok());
    let _ = std::fs::remove_dir_all(data);
}

/// Parameters with which each method's conv-net version does something on the conv resume
/// stream (56 steps).
fn conv_resume_params(kind: &str) -> serde_json::Value {
    match kind {
        "l2" => serde_json::json!({"weight_decay": 0.01}),
        // A buffer far smaller than the 200 examples seen, so the reservoir replaces all through.
        "er" | "der" | "derpp" => serde_json::json!({"buffer_size": 12, "replay_batch_size": 4, "lr": 0.05}),
        // Three examples per finished task; a reference batch of 5 of them.
        "agem" => serde_json::json!({"buffer_size": 12, "replay_batch_size": 5, "lr": 0.05}),
        // About one channel of each unit group per step once mature; Adam, so that the reset
        // moments are part of what must resume.
        "cbp" => serde_json::json!({"optimizer": "adam", "lr": 0.01, "replacement_rate": 0.2,
            "maturity_threshold": 5}),
        // Channels below 0.9 of their group's mean activity, every 10 steps.
        "redo" => serde_json::json!({"every_steps": 10, "tau": 0.9, "probe": 32}),
        "l2_init" => serde_json::json!({"weight_decay": 0.05}),
        "shrink_perturb" => serde_json::json!({"weight_decay": 0.01, "noise_std": 0.01}),
        "classp" => serde_json::json!({"threshold": 1e-7}),
        "ewc" => serde_json::json!({"lambda": 5, "fisher_samples": 24}),
        "clnp" => serde_json::json!({"alpha": 0.01, "retrain_epochs": 1, "retrain_batch_size": 8}),
        "weight_aligning" => serde_json::json!({"clip_weights": true}),
        // Drift references of 8 held-out images a task; niwf's soft lock (its gradient, the
        // frozen backbone under a training linear tail), a kept version and a composition.
        "weight_field" => serde_json::json!({"drift_examples": 8, "lr": 0.01}),
        "niwf" => serde_json::json!({"drift_examples": 8, "lr": 0.01, "anchors": 4, "rollback": [0],
            "compose": [[0, 1]]}),
        _ => serde_json::json!({}),
    }
}

/// cbp and redo act on the conv resume stream with their `conv_resume_params`; otherwise
/// the resume test would not exercise their state.
#[test]
fn cbp_and_redo_replace_channels_on_the_conv_resume_stream() {
    let data = scratch("conv-replacing-data");
    write_cifar100(&data, 2, hashed_pixel);
    for (kind, event, field) in [("cbp", "cbp.replaced", "total"), ("redo", "redo.recycled", "per_layer")] {
        let mut spec = conv_spec(&data, kind);
        spec.method = test_support::method_spec(kind, conv_resume_params(kind));
        spec.id = spec.content_id();
        let text = String::from_utf8(run_to_end(&spec)).unwrap();
        let reports: Vec<Vec<u64>> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == "method" && e["name"] == event)
            .map(|e| serde_json::from_value(e["values"][field].clone()).unwrap())
            .collect();
        assert_eq!(reports.len(), 4, "{kind}: one report per task");
        // Two unit groups: the first convolution's channels, the block's first convolution's.
        assert!(reports.iter().all(|r| r.len() == 2), "{kind}: {reports:?}");
        let replaced: Vec<u64> = match kind {
            "cbp" => reports.last().unwrap().clone(),
            _ => (0..2).map(|g| reports.iter().map(|r| r[g]).sum()).collect(),
        };
        assert!(replaced.iter().all(|&n| n >= 1), "{kind}: {replaced:?} over the run");
    }
    let _ = std::fs::remove_dir_all(data);
}

/// cbp and redo on a conv net in which no layer's channels can be silenced by zeroing weights
/// (no ReLU) fail when the run begins, saying what a unit needs, rather than train as plain
/// backprop.
#[test]
fn cbp_and_redo_refuse_a_conv_net_without_replaceable_units() {
    let data = scratch("conv-no-units-data");
    write_cifar100(&data, 1, hashed_pixel);
    for kind in ["cbp", "redo"] {
        let mut spec = conv_spec(&data, kind);
        spec.network = serde_json::from_value(serde_json::json!({"layers": [
            {"conv2d": {"channels": 4, "kernel": 3, "padding": 1}}, {"batch_norm": {}}, {"global_avg_pool": {}}
        ]}))
        .unwrap();
        spec.id = spec.content_id();
        let err = engine::run(&spec, Box::new(Captured::default()), &RunControl::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{kind}: no layer of this network has replaceable units")), "{err}");
    }
    let _ = std::fs::remove_dir_all(data);
}

/// The conv resume spec for weight_field and niwf: the same net (batch norm, residual block) on
/// the task-incremental split of the same data, whose tasks have heads of their own (the
/// class-incremental stream's tasks share one growing head, which the field refuses).
fn field_conv_spec(data: &Path, kind: &str) -> RunSpec {
    let mut spec = conv_spec(data, kind);
    spec.stream = serde_json::from_value(serde_json::json!({"split_cifar100": {
        "data_dir": data, "tasks": 4, "augment": true
    }}))
    .unwrap();
    spec.id = spec.content_id();
    spec
}

/// weight_field and niwf act on the conv resume stream with their `conv_resume_params` (per-task
/// heads): niwf commits every task and evaluates its version and composition rows; with the
/// hard lock task 0's outputs stay bit-identical to the end, with the soft lock they move less
/// than under weight_field, whose backbone keeps training.
#[test]
fn weight_fields_commit_and_drift_on_the_conv_resume_stream() {
    let data = scratch("conv-field-data");
    write_cifar100(&data, 2, hashed_pixel);
    let mut drift = Vec::new();
    for (kind, lock) in [("weight_field", None), ("niwf", Some("soft")), ("niwf", Some("hard"))] {
        let mut spec = field_conv_spec(&data, kind);
        let mut params = conv_resume_params(kind);
        if let Some(lock) = lock {
            params["lock"] = lock.into();
        }
        spec.method = test_support::method_spec(kind, params);
        spec.id = spec.content_id();
        let text = String::from_utf8(run_to_end(&spec)).unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let named =
            |name: &str| events.iter().filter(|e| e["event"] == "method" && e["name"] == name).count();
        let variants = |v: &str| events.iter().filter(|e| e["event"] == "eval" && e["variant"] == v).count();
        let last = events.iter().rev().find(|e| e["name"] == format!("{kind}.drift")).expect("a drift event");
        let tasks = last["values"]["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 4, "{last}");
        let changed: u64 = tasks.iter().map(|t| t["changed_outputs"].as_u64().unwrap()).sum();
        drift.push((tasks[0]["max_abs_change"].as_f64().unwrap(), changed));
        assert_eq!(named("niwf.commit"), if kind == "niwf" { 4 } else { 0 }, "{text}");
        if kind == "niwf" {
            assert!(variants("version:0") > 0 && variants("compose:0+1") > 0, "{text}");
        }
    }
    let [field, soft, hard] = drift[..] else { unreachable!() };
    println!(
        "task 0's drift (max |Δ|, changed outputs): weight_field {field:?}, soft {soft:?}, hard {hard:?}"
    );
    assert!(field.0 > 0.0 && soft.0 < field.0 / 10.0 && hard == (0.0, 0), "task 0's drift: {drift:?}");
    let _ = std::fs::remove_dir_all(data);
}

/// Every method with a conv-net version resumes bit-identically on a conv net with batch
/// norm, a residual block and augmentation, after stops anywhere and after a crash.
#[test]
fn every_conv_method_resumes_bit_identically() {
    let data = scratch("conv-every-data");
    write_cifar100(&data, 2, hashed_pixel);
    let conv = workers::method::registry().into_iter().filter(|m| m.trains_conv()).collect::<Vec<_>>();
    assert!(conv.len() >= 3);
    for m in conv {
        let mut spec = conv_spec(&data, m.kind);
        if m.kind == "clnp" {
            // CLNP refuses batch norm and residual blocks (they break its zero-forgetting
            // guarantee) and needs one head per task: the same net without them, on the
            // task-incremental split of the same data.
            spec.stream = serde_json::from_value(serde_json::json!({"split_cifar100": {
                "data_dir": &data, "tasks": 4, "augment": true
            }}))
            .unwrap();
            spec.network = serde_json::from_value(serde_json::json!({"layers": [
                {"conv2d": {"channels": 4, "kernel": 3, "padding": 1}}, {"relu": {}},
                {"max_pool2d": {"kernel": 4}},
                {"conv2d": {"channels": 6, "kernel": 3, "stride": 2, "padding": 1}}, {"relu": {}},
                {"global_avg_pool": {}}
            ]}))
            .unwrap();
        }
        if matches!(m.kind, "weight_field" | "niwf") {
            spec = field_conv_spec(&data, m.kind);
        }
        spec.method = test_support::method_spec(m.kind, conv_resume_params(m.kind));
        spec.id = spec.content_id();
        assert_spec_resumes_bit_identically(&format!("conv-{}", m.kind), spec, [3, 11, 25, 40], 30);
    }
    let _ = std::fs::remove_dir_all(data);
}
