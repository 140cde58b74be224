"""What a parse returns: `Exposition` (samples, lazy labels and metadata) and its parts.

Place in the pipeline: every parser of `collector.model.textparse` (`fast`, `slow`,
`incremental`, `stream`) hands the scrape loop an `Exposition`; the loop walks its
`~Exposition.columns` and calls `~Exposition.labels` only for keys its scrape cache misses.
Everything an exposition derives from its body's *structure* (metadata, TYPE segments, line
numbers) lives in a `Shape`, which expositions of an unchanged structure share.

The leading-underscore attributes of `Exposition` belong to the package: `incremental` reads
``_shape`` and ``_keys`` to remember a body's structure, `stream` seeds ``_shape``.

Prometheus counterpart: the ``Parser`` interface of ``model/textparse/interface.go``
(``Series``, ``Labels``, ``Help``/``Type``/``Unit``, ``Exemplar``).
"""

from __future__ import annotations

import re
import sys
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import filterfalse, repeat
from operator import itemgetter
from typing import Protocol

from collector.errors import ParseError
from collector.model.textparse.syntax import (
    LABEL_ESCAPES,
    LVALUE_ESCAPED,
    NAME,
    TEXT_HELP_ESCAPES,
    Malformed,
    canonical_float,
    labels_re,
    scan_series,
    unescape,
)

__all__ = [
    "Columns",
    "Exemplar",
    "Exposition",
    "ExpositionError",
    "MetaRow",
    "Metadata",
    "Row",
    "Sample",
    "Shape",
    "build_metadata",
]

Sample = tuple[bytes, float, int | None]
"""One sample: raw series key bytes, value, explicit timestamp in ms (or None)."""

Row = tuple[bytes, ...]
MetaRow = tuple[bytes, bytes, bytes]
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


