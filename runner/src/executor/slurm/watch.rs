//! One batch of SLURM attempts, from submission (or reattachment) until each has ended: the
//! executor's side of the scheduler's messages.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::commands::{self, Cancel, SubmitError};
use super::job::{read_job_record, JobId, JobRecord, JobState, JOBS_LOG};
use super::script::{heartbeat_interval, sbatch_flags, write_batch, ScriptSettings, Submission, SLURM_DIR};
use super::tail::{last_text, EventTail, LineTail, TailError, Tailed};
use super::{SlurmExecutor, ARRAY_LIMIT};
use crate::executor::{
    folder, worker_ending, Attempt, Control, Ending, Launch, Limits, Message, Report, Reports,
};
use crate::scheduler::{Alarm, Watchdog};
use crate::store::Failure;
use protocol::files;
use protocol::heartbeat::Heartbeat;

/// How often files are read and controls obeyed.
const TICK: Duration = Duration::from_millis(500);
/// Shortest interval between two `squeue` reads, when a job script has just noted an exit.
const URGENT_POLL: Duration = Duration::from_secs(1);
/// Final-looking states after which SLURM requeues a job submitted with `--requeue`.
const REQUEUED_AFTER: [&str; 3] = ["PREEMPTED", "NODE_FAIL", "BOOT_FAIL"];
/// How long such a state must last before the job counts as over.
const REQUEUE_GRACE: Duration = Duration::from_secs(5);

fn send(reports: &Reports, launch: &Launch, message: Message) {
    // The scheduler outlives every attempt; a closed channel means it is gone.
    let _ = reports.send(Report { run: launch.run.clone(), attempt: launch.attempt, message });
}

/// Submits or reattaches `batch`, then follows it to its end.
pub(super) async fn run(executor: SlurmExecutor, batch: Vec<Attempt>, limits: Limits, reports: Reports) {
    let (reattach, fresh): (Vec<Attempt>, Vec<Attempt>) =
        batch.into_iter().partition(|a| a.launch.reattach.is_some());
    let mut watched = Vec::new();
    for attempt in reattach {
        let handle = attempt.launch.reattach.clone().unwrap_or_default();
        let Some(job) = JobId::parse(&handle) else {
            let reason = format!("`{handle}` is not a SLURM job array task");
            send(&reports, &attempt.launch, Message::Ended(Ending::Broke(Failure::Lost { reason })));
            continue;
        };
        let events = EventTail::reattach(attempt.launch.run_dir.join(files::EVENTS), &attempt.launch.run);
        send(&reports, &attempt.launch, Message::Note(format!("reattached to SLURM job {job}")));
        watched.push(Watched::new(attempt, job, events, limits));
    }
    submit(&executor, fresh, limits, &reports, &mut watched).await;
    follow(&executor, watched, &reports).await;
}

