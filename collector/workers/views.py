"""The workers' snapshots merged into the answers of the one web API (`collector.workers`).

Place in the pipeline: the main process's `SupervisorAgent` implements the web layer's
``AgentView`` with these functions over the latest `Snapshot` of every worker, so
``/api/v1/targets``, ``/api/v1/scrape_pools``, the remote-write status and the cardinality page
show the whole agent in the in-process agent's shapes.

What adds up and what does not: active targets are disjoint (each target belongs to one
worker) and are concatenated; every worker relabels every discovered target, so dropped
targets and the discovered, dropped and failed counts are the same in each and are taken once.
Queue numbers are summed per destination (each worker has its own queue to each). In the
cardinality report, series, targets, churn and series per metric name add up across workers;
distinct label values per label name cannot be added without the values, so the report shows
the largest worker's count (a lower bound; exact with one worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["merge_cardinality", "merge_pools", "merge_remote_write", "merge_targets"]

JSON = dict[str, Any]


def merge_targets(lists: Iterable[Sequence[Mapping[str, Any]]]) -> list[JSON]:
    """Every worker's active targets, ordered by pool as the in-process agent orders them."""
    merged = [dict(t) for targets in lists for t in targets]
    merged.sort(key=lambda t: str(t.get("scrapePool", "")))
    return merged


def merge_pools(lists: Iterable[Sequence[Mapping[str, Any]]]) -> list[JSON]:
    """``/api/v1/scrape_pools`` entries: active targets and series summed per pool."""
    pools: dict[str, JSON] = {}
    for entries in lists:
        for entry in entries:
            name = str(entry["scrapePool"])
            have = pools.get(name)
            if have is None:
                pools[name] = dict(entry)
                continue
            for key in ("active", "series"):
                have[key] = int(have.get(key, 0)) + int(entry.get(key, 0))
    return [pools[name] for name in sorted(pools)]


def merge_remote_write(lists: Iterable[Sequence[Mapping[str, Any]]]) -> list[JSON]:
    """One status per destination: counts, pending samples, shards and disk bytes summed;
    the protocol is ``1.0`` once any worker fell back (with that worker's reason)."""
    queues: dict[str, JSON] = {}
    summed = ("samplesSent", "samplesFailed", "samplesRetried", "samplesPending", "shards")
    for entries in lists:
        for entry in entries:
            name = str(entry["name"])
            have = queues.get(name)
            if have is None:
                queues[name] = dict(entry)
                continue
            for key in (*summed, "diskQueueBytes"):
                have[key] = int(have.get(key) or 0) + int(entry.get(key) or 0)
            if entry.get("protocol") == "1.0" and have.get("protocol") != "1.0":
                have["protocol"] = "1.0"
                have["fallbackReason"] = entry.get("fallbackReason")
    return list(queues.values())


def _add_top(into: dict[str, int], rows: Iterable[Mapping[str, Any]], *, summed: bool) -> None:
    for row in rows:
        name, value = str(row["name"]), int(row["value"])
        into[name] = into.get(name, 0) + value if summed else max(into.get(name, 0), value)


def _top(values: Mapping[str, int], limit: int) -> list[JSON]:
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": n, "value": v} for n, v in ranked[:limit]]


class _Stats:
    """Merges the ``_Stats`` part of a report, a pool or a target."""

    def __init__(self, first: Mapping[str, Any]) -> None:
        self.data = dict(first)
        self.limit = max(
            len(first.get("seriesCountByMetricName") or ()),
            len(first.get("labelValueCountByLabelName") or ()),
        )
        self.names: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.churn: dict[str, int] = {}
        self._add(first)

    def _add(self, stats: Mapping[str, Any]) -> None:
        _add_top(self.names, stats.get("seriesCountByMetricName") or (), summed=True)
        _add_top(self.labels, stats.get("labelValueCountByLabelName") or (), summed=False)
        for key, value in (stats.get("churn") or {}).items():
            self.churn[key] = self.churn.get(key, 0) + int(value)

    def add(self, stats: Mapping[str, Any]) -> None:
        self.data["series"] = int(self.data.get("series", 0)) + int(stats.get("series", 0))
        if "targets" in stats:
            self.data["targets"] = int(self.data.get("targets", 0)) + int(stats["targets"])
        self.limit = max(
            self.limit,
            len(stats.get("seriesCountByMetricName") or ()),
            len(stats.get("labelValueCountByLabelName") or ()),
        )
        self._add(stats)

    def result(self) -> JSON:
        out = dict(self.data)
        if "seriesCountByMetricName" in out:
            out["seriesCountByMetricName"] = _top(self.names, self.limit)
        if "labelValueCountByLabelName" in out:
            out["labelValueCountByLabelName"] = _top(self.labels, self.limit)
        if "churn" in out:
            out["churn"] = dict(self.churn)
        return out


def merge_cardinality(reports: Sequence[Mapping[str, Any]]) -> JSON:
    """One ``/api/v1/status/cardinality`` report from every worker's (see the module doc)."""
    if not reports:
        return {}
    total = _Stats(reports[0])
    pools: dict[str, _Stats] = {}
    targets: list[JSON] = []
    for index, report in enumerate(reports):
        if index:
            total.add(report)
        for pool in report.get("pools") or ():
            name = str(pool["scrapePool"])
            if name in pools:
                pools[name].add(pool)
            else:
                pools[name] = _Stats(pool)
        targets.extend(dict(t) for t in report.get("activeTargets") or ())
    out = total.result()
    out["pools"] = [pools[name].result() for name in sorted(pools)]
    targets.sort(key=lambda t: (-int(t.get("series", 0)), str(t.get("scrapeUrl", ""))))
    out["activeTargets"] = targets
    return out
