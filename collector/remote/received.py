"""What the remote-write receiver decoded, in the form the agent's own pipeline commits.

Pipeline position: between the receiver's HTTP handler (`collector.remote.receiver`, which
decompresses and caps a request) and its callback; with ``--web.enable-remote-write-receiver``
the agent acquires a series ref per received series and commits the request to its fanout,
as a scrape commits (`collector.storage.appender`): float samples, native histograms and
exemplars, so a relay (collector -> collector's receiver -> any destination) loses none.

A native histogram leaves here as the bytes of a remote-write 1.0 ``Histogram`` message
without its ``timestamp`` (field 15; the timestamp travels beside it, and the remote-write
encoder adds field 15 back, `collector.remote.codec.encode_histogram_series`), which is what
the scrape side commits (`collector.model.histogram.encode`). A 1.0 message is re-serialized
with ``timestamp`` cleared; a 2.0 one as well, less ``start_timestamp`` (17), which 1.0 has no
field for (the 2.0 ``Histogram`` shares fields 1-16 with 1.0's, reference §2). Every other
field is kept as received: spans, deltas or counts, reset hint. An exemplar leaves as the
bytes of a 1.0 ``Exemplar`` (labels, value, timestamp), a 2.0 one with its ``labels_refs``
resolved; that is what `collector.model.exemplar.encode` builds on the scrape side.

Custom-bucket histograms (schema -53, ``custom_values``) are not taken: collector has no
model for them, and Prometheus 3.7+ refuses to send them over remote write 1.0 (reference
§1.6); `Received.refused` says how many there were, for the receiver's 400.

Decoding uses the protobuf classes (`collector.remote.prompb`, `collector.remote.prompb2`):
requests are per batch, not per sample, and the classes are the compatibility check of the
hand encoders.

Prometheus counterpart: ``storage/remote/write_handler.go`` (``write``, ``writeV2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as _ProtobufDecodeError

from collector.model.labels import Labels
from collector.remote import prompb, prompb2
from collector.remote.codec import DecodedSeries, DecodeError

__all__ = ["CUSTOM_BUCKETS_SCHEMA", "Caps", "Received", "TooLarge", "decode_v1", "decode_v2"]

CUSTOM_BUCKETS_SCHEMA = -53
"""``Histogram.schema`` of a native histogram with custom buckets (NHCB)."""

Item = tuple[int, bytes, int]
"""``(index in Received.series, message bytes, timestamp ms)``."""


class TooLarge(DecodeError):
    """A request over a count cap, found before its samples were turned into objects."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        """``too_many_series`` or ``too_many_samples``: the receiver's counter label."""


@dataclass(frozen=True, slots=True)
class Caps:
    """Count caps checked on the parsed message, before any Python object per sample is
    made: a few megabytes of snappy can hold millions of empty samples (2 bytes each), which
    took seconds and gigabytes to turn into tuples (fuzzing). 0 means no cap."""

    max_series: int = 0
    max_samples: int = 0
    """Float samples plus native histograms, over all series of the request."""


def _check_caps(timeseries: Any, caps: Caps) -> None:
    count = len(timeseries)
    if caps.max_series and count > caps.max_series:
        raise TooLarge(
            "too_many_series",
            f"request has {count} series, more than {caps.max_series} "
            "(--web.remote-write-receiver.max-series-per-request)",
        )
    if caps.max_samples:
        samples = sum(len(series.samples) + len(series.histograms) for series in timeseries)
        if samples > caps.max_samples:
            raise TooLarge(
                "too_many_samples",
                f"request has {samples} samples, more than {caps.max_samples} "
                "(--web.remote-write-receiver.max-samples-per-request)",
            )


