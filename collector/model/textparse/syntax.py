"""The exposition grammar over bytes: tokens, escapes, Go number rules and token scanners.

Place in the pipeline: below every parser of `collector.model.textparse`. The regex fast path
(`fast`) builds its row patterns from these pieces, the exact path (`slow`) and the cache-miss
path of `Exposition.labels` scan series and label sets with `scan_series`, and both parse
values and timestamps with `go_float`/`om_ts`. Scanners raise `Malformed` with Prometheus's
``parseError`` wording; the caller adds the line number (`ExpositionError`).

The names here are the package's own (its modules share them); `canonical_float` is the only
one `collector.model.textparse` re-exports.

Prometheus counterpart: the lexers ``promlex.l`` and ``openmetricslex.l``, Go's
``strconv.ParseFloat`` (as Prometheus calls it) and ``formatOpenMetricsFloat``.
"""

from __future__ import annotations

import math
import re

from collector.model.value import NORMAL_NAN

__all__ = [
    "DECIMAL",
    "FLOAT",
    "GO_FLOAT",
    "LABEL_ESCAPES",
    "LNAME",
    "LVALUE_ESCAPED",
    "LVALUE_PLAIN",
    "NAME",
    "NAME_RE",
    "OM_TOKEN",
    "OM_TYPES",
    "QSTR_OM",
    "QSTR_TEXT",
    "TEXT_HELP_ESCAPES",
    "TEXT_TYPES",
    "WS",
    "Malformed",
    "MissingEOF",
    "canonical_float",
    "go_float",
    "labels_re",
    "om_ts",
    "perr",
    "quote",
    "scan_labels",
    "scan_series",
    "unescape",
    "unescape_bytes",
]


class Malformed(Exception):
    """Internal: a located-later syntax error raised by the scanners."""


class MissingEOF(Malformed):
    """Internal: OpenMetrics body ended without ``# EOF`` (reported with line 0)."""

    def __init__(self) -> None:
        super().__init__("data does not end with # EOF")


# ----------------------------------------------------------------------------- grammar pieces
TEXT_TYPES = frozenset((b"counter", b"gauge", b"histogram", b"summary", b"untyped"))
OM_TYPES = frozenset(
    (b"counter", b"gauge", b"histogram", b"gaugehistogram", b"summary", b"info", b"stateset")
).union((b"unknown",))
NAME = rb"[a-zA-Z_:][a-zA-Z0-9_:]*"
LNAME = rb"[a-zA-Z_][a-zA-Z0-9_]*"
LVALUE_PLAIN = rb'"[^"]*"'
LVALUE_ESCAPED = rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
# Go strconv.ParseFloat spellings, minus everything with p/P/_ (Prometheus refuses those).
# "[0-9]+(?:\.[0-9]*)?", not "[0-9]+\.?[0-9]*": the latter splits a digit run in n ways, so
# a failed match of a long run backtracks quadratically (5 KB of digits took 1 s; fuzzing).
DECIMAL = rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
FLOAT = DECIMAL + rb"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]"


def labels_re(lvalue: bytes, *, trailing_comma: bool) -> bytes:
    """A label-set pattern: ``{}``, ``{a="b"}``, ``{a="b",c="d"}`` (text also ``{a="b",}``)."""
    label = LNAME + b"=" + lvalue
    return (
        rb"\{(?:"
        + label
        + rb"(?:,"
        + label
        + rb")*"
        + (b",?" if trailing_comma else b"")
        + rb")?\}"
    )


