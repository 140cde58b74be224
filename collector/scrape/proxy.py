"""Scraping through a proxying front door (the Kubernetes API server): the seam and its scraper.

A job with ``scrape_via_apiserver_proxy: true`` does not GET ``target.url`` itself. A
`ProxyResolver` (the agent passes `collector.kubernetes.proxy.ApiServerProxy`, from the
Kubernetes floor below scrape; tests pass fakes) turns the target into an `ApiServerRoute`: the
URL to GET on the API server (``.../pods/<name>:<port>/proxy/metrics``), the API server's
credentials and TLS settings. `ProxiedScraper` resolves the route before *every* scrape, so
rotating tokens (in-cluster projected tokens, exec plugins) are picked up, and keeps one
`HttpScraper` per distinct route, so everything else (Accept, gzip, body limit, timeout header)
is exactly the direct path's.

What the job's ``http_client`` block means here: the target sits behind the API server, so the
job's ``authorization``/``basic_auth``/``tls_config``/``proxy_url`` would be sent to the wrong
party and are replaced by the route's; ``http_headers`` and ``follow_redirects`` still apply
(the API server forwards request headers to the target, minus its own credentials).

Identity does not change: the target keeps its labels (``instance`` is still the pod address)
and its fingerprint, so switching the mode on or off leaves series and scrape offsets as they
were. ``/api/v1/targets`` shows the URL actually fetched (the API server URL) as ``scrapeUrl``
once a route was resolved.

When the API server itself refuses (RBAC, unknown pod, a pod without an IP, ``address not
allowed`` for loopback and link-local IPs), its answer is a JSON ``Status``; the proxy session
reads it and the scrape fails with `ApiServerProxyError`, whose text carries the server's
message, so ``lastError`` says why instead of a bare ``HTTP 400``.

No Prometheus counterpart: Prometheus does this with relabeling (``__address__`` = the API
server, ``__metrics_path__`` = the proxy path) plus the job's ``authorization``; this mode does
the same without the relabel rules and with the kubeconfig's credentials.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from collector.config import HTTPClientConfig, ScrapeConfig, TLSConfig
from collector.errors import CollectorError, ScrapeError, ScrapeHTTPError, ScrapeTimeout
from collector.kubernetes.proxy import ApiServerRoute
from collector.scrape.scraper import HttpScraper, ScrapeResponse
from collector.scrape.target import Target

__all__ = [
    "ApiServerProxyError",
    "LazyProxyResolver",
    "ProxiedScraper",
    "ProxyResolver",
    "new_proxy_session",
    "proxied_config",
]

_STATUS_BODY_LIMIT = 64 * 1024
"""How much of a non-200 JSON answer is read to find the API server's ``Status`` message."""


class ProxyResolver(Protocol):
    """Turns a target into an `ApiServerRoute`; raises `CollectorError` when it cannot."""

    async def resolve(
        self, *, url: str, discovered_labels: Mapping[str, str], cfg: ScrapeConfig
    ) -> ApiServerRoute:
        """The route for the target with final URL ``url`` discovered with these labels."""
        ...

    async def credentials_rejected(self, cfg: ScrapeConfig) -> None:
        """The API server answered 401: reload the credentials ``cfg`` uses (never raises)."""
        ...


class LazyProxyResolver:
    """A `ProxyResolver` built on first use.

    The agent's factory for the Kubernetes resolver runs only when a job asks for the proxy,
    so an agent whose jobs never do builds none; the manager holds this instead.
    """

    __slots__ = ("_inner", "_make")

    def __init__(self, make: Callable[[], ProxyResolver]) -> None:
        self._make = make
        self._inner: ProxyResolver | None = None

    def _get(self) -> ProxyResolver:
        if self._inner is None:
            self._inner = self._make()
        return self._inner

    async def resolve(
        self, *, url: str, discovered_labels: Mapping[str, str], cfg: ScrapeConfig
    ) -> ApiServerRoute:
        """Delegate to the real resolver, building it first if needed."""
        return await self._get().resolve(url=url, discovered_labels=discovered_labels, cfg=cfg)

    async def credentials_rejected(self, cfg: ScrapeConfig) -> None:
        """Delegate to the real resolver (only ever called after a `resolve`)."""
        await self._get().credentials_rejected(cfg)


