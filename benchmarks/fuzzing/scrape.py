"""Fuzz target of the scrape's HTTP response reader (`collector.scrape.fasthttp`).

- ``scrape_http``: the input is what a target sends back on its connection (status line,
  headers, body in any framing: Content-Length, chunked, to the close; gzip or not). It is
  fed to `FastHttpScraper`'s exchange in pieces of 1, 7, 64 or 4,096 bytes (chosen by the
  input's length, so a run covers every cut; no more than 4,096 pieces), then the peer
  closes. Documented outcomes: a `ScrapeResponse` whose body is bytes no longer than the
  streaming threshold (or a stream), a `ScrapeError` (a subclass), or the hand-over to
  aiohttp (``_Slow``: redirect, a large body, an unusual transfer coding). Anything else
  escapes as a crash.

No event loop: the fake connection never suspends (its ``more`` hands over the next piece at
once), so a coroutine runs to its end in one ``send`` and an input costs microseconds.

Prometheus counterpart: Go's ``net/http`` response reader (``http.ReadResponse``), fuzzed
upstream.
"""

from __future__ import annotations

import gzip
from collections.abc import Coroutine
from typing import Any

from benchmarks.fuzzing.harness import Target, Violation
from benchmarks.fuzzing.mutate import Mutator
from collector.config import ScrapeConfig
from collector.errors import ScrapeError
from collector.scrape import fasthttp
from collector.scrape.fasthttp import FastHttpScraper
from collector.scrape.scraper import HttpScraper, ScrapeResponse

__all__ = ["SEEDS", "targets"]

_THRESHOLD = 256 << 10
"""The streaming threshold of the scraper under test (bodies past it go to aiohttp)."""

_BODY = b'# TYPE a counter\na_total 1\nb{x="y"} 2.5 1700000000000\n'


def _seeds() -> list[bytes]:
    zipped = gzip.compress(_BODY)
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
    return [
        ok + f"Content-Length: {len(_BODY)}\r\n\r\n".encode() + _BODY,
        ok
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(_BODY[:20]):x};x=1\r\n".encode()
        + _BODY[:20]
        + f"\r\n{len(_BODY[20:]):x}\r\n".encode()
        + _BODY[20:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ok
        + b"Content-Encoding: gzip\r\n"
        + f"Content-Length: {len(zipped)}\r\n\r\n".encode()
        + zipped,
        b"HTTP/1.0 200 OK\r\nContent-Type: application/openmetrics-text\r\n\r\n" + _BODY,
        ok + b"Connection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /other\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]


SEEDS = _seeds()

TOKENS = [
    b"\r\n",
    b"\r\n\r\n",
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"200 OK",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Content-Encoding: gzip",
    b"Connection: close",
    b"Connection: keep-alive",
    b"0\r\n\r\n",
    b"ffffffff\r\n",
    b";ext=",
    b":",
    b"\x1f\x8b\x08\x00",
    b"99999999999999999999",
]

_PIECES = (1, 7, 64, 4096)


class _Feed(fasthttp._Connection):
    """A connection whose peer sends ``data`` in pieces, then closes; never suspends."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data
        self._at = 0
        # At most ~4,096 pieces: a peer trickling a body costs a loop turn per piece, bounded
        # by the scrape timeout; the 1 s limit here measures the reader, not the trickle.
        self._piece = max(_PIECES[len(data) % len(_PIECES)], len(data) >> 12)
        self.transport = _Transport()  # type: ignore[assignment]

    async def more(self) -> bool:
        if self._at >= len(self._data):
            self.closed = True
            return False
        self.data_received(self._data[self._at : self._at + self._piece])
        self._at += self._piece
        return True


class _Transport:
    """What `_Feed`'s exchange writes to: nothing is sent anywhere."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _Scraper(FastHttpScraper):
    """Its connections are `_Feed`s of the current input (a retried request gets it again)."""

    __slots__ = ("data",)
    data: bytes

    async def _connect(self) -> fasthttp._Connection:
        return _Feed(self.data)


def _run(coro: Coroutine[Any, Any, ScrapeResponse]) -> ScrapeResponse:
    """Run a coroutine that never suspends to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: ScrapeResponse = stop.value
        return result
    coro.close()
    raise Violation("the exchange suspended on a connection that never blocks")


def targets(*, max_size: int) -> list[Target]:
    """``scrape_http``."""
    slow = HttpScraper(
        session=None,  # type: ignore[arg-type]  # never used: nothing here reaches aiohttp
        url="http://127.0.0.1:9100/metrics",
        timeout=10.0,
        cfg=ScrapeConfig(job_name="fuzz", body_size_limit=_THRESHOLD // 2),
        stream_threshold=_THRESHOLD,
    )
    scraper = _Scraper(slow)
    request = b"GET /metrics HTTP/1.1\r\n\r\n"

    def check(data: bytes) -> None:
        scraper.data = data
        scraper._conn = None
        try:
            response = _run(scraper._exchange(request, slow))
        except (ScrapeError, fasthttp._Slow):
            return
        finally:
            scraper._conn = None
        if response.stream is not None:
            response.stream.close()
            return
        if type(response.body) is not bytes or len(response.body) > _THRESHOLD:
            raise Violation(f"body of {len(response.body)} bytes ({type(response.body)})")
        if type(response.content_type) is not str:
            raise Violation("content type is not a str")

    mutator = Mutator(SEEDS, tokens=TOKENS, max_size=max_size)
    return [
        Target(
            name="scrape_http",
            summary="FastHttpScraper's response reader: ScrapeError or a body <= threshold",
            check=check,
            mutate=mutator.mutate,
            seeds=SEEDS,
        )
    ]
