"""SeriesRegistry: refs, sharing, release (refcounts only for shared refs), shared label pairs."""

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


def test_a_released_ref_is_not_reused_before_it_is_recycled() -> None:
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
    assert reg.labels(first) is None
    assert reg.drain_released() == [first, second]


def test_recycled_refs_name_new_series_and_refs_stay_dense() -> None:
    reg = SeriesRegistry()
    refs = [reg.acquire((("__name__", "m"), ("i", str(i)))) for i in range(10)]
    assert refs == list(range(1, 11))  # 0 is never a ref: the scrape cache's "dropped" mark
    for ref in refs[2:6]:
        reg.release(ref)
    released = reg.drain_released()
    assert sorted(released) == [3, 4, 5, 6]
    assert reg.acquire(B) == 11  # released but not recycled: not handed out
    reg.recycle(released)
    again = {reg.acquire((("__name__", "n"), ("i", str(i)))) for i in range(5)}
    assert again == {3, 4, 5, 6, 12}
    third = reg.labels(3)
    assert third is not None
    assert third[0] == ("__name__", "n")
    assert len(reg) == 6 + 1 + 5
    assert reg.labels(0) is None
    assert reg.labels(99) is None


def test_recycling_skips_a_ref_that_is_live() -> None:
    """A drained list handed back twice, or late, never frees a live series' ref."""
    reg = SeriesRegistry()
    ref = reg.acquire(A)
    reg.release(ref)
    released = reg.drain_released()
    reg.recycle(released)
    assert reg.acquire(B) == ref
    reg.recycle(released)  # ref names B now: not free
    assert reg.acquire(A) != ref
    assert reg.labels(ref) == B


def _fresh(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """An equal label set made of new tuple and str objects (as a parse would build it)."""
    return tuple(("".join(list(n)), "".join(list(v))) for n, v in labels)


def test_label_sets_share_their_pair_tuples() -> None:
    reg = SeriesRegistry()
    a = reg.labels(reg.acquire(_fresh(A)))
    b = reg.labels(reg.acquire(_fresh(B)))
    c = reg.labels(reg.acquire(_fresh((("__name__", "a"), ("job", "k")))))
    assert a is not None
    assert b is not None
    assert c is not None
    assert a[1] is b[1]  # ("job", "j"): one tuple, one value str
    assert a[0] is c[0]  # ("__name__", "a")
    assert a[1] is not c[1]
    assert reg.pairs == 4  # name a, name b, job j, job k


def test_pairs_leave_with_the_last_label_set_holding_them() -> None:
    reg = SeriesRegistry()
    ra, rb = reg.acquire(A), reg.acquire(B)
    assert reg.acquire(_fresh(A)) == ra  # a second holder of A: no second count of its pairs
    reg.release(ra)
    assert reg.pairs == 3
    reg.release(ra)
    assert reg.pairs == 2  # ("__name__", "a") went; ("job", "j") is still held by B
    assert reg.labels(rb) == B
    reg.release(rb)
    assert reg.pairs == 0


def test_churn_leaves_no_pairs_behind() -> None:
    reg = SeriesRegistry()
    keep = reg.acquire(A)
    for round_ in range(5):
        refs = [reg.acquire((("__name__", "m"), ("id", f"{round_}-{i}"))) for i in range(100)]
        assert reg.pairs == 2 + 1 + 100
        for ref in refs:
            reg.release(ref)
    assert reg.pairs == 2
    assert reg.labels(keep) == A
    assert len(reg) == 1
