"""Remote-write 2.0 protobuf message classes, built at runtime from a descriptor written in code.

Like `collector.remote.prompb` (remote write 1.0), there is no ``protoc`` here: the
``io.prometheus.write.v2`` package (spec 2.0-rc.4) is declared as a ``FileDescriptorProto``
and turned into classes with ``message_factory``. The receiver decodes 2.0 requests with them
(`collector.remote.receiver`) and the tests check the hand encoder (`collector.remote.codec2`)
against them, field by field. They never encode on the hot path.

Field numbers and types are those of the upstream schema (``Request`` reserves 1-3 so that a 1.0
body decodes as an empty message; ``TimeSeries`` reserves 6, the pre-rc.4 created timestamp;
``Metadata`` has no field 2).

Prometheus counterpart: ``prompb/io/prometheus/write/v2/types.proto``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from collector.remote.protodesc import add_field

__all__ = [
    "BucketSpan",
    "Exemplar",
    "Histogram",
    "Metadata",
    "Request",
    "Sample",
    "TimeSeries",
]

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "io.prometheus.write.v2"

METRIC_TYPES = (
    "METRIC_TYPE_UNSPECIFIED",
    "METRIC_TYPE_COUNTER",
    "METRIC_TYPE_GAUGE",
    "METRIC_TYPE_HISTOGRAM",
    "METRIC_TYPE_GAUGEHISTOGRAM",
    "METRIC_TYPE_SUMMARY",
    "METRIC_TYPE_INFO",
    "METRIC_TYPE_STATESET",
)
"""``Metadata.MetricType`` names by number (the same numbers as 1.0's ``MetricType``)."""


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    oneof: int | None = None,
) -> None:
    """`add_field` with ``type_name`` a message of this package."""
    qualified = f".{_PKG}.{type_name}" if type_name else ""
    add_field(message, name, number, kind, repeated=repeated, type_name=qualified, oneof=oneof)


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The ``io.prometheus.write.v2`` proto3 package as a descriptor."""
    f = descriptor_pb2.FileDescriptorProto(
        name="collector/io_prometheus_write_v2.proto", package=_PKG, syntax="proto3"
    )
    request = f.message_type.add(name="Request")
    request.reserved_range.add(start=1, end=4)
    _field(request, "symbols", 4, _F.TYPE_STRING, repeated=True)
    _field(request, "timeseries", 5, _F.TYPE_MESSAGE, repeated=True, type_name="TimeSeries")

    series = f.message_type.add(name="TimeSeries")
    series.reserved_range.add(start=6, end=7)
    _field(series, "labels_refs", 1, _F.TYPE_UINT32, repeated=True)
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name="Sample")
    _field(series, "histograms", 3, _F.TYPE_MESSAGE, repeated=True, type_name="Histogram")
    _field(series, "exemplars", 4, _F.TYPE_MESSAGE, repeated=True, type_name="Exemplar")
    _field(series, "metadata", 5, _F.TYPE_MESSAGE, type_name="Metadata")

    exemplar = f.message_type.add(name="Exemplar")
    _field(exemplar, "labels_refs", 1, _F.TYPE_UINT32, repeated=True)
    _field(exemplar, "value", 2, _F.TYPE_DOUBLE)
    _field(exemplar, "timestamp", 3, _F.TYPE_INT64)

    sample = f.message_type.add(name="Sample")
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)
    _field(sample, "start_timestamp", 3, _F.TYPE_INT64)

    metadata = f.message_type.add(name="Metadata")
    kind = metadata.enum_type.add(name="MetricType")
    for number, name in enumerate(METRIC_TYPES):
        kind.value.add(name=name, number=number)
    _field(metadata, "type", 1, _F.TYPE_ENUM, type_name="Metadata.MetricType")
    _field(metadata, "help_ref", 3, _F.TYPE_UINT32)
    _field(metadata, "unit_ref", 4, _F.TYPE_UINT32)

    histogram = f.message_type.add(name="Histogram")
    histogram.oneof_decl.add(name="count")
    histogram.oneof_decl.add(name="zero_count")
    hint = histogram.enum_type.add(name="ResetHint")
    for number, name in enumerate(
        ("RESET_HINT_UNSPECIFIED", "RESET_HINT_YES", "RESET_HINT_NO", "RESET_HINT_GAUGE")
    ):
        hint.value.add(name=name, number=number)
    _field(histogram, "count_int", 1, _F.TYPE_UINT64, oneof=0)
    _field(histogram, "count_float", 2, _F.TYPE_DOUBLE, oneof=0)
    _field(histogram, "sum", 3, _F.TYPE_DOUBLE)
    _field(histogram, "schema", 4, _F.TYPE_SINT32)
    _field(histogram, "zero_threshold", 5, _F.TYPE_DOUBLE)
    _field(histogram, "zero_count_int", 6, _F.TYPE_UINT64, oneof=1)
    _field(histogram, "zero_count_float", 7, _F.TYPE_DOUBLE, oneof=1)
    _field(histogram, "negative_spans", 8, _F.TYPE_MESSAGE, repeated=True, type_name="BucketSpan")
    _field(histogram, "negative_deltas", 9, _F.TYPE_SINT64, repeated=True)
    _field(histogram, "negative_counts", 10, _F.TYPE_DOUBLE, repeated=True)
    _field(histogram, "positive_spans", 11, _F.TYPE_MESSAGE, repeated=True, type_name="BucketSpan")
    _field(histogram, "positive_deltas", 12, _F.TYPE_SINT64, repeated=True)
    _field(histogram, "positive_counts", 13, _F.TYPE_DOUBLE, repeated=True)
    _field(histogram, "reset_hint", 14, _F.TYPE_ENUM, type_name="Histogram.ResetHint")
    _field(histogram, "timestamp", 15, _F.TYPE_INT64)
    _field(histogram, "custom_values", 16, _F.TYPE_DOUBLE, repeated=True)
    _field(histogram, "start_timestamp", 17, _F.TYPE_INT64)

    span = f.message_type.add(name="BucketSpan")
    _field(span, "offset", 1, _F.TYPE_SINT32)
    _field(span, "length", 2, _F.TYPE_UINT32)
    return f


# A private pool, as in `collector.remote.prompb`.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PKG}.{name}"))


# Typed ``Any``: the classes are built at runtime, so no stub can describe their fields.
Request: Any = _cls("Request")
TimeSeries: Any = _cls("TimeSeries")
Exemplar: Any = _cls("Exemplar")
Sample: Any = _cls("Sample")
Metadata: Any = _cls("Metadata")
Histogram: Any = _cls("Histogram")
BucketSpan: Any = _cls("BucketSpan")
