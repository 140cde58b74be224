"""Proxy URL building, credentials and error reporting for ``scrape_via_apiserver_proxy``.

The end-to-end path against the real kube-apiserver is ``tests/integration/
test_apiserver_proxy.py``; here a small fake of the API server's pod proxy (auth, 401/403, 404
for unknown pods, 400 ``address not allowed`` for pods without a usable IP, Status bodies as
v1.20.2 writes them) checks the same code without the rig, plus the pure path table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from collector.config import KubernetesSDConfig, ScrapeConfig
from collector.errors import DiscoveryError, ScrapeError, ScrapeHTTPError
from collector.kubernetes.proxy import ApiServerProxy, ApiServerRoute, proxy_path
from collector.scrape.proxy import (
    ApiServerProxyError,
    ProxiedScraper,
    ProxyResolver,
    new_proxy_session,
)
from tests.scrape.scrapekit import build_target

NS = "__meta_kubernetes_namespace"
POD = "__meta_kubernetes_pod_name"


@pytest.mark.parametrize(
    ("url", "labels", "path"),
    [
        (
            "http://10.0.0.5:8080/metrics",
            {NS: "web", POD: "api-0"},
            "/api/v1/namespaces/web/pods/api-0:8080/proxy/metrics",
        ),
        (
            "https://10.0.0.5:8443/metrics",
            {NS: "web", POD: "api-0"},
            "/api/v1/namespaces/web/pods/https:api-0:8443/proxy/metrics",
        ),
        (
            "http://10.0.0.5:9100/probe?module=http_2xx&target=a%2Fb",
            {NS: "web", POD: "api-0", "__meta_kubernetes_endpoints_name": "api"},
            "/api/v1/namespaces/web/pods/api-0:9100/proxy/probe?module=http_2xx&target=a%2Fb",
        ),
        (
            "http://10.0.0.5/metrics",
            {NS: "web", POD: "api-0"},
            "/api/v1/namespaces/web/pods/api-0:80/proxy/metrics",
        ),
        (
            "https://192.168.1.2:10250/metrics/cadvisor",
            {"__meta_kubernetes_node_name": "n1", "__address__": "192.168.1.2:10250"},
            "/api/v1/nodes/n1/proxy/metrics/cadvisor",
        ),
        (
            "http://192.168.1.2:9100/metrics",
            {"__meta_kubernetes_node_name": "n1", "__address__": "192.168.1.2:10250"},
            "/api/v1/nodes/http:n1:9100/proxy/metrics",
        ),
        (
            "http://api.web.svc:80/metrics",
            {NS: "web", "__meta_kubernetes_service_name": "api"},
            "/api/v1/namespaces/web/services/api:80/proxy/metrics",
        ),
    ],
    ids=["pod", "pod-https", "endpoints-pod-query", "default-port", "node", "node-port", "svc"],
)
def test_proxy_path(url: str, labels: dict[str, str], path: str) -> None:
    """Each role's target maps to the API server's proxy subresource path."""
    assert proxy_path(url=url, discovered_labels=labels) == path


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {NS: "web", "__meta_kubernetes_service_name": "api",
             "__meta_kubernetes_endpoints_name": "api", "__address__": "1.2.3.4:80"},
            "not backed by a pod",
        ),
        ({NS: "web", "__meta_kubernetes_ingress_name": "i"}, "ingress targets cannot"),
        ({}, "nothing for the API server to proxy to"),
        ({POD: "api-0"}, "has no __meta_kubernetes_namespace label"),
    ],
    ids=["endpoints-without-pod", "ingress", "static", "pod-without-namespace"],
)  # fmt: skip
def test_unproxyable_targets_say_why(labels: dict[str, str], message: str) -> None:
    """Targets the API server cannot proxy to by name fail with a reason."""
    with pytest.raises(DiscoveryError, match=message):
        proxy_path(url="http://1.2.3.4:80/metrics", discovered_labels=labels)


def test_connection_is_the_one_discovery_uses(tmp_path: Path) -> None:
    """The job's SD connection, else --kubeconfig; two different API servers are refused."""
    resolver = ApiServerProxy(kubeconfig=str(tmp_path / "flag.yaml"))
    static = ScrapeConfig(job_name="s")
    assert resolver.spec_for(static).kubeconfig == str(tmp_path / "flag.yaml")
    one = ScrapeConfig(
        job_name="k",
        kubernetes_sd_configs=(
            KubernetesSDConfig(role="pod", api_server="https://a:6443"),
            KubernetesSDConfig(role="node", api_server="https://a:6443"),
        ),
    )
    assert resolver.spec_for(one).api_server == "https://a:6443"
    two = ScrapeConfig(
        job_name="k2",
        kubernetes_sd_configs=(
            KubernetesSDConfig(role="pod", api_server="https://a:6443"),
            KubernetesSDConfig(role="pod", kubeconfig_file="/x"),
        ),
    )
    with pytest.raises(DiscoveryError, match="2 different API servers"):
        resolver.spec_for(two)


