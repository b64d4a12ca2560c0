//! The dispatcher loop.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::EventBody;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clock::Clock;
use super::data_watch::DataWatch;
use super::events::{Board, Running, SchedulerEvent};
use super::progress::Progress;
use super::queue::RunQueue;
use super::reporter::{ReportError, Reporter};
use super::retry::{attempt_ending, Backoff, RetryPolicy, Verdict};
use super::status_file::StatusFile;
use super::{Control, Message};
use crate::executor::{Attempt, Ending, Executor, Launch, Limits, Report};
use crate::plan::Plan;
use crate::status::RunLine;
use crate::store::{self, Failure, RunLabels, RunRecord, RunStatus, Store, StoreError};
use crate::worker_side::WorkerSide;
use protocol::files;
use protocol::heartbeat::Heartbeat;

/// How the scheduler runs a plan.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Workers at once.
    pub parallel: usize,
    /// Attempts per run (broken attempts are retried until this many have failed).
    pub max_attempts: u32,
    /// Limits of each attempt.
    pub limits: Limits,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Run again the runs that failed in an earlier `clorch run`.
    pub retry_failed: bool,
    /// Draw the progress bar (when standard error is a terminal).
    pub show_progress: bool,
    /// Print only what needs attention: no progress bar, no per-run `finished`, `resuming` or
    /// `retrying` lines and no executor notes; failures and stop notices are still printed.
    pub quiet: bool,
    /// The time, for back-off deadlines, attempt wall times and recorded timestamps.
    pub clock: Arc<dyn Clock>,
    /// The worker implementation: the fingerprints of data folders, checked again before
    /// each attempt starts.
    pub worker: Arc<dyn WorkerSide>,
}

/// What a call to [`execute`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Runs of the plan.
    pub total: usize,
    /// Runs that were already finished and skipped.
    pub skipped_finished: usize,
    /// Runs that had failed before and were skipped.
    pub skipped_failed: usize,
    /// Runs finished in this call.
    pub finished: usize,
    /// Runs that failed in this call.
    pub failed: usize,
    /// Whether a signal stopped the call before every run ended.
    pub stopped: bool,
    /// Runs left unfinished (resumable).
    pub unfinished: usize,
    /// Runs whose attempts go on without the scheduler after a stop (SLURM jobs left queued or
    /// running); the next `clorch run` reattaches to them.
    pub detached: usize,
}

/// Why the scheduler stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The store failed (a full disk, an I/O error).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A reporter failed (the status file could not be written).
    #[error("store: {0}")]
    Report(#[from] ReportError),
    /// The runtime or a signal handler could not be set up.
    #[error("{0}")]
    Setup(String),
    /// A run's last attempt may still be going under another executor; starting another
    /// worker would give the run two. Nothing was started.
    #[error("run {run}: {reason}")]
    Refused {
        /// The run id.
        run: String,
        /// Why, and what to do.
        reason: String,
    },
}

struct Active {
    attempt: u32,
    control: mpsc::UnboundedSender<Control>,
    task: Option<usize>,
    saw_finished: bool,
    protocol: Option<String>,
    started: Instant,
}

struct Dispatcher<'a> {
    store: &'a Store,
    executor: Box<dyn Executor>,
    settings: &'a Settings,
    clock: &'a dyn Clock,
    retry: RetryPolicy,
    order: Vec<String>,
    records: HashMap<String, RunRecord>,
    queue: RunQueue,
    /// Queued runs whose last attempt may still be going (by its handle): watched again
    /// instead of started anew.
    reattach: HashMap<String, String>,
    broken: HashMap<String, u32>,
    active: HashMap<String, Active>,
    reports: mpsc::UnboundedSender<Report>,
    reporter: &'a mut dyn Reporter,
    outcome: Outcome,
    stopping: u32,
    data: DataWatch,
    /// After a signal: when attempts still not ended are given up on (the backstop that
    /// makes Ctrl-C end `clorch run` whatever an executor or worker is stuck in).
    give_up_at: Option<Instant>,
}

/// How long attempts may take to end after the grace of a first signal, or after a second
/// signal killed them, before the scheduler stops waiting for them.
const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// Runs `plan`'s unfinished runs. Blocks until every run ended, or a signal stopped it.
pub fn execute(
    plan: &Plan,
    results_dir: &Path,
    store: &Store,
    executor: Box<dyn Executor>,
    settings: &Settings,
) -> Result<Outcome, SchedulerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SchedulerError::Setup(format!("starting the async runtime: {e}")))?;
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(Progress::new(plan.runs.len(), settings.show_progress && !settings.quiet, settings.quiet)),
        Box::new(StatusFile::new(
            results_dir.to_path_buf(),
            plan.recipe.name.clone(),
            settings.clock.clone(),
        )),
    ];
    runtime.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut d = Dispatcher::prepare(plan, results_dir, store, executor, settings, tx, &mut reporters)?;
        d.run(rx).await?;
        Ok(d.outcome)
    })
}

