//! What a batch submission writes into the results folder's `slurm/` folder, and the flags it
//! passes to `sbatch`.
//!
//! ```text
//! <results dir>/slurm/
//!   batch-0001.runs      one run folder per line; array task i trains the run on line i+1
//!   batch-0001.sh        the job script (the same for every task of the array)
//!   batch-0001_3.out     what task 3's script and SLURM printed (the worker's own messages
//!                        go to its run folder's worker.log)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{control, files};

use crate::recipe::{slurm_time, SlurmSettings};

use super::job::JOBS_LOG;

/// The folder of job scripts and lists inside a results folder.
pub const SLURM_DIR: &str = "slurm";

/// The files of one submitted batch.
#[derive(Clone, Debug)]
pub struct BatchFiles {
    /// The job script.
    pub script: PathBuf,
    /// The pattern of the tasks' output files (`%a` is the array index).
    pub output: PathBuf,
}

/// Creates the next free `batch-NNNN.runs` in `dir` (atomically: concurrent submissions get
/// distinct numbers) with one run folder per line, and the job script beside it.
pub fn write_batch(dir: &Path, runs: &[PathBuf], script: &ScriptSettings) -> std::io::Result<BatchFiles> {
    std::fs::create_dir_all(dir)?;
    let mut list = String::new();
    for run in runs {
        let text = run.to_str().filter(|t| !t.contains('\n')).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{}: a run folder must be valid UTF-8 without newlines to be listed", run.display()),
            )
        })?;
        list.push_str(text);
        list.push('\n');
    }
    let mut number = 1 + highest_batch(dir)?;
    loop {
        let name = format!("batch-{number:04}");
        let runs_path = dir.join(format!("{name}.runs"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&runs_path) {
            Ok(mut f) => {
                f.write_all(list.as_bytes())?;
                f.sync_all()?;
                let script_path = dir.join(format!("{name}.sh"));
                std::fs::write(&script_path, job_script(&runs_path, script))?;
                let output = dir.join(format!("{name}_%a.out"));
                return Ok(BatchFiles { script: script_path, output });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
            Err(e) => return Err(e),
        }
    }
}

fn highest_batch(dir: &Path) -> std::io::Result<u32> {
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("batch-").and_then(|s| s.strip_suffix(".runs")) {
            highest = highest.max(n.parse().unwrap_or(0));
        }
    }
    Ok(highest)
}

/// What the job script needs besides its runs list.
#[derive(Clone, Debug)]
pub struct ScriptSettings {
    /// The clorch executable, on a filesystem the nodes share.
    pub program: PathBuf,
    /// Seconds between the worker's heartbeat lines (into its log).
    pub heartbeat: u64,
}

