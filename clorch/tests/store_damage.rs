//! Damaged, missing and stale stores never give a silently wrong table: the read commands
//! notice and read the run folders, and `clorch store rebuild` swaps a new store in only when
//! it is complete.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{scratch, TempDir};

mod common;
use common::{clorch, text, CLORCH, SMALL};

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn recipe(s: &TempDir, name: &str, body: &str) -> (PathBuf, PathBuf) {
    let results = s.path().join(format!("results-{name}"));
    let recipe = s.path().join(format!("{name}.yaml"));
    std::fs::write(&recipe, format!("name: {name}\noutput: {}\n{body}", results.display())).unwrap();
    (recipe, results)
}

const SLOW: &str = "
stream: {kind: synthetic_permuted, tasks: 20, classes: 6, dim: 48, train_per_class: 60, test_per_class: 20}
network: {hidden: [96, 96]}
training: {batch_size: 4, epochs: 6}
checkpoint: {every_steps: 40}
methods:
  - {name: sgd, lr: 0.02}
seeds: 1
";

fn finished_experiment(s: &TempDir, name: &str) -> (PathBuf, String) {
    let (recipe, results) = recipe(s, name, SMALL);
    let out = clorch(&["run", arg(&recipe), "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = clorch(&["report", arg(&results)]);
    assert!(report.status.success(), "{}", text(&report.stderr));
    (results, text(&report.stdout))
}

#[test]
fn a_removed_store_is_read_from_the_run_folders_with_a_note() {
    let s = scratch("store-removed");
    let (results, table) = finished_experiment(&s, "removed");
    std::fs::remove_dir_all(results.join("store")).unwrap();
    let out = clorch(&["report", arg(&results)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), table);
    let err = text(&out.stderr);
    assert!(err.contains("there is no store; read from the run folders"), "{err}");
    assert!(!results.join("store").exists(), "a read command must not create an empty store");

    let status = clorch(&["status", arg(&results)]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("4 runs"), "{}", text(&status.stdout));

    // No store and no run folders: nothing to read, said so.
    std::fs::remove_dir_all(results.join("runs")).unwrap();
    let out = clorch(&["report", arg(&results)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(arg(&results)) && err.contains("no store and no run folders"), "{err}");
}

#[test]
fn a_rebuild_that_fails_on_a_damaged_events_file_keeps_the_old_store() {
    let s = scratch("store-damaged");
    let (results, table) = finished_experiment(&s, "damaged");
    let mut runs: Vec<PathBuf> =
        std::fs::read_dir(results.join("runs")).unwrap().flatten().map(|e| e.path()).collect();
    runs.sort();
    let events = runs[1].join("events.jsonl");
    let body = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<&str> = body.lines().collect();
    let middle = lines.len() / 2;
    lines[middle] = "{\"run\": garbled";
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();

    let out = clorch(&["store", "rebuild", arg(&results)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(arg(&events)), "{err}");
    assert!(err.contains("was left as it was"), "{err}");
    let leftovers: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("store"))
        .collect();
    assert_eq!(leftovers, ["store"]);

    let out = clorch(&["report", arg(&results)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), table);

    // Without a store, the failed rebuild creates none.
    std::fs::remove_dir_all(results.join("store")).unwrap();
    let out = clorch(&["store", "rebuild", arg(&results)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no store was created"), "{}", text(&out.stderr));
    assert!(!results.join("store").exists());
}

fn workers_under(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(entry.path().join("stat")).map_or(true, |s| s.contains(") Z "));
        if cmdline.contains(" worker ") && cmdline.contains(&needle) && !zombie {
            n += 1;
        }
    }
    n
}

/// The run, stream, method, grid, seed, status, attempts and task columns of the status rows.
fn status_rows(status: &str) -> Vec<String> {
    status.lines().skip(3).map(|l| l.split_whitespace().take(8).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn status_after_a_kill_shows_what_the_run_folders_say() {
    let s = scratch("store-stale");
    let (recipe, results) = recipe(&s, "stale", SLOW);
    let mut child = Command::new(CLORCH)
        .args(["run", arg(&recipe), "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let events = || {
        std::fs::read_dir(results.join("runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("events.jsonl")).ok())
            .unwrap_or_default()
    };
    while events().matches("\"checkpoint\"").count() < 2 {
        assert!(Instant::now() < deadline, "no checkpoints in time");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while workers_under(&results) > 0 {
        assert!(Instant::now() < deadline, "the worker outlived its orchestrator");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = clorch(&["status", arg(&results)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert!(status.contains("1 interrupted") && !status.contains("running"), "{status}");
    assert!(text(&out.stderr).contains("read from the run folders"), "{}", text(&out.stderr));
    assert!(!status_rows(&status)[0].ends_with(" 0/20"), "{status}");

    // The folders' truth: what a rebuilt store says.
    let rebuilt = clorch(&["store", "rebuild", arg(&results)]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    let after = clorch(&["status", arg(&results)]);
    assert!(!text(&after.stderr).contains("read from the run folders"), "{}", text(&after.stderr));
    assert_eq!(status_rows(&text(&after.stdout)), status_rows(&status));
}
