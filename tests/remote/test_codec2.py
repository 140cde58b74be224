"""The remote-write 2.0 hand encoder against classes built from the schema written here
(`collector.remote.prompb2`): every field of what collector sends, decoded and checked."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.model.labels import Labels
from collector.model.value import STALE_NAN, STALE_NAN_BITS, float_bits
from collector.remote import codec, prompb2
from collector.remote.codec import DecodeError, compress, decompress
from collector.remote.codec2 import V2Transcoder, decode_v2, family_of
from collector.storage.series import SeriesRegistry

T0 = 1_700_000_000_000

REQS: Labels = (("__name__", "http_requests_total"), ("code", "200"), ("job", "api"))
UP: Labels = (("__name__", "up"), ("instance", "h:9100"), ("job", "api"))
LAT: Labels = (("__name__", "latency_seconds_bucket"), ("job", "api"), ("le", "0.5"))

META = [
    ("http_requests", "counter", "Requests served.", ""),
    ("latency_seconds", "histogram", "Request latency.", "seconds"),
    ("up", "gauge", "", ""),
]


def _v1(items: Sequence[tuple[Labels, float, int]]) -> bytes:
    return codec.encode_request(
        [codec.encode_labels(labels) for labels, _, _ in items],
        [value for _, value, _ in items],
        [ts for _, _, ts in items],
    )


def _parse(raw: bytes) -> Any:
    request = prompb2.Request()
    request.ParseFromString(raw)
    return request


def _labels(request: Any, series: Any) -> Labels:
    refs = list(series.labels_refs)
    return tuple(
        (request.symbols[refs[i]], request.symbols[refs[i + 1]]) for i in range(0, len(refs), 2)
    )


def test_every_field_of_a_request() -> None:
    """Symbols (element 0 ""), label refs in label order, samples, and metadata per series."""
    items = [(REQS, 7.0, T0), (UP, 1.0, T0), (LAT, 0.0, T0 + 5), (REQS, 8.0, T0 + 15_000)]
    raw, count = V2Transcoder(metadata=lambda: META).encode(_v1(items))
    assert count == 4
    request = _parse(raw)
    symbols = list(request.symbols)
    assert symbols[0] == ""
    assert len(symbols) == len(set(symbols)), "each string once"
    assert symbols == [
        "",
        "__name__",
        "http_requests_total",
        "code",
        "200",
        "job",
        "api",
        "Requests served.",
        "up",
        "instance",
        "h:9100",
        "latency_seconds_bucket",
        "le",
        "0.5",
        "Request latency.",
        "seconds",
    ]
    got = request.timeseries
    assert [_labels(request, s) for s in got] == [REQS, UP, LAT, REQS]
    assert [[(p.value, p.timestamp, p.start_timestamp) for p in s.samples] for s in got] == [
        [(7.0, T0, 0)],
        [(1.0, T0, 0)],
        [(0.0, T0 + 5, 0)],
        [(8.0, T0 + 15_000, 0)],
    ]
    assert all(len(s.histograms) == 0 and len(s.exemplars) == 0 for s in got)
    metas = [
        (s.metadata.type, symbols[s.metadata.help_ref], symbols[s.metadata.unit_ref]) for s in got
    ]
    counter = prompb2.Metadata.MetricType.Value("METRIC_TYPE_COUNTER")
    gauge = prompb2.Metadata.MetricType.Value("METRIC_TYPE_GAUGE")
    histogram = prompb2.Metadata.MetricType.Value("METRIC_TYPE_HISTOGRAM")
    assert metas == [
        (counter, "Requests served.", ""),
        (gauge, "", ""),
        (histogram, "Request latency.", "seconds"),
        (counter, "Requests served.", ""),
    ]
    # proto3 leaves absent refs out (0, the empty string): the gauge has a type only.
    assert got[1].metadata.help_ref == 0
    assert got[1].metadata.unit_ref == 0
    # The encoder's bytes are the canonical serialisation of what they decode to.
    assert request.SerializeToString() == raw


def test_without_metadata_no_metadata_field() -> None:
    """No metadata source (``metadata_config.send: false``) and unknown families: no field 5."""
    raw, _ = V2Transcoder().encode(_v1([(REQS, 1.0, T0)]))
    (series,) = _parse(raw).timeseries
    assert not series.HasField("metadata")
    raw, _ = V2Transcoder(metadata=lambda: [("other", "gauge", "h", "")]).encode(
        _v1([(REQS, 1.0, T0)])
    )
    (series,) = _parse(raw).timeseries
    assert not series.HasField("metadata")


@pytest.mark.parametrize(
    ("name", "family", "kind", "found"),
    [
        ("foo_total", "foo", "counter", True),
        ("foo_created", "foo", "counter", True),
        ("foo_bucket", "foo", "histogram", True),
        ("foo_count", "foo", "summary", True),
        ("foo_gsum", "foo", "gaugehistogram", True),
        ("foo_info", "foo", "info", True),
        ("foo_total", "foo_total", "counter", True),  # text format 0.0.4 names the family so
        ("foo_total", "foo", "gauge", False),  # a gauge adds no suffix
        ("foo_bucket", "foo", "summary", False),
        ("foo_sum", "foo", "unknown", False),
    ],
)
def test_family_of_a_series_name(name: str, family: str, kind: str, found: bool) -> None:
    """A series finds its family's metadata by name, or by a suffix its type adds."""
    families = {family: (kind, "help", "")}
    assert (family_of(name, families) is not None) is found


