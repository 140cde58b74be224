"""Benchmark: bytes per series held by the scrape/remote-write pipeline, by component, no HTTP.

Drives what the agent keeps per target and per series over ``--targets`` simulated targets
(default 200, as ``benchmarks.side_by_side --workload node``) serving the node_exporter fixture
with new values every scrape: an `IncrementalParser` and a `ScrapeCache` per target, one shared
`SeriesRegistry` (with its ``last_ts`` list), and one `RemoteWriter` (its batches are taken out
of the memory queue after every commit, as a sender would). After ``--scrapes`` rounds it reports:

- the live memory (``tracemalloc``) per series, grouped by allocation site's module and by the
  top source lines, i.e. which structure owns the bytes (keys and the kept non-sample lines are
  allocated by the parser, label strings by ``Exposition.labels``, label sets by the registry
  (``labels.from_dict`` only builds the tuple a miss looks up), the cache dict and the
  registry's lists by their modules, encoded series by the writer and codec);
- the traced peak per series (the first round: every target's first scrape is a full parse plus
  a cache miss per series);
- with ``--rss``: the process RSS after each round and its peak (no ``tracemalloc``, which
  roughly doubles allocation cost and adds per-block overhead).

``--metadata`` also reads every target's metadata after each round, as the remote writer's
metadata sender does every ``send_interval`` (on by default in the agent), so the per-target
metadata dicts are counted too.

Run: ``python -m benchmarks.memory`` (``--rss`` for RSS instead of tracemalloc).
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import resource
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

from benchmarks.data import node_exporter_body
from benchmarks.scrape import OPTIONS, variants
from collector.config import QueueConfig
from collector.model.textparse import IncrementalParser
from collector.remote.encoder import BatchEncoder
from collector.scrape.cache import AppendOptions, ScrapeCache
from collector.storage.appender import Sample
from collector.storage.series import SeriesRegistry


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _encoder(registry: SeriesRegistry) -> BatchEncoder:
    """The remote writer's commit side with its default layout; sealed batches are dropped at
    once, as if the senders had them acknowledged (what stays is the per-series cache)."""
    return BatchEncoder(
        series=registry,
        external_labels=(),
        relabel=None,
        max_samples_per_send=QueueConfig().max_samples_per_send,
        num_shards=4,
        on_sealed=lambda *_: None,
        clock=time.monotonic,
    )


class Pipeline:
    """``targets`` parsers + caches, one registry, one remote writer."""

    def __init__(self, targets: int, storage: Path, *, metadata: bool = False) -> None:
        self.registry = SeriesRegistry()
        self.writer = _encoder(self.registry)
        self.parsers = [IncrementalParser() for _ in range(targets)]
        self.caches = [ScrapeCache(registry=self.registry) for _ in range(targets)]
        self.options = [
            AppendOptions(
                target_labels=(("instance", f"127.0.0.1:{19100 + i}"), ("job", "node")),
                honor_labels=OPTIONS.honor_labels,
            )
            for i in range(targets)
        ]
        self.now_ms = 1_700_000_000_000
        self.read_metadata = metadata

    def scrape_round(self, bodies: list[bytes]) -> int:
        """Every target scrapes once (body ``i % len(bodies)``); returns the samples."""
        self.now_ms += 1000
        total = 0
        for i, (parser, cache) in enumerate(zip(self.parsers, self.caches, strict=True)):
            batch: list[Sample] = []
            exp = parser.parse(bodies[(i + self.now_ms // 1000) % len(bodies)], openmetrics=False)
            result = cache.append(exp, now_ms=self.now_ms, options=self.options[i], batch=batch)
            assert result.error is None, result.error
            cache.stale_markers(self.now_ms, batch)
            cache.iter_done(flush=True)
            cache.metadata_from(exp)
            del exp
            self.writer.commit(batch)
            self.writer.seal_all()
            total += len(batch)
        self.writer.forget(self.registry.drain_released())
        if self.read_metadata:
            for cache in self.caches:
                _ = cache.metadata
        return total


_COMPONENTS = {
    "textparse.py": "parser (keys, kept lines, label strings, metadata)",
    "labels.py": "label tuples (from_dict)",
    "cache.py": "scrape cache (series dict, tracked refs)",
    "append_rules.py": "scrape cache (series dict, tracked refs)",
    "series.py": "series registry (label sets, ref lists, last timestamps)",
    "encoder.py": "remote writer cache",
    "encodings.py": "remote writer cache",
    "codec.py": "encoded series (codec)",
}


def _component(filename: str) -> str:
    base = os.path.basename(filename)
    if os.path.basename(os.path.dirname(filename)) == "textparse":
        base = "textparse.py"  # the parser package counts as one component
    return _COMPONENTS.get(base, f"other ({base})")


def report_tracemalloc(targets: int, scrapes: int, top: int, *, metadata: bool) -> None:
    """Live bytes per series by component and by source line, after ``scrapes`` rounds."""
    bodies = variants(node_exporter_body(), 4)
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start(1)
        base = tracemalloc.take_snapshot()
        pipe = Pipeline(targets, Path(tmp), metadata=metadata)
        pipe.scrape_round(bodies)
        first_peak = tracemalloc.get_traced_memory()[1]
        for _ in range(scrapes - 1):
            pipe.scrape_round(bodies)
        gc.collect()
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        series = len(pipe.registry)
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        diff = snap.filter_traces(filters).compare_to(base.filter_traces(filters), "lineno")
        by_component: dict[str, int] = defaultdict(int)
        for stat in diff:
            frame = stat.traceback[0]
            by_component[_component(frame.filename)] += stat.size_diff
        total = sum(by_component.values())
        print(f"{targets} targets, {series} series, {scrapes} scrapes each")
        print(f"first-round traced peak: {first_peak / series:8.0f} B/series")
        print(f"live after round {scrapes}:      {total / series:8.0f} B/series")
        for name, size in sorted(by_component.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<40} {size / series:8.0f} B/series")
        print(f"top {top} allocation sites (B/series, blocks/series):")
        for stat in diff[:top]:
            frame = stat.traceback[0]
            line = linecache.getline(frame.filename, frame.lineno).strip()
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
            print(
                f"  {stat.size_diff / series:7.0f} {stat.count_diff / series:5.2f}  "
                f"{where:<18} {line[:70]}"
            )
        del pipe


def report_rss(targets: int, scrapes: int, *, metadata: bool) -> None:
    """Process RSS after each round (no tracemalloc)."""
    bodies = variants(node_exporter_body(), 4)
    with tempfile.TemporaryDirectory() as tmp:
        start = _rss_mb()
        pipe = Pipeline(targets, Path(tmp), metadata=metadata)
        for n in range(1, scrapes + 1):
            pipe.scrape_round(bodies)
            print(
                f"round {n}: rss {_rss_mb():7.1f} MB (+{_rss_mb() - start:6.1f}), "
                f"peak {_peak_rss_mb():7.1f} MB, series {len(pipe.registry)}"
            )
        gc.collect()
        series = len(pipe.registry)
        print(f"after gc: {(_rss_mb() - start) * 1e6 / series:8.0f} B/series over the start RSS")


def main() -> None:
    """Parse arguments and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rss", action="store_true", help="RSS per round instead of tracemalloc")
    ap.add_argument("--metadata", action="store_true", help="read every target's metadata too")
    args = ap.parse_args()
    if args.rss:
        report_rss(args.targets, args.scrapes, metadata=args.metadata)
    else:
        report_tracemalloc(args.targets, args.scrapes, args.top, metadata=args.metadata)


if __name__ == "__main__":
    main()
