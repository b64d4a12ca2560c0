"""A clorch external worker: a numpy MLP on permuted and split MNIST, with SGD and experience replay.

Run by clorch (see README.md); by hand: ``python worker.py --spec spec.json --heartbeat 1``
or ``python worker.py --describe``.

Everything the protocol asks (events, checkpoints, resume, signals, heartbeats, exit codes) is
done by the ``clorch_worker`` client; this file is the learning. It is deterministic given the
spec (float64, one BLAS thread), so an interrupted-and-resumed run emits the same bytes as an
uninterrupted one — its state at any step boundary (weights, momentum, replay buffer, the
replay generator, the online-bin sums) is what ``save`` pickles.

Random streams are numpy generators seeded from ``[spec.seed, purpose, …]``
(``np.random.default_rng``): the pixel permutations, the initial weights, the per-epoch
example order, the validation hold-out and replay. The permutations therefore differ from
clorch's built-in worker's (which uses its own generator), with the same distribution — the
numbers of the two workers are comparable, not identical.
"""

from __future__ import annotations

import os

# One BLAS thread: parallelism is across runs, and a single thread keeps the sums' order (and
# so the bytes of every event) the same from run to run. Must happen before numpy loads.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import pickle  # noqa: E402
from typing import Any, Dict, List, Optional, Tuple  # noqa: E402

import sys  # noqa: E402

try:
    import numpy as np
    from clorch_worker import PIXEL_SCALE, Method, Param, Worker, read_stream_data, split_label_map
except ImportError as _e:  # the last words clorch shows: which package, which python
    sys.stderr.write("clorch worker: %s; install numpy and ./clients/python for %s\n" % (_e, sys.executable))
    sys.exit(2)

WORKER = Worker(
    name="numpy-mlp",
    streams=["permuted_mnist", "split_mnist"],
    methods=[
        Method(
            "sgd",
            "plain mini-batch SGD (with optional momentum)",
            [
                Param("lr", "float", 0.01, "SGD step size"),
                Param("momentum", "float", 0.0, "heavy-ball momentum (0: none)"),
            ],
        ),
        Method(
            "er",
            "experience replay: a reservoir buffer over all tasks, one replayed batch per step",
            [
                Param("lr", "float", 0.01, "SGD step size"),
                Param("momentum", "float", 0.0, "heavy-ball momentum (0: none)"),
                Param("buffer", "int", 200, "examples kept, over all tasks (reservoir sampling)"),
                Param("replay_batch", "int", 0, "replayed examples per step (0: the training batch size)"),
            ],
        ),
    ],
)

# Purposes of the seeded generators (the second entropy word).
PERMUTATION, INIT, ORDER, VALIDATION, REPLAY = 1, 2, 3, 4, 5

GAIN = {"relu": np.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "leaky_relu": np.sqrt(2.0 / (1 + 0.01**2))}