@pytest.mark.parametrize("ts", [T0, -1, -T0, 1, 127, 128, 2**62, 0, 2**42, 2**35 - 1, 2**49 + 3])
@pytest.mark.parametrize("value", [1.0, 0.0, -0.0, math.inf, -2.5, 5e-324])
def test_samples_of_every_layout(ts: int, value: float) -> None:
    """Fast (7-byte timestamp) and slow layouts, zero values and negative timestamps."""
    items = [(UP, value, ts), (REQS, value, ts)]
    raw, _ = V2Transcoder().encode(_v1(items))
    request = _parse(raw)
    got = [
        (_labels(request, s), [(p.value, p.timestamp) for p in s.samples])
        for s in request.timeseries
    ]
    assert got == [(UP, [(value, ts)]), (REQS, [(value, ts)])]


def test_staleness_marker_keeps_its_bits() -> None:
    """A stale marker arrives with NaN bits 0x7ff0000000000002 (both specs)."""
    raw, _ = V2Transcoder().encode(_v1([(UP, STALE_NAN, T0)]))
    (series,) = _parse(raw).timeseries
    assert float_bits(series.samples[0].value) == STALE_NAN_BITS


def test_a_series_bytes_are_reused_and_refs_are_per_request() -> None:
    """Each request has its own symbol table; the cached series give the same bytes again."""
    t = V2Transcoder(metadata=lambda: META)
    first, _ = t.encode(_v1([(UP, 1.0, T0), (REQS, 2.0, T0)]))
    second, _ = t.encode(_v1([(REQS, 2.0, T0)]))
    assert t.cached_series == 2
    alone, _ = V2Transcoder(metadata=lambda: META).encode(_v1([(REQS, 2.0, T0)]))
    assert second == alone
    assert decode_v2(first)[0] == [(UP, [(1.0, T0)]), (REQS, [(2.0, T0)])]


def test_series_not_sent_for_a_while_are_forgotten() -> None:
    """The cache is bounded by time: a series absent for two rotations is dropped."""
    now = [0.0]
    t = V2Transcoder(forget_after=10.0, clock=lambda: now[0])
    t.encode(_v1([(UP, 1.0, T0), (REQS, 1.0, T0)]))
    now[0] = 10.0
    t.encode(_v1([(UP, 1.0, T0)]))  # rotation: UP moves to the new generation
    assert t.cached_series == 1
    now[0] = 20.0
    raw, _ = t.encode(_v1([(UP, 2.0, T0)]))
    assert t.cached_series == 1
    assert decode_v2(raw)[0] == [(UP, [(2.0, T0)])]


def test_metadata_is_read_again_every_interval() -> None:
    """A family seen after the first read gets its metadata from the next read on."""
    now = [0.0]
    entries: list[tuple[str, str, str, str]] = []
    t = V2Transcoder(metadata=lambda: entries, metadata_every=60.0, clock=lambda: now[0])
    raw, _ = t.encode(_v1([(UP, 1.0, T0)]))
    assert not _parse(raw).timeseries[0].HasField("metadata")
    entries.append(("up", "gauge", "Target is up.", ""))
    now[0] = 30.0
    raw, _ = t.encode(_v1([(UP, 1.0, T0)]))
    assert not _parse(raw).timeseries[0].HasField("metadata")
    now[0] = 60.0
    raw, _ = t.encode(_v1([(UP, 1.0, T0)]))
    request = _parse(raw)
    assert request.symbols[request.timeseries[0].metadata.help_ref] == "Target is up."


def test_many_symbols_use_multi_byte_refs() -> None:
    """Refs past 127 and past the precomputed varints (16384) still decode right."""
    items = [
        ((("__name__", "m"), ("id", f"{i}"), ("v", f"x{i}")), float(i), T0) for i in range(9000)
    ]
    raw, count = V2Transcoder().encode(_v1(items))
    assert count == 9000
    series, histograms, exemplars, _ = decode_v2(raw)
    assert (histograms, exemplars) == (0, 0)
    assert series == [(labels, [(v, ts)]) for labels, v, ts in items]


