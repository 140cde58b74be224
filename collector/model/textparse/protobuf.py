"""Protobuf exposition: the delimited ``io.prometheus.client.MetricFamily`` stream, over bytes.

Place in the pipeline: the scrape loop hands a body whose Content-Type is
``application/vnd.google.protobuf`` (or whose job falls back to ``PrometheusProto``) to `parse`,
and appends the returned `ProtoExposition` through the scrape cache exactly as it appends a
text body's `Exposition` (keys, values, timestamps; labels on a cache miss only). Pure: bytes
in, columns out.

The wire format (client_model ``io/prometheus/client/metrics.proto``, proto2): the body is a
sequence of ``<uvarint length><MetricFamily>``; field numbers and wire types are facts of that
schema and are decoded here by hand (tags compared as whole bytes, doubles with one
``struct.unpack_from``, the common one-byte lengths read inline), because a generated or
reflective decoder would build one object per metric (wire primitives:
`collector.model.textparse.protowire`). Per metric the decoder reads the label *bytes*
(sliced, not decoded: see `collector.model.textparse.protoexposition`), the sub-message of the
family's type and ``timestamp_ms``; everything else is skipped by wire type.

`ProtobufParser` (one per target, as the scrape loop keeps an `IncrementalParser`) remembers
each metric's label bytes by family and position. When a metric starts with the same bytes
as the one at its position in the previous body (one ``bytes.startswith``), those bytes are
known to be whole label fields and the walk resumes after them: in the steady state only the
value fields are read. Anything else (a new series, labels after the value) takes the walk.

What it emits, as Prometheus's ``ProtobufParser`` does when native histograms are not scraped
(``scrape_native_histograms: false``, i.e. ``IgnoreNativeHistograms``):

* counter, gauge, untyped: one sample with the family name; the value of the sub-message of
  the family's type (an absent one reads as 0, Go's ``GetCounter().GetValue()``);
* summary: ``<name>_count``, ``<name>_sum``, then ``<name>{quantile="q"}`` per quantile;
* histogram and gauge histogram: ``<name>_count``, ``<name>_sum``, then
  ``<name>_bucket{le="b"}`` per classic bucket (`collector.model.textparse.protoclassic`).
  Native fields (schema, zero bucket, spans, deltas, counts, native exemplars) are skipped, so
  a histogram with only native buckets gives ``_count``, ``_sum`` and ``_bucket{le="+Inf"}``,
  as in Prometheus 3 without native ingestion;
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

import struct
from collections.abc import Callable, Sequence

from collector.model.textparse.protoclassic import histogram, summary
from collector.model.textparse.protoexposition import (
    KEY_SEP,
    ProtobufError,
    ProtoExposition,
    metadata_of,
)
from collector.model.textparse.protonative import histogram as native_histogram
from collector.model.textparse.protowire import (
    FAMILY_FIELDS,
    METRIC_FIELDS,
    VALUE_FIELDS,
    Bad,
    Out,
    check_family,
    double,
    exemplar,
    other,
    uvarint,
)

__all__ = ["ProtobufParser", "parse"]

# MetricType -> the tag byte of the Metric field holding its value (field 3 counter, 2 gauge,
# 4 summary, 5 untyped, 7 histogram; all length-delimited).
_VALUE_TAG = (0x1A, 0x12, 0x22, 0x2A, 0x3A, 0x3A)
_SUBMESSAGE_TAGS = frozenset((0x12, 0x1A, 0x22, 0x2A, 0x3A))
_COUNTER, _SUMMARY, _HISTOGRAM = 0, 2, 4


def parse(body: bytes, *, native: bool = False, classic: bool = False) -> ProtoExposition:
    """Decode a delimited ``MetricFamily`` body; raises `ProtobufError` with ``partial``.

    ``native``: ingest native histograms (`collector.model.textparse.protonative`);
    ``classic``: and keep their classic series too (``always_scrape_classic_histograms``)."""
    return _decode(body, _Memory(), _Memory(), native=native, classic=classic)


class ProtobufParser:
    """`parse` for one target's successive bodies, remembering their structure."""

    __slots__ = ("_classic", "_memory", "_native")

    def __init__(self, *, native: bool = False, classic: bool = False) -> None:
        self._memory = _Memory()
        self._native = native
        self._classic = classic

    def parse(self, body: bytes) -> ProtoExposition:
        """`parse` (same result and errors), fast when only values or nothing changed."""
        memory = _Memory()
        exp = _decode(body, self._memory, memory, native=self._native, classic=self._classic)
        self._memory = memory
        return exp


