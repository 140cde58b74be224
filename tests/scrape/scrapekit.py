"""Shared helpers for the scrape tests: canned scrapers, fake clocks, loop builders."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig
from collector.errors import ScrapeError
from collector.model.labels import Labels
from collector.model.relabel import compile_rules
from collector.model.targetgroup import TargetGroup
from collector.scrape.cache import ScrapeCache
from collector.scrape.loop import LoopSettings, ScrapeLoop, append_options
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.scraper import ScrapeResponse
from collector.scrape.target import Target, targets_from_group
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender

EPOCH_NS = 1_699_999_980_000_000_000
"""A wall-clock origin (ns) divisible by 15 s and 60 s, so grid arithmetic is easy to read."""

TEXT = "text/plain; version=0.0.4; charset=utf-8"

Canned = bytes | ScrapeResponse | BaseException


class FakeWall:
    """A settable wall clock in ns; with ``follow_loop`` it tracks the (virtual) loop time."""

    def __init__(self, ns: int = EPOCH_NS, *, follow_loop: bool = False) -> None:
        self._ns = ns
        self.follow_loop = follow_loop

    @property
    def ns(self) -> int:
        """The current wall time."""
        if self.follow_loop:
            return self._ns + round(asyncio.get_running_loop().time() * 1e9)
        return self._ns

    @ns.setter
    def ns(self, value: int) -> None:
        self._ns = value

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self.ns += round(seconds * 1e9)


@dataclass
class CannedScraper:
    """Returns canned bodies (the last one repeats); records the loop time of every call."""

    responses: list[Canned]
    content_type: str = TEXT
    times: list[float] = field(default_factory=list)

    async def scrape(self) -> ScrapeResponse:
        """Hand out the next canned response, or raise it."""
        self.times.append(asyncio.get_running_loop().time())
        item = self.responses[min(len(self.times) - 1, len(self.responses) - 1)]
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ScrapeResponse):
            return item
        return ScrapeResponse(body=item, content_type=self.content_type)


def http_error(status: int = 500, reason: str = "Internal Server Error") -> ScrapeError:
    """The error an HttpScraper raises for a non-200 answer."""
    from collector.errors import ScrapeHTTPError

    return ScrapeHTTPError(status, reason)


def build_target(cfg: ScrapeConfig, address: str = "h:1", **labels: str) -> Target:
    """The single target of one static group."""
    built = targets_from_group(
        [TargetGroup(source="0", targets=({"__address__": address, **labels},))],
        cfg=cfg,
        relabeler=compile_rules(cfg.relabel_configs),
    )
    (target,) = built.active.values()
    return target


@dataclass
class Harness:
    """A loop wired to a MemoryAppender, a registry and metrics."""

    loop: ScrapeLoop
    appender: MemoryAppender
    registry: SeriesRegistry
    metrics_registry: CollectorRegistry
    scraper: CannedScraper
    wall: FakeWall

    async def scrape(self, advance: float = 15.0) -> None:
        """Advance the wall clock by ``advance`` seconds, then run one iteration."""
        self.wall.advance(advance)
        await self.loop.scrape_and_report()

    def metric(self, name: str, **labels: str) -> float:
        """A self-metric's value (0 when absent)."""
        value = self.metrics_registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    def ts_ms(self) -> int:
        """The current wall time in ms (scrape timestamps in these tests)."""
        return self.wall.ns // 1_000_000


def harness(
    *responses: Canned,
    cfg: ScrapeConfig | None = None,
    content_type: str = TEXT,
    address: str = "h:1",
    wall: FakeWall | None = None,
    **target_labels: str,
) -> Harness:
    """A loop over canned responses; the wall clock starts on a 15 s grid point."""
    cfg = cfg or ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0)
    registry = SeriesRegistry()
    appender = MemoryAppender(registry)
    metrics_registry = CollectorRegistry()
    target = build_target(cfg, address, **target_labels)
    scraper = CannedScraper(list(responses), content_type=content_type)
    wall = wall or FakeWall()
    loop = ScrapeLoop(
        target=target,
        scraper=scraper,
        cache=ScrapeCache(registry=registry),
        settings=LoopSettings(
            options=append_options(
                cfg,
                target_labels=target.sample_labels(),
                metric_relabeler=compile_rules(cfg.metric_relabel_configs),
            ),
            fallback_protocol=cfg.fallback_scrape_protocol,
            extra_metrics=cfg.extra_scrape_metrics,
            sample_limit=cfg.sample_limit,
        ),
        appendable=appender,
        registry=registry,
        metrics=ScrapeMetrics(metrics_registry),
        offset_seed=0,
        wall_ns=wall,
    )
    return Harness(loop, appender, registry, metrics_registry, scraper, wall)


def names(samples: list[tuple[Labels, float, int]]) -> list[str]:
    """Sorted ``__name__`` values of resolved samples."""
    return sorted(dict(s[0])["__name__"] for s in samples)
