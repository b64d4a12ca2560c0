//! Running one run: build the stream, network and method from a spec, train through the
//! stream, emit events, checkpoint, and resume from the newest valid checkpoint.

mod diagnostics;
mod event_log;
pub mod memory;
mod schedule;
mod sink;
mod snapshot;
mod trainable;
mod trainer;

pub use schedule::{cadence, tasks_evaluated_after, Cadence};
pub use sink::EventSink;
pub use trainable::{BuiltFor, Trainable};
pub use trainer::RunOutcome;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::method::{self, MethodError, Passes};
use crate::model::convnet::ConvNet;
use crate::model::layer::Network;
use crate::model::{self, Mlp};
use crate::optim::Optimizer;
use crate::protocol::{EventBody, RunSpec, PROTOCOL_VERSION};
use crate::rng;
use crate::stream::{self, StreamError};
use trainer::{Counters, OnlineBin, Position, Trainer};

/// Why a run could not start or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spec is malformed or of another protocol version.
    #[error("run spec: {0}")]
    Spec(String),
    /// The stream could not be built (missing or malformed data files, bad parameters).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The method could not be built or failed.
    #[error(transparent)]
    Method(MethodError),
    /// The loss became NaN or infinite.
    #[error("training diverged: the loss became non-finite at task {task}, step {step}")]
    Diverged {
        /// Task being trained.
        task: usize,
        /// Steps taken before the failing one.
        step: u64,
    },
    /// A plasticity diagnostic could not be computed.
    #[error("plasticity diagnostics: {0}")]
    Diagnostics(String),
    /// Writing events failed (the orchestrator went away, or the disk is full).
    #[error("writing events: {0}")]
    Output(std::io::Error),
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The run folder could not be created.
    #[error("run folder {path}: {source}")]
    RunDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Checks a spec's parts against each other, without data: the network's layers are known
/// kinds with valid parameters, in the form the engines compute (see [`model::layer`]); a
/// task-incremental method needs per-task heads; an online stream announces no task
/// boundaries, so it cannot feed per-task heads (which need the task id) or a method that
/// acts at task boundaries. The orchestrator runs this when it plans; a worker again at start,
/// where it also checks the network's shapes from the stream's real input.
pub fn check_spec(spec: &RunSpec) -> Result<(), String> {
    check_threads(spec)?;
    // A stream whose headers cannot be read is reported by the stream's own checks.
    let input = crate::stream::input_shape(&spec.stream).ok();
    Network::check(&spec.network, input).map_err(|e| format!("network: {e}"))?;
    if let Some(input) = input {
        check_conv(spec, &Network::plan(&spec.network, input, 1).map_err(|e| format!("network: {e}"))?)?;
    }
    let per_task_heads = spec.network.heads == crate::protocol::Heads::PerTask
        || crate::stream::head_per_task(&spec.stream).map_err(|e| e.to_string())?;
    if let Ok(m) = method::lookup(&spec.method.kind) {
        if m.needs_task_heads && !per_task_heads {
            return Err(format!(
                "method `{}` ({}) is task-incremental: it needs one output head per task \
                 (`network.heads: per_task`, or a task-incremental split MNIST)",
                spec.method.name, m.kind
            ));
        }
    }
    let tasks = crate::stream::tasks(&spec.stream).map_err(|e| e.to_string())?;
    method::check_stream(&spec.method, tasks).map_err(|e| e.to_string())?;
    if !crate::stream::is_online(&spec.stream) {
        return Ok(());
    }
    let kind = &spec.stream.kind;
    if spec.network.heads == crate::protocol::Heads::PerTask {
        return Err(format!(
            "`{kind}` is an online stream: the learner is not told which task an example belongs to, so \
             it cannot use per-task heads (`network.heads: per_task`)"
        ));
    }
    if let Ok(m) = method::lookup(&spec.method.kind) {
        if m.needs_task_boundaries {
            return Err(format!(
                "method `{}` ({}) acts at task boundaries, which the online stream `{kind}` does not announce",
                spec.method.name, m.kind
            ));
        }
    }
    Ok(())
}

/// `training.threads`: a positive count, at most [`MAX_THREADS`](crate::protocol::MAX_THREADS), for an
/// engine that has parallel matrix products (dfdx's autograd engine has none).
fn check_threads(spec: &RunSpec) -> Result<(), String> {
    let threads = spec.training.threads;
    if threads == 0 || threads > crate::protocol::MAX_THREADS {
        return Err(format!(
            "training.threads: expected 1 to {}, found {threads}",
            crate::protocol::MAX_THREADS
        ));
    }
    if threads > 1 && spec.network.engine == crate::protocol::Engine::Autograd {
        return Err(format!(
            "training.threads: {threads} threads speed up the fused and conv engines' matrix products; \
             `engine: autograd` runs on one thread (leave `threads` out, or use `engine: fused`)"
        ));
    }
    Ok(())
}

