"""Discoverers end to end on the fake API server: every role, joins, re-triggers, sharing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import AttachMetadata, KubernetesSDConfig, KubernetesSelector
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.errors import DiscoveryError
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.discovery.kubernetes.conftest import sample, token_spec, until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer

M = "__meta_kubernetes_"
NODE = "ip-10-0-1-23.eu-west-1.compute.internal"


class Sink:
    """Records every send: the batches and the latest group per source."""

    def __init__(self) -> None:
        self.sends: list[list[TargetGroup]] = []
        self.groups: dict[str, TargetGroup] = {}

    def __call__(self, groups: Sequence[TargetGroup]) -> None:
        self.sends.append(list(groups))
        for g in groups:
            self.groups[g.source] = g

    def targets(self, source: str) -> list[dict[str, str]]:
        return [dict(t) for t in self.groups[source].targets]


@asynccontextmanager
async def discovering(
    config: KubernetesSDConfig,
    spec: ConnectionSpec,
    pool: InformerPool,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Sink]:
    """Run one discoverer until the block ends."""
    sink = Sink()
    d = make_discoverer(
        config, registry=registry or CollectorRegistry(), pool=pool, connection=spec
    )
    task = asyncio.create_task(d.run(sink))
    try:
        yield sink
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
def pool() -> InformerPool:
    """A private informer pool."""
    return InformerPool(options=InformerOptions())


def load_cluster(api: FakeAPIServer) -> None:
    """All sample objects into the fake."""
    api.put("nodes", sample("node.json"))
    api.put("pods", sample("pod-web-running.json"))
    api.put("pods", sample("pod-node-exporter-daemonset.json"))
    api.put("pods", sample("pod-report-worker-pending.json"))
    api.put("services", sample("service-web.json"))
    api.put("endpoints", sample("endpoints-web.json"))
    api.put("endpointslices", sample("endpointslice-web.json"))
    api.put("ingresses", sample("ingress-web.json"))


async def test_node_role(api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool) -> None:
    """Role node: one group per node, first send after sync carries all of them."""
    load_cluster(api)
    async with discovering(KubernetesSDConfig(role="node"), spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        assert [g.source for g in sink.sends[0]] == [f"node/{NODE}"]
        assert sink.targets(f"node/{NODE}")[0]["__address__"] == "10.0.1.23:10250"
        api.delete("nodes", NODE)
        await until(lambda: len(sink.sends) == 2)
        assert sink.sends[1] == [TargetGroup(source=f"node/{NODE}")]


async def test_pod_role_evicted_and_deleted(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """Role pod: pending pod is an empty group; eviction empties; deletion empties."""
    load_cluster(api)
    registry = CollectorRegistry()
    async with discovering(KubernetesSDConfig(role="pod"), spec, pool, registry) as sink:
        await until(lambda: bool(sink.sends))
        assert sorted(g.source for g in sink.sends[0]) == [
            "pod/monitoring/node-exporter-8fz4q",
            "pod/shop/report-worker-5f9c7b6d48-qwz7t",
            "pod/shop/web-7d4b9c8f6d-x2k9p",
        ]
        assert sink.groups["pod/shop/report-worker-5f9c7b6d48-qwz7t"].targets == ()
        assert len(sink.targets("pod/shop/web-7d4b9c8f6d-x2k9p")) == 3
        evicted = sample("pod-web-running.json")
        evicted["status"] = {"phase": "Failed", "reason": "Evicted"}
        api.put("pods", evicted)
        await until(lambda: len(sink.sends) == 2)
        assert sink.sends[1] == [TargetGroup(source="pod/shop/web-7d4b9c8f6d-x2k9p")]
        api.delete("pods", "node-exporter-8fz4q", "monitoring")
        await until(lambda: len(sink.sends) == 3)
        assert sink.sends[2] == [TargetGroup(source="pod/monitoring/node-exporter-8fz4q")]
    events = registry.get_sample_value(
        "prometheus_sd_kubernetes_events_total", {"role": "pod", "event": "add"}
    )
    assert events == 3
    assert (
        registry.get_sample_value(
            "prometheus_sd_kubernetes_events_total", {"role": "ingress", "event": "delete"}
        )
        == 0
    )


async def test_noop_update_sends_nothing(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """An update that changes no field a role reads produces no send."""
    pod = sample("pod-web-running.json")
    api.put("pods", pod)
    async with discovering(KubernetesSDConfig(role="pod"), spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        pod["status"]["conditions"][0]["lastTransitionTime"] = "2030-01-01T00:00:00Z"
        api.put("pods", pod)
        pod["metadata"]["labels"]["new"] = "x"
        api.put("pods", pod)
        await until(lambda: len(sink.sends) == 2)
        await asyncio.sleep(0.01)
        assert len(sink.sends) == 2


async def test_empty_cluster_sends_empty_list(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """With nothing to report the first send is ``[]`` (marks the provider synced)."""
    async with discovering(KubernetesSDConfig(role="ingress"), spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        assert sink.sends == [[]]


async def test_service_and_ingress_roles(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """Roles service and ingress produce their groups."""
    load_cluster(api)
    async with (
        discovering(KubernetesSDConfig(role="service"), spec, pool) as svc,
        discovering(KubernetesSDConfig(role="ingress"), spec, pool) as ing,
    ):
        await until(lambda: bool(svc.sends) and bool(ing.sends))
        assert [t["__address__"] for t in svc.targets("svc/shop/web")] == [
            "web.shop.svc:80",
            "web.shop.svc:9113",
        ]
        assert [t["__address__"] for t in ing.targets("ingress/shop/web")] == [
            "shop.example.com",
            "admin.shop.example.com",
            "admin.shop.example.com",
        ]


async def test_endpoints_role_joins_and_retriggers(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """Endpoints join Service and Pod; service change and pod phase change re-trigger."""
    load_cluster(api)
    config = KubernetesSDConfig(role="endpoints", attach_metadata=AttachMetadata(node=True))
    async with discovering(config, spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        group = sink.groups["endpoints/shop/web"]
        assert group.labels[f"{M}service_name"] == "web"
        targets = sink.targets("endpoints/shop/web")
        assert len(targets) == 5
        assert targets[0][f"{M}pod_name"] == "web-7d4b9c8f6d-x2k9p"
        assert targets[0][f"{M}node_name"] == NODE
        assert f"{M}endpoint_ready" not in targets[4]  # the extra pod port 443

        svc = sample("service-web.json")
        svc["metadata"]["labels"]["team"] = "shop"
        api.put("services", svc)
        await until(lambda: len(sink.sends) == 2)
        assert sink.sends[1][0].labels[f"{M}service_label_team"] == "shop"

        pod = sample("pod-web-running.json")
        pod["metadata"]["annotations"]["x"] = "y"  # no phase change: no re-trigger
        api.put("pods", pod)
        pod["status"]["phase"] = "Succeeded"
        api.put("pods", pod)
        await until(lambda: len(sink.sends) == 3)
        assert sink.sends[2][0].targets[0][f"{M}pod_phase"] == "Succeeded"

        node = sample("node.json")
        node["metadata"]["labels"]["pool"] = "b"
        api.put("nodes", node)
        await until(lambda: len(sink.sends) == 4)
        assert sink.sends[3][0].targets[0][f"{M}node_label_pool"] == "b"

        api.delete("services", "web", "shop")
        await until(lambda: len(sink.sends) == 5)
        assert f"{M}service_name" not in sink.sends[4][0].labels


async def test_endpointslice_role(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """EndpointSlices join their Service by label; a service change re-triggers the slice."""
    load_cluster(api)
    async with discovering(KubernetesSDConfig(role="endpointslice"), spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        assert len(sink.targets("endpointslice/shop/web-x7k2p")) == 5
        svc = sample("service-web.json")
        svc["spec"]["ipFamilyPolicy"] = "RequireDualStack"
        svc["spec"]["ipFamilies"] = ["IPv6", "IPv4"]
        api.put("services", svc)
        await until(lambda: len(sink.sends) == 2)
        assert sink.sends[1][0].targets == ()


async def test_pod_attach_metadata_node_and_namespace(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """attach_metadata: node labels on pods, node change re-triggers, namespace labels too."""
    load_cluster(api)
    api.put("namespaces", {"metadata": {"name": "shop", "labels": {"team": "a"}}})
    config = KubernetesSDConfig(
        role="pod", attach_metadata=AttachMetadata(node=True, namespace=True)
    )
    async with discovering(config, spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        web = sink.groups["pod/shop/web-7d4b9c8f6d-x2k9p"]
        assert web.labels[f"{M}node_name"] == NODE
        assert web.labels[f"{M}namespace_label_team"] == "a"
        node = sample("node.json")
        node["metadata"]["labels"]["pool"] = "b"
        api.put("nodes", node)
        await until(lambda: len(sink.sends) == 2)
        assert len(sink.sends[1]) == 3  # every pod on that node
        api.put("namespaces", {"metadata": {"name": "shop", "labels": {"team": "b"}}})
        await until(lambda: len(sink.sends) == 3)
        assert {g.source for g in sink.sends[2]} == {
            "pod/shop/web-7d4b9c8f6d-x2k9p",
            "pod/shop/report-worker-5f9c7b6d48-qwz7t",
        }


async def test_two_discoverers_share_informers(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """Two discoverers with the same selectors cause one list and one watch (§11 #1)."""
    load_cluster(api)
    config = KubernetesSDConfig(role="pod")
    async with discovering(config, spec, pool) as a:
        await until(lambda: bool(a.sends))
        async with discovering(copy.deepcopy(config), spec, pool) as b:
            await until(lambda: bool(b.sends))
            assert {g.source for g in a.sends[0]} == {g.source for g in b.sends[0]}
            assert api.count("pods", watch=False) == 1
            assert api.count("pods", watch=True) == 1
            assert len(pool) == 1
            api.delete("pods", "web-7d4b9c8f6d-x2k9p", "shop")
            await until(lambda: len(a.sends) == 2 and len(b.sends) == 2)
        assert len(pool) == 1  # a still holds it
    assert len(pool) == 0


async def test_node_local_field_selector(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """DaemonSet mode: ``spec.nodeName=<node>`` on pods lists and watches only that node."""
    load_cluster(api)
    other = sample("pod-web-running.json")
    other["metadata"]["name"] = "web-elsewhere"
    other["spec"]["nodeName"] = "ip-10-0-2-44.eu-west-1.compute.internal"
    api.put("pods", other)
    config = KubernetesSDConfig(
        role="pod", selectors=(KubernetesSelector(role="pod", field=f"spec.nodeName={NODE}"),)
    )
    async with discovering(config, spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        assert "pod/shop/web-elsewhere" not in sink.groups
        assert len(sink.sends[0]) == 3
        assert all(r.query["fieldSelector"] == f"spec.nodeName={NODE}" for r in api.requests)
        moved = copy.deepcopy(other)
        moved["spec"]["nodeName"] = NODE
        api.put("pods", moved)
        await until(lambda: "pod/shop/web-elsewhere" in sink.groups)


async def test_namespaces_list(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """``namespaces.names`` watches each namespace separately and only those."""
    load_cluster(api)
    config = KubernetesSDConfig(role="pod", namespaces=("monitoring",))
    async with discovering(config, spec, pool) as sink:
        await until(lambda: bool(sink.sends))
        assert [g.source for g in sink.sends[0]] == ["pod/monitoring/node-exporter-8fz4q"]
        assert {r.path for r in api.requests} == {"/api/v1/namespaces/monitoring/pods"}


async def test_not_synced_sends_nothing(
    api: FakeAPIServer, spec: ConnectionSpec, pool: InformerPool
) -> None:
    """While one informer cannot sync (403 on services), nothing is sent."""
    load_cluster(api)
    api.tokens["promtoken"] = "prom"
    api.grant("prom", "*", "endpoints")
    api.grant("prom", "*", "pods")
    prom = token_spec(spec.api_server, "promtoken")
    async with discovering(KubernetesSDConfig(role="endpoints"), prom, pool) as sink:
        await until(lambda: api.count("services") >= 2)
        assert sink.sends == []
        api.grant("prom", "*", "services")
        await until(lambda: bool(sink.sends), steps=5000)


def test_in_cluster_without_env_fails_at_creation() -> None:
    """Without KUBERNETES_SERVICE_HOST/PORT creating the discoverer raises DiscoveryError."""
    with pytest.raises(DiscoveryError, match="KUBERNETES_SERVICE_HOST"):
        make_discoverer(
            KubernetesSDConfig(role="pod"),
            registry=CollectorRegistry(),
            connection=ConnectionSpec(environ=()),
        )


def test_own_namespace_read(tmp_path: Path) -> None:
    """own_namespace adds the namespace from the service-account directory."""
    (tmp_path / "namespace").write_text("monitoring\n")
    spec = ConnectionSpec(
        sa_dir=str(tmp_path),
        environ=(("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("KUBERNETES_SERVICE_PORT", "443")),
    )
    d: Any = make_discoverer(
        KubernetesSDConfig(role="pod", namespaces=("a",), own_namespace=True),
        registry=CollectorRegistry(),
        connection=spec,
    )
    assert d.namespaces == ("a", "monitoring")
    (tmp_path / "namespace").write_text("")
    with pytest.raises(DiscoveryError, match="empty file"):
        make_discoverer(
            KubernetesSDConfig(role="pod", own_namespace=True),
            registry=CollectorRegistry(),
            connection=spec,
        )
