"""Exposition parsing: Prometheus text 0.0.4/1.0.0 and OpenMetrics 1.0, over bytes.

Place in the pipeline: the scrape loop hands the HTTP body to `parse`, walks ``exp.samples``
and looks every raw series key up in its per-target scrape cache. Only on a cache miss does it
call ``exp.labels(key)`` and run target labels and metric relabeling (ARCHITECTURE "Hot path",
spec §4.4). Everything here is pure: bytes in, tuples out, no I/O.

Contract::

    exp = parse(body, openmetrics=False)      # raises ExpositionError (a ParseError) on bad input
    for key, value, ts in exp.samples:        # key: the raw series bytes, b'name{a="b"}'
        ...                                   # value: float, every NaN is NORMAL_NAN (by bits)
                                              # ts: explicit timestamp in int ms, or None
    exp.labels(key) -> list[tuple[str, str]]  # cache-miss path: '__name__' first, then the
                                              # labels in body order, values unescaped, le/
                                              # quantile canonicalised by the TYPE in force
    exp.metadata -> dict[str, Metadata]       # family name -> type, help, unit (last line wins)
    exp.exemplars -> dict[int, Exemplar]      # OpenMetrics: sample index -> its exemplar
    exp.columns() -> (keys, values, stamps)   # the samples as parallel lists (stamps None
                                              # when no sample has an explicit timestamp)
    IncrementalParser().parse(body, ...)      # per target: same result and errors as parse,
                                              # fast when only the values changed

How it is fast. A strict compiled bytes regex, one alternative per line shape (sample, HELP/TYPE
(/UNIT), plain comment, blank), runs over the whole body with ``findall``: the C regex engine
produces ``(key, value, timestamp)`` byte strings directly and ``map(float, ...)`` converts the
values, so steady-state work per sample is a few C-level list passes. The fast path is taken
only when *every* line matched one of those shapes (``len(rows) == body.count(b"\\n")``: each
alternative consumes exactly one whole line, so equal counts mean full coverage), the body is
valid UTF-8, every value is finite or spelled as Inf/NaN, and every TYPE (and UNIT) is valid.
Anything else, including every invalid body, goes to a careful token-by-token slow path that
mirrors Prometheus's lexers (``promlex.l``, ``openmetricslex.l``) and either parses the body or
raises the precise error with its 1-based line number. Labels are parsed lazily by `labels`
(cache-miss path only); so are the `metadata` objects and the TYPE segments used for
``le``/``quantile`` canonicalisation.

Refinements of, and deliberate deviations from, Prometheus (spec §7):

* Errors are `ExpositionError` (a `ParseError`) with ``line`` (1-based line where the bad entry
  starts; ``0`` for a missing ``# EOF``) and ``partial``: the samples (and metadata) parsed
  before the bad entry, so the scrape loop can mirror the §4.8 staleness quirk.
* Duplicate label names in one series (``m{a="1",a="2"}``, or a ``__name__`` label next to a
  metric name) are reported by `labels` (Prometheus fails at storage append, spec §4.4 step 6:
  ``label name "a" is not unique: invalid sample``); ``partial`` holds the samples before the
  first occurrence of that key. A cache hit can never be such a key, because the scrape cache
  only ever holds keys whose `labels` call succeeded.
* Empty label values are returned as ``""``; the label builder downstream treats them as absent.
* An empty body parses to an empty `Exposition` in both formats (spec §11 #20: ``up=1``).
* Text format: a sample line with leading whitespace is refused (``leading whitespace before
  metric name``; Prometheus 2.x put the spaces into the metric name and failed later), while
  whitespace before ``#`` or on an otherwise blank line is allowed as in Prometheus. A NUL byte
  at the start of a line is an error (Prometheus's lexer would silently stop there). A bare label
  name followed by ``,``/``}`` is ``expected equal`` (Prometheus would take it as a mangled
  metric name). ``# HELP name`` without text gives an empty help. A quoted name in HELP/TYPE
  cannot span lines. Raw newlines inside quoted label values are accepted, as Prometheus does.
* OpenMetrics: a timestamp whose millisecond value does not fit int64 is ``invalid timestamp``
  (Go would wrap). Exemplars are parsed (at most one per sample) and never fail on storage rules.
* ``untyped`` (text) is reported as type ``"unknown"`` in `Metadata`, like Prometheus's model.
* ``le``/``quantile`` canonicalisation parses values with Go ``strconv.ParseFloat`` rules
  including hex floats with a ``p`` exponent, but not Go's underscore forms (kept raw).

Prometheus counterpart: ``model/textparse`` (``promparse.go``, ``openmetricsparse.go``).
"""

from __future__ import annotations

import math
import operator
import re
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

from collector.errors import ParseError
from collector.model.value import NORMAL_NAN

__all__ = [
    "Exemplar",
    "Exposition",
    "ExpositionError",
    "IncrementalParser",
    "Metadata",
    "Sample",
    "canonical_float",
    "parse",
]

Sample = tuple[bytes, float, int | None]
"""One sample: raw series key bytes, value, explicit timestamp in ms (or None)."""

_Row = tuple[bytes, ...]
_MetaRow = tuple[bytes, bytes, bytes]
"""(kind, family name, raw text): kind is HELP, TYPE or UNIT; the name is unquoted/unescaped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metadata:
    """What the HELP/TYPE/UNIT lines of one metric family said (last line of each kind wins)."""

    type: str = "unknown"
    """counter, gauge, histogram, summary, unknown (text ``untyped``), and for OpenMetrics also
    gaugehistogram, info, stateset."""
    help: str = ""
    """Unescaped help text."""
    unit: str = ""
    """OpenMetrics UNIT; always empty in the text format."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Exemplar:
    """An OpenMetrics exemplar attached to one sample."""

    labels: tuple[tuple[str, str], ...]
    """Exemplar labels in body order, values unescaped."""
    value: float
    """Exemplar value (NaN normalised)."""
    ts_ms: int | None = field(default=None)
    """Exemplar timestamp in ms; None means: use the sample's timestamp (spec §4.4 step 9)."""


class ExpositionError(ParseError):
    """A body was refused; ``partial`` is the `Exposition` of the entries before the bad one."""

    def __init__(self, message: str, *, line: int, partial: Exposition) -> None:
        super().__init__(message, line=line)
        self.partial = partial


