"""Benchmark: the per-scrape append path (parse + scrape cache + batch), no HTTP.

Measures what one scrape costs a loop once the body is in memory: ``textparse.parse``, then
`ScrapeCache.append` (cache lookups, staleness tracking, the ``(ref, value, ts)`` batch) and the
staleness pass, for a node_exporter body (``tests/fixtures/node_exporter.prom``) and a
2,000-series kube-state-metrics-shaped body. "first" is a cold cache (every series is a miss:
label parsing, target labels, relabeling, validation, ``SeriesRegistry.acquire``). The steady
rows scrape bodies with the same lines and new values (`variants`) against a warm cache:
"steady full" parses every body from scratch (`textparse.parse`, the loop before the
steady-state fast path), "steady fast" uses a warm `textparse.IncrementalParser`, which is
what the loop does every interval. "steady pure" is "steady fast" on the pure-Python
steady-state pass (``IncrementalParser(native=False)``), "fast parse pure" its parse alone:
timed in the same run as "steady fast", which takes the C pass of `collector._native` when it
is built and not disabled (the "native/pure" line says which, and gives the two ratios).
"parse"/"fast parse" time the two parsers alone, "cache only" the cache + batch pass alone on
a pre-parsed body.

Run: ``python -m benchmarks.scrape``. Prints µs per sample and per scrape.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from collector import native
from collector.config import ScrapeConfig
from collector.model.relabel import compile_rules
from collector.model.textparse import IncrementalParser, parse
from collector.scrape.cache import ScrapeCache
from collector.scrape.loop import ParseFn, append_options
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
OPTIONS = append_options(CFG, target_labels=TARGET, metric_relabeler=compile_rules(()))


def variants(body: bytes, count: int) -> list[bytes]:
    """``count`` copies of ``body`` whose sample values differ (what real scrapes look like):
    every value becomes ``value + k`` for copy ``k``; comments and keys stay byte-identical."""
    lines = body.split(b"\n")
    out = []
    for k in range(count):
        new = []
        for line in lines:
            if line and not line.startswith(b"#"):
                head, _, value = line.rpartition(b" ")
                line = head + b" " + repr(float(value) + k).encode()
            new.append(line)
        out.append(b"\n".join(new))
    return out


def _scrape_once(parse_fn: ParseFn, body: bytes, cache: ScrapeCache, now_ms: int) -> int:
    """One scrape's CPU work (parse, append, staleness, end of pass); returns the samples."""
    batch: list[Sample] = []
    exp = parse_fn(body, openmetrics=False)
    result = cache.append(exp, now_ms=now_ms, options=OPTIONS, batch=batch)
    assert result.error is None
    cache.stale_markers(now_ms, batch)
    cache.iter_done(flush=True)
    cache.metadata_from(exp)
    return result.scraped


def _best_of(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` calls (perf_counter), and the calls' sample count."""
    best = float("inf")
    samples = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        samples = fn()
        best = min(best, time.perf_counter() - start)
    return best, samples


def bench(name: str, body: bytes, *, repeat: int = 30) -> dict[str, float]:
    """Print first-scrape and steady-state costs for one body; returns µs/sample by row."""
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 15_000))
    bodies = variants(body, 8)
    turn = iter(range(1 << 62))

    def next_body() -> bytes:
        return bodies[next(turn) % len(bodies)]

    def first() -> int:
        cache = ScrapeCache(registry=SeriesRegistry())
        return _scrape_once(parse, next_body(), cache, next(clock))

    warm_full = ScrapeCache(registry=SeriesRegistry())
    _scrape_once(parse, body, warm_full, next(clock))

    def steady_full() -> int:
        """Warm cache, stateless full parse of every body (the pre-fast-path loop)."""
        return _scrape_once(parse, next_body(), warm_full, next(clock))

    warm = ScrapeCache(registry=SeriesRegistry())
    parser = IncrementalParser()
    _scrape_once(parser.parse, body, warm, next(clock))

    def steady_fast() -> int:
        """Warm cache and warm IncrementalParser: what the loop does every interval."""
        return _scrape_once(parser.parse, next_body(), warm, next(clock))

    warm_pure = ScrapeCache(registry=SeriesRegistry())
    pure = IncrementalParser(native=False)
    _scrape_once(pure.parse, body, warm_pure, next(clock))

    def steady_pure() -> int:
        """The "steady fast" scrape on the pure-Python steady-state pass (the C baseline)."""
        return _scrape_once(pure.parse, next_body(), warm_pure, next(clock))

    def parse_only() -> int:
        return len(parse(next_body(), openmetrics=False).samples)

    def fast_parse_only() -> int:
        return len(parser.parse(next_body(), openmetrics=False).columns()[0])

    def fast_parse_pure() -> int:
        return len(pure.parse(next_body(), openmetrics=False).columns()[0])

    exp = parse(body, openmetrics=False)

    def cache_only() -> int:
        """The steady-state cache + batch pass alone, on a pre-parsed body."""
        now_ms = next(clock)
        batch: list[Sample] = []
        result = warm.append(exp, now_ms=now_ms, options=OPTIONS, batch=batch)
        warm.stale_markers(now_ms, batch)
        warm.iter_done(flush=True)
        return result.scraped

    rows: dict[str, float] = {}
    for label, fn in (
        ("first", first),
        ("steady full", steady_full),
        ("steady fast", steady_fast),
        ("steady pure", steady_pure),
        ("parse", parse_only),
        ("fast parse", fast_parse_only),
        ("fast parse pure", fast_parse_pure),
        ("cache only", cache_only),
    ):
        seconds, samples = _best_of(fn, repeat)
        rows[label] = seconds / samples * 1e6
        print(
            f"{name:<16} {label:<15} {samples:>6} samples  {seconds * 1e3:8.3f} ms/scrape  "
            f"{rows[label]:6.3f} µs/sample"
        )
    print(
        f"{name:<16} native/pure: steady {rows['steady fast'] / rows['steady pure']:.2f}x, "
        f"parse alone {rows['fast parse'] / rows['fast parse pure']:.2f}x "
        f"(native extension {native.describe()})"
    )
    return rows


def main() -> None:
    """Run both datasets."""
    bench("node_exporter", node_exporter_body())
    bench("ksm 2000", ksm_body(2000))


if __name__ == "__main__":
    main()
