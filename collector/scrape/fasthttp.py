"""`FastHttpScraper`: the plain-HTTP GET of an ordinary target, on a connection of its own.

Place in the pipeline: the `Scraper` the scrape pool gives a target whose URL is ``http://``
with no proxy and no credentials in the URL (`http_scraper` decides; every other target gets
`HttpScraper`, aiohttp). Why: on W1 (200 targets each scraped every second) aiohttp's
per-request machinery (request and response objects, header multidicts, connector, payload
writers) was a fifth of the agent's CPU, more than the parse. A scrape target answers one GET
at a time, so one kept-alive connection per target, a request encoded once, and a response read
straight from the protocol's buffer is all a scrape needs.

The same contract as `HttpScraper`, to the byte (``tests/scrape/test_scraper_http.py`` runs
every case through both): the headers sent, one deadline over connect + headers + body, status
exactly 200, ``body_size_limit`` on the uncompressed size, gzip undone by `finish_body`, and
the same errors with Prometheus's wording where Go's client has one (``dial tcp H:P: connect:
connection refused``, ``unexpected EOF``). The response is HTTP/1.1 with ``Content-Length``,
``chunked``, or a body closed by the server (HTTP/1.0 too).

What it hands to `HttpScraper` instead, for good (the target's scraper switches once): a
redirect when ``follow_redirects`` is on, a 1xx, a transfer coding other than chunked, and a
body above the streaming threshold (`collector.scrape.stream` streams it over aiohttp's
response; the first such body is requested again, within the same deadline). An idle
connection the server closed is reopened once, when a request on it got no byte back (as every
HTTP client does: the server may close a kept-alive connection at any time).

Prometheus counterpart: Go's ``net/http`` transport under ``targetScraper.scrape``.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import cast
from urllib.parse import quote, urlsplit

from collector.errors import ScrapeBodyTooLarge, ScrapeError, ScrapeHTTPError, ScrapeTimeout
from collector.scrape.scraper import HttpScraper, Scraper, ScrapeResponse, finish_body

__all__ = ["IDLE_TIMEOUT", "FastHttpScraper", "http_scraper"]

_MAX_HEAD = 64 << 10
"""Most bytes of status line and headers read before the response is refused (Go: 1 MB by
default; a /metrics response's head is a few hundred bytes)."""

_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
"""A chunk size as Go's ``parseHexUint`` takes it: hex digits only (no sign, ``0x`` or ``_``,
which Python's ``int(s, 16)`` would take), at most 16 of them."""

IDLE_TIMEOUT = 15.0
"""Seconds a kept-alive connection may stay idle: aiohttp's ``keepalive_timeout``, which this
client replaces, so the sockets held open are still only those of targets scraped at least
every 15 s (a target scraped less often connects anew each time, as before). Go's transport
keeps idle connections for 90 s, Prometheus's for 5 min, but Go also raises the soft open-files
limit to the hard one at start, and Python keeps the soft one it is given (often 1,024)."""

_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
"""Kept as they are in a request line's path (RFC 3986 ``pchar`` and ``/``; ``%`` keeps an
escape already made)."""

_UNSAFE = re.compile(r"[\r\n\0]")
"""A header value that would split the request: left to aiohttp, which refuses it."""


class _Slow(Exception):
    """The response needs `HttpScraper` (redirect, huge body, unusual framing)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection: bytes in a buffer, one waiter at a time."""

    __slots__ = ("_waiter", "buffer", "closed", "error", "transport")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport's.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> bool:
        """Wait for more bytes; False once the peer closed (the buffer may still hold some)."""
        if self.closed:
            return False
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        return True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class FastHttpScraper:
    """`Scraper` for a plain ``http://`` target: one connection, one request encoded once."""

    __slots__ = ("_conn", "_host", "_idle", "_port", "_request", "_slow", "_threshold", "url")

    def __init__(self, slow: HttpScraper) -> None:
        """``slow`` is the target's `HttpScraper`: its headers and streaming threshold are
        used here, and it takes the responses this one hands over."""
        self._slow = slow
        self._threshold = slow.stream_threshold
        self.url = slow.url
        parts = urlsplit(slow.url)
        # The host as aiohttp would send it (IDNA through yarl), the port only when given.
        url = slow.parsed_url
        self._host = url.raw_host or ""
        self._port = url.port or 80
        host = f"[{self._host}]" if ":" in self._host else self._host
        if url.explicit_port is not None:
            host += f":{url.explicit_port}"
        # Path and query as written (a target's URL is built escaped: `Target.url`), with
        # what may not appear in a request line escaped (a space, non-ASCII, controls).
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
        self._request: bytes | None = _request_prefix(path, host, slow)
        """The request line and static headers; None once the target is aiohttp's for good."""
        self._conn: _Connection | None = None
        self._idle: asyncio.TimerHandle | None = None
        """Closes the connection once it has been idle for `IDLE_TIMEOUT`."""

    async def scrape(self) -> ScrapeResponse:
        """GET the target within one deadline; the body is returned uncompressed."""
        slow = self._slow
        self._cancel_idle()
        if self._request is None:
            return await slow.scrape()
        try:
            request = self._request + _auth_line(slow) + b"\r\n"
        except OSError as exc:
            raise ScrapeError(f"unable to read credentials: {exc}") from exc
        except _Slow:
            return await slow.scrape()
        try:
            async with asyncio.timeout(slow.timeout):
                try:
                    response = await self._exchange(request, slow)
                    if self._conn is not None:
                        loop = asyncio.get_running_loop()
                        self._idle = loop.call_later(IDLE_TIMEOUT, self._drop)
                    return response
                except _Slow:
                    self._drop()
                    self._request = None  # this target is aiohttp's from now on
                    return await slow.scrape()
                except BaseException:
                    self._drop()  # unknown state (timeout, cancel, bad response): start afresh
                    raise
        except TimeoutError as exc:
            raise ScrapeTimeout(f'Get "{self.url}": context deadline exceeded') from exc

    def close(self) -> None:
        """Close the kept-alive connection (the pool calls it when the target goes)."""
        self._drop()

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _drop(self) -> None:
        self._cancel_idle()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self._host, self._port)
        except socket.gaierror as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ScrapeError(f'Get "{self.url}": dial tcp: lookup {self._host}: {reason}') from exc
        except OSError as exc:
            # asyncio words a refusal "Connect call failed (...)": the errno says it as Go does.
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ScrapeError(
                f'Get "{self.url}": dial tcp {self._host}:{self._port}: connect: {reason}'
            ) from exc
        return conn

    async def _exchange(self, request: bytes, slow: HttpScraper) -> ScrapeResponse:
        conn = self._conn
        reused = conn is not None and not conn.closed
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
        assert conn.transport is not None
        conn.transport.write(request)
        head_end = await _read_head(conn)
        if head_end < 0 and reused and not conn.buffer:
            # The server closed the idle connection before our request reached it.
            conn.close()
            conn = self._conn = await self._connect()
            assert conn.transport is not None
            conn.transport.write(request)
            head_end = await _read_head(conn)
        if head_end < 0:
            raise ScrapeError(f'Get "{self.url}": {_closed_reason(conn)}')
        status, reason, headers, keep_alive = _parse_head(conn.buffer, head_end, self.url)
        del conn.buffer[: head_end + 4]
        if status != 200:
            if status < 200 or (300 <= status < 400 and slow.follows_redirects):
                raise _Slow
            raise ScrapeHTTPError(status, reason)  # the connection is dropped: body unread
        content_type = headers.get("content-type", "")
        gzipped = headers.get("content-encoding", "").lower() == "gzip"
        limit = 0 if gzipped else slow.body_limit
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.lower() != "chunked":
                raise _Slow
            raw = await self._read_chunked(conn, limit)
        elif (length := headers.get("content-length")) is not None:
            raw = await self._read_length(conn, _content_length(length, self.url), limit)
        else:
            keep_alive = False
            raw = await self._read_to_close(conn, limit)
        if not keep_alive or conn.buffer:  # bytes after the body: not ours to guess at
            self._drop()
        return finish_body(
            raw,
            gzipped=gzipped,
            content_type=content_type,
            limit=slow.body_limit,
            threshold=self._threshold,
            url=self.url,
        )

    async def _read_length(self, conn: _Connection, length: int, limit: int) -> bytes:
        if length > self._threshold:
            raise _Slow
        if 0 < limit <= length:
            raise ScrapeBodyTooLarge()
        buffer = conn.buffer
        while len(buffer) < length:
            if not await conn.more() and len(buffer) < length:
                raise ScrapeError(f'Get "{self.url}": unexpected EOF')
        if len(buffer) == length:  # the usual case: one copy, and the buffer is freed
            body = bytes(buffer)
            buffer.clear()
        else:
            body = bytes(buffer[:length])
            del buffer[:length]
        return body

    async def _read_to_close(self, conn: _Connection, limit: int) -> bytes:
        buffer = conn.buffer
        while True:
            if 0 < limit <= len(buffer):
                raise ScrapeBodyTooLarge()
            if len(buffer) > self._threshold:
                raise _Slow
            if not await conn.more():
                break
        if conn.error is not None:
            raise ScrapeError(f'Get "{self.url}": {_closed_reason(conn)}')
        body = bytes(buffer)
        buffer.clear()
        return body

    async def _read_chunked(self, conn: _Connection, limit: int) -> bytes:
        buffer = conn.buffer
        chunks: list[bytes] = []
        size = 0
        pos = 0
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                if len(buffer) - pos > 1024:  # also bounds the search made again per piece
                    raise ScrapeError(f'Get "{self.url}": malformed chunked encoding')
                await self._need(conn)
                continue
            size_text = bytes(buffer[pos:line_end]).split(b";", 1)[0].strip()
            if _CHUNK_SIZE.fullmatch(size_text) is None:
                raise ScrapeError(f'Get "{self.url}": malformed chunked encoding')
            chunk_size = int(size_text, 16)
            if chunk_size == 0:
                # Trailers (ignored) up to the empty line.
                start = line_end
                while (end := buffer.find(b"\r\n\r\n", start)) < 0:
                    if len(buffer) - line_end > _MAX_HEAD:
                        raise ScrapeError(f'Get "{self.url}": malformed chunked encoding')
                    start = max(line_end, len(buffer) - 3)
                    await self._need(conn)
                del buffer[: end + 4]
                return b"".join(chunks)
            size += chunk_size
            if 0 < limit <= size:
                raise ScrapeBodyTooLarge()
            if size > self._threshold:
                raise _Slow
            start = line_end + 2
            while len(buffer) < start + chunk_size + 2:
                await self._need(conn)
            if buffer[start + chunk_size : start + chunk_size + 2] != b"\r\n":
                raise ScrapeError(f'Get "{self.url}": malformed chunked encoding')
            chunks.append(bytes(buffer[start : start + chunk_size]))
            pos = start + chunk_size + 2
            if pos > 1 << 16:  # keep the buffer short: consumed chunks leave it
                del buffer[:pos]
                pos = 0

    async def _need(self, conn: _Connection) -> None:
        if not await conn.more():
            raise ScrapeError(f'Get "{self.url}": unexpected EOF')


