"""The encoder's per-series cache (`collector.remote.encoder`): one bytes object per series in
the dict of its last value's form (value prefix or zero encoding), moved across when a value
leaves or reaches zero; dropped series, exemplars and the slow timestamp path read the same
bytes; and what it costs in memory per series."""

from __future__ import annotations

import gc
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from collector.model.exemplar import encode as encode_exemplar
from collector.model.labels import Labels
from collector.model.value import STALE_NAN, float_bits
from collector.remote import prompb
from collector.remote.codec import decompress, encode_labels
from collector.remote.encoder import BatchEncoder, Relabel
from collector.storage.series import SeriesRegistry

T0 = 1_700_000_000_000
SLOW_T0 = 5
"""Timestamps this small have a timestamp field shorter than the fast layout's 7 bytes."""

Sealed = list[tuple[bytes, int, int, int]]


def make(
    registry: SeriesRegistry,
    sealed: Sealed,
    *,
    shards: int = 2,
    relabel: Relabel | None = None,
    per_send: int = 1000,
) -> BatchEncoder:
    return BatchEncoder(
        series=registry,
        external_labels=(("cluster", "c1"),),
        relabel=relabel,
        max_samples_per_send=per_send,
        num_shards=shards,
        on_sealed=lambda *batch: sealed.append(batch),
        clock=lambda: 0.0,
    )


def cached(entries: list[bytes | None]) -> set[int]:
    """The refs that have an entry in one of the encoder's float lists (``_value``, ``_zero``)."""
    return {ref for ref, entry in enumerate(entries) if entry is not None}


def received(sealed: Sealed) -> list[tuple[str, int, int, int]]:
    """``(series i, value bits, ts, shard)`` of every sample sealed, in batch order."""
    out = []
    for body, count, _, shard in sealed:
        request = prompb.WriteRequest()
        request.ParseFromString(decompress(body))
        assert count == len(request.timeseries)
        for series in request.timeseries:
            labels = {label.name: label.value for label in series.labels}
            assert labels["cluster"] == "c1"
            out += [(labels["i"], float_bits(x.value), x.timestamp, shard) for x in series.samples]
    return out


def series_labels(i: int) -> Labels:
    return (("__name__", "m"), ("i", str(i)), ("job", "j" * (i % 3 * 90)))  # 0, 90, 180 B


VALUES = st.sampled_from([0.0, -0.0, 1.0, 2.5, -7.0, float("inf"), float("nan"), STALE_NAN])


@given(
    rounds=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 5), VALUES), min_size=1, max_size=12),
            st.booleans(),  # a slow timestamp
            st.integers(1, 3),  # shards from this round on
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_sample_arrives_with_its_bits_in_its_shard(
    rounds: list[tuple[list[tuple[int, float]], bool, int]],
) -> None:
    """Values moving between zero and non-zero, NaNs, reshards and slow timestamps: each
    sample is sent once, with its value's bits (``-0.0`` as ``0.0``, which proto3 omits), in
    shard ``ref % shards``; after a fast round each series is in the dict of its last form."""
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(6)]
    sealed: Sealed = []
    encoder = make(registry, sealed)
    expected = []
    for n, (samples, slow, shards) in enumerate(rounds):
        encoder.seal_all()
        encoder.set_shards(shards)
        ts = (SLOW_T0 if slow else T0) + n
        batch = [(refs[i], value, ts) for i, value in samples]
        counts = encoder.commit(batch)
        assert (counts.unknown, counts.dropped_series, counts.highest_ts) == (0, 0, ts)
        for i, value in samples:
            expected.append(
                (str(i), float_bits(0.0 if value == 0 else value), ts, refs[i] % shards)
            )
        if not slow:
            last = dict(samples)
            for i, value in last.items():
                assert refs[i] in cached(encoder._value if value else encoder._zero)
            assert not cached(encoder._value) & cached(encoder._zero)
    encoder.seal_all()
    got = received(sealed)
    assert sorted(got) == sorted(expected)
    # Per series, order is kept (batches of one shard are sealed in order).
    for name in map(str, range(6)):
        assert [e for e in got if e[0] == name] == [e for e in expected if e[0] == name]


def test_an_unchanged_value_reuses_its_encoding_until_it_changes() -> None:
    """A non-zero series is kept as its last encoding: a value with the same bits (StaleNaN
    again too) is sent as that very bytes object, no pack; a changed one replaces it; leaving
    zero encodes the value again."""
    registry = SeriesRegistry()
    ref = registry.acquire(series_labels(1))
    sealed: Sealed = []
    encoder = make(registry, sealed, shards=1)
    values = [2.5, 2.5, 2.5, 3.0, 3.0, 0.0, 4.0, 4.0, STALE_NAN, STALE_NAN, 5.0]
    reused = []
    last: bytes | None = None
    for n, value in enumerate(values):
        encoder.commit([(ref, value, T0 + n)])
        entry = encoder._value[ref] if encoder._value[ref] is not None else encoder._zero[ref]
        assert type(entry) is bytes
        reused.append(entry is last)
        last = entry
    assert reused == [
        False, True, True, False, True, False, False, True, False, True, False,
    ]  # fmt: skip
    encoder.seal_all()
    assert [(v, t) for _, v, t, _ in received(sealed)] == [
        (float_bits(v), T0 + n) for n, v in enumerate(values)
    ]


