"""Membership: a peer source's member lists -> rings for the scrape manager, and its status.

Place in the pipeline: the agent runs one `Membership` beside discovery (in the discovery
TaskGroup, so it stops first at shutdown). Each list its `PeerSource` reports becomes a
`Ring` (members, this member's name, the replication factor); a ring that differs from the
current one is handed to ``apply`` (the scrape manager's ``set_ring``) at once. Until the
source reports, the ring is empty and this member scrapes nothing sharded: better a late
start than every member scraping everything at once.

Self-metrics: ``collector_cluster_members``, ``collector_cluster_self_member`` (1 while this
agent is in the member list) and ``collector_cluster_membership_changes_total``.
`Membership.status` is the ``data`` of ``GET /api/v1/cluster``.

`build_membership` picks the source for `ClusterSettings`.

Prometheus counterpart: none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.cluster.peers import PeersFile, PeerSource, StaticPeers
from collector.cluster.settings import ClusterSettings
from collector.model.duration import format_duration
from collector.model.rendezvous import Ring

if TYPE_CHECKING:
    from collector.discovery.kubernetes.pool import InformerPool

__all__ = ["Membership", "build_membership"]

log = logging.getLogger(__name__)


class Membership:
    """The current member list of one cluster, as seen by this member."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        source: PeerSource,
        apply: Callable[[Ring], None],
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self._source = source
        self._apply = apply
        self.ring = Ring((), self_name=settings.self_name, replication=settings.replication)
        """The ring in force: empty (owns nothing) until the source first reports."""
        self.synced = False
        """True once the source has reported a member list."""
        self._members = Gauge(
            "collector_cluster_members",
            "Members of the scraping cluster, as this member sees them.",
            registry=registry,
        )
        self._self_member = Gauge(
            "collector_cluster_self_member",
            "1 while this agent is in the member list (and so scrapes its share of targets).",
            registry=registry,
        )
        self._changes = Counter(
            "collector_cluster_membership_changes_total",
            "Member list changes applied to the scrape pools.",
            registry=registry,
        )

    async def run(self) -> NoReturn:
        """Follow the source until cancelled."""
        await self._source.run(self.publish)
        raise AssertionError("unreachable: a peer source only ends by cancellation")

    def publish(self, peers: Sequence[str]) -> None:
        """Apply a member list; the same members again change nothing."""
        ring = Ring(peers, self_name=self.settings.self_name, replication=self.settings.replication)
        first = not self.synced
        self.synced = True
        if ring == self.ring and not first:
            return
        old = self.ring
        self.ring = ring
        self._members.set(len(ring.members))
        self._self_member.set(1 if ring.is_member else 0)
        self._changes.inc()
        joined = sorted(set(ring.members) - set(old.members))
        left = sorted(set(old.members) - set(ring.members))
        log.info(
            "cluster members: %s (joined: %s; left: %s)%s",
            ",".join(ring.members) or "none",
            ",".join(joined) or "none",
            ",".join(left) or "none",
            "" if ring.is_member else f"; {ring.self_name} is not a member: no sharded targets",
        )
        self._apply(ring)

    def status(
        self, *, shares: Mapping[str, int], local: int, handing_off: int
    ) -> dict[str, object]:
        """The ``/api/v1/cluster`` data: members, their target counts, this member's extras.

        ``shares`` are the sharded targets of each member over every scrape pool, computed
        here: every member discovers every target, so it can count everybody's share.
        """
        ring = self.ring
        overlap = self.settings.handoff_overlap
        return {
            "enabled": True,
            "peersFrom": self.settings.peers_from,
            "self": ring.self_name,
            "synced": self.synced,
            "replicationFactor": ring.replication,
            "handoffOverlap": "scrape interval" if overlap is None else format_duration(overlap),
            "members": [
                {"name": name, "self": name == ring.self_name, "targets": shares.get(name, 0)}
                for name in ring.members
            ],
            "localTargets": local,
            "handingOff": handing_off,
        }


def build_membership(
    settings: ClusterSettings,
    *,
    apply: Callable[[Ring], None],
    registry: CollectorRegistry,
    pool: InformerPool | None = None,
) -> Membership:
    """The membership for ``settings`` with its peer source; ``pool`` is the agent's informer
    pool, so the member list shares its connection and watches with Kubernetes SD."""
    source: PeerSource
    if settings.peers_from == "static":
        source = StaticPeers(settings.peers)
    elif settings.peers_from == "file":
        source = PeersFile(settings.peers_file, refresh=settings.peers_file_refresh)
    else:
        from collector.cluster.kubernetes import KubernetesPeers

        source = KubernetesPeers(
            namespace=settings.namespace,
            selector=settings.selector,
            kubeconfig=settings.kubeconfig,
            registry=registry,
            pool=pool,
        )
    return Membership(settings, source=source, apply=apply, registry=registry)
