"""One target's scrape loop: wait for its slot, scrape, append, report, commit; forever.

``ScrapeLoop.run`` is owned by the pool's TaskGroup and only ends by cancellation. Each
iteration (`ScrapeLoop.scrape_and_report`) turns every failure into data: ``up 0``, the
target's ``last_error`` and counters (STYLE rule 3). One iteration commits once:

* success: the samples, staleness markers for series that disappeared, the report series;
* failure: everything is rolled back, then the staleness pass of spec §4.8 (quirks included)
  and the report series with ``up 0`` are committed.

When the pool stops a loop because its target went away, the pool runs `end_of_run`: two
ticks plus ``I/10`` later it commits staleness markers for every tracked series and the report
series, stamped at the first of those ticks (spec §4.9). Shutdown, job removal,
cache-reusing reloads and hand-offs to another cluster member (the series goes on there) never
get there (the pool's scope is cancelled, or the pool skips it).

Prometheus counterpart: ``scrapeLoop`` in ``scrape/scrape.go``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn, Protocol

from collector.config import ScrapeConfig, ScrapeProtocol
from collector.errors import ParseError, ScrapeBodyTooLarge, ScrapeError
from collector.model import textparse
from collector.model.duration import format_duration
from collector.model.histogram import pick_schema
from collector.model.labels import METRIC_NAME, Labels
from collector.model.textparse import protobuf
from collector.model.textparse.exposition import Exemplar
from collector.model.textparse.protoexposition import NativeSample
from collector.model.value import STALE_NAN
from collector.scrape.cache import AppendOptions, AppendResult, Exposition, ScrapeCache
from collector.scrape.cardinality import Churn
from collector.scrape.exemplars import ExemplarTracker
from collector.scrape.histograms import BucketLimitError, append_histograms
from collector.scrape.limits import TargetLimits
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.schedule import Ticker, TimestampAligner, first_delay
from collector.scrape.scraper import Scraper, ScrapeResponse, parser_for
from collector.scrape.stream import append_stream, read_all
from collector.scrape.target import RelabelProcessor, Target
from collector.storage.appender import (
    Appendable,
    ExemplarSample,
    HistogramSample,
    Sample,
    forward,
)
from collector.storage.series import SeriesRegistry

__all__ = [
    "REPORT_EXTRA",
    "REPORT_NAMES",
    "LoopSettings",
    "ParseFn",
    "ScrapeLoop",
    "append_options",
]

log = logging.getLogger(__name__)

REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)
"""The report series written after every attempt (spec §4.10), in this order."""

REPORT_EXTRA = ("scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes")
"""Added with ``extra_scrape_metrics: true``."""

_MS = 1_000_000
_NS = 1_000_000_000


class ParseFn(Protocol):
    """`collector.model.textparse.parse`."""

    def __call__(self, body: bytes, *, openmetrics: bool) -> Exposition:
        """Parse a body or raise a `ParseError` carrying ``partial``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSettings:
    """Per-loop settings from the job config (constant for the loop's life)."""

    options: AppendOptions
    fallback_protocol: ScrapeProtocol | None = None
    extra_metrics: bool = False
    sample_limit: int = 0
    sample_limit_mode: Literal["fail", "keep_first"] = "fail"


def append_options(
    cfg: ScrapeConfig, *, target_labels: Labels, metric_relabeler: RelabelProcessor
) -> AppendOptions:
    """The `AppendOptions` of one target under ``cfg``."""
    return AppendOptions(
        target_labels=target_labels,
        honor_labels=cfg.honor_labels,
        honor_timestamps=cfg.honor_timestamps,
        track_timestamps_staleness=cfg.track_timestamps_staleness,
        metric_relabeler=metric_relabeler,
        sample_limit=cfg.sample_limit,
        label_limit=cfg.label_limit,
        label_name_length_limit=cfg.label_name_length_limit,
        label_value_length_limit=cfg.label_value_length_limit,
        legacy_names=cfg.metric_name_validation_scheme == "legacy",
        native_histograms=cfg.scrape_native_histograms,
        classic_histograms=cfg.always_scrape_classic_histograms,
        bucket_limit=cfg.native_histogram_bucket_limit,
        max_schema=pick_schema(cfg.native_histogram_min_bucket_factor),
    )


