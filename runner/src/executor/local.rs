//! The local executor: each attempt is a child process of this executable (`clorch worker`),
//! with one compute thread, its events read line by line from its standard output and its
//! standard error kept in the run folder's `worker.log`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use protocol::heartbeat::Heartbeat;
use protocol::{control, files};
use results::log::ReasonTracker;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{Attempt, Control, Ending, Executor, Launch, Limits, Message, Report, Reports};
use crate::scheduler::{Alarm, Watchdog};
use crate::store::Failure;
use crate::worker_side::WorkerSide;

/// How long the pipes of a worker that has exited are still read when they do not close.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// How to start workers.
#[derive(Clone, Debug)]
pub struct LocalExecutor {
    /// The executable whose `worker` subcommand trains (normally this very binary).
    pub program: PathBuf,
    /// Heartbeat interval asked of the workers.
    pub heartbeat_every: Duration,
    /// The worker implementation, which says where a run resumes.
    pub worker: Arc<dyn WorkerSide>,
    /// Bytes each worker may use ([`protocol::memory::MAX_MEMORY_ENV`]); `None`: the worker's
    /// default, the memory its machine has available.
    pub memory_per_worker: Option<u64>,
}

/// One child process per attempt, at most `parallel` at once; a local process dies with its
/// orchestrator's pipe, so it is never reattached.
impl Executor for LocalExecutor {
    fn capacity(&self, parallel: usize) -> usize {
        parallel.max(1)
    }

    fn start(&self, batch: Vec<Attempt>, limits: Limits, reports: Reports) {
        for Attempt { launch, control } in batch {
            let local = self.clone();
            let reports = reports.clone();
            let (run, attempt) = (launch.run.clone(), launch.attempt);
            let watcher = reports.clone();
            let task = tokio::spawn(async move { local.run_attempt(launch, limits, reports, control).await });
            // An attempt that panics still ends, as lost: otherwise the scheduler would wait
            // for it for ever and not even a second Ctrl-C could end `clorch run`.
            tokio::spawn(async move {
                if let Err(e) = task.await {
                    let reason = format!("the attempt's task ended abnormally: {e}");
                    let message = Message::Ended(Ending::Broke(Failure::Lost { reason }));
                    let _ = watcher.send(Report { run, attempt, message });
                }
            });
        }
    }

    fn can_reattach(&self, _handle: &str) -> bool {
        false
    }

    /// A local `clorch run` refuses runs with a SLURM job that may be running.
    fn refuses(&self, handle: &str) -> Option<String> {
        super::slurm::JobId::parse(handle).is_some().then(|| {
            format!(
                "its SLURM job {handle} may still be running; `clorch run --executor slurm` reattaches to it \
                 and `clorch cancel` cancels it"
            )
        })
    }

    fn stop_notice(&self, active: usize) -> String {
        format!(
            "stopping: asking {active} worker(s) to checkpoint and exit (press Ctrl-C again to stop at once)"
        )
    }
}

