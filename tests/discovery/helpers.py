"""Fakes for discovery tests: a scriptable provider, a stepped sleep, group builders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NoReturn

from collector.discovery.discoverer import SendGroups
from collector.discovery.static import sleep_forever
from collector.model.targetgroup import TargetGroup


def group(source: str, *addresses: str, **labels: str) -> TargetGroup:
    """A group with one ``{__address__}`` target per address."""
    return TargetGroup(
        source=source,
        targets=tuple({"__address__": address} for address in addresses),
        labels=labels,
    )


def addresses(groups: Sequence[TargetGroup]) -> list[str]:
    """Every target address of ``groups``, in order."""
    return [target["__address__"] for g in groups for target in g.targets]


class FakeDiscoverer:
    """A provider the test drives: it sends ``initial`` on start, then whatever `send` is given."""

    def __init__(self, initial: Sequence[TargetGroup] | None = None) -> None:
        self.initial = None if initial is None else list(initial)
        self.runs = 0
        self.cancelled = 0
        self.started = asyncio.Event()
        self._send: SendGroups | None = None

    async def run(self, send: SendGroups) -> NoReturn:
        """Record the run, send the initial groups, wait for cancellation."""
        self.runs += 1
        self._send = send
        if self.initial is not None:
            send(self.initial)
        self.started.set()
        try:
            await sleep_forever()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def send(self, groups: Sequence[TargetGroup]) -> None:
        """Push groups to the manager as the real provider would."""
        assert self._send is not None, "provider not started"
        self._send(groups)


class Stepper:
    """An injectable ``sleep`` that returns only when the test calls `step`.

    `step` releases the pending sleep and waits until the provider sleeps again, i.e. until it
    has finished exactly one more pass. No real or virtual time passes.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._pending: asyncio.Future[None] | None = None
        self._arrived = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        """The provider's sleep: park until released."""
        self.delays.append(delay)
        future = asyncio.get_running_loop().create_future()
        self._pending = future
        self._arrived.set()
        await future

    async def idle(self) -> None:
        """Wait until the provider is parked in `sleep` (its current pass is complete)."""
        await asyncio.wait_for(self._arrived.wait(), timeout=5)

    async def step(self) -> None:
        """Let the provider run one more pass."""
        await self.idle()
        self._arrived.clear()
        assert self._pending is not None
        self._pending.set_result(None)
        await self.idle()


class Recorder:
    """Collects what a provider sends."""

    def __init__(self) -> None:
        self.sends: list[list[TargetGroup]] = []

    def __call__(self, groups: Sequence[TargetGroup]) -> None:
        """The ``send`` callback."""
        self.sends.append(list(groups))

    @property
    def last(self) -> list[TargetGroup]:
        """The most recent send."""
        return self.sends[-1]
