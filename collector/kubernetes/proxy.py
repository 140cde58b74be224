"""Scrape targets through the Kubernetes API server proxy, with discovery's own credentials.

From a laptop (kind, a remote cluster) pod and node IPs are usually unreachable, but the API
server is not, and it proxies HTTP to pods, nodes and services for anyone allowed the
``pods/proxy`` (``nodes/proxy``, ``services/proxy``) subresource. A job with
``scrape_via_apiserver_proxy: true`` is scraped that way; this module turns one target into the
`ApiServerRoute` the scrape pool fetches (`collector.scrape.proxy.ProxiedScraper`).

Place in the pipeline: on the Kubernetes floor, below scrape, which fetches the routes, and
beside the discovery connections it shares `connection_spec` with; it imports neither.

Which proxy URL (the target's final URL gives scheme, port, path and query; its discovered
labels give the object):

===================================  ==========================================================
target discovered with               GET
===================================  ==========================================================
``__meta_kubernetes_pod_name``       ``/api/v1/namespaces/{ns}/pods/[https:]{pod}:{port}/proxy``
(roles pod, endpoints,               ``{path}?{query}``; the ``https:`` name prefix makes the API
endpointslice with a pod)            server speak TLS to the pod (it does not verify the pod)
``__meta_kubernetes_node_name``      ``/api/v1/nodes/{node}/proxy{path}?{query}`` (the kubelet:
(role node)                          HTTPS on its port); a port other than the discovered one:
                                     ``/api/v1/nodes/{http|https}:{node}:{port}/proxy...``
``__meta_kubernetes_service_name``   ``/api/v1/namespaces/{ns}/services/[https:]{svc}:{port}``
(role service)                       ``/proxy{path}?{query}`` (one endpoint the server picks)
===================================  ==========================================================

Endpoints without a pod and ingresses have nothing the API server can proxy to by name; their
scrapes fail with a message that says so. The port is the final ``__address__`` port (so
``prometheus.io/port`` relabeling keeps working); names and namespaces come from the discovered
labels, which relabeling cannot change.

Credentials: the same `ConnectionSpec` discovery uses for the job (``api_server`` + the job's
``http_client``, else ``kubeconfig_file``, else ``--kubeconfig``, else in-cluster), loaded with
the same `Connection` code, once per spec; ``Connection.headers`` is asked on every scrape so
refreshed tokens are used, and a 401 re-runs the loader. A job without
``kubernetes_sd_configs`` (static targets carrying Kubernetes labels) uses ``--kubeconfig`` or
in-cluster; a job whose SD configs name *different* API servers is refused (which server
discovered a target is not recorded in its labels).

The API server refuses some destinations itself: pods whose IP is loopback, link-local or
missing (``400 address not allowed`` in v1.20, ``pkg/proxy/util.IsProxyableIP``), unknown pods
(404), RBAC (403). Those answers reach ``lastError`` with the server's message.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from collector.config import KubernetesSDConfig, ScrapeConfig
from collector.errors import DiscoveryError
from collector.kubernetes.connection import Connection, ConnectionSpec, connection_spec

__all__ = ["ApiServerProxy", "ApiServerRoute", "proxy_path"]

_POD = "__meta_kubernetes_pod_name"
_NODE = "__meta_kubernetes_node_name"
_SERVICE = "__meta_kubernetes_service_name"
_NAMESPACE = "__meta_kubernetes_namespace"
_ENDPOINTS = ("__meta_kubernetes_endpoints_name", "__meta_kubernetes_endpointslice_name")
_INGRESS = "__meta_kubernetes_ingress_name"
_CREDENTIAL_HEADERS_DROPPED = frozenset({"accept", "user-agent"})
"""`Connection.headers` adds these for API calls; a scrape sets its own."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiServerRoute:
    """A proxied scrape's destination: what `collector.scrape.proxy.ProxiedScraper` GETs."""

    url: str
    """The API server proxy URL, query included."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """``Authorization`` (and an ``api_server`` job's ``http_headers``)."""
    ssl: ssl.SSLContext | bool = True
    """TLS to the API server: its CA and client certificate, or ``False`` for plain HTTP."""
    server_hostname: str | None = None
    proxy: str | None = None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def proxy_path(*, url: str, discovered_labels: Mapping[str, str]) -> str:
    """The API server path (and query) that proxies to the target whose final URL is ``url``.

    Pure. Raises `DiscoveryError` naming what is missing when the target cannot be proxied.
    """
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    try:
        port = parts.port or _default_port(scheme)
    except ValueError as exc:
        raise DiscoveryError(f"target URL {url!r} has an invalid port") from exc
    path = parts.path or "/"
    suffix = f"/proxy{path}" + (f"?{parts.query}" if parts.query else "")
    labels = discovered_labels
    namespace = labels.get(_NAMESPACE, "")
    if labels.get(_POD):
        if not namespace:
            raise DiscoveryError(f"pod target {labels[_POD]!r} has no {_NAMESPACE} label")
        prefix = "https:" if scheme == "https" else ""
        return f"/api/v1/namespaces/{namespace}/pods/{prefix}{labels[_POD]}:{port}{suffix}"
    if labels.get(_NODE):
        node = labels[_NODE]
        _, _, kubelet_port = labels.get("__address__", "").rpartition(":")
        if kubelet_port == str(port):
            return f"/api/v1/nodes/{node}{suffix}"
        return f"/api/v1/nodes/{scheme}:{node}:{port}{suffix}"
    if labels.get(_INGRESS):
        raise DiscoveryError("ingress targets cannot be scraped through the API server proxy")
    if labels.get(_SERVICE) and not any(labels.get(name) for name in _ENDPOINTS):
        if not namespace:
            raise DiscoveryError(f"service target {labels[_SERVICE]!r} has no {_NAMESPACE} label")
        prefix = "https:" if scheme == "https" else ""
        return f"/api/v1/namespaces/{namespace}/services/{prefix}{labels[_SERVICE]}:{port}{suffix}"
    if any(labels.get(name) for name in _ENDPOINTS):
        raise DiscoveryError(
            f"endpoint {labels.get('__address__', '')!r} is not backed by a pod, so the API "
            "server cannot proxy to it"
        )
    raise DiscoveryError(
        f"target {parts.netloc!r} has no {_POD}, {_NODE} or {_SERVICE} label, so there is "
        "nothing for the API server to proxy to"
    )


class ApiServerProxy:
    """The agent's `collector.scrape.proxy.ProxyResolver` for ``scrape_via_apiserver_proxy``.

    Holds one loaded `Connection` per `ConnectionSpec` for the agent's lifetime. Connections
    are used for their credentials and TLS only (`Connection.load` opens no session): the
    scrape pool's session does the requests.
    """

    def __init__(self, *, kubeconfig: str | None = None) -> None:
        self._kubeconfig = kubeconfig or None
        self._connections: dict[ConnectionSpec, Connection] = {}
        self._locks: dict[ConnectionSpec, asyncio.Lock] = {}

    def spec_for(self, cfg: ScrapeConfig) -> ConnectionSpec:
        """The connection discovery uses for ``cfg``'s Kubernetes SD (see the module docstring)."""
        specs = list(
            dict.fromkeys(
                connection_spec(sd, kubeconfig=self._kubeconfig) for sd in cfg.kubernetes_sd_configs
            )
        )
        if len(specs) > 1:
            raise DiscoveryError(
                f"job {cfg.job_name!r} discovers from {len(specs)} different API servers; "
                "scrape_via_apiserver_proxy needs exactly one"
            )
        if specs:
            return specs[0]
        return connection_spec(KubernetesSDConfig(role="pod"), kubeconfig=self._kubeconfig)

    async def _connection(self, spec: ConnectionSpec) -> Connection:
        conn = self._connections.get(spec)
        if conn is not None:
            return conn
        lock = self._locks.setdefault(spec, asyncio.Lock())
        async with lock:
            conn = self._connections.get(spec)
            if conn is None:
                spec.validate()
                conn = Connection(spec)
                await conn.load()
                self._connections[spec] = conn
        return conn

    async def resolve(
        self, *, url: str, discovered_labels: Mapping[str, str], cfg: ScrapeConfig
    ) -> ApiServerRoute:
        """The route for one target; raises `DiscoveryError` when there is none."""
        path = proxy_path(url=url, discovered_labels=discovered_labels)
        conn = await self._connection(self.spec_for(cfg))
        headers = {
            name: value
            for name, value in (await conn.headers()).items()
            if name.lower() not in _CREDENTIAL_HEADERS_DROPPED
        }
        return ApiServerRoute(
            url=f"{conn.base_url}{path}",
            headers=headers,
            ssl=conn.ssl,
            server_hostname=conn.server_hostname,
            proxy=conn.proxy,
        )

    async def credentials_rejected(self, cfg: ScrapeConfig) -> None:
        """After a 401: reload the job's credentials (token files, exec plugins); never raises."""
        try:
            conn = self._connections.get(self.spec_for(cfg))
        except DiscoveryError:
            return
        if conn is not None:
            await conn.reload_credentials()
