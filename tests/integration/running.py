"""Run the real agent in-process for end-to-end tests, and small loopback targets to scrape."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from tests.integration.servers import free_port

__all__ = ["Target", "eventually", "running_agent", "serve_routes", "serve_target"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def eventually(
    predicate: Callable[[], object],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 (a polling budget, not a cancellation scope)
    interval: float = 0.2,
) -> None:
    """Await until ``predicate()`` (sync or async) is truthy; bounded by ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return
        except (OSError, aiohttp.ClientError, AssertionError, KeyError, IndexError) as exc:
            last = exc
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"not true within {timeout}s; last result: {last!r}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_agent(
    config: str,
    tmp_path: Path,
    *,
    remote_write_receiver: bool = False,
    kubeconfig: Path | None = None,
    flush_deadline: float = 10.0,
    lifecycle: bool = False,
) -> AsyncIterator[Agent]:
    """Write ``config``, run an `Agent` on a free port until the block ends (then cancel it)."""
    config_file = tmp_path / "collector.yml"
    config_file.write_text(config)
    options = AgentOptions(
        config_file=str(config_file),
        listen_address=f"127.0.0.1:{free_port()}",
        storage_path=str(tmp_path / "queue"),
        enable_remote_write_receiver=remote_write_receiver,
        enable_lifecycle=lifecycle,
        kubeconfig=str(kubeconfig) if kubeconfig else "",
    )
    agent = Agent(
        options,
        registry=new_registry(),
        flush_deadline=flush_deadline,
        reload_interval=0.2,
        discovery_updatert=0.2,
    )
    ready = asyncio.Event()
    task = asyncio.create_task(agent.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Target:
    """A loopback exposition endpoint whose body tests can change between scrapes."""

    body: bytes
    content_type: str = "text/plain; version=0.0.4"
    status: int = 200
    scrapes: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def serve_target(target: Target) -> AsyncIterator[Target]:
    """Serve ``target`` on a free port of its host until the block ends."""

    async def metrics(request: web.Request) -> web.Response:
        target.scrapes += 1
        target.seen_headers.append(dict(request.headers))
        return web.Response(
            body=target.body, status=target.status, headers={"Content-Type": target.content_type}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind((target.host, 0))
    target.port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield target
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_routes(routes: Sequence[tuple[str, str, Handler]]) -> AsyncIterator[list[str]]:
    """One loopback app per ``(method, path, handler)``, each on a free port, until the block
    ends; yields their ``host:port`` addresses in order (targets and receivers of a test)."""
    runners: list[web.AppRunner] = []
    addresses: list[str] = []
    try:
        for method, path, handler in routes:
            app = web.Application()
            app.router.add_route(method, path, handler)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            runners.append(runner)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            addresses.append(f"127.0.0.1:{port}")
        yield addresses
    finally:
        for runner in runners:
            await runner.cleanup()
