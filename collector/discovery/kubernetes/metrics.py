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
        # Reasons: ``expired`` (410 Gone: a relist follows), ``closed`` (the server ended the
        # watch at the timeoutSeconds we asked for), ``stalled`` (our read deadline passed with
        # no byte), and the errors: ``disconnected``, ``http_<code>``, ``bad_line``,
        # ``unauthorized``, ``forbidden``, ``not_ready`` (a 403 while /readyz says the API
        # server is starting: faults.py), ``internal`` (a bug of ours; it relists). Finer than
        # "410 / timeout / error" because each asks for a different fix; sum by reason for the
        # coarse view.
        self.watch_restarts = Counter(
            "collector_kubernetes_watch_restarts_total",
            "Watch requests restarted, by resource and reason (expired = 410, closed = the "
            "server's timeout, stalled = our read deadline, the rest are errors).",
            ["resource", "reason"],
            registry=registry,
        )
        self.relists = Counter(
            "collector_kubernetes_relists_total",
            "Full LISTs after the first, by resource and reason.",
            ["resource", "reason"],
            registry=registry,
        )
        # API-server load (issue 11): what each resource costs the server and the network.
        self.watches_open = Gauge(
            "collector_kubernetes_watches_open",
            "WATCH requests currently streaming, by resource.",
            ["resource"],
            registry=registry,
        )
        self.list_requests = Counter(
            "collector_kubernetes_list_requests_total",
            "LIST requests sent (each page is one), by resource.",
            ["resource"],
            registry=registry,
        )
        self.received_bytes = Counter(
            "collector_kubernetes_received_bytes_total",
            "Response body bytes received from LISTs and WATCHes, by resource.",
            ["resource"],
            registry=registry,
        )
        self.received_objects = Counter(
            "collector_kubernetes_received_objects_total",
            "Objects received: LIST items plus ADDED/MODIFIED/DELETED watch events, by resource.",
            ["resource"],
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
