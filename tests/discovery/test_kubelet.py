"""kubelet_sd against a kubelet-shaped ``/pods`` over TLS with token auth (issue 11).

The server answers a v1 ``PodList`` (prometheus-3x.md §8) holding a regular pod, a static pod
(the kubelet lists the pod itself: ``kubernetes.io/config.source: file``, ``config.hash``) and a
pending pod without an IP; the groups must be exactly what the ``pod`` role makes of them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from collector.config import Authorization, HTTPClientConfig, KubeletSDConfig, TLSConfig
from collector.config.loader import load_config_text
from collector.discovery.kubelet import KubeletDiscoverer, pods_url
from collector.discovery.kubernetes import objects, roles
from collector.errors import ConfigError, DiscoveryError
from collector.model.targetgroup import TargetGroup

FIXTURES = Path(__file__).parents[1] / "fixtures" / "k8s"
TOKEN = "kubelet-reader-token"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def static_pod() -> dict[str, Any]:
    """A static pod as the kubelet lists it (not the API server's mirror copy)."""
    return {
        "metadata": {
            "name": "etcd-node-1",
            "namespace": "kube-system",
            "uid": "0e1d5c8c5c5e4a1f9d4c5a1c2b3d4e5f",
            "labels": {"component": "etcd", "tier": "control-plane"},
            "annotations": {
                "kubernetes.io/config.source": "file",
                "kubernetes.io/config.hash": "0e1d5c8c5c5e4a1f9d4c5a1c2b3d4e5f",
                "kubernetes.io/config.seen": "2024-05-14T08:00:00.000000000Z",
            },
        },
        "spec": {
            "nodeName": "node-1",
            "hostNetwork": True,
            "containers": [
                {
                    "name": "etcd",
                    "image": "registry.k8s.io/etcd:3.5.12-0",
                    "ports": [{"name": "metrics", "containerPort": 2381, "protocol": "TCP"}],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.1.23",
            "podIP": "10.0.1.23",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "etcd", "containerID": "containerd://4f2a", "ready": True}
            ],
        },
    }


@dataclass
class Kubelet:
    """The fake kubelet's state: the pods it lists and the requests it saw."""

    pods: list[dict[str, Any]]
    url: str = ""
    auth_headers: list[str] = field(default_factory=list)

    def pod_list(self) -> bytes:
        return orjson.dumps(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods}
        )


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1, like a kubelet's own."""
    workdir = tmp_path_factory.mktemp("kubelet-tls")
    cert, key = workdir / "kubelet.crt", workdir / "kubelet.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=node-1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:node-1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def kubelet(tls_cert: tuple[Path, Path]) -> AsyncIterator[Kubelet]:
    """A TLS server answering ``GET /pods`` to ``Bearer TOKEN`` only (401 otherwise)."""
    state = Kubelet(pods=[fixture("pod-web-running.json"), static_pod(), pending_pod()])

    async def pods(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        state.auth_headers.append(header)
        if header != f"Bearer {TOKEN}":
            return web.Response(status=401, text="Unauthorized")
        return web.Response(body=state.pod_list(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/pods", pods)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_cert)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"https://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def pending_pod() -> dict[str, Any]:
    return fixture("pod-report-worker-pending.json")


def config(kubelet: Kubelet, cert: Path, token_file: Path) -> KubeletSDConfig:
    return KubeletSDConfig(
        url=kubelet.url,
        http_client=HTTPClientConfig(
            authorization=Authorization(credentials_file=str(token_file)),
            tls_config=TLSConfig(ca_file=str(cert)),
        ),
    )


def pod_role(raw: dict[str, Any]) -> TargetGroup:
    """What ``kubernetes_sd_configs: [{role: pod}]`` makes of one pod."""
    return roles.pod_group(objects.pod_from_raw(raw))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


async def test_groups_are_the_pod_roles(
    kubelet: Kubelet, tls_cert: tuple[Path, Path], token_file: Path
) -> None:
    """One group per listed pod, equal to the pod role's, static pod included; TLS verified
    against the kubelet's CA, the token sent as a bearer."""
    discoverer = KubeletDiscoverer(config(kubelet, tls_cert[0], token_file))
    async with aiohttp.ClientSession() as session:
        groups = await discoverer.fetch(session)
    assert groups == [pod_role(p) for p in kubelet.pods]
    static = groups[1]
    assert static.source == "pod/kube-system/etcd-node-1"
    (target,) = static.targets
    assert target["__address__"] == "10.0.1.23:2381"
    assert static.labels["__meta_kubernetes_pod_annotation_kubernetes_io_config_source"] == "file"
    assert groups[2].targets == ()  # pending, no IP: an empty group, as the pod role sends
    assert kubelet.auth_headers == [f"Bearer {TOKEN}"]


async def test_pods_gone_since_last_poll_are_emptied(
    kubelet: Kubelet, tls_cert: tuple[Path, Path], token_file: Path
) -> None:
    """A pod that leaves the kubelet's list is sent once as an empty group, then forgotten."""
    discoverer = KubeletDiscoverer(config(kubelet, tls_cert[0], token_file))
    async with aiohttp.ClientSession() as session:
        await discoverer.fetch(session)
        web_pod = kubelet.pods.pop(0)
        second = await discoverer.fetch(session)
        third = await discoverer.fetch(session)
    source = roles.pod_source(web_pod["metadata"]["namespace"], web_pod["metadata"]["name"])
    assert second[-1] == TargetGroup(source=source)
    assert [g.source for g in third] == [g.source for g in second[:-1]]


async def test_rotated_token_is_read_at_each_poll(
    kubelet: Kubelet, tls_cert: tuple[Path, Path], token_file: Path
) -> None:
    """A 401 is a refresh error naming the URL; the token file is re-read on the next poll."""
    await asyncio.to_thread(token_file.write_text, "stale")
    discoverer = KubeletDiscoverer(config(kubelet, tls_cert[0], token_file))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DiscoveryError, match=r"/pods: server returned HTTP status 401"):
            await discoverer.fetch(session)
        await asyncio.to_thread(token_file.write_text, TOKEN)
        assert len(await discoverer.fetch(session)) == 3


async def test_untrusted_certificate_is_an_error(kubelet: Kubelet, token_file: Path) -> None:
    """Without the kubelet's CA the TLS handshake fails: a DiscoveryError, no groups."""
    cfg = KubeletSDConfig(
        url=kubelet.url,
        http_client=HTTPClientConfig(authorization=Authorization(credentials_file=str(token_file))),
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DiscoveryError, match="ClientConnectorCertificateError"):
            await KubeletDiscoverer(cfg).fetch(session)


def test_url_keeps_its_path() -> None:
    """``/pods`` is appended, so an API-server node proxy URL works as ``url``."""
    assert pods_url("https://node-1:10250") == "https://node-1:10250/pods"
    assert pods_url("https://api:6443/api/v1/nodes/n1/proxy/") == (
        "https://api:6443/api/v1/nodes/n1/proxy/pods"
    )


def test_config_defaults_url_from_node_name(tmp_path: Path) -> None:
    """Without ``url`` the kubelet is https://$NODE_NAME:10250; refresh defaults to 15 s."""
    text = (
        "scrape_configs:\n"
        "  - job_name: pods\n"
        "    kubelet_sd_configs:\n"
        "      - authorization: {credentials_file: /var/run/secrets/token}\n"
        "        tls_config: {insecure_skip_verify: true}\n"
    )
    cfg = load_config_text(text, base_dir=str(tmp_path), env={"NODE_NAME": "node-1"})
    (sd,) = cfg.scrape_configs[0].kubelet_sd_configs
    assert sd.url == "https://node-1:10250"
    assert sd.refresh_interval == 15.0
    assert sd.http_client.tls_config.insecure_skip_verify
    with pytest.raises(ConfigError, match="NODE_NAME is not set"):
        load_config_text(text, base_dir=str(tmp_path), env={})
    bad = copy.copy(text).replace("- authorization", "- role: pod\n        authorization")
    with pytest.raises(ConfigError, match="role"):
        load_config_text(bad, base_dir=str(tmp_path), env={"NODE_NAME": "node-1"})