/// Quotes `text` for bash (single quotes).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The job script of a batch. It finds its run folder from the array index, notes the start
/// in the run's `jobs.log`, runs `clorch worker` with its log appended to the run's
/// `worker.log` (its events go to `events.jsonl` as always; its standard output copy is not
/// needed), passes SLURM's signals on to the worker (which checkpoints and exits 75), and
/// notes the worker's exit status — so the status is known without `sacct`.
pub fn job_script(runs: &Path, settings: &ScriptSettings) -> String {
    // One handler per stop signal of the protocol, SLURM's warning first.
    let traps: String = [control::WARNING, control::STOP, control::INTERRUPT]
        .into_iter()
        .map(|s| {
            let name = signal_name(s);
            format!("trap 'forward {name}' {name}\n")
        })
        .collect();
    format!(
        r#"#!/usr/bin/env bash
# Written by `clorch run --executor slurm`: array task i trains the run whose folder is line
# i+1 of RUNS. A requeued task starts again here; the worker resumes from its checkpoint.
set -u
RUNS={runs}
CLORCH={program}
run_dir=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$RUNS")
if [ -z "$run_dir" ]; then
    echo "clorch: no run for array task $SLURM_ARRAY_TASK_ID in $RUNS" >&2
    exit 2
fi
job="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
restart="${{SLURM_RESTART_COUNT:-0}}"
host=$(hostname)
echo "=== SLURM job $job (restart $restart) on $host ===" >> "$run_dir/{worker_log}"
echo "start $job $restart $host" >> "$run_dir/{jobs_log}"
worker=
forward() {{ if [ -n "$worker" ]; then kill -"$1" "$worker" 2>/dev/null; fi; }}
# Handlers (not `trap ''`, which the worker would inherit): `wait` returns on a signal, the
# signal is passed on, and the loop waits again until the worker has checkpointed and exited.
{traps}RAYON_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}" CLORCH_RUN_ID="$(basename "$run_dir")" \
    "$CLORCH" worker --spec "$run_dir/{spec}" --heartbeat {heartbeat} \
    > /dev/null 2>> "$run_dir/{worker_log}" &
worker=$!
while kill -0 "$worker" 2>/dev/null; do wait "$worker"; done
wait "$worker"
status=$?
echo "exit $job $restart $status" >> "$run_dir/{jobs_log}"
exit "$status"
"#,
        runs = quote(&runs.display().to_string()),
        program = quote(&settings.program.display().to_string()),
        jobs_log = JOBS_LOG,
        heartbeat = settings.heartbeat,
        worker_log = files::WORKER_LOG,
        spec = files::SPEC,
    )
}

/// What the `sbatch` flags of a batch are made from.
#[derive(Clone, Debug)]
pub struct Submission<'a> {
    /// The recipe's `slurm:` settings.
    pub settings: &'a SlurmSettings,
    /// `--job-name`.
    pub job_name: &'a str,
    /// Tasks in the array.
    pub tasks: usize,
    /// At most this many tasks at once (`%K`), if bounded.
    pub throttle: Option<usize>,
    /// Where the tasks start (so relative data folders resolve as for `clorch run`).
    pub workdir: &'a Path,
    /// The batch's output pattern.
    pub output: &'a Path,
}

/// The `sbatch` flags of a batch, the recipe's `extra` flags last so they can override.
pub fn sbatch_flags(s: &Submission<'_>) -> Vec<String> {
    let last = s.tasks.saturating_sub(1);
    let throttle = s.throttle.map_or(String::new(), |k| format!("%{}", k.max(1)));
    let mut flags = vec![
        "--parsable".to_string(),
        format!("--array=0-{last}{throttle}"),
        format!("--job-name={}", s.job_name),
        format!("--output={}", s.output.display()),
        "--open-mode=append".to_string(),
        format!("--chdir={}", s.workdir.display()),
        format!("--cpus-per-task={}", s.settings.cpus),
        // The shell (`B:`) gets the warning and passes it to the worker, which checkpoints and
        // exits 75; clorch submits the run again and it resumes.
        format!("--signal=B:{}@{}", signal_name(control::WARNING), s.settings.signal_seconds),
        // Node failures and preemption put the job back in the queue under the same id.
        "--requeue".to_string(),
    ];
    if let Some(mem) = &s.settings.mem {
        flags.push(format!("--mem={mem}"));
    }
    for (flag, value) in [
        ("gres", &s.settings.gres),
        ("gpus-per-task", &s.settings.gpus_per_task),
        ("constraint", &s.settings.constraint),
    ] {
        if let Some(value) = value {
            flags.push(format!("--{flag}={value}"));
        }
    }
    if let Some(partition) = &s.settings.partition {
        flags.push(format!("--partition={partition}"));
    }
    if let Some(account) = &s.settings.account {
        flags.push(format!("--account={account}"));
    }
    if let Some(time) = s.settings.time {
        flags.push(format!("--time={}", slurm_time(time)));
    }
    flags.extend(s.settings.extra.iter().cloned());
    flags
}

/// The name of one of the protocol's signals.
fn signal_name(signal: i32) -> &'static str {
    control::signal_name(signal).expect("the protocol's signals have names")
}

