"""`FastHttpScraper` on the wire: connection reuse, framing, and what it hands to aiohttp.

The cases both scrapers share (headers, status, gzip, limits, auth, timeouts) are in
``test_scraper_http.py``; these drive a raw socket server on 127.0.0.1 that answers each
request with canned bytes, so every framing a real target can choose is exercised exactly.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import pytest
import uvloop

from collector.config import HTTPClientConfig, ScrapeConfig
from collector.errors import ScrapeBodyTooLarge, ScrapeError, ScrapeTimeout
from collector.scrape.fasthttp import IDLE_TIMEOUT, FastHttpScraper, http_scraper
from collector.scrape.scraper import USER_AGENT, HttpScraper, new_session


class RawServer:
    """Answers the n-th request with ``answers[n]`` (bytes; ``None``: close without a word),
    then closes the connection when ``close_after`` says so; records every request head."""

    def __init__(self) -> None:
        self.answers: list[bytes | None] = []
        self.close_after: set[int] = set()
        self.requests: list[bytes] = []
        self.connections = 0
        self.hangups = 0
        """Connections the client closed between requests."""
        self.hang = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.hangups += 1
                    return
                n = len(self.requests)
                self.requests.append(head)
                answer = self.answers[n] if n < len(self.answers) else None
                if answer is None:
                    return
                if answer == b"hang":
                    await self.hang.wait()
                    return
                writer.write(answer)
                await writer.drain()
                if n in self.close_after:
                    return
        finally:
            writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    srv = RawServer()
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = server.sockets[0].getsockname()[1]
    yield srv
    srv.hang.set()
    server.close()
    await server.wait_closed()


def ok(body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def chunked(*parts: bytes, trailer: str = "") -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    for part in parts:
        out += f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n"


async def scrapes(
    srv: RawServer, n: int, cfg: ScrapeConfig | None = None, threshold: int = 8 << 20
) -> list[bytes | ScrapeError]:
    """``n`` scrapes by one scraper: each body, or the error it raised."""
    out: list[bytes | ScrapeError] = []
    async with new_session() as session:
        scraper = http_scraper(
            HttpScraper(
                session=session,
                url=srv.url,
                timeout=2.0,
                cfg=cfg or ScrapeConfig(job_name="j"),
                stream_threshold=threshold,
            )
        )
        assert isinstance(scraper, FastHttpScraper)
        try:
            for _ in range(n):
                try:
                    response = await scraper.scrape()
                except ScrapeError as exc:
                    out.append(exc)
                    continue
                if response.stream is not None:
                    chunks = []
                    while chunk := await response.stream.read():
                        chunks.append(chunk)
                    response.stream.close()
                    out.append(b"".join(chunks))
                else:
                    out.append(response.body)
        finally:
            scraper.close()
    return out


async def test_one_connection_and_the_exact_request(raw: RawServer) -> None:
    """Three scrapes share one connection; the request carries the scrape headers."""
    raw.answers = [ok(b"a 1\n"), ok(b"a 2\n"), ok(b"a 3\n")]
    assert await scrapes(raw, 3) == [b"a 1\n", b"a 2\n", b"a 3\n"]
    assert raw.connections == 1
    lines = raw.requests[0].decode().split("\r\n")
    assert lines[0] == "GET /metrics HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{raw.port}"
    assert f"User-Agent: {USER_AGENT}" in lines
    assert "Accept-Encoding: gzip" in lines
    assert "X-Prometheus-Scrape-Timeout-Seconds: 2" in lines
    assert any(line.startswith("Accept: application/openmetrics-text;") for line in lines)


async def test_request_line_keeps_escapes_and_escapes_the_rest(raw: RawServer) -> None:
    """A path and query as the target's URL writes them (``%2F`` stays ``%2F``); a space,
    non-ASCII and a control character, which may not stand in a request line, are escaped
    (UTF-8), as aiohttp escapes them."""
    raw.answers = [ok(b"a 1\n")]
    url = f"http://127.0.0.1:{raw.port}/probe me/ü?target=http%3A%2F%2Fx%2F&q=a b\x7f"
    async with new_session() as session:
        scraper = http_scraper(
            HttpScraper(session=session, url=url, timeout=2.0, cfg=ScrapeConfig(job_name="j"))
        )
        assert isinstance(scraper, FastHttpScraper)
        try:
            assert (await scraper.scrape()).body == b"a 1\n"
        finally:
            scraper.close()
    assert raw.requests[0].split(b"\r\n")[0] == (
        b"GET /probe%20me/%C3%BC?target=http%3A%2F%2Fx%2F&q=a%20b%7F HTTP/1.1"
    )


async def test_idle_connection_closed_by_the_server_is_reopened(raw: RawServer) -> None:
    """A server that closes a kept-alive connection between scrapes costs nothing: the
    request that found it closed goes out again on a new one."""
    raw.answers = [ok(b"a 1\n"), ok(b"a 2\n")]
    raw.close_after = {0}
    assert await scrapes(raw, 2) == [b"a 1\n", b"a 2\n"]
    assert raw.connections == 2


async def test_request_on_a_connection_the_server_just_closed_is_sent_again(
    raw: RawServer,
) -> None:
    """The server hangs up on a kept-alive connection as the request arrives (no byte back):
    the request goes out once more on a new connection."""
    raw.answers = [ok(b"a 1\n"), None, ok(b"a 2\n")]
    assert await scrapes(raw, 2) == [b"a 1\n", b"a 2\n"]
    assert raw.connections == 2
    assert len(raw.requests) == 3


async def test_server_that_drops_a_fresh_request_is_an_error(raw: RawServer) -> None:
    """No answer at all on a new connection is not retried: Go's ``EOF``."""
    raw.answers = [None, ok(b"a 2\n")]
    got = await scrapes(raw, 2)
    assert str(got[0]) == f'Get "{raw.url}": EOF'
    assert got[1] == b"a 2\n"


