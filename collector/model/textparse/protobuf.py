"""Protobuf exposition: the delimited ``io.prometheus.client.MetricFamily`` stream, over bytes.

Place in the pipeline: the scrape loop hands a body whose Content-Type is
``application/vnd.google.protobuf`` (or whose job falls back to ``PrometheusProto``) to `parse`,
and appends the returned `ProtoExposition` through the scrape cache exactly as it appends a
text body's `Exposition` (keys, values, timestamps; labels on a cache miss only). Pure: bytes
in, columns out.

The wire format (client_model ``io/prometheus/client/metrics.proto``, proto2): the body is a
sequence of ``<uvarint length><MetricFamily>``; field numbers and wire types are facts of that
schema and are decoded here by hand (tags compared as whole bytes, doubles with one
``struct.unpack_from``), because a generated or reflective decoder would build one object per
metric. Per metric the decoder reads the label *bytes* (sliced, not decoded: see
`collector.model.textparse.protoexposition`), the sub-message of the family's type and
``timestamp_ms``; everything else is skipped by wire type.

What it emits, as Prometheus's ``ProtobufParser`` does when native histograms are not scraped
(``scrape_native_histograms: false``, i.e. ``IgnoreNativeHistograms``):

* counter, gauge, untyped: one sample with the family name; the value of the sub-message of
  the family's type (an absent one reads as 0, Go's ``GetCounter().GetValue()``);
* summary: ``<name>_count``, ``<name>_sum``, then ``<name>{quantile="q"}`` per quantile;
* histogram and gauge histogram: ``<name>_count``, ``<name>_sum``, then
  ``<name>_bucket{le="b"}`` per classic bucket up to and including the first ``+Inf`` one,
  and ``le="+Inf"`` with the count when no bucket was ``+Inf``. ``sample_count_float`` and
  ``cumulative_count_float`` win when non-zero. Native fields (schema, zero bucket, spans,
  deltas, counts, native exemplars) are skipped, so a histogram with only native buckets gives
  ``_count``, ``_sum`` and ``_bucket{le="+Inf"}``, as in Prometheus 3 without native ingestion;
* ``le`` and ``quantile`` are written by ``formatOpenMetricsFloat`` (shortest Go ``%g``, ``.0``
  added when there is no ``.``/``e``: ``1.0``, ``0.25``, ``1e+06``, ``+Inf``);
* ``timestamp_ms`` 0 means none (Prometheus's own convention for this field);
* values are the wire doubles, NaN payloads included (Prometheus does not re-read them);
* exemplars (counter, classic buckets) land in ``exemplars`` by sample index, like the
  OpenMetrics ones (not forwarded yet); exemplar timestamps are ms, None when absent;
* created timestamps are read past: without ``created_timestamp_zero_ingestion`` Prometheus
  ignores them, and no ``_created`` series is made from protobuf;
* metadata: family name -> type, help, unit for every family with at least one metric.

Checks, each a `ProtobufError` (an `ExpositionError`) naming the byte offset and the family,
with the samples of the metrics before the bad one as ``partial`` (Prometheus 3 decodes metric
by metric): truncated or overlong varints and fields, a known field with the wrong wire type,
group wire types; and Prometheus 3's family checks: a name that is empty or not UTF-8, help
that is not UTF-8, an unknown type, a unit that is not a suffix of the name. Families without
metrics are skipped before any check, as Prometheus skips them.

Prometheus counterpart: ``model/textparse/protobufparse.go`` with the streaming decoder of
``prompb/io/prometheus/client/decoder.go``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

from collector.model.textparse.exposition import Exemplar, Metadata
from collector.model.textparse.protoexposition import (
    KEY_SEP,
    ProtobufError,
    ProtoExposition,
    magic_label,
    metadata_of,
)
from collector.model.textparse.syntax import _format_om_float

__all__ = ["parse"]

_double = struct.Struct("<d").unpack_from

# MetricType -> the tag byte of the Metric field holding its value (field 3 counter, 2 gauge,
# 4 summary, 5 untyped, 7 histogram; all length-delimited).
_VALUE_TAG = (0x1A, 0x12, 0x22, 0x2A, 0x3A, 0x3A)
_SUBMESSAGE_TAGS = frozenset((0x12, 0x1A, 0x22, 0x2A, 0x3A))
_SUMMARY, _HISTOGRAM = 2, 4

_Known = Mapping[int, tuple[int, ...]]

# Field number -> the wire types it may come with, for fields decoded or skipped by number
# (a known field with another wire type is refused, as Go's decoder refuses it).
_FAMILY_FIELDS: _Known = {1: (2,), 2: (2,), 3: (0,), 4: (2,), 5: (2,)}
_METRIC_FIELDS: _Known = {1: (2,), 2: (2,), 3: (2,), 4: (2,), 5: (2,), 6: (0,), 7: (2,)}
_VALUE_FIELDS: _Known = {
    1: (1,),
    2: (2,),
    3: (2,),
}  # Gauge/Untyped value; Counter exemplar, created
_SUMMARY_FIELDS: _Known = {1: (0,), 2: (1,), 3: (2,), 4: (2,)}
_QUANTILE_FIELDS: _Known = {1: (1,), 2: (1,)}
_HISTOGRAM_FIELDS: _Known = {
    1: (0,), 2: (1,), 3: (2,), 4: (1,), 5: (0,), 6: (1,), 7: (0,), 8: (1,),
    9: (2,), 10: (0, 2), 11: (1, 2), 12: (2,), 13: (0, 2), 14: (1, 2), 15: (2,), 16: (2,),
}  # fmt: skip
_BUCKET_FIELDS: _Known = {1: (0,), 2: (1,), 3: (2,), 4: (1,)}
_EXEMPLAR_FIELDS: _Known = {1: (2,), 2: (1,), 3: (2,)}
_TIMESTAMP_FIELDS: _Known = {1: (0,), 2: (0,)}
_PAIR_FIELDS: _Known = {1: (2,), 2: (2,)}

_LE = b"le"
_QUANTILE = b"quantile"
_INF_LE = magic_label(_LE, "+Inf")
_SUFFIX_MAX = 1 << 14
_le_suffixes: dict[bytes, bytes] = {}
_quantile_suffixes: dict[bytes, bytes] = {}


class _Bad(Exception):
    """Malformed input at ``offset`` (converted to `ProtobufError` by `parse`)."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what)
        self.what = what
        self.offset = offset


