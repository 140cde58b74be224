"""``scrape_via_apiserver_proxy`` end to end against the real kube-apiserver v1.20.2 rig.

The agent runs in-process with a kubeconfig for the rig (token + CA, like a laptop's kind
kubeconfig), discovers pods and nodes there, and scrapes them through the API server's proxy:
the HTTP request goes to ``https://127.0.0.1:<apiserver>/api/v1/.../proxy/metrics`` and the API
server dials the pod IP itself.

What the real server does with the destination (observed, v1.20.2): a pod IP on loopback (or
link-local, or no IP at all) is refused with ``400 address not allowed`` before any dial
(``pkg/proxy/util.IsProxyableIP``), and tests here only ever dial loopback. So pods are covered
the way the issue allows: the refusal must reach ``lastError`` with the server's message (here),
and URL building and auth for pods are tested against the fake API server's proxy in
``tests/scrape/test_proxy_route.py``. Nodes are not subject to that check: the node test below is
a real proxied scrape, through the real API server, of a kubelet-like HTTPS endpoint on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.agent import Agent
from tests.integration.kube import KubeAPIServer, kube_apiserver
from tests.integration.running import Target, eventually, running_agent, serve_target

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BODY = b'# TYPE proxied_up gauge\nproxied_up{via="apiserver"} 1\n'


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with kube_apiserver(tmp_path_factory.mktemp("kube")) as server:
        yield server


def pod(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "exporter"}},
        "spec": {
            "nodeName": "proxy-node",
            "containers": [
                {"name": "exporter", "image": "exporter", "ports": [{"containerPort": port}]}
            ],
        },
    }


def running_status(ip: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }


def create_pod(kube: KubeAPIServer, ns: str, name: str, *, ip: str, port: int) -> None:
    kube.ensure_namespace(ns)
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod(name, port))
    kube.patch_status(f"/api/v1/namespaces/{ns}/pods/{name}", running_status(ip))


def pods_job(ns: str, *, extra: str = "") -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: pods
    scrape_via_apiserver_proxy: true
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names: [{ns}]
{extra}
"""


def agent_with_kubeconfig(
    config: str, tmp_path: Path, kubeconfig: Path
) -> contextlib.AbstractAsyncContextManager[Agent]:
    """An in-process agent started with ``--kubeconfig`` (see ``running_agent``)."""
    return running_agent(config, tmp_path, kubeconfig=kubeconfig, flush_deadline=5.0)


async def api_targets(agent: Agent) -> list[dict[str, Any]]:
    """``activeTargets`` as the HTTP API serves them."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{agent.options.listen_address}/api/v1/targets") as resp,
    ):
        payload = await resp.json()
    active: list[dict[str, Any]] = payload["data"]["activeTargets"]
    return active


async def wait_target(agent: Agent, predicate: Any, *, what: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        found[:] = [t for t in await api_targets(agent) if predicate(t)]
        return bool(found)

    try:
        await eventually(check, timeout=30)
    except TimeoutError as exc:
        raise AssertionError(f"{what}: {exc}; targets: {await api_targets(agent)}") from None
    return found[0]


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key for the HTTPS exporters."""
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=exporter", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextlib.asynccontextmanager
async def serve_tls_target(
    body: bytes, host: str, cert: tuple[Path, Path]
) -> AsyncIterator[Target]:
    """An HTTPS exposition endpoint (the API server does not verify pods or kubelets here)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert)
    target = Target(body=body, host=host)

    async def metrics(request: web.Request) -> web.Response:
        target.scrapes += 1
        target.seen_headers.append(dict(request.headers))
        response = web.Response(body=target.body, headers={"Content-Type": target.content_type})
        # Close each TLS connection after its response: a keep-alive TLS connection still open
        # at teardown closes asynchronously (close_notify) and would outlive the test's loop.
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind((host, 0))
    target.port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=context).start()
    try:
        yield target
    finally:
        await runner.cleanup()


async def test_node_is_scraped_through_the_kubelet_proxy(
    kube: KubeAPIServer, tmp_path: Path, tls_cert: tuple[Path, Path]
) -> None:
    """A node target goes to nodes/<name>/proxy/metrics; the server dials its kubelet (HTTPS)."""
    ip = "127.0.0.1"  # tests only ever dial loopback
    async with serve_tls_target(BODY, ip, tls_cert) as kubelet:
        kube.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "proxy-kubelet"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
                },
            },
        )
        config = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kubelet
    scrape_via_apiserver_proxy: true
    kubernetes_sd_configs:
      - role: node
    relabel_configs:
      - source_labels: [__meta_kubernetes_node_name]
        regex: proxy-kubelet
        action: keep
"""
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig.yaml")
        async with agent_with_kubeconfig(config, tmp_path, kubeconfig) as agent:
            target = await wait_target(agent, lambda t: t["health"] == "up", what="node up")
    assert target["scrapeUrl"] == f"{kube.url}/api/v1/nodes/proxy-kubelet/proxy/metrics"
    assert kubelet.scrapes >= 1


async def test_loopback_pod_ip_is_refused_with_a_clear_error(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """The server refuses a loopback pod IP; lastError carries its Status message."""
    async with serve_target(Target(body=BODY)) as exporter:  # 127.0.0.1
        create_pod(kube, "proxy-loopback", "lo-0", ip="127.0.0.1", port=exporter.port)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig.yaml")
        config = pods_job("proxy-loopback")
        async with agent_with_kubeconfig(config, tmp_path, kubeconfig) as agent:
            target = await wait_target(
                agent, lambda t: t["health"] == "down" and t["lastError"], what="refusal"
            )
    assert target["lastError"] == (
        "server returned HTTP status 400 Bad Request from the Kubernetes API server proxy: "
        "address not allowed"
    )
    assert target["scrapeUrl"].endswith(f"/pods/lo-0:{exporter.port}/proxy/metrics")
    assert exporter.scrapes == 0


async def test_rbac_refusal_names_the_missing_permission(
    kube: KubeAPIServer, tmp_path: Path
) -> None:
    """Static targets carrying pod labels use --kubeconfig; a 403 names pods/proxy."""
    ip = "127.0.0.1"  # tests only ever dial loopback
    async with serve_target(Target(body=BODY, host=ip)) as exporter:
        create_pod(kube, "proxy-rbac", "web-0", ip=ip, port=exporter.port)
        kubeconfig = kube.write_kubeconfig(tmp_path / "prom.yaml", kube.unprivileged_token)
        config = f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: static-pods
    scrape_via_apiserver_proxy: true
    static_configs:
      - targets: ["{ip}:{exporter.port}"]
        labels:
          __meta_kubernetes_namespace: proxy-rbac
          __meta_kubernetes_pod_name: web-0
"""
        async with agent_with_kubeconfig(config, tmp_path, kubeconfig) as agent:
            target = await wait_target(
                agent, lambda t: t["health"] == "down" and t["lastError"], what="403"
            )
    assert target["lastError"].startswith(
        "server returned HTTP status 403 Forbidden from the Kubernetes API server proxy: "
        f'pods "web-0:{exporter.port}" is forbidden: User "prom" cannot get resource '
        '"pods/proxy"'
    ), target["lastError"]
    assert exporter.scrapes == 0
