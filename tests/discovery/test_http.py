"""http_sd against a real aiohttp server on 127.0.0.1: success, failures, shrinking lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.config import Authorization, BasicAuth, HTTPClientConfig, HTTPSDConfig
from collector.discovery.http import HTTPDiscoverer
from collector.discovery.metrics import DiscoveryMetrics
from tests.discovery.helpers import Recorder, Stepper, addresses


@dataclass
class Reply:
    """What the fake SD endpoint answers next."""

    status: int = 200
    body: bytes = b"[]"
    content_type: str = "application/json"
    charset: str | None = None
    requests: list[web.Request] = field(default_factory=list)

    def json(self, data: object) -> None:
        """Answer 200 with ``data`` as JSON."""
        self.status, self.body, self.content_type = 200, orjson.dumps(data), "application/json"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Reply]]:
    """A real HTTP server on 127.0.0.1 serving ``/sd`` from a mutable `Reply`."""
    reply = Reply()

    async def handle(request: web.Request) -> web.Response:
        reply.requests.append(request)
        return web.Response(
            status=reply.status,
            body=reply.body,
            content_type=reply.content_type,
            charset=reply.charset,
        )

    app = web.Application()
    app.router.add_get("/sd", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/sd", reply
    await runner.cleanup()


class Harness:
    """An HTTPDiscoverer driven pass by pass through a Stepper."""

    def __init__(self, config: HTTPSDConfig) -> None:
        self.registry = CollectorRegistry()
        metrics = DiscoveryMetrics(self.registry)
        self.stepper = Stepper()
        self.recorder = Recorder()
        self.provider = HTTPDiscoverer(
            config,
            refresh_metrics=metrics.refresh(mechanism="http", config="job"),
            failures=metrics.http_failures,
            sleep=self.stepper.sleep,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the provider until its first refresh is done."""
        self.task = asyncio.create_task(self.provider.run(self.recorder))
        await self.stepper.idle()

    async def stop(self) -> None:
        """Cancel the provider (the only stop signal)."""
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    def failures(self) -> tuple[float | None, float | None]:
        """(http failures, refresh failures)."""
        return (
            self.registry.get_sample_value("prometheus_sd_http_failures_total"),
            self.registry.get_sample_value(
                "prometheus_sd_refresh_failures_total", {"mechanism": "http", "config": "job"}
            ),
        )


@pytest.fixture
async def harness(server: tuple[str, Reply]) -> AsyncIterator[Harness]:
    """A started provider pointed at the fake server (which first answers [])."""
    url, _ = server
    harness = Harness(HTTPSDConfig(url=url, refresh_interval=30.0))
    await harness.start()
    yield harness
    await harness.stop()


async def test_valid_response_sends_groups_with_meta_url(
    server: tuple[str, Reply], harness: Harness
) -> None:
    """A 200 JSON list becomes groups <url>:<i> with __meta_url; the interval header is sent."""
    url, reply = server
    reply.json([{"targets": ["a:1", "a:2"], "labels": {"env": "prod"}}, {"targets": ["b:1"]}])
    await harness.stepper.step()
    sent = harness.recorder.last
    assert [g.source for g in sent] == [f"{url}:0", f"{url}:1"]
    assert [dict(g.labels) for g in sent] == [
        {"env": "prod", "__meta_url": url},
        {"__meta_url": url},
    ]
    assert addresses(sent) == ["a:1", "a:2", "b:1"]
    assert reply.requests[-1].headers["X-Prometheus-Refresh-Interval-Seconds"] == "30"
    assert harness.stepper.delays == [30.0, 30.0]


async def test_first_refresh_sends_even_when_empty(harness: Harness) -> None:
    """The first successful refresh of [] still sends, marking the provider synced."""
    assert harness.recorder.sends == [[]]


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, b"oops", "text/plain"),
        (200, b"[{", "application/json"),
        (200, b"[]", "text/plain"),
        (200, b'[{"targets": "a:1"}]', "application/json"),
    ],
    ids=["http-500", "bad-json", "wrong-content-type", "invalid-shape"],
)
async def test_failure_keeps_last_good_groups(
    server: tuple[str, Reply], harness: Harness, status: int, body: bytes, content_type: str
) -> None:
    """Any failure sends nothing (previous groups stay) and counts both failure counters."""
    _, reply = server
    reply.json([{"targets": ["a:1"]}])
    await harness.stepper.step()
    reply.status, reply.body, reply.content_type = status, body, content_type
    await harness.stepper.step()
    assert addresses(harness.recorder.last) == ["a:1"]
    assert len(harness.recorder.sends) == 2
    assert harness.failures() == (1, 1)


async def test_charset_in_content_type_is_accepted(
    server: tuple[str, Reply], harness: Harness
) -> None:
    """``application/json; charset=utf-8`` is a valid content type."""
    _, reply = server
    reply.json([{"targets": ["a:1"]}])
    reply.charset = "utf-8"
    await harness.stepper.step()
    assert reply.requests[-1] is not None
    assert addresses(harness.recorder.last) == ["a:1"]
    assert harness.failures() == (0, 0)


async def test_disappearing_groups_are_sent_empty(
    server: tuple[str, Reply], harness: Harness
) -> None:
    """When the list shrinks, the vanished indexes are sent as empty groups."""
    url, reply = server
    reply.json([{"targets": ["a:1"]}, {"targets": ["b:1"]}, {"targets": ["c:1"]}])
    await harness.stepper.step()
    reply.json([{"targets": ["a:1"]}])
    await harness.stepper.step()
    assert [(g.source, addresses([g])) for g in harness.recorder.last] == [
        (f"{url}:0", ["a:1"]),
        (f"{url}:1", []),
        (f"{url}:2", []),
    ]


async def test_unreachable_endpoint_first_refresh_still_syncs() -> None:
    """A connection failure on the first refresh counts and sends [] so /-/ready is not stuck."""
    harness = Harness(HTTPSDConfig(url="http://127.0.0.1:1/sd", refresh_interval=30.0))
    await harness.start()
    assert harness.recorder.sends == [[]]
    assert harness.failures() == (1, 1)
    await harness.stop()


async def test_basic_auth_header(server: tuple[str, Reply]) -> None:
    """basic_auth credentials are sent as an Authorization: Basic header."""
    url, reply = server
    client = HTTPClientConfig(basic_auth=BasicAuth(username="u", password="p"))
    harness = Harness(HTTPSDConfig(url=url, http_client=client))
    await harness.start()
    assert reply.requests[-1].headers["Authorization"] == "Basic dTpw"
    await harness.stop()


async def test_bearer_token_from_file(server: tuple[str, Reply], tmp_path: Path) -> None:
    """authorization.credentials_file is read and sent as ``<type> <token>``."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    url, reply = server
    client = HTTPClientConfig(authorization=Authorization(credentials_file=str(token)))
    harness = Harness(HTTPSDConfig(url=url, http_client=client))
    await harness.start()
    assert reply.requests[-1].headers["Authorization"] == "Bearer s3cret"
    await harness.stop()