class ApiServerProxyError(ScrapeHTTPError):
    """The API server (not the target) refused the proxied request; its ``Status`` message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason)
        self.message = message
        self.args = (f"{self.args[0]} from the Kubernetes API server proxy: {message}",)


async def _raise_for_api_status(resp: aiohttp.ClientResponse) -> None:
    """Session hook: a non-200 ``Status`` object from the API server becomes its message.

    Answers that are not a ``Status`` (the target's own 500, say) are left to `HttpScraper`,
    which reports them as ``server returned HTTP status ...`` like a direct scrape.
    """
    if resp.status == 200 or resp.content_type != "application/json":
        return
    raw = b""
    try:
        while len(raw) < _STATUS_BODY_LIMIT:
            chunk = await resp.content.read(_STATUS_BODY_LIMIT - len(raw))
            if not chunk:
                break
            raw += chunk
        decoded = json.loads(raw)
    except (aiohttp.ClientError, ValueError):
        return
    finally:
        resp.release()
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        message = str(decoded.get("message") or decoded.get("reason") or "")
        if message:
            raise ApiServerProxyError(resp.status, resp.reason or "", message)


def new_proxy_session() -> aiohttp.ClientSession:
    """The pool's session for proxied jobs: `new_session`'s settings plus the Status hook."""
    return aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(limit=0),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        raise_for_status=_raise_for_api_status,
    )


def proxied_config(cfg: ScrapeConfig, route: ApiServerRoute) -> ScrapeConfig:
    """``cfg`` with its HTTP client pointed at the API server (see the module docstring)."""
    http = cfg.http_client
    headers = tuple(
        (name, values) for name, values in http.http_headers if name.lower() != "authorization"
    )
    headers += tuple((name, (value,)) for name, value in route.headers.items())
    return dataclasses.replace(
        cfg,
        http_client=HTTPClientConfig(
            tls_config=TLSConfig(server_name=route.server_hostname or ""),
            proxy_url=route.proxy or "",
            follow_redirects=http.follow_redirects,
            enable_http2=http.enable_http2,
            http_headers=headers,
        ),
    )


class ProxiedScraper:
    """`Scraper` for one target through the API server proxy (resolved on every scrape)."""

    __slots__ = ("_cfg", "_inner", "_key", "_resolver", "_session", "fetched_url", "target")

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        target: Target,
        cfg: ScrapeConfig,
        resolver: ProxyResolver,
    ) -> None:
        self._session = session
        self.target = target
        self._cfg = cfg
        self._resolver = resolver
        self._inner: HttpScraper | None = None
        self._key: tuple[object, ...] = ()
        self.fetched_url = ""
        """The API server URL of the last resolved route (``""`` before the first)."""

    async def _route(self) -> ApiServerRoute:
        target = self.target
        try:
            async with asyncio.timeout(target.timeout):
                return await self._resolver.resolve(
                    url=target.url,
                    discovered_labels=dict(target.discovered_labels),
                    cfg=self._cfg,
                )
        except TimeoutError as exc:
            raise ScrapeTimeout("API server proxy: resolving the route timed out") from exc
        except CollectorError as exc:
            raise ScrapeError(f"API server proxy: {exc}") from exc

    async def scrape(self) -> ScrapeResponse:
        """Resolve the route, then GET it like a direct scrape (same headers, limits, timeout)."""
        route = await self._route()
        key = (
            route.url,
            tuple(route.headers.items()),
            route.ssl,
            route.server_hostname,
            route.proxy,
        )
        if self._inner is None or key != self._key:
            self._inner = HttpScraper(
                session=self._session,
                url=route.url,
                timeout=self.target.timeout,
                cfg=proxied_config(self._cfg, route),
                ssl_context=route.ssl if isinstance(route.ssl, ssl.SSLContext) else None,
            )
            self._key = key
        self.fetched_url = route.url
        try:
            return await self._inner.scrape()
        except ScrapeHTTPError as exc:
            if exc.status == 401:
                await self._resolver.credentials_rejected(self._cfg)
            raise
