"""Discovery self-metrics, built once per manager on an injected registry (spec §1.6).

The manager metrics carry the manager name as label ``name`` (``"scrape"``; Prometheus also runs
a ``"notify"`` manager). prometheus_client has no const labels, so ``name`` is an ordinary label
that this module always fills in. Refresh, file and HTTP metrics have Prometheus's label sets.

``prometheus_sd_refresh_duration_seconds`` is a Summary; prometheus_client summaries expose only
``_count`` and ``_sum``, not Prometheus's 0.5/0.9/0.99 quantiles (the histogram twin
``prometheus_sd_refresh_duration_histogram_seconds`` is there for percentiles).

Prometheus counterpart: ``discovery/metrics.go``, ``discovery/metrics_refresh.go``,
``discovery/file/metrics.go``, ``discovery/http/metrics.go``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

__all__ = ["DiscoveryMetrics", "FileSDMetrics", "RefreshMetrics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshMetrics:
    """The refresh metrics of one provider: children already bound to ``mechanism`` / ``config``."""

    failures: Counter
    """``prometheus_sd_refresh_failures_total{mechanism,config}``."""
    duration: Summary
    """``prometheus_sd_refresh_duration_seconds{mechanism,config}``."""
    duration_histogram: Histogram
    """``prometheus_sd_refresh_duration_histogram_seconds{mechanism}``."""

    def observe(self, seconds: float) -> None:
        """Record one refresh that took ``seconds``."""
        self.duration.observe(seconds)
        self.duration_histogram.observe(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSDMetrics:
    """What a file provider reports besides its refresh metrics."""

    read_errors: Counter
    """``prometheus_sd_file_read_errors_total``: a file that could not be read or parsed."""
    scan_duration: Summary
    """``prometheus_sd_file_scan_duration_seconds``: one pass over the matched files."""
    mtime: Gauge
    """``prometheus_sd_file_mtime_seconds{filename}`` (the parent; children per file)."""


class DiscoveryMetrics:
    """Every ``prometheus_sd_*`` metric of one discovery manager."""

    def __init__(self, registry: CollectorRegistry, *, name: str = "scrape") -> None:
        self.name = name
        self._discovered_targets = Gauge(
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets.",
            ["name", "config"],
            registry=registry,
        )
        self._last_update = Gauge(
            "prometheus_sd_last_update_timestamp_seconds",
            "Timestamp of the last update sent to the SD consumers.",
            ["name", "config"],
            registry=registry,
        )
        self.received_updates = Counter(
            "prometheus_sd_received_updates",
            "Total number of update events received from the SD providers.",
            ["name"],
            registry=registry,
        ).labels(name=name)
        self.updates = Counter(
            "prometheus_sd_updates",
            "Total number of update events sent to the SD consumers.",
            ["name"],
            registry=registry,
        ).labels(name=name)
        self.updates_delayed = Counter(
            "prometheus_sd_updates_delayed",
            "Total number of update events that couldn't be sent immediately.",
            ["name"],
            registry=registry,
        ).labels(name=name)
        self.failed_configs = Gauge(
            "prometheus_sd_failed_configs",
            "Current number of service discovery configurations that failed to load.",
            ["name"],
            registry=registry,
        ).labels(name=name)
        self._refresh_failures = Counter(
            "prometheus_sd_refresh_failures",
            "Number of refresh failures for the given SD mechanism.",
            ["mechanism", "config"],
            registry=registry,
        )
        self._refresh_duration = Summary(
            "prometheus_sd_refresh_duration_seconds",
            "The duration of a refresh for the given SD mechanism.",
            ["mechanism", "config"],
            registry=registry,
        )
        self._refresh_histogram = Histogram(
            "prometheus_sd_refresh_duration_histogram_seconds",
            "The duration of a refresh for the given SD mechanism.",
            ["mechanism"],
            buckets=(0.01, 0.1, 1.0, 10.0),
            registry=registry,
        )
        self.file = FileSDMetrics(
            read_errors=Counter(
                "prometheus_sd_file_read_errors",
                "The number of File-SD read errors.",
                registry=registry,
            ),
            scan_duration=Summary(
                "prometheus_sd_file_scan_duration_seconds",
                "The duration of the File-SD scan in seconds.",
                registry=registry,
            ),
            mtime=Gauge(
                "prometheus_sd_file_mtime_seconds",
                "Timestamp (mtime) of files read by FileSD.",
                ["filename"],
                registry=registry,
            ),
        )
        self.http_failures = Counter(
            "prometheus_sd_http_failures",
            "Number of HTTP service discovery refresh failures.",
            registry=registry,
        )

    def refresh(self, *, mechanism: str, config: str) -> RefreshMetrics:
        """The refresh metrics of one provider; ``config`` is the job that created it."""
        return RefreshMetrics(
            failures=self._refresh_failures.labels(mechanism=mechanism, config=config),
            duration=self._refresh_duration.labels(mechanism=mechanism, config=config),
            duration_histogram=self._refresh_histogram.labels(mechanism=mechanism),
        )

    def remove_refresh(self, *, mechanism: str, config: str) -> None:
        """Drop a cancelled provider's refresh series (spec §1.5 step 2)."""
        for vec in (self._refresh_failures, self._refresh_duration):
            try:
                vec.remove(mechanism, config)
            except KeyError:
                pass

    def set_job(self, job: str, *, targets: int, timestamp: float) -> None:
        """Record what the last send said about ``job``."""
        self._discovered_targets.labels(name=self.name, config=job).set(targets)
        self._last_update.labels(name=self.name, config=job).set(timestamp)

    def remove_job(self, job: str) -> None:
        """Drop the per-job gauges of a job that is no longer configured."""
        for vec in (self._discovered_targets, self._last_update):
            try:
                vec.remove(self.name, job)
            except KeyError:
                pass