/// What a conv net asks of the rest of the spec: a method with a conv-net version, the
/// built-in engine (the autograd engine computes MLPs), and batches that give every
/// training-mode batch norm more than one value per channel.
fn check_conv(spec: &RunSpec, network: &Network) -> Result<(), String> {
    if !network.is_convolutional() {
        return Ok(());
    }
    if method::lookup(&spec.method.kind).is_ok() {
        method::build_conv(&spec.method).map_err(|e| e.to_string())?;
    }
    if spec.network.engine == crate::protocol::Engine::Autograd {
        return Err("network: `engine: autograd` computes multi-layer perceptrons; a conv net is trained \
                    by the built-in engine (`engine: fused`, the default)"
            .into());
    }
    let batch = if crate::stream::is_online(&spec.stream) { 1 } else { spec.training.batch_size.max(1) };
    for (i, layer) in network.layers.iter().enumerate() {
        let holds_norm = matches!(
            layer.part,
            crate::model::layer::Part::BatchNorm | crate::model::layer::Part::BasicBlock { .. }
        );
        let plane = match layer.output {
            crate::model::layer::Shape::Image { height, width, .. } => height * width,
            crate::model::layer::Shape::Vector(_) => 1,
        };
        if holds_norm && batch * plane <= 1 {
            return Err(format!(
                "network: layer {i} (`{}`) normalises over the batch, and a batch of {batch} gives it one \
                 value per channel; train with `training.batch_size` of at least 2",
                layer.spec.kind
            ));
        }
    }
    Ok(())
}

/// Shared between a running trainer and its host process: a stop request in, the position out.
/// Atomics, so the training loop pays a relaxed store per step and the host reads them from
/// another thread (for heartbeats) or a signal handler sets `stop`.
#[derive(Debug)]
pub struct RunControl {
    /// Set to ask the run to checkpoint and return [`RunOutcome::Interrupted`].
    pub stop: Arc<AtomicBool>,
    /// Stop (as by `stop`) once this many optimiser steps have been taken in total — a
    /// deterministic interruption point for tests and bounded debugging runs
    /// (`clorch worker --stop-after-steps`). `u64::MAX`: never.
    pub stop_at_step: AtomicU64,
    /// Task being trained.
    pub task: AtomicUsize,
    /// Optimiser steps taken.
    pub steps: AtomicU64,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            stop: Arc::default(),
            stop_at_step: AtomicU64::new(u64::MAX),
            task: AtomicUsize::new(0),
            steps: AtomicU64::new(0),
        }
    }
}

