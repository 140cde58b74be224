"""The append transaction: one scrape's samples, committed at once.

A scrape loop builds a list of ``(ref, value, timestamp_ms)`` samples (refs from
`SeriesRegistry`) and hands it to `Appendable.commit` only when the scrape is complete, so a
failed scrape is rolled back by simply not committing (spec §4.7). ``commit`` never blocks and
never drops: a remote writer whose memory queue is full spills to its disk queue.

Native histograms travel apart, as a second and usually empty list of `HistogramSample`
(``histograms=``), so the float samples stay plain 3-tuples; a destination that takes no
histograms needs no change, since ``histograms`` is only passed when there are some. A
histogram series' staleness marker is an ordinary float sample (``STALE_NAN``); the remote
writer turns it into a histogram marker for series it has sent histograms of. Exemplars
likewise (``exemplars=``, `ExemplarSample`), only when there are some (`forward`).

Prometheus counterpart: ``storage.Appender`` (``Append`` ... ``Commit``/``Rollback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Appendable", "ExemplarSample", "Fanout", "HistogramSample", "Sample", "forward"]

Sample = tuple[int, float, int]
"""``(series ref, value, timestamp in ms)``; staleness markers are ``value.STALE_NAN``."""

HistogramSample = tuple[int, bytes, int]
"""``(series ref, remote-write Histogram fields 1-14, timestamp in ms)``: the histogram
encoded once at append time (`collector.model.histogram.encode`)."""

ExemplarSample = tuple[int, bytes, int]
"""``(series ref, remote-write Exemplar message, its timestamp in ms)``
(`collector.model.exemplar.encode`; the timestamp is inside the message too)."""


class Appendable(Protocol):
    """Where committed samples go: each remote writer, or a test's memory recorder."""

    def commit(
        self,
        samples: Sequence[Sample],
        histograms: Sequence[HistogramSample] = (),
        exemplars: Sequence[ExemplarSample] = (),
    ) -> None:
        """Take one scrape's samples, in scrape order, its native histograms and exemplars
        (each passed only when there are some). Must not block and must not raise."""
        ...


def forward(
    destination: Appendable,
    samples: Sequence[Sample],
    histograms: Sequence[HistogramSample] = (),
    exemplars: Sequence[ExemplarSample] = (),
) -> None:
    """``destination.commit`` with the histograms and exemplars only when there are some,
    so a destination that takes plain samples only keeps working."""
    if exemplars:
        destination.commit(samples, histograms, exemplars)
    elif histograms:
        destination.commit(samples, histograms)
    else:
        destination.commit(samples)


class Fanout:
    """Commits to several destinations (one per ``remote_write`` entry)."""

    __slots__ = ("destinations",)

    def __init__(self, destinations: Sequence[Appendable] = ()) -> None:
        self.destinations: list[Appendable] = list(destinations)

    def commit(
        self,
        samples: Sequence[Sample],
        histograms: Sequence[HistogramSample] = (),
        exemplars: Sequence[ExemplarSample] = (),
    ) -> None:
        """Hand the same samples to every destination."""
        for destination in self.destinations:
            forward(destination, samples, histograms, exemplars)
