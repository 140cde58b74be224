"""Our Kubernetes SD against vmagent 1.79's, on the same real kube-apiserver v1.20.2.

The whole agent (``running_agent``) and vmagent (``vmagent_oracle``) get the same scrape config:
one job per role and option both support (namespaces, label and field selectors,
``attach_metadata.node`` for pod and endpoints), each with a ``labelmap`` that copies every
``__meta_kubernetes_*`` label into the target labels, so ``labels`` shows the meta labels too.
Both ``/api/v1/targets`` are compared per target, ``discoveredLabels`` and ``labels`` as sets,
after `DIFFERENCES` rewrote vmagent's output toward Prometheus's (prometheus-spec.md §2,
/work/shared/reference/vmagent-oracle.md). Targets are matched by job, ``__address__`` and the
meta labels that tell targets on one address apart. Any other difference fails.

EndpointSlice is not here: v1.20 serves only ``discovery.k8s.io/v1beta1`` and both agents read
``v1`` (the fake API server tests that role).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import eventually, running_agent
from tests.integration.vmagent import vmagent_oracle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

M = "__meta_kubernetes_"
MAPPED = "k8s_"  # the labelmap target prefix: __meta_kubernetes_X -> k8s_X
IMAGE = "example.invalid/app:1"
NS_A, NS_B = "orc-a", "orc-b"

Labels = dict[str, str]


# ----------------------------------------------------------------------------- the jobs

JOBS: dict[str, tuple[str, str]] = {
    # job: (role, YAML of the options besides role and kubeconfig_file)
    "node": ("node", ""),
    "node-label": ("node", "selectors: [{role: node, label: 'zone=a'}]"),
    "node-field": ("node", "selectors: [{role: node, field: 'metadata.name=orc-n2'}]"),
    "pod": ("pod", f"namespaces: {{names: [{NS_A}, {NS_B}]}}"),
    "pod-label": (
        "pod",
        f"namespaces: {{names: [{NS_A}, {NS_B}]}}\n"
        "        selectors: [{role: pod, label: 'app=web'}]",
    ),
    "pod-field": (
        "pod",
        f"namespaces: {{names: [{NS_A}, {NS_B}]}}\n"
        "        selectors: [{role: pod, field: 'spec.nodeName=orc-n1'}]",
    ),
    "pod-attach-node": (
        "pod",
        f"namespaces: {{names: [{NS_A}, {NS_B}]}}\n        attach_metadata: {{node: true}}",
    ),
    "service": ("service", f"namespaces: {{names: [{NS_A}, {NS_B}]}}"),
    "service-label": (
        "service",
        f"namespaces: {{names: [{NS_A}]}}\n        selectors: [{{role: service, label: 'tier'}}]",
    ),
    "endpoints": ("endpoints", f"namespaces: {{names: [{NS_A}, {NS_B}]}}"),
    "endpoints-attach-node": (
        "endpoints",
        f"namespaces: {{names: [{NS_A}]}}\n        attach_metadata: {{node: true}}",
    ),
    "ingress": ("ingress", f"namespaces: {{names: [{NS_A}, {NS_B}]}}"),
    "ingress-label": (
        "ingress",
        f"namespaces: {{names: [{NS_A}, {NS_B}]}}\n"
        "        selectors: [{role: ingress, label: 'app=web'}]",
    ),
}


def scrape_config(kubeconfig: Path) -> str:
    jobs = []
    for job, (role, options) in JOBS.items():
        extra = f"\n        {options}" if options else ""
        jobs.append(
            f"""
  - job_name: {job}
    kubernetes_sd_configs:
      - role: {role}
        kubeconfig_file: {kubeconfig}{extra}
    scrape_interval: 1h
    relabel_configs:
      - action: labelmap
        regex: __meta_kubernetes_(.+)
        replacement: {MAPPED}$1"""
        )
    # Per job: vmagent_oracle passes only scrape_configs on (no global section).
    return "scrape_configs:" + "".join(jobs)


# ----------------------------------------------------------------------------- the cluster


def node(name: str, addresses: list[tuple[str, str]], labels: Labels) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"rack": "r1"}},
        "status": {
            "addresses": [{"type": t, "address": a} for t, a in addresses],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    if name == "orc-n1":
        body["spec"] = {"providerID": "fake://orc-n1"}
    return body


def pod(
    name: str,
    node_name: str,
    labels: Labels,
    ports: list[tuple[str, int]],
    *,
    init_port: int = 0,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node_name,
        "containers": [
            {
                "name": "app",
                "image": IMAGE,
                "ports": [
                    {"containerPort": p, "protocol": "TCP", **({"name": n} if n else {})}
                    for n, p in ports
                ],
            }
        ],
    }
    if init_port:
        spec["initContainers"] = [
            {
                "name": "init",
                "image": IMAGE,
                "ports": [{"name": "init", "containerPort": init_port, "protocol": "TCP"}],
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "blank": ""},
        },
        "spec": spec,
    }


def running(ip: str, host_ip: str, *, ready: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": host_ip,
        "containerStatuses": [
            {
                "name": "app",
                "ready": True,
                "restartCount": 0,
                "image": IMAGE,
                "imageID": "",
                "containerID": f"containerd://{ip.replace('.', '')}",
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
            }
        ],
    }
    if ready:
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    return status


def service(name: str, spec: dict[str, Any], labels: Labels) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels, "annotations": {"team": "obs"}},
        "spec": spec,
    }


def populate(kube: KubeAPIServer) -> None:
    """Nodes, pods, services, endpoints and ingresses covering each role's label cases."""
    kube.create(
        "/api/v1/nodes",
        node(
            "orc-n1",
            [("InternalIP", "10.0.9.1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "orc-n1")],
            {"zone": "a", "empty": "", "kubernetes.io/os": "linux"},
        ),
    )
    kube.create(
        "/api/v1/nodes",
        node("orc-n2", [("ExternalIP", "192.0.2.2"), ("Hostname", "orc-n2")], {"zone": "b"}),
    )
    for ns in (NS_A, NS_B):
        kube.ensure_namespace(ns)
    a, b = f"/api/v1/namespaces/{NS_A}", f"/api/v1/namespaces/{NS_B}"

    web1 = pod("web-1", "orc-n1", {"app": "web", "empty": ""}, [("http", 8080), ("", 9100)])
    web1["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d4f",
            "uid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "controller": True,
        }
    ]
    kube.create(f"{a}/pods", web1)
    kube.patch_status(f"{a}/pods/web-1", running("10.1.9.1", "10.0.9.1"))
    kube.create(
        f"{a}/pods", pod("web-2", "orc-n2", {"app": "web"}, [("http", 8080)], init_port=9000)
    )
    kube.patch_status(f"{a}/pods/web-2", running("10.1.9.2", "192.0.2.2"))
    kube.create(f"{a}/pods", pod("bare", "orc-n1", {"app": "bare"}, []))
    kube.patch_status(f"{a}/pods/bare", running("10.1.9.3", "10.0.9.1", ready=False))
    kube.create(f"{a}/pods", pod("pending", "orc-n1", {"app": "web"}, [("http", 8080)]))
    kube.create(f"{b}/pods", pod("other", "orc-n2", {"app": "web"}, [("metrics", 9100)]))
    kube.patch_status(f"{b}/pods/other", running("10.1.9.4", "192.0.2.2"))

    kube.create(
        f"{a}/services",
        service(
            "web",
            {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "metrics", "port": 9100, "protocol": "TCP"},
                ],
            },
            {"app": "web", "tier": "front"},
        ),
    )
    kube.create(
        f"{a}/services",
        service(
            "ext",
            {"type": "ExternalName", "externalName": "db.example.com", "ports": [{"port": 5432}]},
            {"app": "db"},
        ),
    )
    kube.create(
        f"{a}/services",
        service("np", {"type": "NodePort", "ports": [{"port": 53, "protocol": "UDP"}]}, {}),
    )
    kube.create(
        f"{a}/services",
        service("headless", {"clusterIP": "None", "ports": [{"name": "x", "port": 7}]}, {}),
    )
    kube.create(
        f"{b}/services",
        service("web", {"selector": {"app": "web"}, "ports": [{"port": 9100}]}, {"tier": "back"}),
    )

    kube.create(
        f"{a}/endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "labels": {"svc": "web"}, "annotations": {"e": "1"}},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "10.1.9.1",
                            "nodeName": "orc-n1",
                            "targetRef": {"kind": "Pod", "namespace": NS_A, "name": "web-1"},
                        },
                        {
                            "ip": "10.1.9.2",
                            "nodeName": "orc-n2",
                            "targetRef": {"kind": "Pod", "namespace": NS_A, "name": "web-2"},
                        },
                    ],
                    "notReadyAddresses": [{"ip": "10.1.9.99", "hostname": "spare"}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    kube.create(
        f"{b}/endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web"},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "10.1.9.4",
                            "targetRef": {"kind": "Pod", "namespace": NS_B, "name": "other"},
                        }
                    ],
                    "ports": [{"port": 9100, "protocol": "TCP"}],
                }
            ],
        },
    )

    backend = {"service": {"name": "web", "port": {"number": 80}}}
    ingresses = "/apis/networking.k8s.io/v1/namespaces/{}/ingresses"
    kube.create(
        ingresses.format(NS_A),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["*.example.com"]}],
                "rules": [
                    {
                        "host": "a.example.com",
                        "http": {
                            "paths": [
                                {"path": "/", "pathType": "Prefix", "backend": backend},
                                {"path": "/api", "pathType": "Prefix", "backend": backend},
                            ]
                        },
                    },
                    {
                        "host": "x.y.example.com",
                        "http": {
                            "paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]
                        },
                    },
                ],
            },
        },
    )
    kube.create(
        ingresses.format(NS_B),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "hostless"},
            "spec": {
                "rules": [
                    {"http": {"paths": [{"path": "/m", "pathType": "Exact", "backend": backend}]}}
                ]
            },
        },
    )


