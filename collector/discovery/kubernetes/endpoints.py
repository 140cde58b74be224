"""The ``endpoints`` and ``endpointslice`` roles (spec §2.4, §2.5): pure converters.

Place in the pipeline: the discoverer calls these on what its informers hold, with *lookups*
for the objects they join (the Service of the same name, the Pods the addresses point at, the
Nodes for ``attach_metadata.node``), and sends the resulting `TargetGroup` to the discovery
manager. No I/O and no state, like `collector.discovery.kubernetes.roles`, whose label helpers
they share.

Prometheus counterpart: ``discovery/kubernetes/{endpoints,endpointslice}.go`` (3.x).
"""

from __future__ import annotations

from collections.abc import Callable

from collector.discovery.kubernetes.objects import (
    Container,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    Namespace,
    Node,
    ObjectRef,
    Pod,
    Service,
    pairs_get,
)
from collector.discovery.kubernetes.roles import (
    ADDRESS,
    META,
    NAMESPACE,
    Labels,
    all_containers,
    bool_label,
    join_host_port,
    namespace_meta,
    node_meta,
    object_meta,
    pod_labels,
    put,
    sanitize,
    service_labels,
)
from collector.model.targetgroup import TargetGroup

__all__ = [
    "NodeLookup",
    "PodLookup",
    "endpoints_group",
    "endpoints_node_refs",
    "endpoints_pod_refs",
    "endpoints_source",
    "endpointslice_group",
    "endpointslice_node_refs",
    "endpointslice_service_name",
    "endpointslice_source",
]


def endpoints_source(namespace: str, name: str) -> str:
    """``endpoints/<ns>/<name>``."""
    return f"endpoints/{namespace}/{name}"


PodLookup = Callable[[str, str], Pod | None]
NodeLookup = Callable[[str], Node | None]


def _no_node(_name: str) -> Node | None:
    return None


def _container_for_port(pod: Pod, port: int) -> tuple[Container, bool, int] | None:
    """The container whose labels an endpoint port ``port`` carries: the LAST one declaring it.

    Containers are matched by port number only (not protocol). Prometheus loops over
    containers, then init containers, and for each one ``break``s out of the *port* loop at
    the first match but carries on with the next container, overwriting the labels each time
    (``endpoints.go`` / ``endpointslice.go``, "Attach potential container port labels"). So
    when two containers declare 8080 (say 8080/TCP in ``a`` and 8080/UDP in ``b``) the target
    says ``b``, and within a container the first matching port entry wins.
    """
    found: tuple[Container, bool, int] | None = None
    for c, init in all_containers(pod):
        for i, cp in enumerate(c.ports):
            if cp.number == port:
                found = c, init, i
                break
    return found


def _container_port_labels(t: Labels, c: Container, init: bool, index: int, protocol: str) -> None:
    cp = c.ports[index]
    t[META + "pod_container_name"] = c.name
    put(t, META + "pod_container_image", c.image)
    put(t, META + "pod_container_port_name", cp.name)
    t[META + "pod_container_port_number"] = str(cp.number)
    put(t, META + "pod_container_port_protocol", protocol)
    t[META + "pod_container_init"] = bool_label(init)


def _extra_pod_targets(seen: dict[tuple[str, str], tuple[Pod, set[int]]]) -> list[Labels]:
    """Container ports of the pods seen that no endpoint port covered (spec §11 #4)."""
    out: list[Labels] = []
    for pod, ports in seen.values():
        if not pod.pod_ip:
            continue
        plabels = pod_labels(pod)
        for c, init in all_containers(pod):
            for i, cp in enumerate(c.ports):
                if cp.number in ports:
                    continue
                t: Labels = {ADDRESS: join_host_port(pod.pod_ip, cp.number)}
                _container_port_labels(t, c, init, i, cp.protocol)
                t.update(plabels)
                out.append(t)
    return out


