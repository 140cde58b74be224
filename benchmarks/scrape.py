"""Benchmark: the per-scrape append path (parse + scrape cache + batch), no HTTP.

Measures what one scrape costs a loop once the body is in memory: ``textparse.parse``, then
`ScrapeCache.append` (cache lookups, staleness tracking, the ``(ref, value, ts)`` batch) and the
staleness pass, for a node_exporter body (``tests/fixtures/node_exporter.prom``) and a
2,000-series kube-state-metrics-shaped body. "first" is a cold cache (every series is a miss:
label parsing, target labels, relabeling, validation, ``SeriesRegistry.acquire``); "steady" is
the same body again with a warm cache, which is what production does every interval.

Run: ``python -m benchmarks.scrape``. Prints µs per sample and per scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from collector.config import ScrapeConfig
from collector.model.relabel import compile_rules
from collector.model.textparse import parse
from collector.scrape.cache import ScrapeCache
from collector.scrape.loop import append_options
from collector.storage.appender import Sample
from collector.storage.series import SeriesRegistry

try:
    from benchmarks.data import ksm_body, node_exporter_body
except ImportError:  # the parser engineer's data module is optional
    from pathlib import Path

    def node_exporter_body() -> bytes:
        """The node_exporter fixture."""
        return Path("tests/fixtures/node_exporter.prom").read_bytes()

    def ksm_body(series: int = 2000, labels: int = 8) -> bytes:
        """A kube-state-metrics-shaped body."""
        lines = ["# TYPE kube_pod_status_phase gauge"]
        for i in range(series):
            extra = ",".join(f'l{j}="value-{i}-{j}"' for j in range(labels - 3))
            lines.append(
                f'kube_pod_status_phase{{namespace="ns-{i % 40}",pod="pod-{i}",phase="Running",'
                f"{extra}}} 1"
            )
        return ("\n".join(lines) + "\n").encode()


TARGET = (("instance", "10.0.0.1:9100"), ("job", "node"))
CFG = ScrapeConfig(job_name="node")


def _scrape_once(body: bytes, cache: ScrapeCache, now_ms: int) -> int:
    """One scrape's CPU work; returns the batch size."""
    options = append_options(CFG, target_labels=TARGET, metric_relabeler=compile_rules(()))
    batch: list[Sample] = []
    exp = parse(body, openmetrics=False)
    result = cache.append(exp, now_ms=now_ms, options=options, batch=batch)
    assert result.error is None
    cache.stale_markers(now_ms, batch)
    cache.iter_done(flush=True)
    return result.scraped


def _best_of(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best = float("inf")
    samples = 0
    for _ in range(repeat):
        start = time.perf_counter()
        samples = fn()
        best = min(best, time.perf_counter() - start)
    return best, samples


def bench(name: str, body: bytes, *, repeat: int = 30) -> None:
    """Print first-scrape and steady-state costs for one body."""
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 15_000))

    def first() -> int:
        cache = ScrapeCache(registry=SeriesRegistry(), last_ts={})
        return _scrape_once(body, cache, next(clock))

    warm = ScrapeCache(registry=SeriesRegistry(), last_ts={})
    _scrape_once(body, warm, next(clock))

    def steady() -> int:
        return _scrape_once(body, warm, next(clock))

    def parse_only() -> int:
        return len(parse(body, openmetrics=False).samples)

    exp = parse(body, openmetrics=False)
    options = append_options(CFG, target_labels=TARGET, metric_relabeler=compile_rules(()))

    def cache_only() -> int:
        """The steady-state cache + batch pass alone, on a pre-parsed body."""
        now_ms = next(clock)
        batch: list[Sample] = []
        result = warm.append(exp, now_ms=now_ms, options=options, batch=batch)
        warm.stale_markers(now_ms, batch)
        warm.iter_done(flush=True)
        return result.scraped

    for label, fn in (
        ("first", first),
        ("steady", steady),
        ("parse only", parse_only),
        ("cache only", cache_only),
    ):
        seconds, samples = _best_of(fn, repeat)
        print(
            f"{name:<16} {label:<11} {samples:>6} samples  {seconds * 1e3:8.3f} ms/scrape  "
            f"{seconds / samples * 1e6:6.3f} µs/sample"
        )


def main() -> None:
    """Run both datasets."""
    bench("node_exporter", node_exporter_body())
    bench("ksm 2000", ksm_body(2000))


if __name__ == "__main__":
    main()