# ----------------------------------------------------------------------------- differences


@dataclass
class Target:
    """One side's target: job, discovered labels and target labels (mutable copies)."""

    job: str
    discovered: Labels
    labels: Labels


def _both(t: Target) -> Iterator[tuple[Labels, str]]:
    """(dict, prefix) of the meta labels: ``__meta_kubernetes_`` discovered, ``k8s_`` mapped."""
    yield t.discovered, M
    yield t.labels, MAPPED


def _drop_empty(vm: Target, _ours: Target | None) -> None:
    for d in (vm.discovered, vm.labels):
        for k in [k for k, v in d.items() if v == ""]:
            del d[k]


def _copy_from_ours(*names: str) -> Callable[[Target, Target | None], None]:
    def fix(vm: Target, ours: Target | None) -> None:
        if ours is None:
            return
        for (d, prefix), (od, _) in zip(_both(vm), _both(ours), strict=True):
            for name in names:
                if prefix + name not in d and prefix + name in od:
                    d[prefix + name] = od[prefix + name]

    return fix


def _copy_prefix_from_ours(prefix_name: str) -> Callable[[Target, Target | None], None]:
    def fix(vm: Target, ours: Target | None) -> None:
        if ours is None:
            return
        for (d, prefix), (od, _) in zip(_both(vm), _both(ours), strict=True):
            for k, v in od.items():
                if k.startswith(prefix + prefix_name):
                    d.setdefault(k, v)

    return fix


