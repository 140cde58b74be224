"""The entry point `parse` and its whole-body regex fast path.

Place in the pipeline: the scrape loop's parser (through `IncrementalParser` or directly)
calls `parse` with the HTTP body. A strict compiled bytes regex, one alternative per line
shape (sample, HELP/TYPE(/UNIT), plain comment, blank), runs over the whole body with
``findall``: the C regex engine produces ``(key, value, timestamp)`` byte strings directly and
``map(float, ...)`` converts the values, so the work per sample is a few C-level list passes.
The fast path is taken only when *every* line matched one of those shapes (``len(rows) ==
body.count(b"\\n")``: each alternative consumes exactly one whole line, so equal counts mean
full coverage), the body is valid UTF-8, every value is finite or spelled as Inf/NaN, and every
TYPE (and UNIT) is valid. Anything else raises `NotFast` and goes to `slow.SlowParser`.

Prometheus counterpart: ``textparse.New`` choosing ``promparse.go`` / ``openmetricsparse.go``
(the regex rows replace their lexers only for bodies they would accept).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from operator import itemgetter

from collector.model.textparse.exposition import Exemplar, Exposition, Row
from collector.model.textparse.slow import SlowParser, parse_exemplar
from collector.model.textparse.syntax import (
    DECIMAL,
    FLOAT,
    LVALUE_ESCAPED,
    LVALUE_PLAIN,
    NAME,
    OM_TYPES,
    Malformed,
    labels_re,
    om_ts,
)
from collector.model.value import NORMAL_NAN

__all__ = ["NotFast", "fast_om", "fast_text", "parse", "rows_of_lines"]


def parse(body: bytes, *, openmetrics: bool) -> Exposition:
    """Parse a whole scrape body; raise `ExpositionError` (a `ParseError`) on any bad input."""
    if not body:
        return Exposition(samples=[], openmetrics=openmetrics)
    try:
        return fast_om(body) if openmetrics else fast_text(body)
    except NotFast:
        return SlowParser(body, openmetrics=openmetrics).run()


# ----------------------------------------------------------------------------- row patterns
# CPython's regex engine runs single-byte loops such as [^"]* several times faster than
# multi-member classes, so bodies without any backslash (nearly all) use "[^"]*" for label
# values. A raw newline inside such a value makes one row span two lines, which the
# rows == newlines coverage check catches; the escape-aware pattern is used otherwise.
def _text_row(lvalue: bytes) -> re.Pattern[bytes]:
    """One alternative per text line shape: sample, HELP, valid TYPE, other comment, blank.

    Row groups: key, value, timestamp, HELP name, HELP text, TYPE name, TYPE.
    """
    labels = labels_re(lvalue, trailing_comma=True)
    return re.compile(
        rb"(?m)^(?:"
        rb"(" + NAME + rb"(?:" + labels + rb")?) (" + FLOAT + rb")(?: ([0-9]{1,18}))?"
        rb"|# HELP (" + NAME + rb")(?: ([^\n]*))?"
        rb"|# TYPE (" + NAME + rb") (counter|gauge|histogram|summary|untyped)"
        rb"|#(?![ \t]+(?:HELP|TYPE)[ \t])[^\n]*"
        rb"|)\n"
    )


def _om_row(lvalue: bytes) -> re.Pattern[bytes]:
    """One alternative per OpenMetrics line shape: sample (+exemplar), HELP, TYPE, UNIT.

    Row groups: key, value, timestamp, exemplar, then name/text of HELP, TYPE and UNIT.
    """
    labels = labels_re(lvalue, trailing_comma=False)
    return re.compile(
        rb"(?m)^(?:"
        rb"(" + NAME + rb"(?:" + labels + rb")?) (" + FLOAT + rb")(?: (" + DECIMAL + rb"))?"
        rb"( # \{[^\n]*)?"
        rb"|# HELP (" + NAME + rb") ([^\n]*)"
        rb"|# TYPE (" + NAME + rb") (" + b"|".join(sorted(OM_TYPES)) + rb")"
        rb"|# UNIT (" + NAME + rb") ([^\n]*)"
        rb")\n"
    )


_TEXT_ROW_PLAIN = _text_row(LVALUE_PLAIN)
_TEXT_ROW_ESCAPED = _text_row(LVALUE_ESCAPED)
_OM_ROW_PLAIN = _om_row(LVALUE_PLAIN)
_OM_ROW_ESCAPED = _om_row(LVALUE_ESCAPED)

_get0 = itemgetter(0)
_get1 = itemgetter(1)
_get2 = itemgetter(2)
_get3 = itemgetter(3)
_get8 = itemgetter(8)
_get_unit = itemgetter(0, 8, 9)
_isfinite = math.isfinite


def rows_of_lines(lines: Sequence[bytes], *, openmetrics: bool) -> list[Row]:
    """The rows the fast path matched for these lines of a body it parsed, in order.

    For the non-sample lines of a remembered body (`IncrementalParser`): each row alternative
    matches one whole line, so a line gives the same row alone as within its body.
    """
    if not lines:
        return []
    text = b"\n".join(lines) + b"\n"
    if openmetrics:
        pattern = _OM_ROW_ESCAPED if b"\\" in text else _OM_ROW_PLAIN
    else:
        pattern = _TEXT_ROW_ESCAPED if b"\\" in text else _TEXT_ROW_PLAIN
    rows: list[Row] = pattern.findall(text)
    if len(rows) != len(lines):
        raise ValueError("lines the fast path did not match")  # a caller's bug
    return rows


class NotFast(Exception):
    """Internal: the body is not in the fast-path shape; use the slow path."""


# ----------------------------------------------------------------------------- fast path
def _check_utf8(body: bytes) -> None:
    """Whole-body UTF-8 validity implies every label value and help text is valid."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            raise NotFast from None


