"""Kubernetes SD at scale: 500 nodes and 10,000 pods in the fake API server.

Measures, with the fake in a separate process (so RSS is the informer's own):

- time from discoverer start to the first full target set (goal < 2 s for 10,000 pods);
- informer memory per pod: RSS growth of this process, and the retained size of the slim store
  measured with tracemalloc (goal < 2 KB per pod);
- events per second under churn: label updates on pods until each rebuilt group was sent.

Pods are the sample ``pod-web-running.json`` (~4 KB of compact JSON each, two containers,
three ports)
with a unique name, uid, IP and node. Run: ``python -m benchmarks.k8s_sd [--pods N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from collector.config import Authorization, HTTPClientConfig, KubernetesSDConfig
from collector.discovery.kubernetes import InformerPool, make_discoverer
from collector.kubernetes.connection import ConnectionSpec
from collector.model.targetgroup import TargetGroup

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "k8s"


def make_pod(template: dict[str, Any], i: int, nodes: int) -> dict[str, Any]:
    """The i-th synthetic pod."""
    pod = copy.deepcopy(template)
    meta = pod["metadata"]
    meta["name"] = f"web-{i:05d}"
    meta["namespace"] = f"ns-{i % 50}"
    meta["uid"] = f"00000000-0000-0000-0000-{i:012d}"
    meta["labels"]["pod-template-hash"] = f"h{i % 100}"
    pod["spec"]["nodeName"] = f"node-{i % nodes:03d}"
    ip = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
    pod["status"]["podIP"] = ip
    pod["status"]["podIPs"] = [{"ip": ip}]
    for cs in pod["status"]["containerStatuses"]:
        cs["containerID"] = f"containerd://{i:064x}"
    return pod


def server_main(pipe: Pipe, pods: int, nodes: int) -> None:
    """Child process: run the fake API server and apply churn on request."""
    from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer

    async def main() -> None:
        template = json.loads((FIXTURES / "pod-web-running.json").read_text())
        node = json.loads((FIXTURES / "node.json").read_text())
        async with FakeAPIServer(paginate_from_cache=True, watch_window=200_000) as api:
            for n in range(nodes):
                nd = copy.deepcopy(node)
                nd["metadata"]["name"] = f"node-{n:03d}"
                api.put("nodes", nd)
            for i in range(pods):
                api.put("pods", make_pod(template, i, nodes))
            pipe.send((api.url, api.token))
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, pipe.recv)
                if cmd is None:
                    return
                for i in range(cmd):
                    pod = make_pod(template, i, nodes)
                    pod["metadata"]["labels"]["churn"] = str(time.monotonic_ns())
                    api.put("pods", pod)
                pipe.send("done")

    asyncio.run(main())


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """``sys.getsizeof`` over the object graph, each object (e.g. an interned string) once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, tuple | list):
        size += sum(deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__slots__"):
        size += sum(deep_size(getattr(obj, a), seen) for a in obj.__slots__)
    return size


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def run(pods: int, nodes: int, churn: int) -> None:
    """Start the fake, run one pod discoverer, print the numbers."""
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=server_main, args=(child, pods, nodes))
    proc.start()
    url, token = parent.recv()
    spec = ConnectionSpec(
        api_server=url, http_client=HTTPClientConfig(authorization=Authorization(credentials=token))
    )
    gc.collect()
    rss0 = rss_bytes()
    cpu0 = time.process_time()
    sends: list[tuple[float, int]] = []
    got: dict[str, TargetGroup] = {}
    done = asyncio.Event()
    want = pods

    def send(groups: Sequence[TargetGroup]) -> None:
        for g in groups:
            got[g.source] = g
        sends.append((time.perf_counter(), len(groups)))
        if sum(n for _t, n in sends) >= want:
            done.set()

    pool = InformerPool()
    d = make_discoverer(
        KubernetesSDConfig(role="pod"), registry=CollectorRegistry(), pool=pool, connection=spec
    )
    t0 = time.perf_counter()
    task = asyncio.create_task(d.run(send))
    await done.wait()
    first = sends[0][0] - t0
    cpu = time.process_time() - cpu0
    targets = sum(len(g.targets) for g in got.values())
    got.clear()
    sends.clear()
    gc.collect()
    rss1 = rss_bytes()
    store = next(iter(pool._informers.values())).informer.store
    retained = deep_size(store)

    done.clear()
    want = churn
    t1 = time.perf_counter()
    parent.send(churn)
    await done.wait()
    churn_s = time.perf_counter() - t1
    parent.send(None)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    proc.join(10)

    print(f"k8s SD benchmark: {pods} pods on {nodes} nodes (~4 KB JSON per pod)")
    print(f"  first full target set:     {first:.3f} s  ({targets} targets; goal < 2 s)")
    print(f"  client CPU until then:     {cpu:.3f} s (the rest is the fake encoding pages)")
    print(
        f"  informer store:            {retained / pods:.0f} B/pod  "
        f"({retained / 2**20:.1f} MiB deep size; goal < 2048 B/pod)"
    )
    print(
        f"  RSS growth:                {(rss1 - rss0) / pods:.0f} B/pod (allocator retention incl.)"
    )
    print(f"  churn:                     {churn / churn_s:.0f} events/s ({churn} pod updates)")


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--churn", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(run(args.pods, args.nodes, args.churn))


if __name__ == "__main__":
    main()
