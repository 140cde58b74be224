"""Kubernetes objects: the wire shapes we read, and the slim copies the informer keeps.

The API server sends whole objects (a pod is 5–15 KB of JSON with ``managedFields``, probes,
volumes). Roles read a few dozen fields, so the informer converts every object to a *slim*
frozen value on arrival and keeps only that: the store of 10,000 pods stays well under 2 KB a
pod. Strings that repeat across objects (label keys and values, namespaces, node names, images,
phases) are interned so each distinct value exists once.

- ``Raw*`` TypedDicts describe the wire JSON (``total=False``: every field may be missing).
- ``Node``, ``Pod``, ``Service``, ``Endpoints``, ``EndpointSlice``, ``Ingress``, ``Namespace`` are
  the slim values; nested parts are NamedTuples (plain tuples in memory).
- ``*_from_raw`` converts one wire object; ``SLIM`` maps a resource name to its converter.

Equality of slim values is what the informer uses to drop no-op updates (a pod whose only change
was a probe timestamp produces no work downstream).

Prometheus counterpart: the ``k8s.io/api`` structs that ``discovery/kubernetes/*.go`` read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, TypedDict

__all__ = [
    "SLIM",
    "Container",
    "ContainerPort",
    "EndpointAddress",
    "EndpointPort",
    "EndpointSlice",
    "EndpointSubset",
    "Endpoints",
    "Ingress",
    "IngressRule",
    "Namespace",
    "Node",
    "ObjectRef",
    "Pairs",
    "Pod",
    "RawObject",
    "Service",
    "ServicePort",
    "SliceEndpoint",
    "SlicePort",
    "SlimObject",
    "object_key",
]

Pairs: TypeAlias = tuple[tuple[str, str], ...]
"""An immutable mapping kept as sorted ``(key, value)`` pairs: smaller than a dict."""

_intern = sys.intern


# ---------------------------------------------------------------------------------- wire shapes


class RawOwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool


class RawObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    labels: dict[str, str] | None
    annotations: dict[str, str] | None
    ownerReferences: list[RawOwnerReference] | None


class RawObject(TypedDict, total=False):
    """Any object on the wire: what the informer needs before knowing the kind."""

    kind: str
    apiVersion: str
    metadata: RawObjectMeta
    spec: Any
    status: Any


class RawNodeAddress(TypedDict, total=False):
    type: str
    address: str


class RawCondition(TypedDict, total=False):
    type: str
    status: str


class RawContainerPort(TypedDict, total=False):
    name: str
    containerPort: int
    protocol: str


class RawContainer(TypedDict, total=False):
    name: str
    image: str
    ports: list[RawContainerPort] | None


class RawContainerStatus(TypedDict, total=False):
    name: str
    containerID: str


class RawPodSpec(TypedDict, total=False):
    nodeName: str
    containers: list[RawContainer] | None
    initContainers: list[RawContainer] | None


class RawPodStatus(TypedDict, total=False):
    phase: str
    podIP: str
    hostIP: str
    conditions: list[RawCondition] | None
    containerStatuses: list[RawContainerStatus] | None
    initContainerStatuses: list[RawContainerStatus] | None


class RawServicePort(TypedDict, total=False):
    name: str
    port: int
    protocol: str


class RawLoadBalancerIngress(TypedDict, total=False):
    ip: str
    hostname: str


class RawObjectReference(TypedDict, total=False):
    kind: str
    name: str
    namespace: str


class RawEndpointAddress(TypedDict, total=False):
    ip: str
    hostname: str
    nodeName: str
    targetRef: RawObjectReference


class RawEndpointPort(TypedDict, total=False):
    name: str
    port: int
    protocol: str
    appProtocol: str


class RawEndpointSubset(TypedDict, total=False):
    addresses: list[RawEndpointAddress] | None
    notReadyAddresses: list[RawEndpointAddress] | None
    ports: list[RawEndpointPort] | None


class RawSliceConditions(TypedDict, total=False):
    ready: bool | None
    serving: bool | None
    terminating: bool | None


class RawSliceEndpoint(TypedDict, total=False):
    addresses: list[str] | None
    conditions: RawSliceConditions
    hostname: str
    nodeName: str
    zone: str
    targetRef: RawObjectReference
    deprecatedTopology: dict[str, str] | None


def _get(obj: object, key: str) -> Any:
    """``obj[key]`` or None; tolerates a missing, null or non-object parent."""
    if not isinstance(obj, dict):
        return None
    return obj.get(key)


def _obj(value: object) -> Mapping[str, Any]:
    """A section that must be a JSON object (metadata, spec, status); anything else is empty.

    The API server validates what it stores, so a list or string there comes from something in
    between (a proxy, a broken aggregated API): the object is kept without that section, as a
    missing field is, rather than failing the whole list or watch (fuzzing: ``"spec": "x"``).
    """
    return value if isinstance(value, dict) else _EMPTY


_EMPTY: Mapping[str, Any] = {}


# ---------------------------------------------------------------------------------- slim values


class ObjectRef(NamedTuple):
    """A ``targetRef``: the object an endpoint address points at."""

    kind: str
    name: str
    namespace: str


class ContainerPort(NamedTuple):
    name: str
    number: int
    protocol: str


class Container(NamedTuple):
    name: str
    image: str
    id: str
    """``containerID`` from the matching container status, e.g. ``containerd://…``; "" if none."""
    ports: tuple[ContainerPort, ...]


