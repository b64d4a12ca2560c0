//! End-to-end runs of the worker engine: determinism, resume after interruption, and resume
//! from a crash, for every registered method.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use workers::engine::{self, RunControl, RunOutcome, EVENT_LOG};
use workers::protocol::*;

/// A `Write` whose bytes can be read after the run.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clorch-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn synthetic_spec(kind: &str, params: serde_json::Value) -> RunSpec {
    let params: BTreeMap<String, serde_json::Value> = serde_json::from_value(params).unwrap();
    let mut spec = RunSpec {
        protocol: PROTOCOL_VERSION,
        id: String::new(),
        experiment: "test".into(),
        seed: 11,
        stream: StreamSpec::SyntheticPermuted(SyntheticPermutedSpec {
            tasks: 3,
            classes: 4,
            dim: 12,
            train_per_class: 40,
            test_per_class: 10,
            noise: 1.5,
            transform: InputTransform::Permute,
        }),
        network: NetworkSpec {
            hidden: vec![16, 12],
            activation: Activation::Relu,
            heads: Heads::Shared,
            engine: Engine::Fused,
        },
        method: MethodSpec { name: kind.into(), kind: kind.into(), params },
        training: TrainingSpec { batch_size: 8, epochs: 2, validation: 0 },
        eval: EvalSpec {
            plasticity: PlasticitySpec { probe: 50, ..PlasticitySpec::default() },
            ..EvalSpec::default()
        },
        checkpoint: CheckpointSpec { every_steps: Some(7), every_tasks: Some(1), keep: 2 },
        run_dir: None,
    };
    spec.id = spec.content_id();
    spec
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

/// Runs `spec` in `dir`, asking it to stop once it has taken `stop_after` steps; returns
/// whether it was interrupted.
fn run_until(spec: &RunSpec, stop_after: u64) -> bool {
    let control = Arc::new(RunControl::default());
    let watcher = {
        let control = Arc::clone(&control);
        std::thread::spawn(move || {
            while control.steps.load(Ordering::Relaxed) < stop_after {
                std::thread::yield_now();
                if control.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            control.stop.store(true, Ordering::Relaxed);
        })
    };
    let outcome = engine::run(spec, Box::new(std::io::sink()), &control).unwrap();
    control.stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    matches!(outcome, RunOutcome::Interrupted { .. })
}

fn assert_resume_is_bit_identical(kind: &str, params: serde_json::Value) {
    let mut spec = synthetic_spec(kind, params);
    let reference_dir = scratch(&format!("{kind}-reference"));
    spec.run_dir = Some(reference_dir.clone());
    run_to_end(&spec);
    let reference = events_of(&reference_dir);

    for (i, stop_after) in [3u64, 17, 40, 59].into_iter().enumerate() {
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
    assert!(run_until(&spec, 30));
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

#[test]
fn every_method_resumes_bit_identically() {
    for m in workers::method::registry() {
        let params = match m.kind {
            "shrink_perturb" => serde_json::json!({"noise_std": 0.01}),
            _ => serde_json::json!({}),
        };
        assert_resume_is_bit_identical(m.kind, params);
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
fn a_bad_spec_fails_with_one_clear_line() {
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    spec.method.kind = "sdg".into();
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err();
    assert!(err.to_string().contains("unknown method kind `sdg`"), "{err}");
    let mut spec = synthetic_spec("sgd", serde_json::json!({}));
    spec.stream = StreamSpec::PermutedMnist(PermutedMnistSpec {
        data_dir: "/nonexistent/mnist".into(),
        tasks: 2,
        first_unpermuted: false,
        train_examples: None,
        test_examples: None,
    });
    let err = engine::run(&spec, Box::new(std::io::sink()), &RunControl::default()).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/mnist"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}