class _Memory:
    """What one body's decode leaves for the next one of the same target."""

    __slots__ = ("layouts", "regions")

    def __init__(self) -> None:
        self.regions: dict[bytes, list[bytes]] = {}
        """Family name -> the label bytes each of its metrics started with (b"" if none)."""
        self.layouts: list[_Layout | None] = []
        """Per family message, in body order: its `_Layout` when it has one."""


class _Layout:
    """A counter/gauge/untyped family whose every value is a bare 8-byte double: one
    ``struct`` call splits the family's bytes into the bytes between the values and the
    values. Same length and same bytes between the values: same keys, new values."""

    __slots__ = ("keys", "meta", "name", "region", "segments", "size", "split", "stamps", "text")

    def __init__(
        self, buf: bytes, begin: int, end: int, offsets: list[int], out: Out, first: int
    ) -> None:
        parts = ["<"]
        at = begin
        for offset in offsets:
            parts.append(f"{offset - at}sd")
            at = offset + 8
        parts.append(f"{end - at}s")
        self.size = end - begin
        self.split = struct.Struct("".join(parts))
        self.segments = self.split.unpack_from(buf, begin)[0::2]
        self.keys = out.keys[first:]
        stamps = out.stamps
        self.stamps: list[int | None] | None = None
        if stamps is not None and len(stamps) > first:
            self.stamps = stamps[first:] + [None] * (len(self.keys) - len(stamps) + first)
        self.text = out.family
        self.name = out.family.encode()
        self.meta = out.metadata[out.family]
        self.region: list[bytes] = []


def _decode(
    body: bytes, prev: _Memory, memory: _Memory, *, native: bool, classic: bool
) -> ProtoExposition:
    out = Out(classic=classic)
    pos = 0
    end = len(body)
    layouts = prev.layouts
    known = len(layouts)
    index = 0
    keys = out.keys
    values = out.values
    metadata = out.metadata
    regions = memory.regions
    layouts_now = memory.layouts
    try:
        while pos < end:
            out.mark = len(keys)  # between families: an error here drops nothing
            out.family = ""
            size = body[pos]
            if size < 0x80:
                start = pos + 1
            else:
                size, start = uvarint(body, pos, end)
            stop = start + size
            if stop > end:
                raise Bad(f"message length {size} runs past the end of the body", pos)
            layout = layouts[index] if index < known else None
            index += 1
            if layout is not None and layout.size == size:
                parts = layout.split.unpack_from(body, start)
                if parts[0::2] == layout.segments:  # only the values may have changed
                    if layout.stamps is None:
                        keys += layout.keys
                        values += parts[1::2]
                        metadata[layout.text] = layout.meta
                    else:
                        _reuse(out, layout, parts[1::2])
                    regions[layout.name] = layout.region
                    layouts_now.append(layout)
                    pos = stop
                    continue
            layouts_now.append(_family(body, start, stop, out, prev.regions, regions, native))
            pos = stop
    except Bad as exc:
        out.rollback()
        raise ProtobufError(
            exc.what, offset=exc.offset, family=out.family, partial=out.result()
        ) from None
    return out.result()


def _reuse(out: Out, layout: _Layout, values: tuple[float, ...]) -> None:
    """Append a family known from the previous body: its keys, these values."""
    first = out.mark = len(out.keys)
    out.keys += layout.keys
    out.values += values
    stamps = layout.stamps
    if stamps is not None:
        have = out.stamps
        if have is None:
            have = out.stamps = [None] * first
        elif len(have) < first:
            have.extend([None] * (first - len(have)))
        have += stamps
    out.metadata[layout.text] = layout.meta