def parse(body: bytes) -> ProtoExposition:
    """Decode a delimited ``MetricFamily`` body; raises `ProtobufError` with ``partial``."""
    out = _Out()
    pos = 0
    end = len(body)
    try:
        while pos < end:
            size, start = _uvarint(body, pos, end)
            stop = start + size
            if stop > end:
                raise _Bad(f"message length {size} runs past the end of the body", pos)
            _family(body, start, stop, out)
            pos = stop
    except _Bad as exc:
        out.rollback()
        raise ProtobufError(
            exc.what, offset=exc.offset, family=out.family, partial=out.result()
        ) from None
    return out.result()


class _Out:
    """The columns being built, and where the current metric started (for rollback)."""

    __slots__ = ("exemplars", "family", "keys", "mark", "metadata", "stamps", "values")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[float] = []
        self.stamps: list[int | None] | None = None
        self.exemplars: dict[int, Exemplar] = {}
        self.metadata: dict[str, Metadata] = {}
        self.mark = 0
        """Samples before the metric being decoded."""
        self.family = ""
        """Name of the family being decoded (set once its name was read)."""

    def rollback(self) -> None:
        """Drop the samples of the metric that failed."""
        mark = self.mark
        del self.keys[mark:]
        del self.values[mark:]
        if self.stamps is not None:
            del self.stamps[mark:]
        for index in [i for i in self.exemplars if i >= mark]:
            del self.exemplars[index]

    def result(self) -> ProtoExposition:
        stamps = self.stamps
        if stamps is not None and len(stamps) < len(self.keys):
            stamps.extend([None] * (len(self.keys) - len(stamps)))
        return ProtoExposition(
            columns=(self.keys, self.values, stamps),
            exemplars=self.exemplars,
            metadata=self.metadata,
        )


