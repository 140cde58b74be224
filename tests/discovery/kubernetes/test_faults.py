"""Kubernetes API faults on the fake API server (issue 13 §2): each ends with the full target set.

For every fault of the issue (410 Gone mid-watch, a watch that stalls silently, a connection
reset mid-object, 401 and 403 mid-watch, 429 and 5xx on list, a non-JSON line) a pod discoverer
runs through it while pods are deleted, changed and created, and the test checks three things:

- the groups it ends with equal those a fresh discoverer gets once the fault is over (nothing
  lost, nothing stale);
- a log line names the real cause (a 403 from an API server that is starting is not reported
  as a missing RBAC permission: `collector.discovery.kubernetes.faults`);
- ``collector_kubernetes_watch_restarts_total`` / ``collector_kubernetes_relists_total`` moved
  under the reason of that cause.

Faults the fake cannot make itself (a hold between two watches, a reset inside an event, a line
spliced between events) come from `tests.integration.tcpproxy.TCPProxy` in front of it; the same
faults against the real kube-apiserver are in ``tests/integration/test_kube_faults.py``.

Backoff waits are injected (`Waits`: recorded, returned at once). Where a test needs watches to
end, the fake's ``timeout_scale`` turns the 300-600 s the informer asks for into 30-60 ms, with
the read deadline above that, as in production. Nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.config import Authorization, HTTPClientConfig, KubernetesSDConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.discovery.kubernetes.faults import (
    Diagnosis,
    Forbidden,
    answer_error,
    connection_lost,
)
from collector.discovery.kubernetes.retry import Gone, Restart
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.discovery.kubernetes.conftest import token_spec, until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer, Fault, Resource, status_body
from tests.integration.tcpproxy import Answer, TCPProxy

PODS = KubernetesSDConfig(role="pod")
LOGGER = "collector.discovery.kubernetes"
FAST_WATCHES = 0.0001
"""``timeout_scale``: the 300-600 s watches the informer asks for end after 30-60 ms."""


# ----------------------------------------------------------------------------- the fake, starting


class RestartingAPIServer(FakeAPIServer):
    """The fake plus ``/readyz``, and kube-apiserver's first second after a (re)start.

    While ``starting`` it does what v1.20.2 was seen doing before its RBAC authorizer synced
    (``tests/integration/test_kube_faults.py`` provokes it for real): every user outside the
    admins gets the very Forbidden a missing RoleBinding gives, and ``/readyz`` answers
    ``readyz_starting``: 403 ``cannot get path "/readyz"`` first, 500 (hooks failing) after.
    """

    starting = False
    readyz_starting = 403

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/readyz":
            return await super()._serve(request)
        user = self._authenticate(request)
        if not self.starting or user in self.admins:
            return web.Response(text="ok")
        if self.readyz_starting == 403:
            body = status_body(
                403, "Forbidden", f'forbidden: User "{user}" cannot get path "/readyz"', details={}
            )
            return web.Response(
                status=403, body=orjson.dumps(body), content_type="application/json"
            )
        return web.Response(
            status=self.readyz_starting,
            text="[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n"
            "readyz check failed\n",
        )

    def _authorize(self, user: str, verb: str, res: Resource, namespace: str) -> None:
        if not self.starting:
            super()._authorize(user, verb, res, namespace)
            return
        grants, self.grants = self.grants, set()  # an authorizer whose caches are still empty
        try:
            super()._authorize(user, verb, res, namespace)
        finally:
            self.grants = grants


@pytest.fixture
async def api() -> AsyncIterator[RestartingAPIServer]:
    """The fake (with /readyz) holding pods p0, p1, p2 in namespace shop."""
    server = RestartingAPIServer()
    async with server:
        for i in range(3):
            server.put("pods", pod(f"p{i}", f"10.0.0.{i}"))
        yield server


@pytest.fixture
async def proxy(api: FakeAPIServer) -> AsyncIterator[TCPProxy]:
    """A `TCPProxy` in front of ``api`` (plain HTTP)."""
    async with TCPProxy(int(api.url.rsplit(":", 1)[1])) as p:
        yield p


# ----------------------------------------------------------------------------- helpers


def pod(name: str, ip: str, **labels: str) -> dict[str, Any]:
    """A running pod in namespace shop with one port."""
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def churn(api: FakeAPIServer) -> None:
    """What changes while the fault lasts: p0 deleted, p1 relabelled, p3 created."""
    api.delete("pods", "p0", "shop")
    api.put("pods", pod("p1", "10.0.0.1", app="changed"))
    api.put("pods", pod("p3", "10.0.0.3"))


class Waits:
    """The informers' backoff sleeps: recorded and returned at once; `then` runs hooks."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._hooks: list[Callable[[], None]] = []

    def then(self, *hooks: Callable[[], None]) -> None:
        """Run ``hooks[i]`` during the i-th next wait (the server changes while we back off)."""
        self._hooks.extend(hooks)

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if self._hooks:
            self._hooks.pop(0)()
        await asyncio.sleep(0)


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
    """One discoverer running: what it sent, its metrics, its waits."""

    sink: Sink
    registry: CollectorRegistry
    waits: Waits = field(default_factory=Waits)

    def restarts(self, reason: str) -> float:
        labels = {"resource": "pods", "reason": reason}
        return (
            self.registry.get_sample_value("collector_kubernetes_watch_restarts_total", labels) or 0
        )

    def relists(self, reason: str) -> float:
        labels = {"resource": "pods", "reason": reason}
        return self.registry.get_sample_value("collector_kubernetes_relists_total", labels) or 0


