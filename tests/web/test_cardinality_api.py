"""``GET /api/v1/status/cardinality`` and ``/api/v1/scrape_pools`` over real scrape pools.

The pools scrape canned bodies on virtual time; the endpoints (`collector.web.ui`) answer
through a `UiView` that computes from those pools exactly as the agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from collector.config import AgentOptions, ScrapeConfig
from collector.model.targetgroup import TargetGroup
from collector.scrape.cardinality import cardinality_report_async, pool_status
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from collector.web.ui import add_routes
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall

pytestmark = pytest.mark.looptime

BODY = (
    b'node_cpu_seconds_total{cpu="0",mode="idle"} 1\n'
    b'node_cpu_seconds_total{cpu="0",mode="user"} 1\n'
    b'node_cpu_seconds_total{cpu="1",mode="idle"} 1\n'
    b'node_filesystem_free_bytes{mountpoint="/"} 1\n'
)


class PoolsView:
    """The agent's `UiView` methods over a dict of pools."""

    options = AgentOptions()

    def __init__(self, pools: Mapping[str, ScrapePool]) -> None:
        self.pools = pools

    async def cardinality(
        self, *, scrape_pool: str, scrape_url: str, top: int
    ) -> Mapping[str, object]:
        return await cardinality_report_async(
            self.pools, scrape_pool=scrape_pool, scrape_url=scrape_url, top=top
        )

    def scrape_pools(self) -> Sequence[Mapping[str, object]]:
        return pool_status(self.pools)


def _canned(target: Target, cfg: ScrapeConfig) -> Scraper:
    return CannedScraper([BODY])


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the UI endpoints while two pools of node targets run (one scrape each).

    Entered in the test itself, not a fixture: looptime's virtual time covers the test only.
    """
    registry = SeriesRegistry()
    pools = {}
    for job, addresses in (("node", ("n1:9100", "n2:9100")), ("edge", ("e1:9100",))):
        pool = ScrapePool(
            ScrapeConfig(job_name=job, scrape_interval=15.0, scrape_timeout=10.0),
            registry=registry,
            appendable=MemoryAppender(registry),
            metrics=ScrapeMetrics(CollectorRegistry()),
            wall_ns=FakeWall(follow_loop=True),
            scraper_factory=_canned,
        )
        pool.sync([TargetGroup(source="0", targets=tuple({"__address__": a} for a in addresses))])
        pools[job] = pool
    app = web.Application()
    add_routes(app, PoolsView(pools))
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(pool.run()) for pool in pools.values()]
        await asyncio.sleep(16)
        async with TestClient(TestServer(app)) as test_client:
            yield test_client
        for task in tasks:
            task.cancel()


async def test_totals_pools_and_targets() -> None:
    """The Prometheus envelope around series per target, per pool and in total, with top
    metric names and label names by distinct values."""
    async with serving() as client:
        response = await client.get("/api/v1/status/cardinality")
        body = await response.json()
    assert response.status == 200
    assert body["status"] == "success"
    data = body["data"]
    assert (data["series"], data["targets"]) == (12, 3)
    assert [(p["scrapePool"], p["series"], p["targets"]) for p in data["pools"]] == [
        ("edge", 4, 1),
        ("node", 8, 2),
    ]
    assert data["seriesCountByMetricName"] == [
        {"name": "node_cpu_seconds_total", "value": 9},
        {"name": "node_filesystem_free_bytes", "value": 3},
    ]
    labels = {row["name"]: row["value"] for row in data["labelValueCountByLabelName"]}
    assert labels == {"__name__": 2, "cpu": 2, "instance": 3, "job": 2, "mode": 2, "mountpoint": 1}
    target = data["activeTargets"][0]
    assert target["scrapeUrl"] == "http://e1:9100/metrics"
    assert target["labels"] == {"instance": "e1:9100", "job": "edge"}
    assert target["health"] == "up"
    assert target["churn"]["lastAdded"] == 4
    assert target["limits"]["sampleLimitMode"] == "fail"


async def test_filters_and_limit() -> None:
    """scrapePool/scrapeUrl select targets; limit bounds every top list (0: counts only)."""
    async with serving() as client:
        one = await client.get(
            "/api/v1/status/cardinality",
            params={"scrapePool": "node", "scrapeUrl": "http://n2:9100/metrics", "limit": "1"},
        )
        data = (await one.json())["data"]
        counts = await client.get("/api/v1/status/cardinality", params={"limit": "0"})
        counted = (await counts.json())["data"]
    assert [t["scrapeUrl"] for t in data["activeTargets"]] == ["http://n2:9100/metrics"]
    assert data["seriesCountByMetricName"] == [{"name": "node_cpu_seconds_total", "value": 3}]
    assert len(data["labelValueCountByLabelName"]) == 1
    assert counted["series"] == 12
    assert counted["seriesCountByMetricName"] == []


@pytest.mark.parametrize("limit", ["ten", "-1", "10001"])
async def test_bad_limit_is_bad_data(limit: str) -> None:
    """A limit that is not an integer from 0 to 10000 is refused, as Prometheus refuses
    bad parameters: 400 with errorType bad_data."""
    async with serving() as client:
        response = await client.get("/api/v1/status/cardinality", params={"limit": limit})
        body = await response.json()
    assert response.status == 400
    assert body["errorType"] == "bad_data"
    assert limit in body["error"]


async def test_scrape_pools_lists_names_and_counts() -> None:
    """Prometheus's scrapePools list, plus each pool's target and series counts."""
    async with serving() as client:
        data = (await (await client.get("/api/v1/scrape_pools")).json())["data"]
    assert data["scrapePools"] == ["edge", "node"]
    assert data["pools"][1] == {
        "scrapePool": "node",
        "discovered": 2,
        "active": 2,
        "dropped": 0,
        "failed": 0,
        "series": 8,
    }
