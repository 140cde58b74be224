"""The HTTP surface of INTERFACES.md, through a stand-in `AgentView` (the web layer's only seam)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from collector.errors import ConfigError
from collector.web.app import make_app


class View:
    """A scripted agent: readiness, reload outcome and targets are set by each test."""

    def __init__(self) -> None:
        self.ready = False
        self.reload_error: str | None = None
        self.reloads = 0
        self.quits = 0
        self.active: list[dict[str, Any]] = [
            {"scrapePool": "a", "scrapeUrl": "http://h:1/metrics", "health": "up"},
            {"scrapePool": "b", "scrapeUrl": "http://h:2/metrics", "health": "down"},
        ]
        self.dropped: list[dict[str, Any]] = [
            {"scrapePool": "a", "discoveredLabels": {"__address__": "x"}},
        ]

    def is_ready(self) -> bool:
        return self.ready

    async def reload(self) -> None:
        self.reloads += 1
        if self.reload_error:
            raise ConfigError(self.reload_error, path="scrape_configs[0]")

    def request_quit(self) -> None:
        self.quits += 1

    def active_targets(self) -> Sequence[dict[str, Any]]:
        return self.active

    def dropped_targets(self) -> Sequence[dict[str, Any]]:
        return self.dropped

    def dropped_target_counts(self) -> Mapping[str, int]:
        return {"a": len(self.dropped)}

    def target_relabel_steps(self, pool: str, labels: Mapping[str, str]) -> Mapping[str, object]:
        return {"steps": []}  # the real answer is tested in tests/web/test_relabel_steps_api.py

    def series_relabel_steps(
        self, pool: str, series: Mapping[str, str], *, target: Mapping[str, str] | None
    ) -> Mapping[str, object]:
        return {"steps": []}

    def config_yaml(self) -> str:
        return "global: {}\n"

    def remote_write_status(self) -> Sequence[dict[str, Any]]:
        return [{"name": "q", "url": "http://r/api/v1/write", "samplesSent": 3}]


@dataclass
class Web:
    """A test client on the app and the scripted view behind it."""

    client: TestClient[Any, Any]
    view: View


@pytest.fixture
async def web() -> AsyncIterator[Web]:
    view = View()
    registry = CollectorRegistry()
    Counter("collector_test_things", "Things.", registry=registry).inc(7)
    app = make_app(view, registry=registry, enable_lifecycle=True)
    async with TestClient(TestServer(app)) as client:
        yield Web(client, view)


async def test_metrics_serve_the_injected_registry(web: Web) -> None:
    """/metrics exposes the agent's own registry, not the global one."""
    response = await web.client.get("/metrics")
    assert response.status == 200
    assert "collector_test_things_total 7.0" in await response.text()


async def test_healthy_always_ready_only_when_the_agent_says(web: Web) -> None:
    """/-/healthy is 200 while running; /-/ready is 503 until the agent is ready."""
    assert (await web.client.get("/-/healthy")).status == 200
    assert (await web.client.get("/-/ready")).status == 503
    web.view.ready = True
    assert (await web.client.get("/-/ready")).status == 200


async def test_reload_reports_failure_with_the_error(web: Web) -> None:
    """POST /-/reload is 200 on success, 500 with the located error otherwise; GET is 405."""
    assert (await web.client.post("/-/reload")).status == 200
    web.view.reload_error = "unknown action"
    response = await web.client.post("/-/reload")
    assert response.status == 500
    assert "scrape_configs[0]: unknown action" in await response.text()
    assert (await web.client.get("/-/reload")).status == 405
    assert web.view.reloads == 2


async def test_quit_asks_the_agent_to_stop(web: Web) -> None:
    """POST /-/quit (lifecycle on) starts the agent's ordered stop; GET is 405."""
    response = await web.client.post("/-/quit")
    assert response.status == 200
    assert await response.text() == "Requesting termination... Goodbye!\n"
    assert (await web.client.get("/-/quit")).status == 405
    assert web.view.quits == 1


async def test_lifecycle_endpoints_403_unless_enabled() -> None:
    """Without --web.enable-lifecycle, reload and quit answer 403 and do nothing (Prometheus)."""
    view = View()
    async with TestClient(TestServer(make_app(view, registry=CollectorRegistry()))) as client:
        for path in ("/-/reload", "/-/quit"):
            response = await client.post(path)
            assert response.status == 403
            assert await response.text() == "Lifecycle API is not enabled.\n"
    assert (view.reloads, view.quits) == (0, 0)


async def test_targets_filters_by_state_and_pool(web: Web) -> None:
    """/api/v1/targets honours state= and scrapePool= and counts dropped targets per pool."""
    data = await (await web.client.get("/api/v1/targets")).json()
    assert data["status"] == "success"
    assert len(data["data"]["activeTargets"]) == 2
    assert data["data"]["droppedTargetCounts"] == {"a": 1}
    only_b = await (await web.client.get("/api/v1/targets", params={"scrapePool": "b"})).json()
    assert [t["scrapePool"] for t in only_b["data"]["activeTargets"]] == ["b"]
    assert only_b["data"]["droppedTargets"] == []
    dropped = await (await web.client.get("/api/v1/targets", params={"state": "dropped"})).json()
    assert dropped["data"]["activeTargets"] == []
    bad = await web.client.get("/api/v1/targets", params={"state": "sideways"})
    assert bad.status == 400


async def test_status_endpoints_and_ui(web: Web) -> None:
    """The config, remote-write status and the UI page are served."""
    config = await (await web.client.get("/api/v1/status/config")).json()
    assert config["data"]["yaml"] == "global: {}\n"
    queues = await (await web.client.get("/api/v1/status/remote_write")).json()
    assert queues["data"][0]["samplesSent"] == 3
    page = await web.client.get("/")
    assert page.status == 200
    assert "api/v1/targets" in await page.text()


async def test_remote_write_route_only_when_enabled(web: Web) -> None:
    """Without a receiver handler, POST /api/v1/write does not exist."""
    assert (await web.client.post("/api/v1/write", data=b"")).status in (404, 405)
