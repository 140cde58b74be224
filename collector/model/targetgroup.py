"""TargetGroup: what discovery produces and the scrape manager consumes.

A group is a list of targets (each a label dict, at least ``__address__``), labels common to
all of them, and a ``source`` that identifies the group within its provider. A group with no
targets under a known ``source`` means "delete what this source said before" (spec §1.3).

Prometheus counterpart: ``discovery/targetgroup/targetgroup.go``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["TargetGroup", "TargetSets"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetGroup:
    """One group of targets from one discovery source."""

    source: str
    """Unique within the provider, e.g. ``pod/default/web-0`` or ``0`` for a static entry."""

    targets: tuple[Mapping[str, str], ...] = ()
    """Per-target labels; every target has ``__address__`` unless a role leaves it empty."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels common to every target; a target's own label wins over a group label."""


TargetSets = Mapping[str, list[TargetGroup]]
"""The full map the discovery manager publishes: ``{job_name: [TargetGroup, ...]}``.

A job with no groups is present with an empty list, so the scrape manager empties its pool.
"""
