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
    StreamParser(openmetrics=...).feed(chunk) # a body too large to hold at once: parsed in
                                              # segments of whole lines (see `stream`)

The modules, in dependency order: `syntax` (tokens, escapes, Go number rules, scanners),
`exposition` (the result types), `slow` (the exact token-by-token path), `fast` (`parse`: the
whole-body regex fast path, falling back to `slow`), `incremental` (`IncrementalParser`: only
the value tails when nothing else changed) and `stream` (`StreamParser`). Each module's
docstring says how its path is fast or exact. Labels are parsed lazily by `labels` (cache-miss
path only); so are the `metadata` objects and the TYPE segments used for ``le``/``quantile``
canonicalisation. This module only re-exports the public names, so that
``from collector.model.textparse import parse`` works everywhere.

Protobuf bodies (``application/vnd.google.protobuf``, delimited ``MetricFamily``) have their
own decoder returning the same `Exposition` contract: `protobuf` (``protobuf.parse``, and
``protobuf.ProtobufParser`` per target), over `protowire`, `protoclassic` and
`protoexposition` (its keys hold raw label bytes, decoded by ``labels`` on a cache miss).

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

from collector.model.textparse.exposition import (
    Columns,
    Exemplar,
    Exposition,
    ExpositionError,
    Metadata,
    Sample,
)
from collector.model.textparse.fast import parse
from collector.model.textparse.incremental import IncrementalParser
from collector.model.textparse.stream import StreamParser
from collector.model.textparse.syntax import canonical_float

__all__ = [
    "Columns",
    "Exemplar",
    "Exposition",
    "ExpositionError",
    "IncrementalParser",
    "Metadata",
    "Sample",
    "StreamParser",
    "canonical_float",
    "parse",
]
