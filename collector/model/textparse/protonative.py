"""Native histograms of a protobuf body, when the job scrapes them (``scrape_native_histograms``).

Place in the pipeline: `collector.model.textparse.protobuf` calls `histogram` instead of
`collector.model.textparse.protoclassic.histogram` for each metric of a HISTOGRAM or
GAUGE_HISTOGRAM family when its parser was made with ``native=True``. A histogram Prometheus
treats as native (any positive or negative span, a zero threshold above 0 or a zero count
above 0: ``isNativeHistogram``) becomes one `~collector.model.histogram.NativeHistogram` in
``out.histograms`` under the family name without suffix, keyed like a float series; its
classic ``_count``/``_sum``/``_bucket`` series follow only with ``always_scrape_classic_histograms``
and at least one classic bucket. Any other histogram is classic, exactly as without native
ingestion.

What is read (client_model ``Histogram``, reference §3.1): ``sample_count`` or, when above 0,
``sample_count_float`` (and then ``zero_count_float``, ``positive_count``/``negative_count``:
a float histogram, else ``zero_count`` and the ``*_delta`` lists: an integer one),
``sample_sum``, ``schema``, ``zero_threshold``, the spans (deltas and counts packed or not).
The buckets are checked (span lengths add up to the bucket count, no negative integer count,
schema -4..8, 9..52 lowered to 8 as Prometheus 3 does) and compacted (``Compact(0)``: empty
buckets dropped), as Prometheus's protobuf parser hands them to the appender. Native exemplars
(field 16) are read past.

Prometheus counterpart: ``ProtobufParser.Histogram`` and ``isNativeHistogram`` in
``model/textparse/protobufparse.go``.
"""

from __future__ import annotations

import struct

from collector.model.histogram import SCHEMA_MAX, SCHEMA_MIN, NativeHistogram, reduce_resolution
from collector.model.textparse.protoclassic import histogram as classic_histogram
from collector.model.textparse.protowire import HISTOGRAM_FIELDS, Bad, Out, double, other, uvarint

__all__ = ["histogram"]

_SPAN_FIELDS = {1: (0,), 2: (0,)}
_SCHEMA_ACCEPTED_MAX = 52
"""Schemas 9..52 are lowered to 8 on ingestion (reference §4); others fail the scrape."""


def histogram(
    buf: bytes, subs: list[int], labels: bytes, prefixes: tuple[bytes, ...], out: Out
) -> None:
    """One histogram metric: native (and classic too when asked) or classic only."""
    f = _Fields()
    for i in range(0, len(subs), 2):
        f.read(buf, subs[i], subs[i + 1])
    if not (f.pos_spans or f.neg_spans or f.zero_threshold > 0 or f.zero_count > 0):
        classic_histogram(buf, subs, labels, prefixes, out)
        return
    h = f.native(out.gauge, subs[0] if subs else 0)
    if out.classic and f.classic_buckets:
        classic_histogram(buf, subs, labels, prefixes, out)  # may fail: before the append
    out.histograms.append((prefixes[3] + labels, h, None))


