"""The HTTP scrapers against a real aiohttp server on 127.0.0.1 (spec §4.2, §4.3).

Every case runs twice: through `HttpScraper` (aiohttp) and through `FastHttpScraper` (what
`http_scraper` gives a plain-HTTP target), which must behave the same to the byte.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from collector.config import Authorization, BasicAuth, HTTPClientConfig, ScrapeConfig
from collector.errors import ScrapeBodyTooLarge, ScrapeError, ScrapeHTTPError, ScrapeTimeout
from collector.scrape.fasthttp import FastHttpScraper, http_scraper
from collector.scrape.scraper import USER_AGENT, HttpScraper, Scraper, new_session


class Server:
    """One route whose answer each test sets; records request headers."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        """Which scraper the test's requests go through: ``aiohttp`` or ``fast``."""
        self.scrapers: list[FastHttpScraper] = []
        self.response: Callable[[], web.StreamResponse] | None = None
        self.hang = False
        self.release = asyncio.Event()
        self.headers: list[dict[str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record and answer."""
        self.headers.append(dict(request.headers))
        if self.hang:
            await self.release.wait()
        assert self.response is not None
        return self.response()


@pytest.fixture(params=["aiohttp", "fast"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """An aiohttp server on an ephemeral loopback port, once per scraper kind."""
    srv = Server(request.param)
    app = web.Application()
    app.router.add_get("/metrics", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}/metrics"
    yield srv
    srv.release.set()
    for scraper in srv.scrapers:
        scraper.close()
    await runner.cleanup()


def make(
    srv: Server, session: aiohttp.ClientSession, url: str, timeout: float, cfg: ScrapeConfig
) -> Scraper:
    """The scraper of this run (``srv.kind``); the server's teardown closes it."""
    if srv.kind == "aiohttp":
        return HttpScraper(session=session, url=url, timeout=timeout, cfg=cfg)
    scraper = http_scraper(HttpScraper(session=session, url=url, timeout=timeout, cfg=cfg))
    assert isinstance(scraper, FastHttpScraper)
    srv.scrapers.append(scraper)
    return scraper


async def fetch(srv: Server, cfg: ScrapeConfig | None = None, deadline: float = 5.0) -> bytes:
    """One scrape through a fresh session."""
    cfg = cfg or ScrapeConfig(job_name="j")
    async with new_session() as session:
        scraper = make(srv, session, srv.url, deadline, cfg)
        response = await scraper.scrape()
    return response.body


async def test_headers_sent(server: Server) -> None:
    """Accept, Accept-Encoding, User-Agent and the timeout header are exact."""
    server.response = lambda: web.Response(body=b"a 1\n", content_type="text/plain")
    assert await fetch(server, deadline=0.5) == b"a 1\n"
    headers = server.headers[0]
    assert headers["Accept"].startswith("application/openmetrics-text;version=1.0.0;")
    assert headers["Accept-Encoding"] == "gzip"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["X-Prometheus-Scrape-Timeout-Seconds"] == "0.5"
    await fetch(server, ScrapeConfig(job_name="j", enable_compression=False))
    assert server.headers[1]["Accept-Encoding"] == "identity"


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "Internal Server Error"), (204, "No Content")]
)
async def test_non_200_fails(server: Server, status: int, reason: str) -> None:
    """Any status but 200 (204 included) is an error with Prometheus's wording."""
    server.response = lambda: web.Response(status=status)
    with pytest.raises(ScrapeHTTPError) as info:
        await fetch(server)
    assert str(info.value) == f"server returned HTTP status {status} {reason}"


async def test_hang_times_out(server: Server) -> None:
    """A target that never answers fails after the scrape timeout."""
    server.hang = True
    with pytest.raises(ScrapeTimeout) as info:
        await fetch(server, deadline=0.02)
    assert str(info.value) == f'Get "{server.url}": context deadline exceeded'


