"""The native-histogram half of a scrape's append: series rules, resolution limits, encoding.

Place in the pipeline: after `collector.scrape.cache.ScrapeCache.append` has appended a
protobuf body's float samples, the scrape loop hands the body's native histograms
(``ProtoExposition.histograms``, only when the job scrapes them) to `append_histograms`, which
appends ``(ref, Histogram bytes, ts)`` to the scrape's histogram list; the loop commits it
next to the float batch (`collector.storage.appender`). Kept apart from the cache's float hot
path, which it does not touch: a body without native histograms never comes here.

Per histogram, in Prometheus's order (``scrapeLoop.append`` and its appenders):

* the series: the cache's own lookup and miss path (labels, relabeling, validation), so a
  histogram series has a ref like any other, is evicted like any other and is tracked for
  staleness in the same ``cur`` set (its marker is the float StaleNaN, which the remote writer
  sends as a histogram marker);
* duplicates, ``sample_limit`` (a histogram is one sample), out of bounds and out of order as
  for a float sample;
* ``native_histogram_min_bucket_factor``: an exponential schema above the allowed one is
  lowered to it (``maxSchemaAppender``); then ``native_histogram_bucket_limit``: the schema is
  lowered one step at a time until the buckets fit, and a histogram that does not fit even at
  schema -4 fails the whole scrape with ``histogram bucket limit exceeded``
  (``bucketLimitAppender``);
* the agent appender's ``Histogram.Validate``: an integer histogram whose count is not its
  buckets' total fails the scrape with Prometheus's message
  (`~collector.model.histogram.NativeHistogram.invalid`);
* `collector.model.histogram.encode`: the remote-write ``Histogram`` bytes, built once here.

Prometheus counterpart: the histogram branch of ``scrapeLoop.append`` in ``scrape/scrape.go``,
``bucketLimitAppender`` and ``maxSchemaAppender`` in ``scrape/target.go``.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.errors import CollectorError, ParseError, ScrapeError
from collector.model.histogram import (
    BUCKET_LIMIT_ERROR,
    encode,
    fit_bucket_limit,
    reduce_resolution,
)
from collector.model.textparse.protoexposition import NativeSample, key_labels
from collector.scrape.append_rules import MAX_AHEAD_MS, AppendOptions, AppendResult, LabelLimitError
from collector.scrape.cache import ScrapeCache
from collector.storage.appender import HistogramSample

__all__ = ["BucketLimitError", "append_histograms"]


class BucketLimitError(ScrapeError):
    """A native histogram had more buckets than ``native_histogram_bucket_limit`` even at
    the lowest schema: the scrape fails (``..._exceeded_native_histogram_bucket_limit_total``)."""


def append_histograms(
    cache: ScrapeCache,
    histograms: Sequence[NativeSample],
    *,
    now_ms: int,
    options: AppendOptions,
    out: list[HistogramSample],
    result: AppendResult,
) -> None:
    """Append ``histograms`` to ``out`` under the cache's rules; counts go into ``result``
    (its ``error`` is set, and the pass stops, on a series error or the bucket limit)."""
    if not histograms or result.error is not None:
        return
    cur = cache.tracked()  # histogram refs are tracked in the pass's set, with the floats'
    series = cache.series
    last = cache.last_ts
    honor = options.honor_timestamps
    limit = options.sample_limit
    max_schema = options.max_schema
    bucket_limit = options.bucket_limit
    max_ts = now_ms + MAX_AHEAD_MS
    appended = result.post_relabel - result.duplicates
    error: CollectorError | None = None
    for key, h, ts in histograms:
        result.scraped += 1
        try:
            ref = series.get(key)
            if ref is None:
                ref = cache._add_series(key, _labels(key), options)
                if ref:
                    result.series_added += 1
            if not ref:
                cache._dropped_seen.add(key)
                continue
        except (ScrapeError, ParseError) as exc:
            error = exc
            break
        result.post_relabel += 1
        if ts is None or not honor:
            if ref in cur:
                result.duplicates += 1
                continue
            t = now_ms
            tracked = True
        else:
            t = ts
            tracked = options.track_timestamps_staleness
        if limit:
            appended += 1
            if appended > limit:
                result.sample_limit_exceeded = True
                result.over_sample_limit += 1
                cache._seen.add(ref)
                continue
        if t > max_ts:
            result.out_of_bounds += 1
            cache._seen.add(ref)
            continue
        lt = last[ref]
        if t <= lt:
            result.out_of_order += 1
            cache._seen.add(ref)
            continue
        if h.schema > max_schema:
            reduce_resolution(h, max_schema)
        if bucket_limit and not fit_bucket_limit(h, bucket_limit):
            error = BucketLimitError(BUCKET_LIMIT_ERROR)
            break
        invalid = h.invalid()
        if invalid:
            error = ScrapeError(invalid)
            break
        if ts is not None and honor:
            cache._undo.append((ref, lt))
        last[ref] = t
        if tracked:
            cur.add(ref)
        else:
            cache._seen.add(ref)
        out.append((ref, encode(h), t))
    if error is not None:
        result.error = error
        result.label_limit_exceeded = isinstance(error, LabelLimitError)


def _labels(key: bytes) -> list[tuple[str, str]]:
    try:
        return key_labels(key)
    except ValueError as exc:
        name = key[: key.find(b"\xfe")].decode("utf-8", "replace")
        raise ScrapeError(f'protobuf: label pair of native histogram "{name}": {exc}') from None
