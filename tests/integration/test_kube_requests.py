"""What collector asks a real kube-apiserver v1.20.2 for, and a label detail it answers with.

The rig runs with an audit log (``kube_apiserver(audit=True)``), so these tests read the
requests as the server received them: the list and watch URIs, their field selectors.
The shared-port test checks issue 11's endpoints fix end to end: a pod whose containers ``a``
and ``b`` both declare 8080 gets ``b``'s labels, as in Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import eventually, running_agent
from tests.integration.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

M = "__meta_kubernetes_"
DAEMONSET_CONFIG = Path(__file__).parents[2] / "config" / "kubernetes-daemonset.yml"
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


def scrape_pod(name: str, node_name: str) -> dict[str, Any]:
    """A pod on ``node_name`` that the DaemonSet config's ``kubernetes-pods`` job keeps."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {
                    "name": "app",
                    "image": "example.invalid/app:1",
                    "ports": [{"containerPort": 9100}],
                }
            ],
        },
    }


async def test_daemonset_config_lists_and_watches_only_its_node(
    kube: KubeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped DaemonSet config: every pod LIST and WATCH the server receives carries
    ``fieldSelector=spec.nodeName=<NODE_NAME>``, and only that node's pods become targets."""
    ns = "req-ds"
    kube.ensure_namespace(ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    for name, node in (("mine", "req-ds-n1"), ("theirs", "req-ds-n2")):
        kube.create(pods, scrape_pod(name, node))
        kube.patch_status(f"{pods}/{name}", {"phase": "Running", "podIP": f"10.9.1.{len(name)}"})
    monkeypatch.setenv("NODE_NAME", "req-ds-n1")
    monkeypatch.setenv("POD_NAME", "collector-abcde")
    monkeypatch.setenv("CLUSTER_NAME", "rig")
    monkeypatch.setenv("REMOTE_WRITE_URL", f"http://127.0.0.1:{free_port()}/api/v1/write")
    before = len(kube.audit_events())
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    config = DAEMONSET_CONFIG.read_text()
    async with (
        running_agent(config, tmp_path, kubeconfig=kubeconfig, flush_deadline=0.5) as agent,
        aiohttp.ClientSession() as http,
    ):
        url = f"http://{agent.options.listen_address}/api/v1/targets"

        async def pod_targets() -> list[str]:
            async with http.get(url) as resp:
                active = (await resp.json())["data"]["activeTargets"]
            return sorted(
                t["discoveredLabels"].get(f"{M}pod_name", "")
                for t in active
                if t["scrapePool"] == "kubernetes-pods"
            )

        async def discovered() -> bool:
            return await pod_targets() == ["mine"]

        await eventually(discovered)

    def pod_requests() -> list[tuple[str, dict[str, str]]]:
        found = []
        for event in kube.audit_events()[before:]:
            uri = urllib.parse.urlsplit(event["requestURI"])
            if uri.path == "/api/v1/pods":
                found.append((event["verb"], dict(urllib.parse.parse_qsl(uri.query))))
        return found

    # The agent has stopped: its watches ended, so v1.20 has written their audit events.
    await eventually(lambda: {verb for verb, _ in pod_requests()} == {"list", "watch"})
    for verb, query in pod_requests():
        assert query.get("fieldSelector") == "spec.nodeName=req-ds-n1", (verb, query)