/// The last lines of a worker's log, for failed runs (heartbeats, which a SLURM worker writes
/// to its log, left out).
fn log_tail(dir: &Path, lines: usize) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(files::WORKER_LOG)).ok()?;
    let tail: Vec<&str> = text.lines().rev().filter(|l| !Heartbeat::is_heartbeat(l)).take(lines).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    (!tail.is_empty()).then(|| tail.join("\n"))
}

impl<'a> Dispatcher<'a> {
    fn prepare(
        plan: &Plan,
        results_dir: &'a Path,
        store: &'a Store,
        executor: Box<dyn Executor>,
        settings: &'a Settings,
        reports: mpsc::UnboundedSender<Report>,
        reporter: &'a mut dyn Reporter,
    ) -> Result<Self, SchedulerError> {
        let mut d = Dispatcher {
            store,
            executor,
            settings,
            clock: settings.clock.as_ref(),
            retry: RetryPolicy { max_attempts: settings.max_attempts, backoff: settings.backoff },
            order: Vec::new(),
            records: HashMap::new(),
            queue: RunQueue::default(),
            reattach: HashMap::new(),
            broken: HashMap::new(),
            active: HashMap::new(),
            reports,
            reporter,
            outcome: Outcome { total: plan.runs.len(), ..Outcome::default() },
            stopping: 0,
            data: DataWatch::new(&plan.recipe),
            give_up_at: None,
        };
        // First, before anything changes: no run may get a second worker.
        for planned in &plan.runs {
            let Some(record) = store.run(&planned.spec.id)? else { continue };
            let going = matches!(record.status, RunStatus::Running | RunStatus::Interrupted);
            if let Some(reason) =
                record.executor_job.as_deref().filter(|_| going).and_then(|h| d.executor.refuses(h))
            {
                return Err(SchedulerError::Refused { run: record.id, reason });
            }
        }
        for (order, planned) in plan.runs.iter().enumerate() {
            let id = planned.spec.id.clone();
            let dir = store::run_dir(results_dir, &id);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            let mut spec = planned.spec.clone();
            spec.run_dir = Some(dir.clone());
            // Labels come from this plan, also for runs an earlier plan created: what varies
            // (and so labels a run) depends on the whole recipe, not on the run alone.
            let labels = RunLabels {
                stream: planned.stream.clone(),
                method: planned.method.clone(),
                grid: planned.grid.clone(),
                seed: planned.seed,
            };
            let mut record = match store.run(&id)? {
                Some(mut r) => {
                    r.order = order as u64;
                    r.spec = spec;
                    r.labels = labels;
                    r
                }
                None => RunRecord::new(order as u64, spec, labels, planned.tasks),
            };
            store::write_run_spec(&dir, &record.spec).map_err(StoreError::from)?;
            // An attempt an earlier call left going (a SLURM job after Ctrl-C; a rebuilt store
            // says `interrupted` for it) is watched again, not started twice.
            let going = matches!(record.status, RunStatus::Running | RunStatus::Interrupted);
            let handle = record.executor_job.clone().filter(|_| going);
            match &record.status {
                RunStatus::Finished => d.outcome.skipped_finished += 1,
                RunStatus::Failed { .. } if !settings.retry_failed => d.outcome.skipped_failed += 1,
                _ => {
                    if let Some(handle) = handle.filter(|h| d.executor.can_reattach(h)) {
                        d.reattach.insert(id.clone(), handle);
                    }
                    record.status =
                        if d.reattach.contains_key(&id) { RunStatus::Running } else { RunStatus::Pending };
                    d.queue.push(id.clone());
                }
            }
            store.save_run(&record)?;
            d.order.push(id.clone());
            d.records.insert(id, record);
        }
        store.flush()?;
        tracing::info!(
            "{} runs planned: {} to run, {} finished and {} failed skipped, {} to watch again",
            plan.runs.len(),
            d.queue.len(),
            d.outcome.skipped_finished,
            d.outcome.skipped_failed,
            d.reattach.len()
        );
        Ok(d)
    }

