//! The `clorch` binary end to end: recipes → workers → store → tables, and everything that can
//! go wrong on the way (bad recipes, failing and hanging workers, signals, SIGKILL at random
//! moments, corrupted stores).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{clorch_env as clorch, text, Scratch, CLORCH, SMALL};
use test_support::images::{hashed_pixel, write_cifar100};

/// A small synthetic recipe writing to `output`.
fn recipe(scratch: &Scratch, name: &str, body: &str) -> PathBuf {
    scratch.recipe(name, body)
}

#[test]
fn a_recipe_runs_then_skips_its_finished_runs_and_reports_from_the_store() {
    let s = Scratch::new("roundtrip");
    let r = recipe(&s, "roundtrip", SMALL);
    let first = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let table = text(&first.stdout);
    assert!(table.contains("| sgd ") && table.contains("| l2 "), "{table}");
    assert!(table.contains("± "), "{table}");

    let second = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
    assert!(second.status.success());
    assert!(text(&second.stderr).contains("4 finished runs skipped"), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), table);

    let results = s.path("results-roundtrip");
    let report = clorch(&["report", results.to_str().unwrap()], &[]);
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert_eq!(text(&report.stdout), table);

    // Rebuilding the store from the run folders gives the same report.
    let rebuilt = clorch(&["store", "rebuild", results.to_str().unwrap()], &[]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    assert!(text(&rebuilt.stdout).contains("rebuilt 4 runs"), "{}", text(&rebuilt.stdout));
    assert_eq!(text(&clorch(&["report", results.to_str().unwrap()], &[]).stdout), table);

    let status = text(&clorch(&["status", results.to_str().unwrap()], &[]).stdout);
    assert!(status.contains("4 finished"), "{status}");
}

#[test]
fn bad_recipes_exit_2_with_file_line_and_column_and_create_nothing() {
    let s = Scratch::new("bad");
    let cases = [
        ("typo", "stream: {kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [4]}\nmethods: [{name: sgd}]\nseedz: 2\n", "seedz"),
        ("type", "stream: {kind: synthetic_permuted, tasks: two}\nnetwork: {hidden: [4]}\nmethods: [{name: sgd}]\n", "stream.tasks"),
        ("grid", "stream: {kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [4]}\ntraining: {batch_size: [8, 16]}\nmethods: [{name: sgd}]\n", "grids"),
        ("method", "stream: {kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [4]}\nmethods: [{name: sgdd}]\n", "sgdd"),
        ("param", "stream: {kind: synthetic_permuted, tasks: 2}\nnetwork: {hidden: [4]}\nmethods: [{name: l2, weight_decy: 0.1}]\n", "weight_decy"),
        ("data", "stream: {kind: permuted_mnist, tasks: 2, data_dir: nowhere/mnist}\nnetwork: {hidden: [4]}\nmethods: [{name: sgd}]\n", "nowhere"),
    ];
    for (name, body, needle) in cases {
        let r = recipe(&s, name, body);
        let out = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        assert!(err.contains(&format!("{name}.yaml:")), "{name}: no file:line:column in {err}");
        assert!(!s.path(&format!("results-{name}")).exists(), "{name}: results were created");
    }
}

#[test]
fn a_failing_run_does_not_stop_the_others() {
    let s = Scratch::new("failing");
    let body =
        SMALL.replace("{name: l2, lr: 0.05, weight_decay: 0.001}", "{name: explode, kind: sgd, lr: 1.0e+30}");
    let r = recipe(&s, "failing", &body);
    let out = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let status = text(&clorch(&["status", s.path("results-failing").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("2 finished, 2 failed"), "{status}");
    assert!(status.contains("diverged"), "{status}");
    // The diverged runs failed for good: one attempt each, no retries.
    for line in status.lines().filter(|l| l.contains("explode")) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[5..7], &["failed", "1"], "{status}");
    }
}

