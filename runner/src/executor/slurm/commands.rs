//! The SLURM commands clorch runs — `sbatch`, `squeue`, `scancel`, `sacct` — and the reading
//! of their output. Only plain text formats are used (`squeue --format`, `sacct
//! --parsable2`): `--json` needs a plugin that many clusters do not install.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::job::{JobId, JobState};

/// A SLURM command that could not run or that failed.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {reason}")]
pub struct CommandError {
    /// The command's name (`sbatch`).
    pub command: String,
    /// What went wrong: the command's own message when it gave one.
    pub reason: String,
}

/// How long a SLURM command may take before clorch gives up on it (a controller that does
/// not answer).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `program args…`, returning its standard output when it exits with 0.
async fn run(program: &str, args: &[String]) -> Result<String, CommandError> {
    let error = |reason: String| CommandError { command: program.to_string(), reason };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                error("not found: is SLURM installed on this machine (a cluster's login node)?".into())
            }
            _ => error(e.to_string()),
        })?;
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(error(e.to_string())),
        Err(_) => return Err(error(format!("no answer within {} s", COMMAND_TIMEOUT.as_secs()))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty());
    Err(error(match message {
        // `sbatch: error: invalid partition specified: gpu` → `invalid partition specified: gpu`
        Some(m) => {
            let m = m.strip_prefix(program).and_then(|m| m.strip_prefix(": ")).unwrap_or(m);
            m.strip_prefix("error: ").unwrap_or(m).to_string()
        }
        None => format!("exited with {}", output.status),
    }))
}

/// `sbatch --version`: whether SLURM's commands are here, and which version.
pub async fn version() -> Result<String, CommandError> {
    Ok(run("sbatch", &["--version".to_string()]).await?.trim().to_string())
}

/// Why a batch was not submitted, or may have been without clorch knowing its job id.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// `sbatch` could not run or refused the batch: nothing was queued, so another attempt
    /// may submit it again.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// `sbatch` exited with success but printed no job id clorch can read: the array may well
    /// be queued. Submitting it again could duplicate every job on a real cluster, so the
    /// batch's runs fail instead, with `sbatch`'s words for the user to check.
    #[error(
        "sbatch succeeded but printed no job id that clorch can read ({output:?}); the job array \
         may be queued: check `squeue --me` and cancel it by hand before `clorch run --retry-failed`, \
         which submits these runs again"
    )]
    Unparsed {
        /// What `sbatch` printed on standard output, as it printed it.
        output: String,
    },
}

/// Submits `script` with `flags` (which include `--parsable`); returns the job id.
pub async fn sbatch(flags: &[String], script: &Path) -> Result<u64, SubmitError> {
    let mut args = flags.to_vec();
    args.push(script.display().to_string());
    let out = run("sbatch", &args).await?;
    parse_sbatch(&out).ok_or(SubmitError::Unparsed { output: out })
}

/// `sbatch --parsable` prints `<job id>` or `<job id>;<cluster>`.
fn parse_sbatch(out: &str) -> Option<u64> {
    out.lines().map(str::trim).rfind(|l| !l.is_empty())?.split(';').next()?.trim().parse().ok()
}

/// The state of every task of the job arrays `arrays` that the controller still knows
/// (running, waiting, and ended within its `MinJobAge`, 5 minutes by default). A task it no
/// longer knows is absent from the map.
pub async fn squeue(arrays: &[u64]) -> Result<HashMap<JobId, JobState>, CommandError> {
    if arrays.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = arrays.iter().map(u64::to_string).collect();
    let args = [
        "--noheader".to_string(),
        "--array".to_string(),
        "--states=all".to_string(),
        format!("--jobs={}", ids.join(",")),
        "--format=%i|%T".to_string(),
    ];
    match run("squeue", &args).await {
        Ok(out) => Ok(parse_squeue(&out)),
        // Every id given is unknown to the controller: all of them ended long ago.
        Err(e) if e.reason.contains("Invalid job id") => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

fn parse_squeue(out: &str) -> HashMap<JobId, JobState> {
    out.lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once('|')?;
            Some((JobId::parse(id.trim())?, JobState::parse(state)))
        })
        .collect()
}

/// The final state of `job` from the accounting database. Fails on clusters without
/// accounting (`sacct` says "Slurm accounting storage is disabled"); `None` when accounting
/// does not know the job.
pub async fn sacct(job: JobId) -> Result<Option<JobState>, CommandError> {
    let args = [
        "--noheader".to_string(),
        "--parsable2".to_string(),
        format!("--jobs={job}"),
        "--format=JobID,State".to_string(),
    ];
    let out = run("sacct", &args).await?;
    let wanted = job.to_string();
    Ok(out.lines().find_map(|line| {
        let (id, state) = line.trim().split_once('|')?;
        (id == wanted).then(|| JobState::parse(state))
    }))
}

/// How [`scancel`] stops jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// `scancel`: SIGTERM to the job script and the worker (each checkpoints and exits),
    /// SIGKILL after the cluster's `KillWait`.
    Terminate,
    /// `scancel --full --signal=TERM`: only the signal; the job ends when the worker exits.
    Signal,
}

/// Cancels (or signals) `jobs`.
pub async fn scancel(jobs: &[JobId], how: Cancel) -> Result<(), CommandError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut args = match how {
        Cancel::Terminate => Vec::new(),
        Cancel::Signal => {
            let term = protocol::control::signal_name(protocol::control::STOP).expect("STOP has a name");
            vec!["--full".to_string(), format!("--signal={term}")]
        }
    };
    args.extend(jobs.iter().map(JobId::to_string));
    run("scancel", &args).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_ids_with_and_without_cluster() {
        assert_eq!(parse_sbatch("1234\n"), Some(1234));
        assert_eq!(parse_sbatch("1234;cluster2\n"), Some(1234));
        assert_eq!(parse_sbatch("sbatch: warning: something\n77\n"), Some(77));
        assert_eq!(parse_sbatch("Submitted batch job 5\n"), None);
    }

    #[test]
    fn squeue_lines_of_array_tasks() {
        let out = "5_0|COMPLETED\n5_1|RUNNING\n5_2|PENDING\n 6_0|CANCELLED\n7|RUNNING\ngarbage\n";
        let states = parse_squeue(out);
        assert_eq!(states.len(), 4, "{states:?}");
        assert_eq!(states[&JobId { array: 5, index: 1 }], JobState::Running);
        assert_eq!(states[&JobId { array: 6, index: 0 }], JobState::Ended("CANCELLED".into()));
        assert!(matches!(states[&JobId { array: 5, index: 2 }], JobState::Waiting(_)));
    }
}
