//! The SLURM executor against a real SLURM: `clorch run --executor slurm` gives the same
//! results as local workers; a job cancelled mid-run, or requeued by the cluster, resumes from
//! its checkpoint with identical results; a killed or stopped orchestrator reattaches to its
//! jobs instead of submitting them twice, and `clorch cancel` cancels them; silent and overlong
//! jobs are cancelled with the reason.
//!
//! Needs `sbatch` and a controller that answers: `scripts/local-slurm.sh start` sets up a
//! single-node cluster (Debian, as root; `.ci/run` does it). Without `sbatch` the tests say so
//! and pass; with `CI=true` a missing cluster fails them instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

mod common;
use common::{clorch, text, Scratch, CLORCH};

/// The single-node test cluster has as many slots as the machine has cores: the tests take
/// turns, so each sees its jobs start promptly. `None` (after saying why) when there is no
/// cluster to test against.
fn cluster() -> Option<MutexGuard<'static, ()>> {
    static TURN: Mutex<()> = Mutex::new(());
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    let guard = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let missing = MISSING.get_or_init(|| {
        let answers = |program: &str, arg: &str| {
            Command::new(program).arg(arg).output().map(|o| o.status.success()).unwrap_or(false)
        };
        if !answers("sbatch", "--version") {
            Some("no `sbatch` on this machine".to_string())
        } else if !answers("sinfo", "--noheader") {
            Some("`sbatch` is here but the SLURM controller does not answer `sinfo`".to_string())
        } else {
            // Several tests need both runs of RECIPE running at once.
            let cpus = Command::new("sinfo").args(["--noheader", "--format=%c"]).output().ok();
            let cpus: u32 = cpus.map(|o| text(&o.stdout).trim().parse().unwrap_or(0)).unwrap_or(0);
            (cpus < 2).then(|| {
                format!(
                    "the cluster's node has {cpus} CPU(s) and these tests need two jobs running at once \
                     (was it started with OMP_NUM_THREADS=1 and an old local-slurm.sh?)"
                )
            })
        }
    });
    let Some(missing) = missing else { return Some(guard) };
    test_support::missing(
        &format!("a SLURM cluster ({missing})"),
        "`scripts/local-slurm.sh start` (root, Debian; .ci/run does it) sets up a single-node cluster",
    );
    None
}

fn spawn_slurm_run(recipe: &Path) -> Child {
    Command::new(CLORCH)
        .args(["run", recipe.to_str().unwrap(), "--no-progress", "--executor", "slurm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn slurm_run(recipe: &Path) -> Output {
    spawn_slurm_run(recipe).wait_with_output().unwrap()
}

/// Two runs of a few seconds each, with a checkpoint every 40 steps: long enough to be
/// interrupted mid-run, short enough for a 2-core machine.
const RECIPE: &str = "
stream: {kind: synthetic_permuted, tasks: 6, classes: 6, dim: 48, train_per_class: 60, test_per_class: 20}
network: {hidden: [96, 96]}
training: {batch_size: 4, epochs: 6}
checkpoint: {every_steps: 40}
methods:
  - {name: sgd, lr: 0.02}
  - {name: shrink_perturb, lr: 0.02, noise_std: 0.001}
seeds: 1
parallel: 2
";

/// Every run's `events.jsonl`, by run id.
fn event_logs(results: &Path) -> Vec<(String, String)> {
    let mut logs: Vec<(String, String)> = run_dirs(results)
        .into_iter()
        .map(|d| {
            let id = d.file_name().unwrap().to_string_lossy().into_owned();
            (id, std::fs::read_to_string(d.join(protocol::files::EVENTS)).unwrap_or_default())
        })
        .collect();
    logs.sort();
    logs
}

fn run_dirs(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(results.join("runs")) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs
}

/// The recipe run by local workers once: the report and the event logs every SLURM run of it
/// must reproduce.
fn reference() -> &'static (String, Vec<(String, String)>) {
    static REFERENCE: OnceLock<(String, Vec<(String, String)>)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let s = Scratch::new("reference");
        let r = s.recipe("reference", RECIPE);
        let out = clorch(&["run", r.to_str().unwrap(), "--no-progress"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), event_logs(&s.path("results-reference")))
    })
}

