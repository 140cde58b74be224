"""The encoder's commit loop in C (``encode_run`` of `collector._native`) is indistinguishable
from the pure-Python one (`BatchEncoder._encode_run`).

Two levels: the run function itself, C and Python on copies of the same state (every kind of
list entry, dropped series, misses, refs past the lists, a timestamp change, samples of types
the scrape path never makes), compared on what they return, append and leave in the lists;
and whole encoders, one
on each, fed the same commits, compared on every byte they seal. The suite also runs with
``COLLECTOR_NATIVE=0`` (``make test``), where the C side is skipped and every other encoder
test covers the Python loop.
"""

from __future__ import annotations

import copy
import struct
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import native
from collector.model.labels import Labels
from collector.model.value import STALE_NAN
from collector.remote.encoder import BatchEncoder
from collector.storage.series import SeriesRegistry

needs_native = pytest.mark.skipif(not native.ACTIVE, reason=f"native extension {native.REASON}")

T0 = 1_700_000_000_000
FLOATS = [1.0, -7.5, 2.5, 1e300, float("inf"), float("nan"), STALE_NAN, 0.0, -0.0]


def _pack(value: float) -> bytes:
    return struct.pack("<d", value)


# What the encoder's lists hold for a ref: a last encoding (a value prefix and 8 value bytes),
# a zero encoding, or b"" for a dropped series; or nothing (a miss).
ENTRY = st.one_of(
    st.tuples(st.sampled_from(FLOATS), st.binary(min_size=0, max_size=6)).map(
        lambda t: ("last", t[1] + _pack(t[0]))
    ),
    st.binary(min_size=1, max_size=12).map(lambda b: ("zero", b)),
    st.just(("dropped", b"")),
    st.just(("missing", None)),
)
VALUE = st.one_of(st.sampled_from(FLOATS), st.floats(), st.integers(-3, 3))
"""Mostly floats; the scrape path never makes an int value, but the loop must still agree."""


@st.composite
def run_case(draw: st.DrawFn) -> tuple[list[Any], list[bytes | None], list[Any], int, int]:
    entries = draw(st.lists(ENTRY, min_size=1, max_size=8))
    values: list[Any] = [None] * len(entries)
    zeros: list[bytes | None] = [None] * len(entries)
    for ref, (kind, entry) in enumerate(entries):
        if kind == "last":
            values[ref] = entry
        elif kind == "zero":
            zeros[ref] = cast("bytes", entry)
        elif kind == "dropped":
            values[ref] = zeros[ref] = b""
    refs = st.integers(0, len(entries) + 1)  # the last two are past the lists: misses
    timestamps = st.sampled_from([T0, T0, T0, T0 + 1])
    samples = draw(st.lists(st.tuples(refs, VALUE, timestamps), max_size=30))
    start = draw(st.integers(0, len(samples)))
    shards = draw(st.integers(1, 4))
    return values, zeros, samples, start, shards


def _python_run(
    samples: list[Any], start: int, values: list[Any], zeros: list[bytes | None], shards: int
) -> tuple[tuple[int, int], list[list[bytes]]]:
    encoder = BatchEncoder(
        series=SeriesRegistry(),
        external_labels=(),
        relabel=None,
        max_samples_per_send=1000,
        num_shards=shards,
        on_sealed=lambda *_: None,
        clock=lambda: 0.0,
        native=False,
    )
    result = encoder._encode_run(samples, start, T0, values, zeros, encoder._runs)
    return result, encoder._runs


@needs_native
@given(run_case())
def test_c_run_appends_and_stops_as_the_python_run(
    case: tuple[list[Any], list[bytes | None], list[Any], int, int],
) -> None:
    """Same stop index, dropped count, runs (bytes for bytes, shard for shard) and lists after."""
    from collector import _native

    values, zeros, samples, start, shards = case
    c_values, c_zeros = copy.deepcopy(values), copy.deepcopy(zeros)
    c_runs: list[list[bytes]] = [[] for _ in range(shards)]
    c_result = _native.encode_run(samples, start, T0, c_values, c_zeros, c_runs)
    py_result, py_runs = _python_run(samples, start, values, zeros, shards)
    if c_result != py_result:
        # The C run stops early on a type the scrape path never makes; the Python run takes
        # over from there in `commit`. It may never go further than Python.
        stop = c_result[0]
        assert stop < py_result[0]
        assert type(samples[stop][1]) is not float
        return
    assert c_runs == py_runs
    assert c_zeros == zeros
    assert c_values == values


@needs_native
def test_c_run_refuses_broken_arguments() -> None:
    """Arguments the encoder never passes raise instead of being read out of bounds."""
    from collector import _native

    with pytest.raises(TypeError, match="non-empty runs list"):
        _native.encode_run([], 0, T0, [], [], [])
    with pytest.raises(TypeError, match="two lists of one length"):
        _native.encode_run([], 0, T0, [None], [], [[]])
    with pytest.raises(TypeError, match="two lists of one length"):
        _native.encode_run([], 0, T0, {}, {}, [[]])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="6 arguments"):
        _native.encode_run([], 0, T0, [], [])  # type: ignore[call-arg]


def series_labels(i: int) -> Labels:
    return (("__name__", "m"), ("i", str(i)), ("job", "j" * (i % 3 * 90)))


ROUNDS = st.lists(
    st.lists(st.tuples(st.integers(0, 7), st.sampled_from(FLOATS)), max_size=20),
    min_size=1,
    max_size=6,
)
"""Commits of (series index, value) over 8 series (see `commit_of`)."""


def commit_of(n: int, samples: list[tuple[int, float]], refs: list[int]) -> list[Any]:
    """Round ``n`` of `ROUNDS` as one commit: its first half stamped one timestamp, the rest
    the next (two runs in one commit)."""
    half = len(samples) // 2
    batch = [(refs[i], v, T0 + 2 * n) for i, v in samples[:half]]
    return batch + [(refs[i], v, T0 + 2 * n + 1) for i, v in samples[half:]]


@needs_native
@given(rounds=ROUNDS, shards=st.integers(1, 3))
def test_encoders_on_c_and_python_seal_the_same_bytes(
    rounds: list[list[tuple[int, float]]], shards: int
) -> None:
    """Whole commits (new series, values leaving and reaching zero, NaNs, a series dropped by
    write relabeling, two timestamps in one commit): every sealed body, count, timestamp and
    shard is the same."""
    registry = SeriesRegistry()
    refs = [registry.acquire(series_labels(i)) for i in range(8)]
    sealed: dict[bool, list[tuple[bytes, int, int, int]]] = {True: [], False: []}
    encoders = {
        on: BatchEncoder(
            series=registry,
            external_labels=(("cluster", "c1"),),
            relabel=lambda labels: None if labels.get("i") == "7" else labels,
            max_samples_per_send=7,
            num_shards=shards,
            on_sealed=lambda *batch, on=on: sealed[on].append(batch),
            clock=lambda: 0.0,
            native=on,
        )
        for on in (True, False)
    }
    for n, samples in enumerate(rounds):
        batch = commit_of(n, samples, refs)
        counts = {on: encoder.commit(batch) for on, encoder in encoders.items()}
        assert vars_of(counts[True]) == vars_of(counts[False])
    for encoder in encoders.values():
        encoder.seal_all()
    assert sealed[True] == sealed[False]


def vars_of(counts: object) -> tuple[int, int, int]:
    return (counts.dropped_series, counts.unknown, counts.highest_ts)  # type: ignore[attr-defined]
