"""Role converters: slim Kubernetes objects -> `TargetGroup` (spec §2.4, §2.5), pure.

Each role has a ``source`` function and a ``*_group`` function. The group functions take the
primary object plus the objects they join (the Node a pod runs on, the Namespace). They do no
I/O and keep no state, so the discoverer can call them on whatever its informers hold, and tests
can call them on the sample objects. The ``endpoints`` and ``endpointslice`` roles, which join
Services and Pods through lookups, live in `collector.discovery.kubernetes.endpoints` and build on
the label helpers here (`put`, `object_meta`, `pod_labels`, ...).

Label values that are empty are left out: in Prometheus an empty label value *is* an absent
label (relabeling and target creation treat both alike), so leaving them out changes nothing
downstream and keeps groups small. Kubernetes labels with an empty value therefore show up only
as ``..._labelpresent_...="true"`` (spec §2.4, §11 #5).

Prometheus counterpart: ``discovery/kubernetes/{node,pod,service,ingress}.go`` (3.x).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from collector.discovery.kubernetes.objects import (
    Container,
    Ingress,
    Namespace,
    Node,
    Pairs,
    Pod,
    Service,
)
from collector.model.targetgroup import TargetGroup

__all__ = [
    "ADDRESS",
    "META",
    "NAMESPACE",
    "Labels",
    "all_containers",
    "bool_label",
    "ingress_group",
    "ingress_source",
    "join_host_port",
    "matches_tls_host",
    "namespace_meta",
    "node_address",
    "node_group",
    "node_meta",
    "node_source",
    "object_meta",
    "pod_group",
    "pod_labels",
    "pod_source",
    "put",
    "sanitize",
    "service_group",
    "service_labels",
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


def put(labels: Labels, name: str, value: str) -> None:
    """Set ``name`` unless ``value`` is empty (an empty value is an absent label)."""
    if value:
        labels[name] = value


def bool_label(value: bool) -> str:
    """Go's ``strconv.FormatBool``."""
    return "true" if value else "false"


def object_meta(labels: Labels, role: str, name: str, lbls: Pairs, annotations: Pairs) -> None:
    """``addObjectMetaLabels``: ``_<role>_name`` plus labels and annotations with presence."""
    prefix = META + role
    put(labels, prefix + "_name", name)
    for k, v in lbls:
        ln = sanitize(k)
        put(labels, f"{prefix}_label_{ln}", v)
        labels[f"{prefix}_labelpresent_{ln}"] = "true"
    for k, v in annotations:
        ln = sanitize(k)
        put(labels, f"{prefix}_annotation_{ln}", v)
        labels[f"{prefix}_annotationpresent_{ln}"] = "true"


def namespace_meta(labels: Labels, ns: Namespace | None) -> None:
    """``attach_metadata.namespace``: namespace labels and annotations, no ``_name``."""
    if ns is None:
        return
    prefix = NAMESPACE
    for k, v in ns.labels:
        ln = sanitize(k)
        put(labels, f"{prefix}_label_{ln}", v)
        labels[f"{prefix}_labelpresent_{ln}"] = "true"
    for k, v in ns.annotations:
        ln = sanitize(k)
        put(labels, f"{prefix}_annotation_{ln}", v)
        labels[f"{prefix}_annotationpresent_{ln}"] = "true"


def node_meta(labels: Labels, node: Node | None) -> None:
    """``attach_metadata.node``: node name, labels and annotations (not conditions/addresses)."""
    if node is not None:
        object_meta(labels, "node", node.name, node.labels, node.annotations)


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
    object_meta(labels, "node", node.name, node.labels, node.annotations)
    put(labels, META + "node_provider_id", node.provider_id)
    for typ, status in node.conditions:
        put(labels, f"{META}node_condition_{sanitize(typ.lower())}", status.lower())
    target: Labels = {
        ADDRESS: join_host_port(address, node.kubelet_port),
        "instance": node.name,
    }
    for typ, addr in first.items():
        put(target, f"{META}node_address_{sanitize(typ)}", addr)
    return TargetGroup(source=node_source(node.name), targets=(target,), labels=labels)


# ------------------------------------------------------------------------------------ pod


