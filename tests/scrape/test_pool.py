"""Pool reconciliation, target_limit, reload and the manager, on virtual time (spec §3)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.model.targetgroup import TargetGroup, TargetSets
from collector.scrape.manager import ScrapeManager
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool, cache_reusable
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall

CFG = ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0)


def group(*addresses: str, source: str = "0") -> TargetGroup:
    """A static-style group."""
    return TargetGroup(source=source, targets=tuple({"__address__": a} for a in addresses))


class Factory:
    """Canned scrapers per target address."""

    def __init__(self) -> None:
        self.made: dict[str, CannedScraper] = {}

    def __call__(self, target: Target, cfg: ScrapeConfig) -> Scraper:
        scraper = CannedScraper([f'm{{addr="{target.label("__address__")}"}} 1\n'.encode()])
        self.made[target.label("__address__")] = scraper
        return scraper


def make_pool(
    cfg: ScrapeConfig = CFG,
) -> tuple[ScrapePool, MemoryAppender, CollectorRegistry, Factory]:
    """A pool with canned scrapers, a virtual-time wall clock and fresh registries."""
    registry = SeriesRegistry()
    appender = MemoryAppender(registry)
    metrics_registry = CollectorRegistry()
    factory = Factory()
    pool = ScrapePool(
        cfg,
        registry=registry,
        appendable=appender,
        metrics=ScrapeMetrics(metrics_registry),
        wall_ns=FakeWall(follow_loop=True),
        scraper_factory=factory,
    )
    return pool, appender, metrics_registry, factory


@pytest.mark.looptime
async def test_sync_keeps_unchanged_loops() -> None:
    """A re-sync keeps the same task for unchanged targets and stops removed ones."""
    pool, _, metrics, _ = make_pool()
    pool.sync([group("a:1", "b:1")])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(1)
        tasks = dict(pool.tasks)
        assert len(tasks) == 2
        pool.sync([group("a:1", "c:1", "a:1")])
        await asyncio.sleep(0)
        kept = [fp for fp in tasks if fp in pool.tasks]
        assert len(kept) == 1
        assert pool.tasks[kept[0]] is tasks[kept[0]]
        removed = [t for fp, t in tasks.items() if fp not in pool.tasks]
        assert all(t.cancelled() for t in removed)
        assert len(pool.tasks) == 2
        assert (
            metrics.get_sample_value("prometheus_target_scrape_pool_targets", {"scrape_job": "j"})
            == 2
        )
        runner.cancel()


@pytest.mark.looptime
async def test_removed_target_gets_end_of_run_markers() -> None:
    """A target removed by SD: markers (series and up) ≈2.1 intervals later (§11 #25)."""
    pool, appender, _, _ = make_pool()
    pool.sync([group("a:1")])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(16)
        assert appender.commits
        pool.sync([])
        await asyncio.sleep(15 * 2 + 1.5 + 0.1)
        assert appender.stale_names(-1) == sorted(
            [
                "m",
                "scrape_duration_seconds",
                "scrape_samples_post_metric_relabeling",
                "scrape_samples_scraped",
                "scrape_series_added",
                "up",
            ]
        )
        runner.cancel()


@pytest.mark.looptime
async def test_pool_cancel_writes_no_markers_and_releases_refs() -> None:
    """Cancelling the pool (shutdown, job removal) writes no markers and frees every ref."""
    pool, appender, _, _ = make_pool()
    pool.sync([group("a:1")])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(16)
        pool.sync([])
        await asyncio.sleep(1)
        runner.cancel()
    assert all(not appender.stale(i) for i in range(len(appender.commits)))
    assert len(appender.registry) == 0


@pytest.mark.looptime
async def test_target_limit_forces_errors() -> None:
    """Over target_limit every loop reports up 0 with the exact error, without HTTP."""
    pool, appender, metrics, factory = make_pool(
        ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0, target_limit=1)
    )
    pool.sync([group("a:1", "b:1")])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(16)
        assert all(s.times == [] for s in factory.made.values())
        assert {t.last_error for t in pool.targets.values()} == {
            "target_limit exceeded (number of targets: 2, limit: 1)"
        }
        assert all(appender.value("up", i) == 0.0 for i in range(len(appender.commits)))
        assert (
            metrics.get_sample_value("prometheus_target_scrape_pool_exceeded_target_limit_total")
            == 1
        )
        pool.sync([group("a:1")])
        await asyncio.sleep(15)
        assert pool.targets[next(iter(pool.targets))].health == "up"
        runner.cancel()


@pytest.mark.looptime
async def test_reload_reuses_cache_when_only_interval_changed() -> None:
    """A reload changing only limits/timeouts restarts loops but hands the cache over."""
    pool, appender, _, _ = make_pool()
    pool.sync([group("a:1")])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(16)
        (loop,) = pool.loops.values()
        cache = loop.cache
        pool.reload(ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=5.0))
        await asyncio.sleep(0)
        (new_loop,) = pool.loops.values()
        assert new_loop is not loop
        assert new_loop.cache is cache
        assert new_loop.target.timeout == 5.0
        await asyncio.sleep(60)
        assert all(not appender.stale(i) for i in range(len(appender.commits)))
        runner.cancel()


def test_cache_reuse_rule() -> None:
    """Configs equal up to interval/timeout/sample_limit/http_client reuse caches."""
    assert cache_reusable(CFG, ScrapeConfig(job_name="j", scrape_interval=30, sample_limit=5))
    assert not cache_reusable(CFG, ScrapeConfig(job_name="j", honor_labels=True))


class Slot:
    """A latest-wins source: get() waits for a new map."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Mapping[str, list[TargetGroup]]] = asyncio.Queue()

    def put(self, sets: Mapping[str, list[TargetGroup]]) -> None:
        """Publish a full map."""
        self._queue.put_nowait(sets)

    async def get(self) -> TargetSets:
        """The next map."""
        return await self._queue.get()


@pytest.mark.looptime
async def test_manager_reload_tick_api_and_job_removal() -> None:
    """Pools appear on the 5 s reload tick; the API shapes match; removing a job: no markers."""
    registry = SeriesRegistry()
    appender = MemoryAppender(registry)
    manager = ScrapeManager(
        registry=registry,
        appendable=appender,
        metrics_registry=CollectorRegistry(),
        hostname="host",
        wall_ns=FakeWall(follow_loop=True),
        scraper_factory=Factory(),
    )
    manager.apply_config([CFG, ScrapeConfig(job_name="other")], external_labels=(("r", "1"),))
    slot = Slot()
    slot.put({"j": [group("a:1")], "unknown": [group("x:1")]})
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(manager.run(slot))
        await asyncio.sleep(4.9)
        assert manager.pools == {}
        await asyncio.sleep(0.2)
        assert list(manager.pools) == ["j"]
        await asyncio.sleep(16)
        (active,) = manager.active_targets()
        assert active["labels"] == {"instance": "a:1", "job": "j"}
        assert active["discoveredLabels"]["__address__"] == "a:1"
        assert active["scrapePool"] == "j"
        assert active["scrapeUrl"] == "http://a:1/metrics"
        assert active["health"] == "up"
        assert active["lastError"] == ""
        assert active["scrapeInterval"] == "15s"
        assert active["scrapeTimeout"] == "10s"
        assert active["lastScrape"].endswith("Z")
        assert manager.dropped_targets() == []
        commits = len(appender.commits)
        manager.apply_config([ScrapeConfig(job_name="other")])
        assert manager.pools == {}
        await asyncio.sleep(60)
        assert len(appender.commits) == commits
        runner.cancel()