fn assert_like_reference(name: &str, table: &str, results: &Path) {
    let (reference_table, reference_logs) = reference();
    assert_eq!(&event_logs(results), reference_logs, "{name}: the events differ from local workers'");
    assert_eq!(table.replace(name, "reference"), *reference_table, "{name}: the report differs");
}

/// `jobs.log` of a run folder: (kind, job, status) per line.
fn jobs_log(run_dir: &Path) -> Vec<(String, String, Option<i32>)> {
    std::fs::read_to_string(run_dir.join("jobs.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4).then(|| (w[0].to_string(), w[1].to_string(), w[3].parse().ok()))
        })
        .collect()
}

/// Jobs whose script started and has not noted an exit.
fn running_jobs(run_dir: &Path) -> Vec<String> {
    let log = jobs_log(run_dir);
    log.iter()
        .filter(|(kind, job, _)| kind == "start" && !log.iter().any(|(k, j, _)| k == "exit" && j == job))
        .map(|(_, job, _)| job.clone())
        .collect()
}

fn has_checkpoint(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join(protocol::files::EVENTS))
        .is_ok_and(|t| t.contains(r#""event":"checkpoint""#))
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Distinct job ids in a run folder's `jobs.log`.
/// Waits for a run whose job is running and has written a checkpoint: its folder and job id.
fn checkpointed_running_job(results: &Path) -> (PathBuf, String) {
    let mut victim = None;
    wait_until("a job has checkpointed", Duration::from_secs(120), || {
        victim = run_dirs(results)
            .into_iter()
            .find_map(|d| running_jobs(&d).pop().filter(|_| has_checkpoint(&d)).map(|job| (d, job)));
        victim.is_some()
    });
    victim.expect("wait_until returns once found")
}

fn job_ids(run_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = jobs_log(run_dir).into_iter().map(|(_, job, _)| job).collect();
    ids.dedup();
    ids
}

fn batches(results: &Path) -> usize {
    std::fs::read_dir(results.join("slurm"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".runs")).count())
        .unwrap_or(0)
}

#[test]
fn slurm_and_local_workers_give_the_same_report() {
    let Some(_turn) = cluster() else { return };
    let s = Scratch::new("same");
    let r = s.recipe("same", RECIPE);
    let results = s.path("results-same");
    let out = slurm_run(&r);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("submitted 2 run(s) as SLURM job array") && err.contains("at most 2 at once"),
        "{err}"
    );
    assert_like_reference("same", &text(&out.stdout), &results);
    assert_eq!(batches(&results), 1, "one job array for the batch");
    for dir in run_dirs(&results) {
        let log = jobs_log(&dir);
        assert_eq!(log.len(), 2, "one start and one exit: {log:?}");
        assert_eq!(log[1].2, Some(0), "{log:?}");
    }
    // Run again: nothing to submit, the report comes from the store.
    let again = slurm_run(&r);
    assert!(again.status.success());
    assert!(text(&again.stderr).contains("2 finished runs skipped"), "{}", text(&again.stderr));
    assert_eq!(batches(&results), 1);
    let status = text(&clorch(&["status", results.to_str().unwrap()]).stdout);
    assert!(status.contains("2 finished"), "{status}");
    // Issue 16, finding 5: each run's job id, and its wait in the queue apart from its run time.
    assert!(status.contains(" job ") && status.contains(" queued "), "{status}");
    for dir in run_dirs(&results) {
        let job = &job_ids(&dir)[0];
        assert!(status.contains(job.as_str()), "{job}: {status}");
    }
}