def pod_source(namespace: str, name: str) -> str:
    """``pod/<ns>/<name>``."""
    return f"pod/{namespace}/{name}"


def pod_labels(pod: Pod) -> Labels:
    """``podLabels``: what a pod contributes to its own group and to endpoint targets."""
    labels: Labels = {}
    object_meta(labels, "pod", pod.name, pod.labels, pod.annotations)
    put(labels, META + "pod_ip", pod.pod_ip)
    put(labels, META + "pod_ready", pod.ready)
    put(labels, META + "pod_phase", pod.phase)
    put(labels, META + "pod_node_name", pod.node_name)
    put(labels, META + "pod_host_ip", pod.host_ip)
    put(labels, META + "pod_uid", pod.uid)
    put(labels, META + "pod_controller_kind", pod.controller_kind)
    put(labels, META + "pod_controller_name", pod.controller_name)
    return labels


def all_containers(pod: Pod) -> Iterable[tuple[Container, bool]]:
    """Containers, then init containers, each with its ``init`` flag (Prometheus's order)."""
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
        node_meta(labels, node)
    namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for c, init in all_containers(pod):
        base: Labels = {META + "pod_container_name": c.name}
        put(base, META + "pod_container_id", c.id)
        put(base, META + "pod_container_image", c.image)
        base[META + "pod_container_init"] = bool_label(init)
        if not c.ports:
            targets.append({ADDRESS: pod.pod_ip, **base})
            continue
        for p in c.ports:
            t: Labels = {ADDRESS: join_host_port(pod.pod_ip, p.number), **base}
            t[META + "pod_container_port_number"] = str(p.number)
            put(t, META + "pod_container_port_name", p.name)
            put(t, META + "pod_container_port_protocol", p.protocol)
            targets.append(t)
    return TargetGroup(source=source, targets=tuple(targets), labels=labels)


# ------------------------------------------------------------------------------------ service


def service_source(namespace: str, name: str) -> str:
    """``svc/<ns>/<name>`` (``svc``, not ``service``)."""
    return f"svc/{namespace}/{name}"


def service_labels(svc: Service) -> Labels:
    """``serviceLabels``: namespace, name, labels and annotations (no per-port labels)."""
    labels: Labels = {NAMESPACE: svc.namespace}
    object_meta(labels, "service", svc.name, svc.labels, svc.annotations)
    return labels


def service_group(svc: Service, *, namespace: Namespace | None = None) -> TargetGroup:
    """The ``service`` role: one target per service port at ``<name>.<ns>.svc:<port>``."""
    labels = service_labels(svc)
    namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for p in svc.ports:
        t: Labels = {ADDRESS: f"{svc.name}.{svc.namespace}.svc:{p.port}"}
        put(t, META + "service_port_name", p.name)
        t[META + "service_port_number"] = str(p.port)
        put(t, META + "service_port_protocol", p.protocol)
        put(t, META + "service_type", svc.type)
        if svc.type == "ExternalName":
            put(t, META + "service_external_name", svc.external_name)
        else:
            put(t, META + "service_cluster_ip", svc.cluster_ip)
        if svc.type == "LoadBalancer":
            lb = ",".join(svc.ingress_ips) or svc.load_balancer_ip
            put(t, META + "service_loadbalancer_ip", lb)
        targets.append(t)
    return TargetGroup(
        source=service_source(svc.namespace, svc.name), targets=tuple(targets), labels=labels
    )


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
    object_meta(labels, "ingress", ing.name, ing.labels, ing.annotations)
    put(labels, META + "ingress_class_name", ing.class_name)
    namespace_meta(labels, namespace)
    targets: list[Labels] = []
    for rule in ing.rules:
        scheme = "https" if any(matches_tls_host(p, rule.host) for p in ing.tls_hosts) else "http"
        for path in rule.paths:
            t: Labels = {}
            put(t, ADDRESS, rule.host)
            t[META + "ingress_scheme"] = scheme
            put(t, META + "ingress_host", rule.host)
            t[META + "ingress_path"] = path
            targets.append(t)
    return TargetGroup(
        source=ingress_source(ing.namespace, ing.name), targets=tuple(targets), labels=labels
    )
