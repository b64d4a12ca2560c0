"""The worker side of clorch's protocol around a user's training loop.

A worker is a :class:`Worker` (what it implements, for ``--describe`` and for checking specs)
and one :class:`Run` per process (``with worker.run() as run:``), which owns everything the
protocol asks of a worker besides the learning itself: arguments, the spec, ``worker.lock``,
signal and stdin stop requests, heartbeats, sealed and numbered events on stdout and in
``events.jsonl``, checkpoints with ``resume.json``, resuming, and exit codes.

Why the loop goes through ``run.tasks()`` and ``run.steps(n)``: those generators are where a
run can be checkpointed and resumed (every optimiser-step boundary and every task boundary),
so the client can keep its position (task, step within the task, total steps, next ``seq``)
itself and hand the loop exactly the place to continue from. The user's code only has to make
a step depend on its state and the step's index — not on how the process got there.

Checkpoints and ``resume.json`` — what this client does (docs/protocol.md, "Checkpoints and
resume" and "External workers"):

* A *scheduled* checkpoint (task boundaries every ``checkpoint.every_tasks`` tasks, default
  every task except after the last; inside a task every ``checkpoint.every_steps`` steps)
  covers the events before its own ``checkpoint`` event, whose ``seq`` is K: the file holds
  the state with ``next_seq`` K. The client writes the file (temporary name, fsync, rename),
  then ``resume.json`` = ``{"next_seq": K, "checkpoint": <file>}`` (also atomically), then
  emits the ``checkpoint`` event K. A resumed run keeps lines ``0..K`` and emits the
  ``checkpoint`` event K again first (same file name, same SHA-256: it is the same file) —
  the built-in worker's rule: "a scheduled checkpoint's own checkpoint event is emitted
  again". Killed between the manifest and the event, the next attempt resumes at K and emits
  it; killed earlier, the previous manifest still holds.
* A checkpoint on a stop request emits no event; it covers every event emitted so far (N),
  and ``resume.json`` gets ``next_seq`` N. The process then exits 75.
* After every checkpoint the client deletes its own older checkpoint files beyond
  ``checkpoint.keep`` (and any of its files from a later position left by an earlier attempt
  that the run has now gone back behind). It only ever deletes names it creates:
  ``checkpoint-<seq, 10 digits>.pyck`` and ``checkpoint-<seq>-stop.pyck``.
* Starting from scratch (no usable manifest) it removes ``resume.json`` before truncating
  ``events.jsonl``, so that a manifest can never describe events of another attempt.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import signal
import stat
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, TextIO

from . import wire
from .spec import PROTOCOL_VERSION, BadSpec, Method, Spec, describe, parse_spec

__all__ = [
    "Worker",
    "Run",
    "FINISHED",
    "FAILED",
    "BAD_SPEC",
    "TRANSIENT",
    "INTERRUPTED",
    "RunFailed",
]

#: Exit codes (docs/protocol.md, "Exit codes").
FINISHED = 0
FAILED = 1
BAD_SPEC = 2
TRANSIENT = 70
INTERRUPTED = 75

EVENTS = "events.jsonl"
RESUME = "resume.json"
LOCK = "worker.lock"
_MAGIC = b"CLORCH-PY-CHECKPOINT 1\n"
_CKPT_RE = re.compile(r"^checkpoint-(\d{10})(-stop)?\.pyck$")
_SCALAR_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,64}$")


class RunFailed(Exception):
    """Raise it (or call :meth:`Run.fail`) to end the run with a ``failed`` event and ``code``."""

    def __init__(self, reason: str, code: int = FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Stderr:
    """Whole lines to standard error from any thread (heartbeats race the main thread)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


