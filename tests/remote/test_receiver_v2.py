"""The receiver takes remote write 2.0 as well: chosen by Content-Type, symbols resolved, the
same caps as 1.0, and the written-count headers a 2.0 sender reads (none for 1.0)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.remote import prompb2
from collector.remote.codec import DecodedSeries, compress, encode_labels, encode_request
from collector.remote.codec2 import CONTENT_TYPE_V2, V2Transcoder
from collector.remote.receiver import ReceiverLimits, make_receiver_app

T0 = 1_700_000_000_000
UP = (("__name__", "up"), ("job", "j"))
WRITTEN = (
    "X-Prometheus-Remote-Write-Samples-Written",
    "X-Prometheus-Remote-Write-Histograms-Written",
    "X-Prometheus-Remote-Write-Exemplars-Written",
)

Got = list[list[DecodedSeries]]


@contextlib.asynccontextmanager
async def _serving(
    limits: ReceiverLimits | None = None,
) -> AsyncIterator[tuple[str, CollectorRegistry, Got]]:
    got: Got = []
    registry = CollectorRegistry()
    runner = web.AppRunner(make_receiver_app(got.append, limits=limits, registry=registry))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/v1/write", registry, got
    finally:
        await runner.cleanup()


async def _post(
    url: str, body: bytes, content_type: str = CONTENT_TYPE_V2
) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Encoding": "snappy", "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(body), headers=headers) as r,
    ):
        return r.status, await r.text(), {k: v for k, v in r.headers.items() if k in WRITTEN}


def _v2(series: Sequence[tuple[tuple[str, str], ...]], value: float = 1.0) -> bytes:
    v1 = encode_request(
        [encode_labels(s) for s in series], [value] * len(series), [T0] * len(series)
    )
    return V2Transcoder().transcode(compress(v1))[0]


def _written(samples: int) -> dict[str, str]:
    return dict(zip(WRITTEN, (str(samples), "0", "0"), strict=True))


def _rejected(registry: CollectorRegistry, reason: str) -> float:
    got = registry.get_sample_value(
        "collector_remote_write_receiver_rejected_requests_total", {"reason": reason}
    )
    return 0.0 if got is None else got


@pytest.mark.parametrize(
    "content_type",
    [
        CONTENT_TYPE_V2,
        "application/x-protobuf; proto=io.prometheus.write.v2.Request",
        'application/x-protobuf;proto="io.prometheus.write.v2.Request"',
    ],
)
async def test_v2_is_decoded_and_answered_with_written_counts(content_type: str) -> None:
    """A 2.0 request: 204, its series reach the callback, and the three written headers."""
    series = [UP, (("__name__", "m"), ("a", "x"), ("job", "j"))]
    async with _serving() as (url, _, got):
        assert await _post(url, _v2(series), content_type) == (204, "", _written(2))
    assert got == [[(UP, [(1.0, T0)]), (series[1], [(1.0, T0)])]]


async def test_v1_gets_no_written_headers() -> None:
    """A 1.0 request is answered as before: 204 without the 2.0 headers."""
    body = compress(encode_request([encode_labels(UP)], [1.0], [T0]))
    for content_type in (
        "application/x-protobuf",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    ):
        async with _serving() as (url, _, got):
            assert await _post(url, body, content_type) == (204, "", {})
        assert got == [[(UP, [(1.0, T0)])]]


async def test_unknown_proto_is_415() -> None:
    """A ``proto`` that is neither message gets 415 (a 2.0 sender may then try another)."""
    async with _serving() as (url, registry, got):
        status, text, _ = await _post(url, _v2([UP]), "application/x-protobuf;proto=foo.Bar")
        assert status == 415
        assert "foo.Bar" in text
        assert _rejected(registry, "unsupported_protocol") == 1
    assert got == []


async def test_v2_caps_are_those_of_1_0() -> None:
    """Over a series or label cap: 400 naming the flag, nothing written, written headers 0."""
    limits = ReceiverLimits(max_labels_per_series=2, max_series_per_request=2)
    async with _serving(limits) as (url, registry, got):
        status, text, headers = await _post(url, _v2([(("__name__", "m"), ("a", "1"), ("b", "2"))]))
        assert (status, headers) == (400, _written(0))
        assert "--web.remote-write-receiver.max-labels-per-series" in text
        status, text, _ = await _post(url, _v2([UP, UP, UP]))
        assert status == 400
        assert "--web.remote-write-receiver.max-series-per-request" in text
        assert _rejected(registry, "too_many_labels") == 1
        assert _rejected(registry, "too_many_series") == 1
        assert got == []
        assert (await _post(url, _v2([UP, UP])))[0] == 204


def _message(request: Any) -> bytes:
    raw: bytes = request.SerializeToString()
    return compress(raw)


async def test_bad_refs_and_symbols_are_400() -> None:
    """A ref past the symbols, an odd ref list or a first symbol that is not "": 400."""
    out_of_range = prompb2.Request(symbols=["", "__name__", "up"])
    out_of_range.timeseries.add(labels_refs=[1, 7]).samples.add(value=1.0, timestamp=T0)
    odd = prompb2.Request(symbols=["", "__name__", "up"])
    odd.timeseries.add(labels_refs=[1, 2, 1]).samples.add(value=1.0, timestamp=T0)
    first = prompb2.Request(symbols=["x", "__name__", "up"])
    first.timeseries.add(labels_refs=[1, 2]).samples.add(value=1.0, timestamp=T0)
    async with _serving() as (url, registry, got):
        for message, words in (
            (out_of_range, "out of range"),
            (odd, "odd number"),
            (first, "empty string"),
        ):
            status, text, _ = await _post(url, _message(message))
            assert status == 400
            assert words in text
        assert _rejected(registry, "invalid_protobuf") == 3
        status, _, _ = await _post(url, compress(b"\x2a\xff\x01"))
        assert status == 400
    assert got == []


async def test_histograms_and_exemplars_are_a_partial_write() -> None:
    """Float samples are written; native histograms and exemplars cannot be forwarded: 400
    saying so, with Samples-Written counting what was written (a partial write)."""
    message = prompb2.Request(symbols=["", "__name__", "up", "h", "trace_id", "abc"])
    floats = message.timeseries.add(labels_refs=[1, 2])
    floats.samples.add(value=1.0, timestamp=T0)
    floats.exemplars.add(labels_refs=[4, 5], value=1.0, timestamp=T0)
    hist = message.timeseries.add(labels_refs=[1, 3])
    hist.histograms.add(count_int=3, sum=1.5, schema=0, timestamp=T0)
    async with _serving() as (url, _, got):
        status, text, headers = await _post(url, _message(message))
    assert (status, headers) == (400, _written(1))
    assert "1 native histogram samples and 1 exemplars were not written" in text
    assert got == [[((("__name__", "up"),), [(1.0, T0)]), ((("__name__", "h"),), [])]]
