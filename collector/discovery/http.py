"""http_sd: GET a URL every ``refresh_interval``; the JSON body is a list of ``{targets, labels}``.

A refresh succeeds only on HTTP 200 with ``Content-Type: application/json`` (optionally
``; charset=utf-8``) and a body that `parse_target_groups` accepts. Group ``i`` has
``source = f"{url}:{i}"`` and the label ``__meta_url = url``; when the list shrinks from N to M
groups, empty groups for ``M..N-1`` delete what those sources said. Any failure keeps the last
good groups (nothing is sent) and counts ``prometheus_sd_http_failures_total`` plus the refresh
failure counter. The request carries ``X-Prometheus-Refresh-Interval-Seconds`` and times out
after ``refresh_interval``, like Prometheus's client.

HTTP client settings supported: basic auth (inline or ``*_file``), ``authorization``
(``credentials`` or ``credentials_file``, re-read on each request so rotated tokens are picked
up), TLS (``ca``/``ca_file``, ``cert_file``/``key_file``, ``server_name``,
``insecure_skip_verify``, ``min_version``/``max_version``), ``proxy_url``,
``proxy_from_environment``, ``follow_redirects``, ``http_headers``. Not supported: inline client
``cert``/``key`` (refused when the provider is created) and HTTP/2 (aiohttp speaks HTTP/1.1).

Prometheus counterpart: ``discovery/http/http.go``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from typing import NoReturn

import aiohttp
import orjson
from prometheus_client import Counter

import collector
from collector.config import HTTPSDConfig, TLSConfig
from collector.discovery.discoverer import SendGroups
from collector.discovery.metrics import RefreshMetrics
from collector.discovery.refresh import RefreshDiscoverer, Sleep
from collector.discovery.static import parse_target_groups
from collector.errors import DiscoveryError
from collector.httpclient import build_ssl_context as shared_ssl_context
from collector.httpclient import read_secret
from collector.model.targetgroup import TargetGroup

__all__ = ["URL_LABEL", "HTTPDiscoverer", "build_ssl_context"]

URL_LABEL = "__meta_url"
USER_AGENT = f"collector/{collector.__version__}"

# Prometheus: ^(?i:application\/json(;\s*charset=("utf-8"|utf-8))?)$ on the trimmed header.
_JSON_CONTENT_TYPE = re.compile(r'(?i:application/json(;\s*charset=("utf-8"|utf-8))?)')


class HTTPDiscoverer:
    """One ``http_sd_configs`` entry: a `RefreshDiscoverer` around one GET."""

    def __init__(
        self,
        config: HTTPSDConfig,
        *,
        refresh_metrics: RefreshMetrics | None = None,
        failures: Counter | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = config.http_client
        if self._client.tls_config.cert or self._client.tls_config.key:
            raise DiscoveryError("http_sd: inline tls_config cert/key are not supported")
        self._ssl = build_ssl_context(self._client.tls_config)
        self._refresh_metrics = refresh_metrics
        self._failures = failures
        self._sleep = sleep
        self._last_length = 0

    async def run(self, send: SendGroups) -> NoReturn:
        """Open one session for the provider's lifetime and refresh until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self._config.refresh_interval)
        async with aiohttp.ClientSession(
            timeout=timeout, trust_env=self._client.proxy_from_environment
        ) as session:
            refresher = RefreshDiscoverer(
                lambda: self.fetch(session),
                interval=self._config.refresh_interval,
                mechanism="http",
                metrics=self._refresh_metrics,
                sleep=self._sleep,
            )
            await refresher.run(send)

    async def fetch(self, session: aiohttp.ClientSession) -> list[TargetGroup]:
        """One refresh: the groups to send, or `DiscoveryError` (the failure is counted here)."""
        try:
            return await self._fetch(session)
        except Exception:
            if self._failures is not None:
                self._failures.inc()
            raise

    async def _fetch(self, session: aiohttp.ClientSession) -> list[TargetGroup]:
        url = self._config.url
        headers = self._headers()
        try:
            async with session.get(
                url,
                headers=headers,
                ssl=self._ssl if self._ssl is not None else True,
                server_hostname=self._client.tls_config.server_name or None,
                allow_redirects=self._client.follow_redirects,
                proxy=self._client.proxy_url or None,
            ) as response:
                if response.status != 200:
                    raise DiscoveryError(
                        f"{url}: server returned HTTP status {response.status} {response.reason}"
                    )
                content_type = response.headers.get("Content-Type", "").strip()
                if not _JSON_CONTENT_TYPE.fullmatch(content_type):
                    raise DiscoveryError(f"{url}: unsupported content type {content_type!r}")
                body = await response.read()
        except aiohttp.ClientError as exc:
            raise DiscoveryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise DiscoveryError(f"{url}: request timed out") from exc
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DiscoveryError(f"{url}: invalid JSON: {exc}") from exc
        groups = parse_target_groups(
            data, location=url, source_prefix=url, meta_labels={URL_LABEL: url}
        )
        # Sources that disappeared: empty groups delete what they said (spec §1.3).
        length = len(groups)
        groups.extend(
            TargetGroup(source=f"{url}:{index}") for index in range(length, self._last_length)
        )
        self._last_length = length
        return groups

    def _headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "X-Prometheus-Refresh-Interval-Seconds": _seconds(self._config.refresh_interval),
        }
        for name, values in self._client.http_headers:
            if values:
                headers[name] = ", ".join(values)
        if self._client.basic_auth is not None:
            auth = self._client.basic_auth
            username = _secret(auth.username, auth.username_file)
            password = _secret(auth.password, auth.password_file)
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif self._client.authorization is not None:
            authz = self._client.authorization
            credentials = _secret(authz.credentials, authz.credentials_file)
            headers["Authorization"] = f"{authz.type or 'Bearer'} {credentials}"
        return headers


def _seconds(value: float) -> str:
    """``60.0`` -> ``"60"``; Prometheus sends the interval as whole seconds when it is one."""
    return str(int(value)) if value == int(value) else str(value)


def _secret(inline: str, path: str) -> str:
    """An inline secret, or the stripped content of its ``*_file`` (re-read on every use)."""
    try:
        return read_secret(inline, path)
    except OSError as exc:
        raise DiscoveryError(f"unable to read secret file {path}: {exc.strerror or exc}") from exc


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """An SSL context for ``tls_config``, or ``None`` when the defaults (system CAs) will do."""
    if tls == TLSConfig():
        return None
    try:
        return shared_ssl_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise DiscoveryError(f"unable to load TLS configuration: {exc}") from exc
