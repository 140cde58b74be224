"""A provider that polls: refresh now, then every ``interval``; a failure keeps the last good set.

http_sd is built on it (and any future pull-style SD). The refresh function returns the full list
of groups each time, including empty groups for sources that disappeared; the loop sends it.

One deliberate difference from Prometheus: when the *first* refresh fails, Prometheus sends
nothing, so the provider never counts as synced until a refresh succeeds. Here the loop sends an
empty list after a failed first attempt: that changes no target, but it lets ``/-/ready`` say
"every provider has tried once" instead of waiting forever on an unreachable SD endpoint.

Prometheus counterpart: ``discovery/refresh/refresh.go``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from collector.discovery.discoverer import SendGroups
from collector.discovery.metrics import RefreshMetrics
from collector.model.targetgroup import TargetGroup

__all__ = ["RefreshDiscoverer", "Sleep"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
"""An injectable ``asyncio.sleep``: tests pass virtual or manually stepped time."""


class RefreshDiscoverer:
    """Calls ``refresh()`` at start and after every ``interval``; sends what it returns."""

    def __init__(
        self,
        refresh: Callable[[], Awaitable[list[TargetGroup]]],
        *,
        interval: float,
        mechanism: str,
        metrics: RefreshMetrics | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._refresh = refresh
        self._interval = interval
        self._mechanism = mechanism
        self._metrics = metrics
        self._sleep = sleep

    async def run(self, send: SendGroups) -> NoReturn:
        """Refresh forever; errors are logged and counted, the previous groups stay."""
        first = True
        while True:
            started = time.perf_counter()
            try:
                groups = await self._refresh()
            except Exception as exc:  # errors are data (STYLE rule 3); cancellation escapes
                if self._metrics is not None:
                    self._metrics.failures.inc()
                log.error("%s discovery: unable to refresh target groups: %s", self._mechanism, exc)
                if first:
                    send([])  # mark synced; see the module docstring
            else:
                send(groups)
            if self._metrics is not None:
                self._metrics.observe(time.perf_counter() - started)
            first = False
            await self._sleep(self._interval)
