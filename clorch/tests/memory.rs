//! The memory budget (issue 15): a worker's estimate of its peak memory is close to what it
//! really uses, and a run over the limit is refused with exit 2 and the estimate — at
//! `clorch validate`, at `clorch run` before anything is written, and by `clorch worker`
//! itself before it allocates.

use std::path::Path;

use protocol::memory::{format_size, MAX_MEMORY_ENV};
use protocol::RunSpec;
use serde_json::json;

mod common;
use common::{clorch, text, Scratch};

/// The peak resident memory (VmHWM) `clorch worker` reports at its end for `spec`, and the
/// estimate it checked before allocating, in bytes.
fn peak_and_estimate(spec: &Path) -> (u64, u64) {
    let out = common::clorch_env(
        &["worker", "--spec", spec.to_str().unwrap(), "--heartbeat", "0"],
        &[(MAX_MEMORY_ENV, &(1u64 << 40).to_string()), ("RUST_LOG", "memory=info")],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(protocol::exit::FINISHED), "{}: {err}", spec.display());
    let line = err.lines().find(|l| l.contains("peak resident memory")).expect("the worker reports its peak");
    let bytes: Vec<u64> = line
        .split_whitespace()
        .zip(line.split_whitespace().skip(1))
        .filter(|(_, unit)| *unit == "bytes")
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    assert_eq!(bytes.len(), 2, "{line}");
    (bytes[0], bytes[1])
}

fn spec(dir: &Path, name: &str, stream: serde_json::Value, hidden: &[usize], method: &str) -> RunSpec {
    serde_json::from_value(json!({
        "protocol": 1, "id": "0123456789ab", "experiment": name, "seed": 0,
        "stream": stream, "network": {"hidden": hidden},
        "method": {"name": method, "kind": method, "params": {}},
        "training": {"batch_size": 32, "epochs": 1}, "eval": {}, "checkpoint": {},
        "run_dir": dir.join(name),
    }))
    .unwrap()
}

#[test]
fn the_estimate_is_within_a_factor_of_two_of_the_measured_peak() {
    let s = Scratch::new("memory-estimate");
    let Some(mnist) = test_support::mnist_dir() else { return };
    let mnist = mnist.canonicalize().unwrap();
    let cases = [
        // The digits dominate.
        spec(
            s.0.path(),
            "digits",
            json!({"permuted_mnist": {"tasks": 2, "data_dir": mnist}}),
            &[100, 100],
            "sgd",
        ),
        // The network and Adam's four moments dominate.
        spec(
            s.0.path(),
            "adam",
            json!({"synthetic_permuted": {"tasks": 1, "dim": 784, "train_per_class": 20, "test_per_class": 10}}),
            &[2000, 2000],
            "adam",
        ),
        // EWC's Fisher and anchor per finished task.
        spec(
            s.0.path(),
            "ewc",
            json!({"permuted_mnist": {"tasks": 3, "data_dir": mnist, "train_examples": 1000, "test_examples": 500}}),
            &[1000, 1000],
            "ewc",
        ),
        // A conv net: its activations per example, at an evaluation chunk of 64, and Adam.
        {
            let mut conv = spec(
                s.0.path(),
                "cnn",
                json!({"split_mnist": {"data_dir": mnist, "groups": [[0, 1], [2, 3]], "train_examples": 2000, "test_examples": 500}}),
                &[],
                "adam",
            );
            conv.network = serde_json::from_value(json!({"architecture": "cnn_mnist"})).unwrap();
            conv
        },
    ];
    for case in cases {
        let path = s.0.path().join(format!("{}.json", case.experiment));
        std::fs::write(&path, serde_json::to_string(&case).unwrap()).unwrap();
        let estimate = workers::engine::memory::estimate(&case).unwrap();
        let (measured, reported) = peak_and_estimate(&path);
        assert_eq!(reported, estimate.total(), "the worker checks the same estimate");
        let ratio = estimate.total() as f64 / measured as f64;
        println!(
            "{}: estimated {}, measured peak {} (ratio {ratio:.2})",
            case.experiment,
            format_size(estimate.total()),
            format_size(measured)
        );
        assert!((0.5..=2.0).contains(&ratio), "{}: ratio {ratio:.2}: {estimate}", case.experiment);
    }
}

/// Within every size bound, yet 29 GiB: refused against an 8 GiB limit at validate and at run
/// (no results folder), with the itemised estimate and the limit.
#[test]
fn a_run_over_the_limit_is_refused_before_anything_is_written() {
    let s = Scratch::new("memory-refused");
    let r = s.recipe(
        "huge",
        "stream: {kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [60000, 30000]}\nmethods: [{name: sgd}]\nseeds: 2\n",
    );
    for command in ["validate", "run"] {
        let out = clorch(&[command, r.to_str().unwrap(), "--max-memory", "8GiB", "parallel=1"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("the run needs about") && err.contains("network parameters 6.7 GiB"), "{err}");
        assert!(err.contains("the memory limit is 8.0 GiB (--max-memory)"), "{command}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!s.path("results-huge").exists(), "a refused run created its results folder");
    let ok = clorch(&["validate", r.to_str().unwrap(), "--max-memory", "40GiB", "parallel=2"]);
    assert_eq!(ok.status.code(), Some(2), "two workers at once share 40 GiB: {}", text(&ok.stderr));
    assert!(
        text(&ok.stderr).contains("20.0 GiB per worker: 40.0 GiB shared by 2 workers"),
        "{}",
        text(&ok.stderr)
    );
    let ok = clorch(&["validate", r.to_str().unwrap(), "--max-memory", "40GiB", "parallel=1"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
}

#[test]
fn a_bad_max_memory_is_refused_naming_the_flag() {
    let s = Scratch::new("memory-flag");
    let r = s.recipe("flag", common::SMALL);
    for bad in ["4parsecs", "0", "-1GiB", "99999999999TiB"] {
        for command in ["validate", "run"] {
            let out = clorch(&[command, r.to_str().unwrap(), &format!("--max-memory={bad}")]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {bad}: {err}");
            assert!(err.contains("--max-memory"), "{command} {bad}: {err}");
        }
    }
    assert!(!s.path("results-flag").exists());
}

/// The worker checks too, before it allocates: a spec written by hand (or a limit handed down
/// by `clorch run`) too small for the run is a bad spec, with the estimate and the limit.
#[test]
fn the_worker_refuses_a_run_over_its_limit_before_allocating() {
    let s = Scratch::new("memory-worker");
    let huge = spec(s.0.path(), "huge", json!({"synthetic_permuted": {"tasks": 2}}), &[60000, 30000], "sgd");
    let path = s.write("huge.json", &serde_json::to_string(&huge).unwrap());
    let out = common::clorch_env(
        &["worker", "--spec", path.to_str().unwrap()],
        &[(MAX_MEMORY_ENV, &(1u64 << 30).to_string())],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(protocol::exit::BAD_SPEC), "{err}");
    assert!(err.contains("clorch worker: the run needs about") && err.contains("gradients 6.7 GiB"), "{err}");
    assert!(err.contains(&format!("the memory limit is 1.0 GiB ({MAX_MEMORY_ENV}")), "{err}");
    assert!(!s.path("huge").exists(), "the worker created its run folder");
    let garbled =
        common::clorch_env(&["worker", "--spec", path.to_str().unwrap()], &[(MAX_MEMORY_ENV, "lots")]);
    assert_eq!(garbled.status.code(), Some(protocol::exit::BAD_SPEC), "{}", text(&garbled.stderr));
    assert!(text(&garbled.stderr).contains(MAX_MEMORY_ENV), "{}", text(&garbled.stderr));
}
