"""Benchmark datasets: a real node_exporter body and a kube-state-metrics-shaped body.

Shared by every stage benchmark (parser, scrape cache, remote-write encoder) and by the loopback
targets of ``benchmarks.side_by_side``, so all of them measure the same bytes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NODE_EXPORTER_FIXTURE", "ksm_body", "node_exporter_body"]

NODE_EXPORTER_FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/node_exporter.prom"
"""A captured node_exporter ``/metrics`` body (text format 0.0.4)."""

# (family, type, help, value kind) in the style of kube-state-metrics v2.
_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    ("kube_pod_info", "gauge", "Information about pod.", "one"),
    ("kube_pod_status_phase", "gauge", "The pods current phase.", "bool"),
    (
        "kube_pod_status_ready",
        "gauge",
        "Describes whether the pod is ready to serve requests.",
        "bool",
    ),
    ("kube_pod_container_info", "gauge", "Information about a container in a pod.", "one"),
    (
        "kube_pod_container_status_restarts_total",
        "counter",
        "The number of container restarts per container.",
        "count",
    ),
    (
        "kube_pod_container_status_running",
        "gauge",
        "Describes whether the container is currently in running state.",
        "bool",
    ),
    (
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
        "float",
    ),
    (
        "kube_pod_container_resource_limits",
        "gauge",
        "The number of requested limit resource by a container.",
        "float",
    ),
    ("kube_pod_created", "gauge", "Unix creation timestamp", "epoch"),
    ("kube_pod_owner", "gauge", "Information about the Pod's owner.", "one"),
    ("kube_pod_start_time", "gauge", "Start time in unix timestamp for a pod.", "epoch"),
    (
        "kube_pod_status_scheduled",
        "gauge",
        "Describes the status of the scheduling process for the pod.",
        "bool",
    ),
    ("kube_deployment_spec_replicas", "gauge", "Number of desired pods for a deployment.", "count"),
    (
        "kube_deployment_status_replicas_available",
        "gauge",
        "The number of available replicas per deployment.",
        "count",
    ),
    ("kube_replicaset_owner", "gauge", "Information about the ReplicaSet's owner.", "one"),
    ("kube_node_status_condition", "gauge", "The condition of a cluster node.", "bool"),
    ("kube_service_info", "gauge", "Information about service.", "one"),
    (
        "kube_endpoint_address",
        "gauge",
        "Information about Endpoint available and non available addresses.",
        "bool",
    ),
    ("kube_configmap_info", "gauge", "Information about configmap.", "one"),
    ("kube_secret_type", "gauge", "Type about secret.", "one"),
)

# Label names in kube-state-metrics order; a series uses the first ``labels`` of them.
_LABEL_NAMES = (
    "namespace",
    "pod",
    "uid",
    "container",
    "node",
    "created_by_kind",
    "created_by_name",
    "host_ip",
    "pod_ip",
    "priority_class",
    "host_network",
    "phase",
    "resource",
    "unit",
)


def _label_value(name: str, i: int) -> str:
    """A realistic, deterministic value for label ``name`` of series number ``i``."""
    match name:
        case "namespace":
            return f"team-{i % 17:02d}"
        case "pod":
            return f"web-{i:05d}-7d4b9c8f6d-{(i * 7919) % 100000:05x}"
        case "uid":
            h = f"{(i * 0x9E3779B97F4A7C15 + 0x632BE5AB) % (1 << 128):032x}"
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        case "container":
            return ("app", "istio-proxy", "log-shipper")[i % 3]
        case "node":
            return f"ip-10-0-{i % 32}-{(i * 13) % 250}.eu-west-1.compute.internal"
        case "created_by_kind":
            return "ReplicaSet"
        case "created_by_name":
            return f"web-{i:05d}-7d4b9c8f6d"
        case "host_ip" | "pod_ip":
            return f"10.{i % 4}.{(i // 250) % 250}.{i % 250}"
        case "priority_class":
            return "standard"
        case "host_network":
            return "false"
        case "phase":
            return ("Running", "Pending", "Succeeded")[i % 3]
        case "resource":
            return ("cpu", "memory")[i % 2]
        case _:
            return "core"


def _value(kind: str, i: int) -> str:
    """A sample value of the given kind, formatted the way the Go client does."""
    match kind:
        case "one":
            return "1"
        case "bool":
            return str(i % 2)
        case "count":
            return str(i % 13)
        case "float":
            return repr(0.25 * (1 + i % 8))
        case _:
            return f"{1.7e9 + i:.6e}"


def ksm_body(series: int = 2000, labels: int = 8) -> bytes:
    """A kube-state-metrics-shaped text body: ``series`` samples with ``labels`` labels each.

    Series are spread evenly over 20 families, each with its ``# HELP`` and ``# TYPE`` lines,
    the way kube-state-metrics groups them. Deterministic: same arguments, same bytes.
    """
    if not 0 <= labels <= len(_LABEL_NAMES):
        raise ValueError(f"labels must be within 0..{len(_LABEL_NAMES)}")
    names = _LABEL_NAMES[:labels]
    per_family = -(-series // len(_FAMILIES)) if series else 0
    out: list[str] = []
    done = 0
    for family, mtype, help_text, kind in _FAMILIES:
        if done >= series:
            break
        out.append(f"# HELP {family} {help_text}\n# TYPE {family} {mtype}\n")
        for _ in range(min(per_family, series - done)):
            pairs = ",".join(f'{n}="{_label_value(n, done)}"' for n in names)
            series_text = f"{family}{{{pairs}}}" if pairs else family
            out.append(f"{series_text} {_value(kind, done)}\n")
            done += 1
    return "".join(out).encode()


def node_exporter_body() -> bytes:
    """The captured node_exporter body from ``tests/fixtures/node_exporter.prom``."""
    return NODE_EXPORTER_FIXTURE.read_bytes()
