"""End to end against real peers: node_exporter scraped, VictoriaMetrics and Prometheus receiving.

These tests run the real agent in-process on loopback and assert what actually arrived at the
receivers through their query APIs: the exact series and values, the report series, staleness
markers, and that a receiver outage loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from collector.model.textparse import Exposition, parse
from tests.integration.running import Target, eventually, running_agent, serve_target
from tests.integration.servers import (
    Server,
    node_exporter,
    prometheus_receiver,
    start_server,
    victoria_metrics,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[Server]:
    """A real VictoriaMetrics receiver."""
    with victoria_metrics(tmp_path) as server:
        yield server


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[Server]:
    """A real Prometheus with the remote-write receiver enabled."""
    with prometheus_receiver(tmp_path) as server:
        yield server


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Server]:
    """The real prometheus-node-exporter."""
    with node_exporter(tmp_path) as server:
        yield server


async def _get_json(url: str, **params: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        data: dict[str, object] = await response.json()
        return data


async def query(server: Server, promql: str) -> list[dict[str, object]]:
    """Instant query through the receiver's Prometheus API."""
    data = await _get_json(f"{server.url}/api/v1/query", query=promql)
    assert data["status"] == "success", data
    result = data["data"]
    assert isinstance(result, dict)
    series: list[dict[str, object]] = result["result"]
    return series


async def scalar(server: Server, promql: str) -> float | None:
    """The single value of an instant query, or None when it has no result."""
    result = await query(server, promql)
    if not result:
        return None
    assert len(result) == 1, result
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def remote_write(*servers: Server) -> str:
    """A remote_write section for ``servers`` with a short batch deadline and backoff."""
    lines = ["remote_write:"]
    for s in servers:
        path = "/api/v1/write"
        lines += [
            f"  - url: {s.url}{path}",
            f"    name: {s.name}",
            "    queue_config: {batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 500ms}",
        ]
    return "\n".join(lines) + "\n"


async def test_node_exporter_series_arrive_exactly_at_both_receivers(
    tmp_path: Path, vm: Server, prom: Server, exporter: Server
) -> None:
    """Every series node_exporter exposes arrives at both receivers, with job and instance."""
    address = exporter.url.removeprefix("http://")
    config = (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: node\n    static_configs: [{{targets: ['{address}']}}]\n"
        + remote_write(vm, prom)
    )
    async with running_agent(config, tmp_path):
        await eventually(lambda: scalar(prom, 'up{job="node"}'), timeout=30)
        await eventually(lambda: scalar(vm, 'up{job="node"}'), timeout=30)
        body = exporter.get("/metrics")
    exposition = parse(body, openmetrics=False)
    expected = set()
    for key, _value, _ts in exposition.samples:
        labels = dict(exposition.labels(key))
        labels.update(job="node", instance=address)
        expected.add(frozenset(labels.items()))
    for receiver in (vm, prom):
        got = await query(receiver, '{job="node"}')
        names = {frozenset(_metric(s).items()) for s in got}
        report = {n for n in names if dict(n)["__name__"] in _REPORT}
        assert {dict(n)["__name__"] for n in report} == _REPORT
        assert names - report == expected, receiver.name
        assert await scalar(receiver, 'up{job="node"}') == 1.0
        scraped = await scalar(receiver, 'scrape_samples_scraped{job="node"}')
        assert scraped == len(exposition.samples)
        total = await scalar(receiver, 'node_memory_MemTotal_bytes{job="node"}')
        assert total == _value_of(exposition, b"node_memory_MemTotal_bytes")


def _metric(series: dict[str, object]) -> dict[str, str]:
    metric = series["metric"]
    assert isinstance(metric, dict)
    return metric


_REPORT = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}


def _value_of(exposition: Exposition, key: bytes) -> float:
    for k, value, _ts in exposition.samples:
        if k == key:
            return value
    raise KeyError(key)


async def test_vanished_series_and_failed_target_get_staleness_markers(
    tmp_path: Path, prom: Server
) -> None:
    """A series that disappears, and every series of a target that starts failing, go stale."""
    target = Target(body=b"# TYPE a gauge\na 1\nb 2\n")
    async with serve_target(target):
        config = (
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: t\n    static_configs: [{{targets: ['{target.address}']}}]\n"
            + remote_write(prom)
        )
        async with running_agent(config, tmp_path):
            await eventually(lambda: scalar(prom, 'b{job="t"}'), timeout=30)
            target.body = b"# TYPE a gauge\na 3\n"
            # Without a staleness marker Prometheus would keep returning b for 5 minutes.
            await eventually(lambda: _absent(prom, 'b{job="t"}'), timeout=30)
            assert await scalar(prom, 'a{job="t"}') in (1.0, 3.0)
            target.status = 500
            await eventually(lambda: _absent(prom, 'a{job="t"}'), timeout=30)
            await eventually(lambda: _equals(prom, 'up{job="t"}', 0.0), timeout=30)


async def _absent(server: Server, promql: str) -> bool:
    return await scalar(server, promql) is None


async def _equals(server: Server, promql: str, value: float) -> bool:
    return await scalar(server, promql) == value


async def test_receiver_outage_loses_no_sample(tmp_path: Path) -> None:
    """VictoriaMetrics stopped and restarted mid-run: every scrape's `up` sample still arrives."""
    target = Target(body=b"x 1\n")
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    async with contextlib.AsyncExitStack() as agent_stack:
        await agent_stack.enter_async_context(serve_target(target))
        with victoria_metrics(vm_dir) as first:
            url = first.url
            config = (
                "global: {scrape_interval: 500ms, scrape_timeout: 500ms}\n"
                "scrape_configs:\n"
                f"  - job_name: o\n    static_configs: [{{targets: ['{target.address}']}}]\n"
                + remote_write(first)
            )
            agent = await agent_stack.enter_async_context(running_agent(config, agent_dir))
            await eventually(lambda: scalar(first, 'up{job="o"}'), timeout=30)
        # The receiver is down now; the agent keeps scraping and queues (memory, then disk).
        down_at = target.scrapes
        await eventually(lambda: target.scrapes >= down_at + 8, timeout=30)
        argv = [
            "victoria-metrics",
            f"-storageDataPath={vm_dir / 'vm-data'}",
            f"-httpListenAddr=127.0.0.1:{url.rsplit(':', 1)[1]}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
        ]
        with start_server(
            "vm-restarted", argv, url=url, ready_path="/health", workdir=vm_dir
        ) as second:
            labels = {"remote_name": "victoria-metrics", "url": f"{url}/api/v1/write"}

            def drained() -> bool:
                sent = agent.registry.get_sample_value(
                    "prometheus_remote_storage_samples_total", labels
                )
                return bool(sent) and agent.writers_pending() == 0

            await eventually(drained, timeout=60)
            await agent_stack.aclose()  # stop the agent: its last scrapes are flushed
            scrapes = target.scrapes
            await asyncio.to_thread(second.get, "/internal/force_flush")
            await eventually(
                lambda: _equals(second, 'count_over_time(up{job="o"}[1h])', float(scrapes)),
                timeout=30,
            )
