"""`RemoteWriter`: one ``remote_write`` destination, from committed samples to acknowledged POSTs.

Pipeline position: the scrape loops' `Appendable`; the end of the agent. Per committed sample the
work is a dict lookup (the series' pre-encoded bytes for this destination), one ``struct.pack``
and a list append; everything else happens per batch.

::

    commit(samples) ─ ref -> SeriesCode (external labels, write relabel, encode: once per series)
        │  shard = ref % num_shards
        ▼
    open batch per shard ──(max_samples_per_send, or batch_send_deadline)──▶ seal: join + snappy
        │                                                                     │
        ▼ room in memory, nothing on disk                                     ▼ otherwise
    memory FIFO per shard (≤ capacity samples)  ◀──── refill, in order ──── disk queue
        │ one request in flight per shard; retries resend the same bytes
        ▼
    WriteClient.send (POST, headers, auth)

Ordering (spec §6.9): a series always lands in the same shard and each shard is FIFO. The memory
queues plus the disk queue form one FIFO: once anything is on disk, every newly sealed batch goes
behind it, and memory is refilled from disk in order. A batch carries the *epoch* of the writer
that sealed it; batches of another epoch (replayed after a restart, when refs and shard numbers
meant something else) are only fed once every batch of the current memory epoch is sent, and
vice versa. Shutdown (cancellation of `run`) seals the open batches, sends what it can within
``flush_deadline``, then writes the rest to disk *in front of* older disk records, so a restart
delivers it first.

Shards: a fixed number, ``min(max(min_shards, 4), max_shards)`` unless given. The §6.4
resharding formula is in `collector.remote.queue.desired_shards` and is exported as
``shards_desired`` but not applied (a reshard would be an epoch change: drain, then restart).

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``QueueManager``, ``shards``),
``storage/remote/write.go``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

import aiohttp
from prometheus_client import CollectorRegistry

from collector.config import RemoteWriteConfig
from collector.errors import DiskQueueError, NonRecoverableWriteError, RecoverableWriteError
from collector.model.labels import Labels, from_dict
from collector.remote.client import WriteClient
from collector.remote.codec import (
    SeriesCode,
    compress,
    encode_labels,
    encode_timeseries,
    series_code,
    timestamp_field,
)
from collector.remote.diskqueue import DiskQueue
from collector.remote.metrics import QueueMetrics
from collector.remote.queue import Batch, next_backoff
from collector.storage.appender import Sample
from collector.storage.series import SeriesRegistry

__all__ = ["RemoteWriter", "remote_name_of"]

log = logging.getLogger(__name__)

_FAST_TS_LEN = 7
"""Length of `timestamp_field` for which `SeriesCode`'s fast prefix is valid (see codec)."""

_pack = struct.Struct("<d").pack

_DROPPED: SeriesCode = (b"", b"")
"""Cached for a series write_relabel_configs dropped (no real series encodes to empty bytes)."""


def remote_name_of(config: RemoteWriteConfig) -> str:
    """``name:``, else the first 6 hex chars of an MD5 of the URL (the loader should set it)."""
    return config.name or hashlib.md5(config.url.encode(), usedforsecurity=False).hexdigest()[:6]


