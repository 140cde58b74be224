r"""`RemoteWriter`: one ``remote_write`` destination, from committed samples to acknowledged POSTs.

Pipeline position: the scrape loops' `Appendable`; the end of the agent. Per committed sample the
work is a dict lookup (the series' cache entry for this destination), a float comparison with the
series' previous value (unchanged: its encoded bytes are reused, else one ``struct.pack`` and one
concatenation) and a list append; the timestamp field, shared by a scrape, is added once per shard
and commit by joining with it as the separator. Everything else happens per batch.

::

    commit(samples) ─ ref -> SeriesCode (external labels, write relabel, encode: once per series)
        │  shard = ref % num_shards
        ▼
    open batch per shard ──(max_samples_per_send, or batch_send_deadline)──▶ seal: join + snappy
        │                                                                     │
        ▼ room in memory, nothing on disk                                     ▼ otherwise
    memory FIFO per shard (≤ capacity samples) ◀── refill, in order ── waiting ◀── disk queue
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

*Waiting* is an in-memory FIFO between the shard queues and the disk (within the same
``capacity`` budget): sealed batches that may not enter the shard queues yet (another epoch is
in them, or a reshard is draining them) wait there rather than on disk.

Shards: start at ``min(max(min_shards, 4), max_shards)`` unless given; every 10 s the §6.4
formula (`collector.remote.queue.desired_shards`, on EWMAs of samples in, out, dropped and send
time) may reshard within ``[min_shards, max_shards]``: not while retrying, only if a send
completed in the last 10 s. A reshard is an epoch change: the shard queues drain (new batches
wait), the loops stop, open batches are sealed in the old layout, and new shards start behind
them, so per-series order holds.

Metadata (spec §6.6, 1.0 path): with ``metadata_config.send`` and a ``metadata_source`` (the
agent passes the scrape manager's), every ``send_interval`` the deduplicated entries are sent in
chunks of at most ``metadata_config.max_samples_per_send`` as metadata-only requests
(field 3 only), beside the shards and with the same retry rules; never persisted to disk.

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
from typing import Any, NoReturn

import aiohttp
from prometheus_client import CollectorRegistry

from collector.config import RemoteWriteConfig
from collector.errors import DiskQueueError, NonRecoverableWriteError, RecoverableWriteError
from collector.model.labels import Labels, from_dict
from collector.remote.client import WriteClient
from collector.remote.codec import (
    METRIC_TYPES,
    MetadataEntry,
    compress,
    encode_labels,
    encode_metadata_request,
    encode_timeseries,
    fast_prefixes,
    timestamp_field,
)
from collector.remote.diskqueue import DiskQueue
from collector.remote.metrics import QueueMetrics
from collector.remote.queue import Batch, EWMARate, desired_shards, next_backoff
from collector.storage.appender import Sample
from collector.storage.series import SeriesRegistry

__all__ = ["SHARD_UPDATE_INTERVAL", "RemoteWriter", "remote_name_of"]

log = logging.getLogger(__name__)

_FAST_TS_LEN = 7
"""Length of `timestamp_field` for which `SeriesCode`'s fast prefix is valid (see codec)."""

_pack = struct.Struct("<d").pack

_NAN = float("nan")

_Entry = list[Any]
"""Per ref and destination: ``[last value, its encoded TimeSeries minus the timestamp field,
value prefix, zero series, append]`` (see `collector.remote.codec.fast_prefixes`); ``append`` is
the bound ``append`` of the run of the ref's shard (one bound method per shard, shared by all its
entries), or of the discard list for a series write relabeling dropped (so the hot loop needs no
branch for it). The last value starts as NaN, which equals nothing, so the first sample always
encodes."""

