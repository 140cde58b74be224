"""Remote-write self-metrics, on an injected ``CollectorRegistry`` (never the global one).

Names and labels are Prometheus's (spec §9: prefix ``prometheus_remote_storage_``, labels
``remote_name`` and ``url``) so existing dashboards and alerts work; the disk queue, which
Prometheus does not have, adds ``collector_disk_queue_*{remote_name}``.

Several writers share one registry, and a registry refuses a name twice, so the metric families
are created once per registry (`_families`) and each writer takes its labelled children
(`QueueMetrics`).

Prometheus counterpart: ``storage/remote/queue_manager.go`` (``newQueueManagerMetrics``),
``storage/remote/write.go``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DROP_REASONS", "QueueMetrics", "highest_timestamp_gauge"]

_NS = "prometheus_remote_storage"
_LABELS = ("remote_name", "url")

DROP_REASONS = ("too_old", "dropped_series", "unintentionally_dropped_series")
"""The ``reason`` values of ``samples_dropped_total`` this writer produces."""

_SEND_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    25.0,
    60.0,
    120.0,
    300.0,
    float("inf"),
)
"""prometheus_client's default buckets plus 25, 60, 120, 300 s, like Prometheus."""


@dataclass(frozen=True, slots=True)
class _Families:
    samples: Counter
    failed: Counter
    retried: Counter
    dropped: Counter
    pending: Gauge
    shards: Gauge
    shards_max: Gauge
    shards_min: Gauge
    shards_desired: Gauge
    shard_capacity: Gauge
    queue_highest_sent: Gauge
    queue_highest: Gauge
    highest: Gauge
    samples_in: Counter
    duration: Histogram
    bytes: Counter
    enqueue_retries: Counter
    max_samples_per_send: Gauge
    metadata: Counter
    metadata_failed: Counter
    metadata_retried: Counter
    metadata_bytes: Counter
    disk_bytes: Gauge
    disk_segments: Gauge
    disk_corruptions: Counter
    lost: Counter
    partial_writes: Counter
    v1_fallback: Gauge
    wal_sync: Histogram
    highest_seen: list[float]
    """The global highest timestamp as a float (the gauge has no public getter)."""


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _families(registry: CollectorRegistry) -> _Families:
    """Create (once per registry) the metric families every queue shares."""
    found = _BY_REGISTRY.get(registry)
    if found is not None:
        return found

    def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
        return Counter(f"{_NS}_{name}", doc, (*_LABELS, *extra), registry=registry)

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(f"{_NS}_{name}", doc, _LABELS, registry=registry)

    families = _Families(
        samples=counter("samples_total", "Total number of samples sent to remote storage."),
        failed=counter(
            "samples_failed_total",
            "Total number of samples which failed on send to remote storage, non-recoverable.",
        ),
        retried=counter(
            "samples_retried_total",
            "Total number of samples which failed on send to remote storage but were retried.",
        ),
        dropped=counter(
            "samples_dropped_total",
            "Total number of samples which were dropped before being sent to remote storage.",
            ("reason",),
        ),
        pending=gauge(
            "samples_pending", "The number of samples pending in the queues shards to be sent."
        ),
        shards=gauge("shards", "The number of shards used for parallel sending."),
        shards_max=gauge("shards_max", "The maximum number of shards that the queue may run."),
        shards_min=gauge("shards_min", "The minimum number of shards that the queue may run."),
        shards_desired=gauge(
            "shards_desired", "The number of shards the queue would like to run (unrounded)."
        ),
        shard_capacity=gauge(
            "shard_capacity", "The capacity of each shard of the queue, in samples."
        ),
        queue_highest_sent=gauge(
            "queue_highest_sent_timestamp_seconds",
            "Timestamp from a WAL sample, the highest successfully sent by this queue.",
        ),
        queue_highest=gauge(
            "queue_highest_timestamp_seconds",
            "Highest timestamp that was enqueued by this queue.",
        ),
        highest=highest_timestamp_gauge(registry),
        samples_in=Counter(
            f"{_NS}_samples_in_total",
            "Samples in to remote storage, compare to samples out for queue managers.",
            registry=registry,
        ),
        duration=Histogram(
            f"{_NS}_sent_batch_duration_seconds",
            "Duration of send calls to the remote storage.",
            _LABELS,
            buckets=_SEND_BUCKETS,
            registry=registry,
        ),
        bytes=counter(
            "bytes_total",
            "The total number of bytes of data (not metadata) sent by the queue after compression.",
        ),
        enqueue_retries=counter(
            "enqueue_retries_total",
            "Total number of times enqueue has failed because a shard's queue was full.",
        ),
        max_samples_per_send=gauge(
            "max_samples_per_send",
            "The maximum number of samples to be sent, in a single request, to the remote storage.",
        ),
        metadata=counter("metadata_total", "Total number of metadata entries sent."),
        metadata_failed=counter(
            "metadata_failed_total", "Total number of metadata entries which failed on send."
        ),
        metadata_retried=counter(
            "metadata_retried_total",
            "Total number of metadata entries which failed on send to remote but were retried.",
        ),
        metadata_bytes=counter(
            "metadata_bytes_total",
            "The total number of bytes of metadata sent by the queue after compression.",
        ),
        disk_bytes=Gauge(
            "collector_disk_queue_bytes",
            "Bytes held by the disk queue's segment files.",
            ("remote_name",),
            registry=registry,
        ),
        disk_segments=Gauge(
            "collector_disk_queue_segments",
            "Segment files in the disk queue.",
            ("remote_name",),
            registry=registry,
        ),
        disk_corruptions=Counter(
            "collector_disk_queue_corruptions_total",
            "Corrupt write-ahead log records found on recovery or re-read (each one skipped).",
            ("remote_name",),
            registry=registry,
        ),
        lost=Counter(
            "collector_remote_write_dropped_samples_total",
            "Samples that will never reach the receiver, by reason: http_<status> (refused), "
            "too_old (sample_age_limit), disk_full (write-ahead log cap), corrupt (unreadable "
            "in the log), unknown_series, partial_write (a 2.0 receiver wrote fewer than sent).",
            ("remote_name", "reason"),
            registry=registry,
        ),
        partial_writes=Counter(
            "collector_remote_write_partial_writes_total",
            "Remote write 2.0 requests whose X-Prometheus-Remote-Write-Samples-Written header "
            "counts fewer samples than were sent.",
            ("remote_name",),
            registry=registry,
        ),
        v1_fallback=Gauge(
            "collector_remote_write_v1_fallback",
            "1 when a destination configured for remote write 2.0 sends 1.0 because its receiver "
            "refused 2.0 (HTTP 415, or 2xx without the written-count headers).",
            ("remote_name",),
            registry=registry,
        ),
        wal_sync=Histogram(
            "collector_wal_sync_duration_seconds",
            "Duration of a group commit of the write-ahead log (seal, write, fsync, acks).",
            ("remote_name",),
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        ),
        highest_seen=[0.0],
    )
    _BY_REGISTRY[registry] = families
    return families


