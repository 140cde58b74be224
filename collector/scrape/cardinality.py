"""Cardinality, named: series per target, churn, top metric names and label names.

Place in the pipeline: beside the scrape loops, off the hot path. Everything is computed when
``GET /api/v1/status/cardinality`` (or the UI) asks, from what the scrape caches hold anyway:
each `ScrapeCache` maps raw series to refs, and the `SeriesRegistry` maps each ref to its label
set (after metric relabeling: what remote write sends). No second copy of the series is kept;
a request walks the refs of the targets it covers and throws its counters away.

* series: a target's live refs (series written by its last successful scrape, plus new ones
  since); relabel-dropped and limit-refused entries are not series.
* churn (`Churn`): per scrape, series added (new to the cache, ``scrape_series_added``) and
  removed (released by the cache when a successful scrape no longer had them). Recorded once
  per scrape by the loop: two integers, nothing per sample.
* top metric names by series and top label names by distinct values, per target, per pool and
  in total, like Prometheus's ``/api/v1/status/tsdb`` (``seriesCountByMetricName``,
  ``labelValueCountByLabelName``), with its ``limit`` parameter (default 10).
* limits (`collector.scrape.limits`): what each configured limit cost the target, and for
  ``series_limit`` the metric names of the series it refused.

Prometheus counterpart: ``/api/v1/status/tsdb`` (``tsdb/index/postings.go`` stats), computed
from the head block there and from the scrape caches here.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Generator, Iterable, Mapping
from operator import truth
from typing import TYPE_CHECKING, TypedDict, cast

from collector.model.duration import format_duration
from collector.model.labels import METRIC_NAME

if TYPE_CHECKING:
    from collector.scrape.loop import ScrapeLoop
    from collector.scrape.pool import ScrapePool

__all__ = [
    "CardinalityJSON",
    "Churn",
    "NameValue",
    "PoolJSON",
    "cardinality_report",
    "cardinality_report_async",
    "pool_status",
]

_RECENT = 10
"""Scrapes the churn figures sum over ("recent"), besides the last one and the totals."""
_PAUSE_SERIES = 20_000
"""Series walked between two pauses of `cardinality_report_async` (about 40 ms of work)."""


class Churn:
    """Series added and removed by one target's scrapes: last, recent and total."""

    __slots__ = ("_recent", "added_total", "removed_total")

    def __init__(self) -> None:
        self._recent: deque[tuple[int, int]] = deque(maxlen=_RECENT)
        self.added_total = 0
        self.removed_total = 0

    def record(self, *, added: int, removed: int) -> None:
        """One finished scrape."""
        self._recent.append((added, removed))
        self.added_total += added
        self.removed_total += removed

    @property
    def last(self) -> tuple[int, int]:
        """(added, removed) of the last scrape; zeros before the first."""
        return self._recent[-1] if self._recent else (0, 0)

    @property
    def recent(self) -> tuple[int, int, int]:
        """(added, removed, scrapes) over the last few scrapes."""
        return (
            sum(a for a, _ in self._recent),
            sum(r for _, r in self._recent),
            len(self._recent),
        )


class NameValue(TypedDict):
    """One row of a top list (Prometheus's ``{"name": ..., "value": ...}``)."""

    name: str
    value: int


class ChurnJSON(TypedDict):
    """Series added and removed: the last scrape, the last few, since the loop started."""

    lastAdded: int
    lastRemoved: int
    recentAdded: int
    recentRemoved: int
    recentScrapes: int
    totalAdded: int
    totalRemoved: int


class LimitsJSON(TypedDict):
    """What a target's limits are and what they cost it."""

    sampleLimit: int
    sampleLimitMode: str
    labelLimit: int
    seriesLimit: int
    seriesLimitWindow: str
    windowSeries: int
    """Distinct series in the current ``series_limit`` window."""
    refusedSeries: int
    """Series ``series_limit`` refused in the current window."""
    refusedByMetricName: list[NameValue]
    scrapesLimited: dict[str, int]
    samplesLimited: dict[str, int]


class _Stats(TypedDict):
    series: int
    churn: ChurnJSON
    seriesCountByMetricName: list[NameValue]
    labelValueCountByLabelName: list[NameValue]


class TargetJSON(_Stats):
    """One target of ``data.activeTargets``."""

    scrapePool: str
    scrapeUrl: str
    labels: dict[str, str]
    health: str
    lastError: str
    limits: LimitsJSON


