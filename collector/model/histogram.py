"""Native (exponential) histograms: the scraped value, its resolution rules, its wire bytes.

Place in the pipeline: the protobuf decoder (`collector.model.textparse.protonative`) builds
one `NativeHistogram` per native histogram of a body; the scrape append path
(`collector.scrape.histograms`) lowers its resolution when the job asks
(``native_histogram_min_bucket_factor``: `reduce_resolution` to `pick_schema`; then
``native_histogram_bucket_limit``: `fit_bucket_limit`) and turns it into the bytes of a
remote-write ``Histogram`` message with `encode` (once, at append time); the remote-write
encoder only wraps those bytes with the series' labels and the timestamp. Histograms are rare
next to float samples, so an object per histogram is fine here; nothing of this runs per float.

Buckets are kept as absolute counts with their absolute indexes (``pos_index``/``pos_count``,
``neg_index``/``neg_count``), in ascending index order; `encode` writes spans and, for
integer histograms, deltas (reference §4: first delta absolute, each next one relative to the
previous bucket across spans).

Wire format (reference §2): ``prometheus.Histogram`` of remote write 1.0, whose fields 1-16
are also the 2.0 ``Histogram``'s. Written as Go's gogo-protobuf encoder writes what
Prometheus's ``HistogramToHistogramProto``/``FloatHistogramToHistogramProto`` build: the
``count`` and ``zero_count`` oneofs are always present (a zero ``count_int`` is on the wire),
every other scalar only when non-zero, deltas and counts packed, fields in number order. The
timestamp (field 15) is added by the remote-write encoder.

Prometheus counterpart: ``model/histogram`` (``Compact``, ``ReduceResolution``, ``targetIdx``),
``pickSchema`` and the ``bucketLimitAppender``/``maxSchemaAppender`` of ``scrape/``, and
``HistogramToHistogramProto`` in ``storage/remote/codec.go``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

__all__ = [
    "BUCKET_LIMIT_ERROR",
    "SCHEMA_MAX",
    "SCHEMA_MIN",
    "NativeHistogram",
    "encode",
    "fit_bucket_limit",
    "pick_schema",
    "reduce_resolution",
]

SCHEMA_MIN = -4
SCHEMA_MAX = 8
BUCKET_LIMIT_ERROR = "histogram bucket limit exceeded"
"""Prometheus's ``errBucketLimit`` text (the scrape fails with it)."""

_pack_d = struct.Struct("<d").pack
_MASK64 = (1 << 64) - 1
_RESET_GAUGE = 3
"""``ResetHint.GAUGE``: a gauge histogram (Prometheus sets ``GaugeType``)."""


class NativeHistogram:
    """One scraped native histogram (integer or float counts)."""

    __slots__ = (
        "count",
        "gauge",
        "is_float",
        "neg_count",
        "neg_index",
        "pos_count",
        "pos_index",
        "schema",
        "sum",
        "zero_count",
        "zero_threshold",
    )

    def __init__(
        self,
        *,
        schema: int,
        count: float,
        total: float,
        zero_threshold: float = 0.0,
        zero_count: float = 0,
        pos_index: list[int] | None = None,
        pos_count: list[float] | None = None,
        neg_index: list[int] | None = None,
        neg_count: list[float] | None = None,
        is_float: bool = False,
        gauge: bool = False,
    ) -> None:
        self.schema = schema
        self.count = count
        self.sum = total
        self.zero_threshold = zero_threshold
        self.zero_count = zero_count
        self.pos_index: list[int] = pos_index or []
        self.pos_count: list[float] = pos_count or []
        self.neg_index: list[int] = neg_index or []
        self.neg_count: list[float] = neg_count or []
        self.is_float = is_float
        self.gauge = gauge

    @property
    def buckets(self) -> int:
        """Positive plus negative buckets (what ``native_histogram_bucket_limit`` counts)."""
        return len(self.pos_count) + len(self.neg_count)

    def compact(self) -> None:
        """Drop every empty bucket (Prometheus ``Compact(0)``, done by its protobuf parser)."""
        self.pos_index, self.pos_count = _non_empty(self.pos_index, self.pos_count)
        self.neg_index, self.neg_count = _non_empty(self.neg_index, self.neg_count)

    def invalid(self) -> str:
        """Why Prometheus's ``Histogram.Validate`` refuses ``h`` ("" when valid): an integer
        histogram's count must equal its buckets' and zero bucket's observations (be at least
        that when ``sum`` is NaN); a float histogram's is not checked (rounding). Spans and
        negative counts are checked where the buckets are decoded."""
        if self.is_float:
            return ""
        observed = int(sum(self.pos_count) + sum(self.neg_count) + self.zero_count)
        count = int(self.count)
        if self.sum != self.sum:
            if observed > count:
                return (
                    f"{observed} observations found in buckets, but the Count field is {count}: "
                    "histogram's observation count should be at least the number of "
                    "observations found in the buckets"
                )
        elif observed != count:
            return (
                f"{observed} observations found in buckets, but the Count field is {count}: "
                "histogram's observation count should equal the number of observations found "
                "in the buckets (in absence of NaN)"
            )
        return ""

    def __repr__(self) -> str:
        return (
            f"NativeHistogram(schema={self.schema}, count={self.count}, sum={self.sum}, "
            f"zero={self.zero_threshold}:{self.zero_count}, "
            f"pos={list(zip(self.pos_index, self.pos_count, strict=True))}, "
            f"neg={list(zip(self.neg_index, self.neg_count, strict=True))}, "
            f"float={self.is_float}, gauge={self.gauge})"
        )


