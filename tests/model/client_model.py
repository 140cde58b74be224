"""``io.prometheus.client`` message classes for tests, built from a descriptor written in code.

The independent side of the protobuf decoder's tests: client_model's
``io/prometheus/client/metrics.proto`` (proto2) declared as a ``FileDescriptorProto`` from its
field numbers and types (reference §3.1) and turned into classes by the ``protobuf`` package,
as `collector.remote.prompb` does for remote write. Bodies built with these classes and
`delimited` are what an exporter using client_golang sends. ``google.protobuf.Timestamp`` is
declared here too (same two fields, so the same wire bytes) to keep the pool self-contained.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "Bucket",
    "BucketSpan",
    "Counter",
    "Exemplar",
    "Gauge",
    "Histogram",
    "LabelPair",
    "Metric",
    "MetricFamily",
    "Quantile",
    "Summary",
    "Timestamp",
    "Untyped",
    "delimited",
]

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "io.prometheus.client"

COUNTER, GAUGE, SUMMARY, UNTYPED, HISTOGRAM, GAUGE_HISTOGRAM = range(6)


def _add(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
) -> None:
    field = message.field.add()
    field.name = name
    field.number = number
    field.type = kind  # type: ignore[assignment]  # the stubs want the enum wrapper type
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = f".{_PKG}.{type_name}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="tests/io_prometheus_client_metrics.proto", package=_PKG, syntax="proto2"
    )
    D, S, U64, I64, I32, S32, S64, U32, E, M = (
        _F.TYPE_DOUBLE,
        _F.TYPE_STRING,
        _F.TYPE_UINT64,
        _F.TYPE_INT64,
        _F.TYPE_INT32,
        _F.TYPE_SINT32,
        _F.TYPE_SINT64,
        _F.TYPE_UINT32,
        _F.TYPE_ENUM,
        _F.TYPE_MESSAGE,
    )
    kind = f.enum_type.add(name="MetricType")
    for number, name in enumerate(
        ("COUNTER", "GAUGE", "SUMMARY", "UNTYPED", "HISTOGRAM", "GAUGE_HISTOGRAM")
    ):
        kind.value.add(name=name, number=number)

    ts = f.message_type.add(name="Timestamp")
    _add(ts, "seconds", 1, I64)
    _add(ts, "nanos", 2, I32)

    pair = f.message_type.add(name="LabelPair")
    _add(pair, "name", 1, S)
    _add(pair, "value", 2, S)

    for simple in ("Gauge", "Untyped"):
        _add(f.message_type.add(name=simple), "value", 1, D)

    exemplar = f.message_type.add(name="Exemplar")
    _add(exemplar, "label", 1, M, repeated=True, type_name="LabelPair")
    _add(exemplar, "value", 2, D)
    _add(exemplar, "timestamp", 3, M, type_name="Timestamp")

    counter = f.message_type.add(name="Counter")
    _add(counter, "value", 1, D)
    _add(counter, "exemplar", 2, M, type_name="Exemplar")
    _add(counter, "created_timestamp", 3, M, type_name="Timestamp")

    quantile = f.message_type.add(name="Quantile")
    _add(quantile, "quantile", 1, D)
    _add(quantile, "value", 2, D)

    summary = f.message_type.add(name="Summary")
    _add(summary, "sample_count", 1, U64)
    _add(summary, "sample_sum", 2, D)
    _add(summary, "quantile", 3, M, repeated=True, type_name="Quantile")
    _add(summary, "created_timestamp", 4, M, type_name="Timestamp")

    bucket = f.message_type.add(name="Bucket")
    _add(bucket, "cumulative_count", 1, U64)
    _add(bucket, "cumulative_count_float", 4, D)
    _add(bucket, "upper_bound", 2, D)
    _add(bucket, "exemplar", 3, M, type_name="Exemplar")

    span = f.message_type.add(name="BucketSpan")
    _add(span, "offset", 1, S32)
    _add(span, "length", 2, U32)

    histogram = f.message_type.add(name="Histogram")
    _add(histogram, "sample_count", 1, U64)
    _add(histogram, "sample_count_float", 4, D)
    _add(histogram, "sample_sum", 2, D)
    _add(histogram, "bucket", 3, M, repeated=True, type_name="Bucket")
    _add(histogram, "created_timestamp", 15, M, type_name="Timestamp")
    _add(histogram, "schema", 5, S32)
    _add(histogram, "zero_threshold", 6, D)
    _add(histogram, "zero_count", 7, U64)
    _add(histogram, "zero_count_float", 8, D)
    _add(histogram, "negative_span", 9, M, repeated=True, type_name="BucketSpan")
    _add(histogram, "negative_delta", 10, S64, repeated=True)
    _add(histogram, "negative_count", 11, D, repeated=True)
    _add(histogram, "positive_span", 12, M, repeated=True, type_name="BucketSpan")
    _add(histogram, "positive_delta", 13, S64, repeated=True)
    _add(histogram, "positive_count", 14, D, repeated=True)
    _add(histogram, "exemplars", 16, M, repeated=True, type_name="Exemplar")

    metric = f.message_type.add(name="Metric")
    _add(metric, "label", 1, M, repeated=True, type_name="LabelPair")
    _add(metric, "gauge", 2, M, type_name="Gauge")
    _add(metric, "counter", 3, M, type_name="Counter")
    _add(metric, "summary", 4, M, type_name="Summary")
    _add(metric, "untyped", 5, M, type_name="Untyped")
    _add(metric, "histogram", 7, M, type_name="Histogram")
    _add(metric, "timestamp_ms", 6, I64)

    family = f.message_type.add(name="MetricFamily")
    _add(family, "name", 1, S)
    _add(family, "help", 2, S)
    _add(family, "type", 3, E, type_name="MetricType")
    _add(family, "metric", 4, M, repeated=True, type_name="Metric")
    _add(family, "unit", 5, S)
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PKG}.{name}"))


Timestamp: Any = _cls("Timestamp")
LabelPair: Any = _cls("LabelPair")
Gauge: Any = _cls("Gauge")
Untyped: Any = _cls("Untyped")
Exemplar: Any = _cls("Exemplar")
Counter: Any = _cls("Counter")
Quantile: Any = _cls("Quantile")
Summary: Any = _cls("Summary")
Bucket: Any = _cls("Bucket")
BucketSpan: Any = _cls("BucketSpan")
Histogram: Any = _cls("Histogram")
Metric: Any = _cls("Metric")
MetricFamily: Any = _cls("MetricFamily")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delimited(families: Iterable[Any]) -> bytes:
    """The body an exporter sends: each family serialized, prefixed by its length (uvarint)."""
    out = bytearray()
    for family in families:
        data = family.SerializeToString()
        out += _uvarint(len(data))
        out += data
    return bytes(out)