class Worker:
    """What a worker implements: its name, the stream kinds it reads and its methods.

    ``lock_wait`` is how long a run waits for ``worker.lock`` held by another process before
    it exits ``TRANSIENT`` (the built-in worker waits two minutes).
    """

    def __init__(
        self,
        methods: Sequence[Method],
        name: Optional[str] = None,
        streams: Sequence[str] = (),
        lock_wait: float = 120.0,
    ) -> None:
        if not methods:
            raise ValueError("a worker implements at least one method")
        kinds = [m.kind for m in methods]
        if len(set(kinds)) != len(kinds):
            raise ValueError("method kinds must be distinct")
        self.methods = list(methods)
        self.name = name
        self.streams = list(streams)
        self.lock_wait = lock_wait

    def description(self) -> Dict[str, Any]:
        """The ``WorkerDescription`` JSON object (``--describe``)."""
        return describe(self.name, self.streams, self.methods)

    def run(self, argv: Optional[Sequence[str]] = None) -> "Run":
        """Parses ``argv`` (default ``sys.argv[1:]``) and prepares the run.

        ``--describe`` prints the description and exits 0 here; bad arguments exit 2; a bad
        spec exits 2 with ``clorch worker: <reason>``. Use the result as a context manager.
        """
        return Run(self, list(sys.argv[1:] if argv is None else argv))


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write("clorch worker: %s\n" % message)
        sys.exit(BAD_SPEC)


