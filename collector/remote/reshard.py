"""`Resharder`: how many shards a destination should send with (spec §6.4), decided every 10 s.

Pipeline position: a task of `collector.remote.writer.RemoteWriter`. It reads the samples that
came in (the writer counts them at commit) and the sends that completed (`SendStats`), folds them
into EWMAs, and asks `collector.remote.queue.desired_shards`. A change is applied by the writer
as a new epoch: the open batches are sealed in the old layout and the delivery queue keeps the
two layouts apart, so per-series order holds without draining first.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``updateShardsLoop``,
``shouldReshard``, ``calculateDesiredShards``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NoReturn

from collector.config import QueueConfig
from collector.remote.metrics import QueueMetrics
from collector.remote.queue import EWMARate, desired_shards
from collector.remote.sender import SendStats

__all__ = ["SHARD_UPDATE_INTERVAL", "Resharder"]

log = logging.getLogger(__name__)

SHARD_UPDATE_INTERVAL = 10.0
"""Seconds between resharding decisions (Prometheus ``shardUpdateDuration``)."""


class Resharder:
    """EWMAs of samples in, out and dropped, and the decision to change the shard count."""

    def __init__(
        self,
        queue: QueueConfig,
        *,
        stats: SendStats,
        metrics: QueueMetrics,
        interval: float = SHARD_UPDATE_INTERVAL,
    ) -> None:
        self._q = queue
        self._stats = stats
        self._m = metrics
        self.interval = interval
        self._rate_in = EWMARate(interval=interval)
        self._rate_out = EWMARate(interval=interval)
        self._rate_dropped = EWMARate(interval=interval)
        self._rate_out_duration = EWMARate(interval=interval)
        self.count_in = 0
        """Samples committed since the last tick (the writer adds to it)."""
        self.count_dropped = 0
        """Samples dropped before sending since the last tick (the writer adds to it)."""
        self.highest_in_ms = 0
        """Highest timestamp committed, ms (the writer raises it)."""

    def desired(self, current: int) -> int:
        """Tick the EWMAs and compute the shard count the formula wants (clamped)."""
        stats = self._stats
        self._rate_in.incr(self.count_in)
        self._rate_out.incr(stats.out)
        self._rate_dropped.incr(self.count_dropped)
        self._rate_out_duration.incr(stats.out_duration)
        self.count_in = self.count_dropped = stats.out = 0
        stats.out_duration = 0.0
        for rate in (self._rate_in, self._rate_out, self._rate_dropped, self._rate_out_duration):
            rate.tick()
        q = self._q
        wanted, raw = desired_shards(
            current=current,
            min_shards=q.min_shards,
            max_shards=q.max_shards,
            rate_in=self._rate_in.rate,
            rate_out=self._rate_out.rate,
            rate_dropped=self._rate_dropped.rate,
            rate_out_duration=self._rate_out_duration.rate,
            highest_received_s=self.highest_in_ms / 1000.0,
            highest_sent_s=stats.highest_sent_s,
        )
        if self._rate_out.rate > 0:
            self._m.shards_desired.set(raw)
        return wanted

    def should_reshard(self, wanted: int, current: int, now: float) -> bool:
        """Spec §6.4: a different count, a send completed recently, and not while retrying."""
        if wanted == current:
            return False
        last = self._stats.last_done
        if last is None or now - last > self.interval:
            log.warning(
                "remote_write %s: skipping resharding, last successful send was beyond threshold",
                self._m.remote_name,
            )
            return False
        return now >= self._stats.retry_until

    async def run(self, current: Callable[[], int], apply: Callable[[int], None]) -> NoReturn:
        """Every ``interval``: decide, and ``apply(n)`` when a reshard is due."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            n = current()
            wanted = self.desired(n)
            if self.should_reshard(wanted, n, loop.time()):
                log.info(
                    "remote_write %s: resharding from %d to %d shards",
                    self._m.remote_name,
                    n,
                    wanted,
                )
                apply(wanted)
