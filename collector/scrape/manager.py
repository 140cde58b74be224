"""The scrape manager: job configs + discovered target sets -> one `ScrapePool` per job.

`ScrapeManager.run` consumes the discovery manager's latest-wins slot (each full map replaces
the previous one and raises a trigger) and, on a reload tick (5 s by default, spec §3.1),
creates missing pools and syncs every pool with its job's groups. `ScrapeManager.apply_config`
reloads pools whose config changed and cancels pools of removed jobs: their loops stop without
end-of-run staleness markers, like Prometheus (spec §4.9 #5).

It also serves ``/api/v1/targets``: `active_targets` and `dropped_targets` return the
Prometheus JSON shapes (web reads them through its own Protocol; it never imports scrape).
`ScrapeManager.metadata` lists the deduplicated metric metadata of every active target, which
the agent hands to the remote writers (spec §6.6).

Sharding: `ScrapeManager.set_ring` hands a membership change to every pool at once (not on the
reload tick: the hand-off overlap has to cover only the skew between members), and new pools
start with the current ring; `ScrapeManager.shares` adds up every member's share.

Prometheus counterpart: ``scrape/manager.go``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NoReturn, Protocol, TypedDict

from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.model.duration import format_duration
from collector.model.labels import Labels
from collector.model.rendezvous import Ring
from collector.model.targetgroup import TargetGroup, TargetSets
from collector.model.textparse import Metadata
from collector.scrape.loop import ParseFn
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool, ScraperFactory
from collector.scrape.proxy import LazyProxyResolver, ProxyResolver
from collector.scrape.schedule import offset_seed
from collector.scrape.target import Target
from collector.storage.appender import Appendable
from collector.storage.series import SeriesRegistry

__all__ = ["ActiveTargetJSON", "DroppedTargetJSON", "ScrapeManager", "TargetSetSource"]

log = logging.getLogger(__name__)

_ZERO_TIME = "0001-01-01T00:00:00Z"


class TargetSetSource(Protocol):
    """The discovery hand-off: waits for, then returns, the newest full target-set map."""

    async def get(self) -> TargetSets:
        """The next full ``{job: [TargetGroup, ...]}`` map (latest wins)."""
        ...


class ActiveTargetJSON(TypedDict):
    """One entry of ``activeTargets`` in ``/api/v1/targets``."""

    discoveredLabels: dict[str, str]
    labels: dict[str, str]
    scrapePool: str
    scrapeUrl: str
    globalUrl: str
    lastError: str
    lastScrape: str
    lastScrapeDuration: float
    health: str
    scrapeInterval: str
    scrapeTimeout: str


class DroppedTargetJSON(TypedDict):
    """One entry of ``droppedTargets``."""

    discoveredLabels: dict[str, str]
    scrapePool: str


class ScrapeManager:
    """Owns every scrape pool (one per job) inside one TaskGroup."""

    def __init__(
        self,
        *,
        registry: SeriesRegistry,
        appendable: Appendable,
        metrics_registry: CollectorRegistry,
        hostname: str | None = None,
        reload_interval: float = 5.0,
        wall_ns: Callable[[], int] = time.time_ns,
        scraper_factory: ScraperFactory | None = None,
        parse: ParseFn | None = None,
        proxy_resolver: Callable[[], ProxyResolver] | None = None,
        handoff_overlap: float | None = None,
    ) -> None:
        """``proxy_resolver`` builds the resolver for ``scrape_via_apiserver_proxy`` jobs; it is
        called on first use only (the agent's imports kubernetes_asyncio).
        ``handoff_overlap``: how long a target another member took over is still scraped here
        (``--cluster.handoff-overlap``; None: one scrape interval of that target)."""
        self._ring: Ring | None = None
        self._handoff_overlap = handoff_overlap
        self._registry = registry
        self._appendable = appendable
        self.metrics = ScrapeMetrics(metrics_registry)
        self._hostname = hostname
        self._reload_interval = reload_interval
        self._wall_ns = wall_ns
        self._factory = scraper_factory
        self._parse = parse
        self._proxy = LazyProxyResolver(proxy_resolver) if proxy_resolver is not None else None
        self._configs: dict[str, ScrapeConfig] = {}
        self._seed = 0
        self.pools: dict[str, ScrapePool] = {}
        self._tasks: dict[str, asyncio.Task[NoReturn]] = {}
        self._target_sets: dict[str, list[TargetGroup]] = {}
        self._triggered = False
        self._configured = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

    def apply_config(
        self, scrape_configs: Sequence[ScrapeConfig], *, external_labels: Labels = ()
    ) -> None:
        """Install job configs: reload changed pools, drop pools of removed jobs (no markers)."""
        hostname = self._hostname if self._hostname is not None else socket.getfqdn()
        self._seed = offset_seed(hostname, external_labels)
        configs = {cfg.job_name: cfg for cfg in scrape_configs}
        failed: list[str] = []
        for job, pool in list(self.pools.items()):
            new = configs.get(job)
            if new is None:
                self._remove_pool(job)
            elif _scraping_part(new) != _scraping_part(pool.cfg):
                pool.offset_seed = self._seed
                try:
                    pool.reload(new)
                except Exception:
                    log.exception("reloading scrape pool %s failed", job)
                    self.metrics.pool_reloads_failed.inc()
                    failed.append(job)
            else:
                pool.cfg = new  # only discovery sections differ; the loops keep running
        self._configs = configs
        self._configured.set()
        if failed:
            raise RuntimeError(f"failed to apply the new configuration (jobs: {', '.join(failed)})")

    async def run(self, sync: TargetSetSource) -> NoReturn:
        """Consume target sets and reconcile pools on each reload tick, until cancelled."""
        await self._configured.wait()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._receive(sync), name="scrape target sets")
                while True:
                    await asyncio.sleep(self._reload_interval)
                    if self._triggered:
                        self._triggered = False
                        self.reload()
        finally:
            self._tg = None
            self._tasks.clear()
            self.pools.clear()

    async def _receive(self, sync: TargetSetSource) -> NoReturn:
        while True:
            sets = await sync.get()
            self._target_sets = {job: list(groups) for job, groups in sets.items()}
            self._triggered = True

    def reload(self) -> None:
        """Create missing pools and sync every pool with its job's groups (one reload tick)."""
        for job, groups in self._target_sets.items():
            pool = self.pools.get(job)
            if pool is None:
                cfg = self._configs.get(job)
                if cfg is None:
                    log.error("invalid config id:%s", job)
                    continue
                pool = self._create_pool(cfg)
                if pool is None:
                    continue
            pool.sync(groups)

    def _create_pool(self, cfg: ScrapeConfig) -> ScrapePool | None:
        self.metrics.pools_total.inc()
        try:
            pool = ScrapePool(
                cfg,
                registry=self._registry,
                appendable=self._appendable,
                metrics=self.metrics,
                offset_seed=self._seed,
                wall_ns=self._wall_ns,
                scraper_factory=self._factory,
                parse=self._parse,
                proxy_resolver=self._proxy,
            )
        except Exception:
            log.exception("creating scrape pool %s failed", cfg.job_name)
            self.metrics.pools_failed.inc()
            return None
        pool.ring = self._ring
        pool.handoff_overlap = self._handoff_overlap
        self.pools[cfg.job_name] = pool
        if self._tg is not None:
            self._tasks[cfg.job_name] = self._tg.create_task(
                pool.run(), name=f"scrape pool {cfg.job_name}"
            )
        return pool

    def _remove_pool(self, job: str) -> None:
        del self.pools[job]
        task = self._tasks.pop(job, None)
        if task is not None:
            task.cancel()
        for metric in (self.metrics.pool_targets, self.metrics.target_limit):
            try:
                metric.remove(job)
            except KeyError:
                pass

    # -- sharding ------------------------------------------------------------------------------

    def set_ring(self, ring: Ring | None) -> None:
        """Apply a membership view (None: not sharded) to every pool now."""
        if ring == self._ring:
            return  # the same membership again moves nothing
        self._ring = ring
        for pool in self.pools.values():
            pool.set_ring(ring)

    def shares(self) -> tuple[dict[str, int], int, int]:
        """Every member's sharded targets over all pools, this member's local targets (outside
        the sharding) and its targets in their hand-off overlap."""
        shares: dict[str, int] = dict.fromkeys(self._ring.members if self._ring else (), 0)
        local = handing_off = 0
        for pool in self.pools.values():
            handing_off += pool.handing_off
            if pool.split is not None:
                local += pool.split.local
                for name, count in pool.split.shares.items():
                    shares[name] = shares.get(name, 0) + count
        return shares, local, handing_off

    # -- /api/v1/targets -----------------------------------------------------------------------

    def active_targets(self) -> list[ActiveTargetJSON]:
        """Every active target of every pool, in the Prometheus API shape."""
        return [
            _active_json(target, scrape_url=self.pools[job].scrape_url(target))
            for job in sorted(self.pools)
            for target in self.pools[job].targets.values()
        ]

    def dropped_targets(self) -> list[DroppedTargetJSON]:
        """Dropped targets (up to ``keep_dropped_targets`` per pool), in the API shape."""
        return [
            {"discoveredLabels": dict(labels), "scrapePool": job}
            for job in sorted(self.pools)
            for labels in self.pools[job].dropped
        ]

    def dropped_counts(self) -> dict[str, int]:
        """Dropped targets per pool, including those beyond ``keep_dropped_targets``."""
        return {job: pool.dropped_count for job, pool in self.pools.items()}

    # -- remote-write metadata (spec §6.6) -----------------------------------------------------

    def metadata(self) -> list[tuple[str, str, str, str]]:
        """``(family, type, help, unit)`` of every active target's last scrape, deduplicated.

        Types are the exposition's names (``counter``, ``gauge``, ...), text ``untyped`` as
        ``unknown``; first-seen order (pools by job name, then targets).
        """
        seen: dict[tuple[str, str, str, str], None] = {}
        for job in sorted(self.pools):
            for loop in self.pools[job].loops.values():
                for family, meta in loop.cache.metadata.items():
                    if isinstance(meta, Metadata):
                        kind = "unknown" if meta.type == "untyped" else meta.type
                        seen[family, kind, meta.help, meta.unit] = None
        return list(seen)


def _scraping_part(cfg: ScrapeConfig) -> ScrapeConfig:
    """``cfg`` without its discovery sections, which do not change how a pool scrapes.

    Prometheus reloads a pool (restarting every loop) when any part of its scrape config
    changes, discovery sections included; we compare only what the pool uses, so adding a
    static target keeps the loops of the unchanged ones running, and new discovery output
    reaches the pool through the normal sync.
    """
    return dataclasses.replace(
        cfg, static_configs=(), file_sd_configs=(), http_sd_configs=(), kubernetes_sd_configs=()
    )


def _active_json(target: Target, *, scrape_url: str) -> ActiveTargetJSON:
    last = (
        datetime.fromtimestamp(target.last_scrape, UTC).isoformat().replace("+00:00", "Z")
        if target.last_scrape
        else _ZERO_TIME
    )
    return {
        "discoveredLabels": dict(target.discovered_labels),
        "labels": dict(target.sample_labels()),
        "scrapePool": target.scrape_pool,
        "scrapeUrl": scrape_url,
        "globalUrl": scrape_url,
        "lastError": target.last_error,
        "lastScrape": last,
        "lastScrapeDuration": target.last_duration,
        "health": target.health,
        "scrapeInterval": format_duration(target.interval),
        "scrapeTimeout": format_duration(target.timeout),
    }
