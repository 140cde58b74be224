"""The informer pool as a component: it owns its informers' tasks, and only cancellation stops it.

Covers what a process-wide pool with loose tasks got wrong: subscribing to a pool nobody runs,
stopping the pool while subscribers remain, a discoverer serving a pool that already runs, the
LIST prefetch task (its failure, its cancellation) and an unexpected error in one informer,
which must not take the TaskGroup of every other informer down with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.kubernetes import InformerOptions, InformerPool, make_discoverer
from collector.discovery.kubernetes import objects as k8s_objects
from collector.discovery.kubernetes.informer import Informer, InformerKey
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import SlimObject
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup
from tests.discovery.kubernetes.conftest import token_spec, until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer, Fault
from tests.integration.running import eventually, running_agent


def pod(name: str, ns: str = "shop") -> dict[str, Any]:
    """A minimal running pod."""
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"podIP": "10.0.0.1", "phase": "Running"},
    }


def ignore(kind: str, key: str, old: SlimObject | None, new: SlimObject | None) -> None:
    """A handler that wants nothing."""


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def fast() -> InformerOptions:
    return InformerOptions(page_size=2, sleep=no_sleep, rng=random.Random(1))


def restarts(registry: CollectorRegistry, reason: str, resource: str = "pods") -> float:
    value = registry.get_sample_value(
        "collector_kubernetes_watch_restarts_total", {"resource": resource, "reason": reason}
    )
    return value or 0.0


async def hold(pool: InformerPool, key: InformerKey, held: list[Informer]) -> NoReturn:
    """A subscriber that keeps its subscription until cancelled."""
    async with pool.subscribe(key, ignore, metrics=KubernetesMetrics.for_registry(REGISTRY)) as i:
        held.append(i)
        await asyncio.Event().wait()
    raise AssertionError("unreachable")


REGISTRY = CollectorRegistry()


def informer_tasks() -> list[str]:
    """The informers' tasks still alive (their runs and the pages they asked for ahead); the
    fake server's handler tasks are not ours to count."""
    names = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        qualname = getattr(coro, "__qualname__", "")
        if qualname.startswith(("Informer.", "InformerPool.")):
            names.append(qualname)
    return names


async def test_subscribing_to_a_pool_nobody_runs_is_refused(spec: ConnectionSpec) -> None:
    """An informer needs an owner: subscribing outside `run` or `serving` is a RuntimeError."""
    pool = InformerPool()
    key = InformerKey(connection=spec, resource="pods")
    with pytest.raises(RuntimeError, match="not served"):
        async with pool.subscribe(key, ignore, metrics=KubernetesMetrics.for_registry(REGISTRY)):
            pass
    assert len(pool) == 0


