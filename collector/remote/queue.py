"""Queue building blocks: the sealed batch, its disk record, backoff and the resharding formula.

A `Batch` is what a shard sends: a snappy-compressed ``WriteRequest`` body plus its sample count,
its highest timestamp, the shard it belongs to and the *epoch* (writer instance) that sealed it.
Shards are ``series ref % num_shards``, and refs only mean something inside one process, so a
batch replayed from disk after a restart (another epoch) must be sent before any batch of the new
epoch starts: `collector.remote.writer` enforces that barrier, and that is what keeps per-series
order across restarts.

The resharding math of spec §6.4 lives here as pure functions (`EWMARate`, `desired_shards`).

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``shards``,
``calculateDesiredShards``),
``storage/remote/ewma.go``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = ["Batch", "EWMARate", "desired_shards", "next_backoff"]

_RECORD = struct.Struct("<QIIq")
"""Disk record header: epoch, shard, sample count, highest timestamp (ms)."""


@dataclass(slots=True, frozen=True)
class Batch:
    """One request's worth of samples, encoded and compressed once, sent (and retried) as is."""

    body: bytes
    """snappy(WriteRequest): exactly the bytes POSTed, on every attempt."""
    count: int
    """Samples in the request."""
    max_ts: int
    """Highest sample timestamp in the request, ms."""
    shard: int
    """``ref % num_shards`` of every series in it, within `epoch`."""
    epoch: int
    """The writer instance that sealed it; a shard number means nothing across epochs."""

    def to_record(self) -> bytes:
        """The disk queue record of this batch."""
        return _RECORD.pack(self.epoch, self.shard, self.count, self.max_ts) + self.body

    @classmethod
    def from_record(cls, record: bytes) -> Batch:
        """Inverse of `to_record`; ``ValueError`` when the record is too short."""
        if len(record) < _RECORD.size:
            raise ValueError(f"disk queue record of {len(record)} bytes has no batch header")
        epoch, shard, count, max_ts = _RECORD.unpack_from(record)
        return cls(
            body=record[_RECORD.size :], count=count, max_ts=max_ts, shard=shard, epoch=epoch
        )


def next_backoff(slept: float, *, max_backoff: float) -> float:
    """The sleep after a failed retry that slept ``slept``: doubled, capped (spec §6.2)."""
    return min(slept * 2, max_backoff)


class EWMARate:
    """An exponentially weighted moving rate, ticked every ``interval`` seconds (spec §6.4).

    The first non-zero tick initialises the rate to the instant rate, like ``ewma.go``.
    """

    __slots__ = ("_alpha", "_init", "_interval", "_pending", "rate")

    def __init__(self, *, alpha: float = 0.2, interval: float = 10.0) -> None:
        self._alpha = alpha
        self._interval = interval
        self._pending = 0.0
        self._init = False
        self.rate = 0.0
        """Per-second rate after the last tick."""

    def incr(self, n: float) -> None:
        """Count ``n`` events towards the next tick."""
        self._pending += n

    def tick(self) -> None:
        """Fold the events counted since the last tick into the rate."""
        instant = self._pending / self._interval
        self._pending = 0.0
        if self._init:
            self.rate += self._alpha * (instant - self.rate)
        elif instant > 0:
            self._init = True
            self.rate = instant


def desired_shards(
    *,
    current: int,
    min_shards: int,
    max_shards: int,
    rate_in: float,
    rate_out: float,
    rate_dropped: float,
    rate_out_duration: float,
    highest_received_s: float,
    highest_sent_s: float,
) -> tuple[int, float]:
    """Prometheus's ``calculateDesiredShards``: ``(shards to run, raw desired value)``.

    Rates are per second; ``rate_out_duration`` is seconds spent sending per second. The first
    element equals ``current`` whenever the formula says to keep it.
    """
    if rate_out <= 0:
        return current, float(current)
    kept_ratio = rate_out / (rate_dropped + rate_out)
    delay = highest_received_s - highest_sent_s
    backlog = delay * rate_in * kept_ratio
    time_per_item = rate_out_duration / rate_out
    desired = time_per_item * (rate_in * kept_ratio + 0.05 * backlog)
    wanted = math.ceil(desired)
    if current * 0.7 <= wanted <= current * 1.3:
        return current, desired
    if wanted < current and delay > 10.0:
        return current, desired
    return max(min_shards, min(max_shards, wanted)), desired
