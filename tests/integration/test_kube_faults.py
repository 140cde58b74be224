"""Kubernetes API faults against a real kube-apiserver v1.20.2 (issue 13 §2).

The faults of the issue, each with pods (or services) deleted, changed and created while it
lasts, each ending with the discoverer's groups equal to those of a fresh discoverer, a log
line naming the real cause and the restart/relist counters moved under that cause:

- provoked for real on the server: 410 Gone (etcd compacted under a watch served by etcd:
  the rig runs with ``--watch-cache-sizes=services#0``), a token revoked and rotated (401), a
  RoleBinding deleted (403), and an API-server restart, whose first second denies every user
  outside ``system:masters`` with the 403 a missing RoleBinding gives (the informer must say
  "not ready", not "missing an RBAC permission");
- made by `tests.integration.tcpproxy.TCPProxy` between the agent and the server, which
  terminates TLS with the server's own certificate: a watch that stalls with its connection
  open, a connection reset in the middle of an event, a non-JSON line between events, and 429 /
  5xx answers to a LIST (what a throttling layer or a load balancer in front of the API server
  sends).

The same faults on the fake API server are in ``tests/discovery/kubernetes/test_faults.py``.
One server serves the module; every test uses its own namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from collector.config import Authorization, HTTPClientConfig, KubernetesSDConfig, TLSConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.integration.kube import KubeAPIError, KubeAPIServer, kube_apiserver
from tests.integration.running import eventually
from tests.integration.tcpproxy import Answer, TCPProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LOGGER = "collector.discovery.kubernetes"
IMAGE = "example.invalid/app:1"
FAST = InformerOptions(
    backoff_initial=0.1,
    backoff_max=0.5,
    # Watches of 2 s with a read deadline of 4 s: the server ends each watch (and a change of
    # token or RBAC shows at the next one) well before a stalled one is given up.
    watch_timeout_min=2.0,
    watch_timeout_max=3.0,
    read_margin=2.0,
)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    # Services are served from etcd, not the watch cache: a watch from a compacted
    # resourceVersion then gets the ERROR 410 event at once, with no restart needed.
    args = ["--watch-cache-sizes=services#0"]
    with kube_apiserver(tmp_path_factory.mktemp("kube"), extra_args=args) as server:
        yield server


@pytest.fixture
async def proxy(kube: KubeAPIServer) -> AsyncIterator[TCPProxy]:
    """A TLS-terminating `TCPProxy` in front of the server."""
    port = int(kube.url.rsplit(":", 1)[1])
    async with TCPProxy(port, server_ssl=kube.server_ssl(), upstream_ssl=kube.client_ssl()) as p:
        yield p


# ----------------------------------------------------------------------------- objects


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [
                {"name": "app", "image": IMAGE, "ports": [{"name": "http", "containerPort": 8080}]}
            ]
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    }


def create_pod(kube: KubeAPIServer, ns: str, name: str, ip: str) -> None:
    kube.create(f"/api/v1/namespaces/{ns}/pods", pod(name))
    kube.patch_status(
        f"/api/v1/namespaces/{ns}/pods/{name}",
        {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1"},
    )


def setup_pods(kube: KubeAPIServer, ns: str) -> None:
    """Namespace ``ns`` with running pods p0, p1, p2."""
    kube.ensure_namespace(ns)
    for i in range(3):
        create_pod(kube, ns, f"p{i}", f"10.9.0.{i}")


def churn_pods(kube: KubeAPIServer, ns: str) -> None:
    """What changes while a fault lasts: p0 deleted, p1 relabelled, p3 created."""
    kube.delete(f"/api/v1/namespaces/{ns}/pods/p0")
    kube.patch(f"/api/v1/namespaces/{ns}/pods/p1", {"metadata": {"labels": {"app": "changed"}}})
    create_pod(kube, ns, "p3", "10.9.0.3")


def grant(kube: KubeAPIServer, ns: str, *, user: str = "", service_account: str = "") -> None:
    """Role and RoleBinding ``sd``: list and watch pods in ``ns``, for a user or an SA."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "sd"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
    }
    with contextlib.suppress(KubeAPIError):  # the Role outlives a revoked binding
        kube.create(f"{rbac}/roles", role)
    subject = (
        {"kind": "ServiceAccount", "name": service_account, "namespace": ns}
        if service_account
        else {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
    )
    kube.create(
        f"{rbac}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "sd"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sd"},
            "subjects": [subject],
        },
    )