/// Writes an executable fake worker script.
fn fake_worker(s: &Scratch, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = s.write(name, &format!("#!/usr/bin/env bash\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn crashing_workers_are_retried_then_the_run_fails_with_the_reason() {
    let s = Scratch::new("crash");
    let worker = fake_worker(&s, "crash.sh", "echo 'boom: out of memory' >&2\nexit 9");
    let r = recipe(&s, "crash", &format!("{SMALL}max_attempts: 2\n"));
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress", "-j", "2"],
        &[("CLORCH_WORKER", worker.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("retrying") && err.contains("after 2 attempts"), "{err}");
    let status = text(&clorch(&["status", s.path("results-crash").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("4 failed") && status.contains("exit code 9"), "{status}");
    let log = std::fs::read_dir(s.path("results-crash/runs")).unwrap().next().unwrap().unwrap().path();
    let log = std::fs::read_to_string(log.join(protocol::files::WORKER_LOG)).unwrap();
    assert!(log.contains("=== attempt 2 ===") && log.contains("boom: out of memory"), "{log}");
}

#[test]
fn hung_and_slow_workers_are_stopped_by_the_heartbeat_and_the_time_limit() {
    let s = Scratch::new("limits");
    let silent = fake_worker(&s, "silent.sh", "sleep 60");
    let r = recipe(
        &s,
        "silent",
        &format!("{}max_attempts: 1\nheartbeat: 1s\n", SMALL.replace("seeds: 2", "seeds: 1")),
    );
    let started = Instant::now();
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress", "--grace", "1"],
        &[("CLORCH_WORKER", silent.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(20));
    let status = text(&clorch(&["status", s.path("results-silent").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("no event for 1 s"), "{status}");

    // A worker that keeps talking but never ends hits the run's time limit.
    let chatty =
        fake_worker(&s, "chatty.sh", &format!("while true; do echo '{}' >&2; sleep 0.2; done", heartbeat()));
    let r = recipe(
        &s,
        "slow",
        &format!("{}max_attempts: 1\ntimeout: 2s\n", SMALL.replace("seeds: 2", "seeds: 1")),
    );
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress", "--grace", "1"],
        &[("CLORCH_WORKER", chatty.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let status = text(&clorch(&["status", s.path("results-slow").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("timed out after 2 s"), "{status}");
}

#[test]
fn a_worker_printing_garbage_fails_its_run_with_a_protocol_error() {
    let s = Scratch::new("garbage");
    let worker = fake_worker(&s, "garbage.sh", "echo 'this is not json'\nsleep 5");
    let r = recipe(&s, "garbage", &SMALL.replace("seeds: 2", "seeds: 1"));
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress"],
        &[("CLORCH_WORKER", worker.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let status = text(&clorch(&["status", s.path("results-garbage").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("not a sealed event") && status.contains("this is not json"), "{status}");
}

/// Process ids of live `clorch worker` processes whose spec lies under `dir`. From `/proc`: the
/// only place to read other processes' command lines.
fn workers_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).map_or(true, |s| s.contains(") Z "));
        if cmdline.contains(" worker ") && cmdline.contains(&needle) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

const SLOW: &str = "
stream: {kind: synthetic_permuted, tasks: 4, classes: 6, dim: 48, train_per_class: 60, test_per_class: 20}
network: {hidden: [96, 96]}
training: {batch_size: 4, epochs: 6}
checkpoint: {every_steps: 40}
methods:
  - {name: sgd, lr: 0.02}
  - {name: shrink_perturb, lr: 0.02, noise_std: 0.001}
seeds: 2
";

#[test]
fn never_more_than_parallel_workers_and_status_works_while_running() {
    let s = Scratch::new("parallel");
    let r = recipe(&s, "parallel", SLOW);
    let results = s.path("results-parallel");
    let mut child = Command::new(CLORCH)
        .args(["run", r.to_str().unwrap(), "--no-progress", "-j", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut most = 0;
    let mut live_status = None;
    while child.try_wait().unwrap().is_none() {
        most = most.max(workers_under(&results).len());
        if live_status.is_none() {
            let out = clorch(&["status", results.to_str().unwrap()], &[]);
            let t = text(&out.stdout);
            if t.contains("running (orchestrator pid") && t.contains(" running ") {
                live_status = Some(t);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    assert!((1..=2).contains(&most), "saw {most} workers at once");
    let status = live_status.expect("status never showed the live run");
    assert!(status.contains("4 runs"), "{status}");
    // The report works while a run holds the store (it reads the run folders), and equals the
    // final one.
    let report = clorch(&["report", results.to_str().unwrap()], &[]);
    assert!(report.status.success());
}

#[test]
fn a_second_run_on_the_same_folder_is_refused_while_the_first_is_alive() {
    let s = Scratch::new("lock");
    let r = recipe(&s, "lock", SLOW);
    let mut first = Command::new(CLORCH)
        .args(["run", r.to_str().unwrap(), "--no-progress", "-j", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let results = s.path("results-lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !results.join("status.json").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second.stderr));
    let err = text(&second.stderr);
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    // The stale lock of the killed run is taken over.
    let third = clorch(&["run", r.to_str().unwrap(), "--no-progress"], &[]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert!(text(&third.stderr).contains("taking over"), "{}", text(&third.stderr));
}

/// Every run's `events.jsonl`, by run id.
fn event_logs(results: &Path) -> Vec<(String, String)> {
    let mut logs: Vec<(String, String)> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            (id, std::fs::read_to_string(e.path().join(protocol::files::EVENTS)).unwrap())
        })
        .collect();
    logs.sort();
    logs
}

fn spawn_run(recipe: &Path) -> Child {
    Command::new(CLORCH)
        .args(["run", recipe.to_str().unwrap(), "--no-progress", "-j", "2", "--grace", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `recipe` to completion, killing the orchestrator (or a worker) with SIGKILL after each
/// of `kills` (seconds), restarting it each time. Returns the final stdout and how many kills
/// landed while the run was still going.
fn run_with_kills(recipe: &Path, results: &Path, kills: &[f64], kill_worker: bool) -> (String, usize) {
    let mut landed = 0;
    for &after in kills {
        let mut child = spawn_run(recipe);
        let deadline = Instant::now() + Duration::from_secs_f64(after);
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill point
        }
        landed += 1;
        if kill_worker {
            if let Some(pid) = workers_under(results).first() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                return (text(&out.stdout), landed);
            }
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    let mut child = spawn_run(recipe);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    (stdout, landed)
}

/// Issue 18: a conv net with batch norm and a residual block, trained on an augmented image
/// stream, killed with SIGKILL (orchestrator and worker) at seeded moments and resumed, ends
/// with every run's events byte-identical to an uninterrupted run's: the parameters, Adam's
/// moments, the running statistics and the augmentation draws all come back.
#[test]
fn a_conv_net_on_an_augmented_stream_resumes_bit_identically_after_sigkill() {
    let s = Scratch::new("conv-faults");
    let data = s.path("cifar100");
    write_cifar100(&data, 4, hashed_pixel);
    let body = format!(
        "
stream: {{kind: class_incremental_cifar100, data_dir: {}, tasks: 4, augment: true}}
network:
  layers:
    - conv2d: {{channels: 6, kernel: 3, padding: 1}}
    - batch_norm: {{}}
    - relu: {{}}
    - max_pool2d: {{kernel: 2}}
    - basic_block: {{channels: 8, stride: 2}}
    - global_avg_pool: {{}}
training: {{batch_size: 8, epochs: 3}}
checkpoint: {{every_steps: 20}}
methods:
  - {{name: adam, lr: 0.003}}
  - {{name: sgd, lr: 0.05, momentum: 0.9}}
seeds: 1
",
        data.display()
    );
    let reference = recipe(&s, "reference", &body);
    let started = Instant::now();
    let out = clorch(&["run", reference.to_str().unwrap(), "--no-progress", "-j", "2"], &[]);
    let duration = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference_table = text(&out.stdout);
    let reference_logs = event_logs(&s.path("results-reference"));
    let mut tried = 0;
    for (case, fractions) in [[0.3, 0.0], [0.5, 0.0], [0.25, 0.6]].iter().enumerate() {
        let kill_worker = case == 1;
        let kills: Vec<f64> = fractions.iter().filter(|&&f| f > 0.0).map(|f| duration * f).collect();
        let name = format!("kill{case}");
        let r = recipe(&s, &name, &body);
        let results = s.path(&format!("results-{name}"));
        let (table, landed) = run_with_kills(&r, &results, &kills, kill_worker);
        assert_eq!(
            event_logs(&results),
            reference_logs,
            "case {case}: kills at {kills:?} changed the events"
        );
        assert_eq!(table.replace(&name, "reference"), reference_table, "case {case}");
        tried += landed;
    }
    eprintln!(
        "{tried} kill points landed mid-run, all bit-identical (an uninterrupted run: {duration:.1} s)"
    );
    assert!(tried >= 2, "only {tried} kills landed mid-run: the recipe is too fast for this machine");
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_bit_identical_results() {
    let s = Scratch::new("faults");
    let reference = recipe(&s, "reference", SLOW);
    let started = Instant::now();
    let out = clorch(&["run", reference.to_str().unwrap(), "--no-progress", "-j", "2"], &[]);
    // Kill moments are fractions of an uninterrupted run's duration, so they land mid-run on
    // a fast machine and a slow one alike.
    let duration = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference_table = text(&out.stdout);
    let reference_logs = event_logs(&s.path("results-reference"));

    // Seeded kill moments; each schedule kills the orchestrator (or a worker) one or more times.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 1000.0
    };
    let mut tried = 0;
    for case in 0..9 {
        let kill_worker = case % 3 == 2;
        let kills: Vec<f64> = (0..1 + case % 3).map(|_| duration * (0.1 + 0.6 * next())).collect();
        let name = format!("faults{case}");
        let r = recipe(&s, &name, SLOW);
        let results = s.path(&format!("results-{name}"));
        let (table, landed) = run_with_kills(&r, &results, &kills, kill_worker);
        assert_eq!(
            event_logs(&results),
            reference_logs,
            "case {case}: kills at {kills:?} changed the events"
        );
        assert_eq!(table.replace(&name, "reference"), reference_table, "case {case}");
        tried += landed;
    }
    eprintln!("{tried} kill points landed mid-run, all bit-identical");
    assert!(tried >= 6, "only {tried} kills landed mid-run: the recipe is too fast for this machine");

    // SIGTERM (as Ctrl-C): the workers checkpoint and exit, the orchestrator says how to
    // resume; a second signal stops at once. Both resume bit-identically.
    for (case, signals) in [(0, 1), (1, 2)] {
        let name = format!("term{case}");
        let r = recipe(&s, &name, SLOW);
        let results = s.path(&format!("results-{name}"));
        let child = spawn_run(&r);
        let deadline = Instant::now() + Duration::from_secs(30);
        while workers_under(&results).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(400));
        for _ in 0..signals {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(err.contains("resumes them from their checkpoints"), "{err}");
        // The runs it stopped are `interrupted`; one it had not started yet stays `pending`
        // (the signal may land between two runs); none is left `running`.
        let status = text(&clorch(&["status", results.to_str().unwrap()], &[]).stdout);
        let summary = status.lines().nth(1).unwrap_or_default();
        assert!(
            !summary.contains("running") && (summary.contains("interrupted") || summary.contains("pending")),
            "{status}"
        );
        let (table, _) = run_with_kills(&r, &results, &[], false);
        assert_eq!(event_logs(&results), reference_logs, "SIGTERM ×{signals}");
        assert_eq!(table.replace(&name, "reference"), reference_table);
    }
}

#[test]
fn a_worker_with_a_bad_spec_exits_with_one_clear_line() {
    let s = Scratch::new("worker-spec");
    let spec = |method: &str, data: &Path| {
        format!(
            r#"{{"protocol":1,"id":"x","seed":0,
               "stream":{{"permuted_mnist":{{"data_dir":"{}","tasks":2}}}},
               "network":{{"hidden":[8]}},
               "method":{{"name":"m","kind":"{method}"}}}}"#,
            data.display()
        )
    };
    let broken = s.path("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(broken.join(name), [0u8, 0, 9, 9, 0, 0, 0, 0]).unwrap();
    }
    let cases = [
        ("unknown-method", spec("sgdd", &broken), "unknown method kind `sgdd`"),
        ("missing-data", spec("sgd", &s.path("nowhere")), "nowhere"),
        ("bad-magic", spec("sgd", &broken), "train-images-idx3-ubyte"),
        ("bad-json", "{\"protocol\": 1, \"id\": 3}".to_string(), "spec-bad-json.json:1:"),
    ];
    for (name, body, needle) in cases {
        let path = s.write(&format!("spec-{name}.json"), &body);
        let out = clorch(&["worker", "--spec", path.to_str().unwrap(), "--heartbeat", "0"], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: more than one line: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{name}: {err}");
    }
}

/// A heartbeat line, as a fake worker writes it.
fn heartbeat() -> protocol::heartbeat::Heartbeat {
    protocol::heartbeat::Heartbeat { task: 0, tasks: 3, step: 1 }
}

/// A fake worker for the fault tests: attempt 1 stops (resumably) after 45 steps, leaving
/// checkpoints at steps 40 and 45; attempt 2 runs `damage` (shell) in the run folder and
/// crashes; later attempts are the real worker, which must find the damage.
fn stop_damage_resume_worker(s: &Scratch, name: &str, damage: &str) -> PathBuf {
    let mark = s.path(&format!("mark-{name}"));
    fake_worker(
        s,
        &format!("{name}.sh"),
        &format!(
            "dir=$(dirname \"$3\")\n\
             if [ ! -e {mark}.1 ]; then touch {mark}.1; exec {CLORCH} \"$@\" --stop-after-steps 45; fi\n\
             if [ ! -e {mark}.2 ]; then touch {mark}.2; cd \"$dir\"\n{damage}\nexit 9; fi\n\
             exec {CLORCH} \"$@\"",
            mark = mark.display()
        ),
    )
}

/// One small run with frequent checkpoints, for the logging tests.
const ONE: &str = "
stream: {kind: synthetic_permuted, tasks: 2, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}
network: {hidden: [16]}
training: {batch_size: 4, epochs: 2}
checkpoint: {every_steps: 10, keep: 2}
methods:
  - {name: sgd, lr: 0.05}
seeds: 1
max_attempts: 3
";

#[test]
fn a_corrupt_newest_checkpoint_falls_back_and_shows_in_the_log_and_the_status() {
    let s = Scratch::new("fallback");
    let reference = recipe(&s, "reference", ONE);
    let out = clorch(&["run", reference.to_str().unwrap(), "--no-progress"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference_logs = event_logs(&s.path("results-reference"));

    // Attempt 1 stops (resumably) after 45 steps, leaving checkpoints at steps 40 and 45; the
    // next worker corrupts the newest and crashes, so attempt 2 finds it corrupt and falls back.
    let worker = stop_damage_resume_worker(
        &s,
        "interrupting",
        "newest=$(ls checkpoint-*.ckpt | sort | tail -n 1)\n\
         printf 'XXXXXXXX' | dd of=\"$newest\" bs=1 seek=200 conv=notrunc 2>/dev/null",
    );
    let r = recipe(&s, "fallback", ONE);
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress"],
        &[("CLORCH_WORKER", worker.to_str().unwrap())],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The orchestrator warns too, by default.
    assert!(err.contains("WARN") && err.contains("failed verification"), "{err}");
    let results = s.path("results-fallback");
    assert_eq!(event_logs(&results), reference_logs, "the fallback changed the events");

    let run = std::fs::read_dir(results.join("runs")).unwrap().next().unwrap().unwrap().path();
    let log = std::fs::read_to_string(run.join("worker.log")).unwrap();
    let warn = log.lines().find(|l| l.contains(" WARN checkpoint: ")).unwrap_or_else(|| panic!("{log}"));
    assert!(
        warn.contains("checkpoint-")
            && warn.contains("checksum mismatch")
            && warn.contains("resuming from the older"),
        "{warn}"
    );
    assert!(log.contains(" INFO checkpoint: resuming from checkpoint-"), "{log}");

    let status = text(&clorch(&["status", results.to_str().unwrap()], &[]).stdout);
    assert!(status.contains("(fell back: checkpoint-") && status.contains("checksum mismatch)"), "{status}");
    let record = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(record.contains("checkpoint_fallback"), "{record}");
}

/// Damage to `events.jsonl` between attempts, as shell commands run in the run folder, and
/// what `clorch status` must then say: which checkpoints were refused and whether the run
/// started over.
const LOG_DAMAGE: &[(&str, &str, &str)] = &[
    // A changed digit in line 2 (an accuracy-matrix row): before both checkpoints.
    (
        "changed-digit",
        r#"sed -i '2s/"examples":40/"examples":41/' events.jsonl"#,
        "events.jsonl checksum mismatch",
    ),
    // Garbled bytes in the last line (the older checkpoint's own `checkpoint` event): the
    // newest checkpoint covers it, the older one does not.
    (
        "garbled",
        r#"off=$(head -n $(( $(wc -l < events.jsonl) - 1 )) events.jsonl | wc -c)
           printf '\x00\xff\x13garbage' | dd of=events.jsonl bs=1 seek=$(( off + 12 )) conv=notrunc 2>/dev/null"#,
        "events.jsonl checksum mismatch",
    ),
    // Cut mid-line, two thirds in.
    (
        "truncated",
        r#"truncate -s $(( $(wc -c < events.jsonl) * 2 / 3 )) events.jsonl"#,
        "events.jsonl cut short",
    ),
    ("deleted", "rm events.jsonl", "events.jsonl missing"),
];

#[test]
fn a_damaged_event_log_is_repaired_on_resume_with_identical_results_and_reported() {
    let s = Scratch::new("log-damage");
    let reference = recipe(&s, "reference", ONE);
    let out = clorch(&["run", reference.to_str().unwrap(), "--no-progress"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference_logs = event_logs(&s.path("results-reference"));
    let reference_table =
        text(&clorch(&["report", s.path("results-reference").to_str().unwrap()], &[]).stdout);

    for (name, damage, summary) in LOG_DAMAGE {
        // Attempt 1 stops (resumably) after 45 steps, leaving checkpoints at steps 40 and 45;
        // the next worker damages the log and crashes, so attempt 3 finds the damage.
        let worker = stop_damage_resume_worker(&s, name, damage);
        let r = recipe(&s, name, ONE);
        let out = clorch(
            &["run", r.to_str().unwrap(), "--no-progress"],
            &[("CLORCH_WORKER", worker.to_str().unwrap())],
        );
        let err = text(&out.stderr);
        assert!(out.status.success(), "{name}: {err}");
        let results = s.path(&format!("results-{name}"));
        assert_eq!(event_logs(&results), reference_logs, "{name}: the repair changed the events");
        let table = text(&clorch(&["report", results.to_str().unwrap()], &[]).stdout);
        assert_eq!(table, reference_table, "{name}");

        let run = std::fs::read_dir(results.join("runs")).unwrap().next().unwrap().unwrap().path();
        let log = std::fs::read_to_string(run.join("worker.log")).unwrap();
        assert!(
            log.lines().any(|l| l.contains(" WARN checkpoint: ") && l.contains("events.jsonl")),
            "{name}: {log}"
        );
        let status = text(&clorch(&["status", results.to_str().unwrap()], &[]).stdout);
        assert!(status.contains("(fell back: checkpoint-") && status.contains(summary), "{name}: {status}");
        if *name == "garbled" {
            assert!(
                !status.contains("started over"),
                "{name}: the older checkpoint precedes the damage: {status}"
            );
        } else {
            assert!(status.contains("started over"), "{name}: {status}");
        }
    }
}

#[test]
fn quiet_verbose_and_rust_log_set_what_clorch_run_prints() {
    let s = Scratch::new("verbosity");
    let r = recipe(&s, "verbosity", ONE);
    let run = |flags: &[&str], env: &[(&str, &str)]| {
        let mut args = flags.to_vec();
        args.extend(["run", r.to_str().unwrap(), "--no-progress"]);
        let out = clorch(&args, env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (table, err) = run(&[], &[("RUST_LOG", "")]);
    assert!(err.contains("finished ") && !err.contains("INFO") && !err.contains("DEBUG"), "{err}");
    // Finished runs are skipped; -q leaves out that note (and every per-run line), not the table.
    let (quiet_table, quiet) = run(&["-q"], &[("RUST_LOG", "")]);
    assert_eq!(quiet_table, table);
    assert_eq!(quiet, "", "-q printed: {quiet}");
    let (_, plain) = run(&[], &[("RUST_LOG", "")]);
    assert!(plain.contains("1 finished runs skipped"), "{plain}");
    let (_, verbose) = run(&["-v"], &[("RUST_LOG", "")]);
    assert!(verbose.contains("INFO") && verbose.contains("1 runs in the plan"), "{verbose}");
    assert!(!verbose.contains("DEBUG"), "{verbose}");
    let (_, debug) = run(&[], &[("RUST_LOG", "debug")]);
    assert!(debug.contains("DEBUG") && debug.contains("store of"), "{debug}");
    // A fresh run at -vv says where each attempt starts.
    std::fs::remove_dir_all(s.path("results-verbosity")).unwrap();
    let (_, fresh) = run(&["-vv"], &[("RUST_LOG", "")]);
    assert!(fresh.contains("starting attempt 1") && fresh.contains("worker resumes at event 0"), "{fresh}");
}

#[test]
fn a_workers_log_lines_never_pass_for_its_failure_reason() {
    // A worker that logs after its last words: the reason is still its `clorch worker:` line.
    let s = Scratch::new("reason");
    let worker = fake_worker(
        &s,
        "talkative.sh",
        "echo 'clorch worker: the data went away' >&2\n\
         echo '2026-12-02T06:40:01.123456Z  WARN checkpoint: something late' >&2\n\
         exit 1",
    );
    let r = recipe(&s, "reason", ONE);
    let out = clorch(
        &["run", r.to_str().unwrap(), "--no-progress"],
        &[("CLORCH_WORKER", worker.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let status = text(&clorch(&["status", s.path("results-reason").to_str().unwrap()], &[]).stdout);
    assert!(status.contains("the data went away") && !status.contains("something late"), "{status}");
}