def _copy_plain_from_ours(*names: str) -> Callable[[Target, Target | None], None]:
    def fix(vm: Target, ours: Target | None) -> None:
        if ours is not None:
            for name in names:
                if name in ours.discovered:
                    vm.discovered.setdefault(name, ours.discovered[name])

    return fix


def _extra_port_node_meta(vm: Target, _ours: Target | None) -> None:
    for d, prefix in _both(vm):
        if prefix + "pod_name" in d and prefix + "endpoint_ready" not in d:
            for k in [k for k in d if k.startswith(prefix + "node_")]:
                del d[k]


def _drop(*names: str) -> Callable[[Target, Target | None], None]:
    def fix(vm: Target, _ours: Target | None) -> None:
        for d, prefix in _both(vm):
            for name in names:
                d.pop(prefix + name, None)

    return fix


_GO_DURATION = re.compile(r"(\d+)(h|m|s|ms)")
_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def _prom_duration(text: str) -> str:
    """Go's time.Duration text (``1h0m0s``, ``2.5s``) -> Prometheus model.Duration (``1h``)."""
    if text.endswith("s") and not text.endswith("ms") and "." in text:
        ms = round(float(text[:-1]) * 1000)
    else:
        ms = sum(int(n) * _UNITS_MS[u] for n, u in _GO_DURATION.findall(text))
    out = ""
    for unit, size in (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000)):
        if ms >= size and ms % size == 0 and not out:
            return f"{ms // size}{unit}"
    for unit in ("h", "m", "s", "ms"):
        size = _UNITS_MS[unit]
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out or "0s"


def _durations(vm: Target, _ours: Target | None) -> None:
    for name in ("__scrape_interval__", "__scrape_timeout__"):
        if name in vm.discovered:
            vm.discovered[name] = _prom_duration(vm.discovered[name])