def _non_empty(index: list[int], count: list[float]) -> tuple[list[int], list[float]]:
    if all(count):
        return index, count
    kept = [(i, c) for i, c in zip(index, count, strict=True) if c]
    return [i for i, _ in kept], [c for _, c in kept]


def reduce_resolution(h: NativeHistogram, schema: int) -> None:
    """Lower ``h`` to ``schema`` (not above its own): each bucket goes to index
    ``((i - 1) >> (old - new)) + 1`` and buckets landing on one index are added up."""
    shift = h.schema - schema
    if shift <= 0:
        return
    h.pos_index, h.pos_count = _merge(h.pos_index, h.pos_count, shift)
    h.neg_index, h.neg_count = _merge(h.neg_index, h.neg_count, shift)
    h.schema = schema


def _merge(index: list[int], count: list[float], shift: int) -> tuple[list[int], list[float]]:
    out_index: list[int] = []
    out_count: list[float] = []
    for i, c in zip(index, count, strict=True):
        target = ((i - 1) >> shift) + 1
        if out_index and out_index[-1] == target:
            out_count[-1] += c
        else:
            out_index.append(target)
            out_count.append(c)
    return out_index, out_count


def pick_schema(factor: float) -> int:
    """The highest schema whose bucket growth is at least ``factor`` (``pickSchema``)."""
    if factor <= 1:
        factor = 1.00271
    floor = math.floor(-math.log2(math.log2(factor)))
    return int(min(max(floor, SCHEMA_MIN), SCHEMA_MAX))


def fit_bucket_limit(h: NativeHistogram, limit: int) -> bool:
    """Lower the schema one step at a time until ``h`` has at most ``limit`` buckets; False
    when even schema -4 has too many (the scrape then fails with `BUCKET_LIMIT_ERROR`)."""
    while h.buckets > limit:
        if h.schema <= SCHEMA_MIN:
            return False
        reduce_resolution(h, h.schema - 1)
    return True


def _varint(n: int) -> bytes:
    n &= _MASK64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _spans(tag: int, index: Sequence[int]) -> bytes:
    """``BucketSpan`` fields (offset sint32, length uint32) for ascending bucket indexes."""
    out: list[bytes] = []
    previous = 0
    start = 0
    n = len(index)
    while start < n:
        stop = start + 1
        while stop < n and index[stop] == index[stop - 1] + 1:
            stop += 1
        offset = index[start] if not out else index[start] - previous - 1
        body = (b"\x08" + _zigzag(offset) if offset else b"") + b"\x10" + _varint(stop - start)
        out.append(_field(tag, body))
        previous = index[stop - 1]
        start = stop
    return b"".join(out)


def _deltas(tag: int, count: Sequence[float]) -> bytes:
    if not count:
        return b""
    zigzags: list[int] = []
    previous = 0
    for c in count:
        delta = int(c) - previous
        previous = int(c)
        zigzags.append((delta << 1) ^ (delta >> 63))
    if max(zigzags) < 0x80:  # every delta a one-byte varint
        return _field(tag, bytes(zigzags))
    return _field(tag, b"".join(map(_varint, zigzags)))


def _doubles(tag: int, count: Sequence[float]) -> bytes:
    if not count:
        return b""
    return _field(tag, struct.pack(f"<{len(count)}d", *count))


def encode(h: NativeHistogram) -> bytes:
    """Fields 1-14 of a remote-write ``Histogram`` (the timestamp, 15, is the caller's)."""
    parts: list[bytes] = []
    if h.is_float:
        parts.append(b"\x11" + _pack_d(float(h.count)))
    else:
        parts.append(b"\x08" + _varint(int(h.count)))
    if h.sum != 0:  # Go: NaN is != 0 (kept), -0.0 is not (omitted)
        parts.append(b"\x19" + _pack_d(h.sum))
    if h.schema:
        parts.append(b"\x20" + _zigzag(h.schema))
    if h.zero_threshold != 0:
        parts.append(b"\x29" + _pack_d(h.zero_threshold))
    if h.is_float:
        parts.append(b"\x39" + _pack_d(float(h.zero_count)))
    else:
        parts.append(b"\x30" + _varint(int(h.zero_count)))
    parts.append(_spans(0x42, h.neg_index))
    if h.is_float:
        parts.append(_doubles(0x52, h.neg_count))
    else:
        parts.append(_deltas(0x4A, h.neg_count))
    parts.append(_spans(0x5A, h.pos_index))
    if h.is_float:
        parts.append(_doubles(0x6A, h.pos_count))
    else:
        parts.append(_deltas(0x62, h.pos_count))
    if h.gauge:
        parts.append(b"\x70" + _varint(_RESET_GAUGE))
    return b"".join(parts)
