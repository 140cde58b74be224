"""Informers shared across discoverers: one per (API server, resource, namespace, selectors).

Place in the pipeline: every `KubernetesDiscoverer` subscribes to the informers its role needs
through an `InformerPool`; the first subscriber starts an informer (and its connection), the
last one to leave stops it. Two jobs discovering pods in one namespace cost the API server one
LIST and one WATCH, not two.

The pool is a component like the others (STYLE rule 1): its informers are tasks of the
TaskGroup that `InformerPool.run` holds, and cancelling ``run`` is what stops the ones still
running. The agent makes one pool, runs it in a TaskGroup around discovery's, so it stops after
the discoverers left it, and hands it to every Kubernetes discoverer. A pool that nobody runs
(tests, a discoverer built without one) is served by its user for the length of
`InformerPool.serving`, which `KubernetesDiscoverer.run` enters: such a pool is for one user, or
for users whose lifetimes nest within the first one's.

Prometheus counterpart: none (Prometheus runs informers per SD config); vmagent's
``api_watcher.go`` shares ``urlWatcher``s the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NoReturn

from collector.discovery.kubernetes.informer import (
    Handler,
    Informer,
    InformerKey,
    InformerOptions,
)
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.kubernetes.connection import Connection, ConnectionSpec

__all__ = ["InformerPool"]


@dataclass
class _Entry:
    informer: Informer
    task: asyncio.Task[NoReturn]
    refs: int = 0


@dataclass
class _ConnEntry:
    connection: Connection
    refs: int = 0


class InformerPool:
    """Informers shared by key across discoverers; started on first use, stopped on last."""

    def __init__(self, *, options: InformerOptions | None = None) -> None:
        self.options = options or InformerOptions()
        self.running = asyncio.Event()
        """Set while the pool is served (`run`, or a `serving` block): subscribing works."""
        self._tg: asyncio.TaskGroup | None = None
        self._informers: dict[InformerKey, _Entry] = {}
        self._connections: dict[ConnectionSpec, _ConnEntry] = {}

    def __len__(self) -> int:
        return len(self._informers)

    async def run(self) -> NoReturn:
        """Serve informers until cancelled (the agent's owner of the pool)."""
        if self._tg is not None:
            raise RuntimeError("InformerPool.run: the pool is already served")
        async with self.serving():
            await asyncio.Event().wait()  # until cancelled
        raise AssertionError("unreachable: only cancellation ends InformerPool.run")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Serve the pool while the block runs, unless it is already served (then a no-op).

        The informers started meanwhile are tasks of a TaskGroup held here, so the block's end
        (its cancellation, normally) stops every informer still running and closes their
        connections: nothing outlives the block.
        """
        if self._tg is not None:
            yield
            return
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.running.set()
                try:
                    yield
                finally:
                    # Subscribers normally left already; whatever is left stops with the pool.
                    for entry in self._informers.values():
                        entry.task.cancel()
        finally:
            self._tg = None
            self.running.clear()
            leftovers = [c.connection for c in self._connections.values()]
            self._informers.clear()
            self._connections.clear()
            for connection in leftovers:
                await connection.close()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, key: InformerKey, handler: Handler, *, metrics: KubernetesMetrics
    ) -> AsyncIterator[Informer]:
        """Share (or start) the informer for ``key`` while the block runs.

        Raises `RuntimeError` when the pool is not served: an informer needs an owner.
        """
        if self._tg is None:
            raise RuntimeError(
                "InformerPool.subscribe: the pool is not served (run it, or subscribe inside "
                "`async with pool.serving()`)"
            )
        entry = self._informers.get(key)
        if entry is None:
            conn = self._acquire_connection(key.connection)
            informer = Informer(key, conn, metrics=metrics, options=self.options)
            task = self._tg.create_task(
                informer.run(), name=f"informer {key.resource}/{key.namespace}"
            )
            entry = self._informers[key] = _Entry(informer, task)
        entry.refs += 1
        entry.informer.add_handler(handler)
        try:
            yield entry.informer
        finally:
            entry.informer.remove_handler(handler)
            entry.refs -= 1
            # Not ours any more when the pool stopped first (it cleared and closed everything).
            if entry.refs == 0 and self._informers.get(key) is entry:
                del self._informers[key]
                entry.task.cancel()
                # asyncio.wait neither raises the task's CancelledError nor hides ours: a
                # second cancellation of this (already unwinding) subscriber still gets through.
                await asyncio.wait([entry.task])
                await self._release_connection(key.connection)

    def _acquire_connection(self, spec: ConnectionSpec) -> Connection:
        centry = self._connections.get(spec)
        if centry is None:
            centry = self._connections[spec] = _ConnEntry(Connection(spec))
        centry.refs += 1
        return centry.connection

    async def _release_connection(self, spec: ConnectionSpec) -> None:
        centry = self._connections.get(spec)
        if centry is None:
            return  # the pool stopped and closed it
        centry.refs -= 1
        if centry.refs == 0:
            del self._connections[spec]
            await centry.connection.close()
