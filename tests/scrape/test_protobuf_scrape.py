"""Protobuf scraping end to end in one process: negotiation, parser choice, loop, body limit.

The Accept strings are the ones Prometheus's ``scrape/scrape_test.go`` expects; the bodies are
built by the ``protobuf`` package (`tests.model.client_model`) and served by a real aiohttp
server, fetched by `HttpScraper` and appended by a `ScrapeLoop`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from collector.config import ScrapeConfig, load_config_text
from collector.errors import ScrapeContentTypeError
from collector.scrape.scraper import (
    HttpScraper,
    ScrapeResponse,
    accept_header,
    new_session,
    parser_for,
    scrape_protocols,
)
from collector.scrape.stream import BodyStream
from tests.model import client_model as pb
from tests.scrape.scrapekit import harness

PROTO = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)
PROTO_MEDIA = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)


def body() -> bytes:
    """A counter with an exemplar, a gauge with a timestamp and a classic histogram."""
    c = pb.MetricFamily(name="requests_total", type=pb.COUNTER, help="Requests.")
    m = c.metric.add()
    m.label.add(name="code", value="200")
    m.counter.value = 7
    m.counter.exemplar.value = 0.5
    g = pb.MetricFamily(name="temperature", type=pb.GAUGE)
    gm = g.metric.add()
    gm.gauge.value = 21.5
    gm.timestamp_ms = 1_699_999_970_000
    h = pb.MetricFamily(name="latency_seconds", type=pb.HISTOGRAM, unit="seconds")
    hm = h.metric.add().histogram
    hm.sample_count, hm.sample_sum = 3, 1.25
    hm.bucket.add(upper_bound=0.5, cumulative_count=2)
    return pb.delimited([c, g, h])


def _job(extra: str) -> ScrapeConfig:
    config = load_config_text(f"scrape_configs:\n  - job_name: j\n{extra}", base_dir="/cfg", env={})
    return config.scrape_configs[0]


def test_accept_header_as_prometheus_builds_it() -> None:
    """PrometheusProto in scrape_protocols: Prometheus's weights, its order, its escaping."""
    proto_first = (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"
        "application/openmetrics-text;version=1.0.0;escaping=dots;q=0.5,"
        "application/openmetrics-text;version=0.0.1;q=0.4,"
        "text/plain;version=1.0.0;escaping=dots;q=0.3,"
        "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
    )
    job = _job(
        "    scrape_protocols: [PrometheusProto, OpenMetricsText1.0.0, OpenMetricsText0.0.1,"
        " PrometheusText1.0.0, PrometheusText0.0.4]\n"
    )
    assert accept_header(scrape_protocols(job), escaping="dots") == proto_first
    only = _job("    scrape_protocols: [PrometheusProto]\n")
    assert accept_header(scrape_protocols(only)) == f"{PROTO_MEDIA};q=0.6,*/*;q=0.5"
    inherited = load_config_text(
        "global: {scrape_protocols: [PrometheusText0.0.4, PrometheusProto]}\n"
        "scrape_configs: [{job_name: j}]\n",
        base_dir="/cfg",
        env={},
    ).scrape_configs[0]
    assert accept_header(scrape_protocols(inherited)) == (
        f"text/plain;version=0.0.4;q=0.6,{PROTO_MEDIA};q=0.5,*/*;q=0.4"
    )


@pytest.mark.parametrize(
    "content_type",
    [
        PROTO,
        "application/vnd.google.protobuf",
        "APPLICATION/VND.GOOGLE.PROTOBUF; proto=io.prometheus.client.MetricFamily",
        "application/vnd.google.protobuf; proto=other.Message; encoding=text",
    ],
)
def test_protobuf_media_type_selects_the_decoder(content_type: str) -> None:
    """Only the media type decides (Prometheus does not check proto= or encoding=)."""
    assert parser_for(content_type, None) == "protobuf"


def test_fallback_protocol_protobuf() -> None:
    """fallback_scrape_protocol PrometheusProto decodes blank, unparsable and unknown types."""
    assert parser_for("", "PrometheusProto") == "protobuf"
    assert parser_for("garbage", "PrometheusProto") == "protobuf"
    assert parser_for("application/json", "PrometheusProto") == "protobuf"
    assert parser_for("text/plain", "PrometheusProto") == "text"
    with pytest.raises(ScrapeContentTypeError):
        parser_for("", None)


