"""Reading and checking a run spec (``spec.json``), and describing a worker's methods.

Why so strict: the orchestrator writes every field and parameter out, defaults filled in, and
a field the worker does not understand would silently change what a run means. So, as the
built-in worker does (``deny_unknown_fields`` everywhere), an unknown field, an unknown method
parameter or another protocol version is refused with :class:`BadSpec` (exit code 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = [
    "PROTOCOL_VERSION",
    "BadSpec",
    "Param",
    "Method",
    "Spec",
    "StreamSpec",
    "NetworkSpec",
    "MethodSpec",
    "TrainingSpec",
    "EvalSpec",
    "PlasticitySpec",
    "CheckpointSpec",
    "WorkerCommand",
    "describe",
    "parse_spec",
    "STREAM_PARAMS",
]

PROTOCOL_VERSION = 1


class BadSpec(Exception):
    """The spec or its data cannot be trained; the worker exits ``BAD_SPEC`` (2) with this reason."""


_TYPES = ("float", "int", "bool", "string")


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of a method, as ``--describe`` declares it.

    ``default`` left as ``Param.REQUIRED`` means the recipe must give a value. ``choices``
    restricts the allowed values. The declared order of a method's params is the order the
    orchestrator writes them in.
    """

    name: str
    type: str
    default: Any = None
    doc: str = ""
    choices: Optional[Sequence[Any]] = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError("param %r: type must be one of %s" % (self.name, ", ".join(_TYPES)))
        if self.default is None and not self.required:
            raise ValueError(
                "param %r: give a default, or required=True for a parameter the recipe must set" % self.name
            )

    def describe(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"name": self.name, "type": self.type}
        if not self.required:
            d["default"] = self.default
        if self.doc:
            d["doc"] = self.doc
        if self.choices is not None:
            d["choices"] = list(self.choices)
        return d

    def check(self, value: Any) -> Any:
        """``value`` converted to the declared type, or :class:`BadSpec` saying why not."""
        where = "method parameter `%s`" % self.name
        if self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadSpec("%s must be a number, not %s" % (where, json.dumps(value)))
            value = float(value)
        elif self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise BadSpec("%s must be an integer, not %s" % (where, json.dumps(value)))
        elif self.type == "bool":
            if not isinstance(value, bool):
                raise BadSpec("%s must be true or false, not %s" % (where, json.dumps(value)))
        elif not isinstance(value, str):
            raise BadSpec("%s must be a string, not %s" % (where, json.dumps(value)))
        if self.choices is not None and value not in self.choices:
            raise BadSpec(
                "%s is %s; expected one of %s" % (where, json.dumps(value), ", ".join(json.dumps(c) for c in self.choices))
            )
        return value


@dataclass(frozen=True)
class Method:
    """A method kind the worker implements: its ``kind``, a one-line ``doc`` and its params."""

    kind: str
    doc: str = ""
    params: Sequence[Param] = ()

    def describe(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"kind": self.kind}
        if self.doc:
            d["doc"] = self.doc
        d["params"] = [p.describe() for p in self.params]
        return d


def describe(name: Optional[str], streams: Sequence[str], methods: Sequence[Method]) -> Dict[str, Any]:
    """The ``WorkerDescription`` document ``--describe`` prints."""
    d: Dict[str, Any] = {"protocol": PROTOCOL_VERSION}
    if name is not None:
        d["worker"] = name
    d["streams"] = list(streams)
    d["methods"] = [m.describe() for m in methods]
    return d


# The parameters of the stream kinds the client knows, in their declared order. Streams not
# listed here are passed through unchecked (the worker knows its own streams).
STREAM_PARAMS: Dict[str, Sequence[str]] = {
    "permuted_mnist": ("data_dir", "fingerprint", "tasks", "first_unpermuted", "train_examples", "test_examples"),
    "online_permuted_mnist": (
        "data_dir",
        "fingerprint",
        "tasks",
        "first_unpermuted",
        "train_examples",
        "test_examples",
        "order",
    ),
    "split_mnist": ("data_dir", "fingerprint", "groups", "setting", "train_examples", "test_examples"),
}


