"""Limits that name the culprit: keep_first, series_limit, per-target counters (limits.py).

Through the real loop and cache with canned bodies: what is written, what is counted, and what
``/metrics`` says per target; plus the config keys with their located errors.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig, load_config_text, redacted_yaml
from collector.errors import ConfigError
from collector.model.relabel import compile_rules
from collector.model.targetgroup import TargetGroup
from collector.scrape.cache import ScrapeCache
from collector.scrape.limits import LimitsCollector, SeriesLimiter, limiter_for
from collector.scrape.loop import LoopSettings, ScrapeLoop, append_options
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool
from collector.scrape.scraper import Scraper
from collector.scrape.target import Target
from collector.storage.series import SeriesRegistry
from tests.fakes.memory_appender import MemoryAppender
from tests.scrape.scrapekit import CannedScraper, FakeWall, build_target

FIVE = b"a 1\nb 1\nc 1\nd 1\ne 1\n"
BASE = ScrapeConfig(job_name="j", scrape_interval=15.0, scrape_timeout=10.0)


class Setup:
    """One target's loop (as a pool builds it) over canned bodies, on a settable wall clock."""

    def __init__(self, cfg: ScrapeConfig, *bodies: bytes) -> None:
        self.registry = SeriesRegistry()
        self.appender = MemoryAppender(self.registry)
        self.metrics = CollectorRegistry()
        self.wall = FakeWall()
        self.scraper = CannedScraper(list(bodies))
        target = build_target(cfg, "h:1")
        self.loop = ScrapeLoop(
            target=target,
            scraper=self.scraper,
            cache=ScrapeCache(registry=self.registry, series_limiter=limiter_for(cfg)),
            settings=LoopSettings(
                options=append_options(
                    cfg,
                    target_labels=target.sample_labels(),
                    metric_relabeler=compile_rules(cfg.metric_relabel_configs),
                ),
                sample_limit=cfg.sample_limit,
                sample_limit_mode=cfg.sample_limit_mode,
            ),
            appendable=self.appender,
            registry=self.registry,
            metrics=ScrapeMetrics(self.metrics),
            offset_seed=0,
            wall_ns=self.wall,
        )

    async def scrape(self, advance: float = 15.0) -> list[str]:
        """One scrape; the names of the scraped samples it committed (report series and
        staleness markers left out)."""
        self.wall.advance(advance)
        await self.loop.scrape_and_report()
        names = [dict(labels)["__name__"] for labels, _, _ in self.appender.samples()]
        return sorted(n for n in names if n != "up" and not n.startswith("scrape_"))

    def up(self) -> float:
        """The last ``up`` value committed."""
        return self.appender.value("up")


async def test_sample_limit_fails_the_scrape_by_default() -> None:
    """Prometheus's behaviour stays the default: over the limit, nothing is written, up 0."""
    setup = Setup(dataclasses.replace(BASE, sample_limit=3), FIVE)
    assert await setup.scrape() == []
    assert setup.up() == 0.0
    assert setup.loop.target.last_error == "sample limit exceeded"
    assert (
        setup.metrics.get_sample_value("prometheus_target_scrapes_exceeded_sample_limit_total")
        == 1.0
    )
    assert setup.loop.limits.scrapes["sample_limit"] == 1
    assert setup.loop.limits.samples["sample_limit"] == 0  # a failed scrape drops none "partly"


async def test_keep_first_writes_the_first_samples_and_counts_the_rest() -> None:
    """keep_first: the first N samples in body order are written every scrape, up stays 1,
    the rest are counted per target, and the Prometheus counter (rejected scrapes) stays 0."""
    cfg = dataclasses.replace(BASE, sample_limit=3, sample_limit_mode="keep_first")
    setup = Setup(cfg, FIVE)
    assert await setup.scrape() == ["a", "b", "c"]
    assert await setup.scrape() == ["a", "b", "c"]
    assert setup.up() == 1.0
    assert setup.loop.target.last_error == ""
    assert setup.loop.limits.scrapes["sample_limit"] == 2
    assert setup.loop.limits.samples["sample_limit"] == 4
    assert not setup.metrics.get_sample_value(
        "prometheus_target_scrapes_exceeded_sample_limit_total"
    )


