"""A loopback proxy between the agent and a Kubernetes API server that breaks streams on demand.

Pipeline position (tests only)::

    informer ──HTTP/1.1 (TLS)──▶ TCPProxy ──(TLS)──▶ kube-apiserver v1.20.2, or the fake API server

It stands where a load balancer or a flaky network stands in a cluster. With ``server_ssl`` it
terminates TLS with the API server's own certificate and key (so the agent verifies it with the
same CA) and connects upstream with ``upstream_ssl``: it sees plain HTTP/1.1. It reads each
request head (a list or a watch, from the query) and each response's framing (``Content-Length``,
or chunked: each chunk is re-framed as it passes), which is what lets it break a watch *between*
or *inside* events rather than at a random byte. Faults, switched from the test's event loop:

- `cut` / `restore`: reset every connection and refuse new ones (a network partition);
- `hold` / `release`: requests of the given kinds wait, unforwarded (a slow path): the next
  request then reaches the server at a moment the test chose;
- `stall_watches`: the watch responses streaming now stop flowing, the connections stay open
  (no byte, no FIN: what only a client-side read deadline detects);
- `reset_mid_event`: the next watch event is forwarded half, then both connections are reset
  (TCP RST): a truncated chunk inside a JSON line;
- `inject_line`: a line spliced into every streaming watch at a chunk boundary (an HTML error
  page or any garbage a broken proxy may insert between events);
- `answer_next`: the next requests of a kind are answered by the proxy itself, never
  forwarded (429 from a throttling layer, 502/503 pages of a load balancer).

Upstream connections are opened lazily, for the first request forwarded: a connection held or
answered by the proxy never touches the server (which may be down meanwhile).

Prometheus counterpart: none (Prometheus tests its informers against client-go's fakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import re
import socket
import ssl
import struct
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Answer", "Kind", "TCPProxy"]

Kind = Literal["list", "watch", "other"]
"""``watch``: a GET with ``watch=true``; ``list``: another GET under ``/api`` or ``/apis``."""

_EVENT = re.compile(rb'\{"type":"(?:ADDED|MODIFIED|DELETED)","object":')
_TRUE = ("1", "t", "T", "true", "True", "TRUE")
# Errors of peers going away (resets, truncated TLS records, half-read heads): they end one
# proxied connection, never the proxy.
# (ssl.SSLError is an OSError.)
_GONE = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass(frozen=True)
class Answer:
    """A response the proxy gives itself (then it closes the connection, as LBs do)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        reason = http.HTTPStatus(self.status).phrase
        head = [f"HTTP/1.1 {self.status} {reason}", f"Content-Type: {self.content_type}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        head += [f"Content-Length: {len(self.body)}", "Connection: close", "", ""]
        return "\r\n".join(head).encode() + self.body


def _kind(method: str, target: str) -> Kind:
    url = urllib.parse.urlsplit(target)
    if method != "GET" or not url.path.startswith(("/api/", "/apis/")):
        return "other"
    query = urllib.parse.parse_qs(url.query)
    return "watch" if any(v in _TRUE for v in query.get("watch", ())) else "list"


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    """(first line, lower-cased header names -> values) of a request or response head."""
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN: a reset, not a clean end."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader | None = None
    up_writer: asyncio.StreamWriter | None = None
    responses: asyncio.Queue[Kind] = field(default_factory=asyncio.Queue)
    streaming: bool = False
    """A watch response body is being relayed."""
    at_boundary: bool = False
    """Every chunk read from upstream so far went to the client: a line may be spliced in."""
    stalled: bool = False

    def close(self) -> None:
        for writer in (self.writer, self.up_writer):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.abort()


class TCPProxy:
    """``async with TCPProxy(port) as proxy``: agent -> ``proxy.url`` -> 127.0.0.1:``port``."""

    def __init__(
        self,
        upstream_port: int,
        *,
        server_ssl: ssl.SSLContext | None = None,
        upstream_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.server_ssl = server_ssl
        self.upstream_ssl = upstream_ssl
        self.port = 0
        self.requests: list[tuple[Kind, str]] = []
        """``(kind, target)`` of every request read, forwarded or not."""
        self.held = 0
        """Requests waiting in `hold` now."""
        self.resets = 0
        """Connections reset by `reset_mid_event`."""
        self._blocked = False
        self._hold: frozenset[Kind] = frozenset()
        self._released = asyncio.Event()
        self._released.set()
        self._answers: dict[Kind, deque[Answer]] = {k: deque() for k in ("list", "watch", "other")}
        self._reset_armed = False
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TCPProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.server_ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._released.set()
        for conn in list(self._conns):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self._server.wait_closed()

    @property
    def blocked(self) -> bool:
        """Between `cut` and `restore`."""
        return self._blocked

    @property
    def url(self) -> str:
        return f"{'https' if self.server_ssl else 'http'}://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        """Reset every open connection; new ones are reset at once until `restore`."""
        self._blocked = True
        for conn in list(self._conns):
            _reset(conn.writer)
            _reset(conn.up_writer)

    def restore(self) -> None:
        """Undo `cut`."""
        self._blocked = False

    def hold(self, *kinds: Kind) -> None:
        """Keep requests of ``kinds`` (all kinds when none given) until `release`."""
        self._hold = frozenset(kinds or ("list", "watch", "other"))
        self._released.clear()

    def release(self) -> None:
        """Forward the held requests (in the order they came) and stop holding."""
        self._hold = frozenset()
        self._released.set()

    def stall_watches(self) -> int:
        """Stop relaying the watch responses streaming now; returns how many."""
        stalled = 0
        for conn in self._conns:
            if conn.streaming and not conn.stalled:
                conn.stalled = True
                stalled += 1
        return stalled

    def reset_mid_event(self) -> None:
        """Cut the next watch event in half, then reset both connections (one shot)."""
        self._reset_armed = True

    def inject_line(self, line: bytes) -> int:
        """Splice ``line`` (a newline is added) into every watch streaming now, between two
        chunks; returns into how many."""
        chunk = b"%x\r\n%s\n\r\n" % (len(line) + 1, line)
        injected = 0
        for conn in self._conns:
            if conn.streaming and conn.at_boundary and not conn.stalled:
                conn.writer.write(chunk)
                injected += 1
        return injected

    def answer_next(self, kind: Kind, answers: Iterable[Answer]) -> None:
        """Answer the next requests of ``kind`` with ``answers``, one each, in order."""
        self._answers[kind].extend(answers)

    def count(self, kind: Kind) -> int:
        """How many requests of ``kind`` were read."""
        return sum(1 for k, _ in self.requests if k == kind)

    # ------------------------------------------------------------------ relaying

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(reader, writer)
        if self._blocked:
            _reset(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._conns.add(conn)
        responder: asyncio.Task[None] | None = None
        try:
            while True:
                # The client's next request; its EOF (or reset) ends the connection, and the
                # response being relayed with it.
                head = await reader.readuntil(b"\r\n\r\n")
                line, fields = _headers(head)
                method, target, _version = line.split(" ", 2)
                body = await reader.readexactly(int(fields.get("content-length", "0")))
                kind = _kind(method, target)
                self.requests.append((kind, target))
                if kind in self._hold:
                    self.held += 1
                    try:
                        await self._released.wait()
                    finally:
                        self.held -= 1
                if self.blocked:  # cut while the request was held
                    _reset(writer)
                    return
                if self._answers[kind]:
                    writer.write(self._answers[kind].popleft().encode())
                    await writer.drain()
                    writer.close()
                    return
                if conn.up_writer is None:
                    conn.up_reader, conn.up_writer = await asyncio.open_connection(
                        "127.0.0.1",
                        self.upstream_port,
                        ssl=self.upstream_ssl,
                        server_hostname="127.0.0.1" if self.upstream_ssl else None,
                    )
                    responder = asyncio.create_task(self._respond(conn))
                conn.responses.put_nowait(kind)
                conn.up_writer.write(head + body)
                await conn.up_writer.drain()
        except _GONE:
            pass
        finally:
            if responder is not None:
                responder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await responder
            conn.close()
            self._conns.discard(conn)
            self._tasks.discard(task)

    async def _respond(self, conn: _Conn) -> None:
        """Relay responses, one per forwarded request; the end of upstream ends the client."""
        try:
            while True:
                kind = await conn.responses.get()
                if not await self._relay(conn, kind):
                    break
        except _GONE:
            pass
        conn.close()

    async def _relay(self, conn: _Conn, kind: Kind) -> bool:
        """One response; False when the connection must end after it."""
        assert conn.up_reader is not None
        up, client = conn.up_reader, conn.writer
        head = await up.readuntil(b"\r\n\r\n")
        status_line, fields = _headers(head)
        client.write(head)
        await client.drain()
        status = int(status_line.split(" ", 2)[1])
        keep = fields.get("connection", "").lower() != "close"
        if status in (204, 304) or 100 <= status < 200:
            return keep
        if fields.get("transfer-encoding", "").lower() == "chunked":
            conn.streaming = kind == "watch" and status == 200
            try:
                return await self._relay_chunks(conn, kind) and keep
            finally:
                conn.streaming = conn.at_boundary = False
        if "content-length" in fields:
            left = int(fields["content-length"])
            while left:
                data = await up.read(min(left, 65536))
                if not data:
                    raise EOFError("upstream closed mid-body")
                client.write(data)
                await client.drain()
                left -= len(data)
            return keep
        while data := await up.read(65536):  # no framing: the body ends with the connection
            client.write(data)
            await client.drain()
        return False

    async def _relay_chunks(self, conn: _Conn, kind: Kind) -> bool:
        assert conn.up_reader is not None
        up, client = conn.up_reader, conn.writer
        while True:
            conn.at_boundary = True
            size_line = await up.readuntil(b"\r\n")
            conn.at_boundary = False
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await up.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers: the API server sends none
                if conn.stalled:
                    await asyncio.Event().wait()  # until the client gives up
                client.write(b"0\r\n\r\n")
                await client.drain()
                return True
            data = await up.readexactly(size)
            await up.readexactly(2)
            if conn.stalled:
                await asyncio.Event().wait()  # held for ever: the connection stays open
            event = _EVENT.search(data) if kind == "watch" and self._reset_armed else None
            if event is not None:
                self._reset_armed = False
                end = data.find(b"\n", event.start())
                end = len(data) if end < 0 else end
                cut = event.start() + max(1, (end - event.start()) // 2)
                client.write(b"%x\r\n" % size + data[:cut])
                await client.drain()
                await asyncio.sleep(0.05)  # let the half event reach the client, then reset
                self.resets += 1
                _reset(client)
                _reset(conn.up_writer)
                return False
            client.write(b"%x\r\n" % size + data + b"\r\n")
            await client.drain()
