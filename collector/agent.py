"""The agent: wires discovery, scrape, remote write and the web endpoints, and applies reloads.

This is Prometheus's ``cmd/prometheus/main.go`` in agent mode. The pipeline stages never import
each other; this module builds them and connects them:

    DiscoveryManager.sync_channel ──▶ ScrapeManager ──commit──▶ Fanout ──▶ RemoteWriter × N

Lifecycle: every component has ``async def run(self) -> NoReturn`` and one owner. The owners are
nested TaskGroups, so cancelling the root stops them in the order that loses nothing (STYLE 7.2):
discovery first, then the scrape loops, then each remote writer flushes within its deadline and
persists what is left to its disk queue. A reload (SIGHUP or ``POST /-/reload``) loads the whole
file first and changes nothing when it is invalid. The process around it (signals, the cluster
leave delay, the cancellation that starts that stop) is `collector.lifecycle.run_agent`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from collector.cluster.membership import Membership, build_membership
from collector.cluster.settings import resolve_settings
from collector.config import (
    AgentOptions,
    Config,
    KubeletSDConfig,
    KubernetesSDConfig,
    RemoteWriteConfig,
    load_config,
    redacted_yaml,
)
from collector.config.http_client import redact_url
from collector.discovery.discoverer import Discoverer
from collector.discovery.kubernetes import InformerPool, make_discoverer
from collector.discovery.manager import DiscoveryManager
from collector.errors import CollectorError, ConfigError
from collector.explain.core import explain_series, explain_target, target_json
from collector.model.relabel_steps import series_json
from collector.remote.writer import RemoteWriter
from collector.scrape.cardinality import cardinality_report_async, pool_status
from collector.scrape.limits import LimitsCollector
from collector.scrape.manager import ScrapeManager
from collector.scrape.proxy import ProxyResolver
from collector.storage.appender import (
    Appendable,
    ExemplarSample,
    Fanout,
    HistogramSample,
    Sample,
    forward,
)
from collector.storage.series import SeriesRegistry
from collector.web.app import make_app
from collector.web.security import WebSecurity
from collector.web.ui import RemoteWriteHistory

if TYPE_CHECKING:
    from collector.remote.received import Received

__all__ = ["Agent", "new_registry"]

log = logging.getLogger(__name__)

_GC_INTERVAL = 60.0
"""How often released series refs are handed to the writers to forget their encodings."""


class Agent:
    """One running agent: its config, its components and the state the web layer reads."""

    def __init__(
        self,
        options: AgentOptions,
        *,
        registry: CollectorRegistry | None = None,
        flush_deadline: float | None = None,
        reload_interval: float = 5.0,
        discovery_updatert: float = 5.0,
    ) -> None:
        """Build the components for ``options``; nothing runs until `run`.

        ``reload_interval`` and ``discovery_updatert`` are Prometheus's 5 s hand-off paces; the
        demo and tests shorten them. ``flush_deadline`` bounds the remote flush at shutdown
        (default ``options.flush_deadline``: ``--storage.remote.flush-deadline``, 10 s).
        """
        self.options = options
        self.registry = registry if registry is not None else new_registry()
        self.config: Config = self._load()
        # TLS, basic auth and headers of every endpoint; a bad file refuses to start (raises
        # ConfigError), a bad change later keeps the running one.
        self.web_security = WebSecurity.from_file(options.web_config_file)
        self.series = SeriesRegistry()
        self.fanout = Fanout()
        self.writers: dict[RemoteWriteConfig, RemoteWriter] = {}
        self._writer_tasks: dict[RemoteWriteConfig, asyncio.Task[None]] = {}
        self._writer_external: tuple[tuple[str, str], ...] = ()
        self._flush_deadline = options.flush_deadline if flush_deadline is None else flush_deadline
        self.discovery = DiscoveryManager(registry=self.registry, updatert=discovery_updatert)
        self.informers = InformerPool()
        """Kubernetes informers shared by every Kubernetes SD config (run around discovery)."""
        self.discovery.register_mechanism(
            KubernetesSDConfig, self._kubernetes_provider, mechanism="kubernetes"
        )
        self.discovery.register_mechanism(
            KubeletSDConfig, self._kubelet_provider, mechanism="kubelet"
        )
        self.appended = Counter(
            "prometheus_agent_samples_appended_total",
            "Total number of samples appended to the storage",
            ["type"],
            registry=self.registry,
        )
        cluster = resolve_settings(options, os.environ)
        self.scrape = ScrapeManager(
            # Sharded: one scrape phase per target across the cluster (the offset seed leaves
            # the host out), so a hand-off changes who scrapes a target, never when.
            hostname="" if cluster is not None else None,
            registry=self.series,
            appendable=_Counted(self.fanout, self.appended.labels(type="float")),
            metrics_registry=self.registry,
            reload_interval=reload_interval,
            proxy_resolver=self._apiserver_proxy,
            handoff_overlap=options.cluster_handoff_overlap,
        )
        self.cluster: Membership | None = None
        """Sharding across replicas (``--cluster.*``); None: this agent scrapes every target."""
        if cluster is not None:
            self.cluster = build_membership(
                cluster, apply=self.scrape.set_ring, registry=self.registry, pool=self.informers
            )
            self.scrape.set_ring(self.cluster.ring)  # empty: nothing sharded until it reports
        self.leave_delay = cluster.leave_delay if cluster is not None else 0.0
        """``--cluster.leave-delay``: at SIGTERM, how long to keep scraping while not ready."""
        self.leaving = False
        self.registry.register(LimitsCollector(lambda: self.scrape.pools))
        self.history = RemoteWriteHistory(self._remote_write_now)
        """The last 15 minutes of every remote-write queue, for the UI's charts."""
        self._remote_tg: asyncio.TaskGroup | None = None
        self._stop_at: float | None = None
        self.on_quit: Callable[[], None] = _no_quit
        """What ``POST /-/quit`` calls; `run_agent` points it at its ordered stop."""
        self._reload_lock = asyncio.Lock()
        self._config_loaded = False
        self.last_reload_ok = Gauge(
            "prometheus_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            registry=self.registry,
        )
        self.last_reload_ts = Gauge(
            "prometheus_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=self.registry,
        )

    # ------------------------------------------------------------------ discovery plumbing

    def _kubernetes_provider(self, job: str, config: KubernetesSDConfig) -> Discoverer:
        return make_discoverer(
            config,
            registry=self.registry,
            kubeconfig=self.options.kubeconfig or None,
            pool=self.informers,
        )

    def _kubelet_provider(self, job: str, config: KubeletSDConfig) -> Discoverer:
        # Imported on first use: it reuses the pod role converter of Kubernetes SD.
        from collector.discovery.kubelet import KubeletDiscoverer

        return KubeletDiscoverer(
            config, refresh_metrics=self.discovery.metrics.refresh(mechanism="kubelet", config=job)
        )

    def _apiserver_proxy(self) -> ProxyResolver:
        # Called by the scrape manager on the first scrape_via_apiserver_proxy job only.
        from collector.kubernetes.proxy import ApiServerProxy

        return ApiServerProxy(kubeconfig=self.options.kubeconfig or None)

    # ------------------------------------------------------------------ config application

    def _apply(self, config: Config) -> None:
        """Apply a loaded config to every component, in Prometheus's order (spec §1.5)."""
        external = config.global_config.external_labels
        self._reconcile_writers(config.remote_write, external)
        self.scrape.apply_config(config.scrape_configs, external_labels=tuple(sorted(external)))
        self.discovery.apply_config(config.scrape_configs)
        self.config = config
        self._config_loaded = True
        self.last_reload_ok.set(1)
        self.last_reload_ts.set(time.time())

    def _reconcile_writers(
        self, configs: Sequence[RemoteWriteConfig], external: tuple[tuple[str, str], ...]
    ) -> None:
        """Keep writers whose block and external labels are unchanged; replace the others."""
        if external != self._writer_external:
            keep: set[RemoteWriteConfig] = set()
        else:
            keep = set(configs) & set(self.writers)
        retiring: dict[str, asyncio.Task[None]] = {}
        for config in list(self.writers):
            if config not in keep:
                old = self.writers.pop(config)
                task = self._writer_tasks.pop(config, None)
                if task is not None:
                    task.cancel()  # the writer flushes and leaves the rest in its log
                    retiring[old.remote_name] = task
        self._writer_external = external
        for config in configs:
            if config in self.writers:
                continue
            writer = RemoteWriter(
                config,
                series=self.series,
                registry=self.registry,
                storage_path=Path(self.options.storage_path),
                external_labels=external,
                flush_deadline=self._flush_deadline,
                flush_until=self._flush_until,
                sync_interval=self.options.wal_sync_interval,
                fsync=self.options.wal_fsync,
                max_disk_bytes=self.options.max_disk_bytes,
                metadata_source=self.scrape.metadata,
            )
            self.writers[config] = writer
            if self._remote_tg is not None:
                self._start_writer(config, writer, after=retiring.get(writer.remote_name))
        self.fanout.destinations = list(self.writers.values())

    def _start_writer(
        self,
        config: RemoteWriteConfig,
        writer: RemoteWriter,
        *,
        after: asyncio.Task[None] | None = None,
    ) -> None:
        """Run ``writer``; ``after`` is the task of the writer it replaces under the same
        ``remote_name``: it must finish its flush and close the shared log first."""
        assert self._remote_tg is not None

        async def run() -> None:
            if after is not None:
                await asyncio.wait([after])
            await _run_forever(writer.run)

        self._writer_tasks[config] = self._remote_tg.create_task(
            run(), name=f"remote write {writer.remote_name}"
        )

    def _load(self) -> Config:
        """Read the config file with this agent's expansion environment (`config_env`)."""
        return load_config(self.options.config_file, env=self.options.config_env(os.environ))

    def begin_stop(self) -> None:
        """Mark the start of shutdown: the remote flush deadline counts from now."""
        if self._stop_at is None:
            self._stop_at = asyncio.get_running_loop().time()

    def _flush_until(self) -> float | None:
        """When the writers must stop sending: a second before the flush deadline after the
        signal, so syncing the logs and exiting fit inside it (Kubernetes' grace period)."""
        if self._stop_at is None:
            return None
        return self._stop_at + max(self._flush_deadline - 1.0, 0.0)

    async def reload(self) -> None:
        """Load the config file again and apply it; on any error keep the running config."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                self.last_reload_ok.set(0)
                log.error("reload refused, keeping the running config: %s", exc)
                raise ConfigError(
                    f"couldn't load configuration (--config.file={self.options.config_file!r}): "
                    f"{exc}"
                ) from exc
            try:
                self._apply(config)
            except Exception as exc:
                self.last_reload_ok.set(0)
                log.exception("applying the new configuration failed")
                raise CollectorError(
                    "one or more errors occurred while applying the new configuration "
                    f"(--config.file={self.options.config_file!r}): {exc}"
                ) from exc
            log.info("configuration reloaded from %s", self.options.config_file)

    # ------------------------------------------------------------------ AgentView (web)

    def is_ready(self) -> bool:
        """Config loaded and every discovery provider synced once (and not leaving the cluster:
        a failing readiness probe is how Kubernetes peers learn that this member is going)."""
        return self._config_loaded and self.discovery.synced.is_set() and not self.leaving

    def active_targets(self) -> Sequence[dict[str, Any]]:
        """``activeTargets`` for ``/api/v1/targets``."""
        return [dict(t) for t in self.scrape.active_targets()]

    def dropped_targets(self) -> Sequence[dict[str, Any]]:
        """``droppedTargets`` for ``/api/v1/targets``."""
        return [dict(t) for t in self.scrape.dropped_targets()]

    def dropped_target_counts(self) -> Mapping[str, int]:
        """``droppedTargetCounts``: every dropped target, also those not kept for the list."""
        return self.scrape.dropped_counts()

    def target_relabel_steps(self, pool: str, labels: Mapping[str, str]) -> Mapping[str, object]:
        """``/api/v1/targets/relabel_steps`` with the running config (`collector.explain`)."""
        return target_json(explain_target(self.config, pool, labels, add_defaults=False))

    def series_relabel_steps(
        self, pool: str, series: Mapping[str, str], *, target: Mapping[str, str] | None
    ) -> Mapping[str, object]:
        """``/api/v1/series_relabel_steps`` with the running config (`collector.explain`)."""
        # ``target`` is collector's own parameter: the job's defaults are added where absent,
        # so labels as discovery produced them work as well as discoveredLabels.
        explained = explain_series(self.config, pool, series, target=target, add_defaults=True)
        return series_json(explained)

    def cluster_status(self) -> Mapping[str, object]:
        """``/api/v1/cluster``: members and their target counts (`collector.cluster`)."""
        if self.cluster is None:
            return {"enabled": False, "members": []}
        shares, local, handing_off = self.scrape.shares()
        return self.cluster.status(shares=shares, local=local, handing_off=handing_off)

    def remote_write_status(self) -> Sequence[dict[str, Any]]:
        """Per-queue numbers for the web UI, with the last 15 minutes of rates."""
        return self.history.annotate(self._remote_write_now())

    async def cardinality(self, *, scrape_pool: str, scrape_url: str, top: int) -> dict[str, Any]:
        """``/api/v1/status/cardinality``, computed from the scrape caches now."""
        return dict(
            await cardinality_report_async(
                self.scrape.pools, scrape_pool=scrape_pool, scrape_url=scrape_url, top=top
            )
        )

    def scrape_pools(self) -> Sequence[dict[str, Any]]:
        """Per pool: discovered, active, dropped and failed targets, and series."""
        return [dict(p) for p in pool_status(self.scrape.pools)]

    def _remote_write_now(self) -> list[dict[str, Any]]:
        """Every queue's numbers now: what `history` samples and the UI shows."""
        out = []
        for config, writer in self.writers.items():
            labels = {"remote_name": writer.remote_name, "url": config.url}

            def value(name: str, labels: dict[str, str] = labels) -> float:
                got = self.registry.get_sample_value(f"prometheus_remote_storage_{name}", labels)
                return got or 0.0

            out.append(
                {
                    "name": writer.remote_name,
                    "url": redact_url(config.url),
                    "samplesSent": int(value("samples_total")),
                    "samplesFailed": int(value("samples_failed_total")),
                    "samplesRetried": int(value("samples_retried_total")),
                    "samplesPending": writer.pending_samples,
                    "shards": writer.num_shards,
                    "diskQueueBytes": writer.wal.disk_bytes,
                    # Remote write "2.0" or "1.0" now; why 1.0 when 2.0 is configured.
                    "protocol": writer.protocol.version,
                    "protocolConfigured": "2.0" if writer.protocol.configured_v2 else "1.0",
                    "fallbackReason": writer.protocol.fallback_reason,
                }
            )
        return out

    def request_quit(self) -> None:
        """``POST /-/quit`` (with ``--web.enable-lifecycle``): the SIGTERM shutdown."""
        self.on_quit()

    @property
    def flush_deadline(self) -> float:
        """Seconds the remote writers keep sending at shutdown."""
        return self._flush_deadline

    def writers_pending(self) -> int:
        """Samples the remote writers hold that no receiver has acknowledged yet."""
        return sum(w.pending_samples for w in self.writers.values())

    def config_yaml(self) -> str:
        """The running config, secrets redacted."""
        return redacted_yaml(self.config)

    # ------------------------------------------------------------------ running

    def make_web_app(self) -> web.Application:
        """The HTTP application for ``--web.listen-address``."""
        handler = None
        if self.options.enable_remote_write_receiver:
            from collector.remote.receiver import ReceiverLimits, make_receiver_handler

            opts = self.options
            limits = ReceiverLimits(
                max_body_bytes=opts.receiver_max_body_bytes,
                max_decompressed_bytes=opts.receiver_max_decompressed_bytes,
                max_series_per_request=opts.receiver_max_series_per_request,
                max_samples_per_request=opts.receiver_max_samples_per_request,
                max_labels_per_series=opts.receiver_max_labels_per_series,
                max_label_name_length=opts.receiver_max_label_name_length,
                max_label_value_length=opts.receiver_max_label_value_length,
            )
            handler = make_receiver_handler(
                on_receive=self._accept_remote_write, limits=limits, registry=self.registry
            )
        return make_app(
            self,
            registry=self.registry,
            remote_write_handler=handler,
            enable_lifecycle=self.options.enable_lifecycle,
            ui=self,
            middlewares=(self.web_security.middleware,),
            cluster=self,
        )

    def _accept_remote_write(self, got: Received) -> None:
        """Received series enter the same forwarding path as scraped ones: float samples,
        native histograms and exemplars (each writer sends the last two as configured).

        Each request's refs are released right after the commit: the writers encode a ref's
        labels during ``commit``, so nothing needs the ref afterwards.
        """
        samples: list[tuple[int, float, int]] = []
        refs: list[int] = []
        for labels, points in got.series:
            ref = self.series.acquire(tuple(sorted(labels)))
            refs.append(ref)
            samples.extend((ref, value, ts) for value, ts in points)
        histograms = [(refs[i], body, ts) for i, body, ts in got.histograms]
        exemplars = [(refs[i], body, ts) for i, body, ts in got.exemplars]
        forward(self.fanout, samples, histograms, exemplars)
        for ref in refs:
            self.series.release(ref)

    async def run(self, *, ready: asyncio.Event | None = None) -> NoReturn:
        """Serve and run the pipeline until cancelled; the web server stops last."""
        runner = web.AppRunner(self.make_web_app(), access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self.options.listen_address.rpartition(":")
        site = web.TCPSite(
            runner, host or None, int(port), ssl_context=self.web_security.ssl_context
        )
        await site.start()
        log.info("listening on %s; %s", self.options.listen_address, self.web_security.describe())
        try:
            async with asyncio.TaskGroup() as remote_tg:
                self._remote_tg = remote_tg
                self._apply(self.config)
                self._start_remote(remote_tg)
                # Scraping starts once every log is recovered (as Prometheus replays its WAL
                # before scraping): a batch sealed before its log is open stays in memory until
                # then, and a recovery that takes seconds would make that a window of loss.
                await asyncio.gather(*(w.delivery.opened.wait() for w in self.writers.values()))
                async with asyncio.TaskGroup() as scrape_tg:
                    self._start_scraping(scrape_tg)
                    # The informer pool outlives the discoverers: they leave it (stopping the
                    # informers and closing the connections they started) before it stops.
                    async with asyncio.TaskGroup() as informers_tg:
                        informers_tg.create_task(self.informers.run(), name="kubernetes informers")
                        await self.informers.running.wait()
                        async with asyncio.TaskGroup() as discovery_tg:
                            discovery_tg.create_task(self.discovery.run(), name="discovery manager")
                            if self.cluster is not None:
                                discovery_tg.create_task(
                                    self.cluster.run(), name="cluster membership"
                                )
                            if ready is not None:
                                ready.set()
                            await asyncio.Event().wait()  # until cancelled
        finally:
            self._remote_tg = None
            await runner.cleanup()
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_remote(self, remote_tg: asyncio.TaskGroup) -> None:
        """Start, in ``remote_tg``, the writers not yet running and their helpers."""
        for config, writer in self.writers.items():
            if config not in self._writer_tasks:
                self._start_writer(config, writer)
        remote_tg.create_task(self._forget_released(), name="series gc")
        remote_tg.create_task(self.history.run(), name="remote write history")

    def _start_scraping(self, scrape_tg: asyncio.TaskGroup) -> None:
        """Start, in ``scrape_tg``, what scrapes (stopped after discovery, before writers)."""
        scrape_tg.create_task(self.scrape.run(self.discovery.sync_channel), name="scrape manager")

    async def _forget_released(self) -> NoReturn:
        while True:
            await asyncio.sleep(_GC_INTERVAL)
            released = self.series.drain_released()
            if released:
                for writer in self.writers.values():
                    writer.forget(released)
                # Nothing else keys state by a released ref (the scrape caches dropped its
                # last timestamp when they released it): it may name a new series now.
                self.series.recycle(released)


class _Counted:
    """Counts committed samples on their way to the fanout (``prometheus_agent_*``)."""

    __slots__ = ("_counter", "_inner")

    def __init__(self, inner: Appendable, counter: Counter) -> None:
        self._inner = inner
        self._counter = counter

    def commit(
        self,
        samples: Sequence[Sample],
        histograms: Sequence[HistogramSample] = (),
        exemplars: Sequence[ExemplarSample] = (),
    ) -> None:
        self._counter.inc(len(samples) + len(histograms))
        forward(self._inner, samples, histograms, exemplars)


async def _run_forever(run: Callable[[], Any]) -> None:
    """Await a component's ``run()``; returning is a bug, so say so loudly (kopf's guard)."""
    await run()
    log.error("a component returned from run(); it must only stop when cancelled")


def new_registry() -> CollectorRegistry:
    """A registry for one agent: its own metrics plus process, platform and GC collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def _no_quit() -> None:
    log.warning("POST /-/quit: this agent was not started by run_agent; ignoring")
