"""Kubernetes as the coordinator, on a real kube-apiserver v1.20.2 (tests/integration/kube.py).

Pods are created through the API with the StatefulSet's labels and their status is patched
(no kubelet runs): the member list follows them as they become ready, stop being ready and are
deleted, ignoring look-alikes elsewhere. The membership runs with the unprivileged user bound
to deploy/cluster's Role only, which proves the Role is enough. The last test runs a whole
agent with ``--cluster.peers-from=kubernetes`` and reads ``/api/v1/cluster`` and
``/api/v1/targets`` while pods come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.agent import Agent, new_registry
from collector.cluster.kubernetes import KubernetesPeers
from collector.cluster.membership import Membership
from collector.cluster.settings import ClusterSettings
from collector.config import AgentOptions
from collector.discovery.kubernetes import InformerOptions, InformerPool
from collector.kubernetes.connection import ConnectionSpec
from collector.model.rendezvous import Ring
from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import eventually
from tests.integration.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SELECTOR = "app.kubernetes.io/name=collector,app.kubernetes.io/instance=collector-cluster"
LABELS = {"app.kubernetes.io/name": "collector", "app.kubernetes.io/instance": "collector-cluster"}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        yield server


def agent_pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels if labels is not None else LABELS},
        "spec": {"containers": [{"name": "collector", "image": "localhost/collector:dev"}]},
    }


def ready(ip: str, *, is_ready: bool = True) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if is_ready else "False"}],
    }


def start_pod(kube: KubeAPIServer, ns: str, name: str, ip: str, **kw: Any) -> None:
    kube.create(f"/api/v1/namespaces/{ns}/pods", agent_pod(name, **kw))
    kube.patch_status(f"/api/v1/namespaces/{ns}/pods/{name}", ready(ip))


def grant_deploy_role(kube: KubeAPIServer, ns: str, user: str) -> None:
    """deploy/cluster/role.yaml as written, bound to ``user`` in ``ns``."""
    role = yaml.safe_load((ROOT / "deploy" / "cluster" / "role.yaml").read_text())
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", role)
    binding = yaml.safe_load((ROOT / "deploy" / "cluster" / "rolebinding.yaml").read_text())
    binding["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", binding)


@contextlib.asynccontextmanager
async def following(membership: Membership) -> AsyncIterator[None]:
    task = asyncio.create_task(membership.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_members_are_the_ready_pods_of_the_selector_in_the_namespace(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """Ready pods join, not-ready and deleted ones leave; other labels and namespaces do not
    count; the unprivileged user with deploy/cluster's Role can do all of it."""
    ns, elsewhere = "clu-members", "clu-elsewhere"
    for name in (ns, elsewhere):
        kube.ensure_namespace(name)
    grant_deploy_role(kube, ns, "prom")
    applied: list[Ring] = []
    settings = ClusterSettings(
        peers_from="kubernetes", self_name="collector-0", namespace=ns, selector=SELECTOR
    )
    source = KubernetesPeers(
        namespace=ns,
        selector=SELECTOR,
        registry=CollectorRegistry(),
        connection=ConnectionSpec(
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc", kube.unprivileged_token))
        ),
        pool=InformerPool(options=InformerOptions(backoff_initial=0.1, backoff_max=0.5)),
    )
    membership = Membership(
        settings, source=source, apply=applied.append, registry=CollectorRegistry()
    )

    def members() -> tuple[str, ...]:
        return membership.ring.members

    async with following(membership):
        await eventually(lambda: membership.synced)
        assert members() == ()
        start_pod(kube, ns, "collector-0", "10.2.0.1")
        start_pod(kube, ns, "collector-1", "10.2.0.2")
        await eventually(lambda: members() == ("collector-0", "collector-1"))
        assert membership.ring.is_member
        # Look-alikes: same name label, another instance; the right labels elsewhere.
        start_pod(kube, ns, "other-0", "10.2.0.9", labels={"app.kubernetes.io/name": "collector"})
        start_pod(kube, elsewhere, "collector-5", "10.2.1.5")
        # A starting pod: running but not ready yet.
        kube.create(f"/api/v1/namespaces/{ns}/pods", agent_pod("collector-2"))
        kube.patch_status(
            f"/api/v1/namespaces/{ns}/pods/collector-2", ready("10.2.0.3", is_ready=False)
        )
        await asyncio.sleep(1)
        assert members() == ("collector-0", "collector-1")
        kube.patch_status(f"/api/v1/namespaces/{ns}/pods/collector-2", ready("10.2.0.3"))
        await eventually(lambda: members() == ("collector-0", "collector-1", "collector-2"))
        # Leaving: a failed readiness probe, a deletion.
        kube.patch_status(
            f"/api/v1/namespaces/{ns}/pods/collector-1", ready("10.2.0.2", is_ready=False)
        )
        await eventually(lambda: members() == ("collector-0", "collector-2"))
        kube.delete(f"/api/v1/namespaces/{ns}/pods/collector-2")
        await eventually(lambda: members() == ("collector-0",))
    # Only changes reach the scrape manager: never the same ring twice in a row (pod updates
    # that change nothing, like the look-alikes' and the not-ready pod's, apply nothing).
    assert applied[0] == Ring((), self_name="collector-0")
    assert applied[-1] == Ring(["collector-0"], self_name="collector-0")
    assert all(a != b for a, b in itertools.pairwise(applied))
    assert len(applied) <= 6