def _family(
    buf: bytes,
    pos: int,
    end: int,
    out: Out,
    hints: dict[bytes, list[bytes]],
    regions: dict[bytes, list[bytes]],
    native: bool = False,
) -> _Layout | None:
    """Decode one ``MetricFamily`` in ``buf[pos:end]`` into ``out``; its metrics' label
    bytes go to ``regions`` (``hints``: the previous body's). Returns its `_Layout` if it
    has one."""
    begin = pos
    out.family = ""
    out.mark = len(out.keys)
    name = help_text = unit = b""
    mtype = 0
    metrics: list[int] = []  # start, stop, start, stop, ...
    while pos < end:
        tag = buf[pos]
        if tag == 0x22 or tag == 0x0A or tag == 0x12 or tag == 0x2A:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated metric family field", pos)
            if tag == 0x22:  # metric
                metrics += (start, stop)
            elif tag == 0x0A:
                name = buf[start:stop]
            elif tag == 0x12:
                help_text = buf[start:stop]
            else:
                unit = buf[start:stop]
            pos = stop
        elif tag == 0x18:  # type
            mtype, pos = uvarint(buf, pos + 1, end)
            if mtype >= 1 << 63:
                mtype -= 1 << 64
        else:
            pos = other(buf, pos, end, FAMILY_FIELDS, "MetricFamily")
    if not metrics:
        return None  # Prometheus skips a family without metrics before checking it
    text = check_family(name, help_text, mtype, unit, begin)
    out.family = text
    out.metadata[text] = metadata_of(name, mtype, help_text, unit)
    hint: Sequence[bytes] = hints.get(name, ())
    region: list[bytes] = []
    regions[name] = region
    if mtype == _SUMMARY:
        prefixes: tuple[bytes, ...] = (
            name + b"_count" + KEY_SEP,
            name + b"_sum" + KEY_SEP,
            name + KEY_SEP,
        )
    elif mtype >= _HISTOGRAM:
        prefixes = (
            name + b"_count" + KEY_SEP,
            name + b"_sum" + KEY_SEP,
            name + b"_bucket" + KEY_SEP,
            name + KEY_SEP,  # a native histogram's series
        )
        out.gauge = mtype == _HISTOGRAM + 1
    else:
        first = len(out.keys)
        offsets = _simple_metrics(buf, metrics, out, mtype, name + KEY_SEP, hint, region)
        if offsets is None:
            return None
        layout = _Layout(buf, begin, end, offsets, out, first)
        layout.region = region
        return layout
    emit = summary if mtype == _SUMMARY else native_histogram if native else histogram
    want = _VALUE_TAG[mtype]
    for i in range(0, len(metrics), 2):
        out.mark = len(out.keys)
        j = i >> 1
        known = hint[j] if j < len(hint) else b""
        region.append(_metric(buf, metrics[i], metrics[i + 1], out, want, prefixes, emit, known))
    return None


def _simple_metrics(
    buf: bytes,
    metrics: list[int],
    out: Out,
    mtype: int,
    prefix: bytes,
    hint: Sequence[bytes],
    region: list[bytes],
) -> list[int] | None:
    """Counter, gauge and untyped metrics: one sample each. The hot loop of most bodies, so
    known label bytes are skipped in one compare, and one-byte lengths and a bare ``value``
    sub-message are read inline. Returns where each value's 8 bytes are, or None when one
    is not a bare double (no value, an exemplar, two value messages...)."""
    offsets: list[int] | None = []
    keys = out.keys
    values = out.values
    want = _VALUE_TAG[mtype]
    counter = mtype == _COUNTER
    hints = len(hint)
    for i in range(0, len(metrics), 2):
        pos = begin = metrics[i]
        end = metrics[i + 1]
        first = out.mark = len(keys)
        lab_start = lab_end = -1
        pieces: list[bytes] | None = None
        value = 0.0
        ts = 0
        vpos = -1
        j = i >> 1
        if j < hints:
            known = hint[j]
            if known and pos + len(known) <= end and buf.startswith(known, pos):
                lab_start = pos
                lab_end = pos = pos + len(known)
        while pos < end:
            tag = buf[pos]
            if tag == 0x0A or tag in _SUBMESSAGE_TAGS:
                start = pos + 2
                if start <= end and buf[pos + 1] < 0x80:
                    stop = start + buf[pos + 1]
                else:
                    size, start = uvarint(buf, pos + 1, end)
                    stop = start + size
                if stop > end:
                    raise Bad("truncated metric field", pos)
                if tag == 0x0A:  # label: extend the current run, or start another
                    if lab_end == pos:
                        lab_end = stop
                    elif lab_start < 0:
                        lab_start, lab_end = pos, stop
                    else:  # labels interleaved with other fields: keep every run, in order
                        if pieces is None:
                            pieces = []
                        pieces.append(buf[lab_start:lab_end])
                        lab_start, lab_end = pos, stop
                elif tag == want:
                    if stop - start == 9 and buf[start] == 0x09 and vpos < 0:
                        vpos = start + 1
                        value = double(buf, vpos)[0]
                    else:
                        value = _value(buf, start, stop, out, first, value, counter=counter)
                        offsets = None
                pos = stop
            elif tag == 0x30:  # timestamp_ms
                ts, pos = uvarint(buf, pos + 1, end)
            else:
                pos = other(buf, pos, end, METRIC_FIELDS, "Metric")
        if pieces is not None:
            pieces.append(buf[lab_start:lab_end])
            keys.append(prefix + b"".join(pieces))
            region.append(b"")
        elif lab_start >= 0:
            labels = buf[lab_start:lab_end]
            keys.append(prefix + labels)
            region.append(labels if lab_start == begin else b"")
        else:
            keys.append(prefix)
            region.append(b"")
        values.append(value)
        if ts:
            out.stamp(first, ts)
        if offsets is not None:
            if vpos < 0:
                offsets = None
            else:
                offsets.append(vpos)
    return offsets


