"""What an informer does after a failure: relist (`Gone`), or wait and watch again (`Restart`).

Place in the pipeline: `collector.discovery.kubernetes.informer` turns every answer it cannot
use into one of these two, and asks `Backoff` how long to wait before the next attempt. They
never leave the informer: its loop counts them (``collector_kubernetes_watch_restarts_total``
by ``reason``) and logs a change of state, and only cancellation ends it.

`Backoff` is exponential with full jitter: waits grow from ``initial`` (drawn from ``[d, 2d)``)
by doubling up to ``maximum`` and start over once ``reset_after`` seconds passed since the
previous failure, so an API server that failed yesterday does not cost a 30 s wait today;
jitter keeps a fleet of agents from reconnecting in step after an API server restart.

Prometheus counterpart: client-go's reflector (``isExpiredError`` -> relist) and its
``wait.Backoff`` (800 ms doubling to 30 s, reset after 2 minutes).
"""

from __future__ import annotations

import random
import time

__all__ = ["Backoff", "Gone", "Restart"]


class Gone(Exception):
    """410: the resourceVersion or continue token expired; relist."""


class Restart(Exception):
    """Watch again after a backoff; ``reason`` labels the restart counter."""

    def __init__(self, reason: str, message: str, *, retry_after: float = 0.0) -> None:
        self.reason = reason
        self.retry_after = retry_after
        """The server's ``Retry-After`` (seconds): the wait is at least this."""
        super().__init__(message)


class Backoff:
    """Jittered exponential waits; `next` gives the next one."""

    def __init__(
        self, *, initial: float, maximum: float, reset_after: float, rng: random.Random
    ) -> None:
        self._initial = initial
        self._max = maximum
        self._reset_after = reset_after
        self._rng = rng
        self._n = 0
        self._last = 0.0

    def next(self) -> float:
        """Seconds to wait before the next attempt (monotonic clock, not the loop's)."""
        now = time.monotonic()
        if self._n and now - self._last > self._reset_after:
            self._n = 0
        self._last = now
        base = min(self._max, self._initial * (1 << min(self._n, 30)))
        self._n += 1
        jitter: float = self._rng.random()
        return min(self._max, base * (1.0 + jitter))
