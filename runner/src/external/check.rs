//! `clorch worker-check`: does a program keep the worker protocol? Run for worker authors
//! before they put a worker under `clorch run`, where a violation fails runs.
//!
//! The check runs the worker on a tiny spec three times in scratch run folders: once
//! uninterrupted (every line sealed and of this run, `seq` from 0 without gaps, `started`
//! first and `finished` last, tasks in order, `events.jsonl` equal to standard output,
//! heartbeats), once asked to stop mid-stream with `SIGTERM` and started again, once killed
//! with `SIGKILL` and started again. Each restart must begin at the resume point its
//! `resume.json` gives, and the run's final `events.jsonl` must equal the uninterrupted one
//! byte for byte — or, for workers declared nondeterministic (GPU kernels), event for event
//! in kind and order. A spec of an unknown protocol version must be refused with `BAD_SPEC`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use protocol::heartbeat::Heartbeat;
use protocol::{exit, files, line, Event, EventBody, RunSpec, WorkerCommand};

use super::command::{attempt_args, program, shown};

/// How long one attempt of the tiny spec may take.
pub const ATTEMPT_LIMIT: Duration = Duration::from_secs(180);

/// One check and what came of it.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was checked, in a few words.
    pub name: String,
    /// What was found: `Ok` with a note, or `Err` saying exactly where it went wrong.
    pub outcome: Result<String, String>,
}

/// Options of a check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Compare resumed runs by event kinds and order only, not bytes.
    pub nondeterministic: bool,
}

/// Runs every check of `worker` on `spec` (its `run_dir` is replaced by folders under
/// `scratch`), reporting each step to `report` as it completes. Returns whether all passed.
pub fn check(
    worker: &WorkerCommand,
    spec: &RunSpec,
    scratch: &Path,
    options: &CheckOptions,
    report: &mut dyn FnMut(&Step),
) -> bool {
    let mut ok = true;
    let mut step = |name: &str, outcome: Result<String, String>| {
        ok &= outcome.is_ok();
        report(&Step { name: name.to_string(), outcome });
    };

    let refusal = refuses_other_versions(worker, spec, &scratch.join("bad-spec"));
    step("refuses a spec of another protocol version", refusal);

    let dir = scratch.join("uninterrupted");
    let reference = match Attempt::run(worker, spec, &dir, None) {
        Ok(attempt) => attempt,
        Err(e) => {
            step("runs the spec to the end", Err(e));
            return false;
        }
    };
    let whole = reference.events(spec, 0).and_then(|events| {
        finished_cleanly(&reference, &events)?;
        order(&events)?;
        same_as_log(&reference, &dir)?;
        Ok(events)
    });
    let events = match whole {
        Ok(events) => {
            let note = format!("{} events in {:.1} s", events.len(), reference.elapsed.as_secs_f64());
            step("runs the spec to the end, every event sealed, numbered and in order", Ok(note));
            events
        }
        Err(e) => {
            step("runs the spec to the end, every event sealed, numbered and in order", Err(e));
            return false;
        }
    };
    step("writes heartbeats", heartbeats(&reference));

    // Interrupt where the stream is half done, at an event boundary the worker reached.
    let middle = (events.len() as u64 / 2).max(1);
    for (signal, name) in
        [(Signal::SIGTERM, "stopped with SIGTERM"), (Signal::SIGKILL, "killed with SIGKILL")]
    {
        let dir = scratch.join(signal.as_str().to_lowercase());
        let outcome = interrupted_and_resumed(worker, spec, &dir, (middle, signal), &reference, options);
        step(&format!("{name} at event {middle}, resumes to the same events"), outcome);
    }
    ok
}

/// A spec with `protocol` 999 must end in `BAD_SPEC` with a reason.
fn refuses_other_versions(worker: &WorkerCommand, spec: &RunSpec, dir: &Path) -> Result<String, String> {
    let mut bad = spec.clone();
    bad.protocol = 999;
    let attempt = Attempt::run(worker, &bad, dir, None)?;
    match attempt.status.code() {
        Some(exit::BAD_SPEC) => Ok(format!("exit {}: {}", exit::BAD_SPEC, attempt.last_words())),
        other => Err(format!(
            "expected exit status {} (BAD_SPEC), got {}; stderr: {}",
            exit::BAD_SPEC,
            show_status(other),
            attempt.last_words()
        )),
    }
}

