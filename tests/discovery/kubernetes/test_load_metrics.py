"""API-server load self-metrics (issue 11): open watches, list requests, relists, bytes, objects,
watch restarts by reason; they move with the informer's traffic and the agent serves them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from collector.discovery.kubernetes.informer import InformerKey, InformerOptions
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.objects import SlimObject
from collector.discovery.kubernetes.pool import InformerPool
from collector.kubernetes.connection import ConnectionSpec
from tests.discovery.kubernetes.conftest import until
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer, Fault
from tests.integration.running import eventually, running_agent

K = "collector_kubernetes_"


def pod(name: str) -> dict[str, Any]:
    """A minimal running pod in namespace ``shop``."""
    return {
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"podIP": "10.0.0.1", "phase": "Running"},
    }


def _ignore(kind: str, key: str, old: SlimObject | None, new: SlimObject | None) -> None:
    """A handler: the test reads the metrics, not the events."""


async def _no_sleep(_seconds: float) -> None:
    """Backoff on virtual time: not needed here (410 relists at once)."""


async def test_load_metrics_follow_lists_watches_and_relists(
    api: FakeAPIServer, spec: ConnectionSpec
) -> None:
    """A LIST, a 410 ERROR event, a relist, a watch event: every counter moves by what
    was sent, and the open-watch gauge is 1 while streaming and 0 after."""
    api.put_many("pods", [pod(f"p{i}") for i in range(3)])
    api.fail_next_watch("pods", Fault("error_event", code=410))
    registry = CollectorRegistry()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(K + name, {"resource": "pods", **labels}) or 0.0

    options = InformerOptions(page_size=2, sleep=_no_sleep, rng=random.Random(1))
    pool = InformerPool(options=options)
    key = InformerKey(connection=spec, resource="pods")
    metrics = KubernetesMetrics.for_registry(registry)
    async with pool.serving(), pool.subscribe(key, _ignore, metrics=metrics):
        await until(lambda: api.count("pods", watch=True) == 2 and value("watches_open") == 1)
        # resourceVersion=0 is served whole from the watch cache (limit ignored, as the real
        # server does); the consistent relist after the 410 comes in two pages.
        assert api.count("pods", watch=False) == 3
        assert value("list_requests_total") == 3
        assert value("relists_total", reason="expired") == 1
        assert value("watch_restarts_total", reason="expired") == 1
        assert value("received_objects_total") == 6  # 3 items per LIST, the ERROR is no object
        listed = value("received_bytes_total")
        assert listed > 0

        api.put("pods", pod("p3"))
        await until(lambda: value("received_objects_total") == 7)
        assert value("received_bytes_total") > listed
        assert value("list_requests_total") == 3  # a watch event costs no LIST
    assert value("watches_open") == 0


async def test_agent_serves_load_metrics(api: FakeAPIServer, tmp_path: Path) -> None:
    """The agent's /metrics carries the load series of the resources its SD configs watch."""
    config = f"""
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        api_server: {api.url}
        authorization: {{credentials: {api.token}}}
"""
    api.put("pods", pod("p0"))
    async with running_agent(config, tmp_path) as agent, aiohttp.ClientSession() as http:
        url = f"http://{agent.options.listen_address}/metrics"

        async def page() -> str:
            async with http.get(url) as resp:
                return await resp.text()

        async def watching() -> bool:
            return f'{K}watches_open{{resource="pods"}} 1.0' in await page()

        await eventually(watching, timeout=4, interval=0.05)
        text = await page()
        for line in (
            f'{K}list_requests_total{{resource="pods"}} 1.0',
            f'{K}received_objects_total{{resource="pods"}} 1.0',
        ):
            assert line in text
        assert f'{K}received_bytes_total{{resource="pods"}}' in text
        assert f"# TYPE {K}watch_restarts_total counter" in text
        assert f"# TYPE {K}relists_total counter" in text
