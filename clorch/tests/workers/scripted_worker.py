#!/usr/bin/env python3
"""A protocol worker in plain Python (no clorch_worker, no numpy) whose misbehaviour is chosen
by the environment variable SCRIPTED_FAULT, for clorch's tests of external workers.

Without a fault it keeps the protocol: it "trains" a synthetic stream by emitting
deterministic numbers, checkpoints at task boundaries and on a stop request (writing
resume.json), resumes, and heartbeats. With a fault it breaks exactly one rule:

  garbage          prints a line that is not an event
  unsealed         prints events without their crc member
  unknown_event    prints a sealed event of a kind that does not exist
  silent_exit      exits 0 without any event
  refuse           refuses every spec (exit 2) with a reason
  hang             prints nothing and sleeps
  no_manifest      stops on SIGTERM with exit 75 but writes no resume.json
  nondeterministic numbers that change from one start to the next
  any_version      accepts a spec of any protocol version
  no_finished      exits 0 after the last task without `finished`

SCRIPTED_STREAMS (comma-separated) is the stream kinds its description lists.
"""
import json
import os
import pickle
import signal
import sys
import time
import zlib

FAULT = os.environ.get("SCRIPTED_FAULT", "")
DESCRIPTION = {
    "protocol": 1,
    "worker": "scripted",
    "methods": [{"kind": "scripted", "doc": "deterministic fake training", "params": [
        {"name": "lr", "type": "float", "default": 0.1, "doc": "scales the fake losses"},
        {"name": "pause", "type": "float", "default": 0.05, "doc": "seconds per fake step"},
    ]}],
}
stop = False


def on_stop(signum, frame):
    global stop
    stop = True


def seal(event):
    body = json.dumps(event, separators=(",", ":"))
    if FAULT == "unsealed":
        return body
    return body[:-1] + ',"crc":"%08x"}' % zlib.crc32(body.encode())


def main(argv):
    if argv == ["--describe"]:
        if os.environ.get("SCRIPTED_STREAMS"):
            DESCRIPTION["streams"] = os.environ["SCRIPTED_STREAMS"].split(",")
        print(json.dumps(DESCRIPTION))
        return 0
    args = dict(zip(argv[0::2], argv[1::2])) if "--watch-stdin" not in argv else None
    if args is None:
        rest = [a for a in argv if a != "--watch-stdin"]
        args = dict(zip(rest[0::2], rest[1::2]))
    spec = json.load(open(args["--spec"]))
    if FAULT == "refuse":
        print("clorch worker: this worker refuses every spec", file=sys.stderr)
        return 2
    if spec["protocol"] != 1 and FAULT != "any_version":
        print("clorch worker: protocol %s is not 1" % spec["protocol"], file=sys.stderr)
        return 2
    if FAULT == "hang":
        time.sleep(3600)
    if FAULT == "silent_exit":
        return 0
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, on_stop)
    run_dir = spec["run_dir"]
    run = spec["id"]
    events_path = os.path.join(run_dir, "events.jsonl")
    kind, stream = next(iter(spec["stream"].items()))
    tasks = stream.get("tasks", 3)
    lr = spec["method"]["params"]["lr"]
    pause = spec["method"]["params"]["pause"]
    steps_per_task = 5
    state = {"seq": 0, "task": 0, "step": 0, "begun": False}
    manifest = os.path.join(run_dir, "resume.json")
    try:
        m = json.load(open(manifest))
        ckpt = os.path.join(run_dir, m["checkpoint"])
        with open(ckpt, "rb") as f:
            state = pickle.load(f)
        assert state["seq"] == m["next_seq"]
    except (OSError, ValueError, KeyError, AssertionError):
        state = {"seq": 0, "task": 0, "step": 0, "begun": False}
    with open(events_path, "r+b" if os.path.exists(events_path) else "w+b") as f:
        lines = f.read().split(b"\n")
        keep = b"".join(l + b"\n" for l in lines[: state["seq"]])
        f.seek(0)
        f.write(keep)
        f.truncate()
    log = open(events_path, "ab")
    salt = time.time() if FAULT == "nondeterministic" else 0.0

    def emit(kind, **fields):
        event = {"run": run, "seq": state["seq"], "event": kind}
        event.update(fields)
        line = seal(event)
        # The file first: a refused line is then always in events.jsonl, as it may be with any
        # worker, which the store's drift check must tell from a store that is behind.
        log.write((line + "\n").encode())
        log.flush()
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        state["seq"] += 1

    def checkpoint():
        name = "ckpt-%d.pkl" % state["seq"]
        with open(os.path.join(run_dir, name + ".tmp"), "wb") as f:
            pickle.dump(state, f)
        os.replace(os.path.join(run_dir, name + ".tmp"), os.path.join(run_dir, name))
        if FAULT != "no_manifest":
            with open(manifest + ".tmp", "w") as f:
                json.dump({"next_seq": state["seq"], "checkpoint": name}, f)
            os.replace(manifest + ".tmp", manifest)

    if state["seq"] == 0:
        emit("started", protocol=1, tasks=tasks, inputs=4, outputs=2, heads=1, parameters=10,
             problem="classification")
        if FAULT == "garbage":
            print("epoch 1/10 loss=0.3")
            sys.stdout.flush()
        if FAULT == "unknown_event":
            emit("gpu_temperature", celsius=71)
    last_beat = 0.0
    while state["task"] < tasks:
        t = state["task"]
        if not state["begun"]:
            emit("task_started", task=t, head=0, train_examples=steps_per_task * 10)
            state["begun"] = True
        while state["step"] < steps_per_task:
            if stop:
                checkpoint()
                print("clorch worker: stopped; resumable", file=sys.stderr)
                return 75
            time.sleep(pause)
            state["step"] += 1
            if time.time() - last_beat > 0.5:
                print("clorch-progress task=%d tasks=%d step=%d" % (t, tasks, state["step"]), file=sys.stderr)
                last_beat = time.time()
        loss = round(lr / (1 + t) + salt, 6)
        emit("online", task=t, bin=0, examples=steps_per_task * 10, loss=loss, accuracy=0.5)
        for j in range(t + 1):
            emit("eval", after_task=t, on_task=j, examples=20, loss=loss + j, accuracy=round(0.9 - 0.1 * (t - j), 6))
        emit("scalar", task=t, name="fake/lr", value=lr, step=(t + 1) * steps_per_task)
        state["task"] += 1
        state["step"] = 0
        state["begun"] = False
        checkpoint()
    if FAULT != "no_finished":
        emit("finished", tasks=tasks, steps=tasks * steps_per_task, examples=tasks * steps_per_task * 10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
