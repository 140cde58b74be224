"""`ScrapeManager.metadata`: every active target's metadata, deduplicated (spec §6.6)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.scrape.manager import ScrapeManager
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall
from tests.scrape.test_pool import Slot, group

CFG = ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0)

SHARED = b"""# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1e9
# TYPE legacy untyped
legacy 1
"""

BODIES = {
    "a:1": SHARED + b"# HELP reqs_total Requests.\n# TYPE reqs_total counter\nreqs_total 3\n",
    "b:1": SHARED + b"# HELP reqs_total Other help.\n# TYPE reqs_total counter\nreqs_total 4\n",
}


def _factory(target: Target, cfg: ScrapeConfig) -> Scraper:
    return CannedScraper([BODIES[target.label("__address__")]])


@pytest.mark.looptime
async def test_metadata_deduped_and_types_mapped() -> None:
    """Identical entries of two targets appear once; a different help is its own entry;
    ``untyped`` reads ``unknown``; nothing before the first scrape."""
    registry = SeriesRegistry()
    manager = ScrapeManager(
        registry=registry,
        appendable=MemoryAppender(registry),
        metrics_registry=CollectorRegistry(),
        hostname="host",
        wall_ns=FakeWall(follow_loop=True),
        scraper_factory=_factory,
    )
    manager.apply_config([CFG])
    assert manager.metadata() == []
    slot = Slot()
    slot.put({"j": [group("a:1", "b:1")]})
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(manager.run(slot))
        await asyncio.sleep(25)
        got = manager.metadata()
        runner.cancel()
    assert sorted(got) == [
        ("legacy", "unknown", "", ""),
        ("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes.", ""),
        ("reqs_total", "counter", "Other help.", ""),
        ("reqs_total", "counter", "Requests.", ""),
    ]
    assert len(got) == len(set(got))