class ServicePort(NamedTuple):
    name: str
    port: int
    protocol: str


class EndpointAddress(NamedTuple):
    ip: str
    hostname: str
    node_name: str | None
    target: ObjectRef | None


class EndpointPort(NamedTuple):
    name: str
    port: int
    protocol: str


class EndpointSubset(NamedTuple):
    addresses: tuple[EndpointAddress, ...]
    not_ready: tuple[EndpointAddress, ...]
    ports: tuple[EndpointPort, ...]


class SliceEndpoint(NamedTuple):
    addresses: tuple[str, ...]
    ready: bool | None
    serving: bool | None
    terminating: bool | None
    hostname: str | None
    node_name: str | None
    zone: str | None
    target: ObjectRef | None
    topology: Pairs


class SlicePort(NamedTuple):
    name: str | None
    port: int | None
    protocol: str | None
    app_protocol: str | None


class IngressRule(NamedTuple):
    host: str
    paths: tuple[str, ...]
    """Already normalised: a rule without ``http`` has ``("/",)``; an empty path is ``"/"``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    labels: Pairs
    annotations: Pairs
    provider_id: str
    conditions: Pairs
    """``(type, status)`` in object order."""
    addresses: Pairs
    """``(type, address)`` in object order."""
    kubelet_port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Pairs
    annotations: Pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    name: str
    namespace: str
    uid: str
    labels: Pairs
    annotations: Pairs
    controller_kind: str
    controller_name: str
    node_name: str
    host_ip: str
    pod_ip: str
    phase: str
    ready: str
    """Lower-cased status of the ``Ready`` condition, ``unknown`` when absent."""
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    name: str
    namespace: str
    labels: Pairs
    annotations: Pairs
    type: str
    cluster_ip: str
    external_name: str
    load_balancer_ip: str
    """``spec.loadBalancerIP`` (deprecated; the fallback when status has no ingress IP)."""
    ingress_ips: tuple[str, ...]
    """Non-empty ``status.loadBalancer.ingress[].ip``."""
    ip_family_policy: str
    ip_families: tuple[str, ...]
    ports: tuple[ServicePort, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    name: str
    namespace: str
    labels: Pairs
    annotations: Pairs
    subsets: tuple[EndpointSubset, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    name: str
    namespace: str
    labels: Pairs
    annotations: Pairs
    address_type: str
    endpoints: tuple[SliceEndpoint, ...]
    ports: tuple[SlicePort, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingress:
    name: str
    namespace: str
    labels: Pairs
    annotations: Pairs
    class_name: str
    tls_hosts: tuple[str, ...]
    rules: tuple[IngressRule, ...]


SlimObject: TypeAlias = Node | Namespace | Pod | Service | Endpoints | EndpointSlice | Ingress


# ---------------------------------------------------------------------------------- converters


def _s(value: object) -> str:
    """A string field; null, missing and non-strings become ""."""
    return value if isinstance(value, str) else ""


def _i(value: object) -> str:
    """A string worth interning (repeats across objects)."""
    return _intern(value) if isinstance(value, str) else ""


def _pairs(mapping: object) -> Pairs:
    if not isinstance(mapping, dict) or not mapping:
        return ()
    return tuple(sorted((_intern(str(k)), _i(v)) for k, v in mapping.items()))


def _annotations(mapping: object) -> Pairs:
    # Annotation values are often unique blobs (last-applied-configuration): intern keys only.
    if not isinstance(mapping, dict) or not mapping:
        return ()
    return tuple(sorted((_intern(str(k)), _s(v)) for k, v in mapping.items()))


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _ref(raw: object) -> ObjectRef | None:
    if not isinstance(raw, dict):
        return None
    return ObjectRef(_i(raw.get("kind")), _s(raw.get("name")), _i(raw.get("namespace")))


def _opt_bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _opt_str(value: object, *, intern: bool = True) -> str | None:
    if not isinstance(value, str):
        return None
    return _intern(value) if intern else value


def _port(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def node_from_raw(raw: Mapping[str, Any]) -> Node:
    """Slim a Node."""
    meta = _obj(raw.get("metadata"))
    spec = _obj(raw.get("spec"))
    status = _obj(raw.get("status"))
    kubelet = _get(_get(status, "daemonEndpoints"), "kubeletEndpoint")
    return Node(
        name=_i(meta.get("name")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        provider_id=_s(spec.get("providerID")),
        conditions=tuple(
            (_i(c.get("type")), _i(c.get("status")))
            for c in _list(status.get("conditions"))
            if isinstance(c, dict)
        ),
        addresses=tuple(
            (_i(a.get("type")), _i(a.get("address")))
            for a in _list(status.get("addresses"))
            if isinstance(a, dict)
        ),
        kubelet_port=_port(_get(kubelet, "Port")),
    )


def namespace_from_raw(raw: Mapping[str, Any]) -> Namespace:
    """Slim a Namespace."""
    meta = _obj(raw.get("metadata"))
    return Namespace(
        name=_i(meta.get("name")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
    )


def _containers(raw: object, statuses: object) -> tuple[Container, ...]:
    ids = {  # only string names: a list or object there is unhashable (fuzzing)
        s["name"]: _s(s.get("containerID"))
        for s in _list(statuses)
        if isinstance(s, dict) and isinstance(s.get("name"), str)
    }
    out = []
    for c in _list(raw):
        if not isinstance(c, dict):
            continue
        name = _i(c.get("name"))
        ports = tuple(
            ContainerPort(_i(p.get("name")), _port(p.get("containerPort")), _i(p.get("protocol")))
            for p in _list(c.get("ports"))
            if isinstance(p, dict)
        )
        out.append(Container(name, _i(c.get("image")), ids.get(name, ""), ports))
    return tuple(out)


def pod_from_raw(raw: Mapping[str, Any]) -> Pod:
    """Slim a Pod."""
    meta = _obj(raw.get("metadata"))
    spec = _obj(raw.get("spec"))
    status = _obj(raw.get("status"))
    controller_kind = controller_name = ""
    for ref in _list(meta.get("ownerReferences")):
        if isinstance(ref, dict) and ref.get("controller") is True:
            controller_kind, controller_name = _i(ref.get("kind")), _i(ref.get("name"))
            break
    ready = "unknown"
    for cond in _list(status.get("conditions")):
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            ready = _intern(_s(cond.get("status")).lower())
            break
    return Pod(
        name=_s(meta.get("name")),
        namespace=_i(meta.get("namespace")),
        uid=_s(meta.get("uid")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        controller_kind=controller_kind,
        controller_name=controller_name,
        node_name=_i(spec.get("nodeName")),
        host_ip=_i(status.get("hostIP")),
        pod_ip=_s(status.get("podIP")),
        phase=_i(status.get("phase")),
        ready=ready,
        containers=_containers(spec.get("containers"), status.get("containerStatuses")),
        init_containers=_containers(
            spec.get("initContainers"), status.get("initContainerStatuses")
        ),
    )


def service_from_raw(raw: Mapping[str, Any]) -> Service:
    """Slim a Service."""
    meta = _obj(raw.get("metadata"))
    spec = _obj(raw.get("spec"))
    status = _obj(raw.get("status"))
    ingress = _list(_get(_get(status, "loadBalancer"), "ingress"))
    return Service(
        name=_i(meta.get("name")),
        namespace=_i(meta.get("namespace")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        type=_i(spec.get("type")),
        cluster_ip=_s(spec.get("clusterIP")),
        external_name=_s(spec.get("externalName")),
        load_balancer_ip=_s(spec.get("loadBalancerIP")),
        ingress_ips=tuple(
            _s(i.get("ip")) for i in ingress if isinstance(i, dict) and _s(i.get("ip"))
        ),
        ip_family_policy=_i(spec.get("ipFamilyPolicy")),
        ip_families=tuple(_i(f) for f in _list(spec.get("ipFamilies"))),
        ports=tuple(
            ServicePort(_i(p.get("name")), _port(p.get("port")), _i(p.get("protocol")))
            for p in _list(spec.get("ports"))
            if isinstance(p, dict)
        ),
    )


def _address(raw: Mapping[str, Any]) -> EndpointAddress:
    return EndpointAddress(
        _s(raw.get("ip")),
        _s(raw.get("hostname")),
        _opt_str(raw.get("nodeName")),
        _ref(raw.get("targetRef")),
    )


def endpoints_from_raw(raw: Mapping[str, Any]) -> Endpoints:
    """Slim an Endpoints object."""
    meta = _obj(raw.get("metadata"))
    subsets = []
    for ss in _list(raw.get("subsets")):
        if not isinstance(ss, dict):
            continue
        subsets.append(
            EndpointSubset(
                tuple(_address(a) for a in _list(ss.get("addresses")) if isinstance(a, dict)),
                tuple(
                    _address(a) for a in _list(ss.get("notReadyAddresses")) if isinstance(a, dict)
                ),
                tuple(
                    EndpointPort(_i(p.get("name")), _port(p.get("port")), _i(p.get("protocol")))
                    for p in _list(ss.get("ports"))
                    if isinstance(p, dict)
                ),
            )
        )
    return Endpoints(
        name=_i(meta.get("name")),
        namespace=_i(meta.get("namespace")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        subsets=tuple(subsets),
    )


def endpointslice_from_raw(raw: Mapping[str, Any]) -> EndpointSlice:
    """Slim a ``discovery.k8s.io/v1`` EndpointSlice."""
    meta = _obj(raw.get("metadata"))
    endpoints = []
    for ep in _list(raw.get("endpoints")):
        if not isinstance(ep, dict):
            continue
        cond = _obj(ep.get("conditions"))
        endpoints.append(
            SliceEndpoint(
                tuple(_s(a) for a in _list(ep.get("addresses"))),
                _opt_bool(cond.get("ready")),
                _opt_bool(cond.get("serving")),
                _opt_bool(cond.get("terminating")),
                _opt_str(ep.get("hostname"), intern=False),
                _opt_str(ep.get("nodeName")),
                _opt_str(ep.get("zone")),
                _ref(ep.get("targetRef")),
                _pairs(ep.get("deprecatedTopology")),
            )
        )
    ports = []
    for p in _list(raw.get("ports")):
        if not isinstance(p, dict):
            continue
        number = p.get("port")
        ports.append(
            SlicePort(
                _opt_str(p.get("name")),
                number if isinstance(number, int) and not isinstance(number, bool) else None,
                _opt_str(p.get("protocol")),
                _opt_str(p.get("appProtocol")),
            )
        )
    return EndpointSlice(
        name=_s(meta.get("name")),
        namespace=_i(meta.get("namespace")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        address_type=_i(raw.get("addressType")),
        endpoints=tuple(endpoints),
        ports=tuple(ports),
    )


def ingress_from_raw(raw: Mapping[str, Any]) -> Ingress:
    """Slim a ``networking.k8s.io/v1`` Ingress."""
    meta = _obj(raw.get("metadata"))
    spec = _obj(raw.get("spec"))
    tls_hosts = tuple(
        _s(h) for t in _list(spec.get("tls")) if isinstance(t, dict) for h in _list(t.get("hosts"))
    )
    rules = []
    for rule in _list(spec.get("rules")):
        if not isinstance(rule, dict):
            continue
        http = rule.get("http")
        if not isinstance(http, dict):
            paths: tuple[str, ...] = ("/",)
        else:
            paths = tuple(
                _s(p.get("path")) or "/" for p in _list(http.get("paths")) if isinstance(p, dict)
            )
        rules.append(IngressRule(_s(rule.get("host")), paths))
    return Ingress(
        name=_i(meta.get("name")),
        namespace=_i(meta.get("namespace")),
        labels=_pairs(meta.get("labels")),
        annotations=_annotations(meta.get("annotations")),
        class_name=_s(spec.get("ingressClassName")),
        tls_hosts=tls_hosts,
        rules=tuple(rules),
    )


SLIM: Mapping[str, Callable[[Mapping[str, Any]], SlimObject]] = {
    "nodes": node_from_raw,
    "namespaces": namespace_from_raw,
    "pods": pod_from_raw,
    "services": service_from_raw,
    "endpoints": endpoints_from_raw,
    "endpointslices": endpointslice_from_raw,
    "ingresses": ingress_from_raw,
}
"""Resource name (URL plural) -> slim converter."""


def object_key(raw: Mapping[str, Any]) -> str:
    """The store key: ``<namespace>/<name>``, or ``<name>`` for cluster-scoped objects."""
    meta = _obj(raw.get("metadata"))
    ns = _s(meta.get("namespace"))
    name = _s(meta.get("name"))
    return f"{ns}/{name}" if ns else name


def pairs_get(pairs: Iterable[tuple[str, str]], key: str) -> str | None:
    """Look a key up in `Pairs`."""
    for k, v in pairs:
        if k == key:
            return v
    return None