GO_FLOAT = re.compile(FLOAT)
_GO_HEX_FLOAT = re.compile(  # unambiguous like DECIMAL
    rb"[+-]?0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+"
)
WS = re.compile(rb"[ \t]*")
NAME_RE = re.compile(NAME)
_LNAME_RE = re.compile(LNAME)
QSTR_TEXT = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # raw newlines allowed (promlex.l)
QSTR_OM = re.compile(rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
OM_TOKEN = re.compile(rb"[^ \n]+")
_ESCAPE = re.compile(r"\\(.)", re.S)

LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
TEXT_HELP_ESCAPES = {"\\": "\\", "n": "\n"}


# ----------------------------------------------------------------------------- small helpers
def quote(raw: bytes) -> str:
    """Go ``%q``-like rendering of bytes for error messages."""
    out = []
    for char in raw.decode("utf-8", "surrogateescape"):
        if char in _Q_ESCAPES:
            out.append(_Q_ESCAPES[char])
        elif "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char < " " or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_Q_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def unescape(text: str, table: dict[str, str]) -> str:
    """Decode backslash escapes listed in ``table``; keep every other ``\\x`` verbatim."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: table.get(m.group(1), m.group(0)), text)


def go_float(tok: bytes) -> float:
    """Go ``strconv.ParseFloat`` as Prometheus uses it (no p/P/_); NaN -> NORMAL_NAN."""
    if b"p" in tok or b"P" in tok or b"_" in tok:
        raise Malformed("unsupported character in float")
    if GO_FLOAT.fullmatch(tok) is None:
        raise Malformed(f"strconv.ParseFloat: parsing {quote(tok)}: invalid syntax")
    value = float(tok)
    if value != value:
        return NORMAL_NAN
    if math.isinf(value) and tok[-1:] not in b"fFyY":
        raise Malformed(f"strconv.ParseFloat: parsing {quote(tok)}: value out of range")
    return value


def _go_fmt_f(value: float) -> str:
    """Go ``%f`` of a non-finite float, for ``invalid timestamp`` messages."""
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def om_ts(tok: bytes, what: str) -> int:
    """OpenMetrics timestamp token (float seconds) -> int ms, truncated toward zero."""
    seconds = go_float(tok)
    if not math.isfinite(seconds):
        raise Malformed(f"invalid {what} {_go_fmt_f(seconds)}")
    ms = seconds * 1000.0
    if not -(2.0**63) <= ms < 2.0**63:
        raise Malformed(f"invalid {what} {tok.decode('ascii', 'replace')}: out of int64 ms range")
    return int(ms)


def canonical_float(raw: str) -> str:
    """Re-render an ``le``/``quantile`` value the way Prometheus 3 does (spec §7.1).

    Values that Go's ``strconv.ParseFloat`` refuses are returned unchanged.
    """
    data = raw.encode("utf-8", "surrogateescape")
    if GO_FLOAT.fullmatch(data) is not None:
        value = float(data)
        if math.isinf(value) and data[-1:] not in b"fFyY":
            return raw  # out of range: ParseFloat fails, the raw string stays
    elif _GO_HEX_FLOAT.fullmatch(data) is not None:
        try:
            value = float.fromhex(raw)
        except OverflowError:
            return raw
    else:
        return raw
    return _format_om_float(value)


def _format_om_float(value: float) -> str:
    """Prometheus ``formatOpenMetricsFloat``: Go ``%g`` shortest, ``.0`` added when bare."""
    if value == 1:
        return "1.0"
    if value == 0:
        return "0.0"
    if value == -1:
        return "-1.0"
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = _go_g(value)
    return text if ("e" in text or "." in text) else text + ".0"


def _go_g(value: float) -> str:
    """Go ``strconv.FormatFloat(v, 'g', -1, 64)`` from Python's shortest ``repr`` digits."""
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp_text) if exp_text else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    exp = point - 1
    if exp < -4 or exp >= 6:  # shortest %g switches to %e outside [1e-4, 1e6)
        tail = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{tail}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


# ----------------------------------------------------------------------------- scanners
def _got(buf: bytes, pos: int) -> bytes:
    """The offending token at ``pos`` for an error message."""
    if pos >= len(buf):
        return b""
    match = re.compile(rb"[^ \t\n]+").match(buf, pos)
    return match.group()[:40] if match else buf[pos : pos + 1]