class _Syntax(Exception):
    """Internal: a located-later syntax error raised by the scanners."""


class _NoEOF(_Syntax):
    """Internal: OpenMetrics body ended without ``# EOF`` (reported with line 0)."""

    def __init__(self) -> None:
        super().__init__("data does not end with # EOF")


class _NotFast(Exception):
    """Internal: the body is not in the fast-path shape; use the slow path."""


# ----------------------------------------------------------------------------- grammar pieces
# CPython's regex engine runs single-byte loops such as [^"]* several times faster than
# multi-member classes, so bodies without any backslash (nearly all) use "[^"]*" for label
# values. A raw newline inside such a value makes one row span two lines, which the
# rows == newlines coverage check catches; the escape-aware pattern is used otherwise.
_TEXT_TYPES = frozenset((b"counter", b"gauge", b"histogram", b"summary", b"untyped"))
_OM_TYPES = frozenset(
    (b"counter", b"gauge", b"histogram", b"gaugehistogram", b"summary", b"info", b"stateset")
).union((b"unknown",))
_NAME = rb"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LNAME = rb"[a-zA-Z_][a-zA-Z0-9_]*"
_LVALUE_PLAIN = rb'"[^"]*"'
_LVALUE_ESCAPED = rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
# Go strconv.ParseFloat spellings, minus everything with p/P/_ (Prometheus refuses those).
_DECIMAL = rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_FLOAT = _DECIMAL + rb"|[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]"


def _labels_re(lvalue: bytes, *, trailing_comma: bool) -> bytes:
    """A label-set pattern: ``{}``, ``{a="b"}``, ``{a="b",c="d"}`` (text also ``{a="b",}``)."""
    label = _LNAME + b"=" + lvalue
    return (
        rb"\{(?:"
        + label
        + rb"(?:,"
        + label
        + rb")*"
        + (b",?" if trailing_comma else b"")
        + rb")?\}"
    )


def _text_row(lvalue: bytes) -> re.Pattern[bytes]:
    """One alternative per text line shape: sample, HELP, valid TYPE, other comment, blank.

    Row groups: key, value, timestamp, HELP name, HELP text, TYPE name, TYPE.
    """
    labels = _labels_re(lvalue, trailing_comma=True)
    return re.compile(
        rb"(?m)^(?:"
        rb"(" + _NAME + rb"(?:" + labels + rb")?) (" + _FLOAT + rb")(?: ([0-9]{1,18}))?"
        rb"|# HELP (" + _NAME + rb")(?: ([^\n]*))?"
        rb"|# TYPE (" + _NAME + rb") (counter|gauge|histogram|summary|untyped)"
        rb"|#(?![ \t]+(?:HELP|TYPE)[ \t])[^\n]*"
        rb"|)\n"
    )


def _om_row(lvalue: bytes) -> re.Pattern[bytes]:
    """One alternative per OpenMetrics line shape: sample (+exemplar), HELP, TYPE, UNIT.

    Row groups: key, value, timestamp, exemplar, then name/text of HELP, TYPE and UNIT.
    """
    labels = _labels_re(lvalue, trailing_comma=False)
    return re.compile(
        rb"(?m)^(?:"
        rb"(" + _NAME + rb"(?:" + labels + rb")?) (" + _FLOAT + rb")(?: (" + _DECIMAL + rb"))?"
        rb"( # \{[^\n]*)?"
        rb"|# HELP (" + _NAME + rb") ([^\n]*)"
        rb"|# TYPE (" + _NAME + rb") (" + b"|".join(sorted(_OM_TYPES)) + rb")"
        rb"|# UNIT (" + _NAME + rb") ([^\n]*)"
        rb")\n"
    )


