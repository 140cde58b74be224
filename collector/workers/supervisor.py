"""The agent's main process with scrape workers: worker 0 of N, plus discovery, web and signals.

Place in the pipeline: `run` (chosen by the CLI) runs `collector.lifecycle.run_agent` with the
in-process `Agent` when ``--scrape.workers`` allows one process only (``1``, or ``auto`` with
one usable CPU, sharding or the receiver) and no worker queue waits on disk. Otherwise it runs
a `SupervisorAgent`: the same agent, pipeline included (it is worker 0: its scrape manager keeps
its `worker_ring` share and writes to its own queues under ``--storage.path``), which also feeds
worker processes 1..N-1 (`WorkerHandle`)::

    discovery ─▶ LatestTargets ─▶ this process's ScrapeManager (share 0) ─▶ RemoteWriter × D
              └▶ every WorkerHandle ─pipe─▶ worker i: ScrapeManager (share i) ─▶ RemoteWriter × D
    reload    ─▶ this process's _apply, then ("config", Config) to every worker
    web       ◀─ this process's own answers merged with the workers' snapshots

With ``auto`` it starts as one process and adds one when those running are saturated
(`collector.workers.growth`): the new worker starts with the new count and takes its share;
once it lists its targets, the others switch to the new ring, handing those targets off with
the scrape pool's overlap (one interval: a moved target is scraped by both for at most that
long, never by neither).

Stop (SIGTERM, ``POST /-/quit``): discovery stops first, then this process's scrape loops and
every worker (SIGTERM, each flushes within ``--storage.remote.flush-deadline`` from then), then
this process's writers flush within the deadline counted from the signal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from collector.agent import Agent
from collector.config import AgentOptions, Config, RemoteWriteConfig
from collector.lifecycle import run_agent
from collector.model.targetgroup import TargetSets
from collector.remote.writer import RemoteWriter
from collector.web.app import make_app
from collector.workers.growth import SAMPLE_INTERVAL, CpuMeter, Growth
from collector.workers.handle import WorkerHandle
from collector.workers.metrics import MergedMetrics, merged_registry
from collector.workers.plan import worker_range, worker_ring
from collector.workers.protocol import Init, Snapshot
from collector.workers.queues import drain, has_worker_queues, orphan_roots, worker_root
from collector.workers.views import (
    merge_cardinality,
    merge_pools,
    merge_remote_write,
    merge_targets,
)
from collector.workers.worker import LatestTargets

__all__ = ["SupervisorAgent", "in_process", "run"]

log = logging.getLogger(__name__)

_CARDINALITY_TIMEOUT = 60.0
_TARGETS_TIMEOUT = 30.0
"""How long a new worker may take to list its targets before the others switch anyway."""


def _clustered(options: AgentOptions) -> bool:
    return bool(options.cluster_peers_from or options.cluster_peers or options.cluster_peers_file)


def in_process(options: AgentOptions) -> bool:
    """Whether ``options`` run the plain in-process agent (today's code path, no supervisor)."""
    _, most = worker_range(options, clustered=_clustered(options))
    return most == 1 and not has_worker_queues(options.storage_path)


async def run(options: AgentOptions) -> int:
    """Run the agent until stopped, in this process alone or with scrape workers."""
    start, most = worker_range(options, clustered=_clustered(options))
    if in_process(options):
        log.info("scrape workers: 1, this process (--scrape.workers=%s)", options.scrape_workers)
        return await run_agent(options)
    log.info(
        "scrape workers: %d process(es) at start, at most %d (--scrape.workers=%s)",
        start,
        most,
        options.scrape_workers,
    )
    return await run_agent(options, agent_class=SupervisorAgent)


class SupervisorAgent(Agent):
    """The agent as worker 0 of N (see the module docstring)."""

    def __init__(self, options: AgentOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.count, most = worker_range(options, clustered=False)
        self.growth = Growth(most=most) if most > self.count else None
        """``auto``: when to add a worker (None: the count is fixed)."""
        self.workers_gauge = Gauge(
            "collector_scrape_workers",
            "Processes scraping (this one included; --scrape.workers).",
            registry=self.registry,
        )
        self.workers_gauge.set(self.count)
        self.worker_up = Gauge(
            "collector_scrape_worker_up",
            "1 while the scrape worker process runs and reports, 0 while it is started again.",
            ["worker"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "collector_scrape_worker_restarts",
            "Times a scrape worker process exited on its own and was started again.",
            ["worker"],
            registry=self.registry,
        )
        self.merged = MergedMetrics(self.registry, self._worker_families)
        self.web_registry = merged_registry(self.merged)
        self.handles: list[WorkerHandle] = []
        self._local = LatestTargets()
        self._latest: TargetSets | None = None
        self._drains: dict[Path, asyncio.Task[None]] = {}
        self._scrape_tg: asyncio.TaskGroup | None = None
        self._request_ids = itertools.count(1)
        if self.count > 1:
            self.scrape.set_ring(worker_ring(self.count, 0))

    def init_for(self, handle: WorkerHandle) -> Init:
        """The first message of a (re)started worker: the newest config, targets and count."""
        root = worker_root(self.options.storage_path, handle.index)
        os.makedirs(root, exist_ok=True)
        return Init(
            index=handle.index,
            count=self.count,
            options=_with_storage(self.options, root),
            config=self.config,
            targets=self._latest,
        )

    def _worker_families(self) -> list[Any]:
        return [h.snapshot.families for h in self.handles if h.snapshot is not None]

    def _snapshots(self) -> list[Snapshot]:
        return [h.snapshot for h in self.handles if h.snapshot is not None]

    # ------------------------------------------------------------------ config, targets

    def _apply(self, config: Config) -> None:
        """The agent's `_apply` here, then the same config to every worker."""
        super()._apply(config)
        for handle in self.handles:
            handle.send(("config", config))

    async def _broadcast_targets(self) -> NoReturn:
        while True:
            sets = await self.discovery.sync_channel.get()
            self._latest = sets
            self._local.put(sets)
            for handle in self.handles:
                handle.send(("targets", sets))

    def _drain_writer(
        self, config: RemoteWriteConfig, root: Path, registry: CollectorRegistry
    ) -> RemoteWriter:
        return RemoteWriter(
            config,
            series=self.series,
            registry=registry,
            storage_path=root,
            external_labels=self.config.global_config.external_labels,
            flush_deadline=self.flush_deadline,
            flush_until=self._flush_until,
            sync_interval=self.options.wal_sync_interval,
            fsync=self.options.wal_fsync,
            max_disk_bytes=self.options.max_disk_bytes,
        )

    # ------------------------------------------------------------------ workers

    def _start_handle(self, index: int) -> WorkerHandle:
        assert self._scrape_tg is not None
        handle = WorkerHandle(self, index)
        self.handles.append(handle)
        self._scrape_tg.create_task(handle.run(), name=f"scrape {handle.name}")
        return handle

    async def _grow_when_saturated(self, growth: Growth) -> NoReturn:
        loop = asyncio.get_running_loop()
        meter = CpuMeter()
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            now = loop.time()
            pids = [os.getpid(), *(h.pid for h in self.handles if h.pid is not None)]
            cores = meter.sample(now, pids)
            if cores is not None and growth.observe(now, cores, self.count):
                log.info(
                    "scrape workers: %d process(es) used %.2f cores; adding one (at most %d)",
                    self.count,
                    cores,
                    growth.most,
                )
                await self._grow()
                growth.grew(loop.time())

    async def _grow(self) -> None:
        """Add worker ``count``: it takes its share first, then the others let go of it."""
        index = self.count
        draining = self._drains.pop(worker_root(self.options.storage_path, index), None)
        if draining is not None and not draining.done():
            draining.cancel()  # flushes like any writer; the new worker takes the queue over
            await asyncio.gather(draining, return_exceptions=True)
        self.count += 1
        self.workers_gauge.set(self.count)
        handle = self._start_handle(index)
        try:
            async with asyncio.timeout(_TARGETS_TIMEOUT):
                await handle.has_targets.wait()
        except TimeoutError:
            log.warning("scrape %s lists no target yet; the others switch anyway", handle.name)
        self.scrape.set_ring(worker_ring(self.count, 0))
        for other in self.handles:
            if other is not handle:
                other.send(("ring", self.count))

    # ------------------------------------------------------------------ AgentView (web)

    def is_ready(self) -> bool:
        """The agent's readiness, once every worker process has reported."""
        return super().is_ready() and all(h.snapshot is not None for h in self.handles)

    def active_targets(self) -> list[dict[str, Any]]:
        """This process's active targets and every worker's."""
        own = super().active_targets()
        return merge_targets([own, *(s.active_targets for s in self._snapshots())])

    def scrape_pools(self) -> list[dict[str, Any]]:
        """Per pool, active targets and series summed over the processes."""
        own = super().scrape_pools()
        return merge_pools([own, *(s.pools for s in self._snapshots())])

    def _remote_write_now(self) -> list[dict[str, Any]]:
        own = super()._remote_write_now()
        return merge_remote_write([own, *(s.remote_write for s in self._snapshots())])

    def writers_pending(self) -> int:
        """Samples every process's queues hold unacknowledged."""
        return super().writers_pending() + sum(s.pending for s in self._snapshots())

    async def cardinality(self, *, scrape_pool: str, scrape_url: str, top: int) -> dict[str, Any]:
        """This process's report and every worker's, merged (`merge_cardinality`)."""
        request = next(self._request_ids)
        message = ("cardinality", request, scrape_pool, scrape_url, top)
        async with asyncio.timeout(_CARDINALITY_TIMEOUT):
            own = await super().cardinality(scrape_pool=scrape_pool, scrape_url=scrape_url, top=top)
            reports = await asyncio.gather(*(h.request(request, message) for h in self.handles))
        return merge_cardinality([own, *reports])

    def make_web_app(self) -> web.Application:
        """The agent's application, ``/metrics`` merged over every process."""
        return make_app(
            self,
            registry=self.web_registry,
            remote_write_handler=None,
            enable_lifecycle=self.options.enable_lifecycle,
            ui=self,
            middlewares=(self.web_security.middleware,),
            cluster=self,
        )

    # ------------------------------------------------------------------ running

    def _start_remote(self, remote_tg: asyncio.TaskGroup) -> None:
        """`Agent`'s writers, plus a drain of every queue left by a larger worker count."""
        super()._start_remote(remote_tg)
        for root in orphan_roots(self.options.storage_path, self.count):
            self._drains[root] = remote_tg.create_task(
                drain(root, self.config.remote_write, make_writer=self._drain_writer),
                name=f"drain {root}",
            )

    def _start_scraping(self, scrape_tg: asyncio.TaskGroup) -> None:
        """This process's share of the targets, and the workers beside it."""
        self._scrape_tg = scrape_tg
        scrape_tg.create_task(self.scrape.run(self._local), name="scrape manager")
        scrape_tg.create_task(self._broadcast_targets(), name="target sets")
        for index in range(1, self.count):
            self._start_handle(index)
        if self.growth is not None:
            scrape_tg.create_task(
                self._grow_when_saturated(self.growth), name="scrape workers growth"
            )

    async def run(self, *, ready: asyncio.Event | None = None) -> NoReturn:
        """`Agent.run`, with the workers beside this process's scrape manager."""
        try:
            await super().run(ready=ready)
        finally:
            self._scrape_tg = None


def _with_storage(options: AgentOptions, root: Path) -> AgentOptions:
    return dataclasses.replace(options, storage_path=str(root))