def perr(buf: bytes, start: int, pos: int, expected: str) -> Malformed:
    """Prometheus ``parseError`` wording: what was expected, what came, and the entry so far."""
    got = _got(buf, pos)
    return Malformed(
        f"{expected}, got {quote(got)} while parsing: {quote(buf[start : pos + len(got)][:200])}"
    )


def scan_series(
    buf: bytes, pos: int, *, openmetrics: bool, start: int
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Scan ``name``, ``name{...}`` or ``{"name", ...}`` at ``pos``.

    Returns (end of the series key, unescaped metric name, [(label name, raw value)]).
    """
    name: bytes | None = None
    match = NAME_RE.match(buf, pos)
    if match is not None:
        name = match.group()
        pos = match.end()
    brace = pos if openmetrics else WS.match(buf, pos).end()  # type: ignore[union-attr]
    labels: list[tuple[bytes, bytes]] = []
    if buf[brace : brace + 1] == b"{":
        pos, quoted, labels = scan_labels(
            buf, brace + 1, openmetrics=openmetrics, start=start, named=name is not None
        )
        if quoted is not None:
            name = quoted
    elif name is None:
        raise perr(buf, start, pos, "expected a valid start token")
    if name is None:
        raise Malformed(f"metric name not set while parsing: {quote(buf[start:pos])}")
    return pos, name, labels


def scan_labels(
    buf: bytes,
    pos: int,
    *,
    openmetrics: bool,
    start: int,
    named: bool,
    exemplar: bool = False,
) -> tuple[int, bytes | None, list[tuple[bytes, bytes]]]:
    """Scan a label set after its ``{``; returns (end after ``}``, quoted name, labels)."""

    def skip(at: int) -> int:
        return at if openmetrics else WS.match(buf, at).end()  # type: ignore[union-attr]

    qstr = QSTR_OM if openmetrics else QSTR_TEXT
    quoted_name: bytes | None = None
    labels: list[tuple[bytes, bytes]] = []
    pos = skip(pos)
    while True:
        char = buf[pos : pos + 1]
        if char == b"}":
            return pos + 1, quoted_name, labels
        if char == b'"':
            match = qstr.match(buf, pos)
            if match is None:
                raise perr(buf, start, pos, "expected label name")
            lname = unescape_bytes(match.group()[1:-1], what="label name")
            is_quoted = True
        else:
            match = _LNAME_RE.match(buf, pos)
            if match is None:
                raise perr(buf, start, pos, "expected label name")
            lname = match.group()
            is_quoted = False
        pos = skip(match.end())
        char = buf[pos : pos + 1]
        if is_quoted and char in (b",", b"}"):
            if exemplar:
                raise perr(buf, start, pos, "expected label name")
            if named or quoted_name is not None:
                raise Malformed(f"metric name already set while parsing: {quote(buf[start:pos])}")
            quoted_name = lname
            if char == b"}":
                return pos + 1, quoted_name, labels
            pos = skip(pos + 1)
            continue
        if char != b"=":
            raise perr(buf, start, pos, "expected equal")
        pos = skip(pos + 1)
        match = qstr.match(buf, pos)
        if match is None:
            raise perr(buf, start, pos, "expected label value")
        raw = match.group()[1:-1]
        try:
            raw.decode()
        except UnicodeDecodeError:
            raise Malformed(f"invalid UTF-8 label value: {quote(match.group())}") from None
        labels.append((lname, raw))
        pos = skip(match.end())
        char = buf[pos : pos + 1]
        if char == b",":
            pos = skip(pos + 1)
            if openmetrics and buf[pos : pos + 1] == b"}":
                raise perr(buf, start, pos, "expected label name")
        elif char != b"}":
            raise perr(buf, start, pos, "expected comma or brace close")


def unescape_bytes(raw: bytes, *, what: str) -> bytes:
    """Unescape a quoted name (``\\\\``, ``\\"``, ``\\n``), refusing invalid UTF-8."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise Malformed(f"invalid UTF-8 {what}: {quote(raw)}") from None
    return unescape(text, LABEL_ESCAPES).encode()