_TEXT_ROW_PLAIN = _text_row(_LVALUE_PLAIN)
_TEXT_ROW_ESCAPED = _text_row(_LVALUE_ESCAPED)
_OM_ROW_PLAIN = _om_row(_LVALUE_PLAIN)
_OM_ROW_ESCAPED = _om_row(_LVALUE_ESCAPED)
# Keys whose label part a str-regex findall in `labels` can split without the scanner.
_FAST_KEY = re.compile(_NAME + rb"(?:" + _labels_re(_LVALUE_ESCAPED, trailing_comma=True) + rb")?")
_SPLIT_ESCAPED = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*(?:\\.[^"\\\n]*)*)"')

_GO_FLOAT = re.compile(_FLOAT)
_GO_HEX_FLOAT = re.compile(
    rb"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+"
)
_WS = re.compile(rb"[ \t]*")
_NAME_RE = re.compile(_NAME)
_LNAME_RE = re.compile(_LNAME)
_QSTR_TEXT = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # raw newlines allowed (promlex.l)
_QSTR_OM = re.compile(rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
_TEXT_VALUE = re.compile(rb"[^{ \t\n]+")
_OM_TOKEN = re.compile(rb"[^ \n]+")
_DIGITS = re.compile(rb"[0-9]+")
_TEXT_META = re.compile(rb"[ \t]*#[ \t]+(HELP|TYPE)[ \t]+")
_ESCAPE = re.compile(r"\\(.)", re.S)

_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_TEXT_HELP_ESCAPES = {"\\": "\\", "n": "\n"}
_INT64_MAX = (1 << 63) - 1

_get0 = itemgetter(0)
_get1 = itemgetter(1)
_get2 = itemgetter(2)
_get3 = itemgetter(3)
_get8 = itemgetter(8)
_get_unit = itemgetter(0, 8, 9)
_isfinite = math.isfinite


# ----------------------------------------------------------------------------- small helpers
def _q(raw: bytes) -> str:
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


def _unescape(text: str, table: dict[str, str]) -> str:
    """Decode backslash escapes listed in ``table``; keep every other ``\\x`` verbatim."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: table.get(m.group(1), m.group(0)), text)


def _go_float(tok: bytes) -> float:
    """Go ``strconv.ParseFloat`` as Prometheus uses it (no p/P/_); NaN -> NORMAL_NAN."""
    if b"p" in tok or b"P" in tok or b"_" in tok:
        raise _Syntax("unsupported character in float")
    if _GO_FLOAT.fullmatch(tok) is None:
        raise _Syntax(f"strconv.ParseFloat: parsing {_q(tok)}: invalid syntax")
    value = float(tok)
    if value != value:
        return NORMAL_NAN
    if math.isinf(value) and tok[-1:] not in b"fFyY":
        raise _Syntax(f"strconv.ParseFloat: parsing {_q(tok)}: value out of range")
    return value


def _go_fmt_f(value: float) -> str:
    """Go ``%f`` of a non-finite float, for ``invalid timestamp`` messages."""
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _om_ts(tok: bytes, what: str) -> int:
    """OpenMetrics timestamp token (float seconds) -> int ms, truncated toward zero."""
    seconds = _go_float(tok)
    if not math.isfinite(seconds):
        raise _Syntax(f"invalid {what} {_go_fmt_f(seconds)}")
    ms = seconds * 1000.0
    if not -(2.0**63) <= ms < 2.0**63:
        raise _Syntax(f"invalid {what} {tok.decode('ascii', 'replace')}: out of int64 ms range")
    return int(ms)


def canonical_float(raw: str) -> str:
    """Re-render an ``le``/``quantile`` value the way Prometheus 3 does (spec §7.1).

    Values that Go's ``strconv.ParseFloat`` refuses are returned unchanged.
    """
    data = raw.encode("utf-8", "surrogateescape")
    if _GO_FLOAT.fullmatch(data) is not None:
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


# ----------------------------------------------------------------------------- the result
class _Shape:
    """Structure-derived data of a body, shared by every `Exposition` of the same structure.

    The steady-state path of `IncrementalParser` hands out expositions whose lines differ from
    the previous body only in sample values, so metadata, TYPE segments, line numbers and the
    first-index map are computed at most once per structure, not once per scrape.
    """

    __slots__ = ("lines", "meta", "meta_rows", "rows", "segments", "validated")

    def __init__(
        self,
        rows: list[_Row] | None,
        meta_rows: list[_MetaRow] | None,
        segments: list[tuple[int, bytes]] | None,
        lines: Sequence[int] | None,
    ) -> None:
        self.rows = rows  # fast path: one regex row per line, for lazy segments/line numbers
        self.meta_rows = meta_rows
        self.segments = segments
        self.lines = lines  # slow path (and compacted shapes): 1-based line of every sample
        self.meta: dict[str, Metadata] | None = None
        self.validated = rows is not None
        """Every key was matched by the fast-path row regex (`Exposition.labels` may split it)."""

    def compact(self, *, openmetrics: bool, sample_lines: Sequence[int]) -> None:
        """Derive everything the rows are kept for, then drop them.

        The rows hold a tuple and the value bytes of every line: the bulk of what a long-lived
        shape (the one `IncrementalParser` keeps per target) would otherwise hold per series.
        ``sample_lines`` are the 0-based body lines of the samples.
        """
        if self.rows is None:
            return
        probe = Exposition(openmetrics=openmetrics, samples=[], shape=self)
        probe._type_segments()
        probe._metadata_rows()
        self.lines = array("I", [i + 1 for i in sample_lines])
        self.rows = None


Columns = tuple[list[bytes], list[float], list[int | None] | None]
"""``(keys, values, timestamps)``; timestamps is None when no sample has an explicit one."""


class Exposition:
    """One parsed body: samples in body order, plus lazily built labels and metadata.

    Samples are held as columns (keys, values, timestamps) and the ``samples`` tuples are
    built on first access; the scrape cache reads the columns (`columns`) directly.
    """

    __slots__ = (
        "_first",
        "_keys",
        "_samples",
        "_shape",
        "_stamps",
        "_values",
        "exemplars",
        "openmetrics",
    )

    def __init__(
        self,
        *,
        openmetrics: bool,
        samples: list[Sample] | None = None,
        columns: Columns | None = None,
        meta_rows: list[_MetaRow] | None = None,
        segments: list[tuple[int, bytes]] | None = None,
        exemplars: dict[int, Exemplar] | None = None,
        rows: list[_Row] | None = None,
        lines: Sequence[int] | None = None,
        shape: _Shape | None = None,
    ) -> None:
        self.openmetrics = openmetrics
        """True when the body was parsed as OpenMetrics."""
        self.exemplars: dict[int, Exemplar] = exemplars if exemplars is not None else {}
        """OpenMetrics exemplars by sample index (empty for the text format)."""
        self._shape = shape if shape is not None else _Shape(rows, meta_rows, segments, lines)
        self._samples = samples
        self._keys: list[bytes] | None = None
        self._values: list[float] = []
        self._stamps: list[int | None] | None = None
        self._first: dict[bytes, int] | None = None
        if columns is not None:
            self._keys, self._values, self._stamps = columns
        elif samples is None:
            self._samples = []

    def __repr__(self) -> str:
        return f"<Exposition samples={len(self.columns()[0])} openmetrics={self.openmetrics}>"

    @property
    def samples(self) -> list[Sample]:
        """``(key, value, ts_ms | None)`` in body order (built from the columns on demand)."""
        samples = self._samples
        if samples is None:
            keys = self._keys
            assert keys is not None  # one of samples/columns is always set
            stamps = self._stamps
            samples = self._samples = list(
                zip(keys, self._values, repeat(None) if stamps is None else stamps, strict=False)
            )
        return samples

    def columns(self) -> Columns:
        """``(keys, values, timestamps or None)``: the samples as parallel lists (no copies;
        callers must not mutate them)."""
        keys = self._keys
        if keys is None:
            samples = self.samples
            keys = self._keys = list(map(_get0, samples))
            self._values = list(map(_get1, samples))
            stamps: list[int | None] = list(map(_get2, samples))
            self._stamps = None if stamps.count(None) == len(stamps) else stamps
        return keys, self._values, self._stamps

    @property
    def metadata(self) -> dict[str, Metadata]:
        """Family name -> `Metadata`, built on first access (last HELP/TYPE/UNIT wins).

        Expositions of an unchanged structure share one dict: do not mutate it.
        """
        shape = self._shape
        if shape.meta is None:
            shape.meta = _build_metadata(self._metadata_rows(), openmetrics=self.openmetrics)
        return shape.meta

    def metadata_source(self) -> _ShapeMetadata:
        """An object whose ``metadata`` is this exposition's, holding only the structure (not
        the samples): what a scrape cache keeps until somebody reads the metadata."""
        return _ShapeMetadata(self._shape, self.openmetrics)

    def labels(self, key: bytes) -> list[tuple[str, str]]:
        """The label pairs of a key from `samples`: ``__name__`` first, then body order.

        Values are unescaped; ``le`` (histogram; OpenMetrics also gaugehistogram) and
        ``quantile`` (summary) are canonicalised when that TYPE was in force where the key first
        appeared. Raises `ExpositionError` for duplicate label names.
        """
        brace = key.find(b"{")
        if brace < 0:
            return [("__name__", _intern(key.decode()))]
        if self._shape.validated or _FAST_KEY.fullmatch(key) is not None:
            # Validated key (the row regex, or _FAST_KEY): name="value" pairs, in order.
            text = key.decode()
            if "\\" in text:
                out = [("__name__", _intern(text[:brace]))]
                out += [
                    (_intern(n), _unescape(v, _LABEL_ESCAPES))
                    for n, v in _SPLIT_ESCAPED.findall(text, brace)
                ]
            else:
                # Backslash-free validated key: every '"' delimits a value, so the even
                # pieces are '{a=', ',b=', ..., '}' (or ',}') and the odd ones the values.
                parts = text[brace:].split('"')
                out = [("__name__", _intern(text[:brace]))]
                out += zip(map(_intern, map(_strip_name, parts[:-1:2])), parts[1::2], strict=True)
        else:
            try:
                _, name, raw = _scan_series(key, 0, openmetrics=self.openmetrics, start=0)
            except _Syntax as exc:  # only keys that did not come from this body get here
                raise ValueError(f"not a series key of this exposition: {key!r}") from exc
            out = [("__name__", name.decode())]
            out += [(n.decode(), _unescape(v.decode(), _LABEL_ESCAPES)) for n, v in raw]
        if len(out) > 1:
            names = set(map(_get0, out))
            if len(names) != len(out):
                self._duplicate(key, out)
            if "le" in names or "quantile" in names:
                return self._canonicalise(key, out)
        return out

    # -- labels() helpers (cache-miss path only) ------------------------------------------

    def _canonicalise(self, key: bytes, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply §7.1 canonicalisation using the TYPE in force at the key's first sample."""
        segments = self._type_segments()
        if not segments:
            return out
        pos = bisect_right(segments, self._first_index(key), key=_get0) - 1
        if pos < 0:
            return out
        mtype = segments[pos][1]
        if mtype == b"summary":
            target = "quantile"
        elif mtype == b"histogram" or (self.openmetrics and mtype == b"gaugehistogram"):
            target = "le"
        else:
            return out
        return [(n, canonical_float(v) if n == target else v) for n, v in out]

    def _first_index(self, key: bytes) -> int:
        """Index of the first sample with this key (lazy reverse map, first occurrence wins)."""
        first = self._first
        if first is None:
            keys = self.columns()[0]
            first = self._first = dict(
                zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True)
            )
        return first.get(key, 0)

    def _type_segments(self) -> list[tuple[int, bytes]]:
        """``(first sample index, type)`` for every TYPE line, computed once on demand."""
        shape = self._shape
        if shape.segments is None:
            segments: list[tuple[int, bytes]] = []
            count = 0
            tname = 6 if self.openmetrics else 5
            for row in shape.rows or ():
                if row[0]:
                    count += 1
                elif row[tname]:
                    segments.append((count, row[tname + 1]))
            shape.segments = segments
        return shape.segments

    def _metadata_rows(self) -> list[_MetaRow]:
        """HELP/TYPE/UNIT rows in body order (derived from the fast-path rows on demand)."""
        shape = self._shape
        if shape.meta_rows is None:
            rows: list[_MetaRow] = []
            base = 4 if self.openmetrics else 3
            kinds = (b"HELP", b"TYPE", b"UNIT")
            for row in shape.rows or ():
                if not row[0]:
                    for offset, kind in enumerate(kinds):
                        at = base + 2 * offset
                        if at < len(row) and row[at]:
                            rows.append((kind, row[at], row[at + 1]))
            shape.meta_rows = rows
        return shape.meta_rows

    def _line_of(self, index: int) -> int:
        """1-based body line of sample ``index``."""
        shape = self._shape
        if shape.lines is not None:
            return shape.lines[index]
        count = -1
        for lineno, row in enumerate(shape.rows or (), 1):
            if row[0]:
                count += 1
                if count == index:
                    return lineno
        return 0

    def _duplicate(self, key: bytes, out: list[tuple[str, str]]) -> None:
        """Raise the storage-style error for a repeated label name."""
        seen: set[str] = set()
        dup = ""
        for name, _ in out:
            if name in seen:
                dup = name
                break
            seen.add(name)
        index = self._first_index(key)
        partial = Exposition(
            samples=self.samples[:index],
            openmetrics=self.openmetrics,
            meta_rows=self._metadata_rows(),
        )
        raise ExpositionError(
            f'label name "{dup}" is not unique: invalid sample',
            line=self._line_of(index),
            partial=partial,
        )


class _ShapeMetadata:
    """`Exposition.metadata_source`: the metadata of a structure, built on first access."""

    __slots__ = ("_openmetrics", "_shape")

    def __init__(self, shape: _Shape, openmetrics: bool) -> None:
        self._shape = shape
        self._openmetrics = openmetrics

    @property
    def metadata(self) -> dict[str, Metadata]:
        """Family name -> `Metadata` (see `Exposition.metadata`)."""
        return Exposition(openmetrics=self._openmetrics, samples=[], shape=self._shape).metadata


_intern = sys.intern
"""Label names and metric names repeat across series and targets: one str object each."""


def _strip_name(piece: str) -> str:
    """``'{a='``, ``',b='`` -> the label name (the piece around it is ``{``/``,`` and ``=``)."""
    return piece[1:-1]


def _build_metadata(rows: list[_MetaRow], *, openmetrics: bool) -> dict[str, Metadata]:
    """Fold validated HELP/TYPE/UNIT rows into `Metadata` objects."""
    acc: dict[bytes, list[str]] = {}
    help_escapes = _LABEL_ESCAPES if openmetrics else _TEXT_HELP_ESCAPES
    for kind, name, text in rows:
        slot = acc.get(name)
        if slot is None:
            slot = acc[name] = ["unknown", "", ""]
        if kind == b"TYPE":
            slot[0] = "unknown" if text == b"untyped" else text.decode()
        elif kind == b"HELP":
            slot[1] = _unescape(text.decode(), help_escapes)
        else:
            slot[2] = text.decode()
    return {name.decode(): Metadata(type=t, help=h, unit=u) for name, (t, h, u) in acc.items()}


# ----------------------------------------------------------------------------- entry point
def parse(body: bytes, *, openmetrics: bool) -> Exposition:
    """Parse a whole scrape body; raise `ExpositionError` (a `ParseError`) on any bad input."""
    if not body:
        return Exposition(samples=[], openmetrics=openmetrics)
    try:
        return _fast_om(body) if openmetrics else _fast_text(body)
    except _NotFast:
        return _Slow(body, openmetrics=openmetrics).run()


# ----------------------------------------------------------------------------- steady state
_TAIL_CHARS = b"0123456789.+-eEiInNfFtTyYaA \n"
"""Every byte a `` value`` tail (and its separators) may contain on the steady-state path."""
_TAIL_TEXT = re.compile(rb" (" + _FLOAT + rb")(?: ([0-9]{1,18}))?")
_TAIL_OM = re.compile(rb" (" + _FLOAT + rb")(?: (" + _DECIMAL + rb"))?")
_is = operator.is_


def _picker(idx: list[int]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """A C-level ``lambda lines: tuple(lines[i] for i in idx)``."""
    if len(idx) >= 2:
        return itemgetter(*idx)
    if idx:
        only = idx[0]
        return lambda lines: (lines[only],)
    return lambda lines: ()


class IncrementalParser:
    """`parse` with a steady-state fast path: same lines as last time, new values.

    One per scrape target. After a body that the regex fast path parsed (one row per line, no
    exemplars), it remembers the body's structure: which line is a sample (and its key) and the
    exact bytes of every other line (comments, metadata, blanks, ``# EOF``). The next body is
    split into lines; when the line count is equal, every non-sample line is byte-identical
    (one tuple comparison) and every sample line is its old key followed by a valid
    `` value[ timestamp]`` tail, only the tails are parsed: C-level passes over the lists
    (``removeprefix``, a byte-class check, ``map(float)``), plus a per-line regex only for
    lines with timestamps. The result shares the previous exposition's structure (metadata,
    TYPE segments, line numbers), and its keys are the very same bytes objects, so the scrape
    cache's lookups hit on identity with cached hashes.

    Exactly as strict as `parse`: unchanged lines were validated in the same positional context
    (same neighbours, same TYPE in force, same ``# EOF``), a changed tail must be a Go float
    (no ``_``, hex, signed NaN, overflow) with an optional timestamp of the fast-path shape, and
    anything else (line count, any changed non-sample line, a different key, whitespace
    variants, exemplars) makes the whole body go through `parse`.
    """

    __slots__ = ("_fixed", "_keys", "_nlines", "_om", "_pick_fixed", "_pick_samples", "_shape")

    def __init__(self) -> None:
        self._shape: _Shape | None = None
        self._om = False
        self._nlines = 0
        self._keys: list[bytes] = []
        self._fixed: tuple[bytes, ...] = ()
        self._pick_fixed = self._pick_samples = _picker([])

    def parse(self, body: bytes, *, openmetrics: bool) -> Exposition:
        """Like `parse` (same result, same errors); fast when only values changed."""
        shape = self._shape
        if shape is not None and openmetrics == self._om:
            lines = body.split(b"\n")
            if len(lines) == self._nlines and self._pick_fixed(lines) == self._fixed:
                columns = self._columns(self._pick_samples(lines))
                if columns is not None:
                    return Exposition(openmetrics=openmetrics, columns=columns, shape=shape)
        exp = parse(body, openmetrics=openmetrics)
        self._remember(body, exp)
        return exp

    def reset(self) -> None:
        """Forget the remembered structure (the next body takes the full path)."""
        self._shape = None

    def _remember(self, body: bytes, exp: Exposition) -> None:
        """Record the structure of a body the regex fast path parsed."""
        self._shape = None
        shape = exp._shape
        rows = shape.rows
        keys = exp._keys
        if rows is None or exp.exemplars or not keys:
            return
        lines = body.split(b"\n")
        sample_idx: list[int] = []
        fixed_idx: list[int] = []
        for i, row in enumerate(rows):
            (sample_idx if row[0] else fixed_idx).append(i)
        fixed_idx += range(len(rows), len(lines))  # trailing "" / "# EOF" positions
        if len(lines) < len(rows) or len(sample_idx) != len(keys):
            return  # cannot happen for a fast-path body; be safe
        self._om = exp.openmetrics
        self._nlines = len(lines)
        self._keys = keys
        self._pick_fixed = _picker(fixed_idx)
        self._pick_samples = _picker(sample_idx)
        self._fixed = self._pick_fixed(lines)
        shape.compact(openmetrics=exp.openmetrics, sample_lines=sample_idx)
        self._shape = shape

    def _columns(self, slines: tuple[bytes, ...]) -> Columns | None:
        """Values (and timestamps) of the sample lines, or None when a full parse is needed."""
        keys = self._keys
        tails = list(map(bytes.removeprefix, slines, keys))
        if any(map(_is, tails, slines)):
            return None  # some line does not start with its old key
        count = len(tails)
        joined = b"\n".join(tails)
        if joined.translate(None, _TAIL_CHARS) or (b"\n" + joined).count(b"\n ") != count:
            return None  # a byte no value may contain, or a tail not starting with one space
        if joined.count(b" ") == count:  # no timestamps: ' <value>' everywhere
            try:
                values = list(map(float, tails))
            except ValueError:
                return None
            if not all(map(_isfinite, values)) and not _nonfinite(values, tails):
                return None
            return keys, values, None
        return self._stamped(tails)

    def _stamped(self, tails: list[bytes]) -> Columns | None:
        """The per-line path for bodies with explicit timestamps."""
        om = self._om
        match = (_TAIL_OM if om else _TAIL_TEXT).fullmatch
        values: list[float] = []
        stamps: list[int | None] = []
        try:
            for tail in tails:
                found = match(tail)
                if found is None:
                    return None
                raw, ts = found.groups()
                value = float(raw)
                if not _isfinite(value):
                    if value != value:
                        value = NORMAL_NAN
                    elif raw[-1:] not in b"fFyY":
                        return None  # out of range: the full parse words the error
                values.append(value)
                if ts is None:
                    stamps.append(None)
                else:
                    stamps.append(_om_ts(ts, "timestamp") if om else int(ts))
        except _Syntax:
            return None
        return self._keys, values, stamps


def _nonfinite(values: list[float], tails: list[bytes]) -> bool:
    """Check and normalise the non-finite values of ``' <value>'`` tails (False: refuse).

    ``float`` also takes signed NaN (Go does not) and turns overflowing decimals into inf
    (Go: out of range); NaN becomes NORMAL_NAN.
    """
    for i, value in enumerate(values):
        if not _isfinite(value):
            token = tails[i][1:]
            if _GO_FLOAT.fullmatch(token) is None:
                return False
            if value != value:
                values[i] = NORMAL_NAN
            elif token[-1:] not in b"fFyY":
                return False
    return True


# ----------------------------------------------------------------------------- fast path
def _check_utf8(body: bytes) -> None:
    """Whole-body UTF-8 validity implies every label value and help text is valid."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            raise _NotFast from None


def _values(srows: list[_Row]) -> list[float]:
    """Floats of the value column; NaN -> NORMAL_NAN; overflowed decimals -> slow path."""
    raw = list(map(_get1, srows))
    values = list(map(float, raw))
    if not all(map(_isfinite, values)):
        for i, value in enumerate(values):
            if value != value:
                values[i] = NORMAL_NAN
            elif math.isinf(value) and raw[i][-1:] not in b"fFyY":
                raise _NotFast  # "value out of range": let the slow path word the error
    return values


def _fast_text(body: bytes) -> Exposition:
    """Whole-body regex parse of a well-formed text exposition, or `_NotFast`."""
    _check_utf8(body)
    if body[-1:] != b"\n":
        body += b"\n"  # the final newline may be missing (promparse appends one)
    pattern = _TEXT_ROW_ESCAPED if b"\\" in body else _TEXT_ROW_PLAIN
    rows: list[_Row] = pattern.findall(body)
    if len(rows) != body.count(b"\n"):
        raise _NotFast
    srows = list(filter(_get0, rows))
    keys = list(map(_get0, srows))
    values = _values(srows)
    stamps: list[int | None] | None = None
    if any(map(_get2, srows)):
        stamps = [int(t) if t else None for t in map(_get2, srows)]
    return Exposition(columns=(keys, values, stamps), openmetrics=False, rows=rows)


def _fast_om(body: bytes) -> Exposition:
    """Whole-body regex parse of a well-formed OpenMetrics exposition, or `_NotFast`."""
    if body.endswith(b"# EOF\n"):
        end = len(body) - 6
    elif body.endswith(b"# EOF"):
        end = len(body) - 5
    else:
        raise _NotFast
    if end and body[end - 1] != 0x0A:
        raise _NotFast
    _check_utf8(body)
    pattern = _OM_ROW_ESCAPED if b"\\" in body else _OM_ROW_PLAIN
    rows: list[_Row] = pattern.findall(body, 0, end)
    if len(rows) != body.count(b"\n", 0, end):
        raise _NotFast
    srows = list(filter(_get0, rows))
    if len(srows) != len(rows):
        for _, name, unit in map(_get_unit, filter(_get8, rows)):
            if unit and not name.endswith(b"_" + unit):
                raise _NotFast
    keys = list(map(_get0, srows))
    values = _values(srows)
    raw_stamps = list(map(_get2, srows))
    ts: list[int | None] | None = None
    try:
        if any(raw_stamps):
            ts = [_om_ts(t, "timestamp") if t else None for t in raw_stamps]
        exemplars: dict[int, Exemplar] = {}
        column = list(map(_get3, srows))
        if any(column):
            for i, text in enumerate(column):
                if text:
                    exemplars[i] = _parse_exemplar(text, 3)
    except _Syntax:
        raise _NotFast from None
    return Exposition(columns=(keys, values, ts), openmetrics=True, rows=rows, exemplars=exemplars)


# ----------------------------------------------------------------------------- scanners
def _got(buf: bytes, pos: int) -> bytes:
    """The offending token at ``pos`` for an error message."""
    if pos >= len(buf):
        return b""
    match = re.compile(rb"[^ \t\n]+").match(buf, pos)
    return match.group()[:40] if match else buf[pos : pos + 1]


def _perr(buf: bytes, start: int, pos: int, expected: str) -> _Syntax:
    """Prometheus ``parseError`` wording: what was expected, what came, and the entry so far."""
    got = _got(buf, pos)
    return _Syntax(
        f"{expected}, got {_q(got)} while parsing: {_q(buf[start : pos + len(got)][:200])}"
    )


def _scan_series(
    buf: bytes, pos: int, *, openmetrics: bool, start: int
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Scan ``name``, ``name{...}`` or ``{"name", ...}`` at ``pos``.

    Returns (end of the series key, unescaped metric name, [(label name, raw value)]).
    """
    name: bytes | None = None
    match = _NAME_RE.match(buf, pos)
    if match is not None:
        name = match.group()
        pos = match.end()
    brace = pos if openmetrics else _WS.match(buf, pos).end()  # type: ignore[union-attr]
    labels: list[tuple[bytes, bytes]] = []
    if buf[brace : brace + 1] == b"{":
        pos, quoted, labels = _scan_labels(
            buf, brace + 1, openmetrics=openmetrics, start=start, named=name is not None
        )
        if quoted is not None:
            name = quoted
    elif name is None:
        raise _perr(buf, start, pos, "expected a valid start token")
    if name is None:
        raise _Syntax(f"metric name not set while parsing: {_q(buf[start:pos])}")
    return pos, name, labels


def _scan_labels(
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
        return at if openmetrics else _WS.match(buf, at).end()  # type: ignore[union-attr]

    qstr = _QSTR_OM if openmetrics else _QSTR_TEXT
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
                raise _perr(buf, start, pos, "expected label name")
            lname = _unescape_bytes(match.group()[1:-1], what="label name")
            is_quoted = True
        else:
            match = _LNAME_RE.match(buf, pos)
            if match is None:
                raise _perr(buf, start, pos, "expected label name")
            lname = match.group()
            is_quoted = False
        pos = skip(match.end())
        char = buf[pos : pos + 1]
        if is_quoted and char in (b",", b"}"):
            if exemplar:
                raise _perr(buf, start, pos, "expected label name")
            if named or quoted_name is not None:
                raise _Syntax(f"metric name already set while parsing: {_q(buf[start:pos])}")
            quoted_name = lname
            if char == b"}":
                return pos + 1, quoted_name, labels
            pos = skip(pos + 1)
            continue
        if char != b"=":
            raise _perr(buf, start, pos, "expected equal")
        pos = skip(pos + 1)
        match = qstr.match(buf, pos)
        if match is None:
            raise _perr(buf, start, pos, "expected label value")
        raw = match.group()[1:-1]
        try:
            raw.decode()
        except UnicodeDecodeError:
            raise _Syntax(f"invalid UTF-8 label value: {_q(match.group())}") from None
        labels.append((lname, raw))
        pos = skip(match.end())
        char = buf[pos : pos + 1]
        if char == b",":
            pos = skip(pos + 1)
            if openmetrics and buf[pos : pos + 1] == b"}":
                raise _perr(buf, start, pos, "expected label name")
        elif char != b"}":
            raise _perr(buf, start, pos, "expected comma or brace close")


def _unescape_bytes(raw: bytes, *, what: str) -> bytes:
    """Unescape a quoted name (``\\\\``, ``\\"``, ``\\n``), refusing invalid UTF-8."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise _Syntax(f"invalid UTF-8 {what}: {_q(raw)}") from None
    return _unescape(text, _LABEL_ESCAPES).encode()


def _parse_exemplar(buf: bytes, pos: int) -> Exemplar:
    """Parse ``{labels} value [ts]`` at ``pos`` (just after ``" # "``) up to end of line."""
    if buf[pos : pos + 1] != b"{":
        raise _perr(buf, 0, pos, "expected label set for exemplar")
    pos, _, raw = _scan_labels(buf, pos + 1, openmetrics=True, start=0, named=True, exemplar=True)
    labels = tuple((n.decode(), _unescape(v.decode(), _LABEL_ESCAPES)) for n, v in raw)
    value_match = _OM_TOKEN.match(buf, pos + 1) if buf[pos : pos + 1] == b" " else None
    if value_match is None:
        raise _perr(buf, 0, pos, "expected value after exemplar labels")
    value = _go_float(value_match.group())
    pos = value_match.end()
    ts: int | None = None
    if pos < len(buf) and buf[pos] != 0x0A:
        ts_match = _OM_TOKEN.match(buf, pos + 1) if buf[pos] == 0x20 else None
        if ts_match is None:
            raise _perr(buf, 0, pos, "expected timestamp or comment")
        ts = _om_ts(ts_match.group(), "exemplar timestamp")
        pos = ts_match.end()
        if pos < len(buf) and buf[pos] != 0x0A:
            raise _perr(buf, 0, pos, "expected next entry after exemplar timestamp")
    return Exemplar(labels=labels, value=value, ts_ms=ts)


# ----------------------------------------------------------------------------- slow path
class _Slow:
    """Token-by-token parser mirroring Prometheus's lexers; exact errors with line numbers."""

    def __init__(self, body: bytes, *, openmetrics: bool) -> None:
        self.body = body
        self.om = openmetrics
        self.samples: list[Sample] = []
        self.lines: list[int] = []
        self.meta_rows: list[_MetaRow] = []
        self.segments: list[tuple[int, bytes]] = []
        self.exemplars: dict[int, Exemplar] = {}
        self.line = 1  # 1-based line where the current entry starts

    def result(self) -> Exposition:
        """The `Exposition` of everything parsed so far."""
        return Exposition(
            samples=self.samples,
            openmetrics=self.om,
            meta_rows=self.meta_rows,
            segments=self.segments,
            exemplars=self.exemplars,
            lines=self.lines,
        )

    def fail(self, message: str, line: int) -> ExpositionError:
        """An error carrying the partial result (copies, so later appends cannot leak in)."""
        partial = Exposition(
            samples=list(self.samples),
            openmetrics=self.om,
            meta_rows=list(self.meta_rows),
            segments=list(self.segments),
            exemplars=dict(self.exemplars),
            lines=list(self.lines),
        )
        return ExpositionError(message, line=line, partial=partial)

    def run(self) -> Exposition:
        """Parse the whole body."""
        body = self.body
        size = len(body)
        pos = 0
        while True:
            if pos >= size:
                if self.om:
                    raise self.fail("data does not end with # EOF", 0)
                return self.result()
            eol = body.find(b"\n", pos)
            if eol < 0:
                eol = size
            try:
                if self.om:
                    if body.startswith(b"# EOF", pos):
                        if body[pos + 5 :] not in (b"", b"\n"):
                            raise _Syntax("unexpected data after # EOF")
                        return self.result()
                    end = self.om_entry(pos, eol)
                else:
                    end = self.text_entry(pos, eol)
            except _Syntax as exc:
                raise self.fail(str(exc), 0 if isinstance(exc, _NoEOF) else self.line) from None
            self.line += body.count(b"\n", pos, end + 1)
            pos = end + 1

    # -- text format -----------------------------------------------------------------------
    def text_entry(self, pos: int, eol: int) -> int:
        """Parse one text entry starting at ``pos``; return the index of its final newline."""
        body = self.body
        char = body[pos : pos + 1]
        if char in (b" ", b"\t"):
            after = _WS.match(body, pos).end()  # type: ignore[union-attr]
            if after >= eol:
                return eol  # whitespace-only line
            if body[after : after + 1] != b"#":
                raise _Syntax(
                    f"leading whitespace before metric name while parsing: {_q(body[pos:eol])}"
                )
            char = b"#"
        if char == b"\n":
            return pos
        if char == b"#":
            self.text_comment(body[pos:eol])
            return eol
        return self.sample(pos)

    def text_comment(self, line: bytes) -> None:
        """A ``#`` line: HELP/TYPE metadata, or a comment to ignore."""
        match = _TEXT_META.match(line)
        if match is None:
            return  # plain comment (incl. "#HELP", "# UNIT ...", "#" alone)
        kind = match.group(1)
        name, rest = self.meta_name(line, match.end(), kind)
        text = rest[1:]
        if kind == b"TYPE":
            if text not in _TEXT_TYPES:
                raise _Syntax(f"invalid metric type {_q(text)}")
            self.segments.append((len(self.samples), text))
        else:
            try:
                text.decode()
            except UnicodeDecodeError:
                raise _Syntax(f"help text {_q(text)} is not a valid utf8 string") from None
        self.meta_rows.append((kind, name, text))

    def meta_name(self, line: bytes, pos: int, kind: bytes) -> tuple[bytes, bytes]:
        """The (unquoted) family name of a metadata line and the bytes after it."""
        if line[pos : pos + 1] == b'"':
            match = (_QSTR_OM if self.om else _QSTR_TEXT).match(line, pos)
            if match is not None:
                name = _unescape_bytes(match.group()[1:-1], what="metric name")
                return name, line[match.end() :]
        else:
            match = _NAME_RE.match(line, pos)
            if match is not None:
                return match.group(), line[match.end() :]
        raise _perr(line, 0, pos, f"expected metric name after {kind.decode()}")

    # -- OpenMetrics -------------------------------------------------------------------------
    def om_entry(self, pos: int, eol: int) -> int:
        """Parse one OpenMetrics entry at ``pos``; return the index of its final newline."""
        body = self.body
        char = body[pos : pos + 1]
        if char == b"#":
            self.om_comment(body[pos:eol])
            if eol >= len(body):
                raise _NoEOF
            return eol
        if char == b"\n":
            raise _Syntax('"INVALID" "\\n" is not a valid start token')
        return self.sample(pos)

    def om_comment(self, line: bytes) -> None:
        """``# HELP|TYPE|UNIT name text``; anything else starting with ``#`` is an error."""
        kind = line[2:6]
        if not line.startswith(b"# ") or kind not in (b"HELP", b"TYPE", b"UNIT"):
            raise _Syntax(f'"INVALID" {_q(line[:20])} is not a valid start token')
        if line[6:7] != b" ":
            raise _perr(line, 0, 6, f"expected metric name after {kind.decode()}")
        name, rest = self.meta_name(line, 7, kind)
        if rest[:1] != b" ":
            raise _Syntax(f"expected text in {kind.decode()}")
        text = rest[1:]
        if kind == b"TYPE":
            if text not in _OM_TYPES:
                raise _Syntax(f"invalid metric type {_q(text)}")
            self.segments.append((len(self.samples), text))
        elif kind == b"UNIT":
            if text and not name.endswith(b"_" + text):
                raise _Syntax(f"unit {_q(text)} not a suffix of metric {_q(name)}")
        else:
            try:
                text.decode()
            except UnicodeDecodeError:
                raise _Syntax(f"help text {_q(text)} is not a valid utf8 string") from None
        self.meta_rows.append((kind, name, text))

    # -- samples (both formats) ---------------------------------------------------------------
    def sample(self, start: int) -> int:
        """Parse a sample line at ``start``; return the index of its final newline."""
        body = self.body
        om = self.om
        key_end, _, _ = _scan_series(body, start, openmetrics=om, start=start)
        key = body[start:key_end]
        if om:
            match = (
                _OM_TOKEN.match(body, key_end + 1) if body[key_end : key_end + 1] == b" " else None
            )
        else:
            match = _TEXT_VALUE.match(body, _WS.match(body, key_end).end())  # type: ignore[union-attr]
        if match is None:
            raise _perr(body, start, key_end, "expected value after metric")
        try:
            value = _go_float(match.group())
        except _Syntax as exc:
            raise _Syntax(f"{exc} while parsing: {_q(body[start : match.end()])}") from None
        pos = match.end()
        ts: int | None = None
        exemplar: Exemplar | None = None
        if om:
            pos, ts, exemplar = self.om_tail(start, pos)
        else:
            pos = _WS.match(body, pos).end()  # type: ignore[union-attr]
            if pos < len(body) and body[pos] != 0x0A:
                digits = _DIGITS.match(body, pos)
                if digits is None:
                    raise _perr(body, start, pos, "expected timestamp or new record")
                ts = int(digits.group())
                if ts > _INT64_MAX:
                    raise _Syntax(
                        f"strconv.ParseInt: parsing {_q(digits.group())}: value out of range"
                        f" while parsing: {_q(body[start : digits.end()])}"
                    )
                pos = _WS.match(body, digits.end()).end()  # type: ignore[union-attr]
                if pos < len(body) and body[pos] != 0x0A:
                    raise _perr(body, start, pos, "expected next entry after timestamp")
        if exemplar is not None:
            self.exemplars[len(self.samples)] = exemplar
        self.samples.append((key, value, ts))
        self.lines.append(self.line)
        return pos

    def om_tail(self, start: int, pos: int) -> tuple[int, int | None, Exemplar | None]:
        """After an OpenMetrics value: optional `` ts``, optional `` # {exemplar}``, newline."""
        body = self.body
        ts: int | None = None
        if body.startswith(b" ", pos) and not body.startswith(b" # {", pos):
            match = _OM_TOKEN.match(body, pos + 1)
            if match is None:
                raise _perr(body, start, pos, "expected timestamp or new record")
            try:
                ts = _om_ts(match.group(), "timestamp")
            except _Syntax as exc:
                raise _Syntax(f"{exc} while parsing: {_q(body[start : match.end()])}") from None
            pos = match.end()
        exemplar: Exemplar | None = None
        if body.startswith(b" # {", pos):
            eol = body.find(b"\n", pos)
            eol = len(body) if eol < 0 else eol
            line = body[pos:eol]
            exemplar = _parse_exemplar(line, 3)
            pos = eol
        if pos >= len(body):
            raise _NoEOF
        if body[pos] != 0x0A:
            expected = (
                "expected next entry after timestamp"
                if ts is not None
                else ("expected timestamp or new record")
            )
            raise _perr(body, start, pos, expected)
        return pos, ts, exemplar