async def test_keep_first_marks_series_pushed_past_the_limit_stale() -> None:
    """A series that moves past the limit (a new one appeared before it) gets a stale marker,
    like any series that stops being written."""
    cfg = dataclasses.replace(BASE, sample_limit=2, sample_limit_mode="keep_first")
    setup = Setup(cfg, b"b 1\nc 1\n", b"a 1\nb 1\nc 1\n")
    assert await setup.scrape() == ["b", "c"]
    assert await setup.scrape() == ["a", "b"]
    assert setup.appender.stale_names() == ["c"]


async def test_label_limit_fails_the_scrape_and_counts_it_for_the_target() -> None:
    """label_limit keeps failing the scrape, with the metric named in the error."""
    setup = Setup(dataclasses.replace(BASE, label_limit=3), b'wide{a="1",b="2",c="3"} 1\n')
    assert await setup.scrape() == []
    assert "label_limit exceeded (metric: wide" in setup.loop.target.last_error
    assert setup.loop.limits.scrapes["label_limit"] == 1


async def test_series_limit_refuses_new_series_and_keeps_the_known_ones() -> None:
    """Over series_limit, samples of further new series are dropped and counted each scrape;
    the scrape is still up and the first series keep flowing."""
    cfg = dataclasses.replace(BASE, series_limit=3)
    setup = Setup(cfg, FIVE)
    assert await setup.scrape() == ["a", "b", "c"]
    assert await setup.scrape() == ["a", "b", "c"]
    assert setup.up() == 1.0
    limiter = setup.loop.cache.series_limiter
    assert limiter is not None
    assert limiter.window_series == 3
    assert limiter.refused_names == {"d": 1, "e": 1}
    assert setup.loop.limits.scrapes["series_limit"] == 2
    assert setup.loop.limits.samples["series_limit"] == 4


async def test_series_limit_window_forgets_gone_series() -> None:
    """Within a window a flapping series counts once; when the window ends, only the series
    still exposed count, and refused ones are asked about again."""
    cfg = dataclasses.replace(BASE, series_limit=2, series_limit_window=3600.0)
    setup = Setup(cfg, b"a 1\nb 1\n", b"a 1\n", b"a 1\nb 1\n", b"a 1\nc 1\n")
    assert await setup.scrape() == ["a", "b"]
    assert await setup.scrape() == ["a"]  # b is gone
    assert await setup.scrape() == ["a", "b"]  # b again: the same series, admitted again
    assert await setup.scrape() == ["a"]  # c is a third distinct series in this window
    assert setup.loop.limits.samples["series_limit"] == 1
    assert await setup.scrape(advance=3600.0) == ["a", "c"]  # new window: a and c fit
    limiter = setup.loop.cache.series_limiter
    assert limiter is not None
    assert limiter.window_series == 2
    assert not limiter.refused


def test_series_limiter_windows_stay_aligned() -> None:
    """Windows are whole multiples of the window from the first scrape, however late a
    scrape comes; a new window forgets refusals and starts from the live series."""
    limiter = SeriesLimiter(limit=1, window=60.0)
    series: dict[bytes, int] = {}
    limiter.roll(1_000, series, lambda ref: None)  # windows: [1 s, 61 s), [61 s, 121 s), ...
    assert limiter.admit(b"x", (("__name__", "x"),))
    assert not limiter.admit(b"y", (("__name__", "y"),))
    series[b"y"] = 0  # the cache holds a refused series as dropped
    limiter.roll(60_999, series, lambda ref: None)
    assert limiter.refused == {b"y"}  # still the first window
    limiter.roll(191_000, series, lambda ref: None)  # three windows later: [181 s, 241 s)
    assert not limiter.refused
    assert b"y" not in series  # asked about again at its next sample
    assert limiter.window_series == 0  # no live series in the cache
    assert limiter.admit(b"y", (("__name__", "y"),))
    limiter.roll(240_999, series, lambda ref: None)
    assert limiter.window_series == 1
    limiter.roll(241_000, series, lambda ref: None)
    assert limiter.window_series == 0