def _instance_port(vm: Target, _ours: Target | None) -> None:
    address = vm.discovered.get("__address__", "")
    default = {"http": "80", "https": "443"}.get(vm.discovered.get("__scheme__", "http"), "")
    if ":" not in address and vm.labels.get("instance") == f"{address}:{default}":
        vm.labels["instance"] = address


_ENDPOINTS_GROUP = re.compile(
    r"(endpoints_(name|label_|labelpresent_|annotation_|annotationpresent_)|service_)"
)


def _extra_port_group_labels(vm: Target, ours: Target | None) -> None:
    if ours is None or M + "endpoints_name" in vm.discovered:
        return
    for (d, prefix), (od, _) in zip(_both(vm), _both(ours), strict=True):
        for k, v in od.items():
            if k.startswith(prefix) and _ENDPOINTS_GROUP.match(k[len(prefix) :]):
                d.setdefault(k, v)


def _endpoint_protocol(vm: Target, _ours: Target | None) -> None:
    for d, prefix in _both(vm):
        proto = d.get(prefix + "endpoint_port_protocol")
        if proto and prefix + "pod_container_port_protocol" in d:
            d[prefix + "pod_container_port_protocol"] = proto


@dataclass(frozen=True)
class Difference:
    """One known way vmagent 1.79 differs from Prometheus, and how to undo it."""

    roles: frozenset[str]
    vmagent: str
    prometheus: str
    fix: Callable[[Target, Target | None], None]


ALL = frozenset({"node", "pod", "service", "endpoints", "ingress"})

DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        ALL,
        "keeps empty-valued labels (empty k8s labels and annotations, port_name='', "
        "provider_id='', host_ip='')",
        "an empty value is an absent label (model.LabelSet; relabeling drops them)",
        _drop_empty,
    ),
    Difference(
        ALL,
        "prints __scrape_interval__/__scrape_timeout__ as Go durations ('1h0m0s')",
        "prints model.Duration ('1h', '10s')",
        _durations,
    ),
    Difference(
        frozenset({"endpoints"}),
        "with attach_metadata.node, node labels also on the extra container-port targets "
        "(taken from the pod's spec.nodeName)",
        "node metadata comes from the endpoint address's nodeName, so targets without an "
        "address (extra pod ports) have none",
        _extra_port_node_meta,
    ),
    Difference(
        ALL,
        "no __convert_classic_histograms_to_nhcb__, __always_scrape_classic_histograms__, "
        "__scrape_native_histograms__ in discoveredLabels",
        "Prometheus 3 sets them from the scrape config (spec §3.2 step 2)",
        _copy_plain_from_ours(
            "__convert_classic_histograms_to_nhcb__",
            "__always_scrape_classic_histograms__",
            "__scrape_native_histograms__",
        ),
    ),
    Difference(
        frozenset({"node"}),
        "no __meta_kubernetes_node_condition_<type>",
        "Prometheus 3 emits lower-cased node conditions (spec §2.5 node)",
        _copy_prefix_from_ours("node_condition_"),
    ),
    Difference(
        frozenset({"endpoints"}),
        "no __meta_kubernetes_pod_container_init on endpoint targets that matched a container",
        "emitted with the other container labels (spec §2.5 endpoints)",
        _copy_from_ours("pod_container_init"),
    ),
    Difference(
        frozenset({"pod", "endpoints"}),
        "no __meta_kubernetes_pod_container_image",
        "emitted since 2.38",
        _copy_from_ours("pod_container_image"),
    ),
    Difference(
        frozenset({"pod"}),
        "no __meta_kubernetes_pod_container_id",
        "emitted from the container statuses (containerd://...)",
        _copy_from_ours("pod_container_id"),
    ),
    Difference(
        frozenset({"service"}),
        "no __meta_kubernetes_service_port_number",
        "emitted since 2.38",
        _copy_from_ours("service_port_number"),
    ),
    Difference(
        frozenset({"endpoints"}),
        "adds __meta_kubernetes_service_cluster_ip and _service_type to every target",
        "copies only the service's name, labels and annotations",
        _drop("service_cluster_ip", "service_type"),
    ),
    Difference(
        frozenset({"endpoints"}),
        "targets for container ports no endpoint port names lack _endpoints_name, the "
        "endpoints labels/annotations and the service labels",
        "they are in the Endpoints group and carry all group labels",
        _extra_port_group_labels,
    ),
    Difference(
        frozenset({"endpoints"}),
        "_pod_container_port_protocol is the container port's protocol",
        "it is the endpoint port's protocol (all TCP here, so this never fires)",
        _endpoint_protocol,
    ),
    Difference(
        frozenset({"pod", "ingress"}),
        "adds the scheme's default port to `instance` of a port-less target (10.1.9.3:80, "
        "a.example.com:80)",
        "Prometheus 3 leaves the address as it is (10.1.9.3)",
        _instance_port,
    ),
)
"""Rows applied to vmagent's side, in order. Not exercised: service loadbalancer_ip (vmagent
lacks it; no LoadBalancer service here) and endpoints+attach_metadata.node taking the node from
the pod's spec.nodeName (here every address's nodeName equals its pod's)."""