impl LocalExecutor {
    /// Workers started from the running executable — or from the program named by the
    /// `CLORCH_WORKER` environment variable, which the test suite uses to put fake workers
    /// (that crash, hang or print garbage) under the real scheduler.
    pub fn current(worker: Arc<dyn WorkerSide>) -> std::io::Result<Self> {
        let program = match std::env::var_os("CLORCH_WORKER") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?,
        };
        Ok(LocalExecutor {
            program,
            heartbeat_every: Duration::from_secs(10),
            worker,
            memory_per_worker: None,
        })
    }

    /// Runs one attempt to its end, reporting through `reports`; obeys `control`.
    pub async fn run_attempt(
        &self,
        launch: Launch,
        limits: Limits,
        reports: Reports,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let send = |message: Message| {
            // The scheduler outlives every attempt; a closed channel means it is gone.
            let _ = reports.send(Report { run: launch.run.clone(), attempt: launch.attempt, message });
        };
        let ending = self.attempt(&launch, limits, &send, &mut control).await;
        send(Message::Ended(ending));
    }

    async fn attempt(
        &self,
        launch: &Launch,
        limits: Limits,
        send: &impl Fn(Message),
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Ending {
        let log_path = launch.run_dir.join(files::WORKER_LOG);
        let mut log = match tokio::fs::OpenOptions::new().create(true).append(true).open(&log_path).await {
            Ok(f) => f,
            Err(e) => {
                return Ending::Broke(Failure::SpawnFailed { reason: format!("{}: {e}", log_path.display()) })
            }
        };
        let header = format!("=== attempt {} ===\n", launch.attempt);
        let _ = log.write_all(header.as_bytes()).await;
        match super::folder::claim(&launch.run_dir, false, &*self.worker).await {
            Ok(point) => send(Message::Resuming { next_seq: point.next_seq, fallback: point.fallback }),
            Err(ending) => return ending,
        }

        let mut command = Command::new(&self.program);
        command
            .arg("worker")
            .arg("--spec")
            .arg(launch.run_dir.join(files::SPEC))
            .arg(control::WATCH_STDIN_FLAG)
            .arg("--heartbeat")
            .arg(self.heartbeat_every.as_secs().max(1).to_string())
            .env("RAYON_NUM_THREADS", "1")
            .env("CLORCH_RUN_ID", &launch.run)
            .env("CLORCH_ATTEMPT", launch.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a Ctrl-C in the terminal reaches the orchestrator only, which
            // then stops its workers in order.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(bytes) = self.memory_per_worker {
            command.env(protocol::memory::MAX_MEMORY_ENV, bytes.to_string());
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ending::Broke(Failure::SpawnFailed {
                    reason: format!("{}: {e}", self.program.display()),
                })
            }
        };
        let pid = child.id().map(|p| Pid::from_raw(p as i32));
        send(Message::Started { handle: pid.map_or_else(String::new, |p| p.to_string()) });
        // Held open for the attempt: the worker stops when it closes.
        let _stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut out_open, mut err_open, mut control_open) = (true, true, true);
        let mut watchdog = Watchdog::new(limits);
        watchdog.started(Instant::now());
        let mut forced: Option<Ending> = None;
        // The worker's failure reason, picked from its lines as they pass into the log.
        let mut reason = ReasonTracker::default();

        // The worker leads its own process group; signal the group, so helpers it started (or a
        // wrapper script's children) cannot keep its pipes open.
        let signal = |s: i32| {
            if let (Some(pid), Ok(s)) = (pid, Signal::try_from(s)) {
                let _ = killpg(pid, s);
            }
        };
        // Set once the worker has exited: its pipes are read until end-of-file, or for
        // PIPE_DRAIN at most, since a helper it started in another session may hold them open
        // for ever (the attempt would never end, and nor would Ctrl-C's `clorch run`).
        let mut exited: Option<std::process::ExitStatus> = None;
        let mut drained_at: Option<Instant> = None;
        while out_open || err_open {
            tokio::select! {
                status = child.wait(), if exited.is_none() => match status {
                    Ok(status) => {
                        exited = Some(status);
                        drained_at = Some(Instant::now() + PIPE_DRAIN);
                    }
                    Err(e) => {
                        return Ending::Broke(Failure::Lost { reason: format!("waiting for the worker: {e}") })
                    }
                },
                _ = sleep_until(drained_at.unwrap_or_else(Instant::now)), if drained_at.is_some() => {
                    tracing::warn!(
                        run = %launch.run,
                        "the worker exited but something it started holds its output open; no longer reading it"
                    );
                    (out_open, err_open) = (false, false);
                }
                line = stdout.next_line(), if out_open => match line {
                    Ok(Some(line)) => {
                        watchdog.heard(Instant::now());
                        match protocol::line::decode(line.as_bytes()) {
                            Ok(event) if event.run == launch.run => send(Message::Event(Box::new(event))),
                            Ok(event) => {
                                forced.get_or_insert(Ending::Failed(Failure::Protocol {
                                    reason: format!("an event of run `{}`, not `{}`", event.run, launch.run),
                                }));
                                signal(control::KILL);
                            }
                            Err(e) => {
                                let shown: String = line.chars().take(120).collect();
                                forced.get_or_insert(Ending::Failed(Failure::Protocol {
                                    reason: format!("a line that is not a sealed event: `{shown}`: {e}"),
                                }));
                                signal(control::KILL);
                            }
                        }
                    }
                    _ => out_open = false,
                },
                line = stderr.next_line(), if err_open => match line {
                    Ok(Some(line)) => {
                        watchdog.heard(Instant::now());
                        if Heartbeat::is_heartbeat(&line) {
                            if let Some(Heartbeat { task, tasks, .. }) = Heartbeat::parse(&line) {
                                send(Message::Progress { task, tasks });
                            }
                        } else {
                            let _ = log.write_all(line.as_bytes()).await;
                            let _ = log.write_all(b"\n").await;
                            reason.push(&line);
                        }
                    }
                    _ => err_open = false,
                },
                ctl = control.recv(), if control_open => match ctl {
                    Some(Control::Stop) => {
                        signal(control::STOP);
                        watchdog.stop_requested(Instant::now());
                    }
                    Some(Control::Kill) => signal(control::KILL),
                    None => control_open = false,
                },
                _ = sleep_until(watchdog.next_deadline().unwrap_or_else(Instant::now)),
                    if watchdog.next_deadline().is_some() =>
                {
                    let now = Instant::now();
                    while let Some(alarm) = watchdog.alarm(now) {
                        match alarm {
                            // Hung: killed at once, even while a stop's grace runs.
                            Alarm::Silent(failure) => {
                                forced.get_or_insert(Ending::Broke(failure));
                                signal(control::KILL);
                            }
                            // An attempt already failing keeps its reason (and its signal).
                            Alarm::TimedOut(_) if forced.is_some() => {}
                            Alarm::TimedOut(failure) => {
                                forced = Some(Ending::Broke(failure));
                                // Checkpoint on the way out, so a later run resumes instead of
                                // starting over.
                                signal(control::STOP);
                                watchdog.stop_requested(now);
                            }
                            Alarm::GraceOver => signal(control::KILL),
                        }
                    }
                }
            }
        }
        let _ = log.flush().await;
        let status = match exited {
            Some(s) => s,
            None => match child.wait().await {
                Ok(s) => s,
                Err(e) => {
                    return Ending::Broke(Failure::Lost { reason: format!("waiting for the worker: {e}") })
                }
            },
        };
        if let Some(ending) = forced {
            return ending;
        }
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => super::worker_ending(code, || reason.reason().unwrap_or_default().to_string()),
            (None, Some(signal)) => Ending::Broke(Failure::Signaled { signal }),
            (None, None) => {
                Ending::Broke(Failure::Lost { reason: "the worker ended without a status".into() })
            }
        }
    }
}
