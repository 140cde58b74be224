"""Benchmark: what a native histogram costs a scrape (decode, append rules, encode).

One protobuf body of 200 integer native histograms (schema 3, a zero bucket, one span of 20
buckets, deltas one field each as client_golang sends them) is scraped over and over by a warm
`ProtobufParser` with ``native=True``: the decode into `NativeHistogram` objects, the scrape
cache's float pass (nothing here), `append_histograms` (series lookup, staleness tracking,
limits) and the remote-write ``Histogram`` bytes built by `collector.model.histogram.encode`.
With ``--bucket-limit`` the resolution is also lowered (a schema step per 2x over the limit).

Run: ``python -m benchmarks.native_histograms [--bucket-limit N]``. Prints µs per histogram.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from collector.model.textparse import protobuf
from collector.scrape.append_rules import AppendOptions
from collector.scrape.cache import ScrapeCache
from collector.scrape.histograms import append_histograms
from collector.storage.appender import HistogramSample, Sample
from collector.storage.series import SeriesRegistry
from tests.model import client_model as pb

HISTOGRAMS = 200
BUCKETS = 20


def body() -> bytes:
    """The delimited body of one family of `HISTOGRAMS` native histograms."""
    family: Any = pb.MetricFamily(name="rpc_duration_seconds", type=pb.HISTOGRAM)
    for i in range(HISTOGRAMS):
        m = family.metric.add()
        m.label.add(name="path", value=f"/api/v1/item/{i}")
        h = m.histogram
        deltas = [1, 2, -1, 0, 3, -2, 1, 1, 0, -1] * (BUCKETS // 10)
        counts = [sum(deltas[: j + 1]) for j in range(len(deltas))]
        h.sample_count, h.sample_sum = sum(counts) + 1, 5.0  # + the zero bucket's
        h.schema, h.zero_threshold, h.zero_count = 3, 1e-9, 1
        h.positive_span.add(offset=-5, length=BUCKETS)
        h.positive_delta.extend(deltas)
    return bytes(pb.delimited([family]))


def run(bucket_limit: int, rounds: int = 50, repeat: int = 5) -> float:
    """Best seconds per scrape of `body`."""
    data = body()
    parser = protobuf.ProtobufParser(native=True)
    cache = ScrapeCache(registry=SeriesRegistry())
    options = AppendOptions(native_histograms=True, bucket_limit=bucket_limit)
    now = 1_700_000_000_000

    def once() -> None:
        nonlocal now
        now += 15_000
        exp = parser.parse(data)
        batch: list[Sample] = []
        out: list[HistogramSample] = []
        result = cache.append(exp, now_ms=now, options=options, batch=batch)
        append_histograms(
            cache, exp.histograms, now_ms=now, options=options, out=out, result=result
        )
        assert len(out) == HISTOGRAMS, result.error
        cache.iter_done(flush=True)

    once()
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(rounds):
                once()
            best = min(best, (time.perf_counter() - start) / rounds)
    finally:
        gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bucket-limit", type=int, default=0)
    args = parser.parse_args()
    per_scrape = run(args.bucket_limit)
    print(
        f"{HISTOGRAMS} native histograms x {BUCKETS} buckets"
        f"{f', bucket limit {args.bucket_limit}' if args.bucket_limit else ''}: "
        f"{per_scrape * 1e3:.2f} ms/scrape, {per_scrape / HISTOGRAMS * 1e6:.1f} µs/histogram"
    )


if __name__ == "__main__":
    main()