def service_account_token(kube: KubeAPIServer, ns: str, *, bound_secret: str) -> str:
    """A TokenRequest token of service account ``sd``, bound to Secret ``bound_secret``:
    deleting that Secret revokes it (as deleting its pod revokes a projected token)."""
    for kind, collection, name in (
        ("ServiceAccount", "serviceaccounts", "sd"),
        ("Secret", "secrets", bound_secret),
    ):
        with contextlib.suppress(KubeAPIError):  # already there
            kube.create(
                f"/api/v1/namespaces/{ns}/{collection}",
                {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}},
            )
    uid = kube.get(f"/api/v1/namespaces/{ns}/secrets/{bound_secret}")["metadata"]["uid"]
    issued = kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/sd/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "name": bound_secret,
                    "uid": uid,
                },
            },
        },
    )
    token: str = issued["status"]["token"]
    return token


# ----------------------------------------------------------------------------- running SD


class Sink:
    """Every send, and the latest group per source."""

    def __init__(self) -> None:
        self.sends: list[list[TargetGroup]] = []
        self.groups: dict[str, TargetGroup] = {}

    def __call__(self, groups: Sequence[TargetGroup]) -> None:
        self.sends.append(list(groups))
        for g in groups:
            self.groups[g.source] = g

    def current(self) -> dict[str, TargetGroup]:
        """The groups with targets (an empty group deleted its source)."""
        return {s: g for s, g in self.groups.items() if g.targets}


@dataclass
class Run:
    sink: Sink
    registry: CollectorRegistry
    resource: str

    def restarts(self, reason: str) -> float:
        labels = {"resource": self.resource, "reason": reason}
        return (
            self.registry.get_sample_value("collector_kubernetes_watch_restarts_total", labels) or 0
        )

    def relists(self, reason: str) -> float:
        labels = {"resource": self.resource, "reason": reason}
        return self.registry.get_sample_value("collector_kubernetes_relists_total", labels) or 0


def in_ns(role: str, ns: str) -> KubernetesSDConfig:
    return KubernetesSDConfig(role=role, namespaces=(ns,))  # type: ignore[arg-type]


def token_spec(url: str, kube: KubeAPIServer, token_file: Path) -> ConnectionSpec:
    """``api_server`` with ``authorization.credentials_file`` and the rig's CA."""
    return ConnectionSpec(
        api_server=url,
        http_client=HTTPClientConfig(
            authorization=Authorization(credentials_file=str(token_file)),
            tls_config=TLSConfig(ca_file=str(kube.ca_file)),
        ),
    )


@contextlib.asynccontextmanager
async def discovering(
    config: KubernetesSDConfig, spec: ConnectionSpec, *, options: InformerOptions = FAST
) -> AsyncIterator[Run]:
    """Run one discoverer (on a private pool) until the block ends."""
    resource = {"pod": "pods", "service": "services"}[config.role]
    run = Run(Sink(), CollectorRegistry(), resource)
    pool = InformerPool(options=options)
    d = make_discoverer(config, registry=run.registry, pool=pool, connection=spec)
    task = asyncio.create_task(d.run(run.sink))
    try:
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def restored(run: Run, kube: KubeAPIServer, config: KubernetesSDConfig, tmp: Path) -> None:
    """Until ``run`` holds exactly what a fresh discoverer (admin, no proxy) gets first."""
    admin = tmp / "admin-token"
    admin.write_text(kube.admin_token)
    async with discovering(config, token_spec(kube.url, kube, admin)) as fresh:
        await eventually(lambda: bool(fresh.sink.sends))
        full = fresh.sink.current()
    await eventually(lambda: run.sink.current() == full, timeout=60)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith(LOGGER)
    ]


def pod_sources(ns: str, *names: str) -> set[str]:
    return {f"pod/{ns}/{n}" for n in names}


# ----------------------------------------------------------------------------- for real