@dataclass(frozen=True)
class TargetDifference:
    """A whole target one side has and the other has not, for a known reason."""

    roles: frozenset[str]
    vmagent: str
    prometheus: str
    applies: Callable[[Target], bool]


VMAGENT_ONLY: tuple[TargetDifference, ...] = (
    TargetDifference(
        frozenset({"ingress"}),
        "lists a target with an empty __address__ for a host-less ingress rule",
        "such a target fails with 'no address' and is listed nowhere (spec §3.2 step 5)",
        lambda t: t.discovered.get("__address__", "") == "",
    ),
)
"""vmagent's targets that Prometheus does not list: removed from vmagent's side."""

PROMETHEUS_ONLY: tuple[TargetDifference, ...] = (
    TargetDifference(
        frozenset({"endpoints"}),
        "no extra-port target for an init container's port",
        "extra pod ports cover containers, then init containers (spec §2.5 endpoints)",
        lambda t: (
            t.discovered.get(M + "pod_container_init") == "true"
            and M + "endpoint_ready" not in t.discovered
        ),
    ),
)
"""Our targets that vmagent does not produce: not required on vmagent's side."""


# ----------------------------------------------------------------------------- comparison

_DISCRIMINATORS = (
    "pod_name",
    "pod_container_name",
    "pod_container_port_number",
    "endpoint_port_name",
    "service_name",
    "ingress_name",
    "ingress_path",
    "node_name",
)


def match_key(t: Target) -> tuple[str, ...]:
    d = t.discovered
    return (
        t.job,
        d.get("__address__", ""),
        d.get(M + "namespace", ""),
        *(d.get(M + name, "") for name in _DISCRIMINATORS),
    )


def targets_of(data: dict[str, Any]) -> list[Target]:
    out = []
    for t in data["activeTargets"]:
        job = t.get("scrapePool") or t["discoveredLabels"].get("job", "")
        out.append(Target(job, dict(t["discoveredLabels"]), dict(t["labels"])))
    for t in data["droppedTargets"]:
        job = t.get("scrapePool") or t["discoveredLabels"].get("job", "")
        out.append(Target(job, dict(t["discoveredLabels"]), {}))
    return out


def compare(ours: list[Target], theirs: list[Target]) -> tuple[list[str], dict[str, int]]:
    """Differences left after `DIFFERENCES`, and how often each row changed something."""
    by_key = {match_key(t): t for t in ours}
    assert len(by_key) == len(ours), "our targets are not told apart by match_key"
    used = {d.vmagent: 0 for d in DIFFERENCES}
    used.update({d.vmagent: 0 for d in (*VMAGENT_ONLY, *PROMETHEUS_ONLY)})
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for vm in theirs:
        role = JOBS[vm.job][0]
        extra = [d for d in VMAGENT_ONLY if role in d.roles and d.applies(vm)]
        if extra:
            used[extra[0].vmagent] += 1
            continue
        # Normalise until the key is stable (rows may change the discriminators).
        before = (dict(vm.discovered), dict(vm.labels))
        for diff in DIFFERENCES:
            if role in diff.roles:
                snapshot = (dict(vm.discovered), dict(vm.labels))
                diff.fix(vm, by_key.get(match_key(vm)))
                if (vm.discovered, vm.labels) != snapshot:
                    used[diff.vmagent] += 1
        key = match_key(vm)
        mine = by_key.get(key)
        if mine is None:
            problems.append(f"{vm.job}: only vmagent has {key}: {before[0]}")
            continue
        seen.add(key)
        for what, a, b in (
            ("discoveredLabels", mine.discovered, vm.discovered),
            ("labels", mine.labels, vm.labels),
        ):
            if a != b:
                only_ours = {k: v for k, v in a.items() if b.get(k) != v}
                only_vm = {k: v for k, v in b.items() if a.get(k) != v}
                problems.append(f"{vm.job} {key[1]} {what}: ours {only_ours} vmagent {only_vm}")
    for key, mine in by_key.items():
        if key in seen:
            continue
        missing = [d for d in PROMETHEUS_ONLY if JOBS[mine.job][0] in d.roles and d.applies(mine)]
        if missing:
            used[missing[0].vmagent] += 1
        else:
            problems.append(f"{mine.job}: only we have {key}: {mine.discovered}")
    return problems, used


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        populate(server)
        yield server


