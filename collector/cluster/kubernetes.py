"""Peers from Kubernetes: the ready pods of the agent's own workload, watched live.

Place in the pipeline: a `collector.cluster.peers.PeerSource` for ``--cluster.peers-from=
kubernetes``. It reuses Kubernetes service discovery as is: a ``pod`` role discoverer limited
to the agent's namespace (``POD_NAMESPACE``) and label selector (``--cluster.peers-selector``),
built by `collector.discovery.kubernetes.make_discoverer` and so sharing the process's
informer pool (one list/watch of those pods however many users), its reconnects, relists and
self-metrics. Every pod group it sends is reduced by `pod_member` to the pod's name when the pod
is a member, and the full member list is published after each send.

A member is a pod in phase ``Running`` whose ``Ready`` condition is ``True``: a starting pod
joins once its readiness probe (``/-/ready``: config loaded, discovery synced) passes, and a
pod that stops being ready (or is deleted, or loses its IP) leaves. The agent's own pod obeys
the same rule, so it scrapes nothing sharded until it sees itself ready.

The RBAC this needs is ``get``/``list``/``watch`` on ``pods`` in that one namespace
(deploy/cluster/role.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from prometheus_client import CollectorRegistry

from collector.cluster.peers import PublishPeers
from collector.config import KubernetesSDConfig, KubernetesSelector
from collector.model.targetgroup import TargetGroup

if TYPE_CHECKING:
    from collector.discovery.kubernetes import InformerPool
    from collector.kubernetes.connection import ConnectionSpec

__all__ = ["KubernetesPeers", "pod_member"]

_META = "__meta_kubernetes_pod_"


def pod_member(group: TargetGroup) -> str | None:
    """The pod's name when the pod role group says it is a member (running and ready)."""
    labels = group.labels
    if labels.get(_META + "ready") != "true" or labels.get(_META + "phase") != "Running":
        return None
    return labels.get(_META + "name") or None


class KubernetesPeers:
    """The ready pods matching ``selector`` in ``namespace``."""

    def __init__(
        self,
        *,
        namespace: str,
        selector: str,
        registry: CollectorRegistry,
        kubeconfig: str = "",
        connection: ConnectionSpec | None = None,
        pool: InformerPool | None = None,
    ) -> None:
        """``connection`` and ``pool`` override the API server and the informer pool (tests)."""
        self.config = KubernetesSDConfig(
            role="pod",
            namespaces=(namespace,),
            selectors=(KubernetesSelector(role="pod", label=selector),),
        )
        self._registry = registry
        self._kubeconfig = kubeconfig
        self._connection = connection
        self._pool = pool

    async def run(self, publish: PublishPeers) -> NoReturn:
        """Run the pod discoverer; publish the members after every batch of changes."""
        # Lazily, like the agent's own Kubernetes SD: kubernetes_asyncio loads only when used.
        from collector.discovery.kubernetes import make_discoverer

        discoverer = make_discoverer(
            self.config,
            registry=self._registry,
            kubeconfig=self._kubeconfig or None,
            pool=self._pool,
            connection=self._connection,
        )
        members: dict[str, str] = {}  # group source (pod/<ns>/<name>) -> member name

        def send(groups: Sequence[TargetGroup]) -> None:
            for group in groups:
                name = pod_member(group)
                if name is None:
                    members.pop(group.source, None)
                else:
                    members[group.source] = name
            publish(sorted(set(members.values())))

        await discoverer.run(send)
