"""Which write-ahead queues a worker count owns, and which it drains (`workers.queues`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from collector.agent import Agent
from collector.config import AgentOptions
from collector.workers import supervisor
from collector.workers.queues import has_worker_queues, orphan_roots, worker_root
from collector.workers.supervisor import in_process


def queue(root: Path, name: str = "dest") -> Path:
    (root / name / "wal").mkdir(parents=True)
    return root


def test_roots_by_worker() -> None:
    root = Path("/q")
    assert worker_root(root, 0) == root  # the main process: the in-process layout
    assert worker_root(root, 1) == root / "workers" / "1"


def test_the_in_process_queue_is_always_the_main_processes(tmp_path: Path) -> None:
    queue(tmp_path)
    assert orphan_roots(tmp_path, 2) == []
    assert orphan_roots(tmp_path, 1) == []
    assert not has_worker_queues(tmp_path)


def test_fewer_workers_drain_the_removed_workers_queues(tmp_path: Path) -> None:
    for k in (0, 1, 2, 10):
        queue(tmp_path / "workers" / str(k))
    (tmp_path / "workers" / "3").mkdir()  # no queue in it: nothing to drain
    (tmp_path / "workers" / "x").mkdir()
    workers = tmp_path / "workers"
    assert orphan_roots(tmp_path, 2) == [workers / "0", workers / "2", workers / "10"]
    assert orphan_roots(tmp_path, 11) == [workers / "0"]  # no worker uses 0
    assert has_worker_queues(tmp_path)
    # Back to one process: every worker root is an orphan.
    assert orphan_roots(tmp_path, 1) == [workers / str(k) for k in (0, 1, 2, 10)]


def test_nothing_on_disk(tmp_path: Path) -> None:
    assert orphan_roots(tmp_path / "missing", 4) == []
    assert not has_worker_queues(tmp_path / "missing")


def test_one_worker_is_the_in_process_agent_unless_worker_queues_wait(tmp_path: Path) -> None:
    """``--scrape.workers=1`` is the plain agent, except to deliver queues of workers."""
    options = AgentOptions(storage_path=str(tmp_path), scrape_workers="1")
    assert in_process(options)
    queue(tmp_path)  # the in-process agent's own queue: still in-process
    assert in_process(options)
    assert not in_process(dataclasses.replace(options, scrape_workers="3"))
    queue(tmp_path / "workers" / "1")
    assert not in_process(options)


async def test_run_chooses_the_in_process_agent_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: list[type[Agent]] = []

    async def fake_run_agent(options: AgentOptions, *, agent_class: type[Agent] = Agent) -> int:
        chosen.append(agent_class)
        return 0

    monkeypatch.setattr(supervisor, "run_agent", fake_run_agent)
    options = AgentOptions(storage_path=str(tmp_path), scrape_workers="1")
    assert await supervisor.run(options) == 0
    assert await supervisor.run(dataclasses.replace(options, scrape_workers="2")) == 0
    assert chosen == [Agent, supervisor.SupervisorAgent]
