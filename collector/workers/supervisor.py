"""The main process with scrape workers: discovery, web, reloads and signals; N workers scrape.

Place in the pipeline: `run` (chosen by the CLI) runs `collector.agent.run_agent` with the
in-process `Agent` when ``--scrape.workers`` resolves to 1, else with a `SupervisorAgent`: the
same agent (config, reload, web security, discovery, informers, signals, ordered stop) whose
scrape manager and remote writers stay idle; `WorkerHandle` starts each worker process
(`collector.workers.worker`), keeps it fed and restarts it when it dies::

    SupervisorAgent: discovery ─▶ latest full target sets ─▶ every WorkerHandle ─▶ pipe
                     reload    ─▶ validated Config        ─▶ every WorkerHandle ─▶ pipe
                     web       ◀─ merged snapshots (`collector.workers.views`, `.metrics`)

Stop (SIGTERM, ``POST /-/quit``): discovery stops first, then every worker gets SIGTERM at once
and stops as the agent does (scrape loops, then a flush within the deadline, the rest kept in
its queue); a worker still running ``--storage.remote.flush-deadline`` + 5 s later is killed.
A worker that exits on its own is logged with its exit status, its counters are kept in the
sums, and it is started again after 1 s (doubling to 30 s while it keeps dying within a
minute) with the newest config and target sets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from prometheus_client import Counter, Gauge

from collector.agent import Agent, run_agent
from collector.config import AgentOptions, Config
from collector.errors import CollectorError
from collector.model.targetgroup import TargetSets
from collector.web.app import make_app
from collector.workers.metrics import MergedMetrics, merged_registry
from collector.workers.plan import resolve_workers, worker_name
from collector.workers.protocol import Init, ProtocolError, Snapshot, read_message, write_message
from collector.workers.queues import has_worker_queues, orphan_roots, worker_root
from collector.workers.views import (
    merge_cardinality,
    merge_pools,
    merge_remote_write,
    merge_targets,
)

__all__ = ["SupervisorAgent", "WorkerHandle", "run", "worker_count"]

log = logging.getLogger(__name__)

_STOP_GRACE = 5.0
"""Seconds past the flush deadline a stopping worker gets before it is killed."""
_MAX_BACKOFF = 30.0
_CARDINALITY_TIMEOUT = 60.0


def worker_count(options: AgentOptions) -> int:
    """Scrape processes for ``options``: 0 = the in-process agent, N >= 1 = N workers.

    ``--scrape.workers=1`` is the in-process agent, except while queues of an earlier run with
    workers are still on disk: then one worker delivers them (`collector.workers.queues`).
    """
    count = resolve_workers(options, clustered=bool(_clustered(options)))
    if count == 1 and not has_worker_queues(options.storage_path):
        return 0
    return count


def _clustered(options: AgentOptions) -> bool:
    return bool(options.cluster_peers_from or options.cluster_peers or options.cluster_peers_file)


async def run(options: AgentOptions) -> int:
    """Run the agent until stopped, in this process or with scrape workers."""
    count = worker_count(options)
    if count == 0:
        log.info(
            "scrape workers: none, scraping in this process (--scrape.workers=%s)",
            options.scrape_workers,
        )
        return await run_agent(options)
    log.info("scrape workers: %d processes (--scrape.workers=%s)", count, options.scrape_workers)
    return await run_agent(options, agent_class=SupervisorAgent)


class WorkerHandle:
    """One worker slot: its process (started again when it dies), pipe and latest snapshot."""

    def __init__(self, owner: SupervisorAgent, index: int, drain_roots: Sequence[Path]) -> None:
        self.owner = owner
        self.index = index
        self.name = worker_name(index)
        self.drain_roots = tuple(str(p) for p in drain_roots)
        self.snapshot: Snapshot | None = None
        self.pid: int | None = None
        self._outbox: asyncio.Queue[object] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self.up = owner.worker_up.labels(worker=self.name)
        self.restarts = owner.worker_restarts.labels(worker=self.name)

    def send(self, message: object) -> bool:
        """Queue ``message`` for the running process (False: none runs; its next `Init`
        carries the newest config and targets anyway)."""
        if self._outbox is None:
            return False
        self._outbox.put_nowait(message)
        return True

    async def request(self, request_id: int, message: tuple[Any, ...]) -> Any:
        """Send a request carrying ``request_id`` and wait for its reply."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            if not self.send(message):
                raise CollectorError(f"scrape {self.name} is not running")
            return await future
        finally:
            self._replies.pop(request_id, None)

    async def run(self) -> NoReturn:
        """Keep the worker running until cancelled; then stop it in order."""
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while True:
            started = loop.time()
            status = await self._run_once()
            self.up.set(0)
            if self.snapshot is not None:
                self.owner.merged.retire(self.snapshot.families)
                self.snapshot = None
            if loop.time() - started > 60.0:
                backoff = 1.0
            log.error(
                "scrape %s (pid %s) exited with %s; starting it again in %.0fs",
                self.name,
                self.pid,
                _describe_status(status),
                backoff,
            )
            self.restarts.inc()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _run_once(self) -> int:
        """Start the process and serve its pipe until it ends; its exit status."""
        owner = self.owner
        ours, theirs = socket.socketpair()
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "collector",
                    f"--scrape.worker-fd={theirs.fileno()}",
                    f"--log.level={owner.options.log_level}",
                    f"--log.format={owner.options.log_format}",
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,  # a terminal's ^C reaches the main process only
                )
            finally:
                theirs.close()
            self.pid = process.pid
            reader, writer = await asyncio.open_connection(sock=ours)
            outbox: asyncio.Queue[object] = asyncio.Queue()
            outbox.put_nowait(owner.init_for(self))
            self._outbox = outbox
            try:
                sender = asyncio.create_task(_send_all(writer, outbox), name=f"{self.name} pipe")
                try:
                    await self._receive(reader)
                finally:
                    sender.cancel()
                    self._outbox = None
                    for future in self._replies.values():
                        if not future.done():
                            future.set_exception(CollectorError(f"scrape {self.name} exited"))
            except asyncio.CancelledError:
                await self._stop(process)
                raise
            except (ProtocolError, OSError) as exc:
                log.error("scrape %s: broken pipe (%s); stopping it", self.name, exc)
                await self._stop(process)
            finally:
                writer.close()
            return await process.wait()
        finally:
            ours.close()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                return
            if isinstance(message, Snapshot):
                if self.snapshot is None:
                    self.up.set(1)
                elif not message.targets_included:
                    last = self.snapshot
                    message = dataclasses.replace(
                        message,
                        active_targets=last.active_targets,
                        dropped_targets=last.dropped_targets,
                        dropped_counts=last.dropped_counts,
                        pools=last.pools,
                    )
                self.snapshot = message
            elif isinstance(message, tuple) and message[:1] == ("reply",):
                future = self._replies.get(message[1])
                if future is not None and not future.done():
                    future.set_result(message[2])
            else:
                raise ProtocolError(f"unexpected message {type(message).__name__}")

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.owner.flush_deadline + _STOP_GRACE)
        except TimeoutError:
            log.error("scrape %s (pid %s) did not stop in time; killing it", self.name, self.pid)
            process.kill()
            await process.wait()


