//! External workers under `clorch run`, `clorch validate` and `clorch worker-check`, with a
//! plain-Python worker whose one broken rule is chosen per test (`workers/scripted_worker.py`),
//! and the numpy example of `examples/python-numpy/` with the Python client.
//!
//! Needs `python3` (the scripted worker uses the standard library only); the example needs a
//! Python with numpy and `clorch_worker` installed, named by `CLORCH_TEST_PYTHON`
//! (`.ci/python-client.sh` makes one). With `CI=true` a missing one fails the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{text, Scratch, CLORCH};

const SCRIPTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/workers/scripted_worker.py");

/// `python3` when there is one (reported through `test_support::missing` otherwise).
fn python3() -> bool {
    let found = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        test_support::missing("python3", "Debian: apt-get install python3");
    }
    found
}

/// Runs clorch in `dir` with a description cache of the scratch folder's own.
fn clorch_in(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(CLORCH);
    command.args(args).current_dir(s.0.path()).env("XDG_CACHE_HOME", s.path("cache"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// A method entry run by the scripted worker with `fault` (none: `""`).
fn scripted(name: &str, fault: &str) -> String {
    let fault = if fault.is_empty() { String::new() } else { format!("env, SCRIPTED_FAULT={fault}, ") };
    format!("  - {{name: {name}, kind: scripted, worker: {{command: [{fault}python3, {SCRIPTED}]}}}}\n")
}

const STREAM: &str = "
stream: {kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}
network: {hidden: [16]}
seeds: 1
";

#[test]
fn broken_workers_fail_their_own_runs_with_the_offending_line_and_the_others_finish() {
    if !python3() {
        return;
    }
    let s = Scratch::new("broken-workers");
    let mut body = format!("{STREAM}heartbeat: 3s\nmax_attempts: 2\nmethods:\n  - {{name: sgd, lr: 0.05}}\n");
    body.push_str(&scripted("fine", ""));
    for fault in ["garbage", "unsealed", "unknown_event", "silent_exit", "refuse", "hang", "no_finished"] {
        body.push_str(&scripted(fault, fault));
    }
    let r = s.recipe("broken", &body);
    let out = clorch_in(&s, &["run", r.to_str().unwrap(), "--no-progress"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    let results = s.path("results-broken");
    let status = clorch_in(&s, &["status", results.to_str().unwrap()], &[]);
    let (status, status_err) = (text(&status.stdout), text(&status.stderr));
    assert!(status.contains("2 finished, 7 failed"), "{status}{status_err}\nclorch run said: {err}");
    let row = |method: &str| {
        status.lines().find(|l| l.split_whitespace().nth(2) == Some(method)).unwrap_or_default().to_string()
    };
    for (method, reason) in [
        ("garbage", "a line that is not a sealed event: `epoch 1/10 loss=0.3`"),
        ("unsealed", "does not end with its checksum"),
        ("unknown_event", "unknown variant `gpu_temperature`"),
        ("silent_exit", "exited with code 0 before finishing"),
        ("refuse", "this worker refuses every spec"),
        ("hang", "no event for 3 s"),
        ("no_finished", "exited with code 0 before finishing"),
    ] {
        assert!(row(method).contains(reason), "{method}: {}", row(method));
    }
    // Protocol violations and refusals are not retried; crashes and hangs are.
    assert!(row("garbage").contains(" 1 ") && row("hang").contains(" 2 "), "{status}");
    // The store is intact: the finished runs report as always, the external one beside sgd.
    let series = s.path("series.csv");
    let report =
        clorch_in(&s, &["report", results.to_str().unwrap(), "--series", series.to_str().unwrap()], &[]);
    let report = text(&report.stdout);
    let fine = report.lines().find(|l| l.contains("| fine ")).unwrap_or_default();
    assert!(fine.contains("0.800") && report.contains("| sgd "), "ACC of the scripted rows: {report}");
    // A worker's own `scalar` events are in the series export.
    let series = std::fs::read_to_string(series).unwrap();
    assert!(series.lines().any(|l| l.contains(",fine,") && l.contains("scalar.fake/lr")), "{series}");
}

#[test]
fn recipes_are_checked_against_the_workers_description_with_positions() {
    if !python3() {
        return;
    }
    let s = Scratch::new("describe-errors");
    let cases: [(&str, &str, &str); 6] = [
        (
            "unknown",
            "kind: scripted, worker: {command: [python3, SCRIPTED]}, momentum: 0.9",
            "unknown key `momentum`",
        ),
        (
            "mistyped",
            "kind: scripted, worker: {command: [python3, SCRIPTED]}, lr: fast",
            "expected a number, found",
        ),
        ("kind", "kind: replay, worker: {command: [python3, SCRIPTED]}", "unknown method kind of `python3"),
        ("garbled", "kind: scripted, worker: {command: [echo, hello]}", "printed no worker description"),
        ("absent", "kind: scripted, worker: {command: [./no-such-worker]}", "cannot start ./no-such-worker"),
        (
            "shape",
            "kind: scripted, worker: {command: python3}",
            "expected a non-empty list of non-empty strings",
        ),
    ];
    for (name, entry, wanted) in cases {
        let body = format!("{STREAM}methods:\n  - {{name: m, {}}}\n", entry.replace("SCRIPTED", SCRIPTED));
        let r = s.recipe(name, &body);
        let out = clorch_in(&s, &["validate", r.to_str().unwrap()], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(wanted), "{name}: {err}");
        assert!(err.contains(&format!("{name}.yaml:8:")), "{name}: the error names the entry's line: {err}");
    }
    // The streams the worker reads: another is refused at the stream.
    let body = format!(
        "{STREAM}methods:\n  - {{name: m, kind: scripted, worker: {{command: [env, SCRIPTED_STREAMS=permuted_mnist, python3, {SCRIPTED}]}}}}\n"
    );
    let r = s.recipe("streams", &body);
    let out = clorch_in(&s, &["validate", r.to_str().unwrap()], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("reads only the streams `permuted_mnist`; not `synthetic_permuted`"), "{err}");
    assert!(err.contains("streams.yaml:4:"), "{err}");
    // A top-level worker is inherited, defaults are filled in, and the description is cached.
    let body = format!("{STREAM}worker: {{command: [python3, {SCRIPTED}]}}\nmethods:\n  - {{name: a, kind: scripted, lr: [0.1, 0.2]}}\n  - {{name: sgd, worker: builtin, lr: 0.05}}\n");
    let r = s.recipe("inherit", &body);
    let out = clorch_in(&s, &["validate", r.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("3 runs"), "{listing}");
    let cached = std::fs::read_dir(s.path("cache/clorch/workers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached, 2, "one cached description per command");
}

#[test]
fn worker_check_passes_a_worker_that_keeps_the_protocol_and_names_each_broken_rule() {
    if !python3() {
        return;
    }
    let s = Scratch::new("worker-check");
    let check = |fault: &str| {
        let out = clorch_in(&s, &["worker-check", "--", "python3", SCRIPTED], &[("SCRIPTED_FAULT", fault)]);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = check("");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the worker keeps the protocol") && !out.contains("FAIL"), "{out}");
    for (fault, wanted) in [
        ("garbage", "standard output line 2 is not a sealed event"),
        ("unsealed", "does not end with its checksum"),
        ("no_manifest", "no resume.json after the stop request"),
        ("nondeterministic", "events.jsonl after resuming differs from the uninterrupted run's: line 3"),
        ("any_version", "expected exit status 2 (BAD_SPEC), got 0"),
        ("no_finished", "the last event must be `finished`"),
    ] {
        let (code, out, err) = check(fault);
        assert_eq!(code, Some(1), "{fault}: {out}{err}");
        let failure = out.lines().find(|l| l.starts_with("FAIL")).unwrap_or_default();
        assert!(failure.contains(wanted), "{fault}: {out}");
    }
}

/// Each run's `events.jsonl`, by run id.
type EventLogs = Vec<(String, String)>;

/// The lines of a run's `events.jsonl`.
fn events_of(results: &Path) -> EventLogs {
    let mut runs: Vec<(String, String)> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path().join("events.jsonl")).unwrap(),
            )
        })
        .collect();
    runs.sort();
    runs
}

/// Kills (SIGKILL) the process whose command line names `spec`, once `events` has `lines`
/// lines: the external worker, mid-run.
fn kill_worker_when(events: &Path, lines: usize, spec: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let written = std::fs::read_to_string(events).map(|t| t.lines().count()).unwrap_or(0);
        if written >= lines {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(spec.to_str().unwrap()) && !cmdline.contains("clorch run") {
                    let pid = entry.file_name().to_string_lossy().into_owned();
                    if Command::new("kill").args(["-9", &pid]).status().is_ok_and(|s| s.success()) {
                        return true;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Runs `recipe` into `results` twice over — once killing its one run's worker with SIGKILL
/// after `kill_at` events — and returns both event logs and the killed run's `clorch status`.
fn killed_and_reference(
    s: &Scratch,
    recipe: &str,
    kill_at: usize,
    env: &[(&str, &str)],
) -> (EventLogs, EventLogs, String) {
    let reference = s.recipe("reference", recipe);
    let out = clorch_in(s, &["run", reference.to_str().unwrap(), "--no-progress"], env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let killed = s.recipe("killed", recipe);
    let results = s.path("results-killed");
    let mut command = Command::new(CLORCH);
    command
        .args(["run", killed.to_str().unwrap(), "--no-progress"])
        .current_dir(s.0.path())
        .env("XDG_CACHE_HOME", s.path("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    // The one run's folder appears once planned.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_dir: PathBuf = loop {
        let found =
            std::fs::read_dir(results.join("runs")).ok().and_then(|mut d| d.next()).and_then(|e| e.ok());
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(Instant::now() < deadline, "no run folder appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    let killed_it = kill_worker_when(&run_dir.join("events.jsonl"), kill_at, &run_dir.join("spec.json"));
    let out = child.wait_with_output().unwrap();
    assert!(killed_it, "the worker was never found to kill");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&clorch_in(s, &["status", results.to_str().unwrap()], &[]).stdout);
    (events_of(&s.path("results-reference")), events_of(&results), status)
}

#[test]
fn a_killed_external_worker_is_retried_from_its_checkpoint_with_identical_events() {
    if !python3() {
        return;
    }
    let s = Scratch::new("external-kill");
    let recipe = format!("{STREAM}methods:\n  - {{name: m, kind: scripted, pause: 0.1, worker: {{command: [python3, {SCRIPTED}]}}}}\n");
    let (reference, killed, status) = killed_and_reference(&s, &recipe, 7, &[]);
    assert_eq!(killed, reference, "the resumed run's events differ from an uninterrupted run's");
    assert!(status.contains("finished  2 "), "two attempts: {status}");
}

/// The Python with numpy and the client installed, or `None` after saying it is missing.
fn example_python() -> Option<PathBuf> {
    let python = std::env::var_os("CLORCH_TEST_PYTHON").map(PathBuf::from);
    let usable = python.as_ref().is_some_and(|p| {
        Command::new(p).args(["-c", "import numpy, clorch_worker"]).output().is_ok_and(|o| o.status.success())
    });
    if !usable {
        test_support::missing(
            "a Python with numpy and clorch_worker (CLORCH_TEST_PYTHON)",
            "`.ci/python-client.sh` makes one and prints its python; export CLORCH_TEST_PYTHON=<that>",
        );
        return None;
    }
    python
}

/// `PATH` with the example Python's folder first, so the recipes' `python3` is that one.
fn path_with(python: &Path) -> String {
    format!("{}:{}", python.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn the_numpy_example_runs_beside_a_builtin_method_and_resumes_identically_after_kill_9() {
    let Some(python) = example_python() else { return };
    let s = Scratch::new("numpy-example");
    let example = test_support::repo_root().join("examples/python-numpy/recipe.yaml");
    let results = s.path("results-example");
    let path = path_with(&python);
    let out = clorch_in(
        &s,
        &["run", example.to_str().unwrap(), "-o", results.to_str().unwrap(), "--no-progress"],
        &[("PATH", &path)],
    );
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for method in ["| sgd ", "| np_sgd ", "| np_er "] {
        assert!(table.contains(method), "{method} missing: {table}");
    }
    // One numpy run, killed mid-stream and retried: the same events as uninterrupted.
    let example_text = std::fs::read_to_string(&example).unwrap();
    let data = test_support::repo_root().join("data/mnist-10k");
    let recipe = format!(
        "stream: {{kind: permuted_mnist, data_dir: {}, tasks: 3, train_examples: 2000, test_examples: 500}}\n\
         network: {{hidden: [64]}}\ntraining: {{batch_size: 16}}\ncheckpoint: {{every_steps: 40}}\nseeds: 1\n\
         methods:\n  - {{name: np_er, kind: er, lr: 0.01, buffer: 100, worker: {{command: [python3, {}]}}}}\n",
        data.display(),
        test_support::repo_root().join("examples/python-numpy/worker.py").display()
    );
    assert!(example_text.contains("worker:"), "the example recipe names its worker");
    let (reference, killed, status) = killed_and_reference(&s, &recipe, 12, &[("PATH", &path)]);
    assert_eq!(killed, reference, "the resumed numpy run's events differ from an uninterrupted run's");
    assert!(status.contains("finished  2 "), "two attempts: {status}");
    // And the protocol checker agrees.
    let worker = test_support::repo_root().join("examples/python-numpy/worker.py");
    let out = clorch_in(
        &s,
        &[
            "worker-check",
            "--method",
            "er",
            "--data-dir",
            data.to_str().unwrap(),
            "--",
            "python3",
            worker.to_str().unwrap(),
        ],
        &[("PATH", &path)],
    );
    let report = common::text(&out.stdout);
    assert!(out.status.success() && report.contains("the worker keeps the protocol"), "{report}");
}

#[test]
fn the_pytorch_example_runs_when_torch_is_installed() {
    let Some(python) = example_python() else { return };
    let has_torch =
        Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        // The rule for this one example: torch (a multi-GB wheel) is not installed in
        // CI; say so in CI's output rather than fail.
        println!("not run: the PyTorch example needs torch, which {} does not have", python.display());
        return;
    }
    let s = Scratch::new("torch-example");
    let example = test_support::repo_root().join("examples/pytorch/recipe.yaml");
    let results = s.path("results-torch");
    let out = clorch_in(
        &s,
        &["run", example.to_str().unwrap(), "-o", results.to_str().unwrap(), "--no-progress"],
        &[("PATH", &path_with(&python))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}
