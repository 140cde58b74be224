"""Remote-write 1.0 wire codec: hand-built ``WriteRequest`` bytes, snappy block, protobuf decode.

A ``WriteRequest`` is nothing but a concatenation of length-prefixed ``TimeSeries`` messages
(field 1), so a batch is built by joining bytes: each series' ``Label`` fields are encoded once
per destination (`encode_labels`, `series_code`) and each sample adds its packed ``Sample``.
No protobuf object is created per sample. Prometheus puts exactly one sample in each
``TimeSeries`` (spec §6.1) and so do we.

Wire details that are easy to get wrong (spec §6.1, §12):

* ``double`` is fixed64 little-endian (wire type 1); ``int64`` is a varint, and a negative one is
  its 64-bit two's complement, always 10 bytes.
* proto3 omits zero scalars. Go's encoder tests ``value != 0``, so ``-0.0`` is omitted as well
  and arrives as ``+0.0``; we do the same. (Python's protobuf keeps ``-0.0``: the only byte
  difference with ``SerializeToString``, and a deliberate one.)
* NaN payloads survive ``struct.pack('<d')``: the staleness marker keeps its bits
  ``0x7ff0000000000002``.
* The body is compressed with the snappy **block** format, not the framed one.

The decode side (`decode_request`) uses the protobuf classes of `collector.remote.prompb`; it
serves tests and the receiver, never the sender.

Prometheus counterpart: ``prompb/remote.pb.go`` (gogo-generated marshalling),
``storage/remote/codec.go``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import cramjam

from collector.model.labels import Labels

__all__ = [
    "METRIC_TYPES",
    "DecodeError",
    "DecodedMetadata",
    "DecodedSeries",
    "MetadataEntry",
    "SeriesCode",
    "compress",
    "decode_metadata",
    "decode_request",
    "decompress",
    "encode_exemplar_series",
    "encode_histogram_series",
    "encode_labels",
    "encode_metadata_request",
    "encode_request",
    "encode_sample",
    "encode_timeseries",
    "fast_prefixes",
    "series_code",
    "timestamp_field",
    "varint",
]

SeriesCode = tuple[bytes, bytes]
"""``(label_bytes, fast_prefix)`` of one series for one destination (see `series_code`)."""

DecodedSeries = tuple[Labels, list[tuple[float, int]]]
"""One decoded ``TimeSeries``: labels in wire order and ``(value, timestamp_ms)`` samples."""

MetadataEntry = tuple[int, str, str, str]
"""``(MetricType number, metric_family_name, help, unit)``."""

DecodedMetadata = MetadataEntry

METRIC_TYPES: dict[str, int] = {
    "unknown": 0,
    "untyped": 0,
    "counter": 1,
    "gauge": 2,
    "histogram": 3,
    "gaugehistogram": 4,
    "summary": 5,
    "info": 6,
    "stateset": 7,
}
"""Exposition type name -> ``MetricMetadata.MetricType`` number (anything else: UNKNOWN, 0)."""

_DOUBLE = struct.Struct("<d")
_pack_double = _DOUBLE.pack

# Tags: (field number << 3) | wire type.
_TAG_1_LEN = b"\x0a"  # field 1, length-delimited: TimeSeries in WriteRequest, Label in TimeSeries
_TAG_2_LEN = b"\x12"  # field 2, length-delimited: Sample in TimeSeries, value in Label
_TAG_VALUE = b"\x09"  # Sample.value: field 1, fixed64
_TAG_TS = b"\x10"  # Sample.timestamp: field 2, varint
_TAG_METADATA = b"\x1a"  # WriteRequest.metadata: field 3, length-delimited

_FAST_TS_LEN = 7
"""Bytes of ``timestamp_field`` for every ms timestamp in 2^35..2^42 (1971..2109): 1 tag + 6."""

_FAST_SAMPLE = b"\x12\x10\x09"
"""Sample field tag, its length (9 + 7 = 16) and the value tag, for the fast path."""

_FAST_ZERO_SAMPLE = b"\x12\x07"
"""Sample field tag and its length (the timestamp field only) for a zero value, fast path."""

_MASK64 = (1 << 64) - 1

_SMALL: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(0x80))
"""One-byte varints, by value."""


class DecodeError(ValueError):
    """A body is not valid snappy or not a valid ``WriteRequest``."""


def varint(n: int) -> bytes:
    """Base-128 varint of ``n``; a negative ``n`` is encoded as its 64-bit two's complement."""
    if n < 0:
        n &= _MASK64
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def encode_labels(labels: Labels) -> bytes:
    """The repeated ``Label`` fields (field 1) of a ``TimeSeries``, in the given order.

    ``labels`` must already be sorted by name (a `Labels` tuple is). Empty names or values are
    omitted the way proto3 omits empty strings.
    """
    parts: list[bytes] = []
    for name, value in labels:
        name_b = name.encode("utf-8")
        value_b = value.encode("utf-8")
        body = (_length_delimited(_TAG_1_LEN, name_b) if name_b else b"") + (
            _length_delimited(_TAG_2_LEN, value_b) if value_b else b""
        )
        parts.append(_length_delimited(_TAG_1_LEN, body))
    return b"".join(parts)


