//! `clorch worker`: runs one run in this process. The orchestrator starts it as a child of its
//! own executable; researchers can also run a spec by hand.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use protocol::control::STOP_SIGNALS;
use protocol::heartbeat::Heartbeat;
use protocol::{exit, memory, RunSpec};
use workers::engine::{self, RunControl, RunError, RunOutcome};

/// Arguments of `clorch worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The run spec (JSON); read from standard input when absent or `-`.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Checkpoint and stop when standard input closes. The local executor passes it with a
    /// pipe, so workers stop (resumably) when their orchestrator dies, however it dies.
    #[arg(long)]
    pub watch_stdin: bool,
    /// Seconds between heartbeat lines on standard error (`clorch-progress task=… tasks=…
    /// step=…`); 0 turns them off. The orchestrator treats silence as a hung worker.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub heartbeat: u64,
    /// Checkpoint and stop (exit status 75) once the run has taken this many optimiser steps
    /// in total — a deterministic interruption, for debugging and for resume tests.
    #[arg(long, value_name = "STEPS")]
    pub stop_after_steps: Option<u64>,
}

/// Reads the spec, trains, and returns the exit status the protocol defines
/// ([`protocol::exit`]).
pub fn run(args: &WorkerArgs) -> i32 {
    let spec = match read_spec(args.spec.as_ref()) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("clorch worker: {message}");
            return exit::BAD_SPEC;
        }
    };
    if let Some(external) = &spec.method.worker {
        return hand_over(args, external);
    }
    // Before anything is allocated: a run that cannot fit is a bad spec, not three aborts.
    let estimate = match check_memory(&spec) {
        Ok(estimate) => estimate,
        Err(message) => {
            eprintln!("clorch worker: {message}");
            return exit::BAD_SPEC;
        }
    };
    let control = Arc::new(RunControl::default());
    if let Some(steps) = args.stop_after_steps {
        control.stop_at_step.store(steps, Ordering::Relaxed);
    }
    for signal in STOP_SIGNALS {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&control.stop)) {
            eprintln!("clorch worker: cannot install the handler for signal {signal}: {e}");
            return exit::FAILED;
        }
    }
    if args.watch_stdin {
        let stop = Arc::clone(&control.stop);
        std::thread::spawn(move || {
            // Blocks until the orchestrator closes the pipe or dies; anything read is ignored.
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    if args.heartbeat > 0 {
        let control = Arc::clone(&control);
        let tasks = workers::stream::tasks(&spec.stream).unwrap_or(0);
        let every = Duration::from_secs(args.heartbeat);
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            let heartbeat = Heartbeat {
                task: control.task.load(Ordering::Relaxed),
                tasks,
                step: control.steps.load(Ordering::Relaxed),
            };
            eprintln!("{heartbeat}");
        });
    }
    let stdout = Box::new(io::BufWriter::new(io::stdout()));
    let result = engine::run(&spec, stdout, &control);
    if let Some(peak) = workers::engine::memory::measured_peak() {
        tracing::info!(
            target: "memory",
            "peak resident memory {peak} bytes ({}); estimated {} bytes ({estimate})",
            memory::format_size(peak),
            estimate.total()
        );
    }
    match result {
        Ok(RunOutcome::Finished) => exit::FINISHED,
        Ok(RunOutcome::Interrupted { checkpoint }) => {
            match checkpoint {
                Some(path) => eprintln!("clorch worker: stopped; resumable from {}", path.display()),
                None => eprintln!("clorch worker: stopped (no run folder, so nothing to resume from)"),
            }
            exit::INTERRUPTED
        }
        Err(e) => {
            eprintln!("clorch worker: {e}");
            match e {
                RunError::Spec(_) | RunError::Stream(_) => exit::BAD_SPEC,
                RunError::Method(workers::method::MethodError::UnknownKind { .. })
                | RunError::Method(workers::method::MethodError::Parameter { .. }) => exit::BAD_SPEC,
                RunError::Diverged { .. } | RunError::Method(_) | RunError::Diagnostics(_) => exit::FAILED,
                // I/O trouble (a full disk, a broken pipe, a torn checkpoint) may pass: retry.
                RunError::Output(_) | RunError::Checkpoint(_) | RunError::RunDir { .. } => exit::TRANSIENT,
            }
        }
    }
}

/// Replaces this process with the spec's external worker (`docs/protocol.md`, "External
/// workers"), so that the executors start external workers exactly as built-in ones: same
/// process, process group, pipes, signals and exit status. Returns only when that fails.
fn hand_over(args: &WorkerArgs, external: &protocol::WorkerCommand) -> i32 {
    use std::os::unix::process::CommandExt;
    let Some(spec) = args.spec.as_ref().filter(|p| p.as_os_str() != "-") else {
        eprintln!(
            "clorch worker: an external worker's spec must be a file (--spec FILE), not standard input"
        );
        return exit::BAD_SPEC;
    };
    // The worker runs in its own folder, so the spec's path must not depend on ours.
    let spec = std::path::absolute(spec).unwrap_or_else(|_| spec.clone());
    let error = std::process::Command::new(runner::external::program(external))
        .args(&external.command[1..])
        .args(runner::external::attempt_args(&spec, args.watch_stdin, args.heartbeat))
        .current_dir(&external.dir)
        .exec();
    eprintln!(
        "clorch worker: cannot start `{}` in {}: {error}",
        runner::external::shown(external),
        external.dir.display()
    );
    exit::BAD_SPEC
}

/// The run's estimated peak memory, checked against this worker's limit
/// ([`memory::worker_limit`]).
fn check_memory(spec: &RunSpec) -> Result<memory::MemoryEstimate, String> {
    if spec.protocol != protocol::PROTOCOL_VERSION {
        // The engine refuses it with the reason; there is nothing to estimate.
        return Ok(memory::MemoryEstimate::default());
    }
    let limit = memory::worker_limit()?;
    let estimate = workers::engine::memory::estimate(spec)?;
    let Some(limit) = limit.filter(|&l| estimate.total() > l) else { return Ok(estimate) };
    let source = if std::env::var_os(memory::MAX_MEMORY_ENV).is_some() {
        format!("{} set by `clorch run --max-memory`, or by hand", memory::MAX_MEMORY_ENV)
    } else {
        "the memory this machine has available".to_string()
    };
    Err(format!("the run needs {estimate}; the memory limit is {} ({source})", memory::format_size(limit)))
}

fn read_spec(path: Option<&PathBuf>) -> Result<RunSpec, String> {
    let (name, text) = match path {
        Some(p) if p.as_os_str() != "-" => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            (p.display().to_string(), text)
        }
        _ => {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("reading the spec from standard input: {e}"))?;
            ("<stdin>".to_string(), text)
        }
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    let spec: RunSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        let message = inner.to_string();
        let message = message.split(" at line ").next().unwrap_or_default().to_string();
        format!("{name}:{}:{}: {}: {message}", inner.line(), inner.column(), e.path())
    })?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use protocol::control;

    /// The protocol numbers its signals as Linux does; the handlers are installed by number.
    #[test]
    fn the_protocol_signals_are_the_platform_ones() {
        use signal_hook::consts::{SIGINT, SIGKILL, SIGTERM, SIGUSR1};
        assert_eq!(
            (control::STOP, control::INTERRUPT, control::WARNING, control::KILL),
            (SIGTERM, SIGINT, SIGUSR1, SIGKILL)
        );
    }
}