class PoolStatsJSON(_Stats):
    """One pool of ``data.pools``."""

    scrapePool: str
    targets: int


class CardinalityJSON(_Stats):
    """``data`` of ``/api/v1/status/cardinality``: totals, then per pool and per target."""

    targets: int
    pools: list[PoolStatsJSON]
    activeTargets: list[TargetJSON]


class PoolJSON(TypedDict):
    """One scrape pool as the service-discovery page shows it."""

    scrapePool: str
    discovered: int
    """Targets in the discovered groups, before relabeling and deduplication."""
    active: int
    dropped: int
    """Dropped by ``relabel_configs`` (all of them, not only those kept for the list)."""
    failed: int
    """Refused after relabeling (no address, bad interval, ...): logged, in neither list."""
    series: int


class _Tally:
    """Series, metric names and label values of some refs; mergeable (pool, total)."""

    __slots__ = ("names", "series", "values")

    def __init__(self) -> None:
        self.series = 0
        self.names: Counter[str] = Counter()
        self.values: dict[str, set[str]] = {}

    def add_loop(self, loop: ScrapeLoop, *, detailed: bool) -> None:
        refs = loop.cache.series.values()
        if not detailed:
            self.series += sum(map(truth, refs))
            return
        labels_of = loop.cache.registry.labels
        names = self.names
        values = self.values
        for ref in refs:
            labels = labels_of(ref) if ref else None
            if labels is None:
                continue
            self.series += 1
            for name, value in labels:
                if name == METRIC_NAME:
                    names[value] += 1
                seen = values.get(name)
                if seen is None:
                    values[name] = {value}
                else:
                    seen.add(value)

    def absorb(self, other: _Tally) -> None:
        """Add ``other`` in, taking over its sets: ``other`` is not used afterwards."""
        self.series += other.series
        self.names.update(other.names)
        for name, seen in other.values.items():
            mine = self.values.get(name)
            if mine is None:
                self.values[name] = seen
            else:
                mine |= seen

    def stats(self, churn: ChurnJSON, *, top: int) -> _Stats:
        return {
            "series": self.series,
            "churn": churn,
            "seriesCountByMetricName": _top(self.names.items(), top),
            "labelValueCountByLabelName": _top(
                ((name, len(seen)) for name, seen in self.values.items()), top
            ),
        }


def _top(pairs: Iterable[tuple[str, int]], top: int) -> list[NameValue]:
    """The ``top`` largest, ties by name (stable output for the UI and tests)."""
    ranked = sorted(pairs, key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"name": name, "value": value} for name, value in ranked]


_ChurnValues = tuple[int, int, int, int, int, int, int]
"""`ChurnJSON`'s numbers in its order, so pools and totals are element-wise sums."""


def _churn_values(churn: Churn) -> _ChurnValues:
    return (*churn.last, *churn.recent, churn.added_total, churn.removed_total)


def _sum_churn(values: Iterable[_ChurnValues]) -> _ChurnValues:
    totals = [0] * 7
    for row in values:
        for i, value in enumerate(row):
            totals[i] += value
    return (totals[0], totals[1], totals[2], totals[3], totals[4], totals[5], totals[6])


def _churn_json(values: _ChurnValues) -> ChurnJSON:
    last_added, last_removed, recent_added, recent_removed, scrapes, added, removed = values
    return {
        "lastAdded": last_added,
        "lastRemoved": last_removed,
        "recentAdded": recent_added,
        "recentRemoved": recent_removed,
        "recentScrapes": scrapes,
        "totalAdded": added,
        "totalRemoved": removed,
    }


def _limits_json(loop: ScrapeLoop, *, top: int) -> LimitsJSON:
    options = loop.settings.options
    limits = loop.limits
    limiter = loop.cache.series_limiter
    return {
        "sampleLimit": options.sample_limit,
        "sampleLimitMode": loop.settings.sample_limit_mode,
        "labelLimit": options.label_limit,
        "seriesLimit": 0 if limiter is None else limiter.limit,
        "seriesLimitWindow": "" if limiter is None else format_duration(limiter.window_ms / 1000),
        "windowSeries": 0 if limiter is None else limiter.window_series,
        "refusedSeries": 0 if limiter is None else len(limiter.refused),
        "refusedByMetricName": [] if limiter is None else _top(limiter.refused_names.items(), top),
        "scrapesLimited": {name: limits.scrapes[name] for name in limits.configured},
        "samplesLimited": {name: limits.samples[name] for name in limits.configured},
    }


