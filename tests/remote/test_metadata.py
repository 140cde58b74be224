"""Remote-write metadata sending (spec §6.6, 1.0 path) against a real receiver, on virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from collector.config import MetadataConfig
from collector.remote.codec import decode_metadata, decode_request, decompress

pytestmark = pytest.mark.looptime

ENTRIES = [
    ("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes.", ""),
    ("http_requests_total", "counter", "Requests.", ""),
    ("rpc_seconds", "summary", "RPC latency.", "seconds"),
    ("odd", "unknown", "", ""),
]


def _labels(receiver: Any) -> dict[str, str]:
    return {"remote_name": "rw", "url": receiver.url}


def _make(kit: Any, receiver: Any, entries: Any, **metadata: Any) -> Any:
    return kit.make(
        receiver.url,
        config_metadata_config=MetadataConfig(**metadata),
        metadata_source=lambda: list(entries),
    )


def _decoded(request: Any) -> list[tuple[int, str, str, str]]:
    raw = decompress(request.body)
    assert decode_request(raw) == []  # field 3 only: no timeseries
    return decode_metadata(raw)


async def test_interval_types_and_only_field_3(receiver: Any, kit: Any, running: Any) -> None:
    """One request per send_interval (the first after one interval), types as numbers."""
    writer = _make(kit, receiver, ENTRIES, send_interval=60.0)
    async with running(writer):
        await asyncio.sleep(150)
    assert [r.at for r in receiver.requests] == [60.0, 120.0]
    for request in receiver.requests:
        assert request.headers["Content-Encoding"] == "snappy"
        assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
        assert _decoded(request) == [
            (2, "node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes.", ""),
            (1, "http_requests_total", "Requests.", ""),
            (5, "rpc_seconds", "RPC latency.", "seconds"),
            (0, "odd", "", ""),
        ]
    assert receiver.series == []
    assert kit.value("prometheus_remote_storage_metadata_total", _labels(receiver)) == 8
    assert kit.value("prometheus_remote_storage_metadata_bytes_total", _labels(receiver)) == sum(
        len(r.body) for r in receiver.requests
    )
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 0


async def test_chunks_and_dedupe(receiver: Any, kit: Any, running: Any) -> None:
    """Duplicates collapse; chunks hold at most max_samples_per_send entries, in order."""
    writer = _make(
        kit,
        receiver,
        [*ENTRIES, ENTRIES[0], ENTRIES[1]],
        send_interval=10.0,
        max_samples_per_send=3,
    )
    async with running(writer):
        await asyncio.sleep(15)
    assert [r.at for r in receiver.requests] == [10.0, 10.0]
    first, second = (_decoded(r) for r in receiver.requests)
    assert [e[1] for e in first] == [
        "node_memory_MemTotal_bytes",
        "http_requests_total",
        "rpc_seconds",
    ]
    assert [e[1] for e in second] == ["odd"]
    assert kit.value("prometheus_remote_storage_metadata_total", _labels(receiver)) == 4


async def test_500_retried_then_sent(receiver: Any, kit: Any, running: Any) -> None:
    """A 5xx is retried with backoff (Retry-Attempt set); entries count as retried, then sent."""
    receiver.script.append((500, {}))
    writer = _make(kit, receiver, ENTRIES[:2], send_interval=10.0)
    async with running(writer):
        await asyncio.sleep(15)
    assert [r.status for r in receiver.requests] == [500, 204]
    assert [r.at for r in receiver.requests] == [10.0, pytest.approx(10.03)]
    assert receiver.requests[1].headers["Retry-Attempt"] == "1"
    assert _decoded(receiver.requests[1]) == _decoded(receiver.requests[0])
    labels = _labels(receiver)
    assert kit.value("prometheus_remote_storage_metadata_retried_total", labels) == 2
    assert kit.value("prometheus_remote_storage_metadata_total", labels) == 2
    assert kit.value("prometheus_remote_storage_metadata_failed_total", labels) == 0


async def test_400_dropped_and_counted(receiver: Any, kit: Any, running: Any) -> None:
    """A 4xx is not retried: the chunk is dropped and counted as failed; the next tick sends."""
    receiver.script.append((400, {}))
    writer = _make(kit, receiver, ENTRIES[:3], send_interval=10.0)
    async with running(writer):
        await asyncio.sleep(25)
    assert [(r.at, r.status) for r in receiver.requests] == [(10.0, 400), (20.0, 204)]
    labels = _labels(receiver)
    assert kit.value("prometheus_remote_storage_metadata_failed_total", labels) == 3
    assert kit.value("prometheus_remote_storage_metadata_retried_total", labels) == 0
    assert kit.value("prometheus_remote_storage_metadata_total", labels) == 3


async def test_send_false_or_no_source_sends_nothing(receiver: Any, kit: Any, running: Any) -> None:
    """``send: false`` (or no source) sends no metadata at all."""
    off = _make(kit, receiver, ENTRIES, send=False, send_interval=1.0)
    no_source = kit.make(
        receiver.url, name="rw2", config_metadata_config=MetadataConfig(send_interval=1.0)
    )
    async with running(off), running(no_source):
        await asyncio.sleep(30)
    assert receiver.requests == []
    assert kit.value("prometheus_remote_storage_metadata_total", _labels(receiver)) == 0


async def test_empty_source_sends_nothing(receiver: Any, kit: Any, running: Any) -> None:
    """No targets, no metadata: no empty requests."""
    writer = _make(kit, receiver, [], send_interval=1.0)
    async with running(writer):
        await asyncio.sleep(5)
    assert receiver.requests == []
