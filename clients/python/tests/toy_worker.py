"""A tiny deterministic pure-Python worker for the client's tests.

Linear regression by mini-batch SGD on a made-up `toy` stream (`{"toy": {"tasks": T,
"examples": N, "inputs": D}}`): every task has its own random target weights drawn from the
seed. Floats in pure Python are deterministic, so an interrupted-and-resumed run must produce
exactly the bytes of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import time

from clorch_worker import Method, Param, Worker

WORKER = Worker(
    name="toy",
    streams=["toy"],
    methods=[
        Method(
            "toy_sgd",
            "linear regression by SGD (tests only)",
            [
                Param("lr", "float", 0.05, "SGD step size"),
                Param("sleep", "float", 0.0, "seconds to sleep per step, so tests can interrupt"),
                Param("crash_at_step", "int", -1, "raise an exception at this total step (-1: never)"),
                Param("mode", "string", "plain", "unused choice", choices=["plain", "fancy"]),
            ],
        )
    ],
    lock_wait=float(os.environ.get("TOY_LOCK_WAIT", "120")),
)


def data(seed: int, task: int, n: int, dim: int):
    r = random.Random("%d/task/%d" % (seed, task))
    w = [r.gauss(0.0, 1.0) for _ in range(dim)]
    xs = [[r.gauss(0.0, 1.0) for _ in range(dim)] for _ in range(n)]
    ys = [sum(a * b for a, b in zip(w, x)) for x in xs]
    return xs, ys


def main() -> None:
    with WORKER.run() as run:
        spec = run.spec
        p = spec.method.params
        sp = spec.stream.params
        dim = int(sp.get("inputs", 4))
        n = int(sp["examples"])
        T = run.num_tasks
        state = {"w": [0.0] * dim, "bin_loss": 0.0, "bin_n": 0, "bin": 0, "examples": 0}

        def save(path: str) -> None:
            with open(path, "wb") as f:
                pickle.dump(state, f)

        def load(path: str) -> None:
            with open(path, "rb") as f:
                state.update(pickle.load(f))

        run.checkpointing(save, load)
        tests = [data(spec.seed, 1000 + t, 40, dim) for t in range(T)]

        def mse(t: int) -> float:
            xs, ys = tests[t]
            w = state["w"]
            return sum((sum(a * b for a, b in zip(w, x)) - y) ** 2 for x, y in zip(xs, ys)) / len(xs)

        if not run.resumed:
            run.started(inputs=dim, outputs=1, heads=1, parameters=dim, problem="regression")
            if spec.eval.before_training:
                for j in range(T):
                    run.eval(on_task=j, examples=40, loss=mse(j))
        B = spec.training.batch_size
        nb = (n + B - 1) // B
        total = nb * spec.training.epochs
        binsize = spec.eval.online_bin or n * spec.training.epochs
        for t in run.tasks():
            xs, ys = data(spec.seed, t, n, dim)
            run.task_started(head=0, train_examples=n)
            for s in run.steps(total):
                if run.steps_done == p["crash_at_step"]:
                    raise ZeroDivisionError("toy crash at step %d" % run.steps_done)
                epoch, b = divmod(s, nb)
                order = list(range(n))
                random.Random("%d/order/%d/%d" % (spec.seed, t, epoch)).shuffle(order)
                idx = order[b * B : (b + 1) * B]
                w = state["w"]
                grad = [0.0] * dim
                for i in idx:
                    err = sum(a * c for a, c in zip(w, xs[i])) - ys[i]
                    state["bin_loss"] += err * err
                    state["bin_n"] += 1
                    state["examples"] += 1
                    for k in range(dim):
                        grad[k] += 2 * err * xs[i][k] / len(idx)
                    if state["bin_n"] == binsize:
                        run.online(bin=state["bin"], examples=state["bin_n"], loss=state["bin_loss"] / state["bin_n"])
                        state.update(bin=state["bin"] + 1, bin_loss=0.0, bin_n=0)
                state["w"] = [a - p["lr"] * g for a, g in zip(w, grad)]
                if p["sleep"]:
                    time.sleep(p["sleep"])
            if state["bin_n"]:
                run.online(bin=state["bin"], examples=state["bin_n"], loss=state["bin_loss"] / state["bin_n"])
            state.update(bin=0, bin_loss=0.0, bin_n=0)
            run.scalar("toy/w_norm", math.sqrt(sum(a * a for a in state["w"])), step=run.steps_done)
            for j in run.evaluate_after(t):
                run.eval(after_task=t, on_task=j, examples=40, loss=mse(j))
        run.finished(examples=state["examples"])


if __name__ == "__main__":
    main()
