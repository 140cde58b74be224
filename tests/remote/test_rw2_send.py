"""A destination configured for remote write 2.0, against a real aiohttp receiver on virtual
time: the 2.0 headers and body, partial writes read from the written-count headers, the
fallback to 1.0 (after a 415, or a 2xx without those headers) with nothing lost, and 2.0 from
the write-ahead log after a restart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from collector.config import MetadataConfig
from collector.remote import prompb2
from collector.remote.client import Written, parse_written
from collector.remote.codec import decode_metadata, decode_request, decompress
from collector.remote.codec2 import CONTENT_TYPE_V2, V2, decode_v2

pytestmark = pytest.mark.looptime

T0 = 1_700_000_000_000
UP = (("__name__", "up"), ("job", "j"))
REQS = (("__name__", "http_requests_total"), ("job", "j"))
META = [("up", "gauge", "Target is up.", ""), ("http_requests", "counter", "Requests.", "")]
SAMPLES_WRITTEN = "X-Prometheus-Remote-Write-Samples-Written"


def _labels(receiver: Any) -> dict[str, str]:
    return {"remote_name": "rw", "url": receiver.url}


def _v2(kit: Any, receiver: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("metadata_source", lambda: META)
    return kit.make(receiver.url, config_protobuf_message=V2, **kwargs)


def _is_v2(request: Any) -> bool:
    return bool(request.headers["Content-Type"] == CONTENT_TYPE_V2)


def _lost(kit: Any, reason: str) -> float:
    return float(
        kit.value(
            "collector_remote_write_dropped_samples_total", {"remote_name": "rw", "reason": reason}
        )
    )


def _fallback(kit: Any) -> float:
    return float(kit.value("collector_remote_write_v1_fallback", {"remote_name": "rw"}))


def _partial(kit: Any) -> float:
    return float(kit.value("collector_remote_write_partial_writes_total", {"remote_name": "rw"}))


async def test_headers_and_body(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """A 2.0 POST: the 2.0 Content-Type and version header, a body whose every field decodes,
    metadata inside the series; the receiver's written count matches, so nothing is partial."""
    writer = _v2(kit, receiver, queue_max_samples_per_send=2)
    up, reqs = kit.ref(*UP), kit.ref(*REQS)
    async with running(writer):
        writer.commit([(up, 1.0, T0), (reqs, 5.0, T0)])
        await receiver.wait_samples(2)
        await idle(writer)
    (request,) = receiver.requests
    h = request.headers
    assert h["Content-Type"] == "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    assert h["X-Prometheus-Remote-Write-Version"] == "2.0.0"
    assert h["Content-Encoding"] == "snappy"
    assert h["User-Agent"] == "collector/0.1.0"
    message = prompb2.Request()
    message.ParseFromString(decompress(request.body))
    symbols = list(message.symbols)
    assert symbols[0] == ""
    got = [
        (
            tuple(symbols[r] for r in s.labels_refs),
            [(p.value, p.timestamp) for p in s.samples],
            s.metadata.type,
            symbols[s.metadata.help_ref],
        )
        for s in message.timeseries
    ]
    assert got == [
        (("__name__", "up", "job", "j"), [(1.0, T0)], 2, "Target is up."),
        (("__name__", "http_requests_total", "job", "j"), [(5.0, T0)], 1, "Requests."),
    ]
    assert receiver.series == [(UP, [(1.0, T0)]), (REQS, [(5.0, T0)])]
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 2
    assert kit.value("prometheus_remote_storage_bytes_total", _labels(receiver)) == len(
        request.body
    )
    assert (_partial(kit), _fallback(kit)) == (0, 0)
    assert writer.protocol.version == "2.0"


