"""Kubeconfig and in-cluster credentials, loaded by kubernetes_asyncio (spec §2.2).

Place in the pipeline: `collector.kubernetes.connection.Connection.load` imports this module
when a connection is configured by a kubeconfig or runs in-cluster (never for ``api_server``
configs, which carry their own ``http_client``). It is the project's only importer of
kubernetes_asyncio (an import-linter contract), and kubernetes_asyncio is used for nothing but
these loaders: requests are plain aiohttp, so the informer controls streaming and timeouts.

What the loaders give: the server URL, its CA and client certificate, ``tls-server-name``,
``proxy-url``, and a bearer token that may change. `ClusterConfig.authorization` asks for it
on every request: the in-cluster loader's refresh hook re-reads the projected token file every
minute; kubeconfig tokens from exec plugins and OIDC are re-run by loading again (what
`Connection.reload_credentials` does after a 401). Nothing is persisted back to the kubeconfig
(``persist_config=False``: the loader writes refreshed credentials into the file by default).

Prometheus counterpart: client-go's ``rest.InClusterConfig`` and ``clientcmd``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

from collector.errors import DiscoveryError

__all__ = ["ClusterConfig", "load_in_cluster", "load_kubeconfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Where the API server is and how to reach it, as a kubeconfig or the pod says."""

    host: str
    """Base URL without a trailing slash."""
    ssl: ssl.SSLContext | bool
    """TLS context for ``https``, ``False`` for plain HTTP."""
    server_hostname: str | None = None
    """kubeconfig ``tls-server-name``."""
    proxy: str | None = None
    """kubeconfig ``proxy-url``."""
    configuration: Configuration = field(repr=False, compare=False)
    """kubernetes_asyncio's object: it holds the (refreshing) token."""

    async def authorization(self) -> str:
        """The ``Authorization`` header value now (``""`` when the config has no token)."""
        value = await self.configuration.get_api_key_with_prefix("BearerToken")
        return str(value) if value else ""


async def load_kubeconfig(path: str) -> ClusterConfig:
    """The current context of the kubeconfig at ``path`` (a ``:``-separated list is merged).

    Raises `DiscoveryError` when it cannot be used.
    """
    cfg = Configuration()
    try:
        await load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)
        return _cluster_config(cfg)
    except (ConfigException, OSError, ValueError, ssl.SSLError) as exc:
        raise DiscoveryError(f"kubernetes client configuration (kubeconfig): {exc}") from exc


def load_in_cluster(*, sa_dir: str, environ: Mapping[str, str]) -> ClusterConfig:
    """The pod's service account: token and CA under ``sa_dir``, server from ``environ``.

    Raises `DiscoveryError` when it cannot be used.
    """
    cfg = Configuration()
    try:
        load_incluster_config(  # type: ignore[no-untyped-call]  # untyped in kubernetes_asyncio
            client_configuration=cfg,
            try_refresh_token=True,
            token_filename=os.path.join(sa_dir, "token"),
            cert_filename=os.path.join(sa_dir, "ca.crt"),
            environ=environ,
        )
        return _cluster_config(cfg)
    except (ConfigException, OSError, ValueError, ssl.SSLError) as exc:
        raise DiscoveryError(f"kubernetes client configuration (in-cluster): {exc}") from exc


def _cluster_config(cfg: Configuration) -> ClusterConfig:
    return ClusterConfig(
        host=str(cfg.host).rstrip("/"),
        ssl=_ssl_context(cfg),
        server_hostname=getattr(cfg, "tls_server_name", None) or None,
        proxy=getattr(cfg, "proxy", None) or None,
        configuration=cfg,
    )


def _ssl_context(cfg: Configuration) -> ssl.SSLContext | bool:
    if not str(cfg.host).startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
