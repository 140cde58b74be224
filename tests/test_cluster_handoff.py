"""Sharding in the scrape pool: each member's share, and the hand-off between members.

Two scrape pools play two members ("a" and "b") over the same targets on virtual time, with
canned scrapers that record when each target was scraped and by whom. What is checked is what
the receiving series would show: no gap longer than an interval, at most the overlap of
double scraping, and no staleness marker for a target that only changed owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.model.rendezvous import LOCAL_LABEL, Ring
from collector.model.targetgroup import TargetGroup
from collector.scrape.manager import ScrapeManager
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool
from collector.scrape.schedule import offset_seed
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall

INTERVAL = 15.0
CFG = ScrapeConfig(job_name="j", scrape_interval=INTERVAL, scrape_timeout=10.0)
ADDRESSES = [f"10.0.0.{i}:9100" for i in range(40)]


class Factory:
    """Canned scrapers per target address; each records the loop times it was called."""

    def __init__(self) -> None:
        self.made: dict[str, CannedScraper] = {}

    def __call__(self, target: Target, cfg: ScrapeConfig) -> Scraper:
        scraper = CannedScraper([b"m 1\n"])
        # A loop restarted for the same address keeps the same record of scrape times.
        self.made.setdefault(target.label("__address__"), scraper)
        return self.made[target.label("__address__")]


class Member:
    """One member's scrape pool over the shared targets."""

    def __init__(self, name: str, *, host: str = "") -> None:
        """``host`` seeds the scrape offsets; the agent leaves it empty when sharded."""
        self.name = name
        registry = SeriesRegistry()
        self.appender = MemoryAppender(registry)
        self.factory = Factory()
        self.pool = ScrapePool(
            CFG,
            registry=registry,
            appendable=self.appender,
            metrics=ScrapeMetrics(CollectorRegistry()),
            offset_seed=offset_seed(host, ()),
            wall_ns=FakeWall(follow_loop=True),
            scraper_factory=self.factory,
        )

    def ring(self, *members: str) -> None:
        self.pool.set_ring(Ring(members, self_name=self.name))

    def times(self, address: str) -> list[float]:
        scraper = self.factory.made.get(address)
        return list(scraper.times) if scraper else []

    def stale(self) -> list[Any]:
        return [s for c in range(len(self.appender.commits)) for s in self.appender.stale(c)]


def groups(*addresses: str, **labels: str) -> list[TargetGroup]:
    return [
        TargetGroup(source="0", targets=tuple({"__address__": a} for a in addresses), labels=labels)
    ]


@contextlib.asynccontextmanager
async def pools(*members: Member) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(m.pool.run()) for m in members]
        yield
        for task in tasks:
            task.cancel()


def max_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return max(b - a for a, b in itertools.pairwise(ordered))


@pytest.mark.looptime
@pytest.mark.parametrize("overlap", [None, 4.0])
async def test_join_hands_off_without_gap_double_scrape_or_markers(overlap: float | None) -> None:
    """b joins: its share starts at once on b; a scrapes it for the overlap (one interval by
    default), then stops with no staleness marker; the rest never leaves a."""
    a, b = Member("a", host="host-a"), Member("b", host="host-b")  # two scrape phases
    a.pool.handoff_overlap = overlap
    a.ring("a")
    b.ring("a")
    for m in (a, b):
        m.pool.sync(groups(*ADDRESSES))
    assert len(a.pool.targets) == len(ADDRESSES)
    assert not b.pool.targets
    loop = asyncio.get_running_loop()
    async with pools(a, b):
        await asyncio.sleep(100)
        kept_tasks = dict(a.pool.tasks)
        switch = loop.time()
        a.ring("a", "b")
        b.ring("a", "b")
        assert a.pool.handing_off == len(b.pool.targets) > 0
        await asyncio.sleep(100)
        assert a.pool.handing_off == 0
        # Kept targets run on in the same task.
        for fp in a.pool.targets:
            assert a.pool.tasks[fp] is kept_tasks[fp]
    moved = {t.label("__address__") for t in b.pool.targets.values()}
    assert moved == set(b.factory.made)
    assert 10 < len(moved) < 30
    assert set(a.pool.targets) | set(b.pool.targets) == set(kept_tasks)
    assert not set(a.pool.targets) & set(b.pool.targets)
    allowed = INTERVAL if overlap is None else overlap
    for address in ADDRESSES:
        on_a, on_b = a.times(address), b.times(address)
        if address not in moved:
            assert not on_b
            assert max(on_a) > switch + 100 - INTERVAL, "kept targets keep their loop"
            continue
        assert on_b[0] < switch + INTERVAL, "the new owner starts within one interval"
        assert max(on_a) <= switch + allowed, "the old owner stops after the overlap"
        assert max(on_a) - on_b[0] <= allowed, "both scrape for at most the overlap"
        gap = max_gap(on_a + on_b)
        if overlap is None:  # a shorter overlap than the interval may leave a gap: its choice
            assert gap <= INTERVAL + 1e-6, f"{address}: unscraped for {gap}s"
    # No member wrote a staleness marker.
    assert not a.stale()
    assert not b.stale()


