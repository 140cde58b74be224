"""A request in flight when the shutdown cancels the senders is not sent a second time.

The receiver may already have read it; aborting it made the shutdown flush send the batch again,
and a receiver without deduplication (VictoriaMetrics by default) stored its samples twice. Now
the flush's sender awaits the same request; one still going when the flush ends is aborted and
its batch stays in the log for the next start.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.remote.delivery import DeliveryQueue
from collector.remote.metrics import QueueMetrics
from collector.remote.wal import WriteAheadLog


class Receiver:
    """A send function whose requests wait until the test lets them answer."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.answer = asyncio.Event()

    async def send(self, body: bytes, count: int, max_ts: int) -> str:
        self.requests.append(body)
        await self.answer.wait()
        return "sent"


def _queue(directory: Path, io: ThreadPoolExecutor, receiver: Receiver) -> DeliveryQueue:
    return DeliveryQueue(
        WriteAheadLog(directory, fsync=False),
        io=io,
        metrics=QueueMetrics(CollectorRegistry(), remote_name="r", url="http://x/"),
        send=receiver.send,
        num_shards=1,
        memory_samples=1_000_000,
    )


async def _dispatch(queue: DeliveryQueue) -> None:
    async with asyncio.TaskGroup() as tg:
        await queue.run(tg)


async def _cancelled_with_a_request_in_flight(
    directory: Path, io: ThreadPoolExecutor, receiver: Receiver
) -> DeliveryQueue:
    """A queue with one batch, its dispatcher run until the batch's request is in flight, then
    cancelled (the shutdown)."""
    queue = _queue(directory, io, receiver)
    await queue.open()
    queue.add(b"batch", 3, 1_000, 0)
    task = asyncio.create_task(_dispatch(queue))
    for _ in range(100):
        if receiver.requests:
            break
        await asyncio.sleep(0)
    assert receiver.requests == [b"batch"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return queue


def _pending(directory: Path) -> list[int]:
    wal = WriteAheadLog(directory, fsync=False)
    try:
        return [info.seq for info in wal.open().pending]
    finally:
        wal.close()


async def test_the_flush_awaits_the_request_a_cancelled_sender_left(tmp_path: Path) -> None:
    receiver = Receiver()
    with ThreadPoolExecutor(1) as io:
        queue = await _cancelled_with_a_request_in_flight(tmp_path, io, receiver)
        loop = asyncio.get_running_loop()
        loop.call_soon(receiver.answer.set)  # the receiver answers what it read
        await queue.flush(loop.time() + 60)
        assert receiver.requests == [b"batch"]  # once: not sent again by the flush
        assert queue.empty
        assert queue.backlog_samples == 0
    assert _pending(tmp_path) == []  # acknowledged in the log: not sent at the next start


async def test_a_request_still_in_flight_at_the_deadline_is_aborted_and_kept(
    tmp_path: Path,
) -> None:
    receiver = Receiver()  # never answers
    with ThreadPoolExecutor(1) as io:
        queue = await _cancelled_with_a_request_in_flight(tmp_path, io, receiver)
        loop = asyncio.get_running_loop()
        await queue.flush(loop.time() + 0.05)
        assert receiver.requests == [b"batch"]  # the flush waited on it, sent nothing new
        assert not queue.empty
    assert _pending(tmp_path) == [0]  # left for the next start