def _family(buf: bytes, pos: int, end: int, out: _Out) -> str:
    """Decode one ``MetricFamily`` in ``buf[pos:end]`` into ``out``; returns its name."""
    begin = pos
    out.family = ""
    out.mark = len(out.keys)
    name = help_text = unit = b""
    mtype = 0
    metrics: list[int] = []  # start, stop, start, stop, ...
    while pos < end:
        tag = buf[pos]
        if tag == 0x22:  # metric
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated metric", pos)
            metrics += (start, stop)
            pos = stop
        elif tag == 0x0A or tag == 0x12 or tag == 0x2A:  # name, help, unit
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated string", pos)
            if tag == 0x0A:
                name = buf[start:stop]
            elif tag == 0x12:
                help_text = buf[start:stop]
            else:
                unit = buf[start:stop]
            pos = stop
        elif tag == 0x18:  # type
            mtype, pos = _uvarint(buf, pos + 1, end)
            if mtype >= 1 << 63:
                mtype -= 1 << 64
        else:
            pos = _other(buf, pos, end, _FAMILY_FIELDS, "MetricFamily")
    if not metrics:
        return ""
    text = _check_family(name, help_text, mtype, unit, begin)
    out.family = text
    out.metadata[text] = metadata_of(name, mtype, help_text, unit)
    want = _VALUE_TAG[mtype]
    prefixes: tuple[bytes, ...]
    if mtype == _SUMMARY:
        prefixes = (name + b"_count" + KEY_SEP, name + b"_sum" + KEY_SEP, name + KEY_SEP)
    elif mtype >= _HISTOGRAM:
        prefixes = (
            name + b"_count" + KEY_SEP,
            name + b"_sum" + KEY_SEP,
            name + b"_bucket" + KEY_SEP,
        )
    else:
        prefixes = (name + KEY_SEP,)
    for i in range(0, len(metrics), 2):
        out.mark = len(out.keys)
        _metric(buf, metrics[i], metrics[i + 1], out, mtype, want, prefixes)
    return text


def _check_family(name: bytes, help_text: bytes, mtype: int, unit: bytes, pos: int) -> str:
    """Prometheus 3's checks of a family with metrics; its name as str."""
    try:
        text = name.decode()
    except UnicodeDecodeError:
        text = ""
    if not text:
        raise _Bad(f"invalid metric name: {name.decode('utf-8', 'replace')}", pos)
    try:
        help_text.decode()
    except UnicodeDecodeError:
        raise _Bad(f"invalid help for metric {_quote(text)}", pos) from None
    if not 0 <= mtype <= 5:
        raise _Bad(f"unknown metric type for metric {_quote(text)}: {mtype}", pos)
    if unit:
        base = name[:-6] if mtype == 0 and name.endswith(b"_total") else name
        if not base.endswith(b"_" + unit):
            what = "counter" if base is not name else "metric"
            raise _Bad(
                f"unit {_quote(unit.decode('utf-8', 'replace'))} not a suffix of {what} "
                f"{_quote(text)}",
                pos,
            )
    return text


