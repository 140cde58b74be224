"""Remote-write 1.0 protobuf message classes, built at runtime from a descriptor written in code.

There is no ``protoc`` in this project: the ``prometheus`` package of ``prompb/remote.proto`` and
``prompb/types.proto`` (the parts remote write 1.0 uses) is declared here as a
``FileDescriptorProto`` and turned into message classes with ``message_factory``. They are the
reference the hand encoder in `collector.remote.codec` is proven byte-compatible with, and the
decoder the receiver uses. They are never used to *encode* on the hot path.

Prometheus counterpart: ``prompb/remote.proto``, ``prompb/types.proto`` (``Histogram`` with its
``count``/``zero_count`` oneofs, ``BucketSpan`` and ``ResetHint``, reference §2).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from collector.remote.protodesc import add_field as _field

__all__ = [
    "BucketSpan",
    "Exemplar",
    "Histogram",
    "Label",
    "MetricMetadata",
    "Sample",
    "TimeSeries",
    "WriteRequest",
]

_F = descriptor_pb2.FieldDescriptorProto

_METRIC_TYPES = ("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO")


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The ``prometheus`` proto3 package as a descriptor."""
    f = descriptor_pb2.FileDescriptorProto(
        name="collector/prometheus_remote.proto", package="prometheus", syntax="proto3"
    )
    label = f.message_type.add(name="Label")
    _field(label, "name", 1, _F.TYPE_STRING)
    _field(label, "value", 2, _F.TYPE_STRING)

    sample = f.message_type.add(name="Sample")
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)

    exemplar = f.message_type.add(name="Exemplar")
    _field(exemplar, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(exemplar, "value", 2, _F.TYPE_DOUBLE)
    _field(exemplar, "timestamp", 3, _F.TYPE_INT64)

    span = f.message_type.add(name="BucketSpan")
    _field(span, "offset", 1, _F.TYPE_SINT32)
    _field(span, "length", 2, _F.TYPE_UINT32)

    _histogram(f)

    series = f.message_type.add(name="TimeSeries")
    _field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")
    _field(series, "exemplars", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Exemplar")
    _field(
        series, "histograms", 4, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Histogram"
    )

    metadata = f.message_type.add(name="MetricMetadata")
    kind = metadata.enum_type.add(name="MetricType")
    for number, name in enumerate((*_METRIC_TYPES, "STATESET")):
        kind.value.add(name=name, number=number)
    _field(
        metadata,
        "type",
        1,
        _F.TYPE_ENUM,
        type_name=".prometheus.MetricMetadata.MetricType",
    )
    _field(metadata, "metric_family_name", 2, _F.TYPE_STRING)
    _field(metadata, "help", 4, _F.TYPE_STRING)
    _field(metadata, "unit", 5, _F.TYPE_STRING)

    request = f.message_type.add(name="WriteRequest")
    _field(
        request,
        "timeseries",
        1,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".prometheus.TimeSeries",
    )
    _field(
        request,
        "metadata",
        3,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".prometheus.MetricMetadata",
    )
    request.reserved_range.add(start=2, end=3)
    return f


def _histogram(f: descriptor_pb2.FileDescriptorProto) -> None:
    """``prometheus.Histogram`` (fields 1-16; ``count`` and ``zero_count`` are oneofs, so a
    zero ``count_int`` is present on the wire and ``WhichOneof`` tells it from no count)."""
    h = f.message_type.add(name="Histogram")
    hint = h.enum_type.add(name="ResetHint")
    for number, name in enumerate(("UNKNOWN", "YES", "NO", "GAUGE")):
        hint.value.add(name=name, number=number)
    h.oneof_decl.add(name="count")
    h.oneof_decl.add(name="zero_count")
    spans = ".prometheus.BucketSpan"
    _field(h, "count_int", 1, _F.TYPE_UINT64, oneof=0)
    _field(h, "count_float", 2, _F.TYPE_DOUBLE, oneof=0)
    _field(h, "sum", 3, _F.TYPE_DOUBLE)
    _field(h, "schema", 4, _F.TYPE_SINT32)
    _field(h, "zero_threshold", 5, _F.TYPE_DOUBLE)
    _field(h, "zero_count_int", 6, _F.TYPE_UINT64, oneof=1)
    _field(h, "zero_count_float", 7, _F.TYPE_DOUBLE, oneof=1)
    _field(h, "negative_spans", 8, _F.TYPE_MESSAGE, repeated=True, type_name=spans)
    _field(h, "negative_deltas", 9, _F.TYPE_SINT64, repeated=True)
    _field(h, "negative_counts", 10, _F.TYPE_DOUBLE, repeated=True)
    _field(h, "positive_spans", 11, _F.TYPE_MESSAGE, repeated=True, type_name=spans)
    _field(h, "positive_deltas", 12, _F.TYPE_SINT64, repeated=True)
    _field(h, "positive_counts", 13, _F.TYPE_DOUBLE, repeated=True)
    _field(h, "reset_hint", 14, _F.TYPE_ENUM, type_name=".prometheus.Histogram.ResetHint")
    _field(h, "timestamp", 15, _F.TYPE_INT64)
    _field(h, "custom_values", 16, _F.TYPE_DOUBLE, repeated=True)


# A private pool: another library registering its own ``prometheus.*`` types cannot clash.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


# Typed ``Any``: the classes are built at runtime, so no stub can describe their fields.
Label: Any = _cls("Label")
Sample: Any = _cls("Sample")
BucketSpan: Any = _cls("BucketSpan")
Histogram: Any = _cls("Histogram")
Exemplar: Any = _cls("Exemplar")
TimeSeries: Any = _cls("TimeSeries")
MetricMetadata: Any = _cls("MetricMetadata")
WriteRequest: Any = _cls("WriteRequest")