async def test_metadata_config_send_false_sends_no_metadata(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """``metadata_config.send: false``: 2.0 series without the metadata field."""
    writer = _v2(kit, receiver, config_metadata_config=MetadataConfig(send=False))
    async with running(writer):
        writer.commit([(kit.ref(*UP), 1.0, T0)])
        await receiver.wait_samples(1)
        await idle(writer)
    message = prompb2.Request()
    message.ParseFromString(decompress(receiver.requests[0].body))
    assert not message.timeseries[0].HasField("metadata")


async def test_partial_write_is_counted(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """A 2xx whose Samples-Written header counts 1 of 3: one partial write, 1 sent, 2 failed
    and counted lost as ``partial_write``; the destination stays on 2.0."""
    receiver.script.append((200, {SAMPLES_WRITTEN: "1"}))
    writer = _v2(kit, receiver, queue_max_samples_per_send=3)
    up = kit.ref(*UP)
    async with running(writer):
        writer.commit([(up, 1.0, T0), (up, 2.0, T0 + 1), (up, 3.0, T0 + 2)])
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        await idle(writer)
    assert _partial(kit) == 1
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 1
    assert kit.value("prometheus_remote_storage_samples_failed_total", _labels(receiver)) == 2
    assert _lost(kit, "partial_write") == 2
    assert writer.protocol.version == "2.0"


async def test_written_headers_are_ignored_for_1_0(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A 1.0 destination neither reads nor needs the headers: all samples count as sent."""
    receiver.script.append((200, {SAMPLES_WRITTEN: "1"}))
    writer = kit.make(receiver.url, queue_max_samples_per_send=3)
    up = kit.ref(*UP)
    async with running(writer):
        writer.commit([(up, 1.0, T0), (up, 2.0, T0 + 1), (up, 3.0, T0 + 2)])
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        await idle(writer)
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 3
    assert _partial(kit) == 0


async def test_4xx_with_written_count_drops_only_the_rest(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A 400 saying 1 of 2 was written: 1 sent, 1 lost as http_400, one partial write; a 400
    is no reason to fall back."""
    receiver.script.append((400, {SAMPLES_WRITTEN: "1"}))
    writer = _v2(kit, receiver, queue_max_samples_per_send=2)
    up = kit.ref(*UP)
    async with running(writer):
        writer.commit([(up, 1.0, T0), (up, 2.0, T0 + 1)])
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        await idle(writer)
        writer.commit([(up, 3.0, T0 + 2), (up, 4.0, T0 + 3)])
        await receiver.wait_samples(2)
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 3
    assert _lost(kit, "http_400") == 1
    assert _partial(kit) == 1
    assert all(_is_v2(r) for r in receiver.requests)
    assert _fallback(kit) == 0


async def test_415_falls_back_to_1_0_with_nothing_lost(
    receiver: Any, kit: Any, running: Any, idle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 415 to every 2.0 request: the same batch goes again at once as 1.0, and every later
    one; logged once (two shards meet the 415), shown as the gauge and the writer's protocol."""
    receiver.v2_status = 415
    writer = _v2(kit, receiver, shards=2, queue_max_samples_per_send=2)
    refs = [kit.ref(("__name__", f"m{i}"), ("job", "j")) for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="collector.remote.sender"):
        async with running(writer):
            writer.commit([(ref, float(i), T0) for i, ref in enumerate(refs)])
            await receiver.wait_samples(4)
            writer.commit([(ref, 10.0 + i, T0 + 1000) for i, ref in enumerate(refs)])
            await receiver.wait_samples(8)
            await idle(writer)
    statuses = [(r.status, _is_v2(r)) for r in receiver.requests]
    assert statuses[0] == (415, True)
    assert {s for s, v2 in statuses if v2} == {415}
    assert {s for s, v2 in statuses if not v2} == {204}
    assert sorted(
        (dict(labels)["__name__"], samples) for labels, samples in receiver.series
    ) == sorted(
        [(f"m{i}", [(float(i), T0)]) for i in range(4)]
        + [(f"m{i}", [(10.0 + i, T0 + 1000)]) for i in range(4)]
    )
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 8
    assert kit.value("prometheus_remote_storage_samples_failed_total", _labels(receiver)) == 0
    assert _fallback(kit) == 1
    assert writer.protocol.version == "1.0"
    assert writer.protocol.fallback_reason.startswith("HTTP 415")
    warnings = [r for r in caplog.records if "does not take remote write 2.0" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_1_0_receiver_answering_2xx_without_headers_gets_1_0(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A 1.0 receiver (Prometheus 2.x, VictoriaMetrics) reads a 2.0 body as an empty request and
    answers 204 with no written-count header: treated as a 415 (spec), so the batch is sent
    again as 1.0 and arrives; nothing is lost."""
    receiver.v1_only = True
    writer = _v2(kit, receiver, queue_max_samples_per_send=2)
    up = kit.ref(*UP)
    async with running(writer):
        writer.commit([(up, 1.0, T0), (up, 2.0, T0 + 1)])
        await receiver.wait_samples(2)
        writer.commit([(up, 3.0, T0 + 2)])
        await receiver.wait_samples(3)
        await idle(writer)
    assert [_is_v2(r) for r in receiver.requests] == [True, False, False]
    assert receiver.series == [(UP, [(1.0, T0)]), (UP, [(2.0, T0 + 1)]), (UP, [(3.0, T0 + 2)])]
    assert kit.value("prometheus_remote_storage_samples_total", _labels(receiver)) == 3
    assert _fallback(kit) == 1
    assert "no X-Prometheus-Remote-Write-*-Written header" in writer.protocol.fallback_reason


async def test_metadata_requests_only_after_a_fallback(
    receiver: Any, kit: Any, running: Any
) -> None:
    """2.0 carries metadata in the series: no metadata-only request until the destination falls
    back to 1.0, then they are sent every send_interval."""
    writer = _v2(kit, receiver, config_metadata_config=MetadataConfig(send_interval=10.0))
    async with running(writer):
        await asyncio.sleep(25)
        assert receiver.requests == []
        receiver.v1_only = True
        writer.commit([(kit.ref(*UP), 1.0, T0)])
        await receiver.wait_samples(1)
        await asyncio.sleep(10)
    metadata = [
        r for r in receiver.requests if not _is_v2(r) and not decode_request(decompress(r.body))
    ]
    assert len(metadata) == 1
    assert decode_metadata(decompress(metadata[0].body)) == [
        (2, "up", "Target is up.", ""),
        (1, "http_requests", "Requests.", ""),
    ]


async def test_restart_sends_the_logged_batches_as_2_0(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """The write-ahead log holds 1.0 records; after a restart a 2.0 destination sends them as
    2.0, first and in order, and nothing is lost."""
    first = _v2(kit, receiver, queue_max_samples_per_send=2, flush_deadline=0.5)
    up = kit.ref(*UP)
    receiver.down = True
    async with running(first):
        first.commit([(up, float(i), T0 + i) for i in range(5)])
        await asyncio.sleep(3)
    assert receiver.series == []
    receiver.down = False
    second = _v2(kit, receiver, queue_max_samples_per_send=2)
    async with running(second):
        second.commit([(up, 9.0, T0 + 9)])
        await receiver.wait_samples(6)
        await idle(second)
    accepted = receiver.accepted()
    assert all(_is_v2(r) for r in accepted)
    assert [s for r in accepted for _, s in decode_v2(decompress(r.body))[0]] == [
        [(0.0, T0)],
        [(1.0, T0 + 1)],
        [(2.0, T0 + 2)],
        [(3.0, T0 + 3)],
        [(4.0, T0 + 4)],
        [(9.0, T0 + 9)],
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, Written(0, 0, 0, confirmed=False)),
        ({SAMPLES_WRITTEN: "7"}, Written(7, 0, 0, confirmed=True)),
        (
            {
                SAMPLES_WRITTEN: "5",
                "X-Prometheus-Remote-Write-Histograms-Written": "2",
                "X-Prometheus-Remote-Write-Exemplars-Written": "1",
            },
            Written(5, 2, 1, confirmed=True),
        ),
        ({"X-Prometheus-Remote-Write-Exemplars-Written": "0"}, Written(0, 0, 0, confirmed=True)),
        ({SAMPLES_WRITTEN: "many"}, Written(0, 0, 0, confirmed=True)),
        ({SAMPLES_WRITTEN: ""}, Written(0, 0, 0, confirmed=False)),
    ],
)
def test_written_headers_are_parsed_as_prometheus_does(
    headers: dict[str, str], expected: Written
) -> None:
    """Any one header confirms a 2.0 receiver; a missing one then means 0, an unparsable one
    counts 0 (Prometheus ``ParseWriteResponseStats``); histograms count as samples written."""
    got = parse_written(headers)
    assert got == expected
    assert got.all_samples == expected.samples + expected.histograms