# ----------------------------------------------------------------------------- the fake server


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


@dataclass
class FakeProxy:
    """kube-apiserver's ``pods/proxy`` as v1.20.2 answers it (see the module docstring)."""

    url: str = ""
    token: str = "sekret"
    pods: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, name) -> pod IP ("" = none yet)."""
    network: dict[str, str] = field(default_factory=dict)
    """Pod IP -> the loopback ``host:port`` prefix that plays that pod's network."""
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.token}":
            if auth == "Bearer readonly":
                name = request.match_info["name"]
                return _status(
                    403,
                    "Forbidden",
                    f'pods "{name}" is forbidden: User "ro" cannot get resource "pods/proxy" in '
                    f'API group "" in the namespace "{request.match_info["ns"]}"',
                )
            return _status(401, "Unauthorized", "Unauthorized")
        ns, id_ = request.match_info["ns"], request.match_info["name"]
        _scheme, _, rest = (
            id_.partition(":") if id_.startswith(("http:", "https:")) else ("", "", id_)
        )
        name, _, port = rest.partition(":")
        if (ns, name) not in self.pods:
            return _status(404, "NotFound", f'pods "{name}" not found')
        ip = self.pods[ns, name]
        if not ip or ip.startswith(("127.", "169.254.")):
            return _status(400, "BadRequest", "address not allowed")
        self.seen.append(request.path_qs)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        headers.pop("Host", None)
        upstream = f"http://{self.network[ip]}:{port or 80}/{request.match_info['tail']}"
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(upstream, params=request.query, headers=headers) as resp,
        ):
            return web.Response(
                status=resp.status,
                body=await resp.read(),
                headers={"Content-Type": resp.headers.get("Content-Type", "")},
            )


