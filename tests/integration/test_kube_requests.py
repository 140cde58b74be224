"""What collector asks a real kube-apiserver v1.20.2 for, and a label detail it answers with.

The rig runs with an audit log (``kube_apiserver(audit=True)``), so these tests read the
requests as the server received them: the list and watch URIs, their field selectors.
The shared-port test checks issue 11's endpoints fix end to end: a pod whose containers ``a``
and ``b`` both declare 8080 gets ``b``'s labels, as in Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.discovery.kubernetes.client import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

M = "__meta_kubernetes_"
FAST = InformerOptions(backoff_initial=0.1, backoff_max=0.5)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube"), audit=True) as server:
        yield server


class Sink:
    """The latest group per source."""

    def __init__(self) -> None:
        self.groups: dict[str, TargetGroup] = {}

    def __call__(self, groups: Sequence[TargetGroup]) -> None:
        for g in groups:
            self.groups[g.source] = g


@contextlib.asynccontextmanager
async def discovering(
    kube: KubeAPIServer,
    config: KubernetesSDConfig,
    tmp_path: Path,
    *,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Sink]:
    """Run one discoverer (own pool, admin kubeconfig) until the block ends."""
    sink = Sink()
    spec = ConnectionSpec(kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")))
    d = make_discoverer(
        config,
        registry=registry or CollectorRegistry(),
        pool=InformerPool(options=FAST),
        connection=spec,
    )
    task = asyncio.create_task(d.run(sink))
    try:
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def shared_port_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dual-0", "labels": {"app": "dual"}},
        "spec": {
            "nodeName": "req-n1",
            "containers": [
                {
                    "name": "a",
                    "image": "example.invalid/a:1",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                },
                {
                    "name": "b",
                    "image": "example.invalid/b:1",
                    "ports": [{"name": "stats", "containerPort": 8080, "protocol": "UDP"}],
                },
            ],
        },
    }


async def test_endpoints_shared_port_names_the_last_container(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """Endpoints 8080/TCP on a pod with 8080/TCP in ``a`` and 8080/UDP in ``b``: labels of ``b``."""
    ns = "req-shared"
    kube.ensure_namespace(ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    kube.create(pods, shared_port_pod())
    kube.patch_status(
        f"{pods}/dual-0",
        {
            "phase": "Running",
            "podIP": "10.9.0.5",
            "podIPs": [{"ip": "10.9.0.5"}],
            "hostIP": "10.0.9.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/endpoints",
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "dual"},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "10.9.0.5",
                            "targetRef": {"kind": "Pod", "namespace": ns, "name": "dual-0"},
                        }
                    ],
                    "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    config = KubernetesSDConfig(role="endpoints", namespaces=(ns,))
    async with discovering(kube, config, tmp_path) as sink:
        source = f"endpoints/{ns}/dual"

        def joined() -> bool:
            group = sink.groups[source]
            return len(group.targets) == 1 and f"{M}pod_name" in group.targets[0]

        await eventually(joined)
        (target,) = sink.groups[source].targets
        assert {k: v for k, v in target.items() if k.startswith(f"{M}pod_container_")} == {
            f"{M}pod_container_name": "b",
            f"{M}pod_container_image": "example.invalid/b:1",
            f"{M}pod_container_port_name": "stats",
            f"{M}pod_container_port_number": "8080",
            f"{M}pod_container_port_protocol": "TCP",  # the endpoint port's (spec §2.4)
            f"{M}pod_container_init": "false",
        }