#[test]
fn a_job_cancelled_mid_run_resumes_from_its_checkpoint_with_identical_results() {
    let Some(_turn) = cluster() else { return };
    reference();
    let s = Scratch::new("scancel");
    let r = s.recipe("scancel", RECIPE);
    let results = s.path("results-scancel");
    let child = spawn_slurm_run(&r);
    let (dir, job) = checkpointed_running_job(&results);
    let cancelled = Command::new("scancel").arg(&job).status().unwrap();
    assert!(cancelled.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let log = jobs_log(&dir);
    let first_exit = log.iter().find(|(k, j, _)| k == "exit" && *j == job).map(|e| e.2);
    assert_eq!(
        first_exit,
        Some(Some(protocol::exit::INTERRUPTED)),
        "the cancelled worker should have checkpointed and exited 75 (or the run finished before scancel \
         landed: the recipe is too fast for this machine): {log:?}"
    );
    assert_eq!(job_ids(&dir).len(), 2, "resubmitted once: {log:?}");
    let worker_log = std::fs::read_to_string(dir.join(protocol::files::WORKER_LOG)).unwrap();
    assert!(worker_log.contains("resumable from"), "{worker_log}");
    assert!(err.contains("resuming") && err.contains("stopped from outside"), "{err}");
    assert_like_reference("scancel", &text(&out.stdout), &results);
    // No attempt was used up by the cancellation.
    let status = text(&clorch(&["status", results.to_str().unwrap()]).stdout);
    assert!(status.contains("2 finished"), "{status}");
}

#[test]
fn a_killed_orchestrator_reattaches_to_its_jobs_without_submitting_them_again() {
    let Some(_turn) = cluster() else { return };
    reference();
    let s = Scratch::new("reattach");
    let r = s.recipe("reattach", RECIPE);
    let results = s.path("results-reattach");
    let mut child = spawn_slurm_run(&r);
    wait_until("the jobs run and have checkpointed", Duration::from_secs(120), || {
        let dirs = run_dirs(&results);
        !dirs.is_empty() && dirs.iter().all(|d| !running_jobs(d).is_empty() && has_checkpoint(d))
    });
    child.kill().unwrap(); // SIGKILL: no chance to tidy up
    child.wait().unwrap();
    let out = slurm_run(&r);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reattached to SLURM job") && !err.contains("submitted"), "{err}");
    assert_eq!(batches(&results), 1, "no second submission");
    for dir in run_dirs(&results) {
        assert_eq!(job_ids(&dir).len(), 1, "one job per run: {:?}", jobs_log(&dir));
    }
    assert_like_reference("reattach", &text(&out.stdout), &results);
}

#[test]
fn ctrl_c_leaves_the_jobs_running_and_clorch_cancel_cancels_them() {
    let Some(_turn) = cluster() else { return };
    reference();
    let s = Scratch::new("detach");
    // Longer runs, so they are still going when `clorch cancel` comes.
    let r = s.recipe("detach", &RECIPE.replace("tasks: 6", "tasks: 30"));
    let results = s.path("results-detach");
    let child = spawn_slurm_run(&r);
    wait_until("the jobs run", Duration::from_secs(120), || {
        let dirs = run_dirs(&results);
        !dirs.is_empty() && dirs.iter().all(|d| !running_jobs(d).is_empty())
    });
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("2 SLURM job(s) keep running") && err.contains("clorch cancel"), "{err}");
    for dir in run_dirs(&results) {
        assert!(!running_jobs(&dir).is_empty(), "the job of {} stopped with the orchestrator", dir.display());
    }

    // A local run must not start second workers for runs whose jobs go on.
    let local = clorch(&["run", r.to_str().unwrap(), "--no-progress"]);
    let err = text(&local.stderr);
    assert_eq!(local.status.code(), Some(2), "{err}");
    assert!(err.contains("may still be running") && err.contains("--executor slurm"), "{err}");

    let cancel = clorch(&["cancel", results.to_str().unwrap()]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    assert!(text(&cancel.stdout).contains("cancelled 2 SLURM job(s)"), "{}", text(&cancel.stdout));
    wait_until("the cancelled workers exit", Duration::from_secs(60), || {
        run_dirs(&results).iter().all(|d| running_jobs(d).is_empty())
    });
    for dir in run_dirs(&results) {
        let log = jobs_log(&dir);
        assert_eq!(
            log.last().and_then(|e| e.2),
            Some(protocol::exit::INTERRUPTED),
            "checkpointed on the way out: {log:?}"
        );
    }
    let again = clorch(&["cancel", results.to_str().unwrap()]);
    assert!(text(&again.stdout).contains("no SLURM jobs to cancel"), "{}", text(&again.stdout));

    // The next run submits them again; they resume and finish.
    let out = slurm_run(&r);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("submitted 2 run(s)"), "{err}");
    assert_eq!(batches(&results), 2);
    let status = text(&clorch(&["status", results.to_str().unwrap()]).stdout);
    assert!(status.contains("2 finished"), "{status}");
}