class RemoteWriter:
    """One ``remote_write`` queue: `commit` never blocks or drops; `run` sends until cancelled."""

    def __init__(
        self,
        config: RemoteWriteConfig,
        *,
        series: SeriesRegistry,
        registry: CollectorRegistry,
        storage_path: Path | str,
        external_labels: Iterable[tuple[str, str]] = (),
        flush_deadline: float = 60.0,
        shards: int | None = None,
        segment_bytes: int = 8 << 20,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Set up the queue; the disk directory ``<storage_path>/<remote_name>/`` is indexed now
        (so `commit` can spill before `run` starts), the HTTP session is opened by `run`.

        ``sleep`` is what retry backoff awaits and ``wall_clock`` stamps ``Retry-After`` dates
        and ``sample_age_limit``; tests inject both (or run on looptime).
        """
        q = config.queue_config
        self.config = config
        self.remote_name = remote_name_of(config)
        self._series = series
        self._external: Labels = tuple(sorted(external_labels))
        self._relabel = _compile(config)
        self._flush_deadline = flush_deadline
        self._sleep = sleep
        self._wall = wall_clock
        self._capacity = q.capacity
        self._max_per_send = q.max_samples_per_send
        self._deadline = q.batch_send_deadline
        self._age_limit_ms = int(q.sample_age_limit * 1000)
        self._num_shards = shards if shards is not None else min(max(q.min_shards, 4), q.max_shards)
        n = self._num_shards
        self._codes: dict[int, SeriesCode] = {}
        self._open: list[list[bytes]] = [[] for _ in range(n)]
        self._open_max_ts: list[int] = [0] * n
        self._open_since: list[float] = [0.0] * n
        self._queues: list[deque[Batch]] = [deque() for _ in range(n)]
        self._wake: list[asyncio.Event] = [asyncio.Event() for _ in range(n)]
        self._mem_samples = 0
        self._epoch = random.getrandbits(63)
        self._mem_epoch = self._epoch
        self._held: Batch | None = None
        self._draining = False
        self._spilling = False
        self._highest_sent = 0.0
        self._disk = DiskQueue(Path(storage_path) / self.remote_name, segment_bytes=segment_bytes)
        self.metrics = QueueMetrics(registry, remote_name=self.remote_name, url=config.url)
        m = self.metrics
        m.shards.set(n)
        m.shards_min.set(q.min_shards)
        m.shards_max.set(q.max_shards)
        m.shards_desired.set(n)
        m.shard_capacity.set(q.capacity)
        m.max_samples_per_send.set(q.max_samples_per_send)
        self._update_disk_gauges()

    # ------------------------------------------------------------------ commit side (sync)

    @property
    def num_shards(self) -> int:
        """Shards sending in parallel (one request in flight each)."""
        return self._num_shards

    @property
    def pending_samples(self) -> int:
        """Samples in memory: sealed batches plus open ones (disk excluded)."""
        return self._mem_samples + sum(len(o) for o in self._open)

    @property
    def disk(self) -> DiskQueue:
        """The disk queue (for status pages and tests)."""
        return self._disk

    def commit(self, samples: Sequence[Sample]) -> None:
        """Take one scrape's samples. Never blocks on the network, never drops for lack of room."""
        if not samples:
            return
        if self._age_limit_ms:
            samples = self._drop_too_old(samples)
        codes = self._codes
        n = self._num_shards
        open_ = self._open
        max_per_send = self._max_per_send
        now = _loop_time()
        last_ts: int | None = None
        ts_field = b""
        fast = False
        hi = 0
        dropped = unknown = 0
        for ref, value, ts in samples:
            code = codes.get(ref)
            if code is None:
                resolved = self._resolve(ref)
                if resolved is None:
                    unknown += 1
                    continue
                code = resolved
            if code is _DROPPED:
                dropped += 1
                continue
            if ts != last_ts:
                last_ts = ts
                ts_field = timestamp_field(ts)
                fast = len(ts_field) == _FAST_TS_LEN
                if ts > hi:
                    hi = ts
            shard = ref % n
            pieces = open_[shard]
            if not pieces:
                self._open_since[shard] = now
                self._wake[shard].set()
            if fast and value != 0.0:
                pieces.append(code[1] + _pack(value) + ts_field)
            else:
                pieces.append(encode_timeseries(code[0], value, ts))
            if len(pieces) >= max_per_send:
                self._seal(shard, hi)
        for shard in range(n):
            if open_[shard] and hi > self._open_max_ts[shard]:
                self._open_max_ts[shard] = hi
        m = self.metrics
        if dropped:
            m.dropped_series.inc(dropped)
        if unknown:
            m.dropped_unintentional.inc(unknown)
        if hi:
            m.observe_highest_in(hi / 1000.0)
        m.pending.set(self.pending_samples)

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the cached encodings of released refs (`SeriesRegistry.drain_released`)."""
        codes = self._codes
        for ref in refs:
            codes.pop(ref, None)

    def _resolve(self, ref: int) -> SeriesCode | None:
        """Encode a series for this destination once: external labels, write relabel, bytes."""
        labels = self._series.labels(ref)
        if labels is None:
            return None
        if self._external or self._relabel is not None:
            builder = dict(labels)
            for name, value in self._external:
                # External labels never override the series' own (spec §6.5).
                builder.setdefault(name, value)
            if self._relabel is not None:
                relabeled = self._relabel(builder)
                if relabeled is None:
                    self._codes[ref] = _DROPPED
                    return _DROPPED
                builder = relabeled
            labels = from_dict(builder)
        if not labels:
            self._codes[ref] = _DROPPED
            return _DROPPED
        code = series_code(encode_labels(labels))
        self._codes[ref] = code
        return code

    def _drop_too_old(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        cutoff = int(self._wall() * 1000) - self._age_limit_ms
        kept = [s for s in samples if s[2] >= cutoff]
        if len(kept) != len(samples):
            self.metrics.dropped_too_old.inc(len(samples) - len(kept))
        return kept

    def _seal(self, shard: int, commit_max_ts: int = 0) -> None:
        """Turn a shard's open batch into a `Batch` and queue it (memory or disk).

        ``commit_max_ts`` is the highest timestamp of a commit in progress, which may have put
        samples in this batch before `_open_max_ts` was updated.
        """
        pieces = self._open[shard]
        if not pieces:
            return
        self._open[shard] = []
        max_ts = max(self._open_max_ts[shard], commit_max_ts)
        self._open_max_ts[shard] = 0
        batch = Batch(
            body=compress(b"".join(pieces)),
            count=len(pieces),
            max_ts=max_ts,
            shard=shard,
            epoch=self._epoch,
        )
        self._enqueue(batch)

    def _fits(self, batch: Batch) -> bool:
        return self._mem_samples == 0 or (
            batch.epoch == self._mem_epoch and self._mem_samples + batch.count <= self._capacity
        )

    def _enqueue(self, batch: Batch) -> None:
        if self._held is None and self._disk.empty and self._fits(batch):
            self._push(batch)
            return
        if not self._spilling:
            self._spilling = True
            log.warning(
                "remote_write %s: memory queue full (%d samples), spilling to %s",
                self.remote_name,
                self._mem_samples,
                self._disk.directory,
            )
        try:
            self._disk.append(batch.to_record())
        except DiskQueueError as exc:
            # Nowhere left to put it: the only drop this writer cannot avoid, and it is counted.
            log.error(
                "remote_write %s: %s; dropping %d samples", self.remote_name, exc, batch.count
            )
            self.metrics.failed.inc(batch.count)
        self._refill()

    def _push(self, batch: Batch) -> None:
        if self._mem_samples == 0:
            self._mem_epoch = batch.epoch
        self._queues[batch.shard % self._num_shards].append(batch)
        self._mem_samples += batch.count
        self._wake[batch.shard % self._num_shards].set()

    def _refill(self) -> None:
        """Move disk records into memory, in order, while they fit (and their epoch may run)."""
        if self._draining:
            return
        disk = self._disk
        while True:
            batch = self._held
            if batch is None:
                if disk.empty:
                    break
                try:
                    record = disk.pop()
                    if record is None:
                        break
                    batch = Batch.from_record(record)
                except (DiskQueueError, ValueError) as exc:
                    log.error("remote_write %s: %s", self.remote_name, exc)
                    self.metrics.disk_corruptions.inc()
                    continue
            if not self._fits(batch):
                self._held = batch
                break
            self._held = None
            self._push(batch)
        if self._spilling and self._held is None and disk.empty:
            self._spilling = False
            log.info("remote_write %s: disk queue drained", self.remote_name)
        self._update_disk_gauges()

    def _update_disk_gauges(self) -> None:
        self.metrics.disk_bytes.set(self._disk.size_bytes)
        self.metrics.disk_segments.set(self._disk.segment_count)

    # ------------------------------------------------------------------ send side (async)

    async def run(self) -> NoReturn:
        """Send until cancelled; then flush within ``flush_deadline`` and persist the rest."""
        http = self.config.http_client
        self._draining = False
        self._refill()
        async with aiohttp.ClientSession(trust_env=http.proxy_from_environment) as session:
            client = WriteClient(session, self.config, wall_clock=self._wall)
            try:
                async with asyncio.TaskGroup() as tg:
                    for shard in range(self._num_shards):
                        tg.create_task(self._shard_loop(shard, client))
                    await asyncio.get_running_loop().create_future()
            finally:
                await self._shutdown(client)
        raise AssertionError("unreachable: run() only ends by cancellation")

    async def _shard_loop(self, shard: int, client: WriteClient, *, draining: bool = False) -> None:
        """Send this shard's batches in order, one request in flight; seal on the deadline."""
        queue = self._queues[shard]
        wake = self._wake[shard]
        loop = asyncio.get_running_loop()
        while True:
            if queue:
                batch = queue[0]  # stays at the head while in flight: cancellation keeps it
                await self._send(batch, client)
                queue.popleft()
                self._mem_samples -= batch.count
                self._refill()
                self.metrics.pending.set(self.pending_samples)
                continue
            if draining:
                return
            wake.clear()
            if self._open[shard]:
                delay = self._open_since[shard] + self._deadline - loop.time()
                if delay <= 0:
                    self._seal(shard)
                    continue
                try:
                    async with asyncio.timeout(delay):
                        await wake.wait()
                except TimeoutError:
                    pass
            else:
                await wake.wait()

    async def _send(self, batch: Batch, client: WriteClient) -> None:
        """POST one batch until it is acknowledged or refused (spec §6.2)."""
        m = self.metrics
        backoff = self.config.queue_config.min_backoff
        max_backoff = self.config.queue_config.max_backoff
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            if self._age_limit_ms and batch.max_ts < int(self._wall() * 1000) - self._age_limit_ms:
                m.dropped_too_old.inc(batch.count)
                return
            started = loop.time()
            try:
                await client.send(batch.body, attempt=attempt)
            except NonRecoverableWriteError as exc:
                m.duration.observe(loop.time() - started)
                m.failed.inc(batch.count)
                log.error(
                    "remote_write %s: non-recoverable error, dropping %d samples: %s",
                    self.remote_name,
                    batch.count,
                    exc,
                )
                return
            except Exception as exc:  # RecoverableWriteError, or a bug: both retry (rule 3)
                m.duration.observe(loop.time() - started)
                m.retried.inc(batch.count)
                retry_after = exc.retry_after if isinstance(exc, RecoverableWriteError) else 0.0
                sleep_for = retry_after if retry_after > 0 else backoff
                log.warning(
                    "remote_write %s: failed to send batch, retrying in %.3fs: %s",
                    self.remote_name,
                    sleep_for,
                    exc,
                    exc_info=not isinstance(exc, RecoverableWriteError),
                )
                await self._sleep(sleep_for)
                backoff = next_backoff(sleep_for, max_backoff=max_backoff)
                attempt += 1
                continue
            m.duration.observe(loop.time() - started)
            m.samples.inc(batch.count)
            m.bytes.inc(len(batch.body))
            if batch.max_ts / 1000.0 > self._highest_sent:
                self._highest_sent = batch.max_ts / 1000.0
                m.queue_highest_sent.set(self._highest_sent)
            return

    async def _shutdown(self, client: WriteClient) -> None:
        """Seal, flush memory within ``flush_deadline``, persist the rest (even if cancelled)."""
        try:
            for shard in range(self._num_shards):
                self._seal(shard)
            self._draining = True
            busy = [s for s in range(self._num_shards) if self._queues[s]]
            if busy:
                tasks = [
                    asyncio.create_task(self._shard_loop(s, client, draining=True)) for s in busy
                ]
                _, pending = await asyncio.wait(tasks, timeout=self._flush_deadline)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._persist()

    def _persist(self) -> None:
        """Write unsent memory batches in front of the disk queue and close it."""
        records = [batch.to_record() for queue in self._queues for batch in queue]
        persisted = self._mem_samples
        if self._held is not None:
            # Read from disk already: older than what is left there, newer than memory.
            records.append(self._held.to_record())
            persisted += self._held.count
            self._held = None
        for queue in self._queues:
            queue.clear()
        self._mem_samples = 0
        try:
            self._disk.prepend(records)
            self._disk.close()
        except DiskQueueError as exc:
            log.error(
                "remote_write %s: cannot persist %d samples: %s", self.remote_name, persisted, exc
            )
            self.metrics.failed.inc(persisted)
        else:
            if records:
                log.info(
                    "remote_write %s: persisted %d unsent samples to %s",
                    self.remote_name,
                    persisted,
                    self._disk.directory,
                )
        self._update_disk_gauges()
        self.metrics.pending.set(self.pending_samples)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _compile(config: RemoteWriteConfig) -> Callable[[dict[str, str]], dict[str, str] | None] | None:
    """``write_relabel_configs`` compiled once, or None when there are none."""
    if not config.write_relabel_configs:
        return None
    from collector.model.relabel import compile_rules

    return compile_rules(config.write_relabel_configs).process