async def test_gzip_is_decompressed(server: Server) -> None:
    """A gzip body is returned uncompressed."""
    server.response = lambda: web.Response(
        body=gzip.compress(b"a 1\n" * 100),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    assert await fetch(server) == b"a 1\n" * 100


async def test_body_size_limit_counts_uncompressed_bytes(server: Server) -> None:
    """A body of exactly body_size_limit bytes fails, compressed or not (§11 #18)."""
    cfg = ScrapeConfig(job_name="j", body_size_limit=100)
    server.response = lambda: web.Response(body=b"x" * 99, content_type="text/plain")
    assert len(await fetch(server, cfg)) == 99
    server.response = lambda: web.Response(body=b"x" * 100, content_type="text/plain")
    with pytest.raises(ScrapeBodyTooLarge):
        await fetch(server, cfg)
    server.response = lambda: web.Response(
        body=gzip.compress(b"x" * 100), headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(ScrapeBodyTooLarge) as info:
        await fetch(server, cfg)
    assert str(info.value) == "body size limit exceeded"


async def test_bad_gzip_fails(server: Server) -> None:
    """A corrupt gzip body is a scrape error."""
    server.response = lambda: web.Response(body=b"not gzip", headers={"Content-Encoding": "gzip"})
    with pytest.raises(ScrapeError):
        await fetch(server)


async def test_content_type_and_empty_body_pass_through(server: Server) -> None:
    """The raw Content-Type comes back; an empty 200 body is a successful fetch."""
    server.response = lambda: web.Response(body=b"", headers={"Content-Type": "application/json"})
    async with new_session() as session:
        scraper = make(server, session, server.url, 5, ScrapeConfig(job_name="j"))
        response = await scraper.scrape()
    assert response.body == b""
    assert response.content_type == "application/json"


async def test_missing_content_type_is_empty(server: Server) -> None:
    """A response without Content-Type reports ''."""

    def answer() -> web.StreamResponse:
        response = web.Response(body=b"a 1\n")
        response.headers.popall("Content-Type", None)
        return response

    server.response = answer
    async with new_session() as session:
        scraper = make(server, session, server.url, 5, ScrapeConfig(job_name="j"))
        got = await scraper.scrape()
    assert got.content_type in ("", "application/octet-stream")


async def test_auth_credentials_file_is_reread(server: Server, tmp_path: Path) -> None:
    """Bearer credentials come from the file at every scrape; basic auth is encoded."""
    token = tmp_path / "token"
    token.write_text("one\n")
    cfg = ScrapeConfig(
        job_name="j",
        http_client=HTTPClientConfig(authorization=Authorization(credentials_file=str(token))),
    )
    server.response = lambda: web.Response(body=b"a 1\n", content_type="text/plain")
    async with new_session() as session:
        scraper = make(server, session, server.url, 5, cfg)
        await scraper.scrape()
        token.write_text("two")
        await scraper.scrape()
    assert [h["Authorization"] for h in server.headers] == ["Bearer one", "Bearer two"]
    basic = ScrapeConfig(
        job_name="j", http_client=HTTPClientConfig(basic_auth=BasicAuth(username="u", password="p"))
    )
    await fetch(server, basic)
    assert server.headers[-1]["Authorization"] == "Basic dTpw"


@pytest.mark.parametrize("kind", ["aiohttp", "fast"])
async def test_connection_refused_is_scrape_error(kind: str) -> None:
    """A transport error becomes a ScrapeError naming the URL."""
    srv = Server(kind)
    srv.url = "http://127.0.0.1:1/metrics"
    with pytest.raises(ScrapeError) as info:
        await fetch(srv)
    assert str(info.value).startswith('Get "http://127.0.0.1:1/metrics": ')
    if kind == "fast":  # Go's net/http wording, as Prometheus shows it
        assert str(info.value).endswith(": dial tcp 127.0.0.1:1: connect: connection refused")
