"""Native histograms: resolution rules as Prometheus's ``model/histogram`` and ``scrape`` have
them, and the remote-write ``Histogram`` bytes checked field by field by decoding them with
the classes of `collector.remote.prompb` (a descriptor written from reference §2)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.model.histogram import (
    NativeHistogram,
    encode,
    fit_bucket_limit,
    pick_schema,
    reduce_resolution,
)
from collector.remote import prompb


def decoded(h: NativeHistogram) -> Any:
    message = prompb.Histogram()
    message.ParseFromString(encode(h))
    return message


def test_integer_histogram_fields() -> None:
    """The spec's example (indexes -2..5 holding 3,5,0,0,1,0,3,2 once compacted): spans
    [[-2,2],[2,1],[1,2]], deltas [3,2,-4,2,-1]; oneofs present, zero scalars absent."""
    h = NativeHistogram(
        schema=3,
        count=17,
        total=-12.5,
        zero_threshold=0.001,
        zero_count=3,
        pos_index=[-2, -1, 2, 4, 5],
        pos_count=[3, 5, 1, 3, 2],
        neg_index=[7],
        neg_count=[2],
    )
    m = decoded(h)
    assert m.WhichOneof("count") == "count_int"
    assert m.count_int == 17
    assert m.sum == -12.5
    assert m.schema == 3
    assert m.zero_threshold == 0.001
    assert m.WhichOneof("zero_count") == "zero_count_int"
    assert m.zero_count_int == 3
    assert [(s.offset, s.length) for s in m.positive_spans] == [(-2, 2), (2, 1), (1, 2)]
    assert list(m.positive_deltas) == [3, 2, -4, 2, -1]
    assert [(s.offset, s.length) for s in m.negative_spans] == [(7, 1)]
    assert list(m.negative_deltas) == [2]
    assert not m.positive_counts
    assert not m.negative_counts
    assert m.reset_hint == 0
    assert m.timestamp == 0


def test_empty_integer_histogram_still_has_its_oneofs() -> None:
    """Go's gogo encoder writes a oneof even when zero: ``count_int: 0``,
    ``zero_count_int: 0``; nothing else (schema 0, sum 0, no spans)."""
    raw = encode(NativeHistogram(schema=0, count=0, total=0.0))
    assert raw == b"\x08\x00\x30\x00"
    m = decoded(NativeHistogram(schema=0, count=0, total=0.0))
    assert m.WhichOneof("count") == "count_int"
    assert m.WhichOneof("zero_count") == "zero_count_int"


def test_float_gauge_histogram_fields() -> None:
    """A float gauge histogram: count_float, zero_count_float, absolute counts, GAUGE hint."""
    h = NativeHistogram(
        schema=-2,
        count=7.5,
        total=3.0,
        zero_count=0.5,
        pos_index=[0, 1],
        pos_count=[3.5, 3.5],
        neg_index=[-3],
        neg_count=[0.25],
        is_float=True,
        gauge=True,
    )
    m = decoded(h)
    assert m.WhichOneof("count") == "count_float"
    assert m.count_float == 7.5
    assert m.WhichOneof("zero_count") == "zero_count_float"
    assert m.zero_count_float == 0.5
    assert m.schema == -2
    assert [(s.offset, s.length) for s in m.positive_spans] == [(0, 2)]
    assert list(m.positive_counts) == [3.5, 3.5]
    assert [(s.offset, s.length) for s in m.negative_spans] == [(-3, 1)]
    assert list(m.negative_counts) == [0.25]
    assert not m.positive_deltas
    assert m.reset_hint == prompb.Histogram.ResetHint.Value("GAUGE") == 3


def test_reduce_resolution_merges_neighbours() -> None:
    """Index i at schema s goes to ((i - 1) >> (s - t)) + 1 at schema t (``targetIdx``)."""
    h = NativeHistogram(
        schema=2,
        count=10,
        total=1.0,
        pos_index=[-3, -2, 0, 1, 2, 3, 9],
        pos_count=[1, 1, 1, 2, 3, 1, 1],
        neg_index=[1, 2],
        neg_count=[4, 5],
    )
    reduce_resolution(h, 1)
    # -3->-1, -2->-1, 0->0, 1->1, 2->1, 3->2, 9->5
    assert h.schema == 1
    assert h.pos_index == [-1, 0, 1, 2, 5]
    assert h.pos_count == [2, 1, 5, 1, 1]
    assert h.neg_index == [1]
    assert h.neg_count == [9]
    reduce_resolution(h, 3)  # never up
    assert h.schema == 1


@pytest.mark.parametrize(
    ("factor", "schema"),
    [
        (0, 8),
        (1, 8),
        (65536, -4),
        (256, -3),
        (16, -2),
        (4, -1),
        (2, 0),
        (1.4, 1),
        (1.1, 2),
        (1.09, 3),
        (1.04, 4),
        (1.02, 5),
        (1.01, 6),
        (1.005, 7),
        (1.002, 8),
        (1e9, -4),
    ],
)
def test_pick_schema_follows_the_documented_table(factor: float, schema: int) -> None:
    assert pick_schema(factor) == schema


def test_bucket_limit_lowers_the_schema_until_it_fits() -> None:
    h = NativeHistogram(schema=1, count=4, total=1.0, pos_index=[1, 2, 3, 4], pos_count=[1] * 4)
    assert fit_bucket_limit(h, 2)
    # schema 0: 1->1, 2->1, 3->2, 4->2
    assert (h.schema, h.pos_index, h.pos_count) == (0, [1, 2], [2, 2])
    wide = NativeHistogram(schema=-4, count=2, total=0.0, pos_index=[0, 9], pos_count=[1, 1])
    assert not fit_bucket_limit(wide, 1)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-4, 8),
    st.lists(st.tuples(st.integers(-300, 300), st.integers(1, 1000)), max_size=30),
    st.integers(-4, 8),
)
def test_reduction_keeps_the_population_and_the_boundaries(
    schema: int, buckets: list[tuple[int, int]], target: int
) -> None:
    """Lowering the schema keeps every observation in a bucket whose range contains the
    original bucket's range (upper bounds base^i, base = 2^(2^-schema))."""
    by_index = dict(buckets)
    index = sorted(by_index)
    h = NativeHistogram(
        schema=schema,
        count=sum(by_index.values()),
        total=0.0,
        pos_index=index,
        pos_count=[by_index[i] for i in index],
    )
    reduce_resolution(h, target)
    assert sum(h.pos_count) == h.count
    assert h.pos_index == sorted(set(h.pos_index))
    if target < schema:
        for i in index:
            j = ((i - 1) >> (schema - target)) + 1
            assert j in h.pos_index
            upper = 2 ** (i * 2.0**-schema)
            assert math.isclose(upper, 2 ** (j * 2.0**-target)) or upper < 2 ** (j * 2.0**-target)