async def test_connection_close_and_http10_bodies(raw: RawServer) -> None:
    """``Connection: close``, and an HTTP/1.0 body that ends when the server closes."""
    raw.answers = [
        ok(b"a 1\n", "Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\na 2\nb 3\n",
        ok(b"a 3\n"),
    ]
    raw.close_after = {0, 1}
    assert await scrapes(raw, 3) == [b"a 1\n", b"a 2\nb 3\n", b"a 3\n"]
    assert raw.connections == 3


async def test_chunked_body_with_extensions_and_trailers(raw: RawServer) -> None:
    raw.answers = [chunked(b"a 1\n", b"b", b" 2\n", trailer="X-T: 1\r\n"), ok(b"c 3\n")]
    assert await scrapes(raw, 2) == [b"a 1\nb 2\n", b"c 3\n"]
    assert raw.connections == 1


async def test_gzip_chunked(raw: RawServer) -> None:
    data = gzip.compress(b"a 1\n" * 50)
    raw.answers = [
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(data):x}\r\n".encode()
        + data
        + b"\r\n0\r\n\r\n"
    ]
    assert await scrapes(raw, 1) == [b"a 1\n" * 50]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\na 1\n", "unexpected EOF"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\na 1\n\r\n0\r\n\r\n",
            "malformed chunked encoding",
        ),
        # Sizes Python's int(s, 16) would read but Go's parseHexUint refuses.
        *(
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + size
                + b"\r\na 1\n\r\n0\r\n\r\n",
                "malformed chunked encoding",
            )
            for size in (b"0x4", b"+4", b"0_4", b"00000000000000004")
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n", "unexpected EOF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length '-1'"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
            "bad Content-Length '9999999999999999999'",
        ),
        ("HTTP/1.1 2²0 OK\r\n\r\n".encode("latin-1"), "malformed HTTP response 'HTTP/1.1 2²0 OK'"),
        (b"SMTP ready\r\n\r\n", "malformed HTTP response 'SMTP ready'"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed HTTP response header 'no colon'"),
    ],
)
async def test_broken_responses_fail_and_the_next_scrape_starts_afresh(
    raw: RawServer, answer: bytes, message: str
) -> None:
    raw.answers = [answer, ok(b"a 2\n")]
    raw.close_after = {0}
    got = await scrapes(raw, 2)
    assert str(got[0]) == f'Get "{raw.url}": {message}'
    assert got[1] == b"a 2\n"


async def test_body_size_limit_on_a_chunked_body(raw: RawServer) -> None:
    """Exactly ``body_size_limit`` bytes fail, as for a body of known length."""
    cfg = ScrapeConfig(job_name="j", body_size_limit=8)
    raw.answers = [chunked(b"a 1\n", b"b 2\n"), chunked(b"a 1\n", b"b 2")]
    got = await scrapes(raw, 2, cfg)
    assert isinstance(got[0], ScrapeBodyTooLarge)
    assert got[1] == b"a 1\nb 2"


async def test_timeout_mid_body_drops_the_connection(raw: RawServer) -> None:
    raw.answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\na 1\n", ok(b"a 2\n")]
    async with new_session() as session:
        scraper = http_scraper(
            HttpScraper(session=session, url=raw.url, timeout=0.05, cfg=ScrapeConfig(job_name="j"))
        )
        try:
            with pytest.raises(ScrapeTimeout):
                await scraper.scrape()
            assert (await scraper.scrape()).body == b"a 2\n"
        finally:
            assert isinstance(scraper, FastHttpScraper)
            scraper.close()
    assert raw.connections == 2