async def test_410_mid_watch_relists(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch ends at its timeout; its successor is held while services change and etcd is
    compacted, then the server answers it with ERROR 410: one info line quotes it, one relist
    restores the full set, nothing is logged as a failure."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-410"
    kube.ensure_namespace(ns)
    svcs = f"/api/v1/namespaces/{ns}/services"
    for name in ("a", "b", "c"):
        kube.create(svcs, service(name))
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    config = in_ns("service", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        proxy.hold("watch")
        await eventually(lambda: proxy.held == 1, timeout=10)
        kube.delete(f"{svcs}/a")
        kube.patch(f"{svcs}/b", {"metadata": {"labels": {"app": "changed"}}})
        kube.create(svcs, service("d"))
        await asyncio.to_thread(kube.compact)
        proxy.release()
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == {f"svc/{ns}/{n}" for n in "bcd"}
        assert run.relists("expired") == 1
        assert run.restarts("expired") == 1
        assert run.registry.get_sample_value("prometheus_sd_kubernetes_failures_total") == 0
    (line,) = [m for m in logged(caplog, logging.INFO) if "410" in m]
    assert "watch: 410 Expired: The resourceVersion for the provided watch is too old." in line
    assert line.endswith("resource version expired, relisting")
    assert logged(caplog, logging.WARNING) == []


async def test_token_revoked_and_rotated_401(
    kube: KubeAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In-cluster credentials: the projected token is rotated in the service-account directory
    and the old one revoked while a watch runs. The next watch gets 401, the token file is
    re-read at once (not at the minute's refresh), and everything that changed arrives."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-401"
    setup_pods(kube, ns)
    grant(kube, ns, service_account="sd")
    sa_dir = tmp_path / "sa"
    sa_dir.mkdir()
    (sa_dir / "ca.crt").write_bytes(kube.ca_file.read_bytes())
    (sa_dir / "namespace").write_text(ns)
    old = service_account_token(kube, ns, bound_secret="sd-token-1")
    (sa_dir / "token").write_text(old)  # no newline: kubernetes_asyncio does not strip it
    port = kube.url.rsplit(":", 1)[1]
    spec = ConnectionSpec(
        sa_dir=str(sa_dir),
        environ=(("KUBERNETES_SERVICE_HOST", "127.0.0.1"), ("KUBERNETES_SERVICE_PORT", port)),
    )
    config = in_ns("pod", ns)
    async with discovering(config, spec) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        (sa_dir / "token").write_text(service_account_token(kube, ns, bound_secret="sd-token-2"))
        kube.delete(f"/api/v1/namespaces/{ns}/secrets/sd-token-1", grace_period_seconds=None)
        pods = f"/api/v1/namespaces/{ns}/pods"
        await eventually(lambda: kube.request("GET", pods, token=old)[0] == 401, timeout=30)
        churn_pods(kube, ns)
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("unauthorized") == 1
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch: 401 Unauthorized: Unauthorized (the API server rejected our credentials" in (
        warning
    )


async def test_rbac_binding_deleted_403(
    kube: KubeAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The RoleBinding is deleted while a watch runs: the next watch is denied by a ready
    server, reported once as the missing rule; re-created, discovery resumes with the changes."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-403"
    setup_pods(kube, ns)
    grant(kube, ns, user="prom")
    token = tmp_path / "token"
    token.write_text(kube.unprivileged_token)
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(kube.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        kube.delete(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/sd",
            grace_period_seconds=None,
        )
        churn_pods(kube, ns)
        await eventually(lambda: run.restarts("forbidden") >= 1, timeout=30)
        grant(kube, ns, user="prom")
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("not_ready") == 0
    assert logged(caplog, logging.ERROR) == [
        f'kubernetes SD is missing an RBAC permission: watch pods in the namespace "{ns}"'
        ' (server said: 403 Forbidden: pods is forbidden: User "prom" cannot watch resource'
        f' "pods" in API group "" in the namespace "{ns}")'
    ]


async def test_apiserver_restart_403_is_not_reported_as_rbac(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kube-apiserver restarts (same port, same etcd) while pods change. Its first requests
    are served before its RBAC authorizer has synced: a user with a RoleBinding is denied
    exactly as one without. The agent's retry is held at the proxy until the new server's
    port listens, so it is among those first requests (as any client retrying meanwhile is).
    The informer must call it "API server not ready" (/readyz says so), never "missing an
    RBAC permission", and recover the full set with what changed during the outage."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-restart"
    setup_pods(kube, ns)
    grant(kube, ns, user="prom")
    token = tmp_path / "token"
    token.write_text(kube.unprivileged_token)
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        proxy.cut()  # the watch breaks; retries are refused while pods change
        churn_pods(kube, ns)
        proxy.hold()
        proxy.restore()
        try:
            await eventually(lambda: proxy.held >= 1, timeout=10)
            await asyncio.to_thread(kube.stop_apiserver)
            kube.start_apiserver()
            await asyncio.to_thread(kube.wait_listening)
            proxy.release()
            await eventually(lambda: run.restarts("not_ready") >= 1, timeout=30)
        finally:
            proxy.release()
            await asyncio.to_thread(kube.wait_ready)
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("forbidden") == 0
    assert logged(caplog, logging.ERROR) == []
    disconnected, not_ready = logged(caplog, logging.WARNING)
    assert "watch: connection lost" in disconnected
    assert re.search(
        r"API server not ready: (list|watch): 403 Forbidden: pods is forbidden: User \"prom\""
        r".* while /readyz answers (403|500) \(a starting API server denies requests until its"
        r" RBAC authorizer has synced",
        not_ready,
    ), not_ready


# ----------------------------------------------------------------------------- through the proxy


async def test_stalled_watch_is_abandoned(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy stops relaying a running watch (connection open, not a byte, not even the
    server's end of it): the read deadline (timeoutSeconds + margin) gives it up, a warning
    says it stalled, and the next watch replays what changed."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-stall"
    setup_pods(kube, ns)
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        await eventually(lambda: proxy.stall_watches() == 1, timeout=10, interval=0.05)
        churn_pods(kube, ns)
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("stalled") == 1
        assert run.relists("expired") == 0
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch stalled: no data for 4s while the connection stayed open" in warning


async def test_connection_reset_mid_event(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Half of a watch event, then a TCP reset: the half line is dropped (the log says how
    much), the next watch resumes from the last whole event, nothing is lost or relisted."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-reset"
    setup_pods(kube, ns)
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        proxy.reset_mid_event()
        churn_pods(kube, ns)
        await eventually(lambda: proxy.resets == 1)
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("disconnected") == 1
        assert run.relists("expired") == 0
    (warning,) = logged(caplog, logging.WARNING)
    assert re.search(r"watch: connection lost mid-event \(\d+ bytes of an unfinished line", warning)


async def test_non_json_line_between_events(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTML line spliced into a running watch: that watch ends with a warning quoting the
    line, the next one resumes from the last event."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-line"
    setup_pods(kube, ns)
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: len(run.sink.current()) == 3)
        await eventually(
            lambda: proxy.inject_line(b"<html><body>502 Bad Gateway</body></html>") == 1,
            interval=0.05,
        )
        churn_pods(kube, ns)
        await restored(run, kube, config, tmp_path)
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert run.restarts("bad_line") == 1
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch: not a JSON line (a proxy in the way?): b'<html><body>502 Bad Gateway" in warning


async def test_429_and_5xx_on_list(
    kube: KubeAPIServer, proxy: TCPProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first LISTs are answered by what sits in front of a busy API server: a 429 with
    Retry-After (priority and fairness's body), a load balancer's HTML 503 and a 500 Status.
    Each is logged once with its cause; the first full set is the current one."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    ns = "faults-list"
    setup_pods(kube, ns)
    token = tmp_path / "token"
    token.write_text(kube.admin_token)
    too_many = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 1},
        "code": 429,
    }
    internal = {**too_many, "message": "Internal error occurred: etcdserver: leader changed"}
    internal.update(reason="InternalError", code=500, details={})
    proxy.answer_next(
        "list",
        [
            Answer(429, orjson.dumps(too_many), headers={"Retry-After": "1"}),
            Answer(
                503,
                b"<html><body><h1>503 Service Unavailable</h1></body></html>\n",
                content_type="text/html",
            ),
            Answer(500, orjson.dumps(internal)),
        ],
    )
    config = in_ns("pod", ns)
    async with discovering(config, token_spec(proxy.url, kube, token)) as run:
        await eventually(lambda: run.restarts("http_429") == 1)
        churn_pods(kube, ns)
        await restored(run, kube, config, tmp_path)
        assert run.sink.sends[0]  # nothing before the LIST succeeded: the first send is full
        assert set(run.sink.current()) == pod_sources(ns, "p1", "p2", "p3")
        assert [run.restarts(f"http_{c}") for c in (429, 503, 500)] == [1, 1, 1]
    throttled, unavailable, failed = logged(caplog, logging.WARNING)
    assert "list: 429 TooManyRequests: Too many requests, please try again later." in throttled
    assert "(the API server is overloaded and throttles us, Retry-After 1s)" in throttled
    assert "list: 503: <html><body><h1>503 Service Unavailable</h1></body></html> (the API" in (
        unavailable
    )
    assert "list: 500 InternalError: Internal error occurred: etcdserver: leader changed" in failed
