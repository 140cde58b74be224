"""Benchmark: relabel steps for a scrape pool of 10,000 dropped targets.

A cluster-wide ``kubernetes-pods`` job typically drops most of what it discovers: only pods
annotated ``prometheus.io/scrape: "true"`` are kept. The UI lists those dropped targets and asks
``/api/v1/targets/relabel_steps`` which rule dropped each one, so the agent keeps every dropped
target's discovered labels. This measures, for 10,000 dropped pod targets (~40 labels each, the
chain of `benchmarks.relabel`, one group per pod as Kubernetes SD sends them):

- what keeping the dropped targets costs: tracemalloc growth of a real `ScrapePool.sync` over
  groups that already exist (discovery holds them anyway), per dropped target; goal < 300 bytes.
  For comparison, the same targets kept as label tuples (what the pool did before);
- one ``GET /api/v1/targets/relabel_steps`` through the agent's HTTP app (aiohttp on loopback,
  the real `Agent` with that pool): median and worst over many requests; goal < 100 ms;
- the same request with 100,000 dropped targets in the pool (it does not depend on the pool);
- ``GET /api/v1/targets?state=dropped&scrapePool=...`` (10,000 discovered label sets rebuilt
  and encoded) and the steps of *every* dropped target in-process (the UI's full page).

Run: ``python -m benchmarks.relabel_steps [--targets 10000] [--requests 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from benchmarks.relabel import RULES_YAML, pod_target
from collector.agent import Agent, new_registry
from collector.config import AgentOptions, ScrapeConfig, load_config
from collector.model.labels import from_dict
from collector.model.targetgroup import TargetGroup
from collector.scrape.metrics import ScrapeMetrics
from collector.scrape.pool import ScrapePool
from collector.scrape.target import discovered_labels
from collector.storage.appender import Fanout
from collector.storage.series import SeriesRegistry

JOB = "kubernetes-pods"
_CONTAINER_KEYS = ("__address__", "__meta_kubernetes_pod_container_")
"""Labels Kubernetes SD puts on each target (per container port); the rest are the pod's."""


def config_text() -> str:
    """A config with the pods job and the chain of `benchmarks.relabel`."""
    rules = "\n".join("    " + line for line in RULES_YAML.strip().splitlines())
    return (
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    scrape_interval: 30s\n"
        "    static_configs: [{targets: ['127.0.0.1:1']}]\n"
        f"    relabel_configs:\n{rules}\n"
    )


