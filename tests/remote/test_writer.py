"""RemoteWriter against a real aiohttp receiver on 127.0.0.1, on virtual time (looptime)."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from collector.config import Authorization, BasicAuth, HTTPClientConfig
from collector.model.relabel import RelabelConfig
from collector.model.value import STALE_NAN, STALE_NAN_BITS, float_bits
from collector.remote.codec import decode_request, decompress

T0 = 1_700_000_000_000

pytestmark = pytest.mark.looptime

UP = (("__name__", "up"), ("job", "j"))


def _truncate_only_segment(directory: Path, n: int) -> None:
    (segment,) = directory.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-n])


def _per_series_ts(samples: list[Any]) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = defaultdict(list)
    for labels, _, ts in samples:
        out[labels].append(ts)
    return out


async def test_headers_and_body(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """The first POST carries exactly the spec §6.1 headers and a decodable snappy body."""
    writer = kit.make(
        receiver.url, queue_max_samples_per_send=2, config_headers=(("X-Scope-OrgID", "t1"),)
    )
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0), (ref, 2.0, T0 + 1)])
        await receiver.wait_samples(2)
        await idle(writer)
    (request,) = receiver.requests
    assert request.at == 0
    h = request.headers
    assert h["Content-Encoding"] == "snappy"
    assert h["Content-Type"] == "application/x-protobuf"
    assert h["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert h["User-Agent"] == "collector/0.1.0"
    assert h["X-Scope-OrgID"] == "t1"
    assert "Retry-Attempt" not in h
    assert decode_request(decompress(request.body)) == [(UP, [(1.0, T0)]), (UP, [(2.0, T0 + 1)])]
    assert (
        kit.value(
            "prometheus_remote_storage_samples_total", {"remote_name": "rw", "url": receiver.url}
        )
        == 2
    )
    assert kit.value(
        "prometheus_remote_storage_bytes_total", {"remote_name": "rw", "url": receiver.url}
    ) == len(request.body)


@pytest.mark.parametrize(("sync_interval", "sent_at"), [(60.0, 6.5), (1.0, 2.0)])
async def test_partial_batch_waits_for_deadline_or_group_commit(
    receiver: Any, kit: Any, running: Any, idle: Any, sync_interval: float, sent_at: float
) -> None:
    """A batch below max_samples_per_send is sealed batch_send_deadline after it opened, or at
    the next group commit when that comes first (every sample is logged within sync_interval).
    """
    writer = kit.make(receiver.url, queue_batch_send_deadline=5.0, sync_interval=sync_interval)
    ref = kit.ref(*UP)
    async with running(writer):
        await asyncio.sleep(1.5)
        writer.commit([(ref, 1.0, T0)])
        await receiver.wait_samples(1, within=30)
        await idle(writer)
    assert receiver.requests[0].at == sent_at


async def test_order_per_series_across_shards(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Four shards, small batches, retries on some requests: every series arrives in order."""
    writer = kit.make(receiver.url, shards=4, queue_max_samples_per_send=7, queue_capacity=1000)
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(30)]
    receiver.script.extend([(500, {}), (200, {}), (503, {}), (204, {}), (502, {})])
    async with running(writer):
        for scrape in range(20):
            writer.commit([(ref, float(scrape), T0 + scrape * 1000) for ref in refs])
            await asyncio.sleep(0.01)
        await receiver.wait_samples(600, within=60)
        await idle(writer)
    per_series = _per_series_ts(receiver.samples)
    assert len(per_series) == 30
    for stamps in per_series.values():
        assert stamps == [T0 + s * 1000 for s in range(20)]


