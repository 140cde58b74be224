"""Scrape workers end to end: the real agent with ``--scrape.workers`` into VictoriaMetrics.

Each loopback target serves ``scrapes_total N`` where N counts the scrapes it answered, so what
VictoriaMetrics stores says exactly which scrapes arrived and how often: a target scraped by two
workers, or a sample lost or sent twice, shows as a wrong set of values.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from collector.agent import Agent, new_registry
from collector.config import AgentOptions, load_config_text
from collector.model.relabel import compile_rules
from collector.model.rendezvous import shard_key
from collector.model.targetgroup import TargetGroup
from collector.scrape.target import targets_from_group
from collector.workers.plan import worker_ring
from collector.workers.supervisor import SupervisorAgent
from tests.integration.servers import (
    Server,
    free_port,
    victoria_metrics,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SERIES = 20
PER_SCRAPE = SERIES + 1 + 5  # m{i}, scrapes_total, and the five report series


@dataclass
class Counting:
    """Loopback targets whose every answer carries its own sequence number."""

    ports: list[int] = field(default_factory=list)
    served: dict[int, int] = field(default_factory=dict)

    def address(self, port: int) -> str:
        return f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def counting_targets(
    count: int, *, accept: Callable[[list[str]], bool] | None = None
) -> AsyncIterator[Counting]:
    """``count`` targets on free ports; ``accept`` (given their addresses) can ask for others."""
    targets = Counting()
    runners = []
    ports = [free_port() for _ in range(count)]
    for _ in range(100):  # each draw is accepted with odds 1 - 2**-7 where a split is asked for
        if accept is None or accept([targets.address(p) for p in ports]):
            break
        ports = [free_port() for _ in range(count)]
    else:
        raise AssertionError("no set of free ports was accepted in 100 draws")
    for port in ports:

        async def metrics(_: web.Request, port: int = port) -> web.Response:
            n = targets.served[port] = targets.served.get(port, 0) + 1
            body = "".join(f'm{{i="{i}"}} {n}\n' for i in range(SERIES)) + f"scrapes_total {n}\n"
            return web.Response(text=body, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        targets.ports.append(port)
    try:
        yield targets
    finally:
        for runner in runners:
            await runner.cleanup()


def worker_of(addresses: list[str], count: int) -> dict[str, str]:
    """The worker that scrapes each address of `write_config`'s job among ``count`` workers,
    worked out as the scrape pools do it (final labels, `shard_key`, the workers' ring)."""
    config = load_config_text(
        "global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs: [{job_name: t}]\n",
        base_dir=".",
    )
    (cfg,) = config.scrape_configs
    group = TargetGroup(source="0", targets=tuple({"__address__": a} for a in addresses))
    built = targets_from_group([group], cfg=cfg, relabeler=compile_rules(cfg.relabel_configs))
    ring = worker_ring(count, 0)
    return {
        dict(t.labels)["__address__"]: ring.owners(shard_key(t.scrape_pool, t.labels))[0]
        for t in built.active.values()
    }


def split_over(count: int) -> Callable[[list[str]], bool]:
    """A `counting_targets` check: every one of ``count`` workers scrapes some address."""
    return lambda addresses: len(set(worker_of(addresses, count).values())) == count


def write_config(path: Path, addresses: list[str], remote: str) -> None:
    listed = ", ".join(f"'{a}'" for a in addresses)
    path.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 500ms}\n"
        f"scrape_configs: [{{job_name: t, static_configs: [{{targets: [{listed}]}}]}}]\n"
        f"remote_write: [{{url: '{remote}/api/v1/write', queue_config: "
        "{batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 500ms}}]\n"
    )


@contextlib.contextmanager
def agent(
    tmp_path: Path, config: Path, *, workers: int, log_name: str = "agent.log"
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "collector",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.path={tmp_path / 'data'}",
        f"--scrape.workers={workers}",
        "--storage.remote.flush-deadline=10s",
        "--no-storage.remote.wal-fsync",
    ]
    log = tmp_path / log_name
    LOGS[:] = [p for p in LOGS if p.parent == tmp_path] + [log]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def active_targets(base: str) -> list[dict[str, object]]:
    data = orjson.loads(get(f"{base}/api/v1/targets"))
    targets: list[dict[str, object]] = data["data"]["activeTargets"]
    return targets


