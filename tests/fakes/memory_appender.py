"""MemoryAppender: an `Appendable` that records every commit, for scrape tests.

Prometheus counterpart: ``util/teststorage`` / the ``collectResultAppender`` of scrape tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.model.labels import Labels
from collector.model.value import float_bits, is_stale
from collector.storage.appender import ExemplarSample, HistogramSample, Sample
from collector.storage.series import SeriesRegistry

__all__ = ["MemoryAppender", "Resolved"]

Resolved = tuple[Labels, float, int]
"""A committed sample with its ref resolved to labels: ``(labels, value, ts_ms)``."""


class MemoryAppender:
    """Records commits; resolves refs through the registry at commit time."""

    def __init__(self, registry: SeriesRegistry) -> None:
        self.registry = registry
        self.commits: list[list[Resolved]] = []
        self.histograms: list[list[tuple[Labels, bytes, int]]] = []
        """Per commit, its native histograms (labels, Histogram bytes, ts)."""
        self.exemplars: list[list[tuple[Labels, bytes]]] = []
        """Per commit, its exemplars (labels of the series, Exemplar bytes)."""

    def commit(
        self,
        samples: Sequence[Sample],
        histograms: Sequence[HistogramSample] = (),
        exemplars: Sequence[ExemplarSample] = (),
    ) -> None:
        """Record one transaction (refs resolved now, since they may be released later)."""
        resolved: list[Resolved] = []
        for ref, value, ts in samples:
            labels = self.registry.labels(ref)
            assert labels is not None, f"committed a released ref {ref}"
            resolved.append((labels, value, ts))
        self.commits.append(resolved)
        hists: list[tuple[Labels, bytes, int]] = []
        for ref, body, ts in histograms:
            labels = self.registry.labels(ref)
            assert labels is not None, f"committed a released ref {ref}"
            hists.append((labels, body, ts))
        self.histograms.append(hists)
        self.exemplars.append([(self.registry.labels(ref) or (), raw) for ref, raw, _ in exemplars])

    @property
    def last(self) -> list[Resolved]:
        """The most recent commit."""
        return self.commits[-1]

    def by_name(self, name: str, commit: int = -1) -> list[Resolved]:
        """Samples of one commit whose ``__name__`` is ``name``."""
        return [s for s in self.commits[commit] if dict(s[0]).get("__name__") == name]

    def value(self, name: str, commit: int = -1) -> float:
        """The single value of metric ``name`` in a commit."""
        (sample,) = self.by_name(name, commit)
        return sample[1]

    def stale(self, commit: int = -1) -> list[Resolved]:
        """The staleness markers of a commit (compared by bits)."""
        return [s for s in self.commits[commit] if is_stale(s[1])]

    def stale_names(self, commit: int = -1) -> list[str]:
        """Sorted ``__name__`` values of a commit's staleness markers."""
        return sorted(dict(s[0])["__name__"] for s in self.stale(commit))

    def samples(self, commit: int = -1) -> list[Resolved]:
        """Non-stale samples of a commit."""
        return [s for s in self.commits[commit] if not is_stale(s[1])]

    @staticmethod
    def bits(value: float) -> int:
        """The bit pattern of a value (for NaN comparisons)."""
        return float_bits(value)