def activate(kind: str, z: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.maximum(z, 0.0)
    if kind == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if kind == "tanh":
        return np.tanh(z)
    return 1.0 / (1.0 + np.exp(-z))


def activate_grad(kind: str, z: np.ndarray, h: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return (z > 0).astype(z.dtype)
    if kind == "leaky_relu":
        return np.where(z > 0, 1.0, 0.01)
    if kind == "tanh":
        return 1.0 - h * h
    return h * (1.0 - h)


class Stream:
    """The tasks of a ``permuted_mnist`` or ``split_mnist`` spec, built as clorch describes them."""

    def __init__(self, run: Any) -> None:
        spec = run.spec
        kind, p = spec.stream.kind, spec.stream.params
        data = read_stream_data(kind, p)
        self.pixels = data.pixels
        self.train_x = np.frombuffer(data.train_images, np.uint8).reshape(-1, self.pixels)
        self.train_y = np.frombuffer(data.train_labels, np.uint8).astype(np.int64)
        self.test_x = np.frombuffer(data.test_images, np.uint8).reshape(-1, self.pixels)
        self.test_y = np.frombuffer(data.test_labels, np.uint8).astype(np.int64)
        self.tasks = run.num_tasks
        self.perms: List[Optional[np.ndarray]] = [None] * self.tasks
        self.train_rows: List[np.ndarray] = []
        self.test_rows: List[np.ndarray] = []
        self.label_map: Optional[np.ndarray] = None
        if kind == "permuted_mnist":
            for t in range(self.tasks):
                if not (t == 0 and p.get("first_unpermuted", False)):
                    self.perms[t] = np.random.default_rng([spec.seed, PERMUTATION, t]).permutation(self.pixels)
                self.train_rows.append(np.arange(len(self.train_y)))
                self.test_rows.append(np.arange(len(self.test_y)))
            self.head_outputs, per_task_stream = 10, False
        else:
            groups, label_map, self.head_outputs, per_task_stream = split_label_map(
                p.get("groups", [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]), p.get("setting", "task_incremental")
            )
            if label_map is not None:
                self.label_map = np.array(label_map, dtype=np.int64)
            for t, g in enumerate(groups):
                tr = np.flatnonzero(np.isin(self.train_y, g))
                te = np.flatnonzero(np.isin(self.test_y, g))
                for rows, which in ((tr, "train"), (te, "test")):
                    if len(rows) == 0:
                        run.bad_spec(
                            "task %d (classes %s) has no %s example among the loaded images; raise `%s_examples`"
                            % (t, g, which, which)
                        )
                self.train_rows.append(tr)
                self.test_rows.append(te)
        self.per_task = per_task_stream or spec.network.heads == "per_task"
        self.heads = self.tasks if self.per_task else 1
        # Validation: a seeded sample of each task's training rows, never trained on.
        v = spec.training.validation
        if v:
            for t in range(self.tasks):
                rows = self.train_rows[t]
                if v >= len(rows):
                    run.bad_spec("`training.validation` is %d, but task %d has only %d training examples" % (v, t, len(rows)))
                held = np.random.default_rng([spec.seed, VALIDATION, t]).choice(len(rows), v, replace=False)
                self.train_rows[t] = np.delete(rows, held)

    def head(self, task: int) -> int:
        return task if self.per_task else 0

    def inputs(self, task: int, images: np.ndarray) -> np.ndarray:
        """uint8 images (already selected rows) → the task's float64 inputs in [0, 1]."""
        perm = self.perms[task]
        x = images if perm is None else images[:, perm]
        return x.astype(np.float64) * PIXEL_SCALE

    def targets(self, labels: np.ndarray) -> np.ndarray:
        return labels if self.label_map is None else self.label_map[labels]

    def test(self, task: int, max_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
        rows = self.test_rows[task]
        if max_examples is not None:
            rows = rows[:max_examples]
        return self.inputs(task, self.test_x[rows]), self.targets(self.test_y[rows])


class Mlp:
    """Hidden layers of one activation, then ``heads`` output heads of ``k`` outputs each."""

    def __init__(self, sizes: List[int], activation: str, heads: int, k: int, seed: int) -> None:
        self.act, self.k = activation, k
        rng = np.random.default_rng([seed, INIT])
        dims = sizes + [heads * k]
        self.W: List[np.ndarray] = []
        self.b: List[np.ndarray] = []
        for i in range(len(dims) - 1):
            gain = GAIN[activation] if i < len(dims) - 2 else 1.0  # the output layer: 1
            bound = gain * np.sqrt(3.0 / dims[i])
            self.W.append(rng.uniform(-bound, bound, size=(dims[i], dims[i + 1])))
            self.b.append(np.zeros(dims[i + 1]))
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]

    @property
    def parameters(self) -> int:
        return int(sum(w.size + b.size for w, b in zip(self.W, self.b)))

    def forward(self, x: np.ndarray) -> Tuple[List[np.ndarray], List[np.ndarray], np.ndarray]:
        zs, hs = [], [x]
        h = x
        for W, b in zip(self.W[:-1], self.b[:-1]):
            z = h @ W + b
            h = activate(self.act, z)
            zs.append(z)
            hs.append(h)
        return zs, hs, h @ self.W[-1] + self.b[-1]

    def head_logits(self, out: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Each row's logits on its own head (``heads`` per row)."""
        cols = heads[:, None] * self.k + np.arange(self.k)[None, :]
        return np.take_along_axis(out, cols, axis=1)

    def loss(self, x: np.ndarray, y: np.ndarray, heads: np.ndarray):
        """Per-example cross-entropy, correctness, and what backprop needs."""
        zs, hs, out = self.forward(x)
        logits = self.head_logits(out, heads)
        m = logits.max(axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = e.sum(axis=1, keepdims=True)
        ce = (np.log(s) + m)[:, 0] - logits[np.arange(len(y)), y]
        correct = logits.argmax(axis=1) == y
        return ce, correct, (zs, hs, out, e / s)

    def gradients(self, cache, y: np.ndarray, heads: np.ndarray, weight: float):
        """Gradients of ``weight × mean cross-entropy`` over the rows."""
        zs, hs, out, probs = cache
        n = len(y)
        d = probs.copy()
        d[np.arange(n), y] -= 1.0
        d *= weight / n
        dout = np.zeros_like(out)
        cols = heads[:, None] * self.k + np.arange(self.k)[None, :]
        np.put_along_axis(dout, cols, d, axis=1)
        gW, gb = [None] * len(self.W), [None] * len(self.b)
        delta = dout
        for i in range(len(self.W) - 1, -1, -1):
            gW[i] = hs[i].T @ delta
            gb[i] = delta.sum(axis=0)
            if i > 0:
                delta = (delta @ self.W[i].T) * activate_grad(self.act, zs[i - 1], hs[i])
        return gW, gb

    def step(self, grads, lr: float, momentum: float) -> None:
        gW, gb = grads
        for i in range(len(self.W)):
            if momentum:
                self.vW[i] = momentum * self.vW[i] + gW[i]
                self.vb[i] = momentum * self.vb[i] + gb[i]
                self.W[i] -= lr * self.vW[i]
                self.b[i] -= lr * self.vb[i]
            else:
                self.W[i] -= lr * gW[i]
                self.b[i] -= lr * gb[i]


def add(a, b):
    return [x + y for x, y in zip(a[0], b[0])], [x + y for x, y in zip(a[1], b[1])]


def plasticity(model: Mlp, x: np.ndarray, tau: float) -> Tuple[List[Dict[str, Any]], float]:
    """Per hidden layer: dead and τ-dormant units, effective and stable rank, mean |w|."""
    zs, hs, _ = model.forward(x)
    layers = []
    for i, (z, h) in enumerate(zip(zs, hs[1:])):
        relu_family = model.act in ("relu", "leaky_relu")
        dead = float((z <= 0).all(axis=0).mean()) if relu_family else 0.0
        act = np.abs(h).mean(axis=0)
        dormant = float((act / (act.mean() + 1e-9) <= tau).mean())
        s = np.linalg.svd(h, compute_uv=False)
        total = s.sum()
        if total > 0:
            p = s / total
            nz = p[p > 0]
            erank = float(np.exp(-(nz * np.log(nz)).sum()))
            stable = int(np.searchsorted(np.cumsum(s) / total, 0.99) + 1)
            stable = min(stable, len(s))
        else:
            erank, stable = 0.0, 0
        layers.append({"units": h.shape[1], "dead": dead, "dormant": dormant, "effective_rank": erank,
                       "stable_rank": stable, "mean_abs_weight": float(np.abs(model.W[i]).mean())})
    allw = sum(float(np.abs(w).sum()) for w in model.W) / sum(w.size for w in model.W)
    return layers, allw


def main() -> None:
    with WORKER.run() as run:
        spec = run.spec
        net = spec.network
        if net.layers:
            run.bad_spec("this worker builds its network from `network.hidden`; `network.layers` is not supported")
        if net.activation not in GAIN:
            run.bad_spec("unknown activation `%s`" % net.activation)
        p = spec.method.params
        er = spec.method.kind == "er"
        stream = Stream(run)
        T = stream.tasks
        model = Mlp([stream.pixels] + list(net.hidden), net.activation, stream.heads, stream.head_outputs, spec.seed)
        B = spec.training.batch_size
        replay_batch = (p["replay_batch"] or B) if er else 0
        buffer_size = p["buffer"] if er else 0
        # Rough peak: the images (uint8), a float64 copy of one test split, the model (×3 with
        # momentum and gradients), activations of the largest batch.
        run.check_memory(
            stream.train_x.nbytes + stream.test_x.nbytes + 8 * max(len(r) for r in stream.test_rows) * stream.pixels
            + 24 * model.parameters + 8 * (B + replay_batch) * sum([stream.pixels] + list(net.hidden)) * 3
            + buffer_size * stream.pixels
        )
        st: Dict[str, Any] = {
            "buf_x": np.zeros((buffer_size, stream.pixels), np.uint8),  # inputs as the task saw them
            "buf_y": np.zeros(buffer_size, np.int64),
            "buf_head": np.zeros(buffer_size, np.int64),
            "seen": 0,
            "rng": np.random.default_rng([spec.seed, REPLAY]),
            "bin": 0, "bin_n": 0, "bin_loss": 0.0, "bin_correct": 0,
            "task_loss": 0.0, "task_n": 0, "examples": 0,
        }

        def save(path: str) -> None:
            with open(path, "wb") as f:
                pickle.dump({"W": model.W, "b": model.b, "vW": model.vW, "vb": model.vb, "state": st}, f, protocol=4)

        def load(path: str) -> None:
            with open(path, "rb") as f:
                s = pickle.load(f)
            model.W, model.b, model.vW, model.vb = s["W"], s["b"], s["vW"], s["vb"]
            st.update(s["state"])

        run.checkpointing(save, load)

        def evaluate(after: Optional[int], tasks: List[int]) -> None:
            for j in tasks:
                x, y = stream.test(j, spec.eval.max_examples)
                ce, correct, _ = model.loss(x, y, np.full(len(y), stream.head(j)))
                run.eval(after_task=after, on_task=j, examples=len(y), loss=float(ce.mean()),
                         accuracy=float(correct.mean()))

        def probe(after_tasks: int) -> None:
            t = min(after_tasks, T - 1)
            rows = stream.train_rows[t][: spec.eval.plasticity.probe]
            x = stream.inputs(t, stream.train_x[rows])
            layers, allw = plasticity(model, x, spec.eval.plasticity.dormant_tau)
            run.plasticity(after_tasks=after_tasks, probe_task=t, probe_examples=len(rows), layers=layers,
                           mean_abs_weight=allw)

        if not run.resumed:
            run.started(inputs=stream.pixels, outputs=stream.heads * stream.head_outputs, heads=stream.heads,
                        parameters=model.parameters, problem="classification")
            if spec.eval.before_training:
                evaluate(None, list(range(T)))
            if run.plasticity_due(0):
                probe(0)

        epochs = spec.training.epochs
        for t in run.tasks():
            rows = stream.train_rows[t]
            n = len(rows)
            head = stream.head(t)
            batches = -(-n // B)
            binsize = spec.eval.online_bin or n * epochs
            run.task_started(head=head, train_examples=n)
            order = None
            for s in run.steps(batches * epochs):
                epoch, b = divmod(s, batches)
                if order is None or b == 0:
                    order = rows[np.random.default_rng([spec.seed, ORDER, t, epoch]).permutation(n)]
                idx = order[b * B : (b + 1) * B]
                x_u8 = stream.train_x[idx] if stream.perms[t] is None else stream.train_x[idx][:, stream.perms[t]]
                x = x_u8.astype(np.float64) * PIXEL_SCALE
                y = stream.targets(stream.train_y[idx])
                heads = np.full(len(y), head)
                ce, correct, cache = model.loss(x, y, heads)
                grads = model.gradients(cache, y, heads, 1.0)
                loss = float(ce.mean())
                if er and st["seen"] > 0:
                    filled = min(st["seen"], buffer_size)
                    pick = st["rng"].integers(0, filled, size=min(replay_batch, filled))
                    rx = st["buf_x"][pick].astype(np.float64) * PIXEL_SCALE
                    ry, rh = st["buf_y"][pick], st["buf_head"][pick]
                    rce, _, rcache = model.loss(rx, ry, rh)
                    grads = add(grads, model.gradients(rcache, ry, rh, 1.0))
                    loss += float(rce.mean())
                model.step(grads, p["lr"], p["momentum"])
                st["task_loss"] += loss
                st["task_n"] += 1
                if er:
                    for i in range(len(y)):  # reservoir sampling over every example seen
                        if st["seen"] < buffer_size:
                            slot = st["seen"]
                        else:
                            slot = int(st["rng"].integers(0, st["seen"] + 1))
                        if slot < buffer_size:
                            st["buf_x"][slot], st["buf_y"][slot], st["buf_head"][slot] = x_u8[i], y[i], head
                        st["seen"] += 1
                # Online performance: each example's loss before its update, binned.
                i = 0
                while i < len(y):
                    take = min(len(y) - i, binsize - st["bin_n"])
                    st["bin_loss"] += float(ce[i : i + take].sum())
                    st["bin_correct"] += int(correct[i : i + take].sum())
                    st["bin_n"] += take
                    i += take
                    if st["bin_n"] == binsize:
                        run.online(bin=st["bin"], examples=st["bin_n"], loss=st["bin_loss"] / st["bin_n"],
                                   accuracy=st["bin_correct"] / st["bin_n"])
                        st.update(bin=st["bin"] + 1, bin_n=0, bin_loss=0.0, bin_correct=0)
                st["examples"] += len(y)
            if st["bin_n"]:
                run.online(bin=st["bin"], examples=st["bin_n"], loss=st["bin_loss"] / st["bin_n"],
                           accuracy=st["bin_correct"] / st["bin_n"])
            run.scalar("train/loss", st["task_loss"] / max(st["task_n"], 1), step=run.steps_done)
            if er:
                run.scalar("er/buffer_fill", min(st["seen"], buffer_size) / max(buffer_size, 1), step=run.steps_done)
            st.update(bin=0, bin_n=0, bin_loss=0.0, bin_correct=0, task_loss=0.0, task_n=0)
            evaluate(t, run.evaluate_after(t))
            if run.plasticity_due(t + 1):
                probe(t + 1)
        run.finished(examples=st["examples"])


if __name__ == "__main__":
    main()
