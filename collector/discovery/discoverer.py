"""The discovery seam: what every provider (static, file, http, kubernetes) implements.

A provider runs until cancelled and reports target groups through a callback. It may send only
the groups that changed; the manager merges them by ``source``, and a group with no targets
deletes what that source said before (spec §1.1, §1.3). The first call to ``send`` marks the
provider as synced for ``/-/ready``: a provider with nothing to report calls ``send([])``.

Prometheus counterpart: ``discovery.Discoverer`` in ``discovery/discovery.go``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn, Protocol

from collector.model.targetgroup import TargetGroup

__all__ = ["Discoverer", "SendGroups"]

SendGroups = Callable[[Sequence[TargetGroup]], None]
"""Hands changed groups to the manager. Never blocks; the manager keeps only the latest state."""


class Discoverer(Protocol):
    """A discovery provider: one per distinct SD config, shared by every job that uses it."""

    async def run(self, send: SendGroups) -> NoReturn:
        """Discover until cancelled; errors are retried inside, never raised."""
        ...
