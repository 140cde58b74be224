"""The delivery rig's numbers and targets (`tests.integration.delivery`): phases, the 20
loopback targets that number every response."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

AgentKind = Literal["collector", "prometheus", "vmagent"]
AGENTS: tuple[AgentKind, ...] = ("collector", "prometheus", "vmagent")

TARGETS = 20
SERIES = 200
JOB = "delivery"
SERIAL_METRIC = "scrape_seq"
GAUGE = "delivery_sample"
FLUSH_DEADLINE = 10.0
"""``--storage.remote.flush-deadline`` given to collector and Prometheus: the SIGTERM budget."""
IN_FLIGHT = 0.5
"""A scrape served this close before a signal may not have been committed by the agent yet."""
KILL_LOSS = 1.0
"""The issue: "kill -9 loses at most 1 s of samples"."""
KILL_SPREAD = 3.0
"""Kills land uniformly within this many seconds after the first scrape of each run, so every
kill hits an agent that is scraping and queueing (not one still starting)."""
STARTUP_GRACE = 10.0
"""From a (re)start, how long an agent may take before its first scrape: Prometheus's discovery
manager hands targets over on a 5 s tick (``updatert``), plus up to one interval of scrape
offset, plus start-up. From its first scrape on (or this long after the start, whichever comes
first) an agent must scrape every target once per interval; the shortfall is *missed* scrapes."""
MIN_AFTER_RESTART = 5.0
"""A restarted agent scrapes at least this long against the still-down receiver."""
RETRY_AFTER = 5
DEFAULT_SCALE = 1 / 3


def env_scale() -> float:
    """``COLLECTOR_DELIVERY_SCALE`` (1.0: the issue's durations), default 1/3."""
    return float(os.environ.get("COLLECTOR_DELIVERY_SCALE", DEFAULT_SCALE))


@dataclass(frozen=True, slots=True, kw_only=True)
class Phases:
    """Scenario durations, in seconds."""

    outage: float = 60.0
    sigterm_at: float = 20.0
    status_500: float = 30.0
    status_429: float = 30.0
    delay_phase: float = 60.0
    delay: float = 2.0
    """Added to every request during the delay phase (not scaled)."""
    kills: int = 20
    """Not scaled: the issue asks for 20; the outage lasts as long as they take."""
    settle_quiet: float = 15.0
    """Settling ends when the loss count has not changed for this long while samples flow."""
    settle_timeout: float = 120.0

    @classmethod
    def at_scale(cls, scale: float) -> Phases:
        """The issue's durations times ``scale``."""
        full = cls()
        return cls(
            outage=full.outage * scale,
            sigterm_at=full.sigterm_at * scale,
            status_500=full.status_500 * scale,
            status_429=full.status_429 * scale,
            delay_phase=full.delay_phase * scale,
            settle_timeout=full.settle_timeout + 2 * full.outage * scale,
        )


# ---------------------------------------------------------------------- targets


@dataclass(slots=True)
class Target:
    """One exporter: its port and the serials it served, with ``time.monotonic()`` stamps."""

    index: int
    port: int
    serial: int = 0
    served: list[tuple[int, float]] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """``host:port``, the ``instance`` label agents give its samples."""
        return f"127.0.0.1:{self.port}"


class Targets:
    """``count`` exporters of ``series`` gauges each, one aiohttp runner per port."""

    def __init__(self, count: int = TARGETS, series: int = SERIES) -> None:
        self.targets = [Target(i, 0) for i in range(count)]
        self._head = (
            f"# HELP {GAUGE} One of {series} gauges; the value is the scrape serial.\n"
            f"# TYPE {GAUGE} gauge\n"
        ).encode()
        self._lines = [f'{GAUGE}{{series="{i:03d}"}} '.encode() for i in range(series)]
        self._tail = (
            f"# HELP {SERIAL_METRIC} Responses served by this target.\n"
            f"# TYPE {SERIAL_METRIC} counter\n{SERIAL_METRIC} "
        ).encode()
        self._runners: list[web.AppRunner] = []

    def body(self, serial: int) -> bytes:
        """The exposition of one response."""
        value = b"%d\n" % serial
        return b"".join((self._head, value.join(self._lines), value, self._tail, value))

    async def start(self) -> None:
        """Listen on a free loopback port per target."""
        for target in self.targets:
            app = web.Application()
            app.router.add_get("/metrics", self._handler(target))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            target.port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)

    async def stop(self) -> None:
        """Close every listener."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def _handler(self, target: Target) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def metrics(_: web.Request) -> web.Response:
            target.serial += 1
            body = self.body(target.serial)
            target.served.append((target.serial, time.monotonic()))
            return web.Response(body=body, content_type="text/plain", charset="utf-8")

        return metrics
