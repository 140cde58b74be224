"""Per-target limits that name the culprit: the series limit, and per-target limit counters.

Place in the pipeline: scrape. Nothing here runs per sample.

* `SeriesLimiter` is vmagent's ``series_limit``: at most N distinct series per target over a
  window (``1h`` like vmagent's hourly limit, ``1d`` like its daily one). `ScrapeCache` asks it
  about each *new* series only (a cache miss, after metric relabeling and validation). A
  refused series is cached as dropped, so its later samples cost what a relabel-dropped
  series costs (one lookup); the series the target already has keep flowing. When a window
  ends, the refused series are forgotten by the cache and asked about again.
* `TargetLimits` counts, per limit, the scrapes of one target that hit it and the samples it
  kept out of otherwise successful scrapes. ``sample_limit`` in ``fail`` mode and the label
  limits fail the whole scrape, exactly as in Prometheus (the loop does that, and the error
  text names the metric); ``sample_limit_mode: keep_first`` keeps the first N samples in
  body order (the cache already stops appending there) and only counts the rest.
* `LimitsCollector` exposes those counts on ``/metrics``, labelled by target (job and
  instance), for targets whose job configures the limit; the cardinality API
  (`collector.scrape.cardinality`) shows the same numbers in the UI.

Prometheus counterpart: ``sample_limit`` and ``verifyLabelLimits`` in ``scrape/scrape.go``;
vmagent's ``series_limit`` (``lib/promscrape/scrapework.go``, ``scrape_series_limit_*``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector.config import ScrapeConfig
from collector.model.labels import INSTANCE, METRIC_NAME, Labels

if TYPE_CHECKING:
    from collector.scrape.cache import AppendOptions, AppendResult
    from collector.scrape.pool import ScrapePool

__all__ = ["LIMITS", "LimitName", "LimitsCollector", "SeriesLimiter", "TargetLimits", "limiter_for"]

LimitName = Literal["sample_limit", "label_limit", "series_limit"]
LIMITS: Final[tuple[LimitName, ...]] = ("sample_limit", "label_limit", "series_limit")
"""The ``limit`` label values; ``label_limit`` also stands for the two label length limits."""


class SeriesLimiter:
    """Distinct series of one target within the current window, and the series it refused.

    Series are remembered by ``hash(labels)``: an int per series rather than a second copy of
    the label sets (the salted builtin hash is fine here: it never leaves the process).
    """

    __slots__ = ("_admitted", "_window_end", "limit", "refused", "refused_names", "window_ms")

    def __init__(self, *, limit: int, window: float) -> None:
        self.limit = limit
        self.window_ms = max(int(window * 1000), 1)
        self._window_end: int | None = None
        self._admitted: set[int] = set()
        self.refused: set[bytes] = set()
        """Raw series the cache holds as dropped because of this limit, in this window."""
        self.refused_names: Counter[str] = Counter()
        """Metric name -> refused series in this window: the culprit, by name."""

    @property
    def window_series(self) -> int:
        """Distinct series admitted in the current window."""
        return len(self._admitted)

    def admit(self, key: bytes, labels: Labels) -> bool:
        """Whether a new series may be written; a refusal is remembered under ``key``."""
        digest = hash(labels)
        admitted = self._admitted
        if digest in admitted:
            return True  # seen earlier in this window: it does not count twice
        if len(admitted) < self.limit:
            admitted.add(digest)
            return True
        if key not in self.refused:
            self.refused.add(key)
            self.refused_names[_metric_name(labels)] += 1
        return False

    def roll(
        self, now_ms: int, series: dict[bytes, int], labels_of: Callable[[int], Labels | None]
    ) -> None:
        """Start a new window when the current one is over (called once per scrape).

        The new window starts with the series the cache holds now: they are still exposed,
        so they count in it. Refused series leave the cache (``series``) so that their next
        sample is a miss and they are asked about again.
        """
        end = self._window_end
        if end is None:
            self._window_end = now_ms + self.window_ms
            return
        if now_ms < end:
            return
        # Whole windows from the first scrape, so a long pause does not shift them.
        self._window_end = end + ((now_ms - end) // self.window_ms + 1) * self.window_ms
        admitted: set[int] = set()
        for ref in series.values():
            if ref:
                labels = labels_of(ref)
                if labels is not None:
                    admitted.add(hash(labels))
        self._admitted = admitted
        for key in self.refused:
            if series.get(key) == 0:
                del series[key]
        self.refused = set()
        self.refused_names = Counter()

    def samples_refused(self, dropped_seen: set[bytes]) -> int:
        """How many of this pass's dropped samples were dropped by this limit."""
        if not self.refused:
            return 0
        return len(self.refused.intersection(dropped_seen))


