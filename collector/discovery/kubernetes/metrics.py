"""Self-metrics of Kubernetes discovery, on an injected `CollectorRegistry` (spec §2.6).

Prometheus names where Prometheus has one (``prometheus_sd_kubernetes_*``), ``collector_*`` for
the informer internals Prometheus does not expose. One `KubernetesMetrics` exists per registry:
every discoverer and informer created against the same registry shares it.

Prometheus counterpart: ``discovery/kubernetes/metrics.go``.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EVENTS", "ROLES", "KubernetesMetrics"]

ROLES = ("endpoints", "endpointslice", "node", "pod", "service", "ingress")
EVENTS = ("add", "delete", "update")

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, KubernetesMetrics] = (
    weakref.WeakKeyDictionary()
)


class KubernetesMetrics:
    """The metric families; use `KubernetesMetrics.for_registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "prometheus_sd_kubernetes_events_total",
            "The number of Kubernetes events handled.",
            ["role", "event"],
            registry=registry,
        )
        for role in ROLES:
            for event in EVENTS:
                self.events.labels(role, event)
        self.failures = Counter(
            "prometheus_sd_kubernetes_failures_total",
            "The number of failed WATCH/LIST requests.",
            registry=registry,
        )
        self.watch_restarts = Counter(
            "collector_kubernetes_watch_restarts_total",
            "Watch requests restarted, by resource and reason.",
            ["resource", "reason"],
            registry=registry,
        )
        self.relists = Counter(
            "collector_kubernetes_relists_total",
            "Full LISTs after the first, by resource and reason.",
            ["resource", "reason"],
            registry=registry,
        )
        self.objects = Gauge(
            "collector_kubernetes_informer_objects",
            "Objects held by informers, by resource.",
            ["resource"],
            registry=registry,
        )
        self.last_sync = Gauge(
            "collector_kubernetes_last_sync_timestamp_seconds",
            "When an informer of this resource last completed a LIST.",
            ["resource"],
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> KubernetesMetrics:
        """The one instance registered on ``registry`` (created on first use)."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = cls(registry)
            _BY_REGISTRY[registry] = metrics
        return metrics
