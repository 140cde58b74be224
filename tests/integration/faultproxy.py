"""A fault-injecting remote-write proxy that keeps exact books of every sample it sees.

Pipeline position: between an agent's ``remote_write`` and a real receiver (VictoriaMetrics)::

    agent ──POST /api/v1/write──▶ FaultProxy ──POST──▶ VictoriaMetrics /api/v1/write
                                   │ mode: pass | down | status N (+headers, every or next K)
                                   │       | delay +D s per request
                                   ▼
                                 Books: per series, which samples VM acknowledged (2xx); which
                                 samples were refused, by status; out-of-order and duplicate
                                 arrivals among what was forwarded

The mode is switched at run time from any thread: `FaultProxy.passing`, `FaultProxy.fail`,
`FaultProxy.delay` are plain thread-safe setters; `FaultProxy.down` and `FaultProxy.up` are
coroutines for the proxy's own loop (they close and reopen the listening socket, so a client
really gets ECONNREFUSED, and idle keep-alive connections are closed too). `LoopThread` runs
such a loop on a daemon thread for tests that drive subprocesses synchronously.

Every request body is decoded (snappy block, or zstd; protobuf ``WriteRequest`` through
`collector.remote.codec`), so the books hold sample identities ``(series id, timestamp ms)``,
not just counts. Definitions the books use:

* *acknowledged*: forwarded to the receiver, which answered 2xx;
* *out of order*: forwarded with a timestamp lower than the highest already forwarded for that
  series (what a Prometheus TSDB rejects as ``out of order sample``), a resend of an old,
  already-acknowledged sample included;
* *duplicate*: forwarded with a timestamp equal to the highest already forwarded for that series;
  a retry of a request whose forwarding failed in the proxy itself (``in doubt``) is neither;
* *refused*: answered by the proxy with a non-2xx status of its own (never forwarded).

Samples of the metric names given as ``serial_names`` carry a scrape serial as their value
(see ``tests/integration/delivery.py``); the books map ``(instance, serial)`` to the scrape's
timestamp from any such sample seen, acknowledged or refused.

Prometheus counterpart: none; it plays the part of ``storage/remote/client_test.go``'s test
server, over real sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import aiohttp
import cramjam
from aiohttp import web

from collector.remote.codec import DecodeError, decode_request, decompress

__all__ = [
    "Books",
    "FaultProxy",
    "LoopThread",
    "Mode",
    "Refusal",
    "SampleId",
    "decode_body",
    "running_proxy",
]

T = TypeVar("T")

SampleId = tuple[int, int]
"""``(series id, timestamp ms)``: one sample, as the books identify it."""

_Labels = tuple[tuple[str, str], ...]
_Sample = tuple[int, int, float]
"""``(series id, timestamp ms, value)``."""

_FORWARDED_HEADERS = (
    "Content-Encoding",
    "Content-Type",
    "User-Agent",
    "X-Prometheus-Remote-Write-Version",
)


class LoopThread:
    """An asyncio event loop on a daemon thread; `call` runs a coroutine on it from any thread.

    Use it as a context manager: the loop is started on entry and, on exit, stopped, its
    remaining tasks cancelled, its async generators shut down and the loop closed.
    """

    def __init__(self, name: str = "loop-thread") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._cancel_rest(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    async def _cancel_rest(self) -> None:
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        await self.loop.shutdown_asyncgens()

    def call(self, coro: Coroutine[object, object, T], *, timeout: float = 60.0) -> T:
        """Run ``coro`` on the loop and wait (bounded) for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    """What the proxy does with the next request (``down`` is separate: the socket is closed)."""

    kind: Literal["pass", "status", "delay"] = "pass"
    status: int = 200
    """For ``status``: the status answered instead of forwarding."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """For ``status``: response headers (``Retry-After``)."""
    remaining: int | None = None
    """For ``status``: answer it to this many sample-carrying requests, then pass; None: all."""
    delay: float = 0.0
    """For ``delay``: seconds to wait before forwarding each request."""


@dataclass(slots=True)
class Refusal:
    """Requests and samples the proxy refused with one status."""

    requests: int = 0
    samples: int = 0
    ids: list[SampleId] = field(default_factory=list)


class Books:
    """Exact accounts of the samples the proxy saw; mutate and read under `lock`.

    Series are interned to small ints (``sid``); per series the acknowledged samples are a
    ``{timestamp_ms: value}`` dict. ``acked_at[(instance, ts)]`` counts the distinct series of
    ``instance`` acknowledged at ``ts``: with one scrape per timestamp, that is how much of the
    scrape arrived.
    """

    def __init__(self, *, serial_names: Iterable[str] = ()) -> None:
        self.lock = threading.Lock()
        self._serial_names = frozenset(serial_names)
        self._ids: dict[_Labels, int] = {}
        self.labels: list[_Labels] = []
        self.instance: list[str] = []
        self.name: list[str] = []
        self._is_serial: list[bool] = []
        self.acked: list[dict[int, float]] = []
        self._highest: list[int] = []
        self._in_doubt: set[SampleId] = set()
        self.sids_of: dict[str, list[int]] = {}
        """Series ids per ``instance`` label value."""
        self.acked_at: Counter[tuple[str, int]] = Counter()
        self.scrape_ts: dict[tuple[str, int], int] = {}
        """``(instance, serial) -> timestamp ms`` from any serial-carrying sample seen."""
        self.serial_conflicts = 0
        """Serial samples whose timestamp differs from the first seen for that serial."""
        self.out_of_order = 0
        self.duplicates = 0
        self.resent = 0
        """Forwarded samples that had been acknowledged before (part of the two above)."""
        self.examples: list[str] = []
        """The first few out-of-order arrivals, readable."""
        self.acked_samples = 0
        self.stale_markers = 0
        """Acknowledged samples whose value is NaN (staleness markers)."""
        self.refused: dict[int, Refusal] = {}
        self.requests: Counter[str] = Counter()
        """``received``, ``forwarded``, ``acked``, ``upstream_refused``, ``forward_failed``,
        ``undecodable``, ``refused``."""

    # ------------------------------------------------------------------ recording

    def intern(self, series: Iterable[tuple[_Labels, list[tuple[float, int]]]]) -> list[_Sample]:
        """The decoded series of one request as ``(sid, ts, value)`` samples (holds the lock)."""
        out: list[_Sample] = []
        with self.lock:
            ids = self._ids
            for labels, samples in series:
                sid = ids.get(labels)
                if sid is None:
                    sid = self._new_series(labels)
                out.extend((sid, ts, value) for value, ts in samples)
                if self._is_serial[sid]:
                    self._note_serials(sid, samples)
        return out

    def _new_series(self, labels: _Labels) -> int:
        sid = len(self.labels)
        self._ids[labels] = sid
        as_dict = dict(labels)
        instance = as_dict.get("instance", "")
        name = as_dict.get("__name__", "")
        self.labels.append(labels)
        self.instance.append(instance)
        self.name.append(name)
        self._is_serial.append(name in self._serial_names)
        self.acked.append({})
        self._highest.append(-(2**63))
        self.sids_of.setdefault(instance, []).append(sid)
        return sid

    def _note_serials(self, sid: int, samples: list[tuple[float, int]]) -> None:
        instance = self.instance[sid]
        for value, ts in samples:
            if value != value or not value.is_integer():  # NaN: staleness marker
                continue
            key = (instance, int(value))
            first = self.scrape_ts.setdefault(key, ts)
            if first != ts:
                self.serial_conflicts += 1

    def forwarding(self, samples: list[_Sample]) -> None:
        """``samples`` are about to be forwarded: classify out-of-order and duplicate arrivals."""
        with self.lock:
            self.requests["forwarded"] += 1
            highest = self._highest
            acked = self.acked
            in_doubt = self._in_doubt
            for sid, ts, _value in samples:
                top = highest[sid]
                if ts > top:
                    highest[sid] = ts
                    continue
                if in_doubt and (sid, ts) in in_doubt:
                    continue
                if ts in acked[sid]:
                    self.resent += 1
                if ts == top:
                    self.duplicates += 1
                else:
                    self.out_of_order += 1
                    if len(self.examples) < 10:
                        self.examples.append(
                            f"{dict(self.labels[sid])} ts={ts} after {top} ({top - ts} ms earlier)"
                        )

    def acknowledged(self, samples: list[_Sample]) -> None:
        """The receiver answered 2xx to a request carrying ``samples``."""
        with self.lock:
            self.requests["acked"] += 1
            acked = self.acked
            instance = self.instance
            acked_at = self.acked_at
            in_doubt = self._in_doubt
            for sid, ts, value in samples:
                book = acked[sid]
                if ts in book:
                    continue
                book[ts] = value
                acked_at[(instance[sid], ts)] += 1
                self.acked_samples += 1
                if value != value:
                    self.stale_markers += 1
                if in_doubt:
                    in_doubt.discard((sid, ts))

    def in_doubt(self, samples: list[_Sample], *, reason: str) -> None:
        """Forwarding failed (or the receiver refused): the client will retry these."""
        with self.lock:
            self.requests[reason] += 1
            acked = self.acked
            self._in_doubt.update((sid, ts) for sid, ts, _ in samples if ts not in acked[sid])

    def refuse(self, status: int, samples: list[_Sample]) -> None:
        """The proxy answered ``status`` itself to a request carrying ``samples``."""
        with self.lock:
            self.requests["refused"] += 1
            refusal = self.refused.setdefault(status, Refusal())
            refusal.requests += 1
            refusal.samples += len(samples)
            refusal.ids.extend((sid, ts) for sid, ts, _ in samples)

    # ------------------------------------------------------------------ reading (hold the lock)

    def is_acked(self, sample: SampleId) -> bool:
        """Whether the receiver acknowledged ``sample``."""
        sid, ts = sample
        return ts in self.acked[sid]

    def describe(self, sample: SampleId) -> str:
        """``{labels} @ts`` for messages."""
        sid, ts = sample
        return f"{dict(self.labels[sid])} @{ts}"

    def refused_unacked(self, statuses: Iterable[int]) -> set[SampleId]:
        """Samples refused with one of ``statuses`` that never got acknowledged afterwards."""
        out: set[SampleId] = set()
        for status in statuses:
            refusal = self.refused.get(status)
            if refusal is not None:
                out.update(s for s in refusal.ids if not self.is_acked(s))
        return out


def decode_body(body: bytes, encoding: str) -> list[tuple[_Labels, list[tuple[float, int]]]]:
    """The series of one remote-write 1.0 request body (snappy block, or zstd)."""
    if encoding.lower() == "zstd":
        return decode_request(bytes(cramjam.zstd.decompress(body)))
    return decode_request(decompress(body))


class FaultProxy:
    """The proxy: an aiohttp server on ``host:port`` forwarding to ``upstream``.

    Create it, then ``await start()`` on the loop that will run it; ``await stop()`` at the end.
    """

    def __init__(
        self,
        upstream: str,
        *,
        books: Books,
        host: str = "127.0.0.1",
        port: int,
        shutdown_timeout: float = 3.0,
    ) -> None:
        self.upstream = upstream
        self.books = books
        self.host = host
        self.port = port
        self._shutdown_timeout = shutdown_timeout
        self._mode = Mode()
        self._mode_lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """The remote-write URL agents are given."""
        return f"http://{self.host}:{self.port}/api/v1/write"

    @property
    def is_down(self) -> bool:
        """Whether the listening socket is closed."""
        return self._runner is None

    # ------------------------------------------------------------------ modes (any thread)

    @property
    def mode(self) -> Mode:
        """The current mode."""
        with self._mode_lock:
            return self._mode

    def passing(self) -> None:
        """Forward every request."""
        self._set(Mode())

    def fail(
        self, status: int, *, headers: Mapping[str, str] | None = None, count: int | None = None
    ) -> None:
        """Answer ``status`` (with ``headers``) to every request, or to the next ``count``
        requests that carry samples (then pass again); nothing is forwarded meanwhile."""
        self._set(Mode(kind="status", status=status, headers=dict(headers or {}), remaining=count))

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before forwarding each request."""
        self._set(Mode(kind="delay", delay=seconds))

    def _set(self, mode: Mode) -> None:
        with self._mode_lock:
            self._mode = mode

    def _take(self, carries_samples: bool) -> Mode:
        """The mode for one request; counts down a ``remaining`` status mode."""
        with self._mode_lock:
            mode = self._mode
            if mode.kind == "status" and mode.remaining is not None:
                if not carries_samples:
                    return Mode()
                left = mode.remaining - 1
                self._mode = Mode() if left <= 0 else _replace_remaining(mode, left)
            return mode

    # ------------------------------------------------------------------ lifecycle (its loop)

    async def start(self) -> None:
        """Open the upstream session and start listening."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        await self.up()

    async def stop(self) -> None:
        """Stop listening, finish in-flight requests (bounded) and close the session."""
        await self.down()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def up(self) -> None:
        """Listen again on the same port (no-op when listening)."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/api/v1/write", self._write)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True, backlog=1024).start()
        self._runner = runner

    async def down(self) -> None:
        """Close the listening socket and every connection: clients get ECONNREFUSED.

        Requests already being handled finish first (bounded by ``shutdown_timeout``; a
        ``delay`` longer than that is cancelled, and its samples are in doubt).
        """
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ the handler

    async def _write(self, request: web.Request) -> web.Response:
        body = await request.read()
        books = self.books
        with books.lock:
            books.requests["received"] += 1
        try:
            series = decode_body(body, request.headers.get("Content-Encoding", "snappy"))
        except (DecodeError, ValueError) as exc:
            with books.lock:
                books.requests["undecodable"] += 1
            return web.Response(status=400, text=f"faultproxy: undecodable body: {exc}")
        samples = books.intern(series)
        mode = self._take(bool(samples))
        if mode.kind == "status" and not 200 <= mode.status < 300:
            books.refuse(mode.status, samples)
            return web.Response(
                status=mode.status, headers=dict(mode.headers), text=f"faultproxy: {mode.status}"
            )
        if mode.kind == "delay":
            try:
                await asyncio.sleep(mode.delay)
            except asyncio.CancelledError:
                books.in_doubt(samples, reason="forward_failed")
                raise
        return await self._forward(request, body, samples)

    async def _forward(
        self, request: web.Request, body: bytes, samples: list[_Sample]
    ) -> web.Response:
        session = self._session
        assert session is not None, "start() the proxy first"
        headers = {h: request.headers[h] for h in _FORWARDED_HEADERS if h in request.headers}
        self.books.forwarding(samples)
        try:
            async with session.post(self.upstream, data=body, headers=headers) as response:
                answer = await response.read()
                status = response.status
        except asyncio.CancelledError:
            self.books.in_doubt(samples, reason="forward_failed")
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.books.in_doubt(samples, reason="forward_failed")
            return web.Response(status=502, text=f"faultproxy: upstream failed: {exc!r}")
        if 200 <= status < 300:
            self.books.acknowledged(samples)
        else:
            self.books.in_doubt(samples, reason="upstream_refused")
        return web.Response(status=status, body=answer)


def _replace_remaining(mode: Mode, remaining: int) -> Mode:
    return Mode(kind=mode.kind, status=mode.status, headers=mode.headers, remaining=remaining)


@contextlib.contextmanager
def running_proxy(
    upstream: str, *, books: Books, port: int, loop: LoopThread
) -> Iterator[FaultProxy]:
    """A started `FaultProxy` on ``loop`` until the block ends."""
    proxy = FaultProxy(upstream, books=books, port=port)
    loop.call(proxy.start())
    try:
        yield proxy
    finally:
        loop.call(proxy.stop())
