"""Fixtures for remote-write tests: a real aiohttp receiver on 127.0.0.1 and writer factories."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.config import QueueConfig, RemoteWriteConfig
from collector.model.labels import Labels
from collector.remote.codec import DecodedSeries, decode_request, decompress
from collector.remote.receiver import make_receiver_handler
from collector.remote.writer import RemoteWriter
from collector.storage.series import SeriesRegistry


@dataclass
class Received:
    """One POST as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A scripted remote-write endpoint: answers from `script` (a 2xx with headers is answered
    as scripted), then 204 and decodes (1.0 or 2.0, `make_receiver_handler`)."""

    url: str = ""
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    down: bool = False
    """While True every request gets 503 (an outage)."""
    delay: float = 0.0
    """Seconds each request takes before it is answered (a slow receiver)."""
    v1_only: bool = False
    """Decode every body as 1.0 and answer 204 without written-count headers, whatever the
    Content-Type, as a 1.0 receiver does (Prometheus 2.x): a 2.0 body reads as empty."""
    v2_status: int = 0
    """When set, the status every 2.0 request gets (415: a receiver that refuses 2.0)."""
    requests: list[Received] = field(default_factory=list)
    series: list[DecodedSeries] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def samples(self) -> list[tuple[Labels, float, int]]:
        """Every accepted sample as ``(labels, value, ts)``, in arrival order."""
        return [(labels, v, t) for labels, samples in self.series for v, t in samples]

    def accepted(self) -> list[Received]:
        """The requests that got a 2xx."""
        return [r for r in self.requests if r.status < 300]

    def _on_write(self, series: list[DecodedSeries]) -> None:
        self.series.extend(series)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, then answer from the script, the outage flag, or accept it."""
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        status, headers = 204, dict[str, str]()
        if self.script:
            status, headers = self.script.popleft()
        elif self.v2_status and "write.v2" in request.headers.get("Content-Type", ""):
            status = self.v2_status
        elif self.down:
            status = 503
        self.requests.append(
            Received(asyncio.get_running_loop().time(), dict(request.headers), body, status)
        )
        try:
            if status >= 300 or headers:
                return web.Response(status=status, headers=headers, text="scripted\n")
            if self.v1_only:
                self.series.extend(decode_request(decompress(body)))
                return web.Response(status=204)
            return await make_receiver_handler(self._on_write)(request)
        finally:
            self.changed.set()

    async def wait_for(self, predicate: Callable[[Receiver], bool], within: float = 5.0) -> None:
        """Wait (real or virtual time) until ``predicate(self)`` holds."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def wait_samples(self, n: int, within: float = 5.0) -> None:
        """Wait until at least ``n`` samples were accepted."""
        await self.wait_for(lambda r: len(r.samples) >= n, within)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver on an ephemeral 127.0.0.1 port."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/api/v1/write", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/api/v1/write"
    yield rec
    await runner.cleanup()


class InlineExecutor(Executor):
    """Runs the write-ahead log's calls on the loop thread: deterministic on virtual time."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@dataclass
class WriterKit:
    """Builds writers on one storage directory and one series registry."""

    storage: Path
    series: SeriesRegistry = field(default_factory=SeriesRegistry)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def make(self, url: str, *, name: str = "rw", shards: int = 1, **kwargs: Any) -> RemoteWriter:
        """A writer for ``url``; ``queue_*`` kwargs go to `QueueConfig`, the rest to the writer."""
        queue_kw = {k[6:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("queue_")}
        config_kw = {k[7:]: kwargs.pop(k) for k in list(kwargs) if k.startswith("config_")}
        queue_kw.setdefault("min_backoff", 0.03)
        kwargs.setdefault("jitter", 0.0)
        kwargs.setdefault("io", InlineExecutor())
        kwargs.setdefault("fsync", False)
        config = RemoteWriteConfig(
            url=url, name=name, queue_config=QueueConfig(**queue_kw), **config_kw
        )
        return RemoteWriter(
            config,
            series=self.series,
            registry=self.registry,
            storage_path=self.storage,
            shards=shards,
            **kwargs,
        )

    def ref(self, *pairs: tuple[str, str]) -> int:
        """The ref of a label set (sorted here)."""
        return self.series.acquire(tuple(sorted(pairs)))

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample value from the injected registry (0 when absent)."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


@pytest.fixture
def kit(tmp_path: Path) -> WriterKit:
    """A writer factory on a fresh storage directory."""
    return WriterKit(storage=tmp_path)


@contextlib.asynccontextmanager
async def _running(writer: RemoteWriter) -> AsyncIterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def running() -> Callable[[RemoteWriter], contextlib.AbstractAsyncContextManager[Any]]:
    """``async with running(writer):`` runs ``writer.run()`` and cancels it on exit."""
    return _running


async def settle(writer: RemoteWriter, within: float = 5.0) -> None:
    """Wait until ``writer`` holds nothing in memory (its last response was processed)."""
    async with asyncio.timeout(within):
        # The writer has no idle event (nothing in production needs one); a 1 ms virtual-time
        # poll in tests is the honest substitute.
        while writer.pending_samples:  # noqa: ASYNC110
            await asyncio.sleep(0.001)


@pytest.fixture
def idle() -> Callable[[RemoteWriter], Any]:
    """``await idle(writer)``: wait until the writer's memory queue is empty."""
    return settle