async def test_redirect_is_handed_to_aiohttp_for_good(raw: RawServer) -> None:
    """A 3xx with ``follow_redirects`` goes to `HttpScraper`, which follows it; the target
    stays with aiohttp afterwards. Without ``follow_redirects`` it is an error."""
    moved = f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{raw.port}/other\r\n"
    raw.answers = [
        (moved + "Content-Length: 0\r\n\r\n").encode(),
        (moved + "Content-Length: 0\r\n\r\n").encode(),  # aiohttp's first request
        ok(b"a 1\n"),  # ... and the one it follows the redirect with
        ok(b"a 2\n"),
    ]
    got = await scrapes(raw, 2)
    assert got == [b"a 1\n", b"a 2\n"]
    assert [r.split(b" ")[1] for r in raw.requests] == [
        b"/metrics",
        b"/metrics",
        b"/other",
        b"/metrics",
    ]
    refused = ScrapeConfig(job_name="j", http_client=HTTPClientConfig(follow_redirects=False))
    raw.requests.clear()
    raw.answers = [(moved + "Content-Length: 0\r\n\r\n").encode()]
    assert str((await scrapes(raw, 1, refused))[0]) == "server returned HTTP status 302 Found"


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_body_above_the_stream_threshold_is_streamed_by_aiohttp(
    raw: RawServer, framing: str
) -> None:
    """A large body is requested again through aiohttp, whose response is streamed."""
    body = b"a 1\n" * 40
    answer = ok(body) if framing == "length" else chunked(body[:80], body[80:])
    raw.answers = [answer, answer, answer]
    assert await scrapes(raw, 2, threshold=100) == [body, body]
    assert len(raw.requests) == 3  # the first large body twice, then aiohttp's only


@pytest.mark.parametrize(
    ("url", "http"),
    [
        ("https://127.0.0.1:1/metrics", HTTPClientConfig()),
        ("http://u:p@127.0.0.1:1/metrics", HTTPClientConfig()),
        ("http://127.0.0.1:1/metrics", HTTPClientConfig(proxy_url="http://127.0.0.1:2")),
        ("http://127.0.0.1:1/metrics", HTTPClientConfig(http_headers=(("X-A", ("a\nb",)),))),
    ],
)
async def test_what_stays_with_aiohttp(url: str, http: HTTPClientConfig) -> None:
    """TLS, credentials in the URL, proxies and header values that would split a request."""
    async with new_session() as session:
        scraper = http_scraper(
            HttpScraper(
                session=session,
                url=url,
                timeout=1.0,
                cfg=ScrapeConfig(job_name="j", http_client=http),
            )
        )
    assert type(scraper) is HttpScraper


@pytest.mark.looptime
async def test_idle_connection_is_closed_after_the_keepalive_timeout(raw: RawServer) -> None:
    """A connection left idle for `IDLE_TIMEOUT` is closed (fake clock): a target scraped
    less often holds no socket between scrapes; one scraped sooner keeps its connection."""
    raw.answers = [ok(b"a 1\n"), ok(b"a 2\n"), ok(b"a 3\n")]
    async with new_session() as session:
        scraper = http_scraper(
            HttpScraper(session=session, url=raw.url, timeout=2.0, cfg=ScrapeConfig(job_name="j"))
        )
        assert isinstance(scraper, FastHttpScraper)
        try:
            assert (await scraper.scrape()).body == b"a 1\n"
            await asyncio.sleep(IDLE_TIMEOUT - 1)
            assert (await scraper.scrape()).body == b"a 2\n"
            assert (raw.connections, raw.hangups) == (1, 0)
            await asyncio.sleep(IDLE_TIMEOUT + 1)
            for _ in range(1000):  # the server's handler sees the hang-up
                if raw.hangups:
                    break
                await asyncio.sleep(0)
            assert raw.hangups == 1
            assert (await scraper.scrape()).body == b"a 3\n"
            assert raw.connections == 2
        finally:
            scraper.close()


async def test_close_hangs_up(raw: RawServer) -> None:
    """`close` (the loop's, when its target goes) closes the kept-alive connection."""
    raw.answers = [ok(b"a 1\n")]
    assert await scrapes(raw, 1) == [b"a 1\n"]
    for _ in range(1000):  # the server's handler sees EOF and returns
        if raw.hangups:
            break
        await asyncio.sleep(0)
    assert raw.hangups == 1


def test_under_uvloop() -> None:
    """The agent runs on uvloop, whose transports are its own classes: the same exchange
    (keep-alive, a reopened connection, chunked framing) on uvloop's loop."""

    async def exchange() -> tuple[list[bytes | ScrapeError], int]:
        srv = RawServer()
        server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
        srv.port = server.sockets[0].getsockname()[1]
        srv.answers = [ok(b"a 1\n"), None, chunked(b"a 2\n", b"b 3\n"), ok(b"a 4\n")]
        try:
            return await scrapes(srv, 3), srv.connections
        finally:
            server.close()
            await server.wait_closed()

    got, connections = uvloop.run(exchange())
    assert got == [b"a 1\n", b"a 2\nb 3\n", b"a 4\n"]
    assert connections == 2
