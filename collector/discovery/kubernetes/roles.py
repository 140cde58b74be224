"""Role converters: slim Kubernetes objects -> `TargetGroup` (spec §2.4, §2.5), pure.

Each role has a ``source`` function and a ``*_group`` function. The group functions take the
primary object plus *lookups* for the objects they join (the Service of an Endpoints object, the
Pods its addresses point at, the Node a pod runs on, the Namespace). They do no I/O and keep no
state, so the discoverer can call them on whatever its informers hold, and tests can call them on
the sample objects.

Label values that are empty are left out: in Prometheus an empty label value *is* an absent
label (relabeling and target creation treat both alike), so leaving them out changes nothing
downstream and keeps groups small. Kubernetes labels with an empty value therefore show up only
as ``..._labelpresent_...="true"`` (spec §2.4, §11 #5).

Prometheus counterpart: ``discovery/kubernetes/{node,pod,service,endpoints,endpointslice,
ingress}.go`` (3.x).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from collector.discovery.kubernetes.objects import (
    Container,
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSlice,
    Ingress,
    Namespace,
    Node,
    ObjectRef,
    Pairs,
    Pod,
    Service,
    pairs_get,
)
from collector.model.targetgroup import TargetGroup

__all__ = [
    "NodeLookup",
    "PodLookup",
    "endpoints_group",
    "endpoints_source",
    "endpointslice_group",
    "endpointslice_source",
    "ingress_group",
    "ingress_source",
    "join_host_port",
    "matches_tls_host",
    "node_address",
    "node_group",
    "node_source",
    "pod_group",
    "pod_source",
    "sanitize",
    "service_group",
    "service_source",
]

META = "__meta_kubernetes_"
NAMESPACE = META + "namespace"
ADDRESS = "__address__"

Labels = dict[str, str]


_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Replace each character outside ``[A-Za-z0-9_]`` with ``_`` (Go ``SanitizeLabelName``)."""
    return _UNSAFE.sub("_", name)