fn interrupted_and_resumed(
    worker: &WorkerCommand,
    spec: &RunSpec,
    dir: &Path,
    stop: (u64, Signal),
    reference: &Attempt,
    options: &CheckOptions,
) -> Result<String, String> {
    let first = Attempt::run(worker, spec, dir, Some(stop))?;
    first.events(spec, 0)?;
    let code = first.status.code();
    if stop.1 == Signal::SIGTERM && code != Some(exit::INTERRUPTED) {
        return Err(format!(
            "after SIGTERM at event {} expected exit status {} (checkpointed and stopped), got {}; stderr: {}",
            stop.0,
            exit::INTERRUPTED,
            show_status(code),
            first.last_words()
        ));
    }
    let point = super::resume_point(spec, dir)?;
    if stop.1 == Signal::SIGTERM && !dir.join(files::RESUME).is_file() {
        return Err("no resume.json after the stop request: the next attempt cannot resume".into());
    }
    if let Some(fallback) = &point.fallback {
        return Err(format!("resume.json is not usable: {fallback}"));
    }
    let second = Attempt::run(worker, spec, dir, None)?;
    let resumed = second.events(spec, point.next_seq)?;
    finished_cleanly(&second, &resumed)?;
    let log = std::fs::read(dir.join(files::EVENTS)).map_err(|e| format!("events.jsonl: {e}"))?;
    let expected = reference.stdout_bytes();
    if options.nondeterministic {
        let kinds = |bytes: &[u8]| -> Vec<String> {
            bytes
                .split(|&b| b == b'\n')
                .filter_map(|l| line::decode(l).ok())
                .map(|e| e.body.kind().to_string())
                .collect()
        };
        if kinds(&log) != kinds(&expected) {
            return Err("the resumed run's event kinds differ from the uninterrupted run's".into());
        }
    } else if let Some(diff) = first_difference(&expected, &log) {
        return Err(format!("events.jsonl after resuming differs from the uninterrupted run's: {diff}"));
    }
    Ok(format!("resumed at event {} of {}", point.next_seq, reference.lines.len()))
}

/// `exit 0`, and `finished` was the last event.
fn finished_cleanly(attempt: &Attempt, events: &[Event]) -> Result<(), String> {
    if !attempt.status.success() {
        return Err(format!(
            "exit status {}; stderr: {}",
            show_status(attempt.status.code()),
            attempt.last_words()
        ));
    }
    match events.last().map(|e| &e.body) {
        Some(EventBody::Finished { .. }) => Ok(()),
        Some(other) => {
            Err(format!("exited 0 after a `{}` event; the last event must be `finished`", other.kind()))
        }
        None => Err("exited 0 without a single event".into()),
    }
}

/// `started` first with this protocol, tasks started in order, evaluations after the task
/// they follow.
fn order(events: &[Event]) -> Result<(), String> {
    match events.first().map(|e| &e.body) {
        Some(EventBody::Started { protocol, .. }) if *protocol == protocol::PROTOCOL_VERSION => {}
        Some(EventBody::Started { protocol, .. }) => {
            return Err(format!(
                "`started` says protocol {protocol}, expected {}",
                protocol::PROTOCOL_VERSION
            ))
        }
        _ => return Err("event 0 must be `started`".into()),
    }
    let tasks = match &events[0].body {
        EventBody::Started { tasks, .. } => *tasks,
        _ => unreachable!("checked above"),
    };
    let mut current: Option<usize> = None;
    for event in events {
        let at = format!("event {} (`{}`)", event.seq, event.body.kind());
        match &event.body {
            EventBody::Started { .. } if event.seq > 0 => return Err(format!("{at}: `started` again")),
            EventBody::TaskStarted { task, .. } => {
                let expected = current.map_or(0, |t| t + 1);
                if *task != expected {
                    return Err(format!("{at}: task {task} started, expected task {expected}"));
                }
                current = Some(*task);
            }
            EventBody::Eval { after_task: Some(t), on_task, .. }
                if current.is_none_or(|c| *t > c) || *on_task >= tasks =>
            {
                return Err(format!(
                    "{at}: R[{t}][{on_task}] before task {t} was trained, or of a task past {tasks}"
                ));
            }
            EventBody::Online { task, .. } if Some(*task) != current => {
                return Err(format!("{at}: online bin of task {task} while training task {current:?}"))
            }
            _ => {}
        }
    }
    if current.map_or(0, |c| c + 1) != tasks {
        return Err(format!("{} of the {tasks} tasks were started", current.map_or(0, |c| c + 1)));
    }
    Ok(())
}

/// `events.jsonl` holds exactly the lines printed.
fn same_as_log(attempt: &Attempt, dir: &Path) -> Result<(), String> {
    let log = std::fs::read(dir.join(files::EVENTS)).map_err(|e| format!("{}: {e}", files::EVENTS))?;
    match first_difference(&attempt.stdout_bytes(), &log) {
        None => Ok(()),
        Some(diff) => Err(format!("events.jsonl differs from standard output: {diff}")),
    }
}