def _resolve_pod(target: ObjectRef | None, namespace: str, get_pod: PodLookup) -> Pod | None:
    if target is None or target.kind != "Pod":
        return None
    return get_pod(target.namespace or namespace, target.name)


def endpoints_group(
    eps: Endpoints,
    *,
    service: Service | None = None,
    get_pod: PodLookup,
    attach_node: bool = False,
    get_node: NodeLookup = _no_node,
    namespace: Namespace | None = None,
) -> TargetGroup:
    """The ``endpoints`` role, joined with its Service, the Pods it points at and their nodes."""
    labels: Labels = {NAMESPACE: eps.namespace}
    if service is not None:
        labels.update(service_labels(service))
    object_meta(labels, "endpoints", eps.name, eps.labels, eps.annotations)
    namespace_meta(labels, namespace)

    seen: dict[tuple[str, str], tuple[Pod, set[int]]] = {}
    targets: list[Labels] = []

    def add(addr: EndpointAddress, port: EndpointPort, ready: str) -> None:
        t: Labels = {ADDRESS: join_host_port(addr.ip, port.port)}
        put(t, META + "endpoint_port_name", port.name)
        put(t, META + "endpoint_port_protocol", port.protocol)
        t[META + "endpoint_ready"] = ready
        if addr.target is not None:
            put(t, META + "endpoint_address_target_kind", addr.target.kind)
            put(t, META + "endpoint_address_target_name", addr.target.name)
        if addr.node_name is not None:
            put(t, META + "endpoint_node_name", addr.node_name)
        put(t, META + "endpoint_hostname", addr.hostname)
        if attach_node:
            if addr.node_name is not None:
                node_meta(t, get_node(addr.node_name))
            elif addr.target is not None and addr.target.kind == "Node":
                node_meta(t, get_node(addr.target.name))
        pod = _resolve_pod(addr.target, eps.namespace, get_pod)
        if pod is not None:
            entry = seen.setdefault((pod.namespace, pod.name), (pod, set()))
            t.update(pod_labels(pod))
            found = _container_for_port(pod, port.port)
            if found is not None:
                _container_port_labels(t, *found, port.protocol)
            entry[1].add(port.port)
        targets.append(t)

    for ss in eps.subsets:
        for port in ss.ports:
            for addr in ss.addresses:
                add(addr, port, "true")
            for addr in ss.not_ready:
                add(addr, port, "false")
    targets.extend(_extra_pod_targets(seen))
    return TargetGroup(
        source=endpoints_source(eps.namespace, eps.name), targets=tuple(targets), labels=labels
    )


def endpoints_pod_refs(eps: Endpoints) -> set[tuple[str, str]]:
    """``(namespace, name)`` of every Pod an Endpoints object points at (re-trigger index)."""
    return {
        (a.target.namespace or eps.namespace, a.target.name)
        for ss in eps.subsets
        for a in (*ss.addresses, *ss.not_ready)
        if a.target is not None and a.target.kind == "Pod"
    }


def endpoints_node_refs(eps: Endpoints) -> set[str]:
    """Node names an Endpoints object's addresses run on (re-trigger index)."""
    out: set[str] = set()
    for ss in eps.subsets:
        for a in (*ss.addresses, *ss.not_ready):
            if a.node_name is not None:
                out.add(a.node_name)
            elif a.target is not None and a.target.kind == "Node":
                out.add(a.target.name)
    return out


# ------------------------------------------------------------------------------- endpointslice

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpointslice_source(namespace: str, name: str) -> str:
    """``endpointslice/<ns>/<name>``."""
    return f"endpointslice/{namespace}/{name}"


def endpointslice_service_name(es: EndpointSlice) -> str | None:
    """The Service a slice belongs to (its ``kubernetes.io/service-name`` label)."""
    return pairs_get(es.labels, SERVICE_NAME_LABEL)


