//! Ctrl-C always ends `clorch run` (issue 15): with workers that ignore the stop signals, a
//! first SIGINT ends the process once the grace is over, and a second one at once even under
//! the longest grace. Either way the runs are left `interrupted`, not `running`, and no worker
//! process outlives the orchestrator.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{clorch, text, Scratch, CLORCH, SMALL};

/// A worker that ignores SIGTERM and SIGINT (and so does the helper it starts, which inherits
/// the ignored dispositions), recording both process ids in `dir`.
fn stubborn_worker(s: &Scratch, dir: &Path, helper: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let body = format!(
        "#!/usr/bin/env bash\ntrap '' TERM INT\necho $$ > {dir}/worker-$CLORCH_RUN_ID\n\
         {helper} sleep 100000 &\necho $! > {dir}/helper-$CLORCH_RUN_ID\nwait\n",
        dir = dir.display()
    );
    let path = s.write("stubborn.sh", &body);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The process ids the workers recorded, once `count` workers and their helpers have started.
fn started(dir: &Path, count: usize, child: &mut Child) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids: Vec<i32> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
            .filter_map(|t| t.trim().parse().ok())
            .collect();
        if pids.len() == 2 * count {
            return pids;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("clorch run ended before its workers started: {status}");
        }
        assert!(Instant::now() < deadline, "the workers did not start: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` still runs (a zombie awaiting its reaper does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"))
}

fn interrupt(child: &Child) {
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for `clorch run` to end; one that is still there long after it should have ended is
/// killed and the test fails (a hang, not a slow machine: the bound is minutes).
fn ends(mut child: Child) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "clorch run did not end after Ctrl-C: {}",
                text(&child.wait_with_output().unwrap().stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn case(name: &str, grace: &str, signals: usize, helper: &str) {
    let s = Scratch::new(name);
    let pids_dir = s.path("pids");
    std::fs::create_dir_all(&pids_dir).unwrap();
    let worker = stubborn_worker(&s, &pids_dir, helper);
    let r = s.recipe(name, &SMALL.replace("seeds: 2", "seeds: 1"));
    let mut child = Command::new(CLORCH)
        .args(["run", r.to_str().unwrap(), "--no-progress", "-j", "2", "--grace", grace])
        .env("CLORCH_WORKER", &worker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pids = started(&pids_dir, 2, &mut child);
    interrupt(&child);
    for _ in 1..signals {
        // The second Ctrl-C once the first has been taken (its notice printed would need the
        // pipe read; the status file says `stopping` too late to matter): a short pause.
        std::thread::sleep(Duration::from_millis(200));
        interrupt(&child);
    }
    let out = ends(child);
    let err = text(&out.stderr);
    let escaped = !helper.is_empty();
    let survivors: Vec<i32> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    for &pid in &survivors {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert_eq!(out.status.code(), Some(130), "{name}: {err}");
    // A helper that left the worker's process group is out of clorch's reach; the rest is not.
    assert!(
        survivors.len() <= if escaped { 2 } else { 0 },
        "{name}: {survivors:?} outlived clorch run: {err}"
    );
    let status = text(&clorch(&["status", s.path(&format!("results-{name}")).to_str().unwrap()]).stdout);
    assert!(status.contains("2 interrupted") && !status.contains("running"), "{name}: {status}\n{err}");
}

#[test]
fn a_first_ctrl_c_ends_the_run_once_the_grace_is_over_although_workers_ignore_it() {
    case("ctrl-c-grace", "1", 1, "");
}

#[test]
fn a_second_ctrl_c_ends_the_run_at_once_under_the_longest_grace() {
    case("ctrl-c-twice", "31536000", 2, "");
}

/// A helper in its own session keeps the worker's standard output and error open after the
/// worker is killed: the attempt still ends, instead of waiting for end-of-file for ever.
#[test]
fn ctrl_c_ends_the_run_when_a_workers_helper_holds_its_pipes_open() {
    case("ctrl-c-escaped", "1", 1, "setsid");
    case("ctrl-c-escaped-twice", "31536000", 2, "setsid");
}

/// Stuck before the worker even starts: another process holds the run folder's worker lock
/// (an orphaned worker of a killed `clorch run`, say), and the attempt waits for it. Ctrl-C
/// still ends `clorch run` once the grace is over, leaving the run `interrupted`.
#[test]
fn ctrl_c_ends_the_run_while_an_attempt_waits_for_its_run_folder() {
    let s = Scratch::new("ctrl-c-lock");
    let crash = s.write("crash.sh", "#!/usr/bin/env bash\nexit 9\n");
    std::fs::set_permissions(&crash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = s.recipe("lock", &format!("{}max_attempts: 1\n", SMALL.replace("seeds: 2", "seeds: 1")));
    let first = common::clorch_env(
        &["run", r.to_str().unwrap(), "--no-progress", "-j", "1"],
        &[("CLORCH_WORKER", crash.to_str().unwrap())],
    );
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let results = s.path("results-lock");
    let run_dirs: Vec<PathBuf> =
        std::fs::read_dir(results.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    let locks: Vec<std::fs::File> = run_dirs
        .iter()
        .map(|d| {
            let file = std::fs::File::create(d.join(protocol::files::WORKER_LOCK)).unwrap();
            file.try_lock().unwrap();
            file
        })
        .collect();
    let child = Command::new(CLORCH)
        .args(["run", r.to_str().unwrap(), "--no-progress", "-j", "2", "--grace", "1", "--retry-failed"])
        .env("CLORCH_WORKER", &crash)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Each attempt writes its header to worker.log before it claims the folder.
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = || {
        run_dirs.iter().all(|d| {
            std::fs::read_to_string(d.join(protocol::files::WORKER_LOG))
                .is_ok_and(|log| log.contains("=== attempt 2 ==="))
        })
    };
    while !waiting() {
        assert!(Instant::now() < deadline, "the second attempts did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    let out = ends(child);
    drop(locks);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let status = text(&clorch(&["status", results.to_str().unwrap()]).stdout);
    assert!(status.contains("2 interrupted") && !status.contains("running"), "{status}\n{err}");
}