    fn label(&self, id: &str) -> String {
        let r = &self.records[id];
        let grid = r.labels.grid_text();
        let grid = if grid.is_empty() { String::new() } else { format!(" {grid}") };
        format!("{} {}{grid} seed {}", &id[..id.len().min(8)], r.labels.method, r.labels.seed)
    }

    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Report>) -> Result<(), SchedulerError> {
        let setup = |e: std::io::Error| SchedulerError::Setup(format!("installing a signal handler: {e}"));
        let mut interrupt = signal(SignalKind::interrupt()).map_err(setup)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(setup)?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            self.launch_ready()?;
            if self.active.is_empty() && (self.stopping > 0 || self.queue.is_empty()) {
                break;
            }
            tokio::select! {
                Some(report) = rx.recv() => self.handle(report)?,
                _ = interrupt.recv() => self.stop()?,
                _ = terminate.recv() => self.stop()?,
                _ = tick.tick() => self.refresh()?,
                _ = tokio::time::sleep_until(self.give_up_at.unwrap_or_else(Instant::now)),
                    if self.give_up_at.is_some() => self.give_up()?,
            }
        }
        self.outcome.stopped = self.stopping > 0;
        self.outcome.unfinished = self.records.values().filter(|r| !r.status.is_done()).count();
        let board = self.board();
        self.reporter.report(&SchedulerEvent::Ended(&board))?;
        self.store.flush()?;
        Ok(())
    }

    /// A first signal asks every worker to checkpoint and stop (or, for attempts that go on
    /// without the scheduler, stops watching them); a second kills them (they resume from
    /// their last scheduled checkpoint).
    fn stop(&mut self) -> Result<(), SchedulerError> {
        self.stopping += 1;
        let control = if self.stopping == 1 {
            let notice = self.executor.stop_notice(self.active.len());
            self.reporter.report(&SchedulerEvent::StopRequested { notice: &notice })?;
            Control::Stop
        } else {
            self.reporter.report(&SchedulerEvent::KillRequested)?;
            Control::Kill
        };
        for a in self.active.values() {
            let _ = a.control.send(control);
        }
        // A grace too long to add to now leaves only the second signal's deadline.
        let now = self.clock.now();
        let deadline = match control {
            Control::Stop => {
                self.settings.limits.grace.checked_add(GIVE_UP_AFTER).and_then(|d| now.checked_add(d))
            }
            Control::Kill => now.checked_add(GIVE_UP_AFTER),
        };
        self.give_up_at = match (self.give_up_at, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    /// The backstop after a signal: attempts that have not ended by now (a worker that
    /// survives SIGKILL in the kernel, an executor stuck in I/O) are killed once more and
    /// recorded as interrupted without waiting for them, so `clorch run` ends.
    fn give_up(&mut self) -> Result<(), SchedulerError> {
        self.give_up_at = None;
        let stuck: Vec<String> =
            self.order.iter().filter(|id| self.active.contains_key(*id)).cloned().collect();
        for id in stuck {
            let _ = self.active[&id].control.send(Control::Kill);
            tracing::warn!(run = %id, "the attempt did not end after the stop; no longer waiting for it");
            let reason = "did not end after it was stopped and killed; no longer waited for".to_string();
            self.ended(&id, Ending::Broke(Failure::Lost { reason }))?;
        }
        Ok(())
    }

    fn launch_ready(&mut self) -> Result<(), SchedulerError> {
        let capacity = self.executor.capacity(self.settings.parallel);
        let admitted = self.queue.admit(self.clock.now(), self.active.len(), capacity, self.stopping == 0);
        let mut batch = Vec::new();
        for id in admitted {
            batch.extend(self.launch(&id)?);
        }
        if !batch.is_empty() {
            self.executor.start(batch, self.settings.limits, self.reports.clone());
        }
        Ok(())
    }

    /// Makes `id` active and returns its attempt, for the executor to start (or to watch
    /// again, for a run whose attempt an earlier call left going); `None` when the attempt
    /// ended before it started, its data having changed since the plan.
    fn launch(&mut self, id: &str) -> Result<Option<Attempt>, SchedulerError> {
        let record = self.records.get_mut(id).expect("queued runs have records");
        let dir = record.spec.run_dir.clone().expect("the scheduler sets every run folder");
        let reattach = self.reattach.remove(id);
        if reattach.is_none() {
            record.attempts += 1;
            // The new attempt's handle arrives with its `Queued` or `Started` message; until
            // then no stale one may be taken for it.
            record.executor_job = None;
            let t = self.clock.unix_seconds();
            record.times.last_started = Some(t);
            record.times.first_started.get_or_insert(t);
        }
        record.attempts = record.attempts.max(1);
        record.status = RunStatus::Running;
        self.store.note_run(record)?;
        let attempt = record.attempts;
        match &reattach {
            Some(handle) => {
                tracing::debug!(run = %id, attempt, "watching attempt {attempt} again ({handle})")
            }
            None => tracing::debug!(run = %id, attempt, "starting attempt {attempt}"),
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        self.active.insert(
            id.to_string(),
            Active {
                attempt,
                control,
                task: None,
                saw_finished: false,
                protocol: None,
                started: self.clock.now(),
            },
        );
        if reattach.is_none() {
            let stream = self.records[id].spec.stream.clone();
            if let Err(reason) = self.data.check(&stream, &*self.settings.worker) {
                self.ended(id, Ending::Failed(Failure::Reported { reason }))?;
                return Ok(None);
            }
        }
        let launch = Launch { run: id.to_string(), attempt, run_dir: dir, reattach };
        Ok(Some(Attempt { launch, control: control_rx }))
    }

    fn handle(&mut self, report: Report) -> Result<(), SchedulerError> {
        let Report { run, attempt, message } = report;
        if let Message::Note(text) = &message {
            self.reporter.report(&SchedulerEvent::Note(text))?;
            return Ok(());
        }
        let Some(active) = self.active.get_mut(&run).filter(|a| a.attempt == attempt) else {
            return Ok(()); // a late message of an attempt already ended
        };
        let record = self.records.get_mut(&run).expect("active runs have records");
        match message {
            Message::Resuming { next_seq, fallback } => {
                tracing::debug!(run = %run, attempt, next_seq, "worker resumes at event {next_seq}");
                if let Some(mut fallback) = fallback {
                    fallback.attempt = attempt;
                    for r in &fallback.rejected {
                        tracing::warn!(
                            target: "checkpoint",
                            "run {run} attempt {attempt}: {} failed verification ({}); {}",
                            r.file,
                            r.reason,
                            fallback.resumed_from.as_deref().map_or_else(
                                || "starting from the beginning".to_string(),
                                |f| format!("resuming from the older {f}")
                            )
                        );
                    }
                    record.checkpoint_fallback = Some(fallback);
                    self.store.save_run(record)?;
                }
                // The worker emits everything from `next_seq` on again: drop those events so
                // they are replaced, not mixed with a previous attempt's.
                self.store.remove_events_from(&run, next_seq)?;
                if next_seq == 0 {
                    record.last_checkpoint = None;
                    record.progress.tasks_done = 0;
                }
                record.progress.last_seq = next_seq.checked_sub(1);
            }
            Message::Queued { handle } => {
                // Saved at once: a `clorch run` started after this one dies reattaches to the
                // job instead of submitting the run again.
                record.executor_job = Some(handle);
                record.times.queued_since = Some(self.clock.unix_seconds());
                self.store.save_run(record)?;
            }
            Message::Started { handle } => {
                let fresh = record.executor_job.as_deref() != Some(handle.as_str());
                record.executor_job = Some(handle);
                active.started = self.clock.now();
                let t = self.clock.unix_seconds();
                record.times.last_started = Some(t);
                // The wait in the queue ends here; it is not run time.
                let waited = record.times.queued_since.take().is_some_and(|since| {
                    let waited = t.saturating_sub(since) as f64;
                    record.times.queue_seconds = Some(record.times.queue_seconds.unwrap_or(0.0) + waited);
                    if record.attempts <= 1 {
                        record.times.first_started = Some(t);
                    }
                    true
                });
                if fresh || waited {
                    self.store.save_run(record)?;
                }
            }
            Message::Note(_) => {}
            Message::Progress { task, .. } => active.task = Some(task),
            Message::Event(event) => match self.store.ingest(&event) {
                Ok(_) => {
                    record.observe(&event, Some(self.clock.unix_seconds()));
                    match &event.body {
                        EventBody::TaskStarted { task, .. } => active.task = Some(*task),
                        EventBody::Finished { .. } => active.saw_finished = true,
                        EventBody::Checkpoint { .. } => {
                            self.store.flush()?;
                            self.store.save_run(record)?;
                        }
                        _ => {}
                    }
                }
                Err(StoreError::EventConflict { .. }) if active.protocol.is_none() => {
                    active.protocol = Some(format!(
                        "event {} differs from the one stored under the same sequence number (a non-deterministic worker?)",
                        event.seq
                    ));
                    let _ = active.control.send(Control::Kill);
                }
                Err(StoreError::EventConflict { .. }) => {}
                Err(e) => return Err(e.into()),
            },
            Message::Ended(ending) => self.ended(&run, ending)?,
        }
        Ok(())
    }

    fn ended(&mut self, id: &str, ending: Ending) -> Result<(), SchedulerError> {
        let active = self.active.remove(id).expect("ended attempts are active");
        let label = self.label(id);
        let record = self.records.get_mut(id).expect("active runs have records");
        let dir = record.spec.run_dir.clone().unwrap_or_default();
        let t = self.clock.unix_seconds();
        let elapsed = self.clock.now().saturating_duration_since(active.started).as_secs_f64();
        let detached = matches!(ending, Ending::Detached);
        match record.times.queued_since {
            // Its job never started: the time was spent waiting in the queue (where a detached
            // job goes on waiting, counted when it starts or ends).
            Some(since) if !detached => {
                let waited = t.saturating_sub(since) as f64;
                record.times.queue_seconds = Some(record.times.queue_seconds.unwrap_or(0.0) + waited);
                record.times.queued_since = None;
            }
            Some(_) => {}
            None => record.times.wall_seconds = Some(record.times.wall_seconds.unwrap_or(0.0) + elapsed),
        }
        let ending = attempt_ending(ending, active.saw_finished, active.protocol);
        let broken = self.broken.entry(id.to_string()).or_default();
        let label = label.as_str();
        match self.retry.judge(ending, self.stopping > 0, broken) {
            Verdict::Detached => {
                // The attempt goes on; its handle stays, and the next call reattaches to it.
                record.status = RunStatus::Running;
                self.outcome.detached += 1;
            }
            Verdict::Finished => {
                record.status = RunStatus::Finished;
                record.times.finished = Some(t);
                self.outcome.finished += 1;
                self.reporter.report(&SchedulerEvent::RunFinished { label, seconds: elapsed })?;
            }
            Verdict::Interrupted { failure } => {
                if failure.is_some() {
                    record.last_failure = failure;
                }
                record.status = RunStatus::Interrupted;
            }
            Verdict::Resume => {
                record.status = RunStatus::Pending;
                self.queue.push(id.to_string());
                self.reporter.report(&SchedulerEvent::RunResuming { label })?;
            }
            Verdict::Failed(failure) => {
                record.log_tail = log_tail(&dir, 20);
                self.reporter.report(&SchedulerEvent::RunFailed {
                    label,
                    failure: &failure,
                    attempts: None,
                })?;
                record.last_failure = Some(failure.clone());
                record.status = RunStatus::Failed { failure };
                self.outcome.failed += 1;
            }
            Verdict::Retry { failure, attempt, of, delay } => {
                tracing::info!(run = %id, "attempt broke ({failure}); attempt {attempt} of {of} in {delay:?}");
                record.log_tail = log_tail(&dir, 20);
                let event = SchedulerEvent::RetryScheduled { label, failure: &failure, attempt, of, delay };
                self.reporter.report(&event)?;
                record.last_failure = Some(failure);
                record.status = RunStatus::Pending;
                self.queue.push_at(self.clock.now() + delay, id.to_string());
            }
            Verdict::Exhausted { failure, attempts } => {
                record.log_tail = log_tail(&dir, 20);
                let event = SchedulerEvent::RunFailed { label, failure: &failure, attempts: Some(attempts) };
                self.reporter.report(&event)?;
                record.last_failure = Some(failure.clone());
                record.status = RunStatus::Failed { failure };
                self.outcome.failed += 1;
            }
        }
        // Start the next run before the bookkeeping of this one, so its worker starts while
        // the record is written (the orchestration overhead overlaps with work).
        self.launch_ready()?;
        // run.json is durable; the store follows within sled's flush interval (and is flushed
        // at checkpoints and at exit) — after a crash it is repaired from the run folders.
        self.store.save_run(&self.records[id])?;
        self.refresh()
    }

    /// The state of every run now, for the reporters.
    fn board(&self) -> Board {
        let mut board = Board {
            total: self.order.len(),
            done: self.records.values().filter(|r| r.status == RunStatus::Finished).count(),
            failed: self.records.values().filter(|r| matches!(r.status, RunStatus::Failed { .. })).count(),
            work: 0.0,
            running: Vec::new(),
            runs: Vec::with_capacity(self.order.len()),
        };
        board.work = board.done as f64;
        for id in &self.order {
            let r = &self.records[id];
            let active = self.active.get(id);
            if let Some(a) = active {
                let task = a.task.unwrap_or(r.progress.tasks_done);
                let tasks = r.progress.tasks.max(1);
                board.work += task as f64 / tasks as f64;
                board.running.push(Running { label: self.label(id), task, tasks });
            }
            board.runs.push(RunLine::of(r, active.and_then(|a| a.task)));
        }
        board
    }

    fn refresh(&mut self) -> Result<(), SchedulerError> {
        let board = self.board();
        self.reporter.report(&SchedulerEvent::Progress(&board))?;
        Ok(())
    }
}
