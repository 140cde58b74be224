"""A destination that sends the scrape's own labels (no external labels, no write relabeling)
encodes every sample from its series' label set in the registry (``encode_labelled`` in C,
`_py_encode_labelled` its reference) and keeps no per-series encoding; the bytes it seals are
those of the per-series encodings the pure-Python encoder keeps.

Two levels, as for ``encode_run`` (``test_encoder_native.py``): the loop itself, C against the
reference on the same input (what each appends, where each stops); and whole encoders, C and
pure Python, fed the same commits (new series, zeros, NaNs, non-ASCII and long labels, a
histogram series' staleness marker, a released ref, two timestamps in one commit), compared on
every byte they seal and every count they return.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import native
from collector.model.labels import Labels
from collector.model.value import STALE_NAN
from collector.remote.encoder import BatchEncoder, _py_encode_labelled
from collector.storage.series import SeriesRegistry
from tests.remote.test_encoder_native import FLOATS, ROUNDS, T0, commit_of

needs_native = pytest.mark.skipif(not native.ACTIVE, reason=f"native extension {native.REASON}")

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=150)
"""Any valid text: ASCII or not, empty (proto3 omits the field), past 127 bytes (a two-byte
length)."""
LABEL_SET = st.lists(st.tuples(TEXT, TEXT), max_size=8).map(tuple)


@st.composite
def labelled_case(draw: st.DrawFn) -> tuple[list[Any], dict[int, bytes], list[Any], int, int]:
    live = draw(st.lists(LABEL_SET, min_size=1, max_size=6))
    label_sets: list[Any] = [None, *live, *draw(st.lists(st.none(), max_size=1))]  # free refs
    hist = dict.fromkeys(draw(st.sets(st.integers(0, len(label_sets)), max_size=1)), b"\x01")
    # Mostly live refs, else anything: free, past the list (the last two), a histogram's.
    good = st.integers(1, len(live))
    refs = st.one_of(good, good, good, st.integers(0, len(label_sets) + 1))
    values = st.one_of(st.sampled_from(FLOATS), st.floats())
    stamps = st.sampled_from([T0] * 6 + [T0 + 1])
    samples = draw(st.lists(st.tuples(refs, values, stamps), max_size=30))
    start = draw(st.integers(0, min(2, len(samples))))
    return label_sets, hist, samples, start, draw(st.integers(1, 4))


@needs_native
@given(case=labelled_case())
def test_c_loop_appends_and_stops_as_the_reference(
    case: tuple[list[Any], dict[int, bytes], list[Any], int, int],
) -> None:
    """Same bytes in the same runs, and the same stop: another timestamp, a free or unknown
    ref, a ref past the list, a histogram series."""
    from collector import _native

    label_sets, hist, samples, start, shards = case
    c_runs: list[list[bytes]] = [[] for _ in range(shards)]
    py_runs: list[list[bytes]] = [[] for _ in range(shards)]
    c_stop = _native.encode_labelled(samples, start, T0, label_sets, hist, c_runs)
    py_stop = _py_encode_labelled(samples, start, T0, label_sets, hist, py_runs)
    assert c_stop == py_stop
    assert c_runs == py_runs


@needs_native
def test_c_loop_leaves_what_it_cannot_encode_to_python() -> None:
    """More than 64 pairs, a lone surrogate (no UTF-8: Python raises, as `str.encode` does) and
    types the scrape path never makes stop the C loop there, with nothing appended for them."""
    from collector import _native

    long = tuple((f"l{i:02}", "v") for i in range(65))
    surrogate = (("__name__", "m"), ("bad", "\udc80"))
    plain = (("__name__", "m"),)
    label_sets: list[Any] = [None, plain, long, surrogate]
    cases: list[list[Any]] = [
        [(1, 1.0, T0), (2, 1.0, T0)],
        [(1, 1.0, T0), (3, 1.0, T0)],
        [(1, 1.0, T0), (1, 1, T0)],
        [(1, 1.0, T0), [1, 1.0, T0]],
    ]
    for samples in cases:
        runs: list[list[bytes]] = [[]]
        assert _native.encode_labelled(samples, 0, T0, label_sets, {}, runs) == 1
        assert len(runs[0]) == 1
    with pytest.raises(TypeError, match="label sets list"):
        _native.encode_labelled([], 0, T0, (), {}, [[]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="6 arguments"):
        _native.encode_labelled([], 0, T0, [], {})  # type: ignore[call-arg]


def series_labels(i: int) -> Labels:
    return (("__name__", "m"), ("i", str(i)), ("job", "ü" * (i % 3 * 70)))


def plain_encoder(registry: SeriesRegistry, sealed: list[Any], *, native: bool) -> BatchEncoder:
    return BatchEncoder(
        series=registry,
        external_labels=(),
        relabel=None,
        max_samples_per_send=7,
        num_shards=2,
        on_sealed=lambda *batch: sealed.append(batch),
        clock=lambda: 0.0,
        native=native,
    )


@needs_native
@given(rounds=ROUNDS)
def test_labelled_and_cached_encoders_seal_the_same_bytes(
    rounds: list[list[tuple[int, float]]],
) -> None:
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(8)]
    sealed: dict[bool, list[Any]] = {True: [], False: []}
    encoders = {on: plain_encoder(registry, sealed[on], native=on) for on in (True, False)}
    assert encoders[True]._labelled is not None
    assert encoders[False]._labelled is None
    for n, samples in enumerate(rounds):
        batch = commit_of(n, samples, refs)
        counts = {on: counted(encoder.commit(batch)) for on, encoder in encoders.items()}
        assert counts[True] == counts[False]
    for encoder in encoders.values():
        encoder.seal_all()
    assert sealed[True] == sealed[False]
    assert encoders[True].cached_series == 0  # nothing kept per series
    assert encoders[False].cached_series == len({i for r in rounds for i, _ in r})


def counted(counts: Any) -> tuple[int, int, int]:
    return (counts.dropped_series, counts.unknown, counts.highest_ts)


@needs_native
def test_histogram_markers_and_released_refs_as_the_cached_encoder() -> None:
    """A histogram series' float sample (its staleness marker) is sent from the histogram runs,
    a free ref's sample is counted unknown, a slow timestamp is encoded whole: as the cached
    encoder does, byte for byte."""
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(3)]
    gone = registry.acquire((("__name__", "gone"),))
    registry.release(gone)
    sealed: dict[bool, list[Any]] = {True: [], False: []}
    counts: dict[bool, list[tuple[int, int, int]]] = {True: [], False: []}
    for on in (True, False):
        encoder = plain_encoder(registry, sealed[on], native=on)
        hist = encoder.commit_histograms([(refs[1], b"\x18\x02", T0)])
        assert hist.unknown == 0
        for batch in (
            [(refs[0], 1.5, T0 + 1), (refs[1], STALE_NAN, T0 + 1), (refs[2], 0.0, T0 + 1)],
            [(refs[0], 2.5, T0 + 2), (gone, 1.0, T0 + 2), (refs[2], 3.0, T0 + 2)],
            [(refs[0], 2.5, 5)],  # a timestamp field of another length: encoded whole
        ):
            counts[on].append(counted(encoder.commit(batch)))
        encoder.seal_all()
    assert counts[True] == counts[False]
    assert counts[True][1][1] == 1  # the released ref
    assert sealed[True] == sealed[False]
