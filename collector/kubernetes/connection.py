"""Where the API server is and how to authenticate to it (spec §2.2).

Three ways to reach a cluster, chosen like Prometheus:

- ``api_server`` set: that URL with the job's own `HTTPClientConfig` (authorization or basic
  auth, TLS, proxy, extra headers). Secret files are re-read on `Connection.reload_credentials`.
- a kubeconfig (``kubeconfig_file`` or ``--kubeconfig``): loaded with kubernetes_asyncio's
  ``load_kube_config`` (current context; tokens, token files, client certificates, exec plugins,
  OIDC), never persisted back. A 401 re-runs the loader, which re-runs an exec plugin.
- neither: in-cluster service account via ``load_incluster_config``. Its refresh hook re-reads
  the projected token every minute; a 401 re-reads it at once.
- neither, and not in a cluster (no ``KUBERNETES_SERVICE_HOST``/``_PORT``): ``$KUBECONFIG``
  (a ``:``-separated list, merged like kubectl), else ``~/.kube/config`` (INTERFACES.md), so the
  agent run on a workstation finds the cluster kubectl uses.

Place in the pipeline: the bottom of both Kubernetes users. The informer pool of discovery keeps
one `Connection` (and its session) per `ConnectionSpec` for its informers; the API-server proxy
of scrape keeps one per spec for its credentials and TLS (the scrape pool's session does those
requests). `connection_spec` is the one place that maps a ``kubernetes_sd_configs`` entry to a
spec, so discovery and the proxy of the same job always reach the same server as the same user.

kubernetes_asyncio is used *only* to load kubeconfigs and in-cluster credentials, in
`collector.kubernetes.auth`, imported when such a connection loads. Requests are plain aiohttp
on one session per `Connection`, so the informer controls streaming, line splitting and timeouts.

Prometheus counterpart: ``discovery/kubernetes/kubernetes.go`` (``New``) and client-go's
``rest.InClusterConfig`` / ``clientcmd``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from collector.config import HTTPClientConfig, KubernetesSDConfig, TLSConfig
from collector.errors import DiscoveryError

if TYPE_CHECKING:
    from collector.kubernetes.auth import ClusterConfig

__all__ = ["SA_DIR", "Connection", "ConnectionSpec", "connection_spec", "read_own_namespace"]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where the kubelet mounts the service account token, CA and namespace."""