def endpointslice_group(
    es: EndpointSlice,
    *,
    service: Service | None = None,
    get_pod: PodLookup,
    attach_node: bool = False,
    get_node: NodeLookup = _no_node,
    namespace: Namespace | None = None,
) -> TargetGroup:
    """The ``endpointslice`` role (``discovery.k8s.io/v1``), joined like ``endpoints``."""
    source = endpointslice_source(es.namespace, es.name)
    labels: Labels = {NAMESPACE: es.namespace}
    put(labels, META + "endpointslice_address_type", es.address_type)
    if service is not None:
        labels.update(service_labels(service))
    object_meta(labels, "endpointslice", es.name, es.labels, es.annotations)
    namespace_meta(labels, namespace)

    if (
        service is not None
        and service.ip_family_policy in ("PreferDualStack", "RequireDualStack")
        and service.ip_families
        and es.address_type != service.ip_families[0]
    ):
        # The other family's slice of a dual-stack service: scrape each pod once (spec §2.5).
        return TargetGroup(source=source, labels=labels)

    seen: dict[tuple[str, str], tuple[Pod, set[int]]] = {}
    targets: list[Labels] = []
    for ep in es.endpoints:
        for port in es.ports:
            for addr in ep.addresses:
                t: Labels = {
                    ADDRESS: addr if port.port is None else join_host_port(addr, port.port)
                }
                if port.name is not None:
                    put(t, META + "endpointslice_port_name", port.name)
                if port.protocol is not None:
                    put(t, META + "endpointslice_port_protocol", port.protocol)
                if port.port is not None:
                    t[META + "endpointslice_port"] = str(port.port)
                if port.app_protocol is not None:
                    put(t, META + "endpointslice_port_app_protocol", port.app_protocol)
                if ep.ready is not None:
                    t[META + "endpointslice_endpoint_conditions_ready"] = bool_label(ep.ready)
                if ep.serving is not None:
                    t[META + "endpointslice_endpoint_conditions_serving"] = bool_label(ep.serving)
                if ep.terminating is not None:
                    t[META + "endpointslice_endpoint_conditions_terminating"] = bool_label(
                        ep.terminating
                    )
                if ep.hostname is not None:
                    put(t, META + "endpointslice_endpoint_hostname", ep.hostname)
                if ep.target is not None:
                    put(t, META + "endpointslice_address_target_kind", ep.target.kind)
                    put(t, META + "endpointslice_address_target_name", ep.target.name)
                if ep.node_name is not None:
                    put(t, META + "endpointslice_endpoint_node_name", ep.node_name)
                if ep.zone is not None:
                    put(t, META + "endpointslice_endpoint_zone", ep.zone)
                for k, v in ep.topology:
                    ln = sanitize(k)
                    put(t, f"{META}endpointslice_endpoint_topology_{ln}", v)
                    t[f"{META}endpointslice_endpoint_topology_present_{ln}"] = "true"
                if attach_node:
                    if ep.node_name is not None:
                        node_meta(t, get_node(ep.node_name))
                    elif ep.target is not None and ep.target.kind == "Node":
                        node_meta(t, get_node(ep.target.name))
                pod = _resolve_pod(ep.target, es.namespace, get_pod)
                if pod is not None:
                    entry = seen.setdefault((pod.namespace, pod.name), (pod, set()))
                    t.update(pod_labels(pod))
                    if port.port is not None:
                        found = _container_for_port(pod, port.port)
                        if found is not None:
                            c, init, i = found
                            _container_port_labels(t, c, init, i, c.ports[i].protocol)
                        entry[1].add(port.port)
                targets.append(t)
    targets.extend(_extra_pod_targets(seen))
    return TargetGroup(source=source, targets=tuple(targets), labels=labels)


def endpointslice_node_refs(es: EndpointSlice) -> set[str]:
    """Node names a slice's endpoints run on (re-trigger index)."""
    out: set[str] = set()
    for ep in es.endpoints:
        if ep.node_name is not None:
            out.add(ep.node_name)
        elif ep.target is not None and ep.target.kind == "Node":
            out.add(ep.target.name)
    return out