/// Claims the run folders, writes the batch files and submits one array per [`ARRAY_LIMIT`]
/// runs. Runs that cannot be submitted end at once.
async fn submit(
    executor: &SlurmExecutor,
    fresh: Vec<Attempt>,
    limits: Limits,
    reports: &Reports,
    watched: &mut Vec<Watched>,
) {
    let mut ready = Vec::new();
    for attempt in fresh {
        match folder::claim(&attempt.launch.run_dir, true, &*executor.worker).await {
            Ok(point) => {
                let next_seq = point.next_seq;
                send(reports, &attempt.launch, Message::Resuming { next_seq, fallback: point.fallback });
                ready.push((attempt, next_seq));
            }
            Err(ending) => send(reports, &attempt.launch, Message::Ended(ending)),
        }
    }
    let script =
        ScriptSettings { program: executor.program.clone(), heartbeat: heartbeat_interval(limits.heartbeat) };
    let dir = executor.results_dir.join(SLURM_DIR);
    while !ready.is_empty() {
        let chunk: Vec<(Attempt, u64)> = ready.drain(..ready.len().min(ARRAY_LIMIT)).collect();
        let fail = |reason: String| {
            for (attempt, _) in &chunk {
                let ending = Ending::Broke(Failure::SpawnFailed { reason: reason.clone() });
                send(reports, &attempt.launch, Message::Ended(ending));
            }
        };
        let run_dirs: Vec<PathBuf> = chunk.iter().map(|(a, _)| a.launch.run_dir.clone()).collect();
        let files = match write_batch(&dir, &run_dirs, &script) {
            Ok(f) => f,
            Err(e) => {
                fail(format!("writing a job script in {}: {e}", dir.display()));
                continue;
            }
        };
        let flags = sbatch_flags(&Submission {
            settings: &executor.settings,
            job_name: &executor.job_name,
            tasks: chunk.len(),
            throttle: executor.throttle,
            workdir: &executor.workdir,
            output: &files.output,
        });
        let array = match commands::sbatch(&flags, &files.script).await {
            Ok(id) => id,
            Err(e @ SubmitError::Refused(_)) => {
                fail(e.to_string());
                continue;
            }
            // Perhaps queued: failed for good, never submitted again by this or a retry.
            Err(e @ SubmitError::Unparsed { .. }) => {
                for (attempt, _) in &chunk {
                    let ending = Ending::Failed(Failure::SpawnFailed { reason: e.to_string() });
                    send(reports, &attempt.launch, Message::Ended(ending));
                }
                continue;
            }
        };
        let bound = executor.throttle.map_or(String::new(), |k| format!(", at most {k} at once"));
        let note = format!(
            "submitted {} run(s) as SLURM job array {array} ({}{bound})",
            chunk.len(),
            files.script.display()
        );
        send(reports, &chunk[0].0.launch, Message::Note(note));
        for (index, (attempt, next_seq)) in chunk.into_iter().enumerate() {
            let job = JobId { array, index: index as u32 };
            send(reports, &attempt.launch, Message::Queued { handle: job.to_string() });
            let path = attempt.launch.run_dir.join(files::EVENTS);
            let events = EventTail::new(path, &attempt.launch.run, next_seq);
            watched.push(Watched::new(attempt, job, events, limits));
        }
    }
}

/// One attempt being followed.
struct Watched {
    launch: Launch,
    control: mpsc::UnboundedReceiver<Control>,
    job: JobId,
    events: EventTail,
    /// Follows `events.jsonl` unless it broke the protocol.
    events_ok: bool,
    log: LineTail,
    jobs_log: LineTail,
    /// When the job was first seen running (again, after a requeue).
    running: Option<Instant>,
    /// Silence and timeout while the job runs; the grace after a timeout's stop request.
    watchdog: Watchdog,
    /// How the attempt ends, decided before the job is over (a limit, a protocol violation).
    forced: Option<Ending>,
    /// The script noted something since the last `squeue` (a start or an exit).
    activity: bool,
    /// The script noted an exit: the job is about to be over.
    exiting: bool,
    /// Cancel the job at the next chance (a protocol violation, a kill request).
    cancel: Option<Cancel>,
    /// A filesystem error was already reported.
    io_noted: bool,
    /// When the files were last read.
    last_read: Option<Instant>,
    /// When the job was first seen in a state after which SLURM may requeue it.
    ended_seen: Option<Instant>,
    done: bool,
}

impl Watched {
    fn new(attempt: Attempt, job: JobId, events: EventTail, limits: Limits) -> Watched {
        let Attempt { launch, control } = attempt;
        let log = LineTail::at_end(launch.run_dir.join(files::WORKER_LOG));
        let jobs_log = LineTail::at_end(launch.run_dir.join(JOBS_LOG));
        Watched {
            launch,
            control,
            job,
            events,
            events_ok: true,
            log,
            jobs_log,
            running: None,
            watchdog: Watchdog::new(limits),
            forced: None,
            activity: false,
            exiting: false,
            cancel: None,
            io_noted: false,
            last_read: None,
            ended_seen: None,
            done: false,
        }
    }

    fn send(&self, reports: &Reports, message: Message) {
        send(reports, &self.launch, message);
    }

    fn end(&mut self, reports: &Reports, ending: Ending) {
        self.send(reports, Message::Ended(ending));
        self.done = true;
    }