def _value(
    buf: bytes, pos: int, end: int, out: Out, index: int, value: float, *, counter: bool
) -> float:
    """Gauge / Untyped / Counter message: the value (field 1, else ``value`` as it was) and
    a counter's exemplar (field 2)."""
    while pos < end:
        tag = buf[pos]
        if tag == 0x09:
            if pos + 9 > end:
                raise Bad("truncated double", pos)
            value = double(buf, pos + 1)[0]
            pos += 9
        elif tag == 0x12 and counter:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated exemplar", pos)
            out.exemplars[index] = exemplar(buf, start, stop)
            pos = stop
        else:
            pos = other(buf, pos, end, VALUE_FIELDS, "value")
    return value


def _metric(
    buf: bytes,
    pos: int,
    end: int,
    out: Out,
    want: int,
    prefixes: tuple[bytes, ...],
    emit: Callable[[bytes, list[int], bytes, tuple[bytes, ...], Out], None],
    known: bytes,
) -> bytes:
    """One summary or histogram ``Metric``: its label bytes, value sub-message(s) (merged,
    as protobuf merges repeated messages) and timestamp; ``emit`` appends its series.
    ``known``: label bytes this metric probably starts with. Returns the label bytes it
    started with (b"" if none)."""
    lab_start = lab_end = -1
    pieces: list[bytes] | None = None
    subs: list[int] = []
    ts = 0
    begin = pos
    if known and pos + len(known) <= end and buf.startswith(known, pos):
        lab_start = pos
        lab_end = pos = pos + len(known)
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A or tag in _SUBMESSAGE_TAGS:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated metric field", pos)
            if tag == 0x0A:
                if lab_end == pos:
                    lab_end = stop
                elif lab_start < 0:
                    lab_start, lab_end = pos, stop
                else:
                    if pieces is None:
                        pieces = []
                    pieces.append(buf[lab_start:lab_end])
                    lab_start, lab_end = pos, stop
            elif tag == want:
                subs += (start, stop)
            pos = stop
        elif tag == 0x30:  # timestamp_ms
            ts, pos = uvarint(buf, pos + 1, end)
        else:
            pos = other(buf, pos, end, METRIC_FIELDS, "Metric")
    if pieces is not None:
        pieces.append(buf[lab_start:lab_end])
        labels = b"".join(pieces)
    else:
        labels = buf[lab_start:lab_end] if lab_start >= 0 else b""
    first = len(out.keys)
    natives = len(out.histograms)
    emit(buf, subs, labels, prefixes, out)
    if ts:
        out.stamp(first, ts)
        if len(out.histograms) > natives:
            key, h, _ = out.histograms[-1]
            out.histograms[-1] = (key, h, ts - (1 << 64) if ts >= 1 << 63 else ts)
    return labels if pieces is None and lab_start == begin else b""