class _Factory:
    def __call__(self, target: Target, cfg: ScrapeConfig) -> Scraper:
        return CannedScraper([FIVE])


@pytest.mark.looptime
async def test_limit_counters_on_metrics_per_target() -> None:
    """/metrics carries each configured limit per target (job and instance), zeros included,
    and a pool builds each target's loop with the job's limits."""
    cfg = dataclasses.replace(
        BASE, sample_limit=4, sample_limit_mode="keep_first", series_limit=100
    )
    registry = SeriesRegistry()
    pool = ScrapePool(
        cfg,
        registry=registry,
        appendable=MemoryAppender(registry),
        metrics=ScrapeMetrics(CollectorRegistry()),
        wall_ns=FakeWall(follow_loop=True),
        scraper_factory=_Factory(),
    )
    metrics = CollectorRegistry()
    metrics.register(LimitsCollector(lambda: {"j": pool}))
    pool.sync([TargetGroup(source="0", targets=({"__address__": "h:1"},))])
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(pool.run())
        await asyncio.sleep(31)  # two scrapes at 15 s
        runner.cancel()

    def value(name: str, **labels: str) -> float | None:
        return metrics.get_sample_value(name, {"scrape_job": "j", "instance": "h:1", **labels})

    assert value("collector_target_scrapes_limited_total", limit="sample_limit") == 2.0
    assert value("collector_target_samples_limited_total", limit="sample_limit") == 2.0
    assert value("collector_target_scrapes_limited_total", limit="series_limit") == 0.0
    assert value("collector_target_scrapes_limited_total", limit="label_limit") is None
    assert value("collector_target_series_limit_window_series") == 5.0


def _job(extra: str) -> str:
    return f"scrape_configs:\n  - job_name: a\n    scrape_interval: 30s\n{extra}"


def test_config_keys_load_and_render_back() -> None:
    """The new keys load, default to Prometheus's behaviour, and survive redacted_yaml."""
    plain = load_config_text(_job(""), base_dir="/").scrape_configs[0]
    assert (plain.sample_limit_mode, plain.series_limit, plain.series_limit_window) == (
        "fail",
        0,
        3600.0,
    )
    text = _job(
        "    sample_limit: 10\n    sample_limit_mode: keep_first\n"
        "    series_limit: 500\n    series_limit_window: 1d\n"
    )
    config = load_config_text(text, base_dir="/")
    job = config.scrape_configs[0]
    assert (job.sample_limit_mode, job.series_limit, job.series_limit_window) == (
        "keep_first",
        500,
        86400.0,
    )
    assert "series_limit_window: 1d" in redacted_yaml(config)
    assert load_config_text(redacted_yaml(config), base_dir="/").scrape_configs == (job,)


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        (
            "    sample_limit_mode: drop_rest\n",
            "scrape_configs[0].sample_limit_mode",
            "sample_limit_mode must be 'fail' or 'keep_first', got \"drop_rest\"",
        ),
        (
            "    series_limit: -1\n",
            "scrape_configs[0].series_limit",
            "cannot unmarshal !!int `-1` into uint",
        ),
        (
            "    series_limit_window: 10s\n",
            "scrape_configs[0].series_limit_window",
            "series_limit_window (10s) must not be shorter than the scrape interval (30s)",
        ),
        (
            "    series_limit_window: 0s\n",
            "scrape_configs[0].series_limit_window",
            "series_limit_window must be greater than 0",
        ),
    ],
)
def test_config_errors_name_the_key(extra: str, where: str, message: str) -> None:
    """Each wrong value is reported at its YAML path and line."""
    with pytest.raises(ConfigError) as caught:
        load_config_text(_job(extra), base_dir="/", file="c.yml")
    assert caught.value.path == where
    assert caught.value.message == message
    assert caught.value.line == 4