fn heartbeats(attempt: &Attempt) -> Result<String, String> {
    let beats = attempt.stderr.lines().filter(|l| Heartbeat::parse(l).is_some()).count();
    if beats > 0 || attempt.elapsed < Duration::from_secs(3) {
        Ok(format!("{beats} heartbeat line(s) in {:.1} s at --heartbeat 1", attempt.elapsed.as_secs_f64()))
    } else {
        Err(format!(
            "no `clorch-progress …` line on standard error in {:.1} s at --heartbeat 1; clorch would take it for hung",
            attempt.elapsed.as_secs_f64()
        ))
    }
}

/// Where two event logs first differ, by line.
fn first_difference(expected: &[u8], found: &[u8]) -> Option<String> {
    let a: Vec<&[u8]> = expected.split(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = found.split(|&b| b == b'\n').collect();
    let clip = |l: &[u8]| {
        let text = String::from_utf8_lossy(l);
        if text.len() > 160 {
            format!("{}…", &text[..text.floor_char_boundary(160)])
        } else {
            text.into_owned()
        }
    };
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            return Some(format!(
                "line {}: expected {}, found {}",
                i + 1,
                x.map_or("the end".to_string(), clip),
                y.map_or("the end".to_string(), clip)
            ));
        }
    }
    None
}

fn show_status(code: Option<i32>) -> String {
    code.map_or_else(|| "death by a signal".to_string(), |c| c.to_string())
}

/// One run of the worker in `dir`, as the local executor starts it.
struct Attempt {
    lines: Vec<Vec<u8>>,
    stderr: String,
    status: ExitStatus,
    elapsed: Duration,
}

impl Attempt {
    /// Writes the spec into `dir` and runs the worker; with `stop`, sends the signal once
    /// event `stop.0` has been printed.
    fn run(
        worker: &WorkerCommand,
        spec: &RunSpec,
        dir: &Path,
        stop: Option<(u64, Signal)>,
    ) -> Result<Attempt, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut spec = spec.clone();
        spec.run_dir = Some(dir.to_path_buf());
        let spec_path: PathBuf = dir.join(files::SPEC);
        let text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&spec_path, text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
        let started = Instant::now();
        let mut child: Child = Command::new(program(worker))
            .args(&worker.command[1..])
            .args(attempt_args(&spec_path, true, 1))
            .current_dir(&worker.dir)
            .env("CLORCH_RUN_ID", &spec.id)
            .env("CLORCH_ATTEMPT", "1")
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start `{}` in {}: {e}", shown(worker), worker.dir.display()))?;
        let group = Pid::from_raw(child.id() as i32);
        let _stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(buf).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut lines = Vec::new();
        let mut signalled = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(mut line) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    lines.push(line);
                    if let Some((at, signal)) = stop {
                        if !signalled && lines.len() as u64 > at {
                            let _ = killpg(group, signal);
                            signalled = true;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() > ATTEMPT_LIMIT => {
                    let _ = killpg(group, Signal::SIGKILL);
                    let _ = child.wait();
                    return Err(format!("did not finish within {} s; killed", ATTEMPT_LIMIT.as_secs()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        let stderr = stderr.join().unwrap_or_default();
        Ok(Attempt { lines, stderr, status, elapsed: started.elapsed() })
    }

    /// The printed lines as events, which must be sealed, of this run, numbered from `first`.
    fn events(&self, spec: &RunSpec, first: u64) -> Result<Vec<Event>, String> {
        let mut events = Vec::with_capacity(self.lines.len());
        for (i, text) in self.lines.iter().enumerate() {
            let seq = first + i as u64;
            let shown = String::from_utf8_lossy(&text[..text.len().min(160)]).into_owned();
            let event = line::decode(text).map_err(|e| {
                format!("standard output line {} is not a sealed event ({e}): {shown}", i + 1)
            })?;
            if event.run != spec.id {
                return Err(format!(
                    "line {}: run {:?}, expected the spec's id {:?}",
                    i + 1,
                    event.run,
                    spec.id
                ));
            }
            if event.seq != seq {
                return Err(format!("line {}: seq {}, expected {seq}: {shown}", i + 1, event.seq));
            }
            events.push(event);
        }
        Ok(events)
    }

    fn stdout_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for line in &self.lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        bytes
    }

    /// The last line of standard error that is not a heartbeat, for messages.
    fn last_words(&self) -> String {
        let line = self.stderr.lines().rev().find(|l| !l.trim().is_empty() && Heartbeat::parse(l).is_none());
        line.map_or_else(|| "(nothing)".to_string(), |l| l.trim().to_string())
    }
}
