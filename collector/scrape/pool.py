"""A scrape pool: one job's targets, reconciled into one running `ScrapeLoop` per target.

`ScrapePool.sync` turns the job's target groups into targets (`targets_from_group`), dedupes
them by fingerprint, keeps the loops of unchanged targets running (same task), starts loops for
new ones and stops the loops of vanished ones. A stopped loop's end-of-run staleness runs in
the background inside the pool's TaskGroup, so cancelling the pool (shutdown, job removal)
cancels it too: no markers then, as in Prometheus (spec §4.9).

`ScrapePool.reload` restarts every loop under a new config; per-target caches are handed over
when the configs differ only in interval, timeout, sample_limit or HTTP client settings
(spec §3.5), in which case no end-of-run markers are written.

The pool owns the job's ``aiohttp.ClientSession``, opened inside `ScrapePool.run` and closed
when it is cancelled. Everything that depends on per-target settings (TLS, auth, proxy) is
passed per request, so a reload keeps the session. When the agent gives it a `ProxyResolver`,
the pool also owns a second session for jobs with ``scrape_via_apiserver_proxy: true``, whose
targets are fetched by `ProxiedScraper` through the Kubernetes API server (see
`collector.scrape.proxy`).

Sharding (``--cluster.*``, `collector.cluster`): with a `Ring` set, the pool still builds every
target, then keeps only this member's share (`collector.model.rendezvous`); ``targets`` and
``loops`` hold that share. A target another member takes over is *handed off*: its loop keeps
scraping for ``handoff_overlap`` (default: its interval) and then stops without end-of-run
staleness markers, because the series lives on at the new owner; it is taken back, loop and
cache intact, if the ring returns it within the overlap. A gained target starts at once.

Prometheus counterpart: ``scrapePool`` in ``scrape/scrape.go``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import aiohttp

from collector.config import HTTPClientConfig, ScrapeConfig, TLSConfig
from collector.errors import ScrapeError
from collector.model.duration import format_duration
from collector.model.labels import Labels
from collector.model.relabel import compile_rules
from collector.model.rendezvous import Ring, Sharder, Split
from collector.model.targetgroup import TargetGroup
from collector.scrape.cache import ScrapeCache
from collector.scrape.fasthttp import http_scraper
from collector.scrape.limits import limiter_for
from collector.scrape.loop import LoopSettings, ParseFn, ScrapeLoop, append_options
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.proxy import ProxiedScraper, ProxyResolver, new_proxy_session
from collector.scrape.scraper import (
    HttpScraper,
    Scraper,
    ScrapeResponse,
    build_ssl_context,
    new_session,
)
from collector.scrape.target import (
    DroppedTargets,
    RelabelProcessor,
    Target,
    targets_from_group,
)
from collector.storage.appender import Appendable
from collector.storage.series import SeriesRegistry

__all__ = ["ScrapePool", "ScraperFactory", "cache_reusable"]

log = logging.getLogger(__name__)

ScraperFactory = Callable[[Target, ScrapeConfig], Scraper]
"""Builds a target's `Scraper`; tests pass canned ones, the default is `http_scraper`'s."""


def cache_reusable(old: ScrapeConfig, new: ScrapeConfig) -> bool:
    """Spec §3.5: equal once interval, timeout, sample_limit and HTTP client are ignored."""

    def strip(cfg: ScrapeConfig) -> ScrapeConfig:
        return dataclasses.replace(
            cfg,
            scrape_interval=0.0,
            scrape_timeout=0.0,
            sample_limit=0,
            http_client=HTTPClientConfig(),
        )

    return strip(old) == strip(new)


class ScrapePool:
    """All scrape loops of one job, inside one TaskGroup."""

    def __init__(
        self,
        cfg: ScrapeConfig,
        *,
        registry: SeriesRegistry,
        appendable: Appendable,
        metrics: ScrapeMetrics,
        offset_seed: int = 0,
        wall_ns: Callable[[], int] = time.time_ns,
        scraper_factory: ScraperFactory | None = None,
        parse: ParseFn | None = None,
        proxy_resolver: ProxyResolver | None = None,
    ) -> None:
        self.cfg = cfg
        self._registry = registry
        self._appendable = appendable
        self._metrics = metrics
        self.offset_seed = offset_seed
        self._wall_ns = wall_ns
        self._factory = scraper_factory
        self._parse = parse
        self._resolver = proxy_resolver
        self._proxy_session: aiohttp.ClientSession | None = None
        self._relabeler: RelabelProcessor = compile_rules(cfg.relabel_configs)
        self._metric_relabeler: RelabelProcessor = compile_rules(cfg.metric_relabel_configs)
        self._groups: tuple[TargetGroup, ...] = ()
        self.targets: dict[int, Target] = {}
        """Active targets by fingerprint."""
        self.dropped = DroppedTargets((), cfg=cfg)
        """Dropped targets (at most ``keep_dropped_targets``), iterated as discovered labels."""
        self.dropped_count = 0
        self.discovered_count = 0
        """Targets in the last sync's groups, before relabeling and deduplication."""
        self.failed_count = 0
        """Targets of the last sync that failed label population (logged, neither list)."""
        self.loops: dict[int, ScrapeLoop] = {}
        self.tasks: dict[int, asyncio.Task[NoReturn]] = {}
        self._ending: set[ScrapeLoop] = set()
        self._handover: dict[tuple[Labels, str], ScrapeCache] = {}
        """Caches handed from reloaded loops to their successors, by `_handover_key`."""
        self.ring: Ring | None = None
        """This member's cluster view (`set_ring`); None when not sharded: every target is ours."""
        self.handoff_overlap: float | None = None
        """How long a target another member took over is still scraped here (None: interval)."""
        self.split: Split | None = None
        """The last split of the targets by the ring (None when not sharded)."""
        self._sharder = Sharder()
        self._candidates: dict[int, Target] = {}
        """Every active target after relabeling, ours or not, by fingerprint."""
        self._leaving: dict[int, _HandOff] = {}
        """Hand-offs the ring may still give back, by fingerprint (all of ``_handoffs`` but
        those a reload made final)."""
        self._handoffs: set[_HandOff] = set()
        self._forced_error = ""
        self._tg: asyncio.TaskGroup | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self._ssl_for: TLSConfig | None = None
        metrics.target_limit.labels(cfg.job_name).set(cfg.target_limit)

    @property
    def job(self) -> str:
        """The job name (``scrape_pool``)."""
        return self.cfg.job_name

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> NoReturn:
        """Own the session and the loops until cancelled; then release every ref."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._factory is None:
                    self._session = await stack.enter_async_context(new_session())
                    if self._resolver is not None:
                        self._proxy_session = await stack.enter_async_context(new_proxy_session())
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    self._reconcile()
                    await asyncio.Event().wait()  # forever: sync/reload drive the loops
        finally:
            self._tg = None
            self._session = None
            self._proxy_session = None
            for loop in [*self.loops.values(), *self._ending, *(h.loop for h in self._handoffs)]:
                loop.close()
            self._handoffs.clear()
            self._leaving.clear()
            for cache in self._handover.values():
                cache.release_all()
            self._handover.clear()
            self.tasks.clear()
        raise AssertionError("unreachable: the pool only ends by cancellation")

    # -- reconciliation ------------------------------------------------------------------------

    def sync(self, groups: Sequence[TargetGroup]) -> None:
        """Reconcile the running loops with the targets built from ``groups`` (spec §3.4)."""
        started = time.perf_counter()
        job = self.job
        self._groups = tuple(groups)  # a tuple: `DroppedTargets` keeps it without a copy
        built = targets_from_group(
            self._groups,
            cfg=self.cfg,
            relabeler=self._relabeler,
            keep_dropped=self.cfg.keep_dropped_targets,
        )
        for failure in built.failures:
            log.warning("%s: %s", job, failure)
        if built.failures:
            self._metrics.sync_failed.labels(job).inc(len(built.failures))
        self.dropped = built.dropped
        self.dropped_count = built.dropped_count
        self.discovered_count = built.discovered_count
        self.failed_count = len(built.failures)
        targets: dict[int, Target] = {}
        for fp, target in built.active.items():
            old = self._candidates.get(fp)
            if old is not None:
                # Same identity: keep the running loop, refresh what the UI shows.
                old.discovered_labels = target.discovered_labels
                targets[fp] = old
            else:
                targets[fp] = target
        self._candidates = targets
        self.targets = self._share(targets)
        self._check_target_limit()
        self._reconcile()
        elapsed = time.perf_counter() - started
        self._metrics.pool_targets.labels(job).set(len(self.targets))
        self._metrics.sync_total.labels(job).inc()
        self._metrics.sync_length.labels(job).observe(elapsed)
        self._metrics.sync_length_histogram.labels(job).observe(elapsed)

    def reload(self, cfg: ScrapeConfig) -> None:
        """Apply a changed job config: restart every loop, handing caches over when allowed."""
        started = time.perf_counter()
        reuse = cache_reusable(self.cfg, cfg)
        self._metrics.pool_reloads.inc()
        self.cfg = cfg
        self._relabeler = compile_rules(cfg.relabel_configs)
        self._metric_relabeler = compile_rules(cfg.metric_relabel_configs)
        self._metrics.target_limit.labels(cfg.job_name).set(cfg.target_limit)
        for fp in list(self.loops):
            loop = self.loops[fp]
            if reuse:
                self._handover[_handover_key(loop.target)] = loop.cache
            self._stop(fp, end_of_run=not reuse, release_cache=not reuse)
        self.targets = {}
        self._candidates = {}
        # Hand-offs run out under the old config; the ring can no longer give them back.
        self._leaving.clear()
        self.sync(self._groups)
        # Caches of targets whose identity changed under the new config have no taker.
        for cache in self._handover.values():
            cache.release_all()
        self._handover.clear()
        self._metrics.reload_length.labels(format_duration(cfg.scrape_interval)).observe(
            time.perf_counter() - started
        )

    def set_ring(self, ring: Ring | None) -> None:
        """Apply a membership change: re-split the known targets, hand off or start loops.

        ``target_limit`` then counts this member's share, the targets it scrapes.
        """
        self.ring = ring
        self.targets = self._share(self._candidates)
        self._check_target_limit()
        self._reconcile()
        self._metrics.pool_targets.labels(self.job).set(len(self.targets))

    def _share(self, candidates: dict[int, Target]) -> dict[int, Target]:
        """This member's targets among ``candidates``: all of them when not sharded."""
        if self.ring is None:
            self.split = None
            return candidates
        self.split = self._sharder.split(
            self.ring, ((fp, t.scrape_pool, t.labels) for fp, t in candidates.items())
        )
        own = self.split.own
        return {fp: t for fp, t in candidates.items() if fp in own}

    @property
    def handing_off(self) -> int:
        """Targets another member took over that this one still scrapes (the overlap)."""
        return len(self._handoffs)

    def _check_target_limit(self) -> None:
        limit = self.cfg.target_limit
        if limit > 0 and len(self.targets) > limit:
            self._forced_error = (
                f"target_limit exceeded (number of targets: {len(self.targets)}, limit: {limit})"
            )
            self._metrics.exceeded_target_limit.inc()
        else:
            self._forced_error = ""
        for loop in self.loops.values():
            loop.forced_error = self._forced_error

    def _reconcile(self) -> None:
        """Start loops for new targets and stop loops of vanished ones (only while running)."""
        if self._tg is None:
            return
        for fp in [fp for fp in self.loops if fp not in self.targets]:
            if fp in self._candidates:  # still discovered: another member owns it now
                self._hand_off(fp)
            else:
                self._stop(fp, end_of_run=True, release_cache=True)
        for fp in [fp for fp in self._leaving if fp not in self._candidates]:
            # Gone from discovery during the overlap: the end of run is ours to write too.
            self._end_hand_off(self._leaving[fp], end_of_run=True)
        for fp, target in self.targets.items():
            if fp in self.loops:
                continue
            handoff = self._leaving.get(fp)
            if handoff is not None and handoff.loop.target is target:
                self._take_back(fp, handoff)
            else:
                self._start(target, cache=self._handover.pop(_handover_key(target), None))

    def _start(self, target: Target, *, cache: ScrapeCache | None) -> None:
        assert self._tg is not None
        cfg = self.cfg
        loop = ScrapeLoop(
            target=target,
            scraper=self._scraper(target),
            cache=cache or ScrapeCache(registry=self._registry, series_limiter=limiter_for(cfg)),
            settings=LoopSettings(
                options=append_options(
                    cfg,
                    target_labels=target.sample_labels(),
                    metric_relabeler=self._metric_relabeler,
                ),
                fallback_protocol=cfg.fallback_scrape_protocol,
                extra_metrics=cfg.extra_scrape_metrics,
                sample_limit=cfg.sample_limit,
                sample_limit_mode=cfg.sample_limit_mode,
            ),
            appendable=self._appendable,
            registry=self._registry,
            metrics=self._metrics,
            offset_seed=self.offset_seed,
            wall_ns=self._wall_ns,
            parse=self._parse,
        )
        loop.forced_error = self._forced_error
        self.loops[target.fingerprint] = loop
        self.tasks[target.fingerprint] = self._tg.create_task(
            loop.run(), name=f"scrape {self.job} {target.url}"
        )

    def _stop(self, fp: int, *, end_of_run: bool, release_cache: bool) -> None:
        """Cancel a loop; its end-of-run staleness (if any) runs in the pool's TaskGroup."""
        loop, task = self.loops.pop(fp), self.tasks.pop(fp)
        self._retire(loop, task, end_of_run=end_of_run, release_cache=release_cache)

    def _retire(
        self,
        loop: ScrapeLoop,
        task: asyncio.Task[NoReturn],
        *,
        end_of_run: bool,
        release_cache: bool,
    ) -> None:
        task.cancel()
        if self._tg is None:
            loop.close(release_cache=release_cache)
            return
        self._ending.add(loop)
        self._tg.create_task(
            self._finish(loop, task, end_of_run=end_of_run, release_cache=release_cache),
            name=f"end of run {self.job} {loop.target.url}",
        )

    # -- hand-off (sharding) ---------------------------------------------------------------------

    def _hand_off(self, fp: int) -> None:
        """Keep scraping a target another member took over, for the overlap only."""
        assert self._tg is not None
        loop = self.loops.pop(fp)
        handoff = _HandOff(loop=loop, task=self.tasks.pop(fp))
        overlap = self.handoff_overlap
        handoff.timer = self._tg.create_task(
            self._hand_off_after(handoff, loop.target.interval if overlap is None else overlap),
            name=f"hand-off {self.job} {loop.target.url}",
        )
        self._leaving[fp] = handoff
        self._handoffs.add(handoff)

    async def _hand_off_after(self, handoff: _HandOff, overlap: float) -> None:
        await asyncio.sleep(overlap)
        handoff.timer = None  # this task: ending the hand-off must not cancel it
        self._end_hand_off(handoff, end_of_run=False)

    def _end_hand_off(self, handoff: _HandOff, *, end_of_run: bool) -> None:
        """Stop a handed-off loop: no markers when the new owner goes on (the overlap ran out)."""
        fp = handoff.loop.target.fingerprint
        if self._leaving.get(fp) is handoff:
            del self._leaving[fp]
        self._handoffs.discard(handoff)
        if handoff.timer is not None:
            handoff.timer.cancel()
        self._retire(handoff.loop, handoff.task, end_of_run=end_of_run, release_cache=True)

    def _take_back(self, fp: int, handoff: _HandOff) -> None:
        """The ring gave the target back within the overlap: the same loop goes on."""
        del self._leaving[fp]
        self._handoffs.discard(handoff)
        if handoff.timer is not None:
            handoff.timer.cancel()
        self.loops[fp] = handoff.loop
        self.tasks[fp] = handoff.task
        handoff.loop.forced_error = self._forced_error

    async def _finish(
        self,
        loop: ScrapeLoop,
        task: asyncio.Task[NoReturn],
        *,
        end_of_run: bool,
        release_cache: bool,
    ) -> None:
        try:
            await asyncio.wait([task])
            if end_of_run:
                await loop.end_of_run()
        finally:
            self._ending.discard(loop)
            loop.close(release_cache=release_cache)

    def scrape_url(self, target: Target) -> str:
        """The URL a target is fetched from: the API server's for proxied jobs, once resolved."""
        loop = self.loops.get(target.fingerprint)
        if loop is not None and isinstance(loop.scraper, ProxiedScraper):
            return loop.scraper.fetched_url or target.url
        return target.url

    def _scraper(self, target: Target) -> Scraper:
        if self._factory is not None:
            return self._factory(target, self.cfg)
        if self.cfg.scrape_via_apiserver_proxy:
            if self._resolver is None or self._proxy_session is None:
                return _Refused(
                    "scrape_via_apiserver_proxy is set, but this agent was built without an "
                    "API server proxy resolver"
                )
            return ProxiedScraper(
                session=self._proxy_session, target=target, cfg=self.cfg, resolver=self._resolver
            )
        assert self._session is not None
        try:
            ssl_context = self._ssl_context(target)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # A key or certificate that does not load is this target's error (lastError, up 0),
            # never the agent's: errors are data inside the loop (STYLE rule 3).
            return _Refused(f"cannot load tls_config: {type(exc).__name__}: {exc}")
        return http_scraper(
            HttpScraper(
                session=self._session,
                url=target.url,
                timeout=target.timeout,
                cfg=self.cfg,
                ssl_context=ssl_context,
            )
        )

    def _ssl_context(self, target: Target) -> ssl.SSLContext | None:
        """One context per TLS config, built only when a target needs TLS."""
        tls = self.cfg.http_client.tls_config
        if not target.url.startswith("https:") and tls == TLSConfig():
            return None
        if self._ssl is None or self._ssl_for != tls:
            self._ssl = build_ssl_context(tls)
            self._ssl_for = tls
        return self._ssl


@dataclasses.dataclass(eq=False, slots=True, kw_only=True)
class _HandOff:
    """A loop still scraping a target that another member took over, and its stop timer."""

    loop: ScrapeLoop
    task: asyncio.Task[NoReturn]
    timer: asyncio.Task[None] | None = None


class _Refused:
    """A `Scraper` that always fails with one message (a job this pool cannot scrape)."""

    __slots__ = ("_message",)

    def __init__(self, message: str) -> None:
        self._message = message

    async def scrape(self) -> ScrapeResponse:
        """Fail with the message."""
        raise ScrapeError(self._message)


def _handover_key(target: Target) -> tuple[Labels, str]:
    """What survives a cache-reusing reload: sample labels and URL.

    The fingerprint would not do: it covers ``__scrape_interval__``/``__scrape_timeout__``,
    exactly what such a reload may change.
    """
    return target.sample_labels(), target.url
