"""One ``/metrics`` and one API from several processes (`collector.workers.metrics`, ``views``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.workers.metrics import MergedMetrics, families_of, merged_registry
from collector.workers.protocol import Family
from collector.workers.views import (
    merge_cardinality,
    merge_pools,
    merge_remote_write,
    merge_targets,
)


def process(appended: float, rss: float, start: float, *, ok: int = 1) -> list[Family]:
    """One worker's registry, as its snapshot carries it."""
    registry = CollectorRegistry()
    Counter("prometheus_agent_samples_appended", "x", ["type"], registry=registry).labels(
        type="float"
    ).inc(appended)
    Gauge("process_resident_memory_bytes", "x", registry=registry).set(rss)
    Gauge("process_start_time_seconds", "x", registry=registry).set(start)
    Gauge("prometheus_config_last_reload_successful", "x", registry=registry).set(ok)
    Gauge(
        "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", "x", registry=registry
    ).set(start + appended)
    h = Histogram("prometheus_target_interval_length_seconds", "x", registry=registry)
    h.observe(appended / 1000)
    return families_of(registry)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names)), "a family appears twice"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_gauges_are_summed_timestamps_and_flags_are_not() -> None:
    own = CollectorRegistry()
    Gauge("process_resident_memory_bytes", "x", registry=own).set(30)
    Gauge("process_start_time_seconds", "x", registry=own).set(100)
    workers = [process(1000, 40, 105), process(500, 45, 103, ok=0)]
    merged = samples(merged_registry(MergedMetrics(own, lambda: workers)))
    assert merged["prometheus_agent_samples_appended_total", (("type", "float"),)] == 1500
    assert merged["process_resident_memory_bytes", ()] == 115
    assert merged["process_start_time_seconds", ()] == 100
    assert merged["prometheus_config_last_reload_successful", ()] == 0
    assert merged["prometheus_remote_storage_queue_highest_sent_timestamp_seconds", ()] == 1105
    assert merged["prometheus_target_interval_length_seconds_count", ()] == 2
    assert merged["prometheus_target_interval_length_seconds_bucket", (("le", "+Inf"),)] == 2


def test_a_restarted_workers_counters_never_go_down() -> None:
    own = CollectorRegistry()
    workers = [process(1000, 40, 105), process(500, 45, 103)]
    metrics = MergedMetrics(own, lambda: workers)
    registry = merged_registry(metrics)
    key = ("prometheus_agent_samples_appended_total", (("type", "float"),))
    assert samples(registry)[key] == 1500
    metrics.retire(workers[1])  # worker 1 died: its last counters stay in the sums
    workers[1] = process(20, 41, 200)  # started again from zero
    merged = samples(registry)
    assert merged[key] == 1520
    assert merged["process_resident_memory_bytes", ()] == 81  # gauges: only the live ones
    assert merged["prometheus_target_interval_length_seconds_count", ()] == 3


def test_targets_pools_and_queues() -> None:
    a = [{"scrapePool": "b", "scrapeUrl": "u1"}, {"scrapePool": "a", "scrapeUrl": "u2"}]
    b = [{"scrapePool": "a", "scrapeUrl": "u3"}]
    assert [t["scrapeUrl"] for t in merge_targets([a, b])] == ["u2", "u3", "u1"]
    pool = {"discovered": 10, "dropped": 2, "failed": 1}
    pools = merge_pools(
        [
            [{"scrapePool": "a", "active": 3, "series": 30, **pool}],
            [{"scrapePool": "a", "active": 5, "series": 50, **pool}],
        ]
    )
    assert pools == [{"scrapePool": "a", "active": 8, "series": 80, **pool}]
    queue = {
        "name": "q",
        "url": "http://x",
        "samplesSent": 10,
        "samplesFailed": 1,
        "samplesRetried": 2,
        "samplesPending": 3,
        "shards": 1,
        "diskQueueBytes": 100,
        "protocol": "2.0",
        "protocolConfigured": "2.0",
        "fallbackReason": None,
    }
    fell_back = {**queue, "protocol": "1.0", "fallbackReason": "415"}
    (merged,) = merge_remote_write([[queue], [fell_back]])
    assert merged["samplesSent"] == 20
    assert merged["diskQueueBytes"] == 200
    assert merged["shards"] == 2
    assert (merged["protocol"], merged["fallbackReason"]) == ("1.0", "415")


def _stats(series: int, names: dict[str, int], labels: dict[str, int]) -> dict[str, object]:
    return {
        "series": series,
        "churn": {"lastAdded": 1, "totalAdded": series},
        "seriesCountByMetricName": [{"name": n, "value": v} for n, v in names.items()],
        "labelValueCountByLabelName": [{"name": n, "value": v} for n, v in labels.items()],
    }


def test_cardinality_adds_series_and_keeps_the_largest_label_value_count() -> None:
    one = {
        **_stats(30, {"m": 20, "n": 10}, {"instance": 2}),
        "targets": 2,
        "pools": [{**_stats(30, {"m": 20, "n": 10}, {"instance": 2}), "scrapePool": "p"}],
        "activeTargets": [{"scrapeUrl": "a", "series": 30}],
    }
    two = {
        **_stats(70, {"n": 40, "o": 30}, {"instance": 3}),
        "targets": 3,
        "pools": [{**_stats(70, {"n": 40, "o": 30}, {"instance": 3}), "scrapePool": "p"}],
        "activeTargets": [{"scrapeUrl": "b", "series": 70}],
    }
    report = merge_cardinality([one, two])
    assert report["series"] == 100
    assert report["targets"] == 5
    assert report["churn"] == {"lastAdded": 2, "totalAdded": 100}
    assert report["seriesCountByMetricName"] == [
        {"name": "n", "value": 50},
        {"name": "o", "value": 30},
    ]
    assert report["labelValueCountByLabelName"] == [{"name": "instance", "value": 3}]
    assert report["pools"][0]["series"] == 100
    assert [t["scrapeUrl"] for t in report["activeTargets"]] == ["b", "a"]