USER_AGENT = "collector/0.1 (kubernetes-sd)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSpec:
    """What identifies one API server connection; equal specs share informers."""

    api_server: str = ""
    kubeconfig: str = ""
    http_client: HTTPClientConfig = field(default_factory=HTTPClientConfig)
    sa_dir: str = SA_DIR
    """Service-account directory (tests point it elsewhere)."""
    environ: tuple[tuple[str, str], ...] | None = None
    """In-cluster environment override (tests); None = ``os.environ``."""

    @property
    def mode(self) -> str:
        """``api_server``, ``kubeconfig`` or ``in-cluster``.

        Without ``api_server`` and ``kubeconfig``, ``kubeconfig`` when not in a cluster but
        `fallback_kubeconfig` found a file; ``in-cluster`` otherwise.
        """
        if self.api_server:
            return "api_server"
        if self.kubeconfig or self.fallback_kubeconfig():
            return "kubeconfig"
        return "in-cluster"

    @property
    def kubeconfig_path(self) -> str:
        """The kubeconfig to load: the configured one, else the fallback ("" for none)."""
        return self.kubeconfig or self.fallback_kubeconfig()

    def _environ(self) -> Mapping[str, str]:
        return dict(self.environ) if self.environ is not None else os.environ

    def _in_cluster(self) -> bool:
        env = self._environ()
        return bool(env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"))

    def fallback_kubeconfig(self) -> str:
        """Outside a cluster with nothing configured: ``$KUBECONFIG``, else ``~/.kube/config``.

        "" when ``api_server``/``kubeconfig`` is set, when the in-cluster environment is there,
        or when neither file exists. ``$KUBECONFIG`` may list several files (``:``-separated);
        it is used when any of them exists and is then loaded whole (kubectl merges them).
        """
        if self.api_server or self.kubeconfig or self._in_cluster():
            return ""
        env = self._environ()
        listed = env.get("KUBECONFIG", "")
        if listed:
            paths = [os.path.expanduser(p) for p in listed.split(os.pathsep) if p]
            if any(os.path.isfile(p) for p in paths):
                return os.pathsep.join(paths)
        # With an injected environment (tests) only its HOME counts.
        home = env.get("HOME", "") if self.environ is not None else os.path.expanduser("~")
        default = os.path.join(home, ".kube", "config") if home else ""
        return default if default and os.path.isfile(default) else ""

    def validate(self) -> None:
        """Fail early (at discoverer creation) when no configuration can work."""
        mode = self.mode
        if mode == "in-cluster":
            if not self._in_cluster():
                raise DiscoveryError(
                    "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                    "KUBERNETES_SERVICE_PORT must be defined (and neither $KUBECONFIG nor "
                    "~/.kube/config exists)"
                )
        elif mode == "kubeconfig" and self.kubeconfig and not os.path.isfile(self.kubeconfig):
            raise DiscoveryError(f"kubeconfig file {self.kubeconfig!r} does not exist")


def connection_spec(config: KubernetesSDConfig, *, kubeconfig: str | None = None) -> ConnectionSpec:
    """Which API server and credentials a ``kubernetes_sd_configs`` entry uses (spec §2.2).

    ``api_server`` wins, then the config's ``kubeconfig_file``, then the ``--kubeconfig`` flag,
    then in-cluster (or, outside a cluster, `ConnectionSpec.fallback_kubeconfig`).
    """
    if config.api_server:
        return ConnectionSpec(api_server=config.api_server, http_client=config.http_client)
    if config.kubeconfig_file:
        return ConnectionSpec(kubeconfig=config.kubeconfig_file)
    if kubeconfig:
        return ConnectionSpec(kubeconfig=kubeconfig)
    return ConnectionSpec()


def read_own_namespace(sa_dir: str = SA_DIR) -> str:
    """The pod's namespace for ``namespaces.own_namespace`` (spec §2.2)."""
    path = os.path.join(sa_dir, "namespace")
    try:
        with open(path) as f:
            ns = f.read().strip()
    except OSError as exc:
        raise DiscoveryError(f"could not read own namespace name: {exc}") from exc
    if not ns:
        raise DiscoveryError("could not read own namespace name (empty file)")
    return ns


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _pem_file(data: str) -> str:
    """Inline PEM text -> a private temp file path (ssl wants files for cert chains)."""
    fd, path = tempfile.mkstemp(prefix="collector-k8s-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(data)
    return path


def _ssl_from_tls(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if tls.ca_file:
        ctx.load_verify_locations(cafile=tls.ca_file)
    if tls.ca:
        ctx.load_verify_locations(cadata=tls.ca)
    cert = tls.cert_file or (_pem_file(tls.cert) if tls.cert else "")
    key = tls.key_file or (_pem_file(tls.key) if tls.key else "")
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Connection:
    """One API server: base URL, TLS, proxy, credentials and (for the informers) a session.

    The informer pool shares one per `ConnectionSpec`; `ensure_loaded` is retried by the
    informer loop, so a missing token file is an error that heals, not a crash. The API-server
    proxy only calls `load` (credentials and TLS) and never opens the session.
    """

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self.base_url = spec.api_server.rstrip("/")
        self.ssl: ssl.SSLContext | bool = True
        self.server_hostname: str | None = None
        self.proxy: str | None = spec.http_client.proxy_url or None
        self._cluster: ClusterConfig | None = None
        self._auth = ""
        self._headers: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None
        self._loaded = False

    async def ensure_loaded(self) -> None:
        """Load the configuration and open the session once; retried by the informer loop."""
        if self._loaded:
            return
        await self.load()
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                trust_env=self.spec.http_client.proxy_from_environment,
            )
        self._loaded = True

    async def close(self) -> None:
        """Close the session (the pool does this when the last informer stops)."""
        if self.session is not None:
            session, self.session = self.session, None
            self._loaded = False
            await session.close()
            # aiohttp closes TLS connections asynchronously (the close_notify exchange); give
            # them a moment so their transports are gone before the event loop is (aiohttp's
            # "graceful shutdown" advice). Only ever runs when the last informer stops.
            await asyncio.sleep(0.25)

    async def load(self) -> None:
        """Load (or re-load) where and who: raises `DiscoveryError` when that is impossible."""
        spec = self.spec
        if spec.mode == "api_server":
            self._load_http_client(spec.http_client)
            return
        # Only here, so that kubernetes_asyncio is imported by agents that use a kubeconfig or
        # run in-cluster, and by nothing else (it costs about 0.6 s and 35 MB).
        from collector.kubernetes import auth

        if spec.mode == "kubeconfig":
            cluster = await auth.load_kubeconfig(spec.kubeconfig_path)
        else:
            environ = dict(spec.environ) if spec.environ is not None else os.environ
            cluster = auth.load_in_cluster(sa_dir=spec.sa_dir, environ=environ)
        self._cluster = cluster
        self.base_url = cluster.host
        self.ssl = cluster.ssl
        self.server_hostname = cluster.server_hostname
        self.proxy = cluster.proxy

    def _load_http_client(self, hc: HTTPClientConfig) -> None:
        try:
            self._load_http_client_files(hc)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise DiscoveryError(f"kubernetes client configuration (api_server): {exc}") from exc

    def _load_http_client_files(self, hc: HTTPClientConfig) -> None:
        if self.base_url.startswith("https"):
            self.ssl = _ssl_from_tls(hc.tls_config)
            self.server_hostname = hc.tls_config.server_name or None
        else:
            self.ssl = False
        self._auth = ""
        if hc.authorization is not None:
            a = hc.authorization
            cred = _read(a.credentials_file) if a.credentials_file else a.credentials
            self._auth = f"{a.type or 'Bearer'} {cred}"
        elif hc.basic_auth is not None:
            b = hc.basic_auth
            user = _read(b.username_file) if b.username_file else b.username
            password = _read(b.password_file) if b.password_file else b.password
            self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {name: ", ".join(values) for name, values in hc.http_headers}

    async def reload_credentials(self) -> None:
        """After a 401: re-read token files, re-run exec plugins, re-read secret files."""
        try:
            await self.load()
        except DiscoveryError:
            pass  # keep the old credentials; the next 401 tries again

    @contextlib.asynccontextmanager
    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        client_timeout: aiohttp.ClientTimeout,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET base_url + path`` on the session, as who we are (after `ensure_loaded`)."""
        if self.session is None:
            raise RuntimeError("Connection.get: the session is not open (ensure_loaded first)")
        async with self.session.get(
            self.base_url + path,
            params=params,
            headers=await self.headers(),
            ssl=self.ssl,
            server_hostname=self.server_hostname,
            proxy=self.proxy,
            timeout=client_timeout,
        ) as resp:
            yield resp

    async def headers(self) -> dict[str, str]:
        """Request headers, with the current credentials (in-cluster tokens refresh here)."""
        out = {"Accept": "application/json", "User-Agent": USER_AGENT, **self._headers}
        if self._cluster is not None:
            authorization = await self._cluster.authorization()
            if authorization:
                out["Authorization"] = authorization
        elif self._auth:
            out["Authorization"] = self._auth
        return out
