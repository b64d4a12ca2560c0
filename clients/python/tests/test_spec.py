"""Spec checking in-process: defaults, types, refusals."""

from __future__ import annotations

import copy
import json

import pytest

from clorch_worker import BadSpec, Method, Param, parse_spec
from conftest import TOY_SPEC

METHODS = [Method("toy_sgd", "", [Param("lr", "float", 0.05), Param("sleep", "float", 0.0),
                                   Param("crash_at_step", "int", -1),
                                   Param("mode", "string", "plain", choices=["plain", "fancy"])])]


def parse(**changes):
    s = copy.deepcopy(TOY_SPEC)
    s.update(changes)
    return parse_spec(json.dumps(s), METHODS, ["toy"])


def test_defaults_are_filled_in_declared_order():
    spec = parse(method={"name": "t", "kind": "toy_sgd", "params": {"mode": "fancy", "lr": 1}})
    assert list(spec.method.params) == ["lr", "sleep", "crash_at_step", "mode"]
    assert spec.method.params["lr"] == 1.0 and isinstance(spec.method.params["lr"], float)
    assert spec.checkpoint.every_steps == 20 and spec.checkpoint.keep == 2
    assert spec.tasks == 3 and spec.run_dir is None and spec.eval.online_bin == 100


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"protocol": 2}, "protocol 2"),
        ({"colour": "red"}, "unknown field `colour`"),
        ({"training": {"batch_size": 8, "momentum": 1}}, "unknown field `training.momentum`"),
        ({"training": {"threads": 0}}, "`training.threads` must be at least 1"),
        ({"method": {"name": "t", "kind": "toy_sgd", "params": {"lrr": 1}}}, "unknown parameter `lrr`"),
        ({"method": {"name": "t", "kind": "nope"}}, "unknown method kind `nope`"),
        ({"method": {"name": "t", "kind": "toy_sgd", "params": {"mode": "odd"}}}, "expected one of"),
        ({"method": {"name": "t", "kind": "toy_sgd", "params": {"crash_at_step": 1.5}}}, "must be an integer"),
        ({"stream": {"split_mnist": {"data_dir": "/x"}}}, "does not train the `split_mnist` stream"),
        ({"eval": {"tasks": {"subsample": {"later": 1}}}}, "unknown field"),
    ],
)
def test_refusals(changes, message):
    with pytest.raises(BadSpec) as e:
        parse(**changes)
    assert message in str(e.value)


def test_threads_are_read_and_default_to_one():
    assert parse().training.threads == 1
    assert parse(training={"batch_size": 8, "threads": 4}).training.threads == 4


def test_known_stream_params_are_checked():
    with pytest.raises(BadSpec, match="unknown field `stream.permuted_mnist.colour`"):
        parse_spec(json.dumps(dict(TOY_SPEC, stream={"permuted_mnist": {"data_dir": "/d", "tasks": 2, "colour": 1}})),
                   METHODS)
