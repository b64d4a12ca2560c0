"""IDX files (the MNIST format) and the MNIST streams' data folders, with the standard library.

Why here: an external worker is given a clorch stream (``permuted_mnist``, ``split_mnist``)
with its ``data_dir`` and must build the tasks itself from the same files the built-in worker
reads — raw or gzip-compressed IDX, four of them. This module finds and reads them the way
``workers/src/stream/mnist.rs`` does (same file names, same checks, same truncation to the
first ``train_examples``/``test_examples``) and leaves the arithmetic to the worker (numpy:
``np.frombuffer(data.train_images, np.uint8).reshape(-1, data.pixels) * PIXEL_SCALE``).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .spec import BadSpec

__all__ = [
    "Idx",
    "read_idx",
    "MnistData",
    "read_mnist",
    "mnist_files",
    "PIXEL_SCALE",
    "CLASSES",
    "DEFAULT_SPLIT_GROUPS",
    "split_label_map",
]

#: Grey levels 0–255 become pixel values in [0, 1] (as the built-in streams scale them).
PIXEL_SCALE = 1.0 / 255.0
#: MNIST's classes.
CLASSES = 10
#: ``split_mnist``'s default groups.
DEFAULT_SPLIT_GROUPS: List[List[int]] = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]

_FILES = (
    ("train_images", "train-images-idx3-ubyte"),
    ("train_labels", "train-labels-idx1-ubyte"),
    ("test_images", "t10k-images-idx3-ubyte"),
    ("test_labels", "t10k-labels-idx1-ubyte"),
)


@dataclass(frozen=True)
class Idx:
    """One IDX file: its ``dims`` and its unsigned-byte payload ``data`` (row-major)."""

    dims: Tuple[int, ...]
    data: bytes


def read_idx(path: str) -> Idx:
    """Reads an IDX file of unsigned bytes (type 0x08), raw or gzip-compressed (by its magic).

    Raises :class:`BadSpec` (the data is unusable: exit 2) naming the file and the problem.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BadSpec("%s: cannot read: %s" % (path, e.strerror or e)) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise BadSpec("%s: the gzip payload is damaged: %s" % (path, e)) from None
    if len(raw) < 4:
        raise BadSpec("%s: too short for an IDX header" % path)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim == 0:
        raise BadSpec("%s: magic number 0x%08X is not an IDX file of unsigned bytes" % (path, struct.unpack(">I", raw[:4])[0]))
    if len(raw) < 4 + 4 * ndim:
        raise BadSpec("%s: the IDX header is cut short" % path)
    dims = struct.unpack(">%dI" % ndim, raw[4 : 4 + 4 * ndim])
    size = 1
    for d in dims:
        size *= d
    data = raw[4 + 4 * ndim :]
    if len(data) != size:
        raise BadSpec("%s: %d data bytes, but the header says %s = %d" % (path, len(data), "×".join(map(str, dims)), size))
    return Idx(tuple(dims), data)


def mnist_files(data_dir: str) -> Dict[str, str]:
    """The four files of an MNIST-format folder (each raw or ``.gz``), by role."""
    if not os.path.isdir(data_dir):
        raise BadSpec(
            "%s: the data folder does not exist (or is not a folder); it must hold the four MNIST IDX files" % data_dir
        )
    out = {}
    for role, name in _FILES:
        for candidate in (name, name + ".gz"):
            p = os.path.join(data_dir, candidate)
            if os.path.isfile(p):
                out[role] = p
                break
        else:
            raise BadSpec(
                "%s: missing `%s` (or `%s.gz`); the data folder must exist and hold the four MNIST IDX files, raw or gzip-compressed"
                % (data_dir, name, name)
            )
    return out


@dataclass(frozen=True)
class MnistData:
    """The digits of a folder: images as ``examples × pixels`` bytes, labels as bytes."""

    rows: int
    cols: int
    train_images: bytes
    train_labels: bytes
    test_images: bytes
    test_labels: bytes

    @property
    def pixels(self) -> int:
        return self.rows * self.cols

    @property
    def train_examples(self) -> int:
        return len(self.train_labels)

    @property
    def test_examples(self) -> int:
        return len(self.test_labels)


def _pair(images: Idx, labels: Idx, ipath: str, lpath: str, limit: Optional[int], field: str) -> Tuple[int, int, int, bytes, bytes]:
    if len(images.dims) != 3:
        raise BadSpec("%s: expected images (count × rows × columns), found %d dimensions" % (ipath, len(images.dims)))
    if len(labels.dims) != 1:
        raise BadSpec("%s: expected labels (a list), found %d dimensions" % (lpath, len(labels.dims)))
    count, rows, cols = images.dims
    if labels.dims[0] != count:
        raise BadSpec("%s: %d labels, but %s holds %d images; the counts must match" % (lpath, labels.dims[0], ipath, count))
    n = count
    if limit is not None:
        if limit < 1 or limit > count:
            raise BadSpec("`%s` is %d, but the file holds %d examples; use 1 to %d" % (field, limit, count, count))
        n = limit
    lab = labels.data[:n]
    for i, v in enumerate(lab):
        if v >= CLASSES:
            raise BadSpec("%s: label %d of example %d; expected a class 0 to 9" % (lpath, v, i))
    return n, rows, cols, images.data[: n * rows * cols], lab


