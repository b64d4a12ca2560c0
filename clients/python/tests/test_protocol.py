"""The client as the orchestrator sees it: a worker process, its events, exit codes and files."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TOY_SPEC, env, events, interrupt, lines, run, start, validator, wait_for, write_spec


def slow(spec, sleep=0.01):
    s = copy.deepcopy(spec)
    s["method"]["params"]["sleep"] = sleep
    return s


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The events of an uninterrupted run of the toy spec (slow variant: same numbers)."""
    d = tmp_path_factory.mktemp("reference")
    spec = write_spec(d, TOY_SPEC)
    r = run([sys.executable, str(__import__("conftest").TOY)], spec)
    assert r.returncode == 0, r.stderr.decode()
    return d, r


def test_describe_validates(toy_cmd):
    r = subprocess.run(toy_cmd + ["--describe"], capture_output=True, env=env(), timeout=60)
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    validator("worker-description.schema.json").validate(doc)
    assert doc["protocol"] == 1 and doc["streams"] == ["toy"]
    assert [p["name"] for p in doc["methods"][0]["params"]] == ["lr", "sleep", "crash_at_step", "mode"]


def test_uninterrupted_run_events_validate_and_match_stdout(reference):
    d, r = reference
    v = validator("event.schema.json")
    evs = events(d)
    for i, e in enumerate(evs):
        v.validate(e)
        assert e["seq"] == i and e["run"] == TOY_SPEC["id"]
    assert evs[0]["event"] == "started" and evs[-1]["event"] == "finished"
    assert r.stdout == b"".join(lines(d))
    kinds = {e["event"] for e in evs}
    assert {"started", "eval", "task_started", "online", "scalar", "checkpoint", "finished"} <= kinds
    # resume.json validates, and only `keep` checkpoints are left.
    manifest = json.loads((d / "resume.json").read_text())
    validator("resume.schema.json").validate(manifest)
    assert (d / manifest["checkpoint"]).is_file()
    assert len(list(d.glob("checkpoint-*.pyck"))) == 2
    assert not list(d.glob("*.tmp"))
    # A scheduled checkpoint's event is the first event its checkpoint does not cover.
    assert evs[manifest["next_seq"]]["event"] == "checkpoint"
    assert evs[manifest["next_seq"]]["file"] == manifest["checkpoint"]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"protocol": 2}, "protocol 2"),
        ({"unknown_field": 1}, "unknown field `unknown_field`"),
        ({"method": {"name": "t", "kind": "toy_sgd", "params": {"momentum": 0.9}}}, "unknown parameter `momentum`"),
    ],
)
def test_bad_specs_exit_2_with_a_reason(tmp_path, toy_cmd, change, message):
    s = copy.deepcopy(TOY_SPEC)
    s.update(change)
    r = run(toy_cmd, write_spec(tmp_path, s))
    assert r.returncode == 2
    last = r.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("clorch worker: ") and message in last, last
    assert r.stdout == b""


def test_unknown_argument_exits_2(tmp_path, toy_cmd):
    r = subprocess.run(toy_cmd + ["--frobnicate"], capture_output=True, env=env(), timeout=60)
    assert r.returncode == 2 and b"clorch worker: " in r.stderr


def test_spec_on_stdin_without_run_dir(toy_cmd):
    s = copy.deepcopy(TOY_SPEC)
    r = subprocess.run(toy_cmd + ["--spec", "-", "--heartbeat", "0"], input=json.dumps(s).encode(),
                       capture_output=True, env=env(), timeout=120)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    assert evs[-1]["event"] == "finished"
    # Without a run folder there are no checkpoints at all.
    assert not [e for e in evs if e["event"] == "checkpoint"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_stop_by_signal_checkpoints_exits_75_and_resumes_identically(tmp_path, toy_cmd, reference, sig):
    ref, _ = reference
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec)
    wait_for(tmp_path, lambda evs: any(e["event"] == "task_started" and e["task"] == 1 for e in evs))
    r = interrupt(p, sig)
    assert r.returncode == 75, r.stderr.decode()
    manifest = json.loads((tmp_path / "resume.json").read_text())
    validator("resume.schema.json").validate(manifest)
    assert manifest["checkpoint"].endswith("-stop.pyck")
    assert len(lines(tmp_path)) == manifest["next_seq"], "a stop checkpoint covers every event so far"
    assert not [e for e in events(tmp_path)[manifest["next_seq"] - 1:] if e["event"] == "checkpoint"
                and e["file"] == manifest["checkpoint"]], "no event for a stop checkpoint"
    r2 = run(toy_cmd, spec)
    assert r2.returncode == 0, r2.stderr.decode()
    assert b"resuming from " + manifest["checkpoint"].encode() in r2.stderr
    assert (tmp_path / "events.jsonl").read_bytes() == (ref / "events.jsonl").read_bytes()
    # The resumed attempt's stdout starts at next_seq.
    assert json.loads(r2.stdout.splitlines()[0])["seq"] == manifest["next_seq"]