async def test_fallback_protocol_protobuf_in_the_loop() -> None:
    """A target with no Content-Type is decoded as protobuf when the job falls back to it."""
    cfg = _job("    fallback_scrape_protocol: PrometheusProto\n")
    h = harness(body(), cfg=cfg, content_type="")
    await h.scrape()
    assert h.appender.value("up") == 1.0
    assert h.appender.value("requests_total") == 7.0


class _Target:
    def __init__(self) -> None:
        self.accept: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.accept.append(request.headers.get("Accept", ""))
        return web.Response(body=body(), headers={"Content-Type": PROTO})


@pytest.fixture
async def target() -> AsyncIterator[_Target]:
    t = _Target()
    app = web.Application()
    app.router.add_get("/metrics", t.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    t.url = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    await web.SockSite(runner, sock).start()
    yield t
    await runner.cleanup()


async def test_protobuf_target_is_scraped(target: _Target) -> None:
    """Over HTTP: the job's Accept header goes out, the protobuf answer is decoded and
    appended with the target's labels, timestamps, le strings and metadata."""
    cfg = _job("    scrape_protocols: [PrometheusProto, PrometheusText0.0.4]\n")
    async with new_session() as session:
        scraper = HttpScraper(session=session, url=target.url, timeout=5.0, cfg=cfg)
        response = await scraper.scrape()
    assert target.accept == [f"{PROTO_MEDIA};q=0.6,text/plain;version=0.0.4;q=0.5,*/*;q=0.4"]
    h = harness(response, cfg=cfg, address="h:1")
    await h.scrape()
    got = {
        tuple(sorted(labels)): (value, ts)
        for labels, value, ts in h.appender.samples()
        if not dict(labels)["__name__"].startswith(("up", "scrape_"))
    }
    now = h.ts_ms()
    common = (("instance", "h:1"), ("job", "j"))

    def key(name: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((("__name__", name), *common, *extra)))

    assert got == {
        key("requests_total", ("code", "200")): (7.0, now),
        key("temperature"): (21.5, 1_699_999_970_000),
        key("latency_seconds_count"): (3.0, now),
        key("latency_seconds_sum"): (1.25, now),
        key("latency_seconds_bucket", ("le", "0.5")): (2.0, now),
        key("latency_seconds_bucket", ("le", "+Inf")): (3.0, now),
    }
    assert h.appender.value("scrape_samples_scraped") == 6.0
    meta = h.loop.cache.metadata
    assert str(meta["latency_seconds"]) == ("Metadata(type='histogram', help='', unit='seconds')")
    await h.scrape()  # steady state: the same keys hit the cache
    assert h.appender.value("scrape_series_added") == 0.0
    assert h.appender.value("requests_total") == 7.0


async def test_malformed_protobuf_fails_the_scrape_saying_where() -> None:
    """A truncated body is up 0 with an error naming the byte offset and the family."""
    data = body()
    h = harness(data[:-3], content_type=PROTO)
    await h.scrape()
    assert h.appender.value("up") == 0.0
    assert h.loop.target.last_error.startswith("protobuf: ")
    assert " at byte " in h.loop.target.last_error


def _stream(data: bytes, *, limit: int) -> ScrapeResponse:
    """A body too large to hold, as the scraper hands it over (`BodyStream` in memory)."""
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    stream = BodyStream(
        response=None, head=chunks, gzipped=False, limit=limit, budget=1.0, url="http://h:1/"
    )
    return ScrapeResponse(body=b"", content_type=PROTO, stream=stream)


async def test_streamed_protobuf_is_read_whole_within_body_size_limit() -> None:
    """Above the streaming threshold a protobuf body is read whole (no streaming decoder),
    and body_size_limit still fails a body of ``limit`` bytes or more."""
    data = body()
    h = harness(_stream(data, limit=len(data) + 1), _stream(data, limit=len(data)))
    await h.scrape()
    assert h.appender.value("up") == 1.0
    assert h.appender.value("requests_total") == 7.0
    await h.scrape()
    assert h.appender.value("up") == 0.0
    assert h.metric("prometheus_target_scrapes_exceeded_body_size_limit_total") == 1.0
