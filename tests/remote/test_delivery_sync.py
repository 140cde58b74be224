"""The group commit survives being cancelled: what it took from its buffers reaches the log.

`DeliveryQueue.sync` takes the batches sealed since the last commit and the acknowledgements
out of their buffers, then hands them to the log in the I/O thread. A shutdown cancels the
commit loop at any point, also between the two; the log call must still happen, or the taken
batches are never logged (lost at the restart if they were still unsent) and the taken acks
never recorded (delivered batches sent again at the restart). Found through a drained
orphan queue that stayed on disk (`tests/integration/test_workers.py`).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.remote.delivery import DeliveryQueue
from collector.remote.metrics import QueueMetrics
from collector.remote.wal import WriteAheadLog
from collector.remote.walformat import Record


async def _never_sent(body: bytes, count: int, max_ts: int) -> str:
    raise AssertionError("nothing is sent in this test")


def _queue(directory: Path, io: ThreadPoolExecutor) -> DeliveryQueue:
    return DeliveryQueue(
        WriteAheadLog(directory, fsync=False),
        io=io,
        metrics=QueueMetrics(CollectorRegistry(), remote_name="r", url="http://x/"),
        send=_never_sent,
        num_shards=1,
        memory_samples=1_000_000,
    )


async def _cancelled_while_the_io_thread_is_busy(
    queue: DeliveryQueue, io: ThreadPoolExecutor
) -> None:
    """Start a group commit while the I/O thread is busy, cancel it, then free the thread."""
    gate = threading.Event()
    io.submit(gate.wait, 10)  # the log call queues behind this one
    task = asyncio.create_task(queue.sync())
    for _ in range(3):  # a few loop turns: it takes its buffers and waits for the I/O thread
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gate.set()
    await queue.flush(asyncio.get_running_loop().time())  # as a shutdown does: sync and close


async def test_batches_taken_by_a_cancelled_commit_are_logged(tmp_path: Path) -> None:
    io = ThreadPoolExecutor(1)
    queue = _queue(tmp_path, io)
    await queue.open()
    for shard_max_ts in range(5):
        queue.add(b"batch %d" % shard_max_ts, 10, 1000 + shard_max_ts, 0)
    await _cancelled_while_the_io_thread_is_busy(queue, io)
    reopened = WriteAheadLog(tmp_path, fsync=False)
    assert [info.seq for info in reopened.open().pending] == [0, 1, 2, 3, 4]
    reopened.close()
    io.shutdown()


async def test_acks_taken_by_a_cancelled_commit_are_recorded(tmp_path: Path) -> None:
    io = ThreadPoolExecutor(1)
    log = WriteAheadLog(tmp_path, fsync=False)
    log.open()
    log.commit([Record(seq, 7, 0, 10, 1000 + seq, b"body") for seq in range(4)])
    log.close()
    queue = _queue(tmp_path, io)
    await queue.open()  # replays the four records
    for seq in range(4):
        queue._settle(queue._live[seq])  # as a 2xx answer does
    await _cancelled_while_the_io_thread_is_busy(queue, io)
    reopened = WriteAheadLog(tmp_path, fsync=False)
    assert reopened.open().pending == []  # nothing to send again
    reopened.close()
    io.shutdown()


async def test_a_dispatcher_cancelled_while_senders_restart_stays_cancelled(
    tmp_path: Path,
) -> None:
    """A new epoch restarts the shard senders: the dispatcher cancels the old ones and waits
    for them. Cancelled during that wait (a shutdown), it must end there, not start new senders
    that would send beside the shutdown flush's own (a batch sent twice)."""

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # an old sender finishing its cleanup
            raise

    with ThreadPoolExecutor(1) as io:
        queue = _queue(tmp_path, io)
        started: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            old = [asyncio.create_task(slow_to_stop())]
            await asyncio.sleep(0)
            restart = asyncio.create_task(queue._restart_senders(tg, old, 1))
            await asyncio.sleep(0)  # it has cancelled the old sender and waits for it
            restart.cancel()
            try:
                started = await restart
            except asyncio.CancelledError:
                pass
            assert restart.cancelled()
            assert started == []
            for task in started:
                task.cancel()
            await asyncio.gather(*old, return_exceptions=True)
        await queue.flush(asyncio.get_running_loop().time())
