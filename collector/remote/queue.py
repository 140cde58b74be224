"""The resharding math of spec §6.4 as pure code: `EWMARate` and `desired_shards`.

Used by `collector.remote.reshard.Resharder`, tested by table in tests/remote/test_queue_math.py.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``shards``,
``calculateDesiredShards``),
``storage/remote/ewma.go``.
"""

from __future__ import annotations

import math

__all__ = ["EWMARate", "desired_shards"]


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
