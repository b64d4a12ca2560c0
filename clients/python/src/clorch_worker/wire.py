"""The bytes of an event line: JSON written the way clorch's Rust side writes it, and the seal.

Why not plain ``json.dumps``: the orchestrator stores events by ``(run, seq)`` and a resumed
deterministic worker must emit *the same bytes* again, so the serialisation has to be fixed
and stable. It is also made to match ``serde_json`` (Rust) exactly — floats in the shortest
round-trip form with ``ryu``'s layout (``1e-7``, ``0.00001``, ``1e16``, never ``1e-07`` or
``1e+16``), non-ASCII left as UTF-8 — so that a line written here is byte-identical to the one
the Rust types would write for the same event. The doc examples of ``docs/protocol.md`` are
re-serialised byte for byte by this module (tested).
"""

from __future__ import annotations

import json
import math
import numbers
import re
import zlib
from typing import Any, Optional, Tuple

__all__ = ["encode", "format_float", "seal", "unseal", "check_line"]

_SEAL_RE = re.compile(rb',"crc":"([0-9a-f]{8})"\}$')


def format_float(x: float) -> str:
    """``x`` as ``serde_json``/``ryu`` write an ``f64``; ``null`` when not finite.

    Python's ``repr`` already gives the shortest digits that round-trip (the same digits as
    ryu); only the layout differs, so the digits are re-laid out with ryu's rules.
    """
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return "null"
    r = repr(x)
    sign = ""
    if r.startswith("-"):
        sign, r = "-", r[1:]
    if "e" in r:
        mant, exp_s = r.split("e")
        exp = int(exp_s)
    else:
        mant, exp = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    k = exp - len(fp)
    if not digits:
        return sign + "0.0"
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # position of the decimal point relative to the digits' start
    if 0 <= k and kk <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    elif length == 1:
        out = digits + "e" + str(kk - 1)
    else:
        out = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + out


def encode(value: Any) -> str:
    """Compact JSON of ``value`` with keys in insertion order and floats as :func:`format_float`.

    Integers stay integers (``numbers.Integral``, so numpy integers work too); any other real
    number is written as a float. ``bool`` is checked before ``int`` (it is a subclass).
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format_float(float(value))
    if isinstance(value, dict):
        return "{" + ",".join(encode(str(k)) + ":" + encode(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if hasattr(value, "tolist"):  # a numpy array or scalar of another kind
        return encode(value.tolist())
    raise TypeError("cannot write %r (%s) in an event" % (value, type(value).__name__))


def seal(body: str) -> str:
    """The sealed line (without its newline) for the compact JSON object ``body``.

    As docs/protocol.md says: drop the closing ``}``, append ``,"crc":"<8 hex>"}`` where the
    CRC-32 is taken over the bytes of ``body`` itself.
    """
    if not body.endswith("}"):
        raise ValueError("an event body is a JSON object")
    return body[:-1] + ',"crc":"%08x"}' % (zlib.crc32(body.encode("utf-8")) & 0xFFFFFFFF)


def unseal(line: bytes) -> Optional[bytes]:
    """The body of a sealed line (no trailing newline), or ``None`` if the seal is missing or wrong."""
    m = _SEAL_RE.search(line)
    if m is None:
        return None
    body = line[:-18] + b"}"
    if "%08x" % (zlib.crc32(body) & 0xFFFFFFFF) != m.group(1).decode():
        return None
    return body


def check_line(line: bytes, run: str, seq: int) -> Tuple[bool, str]:
    """Whether one line of ``events.jsonl`` (newline included) is intact for ``run`` at ``seq``.

    Returns ``(ok, why_not)``. This is the rule the orchestrator applies to the lines a
    checkpoint covers: newline-terminated, a valid seal, this run's id and ``seq`` equal to the
    line number.
    """
    if not line.endswith(b"\n"):
        return False, "the line has no newline (cut short)"
    body = unseal(line[:-1])
    if body is None:
        return False, "the line's crc seal is missing or does not match"
    try:
        obj = json.loads(body.decode("utf-8"))
    except ValueError as e:
        return False, "the line is not JSON (%s)" % e
    if not isinstance(obj, dict):
        return False, "the line is not a JSON object"
    if obj.get("run") != run:
        return False, "the line belongs to run %r, not %r" % (obj.get("run"), run)
    if obj.get("seq") != seq or isinstance(obj.get("seq"), bool):
        return False, "the line has seq %r, expected %d" % (obj.get("seq"), seq)
    return True, ""