@dataclass
class Exporter:
    status: int = 200
    headers: list[Mapping[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[FakeProxy, Exporter, int]]:
    """A fake API server with pod ``web/api-0`` (IP 10.0.0.5) backed by a loopback exporter."""
    exporter = Exporter()

    async def metrics(request: web.Request) -> web.Response:
        exporter.headers.append(dict(request.headers))
        exporter.queries.append(request.query_string)
        return web.Response(
            status=exporter.status,
            body=b"up 1\n",
            headers={"Content-Type": "text/plain; version=0.0.4"},
        )

    exporter_app = web.Application()
    exporter_app.router.add_get("/metrics", metrics)
    fake = FakeProxy()
    api = web.Application()
    api.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/proxy/{tail:.*}", fake.handle)
    async with serve(exporter_app) as exporter_addr, serve(api) as api_addr:
        host, _, port = exporter_addr.rpartition(":")
        fake.url = f"http://{api_addr}"
        fake.pods[("web", "api-0")] = "10.0.0.5"
        fake.network["10.0.0.5"] = host
        yield fake, exporter, int(port)


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


class Counting:
    """Wraps a resolver and counts ``credentials_rejected`` calls."""

    def __init__(self, inner: ApiServerProxy) -> None:
        self.inner = inner
        self.rejected = 0

    async def resolve(
        self, *, url: str, discovered_labels: Mapping[str, str], cfg: ScrapeConfig
    ) -> ApiServerRoute:
        return await self.inner.resolve(url=url, discovered_labels=discovered_labels, cfg=cfg)

    async def credentials_rejected(self, cfg: ScrapeConfig) -> None:
        self.rejected += 1
        await self.inner.credentials_rejected(cfg)


async def scrape_pod(
    resolver: ProxyResolver, port: int, *, pod: str = "api-0", query: str = ""
) -> tuple[ProxiedScraper, bytes]:
    cfg = ScrapeConfig(job_name="pods", scrape_via_apiserver_proxy=True)
    target = build_target(cfg, f"10.0.0.5:{port}", **{NS: "web", POD: pod})
    if query:
        target.url += f"?{query}"
    async with new_proxy_session() as session:
        scraper = ProxiedScraper(session=session, target=target, cfg=cfg, resolver=resolver)
        response = await scraper.scrape()
        return scraper, response.body


async def test_scrape_goes_through_the_proxy_with_kubeconfig_credentials(tmp_path: Path) -> None:
    """The kubeconfig's token authenticates to the API server; the target never sees it."""
    async with cluster() as (fake, exporter, port):
        resolver = ApiServerProxy(kubeconfig=str(kubeconfig(tmp_path / "kc", fake.url, "sekret")))
        scraper, body = await scrape_pod(resolver, port, query="a=b")
    assert body == b"up 1\n"
    assert scraper.fetched_url == (
        f"{fake.url}/api/v1/namespaces/web/pods/api-0:{port}/proxy/metrics?a=b"
    )
    assert fake.seen == [f"/api/v1/namespaces/web/pods/api-0:{port}/proxy/metrics?a=b"]
    assert exporter.queries == ["a=b"]
    assert "Authorization" not in exporter.headers[0]
    assert exporter.headers[0]["Accept"].startswith("application/openmetrics-text")


@pytest.mark.parametrize(
    ("token", "pod", "ip", "status", "message"),
    [
        ("sekret", "gone-0", "", "404 Not Found", 'pods "gone-0" not found'),
        ("sekret", "new-0", "", "400 Bad Request", "address not allowed"),
        ("sekret", "lo-0", "127.0.0.1", "400 Bad Request", "address not allowed"),
        ("readonly", "api-0", "10.0.0.5", "403 Forbidden", 'pods "api-0:'),
        ("wrong", "api-0", "10.0.0.5", "401 Unauthorized", "Unauthorized"),
    ],
    ids=["unknown-pod", "pod-without-ip", "loopback-ip", "rbac", "bad-token"],
)
async def test_api_server_refusals_carry_its_message(
    tmp_path: Path, token: str, pod: str, ip: str, status: str, message: str
) -> None:
    """The Status message of the API server's refusal becomes the scrape error's text."""
    async with cluster() as (fake, exporter, port):
        if pod != "gone-0":
            fake.pods[("web", pod)] = ip
        resolver = Counting(
            ApiServerProxy(kubeconfig=str(kubeconfig(tmp_path / "kc", fake.url, token)))
        )
        with pytest.raises(ApiServerProxyError) as refused:
            await scrape_pod(resolver, port, pod=pod)
    assert str(refused.value).startswith(
        f"server returned HTTP status {status} from the Kubernetes API server proxy: {message}"
    )
    assert resolver.rejected == (1 if token == "wrong" else 0)
    assert exporter.headers == []


async def test_target_errors_pass_through_unchanged(tmp_path: Path) -> None:
    """A non-200 from the target itself reads like a direct scrape's error."""
    async with cluster() as (fake, exporter, port):
        exporter.status = 503
        resolver = ApiServerProxy(kubeconfig=str(kubeconfig(tmp_path / "kc", fake.url, "sekret")))
        with pytest.raises(ScrapeHTTPError) as failed:
            await scrape_pod(resolver, port)
    assert not isinstance(failed.value, ApiServerProxyError)
    assert str(failed.value) == "server returned HTTP status 503 Service Unavailable"


async def test_unresolvable_target_is_a_scrape_error(tmp_path: Path) -> None:
    """A missing kubeconfig or a target without Kubernetes labels fails the scrape, clearly."""
    cfg = ScrapeConfig(job_name="s", scrape_via_apiserver_proxy=True)
    resolver = ApiServerProxy(kubeconfig=str(tmp_path / "missing.yaml"))
    async with new_proxy_session() as session:
        static = ProxiedScraper(
            session=session, target=build_target(cfg, "h:1"), cfg=cfg, resolver=resolver
        )
        with pytest.raises(ScrapeError, match=r"^API server proxy: target 'h:1' has no"):
            await static.scrape()
        pod = ProxiedScraper(
            session=session,
            target=build_target(cfg, "h:1", **{NS: "web", POD: "api-0"}),
            cfg=cfg,
            resolver=resolver,
        )
        with pytest.raises(ScrapeError, match=r"^API server proxy: kubeconfig file .* not exist"):
            await pod.scrape()
    assert static.fetched_url == ""