def test_dropped_series_are_relabeled_once_and_counted_on_every_path() -> None:
    calls: list[str] = []

    def relabel(labels: dict[str, str]) -> dict[str, str] | None:
        calls.append(labels["i"])
        return None if labels["i"] == "1" else labels

    registry = SeriesRegistry()
    kept, dropped = (registry.acquire(series_labels(i)) for i in range(2))
    sealed: Sealed = []
    encoder = make(registry, sealed, relabel=relabel)
    for n, value in enumerate([3.0, 0.0, 0.0, 4.0]):
        counts = encoder.commit([(kept, value, T0 + n), (dropped, value, T0 + n)])
        assert counts.dropped_series == 1
    assert encoder.commit([(dropped, 1.0, SLOW_T0)]).dropped_series == 1
    exemplar = encode_exemplar((("trace_id", "t"),), 1.0, T0)
    assert encoder.commit_exemplars([(dropped, exemplar, T0)]).dropped_series == 1
    assert encoder.commit_histograms([(dropped, b"\x08\x01", T0)]).dropped_series == 1
    assert sorted(calls) == ["0", "1"]
    encoder.seal_all()
    assert [(i, v) for i, v, *_ in received(sealed)] == [
        ("0", float_bits(v)) for v in (3.0, 0.0, 0.0, 4.0)
    ]
    encoder.forget([dropped])
    assert dropped not in cached(encoder._value)
    assert dropped not in cached(encoder._zero)
    assert encoder.cached_series == 1


def test_exemplars_take_the_labels_of_either_form() -> None:
    """An exemplar's series labels come from the value prefix or the zero encoding, whichever
    holds the series; the bytes are the series' label fields exactly."""
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(3)]  # labels 0, 90, 180 B
    sealed: Sealed = []
    encoder = make(registry, sealed, shards=1)
    encoder.commit([(refs[0], 1.0, T0), (refs[1], 0.0, T0)])  # value form, zero form
    body = encode_exemplar((("trace_id", "abc"),), 2.0, T0)
    counts = encoder.commit_exemplars([(ref, body, T0) for ref in refs])  # refs[2]: resolved
    assert (counts.unknown, counts.dropped_series) == (0, 0)
    encoder.seal_all()
    request = prompb.WriteRequest()
    request.ParseFromString(decompress(sealed[0][0]))
    got = [s for s in request.timeseries if s.exemplars]
    want = [(("cluster", "c1"), *series_labels(i)) for i in range(3)]
    assert [tuple((lb.name, lb.value) for lb in s.labels) for s in got] == [
        tuple(sorted(p for p in w if p[1])) for w in want
    ]
    assert [s.exemplars[0].value for s in got] == [2.0] * 3


def test_released_refs_are_forgotten_and_unknown_refs_counted() -> None:
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(4)]
    sealed: Sealed = []
    encoder = make(registry, sealed)
    encoder.commit([(ref, float(i % 2), T0) for i, ref in enumerate(refs)])
    assert encoder.cached_series == 4
    registry.release(refs[0])
    registry.release(refs[1])
    encoder.forget(registry.drain_released())
    assert encoder.cached_series == 2
    counts = encoder.commit([(ref, 1.0, T0 + 1) for ref in refs])
    assert counts.unknown == 2
    assert encoder.cached_series == 2


def test_a_recycled_ref_is_sent_with_its_new_labels() -> None:
    """The agent's series GC: released refs are forgotten by the writers, then recycled; a new
    series given a recycled ref is encoded afresh, never with the old series' bytes, in
    either form (value prefix or zero encoding)."""
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(4)]
    sealed: Sealed = []
    encoder = make(registry, sealed)
    encoder.commit([(ref, float(i % 2), T0) for i, ref in enumerate(refs)])
    for ref in refs:
        registry.release(ref)
    released = registry.drain_released()
    encoder.forget(released)
    registry.recycle(released)
    new = [registry.acquire(series_labels(10 + i)) for i in range(4)]
    assert sorted(new) == sorted(refs)
    encoder.commit([(ref, float(i % 2), T0 + 1) for i, ref in enumerate(new)])
    encoder.seal_all()
    got = {(i, ts) for i, _, ts, _ in received(sealed)}
    assert {(i, ts) for i, ts in got if ts == T0 + 1} == {(str(10 + i), T0 + 1) for i in range(4)}


def test_one_encoding_per_series_in_memory() -> None:
    """What the encoder keeps per series is its label bytes once plus a dict slot: at most
    the label bytes + 110 B whatever the values (the former object with three encodings and
    the last value held three times the labels)."""
    registry = SeriesRegistry()
    count = 3000
    refs = [
        registry.acquire((("__name__", f"node_metric_{i % 300}"), ("instance", f"h{i}:9100")))
        for i in range(count)
    ]
    label_bytes = sum(
        len(encode_labels((("__name__", f"node_metric_{i % 300}"), ("cluster", "c1"),
                           ("instance", f"h{i}:9100"))))
        for i in range(count)
    )  # fmt: skip
    sealed: Sealed = []
    encoder = make(registry, sealed, shards=4, per_send=10_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(4):
            # a third at zero, the rest changing every scrape
            encoder.commit([(ref, float((i % 3) and i + n), T0 + n) for i, ref in enumerate(refs)])
            encoder.seal_all()
            sealed.clear()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert encoder.cached_series == count
    per_series = (kept - label_bytes) / count
    assert per_series < 110, f"{per_series:.0f} B per series on top of its label bytes"
