"""Dynamic resharding (spec §6.4) on virtual time: a slow receiver scales up, a fast one down."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import pytest

T0 = 1_700_000_000_000

pytestmark = pytest.mark.looptime


def _per_series_ts(samples: list[Any]) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = defaultdict(list)
    for labels, _, ts in samples:
        out[labels].append(ts)
    return out


async def _scrape_for(
    writer: Any, refs: list[int], seconds: int, seen: list[int], start: int = 0
) -> None:
    """One commit per virtual second (ts advancing by 1 s), noting the shard count each time."""
    for second in range(start, start + seconds):
        writer.commit([(ref, float(second), T0 + second * 1000) for ref in refs])
        seen.append(writer.num_shards)
        await asyncio.sleep(1.0)


async def test_slow_receiver_scales_up_within_bounds(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """1 s per request, 500 samples/s in batches of 100: one shard cannot keep up.

    The shard count rises above 1 but never past max_shards, and every series still arrives
    complete and in order across the reshards (drain, then restart).
    """
    receiver.delay = 1.0
    writer = kit.make(
        receiver.url,
        shards=1,
        queue_min_shards=1,
        queue_max_shards=8,
        queue_max_samples_per_send=100,
        queue_capacity=2000,
        queue_batch_send_deadline=1.0,
        segment_bytes=1 << 16,
    )
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(500)]
    seen: list[int] = []
    async with running(writer):
        await _scrape_for(writer, refs, 90, seen)
        labels = {"remote_name": "rw", "url": receiver.url}
        assert kit.value("prometheus_remote_storage_shards_desired", labels) > 5
        assert kit.value("prometheus_remote_storage_shards", labels) == writer.num_shards == 8
        await receiver.wait_samples(500 * 90, within=600)
        await idle(writer)
    # The first decision comes at the 10 s tick; the drain of the one old shard (memory full,
    # 20 batches of 1 s) delays the switch, and the following ticks go on up to max_shards.
    assert seen[:10] == [1] * 10
    assert max(seen) == 8
    assert all(a <= b for a, b in itertools.pairwise(seen))
    per_series = _per_series_ts(receiver.samples)
    assert len(per_series) == 500
    for stamps in per_series.values():
        assert stamps == [T0 + s * 1000 for s in range(90)]


async def test_fast_receiver_scales_down_to_min(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """Requests that take 1 ms: four shards are too many, the queue goes down to min_shards."""
    receiver.delay = 0.001
    writer = kit.make(
        receiver.url,
        shards=4,
        queue_min_shards=1,
        queue_max_shards=10,
        queue_max_samples_per_send=50,
        queue_batch_send_deadline=1.0,
    )
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(40)]
    seen: list[int] = []
    async with running(writer):
        await _scrape_for(writer, refs, 40, seen)
        await receiver.wait_samples(40 * 40, within=60)
        await idle(writer)
    assert seen[0] == 4
    assert writer.num_shards == 1
    per_series = _per_series_ts(receiver.samples)
    assert len(per_series) == 40
    for stamps in per_series.values():
        assert stamps == [T0 + s * 1000 for s in range(40)]


async def test_no_reshard_while_retrying_or_idle(
    receiver: Any, kit: Any, running: Any, idle: Any
) -> None:
    """During an outage (retries, no completed send in 10 s) the shard count is left alone.

    Once the receiver is back it goes down, slowly: like Prometheus, the send duration counts
    the retries, so the time per sample stays high until the EWMA forgets the outage.
    """
    receiver.delay = 0.001
    writer = kit.make(
        receiver.url,
        shards=4,
        queue_min_shards=1,
        queue_max_shards=10,
        queue_max_samples_per_send=50,
        queue_batch_send_deadline=1.0,
        queue_max_backoff=1.0,
    )
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(40)]
    seen: list[int] = []
    receiver.down = True
    async with running(writer):
        await _scrape_for(writer, refs, 35, seen)
        assert set(seen) == {4}
        receiver.down = False
        await _scrape_for(writer, refs, 200, seen, start=35)
        await receiver.wait_samples(40 * 235, within=60)
        await idle(writer)
    assert seen[:50] == [4] * 50
    assert seen[-1] == 1
    assert all(a >= b for a, b in itertools.pairwise(seen))
    per_series = _per_series_ts(receiver.samples)
    assert len(per_series) == 40
    for stamps in per_series.values():
        assert stamps == [T0 + s * 1000 for s in range(235)]


async def test_reshard_disabled(receiver: Any, kit: Any, running: Any, idle: Any) -> None:
    """``reshard_interval=None`` keeps the starting shard count."""
    receiver.delay = 0.001
    writer = kit.make(receiver.url, shards=3, reshard_interval=None)
    refs = [kit.ref(("__name__", "m"), ("i", str(i))) for i in range(10)]
    seen: list[int] = []
    async with running(writer):
        await _scrape_for(writer, refs, 30, seen)
        await receiver.wait_samples(300, within=60)
        await idle(writer)
    assert set(seen) == {3}
    assert writer.num_shards == 3