async def test_cancelling_run_stops_informers_that_still_have_subscribers(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """The informers are tasks of the pool: cancelling `run` ends them and closes their
    connection even while a subscriber holds on, and that subscriber then leaves cleanly."""
    pool = InformerPool(options=fast())
    runner = asyncio.create_task(pool.run())
    await pool.running.wait()
    with pytest.raises(RuntimeError, match="already served"):
        await pool.run()
    held: list[Informer] = []
    subscriber = asyncio.create_task(
        hold(pool, InformerKey(connection=spec, resource="pods"), held)
    )
    await until(lambda: bool(held) and held[0].synced.is_set())
    conn = held[0].connection
    session = conn.session
    assert session is not None

    runner.cancel()
    await asyncio.wait([runner])
    assert runner.cancelled()
    assert not pool.running.is_set()
    assert len(pool) == 0
    assert session.closed
    assert conn.session is None
    assert informer_tasks() == [], "the informer task ended with its pool"
    assert not subscriber.done()

    subscriber.cancel()
    await asyncio.wait([subscriber])
    assert subscriber.cancelled()


async def test_a_discoverer_serves_only_a_pool_nobody_else_runs(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """On the agent's running pool a discoverer leaves the pool running when it stops; given
    an idle pool it serves that pool itself, and nothing of it outlives the discoverer."""
    api.put("pods", pod("a"))
    sends: list[Sequence[TargetGroup]] = []
    config = KubernetesSDConfig(role="pod")

    pool = InformerPool(options=fast())
    runner = asyncio.create_task(pool.run())
    await pool.running.wait()
    d = make_discoverer(config, registry=CollectorRegistry(), pool=pool, connection=spec)
    task = asyncio.create_task(d.run(sends.append))
    await until(lambda: len(sends) == 1)
    task.cancel()
    await asyncio.wait([task])
    assert pool.running.is_set(), "the pool's owner is still running it"
    assert len(pool) == 0, "the discoverer left its informer"
    runner.cancel()
    await asyncio.wait([runner])

    idle = InformerPool(options=fast())
    d = make_discoverer(config, registry=CollectorRegistry(), pool=idle, connection=spec)
    task = asyncio.create_task(d.run(sends.append))
    await until(lambda: len(sends) == 2)
    assert idle.running.is_set()
    assert len(idle) == 1
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert not idle.running.is_set()
    assert len(idle) == 0
    assert informer_tasks() == []


async def test_a_failed_prefetched_page_is_a_restart_not_a_crash() -> None:
    """The page requested ahead fails (500): the informer counts a restart and lists again;
    the pool that owns it keeps running."""
    async with FakeAPIServer(paginate_from_cache=True) as api:
        api.put_many("pods", [pod(f"p{i}") for i in range(5)])
        failed = False

        def fail_next_page(server: FakeAPIServer) -> None:
            nonlocal failed
            if not failed:
                failed = True
                server.list_faults["pods"].append(Fault("status", code=500))

        api.after_list_page = fail_next_page
        registry = CollectorRegistry()
        pool = InformerPool(options=fast())
        key = InformerKey(connection=token_spec(api.url, api.token), resource="pods")
        async with pool.serving():
            metrics = KubernetesMetrics.for_registry(registry)
            async with pool.subscribe(key, ignore, metrics=metrics) as informer:
                await asyncio.wait_for(informer.synced.wait(), 5)
                assert len(informer.store) == 5
                assert restarts(registry, "http_500") == 1
                assert pool.running.is_set()
        assert informer_tasks() == []


async def test_cancelled_during_the_prefetch_leaves_no_task_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopping the pool while a page is in flight cancels that request too: the informer's
    LIST scope waits for it, so the pool's task ends cancelled with nothing left running."""
    in_flight = asyncio.Event()
    original = Informer._fetch_page

    async def fetch(self: Informer, token: str, rv_param: str) -> bytes:
        if token:  # the page asked for ahead: never answered
            in_flight.set()
            await asyncio.Event().wait()
        return await original(self, token, rv_param)

    monkeypatch.setattr(Informer, "_fetch_page", fetch)
    async with FakeAPIServer(paginate_from_cache=True) as api:
        api.put_many("pods", [pod(f"p{i}") for i in range(5)])
        pool = InformerPool(options=fast())
        runner = asyncio.create_task(pool.run())
        await pool.running.wait()
        held: list[Informer] = []
        key = InformerKey(connection=token_spec(api.url, api.token), resource="pods")
        subscriber = asyncio.create_task(hold(pool, key, held))
        await asyncio.wait_for(in_flight.wait(), 5)
        runner.cancel()
        await asyncio.wait([runner])
        assert runner.cancelled()
        assert not held[0].synced.is_set()
        assert informer_tasks() == [], "the page in flight was cancelled with its informer"
        subscriber.cancel()
        await asyncio.wait([subscriber])


async def test_an_unexpected_error_relists_and_spares_the_other_informers(
    api: FakeAPIServer,
    spec: ConnectionSpec,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in one informer (its converter raises once) is logged and counted, that informer
    lists again, and the other informers of the pool never notice."""
    api.put("pods", pod("a"))
    api.put("nodes", {"metadata": {"name": "n1"}, "status": {}})
    convert = k8s_objects.SLIM["pods"]
    calls = 0

    def flaky(raw: Any) -> SlimObject:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a shape nobody expected")
        return convert(raw)

    monkeypatch.setitem(k8s_objects.SLIM, "pods", flaky)
    registry = CollectorRegistry()
    metrics = KubernetesMetrics.for_registry(registry)
    pool = InformerPool(options=fast())
    pods = InformerKey(connection=spec, resource="pods")
    nodes = InformerKey(connection=spec, resource="nodes")
    with caplog.at_level(logging.ERROR):
        async with (
            pool.serving(),
            pool.subscribe(nodes, ignore, metrics=metrics) as node_informer,
            pool.subscribe(pods, ignore, metrics=metrics) as pod_informer,
        ):
            await asyncio.wait_for(pod_informer.synced.wait(), 5)
            await asyncio.wait_for(node_informer.synced.wait(), 5)
            assert list(pod_informer.store) == ["shop/a"]
            assert restarts(registry, "internal") == 1
            assert api.count("nodes", watch=False) == 1, "the node informer listed once"
    assert "unexpected error, relisting" in caplog.text


async def test_the_agent_shares_one_pool_across_its_kubernetes_jobs(
    api: FakeAPIServer, tmp_path: Path
) -> None:
    """Two jobs (pod and endpoints roles) on one API server: the pods informer is shared, so
    the API server sees one pods LIST; the pool runs while the agent does."""
    api.put("pods", pod("a"))
    sd = f"api_server: {api.url}\n        authorization: {{credentials: {api.token}}}"
    config = f"""
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        {sd}
  - job_name: endpoints
    kubernetes_sd_configs:
      - role: endpoints
        {sd}
"""
    async with running_agent(config, tmp_path) as agent:
        assert agent.informers.running.is_set()
        await eventually(lambda: len(agent.informers) == 3, timeout=5, interval=0.05)
        await eventually(lambda: api.count("pods", watch=True) >= 1, timeout=5, interval=0.05)
        assert api.count("pods", watch=False) == 1
    assert not agent.informers.running.is_set()
    assert len(agent.informers) == 0
