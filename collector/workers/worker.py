"""A scrape worker process: its share of the targets, scraped into its own remote writers.

Place in the pipeline: started by `collector.workers.supervisor` as
``python -m collector --scrape.worker-fd=FD`` (the CLI chooses the event loop and logging, then
calls `run_worker_process`). A `WorkerAgent` is the in-process `Agent` without discovery, web
and membership: the same scrape manager (with the `worker_ring` share) and the same remote
writers, under ``<storage.path>/workers/<i>`` (i >= 1: the main process is worker 0). The pipe
brings the config (at start and after every reload), discovery's full target sets and the
worker count when ``auto`` adds a worker; every `SNAPSHOT_INTERVAL` the worker sends a
`Snapshot` back for ``/api/v1/targets``, the UI and ``/metrics``.

Stop: SIGTERM (or SIGINT, or the pipe's end when the main process is gone) stops like the
agent: the scrape loops (stale markers), then each writer flushes within
``--storage.remote.flush-deadline`` from the signal and leaves the rest in its queue. SIGHUP is
ignored: reloads come from the main process, already validated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from typing import Any, NoReturn

from collector.agent import Agent
from collector.config import Config
from collector.model.targetgroup import TargetSets
from collector.scrape.cardinality import cardinality_report_async
from collector.workers.metrics import families_of
from collector.workers.plan import worker_name, worker_ring
from collector.workers.protocol import (
    SNAPSHOT_INTERVAL,
    TARGETS_BUDGET,
    Init,
    ProtocolError,
    Snapshot,
    read_message,
    write_message,
)

__all__ = ["WorkerAgent", "run_worker_process"]

log = logging.getLogger(__name__)


class LatestTargets:
    """A scrape manager's end of the discovery hand-off: latest wins, like discovery's slot."""

    def __init__(self) -> None:
        self._sets: TargetSets | None = None
        self._event = asyncio.Event()

    def put(self, sets: TargetSets) -> None:
        self._sets = sets
        self._event.set()

    async def get(self) -> TargetSets:
        await self._event.wait()
        self._event.clear()
        assert self._sets is not None
        return self._sets


class WorkerAgent(Agent):
    """The agent's scrape and remote-write half, for one worker's share of the targets."""

    def __init__(self, init: Init) -> None:
        self._init = init
        super().__init__(init.options)
        self.index = init.index
        self.scrape.set_ring(worker_ring(init.count, init.index))
        self.targets = LatestTargets()
        if init.targets is not None:
            self.targets.put(init.targets)

    def _load(self) -> Config:
        return self._init.config  # loaded and validated by the main process

    def _apply(self, config: Config) -> None:
        """The agent's `_apply` without discovery (the main process runs it)."""
        external = config.global_config.external_labels
        self._reconcile_writers(config.remote_write, external)
        self.config = config
        self._config_loaded = True
        try:
            self.scrape.apply_config(config.scrape_configs, external_labels=tuple(sorted(external)))
        except Exception:
            self.last_reload_ok.set(0)
            log.exception("applying the new configuration failed")
            return
        self.last_reload_ok.set(1)
        self.last_reload_ts.set(time.time())

    async def reload(self) -> None:
        """Reloads come from the main process over the pipe (``("config", Config)``)."""

    def snapshot(self, *, targets: bool = True) -> Snapshot:
        """What the main process shows for this worker now (``targets``: with the lists of
        targets and pools, which cost a few microseconds per target)."""
        if not targets:
            return Snapshot(
                targets_included=False,
                remote_write=self._remote_write_now(),
                pending=self.writers_pending(),
                families=families_of(self.registry),
            )
        return Snapshot(
            active_targets=self.active_targets(),  # dropped ones: the main process has them
            pools=self.scrape_pools(),
            remote_write=self._remote_write_now(),
            pending=self.writers_pending(),
            families=families_of(self.registry),
        )

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run until the pipe ends (returns, after the ordered stop) or cancelled; the agent's
        nesting and order."""
        try:
            await self._serve(reader, writer)
        except* _PipeClosed:
            log.info("the main process is gone: stopped the scrape loops and flushed")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.TaskGroup() as remote_tg:
            self._remote_tg = remote_tg
            self._apply(self.config)
            for config, remote in self.writers.items():
                if config not in self._writer_tasks:
                    self._start_writer(config, remote)
            remote_tg.create_task(self._forget_released(), name="series gc")
            await asyncio.gather(*(w.delivery.opened.wait() for w in self.writers.values()))
            async with asyncio.TaskGroup() as scrape_tg:
                scrape_tg.create_task(self.scrape.run(self.targets), name="scrape manager")
                scrape_tg.create_task(self._send_snapshots(writer), name="snapshots")
                await self._read_pipe(reader, writer)
                self.begin_stop()  # the flush deadline counts from here
                raise _PipeClosed

    async def _read_pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            message = await read_message(reader)
            if message is None:
                return
            if not isinstance(message, tuple) or not message:
                raise ProtocolError(f"unexpected message {type(message).__name__}")
            kind = message[0]
            if kind == "targets":
                self.targets.put(message[1])
            elif kind == "config":
                self._apply(message[1])
                log.info("configuration applied")
            elif kind == "ring":
                self.scrape.set_ring(worker_ring(message[1], self.index))
                log.info("now one of %d scrape workers", message[1])
            elif kind == "cardinality":
                _, request, pool, url, top = message
                data: dict[str, Any] = dict(
                    await cardinality_report_async(
                        self.scrape.pools, scrape_pool=pool, scrape_url=url, top=top
                    )
                )
                await write_message(writer, ("reply", request, data))
            else:
                raise ProtocolError(f"unknown message kind {kind!r}")

    async def _send_snapshots(self, writer: asyncio.StreamWriter) -> NoReturn:
        loop = asyncio.get_running_loop()
        targets_due = 0.0
        while True:
            now = loop.time()
            if now >= targets_due:
                started = time.perf_counter()
                snapshot = self.snapshot(targets=True)
                cost = time.perf_counter() - started
                targets_due = now + max(SNAPSHOT_INTERVAL, cost / TARGETS_BUDGET) - 0.05
            else:
                snapshot = self.snapshot(targets=False)
            await write_message(writer, snapshot)
            await asyncio.sleep(SNAPSHOT_INTERVAL)


class _PipeClosed(Exception):
    """The main process is gone: stop in order."""


class _WorkerName(logging.Filter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self._prefix = f"{name}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self._prefix):
            record.msg = self._prefix + str(record.msg)
        return True


async def run_worker_process(fd: int) -> int:
    """The worker's main: read `Init` from the pipe on ``fd``, scrape until told to stop."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    init = await read_message(reader)
    if not isinstance(init, Init):
        log.error("scrape worker: expected the init message, got %s", type(init).__name__)
        return 2
    name = worker_name(init.index)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerName(name))
    loop = asyncio.get_running_loop()
    agent = WorkerAgent(init)
    main = asyncio.current_task()
    assert main is not None
    stopping = False

    def stop(reason: str) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        agent.begin_stop()
        log.info("%s: stopping the scrape loops, then flushing the remote writers", reason)
        main.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop, "received SIGTERM")
    loop.add_signal_handler(signal.SIGINT, stop, "received SIGINT")
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    log.info(
        "scrape worker %d of %d started (queues under %s)",
        init.index,
        init.count,
        init.options.storage_path,
    )
    try:
        await agent.serve(reader, writer)
    except asyncio.CancelledError:
        if not stopping:
            raise
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        writer.close()
    return 0
