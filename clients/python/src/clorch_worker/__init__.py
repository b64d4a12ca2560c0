"""clorch_worker: the Python side of clorch's external workers (standard library only).

A worker declares its methods, then trains inside ``with worker.run() as run:``; the client
does the protocol (docs/protocol.md): arguments, spec checking, sealed events, heartbeats,
``worker.lock``, stop requests, checkpoints, ``resume.json`` and exit codes. See README.md.
"""

from __future__ import annotations

from .idx import (
    CLASSES,
    DEFAULT_SPLIT_GROUPS,
    PIXEL_SCALE,
    Idx,
    MnistData,
    read_idx,
    read_mnist,
    read_stream_data,
    split_label_map,
)
from .spec import PROTOCOL_VERSION, BadSpec, Method, Param, Spec, parse_spec
from .wire import check_line, encode, seal, unseal
from .worker import BAD_SPEC, FAILED, FINISHED, INTERRUPTED, TRANSIENT, Run, RunFailed, Worker

__version__ = "0.1.0"

__all__ = [
    "Worker",
    "Run",
    "Method",
    "Param",
    "Spec",
    "BadSpec",
    "RunFailed",
    "parse_spec",
    "PROTOCOL_VERSION",
    "FINISHED",
    "FAILED",
    "BAD_SPEC",
    "TRANSIENT",
    "INTERRUPTED",
    "encode",
    "seal",
    "unseal",
    "check_line",
    "Idx",
    "MnistData",
    "read_idx",
    "read_mnist",
    "read_stream_data",
    "split_label_map",
    "PIXEL_SCALE",
    "CLASSES",
    "DEFAULT_SPLIT_GROUPS",
]
