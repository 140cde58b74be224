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

Remote write 2.0 (``protobuf_message: io.prometheus.write.v2.Request``): the batch, a 1.0 body
from the write-ahead log, is turned into a 2.0 body once per send (`collector.remote.codec2`).
The receiver's ``X-Prometheus-Remote-Write-*-Written`` headers are read: fewer samples and
histograms written than the 2.0 body holds (the transcoder's count: a batch's own count also
counts its exemplar series, which receivers count apart) is a partial write
(``collector_remote_write_partial_writes_total``; the rest counted failed,
``reason="partial_write"``). A 415, or a 2xx carrying none of those headers (a 1.0
receiver that decoded the 2.0 body as an empty 1.0 message, as Prometheus 2.x does; the spec
says to treat it as a 415), switches the destination to 1.0 for the rest of the process
(`ProtocolState`, logged once): the same batch is sent again at once as the 1.0 body it was, so
nothing is lost. Prometheus 3.x does not fall back (it drops such a batch as failed); the 2.0
spec allows it (§2.x vs 1.x Compatibility). A 400 is not a reason to fall back.

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``sendSamplesWithBackoff``,
``sendV2SamplesWithBackoff``), ``storage/remote/stats.go``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from collector.errors import NonRecoverableWriteError, RecoverableWriteError
from collector.remote.client import RefusedWrite, WriteClient, Written
from collector.remote.codec import DecodeError
from collector.remote.codec2 import V2Transcoder
from collector.remote.metrics import QueueMetrics
from collector.remote.retry import FailureLog, next_backoff, retry_wait

__all__ = ["BatchSender", "ProtocolState", "SendStats"]

log = logging.getLogger(__name__)


class ProtocolState:
    """Which message one destination sends: 2.0 as configured until a receiver refuses it."""

    __slots__ = ("configured_v2", "fallback_reason", "v2")

    def __init__(self, configured_v2: bool) -> None:
        self.configured_v2 = configured_v2
        self.v2 = configured_v2
        """Send 2.0 now (False after a fallback)."""
        self.fallback_reason = ""
        """Why it sends 1.0 although 2.0 is configured (empty while it does not)."""

    @property
    def version(self) -> str:
        """``"2.0"`` or ``"1.0"``: what is sent now."""
        return "2.0" if self.v2 else "1.0"

    def fall_back(self, reason: str, remote_name: str, metrics: QueueMetrics) -> None:
        """Send 1.0 from now on; logged and shown once (shards may meet the refusal together)."""
        if not self.v2:
            return
        self.v2 = False
        self.fallback_reason = reason
        metrics.v1_fallback.set(1)
        log.warning(
            "remote_write %s: the receiver does not take remote write 2.0 (%s); sending remote "
            "write 1.0 to it from now on (until the next restart)",
            remote_name,
            reason,
        )


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
        protocol: ProtocolState | None = None,
        transcoder: V2Transcoder | None = None,
    ) -> None:
        """``protocol`` and ``transcoder`` (both or neither) send 2.0 while ``protocol.v2``."""
        self._client = client
        self._protocol = protocol if protocol is not None else ProtocolState(False)
        self._transcoder = transcoder
        self._partial_logged_at = float("-inf")
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
        protocol = self._protocol
        wire, v2 = body, False
        # What the receiver's written counts are held to: the batch's count for 1.0; for 2.0
        # the transcoder's (samples and histograms; a batch also counts its exemplars).
        sent = count
        while True:
            if self._age_limit_ms and max_ts < int(self._wall() * 1000) - self._age_limit_ms:
                m.dropped_too_old.inc(count)
                m.lost("too_old", count)
                self._done(count, began, loop.time())
                return "too_old"
            if protocol.v2 != v2:
                # First attempt, or another shard fell back while this one was retrying.
                if protocol.v2:
                    encoded = self._encode_v2(body, count)
                    if encoded is None:
                        self._done(count, began, loop.time())
                        return "corrupt"
                    (wire, sent), v2 = encoded, True
                else:
                    wire, v2, sent = body, False, count
            started = loop.time()
            try:
                written = await self._client.send(wire, attempt=attempt, v2=v2)
            except Exception as exc:  # the error tree, or a bug: retry_wait decides (rule 3)
                m.duration.observe(loop.time() - started)
                if v2 and isinstance(exc, NonRecoverableWriteError) and exc.status == 415:
                    protocol.fall_back(f"HTTP 415: {exc}", m.remote_name, m)
                    continue
                wait = retry_wait(
                    exc,
                    backoff=backoff,
                    max_backoff=self._max_backoff,
                    jitter=self._jitter,
                    rand=self._rand,
                )
                if wait is None:
                    reason = _reason(exc)
                    refused = count
                    if v2 and isinstance(exc, RefusedWrite) and exc.written.confirmed:
                        # A 4xx partial write: what the receiver wrote is not lost.
                        refused = max(sent - exc.written.all_samples, 0)
                        m.samples.inc(count - refused)
                        m.partial_writes.inc()
                    m.failed.inc(refused)
                    m.lost(reason, refused)
                    self._failures.failed(exc, dropped=refused)
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
            if v2 and count and not written.confirmed:
                protocol.fall_back(
                    "it answered a 2.0 request with 2xx but no X-Prometheus-Remote-Write-*-Written "
                    "header, as a 1.0 receiver that read an empty request does",
                    m.remote_name,
                    m,
                )
                continue
            self._failures.succeeded()
            self._done(count, began, now)
            m.bytes.inc(len(wire))
            if v2 and written.all_samples < sent:
                self._partial(written, sent, now)
            else:
                m.samples.inc(sent)
            if max_ts / 1000.0 > self.stats.highest_sent_s:
                self.stats.highest_sent_s = max_ts / 1000.0
                m.queue_highest_sent.set(self.stats.highest_sent_s)
            return ""

    def _encode_v2(self, body: bytes, count: int) -> tuple[bytes, int] | None:
        """The 2.0 body of a batch and the samples and histograms in it; None (counted,
        logged) if its 1.0 body cannot be read."""
        assert self._transcoder is not None, "a 2.0 destination has a transcoder"
        try:
            wire, sent = self._transcoder.transcode(body)
        except DecodeError as exc:
            m = self._m
            m.failed.inc(count)
            m.lost("corrupt", count)
            log.error(
                "remote_write %s: a batch of %d samples cannot be encoded as remote write 2.0: %s",
                m.remote_name,
                count,
                exc,
            )
            return None
        return wire, sent

    def _partial(self, written: Written, count: int, now: float) -> None:
        """A 2xx whose headers count fewer samples than were sent: the rest are lost (logged
        at most once a minute: the counters tell the rest)."""
        m = self._m
        missing = count - written.all_samples
        m.partial_writes.inc()
        m.samples.inc(written.all_samples)
        m.failed.inc(missing)
        m.lost("partial_write", missing)
        if now - self._partial_logged_at < 60.0:
            return
        self._partial_logged_at = now
        log.warning(
            "remote_write %s: partial write: the receiver wrote %d of %d samples",
            m.remote_name,
            written.all_samples,
            count,
        )

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
