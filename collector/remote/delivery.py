r"""`DeliveryQueue`: sealed batches -> write-ahead log and shard senders, in order, acknowledged.

Pipeline position: between the encoder (`collector.remote.encoder`, which seals batches) and the
receiver (`collector.remote.sender`). Owned by `collector.remote.writer.RemoteWriter`.

::

    seal ─▶ Entry(seq, epoch, shard) ─▶ backlog (FIFO) ─dispatch─▶ shard queue ─▶ send ─▶ ack
                  │                       ▲ body evicted under memory pressure: read back
                  └─ group commit, every sync_interval (≤ 1 s): one write (+ fsync) of every
                     unacknowledged new entry and of the acks, in the I/O thread

Guarantees:

* **Nothing accepted is lost.** Every sealed batch is in the log within ``sync_interval`` unless
  the receiver acknowledged it first (then it needs no log). A kill -9 loses at most the batches
  sealed since the last group commit; a clean shutdown none.
* **Acknowledged means acknowledged.** Acks are persisted at each group commit and at shutdown,
  so a clean restart sends nothing twice; after a kill -9, at most ``sync_interval`` of
  acknowledged batches are sent again (at-least-once).
* **Per-series order.** A series is always in the same shard of an *epoch* (a process lifetime,
  or a shard layout between two reshards) and each shard sends its queue in order; batches of
  the next epoch are dispatched only once every batch of the previous one is acknowledged or
  dropped. Replays after a restart are an older epoch, so they go first.
* **Disk I/O never blocks the event loop**: the log is only touched in one I/O thread, which
  also serialises its calls.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (shards) and
``tsdb/agent``'s WAL, which Prometheus replays and re-sends; our log holds encoded batches.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import NoReturn, TypeVar

from collector.remote.metrics import QueueMetrics
from collector.remote.wal import Record, WriteAheadLog

__all__ = ["DeliveryQueue", "Entry"]

log = logging.getLogger(__name__)

_LOOKAHEAD = 2
"""Batches a shard may hold beyond the one it is sending: enough to keep it busy, no more, so
the memory budget stays with the backlog where it can be evicted."""

T = TypeVar("T")


class Entry:
    """One sealed batch on its way: numbered, logged (``durable``) and finally acknowledged."""

    __slots__ = (
        "body",
        "count",
        "durable",
        "epoch",
        "lost",
        "max_ts",
        "sending",
        "seq",
        "settled",
        "shard",
    )

    def __init__(
        self, seq: int, epoch: int, shard: int, count: int, max_ts: int, body: bytes | None
    ) -> None:
        self.seq = seq
        self.epoch = epoch
        self.shard = shard
        self.count = count
        self.max_ts = max_ts
        self.body = body
        """The compressed request; None when evicted to the log only."""
        self.durable = body is None
        """In the log (entries recovered from it are, by definition)."""
        self.settled = False
        """Acknowledged by the receiver, or dropped for a counted reason."""
        self.lost = False
        """Its only copy was deleted from the log (disk cap) before it could be sent."""
        self.sending: asyncio.Future[str] | None = None
        """Its request while one is in flight; it outlives a cancelled sender (`_shard`)."""


class DeliveryQueue:
    """The ordered, logged path from sealed batches to acknowledged ones."""

    def __init__(
        self,
        wal: WriteAheadLog,
        *,
        io: Executor,
        metrics: QueueMetrics,
        send: Callable[[bytes, int, int], Awaitable[str]],
        num_shards: int,
        memory_samples: int,
        sync_interval: float = 1.0,
    ) -> None:
        """``send(body, count, max_ts)`` sends one batch to the end (`BatchSender.send`).

        ``memory_samples`` bounds the samples whose bodies stay in memory; beyond it, logged
        bodies are evicted and read back from the log when their turn comes.
        """
        self._wal = wal
        self._io = io
        self._m = metrics
        self._send = send
        self._memory_limit = memory_samples
        self.sync_interval = sync_interval
        self._opened = False
        self.opened = asyncio.Event()
        """Set once `open` has finished (or failed): from then on every group commit writes."""
        self._next_seq = 0
        self._preopen: list[Entry] = []
        """Batches sealed before `open` (commits may come before `run`): numbered by it."""
        self._backlog: deque[Entry] = deque()
        """Entries not yet handed to a shard, in seq order."""
        self._live: dict[int, Entry] = {}
        """Every entry not yet settled, by seq."""
        self._unwritten: list[Entry] = []
        """Entries sealed since the last group commit."""
        self._acked: list[int] = []
        """Seqs settled since the last group commit."""
        self.backlog_samples = 0
        """Samples sealed and not yet settled (memory and log)."""
        self._memory_samples = 0
        self.epoch = _new_epoch(0)
        self._send_epoch = self.epoch
        self._num_shards = num_shards
        self._queues: list[deque[Entry]] = []
        self._inflight = 0
        self._changed = asyncio.Event()
        """Set on every state change the dispatcher, senders or flush wait for."""
        self._pressure = asyncio.Event()
        """Set when unlogged bodies exceed the memory budget: group commit now."""

    async def open(self) -> None:
        """Recover the log (in the I/O thread): its unacknowledged batches go first, then the
        batches sealed before this call, numbered after them."""
        m = self._m
        try:
            recovery = await self._in_io(self._wal.open)
        finally:
            self.opened.set()
        self._opened = True
        self._next_seq = recovery.next_seq
        for reason, samples in recovery.lost.items():
            if samples:
                m.lost(reason, samples)
        if recovery.corrupt_records:
            m.disk_corruptions.inc(recovery.corrupt_records)
        for problem in recovery.problems:
            log.warning("remote_write %s: write-ahead log: %s", m.remote_name, problem)
        replayed = 0
        for info in recovery.pending:
            entry = Entry(info.seq, info.epoch, info.shard, info.count, info.max_ts, None)
            self._backlog.append(entry)
            self._live[entry.seq] = entry
            replayed += entry.count
        self.backlog_samples += replayed
        if replayed:
            log.info(
                "remote_write %s: %d unsent samples from the write-ahead log go first",
                m.remote_name,
                replayed,
            )
        if self._backlog:
            self._send_epoch = self._backlog[0].epoch
        preopen, self._preopen = self._preopen, []
        for entry in preopen:
            entry.seq = self._next_seq
            self._next_seq += 1
            self._queue(entry)
        self._update_gauges(recovery.disk_bytes)

    # ------------------------------------------------------------------ producer side (sync)

    def add(self, body: bytes, count: int, max_ts: int, shard: int) -> None:
        """A sealed batch of the current epoch (`BatchEncoder`'s ``on_sealed``)."""
        entry = Entry(self._next_seq, self.epoch, shard, count, max_ts, body)
        self.backlog_samples += count
        self._memory_samples += count
        if not self._opened:
            self._preopen.append(entry)
            return
        self._next_seq += 1
        self._queue(entry)
        if self._memory_samples > self._memory_limit:
            self._pressure.set()

    def _queue(self, entry: Entry) -> None:
        self._backlog.append(entry)
        self._live[entry.seq] = entry
        self._unwritten.append(entry)
        self._changed.set()

    def new_epoch(self, num_shards: int) -> None:
        """Batches sealed from now on are a new layout of ``num_shards`` shards (reshard)."""
        self.epoch = _new_epoch(self.epoch)
        self._num_shards = num_shards

    @property
    def empty(self) -> bool:
        """Nothing sealed is waiting to be settled."""
        return not self._live and not self._preopen

    @property
    def memory_samples(self) -> int:
        """Samples whose bodies are in memory (within the budget, bar unlogged ones)."""
        return self._memory_samples

    @property
    def num_shards(self) -> int:
        """Shards of the current epoch."""
        return self._num_shards

    # ------------------------------------------------------------------ running

    async def run(self, tg: asyncio.TaskGroup) -> NoReturn:
        """Dispatch to shard senders (started in ``tg``) until cancelled.

        Senders resume the shard queues a previous run left (shutdown flush after cancel).
        """
        senders = self._start_senders(tg)
        try:
            while True:
                while not self._backlog:
                    await self._wait()
                entry = self._backlog[0]
                if entry.epoch != self._send_epoch or len(self._queues) != self._num_shards:
                    # A new epoch (restart, reshard): everything of the old one first. An old
                    # epoch's shard numbers are folded onto today's senders: all batches of a
                    # series share one shard number within an epoch, so they share a sender.
                    while self._inflight:
                        await self._wait()
                    self._send_epoch = entry.epoch
                    senders = await self._restart_senders(tg, senders, self._num_shards)
                queue = self._queues[entry.shard % len(self._queues)]
                while len(queue) > _LOOKAHEAD:
                    await self._wait()
                self._backlog.popleft()
                if entry.lost:
                    continue
                if entry.body is None and not await self._load(entry):
                    continue
                queue.append(entry)
                self._inflight += 1
                self._changed.set()
        finally:
            for task in senders:
                task.cancel()

    async def _restart_senders(
        self, tg: asyncio.TaskGroup, old: list[asyncio.Task[None]], n: int
    ) -> list[asyncio.Task[None]]:
        for task in old:
            task.cancel()
        if old:
            # `wait`, not `await task` under `except CancelledError`: that also swallowed a
            # cancellation of this dispatcher itself, which then started senders beside the
            # shutdown flush's own, and a batch could go out twice.
            await asyncio.wait(old)
        self._queues = [deque() for _ in range(n)]
        self._m.shards.set(n)
        return self._start_senders(tg)

    def _start_senders(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        return [
            tg.create_task(self._shard(q), name=f"{self._m.remote_name} shard {i}")
            for i, q in enumerate(self._queues)
        ]

    async def _shard(self, queue: deque[Entry]) -> None:
        """Send this shard's entries in order, one request in flight.

        A cancelled sender (the shutdown) leaves its request going on: the receiver may have
        read it already, and aborting it would make the shutdown flush send the batch again (a
        duplicate stored). The flush's sender for this queue then awaits that same request
        instead of sending anew; one still going when the flush ends is aborted there.
        """
        while True:
            while not queue:
                await self._wait()
            entry = queue[0]  # stays at the head while in flight: cancellation keeps it
            send = entry.sending
            if send is None or send.cancelled():
                assert entry.body is not None
                send = entry.sending = asyncio.ensure_future(
                    self._send(entry.body, entry.count, entry.max_ts)
                )
            await asyncio.shield(send)
            entry.sending = None
            queue.popleft()
            self._inflight -= 1
            self._settle(entry)

    def _settle(self, entry: Entry, *, ack: bool = True) -> None:
        """Done with ``entry``: sent, refused, unreadable (``ack``: tell the log), or deleted
        from the log by the disk cap (nothing to tell it)."""
        if entry.body is not None:
            self._memory_samples -= entry.count
        entry.body = None
        entry.settled = True
        del self._live[entry.seq]
        self.backlog_samples -= entry.count
        if ack:
            self._acked.append(entry.seq)
        self._m.pending.set(self.backlog_samples)
        self._changed.set()

    async def _load(self, entry: Entry) -> bool:
        """Read an evicted body back from the log; False (counted) when it is unreadable."""
        record = await self._in_io(self._wal.read, entry.seq)
        if record is None:
            self._m.lost("corrupt", entry.count)
            log.error(
                "remote_write %s: batch %d (%d samples) is unreadable in the write-ahead log",
                self._m.remote_name,
                entry.seq,
                entry.count,
            )
            self._settle(entry)
            return False
        entry.body = record.body
        self._memory_samples += entry.count
        return True

    async def _wait(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def sync_forever(self, before: Callable[[], None]) -> NoReturn:
        """Group commit every ``sync_interval`` (sooner under memory pressure); ``before()``
        seals the open batches first, so every committed sample is in the log within one
        interval plus the write.

        Commits start on a fixed schedule (interval after the previous *start*, not after its
        end), so a slow write or a busy loop does not stretch the window a kill -9 can lose.
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + self.sync_interval
        while True:
            self._pressure.clear()
            if due > loop.time():
                try:
                    async with asyncio.timeout_at(due):
                        await self._pressure.wait()
                except TimeoutError:
                    pass
            started = loop.time()
            due = started + self.sync_interval
            before()
            await self.sync()
            self._m.wal_sync_duration.observe(loop.time() - started)

    async def sync(self) -> None:
        """Log every unsettled new entry and the acks in one I/O-thread call, then evict."""
        entries = [e for e in self._unwritten if not e.settled]
        acked = self._acked
        self._unwritten = []
        self._acked = []
        if not entries and not acked:
            return
        records = [
            Record(e.seq, e.epoch, e.shard, e.count, e.max_ts, e.body or b"") for e in entries
        ]
        # Shielded: the entries and acks were taken out of their buffers above, so this log call
        # must happen even if the caller is cancelled now. A shutdown cancels `sync_forever`
        # in mid-call; before, a cancel that came before the I/O thread started the call lost
        # them: batches never logged (gone at the restart if still unsent) and acks never
        # recorded (delivered batches sent again; a drained queue kept on disk).
        result = await asyncio.shield(self._in_io(self._wal.commit, records, acked))
        failed = set(result.unwritten)
        for entry in entries:
            # An entry the log could not take stays in memory (never evicted): still sendable.
            entry.durable = entry.seq not in failed
        for error in result.errors:
            log.error("remote_write %s: write-ahead log: %s", self._m.remote_name, error)
        for seq, count in result.dropped:
            dropped = self._live.get(seq)
            if dropped is not None and dropped.body is None:
                # Its only copy is gone (disk cap): counted now, skipped by the dispatcher.
                dropped.lost = True
                self._settle(dropped, ack=False)
                self._m.lost("disk_full", count)
        self._evict()
        self._update_gauges(result.disk_bytes)

    def _evict(self) -> None:
        """Forget logged bodies, newest first, until memory is within budget: the oldest are
        sent next, so they are the ones worth keeping."""
        over = self._memory_samples - self._memory_limit
        if over <= 0:
            return
        for entry in reversed(self._backlog):
            if entry.body is not None and entry.durable:
                entry.body = None
                self._memory_samples -= entry.count
                over -= entry.count
                if over <= 0:
                    return

    async def flush(self, until: float) -> None:
        """Shutdown: keep sending until everything is settled or loop time ``until``, then log
        whatever is left and close the log. Runs after the normal tasks were cancelled."""
        loop = asyncio.get_running_loop()
        try:
            if self._live and until > loop.time():
                try:
                    async with asyncio.timeout_at(until), asyncio.TaskGroup() as tg:
                        dispatcher = tg.create_task(
                            self.run(tg), name=f"{self._m.remote_name} flush"
                        )
                        while self._live:
                            await self._wait()
                        dispatcher.cancel()  # its senders with it
                except TimeoutError:
                    pass
        finally:
            self._abort_sends()
            # Shielded: a second cancellation must not lose what the log is about to get.
            if self._opened:
                await asyncio.shield(self.sync())
                await asyncio.shield(self._in_io(self._wal.close))
            left = self.backlog_samples
            if left:
                log.info(
                    "remote_write %s: %d unsent samples are in the write-ahead log for the next "
                    "start",
                    self._m.remote_name,
                    left,
                )

    def _abort_sends(self) -> None:
        """The flush ends: a request that finished after its sender was cancelled settles its
        batch; one still in flight is cancelled (its batch stays in the log for the next start:
        at least once)."""
        for entry in list(self._live.values()):
            send, entry.sending = entry.sending, None
            if send is None:
                continue
            if not send.done():
                send.cancel()
            elif not send.cancelled() and send.exception() is None:
                self._settle(entry)

    async def _in_io(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _update_gauges(self, disk_bytes: int) -> None:
        self._m.disk_bytes.set(disk_bytes)
        self._m.pending.set(self.backlog_samples)


def _new_epoch(previous: int) -> int:
    epoch = random.getrandbits(63)
    while epoch == previous:
        epoch = random.getrandbits(63)
    return epoch
