"""Layouts of earlier 2.0 requests (`collector.remote.v2layout`): a batch with the same series
in the same order is written from the last one's layout, as far as it matches, and the request
is the same bytes (so the same decoded request) as the transcoder writes without layouts."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model.exemplar import encode as exemplar_bytes
from collector.model.histogram import NativeHistogram, encode
from collector.model.labels import Labels
from collector.model.value import STALE_NAN
from collector.remote import codec
from collector.remote.codec2 import V2Transcoder, decode_v2
from collector.remote.v2layout import Layout, first_key, replay

T0 = 1_700_000_000_000

POOL: list[Labels] = [
    (("__name__", f"m{i % 4}_total"), ("instance", f"h{i % 3}:9100"), ("job", "j"), ("k", str(i)))
    for i in range(12)
]
META = [(f"m{i}", "counter", f"Help of m{i}.", "seconds" if i % 2 else "") for i in range(4)]

Item = tuple[int, str, float, int]
"""``(series index in POOL, kind: "s" sample / "h" histogram / "e" exemplar, value, ts)``."""


def _v1(items: Sequence[Item]) -> bytes:
    parts: list[bytes] = []
    for index, kind, value, ts in items:
        labels = codec.encode_labels(POOL[index])
        if kind == "s":
            parts.append(codec.encode_timeseries(labels, value, ts))
        elif kind == "h":
            h = NativeHistogram(schema=0, count=1, total=value, zero_count=1)
            parts.append(codec.encode_histogram_series(labels, encode(h), ts))
        else:
            parts.append(
                codec.encode_exemplar_series(labels, exemplar_bytes([("trace_id", "t")], value, ts))
            )
    return b"".join(parts)


def _samples(indexes: Sequence[int], value: float, ts: int = T0) -> list[Item]:
    return [(i, "s", value + i, ts) for i in indexes]


def _layout(raw: bytes) -> Layout:
    transcoder = V2Transcoder(metadata=lambda: META)
    transcoder.encode(raw)
    (layout,) = transcoder._layouts.values()
    return layout


def test_the_same_series_are_replayed_whole() -> None:
    """Same series, same order, new values and timestamp: every series from the layout."""
    layout = _layout(_v1(_samples(range(12), 1.0)))
    raw = _v1(_samples(range(12), 5.0, T0 + 15_000))
    out, pos, done, exact = replay(layout, raw)
    assert (pos, done, exact) == (len(raw), 12, True)
    assert layout.table + b"".join(out) == _plain(raw)


def _plain(raw: bytes) -> bytes:
    return V2Transcoder(metadata=lambda: META, layouts=False).encode(raw)[0]


def test_a_sample_field_of_another_length_is_stepped_over() -> None:
    """Values that turned 0 (no value field: 9 bytes less) at 3 and 8, and from 0 back at 10:
    every series still comes from the layout, the ones after each at their new offsets."""
    first = _samples(range(12), 1.0)
    first[10] = (10, "s", 0.0, T0)
    layout = _layout(_v1(first))
    items = _samples(range(12), 2.0, T0 + 15_000)
    items[3] = (3, "s", 0.0, T0 + 15_000)
    items[8] = (8, "s", -0.0, T0 + 15_000)
    raw = _v1(items)
    out, pos, done, exact = replay(layout, raw)
    assert (pos, done, exact) == (len(raw), 12, False)
    assert layout.table + b"".join(out) == _plain(raw)


def test_replay_stops_at_the_first_series_that_differs() -> None:
    """Another series at 5, a histogram at 7 (after a zero value at 2), a cut body: the series
    before it are replayed, from where it starts the ordinary way."""
    layout = _layout(_v1(_samples(range(12), 1.0)))
    other = _samples(range(12), 2.0)
    other[5] = (0, "s", 2.0, T0)
    histogram = _samples(range(12), 2.0)
    histogram[2] = (2, "s", 0.0, T0)
    histogram[7] = (7, "h", 2.0, T0)
    for items, matched, exact in ((other, 5, True), (histogram, 7, False)):
        raw = _v1(items)
        out, pos, done, same_offsets = replay(layout, raw)
        assert (done, same_offsets) == (matched, exact)
        assert pos == len(_v1(items[:matched]))
        assert b"".join(out) in _plain(raw)  # the series right after the symbol table
    whole = _v1(_samples(range(12), 2.0))
    assert replay(layout, whole[:-1])[1:] == (len(_v1(_samples(range(11), 2.0))), 11, True)
    assert replay(layout, _v1(_samples(range(1, 12), 2.0)))[1:] == (0, 0, True)


def test_first_key_is_the_labels_of_the_first_series() -> None:
    assert first_key(_v1(_samples([4, 1], 1.0))) == codec.encode_labels(POOL[4])
    assert first_key(b"") is None
    assert first_key(b"\x1a\x00") is None  # a metadata field first


def test_layouts_are_bounded() -> None:
    """Beyond the series bound the least recently used layouts go."""
    import collector.remote.codec2 as codec2

    transcoder = V2Transcoder()
    bound = codec2._MAX_LAYOUT_SERIES
    try:
        codec2._MAX_LAYOUT_SERIES = 24
        for first in range(6):  # six layouts of 12 series each, each beginning elsewhere
            order = [first, *(i for i in range(12) if i != first)]
            transcoder.encode(_v1(_samples(order, 1.0)))
        assert sum(map(len, transcoder._layouts.values())) <= 24
        assert first_key(_v1(_samples([5], 1.0))) in transcoder._layouts
    finally:
        codec2._MAX_LAYOUT_SERIES = bound


_values = st.sampled_from([1.0, 2.5, STALE_NAN, -7.25, 1e300, 3.0, 4.0, 5.0, 6.0, 0.0, -0.0])
_timestamps = st.sampled_from([T0, T0 + 15_000, 0, 5, -1, 2**50])
_orders = st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12)


@st.composite
def _batches(draw: st.DrawFn) -> list[list[Item]]:
    """Batches over a few orders of series (so most repeat an earlier one, whole or in part),
    each item a sample (mostly), a histogram or an exemplar, values zero or not."""
    orders = draw(st.lists(_orders, min_size=1, max_size=3))
    batches: list[list[Item]] = []
    for _ in range(draw(st.integers(1, 8))):
        order = draw(st.sampled_from(orders))
        if draw(st.booleans()):
            order = order[: draw(st.integers(1, len(order)))] + draw(_orders)
        ts = draw(_timestamps)
        batch: list[Item] = []
        for index in order:
            kind = draw(st.sampled_from("sssssssssssssshe"))
            batch.append((index, kind, draw(_values), ts))
        batches.append(batch)
    return batches


@settings(max_examples=300)
@given(_batches(), st.booleans())
def test_same_request_with_and_without_layouts(batches: list[list[Item]], meta: bool) -> None:
    """Any sequence of batches: with layouts, every request is the same bytes, so the same
    decoded request, as without; metadata changing between batches included."""
    source = [META]
    clock = [0.0]
    kwargs = {"metadata": (lambda: source[0]) if meta else None, "clock": lambda: clock[0]}
    fast = V2Transcoder(metadata_every=1.0, **kwargs)  # type: ignore[arg-type]
    plain = V2Transcoder(metadata_every=1.0, layouts=False, **kwargs)  # type: ignore[arg-type]
    for i, batch in enumerate(batches):
        if i == 3:  # help texts change: new metadata fields, layouts recorded before are stale
            source[0] = [(f, k, h + " More.", u) for f, k, h, u in META]
        clock[0] += 1.0
        raw = _v1(batch)
        got, count = fast.encode(raw)
        want, want_count = plain.encode(raw)
        assert (got, count) == (want, want_count)
        series = decode_v2(got)[0]
        assert [labels for labels, _ in series] == [POOL[index] for index, *_ in batch]
        assert [[(struct.pack("<d", v), t) for v, t in samples] for _, samples in series] == [
            [(struct.pack("<d", v if v else 0.0), t)] if kind == "s" else []
            for _, kind, v, t in batch
        ]