def highest_timestamp_gauge(registry: CollectorRegistry) -> Gauge:
    """``prometheus_remote_storage_highest_timestamp_in_seconds`` (global, no labels)."""
    existing = _BY_REGISTRY.get(registry)
    if existing is not None:
        return existing.highest
    return Gauge(
        f"{_NS}_highest_timestamp_in_seconds",
        "Highest timestamp that has come into the remote storage via the Appender interface, "
        "in seconds since epoch.",
        registry=registry,
    )


class QueueMetrics:
    """The labelled children one queue (``remote_name``, ``url``) updates."""

    __slots__ = (
        "_families",
        "_lost",
        "_queue_highest_seen",
        "bytes",
        "disk_bytes",
        "disk_corruptions",
        "disk_segments",
        "dropped_series",
        "dropped_too_old",
        "dropped_unintentional",
        "duration",
        "enqueue_retries",
        "failed",
        "max_samples_per_send",
        "metadata",
        "metadata_bytes",
        "metadata_failed",
        "metadata_retried",
        "partial_writes",
        "pending",
        "queue_highest",
        "queue_highest_sent",
        "remote_name",
        "retried",
        "samples",
        "samples_in",
        "shard_capacity",
        "shards",
        "shards_desired",
        "shards_max",
        "shards_min",
        "v1_fallback",
        "wal_sync_duration",
    )

    def __init__(self, registry: CollectorRegistry, *, remote_name: str, url: str) -> None:
        f = _families(registry)
        lv = (remote_name, url)
        self.samples = f.samples.labels(*lv)
        self.failed = f.failed.labels(*lv)
        self.retried = f.retried.labels(*lv)
        self.dropped_series = f.dropped.labels(*lv, "dropped_series")
        self.dropped_unintentional = f.dropped.labels(*lv, "unintentionally_dropped_series")
        self.dropped_too_old = f.dropped.labels(*lv, "too_old")
        self.pending = f.pending.labels(*lv)
        self.shards = f.shards.labels(*lv)
        self.shards_max = f.shards_max.labels(*lv)
        self.shards_min = f.shards_min.labels(*lv)
        self.shards_desired = f.shards_desired.labels(*lv)
        self.shard_capacity = f.shard_capacity.labels(*lv)
        self.queue_highest_sent = f.queue_highest_sent.labels(*lv)
        self.queue_highest = f.queue_highest.labels(*lv)
        self.duration = f.duration.labels(*lv)
        self.bytes = f.bytes.labels(*lv)
        self.enqueue_retries = f.enqueue_retries.labels(*lv)
        self.max_samples_per_send = f.max_samples_per_send.labels(*lv)
        self.metadata = f.metadata.labels(*lv)
        self.metadata_failed = f.metadata_failed.labels(*lv)
        self.metadata_retried = f.metadata_retried.labels(*lv)
        self.metadata_bytes = f.metadata_bytes.labels(*lv)
        self.disk_bytes = f.disk_bytes.labels(remote_name)
        self.disk_segments = f.disk_segments.labels(remote_name)
        self.disk_corruptions = f.disk_corruptions.labels(remote_name)
        self.wal_sync_duration = f.wal_sync.labels(remote_name)
        self.partial_writes = f.partial_writes.labels(remote_name)
        self.v1_fallback = f.v1_fallback.labels(remote_name)
        self.remote_name = remote_name
        self._lost = f.lost
        self.samples_in = f.samples_in
        self._families = f
        self._queue_highest_seen = 0.0

    def lost(self, reason: str, samples: int) -> None:
        """Count ``samples`` that will never be delivered, by ``reason`` (INTERFACES.md)."""
        self._lost.labels(self.remote_name, reason).inc(samples)

    def observe_highest_in(self, timestamp_s: float) -> None:
        """Raise the global and per-queue highest enqueued timestamps (never lowers them)."""
        seen = self._families.highest_seen
        if timestamp_s > seen[0]:
            seen[0] = timestamp_s
            self._families.highest.set(timestamp_s)
        if timestamp_s > self._queue_highest_seen:
            self._queue_highest_seen = timestamp_s
            self.queue_highest.set(timestamp_s)
