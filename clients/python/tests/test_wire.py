"""The seal and the serialisation against docs/protocol.md's own example lines."""

from __future__ import annotations

import json
import re
import zlib

import pytest

from clorch_worker import check_line, encode, seal, unseal
from clorch_worker.wire import format_float
from conftest import DOCS


def doc_lines():
    doc = (DOCS / "protocol.md").read_text()
    out = []
    for block in re.findall(r"```jsonl\n(.*?)```", doc, re.S):
        out.extend(line for line in block.splitlines() if line.strip())
    assert len(out) >= 30, "docs/protocol.md should hold the example event lines"
    return out


@pytest.mark.parametrize("line", doc_lines())
def test_doc_line_crc_is_reproduced_from_its_body(line):
    body = line[:-18] + "}"
    crc = json.loads(line)["crc"]
    assert "%08x" % zlib.crc32(body.encode()) == crc
    assert seal(body) == line
    assert unseal(line.encode()) == body.encode()


@pytest.mark.parametrize("line", doc_lines())
def test_doc_line_reserialises_byte_for_byte(line):
    obj = json.loads(line)
    del obj["crc"]
    assert seal(encode(obj)) == line


def test_the_doc_python_snippet_agrees():
    event = {"run": "6247c9afbbe8", "seq": 20, "event": "finished", "tasks": 3, "steps": 30000, "examples": 30000}
    body = json.dumps(event, separators=(",", ":"))
    line = body[:-1] + ',"crc":"%08x"}' % zlib.crc32(body.encode())
    assert seal(encode(event)) == line


@pytest.mark.parametrize(
    "x,text",
    [
        (1e-7, "1e-7"), (1e-5, "0.00001"), (1.234e-5, "0.00001234"), (1e16, "1e16"), (1e15, "1000000000000000.0"),
        (123.0, "123.0"), (0.1, "0.1"), (-0.0, "-0.0"), (0.0, "0.0"), (1.5e300, "1.5e300"), (5e-324, "5e-324"),
        (float("nan"), "null"), (float("inf"), "null"), (-2.5, "-2.5"),
    ],
)
def test_floats_are_written_as_serde_json_writes_them(x, text):
    assert format_float(x) == text


def test_non_ascii_and_escapes_match_serde_json():
    assert encode({"r": "é\n\"\\\x01/"}) == '{"r":"é\\n\\"\\\\\\u0001/"}'


def test_check_line_finds_each_kind_of_damage():
    line = (seal(encode({"run": "abc", "seq": 3, "event": "failed", "reason": "x"})) + "\n").encode()
    assert check_line(line, "abc", 3) == (True, "")
    assert not check_line(line[:-1], "abc", 3)[0]
    assert not check_line(line.replace(b'"x"', b'"y"'), "abc", 3)[0]
    assert not check_line(line, "abd", 3)[0]
    assert not check_line(line, "abc", 4)[0]
