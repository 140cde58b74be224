"""Metric metadata for remote write 1.0 (spec §6.6): collected and sent beside the samples.

Pipeline position: a task of `collector.remote.writer.RemoteWriter` when
``metadata_config.send`` is on and the agent passes a source (the scrape manager's caches).
Every ``send_interval`` the deduplicated ``(type, family, help, unit)`` entries go out in chunks
of at most ``metadata_config.max_samples_per_send`` as metadata-only requests (field 3 only),
with the samples' retry rules. A destination sending remote write 2.0 gets its metadata inside
each series instead (`collector.remote.codec2`), so this loop skips it until a fallback to 1.0.
Metadata is state, re-sent every interval: it is never logged to
disk, and a refused chunk is only counted.

Prometheus counterpart: ``storage/remote/metadata_watcher.go``,
``QueueManager.AppendWatcherMetadata``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NoReturn

from collector.config import RemoteWriteConfig
from collector.remote.client import WriteClient
from collector.remote.codec import METRIC_TYPES, MetadataEntry, compress, encode_metadata_request
from collector.remote.metrics import QueueMetrics
from collector.remote.retry import FailureLog, next_backoff, retry_wait
from collector.remote.sender import ProtocolState

__all__ = ["MetadataSource", "metadata_entries", "send_metadata_forever"]

log = logging.getLogger(__name__)

MetadataSource = Callable[[], Iterable[tuple[str, str, str, str]]]
"""Returns ``(family, type, help, unit)`` entries."""


async def send_metadata_forever(
    config: RemoteWriteConfig,
    source: MetadataSource,
    client: WriteClient,
    *,
    metrics: QueueMetrics,
    failures: FailureLog,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    protocol: ProtocolState | None = None,
) -> NoReturn:
    """Every ``send_interval`` (the first one interval after start): collect and send, while
    ``protocol`` (if given) sends 1.0."""
    mc = config.metadata_config
    while True:
        await asyncio.sleep(mc.send_interval)
        if protocol is not None and protocol.v2:
            continue
        try:
            entries = metadata_entries(source())
        except Exception:  # a bug in the source must not kill the writer's TaskGroup
            log.exception("remote_write %s: cannot collect metadata", metrics.remote_name)
            continue
        step = max(mc.max_samples_per_send, 1)
        for start in range(0, len(entries), step):
            await _send(config, entries[start : start + step], client, metrics, failures, sleep)


async def _send(
    config: RemoteWriteConfig,
    entries: Sequence[MetadataEntry],
    client: WriteClient,
    m: QueueMetrics,
    failures: FailureLog,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """POST one metadata-only request until acknowledged or refused."""
    body = compress(encode_metadata_request(entries))
    q = config.queue_config
    backoff = q.min_backoff
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        started = loop.time()
        try:
            await client.send(body, attempt=attempt)
        except Exception as exc:  # the error tree, or a bug: the policy decides
            m.duration.observe(loop.time() - started)
            wait = retry_wait(
                exc, backoff=backoff, max_backoff=q.max_backoff, jitter=0.0, rand=random.random
            )
            if wait is None:
                m.metadata_failed.inc(len(entries))
                failures.failed(exc)
                return
            m.metadata_retried.inc(len(entries))
            failures.failed(exc, wait=wait)
            await sleep(wait)
            backoff = next_backoff(backoff, min_backoff=q.min_backoff, max_backoff=q.max_backoff)
            attempt += 1
            continue
        m.duration.observe(loop.time() - started)
        m.metadata.inc(len(entries))
        m.metadata_bytes.inc(len(body))
        failures.succeeded()
        return


def metadata_entries(source: Iterable[tuple[str, str, str, str]]) -> list[MetadataEntry]:
    """``(family, type, help, unit)`` -> deduplicated ``(MetricType, family, help, unit)``."""
    out: dict[MetadataEntry, None] = {}
    for family, kind, help_text, unit in source:
        out[METRIC_TYPES.get(kind, 0), family, help_text, unit] = None
    return list(out)
