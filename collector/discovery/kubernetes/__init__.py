"""Kubernetes service discovery (spec §2): informers on list/watch, every role.

The public surface:

- `make_discoverer` builds the `Discoverer` for one ``kubernetes_sd_configs`` entry; the
  discovery manager registers it as the ``kubernetes`` mechanism.
- `InformerPool` shares informers across discoverers by (API server, resource, namespace, label
  selector, field selector); `default_pool` is the process-wide one.

Modules: ``client`` (where and who), ``wire`` (paths, list/watch shapes, Status errors),
``informer`` (list/watch into slim stores), ``pool`` (informers shared across discoverers),
``objects`` (wire TypedDicts and slim values), ``roles`` (pure object -> TargetGroup: node, pod,
service, ingress) and ``endpoints`` (the endpoints and endpointslice roles), ``discoverer`` (one
SD config), ``metrics`` (self-metrics, API-server load included). Only this package imports
kubernetes_asyncio.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collector.config import KubernetesSDConfig
from collector.discovery.discoverer import Discoverer
from collector.discovery.kubernetes.client import ConnectionSpec, read_own_namespace
from collector.discovery.kubernetes.discoverer import KubernetesDiscoverer
from collector.discovery.kubernetes.informer import InformerOptions
from collector.discovery.kubernetes.metrics import KubernetesMetrics
from collector.discovery.kubernetes.pool import InformerPool, default_pool

__all__ = [
    "InformerOptions",
    "InformerPool",
    "KubernetesDiscoverer",
    "connection_spec",
    "default_pool",
    "make_discoverer",
]


def connection_spec(config: KubernetesSDConfig, *, kubeconfig: str | None = None) -> ConnectionSpec:
    """Which API server and credentials a config uses (spec §2.2).

    ``api_server`` wins, then the config's ``kubeconfig_file``, then the ``--kubeconfig`` flag,
    then in-cluster.
    """
    if config.api_server:
        return ConnectionSpec(api_server=config.api_server, http_client=config.http_client)
    if config.kubeconfig_file:
        return ConnectionSpec(kubeconfig=config.kubeconfig_file)
    if kubeconfig:
        return ConnectionSpec(kubeconfig=kubeconfig)
    return ConnectionSpec()


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
    that and skips the config. ``pool`` defaults to `default_pool`; ``connection`` overrides
    `connection_spec` (tests).
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
        pool=pool if pool is not None else default_pool(),
        metrics=KubernetesMetrics.for_registry(registry),
        namespaces=names or ("",),
    )
