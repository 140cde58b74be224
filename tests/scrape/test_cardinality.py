"""Cardinality from the scrape caches: series, churn, top names, per target, pool and total.

Real pools scrape canned bodies on virtual time; `cardinality_report` and `pool_status` then
read what the caches hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import NoReturn

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.model.relabel import RelabelConfig
from collector.model.targetgroup import TargetGroup
from collector.scrape import cardinality
from collector.scrape.cardinality import (
    CardinalityJSON,
    Churn,
    PoolJSON,
    cardinality_report,
    pool_status,
)
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall

BASE = ScrapeConfig(job_name="web", scrape_interval=15.0, scrape_timeout=10.0)

BODIES: Mapping[str, list[bytes]] = {
    "a:1": [
        b'http_requests_total{path="/",code="200"} 1\n'
        b'http_requests_total{path="/",code="500"} 1\n'
        b'http_requests_total{path="/login",code="200"} 1\n'
        b"go_goroutines 7\n"
        b"debug_only 1\n",
        # Second and later scrapes: one series gone, two new ones.
        b'http_requests_total{path="/",code="200"} 2\n'
        b'http_requests_total{path="/login",code="200"} 2\n'
        b'http_requests_total{path="/cart",code="200"} 1\n'
        b'http_requests_total{path="/pay",code="200"} 1\n'
        b"go_goroutines 8\n"
        b"debug_only 1\n",
    ],
    "b:1": [b'http_requests_total{path="/",code="404"} 1\ngo_goroutines 3\n'],
    "c:1": [b"up_only 1\n"],
}


class Bodies:
    """Canned bodies per target address."""

    def __call__(self, target: Target, cfg: ScrapeConfig) -> Scraper:
        return CannedScraper(list(BODIES[target.label("__address__")]))


def make_pool(cfg: ScrapeConfig, registry: SeriesRegistry) -> ScrapePool:
    return ScrapePool(
        cfg,
        registry=registry,
        appendable=MemoryAppender(registry),
        metrics=ScrapeMetrics(CollectorRegistry()),
        wall_ns=FakeWall(follow_loop=True),
        scraper_factory=Bodies(),
    )


async def scraped(seconds: float) -> tuple[CardinalityJSON, list[PoolJSON]]:
    """Two pools scraped for ``seconds`` of virtual time (15 s interval); the report and the
    pool status read while they still run (stopping releases every ref)."""
    registry = SeriesRegistry()
    web = make_pool(
        dataclasses.replace(
            BASE,
            metric_relabel_configs=(
                RelabelConfig(source_labels=("__name__",), regex="debug_only", action="drop"),
            ),
            relabel_configs=(RelabelConfig(source_labels=("tier",), regex="skip", action="drop"),),
        ),
        registry,
    )
    web.sync(
        [
            TargetGroup(
                source="0",
                targets=(
                    {"__address__": "a:1"},
                    {"__address__": "b:1"},
                    {"__address__": "z:1", "tier": "skip"},
                    {"__address__": ""},
                ),
            )
        ]
    )
    other = make_pool(dataclasses.replace(BASE, job_name="other"), registry)
    other.sync([TargetGroup(source="0", targets=({"__address__": "c:1"},))])
    pools = {"web": web, "other": other}
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(pool.run()) for pool in pools.values()]
        await asyncio.sleep(seconds)
        report, status = cardinality_report(pools), pool_status(pools)
        for task in tasks:
            task.cancel()
    return report, status


@pytest.mark.looptime
async def test_series_and_top_names_per_target_pool_and_total() -> None:
    """Series are the caches' live refs (a relabel-dropped series is none); top metric names
    and label names by distinct values add up across targets, per pool and in total."""
    report, _ = await scraped(16)  # one scrape of each target (offsets within the first 15 s)
    by_url = {t["scrapeUrl"]: t for t in report["activeTargets"]}
    assert {url: t["series"] for url, t in by_url.items()} == {
        "http://a:1/metrics": 4,
        "http://b:1/metrics": 2,
        "http://c:1/metrics": 1,
    }
    assert report["series"] == 7
    assert report["targets"] == 3
    a = by_url["http://a:1/metrics"]
    assert a["seriesCountByMetricName"] == [
        {"name": "http_requests_total", "value": 3},
        {"name": "go_goroutines", "value": 1},
    ]
    web = next(p for p in report["pools"] if p["scrapePool"] == "web")
    assert web["series"] == 6
    assert web["targets"] == 2
    labels = {row["name"]: row["value"] for row in web["labelValueCountByLabelName"]}
    # code: 200 and 500 from a, 404 from b: distinct values across the pool's targets.
    assert labels["code"] == 3
    assert labels["instance"] == 2
    assert labels["__name__"] == 2
    assert report["seriesCountByMetricName"][0] == {"name": "http_requests_total", "value": 4}


@pytest.mark.looptime
async def test_churn_counts_series_added_and_removed_per_scrape() -> None:
    """A scrape that loses one series and gains two reports +2/-1; recent and totals add up."""
    report, _ = await scraped(31)  # two scrapes of each target
    a = next(t for t in report["activeTargets"] if t["scrapeUrl"] == "http://a:1/metrics")
    assert a["series"] == 5
    assert a["churn"] == {
        "lastAdded": 2,
        "lastRemoved": 1,
        "recentAdded": 6,
        "recentRemoved": 1,
        "recentScrapes": 2,
        "totalAdded": 6,
        "totalRemoved": 1,
    }
    web = next(p for p in report["pools"] if p["scrapePool"] == "web")
    assert web["churn"]["lastAdded"] == 2  # b added nothing in its second scrape
    assert report["churn"]["totalAdded"] == 6 + 2 + 1


@pytest.mark.looptime
async def test_pool_status_counts_discovered_active_dropped_failed() -> None:
    """Per pool: what discovery found, what relabeling dropped, what failed, what is active."""
    _, rows = await scraped(16)
    status = {row["scrapePool"]: row for row in rows}
    assert status["web"] == {
        "scrapePool": "web",
        "discovered": 4,
        "active": 2,
        "dropped": 1,
        "failed": 1,
        "series": 6,
    }
    assert status["other"]["active"] == 1


@pytest.mark.looptime
async def test_filters_and_top_zero() -> None:
    """scrapePool and scrapeUrl select targets; top=0 counts series without top lists."""
    pools = {"web": make_pool(BASE, SeriesRegistry())}
    pools["web"].sync(
        [TargetGroup(source="0", targets=({"__address__": "a:1"}, {"__address__": "b:1"}))]
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(pools["web"].run())
        await asyncio.sleep(16)
        only_b = cardinality_report(pools, scrape_url="http://b:1/metrics", top=0)
        none = cardinality_report(pools, scrape_pool="nope")
        task.cancel()
    assert [t["scrapeUrl"] for t in only_b["activeTargets"]] == ["http://b:1/metrics"]
    assert only_b["series"] == 2
    assert only_b["seriesCountByMetricName"] == []
    assert only_b["activeTargets"][0]["labelValueCountByLabelName"] == []
    assert [p["targets"] for p in only_b["pools"]] == [1]
    assert none["targets"] == 0
    assert none["pools"] == []


def test_churn_keeps_the_last_ten_scrapes() -> None:
    """recent covers the last ten scrapes; totals cover all of them."""
    churn = Churn()
    assert churn.last == (0, 0)
    for i in range(12):
        churn.record(added=i, removed=1)
    assert churn.last == (11, 1)
    assert churn.recent == (sum(range(2, 12)), 10, 10)
    assert (churn.added_total, churn.removed_total) == (sum(range(12)), 12)


@pytest.mark.looptime
async def test_async_report_lets_the_loop_run_and_reports_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The async report pauses for the event loop as it walks the caches (so scrapes stay on
    time) and returns what the blocking one returns."""
    monkeypatch.setattr(cardinality, "_PAUSE_SERIES", 1)
    pools = {"web": make_pool(BASE, SeriesRegistry())}
    pools["web"].sync(
        [TargetGroup(source="0", targets=({"__address__": "a:1"}, {"__address__": "b:1"}))]
    )
    ticks = 0

    async def other_work() -> NoReturn:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(pools["web"].run())]
        await asyncio.sleep(16)
        tasks.append(tg.create_task(other_work()))
        await asyncio.sleep(0)
        before = ticks
        report = await cardinality.cardinality_report_async(pools)
        during = ticks - before
        assert report == cardinality_report(pools)
        for task in tasks:
            task.cancel()
    assert during >= 2  # one pause per target walked