def limiter_for(cfg: ScrapeConfig) -> SeriesLimiter | None:
    """A target's `SeriesLimiter` under ``cfg``, or None when the job sets no series limit."""
    if cfg.series_limit <= 0:
        return None
    return SeriesLimiter(limit=cfg.series_limit, window=cfg.series_limit_window)


class TargetLimits:
    """One target's limit counters (since its loop started)."""

    __slots__ = ("configured", "keep_first", "samples", "scrapes")

    def __init__(
        self, *, options: AppendOptions, keep_first: bool = False, series_limit: int = 0
    ) -> None:
        self.keep_first = keep_first
        configured: list[LimitName] = []
        if options.sample_limit > 0:
            configured.append("sample_limit")
        if (
            options.label_limit > 0
            or options.label_name_length_limit > 0
            or options.label_value_length_limit > 0
        ):
            configured.append("label_limit")
        if series_limit > 0:
            configured.append("series_limit")
        self.configured: tuple[LimitName, ...] = tuple(configured)
        """The limits this target's job sets: those are exported, with zeros."""
        self.scrapes: dict[LimitName, int] = dict.fromkeys(LIMITS, 0)
        """Scrapes that exceeded the limit (failed, or written in part)."""
        self.samples: dict[LimitName, int] = dict.fromkeys(LIMITS, 0)
        """Samples the limit kept out of scrapes that were written (``keep_first``, series)."""

    def record(self, result: AppendResult) -> None:
        """Count one append pass's limit hits."""
        if result.sample_limit_exceeded:
            self.scrapes["sample_limit"] += 1
            if self.keep_first:
                self.samples["sample_limit"] += result.over_sample_limit
        if result.label_limit_exceeded:
            self.scrapes["label_limit"] += 1
        if result.series_limited:
            self.scrapes["series_limit"] += 1
            self.samples["series_limit"] += result.series_limited


class LimitsCollector:
    """``collector_target_*_limited_total`` for every target, read when ``/metrics`` is."""

    def __init__(self, pools: Callable[[], Mapping[str, ScrapePool]]) -> None:
        self._pools = pools

    def describe(self) -> Iterable[Metric]:
        """The families without samples (so registering does not walk every target)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """One sample per target and configured limit."""
        scrapes, samples, window = families = self._families()
        for job, pool in self._pools().items():
            for loop in pool.loops.values():
                limits = loop.limits
                instance = loop.target.label(INSTANCE)
                for limit in limits.configured:
                    scrapes.add_metric([job, instance, limit], limits.scrapes[limit])
                    samples.add_metric([job, instance, limit], limits.samples[limit])
                limiter = loop.cache.series_limiter
                if limiter is not None:
                    window.add_metric([job, instance], limiter.window_series)
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
        by_limit = ["scrape_job", "instance", "limit"]
        return (
            CounterMetricFamily(
                "collector_target_scrapes_limited",
                "Scrapes of a target that exceeded a limit: failed (sample_limit in fail mode, "
                "label limits) or written in part (sample_limit keep_first, series_limit).",
                labels=by_limit,
            ),
            CounterMetricFamily(
                "collector_target_samples_limited",
                "Samples a limit kept out of a target's otherwise written scrapes "
                "(sample_limit keep_first, series_limit).",
                labels=by_limit,
            ),
            GaugeMetricFamily(
                "collector_target_series_limit_window_series",
                "Distinct series of a target in the current series_limit window.",
                labels=["scrape_job", "instance"],
            ),
        )


def _metric_name(labels: Labels) -> str:
    for name, value in labels:
        if name == METRIC_NAME:
            return value
    return ""