# Keys whose label part a str-regex findall in `labels` can split without the scanner.
_FAST_KEY = re.compile(NAME + rb"(?:" + labels_re(LVALUE_ESCAPED, trailing_comma=True) + rb")?")
_SPLIT_ESCAPED = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*(?:\\.[^"\\\n]*)*)"')

_get0 = itemgetter(0)
_get1 = itemgetter(1)
_get2 = itemgetter(2)


class RestoreRows(Protocol):
    """`Shape.restore`: rebuilds a compacted shape's rows, and keeps the metadata folded from
    them (``meta``, None until built): one such object may serve the shapes of many targets
    whose bodies have the same structure, which then share one metadata dict."""

    meta: dict[str, Metadata] | None

    def __call__(self) -> list[Row]: ...


# ----------------------------------------------------------------------------- the result
class Shape:
    """Structure-derived data of a body, shared by every `Exposition` of the same structure.

    The steady-state path of `IncrementalParser` hands out expositions whose lines differ from
    the previous body only in sample values, so metadata, TYPE segments, line numbers and the
    first-index map are computed at most once per structure, not once per scrape.
    """

    __slots__ = (
        "line_base",
        "lines",
        "meta",
        "meta_rows",
        "restore",
        "rows",
        "segments",
        "type_in_force",
        "validated",
    )

    def __init__(
        self,
        rows: list[Row] | None,
        meta_rows: list[MetaRow] | None,
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
        self.line_base = 0
        """Lines before this body when it is a segment of a longer one (`Exposition._place`)."""
        self.type_in_force: bytes | None = None
        """Type of the last TYPE line before such a segment: the first of its `segments`."""
        self.restore: RestoreRows | None = None
        """Rebuilds the dropped `rows` when a compacted shape needs them (see `compact`)."""

    def compact(
        self,
        *,
        openmetrics: bool,
        sample_lines: Sequence[int],
        restore: RestoreRows | None = None,
    ) -> None:
        """Drop the rows, keeping what they are needed for.

        The rows hold a tuple and the value bytes of every line: the bulk of what a long-lived
        shape (the one `IncrementalParser` keeps per target) would otherwise hold per series.
        ``sample_lines`` are the 0-based body lines of the samples. Without ``restore`` the
        TYPE segments and metadata rows are derived now and kept; with it (a callable that
        rebuilds rows equivalent for those two: sample rows with a true first item, the others
        as the row regex matched them) nothing is kept and they are rebuilt when asked for,
        which is on a cache miss of a ``le``/``quantile`` series or a metadata read.
        """
        if self.rows is None:
            return
        if restore is None:
            probe = Exposition(openmetrics=openmetrics, samples=[], shape=self)
            probe._type_segments()
            probe._metadata_rows()
        self.restore = restore
        self.lines = array("I", [i + 1 for i in sample_lines])
        self.rows = None

    def current_rows(self) -> list[Row]:
        """The rows, rebuilt if `compact` dropped them and can restore them (else none)."""
        if self.rows is not None:
            return self.rows
        return [] if self.restore is None else self.restore()


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
        "_rows",
        "_samples",
        "_segments",
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
        meta_rows: list[MetaRow] | None = None,
        segments: list[tuple[int, bytes]] | None = None,
        exemplars: dict[int, Exemplar] | None = None,
        rows: list[Row] | None = None,
        lines: Sequence[int] | None = None,
        shape: Shape | None = None,
    ) -> None:
        self.openmetrics = openmetrics
        """True when the body was parsed as OpenMetrics."""
        self.exemplars: dict[int, Exemplar] = exemplars if exemplars is not None else {}
        """OpenMetrics exemplars by sample index (empty for the text format)."""
        self._shape = shape if shape is not None else Shape(rows, meta_rows, segments, lines)
        self._samples = samples
        self._keys: list[bytes] | None = None
        self._values: list[float] = []
        self._stamps: list[int | None] | None = None
        self._first: dict[bytes, int] | None = None
        self._segments: list[tuple[int, bytes]] | None = None
        self._rows: list[Row] | None = None
        """The rows of a shape compacted by `compact_shape`, for this exposition alone."""
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
            restore = shape.restore
            if restore is not None and restore.meta is not None:
                shape.meta = restore.meta  # built for another target of this structure
            else:
                shape.meta = build_metadata(self._metadata_rows(), openmetrics=self.openmetrics)
                if restore is not None:
                    restore.meta = shape.meta
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
                    (_intern(n), unescape(v, LABEL_ESCAPES))
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
                _, name, raw = scan_series(key, 0, openmetrics=self.openmetrics, start=0)
            except Malformed as exc:  # only keys that did not come from this body get here
                raise ValueError(f"not a series key of this exposition: {key!r}") from exc
            out = [("__name__", name.decode())]
            out += [(n.decode(), unescape(v.decode(), LABEL_ESCAPES)) for n, v in raw]
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
        """``(first sample index, type)`` for every TYPE line, computed once on demand.

        Kept by the shape, or by this exposition alone when the shape is restorable (the
        misses of one scrape share them; a long-lived shape does not hold them).
        """
        shape = self._shape
        if shape.segments is not None:
            return shape.segments
        if self._segments is None:
            base = shape.type_in_force
            segments: list[tuple[int, bytes]] = [] if base is None else [(0, base)]
            count = 0
            tname = 6 if self.openmetrics else 5
            for row in self._current_rows():
                if row[0]:
                    count += 1
                elif row[tname]:
                    segments.append((count, row[tname + 1]))
            if shape.restore is not None:
                self._segments = segments
                return segments
            shape.segments = segments
            return segments
        return self._segments

    def compact_shape(self, *, sample_lines: Sequence[int], restore: RestoreRows) -> None:
        """`Shape.compact` this exposition's shape, which later expositions share, while this
        one keeps the rows for the cache misses that follow its parse (no `restore` for them).
        """
        shape = self._shape
        self._rows = shape.rows
        shape.compact(openmetrics=self.openmetrics, sample_lines=sample_lines, restore=restore)

    def _current_rows(self) -> list[Row]:
        rows = self._rows
        return rows if rows is not None else self._shape.current_rows()

    def _place(self, *, line_base: int, type_in_force: bytes | None) -> None:
        """Make this the result of one segment of a longer body (`stream`), not a whole body.

        ``line_base`` lines preceded the segment: reported lines count from the body's start.
        ``type_in_force`` is the type of the last TYPE line before the segment, which decides
        the ``le``/``quantile`` canonicalisation of the segment's first samples.
        """
        shape = self._shape
        shape.line_base = line_base
        if type_in_force is not None:
            # As if the segment opened with that TYPE line, ahead of any TYPE line of its own;
            # derived segments start with it (a pass over the rows only if labels need it).
            if shape.segments is None:
                shape.type_in_force = type_in_force
            else:
                shape.segments = [(0, type_in_force), *shape.segments]

    def _metadata_rows(self) -> list[MetaRow]:
        """HELP/TYPE/UNIT rows in body order (derived from the fast-path rows on demand)."""
        shape = self._shape
        meta_rows = shape.meta_rows
        if meta_rows is None:
            rows: list[MetaRow] = []
            h = 4 if self.openmetrics else 3  # HELP name; TYPE name at h + 2, UNIT at h + 4
            unit = self.openmetrics
            for row in filterfalse(_get0, self._current_rows()):  # only non-sample lines
                # A row matched one alternative: at most one of HELP/TYPE/UNIT is set.
                if row[h]:
                    rows.append((b"HELP", row[h], row[h + 1]))
                elif row[h + 2]:
                    rows.append((b"TYPE", row[h + 2], row[h + 3]))
                elif unit and row[h + 4]:
                    rows.append((b"UNIT", row[h + 4], row[h + 5]))
            if shape.restore is None:  # a restorable shape keeps no copy
                shape.meta_rows = rows
            return rows
        return meta_rows

    def _line_of(self, index: int) -> int:
        """1-based body line of sample ``index``."""
        shape = self._shape
        if shape.lines is not None:
            return shape.lines[index] + shape.line_base
        count = -1
        for lineno, row in enumerate(shape.rows or (), shape.line_base + 1):
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

    def __init__(self, shape: Shape, openmetrics: bool) -> None:
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


def build_metadata(rows: list[MetaRow], *, openmetrics: bool) -> dict[str, Metadata]:
    """Fold validated HELP/TYPE/UNIT rows into `Metadata` objects."""
    acc: dict[bytes, list[str]] = {}
    help_escapes = LABEL_ESCAPES if openmetrics else TEXT_HELP_ESCAPES
    for kind, name, text in rows:
        slot = acc.get(name)
        if slot is None:
            slot = acc[name] = ["unknown", "", ""]
        if kind == b"TYPE":
            slot[0] = "unknown" if text == b"untyped" else text.decode()
        elif kind == b"HELP":
            slot[1] = unescape(text.decode(), help_escapes)
        else:
            slot[2] = text.decode()
    # Interned: targets of one job repeat the same families; each keeps its own dict only.
    return {
        _intern(name.decode()): Metadata(type=_intern(t), help=_intern(h), unit=u)
        for name, (t, h, u) in acc.items()
    }