@contextlib.asynccontextmanager
async def discovering(
    spec: ConnectionSpec, *, config: KubernetesSDConfig = PODS, **options: Any
) -> AsyncIterator[Run]:
    """Run one discoverer on a private pool (injected waits) until the block ends."""
    run = Run(Sink(), CollectorRegistry())
    pool = InformerPool(
        options=InformerOptions(sleep=run.waits.sleep, rng=random.Random(1), **options)
    )
    discoverer = make_discoverer(config, registry=run.registry, pool=pool, connection=spec)
    task = asyncio.create_task(discoverer.run(run.sink))
    try:
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fresh_groups(
    api: FakeAPIServer, config: KubernetesSDConfig = PODS
) -> dict[str, TargetGroup]:
    """The full set as the server has it now: what a new discoverer sends first."""
    async with discovering(token_spec(api.url, api.token), config=config) as run:
        await until(lambda: bool(run.sink.sends))
        return run.sink.current()


async def restored(run: Run, api: FakeAPIServer) -> None:
    """Wait until ``run`` holds exactly the groups a fresh discoverer gets; check the churn."""
    full = await fresh_groups(api)
    assert set(full) == {"pod/shop/p1", "pod/shop/p2", "pod/shop/p3"}
    await until(lambda: run.sink.current() == full, steps=5000)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """Messages of the Kubernetes discovery loggers at exactly ``level``."""
    return [
        r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith(LOGGER)
    ]


async def started(run: Run) -> None:
    """Until the first full set (p0, p1, p2) was sent."""
    await until(lambda: len(run.sink.current()) == 3)


# ----------------------------------------------------------------------------- the faults


