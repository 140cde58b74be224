"""The scrape cache's steady-state append in C (``bulk_append`` of `collector._native`) is
indistinguishable from the pure-Python one (`collector.scrape.cache._py_bulk_append`).

Both run on copies of the same state (the last timestamps a list indexed by ref, as
`SeriesRegistry.last_ts`): refs with no sample yet (`NEVER`), older ones, one equal to or
newer than the scrape's (which must refuse the whole scrape and change nothing), values of every
kind (NaN payloads by bits) and a values list shorter than the refs (``zip`` stops there, the
timestamps are still all updated). The suite also runs with ``COLLECTOR_NATIVE=0``, where this
module is skipped and `tests/scrape/test_cache.py` covers the Python function.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import native
from collector.model.value import STALE_NAN, float_bits
from collector.scrape.cache import _py_bulk_append
from collector.storage.appender import Sample
from collector.storage.series import NEVER

needs_native = pytest.mark.skipif(not native.ACTIVE, reason=f"native extension {native.REASON}")

NOW = 1_700_000_000_000
VALUES = st.one_of(st.floats(), st.sampled_from([STALE_NAN, 0.0, -0.0, 1.0]))
LAST = st.one_of(st.just(NEVER), st.integers(NOW - 5, NOW + 2), st.just(-(2**70)))


@st.composite
def case(draw: st.DrawFn) -> tuple[list[int], list[float], list[int], list[Sample]]:
    size = draw(st.integers(1, 40))
    last = draw(st.lists(LAST, min_size=size, max_size=size))
    refs = draw(st.lists(st.integers(0, size - 1), unique=True, max_size=20))
    values = draw(st.lists(VALUES, min_size=max(len(refs) - 2, 0), max_size=len(refs)))
    batch: list[Sample] = [(1, 2.0, 3)] if draw(st.booleans()) else []
    return refs, values, last, batch


def _bits(batch: list[Sample]) -> list[tuple[int, int, int]]:
    return [(ref, float_bits(value), ts) for ref, value, ts in batch]


@needs_native
@given(case())
def test_c_bulk_append_does_what_the_python_one_does(
    state: tuple[list[int], list[float], list[int], list[Sample]],
) -> None:
    """Same answer, same last timestamps and the same batch, tuple for tuple; a refusal
    changes nothing."""
    from collector import _native

    refs, values, last, batch = state
    c_last, c_batch = list(last), list(batch)
    py_last, py_batch = list(last), list(batch)
    appended = _native.bulk_append(refs, values, NOW, c_last, c_batch)
    assert appended == _py_bulk_append(refs, values, NOW, py_last, py_batch)
    assert appended == all(last[ref] < NOW for ref in refs)
    assert c_last == py_last
    assert _bits(c_batch) == _bits(py_batch)
    if not appended:
        assert (c_last, c_batch) == (last, batch)
    else:
        assert len(c_batch) == len(batch) + min(len(refs), len(values))


@needs_native
def test_c_bulk_append_refuses_what_the_cache_never_passes() -> None:
    """Wrong containers and non-int refs or timestamps raise instead of being guessed at."""
    from collector import _native

    cases: list[tuple[Any, ...]] = [
        ((1,), [1.0], NOW, [NEVER] * 2, []),
        ([1], [1.0], float(NOW), [NEVER] * 2, []),
        (["1"], [1.0], NOW, [NEVER] * 2, []),
        ([1], [1.0], NOW, [NEVER, 1.5], []),
        ([1], [1.0], NOW, [NEVER] * 2, ()),
        ([1], [1.0], NOW, {1: NEVER}, []),
    ]
    for args in cases:
        with pytest.raises(TypeError):
            _native.bulk_append(*args)
    last = [NEVER] * 2
    for ref in (2, -1, 2**70):  # past the list, negative, past Py_ssize_t: never guessed at
        with pytest.raises((IndexError, OverflowError)):
            _native.bulk_append([0, ref], [1.0, 2.0], NOW, last, [])
        assert last == [NEVER] * 2
    with pytest.raises(TypeError, match="expected 5 arguments"):
        _native.bulk_append([], [], NOW, [])  # type: ignore[call-arg]
