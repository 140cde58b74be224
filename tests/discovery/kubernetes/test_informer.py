"""The informer against the fake API server: list/watch, every failure path of the brief."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import Authorization, HTTPClientConfig
from collector.discovery.kubernetes.informer import Informer, InformerKey, InformerOptions
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import Pod, SlimObject
from collector.discovery.kubernetes.pool import InformerPool
from collector.kubernetes.connection import ConnectionSpec
from tests.discovery.kubernetes.conftest import sample, token_spec, until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer, Fault

# Backoff waits are injected (`Recorder.sleep` records and returns at once); stalls and server
# timeouts use millisecond knobs (`read_deadline`, the fake's `timeout_scale`). Nothing sleeps.


def pod(name: str, ns: str = "shop", **labels: str) -> dict[str, Any]:
    """A minimal running pod."""
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"podIP": "10.0.0.1", "phase": "Running"},
    }


class Recorder:
    """Collects handler calls and backoff sleeps."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def __call__(self, kind: str, key: str, old: SlimObject | None, new: SlimObject | None) -> None:
        self.events.append((kind, key))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        await asyncio.sleep(0)


@asynccontextmanager
async def running(
    spec: ConnectionSpec,
    rec: Recorder,
    *,
    resource: str = "pods",
    page_size: int = 500,
    read_deadline: float | None = None,
    registry: CollectorRegistry | None = None,
    **key: str,
) -> AsyncIterator[Informer]:
    """Run one informer through a pool until the block ends."""
    pool = InformerPool(
        options=InformerOptions(
            page_size=page_size, sleep=rec.sleep, rng=random.Random(1), read_deadline=read_deadline
        )
    )
    metrics = KubernetesMetrics.for_registry(registry or CollectorRegistry())
    k = InformerKey(connection=spec, resource=resource, **key)
    async with pool.serving(), pool.subscribe(k, rec, metrics=metrics) as informer:
        yield informer
    assert len(pool) == 0


def sample_value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A metric sample (0 when absent)."""
    return registry.get_sample_value(name, labels) or 0.0


async def test_list_then_watch(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """Initial list fills the store and syncs; watch events add, update and delete."""
    api.put("pods", pod("a"))
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert list(inf.store) == ["shop/a"]
        await until(lambda: api.count("pods", watch=True) == 1)
        api.put("pods", pod("b"))
        api.put("pods", {**pod("a"), "status": {"podIP": "10.0.0.2"}})
        api.delete("pods", "b", "shop")
        await until(lambda: len(rec.events) == 4)
        assert rec.events == [
            ("add", "shop/a"),
            ("add", "shop/b"),
            ("update", "shop/a"),
            ("delete", "shop/b"),
        ]
        stored = inf.store["shop/a"]
        assert isinstance(stored, Pod)
        assert stored.pod_ip == "10.0.0.2"
        first = api.requests[0].query
        assert first["resourceVersion"] == "0"
        assert first["limit"] == "500"
        watch = api.requests[1].query
        assert watch["allowWatchBookmarks"] == "true"
        assert 300 <= int(watch["timeoutSeconds"]) <= 600
        assert watch["resourceVersion"] == str(api.rv - 3)


async def test_paginated_list(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A paginated list follows continue tokens and keeps the first page's RV."""
    api.paginate_from_cache = True
    for i in range(5):
        api.put("pods", pod(f"p{i}"))
    rec = Recorder()
    async with running(spec, rec, page_size=2) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert len(inf.store) == 5
        lists = [r for r in api.requests if not r.watch]
        assert len(lists) == 3
        assert "continue" in lists[1].query
        assert "resourceVersion" not in lists[1].query
        assert inf.resource_version == str(api.rv)


