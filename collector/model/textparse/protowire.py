"""Protobuf wire primitives of the exposition decoder, and the columns it fills.

Place in the pipeline: below `collector.model.textparse.protobuf` (families and metrics) and
`collector.model.textparse.protoclassic` (summaries and histograms): varints, skipping a field
by its wire type (refusing a known field that comes with another one, as Go's decoder does),
exemplars and ``google.protobuf.Timestamp``, `check_family` (Prometheus 3's family checks),
and `Out`, the columns being built (float samples, and native histograms for
`collector.model.textparse.protonative`). Every position is an offset into the whole body, so
an error can say where it is.

Prometheus counterpart: the generated ``Unmarshal`` code behind
``prompb/io/prometheus/client/decoder.go``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from collector.model.textparse.exposition import Exemplar, Metadata
from collector.model.textparse.protoexposition import NativeSample, ProtoExposition

__all__ = [
    "BUCKET_FIELDS",
    "EXEMPLAR_FIELDS",
    "FAMILY_FIELDS",
    "HISTOGRAM_FIELDS",
    "METRIC_FIELDS",
    "QUANTILE_FIELDS",
    "SUMMARY_FIELDS",
    "VALUE_FIELDS",
    "Bad",
    "Known",
    "Out",
    "check_family",
    "double",
    "exemplar",
    "other",
    "quote",
    "uvarint",
]

double = struct.Struct("<d").unpack_from
"""``double(buf, pos)[0]``: the little-endian double at ``pos``."""

Known = Mapping[int, tuple[int, ...]]
"""Field number -> the wire types it may come with (another one is refused)."""

FAMILY_FIELDS: Known = {1: (2,), 2: (2,), 3: (0,), 4: (2,), 5: (2,)}
METRIC_FIELDS: Known = {1: (2,), 2: (2,), 3: (2,), 4: (2,), 5: (2,), 6: (0,), 7: (2,)}
VALUE_FIELDS: Known = {1: (1,), 2: (2,), 3: (2,)}
"""Gauge/Untyped ``value``; Counter ``value``, ``exemplar``, ``created_timestamp``."""
SUMMARY_FIELDS: Known = {1: (0,), 2: (1,), 3: (2,), 4: (2,)}
QUANTILE_FIELDS: Known = {1: (1,), 2: (1,)}
HISTOGRAM_FIELDS: Known = {
    1: (0,), 2: (1,), 3: (2,), 4: (1,), 5: (0,), 6: (1,), 7: (0,), 8: (1,),
    9: (2,), 10: (0, 2), 11: (1, 2), 12: (2,), 13: (0, 2), 14: (1, 2), 15: (2,), 16: (2,),
}  # fmt: skip
"""Classic fields 1-4 and 15; native ones 5-14 and 16 (deltas and counts packed or not)."""
BUCKET_FIELDS: Known = {1: (0,), 2: (1,), 3: (2,), 4: (1,)}
EXEMPLAR_FIELDS: Known = {1: (2,), 2: (1,), 3: (2,)}
_TIMESTAMP_FIELDS: Known = {1: (0,), 2: (0,)}
_PAIR_FIELDS: Known = {1: (2,), 2: (2,)}


class Bad(Exception):
    """Malformed input at ``offset`` (`protobuf.parse` turns it into `ProtobufError`)."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what)
        self.what = what
        self.offset = offset


class Out:
    """The columns being built, and where the current metric started (for rollback)."""

    __slots__ = (
        "classic",
        "exemplars",
        "family",
        "gauge",
        "histograms",
        "keys",
        "mark",
        "metadata",
        "stamps",
        "values",
    )

    def __init__(self, *, classic: bool = False) -> None:
        self.keys: list[bytes] = []
        self.values: list[float] = []
        self.stamps: list[int | None] | None = None
        """None until a sample has an explicit timestamp; then padded lazily."""
        self.exemplars: dict[int, Exemplar] = {}
        self.metadata: dict[str, Metadata] = {}
        self.mark = 0
        """Samples before the metric being decoded."""
        self.family = ""
        """Name of the family being decoded (set once its name was checked)."""
        self.histograms: list[NativeSample] = []
        """Native histograms (only with ``native=True``), appended whole after their metric
        decoded: a failing metric never left one here."""
        self.classic = classic
        """``always_scrape_classic_histograms``: a native histogram's classic series too."""
        self.gauge = False
        """The family being decoded is a GAUGE_HISTOGRAM."""

    def stamp(self, first: int, ts: int) -> None:
        """Give the samples from index ``first`` on the timestamp ``ts`` (a uint64 read)."""
        if ts >= 1 << 63:
            ts -= 1 << 64
        stamps = self.stamps
        if stamps is None:
            stamps = self.stamps = [None] * first
        elif len(stamps) < first:
            stamps.extend([None] * (first - len(stamps)))
        stamps.extend([ts] * (len(self.keys) - first))

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
        """The exposition of what was decoded."""
        stamps = self.stamps
        if stamps is not None and len(stamps) < len(self.keys):
            stamps.extend([None] * (len(self.keys) - len(stamps)))
        return ProtoExposition(
            columns=(self.keys, self.values, stamps),
            exemplars=self.exemplars,
            metadata=self.metadata,
            histograms=self.histograms,
        )


def uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A base-128 varint at ``pos`` (at most 10 bytes, below ``end``): (value, next pos)."""
    if pos < end:
        byte = buf[pos]
        if byte < 0x80:
            return byte, pos + 1
    start = pos
    result = shift = 0
    while True:
        if pos >= end:
            raise Bad("truncated varint", start)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift > 63:
            raise Bad("varint longer than 10 bytes", start)


def other(buf: bytes, pos: int, end: int, known: Known, what: str) -> int:
    """Skip a field the fast paths did not take: check a known field's wire type, skip an
    unknown one by its wire type. Returns the position after it."""
    start = pos
    tag, pos = uvarint(buf, pos, end)
    number = tag >> 3
    wire = tag & 7
    if number == 0:
        raise Bad(f"invalid field number 0 in {what}", start)
    allowed = known.get(number)
    if allowed is not None and wire not in allowed:
        raise Bad(f"wrong wire type {wire} for field {number} of {what}", start)
    if wire == 0:
        return uvarint(buf, pos, end)[1]
    if wire == 2:
        size, pos = uvarint(buf, pos, end)
        stop = pos + size
    elif wire == 1:
        stop = pos + 8
    elif wire == 5:
        stop = pos + 4
    else:
        raise Bad(f"unsupported wire type {wire} (field {number} of {what})", start)
    if stop > end:
        raise Bad(f"truncated field {number} of {what}", start)
    return stop


def exemplar(buf: bytes, pos: int, end: int) -> Exemplar:
    """An ``Exemplar``: labels sorted by name (Prometheus sorts them), value, ms timestamp."""
    pairs: list[tuple[str, str]] = []
    value = 0.0
    ts: int | None = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A or tag == 0x1A:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated exemplar field", pos)
            if tag == 0x0A:
                pairs.append(_pair(buf, start, stop))
            else:
                ts = _timestamp_ms(buf, start, stop)
            pos = stop
        elif tag == 0x11:
            if pos + 9 > end:
                raise Bad("truncated double", pos)
            value = double(buf, pos + 1)[0]
            pos += 9
        else:
            pos = other(buf, pos, end, EXEMPLAR_FIELDS, "Exemplar")
    pairs.sort()
    return Exemplar(labels=tuple(pairs), value=value, ts_ms=ts)


def _pair(buf: bytes, pos: int, end: int) -> tuple[str, str]:
    """An exemplar's ``LabelPair``."""
    name = value = b""
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A or tag == 0x12:
            size, start = uvarint(buf, pos + 1, end)
            stop = start + size
            if stop > end:
                raise Bad("truncated string", pos)
            if tag == 0x0A:
                name = buf[start:stop]
            else:
                value = buf[start:stop]
            pos = stop
        else:
            pos = other(buf, pos, end, _PAIR_FIELDS, "LabelPair")
    return name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")


def _timestamp_ms(buf: bytes, pos: int, end: int) -> int:
    """``google.protobuf.Timestamp`` as ms: seconds * 1000 + nanos / 1e6 (Go truncation)."""
    seconds = nanos = 0
    while pos < end:
        tag = buf[pos]
        if tag == 0x08:
            seconds, pos = uvarint(buf, pos + 1, end)
        elif tag == 0x10:
            nanos, pos = uvarint(buf, pos + 1, end)
        else:
            pos = other(buf, pos, end, _TIMESTAMP_FIELDS, "Timestamp")
    if seconds >= 1 << 63:
        seconds -= 1 << 64
    nanos &= 0xFFFFFFFF  # int32 on the wire as a sign-extended varint
    if nanos >= 1 << 31:
        nanos -= 1 << 32
    return seconds * 1000 + int(nanos / 1_000_000)


def check_family(name: bytes, help_text: bytes, mtype: int, unit: bytes, pos: int) -> str:
    """Prometheus 3's checks of a family with metrics (type 0 is COUNTER); its name as str."""
    try:
        text = name.decode()
    except UnicodeDecodeError:
        text = ""
    if not text:
        raise Bad(f"invalid metric name: {name.decode('utf-8', 'replace')}", pos)
    try:
        help_text.decode()
    except UnicodeDecodeError:
        raise Bad(f"invalid help for metric {quote(text)}", pos) from None
    if not 0 <= mtype <= 5:
        raise Bad(f"unknown metric type for metric {quote(text)}: {mtype}", pos)
    if unit:
        base = name[:-6] if mtype == 0 and name.endswith(b"_total") else name
        if not base.endswith(b"_" + unit):
            what = "counter" if base is not name else "metric"
            raise Bad(
                f"unit {quote(unit.decode('utf-8', 'replace'))} not a suffix of {what} "
                f"{quote(text)}",
                pos,
            )
    return text


def quote(text: str) -> str:
    """Go ``%q`` for the common case (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