@pytest.mark.looptime
@pytest.mark.parametrize("skew", [3.0, -3.0])
async def test_one_phase_per_target_keeps_the_series_spacing_despite_skew(skew: float) -> None:
    """Sharded agents share the scrape phase of a target: when b learns of the change 3 s
    after (or before) a, the series still never goes more than one interval unscraped."""
    a, b = Member("a"), Member("b")
    for m in (a, b):
        m.ring("a")
        m.pool.sync(groups(*ADDRESSES))
    async with pools(a, b):
        await asyncio.sleep(100)
        first, second = (a, b) if skew > 0 else (b, a)
        first.ring("a", "b")
        await asyncio.sleep(abs(skew))
        second.ring("a", "b")
        await asyncio.sleep(100)
    moved = set(b.factory.made)
    assert moved
    for address in moved:
        on_a, on_b = a.times(address), b.times(address)
        assert max_gap(on_a + on_b) == pytest.approx(INTERVAL), address
        # Same phase: during the overlap both scrape at the same instants.
        assert set(on_b) <= set(on_a) | {t for t in on_b if t > max(on_a)}


@pytest.mark.looptime
async def test_target_given_back_within_the_overlap_keeps_its_loop() -> None:
    """a -> a,b -> a within the overlap: a's handed-off loops are taken back, same task."""
    a = Member("a")
    a.ring("a")
    a.pool.sync(groups(*ADDRESSES))
    async with pools(a):
        await asyncio.sleep(30)
        before = dict(a.pool.tasks)
        a.ring("a", "b")
        await asyncio.sleep(5)
        assert a.pool.handing_off > 0
        a.ring("a")
        assert a.pool.handing_off == 0
        assert a.pool.tasks == before
        assert not any(t.done() for t in before.values())
        await asyncio.sleep(60)
        assert a.pool.tasks == before
    assert not a.stale()


@pytest.mark.looptime
async def test_target_vanishing_during_the_hand_off_gets_end_of_run_markers() -> None:
    """A handed-off target that discovery drops is marked stale like any vanished target."""
    a = Member("a")
    a.ring("a")
    a.pool.sync(groups(*ADDRESSES))
    async with pools(a):
        await asyncio.sleep(30)
        a.ring("a", "b")
        leaving = [
            addr
            for addr in ADDRESSES
            if addr not in {t.url.split("/")[2] for t in a.pool.targets.values()}
        ]
        a.pool.sync(groups(*(x for x in ADDRESSES if x != leaving[0])))
        assert a.pool.handing_off == len(leaving) - 1
        await asyncio.sleep(60)
    stale_instances = {dict(s[0])["instance"] for s in a.stale()}
    assert stale_instances == {leaving[0]}


@pytest.mark.looptime
async def test_unchanged_membership_moves_nothing_and_local_targets_stay() -> None:
    """An equal ring changes no loop; ``__cluster_local__`` targets are scraped by everyone."""
    a, b = Member("a"), Member("b")
    for m in (a, b):
        m.ring()  # membership not known yet: nothing sharded
        m.pool.sync(
            [
                *groups(*ADDRESSES),
                TargetGroup(
                    source="self", targets=({"__address__": "localhost:9099", LOCAL_LABEL: "true"},)
                ),
            ]
        )
        assert [t.url for t in m.pool.targets.values()] == ["http://localhost:9099/metrics"]
        m.ring("a", "b")
    async with pools(a, b):
        await asyncio.sleep(20)
        tasks = dict(a.pool.tasks)
        a.ring("b", "a")
        a.pool.sync(
            [
                *groups(*ADDRESSES),
                TargetGroup(
                    source="self", targets=({"__address__": "localhost:9099", LOCAL_LABEL: "true"},)
                ),
            ]
        )
        assert a.pool.tasks == tasks
        assert a.pool.handing_off == 0
    assert a.times("localhost:9099")
    assert b.times("localhost:9099")
    assert a.pool.split is not None
    assert a.pool.split.local == 1
    assert len(a.pool.targets) + len(b.pool.targets) == len(ADDRESSES) + 2


def test_manager_counts_every_share_and_lists_only_its_own_targets() -> None:
    """`ScrapeManager.shares` sums the pools; /api/v1/targets holds this member's share."""
    registry = SeriesRegistry()
    manager = ScrapeManager(
        registry=registry,
        appendable=MemoryAppender(registry),
        metrics_registry=CollectorRegistry(),
        hostname="h",
        scraper_factory=Factory(),
    )
    manager.apply_config([CFG, ScrapeConfig(job_name="k", scrape_interval=INTERVAL)])
    manager.set_ring(Ring(["a", "b", "c"], self_name="b"))
    manager._target_sets = {"j": groups(*ADDRESSES), "k": groups(*ADDRESSES[:10])}
    manager.reload()
    shares, local, handing_off = manager.shares()
    assert sum(shares.values()) == len(ADDRESSES) + 10
    assert set(shares) == {"a", "b", "c"}
    assert (local, handing_off) == (0, 0)
    assert len(manager.active_targets()) == shares["b"]
    manager.set_ring(Ring(["b"], self_name="b"))
    assert len(manager.active_targets()) == len(ADDRESSES) + 10
    manager.set_ring(None)
    assert manager.shares() == ({}, 0, 0)