impl RunControl {
    /// Whether the run should stop now, having taken `steps` steps.
    pub(crate) fn should_stop(&self, steps: u64) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
            || steps >= self.stop_at_step.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Runs `spec` to the end of its stream (or until `control.stop` is set), writing events to `out` and,
/// when the spec has a run folder, to its `events.jsonl`; resumes from the newest checkpoint in
/// the run folder that verifies. A run that fails after it started emits a `failed` event
/// before returning the error.
pub fn run(spec: &RunSpec, out: Box<dyn Write + Send>, control: &RunControl) -> Result<RunOutcome, RunError> {
    if spec.protocol != PROTOCOL_VERSION {
        return Err(RunError::Spec(format!(
            "protocol version {} is not supported; this worker speaks version {PROTOCOL_VERSION}",
            spec.protocol
        )));
    }
    check_spec(spec).map_err(RunError::Spec)?;
    model::flush_denormals();
    // The method first: checking it is cheap, loading the stream's data is not.
    method::validate(&spec.method).map_err(RunError::Method)?;
    let stream = stream::build(&spec.stream, spec.seed)?;
    let info = stream.info().clone();
    let heads = if trainer::per_task_heads(spec, &info) { info.tasks } else { 1 };
    let plan = Network::plan(&spec.network, stream::input_shape(&spec.stream)?, info.head_outputs * heads)
        .map_err(|e| RunError::Spec(format!("network: {e}")))?;
    let mut init = rng::stream(spec.seed, "model.init", 0);
    let threads = spec.training.threads;
    if plan.is_convolutional() {
        let (input, layers) = plan.conv_specs().map_err(|e| RunError::Spec(format!("network: {e}")))?;
        let net =
            ConvNet::new(input, &layers, &mut init).map_err(|e| RunError::Spec(format!("network: {e}")))?;
        model::threads::with_threads(threads, || train(spec, stream, info, net, out, control))
            .map_err(RunError::Spec)?
    } else {
        let (sizes, activation) = plan.mlp().map_err(|e| RunError::Spec(format!("network: {e}")))?;
        let net = Mlp::new(&sizes, activation, &mut init);
        model::threads::with_threads(threads, || train(spec, stream, info, net, out, control))
            .map_err(RunError::Spec)?
    }
}

/// Trains `net` on `stream` as `spec` says: builds the method's version for the network's
/// family, resumes from the run folder's newest valid checkpoint or begins, and runs.
fn train<M: Trainable>(
    spec: &RunSpec,
    stream: Box<dyn stream::TaskStream>,
    info: stream::StreamInfo,
    net: M,
    out: Box<dyn Write + Send>,
    control: &RunControl,
) -> Result<RunOutcome, RunError> {
    let (method, optimizer_config) = M::build_method(&spec.method).map_err(RunError::Method)?;
    let optimizer = Optimizer::for_parameters(optimizer_config, net.parameters());
    let (batch_size, epochs) =
        if info.online { (1, 1) } else { (spec.training.batch_size.max(1), spec.training.epochs.max(1)) };
    let steps_per_task = {
        let n = stream.task(0).train.len().saturating_sub(spec.training.validation).max(1);
        (n.div_ceil(batch_size.min(n)) * epochs) as u64
    };
    let cadence = schedule::cadence(&spec.checkpoint, net.parameter_count(), batch_size, steps_per_task);

    // Held until the run returns.
    let mut _run_dir_lock = None;
    let resume = match &spec.run_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| RunError::RunDir { path: dir.clone(), source })?;
            _run_dir_lock = Some(lock_run_dir(dir)?);
            let search = snapshot::find(spec, dir)?;
            search.log();
            search.found
        }
        None => None,
    };
    let (next_seq, log_len) = resume.as_ref().map_or((0, 0), |r| (r.state.next_seq, r.state.log_len));
    let sink = EventSink::new(&spec.id, out, spec.run_dir.as_deref(), next_seq, log_len)
        .map_err(|e| RunError::Checkpoint(format!("reopening the event log: {e}")))?;
    let compute = M::Compute::for_network(&net, spec.network.engine, batch_size);
    let mut trainer = Trainer {
        spec,
        stream,
        info,
        net,
        optimizer,
        method,
        method_rng: rng::stream(spec.seed, "method", 0),
        compute,
        sink,
        cadence,
        batch_size,
        epochs,
        position: Position::default(),
        counters: Counters::default(),
        bin: OnlineBin::default(),
        control,
    };
    let result = match resume {
        Some(r) => snapshot::restore(&mut trainer, r).and_then(|_| trainer.run()),
        None => trainer.begin().and_then(|_| trainer.run()),
    };
    if let Err(e) = &result {
        if !matches!(e, RunError::Output(_)) {
            // Best effort: the error itself is what the caller reports.
            let _ = trainer.sink.emit(EventBody::Failed { reason: e.to_string() });
            let _ = trainer.sink.sync();
        }
    }
    result
}

/// Where a worker started on `spec` in `dir` would resume: the sequence number of the first
/// event it would emit (0 when it would start from scratch), the checkpoint it would resume
/// from, and the newer ones it would skip because they fail verification. The orchestrator
/// drops stored events from `next_seq` on before starting it, since the worker emits them
/// again, and records a fallback. Logs nothing: the worker reports the same findings itself.
pub fn resume_point(spec: &RunSpec, dir: &std::path::Path) -> Result<ResumePoint, RunError> {
    let search = snapshot::find(spec, dir)?;
    let rejected = search
        .rejected
        .iter()
        .map(|r| SkippedCheckpoint {
            file: r.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            summary: r.reason.summary(),
            reason: r.reason.without_path(),
        })
        .collect();
    Ok(ResumePoint {
        next_seq: search.found.as_ref().map_or(0, |f| f.state.next_seq),
        resumed_from: search.resumed_from().map(str::to_string),
        rejected,
    })
}

/// Where a worker would resume ([`resume_point`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// Sequence number of the first event the worker would emit.
    pub next_seq: u64,
    /// The checkpoint file it would resume from; `None`: from the beginning.
    pub resumed_from: Option<String>,
    /// Newer checkpoints it would skip because they fail verification, newest first.
    pub rejected: Vec<SkippedCheckpoint>,
}

/// A checkpoint [`resume_point`] skips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedCheckpoint {
    /// File name inside the run folder.
    pub file: String,
    /// A few words (`checksum mismatch`).
    pub summary: &'static str,
    /// The full reason, without the path.
    pub reason: String,
}

/// How long a worker waits for a previous worker of the same run to let go of the run folder
/// (an orphaned worker checkpointing on its way out after its orchestrator died).
const RUN_DIR_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Takes the run folder's lock, so two workers never write the same run's files: a new
/// attempt waits until the previous one has finished writing its last checkpoint.
fn lock_run_dir(dir: &std::path::Path) -> Result<std::fs::File, RunError> {
    let path = dir.join(crate::protocol::files::WORKER_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| RunError::RunDir { path: path.clone(), source })?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < RUN_DIR_LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RunError::Checkpoint(format!(
                    "{} is held by another worker of this run for over {} s",
                    path.display(),
                    RUN_DIR_LOCK_WAIT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(RunError::RunDir { path, source }),
        }
    }
}