async def _send_all(writer: asyncio.StreamWriter, outbox: asyncio.Queue[object]) -> None:
    while True:
        message = await outbox.get()
        try:
            await write_message(writer, message)
        except OSError:
            return  # the process is gone; its end of file ends the handle's run


def _describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit code {status}"


class SupervisorAgent(Agent):
    """The agent's main process when scrape workers run (see the module docstring)."""

    def __init__(self, options: AgentOptions, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.count = max(worker_count(options), 1)
        self.workers_gauge = Gauge(
            "collector_scrape_workers",
            "Scrape worker processes (--scrape.workers); 0: scraping in the main process.",
            registry=self.registry,
        )
        self.workers_gauge.set(self.count)
        self.worker_up = Gauge(
            "collector_scrape_worker_up",
            "1 while the scrape worker runs and reports, 0 while it is being restarted.",
            ["worker"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "collector_scrape_worker_restarts",
            "Times a scrape worker exited on its own and was started again.",
            ["worker"],
            registry=self.registry,
        )
        self.merged = MergedMetrics(self.registry, self._worker_families)
        self.web_registry = merged_registry(self.merged)
        roots = orphan_roots(options.storage_path, self.count)
        self.handles = [WorkerHandle(self, i, roots[i :: self.count]) for i in range(self.count)]
        self._latest: TargetSets | None = None
        self._request_ids = itertools.count(1)

    def init_for(self, handle: WorkerHandle) -> Init:
        """The first message of a (re)started worker: the newest config and targets."""
        root = worker_root(self.options.storage_path, handle.index, self.count)
        os.makedirs(root, exist_ok=True)
        return Init(
            index=handle.index,
            count=self.count,
            options=_for_worker(self.options, root),
            config=self.config,
            targets=self._latest,
            drain_roots=handle.drain_roots,
        )

    def _worker_families(self) -> list[Any]:
        return [h.snapshot.families for h in self.handles if h.snapshot is not None]

    def _snapshots(self) -> list[Snapshot]:
        return [h.snapshot for h in self.handles if h.snapshot is not None]

    # ------------------------------------------------------------------ config

    def _apply(self, config: Config) -> None:
        """Discovery here; scrape and remote write in every worker (sent over the pipes)."""
        self.discovery.apply_config(config.scrape_configs)
        self.config = config
        self._config_loaded = True
        for handle in self.handles:
            handle.send(("config", config))
        self.last_reload_ok.set(1)
        self.last_reload_ts.set(time.time())

    async def _broadcast_targets(self) -> NoReturn:
        while True:
            sets = await self.discovery.sync_channel.get()
            self._latest = sets
            for handle in self.handles:
                handle.send(("targets", sets))

    # ------------------------------------------------------------------ AgentView (web)

    def is_ready(self) -> bool:
        """The agent's readiness, once every worker has reported."""
        return super().is_ready() and all(h.snapshot is not None for h in self.handles)

    def active_targets(self) -> list[dict[str, Any]]:
        """Every worker's active targets."""
        return merge_targets(s.active_targets for s in self._snapshots())

    def dropped_targets(self) -> list[dict[str, Any]]:
        """Dropped targets, as every worker relabels them (worker 0 reports them)."""
        first = self.handles[0].snapshot
        return [dict(t) for t in first.dropped_targets] if first is not None else []

    def dropped_target_counts(self) -> dict[str, int]:
        """Dropped targets per pool (the same in every worker)."""
        snapshots = self._snapshots()
        return dict(snapshots[0].dropped_counts) if snapshots else {}

    def scrape_pools(self) -> list[dict[str, Any]]:
        """Per pool, active targets and series summed over the workers."""
        return merge_pools(s.pools for s in self._snapshots())

    def _remote_write_now(self) -> list[dict[str, Any]]:
        return merge_remote_write(s.remote_write for s in self._snapshots())

    def writers_pending(self) -> int:
        """Samples every worker's queues hold unacknowledged."""
        return sum(s.pending for s in self._snapshots())

    async def cardinality(self, *, scrape_pool: str, scrape_url: str, top: int) -> dict[str, Any]:
        """Every worker's report, merged (`collector.workers.views.merge_cardinality`)."""
        request = next(self._request_ids)
        message = ("cardinality", request, scrape_pool, scrape_url, top)
        async with asyncio.timeout(_CARDINALITY_TIMEOUT):
            reports = await asyncio.gather(*(h.request(request, message) for h in self.handles))
        return merge_cardinality(reports)

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

    async def run(self, *, ready: asyncio.Event | None = None) -> NoReturn:
        """Serve; run discovery inside the workers' lifetime, so it stops first."""
        runner = web.AppRunner(self.make_web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self.options.listen_address.rpartition(":")
        site = web.TCPSite(
            runner, host or None, int(port), ssl_context=self.web_security.ssl_context
        )
        await site.start()
        log.info("listening on %s; %s", self.options.listen_address, self.web_security.describe())
        try:
            async with asyncio.TaskGroup() as workers_tg:
                self._apply(self.config)
                for handle in self.handles:
                    workers_tg.create_task(handle.run(), name=f"scrape {handle.name}")
                workers_tg.create_task(self._broadcast_targets(), name="target sets")
                workers_tg.create_task(self.history.run(), name="remote write history")
                async with asyncio.TaskGroup() as informers_tg:
                    informers_tg.create_task(self.informers.run(), name="kubernetes informers")
                    await self.informers.running.wait()
                    async with asyncio.TaskGroup() as discovery_tg:
                        discovery_tg.create_task(self.discovery.run(), name="discovery manager")
                        if ready is not None:
                            ready.set()
                        await asyncio.Event().wait()  # until cancelled
        finally:
            await runner.cleanup()
        raise AssertionError("unreachable")  # pragma: no cover


def _for_worker(options: AgentOptions, root: Path) -> AgentOptions:
    return dataclasses.replace(options, storage_path=str(root))
