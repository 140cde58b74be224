"""Informers shared across discoverers: one per (API server, resource, namespace, selectors).

Place in the pipeline: every `KubernetesDiscoverer` subscribes to the informers its role needs
through an `InformerPool`; the first subscriber starts an informer (and its connection), the
last one to leave stops it. Two jobs discovering pods in one namespace cost the API server one
LIST and one WATCH, not two.

Prometheus counterpart: none (Prometheus runs informers per SD config); vmagent's
``api_watcher.go`` shares ``urlWatcher``s the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NoReturn

from collector.discovery.kubernetes.client import Connection, ConnectionSpec
from collector.discovery.kubernetes.informer import (
    Handler,
    Informer,
    InformerKey,
    InformerOptions,
)
from collector.discovery.kubernetes.metrics import KubernetesMetrics

__all__ = ["InformerPool", "default_pool"]


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
        self._informers: dict[InformerKey, _Entry] = {}
        self._connections: dict[ConnectionSpec, _ConnEntry] = {}

    def __len__(self) -> int:
        return len(self._informers)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, key: InformerKey, handler: Handler, *, metrics: KubernetesMetrics
    ) -> AsyncIterator[Informer]:
        """Share (or start) the informer for ``key`` while the block runs."""
        entry = self._informers.get(key)
        if entry is None:
            conn = self._acquire_connection(key.connection)
            informer = Informer(key, conn, metrics=metrics, options=self.options)
            task: asyncio.Task[NoReturn] = asyncio.get_running_loop().create_task(
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
            if entry.refs == 0 and self._informers.get(key) is entry:
                del self._informers[key]
                entry.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([entry.task])
                await self._release_connection(key.connection)

    def _acquire_connection(self, spec: ConnectionSpec) -> Connection:
        centry = self._connections.get(spec)
        if centry is None:
            centry = self._connections[spec] = _ConnEntry(Connection(spec))
        centry.refs += 1
        return centry.connection

    async def _release_connection(self, spec: ConnectionSpec) -> None:
        centry = self._connections[spec]
        centry.refs -= 1
        if centry.refs == 0:
            del self._connections[spec]
            await centry.connection.close()


_DEFAULT_POOL: InformerPool | None = None


def default_pool() -> InformerPool:
    """The process-wide pool `make_discoverer` uses when none is injected."""
    global _DEFAULT_POOL
    if _DEFAULT_POOL is None:
        _DEFAULT_POOL = InformerPool()
    return _DEFAULT_POOL