def _metric(
    buf: bytes,
    pos: int,
    end: int,
    out: _Out,
    mtype: int,
    want: int,
    prefixes: tuple[bytes, ...],
) -> None:
    """One ``Metric``: its label bytes, value sub-message(s) and timestamp."""
    lab_start = lab_end = -1
    pieces: list[bytes] | None = None
    subs: list[int] = []
    ts = 0
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A:  # label
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated label pair", pos)
            if lab_end == pos:
                lab_end = stop
            elif lab_start < 0:
                lab_start, lab_end = pos, stop
            else:  # labels interleaved with other fields: keep every run, in order
                if pieces is None:
                    pieces = []
                pieces.append(buf[lab_start:lab_end])
                lab_start, lab_end = pos, stop
            pos = stop
        elif tag in _SUBMESSAGE_TAGS:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated metric value", pos)
            if tag == want:
                subs += (start, stop)
            pos = stop
        elif tag == 0x30:  # timestamp_ms
            ts, pos = _uvarint(buf, pos + 1, end)
        else:
            pos = _other(buf, pos, end, _METRIC_FIELDS, "Metric")
    if pieces is not None:
        pieces.append(buf[lab_start:lab_end])
        labels = b"".join(pieces)
    else:
        labels = buf[lab_start:lab_end] if lab_start >= 0 else b""
    keys = out.keys
    values = out.values
    first = len(keys)
    if mtype == _SUMMARY:
        _summary(buf, subs, labels, prefixes, out)
    elif mtype >= _HISTOGRAM:
        _histogram(buf, subs, labels, prefixes, out)
    else:
        value = 0.0
        for i in range(0, len(subs), 2):
            value = _simple(buf, subs[i], subs[i + 1], out, first, counter=mtype == 0)
        keys.append(prefixes[0] + labels)
        values.append(value)
    stamps = out.stamps
    if ts:
        if ts >= 1 << 63:
            ts -= 1 << 64
        if stamps is None:
            stamps = out.stamps = [None] * first
        elif len(stamps) < first:
            stamps.extend([None] * (first - len(stamps)))
        stamps.extend([ts] * (len(keys) - first))


def _simple(buf: bytes, pos: int, end: int, out: _Out, index: int, *, counter: bool) -> float:
    """Gauge / Untyped / Counter: the value (field 1); a counter's exemplar (field 2)."""
    value = 0.0
    while pos < end:
        tag = buf[pos]
        if tag == 0x09:
            if pos + 9 > end:
                raise _Bad("truncated double", pos)
            value = _double(buf, pos + 1)[0]
            pos += 9
        elif tag == 0x12 and counter:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated exemplar", pos)
            out.exemplars[index] = _exemplar(buf, start, stop)
            pos = stop
        else:
            pos = _other(buf, pos, end, _VALUE_FIELDS, "value")
    return value


def _summary(
    buf: bytes, subs: list[int], labels: bytes, prefixes: tuple[bytes, ...], out: _Out
) -> None:
    """``_count``, ``_sum``, then one sample per quantile."""
    count = 0
    total = 0.0
    quantiles: list[tuple[bytes, float]] = []
    for i in range(0, len(subs), 2):
        pos, end = subs[i], subs[i + 1]
        while pos < end:
            tag = buf[pos]
            if tag == 0x08:
                count, pos = _uvarint(buf, pos + 1, end)
            elif tag == 0x11:
                if pos + 9 > end:
                    raise _Bad("truncated double", pos)
                total = _double(buf, pos + 1)[0]
                pos += 9
            elif tag == 0x1A:
                size, start = _uvarint(buf, pos + 1, end)
                stop = start + size
                if stop > end:
                    raise _Bad("truncated quantile", pos)
                quantiles.append(_quantile(buf, start, stop))
                pos = stop
            else:
                pos = _other(buf, pos, end, _SUMMARY_FIELDS, "Summary")
    keys = out.keys
    values = out.values
    keys += (prefixes[0] + labels, prefixes[1] + labels)
    values += (float(count), total)
    base = prefixes[2] + labels
    for raw, value in quantiles:
        suffix = _quantile_suffixes.get(raw)
        if suffix is None:
            suffix = _suffix(_quantile_suffixes, raw, _QUANTILE)
        keys.append(base + suffix)
        values.append(value)


