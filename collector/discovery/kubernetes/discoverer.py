"""One Kubernetes SD config: informers per namespace and resource, a work queue, role converters.

`KubernetesDiscoverer.run` subscribes to the shared informers its role needs (spec §2.5):

| role          | primary           | joined (same namespaces)  | cluster-wide, if attached     |
|---------------|-------------------|---------------------------|-------------------------------|
| node          | nodes             |                           |                               |
| pod           | pods              |                           | nodes, namespaces             |
| service       | services          |                           | namespaces                    |
| endpoints     | endpoints         | services, pods            | nodes, namespaces             |
| endpointslice | endpointslices    | services, pods            | nodes, namespaces             |
| ingress       | ingresses         |                           | namespaces                    |

Each resource's informer gets the label/field selector of the ``selectors`` entry whose role is
that resource's role (a node-local DaemonSet uses ``field: spec.nodeName=<node>`` on pods).

Events put keys of primary objects into a de-duplicating queue; re-triggers map joined objects
to the primary keys that depend on them: a Service change -> the Endpoints of the same name (or
the slices labelled with its name), a pod *phase* change -> the Endpoints that point at it, a
node change -> the pods on it / endpoints on it (with ``attach_metadata.node``), a namespace
change -> every object in it (``attach_metadata.namespace``).

The informers come from the `InformerPool` the discoverer is given (the agent's, shared by
every Kubernetes discoverer and run around them); a pool nobody runs is served by `run` itself
for as long as it runs (`InformerPool.serving`).

Nothing is sent until every informer has synced; then every primary object yields one group in a
single send (``send([])`` when there are none, which marks the provider synced), and afterwards
each batch of queued keys yields one send of the rebuilt groups (an absent object yields an
empty group: a deletion).

Prometheus counterpart: ``discovery/kubernetes/kubernetes.go`` (``Discovery.Run``) and the
per-role ``Run``/``process`` loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import NoReturn

from collector.config import KubernetesSDConfig
from collector.discovery.discoverer import SendGroups
from collector.discovery.kubernetes import endpoints, roles
from collector.discovery.kubernetes.informer import EventKind, Informer, InformerKey
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import (
    Endpoints,
    EndpointSlice,
    Ingress,
    Namespace,
    Node,
    Pod,
    Service,
    SlimObject,
)
from collector.discovery.kubernetes.pool import InformerPool
from collector.discovery.kubernetes.wire import RESOURCE_PATHS
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup

__all__ = ["PRIMARY", "RESOURCE_ROLE", "KubernetesDiscoverer"]

log = logging.getLogger(__name__)

PRIMARY = {
    "node": "nodes",
    "pod": "pods",
    "service": "services",
    "endpoints": "endpoints",
    "endpointslice": "endpointslices",
    "ingress": "ingresses",
}
"""Role -> the resource whose objects become groups."""

RESOURCE_ROLE = {v: k for k, v in PRIMARY.items()}
"""Resource -> the selector role / event role that names it."""


class KubernetesDiscoverer:
    """A `Discoverer` for one ``kubernetes_sd_configs`` entry."""

    def __init__(
        self,
        config: KubernetesSDConfig,
        *,
        connection: ConnectionSpec,
        pool: InformerPool,
        metrics: KubernetesMetrics,
        namespaces: tuple[str, ...] = ("",),
    ) -> None:
        self.config = config
        self.connection = connection
        self.pool = pool
        self.metrics = metrics
        self.namespaces = namespaces
        """Namespaces to watch; ``("",)`` = all (one cluster-wide informer)."""
        self.role = config.role
        self.primary = PRIMARY[config.role]
        self._selectors = {s.role: s for s in config.selectors}
        self._attach_node = config.attach_metadata.node and config.role in (
            "pod",
            "endpoints",
            "endpointslice",
        )
        self._attach_ns = config.attach_metadata.namespace and config.role != "node"
        self._informers: dict[str, dict[str, Informer]] = defaultdict(dict)
        self._queue: dict[str, None] = {}
        self._wake = asyncio.Event()
        # re-trigger indexes: dependency key -> primary keys
        self._by_pod: dict[str, set[str]] = defaultdict(set)
        self._by_node: dict[str, set[str]] = defaultdict(set)
        self._by_service: dict[str, set[str]] = defaultdict(set)

    # ----------------------------------------------------------------- setup

    def informer_keys(self) -> list[InformerKey]:
        """Every informer this discoverer needs (what the pool will share)."""
        wanted: list[tuple[str, tuple[str, ...]]] = [(self.primary, self.namespaces)]
        if self.role in ("endpoints", "endpointslice"):
            wanted += [("services", self.namespaces), ("pods", self.namespaces)]
        if self._attach_node:
            wanted.append(("nodes", ("",)))
        if self._attach_ns:
            wanted.append(("namespaces", ("",)))
        keys: list[InformerKey] = []
        for resource, namespaces in wanted:
            sel = self._selectors.get(RESOURCE_ROLE.get(resource, ""))
            namespaced = RESOURCE_PATHS[resource][1]
            keys.extend(
                InformerKey(
                    connection=self.connection,
                    resource=resource,
                    namespace=ns,
                    label_selector=sel.label if sel else "",
                    field_selector=sel.field if sel else "",
                )
                for ns in (namespaces if namespaced else ("",))
            )
        return keys

    async def run(self, send: SendGroups) -> NoReturn:
        """Discover until cancelled (serving the pool meanwhile if nobody else does)."""
        async with self.pool.serving():
            await self._discover(send)
        raise AssertionError("unreachable: only cancellation ends a discoverer")

    async def _discover(self, send: SendGroups) -> NoReturn:
        async with contextlib.AsyncExitStack() as stack:
            for key in self.informer_keys():
                informer = await stack.enter_async_context(
                    self.pool.subscribe(key, self._handler(key.resource), metrics=self.metrics)
                )
                self._informers[key.resource][key.namespace] = informer
            await asyncio.gather(
                *(inf.synced.wait() for by_ns in self._informers.values() for inf in by_ns.values())
            )
            self._rebuild_indexes()
            for inf in self._informers[self.primary].values():
                self._queue.update(dict.fromkeys(inf.store))
            first = True
            while True:
                groups = self._drain()
                if groups or first:
                    send(groups)
                    first = False
                self._wake.clear()
                await self._wake.wait()

    # ----------------------------------------------------------------- lookups

    def _get(self, resource: str, namespace: str, name: str) -> SlimObject | None:
        by_ns = self._informers.get(resource)
        if not by_ns:
            return None
        key = f"{namespace}/{name}" if namespace else name
        inf = by_ns.get(namespace) or by_ns.get("")
        return inf.store.get(key) if inf is not None else None

    def _pod(self, namespace: str, name: str) -> Pod | None:
        obj = self._get("pods", namespace, name)
        return obj if isinstance(obj, Pod) else None

    def _node(self, name: str) -> Node | None:
        obj = self._get("nodes", "", name)
        return obj if isinstance(obj, Node) else None

    def _namespace(self, name: str) -> Namespace | None:
        if not self._attach_ns:
            return None
        obj = self._get("namespaces", "", name)
        return obj if isinstance(obj, Namespace) else None

    def _service(self, namespace: str, name: str) -> Service | None:
        obj = self._get("services", namespace, name)
        return obj if isinstance(obj, Service) else None

    # ----------------------------------------------------------------- events

    def _handler(
        self, resource: str
    ) -> Callable[[EventKind, str, SlimObject | None, SlimObject | None], None]:
        role = RESOURCE_ROLE.get(resource)

        def on_event(
            kind: EventKind, key: str, old: SlimObject | None, new: SlimObject | None
        ) -> None:
            if role is not None:
                self.metrics.events.labels(role, kind).inc()
            if kind == "update" and old == new:
                return  # nothing a role reads changed
            if resource == self.primary:
                self._index(key, old, remove=True)
                self._index(key, new)
                self._enqueue(key)
            else:
                self._retrigger(resource, kind, key, old, new)

        return on_event

    def _enqueue(self, *keys: str) -> None:
        if keys:
            self._queue.update(dict.fromkeys(keys))
            self._wake.set()

    def _retrigger(
        self,
        resource: str,
        kind: EventKind,
        key: str,
        old: SlimObject | None,
        new: SlimObject | None,
    ) -> None:
        if resource == "services":
            if self.role == "endpoints":
                self._enqueue(key)
            elif self.role == "endpointslice":
                self._enqueue(*self._by_service.get(key, ()))
        elif resource == "pods" and self.role == "endpoints":
            if (
                kind == "update"
                and isinstance(old, Pod)
                and isinstance(new, Pod)
                and old.phase != new.phase
            ):
                self._enqueue(*self._by_pod.get(key, ()))
        elif resource == "nodes" and self._attach_node:
            self._enqueue(*self._by_node.get(key, ()))
        elif resource == "namespaces" and self._attach_ns:
            prefix = key + "/"
            for inf in self._informers[self.primary].values():
                self._enqueue(*(k for k in inf.store if k.startswith(prefix)))

    def _index(self, key: str, obj: SlimObject | None, *, remove: bool = False) -> None:
        if obj is None:
            return
        entries: list[tuple[dict[str, set[str]], str]] = []
        if isinstance(obj, Endpoints):
            entries += [(self._by_pod, f"{ns}/{n}") for ns, n in endpoints.endpoints_pod_refs(obj)]
            if self._attach_node:
                entries += [(self._by_node, n) for n in endpoints.endpoints_node_refs(obj)]
        elif isinstance(obj, EndpointSlice):
            svc = endpoints.endpointslice_service_name(obj)
            if svc:
                entries.append((self._by_service, f"{obj.namespace}/{svc}"))
            if self._attach_node:
                entries += [(self._by_node, n) for n in endpoints.endpointslice_node_refs(obj)]
        elif isinstance(obj, Pod) and self._attach_node and obj.node_name:
            entries.append((self._by_node, obj.node_name))
        for index, dep in entries:
            if remove:
                keys = index.get(dep)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[dep]
            else:
                index[dep].add(key)

    def _rebuild_indexes(self) -> None:
        self._by_pod.clear()
        self._by_node.clear()
        self._by_service.clear()
        for inf in self._informers[self.primary].values():
            for key, obj in inf.store.items():
                self._index(key, obj)

    # ----------------------------------------------------------------- groups

    def _drain(self) -> list[TargetGroup]:
        groups: list[TargetGroup] = []
        while self._queue:
            key = next(iter(self._queue))
            del self._queue[key]
            try:
                group = self._build(key)
            except Exception:
                log.exception("kubernetes SD: building the group of %s %s failed", self.role, key)
                continue
            if group is not None:
                groups.append(group)
        return groups

    def _build(self, key: str) -> TargetGroup | None:
        ns, _, name = key.rpartition("/")
        obj = self._get(self.primary, ns, name)
        if obj is None:
            return TargetGroup(source=self._source(ns, name))
        if isinstance(obj, Node):
            return roles.node_group(obj)
        if isinstance(obj, Pod):
            return roles.pod_group(
                obj,
                attach_node=self._attach_node,
                node=self._node(obj.node_name) if self._attach_node else None,
                namespace=self._namespace(obj.namespace),
            )
        if isinstance(obj, Service):
            return roles.service_group(obj, namespace=self._namespace(obj.namespace))
        if isinstance(obj, Endpoints):
            return endpoints.endpoints_group(
                obj,
                service=self._service(obj.namespace, obj.name),
                get_pod=self._pod,
                attach_node=self._attach_node,
                get_node=self._node,
                namespace=self._namespace(obj.namespace),
            )
        if isinstance(obj, EndpointSlice):
            svc_name = endpoints.endpointslice_service_name(obj)
            return endpoints.endpointslice_group(
                obj,
                service=self._service(obj.namespace, svc_name) if svc_name else None,
                get_pod=self._pod,
                attach_node=self._attach_node,
                get_node=self._node,
                namespace=self._namespace(obj.namespace),
            )
        if isinstance(obj, Ingress):
            return roles.ingress_group(obj, namespace=self._namespace(obj.namespace))
        return None

    def _source(self, ns: str, name: str) -> str:
        return {
            "node": lambda: roles.node_source(name),
            "pod": lambda: roles.pod_source(ns, name),
            "service": lambda: roles.service_source(ns, name),
            "endpoints": lambda: endpoints.endpoints_source(ns, name),
            "endpointslice": lambda: endpoints.endpointslice_source(ns, name),
            "ingress": lambda: roles.ingress_source(ns, name),
        }[self.role]()
