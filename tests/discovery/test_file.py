"""file_sd: JSON/YAML files, change detection by polling, failures keep old groups."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from collector.config import FileSDConfig
from collector.discovery.file import FileDiscoverer, read_file
from collector.discovery.metrics import DiscoveryMetrics
from collector.errors import DiscoveryError
from tests.discovery.helpers import Recorder, Stepper, addresses

_mtimes = itertools.count(1_700_000_000_000_000_000, 1_000_000_000)


def write(path: Path, content: str | object) -> None:
    """Replace ``path`` atomically (new inode) with a fresh mtime, as careful writers do."""
    text = content if isinstance(content, str) else orjson.dumps(content).decode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    mtime = next(_mtimes)
    os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, path)


class Harness:
    """A FileDiscoverer on a Stepper, with its metrics and what it sent."""

    def __init__(self, config: FileSDConfig) -> None:
        self.registry = CollectorRegistry()
        metrics = DiscoveryMetrics(self.registry)
        self.stepper = Stepper()
        self.recorder = Recorder()
        self.provider = FileDiscoverer(
            config,
            metrics=metrics.file,
            refresh_metrics=metrics.refresh(mechanism="file", config="job"),
            sleep=self.stepper.sleep,
        )

    def value(self, name: str, **labels: str) -> float | None:
        """A sample from the harness registry."""
        return self.registry.get_sample_value(name, labels)


Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a FileDiscoverer on the given globs; it is cancelled at teardown."""
    tasks: list[asyncio.Task[None]] = []

    async def _start(*patterns: str, refresh_interval: float = 300.0) -> Harness:
        config = FileSDConfig(
            files=tuple(str(tmp_path / p) for p in patterns), refresh_interval=refresh_interval
        )
        harness = Harness(config)
        tasks.append(asyncio.create_task(harness.provider.run(harness.recorder)))
        await harness.stepper.idle()  # the first pass is done
        return harness

    yield _start
    for task in tasks:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_json_and_yaml_files_with_meta_filepath(tmp_path: Path, start: Start) -> None:
    """Both formats load; sources are <file>:<i> and every group has __meta_filepath."""
    write(tmp_path / "a.json", [{"targets": ["a:1"], "labels": {"env": "prod"}}])
    write(tmp_path / "b.yml", "- targets: ['b:1', 'b:2']\n- targets: ['b:3']\n  labels: {x: y}\n")
    harness = await start("*.json", "*.yml")
    (sent,) = harness.recorder.sends
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.yml")
    assert [g.source for g in sent] == [f"{a}:0", f"{b}:0", f"{b}:1"]
    assert [dict(g.labels) for g in sent] == [
        {"env": "prod", "__meta_filepath": a},
        {"__meta_filepath": b},
        {"x": "y", "__meta_filepath": b},
    ]
    assert addresses(sent) == ["a:1", "b:1", "b:2", "b:3"]
    assert harness.value("prometheus_sd_file_mtime_seconds", filename=a) == pytest.approx(
        os.stat(a).st_mtime
    )


async def test_no_matching_file_still_syncs(start: Start) -> None:
    """With nothing to read the first pass sends [] so the provider counts as synced."""
    harness = await start("*.json")
    assert harness.recorder.sends == [[]]


async def test_change_is_detected_on_next_poll(tmp_path: Path, start: Start) -> None:
    """A rewritten file is re-read on the next poll; an unchanged one is not re-sent."""
    path = tmp_path / "a.json"
    write(path, [{"targets": ["a:1"]}])
    harness = await start("*.json")
    await harness.stepper.step()
    assert len(harness.recorder.sends) == 1  # nothing changed: nothing sent
    write(path, [{"targets": ["a:2"]}])
    await harness.stepper.step()
    assert addresses(harness.recorder.last) == ["a:2"]
    assert harness.stepper.delays[0] == 5.0  # the poll interval


async def test_new_file_matching_glob_is_picked_up(tmp_path: Path, start: Start) -> None:
    """A file created later that matches the glob is read on the next poll."""
    harness = await start("*.yaml")
    write(tmp_path / "late.yaml", "- targets: ['l:1']\n")
    await harness.stepper.step()
    assert addresses(harness.recorder.last) == ["l:1"]


async def test_shrinking_file_deletes_vanished_sources(tmp_path: Path, start: Start) -> None:
    """Going from 2 groups to 1 sends an empty group for source <file>:1."""
    path = tmp_path / "a.json"
    write(path, [{"targets": ["a:1"]}, {"targets": ["a:2"]}])
    harness = await start("*.json")
    write(path, [{"targets": ["a:1"]}])
    await harness.stepper.step()
    assert [(g.source, addresses([g])) for g in harness.recorder.last] == [
        (f"{path}:0", ["a:1"]),
        (f"{path}:1", []),
    ]


async def test_invalid_file_keeps_previous_groups_and_counts(tmp_path: Path, start: Start) -> None:
    """A file that stops parsing sends nothing (old groups stay) and counts a read error once."""
    path = tmp_path / "a.json"
    write(path, [{"targets": ["a:1"]}])
    harness = await start("*.json")
    write(path, '[{"targets": ["a:1"]')  # truncated
    await harness.stepper.step()
    await harness.stepper.step()  # unchanged bad file: not re-read, not re-counted
    assert len(harness.recorder.sends) == 1
    assert harness.value("prometheus_sd_file_read_errors_total") == 1
    assert (
        harness.value("prometheus_sd_refresh_failures_total", mechanism="file", config="job") == 1
    )
    write(path, [{"targets": ["a:3"]}])
    await harness.stepper.step()
    assert addresses(harness.recorder.last) == ["a:3"]


async def test_deleted_file_sends_empty_groups(tmp_path: Path, start: Start) -> None:
    """A file that disappears sends an empty group for each of its sources."""
    path = tmp_path / "a.json"
    write(path, [{"targets": ["a:1"]}, {"targets": ["a:2"]}])
    harness = await start("*.json")
    path.unlink()
    await harness.stepper.step()
    assert [(g.source, g.targets) for g in harness.recorder.last] == [
        (f"{path}:0", ()),
        (f"{path}:1", ()),
    ]
    assert harness.value("prometheus_sd_file_mtime_seconds", filename=str(path)) is None


async def test_full_refresh_rereads_unchanged_files(tmp_path: Path, start: Start) -> None:
    """Every refresh_interval all files are re-read even if their signature did not change."""
    write(tmp_path / "a.json", [{"targets": ["a:1"]}])
    harness = await start("*.json", refresh_interval=15.0)  # a full pass every 3 polls
    for _ in range(3):
        await harness.stepper.step()
    assert len(harness.recorder.sends) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.json", "{", "invalid JSON"),
        ("a.json", "null", "expected a list of target groups, got null"),
        ("a.yml", "- targets: [a\n", "invalid YAML"),
        ("a.yml", "- targets: ['a:1']\n  lables: {}\n", r"\[0\]: unknown field 'lables'"),
        ("a.txt", "[]", "unsupported file extension '.txt'"),
    ],
    ids=["bad-json", "json-null", "bad-yaml", "yaml-typo", "extension"],
)
async def test_read_file_errors_name_the_file(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    """Bad content raises DiscoveryError starting with the file path."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DiscoveryError, match=message) as info:
        read_file(str(path))
    assert str(info.value).startswith(f"{path}: ")


async def test_empty_yaml_file_is_no_groups(tmp_path: Path) -> None:
    """An empty YAML file is valid and has no groups (as in Prometheus)."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert read_file(str(path)) == []