def test_v1_metadata_fields_are_skipped() -> None:
    """A 1.0 body's metadata-only field (3) carries nothing 2.0 sends per request."""
    body = codec.encode_metadata_request([(1, "x", "h", "")]) + _v1([(UP, 1.0, T0)])
    raw, count = V2Transcoder().encode(body)
    assert count == 1
    assert decode_v2(raw)[0] == [(UP, [(1.0, T0)])]


def test_a_label_looking_like_a_sample_field_is_not_split_there() -> None:
    """A label value whose bytes make the fast layout's guess land inside it (the 13-byte slow
    Sample field of timestamp 5 follows ``\\x12\\x10`` + 3 bytes): the split is still where
    the labels end, for that series and for the same series in the fast layout."""
    labels: Labels = (("__name__", "m"), ("v", "abc\x12\x10xyz"))
    items = [(labels, 1.5, 5), (labels, 1.5, T0)]
    raw, _ = V2Transcoder().encode(_v1(items))
    assert decode_v2(raw)[0] == [(labels, [(1.5, 5)]), (labels, [(1.5, T0)])]


def test_broken_bodies_raise_decode_error() -> None:
    """A truncated body or an unexpected field is a `DecodeError`, never a wrong request."""
    good = _v1([(UP, 1.0, T0)])
    with pytest.raises(DecodeError):
        V2Transcoder().encode(good[:-3])
    unknown = b"\x2a\x00"  # a TimeSeries field 5, which 1.0 does not have
    body = b"\x0a" + bytes([len(unknown)]) + unknown
    with pytest.raises(DecodeError):
        V2Transcoder().encode(body)


def test_transcode_is_snappy_both_ways() -> None:
    """`transcode` reads and writes snappy blocks."""
    body, count = V2Transcoder().transcode(compress(_v1([(UP, 1.0, T0)])))
    assert count == 1
    assert decode_v2(decompress(body))[0] == [(UP, [(1.0, T0)])]


def test_the_encoder_batch_path_transcodes_exactly() -> None:
    """Bodies sealed by the real `BatchEncoder` (per-shard runs joined with the timestamp
    field) transcode to the same series and samples."""
    from collector.remote.encoder import BatchEncoder

    registry = SeriesRegistry()
    refs = [registry.acquire(labels) for labels in (UP, REQS, LAT)]
    sealed: list[bytes] = []
    encoder = BatchEncoder(
        series=registry,
        external_labels=(("cluster", "c1"),),
        relabel=None,
        max_samples_per_send=100,
        num_shards=1,
        on_sealed=lambda body, *_: sealed.append(body),
        clock=lambda: 0.0,
    )
    encoder.commit([(refs[0], 1.0, T0), (refs[1], 0.0, T0), (refs[2], 3.0, T0)])
    encoder.commit([(refs[0], 1.0, T0 + 1000), (refs[1], STALE_NAN, T0 + 1000)])
    encoder.seal_all()
    (body,) = sealed
    v1 = codec.decode_request(decompress(body))
    v2, _ = V2Transcoder().transcode(body)
    got = decode_v2(decompress(v2))[0]
    assert [(labels, [(struct.pack("<d", v), t) for v, t in s]) for labels, s in got] == [
        (labels, [(struct.pack("<d", v), t) for v, t in s]) for labels, s in v1
    ]
    assert all(dict(labels)["cluster"] == "c1" for labels, _ in got)


_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=8)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(_names, st.text(max_size=30), min_size=1, max_size=6),
            st.floats(allow_nan=False),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        max_size=30,
    )
)
def test_round_trip_equals_the_v1_body(items: list[tuple[dict[str, str], float, int]]) -> None:
    """Any 1.0 body: what 2.0 carries decodes to the series and samples 1.0 carries."""
    v1_items: list[tuple[Labels, float, int]] = [
        (tuple(sorted((k, v) for k, v in labels.items() if v)), value, ts)
        for labels, value, ts in items
    ]
    v1_items = [item for item in v1_items if item[0]]
    body = _v1(v1_items)
    raw, count = V2Transcoder().encode(body)
    assert count == len(v1_items)
    v1 = codec.decode_request(body)
    v2 = decode_v2(raw)[0]
    assert [(labels, [(float_bits(v), t) for v, t in s]) for labels, s in v2] == [
        (labels, [(float_bits(v), t) for v, t in s]) for labels, s in v1
    ]