def _values(srows: list[Row]) -> list[float]:
    """Floats of the value column; NaN -> NORMAL_NAN; overflowed decimals -> slow path."""
    raw = list(map(_get1, srows))
    values = list(map(float, raw))
    if not all(map(_isfinite, values)):
        for i, value in enumerate(values):
            if value != value:
                values[i] = NORMAL_NAN
            elif math.isinf(value) and raw[i][-1:] not in b"fFyY":
                raise NotFast  # "value out of range": let the slow path word the error
    return values


def fast_text(body: bytes) -> Exposition:
    """Whole-body regex parse of a well-formed text exposition, or `NotFast`."""
    _check_utf8(body)
    if body[-1:] != b"\n":
        body += b"\n"  # the final newline may be missing (promparse appends one)
    pattern = _TEXT_ROW_ESCAPED if b"\\" in body else _TEXT_ROW_PLAIN
    rows: list[Row] = pattern.findall(body)
    if len(rows) != body.count(b"\n"):
        raise NotFast
    srows = list(filter(_get0, rows))
    keys = list(map(_get0, srows))
    values = _values(srows)
    stamps: list[int | None] | None = None
    if any(map(_get2, srows)):
        stamps = [int(t) if t else None for t in map(_get2, srows)]
    return Exposition(columns=(keys, values, stamps), openmetrics=False, rows=rows)


def fast_om(body: bytes) -> Exposition:
    """Whole-body regex parse of a well-formed OpenMetrics exposition, or `NotFast`."""
    if body.endswith(b"# EOF\n"):
        end = len(body) - 6
    elif body.endswith(b"# EOF"):
        end = len(body) - 5
    else:
        raise NotFast
    if end and body[end - 1] != 0x0A:
        raise NotFast
    _check_utf8(body)
    pattern = _OM_ROW_ESCAPED if b"\\" in body else _OM_ROW_PLAIN
    rows: list[Row] = pattern.findall(body, 0, end)
    if len(rows) != body.count(b"\n", 0, end):
        raise NotFast
    srows = list(filter(_get0, rows))
    if len(srows) != len(rows):
        for _, name, unit in map(_get_unit, filter(_get8, rows)):
            if unit and not name.endswith(b"_" + unit):
                raise NotFast
    keys = list(map(_get0, srows))
    values = _values(srows)
    raw_stamps = list(map(_get2, srows))
    ts: list[int | None] | None = None
    try:
        if any(raw_stamps):
            ts = [om_ts(t, "timestamp") if t else None for t in raw_stamps]
        exemplars: dict[int, Exemplar] = {}
        column = list(map(_get3, srows))
        if any(column):
            for i, text in enumerate(column):
                if text:
                    exemplars[i] = parse_exemplar(text, 3)
    except Malformed:
        raise NotFast from None
    return Exposition(columns=(keys, values, ts), openmetrics=True, rows=rows, exemplars=exemplars)