    /// Reads what the worker and the script wrote since the last call; returns whether
    /// anything was written.
    fn read_files(&mut self, reports: &Reports) -> bool {
        let mut heard = false;
        if self.events_ok {
            match self.events.poll() {
                Ok(items) => {
                    heard |= !items.is_empty();
                    for item in items {
                        let message = match item {
                            Tailed::Resuming(next_seq) => Message::Resuming { next_seq, fallback: None },
                            Tailed::Event(event) => Message::Event(event),
                        };
                        self.send(reports, message);
                    }
                }
                Err(TailError::Protocol(reason)) => {
                    self.events_ok = false;
                    self.forced.get_or_insert(Ending::Failed(Failure::Protocol { reason }));
                    self.cancel = Some(Cancel::Terminate);
                }
                Err(e @ TailError::Io { .. }) => self.note_io(reports, e.to_string()),
            }
        }
        match self.log.poll() {
            Ok(lines) => {
                heard |= !lines.is_empty();
                let progress = lines.iter().rev().find_map(|l| Heartbeat::parse(l));
                if let Some(Heartbeat { task, tasks, .. }) = progress {
                    self.send(reports, Message::Progress { task, tasks });
                }
            }
            Err(e) => self
                .note_io(reports, format!("{}: {e}", self.launch.run_dir.join(files::WORKER_LOG).display())),
        }
        match self.jobs_log.poll() {
            Ok(lines) => {
                let id = self.job.to_string();
                for line in lines {
                    let mut words = line.split_whitespace();
                    let kind = words.next();
                    if words.next() == Some(id.as_str()) {
                        self.activity = true;
                        self.exiting = kind == Some("exit");
                    }
                }
            }
            Err(e) => self.note_io(reports, format!("{}: {e}", self.launch.run_dir.join(JOBS_LOG).display())),
        }
        heard
    }

    fn note_io(&mut self, reports: &Reports, message: String) {
        if !self.io_noted {
            self.io_noted = true;
            self.send(
                reports,
                Message::Note(format!("cannot read a file of SLURM job {}: {message}", self.job)),
            );
        }
    }

