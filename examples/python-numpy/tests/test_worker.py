"""The numpy worker end to end: description, events against the schemas, stop and resume."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("numpy")

HERE = Path(__file__).resolve().parents[1]
ROOT = HERE.parents[1]
WORKER = [sys.executable, str(HERE / "worker.py")]
DATA = str(ROOT / "data" / "mnist-10k")

SPEC = {
    "protocol": 1,
    "id": "abcdef012345",
    "experiment": "python-numpy",
    "seed": 0,
    "stream": {"permuted_mnist": {"data_dir": DATA, "tasks": 3, "first_unpermuted": False}},
    "network": {"hidden": [100], "activation": "relu", "heads": "shared", "engine": "fused"},
    "method": {
        "name": "np_er",
        "kind": "er",
        "params": {"lr": 0.01, "momentum": 0.0, "buffer": 200, "replay_batch": 0},
        "worker": {"command": ["python3", "worker.py"], "dir": str(HERE)},
    },
    "training": {"batch_size": 32, "epochs": 1},
    "eval": {"every": 1, "tasks": "all", "before_training": True,
             "plasticity": {"every": 1, "probe": 500, "dormant_tau": 0.1}},
    "checkpoint": {"every_steps": 100, "keep": 2},
}


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(ROOT / "clients" / "python" / "src")
    e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def validator(name):
    return jsonschema.Draft202012Validator(json.loads((ROOT / "docs" / "schemas" / name).read_text()))


def write(d: Path, spec) -> Path:
    s = copy.deepcopy(spec)
    s["run_dir"] = str(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.json").write_text(json.dumps(s, indent=2))
    return d / "spec.json"


def start(spec_path: Path) -> subprocess.Popen:
    return subprocess.Popen(WORKER + ["--spec", str(spec_path), "--heartbeat", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env(), cwd=str(HERE),
                            start_new_session=True)


def finish(p: subprocess.Popen):
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err.decode()


def events(d: Path):
    return [json.loads(x) for x in (d / "events.jsonl").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("np-reference")
    code, out, err = finish(start(write(d, SPEC)))
    assert code == 0, err
    return d, out


def test_describe():
    r = subprocess.run(WORKER + ["--describe"], capture_output=True, env=env(), timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    validator("worker-description.schema.json").validate(doc)
    assert [m["kind"] for m in doc["methods"]] == ["sgd", "er"]


def test_events_validate(reference):
    d, out = reference
    v = validator("event.schema.json")
    evs = events(d)
    for i, e in enumerate(evs):
        v.validate(e)
        assert e["seq"] == i
    assert out == (d / "events.jsonl").read_bytes()
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("eval") == 3 + 3 * 3 and kinds.count("plasticity") == 4 and kinds.count("online") == 3
    assert {e["name"] for e in evs if e["event"] == "scalar"} == {"train/loss", "er/buffer_fill"}
    final = [e for e in evs if e["event"] == "eval" and e.get("after_task") == 2]
    assert all(e["accuracy"] > 0.5 for e in final), final
    validator("resume.schema.json").validate(json.loads((d / "resume.json").read_text()))


ORDER = {
    "started": ["protocol", "tasks", "inputs", "outputs", "heads", "parameters", "problem"],
    "task_started": ["task", "head", "train_examples"],
    "online": ["task", "bin", "examples", "loss", "accuracy"],
    "eval": ["after_task", "on_task", "examples", "loss", "accuracy", "variant"],
    "plasticity": ["after_tasks", "probe_task", "probe_examples", "layers", "mean_abs_weight"],
    "scalar": ["task", "name", "value", "step"],
    "checkpoint": ["tasks_done", "step", "file", "checksum"],
    "finished": ["tasks", "steps", "examples"],
}


def test_members_in_the_documented_order(reference):
    for e in events(reference[0]):
        assert list(e) == ["run", "seq", "event"] + [k for k in ORDER[e["event"]] if k in e] + ["crc"], e
        for layer in e.get("layers", []):
            assert list(layer) == ["units", "dead", "dormant", "effective_rank", "stable_rank", "mean_abs_weight"]


def test_sigterm_mid_task_then_resume_is_byte_identical(tmp_path, reference):
    spec = write(tmp_path, SPEC)
    for task in (1, 2):
        p = start(spec)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                evs = [json.loads(x) for x in (tmp_path / "events.jsonl").read_bytes().splitlines(keepends=True)
                       if x.endswith(b"\n")]
            except (OSError, ValueError):
                evs = []
            if any(e["event"] == "task_started" and e["task"] == task for e in evs):
                break
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGTERM)
        code, _, err = finish(p)
        assert code in (75, 0), err
    code, _, err = finish(start(spec))
    assert code == 0, err
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_split_mnist_task_incremental_sgd(tmp_path):
    s = copy.deepcopy(SPEC)
    s["stream"] = {"split_mnist": {"data_dir": DATA, "groups": [[0, 1], [2, 3], [4, 5]], "setting": "task_incremental",
                                   "train_examples": 3000, "test_examples": 1000}}
    s["method"] = {"name": "np_sgd", "kind": "sgd", "params": {"lr": 0.05, "momentum": 0.5}}
    s["eval"] = {"every": 1, "tasks": {"subsample": {"earlier": 1}}, "before_training": False, "online_bin": 200,
                 "plasticity": {"every": 0, "probe": 100, "dormant_tau": 0.1}}
    code, out, err = finish(start(write(tmp_path, s)))
    assert code == 0, err
    evs = events(tmp_path)
    v = validator("event.schema.json")
    for e in evs:
        v.validate(e)
    assert evs[0]["heads"] == 3 and evs[0]["outputs"] == 6
    assert [e["head"] for e in evs if e["event"] == "task_started"] == [0, 1, 2]
    assert all(e["examples"] == 200 for e in evs if e["event"] == "online" and e["bin"] == 0)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"network": {"layers": [{"linear": {"units": 10}}], "hidden": []}}, "network.layers"),
        ({"stream": {"slowly_changing_regression": {"tasks": 2}}}, "does not train"),
        ({"method": {"name": "x", "kind": "ewc", "params": {}}}, "unknown method kind"),
        ({"stream": {"permuted_mnist": {"data_dir": "/nowhere", "tasks": 2}}}, "data folder does not exist"),
    ],
)
def test_bad_specs(tmp_path, change, message):
    s = copy.deepcopy(SPEC)
    s.update(change)
    code, out, err = finish(start(write(tmp_path, s)))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("clorch worker: ") and message in err, err