def http_scraper(slow: HttpScraper) -> Scraper:
    """The scraper for an HTTP(S) target: `FastHttpScraper` where it applies, else ``slow``
    (the target's aiohttp scraper, which the fast one hands what it does not read)."""
    url = slow.parsed_url
    if (
        url.scheme != "http"
        or url.user is not None
        or slow.has_proxy
        or not url.raw_host
        or any(_UNSAFE.search(f"{name}{value}") for name, value in slow.headers.items())
    ):
        return slow
    return FastHttpScraper(slow)


def _request_prefix(path: str, host: str, slow: HttpScraper) -> bytes:
    """The request line and the static headers (auth, re-read per scrape, is added after)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in slow.headers.items())
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _auth_line(slow: HttpScraper) -> bytes:
    """``Authorization: ...\\r\\n`` when the target has credentials (files re-read), else b""."""
    value = slow.authorization()
    if value is None:
        return b""
    if _UNSAFE.search(value):
        raise _Slow
    return f"Authorization: {value}\r\n".encode()


async def _read_head(conn: _Connection) -> int:
    """Where the head ends in the buffer (the index of ``\\r\\n\\r\\n``); -1 when the peer
    closed first."""
    buffer = conn.buffer
    start = 0
    while (end := buffer.find(b"\r\n\r\n", start)) < 0:
        if len(buffer) > _MAX_HEAD:
            raise ScrapeError("server response headers exceeded 65536 bytes; aborted")
        start = max(0, len(buffer) - 3)  # a head trickled in byte by byte is not searched anew
        if not await conn.more():
            return -1
    return end


def _parse_head(buffer: bytearray, end: int, url: str) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (lower-cased names, the first of repeated ones) and whether
    the connection may be kept."""
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if (
        not version.startswith("HTTP/1.")
        or len(code) != 3
        or not code.isascii()
        or not code.isdigit()
    ):
        raise ScrapeError(f'Get "{url}": malformed HTTP response {lines[0][:64]!r}')
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ScrapeError(f'Get "{url}": malformed HTTP response header {line[:64]!r}')
        headers.setdefault(name.strip().lower(), value.strip())
    connection = headers.get("connection", "").lower()
    keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
    return int(code), reason.strip(), headers, keep_alive


def _content_length(text: str, url: str) -> int:
    # ASCII digits only ("²" is a digit to str.isdigit), at most 18 of them (Go: uint63).
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ScrapeError(f'Get "{url}": bad Content-Length {text[:32]!r}')
    return int(text)


def _closed_reason(conn: _Connection) -> str:
    if conn.error is not None:
        error = conn.error
        if isinstance(error, OSError) and error.strerror:
            return f"read: {error.strerror.lower()}"
        return str(error) or type(error).__name__
    return "EOF"
