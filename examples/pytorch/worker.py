"""A clorch external worker in PyTorch: an MLP on permuted and split MNIST, with SGD and experience replay.

The same worker as ``examples/python-numpy/worker.py`` (same methods, parameters, streams,
events and seeded data order), written with PyTorch so it can train on a GPU. Run by clorch
(see README.md); by hand: ``python worker.py --spec spec.json --heartbeat 1`` or
``python worker.py --describe``.

Device: CUDA when ``torch.cuda.is_available()``, else the CPU; ``CLORCH_TORCH_DEVICE``
(``cpu``, ``cuda``, ``cuda:1``) overrides it. Determinism: ``torch.use_deterministic_algorithms``
is on (``warn_only``, so an operation without a deterministic kernel warns instead of
failing), cuDNN benchmarking is off and cuBLAS gets a fixed workspace. On the CPU with one
thread a run repeats bit for bit; on a GPU it need not (atomics, kernels chosen per device and
driver), so a resumed GPU run's later events may differ in the last digits from the first
attempt's. That is fine for clorch: it drops the events stored after the resume point and
keeps the resumed attempt's (docs/protocol.md, "External workers", "Resuming").

Random streams: the pixel permutations, the per-epoch example order and the validation
hold-out come from numpy generators seeded from ``[spec.seed, purpose, …]`` exactly as in the
numpy worker (the same tasks and batches), the initial weights and replay from seeded torch and
numpy generators. The permutations differ from clorch's built-in worker's, with the same
distribution.
"""

from __future__ import annotations

import os

# Before torch loads: a fixed cuBLAS workspace (needed for deterministic cuBLAS) and one
# OpenMP thread unless the orchestrator gave more (under SLURM RAYON_NUM_THREADS is the job's
# cpus_per_task).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("RAYON_NUM_THREADS", "1"))

from typing import Any, Dict, List, Optional, Tuple  # noqa: E402

import sys  # noqa: E402

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from clorch_worker import PIXEL_SCALE, Method, Param, Worker, read_stream_data, split_label_map
except ImportError as _e:  # the last words clorch shows: which package, which python
    sys.stderr.write("clorch worker: %s; install torch, numpy and ./clients/python for %s\n" % (_e, sys.executable))
    sys.exit(2)

WORKER = Worker(
    name="pytorch-mlp",
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

# Purposes of the seeded generators (the second entropy word), as in the numpy worker.
PERMUTATION, INIT, ORDER, VALIDATION, REPLAY = 1, 2, 3, 4, 5

GAIN = {"relu": 2.0**0.5, "tanh": 5.0 / 3.0, "sigmoid": 1.0, "leaky_relu": (2.0 / (1 + 0.01**2)) ** 0.5}
ACTIVATION = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
              "leaky_relu": lambda: torch.nn.LeakyReLU(0.01)}
EVAL_CHUNK = 1000  # examples per forward pass when evaluating (bounds GPU memory)


