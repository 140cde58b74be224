"""The built-in remote-write receiver: 204 on a good request, clear 4xx on a bad one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from collector.remote.codec import DecodedSeries, compress, encode_labels, encode_request
from collector.remote.receiver import make_receiver_app


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[list[DecodedSeries]]]]:
    """A receiver app on 127.0.0.1 and the list its callback appends to."""
    got: list[list[DecodedSeries]] = []
    runner = web.AppRunner(make_receiver_app(got.append))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/api/v1/write", got
    await runner.cleanup()


async def _post(url: str, body: bytes, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Encoding": "snappy", **headers}) as r,
    ):
        return r.status, await r.text()


async def test_valid_request_is_decoded(endpoint: tuple[str, list[list[DecodedSeries]]]) -> None:
    """A snappy WriteRequest gets 204 and its series reach the callback."""
    url, got = endpoint
    labels = (("__name__", "up"), ("job", "j"))
    body = compress(encode_request([encode_labels(labels)], [1.0], [1_700_000_000_000]))
    assert await _post(url, body) == (204, "")
    assert got == [[(labels, [(1.0, 1_700_000_000_000)])]]


async def test_bad_snappy_is_400(endpoint: tuple[str, list[list[DecodedSeries]]]) -> None:
    """A body that is not a snappy block gets 400 naming snappy."""
    url, got = endpoint
    status, text = await _post(url, b"\xff\xff\xff\xff\xff")
    assert status == 400
    assert "snappy" in text
    assert got == []


async def test_bad_protobuf_is_400(endpoint: tuple[str, list[list[DecodedSeries]]]) -> None:
    """Valid snappy around invalid protobuf gets 400 naming WriteRequest."""
    url, _ = endpoint
    status, text = await _post(url, compress(b"\x0a\xff\x01abc"))
    assert status == 400
    assert "WriteRequest" in text


async def test_other_encoding_is_415(endpoint: tuple[str, list[list[DecodedSeries]]]) -> None:
    """A Content-Encoding other than snappy gets 415."""
    url, _ = endpoint
    status, _ = await _post(url, b"x", **{"Content-Encoding": "gzip"})
    assert status == 415
