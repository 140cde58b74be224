"""A real Kubernetes API server (v1.20.2 + etcd) on loopback, and vmagent as a Kubernetes-SD oracle.

Nothing here is a fake. ``kube_apiserver`` starts Debian's etcd and a kube-apiserver v1.20.2 built
from Debian's ``kubernetes`` source package by ``scripts/kube-apiserver.sh`` (about 10 minutes,
once per machine; the binary is cached outside the repository). ``vmagent_oracle`` starts Debian's
vmagent 1.79 with a ``kubernetes_sd_configs`` scrape config pointed at that server and reads what
it discovered from its Prometheus-compatible ``/api/v1/targets`` (that half lives in
``tests/integration/vmagent.py``). See ``docs/kube-apiserver.md``.

No controllers, scheduler or kubelet run: tests create Endpoints themselves, set
``spec.nodeName`` directly and patch pod status through the ``status`` subresource
(:meth:`KubeAPIServer.patch_status`).

If the binary has not been built the fixtures raise :class:`KubeRigUnavailable` naming the build
script; they never skip silently.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ADMIN_TOKEN",
    "BUILD_SCRIPT",
    "KUBE_VERSION",
    "UNPRIVILEGED_TOKEN",
    "JSONObject",
    "KubeAPIError",
    "KubeAPIServer",
    "KubeRigUnavailable",
    "free_port",
    "kube_apiserver",
    "kube_apiserver_binary",
    "log_tail",
    "spawn",
    "stop_process",
    "wait_until",
    "which",
]

KUBE_VERSION = "v1.20.2"
BUILD_SCRIPT = "scripts/kube-apiserver.sh"
ADMIN_TOKEN = "admintoken"  # user "admin", group system:masters (cluster-admin through RBAC)
UNPRIVILEGED_TOKEN = "promtoken"  # user "prom", no RBAC bindings: every list/watch is a 403
ADMIN_USER = "admin"
UNPRIVILEGED_USER = "prom"

JSONObject = dict[str, Any]


class KubeRigUnavailable(RuntimeError):
    """The kube-apiserver binary (or etcd) is missing: run ``scripts/kube-apiserver.sh`` first."""


class KubeAPIError(Exception):
    """A non-2xx answer of the API server; ``body`` is the decoded Status object when it is JSON."""

    def __init__(self, method: str, path: str, code: int, body: Any) -> None:
        super().__init__(f"{method} {path}: HTTP {code}: {body}")
        self.method = method
        self.path = path
        self.code = code
        self.body = body

    @property
    def reason(self) -> str | None:
        """The Status ``reason``: ``NotFound``, ``AlreadyExists``, ``Forbidden``, ``Expired``..."""
        if isinstance(self.body, dict):
            reason = self.body.get("reason")
            return reason if isinstance(reason, str) else None
        return None


# ----------------------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``predicate`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (OSError, KubeAPIError, ValueError) as exc:  # not up yet / not there yet
            last_error = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout}s (last error: {last_error!r})")
        time.sleep(interval)


def log_tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def which(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise KubeRigUnavailable(
            f"{binary} is not installed; run `{BUILD_SCRIPT}` (it installs etcd-server and"
            " etcd-client and builds kube-apiserver)"
        )
    return path


def kube_apiserver_binary() -> Path:
    """The cached kube-apiserver v1.20.2 built by ``scripts/kube-apiserver.sh``.

    ``$KUBE_APISERVER`` overrides the path; otherwise it is
    ``${COLLECTOR_CACHE:-/var/cache/collector}/kube-apiserver-v1.20.2/kube-apiserver``.
    Raises :class:`KubeRigUnavailable` (never skips) when it is missing.
    """
    override = os.environ.get("KUBE_APISERVER")
    if override:
        path = Path(override)
    else:
        cache = Path(os.environ.get("COLLECTOR_CACHE") or "/var/cache/collector")
        path = cache / f"kube-apiserver-{KUBE_VERSION}" / "kube-apiserver"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise KubeRigUnavailable(
            f"kube-apiserver {KUBE_VERSION} not found at {path}: run `bash {BUILD_SCRIPT}` first"
            " (root, Debian bookworm; builds it from Debian's kubernetes source package in about"
            " 10 minutes and caches it; set COLLECTOR_CACHE or KUBE_APISERVER to relocate)"
        )
    return path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([which("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


# ----------------------------------------------------------------------------- the API server


@dataclass
class KubeAPIServer:
    """A running etcd + kube-apiserver pair on loopback (HTTPS, self-signed serving cert).

    ``url`` is ``https://127.0.0.1:<port>``; ``ca_file`` verifies it (it holds the generated
    serving cert and its self-signed CA; SANs include ``127.0.0.1``). REST helpers use the admin
    token unless ``token=`` is given, send and return JSON, and raise :class:`KubeAPIError` on
    non-2xx answers (``request`` returns the status instead).
    """

    url: str
    admin_token: str
    unprivileged_token: str
    ca_file: Path
    workdir: Path
    etcd_url: str
    apiserver_argv: list[str]
    etcd_process: subprocess.Popen[bytes]
    apiserver_process: subprocess.Popen[bytes]
    apiserver_log: Path
    etcd_log: Path
    _ssl: ssl.SSLContext = field(repr=False)
    audit_log: Path | None = None
    """The audit log (JSON lines, level ``Metadata``) when started with ``audit=True``."""

    def audit_events(self, *, verbs: Sequence[str] = ("list", "watch")) -> list[JSONObject]:
        """The audit events so far whose ``verb`` is in ``verbs`` (stage ``ResponseComplete``
        for lists, ``ResponseStarted`` for watches: one event per request).

        v1.20 writes a watch's events only when the watch ends, so a watch shows up here once
        its client went away (or the server's timeout passed), not while it streams."""
        if self.audit_log is None:
            raise RuntimeError("start kube_apiserver(audit=True) to read its audit log")
        if not self.audit_log.exists():
            return []
        events: list[JSONObject] = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            stage = "ResponseStarted" if event.get("verb") == "watch" else "ResponseComplete"
            if event.get("verb") in verbs and event.get("stage") == stage:
                events.append(event)
        return events

    # ------------------------------------------------------------------ HTTP

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str | int | bool] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """Send one request; ``(status, decoded JSON body or text)`` whatever the status."""
        url = f"{self.url}{path}"
        if query:
            items = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
            url = f"{url}?{urllib.parse.urlencode(items)}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if token is None:
            token = self.admin_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as response:
                status: int = response.status
                raw: bytes = response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def _checked(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, decoded = self.request(method, path, body, **kwargs)
        if not 200 <= status < 300:
            raise KubeAPIError(method, path, status, decoded)
        return decoded

    def get(self, path: str, *, token: str | None = None, **query: str | int | bool) -> Any:
        """GET ``path`` (e.g. ``/api/v1/namespaces/default/pods``); keyword args are the query."""
        return self._checked("GET", path, token=token, query=query)

    def create(self, path: str, obj: Mapping[str, Any]) -> JSONObject:
        """POST ``obj`` to the collection ``path`` (e.g. ``/api/v1/namespaces/ns/pods``)."""
        created: JSONObject = self._checked("POST", path, dict(obj))
        return created

    def replace(self, path: str, obj: Mapping[str, Any]) -> JSONObject:
        """PUT ``obj`` at the object ``path`` (needs ``metadata.resourceVersion`` or none)."""
        replaced: JSONObject = self._checked("PUT", path, dict(obj))
        return replaced

    def patch(
        self, path: str, patch: Any, *, patch_type: str = "merge", subresource: str | None = None
    ) -> JSONObject:
        """PATCH the object at ``path``; ``patch_type`` is ``merge``, ``strategic`` or ``json``."""
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        target = f"{path}/{subresource}" if subresource else path
        patched: JSONObject = self._checked("PATCH", target, patch, content_type=content_type)
        return patched

    def patch_status(self, path: str, status: Mapping[str, Any]) -> JSONObject:
        """Merge-patch ``{"status": status}`` through ``<path>/status``.

        Pods lose their status on create (the server resets it to Pending), so this is how tests
        set ``podIP``, ``phase``, conditions and container statuses without a kubelet.
        """
        return self.patch(path, {"status": dict(status)}, subresource="status")

    def delete(self, path: str, *, grace_period_seconds: int | None = 0) -> Any:
        """DELETE the object at ``path``.

        The default grace period 0 deletes bound pods at once (with a grace period they would
        wait for a kubelet that does not exist); ``None`` sends no DeleteOptions.
        """
        body = None
        if grace_period_seconds is not None:
            body = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "gracePeriodSeconds": grace_period_seconds,
            }
        return self._checked("DELETE", path, body)

    def ensure_namespace(self, name: str) -> None:
        """Create namespace ``name`` unless it exists."""
        status, body = self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if status not in (201, 409):
            raise KubeAPIError("POST", "/api/v1/namespaces", status, body)

    def resource_version(self) -> int:
        """The server's current resourceVersion (from a namespace list; it is etcd's revision)."""
        listed = self.get("/api/v1/namespaces")
        return int(listed["metadata"]["resourceVersion"])

    # ------------------------------------------------------------------ kubeconfig

    def write_kubeconfig(
        self,
        path: Path,
        token: str | None = None,
        *,
        insecure: bool = False,
        namespace: str | None = None,
        embed_ca: bool = False,
    ) -> Path:
        """Write a kubeconfig (context ``rig``) for this server and ``token`` (admin by default).

        The CA is referenced as ``certificate-authority: <ca_file>`` (``embed_ca=True``: inline as
        ``certificate-authority-data``); ``insecure=True`` sets ``insecure-skip-tls-verify`` and no
        CA instead.
        """
        cluster: JSONObject = {"server": self.url}
        if insecure:
            cluster["insecure-skip-tls-verify"] = True
        elif embed_ca:
            cluster["certificate-authority-data"] = base64.b64encode(
                self.ca_file.read_bytes()
            ).decode()
        else:
            cluster["certificate-authority"] = str(self.ca_file)
        context: JSONObject = {"cluster": "rig", "user": "rig"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rig", "cluster": cluster}],
            "users": [{"name": "rig", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "rig", "context": context}],
            "current-context": "rig",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------ etcd / lifecycle

    def _etcdctl(self, *args: str) -> str:
        result = subprocess.run(
            [which("etcdctl"), f"--endpoints={self.etcd_url}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        return result.stdout

    def etcd_revision(self) -> int:
        """etcd's current revision (the newest resourceVersion of any object)."""
        status = json.loads(self._etcdctl("endpoint", "status", "-w", "json"))
        return int(status[0]["Status"]["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Compact etcd; return the compaction revision R (every revision below R is gone).

        By default R is a fresh revision made by writing a marker key outside ``/registry``
        (invisible to the apiserver), so *every* resourceVersion handed out so far is expired:
        list ``continue`` tokens and ``resourceVersion=X&resourceVersionMatch=Exact`` answer 410.
        (Compacting at the current revision would keep that revision readable.)

        Watches are served from the apiserver's watch cache, whose window does not shrink on
        compaction: for a watch 410 with an older RV, :meth:`restart` after compacting (the
        cache restarts at the current revision), or start the server with
        ``extra_args=["--watch-cache=false"]`` so watches go straight to etcd.
        """
        if revision is None:
            self._etcdctl("put", "/collector-rig/compaction-marker", str(time.time()))
            revision = self.etcd_revision()
        self._etcdctl("compact", str(revision))
        return revision

    def restart(self, *, timeout: float = 90) -> None:
        """Restart kube-apiserver only (same port, cert, etcd data); wait until it is ready.

        Open watches end; clients must reconnect. About 5-10 s.
        """
        self.stop_apiserver()
        self.start_apiserver()
        self.wait_ready(timeout=timeout)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, as a rollout does); etcd and the data stay."""
        stop_process(self.apiserver_process)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again (same port, cert, etcd data) and return at once.

        Its first seconds are what `restart` waits out (`wait_listening`). Call `wait_ready`
        before using the server as usual.
        """
        self.apiserver_process = spawn(self.apiserver_argv, self.apiserver_log, append=True)

    def wait_listening(self, *, timeout: float = 60) -> None:
        """After `start_apiserver`: until the port accepts TCP connections.

        v1.20.2 binds it within about 0.1 s but completes TLS handshakes only 2-3 s later, and
        then serves every request that connected meanwhile before its RBAC authorizer has
        synced: each user outside ``system:masters`` gets a 403 (the same message a missing
        RoleBinding gives), for 50-100 ms on an idle machine. A request sent now lands there.
        """
        port = int(self.url.rsplit(":", 1)[1])

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(listening, timeout=timeout, what=f"kube-apiserver port {port}", interval=0.01)

    # ------------------------------------------------------------------ TLS

    def client_ssl(self) -> ssl.SSLContext:
        """A client TLS context that trusts the server (its self-signed CA)."""
        return self._ssl

    def server_ssl(self) -> ssl.SSLContext:
        """A server TLS context with the API server's own certificate and key: a proxy in
        front of it is verified by clients exactly as the server is (SAN ``127.0.0.1``)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert_dir = self.ca_file.parent
        context.load_cert_chain(cert_dir / "apiserver.crt", cert_dir / "apiserver.key")
        return context

    def wait_ready(self, *, timeout: float = 90) -> None:
        """Wait (bounded) until ``/readyz`` answers 200 to the admin token."""

        def ready() -> bool:
            if self.apiserver_process.poll() is not None:
                raise KubeRigUnavailable(
                    f"kube-apiserver exited with {self.apiserver_process.returncode}:\n"
                    f"{log_tail(self.apiserver_log)}"
                )
            status, _ = self.request("GET", "/readyz", timeout=5)
            return status == 200

        wait_until(ready, timeout=timeout, what=f"kube-apiserver {self.url}/readyz")


def spawn(argv: Sequence[str], log: Path, *, append: bool = False) -> subprocess.Popen[bytes]:
    with log.open("ab" if append else "wb") as out:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


@contextlib.contextmanager
def kube_apiserver(
    workdir: Path,
    *,
    min_request_timeout: int | None = None,
    extra_args: Sequence[str] = (),
    audit: bool = False,
    timeout: float = 90,
) -> Iterator[KubeAPIServer]:
    """Start etcd and kube-apiserver v1.20.2 in ``workdir``; stop both (and nothing else) after.

    - Auth: static tokens ``admintoken`` (user ``admin``, group ``system:masters``) and
      ``promtoken`` (user ``prom``, no RBAC rights: 403 on every list/watch); anonymous requests
      are 401. ``--authorization-mode=RBAC``.
    - ``--disable-admission-plugins=ServiceAccount``: pods need no service account or token.
    - ``min_request_timeout``: ``--min-request-timeout`` (watches without ``timeoutSeconds`` then
      end after a random ``[n, 2n)`` s; the default is 1800 s).
    - ``extra_args`` are appended to the kube-apiserver command line (later flags win).
    - ``audit``: log every request at level ``Metadata`` (URI with its query, verb, user, code)
      to ``workdir/audit.log``; `KubeAPIServer.audit_events` reads it. This is how tests see
      what the agent asked for (field selectors on list and watch), not what it says it asked.

    Raises :class:`KubeRigUnavailable` when the binary or etcd is missing or either exits.
    """
    binary = kube_apiserver_binary()
    etcd = which("etcd")
    workdir.mkdir(parents=True, exist_ok=True)

    # Static tokens and service-account keys (the SA key flags are mandatory in 1.20).
    tokens = workdir / "tokens.csv"
    tokens.write_text(
        f'{ADMIN_TOKEN},{ADMIN_USER},1,"system:masters"\n{UNPRIVILEGED_TOKEN},{UNPRIVILEGED_USER},2\n'
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=workdir)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=workdir)

    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    etcd_argv = [
        etcd,
        "--name=rig",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=rig={peer_url}",
        "--listen-metrics-urls=",
        "--log-level=warn",
        "--logger=zap",
    ]
    cert_dir = workdir / "certs"
    apiserver_argv = [
        str(binary),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={secure_port}",
        "--insecure-port=0",
        f"--cert-dir={cert_dir}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={workdir / 'sa.pub'}",
        f"--service-account-signing-key-file={workdir / 'sa.key'}",
        f"--token-auth-file={tokens}",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--disable-admission-plugins=ServiceAccount",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]
    if min_request_timeout is not None:
        apiserver_argv.append(f"--min-request-timeout={min_request_timeout}")
    audit_log: Path | None = None
    if audit:
        audit_log = workdir / "audit.log"
        policy = workdir / "audit-policy.yaml"
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
            "omitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
        )
        apiserver_argv += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # written before the answer: no flush to wait for
        ]
    apiserver_argv.extend(extra_args)

    etcd_log = workdir / "etcd.log"
    apiserver_log = workdir / "kube-apiserver.log"
    etcd_process = spawn(etcd_argv, etcd_log)
    apiserver_process: subprocess.Popen[bytes] | None = None
    try:

        def etcd_up() -> bool:
            if etcd_process.poll() is not None:
                raise KubeRigUnavailable(f"etcd exited: {log_tail(etcd_log)}")
            with urllib.request.urlopen(f"{etcd_url}/health", timeout=2) as response:
                return b"true" in response.read()

        wait_until(etcd_up, timeout=timeout, what=f"etcd {etcd_url}/health")

        apiserver_process = spawn(apiserver_argv, apiserver_log)
        process = apiserver_process

        def port_open() -> bool:
            if process.poll() is not None:
                raise KubeRigUnavailable(
                    f"kube-apiserver exited with {process.returncode}:\n{log_tail(apiserver_log)}"
                )
            with socket.create_connection(("127.0.0.1", secure_port), timeout=1):
                return True

        wait_until(port_open, timeout=timeout, what=f"kube-apiserver port {secure_port}")
        ca_file = cert_dir / "apiserver.crt"  # written by --cert-dir before the port opens
        context = ssl.create_default_context(cafile=str(ca_file))
        server = KubeAPIServer(
            url=f"https://127.0.0.1:{secure_port}",
            admin_token=ADMIN_TOKEN,
            unprivileged_token=UNPRIVILEGED_TOKEN,
            ca_file=ca_file,
            workdir=workdir,
            etcd_url=etcd_url,
            apiserver_argv=apiserver_argv,
            etcd_process=etcd_process,
            apiserver_process=apiserver_process,
            apiserver_log=apiserver_log,
            etcd_log=etcd_log,
            _ssl=context,
            audit_log=audit_log,
        )
        server.wait_ready(timeout=timeout)
        # The bootstrap controller creates default/kube-system/kube-public shortly after readyz.
        wait_until(
            lambda: server.get("/api/v1/namespaces/default") is not None,
            timeout=timeout,
            what="namespace default",
        )
        try:
            yield server
        finally:
            apiserver_process = server.apiserver_process  # restart() replaces it
    finally:
        if apiserver_process is not None:
            stop_process(apiserver_process)
        stop_process(etcd_process)
