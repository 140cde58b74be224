"""The remote-write receiver: 204 on a good request, clear 4xx on a bad one, and caps that
refuse oversized requests before they cost memory (a snappy bomb gets 413 from its header)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from collector import cli
from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.remote.codec import (
    DecodedSeries,
    compress,
    encode_labels,
    encode_request,
    varint,
)
from collector.remote.receiver import (
    REJECT_REASONS,
    ReceiverLimits,
    make_receiver_app,
    snappy_length,
)

T = TypeVar("T")


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
    data = io.BytesIO(body)  # aiohttp warns about big bytes bodies (they block the loop)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Encoding": "snappy", **headers}) as r,
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


# ------------------------------------------------------------------------------ caps


def _bomb(size: int) -> bytes:
    """A snappy block that really expands to ``size`` zero bytes: one 64-byte literal, then
    3-byte copies of 64 bytes each (about 21:1, snappy's best ratio)."""
    return varint(size) + b"\xf0\x3f" + bytes(64) + b"\xfe\x40\x00" * ((size - 64) // 64)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _peak_rss_growth(work: Awaitable[T]) -> tuple[T, int]:
    """Await ``work`` while a thread samples this process's RSS; (result, peak - before)."""
    before = peak = _rss()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.0005):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = await work
    finally:
        stop.set()
        await asyncio.to_thread(sampler.join)
    return result, max(peak, _rss()) - before


@contextlib.asynccontextmanager
async def _capped(
    limits: ReceiverLimits,
) -> AsyncIterator[tuple[str, CollectorRegistry, list[Any]]]:
    """A receiver with ``limits``: its URL, the registry of its counter, what it accepted."""
    registry = CollectorRegistry()
    got: list[list[DecodedSeries]] = []
    app = make_receiver_app(got.append, limits=limits, registry=registry)
    async with TestServer(app) as server:
        yield str(server.make_url("/api/v1/write")), registry, got


def _rejected(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value(
        "collector_remote_write_receiver_rejected_requests_total", {"reason": reason}
    )
    assert value is not None
    return value


def test_snappy_length_reads_the_varint_header() -> None:
    assert snappy_length(compress(b"x" * 300)) == 300
    assert snappy_length(varint(1 << 31)) == 1 << 31
    assert snappy_length(b"\xff\xff") is None  # cut short
    assert snappy_length(b"") is None


async def test_snappy_bomb_is_413_without_a_memory_spike() -> None:
    """A 12 MiB body that would expand to 256 MiB is refused from its length header (413):
    RSS does not jump. The same body under a cap above 256 MiB is decompressed, and the same
    measurement sees the jump (so this test can fail)."""
    bomb = _bomb(256 << 20)
    assert len(bomb) < 32 << 20  # under the body cap: only the header can refuse it
    async with _capped(ReceiverLimits()) as (url, registry, got):
        (status, text), growth = await _peak_rss_growth(_post(url, bomb))
        assert status == 413
        assert "more than 134217728" in text
        assert growth < 64 << 20, f"RSS grew by {growth >> 20} MiB"
        assert _rejected(registry, "decompressed_too_large") == 1
        assert got == []
    async with _capped(ReceiverLimits(max_decompressed_bytes=512 << 20)) as (url, registry, _):
        (status, _), growth = await _peak_rss_growth(_post(url, bomb))
        assert status == 400  # decompressed: 256 MiB of zeros is no WriteRequest
        assert growth > 200 << 20, f"RSS grew by only {growth >> 20} MiB"
        assert _rejected(registry, "invalid_protobuf") == 1


def _empty_samples(count: int) -> bytes:
    """A WriteRequest of one series ``flood`` with ``count`` empty samples (value 0, ts 0):
    2 bytes each on the wire, the densest a request can pack samples."""
    series = encode_labels((("__name__", "flood"),))
    sample = b"\x12\x00"  # TimeSeries.samples (field 2), an empty Sample
    body = series + sample * count
    return b"\x0a" + _varint(len(body)) + body  # WriteRequest.timeseries (field 1)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def test_samples_over_the_cap_are_400_before_they_are_decoded() -> None:
    """Two million empty samples are 4 MiB unpacked and a few hundred KB of snappy: refused
    from the parsed message's counts (400, ``too_many_samples``) before a tuple is made per
    sample (what fuzzing found the receiver would do: ~0.4 s and ~150 bytes a sample). The
    protobuf parse itself keeps ~40 bytes a sample (~80 MiB here), under the bound; the
    tuples would have added ~250 MiB more. At the cap the request is taken."""
    flood = compress(_empty_samples(2_000_000))
    assert len(flood) < 1 << 20
    async with _capped(ReceiverLimits()) as (url, registry, got):
        (status, text), growth = await _peak_rss_growth(_post(url, flood))
        assert status == 400
        assert "request has 2000000 samples, more than 1000000" in text
        assert "--web.remote-write-receiver.max-samples-per-request" in text
        assert growth < 128 << 20, f"RSS grew by {growth >> 20} MiB"
        assert _rejected(registry, "too_many_samples") == 1
        assert got == []
    async with _capped(ReceiverLimits(max_samples_per_request=10)) as (url, registry, got):
        assert (await _post(url, compress(_empty_samples(11))))[0] == 400
        assert await _post(url, compress(_empty_samples(10))) == (204, "")
        assert [len(samples) for _, samples in got[0]] == [10]


async def test_body_over_the_cap_is_413() -> None:
    """Declared (Content-Length) or streamed (chunked), a body over the cap gets 413."""
    body = compress(os.urandom(4096))
    async with _capped(ReceiverLimits(max_body_bytes=1000)) as (url, registry, _):
        status, text = await _post(url, body)
        assert status == 413
        assert "--web.remote-write-receiver.max-body-bytes" in text

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 512):
                yield body[i : i + 512]

        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=chunks(), headers={"Content-Encoding": "snappy"}) as r,
        ):
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert r.status == 413
        assert _rejected(registry, "body_too_large") == 2


