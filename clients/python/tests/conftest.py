"""Shared helpers: writing specs, running workers as the orchestrator would, reading events."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
SCHEMAS = DOCS / "schemas"
TOY = Path(__file__).resolve().parent / "toy_worker.py"
# The tests test this checkout's client, in-process and in the workers they start.
sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))

TOY_SPEC: Dict[str, Any] = {
    "protocol": 1,
    "id": "0123456789ab",
    "experiment": "toy",
    "seed": 3,
    "stream": {"toy": {"tasks": 3, "examples": 200, "inputs": 4}},
    "network": {"hidden": [], "activation": "relu", "heads": "shared", "engine": "fused"},
    "method": {
        "name": "toy",
        "kind": "toy_sgd",
        "params": {"lr": 0.05, "sleep": 0.0, "crash_at_step": -1, "mode": "plain"},
        "worker": {"command": [sys.executable, str(TOY)], "dir": str(TOY.parent)},
    },
    "training": {"batch_size": 8, "epochs": 2},
    "eval": {"every": 1, "tasks": "all", "before_training": True, "online_bin": 100},
    "checkpoint": {"every_steps": 20, "keep": 2},
}


def env() -> Dict[str, str]:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    src = str(ROOT / "clients" / "python" / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def schema(name: str) -> Dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def validator(name: str):
    import jsonschema

    s = schema(name)
    return jsonschema.Draft202012Validator(s)


def write_spec(run_dir: Path, spec: Dict[str, Any], **changes: Any) -> Path:
    s = copy.deepcopy(spec)
    for k, v in changes.items():
        s[k] = v
    s["run_dir"] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "spec.json"
    path.write_text(json.dumps(s, indent=2))
    return path


def start(command: List[str], spec_path: Path, *extra: str, stdin: Any = subprocess.DEVNULL,
          cwd: Optional[Path] = None, heartbeat: str = "0", env_extra: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    e = env()
    if env_extra:
        e.update(env_extra)
    return subprocess.Popen(
        list(command) + ["--spec", str(spec_path), *extra, "--heartbeat", heartbeat],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=e,
        cwd=str(cwd) if cwd else None,
        start_new_session=True,
    )


def run(command: List[str], spec_path: Path, *extra: str, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess:
    p = start(command, spec_path, *extra, **kw)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def lines(run_dir: Path) -> List[bytes]:
    return (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)


def events(run_dir: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in lines(run_dir)]


def wait_for(run_dir: Path, predicate, timeout: float = 120) -> None:
    """Waits until ``predicate(events so far)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            evs = [json.loads(x) for x in lines(run_dir) if x.endswith(b"\n")]
        except (OSError, ValueError):
            evs = []
        if predicate(evs):
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for events in %s" % run_dir)


def interrupt(p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 120) -> subprocess.CompletedProcess:
    os.killpg(p.pid, sig)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture
def toy_cmd() -> List[str]:
    return [sys.executable, str(TOY)]
