"""kubelet_sd (collector extension): the pods of one node, from its kubelet's ``/pods``.

Place in the pipeline: a provider of the discovery manager, like http_sd. Every
``refresh_interval`` it GETs ``<url>/pods`` (a v1 ``PodList`` of the pods bound to that kubelet,
static pods included) and turns each pod into the target group the ``pod`` role of
``kubernetes_sd_configs`` would send: the same converter (`roles.pod_group`), the same sources
(``pod/<namespace>/<name>``), the same labels. A DaemonSet agent then discovers its node's pods
with no API-server list or watch at all, and keeps discovering them while the API server is
down. Pods gone since the last poll are sent as empty groups under their old source.

Why a new top-level key and not a ``kubernetes_sd_configs`` option: a Prometheus config must
load unchanged, and an unknown key inside ``kubernetes_sd_configs`` would be an error there;
``kubelet_sd_configs`` is refused by Prometheus as a whole, visibly. Its shape follows
``http_sd_configs`` (``url``, ``refresh_interval``, the HTTP client keys) and Grafana Alloy's
``discovery.kubelet``, which has the same purpose.

What differs from the ``pod`` role: the kubelet lists a static pod itself (annotations
``kubernetes.io/config.source`` / ``config.hash``, the kubelet's UID), where the API server
holds its mirror pod (annotation ``kubernetes.io/config.mirror``, another UID); no
``attach_metadata`` (nodes and namespaces are API objects); changes show up at the next poll,
not at once. RBAC: ``get nodes/pods`` on Kubernetes 1.33+ (fine-grained kubelet authorization),
``get nodes/proxy`` before.

Prometheus counterpart: none (``discovery/kubernetes/pod.go`` for the labels; Alloy
``internal/component/discovery/kubelet/kubelet.go`` for the mechanism).
"""

from __future__ import annotations

import asyncio
import base64
from typing import NoReturn

import aiohttp
import orjson

import collector
from collector.config import HTTPClientConfig, KubeletSDConfig
from collector.discovery.discoverer import SendGroups
from collector.discovery.http import build_ssl_context
from collector.discovery.kubernetes.objects import pod_from_raw
from collector.discovery.kubernetes.roles import pod_group
from collector.discovery.metrics import RefreshMetrics
from collector.discovery.refresh import RefreshDiscoverer, Sleep
from collector.errors import DiscoveryError
from collector.httpclient import read_secret
from collector.model.targetgroup import TargetGroup

__all__ = ["KubeletDiscoverer", "pods_url"]

USER_AGENT = f"collector/{collector.__version__}"


def pods_url(url: str) -> str:
    """``<url>/pods``: a path in ``url`` is kept, so an API-server proxy URL
    (``https://apiserver/api/v1/nodes/<node>/proxy``) works too."""
    return url.rstrip("/") + "/pods"


class KubeletDiscoverer:
    """One ``kubelet_sd_configs`` entry: a `RefreshDiscoverer` around ``GET /pods``."""

    def __init__(
        self,
        config: KubeletSDConfig,
        *,
        refresh_metrics: RefreshMetrics | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = config.http_client
        if self._client.tls_config.cert or self._client.tls_config.key:
            raise DiscoveryError("kubelet_sd: inline tls_config cert/key are not supported")
        self._ssl = build_ssl_context(self._client.tls_config)
        self._url = pods_url(config.url)
        self._refresh_metrics = refresh_metrics
        self._sleep = sleep
        self._sources: set[str] = set()

    async def run(self, send: SendGroups) -> NoReturn:
        """Open one session for the provider's lifetime and poll until cancelled."""
        # A busy kubelet can take a while to encode 100+ pods; never longer than one interval.
        timeout = aiohttp.ClientTimeout(total=self._config.refresh_interval)
        async with aiohttp.ClientSession(
            timeout=timeout, trust_env=self._client.proxy_from_environment
        ) as session:
            refresher = RefreshDiscoverer(
                lambda: self.fetch(session),
                interval=self._config.refresh_interval,
                mechanism="kubelet",
                metrics=self._refresh_metrics,
                sleep=self._sleep,
            )
            await refresher.run(send)

    async def fetch(self, session: aiohttp.ClientSession) -> list[TargetGroup]:
        """One poll: a group per pod listed, an empty group per pod gone since the last one."""
        url = self._url
        try:
            async with session.get(
                url,
                headers=_headers(self._client),
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=self._client.tls_config.server_name or None,
                allow_redirects=self._client.follow_redirects,
                proxy=self._client.proxy_url or None,
            ) as response:
                if response.status != 200:
                    raise DiscoveryError(
                        f"{url}: server returned HTTP status {response.status} {response.reason}"
                    )
                body = await response.read()
        except aiohttp.ClientError as exc:
            raise DiscoveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise DiscoveryError(f"{url}: request timed out") from exc
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DiscoveryError(f"{url}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("items") or [], list):
            raise DiscoveryError(f"{url}: not a PodList")
        groups = [pod_group(pod_from_raw(raw)) for raw in data.get("items") or ()]
        sources = {g.source for g in groups}
        groups.extend(TargetGroup(source=s) for s in sorted(self._sources - sources))
        self._sources = sources
        return groups


def _headers(client: HTTPClientConfig) -> dict[str, str]:
    """Accept, User-Agent, configured headers and credentials (secret files re-read per poll,
    so a rotated service-account token is picked up)."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    for name, values in client.http_headers:
        if values:
            headers[name] = ", ".join(values)
    try:
        if client.basic_auth is not None:
            auth = client.basic_auth
            username = read_secret(auth.username, auth.username_file)
            password = read_secret(auth.password, auth.password_file)
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif client.authorization is not None:
            authz = client.authorization
            credentials = read_secret(authz.credentials, authz.credentials_file)
            headers["Authorization"] = f"{authz.type or 'Bearer'} {credentials}"
    except OSError as exc:
        raise DiscoveryError(f"unable to read a secret file: {exc}") from exc
    return headers
