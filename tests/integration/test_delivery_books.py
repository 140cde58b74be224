"""The delivery rig's accounting (`tests.integration.delivery_books`) on made-up books: which
served scrapes count as lost, and which a window excuses.

No agent runs here: targets "serve" by appending to their lists, and the books learn of a scrape
only through `Books.scrape_ts` / `Books.acked_at`, as the fault proxy fills them.
"""

from __future__ import annotations

from tests.integration.delivery_books import Window, account, dead_windows
from tests.integration.delivery_targets import SERIES, Targets
from tests.integration.faultproxy import Books

FULL = SERIES + 1


def _arrived(books: Books, instance: str, serial: int, ts: int) -> None:
    books.scrape_ts[(instance, serial)] = ts
    books.acked_at[(instance, ts)] = FULL


def test_dead_windows_lie_between_an_end_and_the_next_start() -> None:
    windows = dead_windows([(0.0, 8.0), (10.0, 15.0), (20.0, 30.0)])
    assert [(w.label, w.start, w.end, w.cap) for w in windows] == [
        ("dead 1", 8.0, 10.0, 1),
        ("dead 2", 15.0, 20.0, 1),
    ]
    assert dead_windows([(0.0, 5.0)]) == []


def test_a_serve_stamped_while_no_agent_ran_is_excused_once_per_target() -> None:
    targets = Targets(count=2)
    a, b = targets.targets
    a.port, b.port = 9001, 9002  # distinct instances (ports are set when targets start)
    books = Books()
    # Run 1 is (0, 8], killed at 8; run 2 starts at 10. Target a: scrape 1 arrived, scrape 2
    # was stamped at 8.3 (the request in flight at the kill), scrape 3 at 9 (a second one in
    # the same dead time: no agent can have asked for it). Target b: scrape 1 at 5 never
    # arrived although run 1 was alive and far from its end.
    a.served.extend([(1, 7.0), (2, 8.3), (3, 9.0)])
    b.served.append((1, 5.0))
    _arrived(books, a.instance, 1, 7000)
    windows = [Window("kill 1", 6.5, 8.0), *dead_windows([(0.0, 8.0), (10.0, 20.0)])]

    result = account(targets, books, cutoff=20.0, windows=windows)

    assert result.served == 4
    assert [(label, loss.instance, loss.serial) for label, loss in result.excused] == [
        ("dead 1", a.instance, 2)
    ]
    assert sorted((loss.instance, loss.serial) for loss in result.lost) == [
        (a.instance, 3),
        (b.instance, 1),
    ]
    assert all(loss.missing == FULL for loss in result.lost)


def test_without_the_dead_window_the_in_flight_serve_is_a_loss() -> None:
    targets = Targets(count=1)
    (a,) = targets.targets
    a.served.append((1, 8.3))
    result = account(targets, Books(), cutoff=20.0, windows=[Window("kill 1", 6.5, 8.0)])
    assert [(loss.serial, loss.served_at) for loss in result.lost] == [(1, 8.3)]
