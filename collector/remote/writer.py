r"""`RemoteWriter`: one ``remote_write`` destination, from committed samples to acknowledged POSTs.

Pipeline position: the scrape loops' `Appendable`; the end of the agent. It owns and wires the
stages of one destination, each in its own module:

::

    commit(samples) ─▶ encoder (BatchEncoder: per-series encoding cache, per-shard batches)
                          │ sealed batch
                          ▼
                       delivery (DeliveryQueue: seq, epoch, write-ahead log under
                          │       <storage.path>/<remote_name>/wal, memory budget, dispatch)
                          ▼
                       sender (BatchSender: POST, retry policy, FailureLog) ─▶ WriteClient
                          │ 2.0 destinations: each 1.0 batch becomes a 2.0 request when sent
                          │ (codec2.V2Transcoder); ProtocolState falls back to 1.0 on a 415
    resharder (every 10 s, spec §6.4)    metadata (every send_interval, spec §6.6; 1.0 only)

`commit` never blocks and never drops for lack of room: memory holds recent batches, the log
holds everything not yet acknowledged, bounded by ``max_disk_bytes`` (oldest dropped first,
counted as ``reason="disk_full"``). `run` sends until cancelled; then it keeps sending until the
flush deadline and leaves the rest in the log, which the next start sends first.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``QueueManager``),
``storage/remote/write.go``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry

from collector.config import RemoteWriteConfig
from collector.config.http_client import redact_url
from collector.remote.client import WriteClient
from collector.remote.codec2 import V2, V2Transcoder
from collector.remote.delivery import DeliveryQueue
from collector.remote.encoder import BatchEncoder, Relabel
from collector.remote.metadata import MetadataSource, send_metadata_forever
from collector.remote.metrics import QueueMetrics
from collector.remote.reshard import SHARD_UPDATE_INTERVAL, Resharder
from collector.remote.retry import FailureLog
from collector.remote.sender import BatchSender, ProtocolState
from collector.remote.wal import WriteAheadLog
from collector.storage.appender import ExemplarSample, HistogramSample, Sample
from collector.storage.series import SeriesRegistry

__all__ = ["SHARD_UPDATE_INTERVAL", "RemoteWriter", "remote_name_of"]

log = logging.getLogger(__name__)

_Timed = TypeVar("_Timed", Sample, HistogramSample)

DEFAULT_MAX_DISK_BYTES = 1 << 30
"""Write-ahead log cap per destination (1 GiB): about 50 M samples at typical compression."""


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
        flush_deadline: float = 10.0,
        flush_until: Callable[[], float | None] = lambda: None,
        shards: int | None = None,
        sync_interval: float = 1.0,
        fsync: bool = True,
        max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES,
        segment_bytes: int = 16 << 20,
        io: Executor | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        jitter: float = 0.2,
        reshard_interval: float | None = SHARD_UPDATE_INTERVAL,
        metadata_source: MetadataSource | None = None,
    ) -> None:
        """Set up the destination. `commit` works at once; the write-ahead log is opened (and
        recovered) when `run` starts, so a replaced writer for the same ``remote_name`` can
        finish its flush first (the agent runs them one after the other).

        ``flush_until()`` may return the loop time by which the shutdown flush must end (the
        agent's signal time plus the deadline); otherwise ``flush_deadline`` counts from the
        cancellation. ``sync_interval`` is the group commit period (at most this long between a
        commit and its batch being in the log), ``fsync`` whether each group commit is also
        flushed to the device. ``io`` runs the log's calls (default: one dedicated thread).
        ``sleep``, ``wall_clock`` and ``jitter`` are for tests.
        """
        q = config.queue_config
        self.config = config
        self.remote_name = remote_name_of(config)
        # The url label is shown on /metrics: never with a password in it.
        self.metrics = QueueMetrics(
            registry, remote_name=self.remote_name, url=redact_url(config.url)
        )
        self._flush_deadline = flush_deadline
        self._flush_until = flush_until
        self._sleep = sleep
        self._wall = wall_clock
        self._jitter = jitter
        self._age_limit_ms = int(q.sample_age_limit * 1000)
        self._metadata_source = metadata_source
        self._reshard_interval = reshard_interval
        self._own_io = io is None
        self._io: Executor = io or ThreadPoolExecutor(
            1, thread_name_prefix=f"wal-{self.remote_name}"
        )
        n = shards if shards is not None else min(max(q.min_shards, 4), q.max_shards)
        self.directory = Path(storage_path) / self.remote_name / "wal"
        self.wal = WriteAheadLog(
            self.directory, segment_bytes=segment_bytes, max_bytes=max_disk_bytes, fsync=fsync
        )
        self.sender: BatchSender | None = None
        self.delivery = DeliveryQueue(
            self.wal,
            io=self._io,
            metrics=self.metrics,
            send=self._send,
            num_shards=n,
            memory_samples=max(q.capacity * 10, q.max_samples_per_send * n * 4),
            sync_interval=sync_interval,
        )
        self.encoder = BatchEncoder(
            series=series,
            external_labels=external_labels,
            relabel=_compile(config),
            max_samples_per_send=q.max_samples_per_send,
            num_shards=n,
            on_sealed=self.delivery.add,
            clock=_loop_time,
        )
        self.failures = FailureLog(self.remote_name, clock=_loop_time, logger=log)
        self.protocol = ProtocolState(config.protobuf_message == V2)
        """Remote write 2.0 or 1.0 now (2.0 only when configured, until a receiver refuses it)."""
        self._transcoder: V2Transcoder | None = None
        if self.protocol.configured_v2:
            mc = config.metadata_config
            self._transcoder = V2Transcoder(
                metadata=metadata_source if mc.send else None,
                metadata_every=mc.send_interval,
                clock=_loop_time,
            )
        self._resharder: Resharder | None = None
        m = self.metrics
        m.shards.set(n)
        m.shards_min.set(q.min_shards)
        m.shards_max.set(q.max_shards)
        m.shards_desired.set(n)
        m.shard_capacity.set(q.capacity)
        m.max_samples_per_send.set(q.max_samples_per_send)

    # ------------------------------------------------------------------ commit side (sync)

    @property
    def num_shards(self) -> int:
        """Shards sending in parallel (one request in flight each)."""
        return self.encoder.num_shards

    @property
    def pending_samples(self) -> int:
        """Samples committed and not yet acknowledged or dropped (memory and log)."""
        return self.delivery.backlog_samples + self.encoder.open_samples

    def commit(
        self,
        samples: Sequence[Sample],
        histograms: Sequence[HistogramSample] = (),
        exemplars: Sequence[ExemplarSample] = (),
    ) -> None:
        """Take one scrape's samples (`BatchEncoder.commit`), native histograms
        (`BatchEncoder.commit_histograms`; dropped unless ``send_native_histograms``, as
        Prometheus does not send them then) and exemplars (`BatchEncoder.commit_exemplars`,
        only with ``send_exemplars``); never blocks on I/O."""
        if not self.config.send_native_histograms:
            histograms = ()
        if exemplars and not self.config.send_exemplars:
            exemplars = ()
        if not samples and not histograms and not exemplars:
            return
        m = self.metrics
        if self._age_limit_ms:
            samples = self._drop_too_old(samples)
            if histograms:
                histograms = self._drop_too_old(histograms)
        counts = self.encoder.commit(samples)
        if histograms:
            more = self.encoder.commit_histograms(histograms)
            counts.dropped_series += more.dropped_series
            counts.unknown += more.unknown
            counts.highest_ts = max(counts.highest_ts, more.highest_ts)
        if exemplars:
            more = self.encoder.commit_exemplars(exemplars)
            counts.dropped_series += more.dropped_series
            counts.unknown += more.unknown
        if counts.dropped_series:
            m.dropped_series.inc(counts.dropped_series)
        if counts.unknown:
            m.dropped_unintentional.inc(counts.unknown)
            m.lost("unknown_series", counts.unknown)
        resharder = self._resharder
        if resharder is not None:
            resharder.count_in += len(samples) + len(histograms)
            resharder.count_dropped += counts.dropped_series + counts.unknown
            resharder.highest_in_ms = max(resharder.highest_in_ms, counts.highest_ts)
        if counts.highest_ts:
            m.observe_highest_in(counts.highest_ts / 1000.0)
        m.pending.set(self.pending_samples)

    def forget(self, refs: Iterable[int]) -> None:
        """Drop the cached encodings of released refs (`SeriesRegistry.drain_released`)."""
        self.encoder.forget(refs)

    def _drop_too_old(self, samples: Sequence[_Timed]) -> Sequence[_Timed]:
        cutoff = int(self._wall() * 1000) - self._age_limit_ms
        kept = [s for s in samples if s[2] >= cutoff]
        if len(kept) != len(samples):
            self.metrics.dropped_too_old.inc(len(samples) - len(kept))
            self.metrics.lost("too_old", len(samples) - len(kept))
        return kept

    # ------------------------------------------------------------------ running

    async def _send(self, body: bytes, count: int, max_ts: int) -> str:
        assert self.sender is not None, "sending starts in run()"
        return await self.sender.send(body, count, max_ts)

    async def run(self) -> NoReturn:
        """Send until cancelled, then flush within the deadline and leave the rest logged."""
        q = self.config.queue_config
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
            ) as session:
                client = WriteClient(session, self.config, wall_clock=self._wall)
                self.sender = BatchSender(
                    client,
                    metrics=self.metrics,
                    failures=self.failures,
                    min_backoff=q.min_backoff,
                    max_backoff=q.max_backoff,
                    age_limit_ms=self._age_limit_ms,
                    wall_clock=self._wall,
                    sleep=self._sleep,
                    jitter=self._jitter,
                    rand=random.random,
                    protocol=self.protocol,
                    transcoder=self._transcoder,
                )
                try:
                    await self.delivery.open()
                    await self._serve(client)
                finally:
                    await self._shutdown()
        finally:
            if self._own_io:
                # The last log call was awaited in the flush; don't block the loop on the join.
                self._io.shutdown(wait=False)
        raise AssertionError("unreachable: run() only ends by cancellation")

    async def _serve(self, client: WriteClient) -> None:
        assert self.sender is not None
        name = self.remote_name
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.delivery.run(tg), name=f"{name} dispatch")
            tg.create_task(self.delivery.sync_forever(self._seal_for_sync), name=f"{name} wal")
            tg.create_task(self._seal_on_deadline(), name=f"{name} batch deadline")
            if self._reshard_interval is not None:
                self._resharder = Resharder(
                    self.config.queue_config,
                    stats=self.sender.stats,
                    metrics=self.metrics,
                    interval=self._reshard_interval,
                )
                tg.create_task(
                    self._resharder.run(lambda: self.num_shards, self._reshard),
                    name=f"{name} reshard",
                )
            source = self._metadata_source
            if source is not None and self.config.metadata_config.send:
                tg.create_task(
                    send_metadata_forever(
                        self.config,
                        source,
                        client,
                        metrics=self.metrics,
                        failures=self.failures,
                        sleep=self._sleep,
                        protocol=self.protocol,
                    ),
                    name=f"{name} metadata",
                )

    def _seal_for_sync(self) -> None:
        self.encoder.seal_all()

    async def _seal_on_deadline(self) -> NoReturn:
        """Seal a shard's batch ``batch_send_deadline`` after it opened (group commits seal
        everything sooner when ``sync_interval`` is shorter)."""
        deadline = self.config.queue_config.batch_send_deadline
        loop = asyncio.get_running_loop()
        while True:
            due = self.encoder.seal_due(deadline, loop.time())
            await asyncio.sleep(deadline if due is None else max(due - loop.time(), 0.0))

    def _reshard(self, n: int) -> None:
        """Seal in the old layout, then batch for ``n`` shards as a new epoch."""
        self.encoder.seal_all()
        self.delivery.new_epoch(n)
        self.encoder.set_shards(n)
        self.metrics.shards.set(n)

    async def _shutdown(self) -> None:
        """Seal, send until the flush deadline, log the rest (even if cancelled again)."""
        self.encoder.seal_all()
        loop = asyncio.get_running_loop()
        until = self._flush_until()
        if until is None:
            until = loop.time() + self._flush_deadline
        await self.delivery.flush(until)
        self.metrics.pending.set(self.pending_samples)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _compile(config: RemoteWriteConfig) -> Relabel | None:
    """``write_relabel_configs`` compiled once, or None when there are none."""
    if not config.write_relabel_configs:
        return None
    from collector.model.relabel import compile_rules

    return compile_rules(config.write_relabel_configs).process