def _obj(value: Any, where: str, allowed: Sequence[str], required: Sequence[str] = ()) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise BadSpec("`%s` must be an object" % where)
    for k in value:
        if k not in allowed:
            raise BadSpec(
                "unknown field `%s%s` (this worker knows %s)"
                % (where + "." if where else "", k, ", ".join("`%s`" % a for a in allowed))
            )
    for k in required:
        if k not in value:
            raise BadSpec("missing field `%s%s`" % (where + "." if where else "", k))
    return value


def _uint(value: Any, where: str, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadSpec("`%s` must be a non-negative integer, not %s" % (where, json.dumps(value)))
    return value


@dataclass(frozen=True)
class StreamSpec:
    """The task stream: its ``kind`` (``permuted_mnist``, …) and its ``params`` as written."""

    kind: str
    params: Dict[str, Any]

    @property
    def tasks(self) -> int:
        """Tasks in the stream: ``tasks``, or the number of ``groups`` (split MNIST)."""
        if "tasks" in self.params:
            return int(self.params["tasks"])
        if "groups" in self.params:
            return len(self.params["groups"])
        if self.kind == "split_mnist":
            return 5
        raise BadSpec("stream `%s`: cannot tell how many tasks it has" % self.kind)


@dataclass(frozen=True)
class LayerSpec:
    """One entry of ``network.layers``: a layer kind and its parameters."""

    kind: str
    params: Dict[str, Any]


@dataclass(frozen=True)
class NetworkSpec:
    hidden: List[int]
    activation: str = "relu"
    heads: str = "shared"
    engine: str = "fused"
    layers: List[LayerSpec] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerCommand:
    command: List[str]
    dir: str


@dataclass(frozen=True)
class MethodSpec:
    """``method``: ``params`` are checked against the declared :class:`Method`, defaults filled in."""

    name: str
    kind: str
    params: Dict[str, Any]
    worker: Optional[WorkerCommand] = None


@dataclass(frozen=True)
class TrainingSpec:
    batch_size: int = 32
    epochs: int = 1
    validation: int = 0
    # Threads the run may use for its arithmetic (a worker that cannot split its work ignores it).
    threads: int = 1


@dataclass(frozen=True)
class PlasticitySpec:
    every: int = 1
    probe: int = 2000
    dormant_tau: float = 0.1


@dataclass(frozen=True)
class EvalSpec:
    """``eval``; ``tasks`` is ``"all"`` or the number of earlier tasks of ``{"subsample": …}``."""

    every: int = 1
    tasks: Union[str, int] = "all"
    before_training: bool = True
    max_examples: Optional[int] = None
    online_bin: Optional[int] = None
    plasticity: PlasticitySpec = field(default_factory=PlasticitySpec)


@dataclass(frozen=True)
class CheckpointSpec:
    """``checkpoint``; ``every_tasks`` absent means every task for this client."""

    every_steps: Optional[int] = None
    every_tasks: Optional[int] = None
    keep: int = 2


@dataclass(frozen=True)
class Spec:
    """A checked run spec. ``raw`` is the parsed JSON as the orchestrator wrote it."""

    protocol: int
    id: str
    experiment: str
    seed: int
    stream: StreamSpec
    network: NetworkSpec
    method: MethodSpec
    training: TrainingSpec
    eval: EvalSpec
    checkpoint: CheckpointSpec
    run_dir: Optional[str]
    raw: Dict[str, Any]

    @property
    def tasks(self) -> int:
        return self.stream.tasks


def parse_spec(
    text: Union[str, bytes],
    methods: Sequence[Method],
    streams: Sequence[str] = (),
) -> Spec:
    """Parses and checks ``spec.json`` against the protocol and the worker's declarations."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise BadSpec("the spec is not JSON: %s" % e) from None
    top = (
        "protocol",
        "id",
        "experiment",
        "seed",
        "stream",
        "network",
        "method",
        "training",
        "eval",
        "checkpoint",
        "run_dir",
    )
    _obj(raw, "", top, ("protocol", "id", "seed", "stream", "network", "method"))
    if raw["protocol"] != PROTOCOL_VERSION or isinstance(raw["protocol"], bool):
        raise BadSpec(
            "the spec is protocol %s, but this worker speaks protocol %d" % (json.dumps(raw["protocol"]), PROTOCOL_VERSION)
        )
    if not isinstance(raw["id"], str) or not raw["id"]:
        raise BadSpec("`id` must be a non-empty string")
    seed = _uint(raw["seed"], "seed")
    experiment = raw.get("experiment", "")
    if not isinstance(experiment, str):
        raise BadSpec("`experiment` must be a string")

    st = raw["stream"]
    if not isinstance(st, dict) or len(st) != 1:
        raise BadSpec("`stream` must be an object with exactly one key, the stream kind")
    (kind, params), = st.items()
    if not isinstance(params, dict):
        raise BadSpec("`stream.%s` must be an object of parameters" % kind)
    if streams and kind not in streams:
        raise BadSpec("this worker does not train the `%s` stream (it knows %s)" % (kind, ", ".join(streams)))
    if kind in STREAM_PARAMS:
        _obj(params, "stream." + kind, STREAM_PARAMS[kind], ("data_dir",))
    stream = StreamSpec(kind, dict(params))
    if stream.tasks < 1:
        raise BadSpec("the stream has no task")

    nw = _obj(raw["network"], "network", ("hidden", "layers", "activation", "heads", "engine"))
    hidden = nw.get("hidden", [])
    if not isinstance(hidden, list):
        raise BadSpec("`network.hidden` must be a list of widths")
    hidden = [int(_uint(h, "network.hidden[%d]" % i)) for i, h in enumerate(hidden)]  # type: ignore[arg-type]
    layers = []
    for i, layer in enumerate(nw.get("layers", []) or []):
        if not isinstance(layer, dict) or len(layer) != 1:
            raise BadSpec("`network.layers[%d]` must be an object with one key, the layer kind" % i)
        (lk, lp), = layer.items()
        layers.append(LayerSpec(lk, dict(lp or {})))
    if hidden and layers:
        raise BadSpec("`network` gives both `hidden` and `layers`; use one")
    network = NetworkSpec(
        hidden=hidden,
        activation=nw.get("activation", "relu"),
        heads=nw.get("heads", "shared"),
        engine=nw.get("engine", "fused"),
        layers=layers,
    )
    if network.heads not in ("shared", "per_task"):
        raise BadSpec("`network.heads` must be `shared` or `per_task`")

    me = _obj(raw["method"], "method", ("name", "kind", "params", "worker"), ("name", "kind"))
    declared = {m.kind: m for m in methods}
    if me["kind"] not in declared:
        raise BadSpec(
            "unknown method kind `%s` (this worker implements %s)"
            % (me["kind"], ", ".join("`%s`" % k for k in declared) or "none")
        )
    decl = declared[me["kind"]]
    given = me.get("params", {}) or {}
    if not isinstance(given, dict):
        raise BadSpec("`method.params` must be an object")
    known = [p.name for p in decl.params]
    for k in given:
        if k not in known:
            raise BadSpec(
                "unknown parameter `%s` of method `%s` (it takes %s)"
                % (k, decl.kind, ", ".join("`%s`" % n for n in known) or "none")
            )
    mparams: Dict[str, Any] = {}
    for p in decl.params:
        if p.name in given:
            mparams[p.name] = p.check(given[p.name])
        elif p.required:
            raise BadSpec("method `%s` needs parameter `%s`" % (decl.kind, p.name))
        else:
            mparams[p.name] = p.default
    worker = None
    if me.get("worker") is not None:
        wc = _obj(me["worker"], "method.worker", ("command", "dir"), ("command", "dir"))
        worker = WorkerCommand(list(wc["command"]), str(wc["dir"]))
    method = MethodSpec(str(me["name"]), str(me["kind"]), mparams, worker)

    tr = _obj(raw.get("training", {}), "training", ("batch_size", "epochs", "validation", "threads"))
    training = TrainingSpec(
        batch_size=int(_uint(tr.get("batch_size", 32), "training.batch_size")),  # type: ignore[arg-type]
        epochs=int(_uint(tr.get("epochs", 1), "training.epochs")),  # type: ignore[arg-type]
        validation=int(_uint(tr.get("validation", 0), "training.validation")),  # type: ignore[arg-type]
        threads=int(_uint(tr.get("threads", 1), "training.threads")),  # type: ignore[arg-type]
    )
    if training.batch_size < 1:
        raise BadSpec("`training.batch_size` must be at least 1")
    if training.threads < 1:
        raise BadSpec("`training.threads` must be at least 1")

    ev = _obj(
        raw.get("eval", {}), "eval", ("every", "tasks", "before_training", "max_examples", "online_bin", "plasticity")
    )
    tasks_sel: Union[str, int] = "all"
    t = ev.get("tasks", "all")
    if t != "all":
        sub = _obj(t, "eval.tasks", ("subsample",), ("subsample",))
        inner = _obj(sub["subsample"], "eval.tasks.subsample", ("earlier",), ("earlier",))
        tasks_sel = int(_uint(inner["earlier"], "eval.tasks.subsample.earlier"))  # type: ignore[arg-type]
    pl = _obj(ev.get("plasticity", {}), "eval.plasticity", ("every", "probe", "dormant_tau"))
    tau = pl.get("dormant_tau", 0.1)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise BadSpec("`eval.plasticity.dormant_tau` must be a number")
    before = ev.get("before_training", True)
    if not isinstance(before, bool):
        raise BadSpec("`eval.before_training` must be true or false")
    evals = EvalSpec(
        every=int(_uint(ev.get("every", 1), "eval.every")),  # type: ignore[arg-type]
        tasks=tasks_sel,
        before_training=before,
        max_examples=_uint(ev.get("max_examples"), "eval.max_examples", True),
        online_bin=_uint(ev.get("online_bin"), "eval.online_bin", True),
        plasticity=PlasticitySpec(
            every=int(_uint(pl.get("every", 1), "eval.plasticity.every")),  # type: ignore[arg-type]
            probe=int(_uint(pl.get("probe", 2000), "eval.plasticity.probe")),  # type: ignore[arg-type]
            dormant_tau=float(tau),
        ),
    )
    if evals.online_bin == 0:
        raise BadSpec("`eval.online_bin` must be at least 1")

    ck = _obj(raw.get("checkpoint", {}), "checkpoint", ("every_steps", "every_tasks", "keep"))
    checkpoint = CheckpointSpec(
        every_steps=_uint(ck.get("every_steps"), "checkpoint.every_steps", True),
        every_tasks=_uint(ck.get("every_tasks"), "checkpoint.every_tasks", True),
        keep=int(_uint(ck.get("keep", 2), "checkpoint.keep")),  # type: ignore[arg-type]
    )
    run_dir = raw.get("run_dir")
    if run_dir is not None and not isinstance(run_dir, str):
        raise BadSpec("`run_dir` must be a string")
    return Spec(
        protocol=PROTOCOL_VERSION,
        id=raw["id"],
        experiment=experiment,
        seed=int(seed),  # type: ignore[arg-type]
        stream=stream,
        network=network,
        method=method,
        training=training,
        eval=evals,
        checkpoint=checkpoint,
        run_dir=run_dir,
        raw=raw,
    )
