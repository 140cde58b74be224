"""No ``api_server``, ``kubeconfig_file`` or ``--kubeconfig`` and not in a cluster: the agent
falls back to ``$KUBECONFIG``, then ``~/.kube/config`` (INTERFACES.md), tested on the fake."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.errors import DiscoveryError
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.discovery.kubernetes.conftest import sample, until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer

NODE = "ip-10-0-1-23.eu-west-1.compute.internal"
IN_CLUSTER = (("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("KUBERNETES_SERVICE_PORT", "443"))


def kubeconfig(path: Path, api: FakeAPIServer) -> Path:
    """A kubeconfig for the fake (plain HTTP, bearer token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
        "users": [{"name": "fake", "user": {"token": api.token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def discover_nodes(spec: ConnectionSpec) -> list[TargetGroup]:
    """Run a node discoverer on ``spec`` until its first send."""
    sends: list[list[TargetGroup]] = []
    d = make_discoverer(
        KubernetesSDConfig(role="node"),
        registry=CollectorRegistry(),
        pool=InformerPool(options=InformerOptions()),
        connection=spec,
    )
    task = asyncio.create_task(d.run(lambda groups: sends.append(list(groups))))
    try:
        await until(lambda: bool(sends), steps=5000)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return sends[0]


async def test_kubeconfig_env_is_used_outside_a_cluster(api: FakeAPIServer, tmp_path: Path) -> None:
    """$KUBECONFIG (a list; missing entries skipped) wins over ~/.kube/config."""
    api.put("nodes", sample("node.json"))
    good = kubeconfig(tmp_path / "kc" / "config", api)
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("this: [is not a kubeconfig")
    listed = f"{tmp_path / 'missing'}:{good}"
    spec = ConnectionSpec(environ=(("KUBECONFIG", listed), ("HOME", str(home))))
    assert spec.mode == "kubeconfig"
    assert spec.kubeconfig_path == listed
    groups = await discover_nodes(spec)
    assert [g.source for g in groups] == [f"node/{NODE}"]


async def test_home_kube_config_is_used_outside_a_cluster(
    api: FakeAPIServer, tmp_path: Path
) -> None:
    """Without $KUBECONFIG (or with only missing files in it): ~/.kube/config."""
    api.put("nodes", sample("node.json"))
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config", api)
    spec = ConnectionSpec(environ=(("HOME", str(home)), ("KUBECONFIG", str(tmp_path / "missing"))))
    assert spec.kubeconfig_path == str(home / ".kube" / "config")
    groups = await discover_nodes(spec)
    assert [g.source for g in groups] == [f"node/{NODE}"]


def test_in_cluster_env_wins_over_the_fallback(tmp_path: Path) -> None:
    """Inside a cluster the service account is used even when a kubeconfig exists."""
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("{}")
    spec = ConnectionSpec(environ=(*IN_CLUSTER, ("HOME", str(home))))
    assert spec.mode == "in-cluster"
    assert spec.kubeconfig_path == ""


def test_nothing_found_names_every_option(tmp_path: Path) -> None:
    """No in-cluster env and no kubeconfig anywhere: one error at creation naming all three."""
    spec = ConnectionSpec(environ=(("HOME", str(tmp_path)),))
    assert spec.mode == "in-cluster"
    with pytest.raises(DiscoveryError, match=r"KUBERNETES_SERVICE_HOST.*\$KUBECONFIG"):
        make_discoverer(
            KubernetesSDConfig(role="pod"), registry=CollectorRegistry(), connection=spec
        )


def test_process_environment_is_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, api: FakeAPIServer
) -> None:
    """Through `connection_spec` (what the agent uses): the real environment decides."""
    from collector.kubernetes.connection import connection_spec

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    path = kubeconfig(tmp_path / "config", api)
    monkeypatch.setenv("KUBECONFIG", str(path))
    spec = connection_spec(KubernetesSDConfig(role="pod"))
    assert (spec.mode, spec.kubeconfig_path) == ("kubeconfig", str(path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert spec.mode == "in-cluster"