def join_host_port(host: str, port: int | str) -> str:
    """Go's ``net.JoinHostPort``: brackets a host that contains ``:`` (IPv6)."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _put(labels: Labels, name: str, value: str) -> None:
    if value:
        labels[name] = value


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _object_meta(labels: Labels, role: str, name: str, lbls: Pairs, annotations: Pairs) -> None:
    """``addObjectMetaLabels``: ``_<role>_name`` plus labels and annotations with presence."""
    prefix = META + role
    _put(labels, prefix + "_name", name)
    for k, v in lbls:
        ln = sanitize(k)
        _put(labels, f"{prefix}_label_{ln}", v)
        labels[f"{prefix}_labelpresent_{ln}"] = "true"
    for k, v in annotations:
        ln = sanitize(k)
        _put(labels, f"{prefix}_annotation_{ln}", v)
        labels[f"{prefix}_annotationpresent_{ln}"] = "true"


def _namespace_meta(labels: Labels, ns: Namespace | None) -> None:
    """``attach_metadata.namespace``: namespace labels and annotations, no ``_name``."""
    if ns is None:
        return
    prefix = NAMESPACE
    for k, v in ns.labels:
        ln = sanitize(k)
        _put(labels, f"{prefix}_label_{ln}", v)
        labels[f"{prefix}_labelpresent_{ln}"] = "true"
    for k, v in ns.annotations:
        ln = sanitize(k)
        _put(labels, f"{prefix}_annotation_{ln}", v)
        labels[f"{prefix}_annotationpresent_{ln}"] = "true"


def _node_meta(labels: Labels, node: Node | None) -> None:
    """``attach_metadata.node``: node name, labels and annotations (not conditions/addresses)."""
    if node is not None:
        _object_meta(labels, "node", node.name, node.labels, node.annotations)


# ------------------------------------------------------------------------------------ node


def node_source(name: str) -> str:
    """``node/<name>``."""
    return "node/" + name


_NODE_ADDRESS_PRIORITY = (
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
)


def node_address(node: Node) -> tuple[str, dict[str, str]] | None:
    """The address to scrape by priority, and the first address of each type; None if none."""
    first: dict[str, str] = {}
    for typ, addr in node.addresses:
        first.setdefault(typ, addr)
    for typ in _NODE_ADDRESS_PRIORITY:
        if first.get(typ):
            return first[typ], first
    return None


def node_group(node: Node) -> TargetGroup | None:
    """The ``node`` role; None (send nothing) for a node with no usable address."""
    found = node_address(node)
    if found is None:
        return None
    address, first = found
    labels: Labels = {}
    _object_meta(labels, "node", node.name, node.labels, node.annotations)
    _put(labels, META + "node_provider_id", node.provider_id)
    for typ, status in node.conditions:
        _put(labels, f"{META}node_condition_{sanitize(typ.lower())}", status.lower())
    target: Labels = {
        ADDRESS: join_host_port(address, node.kubelet_port),
        "instance": node.name,
    }
    for typ, addr in first.items():
        _put(target, f"{META}node_address_{sanitize(typ)}", addr)
    return TargetGroup(source=node_source(node.name), targets=(target,), labels=labels)


# ------------------------------------------------------------------------------------ pod


def pod_source(namespace: str, name: str) -> str:
    """``pod/<ns>/<name>``."""
    return f"pod/{namespace}/{name}"


def pod_labels(pod: Pod) -> Labels:
    """``podLabels``: what a pod contributes to its own group and to endpoint targets."""
    labels: Labels = {}
    _object_meta(labels, "pod", pod.name, pod.labels, pod.annotations)
    _put(labels, META + "pod_ip", pod.pod_ip)
    _put(labels, META + "pod_ready", pod.ready)
    _put(labels, META + "pod_phase", pod.phase)
    _put(labels, META + "pod_node_name", pod.node_name)
    _put(labels, META + "pod_host_ip", pod.host_ip)
    _put(labels, META + "pod_uid", pod.uid)
    _put(labels, META + "pod_controller_kind", pod.controller_kind)
    _put(labels, META + "pod_controller_name", pod.controller_name)
    return labels


def _all_containers(pod: Pod) -> Iterable[tuple[Container, bool]]:
    for c in pod.containers:
        yield c, False
    for c in pod.init_containers:
        yield c, True


def pod_group(
    pod: Pod,
    *,
    attach_node: bool = False,
    node: Node | None = None,
    namespace: Namespace | None = None,
) -> TargetGroup:
    """The ``pod`` role: one target per container port, one per port-less container.

    An empty group (deletion) when the pod has no IP yet or any more (spec §11 #2), and with
    ``attach_node`` when its node is not in the node store (spec §2.5).
    """
    source = pod_source(pod.namespace, pod.name)
    if not pod.pod_ip or (attach_node and node is None):
        return TargetGroup(source=source)
    labels = pod_labels(pod)
    labels[NAMESPACE] = pod.namespace
    if attach_node:
        _node_meta(labels, node)
    _namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for c, init in _all_containers(pod):
        base: Labels = {META + "pod_container_name": c.name}
        _put(base, META + "pod_container_id", c.id)
        _put(base, META + "pod_container_image", c.image)
        base[META + "pod_container_init"] = _bool(init)
        if not c.ports:
            targets.append({ADDRESS: pod.pod_ip, **base})
            continue
        for p in c.ports:
            t: Labels = {ADDRESS: join_host_port(pod.pod_ip, p.number), **base}
            t[META + "pod_container_port_number"] = str(p.number)
            _put(t, META + "pod_container_port_name", p.name)
            _put(t, META + "pod_container_port_protocol", p.protocol)
            targets.append(t)
    return TargetGroup(source=source, targets=tuple(targets), labels=labels)


# ------------------------------------------------------------------------------------ service


def service_source(namespace: str, name: str) -> str:
    """``svc/<ns>/<name>`` (``svc``, not ``service``)."""
    return f"svc/{namespace}/{name}"


def service_labels(svc: Service) -> Labels:
    """``serviceLabels``: namespace, name, labels and annotations (no per-port labels)."""
    labels: Labels = {NAMESPACE: svc.namespace}
    _object_meta(labels, "service", svc.name, svc.labels, svc.annotations)
    return labels


def service_group(svc: Service, *, namespace: Namespace | None = None) -> TargetGroup:
    """The ``service`` role: one target per service port at ``<name>.<ns>.svc:<port>``."""
    labels = service_labels(svc)
    _namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for p in svc.ports:
        t: Labels = {ADDRESS: f"{svc.name}.{svc.namespace}.svc:{p.port}"}
        _put(t, META + "service_port_name", p.name)
        t[META + "service_port_number"] = str(p.port)
        _put(t, META + "service_port_protocol", p.protocol)
        _put(t, META + "service_type", svc.type)
        if svc.type == "ExternalName":
            _put(t, META + "service_external_name", svc.external_name)
        else:
            _put(t, META + "service_cluster_ip", svc.cluster_ip)
        if svc.type == "LoadBalancer":
            lb = ",".join(svc.ingress_ips) or svc.load_balancer_ip
            _put(t, META + "service_loadbalancer_ip", lb)
        targets.append(t)
    return TargetGroup(
        source=service_source(svc.namespace, svc.name), targets=tuple(targets), labels=labels
    )


# ------------------------------------------------------------------------------------ endpoints


def endpoints_source(namespace: str, name: str) -> str:
    """``endpoints/<ns>/<name>``."""
    return f"endpoints/{namespace}/{name}"


PodLookup = Callable[[str, str], Pod | None]
NodeLookup = Callable[[str], Node | None]


def _no_node(_name: str) -> Node | None:
    return None


def _container_for_port(pod: Pod, port: int) -> tuple[Container, bool, int] | None:
    """The first container (containers, then init containers) declaring ``port``."""
    for c, init in _all_containers(pod):
        for i, cp in enumerate(c.ports):
            if cp.number == port:
                return c, init, i
    return None


def _container_port_labels(t: Labels, c: Container, init: bool, index: int, protocol: str) -> None:
    cp = c.ports[index]
    t[META + "pod_container_name"] = c.name
    _put(t, META + "pod_container_image", c.image)
    _put(t, META + "pod_container_port_name", cp.name)
    t[META + "pod_container_port_number"] = str(cp.number)
    _put(t, META + "pod_container_port_protocol", protocol)
    t[META + "pod_container_init"] = _bool(init)


def _extra_pod_targets(seen: dict[tuple[str, str], tuple[Pod, set[int]]]) -> list[Labels]:
    """Container ports of the pods seen that no endpoint port covered (spec §11 #4)."""
    out: list[Labels] = []
    for pod, ports in seen.values():
        if not pod.pod_ip:
            continue
        plabels = pod_labels(pod)
        for c, init in _all_containers(pod):
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
    _object_meta(labels, "endpoints", eps.name, eps.labels, eps.annotations)
    _namespace_meta(labels, namespace)

    seen: dict[tuple[str, str], tuple[Pod, set[int]]] = {}
    targets: list[Labels] = []

    def add(addr: EndpointAddress, port: EndpointPort, ready: str) -> None:
        t: Labels = {ADDRESS: join_host_port(addr.ip, port.port)}
        _put(t, META + "endpoint_port_name", port.name)
        _put(t, META + "endpoint_port_protocol", port.protocol)
        t[META + "endpoint_ready"] = ready
        if addr.target is not None:
            _put(t, META + "endpoint_address_target_kind", addr.target.kind)
            _put(t, META + "endpoint_address_target_name", addr.target.name)
        if addr.node_name is not None:
            _put(t, META + "endpoint_node_name", addr.node_name)
        _put(t, META + "endpoint_hostname", addr.hostname)
        if attach_node:
            if addr.node_name is not None:
                _node_meta(t, get_node(addr.node_name))
            elif addr.target is not None and addr.target.kind == "Node":
                _node_meta(t, get_node(addr.target.name))
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
    _put(labels, META + "endpointslice_address_type", es.address_type)
    if service is not None:
        labels.update(service_labels(service))
    _object_meta(labels, "endpointslice", es.name, es.labels, es.annotations)
    _namespace_meta(labels, namespace)

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
                    _put(t, META + "endpointslice_port_name", port.name)
                if port.protocol is not None:
                    _put(t, META + "endpointslice_port_protocol", port.protocol)
                if port.port is not None:
                    t[META + "endpointslice_port"] = str(port.port)
                if port.app_protocol is not None:
                    _put(t, META + "endpointslice_port_app_protocol", port.app_protocol)
                if ep.ready is not None:
                    t[META + "endpointslice_endpoint_conditions_ready"] = _bool(ep.ready)
                if ep.serving is not None:
                    t[META + "endpointslice_endpoint_conditions_serving"] = _bool(ep.serving)
                if ep.terminating is not None:
                    t[META + "endpointslice_endpoint_conditions_terminating"] = _bool(
                        ep.terminating
                    )
                if ep.hostname is not None:
                    _put(t, META + "endpointslice_endpoint_hostname", ep.hostname)
                if ep.target is not None:
                    _put(t, META + "endpointslice_address_target_kind", ep.target.kind)
                    _put(t, META + "endpointslice_address_target_name", ep.target.name)
                if ep.node_name is not None:
                    _put(t, META + "endpointslice_endpoint_node_name", ep.node_name)
                if ep.zone is not None:
                    _put(t, META + "endpointslice_endpoint_zone", ep.zone)
                for k, v in ep.topology:
                    ln = sanitize(k)
                    _put(t, f"{META}endpointslice_endpoint_topology_{ln}", v)
                    t[f"{META}endpointslice_endpoint_topology_present_{ln}"] = "true"
                if attach_node:
                    if ep.node_name is not None:
                        _node_meta(t, get_node(ep.node_name))
                    elif ep.target is not None and ep.target.kind == "Node":
                        _node_meta(t, get_node(ep.target.name))
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


# ------------------------------------------------------------------------------------ ingress


def ingress_source(namespace: str, name: str) -> str:
    """``ingress/<ns>/<name>``."""
    return f"ingress/{namespace}/{name}"


def matches_tls_host(pattern: str, host: str) -> bool:
    """``matchesHostnamePattern``: exact, or ``*.rest`` with as many labels and the same rest."""
    if pattern == host:
        return True
    pparts = pattern.split(".")
    hparts = host.split(".")
    if len(pparts) != len(hparts) or pparts[0] != "*":
        return False
    return pparts[1:] == hparts[1:]


def ingress_group(ing: Ingress, *, namespace: Namespace | None = None) -> TargetGroup:
    """The ``ingress`` role: one target per rule and path; ``__address__`` is the bare host."""
    labels: Labels = {NAMESPACE: ing.namespace}
    _object_meta(labels, "ingress", ing.name, ing.labels, ing.annotations)
    _put(labels, META + "ingress_class_name", ing.class_name)
    _namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for rule in ing.rules:
        scheme = "https" if any(matches_tls_host(p, rule.host) for p in ing.tls_hosts) else "http"
        for path in rule.paths:
            t: Labels = {}
            _put(t, ADDRESS, rule.host)
            t[META + "ingress_scheme"] = scheme
            _put(t, META + "ingress_host", rule.host)
            t[META + "ingress_path"] = path
            targets.append(t)
    return TargetGroup(
        source=ingress_source(ing.namespace, ing.name), targets=tuple(targets), labels=labels
    )