/// `squeue`'s state of one job (`PD`, `R`, `CG`, …), empty once it is gone.
fn queue_state(job: &str) -> String {
    let out = Command::new("squeue")
        .args(["--noheader", "--array", "--format=%t", "--jobs", job])
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

#[test]
fn a_job_the_cluster_requeues_resumes_under_the_same_id() {
    let Some(_turn) = cluster() else { return };
    reference();
    let s = Scratch::new("requeue");
    let r = s.recipe("requeue", RECIPE);
    let results = s.path("results-requeue");
    let child = spawn_slurm_run(&r);
    let (dir, job) = checkpointed_running_job(&results);
    // As after a node failure or a preemption: SLURM stops the job and queues it again.
    let requeued = Command::new("scontrol").args(["requeue", &job]).output().unwrap();
    assert!(requeued.status.success(), "{}", text(&requeued.stderr));
    // SLURM holds a requeued job back for a while (two minutes here); let it start now, but
    // only once its first script has exited and a later second has begun: SLURM revokes the
    // first start's credential with a timestamp in whole seconds, and refuses a start in the
    // same second as `Job credential revoked`, failing the job for good.
    wait_until("the job waits again", Duration::from_secs(60), || {
        queue_state(&job) == "PD" && running_jobs(&dir).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let update = Command::new("scontrol").args(["update", &format!("JobId={job}"), "StartTime=now"]).output();
    assert!(update.unwrap().status.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let log = jobs_log(&dir);
    let statuses: Vec<Option<i32>> = log.iter().filter(|(k, _, _)| k == "exit").map(|e| e.2).collect();
    assert_eq!(
        statuses,
        [Some(protocol::exit::INTERRUPTED), Some(protocol::exit::FINISHED)],
        "checkpointed, then resumed and finished: {log:?}\n{err}"
    );
    assert_eq!(job_ids(&dir), [job], "the same job, started twice: {log:?}\n{err}");
    assert_eq!(batches(&results), 1, "clorch submitted nothing itself");
    assert_like_reference("requeue", &text(&out.stdout), &results);
}

#[test]
fn without_slurm_the_slurm_executor_is_refused_before_anything_is_written() {
    let s = Scratch::new("nosbatch");
    let r = s.recipe("nosbatch", RECIPE);
    let empty = s.path("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(CLORCH)
        .args(["run", r.to_str().unwrap(), "--executor", "slurm"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sbatch: not found") && err.contains("SLURM installed"), "{err}");
    assert!(!s.path("results-nosbatch").exists(), "the results folder was created");
}

/// Issue 15: an `sbatch` that exits 0 without a job id clorch can read may still have queued
/// the array; submitting it again would duplicate every job on a real cluster. A fake `sbatch`
/// (no cluster needed) counts its submissions: one, the runs fail with its words, and neither
/// the retries of that call nor a later `clorch run` submit it again.
#[test]
fn sbatch_output_that_cannot_be_read_is_not_submitted_again() {
    let s = Scratch::new("sbatch-garbled");
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let count = s.path("submissions");
    fake_worker(
        &s,
        "bin/sbatch",
        &format!(
            "if [ \"$1\" = --version ]; then echo 'slurm 23.02.6'; exit 0; fi\n\
             echo \"$@\" >> {}\necho 'Submitted batch job 4242 on cluster main'",
            count.display()
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let r = s.recipe("garbled", &format!("{RECIPE}max_attempts: 3\n"));
    let run = || {
        Command::new(CLORCH)
            .args(["run", r.to_str().unwrap(), "--no-progress", "--executor", "slurm"])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = run();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let submissions = || std::fs::read_to_string(&count).unwrap().lines().count();
    assert_eq!(submissions(), 1, "{err}");
    let status = text(&clorch(&["status", s.path("results-garbled").to_str().unwrap()]).stdout);
    assert!(status.contains("2 failed"), "{status}");
    assert!(status.contains("Submitted batch job 4242 on cluster main"), "{status}");
    let again = run();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert_eq!(submissions(), 1, "a later `clorch run` submitted the batch again");
}

/// Writes an executable fake worker script.
fn fake_worker(s: &Scratch, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = s.path(name);
    std::fs::write(&p, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn silent_and_overlong_jobs_are_cancelled_with_the_reason() {
    let Some(_turn) = cluster() else { return };
    let s = Scratch::new("limits");
    let one_run = "
stream: {kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}
network: {hidden: [16]}
methods: [{name: sgd, lr: 0.05}]
max_attempts: 1
";
    let heartbeat = protocol::heartbeat::Heartbeat { task: 0, tasks: 3, step: 1 };
    let chatty = format!("while true; do echo '{heartbeat}' >&2; sleep 0.2; done");
    let cases = [
        ("silent", "sleep 60", "heartbeat: 2s\n", "no event for 2 s"),
        ("slow", chatty.as_str(), "timeout: 3s\n", "timed out after 3 s"),
    ];
    for (name, body, limit, reason) in cases {
        let worker = fake_worker(&s, &format!("{name}.sh"), body);
        let r = s.recipe(name, &format!("{one_run}{limit}"));
        let started = Instant::now();
        let out = Command::new(CLORCH)
            .args(["run", r.to_str().unwrap(), "--no-progress", "--executor", "slurm", "--grace", "2"])
            .env("CLORCH_WORKER", &worker)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        assert!(started.elapsed() < Duration::from_secs(60), "{name}: took {:?}", started.elapsed());
        let results = s.path(&format!("results-{name}"));
        let status = text(&clorch(&["status", results.to_str().unwrap()]).stdout);
        assert!(status.contains(reason), "{name}: {status}");
        // Cancelled, not left running.
        for dir in run_dirs(&results) {
            let job = job_ids(&dir).pop().expect("a job ran");
            wait_until("the cancelled job has left the queue", Duration::from_secs(30), || {
                queue_state(&job).is_empty()
            });
        }
    }
}

/// An external worker (the plain-Python scripted worker of `external_workers.rs`) runs as an
/// array task like the built-in one: the job script's `clorch worker` hands the spec to the
/// command in the recipe's folder, and the events equal a local run's byte for byte.
#[test]
fn an_external_worker_runs_under_slurm_with_the_same_events_as_locally() {
    let Some(_turn) = cluster() else { return };
    let scripted = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/workers/scripted_worker.py");
    let s = Scratch::new("slurm-external");
    let body = format!(
        "stream: {{kind: synthetic_permuted, tasks: 3, classes: 4, dim: 16, train_per_class: 30, test_per_class: 10}}\n\
         network: {{hidden: [16]}}\nseeds: 2\n\
         methods:\n  - {{name: ext, kind: scripted, worker: {{command: [python3, {scripted}]}}}}\n"
    );
    let local = s.recipe("ext-local", &body);
    let out = clorch(&["run", local.to_str().unwrap(), "--no-progress"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let on_slurm = s.recipe("ext-slurm", &body);
    let out = slurm_run(&on_slurm);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("submitted 2 run(s) as SLURM job array"), "{err}");
    assert_eq!(event_logs(&s.path("results-ext-slurm")), event_logs(&s.path("results-ext-local")));
    for dir in run_dirs(&s.path("results-ext-slurm")) {
        assert_eq!(jobs_log(&dir).last().and_then(|e| e.2), Some(0), "{:?}", jobs_log(&dir));
    }
}