def pick_device() -> torch.device:
    forced = os.environ.get("CLORCH_TORCH_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_deterministic(device: torch.device) -> None:
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


class Stream:
    """The tasks of a ``permuted_mnist`` or ``split_mnist`` spec (as in the numpy worker), on ``device``."""

    def __init__(self, run: Any, device: torch.device) -> None:
        spec = run.spec
        kind, p = spec.stream.kind, spec.stream.params
        data = read_stream_data(kind, p)
        self.device = device
        self.pixels = data.pixels
        train_x = np.frombuffer(data.train_images, np.uint8).reshape(-1, self.pixels)
        train_y = np.frombuffer(data.train_labels, np.uint8).astype(np.int64)
        test_x = np.frombuffer(data.test_images, np.uint8).reshape(-1, self.pixels)
        test_y = np.frombuffer(data.test_labels, np.uint8).astype(np.int64)
        self.tasks = run.num_tasks
        self.perms: List[Optional[torch.Tensor]] = [None] * self.tasks
        self.train_rows: List[np.ndarray] = []
        self.test_rows: List[np.ndarray] = []
        label_map: Optional[List[int]] = None
        if kind == "permuted_mnist":
            for t in range(self.tasks):
                if not (t == 0 and p.get("first_unpermuted", False)):
                    perm = np.random.default_rng([spec.seed, PERMUTATION, t]).permutation(self.pixels)
                    self.perms[t] = torch.from_numpy(perm).to(device)
                self.train_rows.append(np.arange(len(train_y)))
                self.test_rows.append(np.arange(len(test_y)))
            self.head_outputs, per_task_stream = 10, False
        else:
            groups, label_map, self.head_outputs, per_task_stream = split_label_map(
                p.get("groups", [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]), p.get("setting", "task_incremental")
            )
            for t, g in enumerate(groups):
                tr = np.flatnonzero(np.isin(train_y, g))
                te = np.flatnonzero(np.isin(test_y, g))
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
        v = spec.training.validation
        if v:
            for t in range(self.tasks):
                rows = self.train_rows[t]
                if v >= len(rows):
                    run.bad_spec("`training.validation` is %d, but task %d has only %d training examples" % (v, t, len(rows)))
                held = np.random.default_rng([spec.seed, VALIDATION, t]).choice(len(rows), v, replace=False)
                self.train_rows[t] = np.delete(rows, held)
        # The digits stay uint8 on the device; a batch is permuted and scaled when it is used.
        self.train_x = torch.from_numpy(train_x.copy()).to(device)
        self.train_y = torch.from_numpy(train_y.copy()).to(device)
        self.test_x = torch.from_numpy(test_x.copy()).to(device)
        self.test_y = torch.from_numpy(test_y.copy()).to(device)
        self.label_map = None if label_map is None else torch.tensor(label_map, dtype=torch.int64, device=device)

    def head(self, task: int) -> int:
        return task if self.per_task else 0

    def permute(self, task: int, images: torch.Tensor) -> torch.Tensor:
        perm = self.perms[task]
        return images if perm is None else images[:, perm]

    def inputs(self, task: int, images: torch.Tensor) -> torch.Tensor:
        return self.permute(task, images).to(torch.float32) * PIXEL_SCALE

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels if self.label_map is None else self.label_map[labels]

    def rows(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)


class Mlp(torch.nn.Module):
    """Hidden layers of one activation, then ``heads`` output heads of ``k`` outputs each."""

    def __init__(self, sizes: List[int], activation: str, heads: int, k: int, seed: int) -> None:
        super().__init__()
        self.k = k
        self.relu_family = activation in ("relu", "leaky_relu")
        dims = sizes + [heads * k]
        self.linears = torch.nn.ModuleList(torch.nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.act = ACTIVATION[activation]()
        g = torch.Generator().manual_seed(int(np.random.default_rng([seed, INIT]).integers(0, 2**62)))
        with torch.no_grad():
            for i, lin in enumerate(self.linears):
                gain = GAIN[activation] if i < len(self.linears) - 1 else 1.0
                bound = gain * (3.0 / dims[i]) ** 0.5
                lin.weight.copy_(torch.empty(lin.weight.shape).uniform_(-bound, bound, generator=g))
                lin.bias.zero_()

    def features(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor], torch.Tensor]:
        """Pre-activations and activations of every hidden layer, and the outputs."""
        zs, hs = [], []
        h = x
        for lin in self.linears[:-1]:
            z = lin(h)
            h = self.act(z)
            zs.append(z)
            hs.append(h)
        return zs, hs, self.linears[-1](h)

    def forward(self, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """Each row's logits on its own head."""
        out = self.features(x)[2]
        cols = heads[:, None] * self.k + torch.arange(self.k, device=x.device)[None, :]
        return torch.gather(out, 1, cols)


@torch.no_grad()
def plasticity(model: Mlp, x: torch.Tensor, tau: float) -> Tuple[List[Dict[str, Any]], float]:
    """Per hidden layer: dead and τ-dormant units, effective and stable rank, mean |w| (in float64 on the CPU)."""
    zs, hs, _ = model.features(x)
    layers = []
    for i, (z, h) in enumerate(zip(zs, hs)):
        z, h = z.double().cpu(), h.double().cpu()
        dead = float((z <= 0).all(dim=0).double().mean()) if model.relu_family else 0.0
        act = h.abs().mean(dim=0)
        dormant = float((act / (act.mean() + 1e-9) <= tau).double().mean())
        s = torch.linalg.svdvals(h)
        total = float(s.sum())
        if total > 0:
            p = s / total
            nz = p[p > 0]
            erank = float(torch.exp(-(nz * nz.log()).sum()))
            stable = int(torch.searchsorted(torch.cumsum(s, 0) / total, torch.tensor([0.99], dtype=s.dtype))[0]) + 1
            stable = min(stable, len(s))
        else:
            erank, stable = 0.0, 0
        layers.append({"units": h.shape[1], "dead": dead, "dormant": dormant, "effective_rank": erank,
                       "stable_rank": stable, "mean_abs_weight": float(model.linears[i].weight.abs().mean())})
    total_abs = sum(float(lin.weight.abs().double().sum()) for lin in model.linears)
    count = sum(lin.weight.numel() for lin in model.linears)
    return layers, total_abs / count


def main() -> None:
    with WORKER.run() as run:
        spec = run.spec
        net = spec.network
        if net.layers:
            run.bad_spec("this worker builds its network from `network.hidden`; `network.layers` is not supported")
        if net.activation not in GAIN:
            run.bad_spec("unknown activation `%s`" % net.activation)
        device = pick_device()
        make_deterministic(device)
        run.log("INFO", "worker", "training on %s (torch %s)" % (device, torch.__version__))
        p = spec.method.params
        er = spec.method.kind == "er"
        stream = Stream(run, device)
        T = stream.tasks
        model = Mlp([stream.pixels] + list(net.hidden), net.activation, stream.heads, stream.head_outputs,
                    spec.seed).to(device)
        optim = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"])
        parameters = sum(t.numel() for t in model.parameters())
        B = spec.training.batch_size
        replay_batch = (p["replay_batch"] or B) if er else 0
        buffer_size = p["buffer"] if er else 0
        if device.type == "cpu":
            run.check_memory(stream.train_x.numel() + stream.test_x.numel() + 4 * EVAL_CHUNK * stream.pixels
                             + 16 * parameters + 4 * (B + replay_batch) * sum([stream.pixels] + list(net.hidden)) * 3
                             + buffer_size * stream.pixels)
        st: Dict[str, Any] = {
            "buf_x": torch.zeros((buffer_size, stream.pixels), dtype=torch.uint8, device=device),
            "buf_y": torch.zeros(buffer_size, dtype=torch.int64, device=device),
            "buf_head": torch.zeros(buffer_size, dtype=torch.int64, device=device),
            "seen": 0,
            "rng": np.random.default_rng([spec.seed, REPLAY]),
            "bin": 0, "bin_n": 0, "bin_loss": 0.0, "bin_correct": 0,
            "task_loss": 0.0, "task_n": 0, "examples": 0,
        }

        def save(path: str) -> None:
            torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "state": st}, path)

        def load(path: str) -> None:
            try:
                s = torch.load(path, map_location=device, weights_only=False)
            except TypeError:  # torch < 1.13 has no weights_only (and loads everything)
                s = torch.load(path, map_location=device)
            model.load_state_dict(s["model"])
            optim.load_state_dict(s["optim"])
            st.update(s["state"])

        run.checkpointing(save, load)

        @torch.no_grad()
        def evaluate(after: Optional[int], tasks: List[int]) -> None:
            model.eval()
            for j in tasks:
                rows = stream.test_rows[j]
                if spec.eval.max_examples is not None:
                    rows = rows[: spec.eval.max_examples]
                loss_sum, correct = 0.0, 0
                for c in range(0, len(rows), EVAL_CHUNK):
                    r = stream.rows(rows[c : c + EVAL_CHUNK])
                    x = stream.inputs(j, stream.test_x[r])
                    y = stream.targets(stream.test_y[r])
                    logits = model(x, torch.full_like(y, stream.head(j)))
                    loss_sum += float(F.cross_entropy(logits.double(), y, reduction="sum"))
                    correct += int((logits.argmax(dim=1) == y).sum())
                run.eval(after_task=after, on_task=j, examples=len(rows), loss=loss_sum / len(rows),
                         accuracy=correct / len(rows))
            model.train()

        def probe(after_tasks: int) -> None:
            t = min(after_tasks, T - 1)
            rows = stream.train_rows[t][: spec.eval.plasticity.probe]
            x = stream.inputs(t, stream.train_x[stream.rows(rows)])
            layers, allw = plasticity(model, x, spec.eval.plasticity.dormant_tau)
            run.plasticity(after_tasks=after_tasks, probe_task=t, probe_examples=len(rows), layers=layers,
                           mean_abs_weight=allw)

        if not run.resumed:
            run.started(inputs=stream.pixels, outputs=stream.heads * stream.head_outputs, heads=stream.heads,
                        parameters=parameters, problem="classification")
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
                idx = stream.rows(order[b * B : (b + 1) * B])
                x_u8 = stream.permute(t, stream.train_x[idx])
                x = x_u8.to(torch.float32) * PIXEL_SCALE
                y = stream.targets(stream.train_y[idx])
                heads = torch.full_like(y, head)
                logits = model(x, heads)
                ce = F.cross_entropy(logits, y, reduction="none")
                loss = ce.mean()
                if er and st["seen"] > 0:
                    filled = min(st["seen"], buffer_size)
                    pick = torch.from_numpy(st["rng"].integers(0, filled, size=min(replay_batch, filled))).to(device)
                    rx = st["buf_x"][pick].to(torch.float32) * PIXEL_SCALE
                    ry, rh = st["buf_y"][pick], st["buf_head"][pick]
                    loss = loss + F.cross_entropy(model(rx, rh), ry)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                st["task_loss"] += float(loss.detach())
                st["task_n"] += 1
                if er:
                    # Reservoir sampling over every example seen, decided on the host; a slot
                    # drawn twice in one batch keeps the later example (as one at a time would),
                    # and the copy is one indexed write with distinct slots (deterministic).
                    last: Dict[int, int] = {}
                    for i in range(len(y)):
                        if st["seen"] < buffer_size:
                            slot = st["seen"]
                        else:
                            slot = int(st["rng"].integers(0, st["seen"] + 1))
                        if slot < buffer_size:
                            last[slot] = i
                        st["seen"] += 1
                    if last:
                        slots = torch.tensor(list(last.keys()), dtype=torch.int64, device=device)
                        src = torch.tensor(list(last.values()), dtype=torch.int64, device=device)
                        st["buf_x"][slots] = x_u8[src]
                        st["buf_y"][slots] = y[src]
                        st["buf_head"][slots] = head
                # Online performance: each example's loss before its update, binned.
                ce_cpu = ce.detach().double().cpu()
                right = (logits.detach().argmax(dim=1) == y).cpu()
                i = 0
                while i < len(y):
                    take = min(len(y) - i, binsize - st["bin_n"])
                    st["bin_loss"] += float(ce_cpu[i : i + take].sum())
                    st["bin_correct"] += int(right[i : i + take].sum())
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
            if device.type == "cuda":
                # Device-dependent, so not comparable across machines; a diagnostic only.
                run.scalar("gpu/max_memory_allocated_mib", torch.cuda.max_memory_allocated(device) / 2**20,
                           step=run.steps_done)
            st.update(bin=0, bin_n=0, bin_loss=0.0, bin_correct=0, task_loss=0.0, task_n=0)
            evaluate(t, run.evaluate_after(t))
            if run.plasticity_due(t + 1):
                probe(t + 1)
        run.finished(examples=st["examples"])


if __name__ == "__main__":
    main()
