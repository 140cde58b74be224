"""`BatchSender`: POST one sealed batch until the receiver takes it or refuses it for good.

Pipeline position: called by each shard loop of `collector.remote.delivery` for the batch at the
head of its queue; the delivery queue acknowledges the batch in the write-ahead log once this
returns. Cancellation (shutdown, reshard) leaves the batch unacknowledged, so it is sent again
later: delivery is at-least-once.

The policy (`collector.remote.retry.retry_wait`): transport errors, 5xx and 429 are retried with
jittered exponential backoff, ``Retry-After`` being a floor; other statuses drop the batch and
count it by reason (``collector_remote_write_dropped_samples_total{reason="http_400"}``) as well
as in Prometheus's ``samples_failed_total``. Failures are logged through one `FailureLog` per
destination.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``sendSamplesWithBackoff``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from collector.errors import NonRecoverableWriteError, RecoverableWriteError
from collector.remote.client import WriteClient
from collector.remote.metrics import QueueMetrics
from collector.remote.retry import FailureLog, next_backoff, retry_wait

__all__ = ["BatchSender", "SendStats"]


class SendStats:
    """Counts the resharding formula reads (spec §6.4), folded into its EWMAs every interval."""

    __slots__ = ("highest_sent_s", "last_done", "out", "out_duration", "retry_until")

    def __init__(self) -> None:
        self.out = 0
        """Samples whose send completed (sent or refused) since the last fold."""
        self.out_duration = 0.0
        """Seconds spent sending them, retries included."""
        self.last_done: float | None = None
        """Loop time of the last completed send."""
        self.retry_until = 0.0
        """No resharding before this loop time: a send is retrying (spec §6.2)."""
        self.highest_sent_s = 0.0
        """Highest sample timestamp acknowledged, seconds."""


class BatchSender:
    """Sends batches for one destination with the retry policy; shared by its shards."""

    def __init__(
        self,
        client: WriteClient,
        *,
        metrics: QueueMetrics,
        failures: FailureLog,
        min_backoff: float,
        max_backoff: float,
        age_limit_ms: int,
        wall_clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._m = metrics
        self._failures = failures
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._age_limit_ms = age_limit_ms
        self._wall = wall_clock
        self._sleep = sleep
        self._jitter = jitter
        self._rand = rand
        self.stats = SendStats()

    async def send(self, body: bytes, count: int, max_ts: int) -> str:
        """POST ``body`` until acknowledged or refused: ``""`` when sent, else the reason the
        samples were dropped (``too_old``, ``http_400``, ...), already counted."""
        m = self._m
        loop = asyncio.get_running_loop()
        backoff = self._min_backoff
        attempt = 0
        began = loop.time()
        while True:
            if self._age_limit_ms and max_ts < int(self._wall() * 1000) - self._age_limit_ms:
                m.dropped_too_old.inc(count)
                m.lost("too_old", count)
                self._done(count, began, loop.time())
                return "too_old"
            started = loop.time()
            try:
                await self._client.send(body, attempt=attempt)
            except Exception as exc:  # the error tree, or a bug: retry_wait decides (rule 3)
                m.duration.observe(loop.time() - started)
                wait = retry_wait(
                    exc,
                    backoff=backoff,
                    max_backoff=self._max_backoff,
                    jitter=self._jitter,
                    rand=self._rand,
                )
                if wait is None:
                    reason = _reason(exc)
                    m.failed.inc(count)
                    m.lost(reason, count)
                    self._failures.failed(exc, dropped=count)
                    self._done(count, began, loop.time())
                    return reason
                m.retried.inc(count)
                self._failures.failed(exc, wait=wait)
                self.stats.retry_until = max(self.stats.retry_until, loop.time() + 2 * wait)
                await self._sleep(wait)
                backoff = next_backoff(
                    backoff, min_backoff=self._min_backoff, max_backoff=self._max_backoff
                )
                attempt += 1
                continue
            now = loop.time()
            m.duration.observe(now - started)
            m.samples.inc(count)
            m.bytes.inc(len(body))
            self._failures.succeeded()
            self._done(count, began, now)
            if max_ts / 1000.0 > self.stats.highest_sent_s:
                self.stats.highest_sent_s = max_ts / 1000.0
                m.queue_highest_sent.set(self.stats.highest_sent_s)
            return ""

    def _done(self, count: int, began: float, now: float) -> None:
        stats = self.stats
        stats.out += count
        stats.out_duration += now - began
        stats.last_done = now


def _reason(exc: BaseException) -> str:
    """The ``reason`` label of a refused batch: ``http_<status>`` when the receiver said one."""
    if isinstance(exc, NonRecoverableWriteError) and exc.status:
        return f"http_{exc.status}"
    if isinstance(exc, RecoverableWriteError):  # pragma: no cover - retry_wait retries these
        return "recoverable"
    return "refused"