async def test_500_500_200_resends_same_payload(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Two 500s then 200: the identical body is POSTed 3 times, 30 ms then 60 ms apart."""
    writer = kit.make(receiver.url, queue_max_samples_per_send=1)
    receiver.script.extend([(500, {}), (500, {})])
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await receiver.wait_samples(1)
        await idle(writer)
    bodies = {r.body for r in receiver.requests}
    assert len(receiver.requests) == 3
    assert len(bodies) == 1
    assert [r.at for r in receiver.requests] == [0.0, 0.03, 0.09]
    assert [r.headers.get("Retry-Attempt") for r in receiver.requests] == [None, "1", "2"]
    labels = {"remote_name": "rw", "url": receiver.url}
    assert kit.value("prometheus_remote_storage_samples_retried_total", labels) == 2
    assert kit.value("prometheus_remote_storage_samples_total", labels) == 1


async def test_backoff_is_capped(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """Backoff doubles from min_backoff and stays at max_backoff."""
    writer = kit.make(
        receiver.url, queue_max_samples_per_send=1, queue_min_backoff=0.03, queue_max_backoff=0.1
    )
    receiver.script.extend([(500, {})] * 5)
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await receiver.wait_samples(1)
        await idle(writer)
    times = [r.at for r in receiver.requests]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.03, 0.06, 0.1, 0.1, 0.1]


async def test_retry_after_overrides_backoff(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Retry-After seconds and HTTP-date are floors for the wait; the backoff goes on doubling
    on its own (0.03, 0.06, 0.12), so a later 500 without the header retries soon."""
    now = 1_000_000.0
    writer = kit.make(receiver.url, queue_max_samples_per_send=1, wall_clock=lambda: now)
    date = email.utils.formatdate(now + 3, usegmt=True)
    receiver.script.extend([(503, {"Retry-After": "2"}), (500, {"Retry-After": date}), (500, {})])
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await receiver.wait_samples(1, within=60)
        await idle(writer)
    assert [r.at for r in receiver.requests] == [0.0, 2.0, 5.0, 5.12]


async def test_400_is_dropped_and_counted(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """A 400 drops the batch, counts it as failed, never retries, and the next batch goes on."""
    writer = kit.make(receiver.url, queue_max_samples_per_send=2)
    receiver.script.append((400, {}))
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0), (ref, 2.0, T0 + 1), (ref, 3.0, T0 + 2), (ref, 4.0, T0 + 3)])
        await receiver.wait_samples(2)
        await idle(writer)
    assert [r.status for r in receiver.requests] == [400, 204]
    assert [v for _, v, _ in receiver.samples] == [3.0, 4.0]
    labels = {"remote_name": "rw", "url": receiver.url}
    assert kit.value("prometheus_remote_storage_samples_failed_total", labels) == 2
    assert kit.value("prometheus_remote_storage_samples_retried_total", labels) == 0
    lost = {"remote_name": "rw", "reason": "http_400"}
    assert kit.value("collector_remote_write_dropped_samples_total", lost) == 2


@pytest.mark.parametrize("retry", [None, False, True])
async def test_429_depends_on_retry_on_http_429(
    receiver: Any, kit: Any, running: Any, retry: bool | None, idle: Any
) -> None:
    """429 is retried by default (a deliberate departure from Prometheus) and dropped, counted
    by reason, with ``retry_on_http_429: false``."""
    kw = {} if retry is None else {"queue_retry_on_http_429": retry}
    writer = kit.make(receiver.url, queue_max_samples_per_send=1, **kw)
    receiver.script.append((429, {}))
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0), (ref, 2.0, T0 + 1)])
        await receiver.wait_samples(1 if retry is False else 2)
        await idle(writer)
    labels = {"remote_name": "rw", "url": receiver.url}
    lost = {"remote_name": "rw", "reason": "http_429"}
    if retry is False:
        assert [v for _, v, _ in receiver.samples] == [2.0]
        assert kit.value("prometheus_remote_storage_samples_failed_total", labels) == 1
        assert kit.value("collector_remote_write_dropped_samples_total", lost) == 1
    else:
        assert [v for _, v, _ in receiver.samples] == [1.0, 2.0]
        assert kit.value("prometheus_remote_storage_samples_failed_total", labels) == 0
        assert kit.value("collector_remote_write_dropped_samples_total", lost) == 0