def read_mnist(data_dir: str, train_examples: Optional[int] = None, test_examples: Optional[int] = None) -> MnistData:
    """Reads an MNIST-format folder, keeping the first ``train_examples``/``test_examples``.

    The folder's ``fingerprint`` (BLAKE3) is not checked here: the standard library has no
    BLAKE3. :func:`read_stream_data` checks it when the ``blake3`` package is importable.
    """
    files = mnist_files(data_dir)
    ti, tl = read_idx(files["train_images"]), read_idx(files["train_labels"])
    _, rows, cols, tr_img, tr_lab = _pair(ti, tl, files["train_images"], files["train_labels"], train_examples, "train_examples")
    si, sl = read_idx(files["test_images"]), read_idx(files["test_labels"])
    _, srows, scols, te_img, te_lab = _pair(si, sl, files["test_images"], files["test_labels"], test_examples, "test_examples")
    if (srows, scols) != (rows, cols):
        raise BadSpec("images are %d×%d, but the training images are %d×%d" % (srows, scols, rows, cols))
    return MnistData(rows, cols, tr_img, tr_lab, te_img, te_lab)


def fingerprint(data_dir: str) -> Optional[str]:
    """The folder's fingerprint as the orchestrator computes it, or ``None`` without ``blake3``."""
    try:
        import blake3  # type: ignore[import-not-found]
    except ImportError:
        return None
    files = mnist_files(data_dir)
    h = blake3.blake3()
    for role, _ in _FILES:
        with open(files[role], "rb") as f:
            b = f.read()
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    digest: str = h.hexdigest()
    return digest[:16]


def read_stream_data(kind: str, params: Dict[str, object]) -> MnistData:
    """The digits of a ``permuted_mnist``/``online_permuted_mnist``/``split_mnist`` stream.

    Checks the recorded ``fingerprint`` when the optional ``blake3`` package is installed
    (the data changed since the experiment was planned: exit 2), and the split groups.
    """
    if kind not in ("permuted_mnist", "online_permuted_mnist", "split_mnist"):
        raise BadSpec("stream `%s` is not an MNIST stream" % kind)
    data_dir = params.get("data_dir")
    if not isinstance(data_dir, str):
        raise BadSpec("`stream.%s.data_dir` must be a path" % kind)
    expected = params.get("fingerprint")
    if isinstance(expected, str):
        found = fingerprint(data_dir)
        if found is not None and found != expected:
            raise BadSpec(
                "%s: the data files changed since the experiment was planned (fingerprint %s, expected %s)"
                % (data_dir, found, expected)
            )
    if kind == "split_mnist":
        split_label_map(params.get("groups", DEFAULT_SPLIT_GROUPS), params.get("setting", "task_incremental"))  # checks
    return read_mnist(data_dir, params.get("train_examples"), params.get("test_examples"))  # type: ignore[arg-type]


def split_label_map(groups: object, setting: object) -> Tuple[List[List[int]], Optional[List[int]], int, bool]:
    """Checks ``split_mnist``'s groups; returns ``(groups, label_map, head_outputs, per_task)``.

    Task-incremental: a label becomes its position within its group (classes ``[4, 5]`` are
    outputs 0 and 1 of head 2), every head has as many outputs as the largest group, and
    ``label_map[label]`` gives the output. Class-incremental: one head of 10, no map.
    """
    if not isinstance(groups, list) or not groups:
        raise BadSpec("`groups` must be a non-empty list of class lists")
    if setting not in ("task_incremental", "class_incremental"):
        raise BadSpec("`setting` must be `task_incremental` or `class_incremental`")
    seen = set()
    out: List[List[int]] = []
    for g in groups:
        if not isinstance(g, list) or not g:
            raise BadSpec("every class group needs at least one class")
        for c in g:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9:
                raise BadSpec("class %s does not exist (MNIST classes are 0–9)" % (c,))
            if c in seen:
                raise BadSpec("class %d appears in two groups; groups must be disjoint" % c)
            seen.add(c)
        out.append(list(g))
    if setting == "class_incremental":
        return out, None, CLASSES, False
    m = [0] * CLASSES
    for g in out:
        for pos, c in enumerate(g):
            m[c] = pos
    return out, m, max(len(g) for g in out), True