async def test_agent_shards_its_targets_by_the_pods(kube: KubeAPIServer, tmp_path: Path) -> None:
    """A whole agent: /api/v1/cluster lists the ready pods with their counts, and
    /api/v1/targets holds this member's share, all of it while alone, none before it is ready."""
    ns = "clu-agent"
    kube.ensure_namespace(ns)
    addresses = [f"127.3.0.{i}:9" for i in range(1, 61)]  # nothing listens: scrapes fail fast
    config = tmp_path / "collector.yml"
    config.write_text(
        "global: {scrape_interval: 5s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: fleet\n"
        f"    static_configs: [{{targets: [{', '.join(addresses)}]}}]\n"
    )
    options = AgentOptions(
        config_file=str(config),
        listen_address=f"127.0.0.1:{free_port()}",
        storage_path=str(tmp_path / "data"),
        kubeconfig=str(kube.write_kubeconfig(tmp_path / "kc")),
        cluster_peers_from="kubernetes",
        cluster_self="collector-0",
        cluster_peers_namespace=ns,
        cluster_peers_selector=SELECTOR,
    )
    agent = Agent(options, registry=new_registry(), reload_interval=0.2, discovery_updatert=0.2)
    started = asyncio.Event()
    task = asyncio.create_task(agent.run(ready=started))
    base = f"http://{options.listen_address}"
    try:
        await asyncio.wait_for(started.wait(), timeout=10)
        async with aiohttp.ClientSession() as session:

            async def api(path: str) -> Any:
                async with session.get(base + path) as response:
                    return (await response.json())["data"]

            async def state() -> tuple[dict[str, int], int]:
                cluster = await api("/api/v1/cluster")
                counts = {m["name"]: m["targets"] for m in cluster["members"]}
                return counts, len((await api("/api/v1/targets"))["activeTargets"])

            await eventually(lambda: agent.cluster is not None and agent.cluster.synced)
            await asyncio.sleep(1)
            assert await state() == ({}, 0), "not a member yet: nothing scraped"

            start_pod(kube, ns, "collector-0", "10.3.0.1")
            await eventually(lambda: _is(state(), ({"collector-0": 60}, 60)))

            start_pod(kube, ns, "collector-1", "10.3.0.2")
            start_pod(kube, ns, "collector-2", "10.3.0.3")

            async def three() -> bool:
                counts, own = await state()
                return (
                    sorted(counts) == ["collector-0", "collector-1", "collector-2"]
                    and sum(counts.values()) == 60
                    and own == counts["collector-0"]
                )

            await eventually(three)
            counts, _ = await state()
            assert min(counts.values()) > 0
            cluster = await api("/api/v1/cluster")
            assert cluster["self"] == "collector-0"
            assert cluster["peersFrom"] == "kubernetes"
            assert [m["self"] for m in cluster["members"]] == [True, False, False]

            kube.delete(f"/api/v1/namespaces/{ns}/pods/collector-1")
            kube.delete(f"/api/v1/namespaces/{ns}/pods/collector-2")
            await eventually(lambda: _is(state(), ({"collector-0": 60}, 60)))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _is(got: Any, expected: object) -> bool:
    return bool(await got == expected)