async def test_external_labels_and_write_relabel(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Spec §11 #24: series labels win, result byte-sorted, write relabel sees the merged set."""
    relabel = (
        RelabelConfig(source_labels=("region", "__name__"), regex="eu;drop_me", action="drop"),
    )
    writer = kit.make(
        receiver.url,
        external_labels=(("replica", "r1"), ("region", "eu")),
        config_write_relabel_configs=relabel,
        queue_max_samples_per_send=10,
    )
    up = kit.ref(("__name__", "up"), ("job", "j"), ("replica", "own"))
    gone = kit.ref(("__name__", "drop_me"), ("job", "j"))
    plain = kit.ref(("__name__", "x"), ("b", "1"))
    async with running(writer):
        writer.commit([(up, 1.0, T0), (gone, 1.0, T0), (plain, 2.0, T0), (gone, 3.0, T0 + 1)])
        await receiver.wait_samples(2, within=30)
        await idle(writer)
    assert [labels for labels, _, _ in receiver.samples] == [
        (("__name__", "up"), ("job", "j"), ("region", "eu"), ("replica", "own")),
        (("__name__", "x"), ("b", "1"), ("region", "eu"), ("replica", "r1")),
    ]
    dropped = {"remote_name": "rw", "url": receiver.url, "reason": "dropped_series"}
    assert kit.value("prometheus_remote_storage_samples_dropped_total", dropped) == 2


async def test_unknown_ref_is_counted(receiver: Any, kit: Any) -> None:
    """A ref the registry does not know is dropped as unintentionally_dropped_series."""
    writer = kit.make(receiver.url)
    writer.commit([(999, 1.0, T0)])
    labels = {"remote_name": "rw", "url": receiver.url, "reason": "unintentionally_dropped_series"}
    assert kit.value("prometheus_remote_storage_samples_dropped_total", labels) == 1
    assert writer.pending_samples == 0


async def test_stale_marker_bits_reach_receiver(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A staleness marker arrives with bits 0x7ff0000000000002; -0.0 arrives as +0.0."""
    writer = kit.make(receiver.url, queue_max_samples_per_send=2)
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, STALE_NAN, T0), (ref, -0.0, T0 + 1)])
        await receiver.wait_samples(2)
        await idle(writer)
    values = [v for _, v, _ in receiver.samples]
    assert float_bits(values[0]) == STALE_NAN_BITS
    assert float_bits(values[1]) == 0


async def test_spill_to_disk_and_replay_in_order(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """During an outage bodies beyond the memory budget live only in the write-ahead log;
    recovery reads them back and delivers all, in order, then the log is reclaimed."""
    writer = kit.make(
        receiver.url,
        shards=2,
        queue_capacity=20,
        queue_max_samples_per_send=5,
        queue_max_backoff=0.5,
        segment_bytes=300,
    )
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(10)]
    receiver.down = True
    async with running(writer):
        for scrape in range(30):
            writer.commit([(ref, float(scrape), T0 + scrape * 1000) for ref in refs])
            await asyncio.sleep(0.1)
        assert writer.wal.segment_count > 1
        assert writer.delivery.memory_samples <= 200  # capacity x 10: the rest is on disk only
        disk_bytes = kit.value("collector_disk_queue_bytes", {"remote_name": "rw"})
        assert disk_bytes > 0
        receiver.down = False
        await receiver.wait_samples(300, within=120)
        await idle(writer)
        await asyncio.sleep(1.5)  # the next group commit persists the acks
        assert writer.wal.pending_records == 0
    per_series = _per_series_ts(receiver.samples)
    for stamps in per_series.values():
        assert stamps == [T0 + s * 1000 for s in range(30)]
    assert len(receiver.samples) == 300
    assert writer.wal.segment_count == 1  # the newest is kept: it carries the next seq


async def test_shutdown_persists_and_restart_replays_first(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Unsent samples survive cancellation in the log; a new writer sends them before new data,
    and a third start sends nothing again (the acks were persisted)."""
    first = kit.make(receiver.url, shards=2, queue_max_samples_per_send=3, flush_deadline=1.0)
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(4)]
    receiver.down = True
    async with running(first):
        for scrape in range(5):
            first.commit([(ref, 1.0, T0 + scrape) for ref in refs])
        await asyncio.sleep(0.5)
    assert first.pending_samples == 20
    assert first.wal.pending_records > 0
    assert receiver.samples == []

    receiver.down = False
    second = kit.make(receiver.url, shards=3, queue_max_samples_per_send=3)
    new_refs = [kit.ref(("__name__", "m"), ("i", str(i)), ("new", "1")) for i in range(4)]
    second.commit([(ref, 2.0, T0 + 100) for ref in refs + new_refs])
    async with running(second):
        await receiver.wait_samples(28, within=30)
        await idle(second)
    stamps = [ts for _, _, ts in receiver.samples]
    assert sorted(stamps[:20]) == sorted(T0 + s for s in range(5) for _ in refs)
    assert stamps[20:] == [T0 + 100] * 8
    assert _per_series_ts(receiver.samples)[(("__name__", "m"), ("i", "0"))] == [
        T0,
        T0 + 1,
        T0 + 2,
        T0 + 3,
        T0 + 4,
        T0 + 100,
    ]
    third = kit.make(receiver.url)
    async with running(third):
        await asyncio.sleep(5)
    assert len(receiver.samples) == 28
    assert third.wal.pending_records == 0


async def test_shutdown_flushes_within_deadline(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Cancellation seals open batches and sends them when the receiver is up; disk stays empty."""
    writer = kit.make(receiver.url, queue_batch_send_deadline=60.0)
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await asyncio.sleep(0.01)
    assert len(receiver.samples) == 1
    assert writer.delivery.empty
    assert writer.wal.pending_records == 0


async def test_corrupt_segment_is_reported_not_fatal(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """A torn disk record is counted; the records before it and new data are still delivered."""
    first = kit.make(receiver.url, queue_max_samples_per_send=1, flush_deadline=0.1)
    ref = kit.ref(*UP)
    receiver.down = True
    async with running(first):
        first.commit([(ref, 1.0, T0), (ref, 2.0, T0 + 1), (ref, 3.0, T0 + 2)])
        await asyncio.sleep(0.05)
    _truncate_only_segment(first.directory, 4)
    receiver.down = False
    second = kit.make(receiver.url, queue_max_samples_per_send=1)
    async with running(second):
        second.commit([(ref, 9.0, T0 + 10)])
        await receiver.wait_samples(3, within=30)
        await idle(second)
    assert [v for _, v, _ in receiver.samples] == [1.0, 2.0, 9.0]
    assert kit.value("collector_disk_queue_corruptions_total", {"remote_name": "rw"}) == 1
    lost = {"remote_name": "rw", "reason": "corrupt"}
    assert kit.value("collector_remote_write_dropped_samples_total", lost) == 1


async def test_auth_headers_and_rotated_credentials(
    receiver: Any, kit: Any, running: Any, idle: Any, tmp_path: Path
) -> None:
    """Bearer credentials come from a file re-read per request; basic auth is encoded."""
    token = tmp_path / "token"
    token.write_text("one\n")
    http = HTTPClientConfig(authorization=Authorization(credentials_file=str(token)))
    writer = kit.make(receiver.url, queue_max_samples_per_send=1, config_http_client=http)
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await receiver.wait_samples(1)
        await idle(writer)
        token.write_text("two\n")
        writer.commit([(ref, 2.0, T0 + 1)])
        await receiver.wait_samples(2)
        await idle(writer)
    assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer one", "Bearer two"]

    basic = HTTPClientConfig(basic_auth=BasicAuth(username="u", password="p"))
    other = kit.make(receiver.url, name="b", queue_max_samples_per_send=1, config_http_client=basic)
    async with running(other):
        other.commit([(ref, 3.0, T0 + 2)])
        await receiver.wait_samples(3)
        await idle(other)
    assert receiver.requests[-1].headers["Authorization"] == "Basic dTpw"


async def test_transport_error_is_retried(kit: Any, running: Any, receiver: Any) -> None:
    """A refused connection is recoverable: the writer keeps retrying with backoff."""
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    writer = kit.make(
        "http://127.0.0.1:9/api/v1/write",
        queue_max_samples_per_send=1,
        sleep=fake_sleep,
        flush_deadline=0.0,
    )
    ref = kit.ref(*UP)
    async with running(writer):
        writer.commit([(ref, 1.0, T0)])
        await asyncio.sleep(0.2)
    assert sleeps[:3] == [0.03, 0.06, 0.12]
    assert writer.wal.pending_records == 1


async def test_an_outage_is_logged_once_per_state_change(
    receiver: Any, kit: Any, running: Any, idle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 60 s outage on 4 shards is a handful of lines (first failure, one summary a minute,
    recovery), not one per shard per retry; nothing is lost."""
    writer = kit.make("http://127.0.0.1:9/api/v1/write", shards=4, queue_max_samples_per_send=5)
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(20)]
    caplog.set_level("INFO", logger="collector.remote")
    async with running(writer):
        for scrape in range(65):
            writer.commit([(ref, float(scrape), T0 + scrape * 1000) for ref in refs])
            await asyncio.sleep(1.0)
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("collector.remote")]
        assert len(lines) == 2, lines
        assert lines[0].startswith("remote_write rw: failed to send, retrying in ")
        assert "cannot connect to 127.0.0.1:9" in lines[0]
        assert "ssl:default" not in lines[0]
        # The summary comes with the first failure past 60 s: at most max_backoff later.
        summary = re.fullmatch(
            r"remote_write rw: still failing after 6[0-5]s: (\d+) failed attempts, "
            r"0 samples dropped; last error: cannot connect to 127.0.0.1:9: .*",
            lines[1],
        )
        assert summary is not None, lines[1]
        failed_attempts = int(summary.group(1))
        assert failed_attempts > 4 * 12  # every shard retried all along (max_backoff 5 s)
