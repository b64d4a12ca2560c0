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
        ("max_attempts=100000", "max_attempts=100000`: expected at most 1000"),
        ("eval.every=100000000", "eval.every=100000000`: expected at most 10000000"),
        ("eval.max_examples=10000000000", "expected at most 1000000000"),
        ("eval.online_bin=10000000000", "expected at most 1000000000"),
        ("eval.tasks={subsample: {earlier: 100000000}}", "expected at most 10000000"),
        ("eval.plasticity.every=100000000", "expected at most 10000000"),
        ("eval.plasticity.probe=10000000000", "expected at most 1000000000"),
        ("eval.plasticity.dormant_tau=-0.5", "expected a finite number ≥ 0, found -0.5"),
        ("training.validation=10000000000", "expected at most 1000000000"),
        ("training.threads=5000", "training.threads=5000`: expected at most 1024"),
        ("training.threads=0", "training.threads=0`: expected a positive integer, found 0"),
        ("checkpoint.every_steps=18446744073709551615", "expected at most 9007199254740992"),
        ("checkpoint.every_tasks=100000000", "expected at most 10000000"),
        ("checkpoint.keep=5000", "checkpoint.keep=5000`: expected at most 1000"),
        ("slurm.cpus=100000", "expected at most 65536"),
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
    let field = recipe("field", "");
    std::fs::write(
        &field,
        BASE.replace("name: sgd", "name: niwf").replace("hidden: [8]", "hidden: [8]\n  heads: per_task"),
    )
    .unwrap();
    for (assignment, needle) in [
        ("methods.niwf.coordinate_dim=100000", "`coordinate_dim` is 100000; at most 65536"),
        ("methods.niwf.anchors=10000000", "`anchors` is 10000000; at most 1000000"),
        ("methods.niwf.drift_examples=10000000", "`drift_examples` is 10000000; at most 1000000"),
    ] {
        refused(&clorch(&["validate", field.to_str().unwrap(), assignment]), needle, assignment);
    }
}

#[test]
fn zero_workers_and_endless_grace_are_refused_by_the_flags() {
    let plain = recipe("flags", "");
    let plain = plain.to_str().unwrap();
    refused(&clorch(&["run", plain, "-j", "0"]), "expected a positive integer, found 0", "-j 0");
    refused(&clorch(&["run", plain, "-j", "100000000"]), "expected at most 65536, found 100000000", "-j");
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

/// Every scalar in `tree`, by path (keys and list indices), in document order.
fn leaves(
    tree: &serde_json::Value,
    path: &mut Vec<serde_json::Value>,
    out: &mut Vec<Vec<serde_json::Value>>,
) {
    match tree {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                path.push(serde_json::Value::String(k.clone()));
                leaves(v, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                path.push(serde_json::Value::from(i));
                leaves(v, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn node_mut<'a>(tree: &'a mut serde_json::Value, path: &[serde_json::Value]) -> &'a mut serde_json::Value {
    path.iter().fold(tree, |node, step| match step {
        serde_json::Value::String(k) => &mut node[k.as_str()],
        index => &mut node[index.as_u64().unwrap() as usize],
    })
}

/// Issue 15: every value of every shipped recipe, replaced by a huge number (past f64's
/// integers and past u64), a negative one, zero and a word, is refused with exit 2 or
/// accepted with exit 0 by `clorch validate` — never a panic (101) or any other status.
#[test]
fn every_recipe_value_survives_huge_negative_zero_and_non_numbers() {
    const HOSTILE: [&str; 5] = ["1e30", "18446744073709551616", "-1", "0", "\"lots\""];
    const MARK: &str = "\u{1}hostile\u{1}";
    let recipes_dir = test_support::repo_root().join("recipes").canonicalize().unwrap();
    let scratch = common::Scratch::new("hostile-values");
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&recipes_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "recipes: {names:?}");
    for file in &names {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let mut tree: serde_json::Value = serde_json::to_value(yaml).unwrap();
        // Data folders are relative to the recipe's folder; the copies live elsewhere.
        let mut paths = Vec::new();
        leaves(&tree, &mut Vec::new(), &mut paths);
        for path in &paths {
            if path.last() == Some(&serde_json::Value::String("data_dir".into())) {
                let node = node_mut(&mut tree, path);
                *node = recipes_dir.join(node.as_str().unwrap()).display().to_string().into();
            }
        }
        for path in &paths {
            let mut copy = tree.clone();
            *node_mut(&mut copy, path) = MARK.into();
            let text = serde_json::to_string_pretty(&copy).unwrap();
            let shown: Vec<String> =
                path.iter().map(|s| s.to_string().trim_matches('"').to_string()).collect();
            for value in HOSTILE {
                let case =
                    format!("{}: {} = {value}", file.file_name().unwrap().to_string_lossy(), shown.join("."));
                cases.push((case, text.replace(&format!("\"{MARK}\""), value)));
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slowest = std::sync::Mutex::new((std::time::Duration::ZERO, String::new()));
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (cases, next, slowest, failures, scratch) = (&cases, &next, &slowest, &failures, &scratch);
            scope.spawn(move || {
                let path = scratch.path(&format!("recipe-{worker}.yaml"));
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((case, text)) = cases.get(i) else { break };
                    std::fs::write(&path, text).unwrap();
                    let started = std::time::Instant::now();
                    let out = clorch(&["validate", path.to_str().unwrap(), "--max-memory", "64GiB"]);
                    let took = started.elapsed();
                    let mut slow = slowest.lock().unwrap();
                    if took > slow.0 {
                        *slow = (took, case.clone());
                    }
                    drop(slow);
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    if !matches!(out.status.code(), Some(0 | 2)) || stderr.contains("panicked") {
                        failures.lock().unwrap().push(format!("{case}: {:?}: {stderr}", out.status.code()));
                    }
                }
            });
        }
    });
    let (took, case) = slowest.into_inner().unwrap();
    println!("{} cases; the slowest took {took:?}: {case}", cases.len());
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
