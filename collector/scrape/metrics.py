"""The scrape subsystem's self-metrics, with Prometheus's names, on an injected registry.

Names and labels follow ``scrape/metrics.go`` (spec §9) so dashboards keep working. Summaries:
``prometheus_client.Summary`` exports only ``_count`` and ``_sum`` (no quantiles), which is what
we use for ``prometheus_target_interval_length_seconds``, ``..._sync_length_seconds`` and
``..._reload_length_seconds``; the ``*_histogram_seconds`` twins carry the distribution.

Prometheus counterpart: ``scrape/metrics.go``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

__all__ = ["ScrapeMetrics"]


class ScrapeMetrics:
    """Every ``prometheus_target_*`` metric the scrape code updates."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        p = "prometheus_target_"
        self.interval_length = Summary(
            p + "interval_length_seconds",
            "Actual intervals between scrapes.",
            ["interval"],
            registry=r,
        )
        self.interval_length_histogram = Histogram(
            p + "interval_length_histogram_seconds",
            "Actual intervals between scrapes.",
            ["interval"],
            registry=r,
        )
        self.reload_length = Summary(
            p + "reload_length_seconds",
            "Actual interval to reload the scrape pool with a given configuration.",
            ["interval"],
            registry=r,
        )
        self.pools_total = Counter(
            p + "scrape_pools_total", "Total number of scrape pool creation attempts.", registry=r
        )
        self.pools_failed = Counter(
            p + "scrape_pools_failed_total",
            "Total number of scrape pool creations that failed.",
            registry=r,
        )
        self.pool_reloads = Counter(
            p + "scrape_pool_reloads_total",
            "Total number of scrape pool reloads.",
            registry=r,
        )
        self.pool_reloads_failed = Counter(
            p + "scrape_pool_reloads_failed_total",
            "Total number of failed scrape pool reloads.",
            registry=r,
        )
        self.exceeded_target_limit = Counter(
            p + "scrape_pool_exceeded_target_limit_total",
            (
                "Total number of times scrape pools hit the target limit, du"
                "ring sync or config reload."
            ),
            registry=r,
        )
        self.target_limit = Gauge(
            p + "scrape_pool_target_limit",
            "Maximum number of targets allowed in this scrape pool.",
            ["scrape_job"],
            registry=r,
        )
        self.pool_targets = Gauge(
            p + "scrape_pool_targets",
            "Current number of targets in this scrape pool.",
            ["scrape_job"],
            registry=r,
        )
        self.sync_total = Counter(
            p + "scrape_pool_sync_total",
            "Total number of syncs that were executed on a scrape pool.",
            ["scrape_job"],
            registry=r,
        )
        self.sync_length = Summary(
            p + "sync_length_seconds",
            "Actual interval to sync the scrape pool.",
            ["scrape_job"],
            registry=r,
        )
        self.sync_length_histogram = Histogram(
            p + "sync_length_histogram_seconds",
            "Actual interval to sync the scrape pool.",
            ["scrape_job"],
            registry=r,
        )
        self.sync_failed = Counter(
            p + "sync_failed_total",
            "Total number of target sync failures.",
            ["scrape_job"],
            registry=r,
        )
        self.exceeded_body_size_limit = Counter(
            p + "scrapes_exceeded_body_size_limit_total",
            "Total number of scrapes that hit the body size limit",
            registry=r,
        )
        self.cache_flush_forced = Counter(
            p + "scrapes_cache_flush_forced_total",
            (
                "How many times a scrape cache was flushed due to getting bi"
                "g while scrapes are failing."
            ),
            registry=r,
        )
        self.exceeded_sample_limit = Counter(
            p + "scrapes_exceeded_sample_limit_total",
            "Total number of scrapes that hit the sample limit and were rejected.",
            registry=r,
        )
        self.exceeded_bucket_limit = Counter(
            p + "scrapes_exceeded_native_histogram_bucket_limit_total",
            "Total number of scrapes that hit the native histogram bucket limit and were rejected.",
            registry=r,
        )
        self.sample_duplicate = Counter(
            p + "scrapes_sample_duplicate_timestamp_total",
            "Total number of samples rejected due to duplicate timestamps but different values.",
            registry=r,
        )
        self.sample_out_of_order = Counter(
            p + "scrapes_sample_out_of_order_total",
            "Total number of samples rejected due to not being out of the expected order.",
            registry=r,
        )
        self.sample_out_of_bounds = Counter(
            p + "scrapes_sample_out_of_bounds_total",
            "Total number of samples rejected due to timestamp falling outside of the time bounds.",
            registry=r,
        )
        self.exceeded_label_limits = Counter(
            p + "scrape_pool_exceeded_label_limits_total",
            (
                "Total number of times scrape pools hit the label limits, du"
                "ring sync or config reload."
            ),
            registry=r,
        )
        self.scrapes_total = Counter(
            "collector_scrapes_total",
            "Scrape attempts by outcome.",
            ["scrape_job", "result"],
            registry=r,
        )
