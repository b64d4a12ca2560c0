"""The IDX reader and the MNIST folder helpers."""

from __future__ import annotations

import gzip
import struct

import pytest

from clorch_worker import BadSpec, read_idx, read_mnist, split_label_map
from conftest import ROOT


def idx(dims, data):
    return struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(">%dI" % len(dims), *dims) + bytes(data)


def test_plain_and_gzip(tmp_path):
    raw = idx([2, 3], range(6))
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "b").write_bytes(gzip.compress(raw))
    for name in "ab":
        f = read_idx(str(tmp_path / name))
        assert f.dims == (2, 3) and f.data == bytes(range(6))


def test_damage_is_named(tmp_path):
    (tmp_path / "a").write_bytes(idx([2, 3], range(5)))
    with pytest.raises(BadSpec, match="5 data bytes"):
        read_idx(str(tmp_path / "a"))
    (tmp_path / "b").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(BadSpec, match="magic number"):
        read_idx(str(tmp_path / "b"))


def test_the_shipped_mnist_subset():
    d = read_mnist(str(ROOT / "data" / "mnist-10k"), train_examples=1000)
    assert (d.rows, d.cols, d.train_examples, d.test_examples) == (28, 28, 1000, 2000)
    assert len(d.train_images) == 1000 * 784 and max(d.train_labels) == 9
    with pytest.raises(BadSpec, match="use 1 to 2000"):
        read_mnist(str(ROOT / "data" / "mnist-10k"), test_examples=5000)
    with pytest.raises(BadSpec, match="data folder does not exist"):
        read_mnist(str(ROOT / "data" / "nowhere"))


def test_split_groups():
    groups, m, outputs, per_task = split_label_map([[0, 1], [4, 5, 6]], "task_incremental")
    assert m[5] == 1 and m[6] == 2 and outputs == 3 and per_task
    assert split_label_map([[0, 1]], "class_incremental")[1:] == (None, 10, False)
    with pytest.raises(BadSpec, match="two groups"):
        split_label_map([[0, 1], [1]], "task_incremental")
