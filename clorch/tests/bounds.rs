//! Upper bounds on recipe durations, sizes and counts, `-j`, `--grace` and SLURM names:
//! whatever is written, `clorch validate` / `clorch run` refuse it with exit 2 and the key
//! named — never a panic or a run that cannot end.

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::clorch;

const BASE: &str = "name: bounds\nstream:\n  kind: synthetic_permuted\n  tasks: 2\nnetwork:\n  hidden: [8]\n\
                    methods:\n  - name: sgd\n    lr: 0.1\n";

fn recipe(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clorch-bounds-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("recipe.yaml");
    std::fs::write(&path, format!("{BASE}{body}")).unwrap();
    path
}

/// Exit 2, `needle` in stderr, no panic.
fn refused(output: &Output, needle: &str, case: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
    assert!(stderr.contains(needle), "{case}: `{needle}` not in {stderr}");
    assert!(!stderr.contains("panicked"), "{case}: {stderr}");
}

const BAD_DURATIONS: [&str; 7] =
    ["200000000000000d", "106751991167301d", "18446744073709551615", "366d", "-5", "0", "soon"];

#[test]
fn every_duration_key_refuses_huge_negative_zero_and_non_numbers() {
    for key in ["heartbeat", "timeout"] {
        for value in BAD_DURATIONS {
            let case = format!("{key}: {value}");
            let path = recipe(&format!("{key}-{}", value.len()), &format!("{key}: {value}\n"));
            refused(&clorch(&["validate", path.to_str().unwrap()]), "recipe.yaml:10:", &case);
            refused(&clorch(&["validate", path.to_str().unwrap()]), key, &case);
            let plain = recipe("plain", "");
            let assignment = format!("{key}={value}");
            refused(&clorch(&["validate", plain.to_str().unwrap(), &assignment]), &assignment, &case);
        }
    }
    for value in ["99999999999999-00:00:00", "400-00:00:00", "00:00:00", "soon"] {
        let path = recipe("slurm-time", &format!("slurm:\n  time: \"{value}\"\n"));
        refused(&clorch(&["validate", path.to_str().unwrap()]), "recipe.yaml:11:9: slurm.time", value);
    }
    let path = recipe("signal", "slurm:\n  signal_seconds: 99999999999\n");
    refused(
        &clorch(&["validate", path.to_str().unwrap()]),
        "recipe.yaml:11:19: slurm.signal_seconds",
        "signal",
    );
}

#[test]
fn the_longest_duration_is_accepted() {
    let path = recipe("longest", "heartbeat: 365d\ntimeout: 31536000\n");
    let output = clorch(&["validate", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn sizes_and_counts_have_upper_bounds_naming_the_key() {
    let plain = recipe("sizes", "");
    let plain = plain.to_str().unwrap();
    for (assignment, needle) in [
        ("network.hidden=[1000000000]", "network.hidden[0]: expected at most 65536"),
        ("network.hidden=[60000,60000,60000]", "at most 2147483648 (2^31)"),
        ("stream.tasks=1000000000000", "`tasks` is 1000000000000; at most 10000000"),
        ("stream.dim=1000000000", "`dim` is 1000000000"),
        ("stream.train_per_class=1000000000000", "`train_per_class`"),
        ("stream.classes=1000", "`classes`"),
        ("training.epochs=1000000", "training.epochs=1000000`: expected at most 100000"),
        ("training.batch_size=100000000", "expected at most 1048576"),
        ("seeds=1000000", "seeds"),
        ("parallel=1000000", "expected at most 65536"),
    ] {
        refused(&clorch(&["validate", plain, assignment]), needle, assignment);
    }
    let wide = recipe("wide", "").to_str().unwrap().to_string();
    std::fs::write(&wide, BASE.replace("hidden: [8]", "hidden: [100000, 100000]")).unwrap();
    refused(
        &clorch(&["validate", &wide]),
        "recipe.yaml:6:12: network.hidden[0]: expected at most 65536",
        "wide",
    );
    let path = recipe("flip", "");
    std::fs::write(
        &path,
        BASE.replace("synthetic_permuted", "slowly_changing_regression")
            .replace("tasks: 2", "tasks: 2\n  flip_every: 100000000000"),
    )
    .unwrap();
    refused(&clorch(&["validate", path.to_str().unwrap()]), "`flip_every`", "flip_every");
}

#[test]
fn zero_workers_and_endless_grace_are_refused_by_the_flags() {
    let plain = recipe("flags", "");
    let plain = plain.to_str().unwrap();
    refused(&clorch(&["run", plain, "-j", "0"]), "expected a positive integer, found 0", "-j 0");
    refused(&clorch(&["run", plain, "--grace", "18446744073709551615"]), "--grace", "--grace");
    refused(&clorch(&["run", plain, "--grace", "31536001"]), "0..=31536000", "--grace");
}

#[test]
fn slurm_names_with_shell_metacharacters_or_newlines_are_refused() {
    for (value, what) in
        [("\"gpu;rm -rf /\"", "partition"), ("\"a\\nb\"", "partition"), ("\"$(id)\"", "account")]
    {
        let path = recipe(&format!("slurm-{what}"), &format!("slurm:\n  {what}: {value}\n"));
        refused(&clorch(&["validate", path.to_str().unwrap()]), "recipe.yaml:11:", value);
        refused(
            &clorch(&["validate", path.to_str().unwrap()]),
            &format!("slurm.{what}: expected a SLURM name"),
            value,
        );
    }
    let path = recipe("slurm-ok", "slurm:\n  partition: gpu-long\n  account: lab_1,lab.2\n");
    let output = clorch(&["validate", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}
