"""Kubernetes service discovery (spec §2): informers on list/watch, every role.

The public surface:

- `make_discoverer` builds the `Discoverer` for one ``kubernetes_sd_configs`` entry; the
  discovery manager registers it as the ``kubernetes`` mechanism.
- `InformerPool` shares informers across discoverers by (API server, resource, namespace, label
  selector, field selector). It is a component: the agent makes one, runs it in its TaskGroups
  and passes it to `make_discoverer`; there is no process-wide pool.

Modules: ``wire`` (paths, list/watch shapes, Status errors), ``informer`` (list/watch into slim
stores), ``retry`` (relist, or back off and watch again), ``faults`` (each failure logged once,
in words that name its cause), ``pool`` (informers shared across discoverers), ``objects``
(wire TypedDicts and slim values), ``roles`` (pure object ->
TargetGroup: node, pod, service, ingress) and ``endpoints`` (the endpoints and endpointslice
roles), ``discoverer`` (one SD config), ``metrics`` (self-metrics, API-server load included).
Where the API server is and who we are to it is the floor below, `collector.kubernetes`
(``connection``, ``auth``), which discovery shares with the API-server proxy of scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.discoverer import Discoverer
from collector.discovery.kubernetes.discoverer import KubernetesDiscoverer
from collector.discovery.kubernetes.informer import InformerOptions
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.pool import InformerPool
from collector.kubernetes.connection import ConnectionSpec, connection_spec, read_own_namespace

__all__ = [
    "InformerOptions",
    "InformerPool",
    "KubernetesDiscoverer",
    "make_discoverer",
]


def make_discoverer(
    config: KubernetesSDConfig,
    *,
    registry: CollectorRegistry,
    kubeconfig: str | None = None,
    pool: InformerPool | None = None,
    connection: ConnectionSpec | None = None,
) -> Discoverer:
    """The discoverer for one ``kubernetes_sd_configs`` entry.

    Raises `collector.errors.DiscoveryError` when it cannot work at all (in-cluster without the
    service env, a missing kubeconfig, an unreadable own namespace); the manager logs and counts
    that and skips the config. ``pool`` is the agent's shared pool; without one the discoverer
    gets a private pool and serves it itself. ``connection`` overrides `connection_spec`
    (tests, the cluster membership).
    """
    spec = connection or connection_spec(config, kubeconfig=kubeconfig)
    spec.validate()
    names = tuple(dict.fromkeys(config.namespaces))
    if config.own_namespace:
        own = read_own_namespace(spec.sa_dir)
        names = tuple(dict.fromkeys((*names, own)))
    return KubernetesDiscoverer(
        config,
        connection=spec,
        pool=pool if pool is not None else InformerPool(),
        metrics=KubernetesMetrics.for_registry(registry),
        namespaces=names or ("",),
    )