async def test_410_mid_watch_relists_to_the_full_set(
    api: FakeAPIServer, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The watch ends (server timeout); its successor is held while pods change and etcd
    compacts, then gets the ERROR 410 event: one info line names it, one relist restores all."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.timeout_scale = FAST_WATCHES
    async with discovering(token_spec(proxy.url, api.token)) as run:
        await started(run)
        proxy.hold("watch")
        await until(lambda: proxy.held == 1)
        churn(api)
        api.compact()
        proxy.release()
        await restored(run, api)
        assert run.relists("expired") == 1
        assert run.restarts("expired") == 1
        assert run.registry.get_sample_value("prometheus_sd_kubernetes_failures_total") == 0
    (line,) = [m for m in logged(caplog, logging.INFO) if "410" in m]
    assert "watch: 410 Expired: too old resource version" in line
    assert line.endswith("resource version expired, relisting")
    assert logged(caplog, logging.WARNING) == []


async def test_stalled_watch_is_abandoned_and_resumes(
    api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch whose headers came but no byte after (connection open) is abandoned at the read
    deadline, logged as a stall, and the next watch replays what changed meanwhile."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.timeout_scale = FAST_WATCHES  # healthy watches end well before the read deadline
    async with discovering(token_spec(api.url, api.token), read_deadline=0.3) as run:
        await started(run)
        api.fail_next_watch("pods", Fault("hang"))
        await until(lambda: not api.watch_faults["pods"])  # the hanging watch is open
        churn(api)
        await restored(run, api)
        assert run.restarts("stalled") == 1
        assert run.relists("expired") == 0
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch stalled: no data for 0.3s while the connection stayed open" in warning


async def test_connection_reset_mid_event_resumes_from_the_last_event(
    api: FakeAPIServer, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy forwards half of an event, then resets the connection: the half line is
    dropped, the log says so, and the next watch (from the last whole event) restores all."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with discovering(token_spec(proxy.url, api.token)) as run:
        await started(run)
        await until(lambda: proxy.count("watch") == 1)
        proxy.reset_mid_event()
        churn(api)
        await restored(run, api)
        assert proxy.resets == 1
        assert run.restarts("disconnected") == 1
        assert run.relists("expired") == 0
        assert api.count("pods", watch=False) == 2  # the two discoverers' LISTs: no relist
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch: connection lost mid-event (" in warning
    assert "bytes of an unfinished line dropped)" in warning
    assert any(m.endswith("recovered") for m in logged(caplog, logging.INFO))


async def test_token_rotated_mid_watch_401_rereads_it(
    api: FakeAPIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token file is rotated and the old token revoked while a watch runs (it keeps
    running: servers authenticate a request once). The next watch gets 401, the file is
    re-read, and the watch resumes with everything that changed."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.tokens = {"oldtoken": "admin"}
    token = tmp_path / "token"
    token.write_text("oldtoken")
    spec = ConnectionSpec(
        api_server=api.url,
        http_client=HTTPClientConfig(authorization=Authorization(credentials_file=str(token))),
    )
    api.timeout_scale = FAST_WATCHES  # the watch running at the rotation ends by itself
    async with discovering(spec) as run:
        await started(run)
        api.tokens = {"newtoken": "admin"}
        token.write_text("newtoken")
        churn(api)
        await restored(run, api)
        assert run.restarts("unauthorized") == 1
        assert run.restarts("disconnected") == 0
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch: 401 Unauthorized: Unauthorized (the API server rejected our credentials" in (
        warning
    )


async def test_rbac_revoked_mid_watch_403_names_the_rule(
    api: RestartingAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The RoleBinding goes while a watch runs: the next watch gets 403 from a ready server
    (/readyz 200), which is a missing permission: one error names the rule; once it is granted
    again the watch resumes with everything that changed."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.tokens["promtoken"] = "prom"
    api.grant("prom", "*", "pods")
    api.timeout_scale = FAST_WATCHES
    async with discovering(token_spec(api.url, "promtoken")) as run:
        await started(run)
        run.waits.then(lambda: None, lambda: api.grant("prom", "*", "pods"))
        api.grants.clear()
        churn(api)
        await restored(run, api)
        assert run.restarts("forbidden") == 2
        assert run.restarts("not_ready") == 0
    assert logged(caplog, logging.ERROR) == [
        "kubernetes SD is missing an RBAC permission: watch pods in the cluster scope (server"
        ' said: 403 Forbidden: pods is forbidden: User "prom" cannot watch resource "pods" in'
        ' API group "" at the cluster scope)'
    ]
    assert len(logged(caplog, logging.WARNING)) == 1


@pytest.mark.parametrize("readyz", [403, 500])
async def test_403_while_the_api_server_starts_is_not_an_rbac_error(
    api: RestartingAPIServer, caplog: pytest.LogCaptureFixture, readyz: int
) -> None:
    """An API-server restart: the watch breaks, and the first requests of the new server are
    denied because its RBAC authorizer has not synced. /readyz (403, then 500, on v1.20.2)
    says it is not ready: a warning names that, nothing claims RBAC is missing."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.tokens["promtoken"] = "prom"
    api.grant("prom", "*", "pods")
    api.readyz_starting = readyz
    async with discovering(token_spec(api.url, "promtoken")) as run:
        await started(run)

        def synced() -> None:
            api.starting = False

        run.waits.then(lambda: churn(api), lambda: None, synced)
        api.starting = True
        assert api.drop_watches("pods") == 1
        await restored(run, api)
        assert run.restarts("disconnected") == 1
        assert run.restarts("not_ready") == 2
        assert run.restarts("forbidden") == 0
    assert logged(caplog, logging.ERROR) == []
    disconnected, not_ready = logged(caplog, logging.WARNING)
    assert "watch: connection lost" in disconnected
    assert "API server not ready: watch: 403 Forbidden: pods is forbidden" in not_ready
    assert f"while /readyz answers {readyz}" in not_ready
    assert "until its RBAC authorizer has synced" in not_ready


async def test_403_lasting_past_the_grace_is_an_rbac_error(
    api: RestartingAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that stays "not ready" while denying us (a cluster hiding /readyz, say) gets
    ``forbidden_grace`` seconds of backoff; then the 403 is reported as the RBAC error it is."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.tokens["promtoken"] = "prom"
    api.readyz_starting = 500
    api.starting = True
    async with discovering(token_spec(api.url, "promtoken"), forbidden_grace=2.0) as run:
        await until(lambda: run.restarts("forbidden") >= 1)
        # Waits of 0.8-1.6 s then 1.6-3.2 s: the second 403 comes after >= 0.8 s, the third
        # after >= 2.4 s of backoff, past the grace.
        assert run.restarts("not_ready") == 2
        assert sum(run.waits.seconds[:2]) >= 2.0
        api.starting = False
        api.grant("prom", "*", "pods")
        churn(api)
        await restored(run, api)
    (error,) = logged(caplog, logging.ERROR)
    assert error.startswith("kubernetes SD is missing an RBAC permission: list pods in the")
    not_ready, forbidden = logged(caplog, logging.WARNING)
    assert "API server not ready" in not_ready
    assert "reported as a missing RBAC permission if it lasts 2s" in not_ready
    assert "list: 403 Forbidden" in forbidden


LB_503 = Answer(
    503,
    b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this"
    b" request.\n</body></html>\n",
    content_type="text/html",
)
APF_429 = Answer(
    429,
    orjson.dumps(
        status_body(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            details={"retryAfterSeconds": 3},
        )
    ),
    headers={"Retry-After": "3"},
)


async def test_429_and_5xx_on_the_first_list(
    api: FakeAPIServer, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The first LISTs meet a throttling 429 (Retry-After honoured), a 500 from the server and
    a load balancer's HTML 503: each is logged once with its cause, then the full set comes."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.fail_next_list(
        "pods",
        Fault(
            "status", code=500, body=status_body(500, "InternalError", "etcdserver: leader changed")
        ),
    )
    proxy.answer_next("list", [APF_429, LB_503])
    async with discovering(token_spec(proxy.url, api.token)) as run:
        churn(api)
        await until(lambda: run.restarts("http_500") == 1)  # before a fresh LIST takes the 500
        await restored(run, api)
        assert run.waits.seconds[0] == 3.0  # Retry-After, above the first backoff (0.8-1.6 s)
        assert [run.restarts(f"http_{c}") for c in (429, 503, 500)] == [1, 1, 1]
        assert run.sink.sends[0]  # nothing was sent before the LIST succeeded
    too_many, unavailable, internal = logged(caplog, logging.WARNING)
    assert "list: 429 TooManyRequests: Too many requests, please try again later." in too_many
    assert "(the API server is overloaded and throttles us, Retry-After 3s)" in too_many
    assert "list: 503: <html><body><h1>503 Service Unavailable</h1> No server is" in unavailable
    assert "(the API server (or a proxy in front of it) failed)" in unavailable
    assert "list: 500 InternalError: etcdserver: leader changed" in internal
    assert logged(caplog, logging.INFO)[-1].endswith("recovered")


async def test_5xx_on_the_relist_after_410(
    api: FakeAPIServer, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The relist a 410 calls for meets a 503 then a 429: backoff, then the consistent LIST
    restores the full set; the store is never emptied meanwhile."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api.timeout_scale = FAST_WATCHES
    async with discovering(token_spec(proxy.url, api.token)) as run:
        await started(run)
        proxy.hold("watch")
        await until(lambda: proxy.held == 1)
        churn(api)
        api.compact()
        proxy.answer_next("list", [LB_503, APF_429])
        proxy.release()
        await restored(run, api)
        assert run.relists("expired") == 1
        assert [run.restarts(r) for r in ("expired", "http_503", "http_429")] == [1, 1, 1]
        assert all(
            g.targets for send in run.sink.sends[1:] for g in send if g.source != "pod/shop/p0"
        )
    assert [m.split(": ", 2)[1] for m in logged(caplog, logging.WARNING)] == ["list", "list"]


async def test_non_json_line_mid_watch_resumes_from_the_last_event(
    api: FakeAPIServer, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTML line spliced into a running watch (a broken proxy) ends that watch: logged as
    not JSON, and the next watch (from the last event) restores everything, with no relist."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with discovering(token_spec(proxy.url, api.token)) as run:
        await started(run)
        await until(lambda: proxy.inject_line(b"<html><body>502 Bad Gateway</body></html>") == 1)
        churn(api)
        await restored(run, api)
        assert run.restarts("bad_line") == 1
        assert run.relists("expired") == 0
    (warning,) = logged(caplog, logging.WARNING)
    assert "watch: not a JSON line (a proxy in the way?): b'<html><body>502 Bad Gateway" in warning


# ----------------------------------------------------------------------------- the words


def test_answer_error_names_each_status() -> None:
    """Each non-200 answer becomes the failure its status stands for, worded by its cause."""
    gone = answer_error(
        410, b'{"reason":"Expired","message":"too old"}', retry_after=None, verb="list"
    )
    assert isinstance(gone, Gone)
    assert str(gone) == "list: 410 Expired: too old"
    denied = answer_error(
        403, b'{"reason":"Forbidden","message":"no"}', retry_after=None, verb="watch"
    )
    assert isinstance(denied, Forbidden)
    assert (denied.verb, denied.server_said) == ("watch", "403 Forbidden: no")
    throttled = answer_error(429, b"{}", retry_after="7", verb="list")
    assert isinstance(throttled, Restart)
    assert (throttled.reason, throttled.retry_after) == ("http_429", 7.0)
    odd = answer_error(503, b"<html>", retry_after="soon", verb="list")
    assert isinstance(odd, Restart)
    assert (odd.reason, odd.retry_after) == ("http_503", 0.0)
    assert str(odd) == "list: 503: <html> (the API server (or a proxy in front of it) failed)"


def test_connection_lost_says_mid_event_only_with_a_partial_line() -> None:
    """A broken stream says "mid-event" when part of a line was in hand, not otherwise."""
    exc = ConnectionResetError(104, "reset")
    assert "mid-event (12 bytes" in str(connection_lost("watch", exc, pending=12))
    assert str(connection_lost("watch", exc)).startswith("watch: connection lost: ")


@pytest.mark.parametrize(
    ("readyz", "reason"),
    [
        (200, "forbidden"),
        (404, "forbidden"),
        (403, "not_ready"),
        (500, "not_ready"),
        (None, "not_ready"),
    ],
)
async def test_diagnosis_of_a_403_by_readyz(readyz: int | None, reason: str) -> None:
    """/readyz 200 (ready) or 404 (no evidence): a missing permission; 403, 5xx or no answer:
    a server still starting."""
    probes: list[None] = []

    async def probe() -> int | None:
        probes.append(None)
        return readyz

    d = Diagnosis(
        logger=logging.getLogger(LOGGER),
        where=lambda: "pods",
        resource="pods",
        namespace="shop",
        probe=probe,
        grace=30.0,
    )
    assert await d.failed(Forbidden("list", "403 Forbidden: no"), wait=1.0) == reason
    assert d.state == reason
    assert await d.failed(Forbidden("list", "403 Forbidden: no"), wait=1.0) == reason
    # Once a 403 of the streak was a missing permission, the next ones are too: no probe.
    assert len(probes) == (1 if reason == "forbidden" else 2)
    d.recovered()
    assert d.state == ""
