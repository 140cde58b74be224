"""One ``/metrics`` for the main process and every scrape worker (`collector.workers`).

Place in the pipeline: the main process's web layer serves a registry holding one
`MergedMetrics` collector. Each scrape asks the main process's own registry for its families
now and reads every worker's latest `Snapshot` (at most `SNAPSHOT_INTERVAL` old); samples
with the same name and labels are combined, so the names and labels are those of the
in-process agent and dashboards work unchanged:

* counters, histograms and summaries (and ``_created``: the earliest) are summed; the
  samples of a worker that exited are kept (`MergedMetrics.retire`), so a restart never makes
  a sum go down, which ``rate()`` would read as a counter reset;
* gauges are summed (``process_resident_memory_bytes``, pending samples, shards: the whole
  agent's), except the ones a sum makes meaningless: timestamps (``*_timestamp_seconds``),
  ``*_info`` and the few listed in `_MAX_GAUGES` take the highest value, `_MIN_GAUGES` the
  lowest (``prometheus_config_last_reload_successful``: 0 when any process failed).

Per-worker series are only the supervisor's own (``collector_scrape_worker_*{worker=...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from collector.workers.protocol import Family

__all__ = ["MergedMetrics", "families_of"]

_MIN_GAUGES = frozenset(
    {
        "process_start_time_seconds",
        "process_max_fds",
        "prometheus_config_last_reload_successful",
    }
)
_MAX_GAUGES = frozenset(
    {"prometheus_ready", "prometheus_remote_storage_shard_capacity", "python_info"}
)
_COUNTER_TYPES = frozenset({"counter", "histogram", "summary"})

_Key = tuple[str, tuple[tuple[str, str], ...]]


def families_of(registry: CollectorRegistry) -> list[Family]:
    """``registry``'s families now, in the form a snapshot carries."""
    return [
        (
            m.name,
            m.documentation,
            m.type,
            m.unit,
            [(s.name, dict(s.labels), float(s.value)) for s in m.samples],
        )
        for m in registry.collect()
    ]


def _combine(kind: str, sample: str, old: float, new: float) -> float:
    if sample.endswith("_created") or sample in _MIN_GAUGES:
        return min(old, new)
    if kind in _COUNTER_TYPES:
        return old + new
    if kind == "info" or sample in _MAX_GAUGES or sample.endswith(("_timestamp_seconds", "_info")):
        return max(old, new)
    return old + new


class _Merged:
    """Families being merged: name -> (help, type, unit, {(sample, labels): value})."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, str, dict[_Key, float]]] = {}

    def add(self, families: Iterable[Family], *, counters_only: bool = False) -> None:
        for name, doc, kind, unit, samples in families:
            if counters_only and kind not in _COUNTER_TYPES:
                continue
            entry = self.families.get(name)
            if entry is None:
                entry = self.families[name] = (doc, kind, unit, {})
            values = entry[3]
            kind = entry[1]
            for sample, labels, value in samples:
                if counters_only and sample.endswith("_created"):
                    continue
                key = (sample, tuple(sorted(labels.items())))
                old = values.get(key)
                values[key] = value if old is None else _combine(kind, sample, old, value)

    def metrics(self) -> Iterator[Metric]:
        for name, (doc, kind, unit, values) in self.families.items():
            metric = Metric(name, doc, kind, unit)
            for (sample, labels), value in values.items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


class MergedMetrics(Collector):
    """The main registry's families merged with every worker's latest snapshot."""

    def __init__(
        self, own: CollectorRegistry, workers: Callable[[], Iterable[Iterable[Family]]]
    ) -> None:
        """``workers()`` returns each running worker's families from its latest snapshot."""
        self._own = own
        self._workers = workers
        self._retired = _Merged()

    def retire(self, families: Iterable[Family]) -> None:
        """Keep the counters of a worker that exited (its last snapshot) in every sum."""
        self._retired.add(families, counters_only=True)

    def collect(self) -> Iterator[Metric]:
        """Every family once: the main process's, the workers' and the retired counters."""
        merged = _Merged()
        merged.add(families_of(self._own))
        for families in self._workers():
            merged.add(families)
        merged.add(
            (
                (name, doc, kind, unit, [(s, dict(labels), v) for (s, labels), v in vals.items()])
                for name, (doc, kind, unit, vals) in self._retired.families.items()
            )
        )
        return merged.metrics()


def merged_registry(metrics: MergedMetrics) -> CollectorRegistry:
    """A registry that serves ``metrics`` alone (what the main process's ``/metrics`` reads)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return registry