def test_eof_on_stdin_with_watch_stdin_is_a_stop(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec, "--watch-stdin", stdin=subprocess.PIPE)
    wait_for(tmp_path, lambda evs: any(e["event"] == "online" for e in evs))
    p.stdin.close()
    p.stdin = None
    out, err = p.communicate(timeout=120)
    assert p.returncode == 75, err.decode()
    r2 = run(toy_cmd, spec)
    assert r2.returncode == 0
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_kill_9_mid_task_resumes_from_the_last_scheduled_checkpoint(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec)
    # Past the second in-task checkpoint of task 1 (seq 20 in the reference run).
    wait_for(tmp_path, lambda evs: any(e["event"] == "checkpoint" and e["step"] == 80 for e in evs))
    r = interrupt(p, signal.SIGKILL)
    assert r.returncode == -9
    manifest = json.loads((tmp_path / "resume.json").read_text())
    assert not manifest["checkpoint"].endswith("-stop.pyck")
    n = manifest["next_seq"]
    assert events(tmp_path)[n]["event"] == "checkpoint" if len(lines(tmp_path)) > n else True
    r2 = run(toy_cmd, spec)
    assert r2.returncode == 0, r2.stderr.decode()
    assert b"resuming from " + manifest["checkpoint"].encode() in r2.stderr
    first = json.loads(r2.stdout.splitlines()[0])
    assert first["seq"] == n and first["event"] == "checkpoint" and first["file"] == manifest["checkpoint"]
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_damaged_events_before_next_seq_start_from_scratch(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec)
    wait_for(tmp_path, lambda evs: any(e["event"] == "task_started" and e["task"] == 1 for e in evs))
    assert interrupt(p).returncode == 75
    raw = (tmp_path / "events.jsonl").read_bytes()
    ls = raw.splitlines(keepends=True)
    ls[1] = ls[1].replace(b'"examples":40', b'"examples":41')
    (tmp_path / "events.jsonl").write_bytes(b"".join(ls))
    r2 = run(toy_cmd, spec)
    assert r2.returncode == 0
    err = r2.stderr.decode()
    assert "WARN checkpoint: line 2 of events.jsonl is damaged" in err, err
    assert json.loads(r2.stdout.splitlines()[0])["seq"] == 0
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_a_missing_checkpoint_file_starts_from_scratch(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec)
    wait_for(tmp_path, lambda evs: any(e["event"] == "online" for e in evs))
    assert interrupt(p).returncode == 75
    manifest = json.loads((tmp_path / "resume.json").read_text())
    os.unlink(tmp_path / manifest["checkpoint"])
    r2 = run(toy_cmd, spec)
    assert r2.returncode == 0 and b"which is gone" in r2.stderr
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_a_torn_checkpoint_exits_transient_then_starts_from_scratch(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    p = start(toy_cmd, spec)
    wait_for(tmp_path, lambda evs: any(e["event"] == "online" for e in evs))
    assert interrupt(p).returncode == 75
    manifest = json.loads((tmp_path / "resume.json").read_text())
    (tmp_path / manifest["checkpoint"]).write_bytes(b"garbage")
    r = run(toy_cmd, spec)
    assert r.returncode == 70
    assert b"WARN checkpoint: checkpoint " + manifest["checkpoint"].encode() + b" is unusable" in r.stderr
    assert not (tmp_path / "resume.json").exists()
    assert run(toy_cmd, spec).returncode == 0
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_stopped_twice_and_resumed_twice(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, slow(TOY_SPEC))
    for target in (0, 2):
        p = start(toy_cmd, spec)
        wait_for(tmp_path, lambda evs, t=target: any(e["event"] == "task_started" and e["task"] == t for e in evs))
        time.sleep(0.1)
        assert interrupt(p).returncode == 75
    assert run(toy_cmd, spec).returncode == 0
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()
    assert len(list(tmp_path.glob("checkpoint-*.pyck"))) == 2


def test_held_lock_is_waited_for(tmp_path, toy_cmd, reference):
    spec = write_spec(tmp_path, TOY_SPEC)
    fd = os.open(tmp_path / "worker.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    p = start(toy_cmd, spec)
    time.sleep(1.0)
    assert p.poll() is None, "the worker must wait for the lock"
    assert not (tmp_path / "events.jsonl").exists()
    os.close(fd)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and b"held by another process" in err
    assert (tmp_path / "events.jsonl").read_bytes() == (reference[0] / "events.jsonl").read_bytes()


def test_lock_never_released_exits_transient(tmp_path, toy_cmd):
    spec = write_spec(tmp_path, TOY_SPEC)
    fd = os.open(tmp_path / "worker.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run(toy_cmd, spec, env_extra={"TOY_LOCK_WAIT": "0.5"})
    finally:
        os.close(fd)
    assert r.returncode == 70
    assert r.stderr.decode().strip().splitlines()[-1].startswith("clorch worker: another worker still holds")


def test_an_exception_emits_failed_and_exits_1(tmp_path, toy_cmd):
    s = copy.deepcopy(TOY_SPEC)
    s["method"]["params"]["crash_at_step"] = 30
    r = run(toy_cmd, write_spec(tmp_path, s))
    assert r.returncode == 1
    last = events(tmp_path)[-1]
    validator("event.schema.json").validate(last)
    assert last["event"] == "failed" and last["reason"] == "ZeroDivisionError: toy crash at step 30"
    assert r.stderr.decode().strip().splitlines()[-1] == "clorch worker: ZeroDivisionError: toy crash at step 30"


def test_heartbeats(tmp_path, toy_cmd):
    spec = write_spec(tmp_path, slow(TOY_SPEC, 0.01))
    r = run(toy_cmd, spec, heartbeat="0.2")
    assert r.returncode == 0
    beats = [x for x in r.stderr.decode().splitlines() if x.startswith("clorch-progress ")]
    assert beats, r.stderr.decode()
    for b in beats:
        fields = dict(kv.split("=") for kv in b.split()[1:])
        assert set(fields) == {"task", "tasks", "step"} and fields["tasks"] == "3"


def test_every_tasks_and_keep(tmp_path, toy_cmd):
    s = copy.deepcopy(TOY_SPEC)
    s["stream"]["toy"]["tasks"] = 5
    s["checkpoint"] = {"every_tasks": 2, "keep": 1}
    r = run(toy_cmd, write_spec(tmp_path, s))
    assert r.returncode == 0
    cks = [e for e in events(tmp_path) if e["event"] == "checkpoint"]
    assert [c["tasks_done"] for c in cks] == [2, 4]
    assert [p.name for p in tmp_path.glob("checkpoint-*.pyck")] == [cks[-1]["file"]]


def doc_field_order():
    """Per event kind, the members in the order docs/protocol.md's examples write them."""
    from test_wire import doc_lines

    order = {}
    for line in doc_lines():
        keys = list(json.loads(line))
        known = order.setdefault(json.loads(line)["event"], [])
        for i, k in enumerate(keys):
            if k not in known:
                # insert after the previous key of this line
                at = known.index(keys[i - 1]) + 1 if i else 0
                known.insert(at, k)
    return order


def test_members_are_in_the_rust_order(reference):
    order = doc_field_order()
    for e in events(reference[0]):
        want = [k for k in order[e["event"]] if k in e]
        assert list(e) == want, (e, want)