def series_code(label_bytes: bytes) -> SeriesCode:
    """Pre-encode what every sample of a series shares, once per series and destination.

    The fast prefix is the whole ``TimeSeries`` up to the 8 value bytes for the common sample
    (non-zero value, timestamp between 1971 and 2109): ``prefix + pack(value) + ts_field``.
    """
    body_len = len(label_bytes) + 2 + 9 + _FAST_TS_LEN
    return label_bytes, _TAG_1_LEN + varint(body_len) + label_bytes + _FAST_SAMPLE


def fast_prefixes(label_bytes: bytes) -> tuple[bytes, bytes]:
    """``(value_prefix, zero_series)`` of a series for the fast path (7-byte timestamp field).

    ``value_prefix + pack(value) + ts_field`` is the ``TimeSeries`` field of a non-zero sample
    (the fast prefix of `series_code`); ``zero_series + ts_field`` is the one of a ``0.0`` or
    ``-0.0`` sample, whose value field proto3 omits.
    """
    value_len = len(label_bytes) + 2 + 9 + _FAST_TS_LEN
    zero_len = len(label_bytes) + 2 + _FAST_TS_LEN
    return (
        _TAG_1_LEN + varint(value_len) + label_bytes + _FAST_SAMPLE,
        _TAG_1_LEN + varint(zero_len) + label_bytes + _FAST_ZERO_SAMPLE,
    )


def timestamp_field(timestamp_ms: int) -> bytes:
    """The ``Sample.timestamp`` field (tag + varint), or ``b""`` for 0 (proto3 omits it)."""
    return _TAG_TS + varint(timestamp_ms) if timestamp_ms else b""


def encode_sample(value: float, timestamp_ms: int) -> bytes:
    """The body of one ``Sample`` message (``-0.0`` and ``0.0`` are omitted, spec §12)."""
    value_field = _TAG_VALUE + _pack_double(value) if value != 0.0 else b""
    return value_field + timestamp_field(timestamp_ms)


def encode_timeseries(label_bytes: bytes, value: float, timestamp_ms: int) -> bytes:
    """One ``TimeSeries`` with one sample, as a ``WriteRequest.timeseries`` field (slow path)."""
    sample = encode_sample(value, timestamp_ms)
    body = label_bytes + _TAG_2_LEN + _SMALL[len(sample)] + sample
    return _TAG_1_LEN + varint(len(body)) + body


def encode_histogram_series(label_bytes: bytes, histogram: bytes, timestamp_ms: int) -> bytes:
    """One ``TimeSeries`` with one native histogram (field 4), as a ``WriteRequest.timeseries``
    field: ``histogram`` is fields 1-14 of the ``Histogram`` (`collector.model.histogram.encode`),
    the timestamp is added as field 15 (omitted when 0, as proto3 does)."""
    if timestamp_ms:
        histogram += b"\x78" + varint(timestamp_ms)
    body = label_bytes + b"\x22" + varint(len(histogram)) + histogram
    return _TAG_1_LEN + varint(len(body)) + body