    /// Obeys the scheduler and the limits, reads the files when `read_every` has passed since
    /// the last read, and cancels the job when something decided to.
    async fn tend(&mut self, reports: &Reports, read_every: Duration) {
        loop {
            match self.control.try_recv() {
                Ok(Control::Stop) => {
                    // Ctrl-C stops the orchestrator, not the job.
                    self.read_files(reports);
                    self.end(reports, Ending::Detached);
                    return;
                }
                Ok(Control::Kill) => {
                    let reason = "cancelled by clorch".to_string();
                    self.forced.get_or_insert(Ending::Broke(Failure::Lost { reason }));
                    self.cancel = Some(Cancel::Terminate);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let heard = match self.last_read {
            Some(at) if now.duration_since(at) < read_every => false,
            _ => {
                self.last_read = Some(now);
                self.read_files(reports)
            }
        };
        if self.running.is_some() {
            if heard {
                self.watchdog.heard(now);
            }
            while let Some(alarm) = self.watchdog.alarm(now) {
                match alarm {
                    // An attempt already ending (a protocol violation, a kill) keeps its reason.
                    Alarm::Silent(_) | Alarm::TimedOut(_) if self.forced.is_some() => {}
                    Alarm::Silent(failure) => {
                        self.forced = Some(Ending::Broke(failure));
                        self.cancel = Some(Cancel::Terminate);
                    }
                    Alarm::TimedOut(failure) => {
                        self.forced = Some(Ending::Broke(failure));
                        // Checkpoint on the way out, so the next attempt resumes.
                        self.cancel = Some(Cancel::Signal);
                        self.watchdog.stop_requested(now);
                    }
                    Alarm::GraceOver => self.cancel = Some(Cancel::Terminate),
                }
            }
        }
        if let Some(how) = self.cancel.take() {
            if let Err(e) = commands::scancel(&[self.job], how).await {
                self.send(reports, Message::Note(format!("cannot cancel SLURM job {}: {e}", self.job)));
            }
        }
    }

    /// Takes the job's state from `squeue` (`None`: the controller no longer knows it).
    async fn observe(&mut self, state: Option<&JobState>, reports: &Reports) {
        let now = Instant::now();
        match state {
            Some(JobState::Running) if self.running.is_none() => {
                self.running = Some(now);
                self.watchdog.started(now);
                self.send(reports, Message::Started { handle: self.job.to_string() });
            }
            Some(JobState::Running) => self.ended_seen = None,
            Some(JobState::Waiting(state)) => {
                self.ended_seen = None;
                if self.running.take().is_some() {
                    self.watchdog.paused();
                    let note = format!(
                        "SLURM job {} is waiting again ({state}): requeued by the cluster; its worker resumes \
                         from its checkpoint",
                        self.job
                    );
                    self.send(reports, Message::Note(note));
                }
            }
            // A job the cluster may requeue (preempted, its node failed) is taken as over
            // only once it has not come back for a while: submitting it again as well would
            // give the run two jobs.
            Some(JobState::Ended(state)) if REQUEUED_AFTER.contains(&state.as_str()) => {
                match self.ended_seen {
                    None => {
                        self.ended_seen = Some(now);
                        self.exiting = true;
                    }
                    Some(at) if now.duration_since(at) >= REQUEUE_GRACE => {
                        self.finish(Some(state.clone()), reports).await
                    }
                    Some(_) => {}
                }
            }
            Some(JobState::Ended(state)) => self.finish(Some(state.clone()), reports).await,
            None => self.finish(None, reports).await,
        }
    }

    /// The job is over: reads the last of its files and ends the attempt.
    async fn finish(&mut self, state: Option<String>, reports: &Reports) {
        self.read_files(reports);
        let ending = match self.forced.take() {
            Some(ending) => ending,
            None => self.ending(state).await,
        };
        self.end(reports, ending);
    }

    async fn ending(&self, state: Option<String>) -> Ending {
        let dir = &self.launch.run_dir;
        let record = match read_job_record(dir, self.job) {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("{}: {e}", dir.join(JOBS_LOG).display());
                return Ending::Broke(Failure::Lost { reason });
            }
        };
        if let JobRecord::Exited(status) = record {
            return match status {
                126 | 127 => Ending::Broke(Failure::SpawnFailed {
                    reason: format!(
                        "SLURM job {} could not run clorch (exit status {status}; {}); it must be on a \
                         filesystem the nodes share",
                        self.job,
                        worker_reason(dir)
                    ),
                }),
                // Killed: by SLURM (its state says why: memory, time, a cancellation), or by
                // something else on the node.
                s if (129..=192).contains(&s) => match state.as_deref() {
                    Some(known @ ("OUT_OF_MEMORY" | "TIMEOUT" | "CANCELLED" | "NODE_FAIL" | "PREEMPTED")) => {
                        let reason = lost_reason(self.job, true, Ok(Some(known.to_string())));
                        Ending::Broke(Failure::Lost { reason })
                    }
                    _ => Ending::Broke(Failure::Signaled { signal: s - 128 }),
                },
                s => worker_ending(s, || worker_reason(dir)),
            };
        }
        let state = match state {
            Some(s) => Ok(Some(s)),
            None => match commands::sacct(self.job).await {
                Ok(s) => Ok(s.map(|s| match s {
                    JobState::Ended(name) | JobState::Waiting(name) => name,
                    JobState::Running => "RUNNING".to_string(),
                })),
                Err(e) => Err(e),
            },
        };
        let started = record == JobRecord::Started;
        Ending::Broke(Failure::Lost { reason: lost_reason(self.job, started, state) })
    }
}

/// The last thing the worker said in its log (its failure reason), without its prefix.
fn worker_reason(run_dir: &std::path::Path) -> String {
    last_text(&run_dir.join(files::WORKER_LOG))
        .and_then(|text| results::log::failure_reason(&text))
        .unwrap_or_else(|| "the worker wrote nothing to its log".to_string())
}

/// Why a job ended without its script noting the worker's exit status.
fn lost_reason(job: JobId, started: bool, state: Result<Option<String>, commands::CommandError>) -> String {
    let when = if started { "" } else { " before its worker started" };
    match state {
        Ok(Some(state)) => match state.as_str() {
            "CANCELLED" => format!("SLURM job {job} was cancelled{when}"),
            "TIMEOUT" => format!(
                "SLURM job {job} reached its time limit{when} before its worker could checkpoint (raise \
                 slurm.time or slurm.signal_seconds)"
            ),
            "OUT_OF_MEMORY" => format!("SLURM job {job} ran out of memory{when} (raise slurm.mem)"),
            "NODE_FAIL" => format!("the node of SLURM job {job} failed{when}"),
            "PREEMPTED" => format!("SLURM job {job} was preempted{when}"),
            other => format!(
                "SLURM job {job} ended as {other}{when} without its worker's exit status (its output is in \
                 the results folder's {SLURM_DIR}/ folder)"
            ),
        },
        Ok(None) => format!(
            "SLURM job {job} ended{when}, is no longer known to the controller nor to accounting, and left \
             no exit status"
        ),
        Err(e) => format!(
            "SLURM job {job} ended{when}, is no longer known to the controller, and left no exit status; \
             accounting cannot tell more ({e})"
        ),
    }
}

/// Follows `watched` until every attempt has ended.
async fn follow(executor: &SlurmExecutor, mut watched: Vec<Watched>, reports: &Reports) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_poll: Option<Instant> = None;
    let mut queue_noted = false;
    while !watched.is_empty() {
        tick.tick().await;
        // Files of running jobs are read every tick, less often when many run (a shared
        // filesystem serves every open); those of waiting jobs (whose script notes its start
        // there, which prompts a queue read) every second, up to the queue's pace when many
        // wait.
        let running = watched.iter().filter(|w| w.running.is_some()).count();
        let waiting = watched.len() - running;
        let running_every = TICK.max(Duration::from_millis(5).saturating_mul(running as u32));
        let waiting_every = Duration::from_millis(10)
            .saturating_mul(waiting as u32)
            .clamp(URGENT_POLL, executor.poll.max(URGENT_POLL));
        for w in watched.iter_mut() {
            let read_every = if w.running.is_some() { running_every } else { waiting_every };
            w.tend(reports, read_every).await;
        }
        watched.retain(|w| !w.done);
        let urgent = watched.iter().any(|w| w.activity || w.exiting || w.forced.is_some());
        let now = Instant::now();
        let due = match last_poll {
            None => true,
            Some(at) => {
                let since = now.duration_since(at);
                since >= executor.poll || (urgent && since >= URGENT_POLL)
            }
        };
        if !due || watched.is_empty() {
            continue;
        }
        last_poll = Some(now);
        let arrays: BTreeSet<u64> = watched.iter().map(|w| w.job.array).collect();
        let arrays: Vec<u64> = arrays.into_iter().collect();
        match commands::squeue(&arrays).await {
            Ok(states) => {
                if queue_noted {
                    queue_noted = false;
                    watched[0].send(reports, Message::Note("the SLURM queue can be read again".into()));
                }
                for w in watched.iter_mut() {
                    w.activity = false;
                    w.observe(states.get(&w.job), reports).await;
                }
            }
            // The controller may be restarting: keep the jobs, try again at the next poll.
            Err(e) if !queue_noted => {
                queue_noted = true;
                watched[0]
                    .send(reports, Message::Note(format!("cannot read the SLURM queue ({e}); retrying")));
            }
            Err(_) => {}
        }
        watched.retain(|w| !w.done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_jobs_say_what_happened() {
        let job = JobId { array: 5, index: 2 };
        let r = lost_reason(job, true, Ok(Some("CANCELLED".into())));
        assert_eq!(r, "SLURM job 5_2 was cancelled");
        let r = lost_reason(job, false, Ok(Some("TIMEOUT".into())));
        assert!(r.contains("before its worker started") && r.contains("slurm.time"), "{r}");
        let e = commands::CommandError {
            command: "sacct".into(),
            reason: "Slurm accounting storage is disabled".into(),
        };
        let r = lost_reason(job, true, Err(e));
        assert!(r.contains("no longer known") && r.contains("accounting storage is disabled"), "{r}");
    }
}