def _quantile(buf: bytes, pos: int, end: int) -> tuple[bytes, float]:
    """A ``Quantile``: the raw 8 bytes of ``quantile`` (the label's cache key) and the value."""
    raw = b"\0" * 8
    value = 0.0
    while pos < end:
        tag = buf[pos]
        if tag == 0x09 or tag == 0x11:
            if pos + 9 > end:
                raise _Bad("truncated double", pos)
            if tag == 0x09:
                raw = buf[pos + 1 : pos + 9]
            else:
                value = _double(buf, pos + 1)[0]
            pos += 9
        else:
            pos = _other(buf, pos, end, _QUANTILE_FIELDS, "Quantile")
    return raw, value


def _histogram(
    buf: bytes, subs: list[int], labels: bytes, prefixes: tuple[bytes, ...], out: _Out
) -> None:
    """Classic series of a (gauge) histogram; native fields are skipped."""
    count = 0
    count_float = 0.0
    total = 0.0
    buckets: list[int] = []
    for i in range(0, len(subs), 2):
        pos, end = subs[i], subs[i + 1]
        while pos < end:
            tag = buf[pos]
            if tag == 0x1A:  # bucket
                size, start = _uvarint(buf, pos + 1, end)
                stop = start + size
                if stop > end:
                    raise _Bad("truncated bucket", pos)
                buckets += (start, stop)
                pos = stop
            elif tag == 0x08:
                count, pos = _uvarint(buf, pos + 1, end)
            elif tag == 0x11 or tag == 0x21:
                if pos + 9 > end:
                    raise _Bad("truncated double", pos)
                if tag == 0x11:
                    total = _double(buf, pos + 1)[0]
                else:
                    count_float = _double(buf, pos + 1)[0]
                pos += 9
            else:
                pos = _other(buf, pos, end, _HISTOGRAM_FIELDS, "Histogram")
    count_value = count_float if count_float != 0 else float(count)
    keys = out.keys
    values = out.values
    keys += (prefixes[0] + labels, prefixes[1] + labels)
    values += (count_value, total)
    base = prefixes[2] + labels
    for i in range(0, len(buckets), 2):
        raw, value = _bucket(buf, buckets[i], buckets[i + 1], out, len(keys))
        suffix = _le_suffixes.get(raw)
        if suffix is None:
            suffix = _suffix(_le_suffixes, raw, _LE)
        keys.append(base + suffix)
        values.append(value)
        if suffix is _INF_LE:
            return  # Prometheus stops at the first +Inf bucket
    keys.append(base + _INF_LE)
    values.append(count_value)


def _bucket(buf: bytes, pos: int, end: int, out: _Out, index: int) -> tuple[bytes, float]:
    """A classic ``Bucket``: raw ``upper_bound`` bytes and the cumulative count."""
    raw = b"\0" * 8
    count = 0
    count_float = 0.0
    while pos < end:
        tag = buf[pos]
        if tag == 0x08:
            count, pos = _uvarint(buf, pos + 1, end)
        elif tag == 0x11 or tag == 0x21:
            if pos + 9 > end:
                raise _Bad("truncated double", pos)
            if tag == 0x11:
                raw = buf[pos + 1 : pos + 9]
            else:
                count_float = _double(buf, pos + 1)[0]
            pos += 9
        elif tag == 0x1A:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated exemplar", pos)
            out.exemplars[index] = _exemplar(buf, start, stop)
            pos = stop
        else:
            pos = _other(buf, pos, end, _BUCKET_FIELDS, "Bucket")
    return raw, count_float if count_float != 0 else float(count)