async def test_expired_continue_restarts_list(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """410 on a continue token restarts the list from scratch with a consistent read."""
    api.paginate_from_cache = True
    for i in range(5):
        api.put("pods", pod(f"p{i}"))
    compacted: list[bool] = []

    def compact_once(server: FakeAPIServer) -> None:
        if not compacted:
            compacted.append(True)
            server.put("services", sample("service-web.json"))
            server.compact()

    api.after_list_page = compact_once
    registry = CollectorRegistry()
    rec = Recorder()
    async with running(spec, rec, page_size=2, registry=registry) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert len(inf.store) == 5
        lists = [r.query for r in api.requests if not r.watch]
        assert "continue" in lists[1]
        assert "continue" not in lists[2]
        assert "resourceVersion" not in lists[2]
        assert rec.sleeps == []
        assert (
            sample_value(
                registry,
                "collector_kubernetes_relists_total",
                resource="pods",
                reason="expired_continue",
            )
            == 1
        )


async def test_410_event_relists_and_emits_deletions(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """A 410 ERROR event relists quietly; objects deleted in the gap become deletions (§11 #6)."""
    api.put("pods", pod("keep"))
    api.put("pods", pod("gone"))
    registry = CollectorRegistry()
    rec = Recorder()
    async with running(spec, rec, registry=registry) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await until(lambda: api.count("pods", watch=True) == 1)

        # The connection drops; while the informer backs off the object goes, etcd compacts.
        def gap() -> None:
            if "shop/gone" in api.objects["pods"]:
                api.delete("pods", "gone", "shop")
                api.compact()

        rec.on_sleep = gap
        assert api.drop_watches("pods") == 1
        await until(lambda: set(inf.store) == {"shop/keep"})
        assert rec.events[-1] == ("delete", "shop/gone")
        assert rec.events.count(("add", "shop/keep")) == 1
        assert (
            sample_value(
                registry, "collector_kubernetes_relists_total", resource="pods", reason="expired"
            )
            == 1
        )
        relist = [r.query for r in api.requests if not r.watch][-1]
        assert "resourceVersion" not in relist  # consistent read after 410


async def test_410_status_relists(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """An HTTP 410 on the watch request itself relists without backoff."""
    api.put("pods", pod("a"))
    api.fail_next_watch("pods", Fault("status", code=410))
    rec = Recorder()
    async with running(spec, rec) as inf:
        await until(lambda: api.count("pods", watch=False) == 2)
        await until(lambda: api.count("pods", watch=True) == 2)
        assert rec.sleeps == []
        assert list(inf.store) == ["shop/a"]


async def test_bookmarks_advance_rv(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A bookmark moves the informer's RV; the next watch starts from it."""
    api.bookmark_interval = 0.005
    api.put("pods", pod("a"))
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await until(lambda: api.count("pods", watch=True) == 1)
        api.put("services", sample("service-web.json"))  # another resource moves the global RV
        await until(lambda: inf.resource_version == str(api.rv))
        bookmark_rv = inf.resource_version
        assert api.drop_watches("pods") == 1
        await until(lambda: api.count("pods", watch=True) == 2)
        assert api.requests[-1].query["resourceVersion"] == bookmark_rv
        assert rec.events == [("add", "shop/a")]


async def test_abrupt_close_rewatches_from_last_rv(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """A connection aborted mid-stream backs off and rewatches from the last RV, no relist."""
    api.put("pods", pod("a"))
    api.fail_next_watch("pods", Fault("close", after=1))
    rec = Recorder()
    registry = CollectorRegistry()
    async with running(spec, rec, registry=registry) as inf:
        await until(lambda: api.count("pods", watch=True) == 1)
        api.put("pods", pod("b"))
        last = api.rv
        api.put("pods", pod("c"))  # the fake aborts instead of sending this one
        await until(lambda: api.count("pods", watch=True) == 2)
        assert api.requests[-1].query["resourceVersion"] == str(last)
        await until(lambda: "shop/c" in inf.store)
        assert api.count("pods", watch=False) == 1
        assert len(rec.sleeps) == 1
        assert 0.8 <= rec.sleeps[0] < 1.6
        assert (
            sample_value(
                registry,
                "collector_kubernetes_watch_restarts_total",
                resource="pods",
                reason="disconnected",
            )
            == 1
        )
        assert sample_value(registry, "prometheus_sd_kubernetes_failures_total") == 1


async def test_stall_hits_read_deadline(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A watch that sends nothing is abandoned at the read deadline, then rewatched."""
    api.fail_next_watch("pods", Fault("hang"))
    rec = Recorder()
    registry = CollectorRegistry()
    async with running(spec, rec, registry=registry, read_deadline=0.02):
        await until(lambda: api.count("pods", watch=True) == 2)
        assert (
            sample_value(
                registry,
                "collector_kubernetes_watch_restarts_total",
                resource="pods",
                reason="stalled",
            )
            == 1
        )
        assert api.requests[2].query["resourceVersion"] == api.requests[1].query["resourceVersion"]


def test_default_read_deadline_exceeds_watch_timeout() -> None:
    """By default the client read deadline is timeoutSeconds + 30 s (bookmarks may not come)."""
    o = InformerOptions()
    assert o.read_deadline is None
    assert o.read_margin == 30.0
    assert (o.watch_timeout_min, o.watch_timeout_max) == (300.0, 600.0)


async def test_server_timeout_rewatches_without_backoff(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """The server ending the watch at timeoutSeconds leads to an immediate rewatch."""
    api.timeout_scale = 0.00005  # 300..600 s -> 15..30 ms
    rec = Recorder()
    async with running(spec, rec):
        await until(lambda: api.count("pods", watch=True) == 3)
        assert rec.sleeps == []
        assert api.count("pods", watch=False) == 1


async def test_5xx_and_429_back_off(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """5xx and 429 back off with jitter, growing, honouring Retry-After."""
    api.fail_next_list(
        "pods",
        Fault("status", code=500),
        Fault("status", code=503),
        Fault("status", code=429, headers={"Retry-After": "7"}),
    )
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert len(rec.sleeps) == 3
        assert 0.8 <= rec.sleeps[0] < 1.6
        assert 1.6 <= rec.sleeps[1] < 3.2
        assert rec.sleeps[2] == 7.0


async def test_backoff_caps_at_30s(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """Repeated failures never wait more than 30 s."""
    api.fail_next_list("pods", *[Fault("status", code=500) for _ in range(10)])
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert max(rec.sleeps) == 30.0
        assert rec.sleeps[5:] == [30.0] * 5


async def test_401_reloads_credentials(api: FakeAPIServer, tmp_path: Path) -> None:
    """A 401 re-reads the credentials file; the rotated token then works."""
    token_file = tmp_path / "token"
    token_file.write_text("stale")
    spec = ConnectionSpec(
        api_server=api.url,
        http_client=HTTPClientConfig(authorization=Authorization(credentials_file=str(token_file))),
    )
    rec = Recorder()

    def rotate() -> None:
        token_file.write_text(api.token)

    rec.on_sleep = rotate
    registry = CollectorRegistry()
    async with running(spec, rec, registry=registry) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        assert [r.user for r in api.requests[:2]] == ["", "admin"]
        assert (
            sample_value(
                registry,
                "collector_kubernetes_watch_restarts_total",
                resource="pods",
                reason="unauthorized",
            )
            == 1
        )


async def test_403_reported_once(api: FakeAPIServer, caplog: pytest.LogCaptureFixture) -> None:
    """Repeated 403s are logged once, naming the missing RBAC rule; retries continue."""
    api.tokens["promtoken"] = "prom"
    rec = Recorder()
    caplog.set_level(logging.WARNING)
    async with running(token_spec(api.url, "promtoken"), rec) as inf:
        await until(lambda: len(rec.sleeps) >= 4)
        api.grant("prom", "*", "pods")
        await asyncio.wait_for(inf.synced.wait(), 5)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "list pods in the cluster scope" in errors[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


async def test_403_namespaced_watch_rule(api: FakeAPIServer) -> None:
    """A namespaced watch denied names the namespace and verb in the rule."""
    api.tokens["promtoken"] = "prom"
    api.grant("prom", "list", "endpoints", "shop")
    rec = Recorder()
    logger = logging.getLogger("collector.discovery.kubernetes.informer")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        async with running(
            token_spec(api.url, "promtoken"), rec, resource="endpoints", namespace="shop"
        ):
            await until(lambda: len(rec.sleeps) >= 2)
    finally:
        logger.removeHandler(handler)
    assert any('watch endpoints in the namespace "shop"' in m for m in seen)


async def test_non_json_line_rewatches(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A non-JSON line (proxy HTML) restarts the watch from the same RV after backoff."""
    api.put("pods", pod("a"))
    api.fail_next_watch("pods", Fault("lines", lines=(b"<html>502 Bad Gateway</html>",)))
    rec = Recorder()
    async with running(spec, rec) as inf:
        await until(lambda: api.count("pods", watch=True) == 2)
        assert api.requests[1].query["resourceVersion"] == api.requests[2].query["resourceVersion"]
        assert api.count("pods", watch=False) == 1
        assert len(rec.sleeps) == 1
        api.put("pods", pod("b"))
        await until(lambda: "shop/b" in inf.store)


async def test_error_event_500_backs_off(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """An ERROR event other than 410 is a failure: backoff, then rewatch without relist."""
    api.fail_next_watch("pods", Fault("error_event", code=500))
    rec = Recorder()
    async with running(spec, rec):
        await until(lambda: api.count("pods", watch=True) == 2)
        assert len(rec.sleeps) == 1
        assert api.count("pods", watch=False) == 1


async def test_line_over_1mb(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A watch event line larger than 1 MB is read whole (no readline limit)."""
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await until(lambda: api.count("pods", watch=True) == 1)
        big = pod("big")
        big["metadata"]["annotations"] = {"blob": "x" * 1_500_000}
        api.put("pods", big)
        await until(lambda: "shop/big" in inf.store)
        stored = inf.store["shop/big"]
        assert isinstance(stored, Pod)
        assert len(stored.annotations[0][1]) == 1_500_000
        assert rec.sleeps == []


async def test_added_for_known_key_is_update(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A replayed ADDED for an object already held is an update, not a second add."""
    api.put("pods", pod("a"))
    rec = Recorder()
    async with running(spec, rec) as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await until(lambda: api.count("pods", watch=True) == 1)
        inf.resource_version = "0"  # force the next watch to replay ADDED
        api.fail_next_watch("pods", Fault("status", code=500))
        api.put("pods", {**pod("a"), "status": {"podIP": "10.9.9.9"}})
        await until(lambda: rec.events[-1:] == [("update", "shop/a")])
        assert rec.events.count(("add", "shop/a")) == 1


async def test_selector_transition_is_delete(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """A label change out of the selector arrives as a delete."""
    api.put("pods", pod("a", app="web"))
    rec = Recorder()
    async with running(spec, rec, label_selector="app=web") as inf:
        await asyncio.wait_for(inf.synced.wait(), 5)
        await until(lambda: api.count("pods", watch=True) == 1)
        api.put("pods", pod("a", app="db"))
        await until(lambda: not inf.store)
        assert rec.events == [("add", "shop/a"), ("delete", "shop/a")]
        assert api.requests[0].query["labelSelector"] == "app=web"


async def test_cancellation_stops_cleanly(api: FakeAPIServer, spec: ConnectionSpec) -> None:
    """Leaving the subscription cancels the informer task and closes the session."""
    rec = Recorder()
    pool = InformerPool(options=InformerOptions(sleep=rec.sleep))
    metrics = KubernetesMetrics.for_registry(CollectorRegistry())
    key = InformerKey(connection=spec, resource="nodes")
    async with pool.serving():
        async with pool.subscribe(key, rec, metrics=metrics) as inf:
            await asyncio.wait_for(inf.synced.wait(), 5)
            conn = inf.connection
        assert conn.session is None
        assert len(pool) == 0