@dataclass(slots=True)
class Received:
    """One decoded request: every series in request order, and what it carried."""

    series: list[DecodedSeries] = field(default_factory=list)
    """Labels (wire order) and float samples of each ``TimeSeries`` (samples may be empty)."""
    histograms: list[Item] = field(default_factory=list)
    """Native histograms: 1.0 ``Histogram`` bytes without field 15, and their timestamps."""
    exemplars: list[Item] = field(default_factory=list)
    """Exemplars: 1.0 ``Exemplar`` bytes, and their timestamps."""
    refused: int = 0
    """Custom-bucket histograms left out (not in `histograms`)."""
    metadata: list[tuple[str, int, str, str]] = field(default_factory=list)
    """2.0 metadata ``(family, type, help, unit)``, deduplicated (read, not forwarded)."""

    @property
    def samples(self) -> int:
        """Float samples."""
        return sum(len(points) for _, points in self.series)


def _histogram(h: Any, message: Any) -> bytes | None:
    """``h`` as 1.0 ``Histogram`` bytes without the timestamp; None for custom buckets."""
    if h.schema == CUSTOM_BUCKETS_SCHEMA or len(h.custom_values):
        return None
    copy = message()
    copy.CopyFrom(h)
    copy.ClearField("timestamp")
    if message is prompb2.Histogram:
        copy.ClearField("start_timestamp")
    raw: bytes = copy.SerializeToString()
    return raw


def decode_v1(raw: bytes, caps: Caps = Caps()) -> Received:
    """An uncompressed 1.0 ``WriteRequest``; `DecodeError` when it is not one, `TooLarge`
    when it is over ``caps``."""
    message: Any = prompb.WriteRequest()
    try:
        message.ParseFromString(raw)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"invalid WriteRequest protobuf: {exc}") from exc
    _check_caps(message.timeseries, caps)
    out = Received()
    for i, series in enumerate(message.timeseries):
        labels: Labels = tuple((label.name, label.value) for label in series.labels)
        out.series.append((labels, [(s.value, s.timestamp) for s in series.samples]))
        for h in series.histograms:
            body = _histogram(h, prompb.Histogram)
            if body is None:
                out.refused += 1
            else:
                out.histograms.append((i, body, h.timestamp))
        for e in series.exemplars:
            out.exemplars.append((i, e.SerializeToString(), e.timestamp))
    return out


def decode_v2(raw: bytes, caps: Caps = Caps()) -> Received:
    """An uncompressed 2.0 ``Request``, symbols resolved; `DecodeError` when it is not one or
    a ref does not resolve, `TooLarge` when it is over ``caps``."""
    message: Any = prompb2.Request()
    try:
        message.ParseFromString(raw)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"invalid io.prometheus.write.v2.Request protobuf: {exc}") from exc
    _check_caps(message.timeseries, caps)
    symbols = list(message.symbols)
    if symbols and symbols[0] != "":
        raise DecodeError("symbols[0] must be the empty string")
    out = Received()
    metadata: dict[tuple[str, int, str, str], None] = {}
    try:
        for i, series in enumerate(message.timeseries):
            labels = _resolve(series.labels_refs, symbols, f"timeseries[{i}]")
            out.series.append((labels, [(s.value, s.timestamp) for s in series.samples]))
            for h in series.histograms:
                body = _histogram(h, prompb2.Histogram)
                if body is None:
                    out.refused += 1
                else:
                    out.histograms.append((i, body, h.timestamp))
            for j, e in enumerate(series.exemplars):
                pairs = _resolve(e.labels_refs, symbols, f"timeseries[{i}].exemplars[{j}]")
                exemplar = prompb.Exemplar(value=e.value, timestamp=e.timestamp)
                for name, value in pairs:
                    exemplar.labels.add(name=name, value=value)
                out.exemplars.append((i, exemplar.SerializeToString(), e.timestamp))
            if series.HasField("metadata"):
                meta = series.metadata
                family = dict(labels).get("__name__", "")
                metadata[family, meta.type, symbols[meta.help_ref], symbols[meta.unit_ref]] = None
    except IndexError as exc:
        raise DecodeError(f"a symbol ref is out of range ({len(symbols)} symbols)") from exc
    out.metadata = list(metadata)
    return out


def _resolve(refs: Any, symbols: list[str], where: str) -> Labels:
    if len(refs) % 2:
        raise DecodeError(f"{where}: odd number of labels_refs")
    return tuple((symbols[refs[j]], symbols[refs[j + 1]]) for j in range(0, len(refs), 2))
