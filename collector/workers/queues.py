"""Write-ahead queues left by another worker count: found at start, delivered, then removed.

Place in the pipeline: beside the remote writers of the scrape workers. Each process that
scrapes keeps one write-ahead queue per destination (`collector.remote.writer`) under its own
root, so no sample crosses a pipe:

    <storage.path>/<remote_name>/wal                 the in-process agent (--scrape.workers=1)
    <storage.path>/workers/<i>/<remote_name>/wal     scrape worker i

Why not one queue per destination in the main process: the samples would cross a pipe, which
costs about 0.4 us per sample in serialisation alone (pickle or ``array`` columns, both ends,
measured on the 2-core dev box) against about 2 us for the whole scrape-to-send path, and the
main process would encode and send every worker's samples on one core again. Per-worker queues
cost nothing per sample; the price is N queues per destination (N x the shards, N request
streams to the receiver) and the orphan handling below.

The main process is worker 0 and keeps the in-process root. A queue is only ever opened by one
process at a time. When the worker count changes across a restart, the roots no worker owns
(``workers/<k>`` for k >= N) are *orphans*: `orphan_roots` lists them and the main process runs
a `drain` writer per destination of the running config for each, beside its own writers: the
drain recovers the log exactly like a restart would, sends everything still unacknowledged, and
once nothing is pending removes that destination's directory. A queue of a destination no
longer configured is left alone, as the in-process agent leaves it. When ``auto`` adds worker k
while ``workers/<k>`` is still being drained, the drain stops (flushing like any writer) and
worker k takes the queue over as its own.

``--scrape.workers=1`` with worker queues on disk runs the supervisor with no worker process
(`has_worker_queues`): it drains them in this process; once they are delivered and removed, the
next start is the plain in-process agent again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.config import RemoteWriteConfig
from collector.remote.writer import RemoteWriter, remote_name_of

__all__ = ["WORKERS_DIR", "drain", "has_worker_queues", "orphan_roots", "worker_root"]

log = logging.getLogger(__name__)

WORKERS_DIR = "workers"
"""Subdirectory of ``--storage.path`` holding one root per scrape worker."""

_POLL = 1.0


def worker_root(storage_path: str | Path, index: int) -> Path:
    """Scrape worker ``index``'s queue root (0, the main process: the in-process root)."""
    if index == 0:
        return Path(storage_path)
    return Path(storage_path) / WORKERS_DIR / str(index)


def _has_queue(root: Path) -> bool:
    """Whether ``root`` holds any ``<remote_name>/wal`` directory."""
    try:
        return any((child / "wal").is_dir() for child in root.iterdir() if child.is_dir())
    except OSError:
        return False


def orphan_roots(storage_path: str | Path, count: int) -> list[Path]:
    """Queue roots that none of ``count`` workers owns (`worker_root`): ``workers/<k>`` for
    k >= count (and 0, which no worker uses), in numeric order."""
    try:
        children = list((Path(storage_path) / WORKERS_DIR).iterdir())
    except OSError:
        return []
    found = [
        (int(child.name), child)
        for child in children
        if child.name.isdigit()
        and (int(child.name) >= count or int(child.name) == 0)
        and _has_queue(child)
    ]
    return [path for _, path in sorted(found)]


def has_worker_queues(storage_path: str | Path) -> bool:
    """Whether any scrape worker's queue is on disk (the in-process agent cannot read them)."""
    try:
        children = list((Path(storage_path) / WORKERS_DIR).iterdir())
    except OSError:
        return False
    return any(child.name.isdigit() and _has_queue(child) for child in children)


async def drain(
    root: Path,
    configs: Sequence[RemoteWriteConfig],
    *,
    make_writer: Callable[[RemoteWriteConfig, Path, CollectorRegistry], RemoteWriter],
) -> None:
    """Deliver every configured destination's queue under ``root``, then remove it.

    Returns when all are delivered (or none is there). Cancelled earlier, each writer flushes
    like any other and leaves the rest in its log for the next start.
    """
    names = {remote_name_of(config): config for config in configs}
    todo = [names[name] for name in await asyncio.to_thread(_queues_in, root) if name in names]
    if not todo:
        return
    async with asyncio.TaskGroup() as tg:
        for config in todo:
            tg.create_task(_drain_one(root, config, make_writer), name=f"drain {root}")
    if root.parent.name == WORKERS_DIR:
        await asyncio.to_thread(_remove_if_empty, root)


def _queues_in(root: Path) -> list[str]:
    try:
        return sorted(c.name for c in root.iterdir() if (c / "wal").is_dir())
    except OSError:
        return []


def _remove_if_empty(root: Path) -> None:
    try:
        root.rmdir()  # only when nothing else is left in it
    except OSError:
        pass


async def _drain_one(
    root: Path,
    config: RemoteWriteConfig,
    make_writer: Callable[[RemoteWriteConfig, Path, CollectorRegistry], RemoteWriter],
) -> None:
    # A registry of its own: the drain's queue gauges must not overwrite the live queue's.
    writer = make_writer(config, root, CollectorRegistry(auto_describe=False))
    task = asyncio.create_task(writer.run(), name=f"drain {writer.remote_name} {root}")
    try:
        await writer.delivery.opened.wait()
        pending = writer.pending_samples
        log.info(
            "delivering the write-ahead queue %s left by another worker count (%d samples pending)",
            writer.directory,
            pending,
        )
        while writer.pending_samples > 0:
            if task.done():
                break
            await asyncio.sleep(_POLL)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Settled in the delivery is the truth: it replayed every record of the log when it opened,
    # and a record leaves it only when sent, refused or counted lost. The log's own count lags
    # (acknowledgements reach it at the next group commit); waiting for it raced the cancel
    # above and left a delivered queue on disk now and then (CI, test_workers).
    if writer.pending_samples == 0:
        await asyncio.to_thread(shutil.rmtree, root / writer.remote_name, ignore_errors=True)
        log.info("queue %s delivered and removed", writer.directory)
