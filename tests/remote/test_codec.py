"""The hand encoder against the protobuf classes: same bytes, same values, same NaN bits."""

from __future__ import annotations

import math
import struct

import cramjam
import pytest

from collector.model.labels import Labels
from collector.model.value import NORMAL_NAN, STALE_NAN, STALE_NAN_BITS, float_bits
from collector.remote import codec, prompb

UP: Labels = (("__name__", "up"), ("instance", "h:9100"), ("job", "node"))


def _reference(items: list[tuple[Labels, float, int]]) -> bytes:
    request = prompb.WriteRequest()
    for labels, value, ts in items:
        series = request.timeseries.add()
        for name, label_value in labels:
            series.labels.add(name=name, value=label_value)
        series.samples.add(value=value, timestamp=ts)
    out: bytes = request.SerializeToString()
    return out


def _ours(items: list[tuple[Labels, float, int]]) -> bytes:
    return codec.encode_request(
        [codec.encode_labels(labels) for labels, _, _ in items],
        [value for _, value, _ in items],
        [ts for _, _, ts in items],
    )


LABEL_SETS: list[Labels] = [
    UP,
    (("__name__", "ünïcödé_metric"), ("emoji", "📈"), ("job", "j")),
    (("__name__", "long"), ("v", "x" * 300)),
    (("__name__", "m"), ("a", "b" * 20000)),
    (),
]


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_labels_bytes_match_protobuf(labels: Labels) -> None:
    """encode_labels is exactly the Label fields protobuf serialises (UTF-8, long values)."""
    series = prompb.TimeSeries()
    for name, value in labels:
        series.labels.add(name=name, value=value)
    assert codec.encode_labels(labels) == series.SerializeToString()


VALUES = [1.0, -2.5, 1e308, math.inf, -math.inf, 5e-324, 0.1, 123456789.123]
TIMESTAMPS = [1_700_000_000_123, -1, -1_700_000_000_000, 1, 127, 128, 2**62, 0, 2**42, 2**35 - 1]


@pytest.mark.parametrize("ts", TIMESTAMPS)
def test_request_bytes_match_protobuf(ts: int) -> None:
    """A request of many series and values equals SerializeToString, fast and slow paths alike."""
    items = [(labels, value, ts) for labels in LABEL_SETS for value in VALUES]
    assert _ours(items) == _reference(items)


def test_zero_value_is_omitted_like_prometheus() -> None:
    """+0.0 matches protobuf; -0.0 is sent as +0.0 (spec §12), the one deliberate difference."""
    zero = [(UP, 0.0, 1_700_000_000_000)]
    assert _ours(zero) == _reference(zero)
    negative_zero = [(UP, -0.0, 1_700_000_000_000)]
    assert _ours(negative_zero) == _reference(zero)
    assert _ours(negative_zero) != _reference(negative_zero)
    (((_, samples),)) = codec.decode_request(_ours(negative_zero))
    assert float_bits(samples[0][0]) == 0


def test_nan_bits_survive() -> None:
    """The stale marker and the normal NaN keep their exact bits through encode and decode."""
    items = [(UP, STALE_NAN, 1_700_000_000_000), (UP, NORMAL_NAN, 1_700_000_000_001)]
    body = _ours(items)
    assert body == _reference(items)
    decoded = codec.decode_request(body)
    assert float_bits(decoded[0][1][0][0]) == STALE_NAN_BITS
    assert float_bits(decoded[1][1][0][0]) == float_bits(NORMAL_NAN)


def test_negative_timestamp_is_ten_byte_varint() -> None:
    """A negative int64 is its 64-bit two's complement: 10 varint bytes."""
    assert codec.varint(-1) == b"\xff" * 9 + b"\x01"
    assert len(codec.timestamp_field(-1_700_000_000_000)) == 11
    decoded = codec.decode_request(_ours([(UP, 1.0, -5)]))
    assert decoded == [(UP, [(1.0, -5)])]


def test_decode_round_trip_values() -> None:
    """decode_request returns the labels and (value, ts) pairs that were encoded."""
    items = [(UP, 3.5, 1_700_000_000_000), (LABEL_SETS[1], -1.0, 42)]
    assert codec.decode_request(_ours(items)) == [
        (UP, [(3.5, 1_700_000_000_000)]),
        (LABEL_SETS[1], [(-1.0, 42)]),
    ]


def test_empty_batch() -> None:
    """An empty batch is an empty WriteRequest: zero bytes, decoding to no series."""
    assert _ours([]) == b"" == _reference([])
    assert codec.decode_request(b"") == []
    assert codec.decompress(codec.compress(b"")) == b""


def test_metadata_only_request_matches_protobuf() -> None:
    """Metadata requests carry only field 3 and equal protobuf's bytes."""
    entries = [
        (1, "http_requests_total", "Requests.", ""),
        (2, "temp", "", "celsius"),
        (0, "x", "", ""),
    ]
    request = prompb.WriteRequest()
    for kind, family, help_text, unit in entries:
        request.metadata.add(type=kind, metric_family_name=family, help=help_text, unit=unit)
    body = codec.encode_metadata_request(entries)
    assert body == request.SerializeToString()
    assert codec.decode_metadata(body) == entries
    assert codec.decode_request(body) == []


def test_snappy_is_block_format() -> None:
    """compress is the raw block format (no stream identifier) and round-trips."""
    body = _ours([(UP, float(i), 1_700_000_000_000 + i) for i in range(500)])
    compressed = codec.compress(body)
    assert not compressed.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == body
    assert codec.decompress(compressed) == body
    assert len(compressed) < len(body)


def test_bad_input_raises_decode_error() -> None:
    """Garbage snappy or protobuf raises codec.DecodeError, not a library error."""
    with pytest.raises(codec.DecodeError, match="snappy"):
        codec.decompress(b"\xff\xff\xff\xff\xff")
    with pytest.raises(codec.DecodeError, match="WriteRequest"):
        codec.decode_request(b"\x0a\xff\x01abc")


def test_fast_prefix_layout() -> None:
    """series_code's prefix + packed value + timestamp field is one whole TimeSeries."""
    label_bytes, prefix = codec.series_code(codec.encode_labels(UP))
    piece = prefix + struct.pack("<d", 2.0) + codec.timestamp_field(1_700_000_000_000)
    assert piece == codec.encode_timeseries(label_bytes, 2.0, 1_700_000_000_000)
    assert piece == _reference([(UP, 2.0, 1_700_000_000_000)])