def _suffix(cache: dict[bytes, bytes], raw: bytes, label: bytes) -> bytes:
    """The key bytes of ``le``/``quantile`` for a raw double, remembered (bounded)."""
    value = _double(raw)[0]
    if len(cache) >= _SUFFIX_MAX:
        cache.clear()
    if label == _LE and value == math.inf:
        suffix = _INF_LE  # identity marks the bucket that ends a histogram
    else:
        suffix = magic_label(label, _format_om_float(value))
    cache[raw] = suffix
    return suffix


def _exemplar(buf: bytes, pos: int, end: int) -> Exemplar:
    """An ``Exemplar``: labels sorted by name (Prometheus sorts them), value, ms timestamp."""
    pairs: list[tuple[str, str]] = []
    value = 0.0
    ts: int | None = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated exemplar label", pos)
            pairs.append(_pair(buf, start, stop))
            pos = stop
        elif tag == 0x11:
            if pos + 9 > end:
                raise _Bad("truncated double", pos)
            value = _double(buf, pos + 1)[0]
            pos += 9
        elif tag == 0x1A:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated timestamp", pos)
            ts = _timestamp_ms(buf, start, stop)
            pos = stop
        else:
            pos = _other(buf, pos, end, _EXEMPLAR_FIELDS, "Exemplar")
    pairs.sort()
    return Exemplar(labels=tuple(pairs), value=value, ts_ms=ts)


def _pair(buf: bytes, pos: int, end: int) -> tuple[str, str]:
    """An exemplar's ``LabelPair``."""
    name = value = b""
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A or tag == 0x12:
            size, start = _uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise _Bad("truncated string", pos)
            if tag == 0x0A:
                name = buf[start:stop]
            else:
                value = buf[start:stop]
            pos = stop
        else:
            pos = _other(buf, pos, end, _PAIR_FIELDS, "LabelPair")
    return name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")


def _timestamp_ms(buf: bytes, pos: int, end: int) -> int:
    """``google.protobuf.Timestamp`` as ms: seconds * 1000 + nanos / 1e6 (Go truncation)."""
    seconds = nanos = 0
    while pos < end:
        tag = buf[pos]
        if tag == 0x08:
            seconds, pos = _uvarint(buf, pos + 1, end)
        elif tag == 0x10:
            nanos, pos = _uvarint(buf, pos + 1, end)
        else:
            pos = _other(buf, pos, end, _TIMESTAMP_FIELDS, "Timestamp")
    if seconds >= 1 << 63:
        seconds -= 1 << 64
    nanos &= 0xFFFFFFFF  # int32 on the wire as a sign-extended varint
    if nanos >= 1 << 31:
        nanos -= 1 << 32
    return seconds * 1000 + int(nanos / 1_000_000)


def _uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A base-128 varint at ``pos`` (at most 10 bytes, below ``end``): (value, next pos)."""
    if pos < end:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
    start = pos
    result = shift = 0
    while True:
        if pos >= end:
            raise _Bad("truncated varint", start)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes", start)


def _other(buf: bytes, pos: int, end: int, known: _Known, what: str) -> int:
    """Skip a field the fast paths did not take: check a known field's wire type, skip an
    unknown one by its wire type. Returns the position after it."""
    start = pos
    tag, pos = _uvarint(buf, pos, end)
    number = tag >> 3
    wire = tag & 7
    allowed = known.get(number)
    if number == 0:
        raise _Bad(f"invalid field number 0 in {what}", start)
    if allowed is not None and wire not in allowed:
        raise _Bad(f"wrong wire type {wire} for field {number} of {what}", start)
    if wire == 0:
        return _uvarint(buf, pos, end)[1]
    if wire == 2:
        size, pos = _uvarint(buf, pos, end)
        stop = pos + size
    elif wire == 1:
        stop = pos + 8
    elif wire == 5:
        stop = pos + 4
    else:
        raise _Bad(f"unsupported wire type {wire} (field {number} of {what})", start)
    if stop > end:
        raise _Bad(f"truncated field {number} of {what}", start)
    return stop


def _quote(text: str) -> str:
    """Go ``%q`` for the common case (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