Series = Sequence[tuple[tuple[str, str], ...]]


def _request(series: Series) -> bytes:
    return compress(
        encode_request([encode_labels(s) for s in series], [1.0] * len(series), [1] * len(series))
    )


@pytest.mark.parametrize(
    ("limits", "over", "at", "reason"),
    [
        (
            ReceiverLimits(max_series_per_request=2),
            [(("__name__", f"m{i}"),) for i in range(3)],
            [(("__name__", f"m{i}"),) for i in range(2)],
            "too_many_series",
        ),
        (
            ReceiverLimits(max_labels_per_series=2),
            [(("__name__", "m"), ("a", "1"), ("b", "2"))],
            [(("__name__", "m"), ("a", "1"))],
            "too_many_labels",
        ),
        (
            ReceiverLimits(max_label_name_length=8),
            [(("__name__", "m"), ("x" * 9, "1"))],
            [(("__name__", "m"), ("x" * 8, "1"))],
            "label_name_too_long",
        ),
        (
            ReceiverLimits(max_label_value_length=8),
            [(("__name__", "m"), ("a", "é" * 5))],  # 5 characters, 10 bytes
            [(("__name__", "m"), ("a", "é" * 4))],
            "label_value_too_long",
        ),
    ],
)
async def test_series_and_label_caps_are_400_with_a_reason(
    limits: ReceiverLimits, over: Series, at: Series, reason: str
) -> None:
    """Over a cap: 400 naming the flag, counted by reason, nothing reaches the callback; at
    the cap: accepted."""
    async with _capped(limits) as (url, registry, got):
        status, text = await _post(url, _request(over))
        assert status == 400
        assert "--web.remote-write-receiver.max-" in text
        assert _rejected(registry, reason) == 1
        assert got == []
        assert await _post(url, _request(at)) == (204, "")
        assert len(got) == 1


async def test_every_reason_is_exported_from_the_start() -> None:
    async with _capped(ReceiverLimits()) as (_, registry, _):
        for reason in REJECT_REASONS:
            assert _rejected(registry, reason) == 0


def test_the_agent_flags_default_to_the_receiver_defaults() -> None:
    """AgentOptions mirrors ReceiverLimits (the config layer cannot import the receiver)."""
    options, limits = AgentOptions(), ReceiverLimits()
    for f in fields(ReceiverLimits):
        assert getattr(options, f"receiver_{f.name}") == getattr(limits, f.name), f.name


def test_the_cli_passes_the_caps_to_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[AgentOptions] = []
    monkeypatch.setattr(cli, "configure_logging", lambda **_: None)

    def run(options: AgentOptions) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(cli, "_run_agent", run)
    flag = "--web.remote-write-receiver."
    assert (
        cli.main(
            [
                f"{flag}max-body-bytes=64MiB",
                f"{flag}max-decompressed-bytes=256MiB",
                f"{flag}max-series-per-request=7",
                f"{flag}max-samples-per-request=70",
                f"{flag}max-labels-per-series=0",
                f"{flag}max-label-name-length=9",
                f"{flag}max-label-value-length=10",
                "--web.config.file=w.yml",
            ]
        )
        == 0
    )
    (options,) = seen
    assert (options.receiver_max_body_bytes, options.receiver_max_decompressed_bytes) == (
        64 << 20,
        256 << 20,
    )
    assert options.receiver_max_samples_per_request == 70
    assert (
        options.receiver_max_series_per_request,
        options.receiver_max_labels_per_series,
        options.receiver_max_label_name_length,
        options.receiver_max_label_value_length,
        options.web_config_file,
    ) == (7, 0, 9, 10, "w.yml")


async def test_the_agent_receiver_takes_real_batch_sizes_and_its_caps(tmp_path: Path) -> None:
    """The agent's /api/v1/write accepts a 2 MiB compressed batch (aiohttp's default 1 MiB
    client_max_size answered 413), applies the caps of its options, and counts refusals on the
    agent's registry (its /metrics)."""
    config = tmp_path / "c.yml"
    config.write_text("global: {}\n")
    options = AgentOptions(
        config_file=str(config),
        storage_path=str(tmp_path / "q"),
        enable_remote_write_receiver=True,
        receiver_max_labels_per_series=3,
    )
    agent = Agent(options, registry=new_registry())
    rng = random.Random(7)
    series = [
        (("__name__", "big"), ("id", f"{i}"), ("v", rng.randbytes(60).hex())) for i in range(20_000)
    ]
    body = _request(series)
    assert len(body) > 2 << 20
    async with TestClient(TestServer(agent.make_web_app())) as client:
        posted = await client.post(
            "/api/v1/write", data=io.BytesIO(body), headers={"Content-Encoding": "snappy"}
        )
        assert posted.status == 204
        too_many = _request([(("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3"))])
        posted = await client.post(
            "/api/v1/write", data=too_many, headers={"Content-Encoding": "snappy"}
        )
        assert posted.status == 400
    assert _rejected(agent.registry, "too_many_labels") == 1