def cardinality_report(
    pools: Mapping[str, ScrapePool],
    *,
    scrape_pool: str = "",
    scrape_url: str = "",
    top: int = 10,
) -> CardinalityJSON:
    """``data`` of ``/api/v1/status/cardinality`` over the targets the filters select.

    ``top`` bounds every top list; 0 skips them, and then only the ref counts are taken (one
    C-level pass per target: what the targets page polls for its series column). With top
    lists a report costs about 2 µs per series walked; `cardinality_report_async` is the
    same report, pausing for the event loop on the way.
    """
    steps = _report_steps(pools, scrape_pool=scrape_pool, scrape_url=scrape_url, top=top)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast("CardinalityJSON", done.value)


async def cardinality_report_async(
    pools: Mapping[str, ScrapePool],
    *,
    scrape_pool: str = "",
    scrape_url: str = "",
    top: int = 10,
) -> CardinalityJSON:
    """`cardinality_report`, letting the event loop run every `_PAUSE_SERIES` series walked.

    Scrapes stay on time while a big report is computed (200,000 series with top lists take
    about 0.4 s). Between pauses a target may go away: its cache is then empty and it counts
    nothing; each target is read whole, as appends never yield.
    """
    steps = _report_steps(pools, scrape_pool=scrape_pool, scrape_url=scrape_url, top=top)
    walked = 0
    while True:
        try:
            walked += next(steps)
        except StopIteration as done:
            return cast("CardinalityJSON", done.value)
        if walked >= _PAUSE_SERIES:
            walked = 0
            await asyncio.sleep(0)


def _report_steps(
    pools: Mapping[str, ScrapePool], *, scrape_pool: str, scrape_url: str, top: int
) -> Generator[int, None, CardinalityJSON]:
    """Build the report, yielding the series walked after each target; returns the report."""
    detailed = top > 0
    total = _Tally()
    total_churn: list[_ChurnValues] = []
    pool_rows: list[PoolStatsJSON] = []
    target_rows: list[TargetJSON] = []
    for job in sorted(pools):
        pool = pools.get(job)
        if pool is None or (scrape_pool and job != scrape_pool):
            continue
        pool_tally = _Tally()
        pool_churn: list[_ChurnValues] = []
        for loop in list(pool.loops.values()):
            url = pool.scrape_url(loop.target)
            if scrape_url and url != scrape_url:
                continue
            tally = _Tally()
            tally.add_loop(loop, detailed=detailed)
            churn = _churn_values(loop.churn)
            target = loop.target
            target_rows.append(
                {
                    "scrapePool": job,
                    "scrapeUrl": url,
                    "labels": dict(target.sample_labels()),
                    "health": target.health,
                    "lastError": target.last_error,
                    "limits": _limits_json(loop, top=top),
                    **tally.stats(_churn_json(churn), top=top),
                }
            )
            pool_tally.absorb(tally)
            pool_churn.append(churn)
            yield tally.series
        if scrape_url and not pool_churn:
            continue
        churn = _sum_churn(pool_churn)
        pool_rows.append(
            {
                "scrapePool": job,
                "targets": len(pool_churn),
                **pool_tally.stats(_churn_json(churn), top=top),
            }
        )
        total.absorb(pool_tally)
        total_churn.append(churn)
    target_rows.sort(key=lambda t: (t["scrapePool"], -t["series"], t["scrapeUrl"]))
    return {
        "targets": len(target_rows),
        "pools": pool_rows,
        "activeTargets": target_rows,
        **total.stats(_churn_json(_sum_churn(total_churn)), top=top),
    }


def pool_status(pools: Mapping[str, ScrapePool]) -> list[PoolJSON]:
    """Per pool: discovered, active, dropped and failed targets, and live series."""
    out: list[PoolJSON] = []
    for job in sorted(pools):
        pool = pools[job]
        series = 0
        for loop in pool.loops.values():
            series += sum(map(truth, loop.cache.series.values()))
        out.append(
            {
                "scrapePool": job,
                "discovered": pool.discovered_count,
                "active": len(pool.targets),
                "dropped": pool.dropped_count,
                "failed": pool.failed_count,
                "series": series,
            }
        )
    return out