def encode_exemplar_series(label_bytes: bytes, exemplar: bytes) -> bytes:
    """One ``TimeSeries`` with one exemplar (field 3, `collector.model.exemplar.encode`), as a
    ``WriteRequest.timeseries`` field."""
    body = label_bytes + b"\x1a" + varint(len(exemplar)) + exemplar
    return _TAG_1_LEN + varint(len(body)) + body


def encode_series_batch(
    codes: Sequence[SeriesCode], values: Sequence[float], timestamps: Sequence[int]
) -> bytes:
    """A ``WriteRequest`` body from pre-encoded series, one ``TimeSeries`` per sample.

    The timestamp field is cached across consecutive samples: one scrape shares one timestamp.
    """
    parts: list[bytes] = []
    append = parts.append
    pack = _pack_double
    last_ts: int | None = None
    ts_field = b""
    fast_ts = False
    for (label_bytes, prefix), value, ts in zip(codes, values, timestamps, strict=True):
        if ts != last_ts:
            last_ts = ts
            ts_field = timestamp_field(ts)
            fast_ts = len(ts_field) == _FAST_TS_LEN
        if fast_ts and value != 0.0:
            append(prefix)
            append(pack(value))
            append(ts_field)
        else:
            append(encode_timeseries(label_bytes, value, ts))
    return b"".join(parts)


def encode_request(
    series_labels: Sequence[bytes], values: Sequence[float], timestamps: Sequence[int]
) -> bytes:
    """A ``WriteRequest`` body from `encode_labels` outputs, values and timestamps (ms).

    Convenience form of `encode_series_batch` for callers that keep only label bytes.
    """
    return encode_series_batch([series_code(lb) for lb in series_labels], values, timestamps)


def encode_metadata_request(entries: Iterable[MetadataEntry]) -> bytes:
    """A metadata-only ``WriteRequest`` (field 3 only, spec §6.6)."""
    parts: list[bytes] = []
    for kind, family, help_text, unit in entries:
        body = b"".join(
            (
                b"\x08" + varint(kind) if kind else b"",
                _length_delimited(b"\x12", family.encode("utf-8")) if family else b"",
                _length_delimited(b"\x22", help_text.encode("utf-8")) if help_text else b"",
                _length_delimited(b"\x2a", unit.encode("utf-8")) if unit else b"",
            )
        )
        parts.append(_length_delimited(_TAG_METADATA, body))
    return b"".join(parts)


def compress(data: bytes) -> bytes:
    """Snappy **block** format (``cramjam.snappy.compress_raw``), as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(data))


def decompress(data: bytes) -> bytes:
    """Inverse of `compress`; `DecodeError` when ``data`` is not a snappy block."""
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # cramjam raises its own DecompressionError (not exported typed)
        raise DecodeError(f"invalid snappy block: {exc}") from exc


def _parse(body: bytes) -> Any:
    # Imported here: the protobuf runtime (~2.5 MB resident) is for decoding only, which the
    # agent does as a receiver, never on its write path.
    from google.protobuf.message import DecodeError as _ProtobufDecodeError

    from collector.remote import prompb

    request = prompb.WriteRequest()
    try:
        request.ParseFromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"invalid WriteRequest protobuf: {exc}") from exc
    return request


def decode_request(body: bytes) -> list[DecodedSeries]:
    """Parse an uncompressed ``WriteRequest`` with the protobuf classes (tests, receiver)."""
    request = _parse(body)
    return [
        (
            tuple((label.name, label.value) for label in series.labels),
            [(sample.value, sample.timestamp) for sample in series.samples],
        )
        for series in request.timeseries
    ]


def decode_metadata(body: bytes) -> list[DecodedMetadata]:
    """The ``metadata`` entries of an uncompressed ``WriteRequest``."""
    request = _parse(body)
    return [
        (entry.type, entry.metric_family_name, entry.help, entry.unit) for entry in request.metadata
    ]
