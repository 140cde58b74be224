"""One scrape worker process seen from the main process: start, pipe, restart, stop.

Place in the pipeline: `collector.workers.supervisor` owns one `WorkerHandle` per worker
process (workers 1..N-1; the main process is worker 0). `WorkerHandle.run` starts
``python -m collector --scrape.worker-fd=FD`` with one end of a socketpair, sends the `Init`
the owner builds (newest config, target sets and worker count), queues later messages in
order, keeps the latest `Snapshot`, and answers requests (``("reply", id, data)``).

A worker that exits on its own is logged with its exit status, its counters are kept in the
merged ``/metrics`` (`MergedMetrics.retire`), and it is started again after 1 s (doubling to 30 s
while it keeps dying within a minute). Cancelled, the handle sends SIGTERM (the worker stops
like the agent: scrape loops, then a flush within the deadline) and kills a worker still
running ``--storage.remote.flush-deadline`` + 5 s later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
import sys
from typing import Any, NoReturn, Protocol

from prometheus_client import Counter, Gauge

from collector.errors import CollectorError
from collector.workers.metrics import MergedMetrics
from collector.workers.plan import worker_name
from collector.workers.protocol import Init, ProtocolError, Snapshot, read_message, write_message

__all__ = ["Owner", "WorkerHandle"]

log = logging.getLogger(__name__)

_STOP_GRACE = 5.0
"""Seconds past the flush deadline a stopping worker gets before it is killed."""
_MAX_BACKOFF = 30.0


class Owner(Protocol):
    """What a handle needs from the supervisor."""

    options: Any
    merged: MergedMetrics
    worker_up: Gauge
    worker_restarts: Counter

    @property
    def flush_deadline(self) -> float:
        """``--storage.remote.flush-deadline``."""
        ...

    def init_for(self, handle: WorkerHandle) -> Init:
        """The first message of a (re)started worker."""
        ...


class WorkerHandle:
    """One worker slot: its process (started again when it dies), pipe and latest snapshot."""

    def __init__(self, owner: Owner, index: int) -> None:
        self.owner = owner
        self.index = index
        self.name = worker_name(index)
        self.snapshot: Snapshot | None = None
        self.has_targets = asyncio.Event()
        """Set once a snapshot lists active targets (a new worker scrapes its share)."""
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
            try:
                status: int | str = await self._run_once()
            except OSError as exc:  # no process could be started (fds, memory, ...)
                status = f"a failed start ({exc})"
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
                if message.active_targets:
                    self.has_targets.set()
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


def _describe_status(status: int | str) -> str:
    if isinstance(status, str):
        return status
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"exit code {status}"