class Run:
    """One attempt at one run. Create it with :meth:`Worker.run`; use it as a context manager.

    Inside the ``with`` block, in this order: build the model from :attr:`spec`, call
    :meth:`checkpointing` (which restores the model when the run resumes), then (unless
    :attr:`resumed`) :meth:`started` and the before-training evaluations, then
    ``for task in run.tasks(): run.task_started(…); for step in run.steps(n): …`` and
    finally :meth:`finished`.
    """

    def __init__(self, worker: Worker, argv: List[str]) -> None:
        self.worker = worker
        self._err = _Stderr(sys.stderr)
        p = _ArgParser(prog=os.path.basename(sys.argv[0]) or "worker", add_help=True)
        p.add_argument("--describe", action="store_true", help="print the worker description JSON and exit")
        p.add_argument("--spec", help="the run spec (spec.json); `-` or absent: standard input")
        p.add_argument("--watch-stdin", action="store_true", help="end-of-file on standard input = stop request")
        p.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats (0: none)")
        args = p.parse_args(argv)
        if args.describe:
            sys.stdout.write(json.dumps(worker.description(), separators=(",", ":")) + "\n")
            sys.stdout.flush()
            sys.exit(FINISHED)
        if args.heartbeat < 0:
            p.error("--heartbeat must be 0 or more seconds")
        self.heartbeat = float(args.heartbeat)
        self.watch_stdin = bool(args.watch_stdin)
        try:
            if args.spec is None or args.spec == "-":
                text = sys.stdin.buffer.read()
            else:
                with open(args.spec, "rb") as f:
                    text = f.read()
        except OSError as e:
            self._die("cannot read the spec %s: %s" % (args.spec, e.strerror or e), BAD_SPEC)
        try:
            self.spec: Spec = parse_spec(text, worker.methods, worker.streams)
        except BadSpec as e:
            self._die(str(e), BAD_SPEC)
        #: Tasks in the stream.
        self.num_tasks = self.spec.tasks
        #: Whether this attempt continues from a checkpoint (set by :meth:`checkpointing`).
        self.resumed = False
        self._run_dir = self.spec.run_dir
        self._stop = threading.Event()
        self._seq = 0
        self._task = 0  # the task being trained (or next)
        self._in_task = False  # task_started of self._task has been emitted
        self._step_in_task = 0
        self._steps = 0  # optimiser steps in total
        self._tasks_done = 0
        self._resume_task_started = False  # suppress the next task_started (resumed mid-task)
        self._resume_steps_from: Optional[int] = None
        self._pending_event: Optional[Dict[str, Any]] = None  # checkpoint event to emit again
        self._save: Optional[Callable[[str], None]] = None
        self._load: Optional[Callable[[str], None]] = None
        self._decided = False
        self._candidate: Optional[Dict[str, Any]] = None
        self._events_file: Optional[Any] = None
        self._out: Optional[Any] = None
        self._lock_fd: Optional[int] = None
        self._finished = False
        self._entered = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Run":
        self._entered = True
        # Events own the real standard output; a stray print() in the user's code goes to
        # standard error (worker.log) instead of breaking the event stream.
        sys.stdout.flush()
        self._out = os.fdopen(os.dup(1), "wb", buffering=0)
        sys.stdout = sys.stderr
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(s, self._on_signal)
        if self.watch_stdin:
            threading.Thread(target=self._watch_stdin, name="clorch-stdin", daemon=True).start()
        if self._run_dir is not None:
            try:
                os.makedirs(self._run_dir, exist_ok=True)
            except OSError as e:
                self._die("cannot create the run folder %s: %s" % (self._run_dir, e.strerror or e), TRANSIENT)
            self._take_lock()
            self._candidate = self._find_resume_point()
        if self.heartbeat > 0:
            threading.Thread(target=self._heartbeats, name="clorch-heartbeat", daemon=True).start()
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            if not self._finished:
                self.log("WARN", "worker", "the run ended without a `finished` event; clorch counts it as crashed")
            self._close()
            return None
        if issubclass(et, SystemExit):
            self._close()
            return None
        if issubclass(et, RunFailed):
            self._fail_now(ev.reason, ev.code)
        if issubclass(et, BadSpec):
            self._fail_now(str(ev), BAD_SPEC)
        if issubclass(et, KeyboardInterrupt):
            # Raised by code of the user's (SIGINT itself only sets the stop flag): the state may
            # be half a step, so no checkpoint; the last one stands.
            self._close()
            sys.exit(INTERRUPTED)
        if issubclass(et, OSError) and getattr(ev, "errno", None) in (errno.ENOSPC, errno.EPIPE, errno.EDQUOT, errno.EIO):
            self._fail_now("%s: %s" % (et.__name__, ev), TRANSIENT)
        self._err.line("".join(traceback.format_exception(et, ev, tb)).rstrip("\n"))
        msg = str(ev).strip().splitlines()
        self._fail_now("%s: %s" % (et.__name__, msg[0] if msg else "(no message)"), FAILED)

    def _close(self) -> None:
        for f in (self._events_file, self._out):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._events_file = None
        self._out = None

    def _die(self, reason: str, code: int) -> NoReturn:
        self._err.line("clorch worker: " + reason.replace("\n", " "))
        sys.exit(code)

    # ------------------------------------------------------------------ public API

    @property
    def run_dir(self) -> Optional[str]:
        """The run folder (``None``: events only on stdout, no checkpoint, no resume)."""
        return self._run_dir

    @property
    def task(self) -> int:
        """The task being trained (the next one between tasks)."""
        return self._task

    @property
    def steps_done(self) -> int:
        """Optimiser steps taken in total (across tasks), as checkpointed and resumed."""
        return self._steps

    @property
    def seq(self) -> int:
        """The ``seq`` of the next event."""
        return self._seq

    @property
    def max_memory(self) -> Optional[int]:
        """``CLORCH_MAX_MEMORY`` (bytes): the worker's share of the memory limit, if set."""
        v = os.environ.get("CLORCH_MAX_MEMORY")
        try:
            return int(v) if v else None
        except ValueError:
            return None

    def check_memory(self, estimate_bytes: int) -> None:
        """Exits ``BAD_SPEC`` when the run's estimated peak memory is over ``CLORCH_MAX_MEMORY``."""
        limit = self.max_memory
        if limit is not None and estimate_bytes > limit:
            self._die(
                "the run needs about %.1f MiB; the memory limit is %.1f MiB" % (estimate_bytes / 2**20, limit / 2**20),
                BAD_SPEC,
            )

    def should_stop(self) -> bool:
        """Whether a stop was requested (signal, or EOF on stdin with ``--watch-stdin``).

        :meth:`steps` and :meth:`tasks` check it at every boundary and checkpoint and exit 75
        themselves; a loop that does long work elsewhere may check it too and call
        :meth:`stop`.
        """
        return self._stop.is_set()

    def log(self, level: str, target: str, message: str) -> None:
        """A levelled log line on stderr (``<time>  WARN checkpoint: …``), for ``worker.log``."""
        self._err.line("%s %5s %s: %s" % (_now(), level, target, message))

    def checkpointing(self, save: Callable[[str], None], load: Callable[[str], None]) -> bool:
        """Registers the user's checkpoint hooks and, if the run resumes, restores it now.

        ``save(path)`` writes everything the loop needs to continue (model, optimiser, RNG
        state, buffers, partial online-bin sums) to the file ``path``; ``load(path)`` reads it
        back. The client adds its own position and wraps the file. Returns :attr:`resumed`.
        Without this call the run cannot checkpoint and always starts from the beginning.
        """
        self._save, self._load = save, load
        if not self._decided:
            self._decide()
        return self.resumed

    def started(self, inputs: int, outputs: int, heads: int, parameters: int, problem: str = "classification",
                tasks: Optional[int] = None) -> None:
        """Emits ``started`` (event 0). A resumed run has emitted it already: nothing happens."""
        self._begin()
        if self.resumed:
            return
        self.emit("started", protocol=PROTOCOL_VERSION, tasks=self.num_tasks if tasks is None else tasks,
                  inputs=inputs, outputs=outputs, heads=heads, parameters=parameters, problem=problem)

    def tasks(self) -> Iterator[int]:
        """The task indices still to train, from the resume point on.

        After each task's body the client takes the scheduled task-boundary checkpoint and
        honours a pending stop request (checkpoint, exit 75).
        """
        self._begin()
        every = self.spec.checkpoint.every_tasks
        every = 1 if every is None else every
        for t in range(self._task, self.num_tasks):
            self._task = t
            yield t
            self._task = t + 1
            self._tasks_done = t + 1
            self._in_task = False
            self._step_in_task = 0
            if t + 1 < self.num_tasks:
                if every > 0 and (t + 1) % every == 0:
                    self._checkpoint(scheduled=True)
                if self._stop.is_set():
                    self._stop_now()

    def task_started(self, head: int, train_examples: int) -> None:
        """Emits ``task_started`` for the current task — unless the run resumed inside it."""
        if self._resume_task_started:
            self._resume_task_started = False
            return
        self._in_task = True
        self._step_in_task = 0
        self.emit("task_started", task=self._task, head=head, train_examples=train_examples)

    def steps(self, n: int) -> Iterator[int]:
        """The optimiser-step indices ``0..n`` of the current task, from the resume point on.

        Between steps: the ``every_steps`` checkpoint and the stop check. Derive everything a
        step needs from its index and the saved state (e.g. epoch ``s // batches``, batch
        ``s % batches``, per-epoch shuffles from a seed and the epoch).
        """
        start = 0
        if self._resume_steps_from is not None:
            start, self._resume_steps_from = self._resume_steps_from, None
        self._in_task = True
        every = self.spec.checkpoint.every_steps or 0
        for s in range(start, n):
            self._step_in_task = s
            yield s
            self._step_in_task = s + 1
            self._steps += 1
            if s + 1 < n:
                if every > 0 and self._steps % every == 0:
                    self._checkpoint(scheduled=True)
                if self._stop.is_set():
                    self._stop_now()

    def online(self, bin: int, examples: int, loss: float, accuracy: Optional[float] = None) -> None:
        """Emits ``online`` for the current task (``accuracy`` omitted for regression)."""
        f: Dict[str, Any] = {"task": self._task, "bin": bin, "examples": examples, "loss": float(loss)}
        if accuracy is not None:
            f["accuracy"] = float(accuracy)
        self.emit("online", **f)

    def eval(self, on_task: int, examples: int, loss: float, accuracy: Optional[float] = None,
             after_task: Optional[int] = None, variant: Optional[str] = None) -> None:
        """Emits one ``eval`` row; ``after_task`` ``None`` = the untrained network."""
        f: Dict[str, Any] = {}
        if after_task is not None:
            f["after_task"] = after_task
        f.update(on_task=on_task, examples=examples, loss=float(loss))
        if accuracy is not None:
            f["accuracy"] = float(accuracy)
        if variant is not None:
            f["variant"] = variant
        self.emit("eval", **f)

    def plasticity(self, after_tasks: int, probe_task: int, probe_examples: int,
                   layers: Sequence[Dict[str, Any]], mean_abs_weight: float) -> None:
        """Emits ``plasticity``; each layer has ``units, dead, dormant, effective_rank,
        stable_rank, mean_abs_weight`` (written in that order)."""
        order = ("units", "dead", "dormant", "effective_rank", "stable_rank", "mean_abs_weight")
        rows = []
        for layer in layers:
            row: Dict[str, Any] = {}
            for k in order:
                v = layer[k]
                row[k] = int(v) if k in ("units", "stable_rank") else float(v)
            rows.append(row)
        self.emit("plasticity", after_tasks=after_tasks, probe_task=probe_task, probe_examples=probe_examples,
                  layers=rows, mean_abs_weight=float(mean_abs_weight))

    def scalar(self, name: str, value: float, step: Optional[int] = None, task: Optional[int] = None) -> None:
        """Emits ``scalar`` (``name``: 1–64 of ``A-Z a-z 0-9 _ . / -``) for the current task."""
        if not _SCALAR_NAME.match(name):
            raise ValueError("scalar name %r: 1 to 64 characters of A-Z a-z 0-9 _ . / -" % name)
        f: Dict[str, Any] = {"task": self._task if task is None else task, "name": name, "value": float(value)}
        if step is not None:
            f["step"] = int(step)
        self.emit("scalar", **f)

    def finished(self, examples: int, steps: Optional[int] = None, tasks: Optional[int] = None) -> None:
        """Emits ``finished`` (steps default: those counted by :meth:`steps`). Exit 0 follows
        when the ``with`` block ends."""
        self.emit("finished", tasks=self.num_tasks if tasks is None else tasks,
                  steps=self._steps if steps is None else steps, examples=examples)
        self._finished = True

    def fail(self, reason: str, code: int = FAILED) -> NoReturn:
        """Emits ``failed`` (once the run has started), prints ``clorch worker: <reason>`` and exits."""
        self._fail_now(reason, code)

    def bad_spec(self, reason: str) -> NoReturn:
        """Exits ``BAD_SPEC`` (2): the spec or its data cannot be trained by this worker."""
        self._fail_now(reason, BAD_SPEC)

    def evaluate_after(self, task: int) -> List[int]:
        """The tasks to evaluate after training ``task``: none when ``eval.every`` skips it;
        every task for ``"all"``; for ``{"subsample": {"earlier": k}}`` the task, the next one
        and ``k`` earlier ones drawn from a generator seeded by the spec's seed and the task
        (deterministic, but not the built-in worker's draw)."""
        every = self.spec.eval.every
        last = task == self.num_tasks - 1
        if not last and (every == 0 or (task + 1) % every != 0):
            return []
        sel = self.spec.eval.tasks
        if sel == "all":
            return list(range(self.num_tasks))
        earlier = list(range(task))
        rng = random.Random("%d/eval.subsample/%d" % (self.spec.seed, task))
        picked = sorted(rng.sample(earlier, min(int(sel), len(earlier))))
        return picked + [t for t in (task, task + 1) if t < self.num_tasks]

    def plasticity_due(self, after_tasks: int) -> bool:
        """Whether plasticity diagnostics are due after ``after_tasks`` tasks (0 = untrained,
        due only with ``eval.before_training``)."""
        every = self.spec.eval.plasticity.every
        if every == 0:
            return False
        if after_tasks == 0:
            return self.spec.eval.before_training
        return after_tasks % every == 0 or after_tasks == self.num_tasks

    def emit(self, event: str, **fields: Any) -> None:
        """Emits one event: ``run``, ``seq``, ``event``, then ``fields`` in the order given.

        Written, sealed, to stdout and appended to ``events.jsonl``, each flushed. A failure
        to write exits ``TRANSIENT`` (70): a full disk or a dead orchestrator may pass.
        """
        self._begin()
        obj: Dict[str, Any] = {"run": self.spec.id, "seq": self._seq, "event": event}
        obj.update(fields)
        line = (wire.seal(wire.encode(obj)) + "\n").encode("utf-8")
        try:
            if self._events_file is not None:
                self._events_file.write(line)
                self._events_file.flush()
        except OSError as e:
            self._die("cannot append to %s: %s" % (EVENTS, e.strerror or e), TRANSIENT)
        try:
            if self._out is not None:
                self._out.write(line)
        except BrokenPipeError:
            # Standard output is gone: the orchestrator died. What is in events.jsonl stays.
            self._die("standard output was closed (the orchestrator is gone)", TRANSIENT)
        except (OSError, ValueError) as e:
            self._die("cannot write to standard output: %s" % (getattr(e, "strerror", None) or e), TRANSIENT)
        self._seq += 1

    # ------------------------------------------------------------------ internals

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop.set()

    def _watch_stdin(self) -> None:
        try:
            while True:
                chunk = os.read(0, 65536)
                if not chunk:
                    break
        except OSError:
            pass
        self._stop.set()

    def _heartbeats(self) -> None:
        while True:
            time.sleep(self.heartbeat)
            self._err.line("clorch-progress task=%d tasks=%d step=%d" % (
                min(self._task, max(self.num_tasks - 1, 0)), self.num_tasks, self._steps))

    def _path(self, name: str) -> str:
        assert self._run_dir is not None
        return os.path.join(self._run_dir, name)

    def _take_lock(self) -> None:
        try:
            fd = os.open(self._path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            self._die("cannot open %s: %s" % (LOCK, e.strerror or e), TRANSIENT)
        deadline = time.monotonic() + self.worker.lock_wait
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    self._die("cannot lock %s: %s" % (LOCK, e.strerror or e), TRANSIENT)
            if not said:
                self.log("INFO", "worker", "%s is held by another process; waiting up to %g s" % (LOCK, self.worker.lock_wait))
                said = True
            if time.monotonic() >= deadline:
                self._die("another worker still holds %s after %g s" % (self._path(LOCK), self.worker.lock_wait), TRANSIENT)
            time.sleep(0.1)
        self._lock_fd = fd  # held until the process exits

    def _warn(self, message: str) -> None:
        self.log("WARN", "checkpoint", message)

    def _find_resume_point(self) -> Optional[Dict[str, Any]]:
        """The manifest's checkpoint if it can be resumed from, by the orchestrator's rule."""
        path = self._path(RESUME)
        if not os.path.lexists(path):
            return None
        try:
            with open(path, "rb") as f:
                m = json.loads(f.read())
            if not isinstance(m, dict) or set(m) != {"next_seq", "checkpoint"}:
                raise ValueError("expected exactly `next_seq` and `checkpoint`")
            n, name = m["next_seq"], m["checkpoint"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError("`next_seq` is not a non-negative integer")
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise ValueError("`checkpoint` is not a file name")
        except (OSError, ValueError) as e:
            self._warn("%s is unreadable (%s); starting from the beginning" % (RESUME, e))
            return None
        cpath = self._path(name)
        try:
            st = os.lstat(cpath)
        except OSError:
            self._warn("%s names %s, which is gone; starting from the beginning" % (RESUME, name))
            return None
        if not stat.S_ISREG(st.st_mode):
            self._warn("%s names %s, which is not a plain file; starting from the beginning" % (RESUME, name))
            return None
        # Lines 0..n of events.jsonl must all be intact.
        offset = 0
        try:
            with open(self._path(EVENTS), "rb") as f:
                for i in range(n):
                    line = f.readline()
                    if not line:
                        self._warn("%s has %d lines, but checkpoint %s covers %d; starting from the beginning"
                                   % (EVENTS, i, name, n))
                        return None
                    ok, why = wire.check_line(line, self.spec.id, i)
                    if not ok:
                        self._warn("line %d of %s is damaged (%s); checkpoint %s depends on it; starting from the beginning"
                                   % (i + 1, EVENTS, why, name))
                        return None
                    offset += len(line)
        except FileNotFoundError:
            if n > 0:
                self._warn("%s is gone, but checkpoint %s covers %d events; starting from the beginning" % (EVENTS, name, n))
                return None
        except OSError as e:
            self._warn("cannot read %s (%s); starting from the beginning" % (EVENTS, e))
            return None
        return {"next_seq": n, "checkpoint": name, "offset": offset}

    @staticmethod
    def _read_header(path: str) -> Dict[str, Any]:
        with open(path, "rb") as f:
            if f.readline() != _MAGIC:
                raise ValueError("not a checkpoint of this client")
            header = json.loads(f.readline())
        if not isinstance(header, dict):
            raise ValueError("bad header")
        return header

    def _decide(self) -> None:
        """Resume from the candidate, or start from the beginning when there is none.

        The orchestrator decides where the attempt resumes by the manifest rule alone (file
        present, lines intact), so once that rule holds the worker must resume there too. A
        checkpoint that then turns out unusable (torn, another run's, the load hook failing) is
        a torn checkpoint: ``resume.json`` is removed, so that both sides start the next
        attempt from the beginning, and this one exits ``TRANSIENT`` (70).
        """
        self._decided = True
        if self._run_dir is None:
            return
        cand = self._candidate
        if cand is not None:
            try:
                if self._load is None:
                    raise ValueError("the worker registered no load hook before its first event")
                self._restore(cand)
                return
            except Exception as e:  # noqa: BLE001 - the user's load hook may raise anything
                why = "%s: %s" % (type(e).__name__, e) if not isinstance(e, (OSError, ValueError)) else str(e)
                self._warn("checkpoint %s is unusable (%s); removing %s so that the next attempt starts from "
                           "the beginning" % (cand["checkpoint"], why, RESUME))
                try:
                    os.unlink(self._path(RESUME))
                except OSError:
                    pass
                self._die("checkpoint %s is unusable (%s)" % (cand["checkpoint"], why), TRANSIENT)
        # From the beginning: first the manifest, then the log.
        try:
            if os.path.lexists(self._path(RESUME)):
                os.unlink(self._path(RESUME))
            self._events_file = open(self._path(EVENTS), "wb")
        except OSError as e:
            self._die("cannot start %s: %s" % (EVENTS, e.strerror or e), TRANSIENT)

    def _restore(self, cand: Dict[str, Any]) -> None:
        path = self._path(cand["checkpoint"])
        h = self._read_header(path)
        if h.get("run") != self.spec.id or h.get("next_seq") != cand["next_seq"]:
            raise ValueError("it belongs to run %s at seq %s, not to %s at %d"
                             % (h.get("run"), h.get("next_seq"), self.spec.id, cand["next_seq"]))
        tmp = self._path(".checkpoint-load.tmp")
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            magic = src.readline()
            head = src.readline()
            digest.update(magic)
            digest.update(head)
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                digest.update(b)
                dst.write(b)
        try:
            assert self._load is not None
            self._load(tmp)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self._seq = int(h["next_seq"])
        self._task = int(h["task"])
        self._in_task = bool(h["in_task"])
        self._step_in_task = int(h["step_in_task"])
        self._steps = int(h["steps"])
        self._tasks_done = int(h["tasks_done"])
        self._resume_task_started = self._in_task
        self._resume_steps_from = self._step_in_task if self._in_task else None
        self.resumed = True
        # Keep lines 0..next_seq of events.jsonl, drop the rest.
        f = open(self._path(EVENTS), "r+b")
        f.truncate(cand["offset"])
        f.seek(0, os.SEEK_END)
        self._events_file = f
        self.log("INFO", "checkpoint", "resuming from %s at seq %d (task %d, step %d of the task, %d steps in total)"
                 % (cand["checkpoint"], self._seq, self._task, self._step_in_task, self._steps))
        if h.get("scheduled"):
            # The checkpoint's own event is not covered: emit it again, as the first event.
            self.emit("checkpoint", tasks_done=self._tasks_done, step=self._steps,
                      file=cand["checkpoint"], checksum=digest.hexdigest())

    def _begin(self) -> None:
        if not self._entered:
            raise RuntimeError("use the run as a context manager: `with worker.run() as run:`")
        if not self._decided:
            self._decide()

    def _header(self, scheduled: bool) -> Dict[str, Any]:
        return {
            "run": self.spec.id,
            "next_seq": self._seq,
            "scheduled": scheduled,
            "task": self._task,
            "in_task": self._in_task,
            "step_in_task": self._step_in_task,
            "steps": self._steps,
            "tasks_done": self._tasks_done,
        }

    def _write_atomic(self, name: str, write: Callable[[Any], None]) -> None:
        tmp = self._path(name + ".tmp")
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(name))

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self._run_dir, os.O_RDONLY)  # type: ignore[arg-type]
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    def _checkpoint(self, scheduled: bool) -> bool:
        """Writes a checkpoint (and, when scheduled, its event); returns whether it could."""
        if self._run_dir is None or self._save is None:
            return False
        k = self._seq
        name = "checkpoint-%010d%s.pyck" % (k, "" if scheduled else "-stop")
        header = json.dumps(self._header(scheduled), separators=(",", ":")).encode() + b"\n"
        user_tmp = self._path(".checkpoint-save.tmp")
        digest = hashlib.sha256()
        try:
            self._save(user_tmp)

            def write(f: Any) -> None:
                for b in (_MAGIC, header):
                    f.write(b)
                    digest.update(b)
                with open(user_tmp, "rb") as src:
                    while True:
                        b = src.read(1 << 20)
                        if not b:
                            break
                        f.write(b)
                        digest.update(b)

            self._write_atomic(name, write)
            os.unlink(user_tmp)
            if self._events_file is not None:
                self._events_file.flush()
                os.fsync(self._events_file.fileno())
            manifest = json.dumps({"next_seq": k, "checkpoint": name}, separators=(",", ":")).encode()
            self._write_atomic(RESUME, lambda f: f.write(manifest))
            self._sync_dir()
        except OSError as e:
            self._fail_now("cannot write checkpoint %s: %s" % (name, e.strerror or e), TRANSIENT)
        if scheduled:
            self.emit("checkpoint", tasks_done=self._tasks_done, step=self._steps, file=name,
                      checksum=digest.hexdigest())
        self._prune(name)
        return True

    def _prune(self, current: str) -> None:
        m = _CKPT_RE.match(current)
        assert m is not None
        key = (int(m.group(1)), 1 if m.group(2) else 0)
        older = []
        try:
            names = os.listdir(self._run_dir or ".")
        except OSError:
            return
        for n in names:
            mm = _CKPT_RE.match(n)
            if mm is None or n == current:
                continue
            k = (int(mm.group(1)), 1 if mm.group(2) else 0)
            if k > key:
                self._unlink(n)  # left by an attempt the run has gone back behind
            else:
                older.append((k, n))
        older.sort()
        keep = max(self.spec.checkpoint.keep, 1) - 1
        for _, n in older[: max(len(older) - keep, 0)]:
            self._unlink(n)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except OSError:
            pass

    def _stop_now(self) -> NoReturn:
        """Checkpoint (no event) and exit ``INTERRUPTED``."""
        if self._checkpoint(scheduled=False):
            self.log("INFO", "worker", "stop requested: checkpointed at seq %d (task %d, step %d); exiting 75"
                     % (self._seq, self._task, self._step_in_task))
        else:
            self.log("INFO", "worker", "stop requested; no checkpoint possible here; exiting 75")
        self._close()
        sys.exit(INTERRUPTED)

    def _fail_now(self, reason: str, code: int) -> NoReturn:
        reason = " ".join(reason.split()) or "(no reason given)"
        if self._entered and self._seq > 0 and (self._events_file is not None or self._out is not None):
            try:
                self.emit("failed", reason=reason)
            except SystemExit:
                pass
        self._close()
        self._die(reason, code)
