"""`IncrementalParser`: `parse` with a steady-state fast path, one per scrape target.

Place in the pipeline: the scrape loop's default parser (``ScrapeLoop._parse``). Steady state
is the same lines with new values, so after a body the regex fast path parsed, only the value
tails of the next body are parsed when nothing else changed; anything else goes through
`parse` (`fast`), and the result is always exactly what `parse` would return.

The steady-state pass exists twice. The C one (``steady_values`` of ``collector/_native.c``,
taken from `collector.native`) walks the body once, comparing each line with the remembered
one in place, and builds only the value floats; it refuses (returns None) anything but
``<key> <value>`` lines with a plain Go float, in particular explicit timestamps. The pure-Python
one below is the reference and the fallback: it runs when the extension is not built, is
disabled (``COLLECTOR_NATIVE=0``) or refused the body, and decides alone what the C pass
refused. Both give identical results (``tests/model/test_native_parity.py``).

Prometheus counterpart: none (Prometheus reparses every body; its ``scrapeCache`` saves the
label work, which the scrape cache does here too).
"""

from __future__ import annotations

import math
import operator
import re
import weakref
from collections.abc import Callable
from operator import itemgetter

from collector.model.textparse.exposition import Columns, Exposition, Metadata, Row, Shape
from collector.model.textparse.fast import parse, rows_of_lines
from collector.model.textparse.syntax import DECIMAL, FLOAT, GO_FLOAT, Malformed, om_ts
from collector.model.value import NORMAL_NAN
from collector.native import steady_values as _c_steady_values

__all__ = ["IncrementalParser"]

_isfinite = math.isfinite

_TAIL_CHARS = b"0123456789.+-eEiInNfFtTyYaA \n"
"""Every byte a `` value`` tail (and its separators) may contain on the steady-state path."""
_TAIL_TEXT = re.compile(rb" (" + FLOAT + rb")(?: ([0-9]{1,18}))?")
_TAIL_OM = re.compile(rb" (" + FLOAT + rb")(?: (" + DECIMAL + rb"))?")
_is = operator.is_


_INDEX: list[int] = []
"""``_INDEX[i] == i``: one int object per line index, shared by every parser's pickers.

Without it each target's pickers hold their own objects for every index above 256 (32 bytes
per line of every target); this list costs 40 bytes per line of the longest body remembered.
"""


class _Structure:
    """What every parser whose body has this structure keeps once (`_shared_structure`): the
    non-sample lines, the sample mask, the two pickers built from it and the rows' restore
    (which keeps the metadata, built once for them all)."""

    __slots__ = ("__weakref__", "lines", "mask", "pick_fixed", "pick_samples", "restore")

    def __init__(
        self,
        lines: tuple[bytes, ...],
        mask: bytes,
        pick_fixed: Callable[[list[bytes]], tuple[bytes, ...]],
        pick_samples: Callable[[list[bytes]], tuple[bytes, ...]],
        *,
        openmetrics: bool,
    ) -> None:
        self.lines = lines
        self.mask = mask
        self.pick_fixed = pick_fixed
        self.pick_samples = pick_samples
        self.restore = _RowsFromLines(lines, mask, openmetrics=openmetrics)


_STRUCTURES: weakref.WeakValueDictionary[tuple[tuple[bytes, ...], bytes, bool], _Structure] = (
    weakref.WeakValueDictionary()
)
"""(Non-sample lines, sample mask, OpenMetrics) -> the one kept structure; an entry goes with
the last parser holding it."""


def _shared_structure(
    lines: list[bytes],
    rows: list[Row],
    sample_idx: list[int],
    fixed_idx: list[int],
    *,
    openmetrics: bool,
) -> _Structure:
    """The kept structure of a body split into ``lines`` and parsed into ``rows`` (its sample
    rows and the other lines at ``sample_idx`` and ``fixed_idx``), shared across targets.

    Targets of one job run the same exporter version, so their HELP/TYPE lines are the same
    bytes and their samples sit on the same lines: the lines are kept once instead of once per
    target (about 100 bytes a series for node_exporter), and so are the mask, the pickers
    (a tuple of line indices each: 17 bytes a series for node_exporter) and the metadata
    (a dict of `Metadata` per target: 34 bytes a series).
    Looked up only when a parser remembers a new structure.
    """
    pick_fixed = _picker(fixed_idx)
    fixed = pick_fixed(lines)
    # The mask and the fixed lines fix the line count and both index lists.
    mask = bytes(1 if row[0] else 0 for row in rows)
    key = (fixed, mask, openmetrics)
    shared = _STRUCTURES.get(key)
    if shared is None:
        shared = _Structure(fixed, mask, pick_fixed, _picker(sample_idx), openmetrics=openmetrics)
        _STRUCTURES[key] = shared
    return shared