class ScrapeLoop:
    """Scrapes one `Target` every interval and commits each scrape as one transaction."""

    def __init__(
        self,
        *,
        target: Target,
        scraper: Scraper,
        cache: ScrapeCache,
        settings: LoopSettings,
        appendable: Appendable,
        registry: SeriesRegistry,
        metrics: ScrapeMetrics,
        offset_seed: int,
        wall_ns: Callable[[], int] = time.time_ns,
        parse: ParseFn | None = None,
    ) -> None:
        self.target = target
        self.scraper = scraper
        self.cache = cache
        self.settings = settings
        self._appendable = appendable
        self._registry = registry
        self._metrics = metrics
        self._seed = offset_seed
        self._wall_ns = wall_ns
        self._parse: ParseFn = parse if parse is not None else textparse.IncrementalParser().parse
        self._parse_protobuf = protobuf.ProtobufParser(
            native=settings.options.native_histograms,
            classic=settings.options.classic_histograms,
        ).parse
        self._histograms: list[HistogramSample] = []
        """This scrape's native histograms (`collector.scrape.histograms`), usually none."""
        self._exemplars: list[ExemplarSample] = []
        """This scrape's exemplars (`collector.scrape.exemplars`), usually none."""
        self._exemplar_tracker = ExemplarTracker()
        self.forced_error = ""
        """Set by the pool (``target_limit exceeded ...``): ticks report ``up 0``, no HTTP."""
        self._ticker: Ticker | None = None
        self._aligner: TimestampAligner | None = None
        self._last_wall_ns = 0
        names = REPORT_NAMES + (REPORT_EXTRA if settings.extra_metrics else ())
        self._report_labels: list[Labels] = [
            tuple(sorted(((METRIC_NAME, name), *target.sample_labels()))) for name in names
        ]
        self._report_refs: list[int] | None = None
        self._interval_label = format_duration(target.interval)
        self._closed = False
        limiter = cache.series_limiter
        self.limits = TargetLimits(
            options=settings.options,
            keep_first=settings.sample_limit_mode == "keep_first",
            series_limit=0 if limiter is None else limiter.limit,
        )
        """Scrapes and samples each limit cost this target (UI, ``/metrics``)."""
        self.churn = Churn()
        """Series added and removed per scrape (UI, cardinality API)."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> NoReturn:
        """Wait for the target's offset, then scrape on a drift-free ticker until cancelled."""
        loop = asyncio.get_running_loop()
        interval = self.target.interval
        try:
            delay = first_delay(
                fingerprint=self.target.fingerprint,
                seed=self._seed,
                interval=interval,
                now_ns=self._wall_ns(),
            )
            await asyncio.sleep(delay)
            self._ticker = ticker = Ticker(start=loop.time(), interval=interval)
            self._aligner = TimestampAligner(start_ns=self._wall_ns(), interval=interval)
            while True:
                await self.scrape_and_report()
                await asyncio.sleep(max(0.0, ticker.next_tick(loop.time()) - loop.time()))
        except asyncio.CancelledError:
            # An in-flight scrape is abandoned (nothing was committed); prev stays intact.
            self.cache.abandon()
            raise

    async def end_of_run(self) -> None:
        """After the loop was stopped: stale markers for everything, ~2.1 intervals later."""
        ticker = self._ticker
        if ticker is None or not self._last_wall_ns:
            return  # never scraped: nothing to mark
        loop = asyncio.get_running_loop()
        # The tick the stopped loop was waiting for: record its time as the marker timestamp.
        tick = ticker.next_after(loop.time())
        await asyncio.sleep(tick - loop.time())
        stale_ms = self._wall_ns() // _MS
        # One more tick (a re-created target has scraped by then), then I/10 to be safe.
        await asyncio.sleep(ticker.next_after(tick) - loop.time())
        await asyncio.sleep(self.target.interval / 10)
        batch: list[Sample] = []
        self.cache.stale_markers(stale_ms, batch)
        last = self.cache.last_ts
        for ref in self._refs():
            if stale_ms > last[ref]:
                last[ref] = stale_ms
                batch.append((ref, STALE_NAN, stale_ms))
        self._appendable.commit(batch)
        # After the commit, as after every scrape: a flush it forces releases refs, and a
        # destination encoding from the label sets needs the markers' series still there.
        self.cache.iter_done(flush=False)

    def close(self, *, release_cache: bool = True) -> None:
        """Release the report refs and (unless handed to a successor) the cache's refs."""
        if self._closed:
            return
        self._closed = True
        # A scraper may hold a kept-alive connection (`collector.scrape.fasthttp`).
        close = getattr(self.scraper, "close", None)
        if close is not None:
            close()
        if self._report_refs is not None:
            for ref in self._report_refs:
                self._registry.release(ref)
            self._report_refs = None
        if release_cache:
            self.cache.release_all()

    # -- one iteration -------------------------------------------------------------------------

    async def scrape_and_report(self) -> None:
        """One scrape attempt, start to commit; never raises except on cancellation."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        wall = self._wall_ns()
        if self._aligner is None:
            self._aligner = TimestampAligner(start_ns=wall, interval=self.target.interval)
        ts_ms = self._aligner.timestamp(wall) // _MS
        if self._last_wall_ns:
            elapsed = (wall - self._last_wall_ns) / _NS
            self._metrics.interval_length.labels(self._interval_label).observe(elapsed)
            self._metrics.interval_length_histogram.labels(self._interval_label).observe(elapsed)
        self._last_wall_ns = wall

        cache = self.cache
        batch: list[Sample] = []
        histograms: list[HistogramSample] = []
        self._histograms = histograms
        exemplars: list[ExemplarSample] = []
        self._exemplars = exemplars
        result = AppendResult()
        body_size = 0
        error: BaseException | None = None
        non_empty = False
        try:
            if self.forced_error:
                raise ScrapeError(self.forced_error)
            response = await self.scraper.scrape()
            body = response.body
            body_size = len(body)
            if response.stream is not None:
                non_empty = True
                result, error, body_size = await self._append_stream(response, ts_ms, batch)
            elif body:
                non_empty = True
                result, error = self._append(body, response.content_type, ts_ms, batch)
        except ScrapeBodyTooLarge as exc:
            body_size = -1
            self._metrics.exceeded_body_size_limit.inc()
            error = exc
        except (ScrapeError, ParseError) as exc:
            error = exc
        except Exception as exc:  # errors are data: only cancellation escapes (STYLE rule 3)
            log.exception("unexpected error scraping %s", self.target.url)
            error = exc

        if error is None:
            cache.stale_markers(ts_ms, batch)
        else:
            cache.rollback()
            batch.clear()
            histograms.clear()
            exemplars.clear()
            cache.stale_markers(ts_ms, batch)
            if not isinstance(error, ScrapeBodyTooLarge):
                body_size = body_size if non_empty else 0
        duration = loop.time() - started
        self._report(
            batch, ts_ms, up=error is None, duration=duration, result=result, size=body_size
        )
        forward(self._appendable, batch, histograms, exemplars)
        if cache.iter_done(flush=error is None and non_empty):
            self._metrics.cache_flush_forced.inc()
        self.churn.record(added=result.series_added, removed=cache.evicted)

        target = self.target
        target.health = "up" if error is None else "down"
        target.last_error = "" if error is None else _message(error)
        target.last_scrape = wall / _NS
        target.last_duration = duration
        if error is not None:
            log.debug("scrape of %s failed: %s", target.url, target.last_error)

    def _append(
        self, body: bytes, content_type: str, ts_ms: int, batch: list[Sample]
    ) -> tuple[AppendResult, BaseException | None]:
        """Parse and append a non-empty body; returns the counts and the scrape's error."""
        fmt = parser_for(content_type, self.settings.fallback_protocol)
        parse_error: ParseError | None = None
        try:
            if fmt == "protobuf":
                exp: Exposition = self._parse_protobuf(body)
            else:
                exp = self._parse(body, openmetrics=fmt == "openmetrics")
        except ParseError as exc:
            partial: Exposition | None = getattr(exc, "partial", None)
            if partial is None:
                raise
            exp, parse_error = partial, exc
        options = self.settings.options
        result = self.cache.append(exp, now_ms=ts_ms, options=options, batch=batch)
        natives: list[NativeSample] | None = getattr(exp, "histograms", None)
        if natives:
            append_histograms(
                self.cache,
                natives,
                now_ms=ts_ms,
                options=options,
                out=self._histograms,
                result=result,
            )
            if isinstance(result.error, BucketLimitError):
                self._metrics.exceeded_bucket_limit.inc()
        found: dict[int, Exemplar] | None = getattr(exp, "exemplars", None)
        if found and result.error is None:
            keys, _, stamps = exp.columns()
            self._exemplar_tracker.collect(
                found,
                keys,
                stamps,
                cache=self.cache,
                now_ms=ts_ms,
                honor_timestamps=options.honor_timestamps,
                out=self._exemplars,
            )
        error = self._account(result, parse_error)
        if error is None:
            self.cache.metadata_from(exp)
        return result, error

    async def _append_stream(
        self, response: ScrapeResponse, ts_ms: int, batch: list[Sample]
    ) -> tuple[AppendResult, BaseException | None, int]:
        """`_append` for a body too large to hold (`collector.scrape.stream`); also its size."""
        stream = response.stream
        assert stream is not None
        try:
            fmt = parser_for(response.content_type, self.settings.fallback_protocol)
            if fmt == "protobuf":
                # No streaming decoder: the whole body, read within body_size_limit.
                body = await read_all(stream)
                result, error = self._append(body, response.content_type, ts_ms, batch)
                return result, error, len(body)
            done = await append_stream(
                stream,
                openmetrics=fmt == "openmetrics",
                cache=self.cache,
                options=self.settings.options,
                now_ms=ts_ms,
                batch=batch,
            )
        finally:
            stream.close()
        error = self._account(done.result, done.parse_error)
        if error is None:
            self.cache.metadata = done.metadata
        return done.result, error, done.size

    def _account(
        self, result: AppendResult, parse_error: ParseError | None
    ) -> BaseException | None:
        """Count one pass's rejected samples and limit hits; returns the scrape's error."""
        m = self._metrics
        if result.duplicates:
            m.sample_duplicate.inc(result.duplicates)
        if result.out_of_order:
            m.sample_out_of_order.inc(result.out_of_order)
        if result.out_of_bounds:
            m.sample_out_of_bounds.inc(result.out_of_bounds)
        if result.label_limit_exceeded:
            m.exceeded_label_limits.inc()
        error: BaseException | None = result.error or parse_error
        self.limits.record(result)
        if result.sample_limit_exceeded and not self.limits.keep_first:
            m.exceeded_sample_limit.inc()
            if error is None:
                error = ScrapeError("sample limit exceeded")
        return error

    # -- report series -------------------------------------------------------------------------

    def _refs(self) -> list[int]:
        if self._report_refs is None:
            self._report_refs = [self._registry.acquire(lset) for lset in self._report_labels]
        return self._report_refs

    def _report(
        self,
        batch: list[Sample],
        ts_ms: int,
        *,
        up: bool,
        duration: float,
        result: AppendResult,
        size: int,
    ) -> None:
        """Append the report series; out-of-order ones are dropped silently (spec §4.10)."""
        values: list[float] = [
            1.0 if up else 0.0,
            duration,
            float(result.scraped),
            float(result.post_relabel),
            float(result.series_added),
        ]
        if self.settings.extra_metrics:
            values += [self.target.timeout, float(self.settings.sample_limit), float(size)]
        last = self.cache.last_ts
        for ref, value in zip(self._refs(), values, strict=True):
            if ts_ms <= last[ref]:
                continue
            last[ref] = ts_ms
            batch.append((ref, value, ts_ms))


def _message(error: BaseException) -> str:
    """The ``lastError`` text: a ParseError's own message for storage-style errors."""
    if isinstance(error, ParseError) and "is not unique" in error.message:
        return error.message
    return str(error) or type(error).__name__