class _Fields:
    """The fields of one ``Histogram`` message (sub-messages merged, as protobuf does)."""

    __slots__ = (
        "classic_buckets",
        "count",
        "count_float",
        "neg_counts",
        "neg_deltas",
        "neg_spans",
        "pos_counts",
        "pos_deltas",
        "pos_spans",
        "schema",
        "total",
        "zero_count",
        "zero_count_float",
        "zero_threshold",
    )

    def __init__(self) -> None:
        self.count = 0
        self.count_float = 0.0
        self.total = 0.0
        self.schema = 0
        self.zero_threshold = 0.0
        self.zero_count = 0
        self.zero_count_float = 0.0
        self.classic_buckets = 0
        self.pos_spans: list[tuple[int, int]] = []
        self.neg_spans: list[tuple[int, int]] = []
        self.pos_deltas: list[int] = []
        self.neg_deltas: list[int] = []
        self.pos_counts: list[float] = []
        self.neg_counts: list[float] = []

    def read(self, buf: bytes, pos: int, end: int) -> None:
        """Merge the fields of ``buf[pos:end]``. client_model is proto2 without ``packed``,
        so exporters send deltas one field each (tag, varint): a run of one-byte deltas
        is read inline; anything else takes the general field loop."""
        while pos < end:
            byte = buf[pos]
            if (byte == 0x68 or byte == 0x50) and pos + 1 < end and buf[pos + 1] < 0x80:
                into = self.pos_deltas if byte == 0x68 else self.neg_deltas
                while pos + 1 < end and buf[pos] == byte and buf[pos + 1] < 0x80:
                    value = buf[pos + 1]
                    into.append((value >> 1) ^ -(value & 1))
                    pos += 2
                continue
            start = pos
            tag, pos = uvarint(buf, pos, end)
            number, wire = tag >> 3, tag & 7
            allowed = HISTOGRAM_FIELDS.get(number)
            if allowed is None or wire not in allowed or number in (3, 15, 16):
                if number == 3 and wire == 2:
                    self.classic_buckets += 1
                pos = other(buf, start, end, HISTOGRAM_FIELDS, "Histogram")
                continue
            if wire == 0:
                value, pos = uvarint(buf, pos, end)
                if number == 1:
                    self.count = value
                elif number == 5:
                    self.schema = _zigzag32(value)
                elif number == 7:
                    self.zero_count = value
                elif number == 10:
                    self.neg_deltas.append(_zigzag64(value))
                elif number == 13:
                    self.pos_deltas.append(_zigzag64(value))
            elif wire == 1:
                if pos + 8 > end:
                    raise Bad("truncated double", start)
                value_f = double(buf, pos)[0]
                pos += 8
                if number == 2:
                    self.total = value_f
                elif number == 4:
                    self.count_float = value_f
                elif number == 6:
                    self.zero_threshold = value_f
                elif number == 8:
                    self.zero_count_float = value_f
                elif number == 11:
                    self.neg_counts.append(value_f)
                elif number == 14:
                    self.pos_counts.append(value_f)
            else:  # length-delimited: a span, or packed deltas/counts
                size, pos = uvarint(buf, pos, end)
                stop = pos + size
                if stop > end:
                    raise Bad("truncated histogram field", start)
                if number in (9, 12):
                    (self.neg_spans if number == 9 else self.pos_spans).append(
                        _span(buf, pos, stop)
                    )
                elif number in (10, 13):
                    into = self.neg_deltas if number == 10 else self.pos_deltas
                    chunk = buf[pos:stop]
                    if chunk and max(chunk) < 0x80:  # every delta a one-byte varint
                        into += [(b >> 1) ^ -(b & 1) for b in chunk]
                        pos = stop
                    while pos < stop:
                        value, pos = uvarint(buf, pos, stop)
                        into.append(_zigzag64(value))
                elif number in (11, 14):
                    if size % 8:
                        raise Bad("packed doubles of a length not a multiple of 8", start)
                    into_f = self.neg_counts if number == 11 else self.pos_counts
                    into_f.extend(struct.unpack_from(f"<{size // 8}d", buf, pos))
                pos = stop

    def native(self, gauge: bool, offset: int) -> NativeHistogram:
        """The checked, compacted `NativeHistogram` (``offset``: where errors point)."""
        schema = self.schema
        if not SCHEMA_MIN <= schema <= _SCHEMA_ACCEPTED_MAX:
            raise Bad(
                f"invalid native histogram schema {schema} (must be between "
                f"{SCHEMA_MIN} and {SCHEMA_MAX})",
                offset,
            )
        is_float = self.count_float > 0 or self.zero_count_float > 0
        if is_float:
            pos_index = _indexes(self.pos_spans, len(self.pos_counts), offset, "positive")
            neg_index = _indexes(self.neg_spans, len(self.neg_counts), offset, "negative")
            for side, counts in (("positive", self.pos_counts), ("negative", self.neg_counts)):
                for c in counts:
                    if c < 0:
                        raise Bad(
                            f"native histogram has a {side} bucket with a count of {c}", offset
                        )
            h = NativeHistogram(
                schema=schema,
                count=self.count_float,
                total=self.total,
                zero_threshold=self.zero_threshold,
                zero_count=self.zero_count_float,
                pos_index=pos_index,
                pos_count=list(self.pos_counts),
                neg_index=neg_index,
                neg_count=list(self.neg_counts),
                is_float=True,
                gauge=gauge,
            )
        else:
            pos_index = _indexes(self.pos_spans, len(self.pos_deltas), offset, "positive")
            neg_index = _indexes(self.neg_spans, len(self.neg_deltas), offset, "negative")
            h = NativeHistogram(
                schema=schema,
                count=self.count,
                total=self.total,
                zero_threshold=self.zero_threshold,
                zero_count=self.zero_count,
                pos_index=pos_index,
                pos_count=_absolute(self.pos_deltas, offset, "positive"),
                neg_index=neg_index,
                neg_count=_absolute(self.neg_deltas, offset, "negative"),
                gauge=gauge,
            )
        h.compact()
        if schema > SCHEMA_MAX:
            reduce_resolution(h, SCHEMA_MAX)
        return h


def _span(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    offset = length = 0
    while pos < end:
        tag = buf[pos]
        if tag == 0x08:
            value, pos = uvarint(buf, pos + 1, end)
            offset = _zigzag32(value)
        elif tag == 0x10:
            value, pos = uvarint(buf, pos + 1, end)
            length = value & 0xFFFFFFFF
        else:
            pos = other(buf, pos, end, _SPAN_FIELDS, "BucketSpan")
    return offset, length


def _indexes(spans: list[tuple[int, int]], buckets: int, at: int, side: str) -> list[int]:
    """Absolute bucket indexes of the spans; their lengths must add up to ``buckets``."""
    out: list[int] = []
    index = 0
    for offset, length in spans:
        index += offset
        out.extend(range(index, index + length))
        index += length
    if len(out) != buckets:
        raise Bad(
            f"native histogram {side} spans need {len(out)} buckets, have {buckets}",
            at,
        )
    return out


def _absolute(deltas: list[int], at: int, side: str) -> list[float]:
    out: list[float] = []
    count = 0
    for delta in deltas:
        count += delta
        if count < 0:
            raise Bad(f"native histogram has a {side} bucket with a count of {count}", at)
        out.append(count)
    return out


def _zigzag32(value: int) -> int:
    value &= 0xFFFFFFFF
    return (value >> 1) ^ -(value & 1)


def _zigzag64(value: int) -> int:
    return (value >> 1) ^ -(value & 1)