def _picker(idx: list[int]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """A C-level ``lambda lines: tuple(lines[i] for i in idx)`` (``idx`` ascending)."""
    if idx and idx[-1] >= len(_INDEX):
        _INDEX.extend(range(len(_INDEX), idx[-1] + 1))
    idx = list(map(_INDEX.__getitem__, idx))
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
    lines with timestamps. With the C extension (``native``, on by default when
    `collector.native` has it), bodies without timestamps take one C pass over the body
    instead, and the steps above run only for what it refused. The result shares the previous
    exposition's structure (metadata, TYPE segments, line numbers), and its keys are the very
    same bytes objects, so the scrape cache's lookups hit on identity with cached hashes.

    Exactly as strict as `parse`: unchanged lines were validated in the same positional context
    (same neighbours, same TYPE in force, same ``# EOF``), a changed tail must be a Go float
    (no ``_``, hex, signed NaN, overflow) with an optional timestamp of the fast-path shape, and
    anything else (line count, any changed non-sample line, a different key, whitespace
    variants, exemplars) makes the whole body go through `parse`.
    """

    __slots__ = (
        "_fixed",
        "_has_stamps",
        "_keys",
        "_mask",
        "_nlines",
        "_om",
        "_pick_fixed",
        "_pick_samples",
        "_shape",
        "_shared",
        "_steady",
    )

    def __init__(self, *, native: bool = True) -> None:
        """``native=False`` keeps this parser on the pure-Python path (the reference, for
        tests and benchmarks); ``True`` uses the C pass when `collector.native` has it."""
        self._shape: Shape | None = None
        self._om = False
        self._nlines = 0
        self._keys: list[bytes] = []
        self._fixed: tuple[bytes, ...] = ()
        """The non-sample lines of the remembered body: ``_shared.lines``, held by the entry."""
        self._mask = b""
        """One byte per row of the remembered body, 1 for a sample (lines past it are fixed)."""
        self._shared: _Structure | None = None
        self._pick_fixed = self._pick_samples = _picker([])
        self._steady = _c_steady_values if native else None
        self._has_stamps = False
        """The last steady body had explicit timestamps, which the C pass always refuses."""

    def parse(self, body: bytes, *, openmetrics: bool) -> Exposition:
        """Like `parse` (same result, same errors); fast when only values changed."""
        shape = self._shape
        if shape is not None and openmetrics == self._om:
            steady = self._steady
            if steady is not None and not self._has_stamps:
                values = steady(body, self._nlines, self._mask, self._fixed, self._keys)
                if values is not None:
                    return Exposition(
                        openmetrics=openmetrics, columns=(self._keys, values, None), shape=shape
                    )
            lines = body.split(b"\n")
            if len(lines) == self._nlines and self._pick_fixed(lines) == self._fixed:
                columns = self._columns(self._pick_samples(lines))
                if columns is not None:
                    # A target that stamps its samples stamps them every time: skip the C
                    # pass (which would walk to the first stamp and refuse) until it stops.
                    self._has_stamps = columns[2] is not None
                    return Exposition(openmetrics=openmetrics, columns=columns, shape=shape)
        exp = parse(body, openmetrics=openmetrics)
        self._remember(body, exp)
        return exp

    def reset(self) -> None:
        """Forget the remembered structure (the next body takes the full path)."""
        self._shape = None
        self._shared = None
        self._fixed = ()
        self._mask = b""
        self._has_stamps = False

    def _remember(self, body: bytes, exp: Exposition) -> None:
        """Record the structure of a body the regex fast path parsed."""
        self.reset()
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
        shared = self._shared = _shared_structure(
            lines, rows, sample_idx, fixed_idx, openmetrics=exp.openmetrics
        )
        self._om = exp.openmetrics
        self._nlines = len(lines)
        self._keys = keys
        self._pick_fixed = shared.pick_fixed
        self._pick_samples = shared.pick_samples
        self._fixed = shared.lines
        # One mask for both: the C pass walks it, and the restore rebuilds rows from it.
        self._mask = shared.mask
        exp.compact_shape(sample_lines=sample_idx, restore=shared.restore)
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
                    stamps.append(om_ts(ts, "timestamp") if om else int(ts))
        except Malformed:
            return None
        return self._keys, values, stamps


_SAMPLE_ROW: Row = (b"sample",)
"""Stands for every sample row of restored rows (only its truth is read)."""


class _RowsFromLines:
    """`Shape.restore` of a remembered body: its rows rebuilt from its non-sample lines.

    Holds the non-sample lines (the parser's ``_fixed`` tuple, so no copy while the parser
    keeps this structure; past the rows it holds the trailing ``""``/``# EOF`` positions) and
    one byte per row (1: a sample), never the parser itself, whose state moves on with the next
    structure while older expositions may still ask.
    """

    __slots__ = ("_fixed", "_mask", "_om", "meta")

    def __init__(self, fixed: tuple[bytes, ...], mask: bytes, *, openmetrics: bool) -> None:
        self._fixed = fixed
        self._mask = mask
        self._om = openmetrics
        self.meta: dict[str, Metadata] | None = None
        """The metadata of these rows, built once for every target of this structure."""

    def __call__(self) -> list[Row]:
        mask = self._mask
        fixed = self._fixed[: len(mask) - mask.count(1)]
        rows = iter(rows_of_lines(fixed, openmetrics=self._om))
        return [_SAMPLE_ROW if is_sample else next(rows) for is_sample in mask]


def _nonfinite(values: list[float], tails: list[bytes]) -> bool:
    """Check and normalise the non-finite values of ``' <value>'`` tails (False: refuse).

    ``float`` also takes signed NaN (Go does not) and turns overflowing decimals into inf
    (Go: out of range); NaN becomes NORMAL_NAN.
    """
    for i, value in enumerate(values):
        if not _isfinite(value):
            token = tails[i][1:]
            if GO_FLOAT.fullmatch(token) is None:
                return False
            if value != value:
                values[i] = NORMAL_NAN
            elif token[-1:] not in b"fFyY":
                return False
    return True