async def our_targets(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as resp:
        data: dict[str, Any] = (await resp.json())["data"]
        return data


def summary(targets: list[Target]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in targets:
        counts[t.job] = counts.get(t.job, 0) + 1
    return counts


async def test_discovered_labels_match_vmagent(kube: KubeAPIServer, tmp_path: Path) -> None:
    """Every role and option: the same targets with the same labels as vmagent (normalised)."""
    config = scrape_config(kube.write_kubeconfig(tmp_path / "kubeconfig.yaml"))
    with vmagent_oracle(tmp_path / "vmagent", kube, config) as oracle:
        async with running_agent(config, tmp_path) as agent, aiohttp.ClientSession() as http:
            url = f"http://{agent.options.listen_address}/api/v1/targets"
            # Both settle on the expected number of targets per job, then compare.
            state: dict[str, list[Target]] = {}

            async def settle_and_compare(
                ours_want: dict[str, int], vm_want: dict[str, int]
            ) -> dict[str, int]:
                async def settled() -> bool:
                    state["ours"] = targets_of(await our_targets(http, url))
                    state["vm"] = targets_of(await asyncio.to_thread(oracle.targets))
                    return summary(state["ours"]) == ours_want and summary(state["vm"]) == vm_want

                try:
                    await eventually(settled, timeout=60, interval=0.5)
                except TimeoutError:
                    pass  # compare anyway: the differences say more than a timeout
                problems, used = compare(state["ours"], state["vm"])
                assert problems == [], "\n".join(problems)
                assert summary(state["ours"]) == ours_want
                assert summary(state["vm"]) == vm_want
                return used

            used = await settle_and_compare(EXPECTED_COUNTS, VMAGENT_COUNTS)
            # Every row is needed on this cluster except the one documented as not firing.
            assert [k for k, n in used.items() if n == 0] == [
                "_pod_container_port_protocol is the container port's protocol"
            ]

            # Changes while watching: a pod deleted (its endpoint loses the pod labels), a pod
            # relabeled out of a selector, a node added into one. (Relabeling a node that has
            # pods is left out: vmagent keeps the pods' and endpoints' attached node labels
            # from when they last changed, where Prometheus re-queues them on node updates.)
            kube.delete(f"/api/v1/namespaces/{NS_B}/pods/other")
            kube.patch(
                f"/api/v1/namespaces/{NS_A}/pods/web-2", {"metadata": {"labels": {"app": "api"}}}
            )
            kube.create(
                "/api/v1/nodes", node("orc-n3", [("InternalIP", "10.0.9.3")], {"zone": "a"})
            )
            changed = {"pod": 5, "pod-label": 2, "pod-attach-node": 5, "node": 3, "node-label": 2}
            await settle_and_compare({**EXPECTED_COUNTS, **changed}, {**VMAGENT_COUNTS, **changed})


EXPECTED_COUNTS = {
    "node": 2,
    "node-label": 1,
    "node-field": 1,
    # web-1: 2 ports, web-2: 1 + 1 init, bare: 1 port-less, other: 1; pending has no IP
    "pod": 6,
    "pod-label": 5,
    "pod-field": 3,
    "pod-attach-node": 6,
    "service": 6,  # web 2 ports, ext, np, headless, orc-b/web
    "service-label": 2,
    # orc-a/web: 2 ready + 1 not ready + web-1's 9100 + web-2's init 9000; orc-b/web: 1
    "endpoints": 6,
    "endpoints-attach-node": 5,
    "ingress": 3,  # a.example.com / and /api, x.y.example.com /; the host-less rule: none
    "ingress-label": 3,
}
VMAGENT_COUNTS = {
    **EXPECTED_COUNTS,
    "endpoints": 5,  # no init container extra port (PROMETHEUS_ONLY)
    "endpoints-attach-node": 4,
    "ingress": 4,  # plus the host-less rule (VMAGENT_ONLY)
}