/// Seconds between heartbeats of a SLURM worker: a quarter of the silence the recipe
/// tolerates (`heartbeat`), between 1 s and a minute, so a long task is never taken for a hung
/// worker while the log stays short (heartbeats go to the log file).
pub fn heartbeat_interval(silence: Duration) -> u64 {
    (silence.as_secs() / 4).clamp(1, 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SlurmSettings {
        SlurmSettings {
            partition: Some("gpu".into()),
            account: None,
            time: Some(Duration::from_secs(5_400)),
            cpus: 2,
            mem: Some("4G".into()),
            gres: Some("gpu:a100:1".into()),
            gpus_per_task: None,
            constraint: Some("a100|h100".into()),
            extra: vec!["--qos=long".into()],
            signal_seconds: 300,
        }
    }

    #[test]
    fn flags_carry_the_recipe_settings_and_the_throttle() {
        let settings = settings();
        let flags = sbatch_flags(&Submission {
            settings: &settings,
            job_name: "clorch-x",
            tasks: 12,
            throttle: Some(4),
            workdir: Path::new("/home/me/exp"),
            output: Path::new("/r/slurm/batch-0001_%a.out"),
        });
        for wanted in [
            "--parsable",
            "--array=0-11%4",
            "--job-name=clorch-x",
            "--cpus-per-task=2",
            "--mem=4G",
            "--gres=gpu:a100:1",
            "--constraint=a100|h100",
            "--partition=gpu",
            "--time=01:30:00",
            "--signal=B:USR1@300",
            "--chdir=/home/me/exp",
            "--output=/r/slurm/batch-0001_%a.out",
        ] {
            assert!(flags.iter().any(|f| f == wanted), "{wanted} missing from {flags:?}");
        }
        assert_eq!(flags.last().map(String::as_str), Some("--qos=long"));
        assert!(!flags.iter().any(|f| f.starts_with("--account") || f.starts_with("--gpus-per-task")));
        let unbounded = sbatch_flags(&Submission {
            settings: &settings,
            job_name: "clorch-x",
            tasks: 1,
            throttle: None,
            workdir: Path::new("/"),
            output: Path::new("/o"),
        });
        assert!(unbounded.iter().any(|f| f == "--array=0-0"), "{unbounded:?}");
    }

    #[test]
    fn batches_are_numbered_and_list_their_runs() {
        let scratch = test_support::scratch("batch");
        let dir = scratch.path().join("batches");
        let script = ScriptSettings { program: PathBuf::from("/opt/it's/clorch"), heartbeat: 7 };
        let runs = [PathBuf::from("/r/runs/a"), PathBuf::from("/r/runs/b")];
        let first = write_batch(&dir, &runs, &script).unwrap();
        let second = write_batch(&dir, &runs[..1], &script).unwrap();
        assert_eq!(first.script, dir.join("batch-0001.sh"));
        assert_eq!(second.script, dir.join("batch-0002.sh"));
        assert_eq!(first.output, dir.join("batch-0001_%a.out"));
        assert_eq!(std::fs::read_to_string(dir.join("batch-0001.runs")).unwrap(), "/r/runs/a\n/r/runs/b\n");
        let text = std::fs::read_to_string(&first.script).unwrap();
        assert!(text.contains(r"CLORCH='/opt/it'\''s/clorch'"), "{text}");
        assert!(text.contains("--heartbeat 7") && text.contains("jobs.log"), "{text}");
        // The script is valid bash.
        if let Ok(out) = std::process::Command::new("bash").arg("-n").arg(&first.script).output() {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(write_batch(&dir, &[PathBuf::from("/bad\nname")], &script).is_err());
    }

    #[test]
    fn heartbeats_fit_the_tolerated_silence() {
        assert_eq!(heartbeat_interval(Duration::from_secs(600)), 60);
        assert_eq!(heartbeat_interval(Duration::from_secs(20)), 5);
        assert_eq!(heartbeat_interval(Duration::from_secs(1)), 1);
    }
}