def pod_groups(count: int) -> list[TargetGroup]:
    """One group per pod, the scrape annotation off: every target is dropped by rule 1."""
    groups = []
    for i in range(count):
        labels = pod_target(i)
        labels["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] = "false"
        for name in ("job", "__scheme__", "__metrics_path__", "__scrape_interval__"):
            del labels[name]  # the pool adds these defaults, as for real discovery output
        del labels["__scrape_timeout__"]
        target = {k: v for k, v in labels.items() if k.startswith(_CONTAINER_KEYS)}
        pod = {k: v for k, v in labels.items() if k not in target}
        groups.append(TargetGroup(source=f"pod/team-a/{i}", targets=(target,), labels=pod))
    return groups


def new_pool(cfg: ScrapeConfig) -> ScrapePool:
    """A pool as the scrape manager builds it; `sync` works without running it."""
    return ScrapePool(
        cfg,
        registry=SeriesRegistry(),
        appendable=Fanout(),
        metrics=ScrapeMetrics(CollectorRegistry()),
    )


def measure_memory(cfg: ScrapeConfig, groups: list[TargetGroup]) -> tuple[float, float]:
    """Bytes per dropped target kept by the pool, and by label tuples (the former way)."""
    pool = new_pool(cfg)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        pool.sync(groups)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        assert pool.dropped_count == len(groups)
        assert not pool.targets
        kept = (after - before) / pool.dropped_count
        before, _ = tracemalloc.get_traced_memory()
        tuples = [from_dict(discovered_labels(g.targets[0], g.labels, cfg=cfg)) for g in groups]
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        as_tuples = (after - before) / len(tuples)
    finally:
        tracemalloc.stop()
    return kept, as_tuples


async def measure_requests(
    agent: Agent, groups: list[TargetGroup], *, requests: int
) -> dict[str, Any]:
    """Latencies of the API on the real agent app with a pool of ``groups`` (all dropped)."""
    cfg = agent.config.scrape_configs[0]
    pool = new_pool(cfg)
    pool.sync(groups)
    agent.scrape.pools[JOB] = pool
    out: dict[str, Any] = {}
    async with TestClient(TestServer(agent.make_web_app())) as client:
        started = time.perf_counter()
        response = await client.get(
            "/api/v1/targets", params={"state": "dropped", "scrapePool": JOB}
        )
        listing = await response.json()
        out["list_s"] = time.perf_counter() - started
        dropped = listing["data"]["droppedTargets"]
        assert len(dropped) == len(groups), len(dropped)
        step = max(1, len(dropped) // requests)
        latencies = []
        for entry in dropped[::step][:requests]:
            labels = json.dumps(entry["discoveredLabels"])
            started = time.perf_counter()
            response = await client.get(
                "/api/v1/targets/relabel_steps", params={"scrapePool": JOB, "labels": labels}
            )
            body = await response.json()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200, body
            assert body["data"]["result"]["state"] == "dropped"
            assert body["data"]["steps"][0]["keep"] is False
        latencies.sort()
        out["median_s"] = statistics.median(latencies)
        out["worst_s"] = latencies[-1]
        out["requests"] = len(latencies)
    started = time.perf_counter()
    encoded = orjson.dumps(agent.dropped_targets())
    out["list_server_s"] = time.perf_counter() - started
    out["list_mb"] = len(encoded) / 1e6
    started = time.perf_counter()
    for entry in dropped:
        agent.target_relabel_steps(JOB, entry["discoveredLabels"])
    out["all_steps_s"] = time.perf_counter() - started
    del agent.scrape.pools[JOB]
    return out


def main() -> None:
    """Print the numbers and check the goals (< 300 bytes per target, < 100 ms per answer)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "collector.yml"
        config_file.write_text(config_text())
        cfg = load_config(str(config_file)).scrape_configs[0]
        groups = pod_groups(args.targets)
        labels_per_target = len(discovered_labels(groups[0].targets[0], groups[0].labels, cfg=cfg))
        kept, as_tuples = measure_memory(cfg, groups)

        options = AgentOptions(config_file=str(config_file), storage_path=str(Path(tmp) / "q"))
        agent = Agent(options, registry=new_registry())
        small = asyncio.run(measure_requests(agent, groups, requests=args.requests))
        big_groups = pod_groups(args.targets * 10)
        big = asyncio.run(measure_requests(agent, big_groups, requests=args.requests // 4))

    n = args.targets
    print(
        f"pool: {n:,} dropped targets, {labels_per_target} discovered labels each, "
        f"{len(cfg.relabel_configs)} rules"
    )
    print(
        f"memory kept per dropped target: {kept:,.0f} bytes "
        f"(as label tuples it would be {as_tuples:,.0f} bytes)"
    )
    print(
        f"GET /api/v1/targets/relabel_steps: median {small['median_s'] * 1e3:.2f} ms, "
        f"worst {small['worst_s'] * 1e3:.2f} ms over {small['requests']} requests"
    )
    print(
        f"  with {n * 10:,} dropped targets: median {big['median_s'] * 1e3:.2f} ms, "
        f"worst {big['worst_s'] * 1e3:.2f} ms over {big['requests']} requests"
    )
    print(
        f"GET /api/v1/targets?state=dropped ({n:,} entries, {small['list_mb']:.0f} MB): "
        f"{small['list_s'] * 1e3:.0f} ms with the client's decoding, "
        f"{small['list_server_s'] * 1e3:.0f} ms to rebuild and encode"
    )
    print(
        f"steps of every dropped target in-process: {small['all_steps_s'] * 1e3:.0f} ms "
        f"({small['all_steps_s'] / n * 1e6:.1f} µs each)"
    )
    assert kept < 300, f"keeping a dropped target costs {kept:.0f} bytes (goal < 300)"
    assert small["worst_s"] < 0.1, f"relabel steps took {small['worst_s'] * 1e3:.1f} ms"


if __name__ == "__main__":
    main()
