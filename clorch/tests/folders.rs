//! Commands never touch files clorch did not create, and oversized or deeply nested YAML is
//! refused cheaply.

use std::path::{Path, PathBuf};

mod common;
use common::{clorch, text, Scratch};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SMALL: &str = "name: folders
stream: {kind: synthetic_permuted, tasks: 2, classes: 3, dim: 8, train_per_class: 10, test_per_class: 5}
network: {hidden: [8]}
training: {batch_size: 8, epochs: 1}
methods:
  - {name: sgd, lr: 0.05}
seeds: 1
";

fn recipe(scratch: &Scratch) -> PathBuf {
    let path = scratch.path("exp.yaml");
    std::fs::write(&path, SMALL).unwrap();
    path
}

fn assert_nothing_created(dir: &Path) {
    for name in ["clorch.lock", "store", "runs", "experiment.json"] {
        assert!(!dir.join(name).exists(), "{name} was created in {}", dir.display());
    }
}

#[test]
fn run_into_a_folder_holding_the_users_recipe_is_refused_and_leaves_it_untouched() {
    let sc = Scratch::new("user-recipe");
    let r = recipe(&sc);
    let out_dir = sc.path("mine");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mine = b"# my own notes, not clorch's\nname: mine\n".to_vec();
    std::fs::write(out_dir.join("recipe.yaml"), &mine).unwrap();
    let out = clorch(&["run", s(&r), "-o", s(&out_dir), "--no-progress"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(s(&out_dir)) && err.contains("recipe.yaml"), "{err}");
    assert_eq!(std::fs::read(out_dir.join("recipe.yaml")).unwrap(), mine);
    assert_nothing_created(&out_dir);
}

#[test]
fn a_foreign_experiment_json_is_refused_before_lock_or_store_exist() {
    let sc = Scratch::new("foreign");
    let r = recipe(&sc);
    let out_dir = sc.path("other");
    std::fs::create_dir_all(&out_dir).unwrap();
    let foreign = b"{\"experiment\": \"someone else's\"}\n".to_vec();
    std::fs::write(out_dir.join("experiment.json"), &foreign).unwrap();
    let out = clorch(&["run", s(&r), "-o", s(&out_dir), "--no-progress"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("experiment.json"), "{err}");
    assert_eq!(std::fs::read(out_dir.join("experiment.json")).unwrap(), foreign);
    assert!(!out_dir.join("clorch.lock").exists() && !out_dir.join("store").exists());
    assert!(!out_dir.join("recipe.yaml").exists());

    // The reading and maintenance commands refuse it too, creating nothing.
    for args in [vec!["status"], vec!["report"], vec!["store", "rebuild"], vec!["cancel"]] {
        let mut args = args.clone();
        args.push(s(&out_dir));
        let out = clorch(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(!out_dir.join("clorch.lock").exists() && !out_dir.join("store").exists(), "{args:?}");
    }
}

#[test]
fn commands_on_a_missing_folder_say_so_and_create_nothing() {
    let sc = Scratch::new("typo");
    let typo = sc.path("resutls");
    for args in [vec!["store", "rebuild"], vec!["status"], vec!["report"], vec!["cancel"]] {
        let mut args = args.clone();
        args.push(s(&typo));
        let out = clorch(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("resutls"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

#[test]
fn an_existing_experiment_folder_resumes_as_before() {
    let sc = Scratch::new("resume");
    let r = recipe(&sc);
    let out_dir = sc.path("results");
    let first = clorch(&["run", s(&r), "-o", s(&out_dir), "--no-progress"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = clorch(&["run", s(&r), "-o", s(&out_dir), "--no-progress"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains("1 finished runs skipped"), "{}", text(&second.stderr));
    let rebuilt = clorch(&["store", "rebuild", s(&out_dir)]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));

    // An empty folder is a fine place for a new experiment.
    let empty = sc.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = clorch(&["run", s(&r), "-o", s(&empty), "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn an_alias_bomb_and_deep_nesting_are_refused_with_the_limit_named() {
    let sc = Scratch::new("yaml");
    let big = "x".repeat(1_000_000);
    let refs = vec!["*a"; 5000].join(", ");
    let bomb = sc.path("bomb.yaml");
    std::fs::write(&bomb, format!("name: a\nbig: &a \"{big}\"\nlist: [{refs}]\n")).unwrap();
    let deep = sc.path("deep.yaml");
    let n = 100_000;
    std::fs::write(&deep, format!("name: a\nx: {}{}\n", "[".repeat(n), "]".repeat(n))).unwrap();
    for (file, needle) in [(&bomb, "expanded-size limit"), (&deep, "depth limit")] {
        let out = clorch(&["validate", s(file)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(&format!("{name}:")), "no file:line:column in {err}");
    }
}

#[test]
fn a_garbled_data_file_is_refused_at_validate_before_any_run() {
    let sc = Scratch::new("garbled-gz");
    let Some(mnist) = test_support::mnist_dir() else { return };
    let data = sc.path("mnist");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(&mnist).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    // Garble the middle of the test images' compressed payload; the header stays readable.
    let images = data.join("t10k-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&images).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&images, bytes).unwrap();
    let out_dir = sc.path("results");
    let path = sc.write(
        "pm.yaml",
        &format!(
            "name: pm\noutput: {}\nstream: {{kind: permuted_mnist, data_dir: {}, tasks: 2}}\n\
             network: {{hidden: [8]}}\nmethods:\n  - {{name: sgd, lr: 0.05}}\nseeds: 1\n",
            out_dir.display(),
            data.display()
        ),
    );
    for command in ["validate", "run"] {
        let out = clorch(&[command, s(&path)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{command}: {err}");
        assert!(!err.contains("panicked"), "{command}: {err}");
    }
    assert!(!out_dir.exists(), "a refused data file created the results folder");
}

/// Issue 15: data that changed since the recipe pinned its fingerprint is refused like any
/// other recipe error, at the line and column of the stream's `data_dir`.
#[test]
fn a_fingerprint_mismatch_names_the_data_dir_line_and_column() {
    let sc = Scratch::new("fingerprint-mismatch");
    let Some(mnist) = test_support::mnist_dir() else { return };
    let out_dir = sc.path("results");
    let path = sc.write(
        "pm.yaml",
        &format!(
            "name: pm\noutput: {out}\nstreams:\n  - name: a\n    kind: permuted_mnist\n    data_dir: {data}\n    \
             tasks: 2\n  - name: b\n    kind: permuted_mnist\n    data_dir: {data}\n    tasks: 3\n    \
             fingerprint: \"0123456789abcdef\"\nnetwork: {{hidden: [8]}}\nmethods:\n  - {{name: sgd, lr: 0.05}}\n",
            out = out_dir.display(),
            data = mnist.display()
        ),
    );
    for command in ["validate", "run"] {
        let out = clorch(&[command, s(&path)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(err.contains("pm.yaml:10:15: streams[1].data_dir: the files in"), "{command}: {err}");
        assert!(err.contains("but the recipe pins 0123456789abcdef"), "{command}: {err}");
    }
    assert!(!out_dir.exists(), "a refused recipe created the results folder");
}

/// Issue 15: data that changes while an experiment runs is refused before the next attempt
/// starts, with the recipe's `data_dir` line and column, not only the worker's folder name.
#[test]
fn data_changed_during_a_run_fails_the_next_attempt_at_the_data_dir_position() {
    use std::os::unix::fs::PermissionsExt;
    let sc = Scratch::new("data-changed");
    let Some(mnist) = test_support::mnist_dir() else { return };
    let data = sc.path("mnist");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(&mnist).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    // The first run's worker changes the data (as a re-download would) and fails.
    let worker = sc.write(
        "change.sh",
        &format!("#!/usr/bin/env bash\nprintf x >> {}/t10k-labels-idx1-ubyte.gz\nexit 9\n", data.display()),
    );
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out_dir = sc.path("results");
    let path = sc.write(
        "pm.yaml",
        &format!(
            "name: pm\noutput: {}\nstream:\n  kind: permuted_mnist\n  data_dir: {}\n  tasks: 2\n\
             network: {{hidden: [8]}}\nmethods:\n  - {{name: sgd, lr: 0.05}}\n  - {{name: l2, lr: 0.05}}\n\
             max_attempts: 1\n",
            out_dir.display(),
            data.display()
        ),
    );
    let out = common::clorch_env(
        &["run", s(&path), "-j", "1", "--no-progress"],
        &[("CLORCH_WORKER", worker.to_str().unwrap())],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let logs: Vec<String> = std::fs::read_dir(out_dir.join("runs"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path().join(protocol::files::WORKER_LOG)).unwrap_or_default()
        })
        .collect();
    assert_eq!(
        logs.iter().filter(|l| l.contains("=== attempt 1 ===")).count(),
        1,
        "the second run started: {logs:?}"
    );
    let status = text(&clorch(&["status", s(&out_dir)]).stdout);
    assert!(status.contains("2 failed"), "{status}");
    assert!(err.contains("pm.yaml:5:13: stream.data_dir: the data files in"), "{err}");
    assert!(err.contains("changed since the experiment was planned"), "{err}");
}
