"""Static discovery and the shared {targets, labels} validator (spec §1.2, §11 #7)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from collector.config import ScrapeConfig, StaticConfig
from collector.discovery.manager import DiscoveryManager
from collector.discovery.static import StaticDiscoverer, parse_target_groups, static_groups
from collector.errors import DiscoveryError
from tests.discovery.helpers import Recorder, addresses


async def test_static_groups_number_sources_and_keep_labels() -> None:
    """Entry i becomes source str(i); each target string an __address__; labels on the group."""
    groups = static_groups(
        [StaticConfig(targets=("a:1",), labels=(("env", "prod"),)), StaticConfig()]
    )
    assert [(g.source, addresses([g]), dict(g.labels)) for g in groups] == [
        ("0", ["a:1"], {"env": "prod"}),
        ("1", [], {}),
    ]


async def test_duplicate_static_targets_are_kept() -> None:
    """targets: [a:1, a:1] keeps both entries in the group (§11 #7: discovered count 2)."""
    (only,) = static_groups([StaticConfig(targets=("a:1", "a:1"))])
    assert addresses([only]) == ["a:1", "a:1"]


@pytest.mark.looptime
async def test_duplicate_static_targets_count_twice() -> None:
    """prometheus_sd_discovered_targets counts the duplicate (§11 #7)."""
    registry = CollectorRegistry()
    manager = DiscoveryManager(registry=registry, jitter=0.0)
    task = asyncio.create_task(manager.run())
    manager.apply_config(
        [ScrapeConfig(job_name="j", static_configs=(StaticConfig(targets=("a:1", "a:1")),))]
    )
    sets = await manager.sync_channel.get()
    assert addresses(sets["j"]) == ["a:1", "a:1"]
    labels = {"name": "scrape", "config": "j"}
    assert registry.get_sample_value("prometheus_sd_discovered_targets", labels) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_static_discoverer_sends_once_then_waits() -> None:
    """The static provider sends its groups once and then only waits to be cancelled."""
    recorder = Recorder()
    provider = StaticDiscoverer.from_configs([StaticConfig(targets=("a:1",))])
    task = asyncio.create_task(provider.run(recorder))
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(recorder.sends) == 1
    assert addresses(recorder.last) == ["a:1"]
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_parse_target_groups_adds_source_and_meta_label() -> None:
    """Sources are <prefix>:<index>; the meta label wins over a same-named user label."""
    groups = parse_target_groups(
        [{"targets": ["a:1"], "labels": {"x": "1", "__meta_url": "fake"}}, {"targets": []}],
        location="u",
        source_prefix="u",
        meta_labels={"__meta_url": "u"},
    )
    assert [g.source for g in groups] == ["u:0", "u:1"]
    assert dict(groups[0].labels) == {"x": "1", "__meta_url": "u"}
    assert dict(groups[1].labels) == {"__meta_url": "u"}


async def test_parse_target_groups_accepts_null_as_empty() -> None:
    """An empty YAML document (None) is no groups, and missing keys are empty."""
    assert parse_target_groups(None, location="f", source_prefix="f", meta_labels={}) == []
    (only,) = parse_target_groups([{}], location="f", source_prefix="f", meta_labels={})
    assert (only.targets, dict(only.labels)) == ((), {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"targets": []}, r"^f: expected a list of target groups, got mapping$"),
        ([None], r"^f: \[0\]: nil target group item found$"),
        ([[]], r"^f: \[0\]: expected a mapping, got list$"),
        ([{}, {"target": ["a"]}], r"^f: \[1\]: unknown field 'target'$"),
        ([{"targets": "a:1"}], r"^f: \[0\].targets: expected a list of strings, got string$"),
        ([{"targets": ["a:1", 80]}], r"^f: \[0\].targets\[1\]: expected a string, got number$"),
        ([{"labels": ["a"]}], r"^f: \[0\].labels: expected a mapping, got list$"),
        ([{"labels": {"": "x"}}], r"^f: \[0\].labels: label name '' is not valid$"),
        ([{"labels": {"port": 80}}], r"^f: \[0\].labels.port: expected a string value"),
    ],
    ids=[
        "not-a-list",
        "null-item",
        "item-not-mapping",
        "unknown-key",
        "targets-not-list",
        "target-not-string",
        "labels-not-mapping",
        "empty-label-name",
        "label-value-not-string",
    ],
)
async def test_parse_target_groups_rejects_bad_shapes(data: object, message: str) -> None:
    """Bad content is refused with an error naming the location and the item index."""
    with pytest.raises(DiscoveryError, match=message):
        parse_target_groups(data, location="f", source_prefix="f", meta_labels={})
