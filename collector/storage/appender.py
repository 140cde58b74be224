"""The append transaction: one scrape's samples, committed at once.

A scrape loop builds a list of ``(ref, value, timestamp_ms)`` samples (refs from
`SeriesRegistry`) and hands it to `Appendable.commit` only when the scrape is complete, so a
failed scrape is rolled back by simply not committing (spec §4.7). ``commit`` never blocks and
never drops: a remote writer whose memory queue is full spills to its disk queue.

Prometheus counterpart: ``storage.Appender`` (``Append`` ... ``Commit``/``Rollback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Appendable", "Fanout", "Sample"]

Sample = tuple[int, float, int]
"""``(series ref, value, timestamp in ms)``; staleness markers are ``value.STALE_NAN``."""


class Appendable(Protocol):
    """Where committed samples go: each remote writer, or a test's memory recorder."""

    def commit(self, samples: Sequence[Sample]) -> None:
        """Take one scrape's samples, in scrape order. Must not block and must not raise."""
        ...


class Fanout:
    """Commits to several destinations (one per ``remote_write`` entry)."""

    __slots__ = ("destinations",)

    def __init__(self, destinations: Sequence[Appendable] = ()) -> None:
        self.destinations: list[Appendable] = list(destinations)

    def commit(self, samples: Sequence[Sample]) -> None:
        """Hand the same samples to every destination."""
        for destination in self.destinations:
            destination.commit(samples)
