"""Parser benchmark: `collector.model.textparse` against ``prometheus_client``'s text parser.

The passes per dataset (node_exporter fixture, kube-state-metrics-shaped body):

- baseline: ``prometheus_client.parser.text_string_to_metric_families`` over the decoded body,
  consuming every sample (its only mode: it always builds label dicts);
- full parse: ``parse(body)`` plus ``labels(key)`` for every key (a cold scrape cache);
- cache hit: ``parse(body)`` plus one dict lookup per key, no ``labels()`` (a stateless
  parse of every scrape, the loop's hot path before the steady-state fast path);
- steady: a warm ``IncrementalParser`` (what the scrape loop uses) over bodies with the same
  lines and new values (`benchmarks.scrape.variants`), plus the scrape cache's lookups
  (``map(dict.get, keys)``): key + value per series, the production steady state.
- stream: the path of bodies too large to hold (`StreamParser`): 64 KiB chunks, parsed in
  64 KiB segments (small, so that both bodies span several), plus the same lookups; it should
  match the stateless cache-hit pass, its memory being a few segments instead of the body.
- protobuf full / steady: the same families as delimited ``io.prometheus.client`` protobuf
  (`benchmarks.protobuf_body`): ``protobuf.parse`` plus ``labels(key)`` of every key, and a
  warm ``ProtobufParser`` (what the scrape loop uses for protobuf) over the value variants
  plus the cache lookups: the protobuf counterparts of "full" and "steady".

Timing is ``time.perf_counter`` around whole passes, best of several rounds (the least
disturbed run). Run: ``python -m benchmarks.parser [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.data import ksm_body, node_exporter_body
from benchmarks.protobuf_body import to_protobuf
from benchmarks.scrape import variants
from collector.model.textparse import IncrementalParser, StreamParser, parse, protobuf

__all__ = ["main", "measure"]


def _baseline(text: str) -> int:
    """prometheus_client full parse; returns the number of samples."""
    return sum(len(family.samples) for family in text_string_to_metric_families(text))


def _full(body: bytes) -> int:
    """Our full parse: samples plus labels() of every key."""
    exp = parse(body, openmetrics=False)
    labels = exp.labels
    for key, _, _ in exp.samples:
        labels(key)
    return len(exp.samples)


def _cache_hit(body: bytes, cache: dict[bytes, int]) -> int:
    """Our steady state: samples plus one scrape-cache lookup per key."""
    hits = 0
    get = cache.get
    for key, _, _ in parse(body, openmetrics=False).samples:
        if get(key) is not None:
            hits += 1
    return hits


def _steady(parser: IncrementalParser, bodies: list[bytes], cache: dict[bytes, int]) -> int:
    """Our production steady state: incremental parse + one cache lookup per key."""
    body = bodies[0]
    bodies.append(bodies.pop(0))  # rotate: every call sees new values
    keys, values, _ = parser.parse(body, openmetrics=False).columns()
    found = list(map(cache.get, keys))
    return len(values) - found.count(None)


def _stream(chunks: list[bytes], cache: dict[bytes, int]) -> int:
    """The streamed path: segments of whole lines as chunks arrive, one lookup per key."""
    parser = StreamParser(openmetrics=False, segment_size=1 << 16)
    hits = 0
    get = cache.get
    for chunk in [*chunks, b""]:
        exp = parser.feed(chunk) if chunk else parser.close()
        if exp is not None:
            found = list(map(get, exp.columns()[0]))
            hits += len(found) - found.count(None)
    return hits


def _proto_full(body: bytes) -> int:
    """Protobuf full parse: decode plus labels() of every key."""
    exp = protobuf.parse(body)
    labels = exp.labels
    keys = exp.columns()[0]
    for key in keys:
        labels(key)
    return len(keys)


def _proto_steady(
    parser: protobuf.ProtobufParser, bodies: list[bytes], cache: dict[bytes, int]
) -> int:
    """Protobuf steady state: a warm ProtobufParser + one cache lookup per key."""
    body = bodies[0]
    bodies.append(bodies.pop(0))
    keys, values, _ = parser.parse(body).columns()
    found = list(map(cache.get, keys))
    return len(values) - found.count(None)


def measure(
    passes: dict[str, Callable[[], int]], *, rounds: int, min_time: float = 0.1
) -> dict[str, tuple[int, float]]:
    """Best seconds per call of each pass; rounds interleave the passes so that background
    load (a shared CI box) hits all of them alike and the ratios stay meaningful."""
    counts = {name: fn() for name, fn in passes.items()}
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(rounds):
        for name, fn in passes.items():
            gc.collect()
            calls = 0
            start = time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            best[name] = min(best[name], elapsed / calls)
    return {name: (counts[name], best[name]) for name in passes}


def run_dataset(name: str, body: bytes, *, rounds: int) -> dict[str, float]:
    """Measure every pass on one body and print series/s and ratios."""
    text = body.decode()
    exp = parse(body, openmetrics=False)
    cache = {key: i for i, (key, _, _) in enumerate(exp.samples)}
    bodies = variants(body, 8)
    parser = IncrementalParser()
    parser.parse(body, openmetrics=False)
    chunks = [body[i : i + (1 << 16)] for i in range(0, len(body), 1 << 16)]
    proto_bodies = [to_protobuf(b) for b in bodies]
    proto_cache = {key: i for i, key in enumerate(protobuf.parse(proto_bodies[0]).columns()[0])}
    proto_parser = protobuf.ProtobufParser()
    proto_parser.parse(proto_bodies[0])
    results = measure(
        {
            "prometheus_client": lambda: _baseline(text),
            "full": lambda: _full(body),
            "cache_hit": lambda: _cache_hit(body, cache),
            "steady": lambda: _steady(parser, bodies, cache),
            "stream": lambda: _stream(chunks, cache),
            "protobuf_full": lambda: _proto_full(proto_bodies[0]),
            "protobuf_steady": lambda: _proto_steady(proto_parser, proto_bodies, proto_cache),
        },
        rounds=rounds,
    )
    if len({count for count, _ in results.values()}) != 1:
        raise AssertionError(f"sample counts differ: {results}")
    rates = {pass_: count / seconds for pass_, (count, seconds) in results.items()}
    base = rates["prometheus_client"]
    print(f"{name}: {len(exp.samples)} series, {len(body)} bytes")
    print(f"  prometheus_client full parse : {base:>12,.0f} series/s")
    print(
        f"  collector full parse+labels  : {rates['full']:>12,.0f} series/s"
        f"  ({rates['full'] / base:.1f}x)"
    )
    print(
        f"  collector cache-hit pass     : {rates['cache_hit']:>12,.0f} series/s"
        f"  ({rates['cache_hit'] / base:.1f}x)"
    )
    print(
        f"  collector steady (incr.+hit) : {rates['steady']:>12,.0f} series/s"
        f"  ({rates['steady'] / base:.1f}x)"
    )
    print(
        f"  collector streamed + hit     : {rates['stream']:>12,.0f} series/s"
        f"  ({rates['stream'] / base:.1f}x)"
    )
    print(
        f"  protobuf full decode+labels  : {rates['protobuf_full']:>12,.0f} series/s"
        f"  ({rates['protobuf_full'] / rates['full']:.2f}x text full)"
    )
    print(
        f"  protobuf steady (parser+hit) : {rates['protobuf_steady']:>12,.0f} series/s"
        f"  ({rates['protobuf_steady'] / rates['steady']:.2f}x text steady)"
    )
    return rates


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    run_dataset("node_exporter", node_exporter_body(), rounds=args.rounds)
    run_dataset("kube-state-metrics (2000 x 8 labels)", ksm_body(), rounds=args.rounds)


if __name__ == "__main__":
    main()
