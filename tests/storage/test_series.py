"""SeriesRegistry: refs, sharing and release (refcounts are stored only for shared refs)."""

from __future__ import annotations

from collector.storage.series import SeriesRegistry

A = (("__name__", "a"), ("job", "j"))
B = (("__name__", "b"), ("job", "j"))


def test_single_holder_acquire_release() -> None:
    reg = SeriesRegistry()
    ref = reg.acquire(A)
    assert reg.labels(ref) == A
    assert len(reg) == 1
    reg.release(ref)
    assert reg.labels(ref) is None
    assert len(reg) == 0
    assert reg.drain_released() == [ref]
    reg.release(ref)  # releasing a freed ref is a no-op
    assert reg.drain_released() == []


def test_shared_ref_lives_until_its_last_holder_releases() -> None:
    reg = SeriesRegistry()
    ref = reg.acquire(A)
    assert reg.acquire(A) == ref
    assert reg.acquire(A) == ref
    other = reg.acquire(B)
    for _ in range(2):
        reg.release(ref)
        assert reg.labels(ref) == A
        assert reg.drain_released() == []
    reg.release(ref)
    assert reg.labels(ref) is None
    assert reg.drain_released() == [ref]
    assert reg.labels(other) == B


def test_refs_are_never_reused() -> None:
    reg = SeriesRegistry()
    first = reg.acquire(A)
    reg.release(first)
    second = reg.acquire(A)
    assert second != first
    assert reg.labels(second) == A
    assert reg.acquire(A) == second
    reg.release(second)
    assert reg.labels(second) == A
    reg.release(second)
    assert reg.labels(second) is None