def metric_values(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = get(f"{base}/metrics").decode()
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types)), "a family appears twice on /metrics"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delivered(vm: Server) -> dict[str, list[tuple[int, float]]]:
    """``scrapes_total`` per instance as VictoriaMetrics stores it: (timestamp ms, value)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in vm.export('{__name__="scrapes_total"}'):
        metric = row["metric"]
        assert isinstance(metric, dict)
        points = zip(row["timestamps"], row["values"], strict=True)  # type: ignore[call-overload]
        out.setdefault(str(metric["instance"]), []).extend(
            (int(t), float(v)) for t, v in points if not math.isnan(float(v))
        )
    return out


LOGS: list[Path] = []
"""The agent logs of the running test, shown when a condition times out."""


async def until(predicate: object, *, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    try:
        await asyncio.to_thread(wait_until, predicate, timeout=timeout, interval=0.3)
    except TimeoutError as exc:
        tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-3000:]}" for p in LOGS if p.exists())
        raise TimeoutError(f"{exc}\n{tails}") from None


def exactly_once(values: list[float], served: int) -> bool:
    """Every scrape from 1 to the last served (or the one in flight at the stop) once."""
    got = sorted(int(v) for v in values)
    return got == list(range(1, len(got) + 1)) and len(got) >= served - 1


async def test_two_workers_scrape_every_target_once_and_stop_in_order(tmp_path: Path) -> None:
    with victoria_metrics(tmp_path) as vm:
        async with counting_targets(7) as targets:
            addresses = [targets.address(p) for p in targets.ports]
            config = tmp_path / "collector.yml"
            write_config(config, addresses[:6], vm.url)
            with agent(tmp_path, config, workers=2) as (process, base, log):
                await until(
                    lambda: sum(t["health"] == "up" for t in active_targets(base)) == 6,
                    timeout=60,
                )
                assert len(children(process.pid)) == 1  # the main process is worker 0
                listed = sorted(str(t["scrapeUrl"]) for t in active_targets(base))
                assert listed == sorted(f"http://{a}/metrics" for a in addresses[:6])
                await until(lambda: min(targets.served.values()) >= 5)

                # Every sample arrives once: each target's scrapes, no gap, no duplicate.
                def all_delivered() -> bool:
                    got = delivered(vm)
                    return all(
                        exactly_once([v for _, v in got.get(a, [])], targets.served[p])
                        for a, p in zip(addresses[:6], targets.ports, strict=False)
                    )

                await until(all_delivered, timeout=30)

                # One /metrics: the appended samples of both workers add up.
                await asyncio.sleep(1.5)  # a fresh snapshot from each worker
                served_before = sum(targets.served.values())
                values = metric_values(base)
                served_after = sum(targets.served.values())
                appended = values["prometheus_agent_samples_appended_total", (("type", "float"),)]
                assert values["collector_scrape_workers", ()] == 2
                # Snapshots are at most 1 s old: at most two scrapes per target behind.
                assert (served_before - 2 * 6) * PER_SCRAPE <= appended
                assert appended <= served_after * PER_SCRAPE

                # A reload reaches every worker: a seventh target is scraped.
                write_config(config, addresses, vm.url)
                process.send_signal(signal.SIGHUP)
                await until(
                    lambda: sum(t["health"] == "up" for t in active_targets(base)) == 7,
                    timeout=60,
                )

                # A killed worker is logged and started again; its targets come back.
                victim = children(process.pid)[0]
                os.kill(victim, signal.SIGKILL)
                killed_at = time.time()
                await until(lambda: "exited with signal SIGKILL" in log.read_text())
                await until(
                    lambda: len(children(process.pid)) == 1 and victim not in children(process.pid)
                )
                await until(
                    lambda: (
                        sum(
                            metric_values(base).get(
                                ("collector_scrape_worker_restarts_total", (("worker", w),)), 0
                            )
                            for w in ("worker-1",)
                        )
                        == 1
                    )
                )
                restarted_at = time.time()
                await until(
                    lambda: sum(t["health"] == "up" for t in active_targets(base)) == 7,
                    timeout=60,
                )
                await until(lambda: min(targets.served.values()) >= 12)

                # SIGTERM: discovery, then every worker flushes; exit 0 within the deadline.
                process.send_signal(signal.SIGTERM)
                stopped = time.monotonic()
                assert await asyncio.to_thread(process.wait, 20) == 0
                assert time.monotonic() - stopped < 12
                assert children(process.pid) == []
            final = dict(targets.served)

        def complete() -> bool:
            got = delivered(vm)
            for address, port in zip(addresses, targets.ports, strict=True):
                points = got.get(address, [])
                # A kill -9 may resend what was sent but not yet acknowledged on disk, and
                # may lose what was not yet in the queue; after the restart, exactly once.
                after = [v for t, v in points if t / 1000 > restarted_at + 2]
                if not after or max(after) < final[port] - 1:
                    return False
                ordered = sorted(int(v) for v in after)
                if ordered != list(range(ordered[0], ordered[0] + len(ordered))):
                    return False
            return True

        await until(complete, timeout=30)
        assert killed_at < restarted_at


async def test_queues_left_by_more_workers_are_delivered_by_fewer(tmp_path: Path) -> None:
    """Three workers queue while the receiver is down; two workers deliver all three queues."""
    vm_port = free_port()
    remote = f"http://127.0.0.1:{vm_port}"
    async with counting_targets(6) as targets:
        addresses = [targets.address(p) for p in targets.ports]
        config = tmp_path / "collector.yml"
        write_config(config, addresses, remote)
        with agent(tmp_path, config, workers=3, log_name="three.log") as (process, _, _):
            await until(
                lambda: min(targets.served.values(), default=0) >= 4 and len(targets.served) == 6
            )
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0
        queued = dict(targets.served)
        data = tmp_path / "data" / "workers"
        # The main process (worker 0) queues under --storage.path itself.
        assert sorted(p.name for p in data.iterdir()) == ["1", "2"]

        with (
            _vm_on(tmp_path, vm_port) as vm,
            agent(tmp_path, config, workers=2, log_name="two.log") as (process, _, log),
        ):

            def first_run_delivered() -> bool:
                got = delivered(vm)
                for address, port in zip(addresses, targets.ports, strict=True):
                    values = {int(v) for _, v in got.get(address, [])}
                    if not set(range(1, queued[port])) <= values:
                        return False
                return True

            await until(first_run_delivered, timeout=60)
            await until(lambda: not (data / "2").exists(), timeout=30)
            assert "left by another worker count" in log.read_text()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0


@contextlib.contextmanager
def _vm_on(tmp_path: Path, port: int) -> Iterator[Server]:
    """VictoriaMetrics on a port chosen before it starts (the agent already writes to it)."""
    workdir = tmp_path / "vm"
    workdir.mkdir()
    with victoria_metrics(workdir, port) as server:
        yield server


async def test_auto_adds_a_worker_that_takes_its_share_without_a_gap(tmp_path: Path) -> None:
    """``auto`` starts as one process; adding a worker moves its share with every scrape
    stored once (the pool's hand-off overlap: never unscraped, each scrape numbered)."""
    with victoria_metrics(tmp_path) as vm:
        # Ports where the second worker's share is neither empty nor everything (random ports
        # alone leave it one of those with odds 2**-7).
        async with counting_targets(8, accept=split_over(2)) as targets:
            addresses = [targets.address(p) for p in targets.ports]
            config = tmp_path / "collector.yml"
            write_config(config, addresses, vm.url)
            owners = worker_of(addresses, 2)
            expected = {f"http://{a}/metrics" for a, w in owners.items() if w == "worker-1"}
            options = AgentOptions(
                config_file=str(config),
                listen_address=f"127.0.0.1:{free_port()}",
                storage_path=str(tmp_path / "data"),
                scrape_workers="auto",
                wal_fsync=False,
            )
            agent = SupervisorAgent(
                options, registry=new_registry(), reload_interval=0.2, discovery_updatert=0.2
            )
            assert agent.count == 1
            assert agent.growth is not None  # this machine has 2 usable CPUs
            ready = asyncio.Event()
            task = asyncio.create_task(agent.run(ready=ready))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                await until(lambda: len(targets.served) == 8 and min(targets.served.values()) >= 3)
                assert agent.handles == []
                await agent._grow()
                (handle,) = agent.handles
                assert agent.count == 2
                assert handle.snapshot is not None
                share = {str(t["scrapeUrl"]) for t in handle.snapshot.active_targets}
                assert share == expected
                assert 0 < len(share) < 8
                # After the overlap the main process keeps only the rest.
                await until(
                    lambda: (
                        {str(t["scrapeUrl"]) for t in Agent.active_targets(agent)}
                        == {f"http://{a}/metrics" for a in addresses} - share
                    ),
                    timeout=20,
                )
                assert len(agent.active_targets()) == 8
                served = dict(targets.served)
                await until(lambda: all(targets.served[p] >= served[p] + 5 for p in served))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            final = dict(targets.served)

        def all_once() -> bool:
            got = delivered(vm)
            return all(
                exactly_once([v for _, v in got.get(a, [])], final[p])
                for a, p in zip(addresses, targets.ports, strict=True)
            )

        await until(all_once, timeout=30)
