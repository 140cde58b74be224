"""Two containers declaring one port number: endpoint targets name the LAST of them.

Prometheus's ``endpoints.go`` and ``endpointslice.go`` loop over containers and ``break`` only
out of the port loop, so a later container matching the same number overwrites the labels; the
fixture pod declares 8080/TCP in ``a`` and 8080/UDP (then 8080/SCTP) in ``b``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collector.discovery.kubernetes import endpoints, objects

FIXTURE = Path(__file__).parents[2] / "fixtures" / "k8s" / "pod-shared-port.json"
M = "__meta_kubernetes_"


def _pod() -> objects.Pod:
    raw: dict[str, Any] = json.loads(FIXTURE.read_text())
    return objects.pod_from_raw(raw)


def _lookup(pod: objects.Pod) -> endpoints.PodLookup:
    def get(namespace: str, name: str) -> objects.Pod | None:
        return pod if (namespace, name) == (pod.namespace, pod.name) else None

    return get


def _container_labels(target: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in target.items() if k.startswith(f"{M}pod_container_")}


def test_endpoints_attach_last_container_declaring_the_port() -> None:
    """The endpoints role labels 8080 with ``b``, its first 8080 entry, the endpoint protocol."""
    eps = objects.endpoints_from_raw(
        {
            "metadata": {"name": "dual", "namespace": "shop"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "10.0.1.90", "targetRef": {"kind": "Pod", "name": "dual-0"}}
                    ],
                    "ports": [{"port": 8080, "protocol": "TCP", "name": "web"}],
                }
            ],
        }
    )
    group = endpoints.endpoints_group(eps, get_pod=_lookup(_pod()))
    (target,) = group.targets  # both containers' 8080 are covered: no extra pod targets
    assert _container_labels(dict(target)) == {
        f"{M}pod_container_name": "b",
        f"{M}pod_container_image": "example/b:1",
        f"{M}pod_container_port_name": "stats",
        f"{M}pod_container_port_number": "8080",
        f"{M}pod_container_port_protocol": "TCP",
        f"{M}pod_container_init": "false",
    }


def test_endpointslice_attach_last_container_declaring_the_port() -> None:
    """The endpointslice role labels 8080 with container ``b`` and that port's own protocol."""
    es = objects.endpointslice_from_raw(
        {
            "metadata": {
                "name": "dual-abcde",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "dual"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.0.1.90"],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": "dual-0", "namespace": "shop"},
                }
            ],
            "ports": [{"port": 8080, "protocol": "TCP", "name": "web"}],
        }
    )
    group = endpoints.endpointslice_group(es, get_pod=_lookup(_pod()))
    (target,) = group.targets
    assert _container_labels(dict(target)) == {
        f"{M}pod_container_name": "b",
        f"{M}pod_container_image": "example/b:1",
        f"{M}pod_container_port_name": "stats",
        f"{M}pod_container_port_number": "8080",
        f"{M}pod_container_port_protocol": "UDP",
        f"{M}pod_container_init": "false",
    }


def test_init_container_declaring_the_port_comes_last() -> None:
    """Init containers are matched after regular ones, so an init container's port wins."""
    raw: dict[str, Any] = json.loads(FIXTURE.read_text())
    raw["spec"]["initContainers"] = [
        {"name": "i", "image": "example/i:1", "ports": [{"containerPort": 8080}]}
    ]
    eps = objects.endpoints_from_raw(
        {
            "metadata": {"name": "dual", "namespace": "shop"},
            "subsets": [
                {
                    "addresses": [
                        {"ip": "10.0.1.90", "targetRef": {"kind": "Pod", "name": "dual-0"}}
                    ],
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }
            ],
        }
    )
    (target,) = endpoints.endpoints_group(eps, get_pod=_lookup(objects.pod_from_raw(raw))).targets
    assert target[f"{M}pod_container_name"] == "i"
    assert target[f"{M}pod_container_init"] == "true"
    assert f"{M}pod_container_port_name" not in target  # no stale name from ``b``