SHARD_UPDATE_INTERVAL = 10.0
"""Seconds between resharding decisions (Prometheus ``shardUpdateDuration``)."""


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
        reshard_interval: float | None = SHARD_UPDATE_INTERVAL,
        metadata_source: Callable[[], Iterable[tuple[str, str, str, str]]] | None = None,
    ) -> None:
        """Set up the queue; the disk directory ``<storage_path>/<remote_name>/`` is indexed now
        (so `commit` can spill before `run` starts), the HTTP session is opened by `run`.

        ``shards`` is the starting shard count; dynamic resharding (spec §6.4) then moves it
        within ``[min_shards, max_shards]`` every ``reshard_interval`` seconds (None: never).
        ``sleep`` is what retry backoff awaits and ``wall_clock`` stamps ``Retry-After`` dates
        and ``sample_age_limit``; tests inject both (or run on looptime).
        ``metadata_source`` returns ``(family, type, help, unit)`` entries (spec §6.6); without
        it, or with ``metadata_config.send: false``, no metadata is sent.
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
        self._cache: dict[int, _Entry] = {}
        self._discard: list[bytes] = []
        """Where the samples of dropped series go during a commit (counted, then cleared)."""
        self._n_unknown = 0
        self._waiting: deque[Batch] = deque()
        self._waiting_samples = 0
        self._mem_samples = 0
        self._emptied = asyncio.Event()
        self._epoch = 0
        self._mem_epoch = 0
        self._draining = False
        self._barrier = False
        self._spilling = False
        self._highest_sent = 0.0
        self._highest_in_ms = 0
        self._shard_tasks: list[asyncio.Task[None]] = []
        # Resharding inputs (spec §6.4): counted here, folded into the EWMAs every interval.
        self._reshard_interval = reshard_interval
        self._metadata_source = metadata_source
        ewma_interval = reshard_interval or SHARD_UPDATE_INTERVAL
        self._rate_in = EWMARate(interval=ewma_interval)
        self._rate_out = EWMARate(interval=ewma_interval)
        self._rate_dropped = EWMARate(interval=ewma_interval)
        self._rate_out_duration = EWMARate(interval=ewma_interval)
        self._count_in = 0
        self._count_out = 0
        self._count_dropped = 0
        self._out_duration = 0.0
        self._last_send_done: float | None = None
        self._reshard_disabled_until = 0.0
        self._disk = DiskQueue(Path(storage_path) / self.remote_name, segment_bytes=segment_bytes)
        self.metrics = QueueMetrics(registry, remote_name=self.remote_name, url=config.url)
        n = shards if shards is not None else min(max(q.min_shards, 4), q.max_shards)
        self._set_layout(n)
        m = self.metrics
        m.shards_min.set(q.min_shards)
        m.shards_max.set(q.max_shards)
        m.shards_desired.set(n)
        m.shard_capacity.set(q.capacity)
        m.max_samples_per_send.set(q.max_samples_per_send)
        self._update_disk_gauges()

    def _set_layout(self, n: int) -> None:
        """Start a new epoch with ``n`` shards (memory queues and open batches must be empty)."""
        assert self._mem_samples == 0, "the memory queues must be drained before a new layout"
        epoch = random.getrandbits(63)
        while epoch == self._epoch:
            epoch = random.getrandbits(63)
        self._epoch = epoch
        self._num_shards = n
        self._open: list[list[bytes]] = [[] for _ in range(n)]
        self._open_count: list[int] = [0] * n
        self._open_max_ts: list[int] = [0] * n
        self._open_since: list[float] = [0.0] * n
        self._queues: list[deque[Batch]] = [deque() for _ in range(n)]
        self._wake: list[asyncio.Event] = [asyncio.Event() for _ in range(n)]
        self._runs: list[list[bytes]] = [[] for _ in range(n)]
        appends: list[Callable[[bytes], None]] = [run.append for run in self._runs]
        self._run_appends = appends
        discard = self._discard.append
        for ref, entry in self._cache.items():
            if entry[4] != discard:
                entry[4] = appends[ref % n]
        self.metrics.shards.set(n)

    # ------------------------------------------------------------------ commit side (sync)

    @property
    def num_shards(self) -> int:
        """Shards sending in parallel (one request in flight each)."""
        return self._num_shards

    @property
    def pending_samples(self) -> int:
        """Samples in memory: sealed batches plus open ones (disk excluded)."""
        return self._mem_samples + self._waiting_samples + sum(self._open_count)

    @property
    def disk(self) -> DiskQueue:
        """The disk queue (for status pages and tests)."""
        return self._disk

    def commit(self, samples: Sequence[Sample]) -> None:
        """Take one scrape's samples. Never blocks on the network, never drops for lack of room.

        Per sample (steady state): one dict lookup, one float comparison with the series' last
        value (equal: its encoded bytes are reused; else one ``pack`` and one concatenation) and
        one list append into the shard's run. A run holds the ``TimeSeries`` bytes *without*
        the timestamp field, which all samples of a run share: `_flush_runs` joins a run with
        the field as separator, once per shard and timestamp.
        """
        if not samples:
            return
        self._count_in += len(samples)
        if self._age_limit_ms:
            samples = self._drop_too_old(samples)
        n = self._num_shards
        cache = self._cache
        pack = _pack
        now = _loop_time()
        last_ts: int | None = None
        ts_field = b""
        fast = False
        hi = 0
        entry: _Entry | None
        for ref, value, ts in samples:
            if ts != last_ts:
                if last_ts is not None:
                    self._flush_runs(ts_field, last_ts, now)
                last_ts = ts
                ts_field = timestamp_field(ts)
                fast = len(ts_field) == _FAST_TS_LEN
                if ts > hi:
                    hi = ts
            try:
                entry = cache[ref]
            except KeyError:
                entry = self._resolve(ref)
                if entry is None:
                    continue
            if not fast:
                self._add_slow(ref % n, entry, value, ts, now)
                continue
            if value != entry[0]:  # NaN never equals: its bits are always packed afresh
                entry[0] = value
                entry[1] = entry[2] + pack(value) if value else entry[3]
            entry[4](entry[1])
        if last_ts is not None:
            self._flush_runs(ts_field, last_ts, now)
        m = self.metrics
        if self._discard:
            m.dropped_series.inc(len(self._discard))
            self._count_dropped += len(self._discard)
            self._discard.clear()
        if self._n_unknown:
            m.dropped_unintentional.inc(self._n_unknown)
            self._count_dropped += self._n_unknown
            self._n_unknown = 0
        if hi:
            if hi > self._highest_in_ms:
                self._highest_in_ms = hi
            m.observe_highest_in(hi / 1000.0)
        m.pending.set(self.pending_samples)

    def _flush_runs(self, ts_field: bytes, ts: int, now: float) -> None:
        """Move every shard's run of samples stamped ``ts`` into its open batch."""
        for shard, run in enumerate(self._runs):
            if run:
                self._add_run(shard, run, ts_field, ts, now)
                run.clear()  # the same list: `_run_appends` holds its bound append

    def _add_run(self, shard: int, run: list[bytes], ts_field: bytes, ts: int, now: float) -> None:
        """Append a run to a shard's open batch, sealing each time it reaches the batch size."""
        max_per_send = self._max_per_send
        total = len(run)
        start = 0
        while start < total:
            count = self._open_count[shard]
            if not count:
                self._open_since[shard] = now
                self._wake[shard].set()
            if ts > self._open_max_ts[shard]:
                self._open_max_ts[shard] = ts
            take = min(max_per_send - count, total - start)
            chunks = self._open[shard]
            chunks.append(
                ts_field.join(run[start : start + take] if start or take < total else run)
            )
            chunks.append(ts_field)
            self._open_count[shard] = count + take
            start += take
            if count + take >= max_per_send:
                self._seal(shard)

    def _add_slow(self, shard: int, entry: _Entry, value: float, ts: int, now: float) -> None:
        """One sample whose timestamp field is not 7 bytes: encoded whole (rare)."""
        if entry[4] == self._discard.append:
            self._discard.append(b"")
            return
        count = self._open_count[shard]
        if not count:
            self._open_since[shard] = now
            self._wake[shard].set()
        if ts > self._open_max_ts[shard]:
            self._open_max_ts[shard] = ts
        self._open[shard].append(encode_timeseries(_label_bytes(entry[2]), value, ts))
        self._open_count[shard] = count + 1
        if count + 1 >= self._max_per_send:
            self._seal(shard)

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the cached encodings of released refs (`SeriesRegistry.drain_released`)."""
        cache = self._cache
        for ref in refs:
            cache.pop(ref, None)

    def _resolve(self, ref: int) -> _Entry | None:
        """Encode a series for this destination once: external labels, write relabel, bytes.

        None (and counted) when the ref is unknown; a series write relabeling dropped gets an
        entry that appends to the discard list.
        """
        labels = self._series.labels(ref)
        if labels is None:
            self._n_unknown += 1
            return None
        if self._external or self._relabel is not None:
            builder = dict(labels)
            for name, value in self._external:
                # External labels never override the series' own (spec §6.5).
                builder.setdefault(name, value)
            if self._relabel is not None:
                relabeled = self._relabel(builder)
                builder = {} if relabeled is None else relabeled
            labels = from_dict(builder)
        if labels:
            value_prefix, zero_series = fast_prefixes(encode_labels(labels))
            append = self._run_appends[ref % self._num_shards]
        else:
            value_prefix = zero_series = b""
            append = self._discard.append
        entry: _Entry = [_NAN, b"", value_prefix, zero_series, append]
        self._cache[ref] = entry
        return entry

    def _drop_too_old(self, samples: Sequence[Sample]) -> Sequence[Sample]:
        cutoff = int(self._wall() * 1000) - self._age_limit_ms
        kept = [s for s in samples if s[2] >= cutoff]
        if len(kept) != len(samples):
            self.metrics.dropped_too_old.inc(len(samples) - len(kept))
            self._count_dropped += len(samples) - len(kept)
        return kept

    def _seal(self, shard: int) -> None:
        """Turn a shard's open batch into a `Batch` and queue it (memory, waiting or disk)."""
        count = self._open_count[shard]
        if not count:
            return
        chunks = self._open[shard]
        self._open[shard] = []
        self._open_count[shard] = 0
        max_ts = self._open_max_ts[shard]
        self._open_max_ts[shard] = 0
        batch = Batch(
            body=compress(b"".join(chunks)),
            count=count,
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
        """Queue a sealed batch at the tail of the FIFO: memory queues, waiting, then disk."""
        if self._disk.empty:
            if not self._barrier and not self._waiting and self._fits(batch):
                self._push(batch)
                return
            if self._mem_samples + self._waiting_samples + batch.count <= self._capacity:
                # Memory has room but the batch may not enter the shard queues yet (another
                # epoch is being sent, or a reshard is draining them).
                self._waiting.append(batch)
                self._waiting_samples += batch.count
                return
        if not self._spilling:
            self._spilling = True
            log.warning(
                "remote_write %s: memory queue full (%d samples), spilling to %s",
                self.remote_name,
                self._mem_samples + self._waiting_samples,
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
        shard = batch.shard % self._num_shards
        self._queues[shard].append(batch)
        self._mem_samples += batch.count
        self._wake[shard].set()

    def _admit_waiting(self) -> None:
        """Move waiting batches into the shard queues, in order, while they fit."""
        waiting = self._waiting
        while waiting and self._fits(waiting[0]):
            batch = waiting.popleft()
            self._waiting_samples -= batch.count
            self._push(batch)

    def _refill(self) -> None:
        """Move waiting then disk batches into memory, in order, while they fit (and their
        epoch may run); not while draining for shutdown or for a reshard."""
        if self._draining or self._barrier:
            return
        disk = self._disk
        waiting = self._waiting
        while True:
            self._admit_waiting()
            if waiting or disk.empty:
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
            waiting.append(batch)  # the head of the disk queue, read: in front of all else
            self._waiting_samples += batch.count
        if self._spilling and not waiting and disk.empty:
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
        self._barrier = False
        self._refill()
        async with aiohttp.ClientSession(trust_env=http.proxy_from_environment) as session:
            client = WriteClient(session, self.config, wall_clock=self._wall)
            try:
                async with asyncio.TaskGroup() as tg:
                    self._start_shards(tg, client)
                    if self._reshard_interval:
                        tg.create_task(self._update_shards_loop(tg, client, self._reshard_interval))
                    source = self._metadata_source
                    if source is not None and self.config.metadata_config.send:
                        tg.create_task(
                            self._metadata_loop(client, source),
                            name=f"{self.remote_name} metadata",
                        )
                    await asyncio.get_running_loop().create_future()
            finally:
                self._shard_tasks = []
                await self._shutdown(client)
        raise AssertionError("unreachable: run() only ends by cancellation")

    def _start_shards(self, tg: asyncio.TaskGroup, client: WriteClient) -> None:
        self._shard_tasks = [
            tg.create_task(
                self._shard_loop(shard, client), name=f"{self.remote_name} shard {shard}"
            )
            for shard in range(self._num_shards)
        ]

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
                if not self._mem_samples:
                    self._emptied.set()
                self._refill()
                self.metrics.pending.set(self.pending_samples)
                continue
            if draining:
                return
            wake.clear()
            if self._open_count[shard]:
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
        began = loop.time()
        while True:
            if self._age_limit_ms and batch.max_ts < int(self._wall() * 1000) - self._age_limit_ms:
                m.dropped_too_old.inc(batch.count)
                self._count_dropped += batch.count
                return
            started = loop.time()
            try:
                await client.send(batch.body, attempt=attempt)
            except NonRecoverableWriteError as exc:
                m.duration.observe(loop.time() - started)
                m.failed.inc(batch.count)
                self._sent(batch.count, began, loop.time())
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
                # No resharding while retrying (spec §6.2).
                self._reshard_disabled_until = max(
                    self._reshard_disabled_until, loop.time() + 2 * sleep_for
                )
                await self._sleep(sleep_for)
                backoff = next_backoff(sleep_for, max_backoff=max_backoff)
                attempt += 1
                continue
            now = loop.time()
            m.duration.observe(now - started)
            m.samples.inc(batch.count)
            m.bytes.inc(len(batch.body))
            self._sent(batch.count, began, now)
            if batch.max_ts / 1000.0 > self._highest_sent:
                self._highest_sent = batch.max_ts / 1000.0
                m.queue_highest_sent.set(self._highest_sent)
            return

    # ------------------------------------------------------------------ metadata (§6.6)

    async def _metadata_loop(
        self, client: WriteClient, source: Callable[[], Iterable[tuple[str, str, str, str]]]
    ) -> NoReturn:
        """Every ``send_interval`` (first one interval after start): collect and send."""
        mc = self.config.metadata_config
        while True:
            await asyncio.sleep(mc.send_interval)
            try:
                entries = _metadata_entries(source())
            except Exception:  # a bug in the source must not kill the writer's TaskGroup
                log.exception("remote_write %s: cannot collect metadata", self.remote_name)
                continue
            step = max(mc.max_samples_per_send, 1)
            for start in range(0, len(entries), step):
                await self._send_metadata(entries[start : start + step], client)

    async def _send_metadata(self, entries: Sequence[MetadataEntry], client: WriteClient) -> None:
        """POST one metadata-only request until acknowledged or refused (spec §6.2 rules)."""
        m = self.metrics
        body = compress(encode_metadata_request(entries))
        backoff = self.config.queue_config.min_backoff
        max_backoff = self.config.queue_config.max_backoff
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            started = loop.time()
            try:
                await client.send(body, attempt=attempt)
            except NonRecoverableWriteError as exc:
                m.duration.observe(loop.time() - started)
                m.metadata_failed.inc(len(entries))
                log.error(
                    "remote_write %s: non-recoverable error while sending metadata, "
                    "dropping %d entries: %s",
                    self.remote_name,
                    len(entries),
                    exc,
                )
                return
            except Exception as exc:  # RecoverableWriteError, or a bug: both retry
                m.duration.observe(loop.time() - started)
                m.metadata_retried.inc(len(entries))
                retry_after = exc.retry_after if isinstance(exc, RecoverableWriteError) else 0.0
                sleep_for = retry_after if retry_after > 0 else backoff
                log.warning(
                    "remote_write %s: failed to send metadata, retrying in %.3fs: %s",
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
            m.metadata.inc(len(entries))
            m.metadata_bytes.inc(len(body))
            return

    def _sent(self, count: int, began: float, now: float) -> None:
        """Account a completed send (success or refusal) for resharding."""
        self._count_out += count
        self._out_duration += now - began
        self._last_send_done = now

    # ------------------------------------------------------------------ resharding (§6.4)

    def _update_desired(self) -> int:
        """Tick the EWMAs and compute the shard count the formula wants (clamped)."""
        self._rate_in.incr(self._count_in)
        self._rate_out.incr(self._count_out)
        self._rate_dropped.incr(self._count_dropped)
        self._rate_out_duration.incr(self._out_duration)
        self._count_in = self._count_out = self._count_dropped = 0
        self._out_duration = 0.0
        for rate in (self._rate_in, self._rate_out, self._rate_dropped, self._rate_out_duration):
            rate.tick()
        q = self.config.queue_config
        wanted, raw = desired_shards(
            current=self._num_shards,
            min_shards=q.min_shards,
            max_shards=q.max_shards,
            rate_in=self._rate_in.rate,
            rate_out=self._rate_out.rate,
            rate_dropped=self._rate_dropped.rate,
            rate_out_duration=self._rate_out_duration.rate,
            highest_received_s=self._highest_in_ms / 1000.0,
            highest_sent_s=self._highest_sent,
        )
        if self._rate_out.rate > 0:
            self.metrics.shards_desired.set(raw)
        return wanted

    def _should_reshard(self, wanted: int, now: float, window: float) -> bool:
        """Spec §6.4: a different count, a send completed recently, and not while retrying."""
        if wanted == self._num_shards:
            return False
        if self._last_send_done is None or now - self._last_send_done > window:
            log.warning(
                "remote_write %s: skipping resharding, last successful send was beyond threshold",
                self.remote_name,
            )
            return False
        return now >= self._reshard_disabled_until

    async def _update_shards_loop(
        self, tg: asyncio.TaskGroup, client: WriteClient, interval: float
    ) -> NoReturn:
        """Every ``interval``: tick the rates and start a reshard when one is due."""
        loop = asyncio.get_running_loop()
        resharding: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(interval)
            wanted = self._update_desired()
            if resharding is not None and not resharding.done():
                continue
            if self._should_reshard(wanted, loop.time(), interval):
                resharding = tg.create_task(self._reshard(wanted, tg, client))

    async def _reshard(self, shards: int, tg: asyncio.TaskGroup, client: WriteClient) -> None:
        """Drain then restart (spec §6.4, §6.9): per-series order holds across the change.

        New sealed batches wait (memory, else disk) while the current shards send everything
        already in their queues; then the shard loops stop, the open batches are sealed in the
        old layout, and a new epoch with ``shards`` shards starts behind them.
        """
        log.info(
            "remote_write %s: resharding from %d to %d shards",
            self.remote_name,
            self._num_shards,
            shards,
        )
        self._barrier = True
        try:
            while self._mem_samples:
                self._emptied.clear()
                await self._emptied.wait()
            tasks = self._shard_tasks
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for shard in range(self._num_shards):
                self._seal(shard)
            self._set_layout(shards)
            self._start_shards(tg, client)
        finally:
            self._barrier = False
            self._refill()

    async def _shutdown(self, client: WriteClient) -> None:
        """Seal, flush memory within ``flush_deadline``, persist the rest (even if cancelled)."""
        try:
            self._barrier = False
            for shard in range(self._num_shards):
                self._seal(shard)
            self._admit_waiting()
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
        """Write unsent memory then waiting batches in front of the disk queue and close it."""
        records = [batch.to_record() for queue in self._queues for batch in queue]
        # Waiting batches are newer than memory and older than anything on disk.
        records.extend(batch.to_record() for batch in self._waiting)
        persisted = self._mem_samples + self._waiting_samples
        for queue in self._queues:
            queue.clear()
        self._waiting.clear()
        self._mem_samples = 0
        self._waiting_samples = 0
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


def _label_bytes(value_prefix: bytes) -> bytes:
    """The ``Label`` fields inside a `fast_prefixes` value prefix (tag, varint, labels, 3 bytes)."""
    i = 1
    while value_prefix[i] & 0x80:
        i += 1
    return value_prefix[i + 1 : -3]


def _metadata_entries(source: Iterable[tuple[str, str, str, str]]) -> list[MetadataEntry]:
    """``(family, type, help, unit)`` -> deduplicated ``(MetricType, family, help, unit)``."""
    out: dict[MetadataEntry, None] = {}
    for family, kind, help_text, unit in source:
        out[METRIC_TYPES.get(kind, 0), family, help_text, unit] = None
    return list(out)


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
