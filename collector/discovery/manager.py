"""The discovery manager: one provider per distinct SD config, merged state, throttled full sends.

Pipeline place: providers (static, file, http, kubernetes) -> **DiscoveryManager** -> a latest-wins
`SyncChannel` carrying the full ``{job: [TargetGroup, ...]}`` map -> the scrape manager.

How it works (spec §1):

* `DiscoveryManager.apply_config` turns scrape configs into providers. Every SD config is a key
  compared by deep equality (the config dataclasses are frozen), so two jobs with identical
  ``kubernetes_sd_configs`` share ONE provider and both get every update (spec §11 #1). A job's
  ``static_configs`` are coalesced into one `StaticSDConfig`; a job with no provider at all gets
  a static provider with one empty group, so it still appears downstream with ``[]``. Providers
  are named ``<mechanism>/<n>`` with a counter that only grows. A provider that is still wanted
  after a reload keeps running untouched; one nobody wants any more is cancelled and its groups
  are forgotten. Then the send trigger is raised, so downstream sees the full new state.
* State is ``provider -> {source: group}``; each job's groups are the union over the providers it
  subscribes to. (Prometheus keys the state by ``(job, provider)`` and copies it to a newly
  subscribed job; keying by provider gives the same result with nothing to copy.) A group with
  targets replaces its source; a group without targets deletes it (spec §1.3).
* `DiscoveryManager.run` owns, in one TaskGroup, the throttled sender and one task per provider,
  reconciled against the desired set after every ``apply_config`` (STYLE rules 1-2).
* The sender (P3 behaviour, spec §1.4) waits for the trigger, then sleeps an exponential backoff
  (100 ms, x1.5, ±50 % jitter, capped at ``updatert`` = 5 s) so bursts coalesce, then publishes the
  full map. After ``updatert`` without a send the backoff starts again at 100 ms: a quiet system
  delivers a change in ~100 ms, a flapping one at most every 5 s.
* The hand-off is a latest-wins slot, not a FIFO: a slow consumer skips intermediate maps and
  ``prometheus_sd_updates_delayed_total`` counts each map it never saw.

Mechanisms. ``static``, ``file`` and ``http`` are built in; ``kubernetes`` (and anything else) is
plugged in with `DiscoveryManager.register_mechanism`, which keeps this module free of
``kubernetes_asyncio``. A config whose provider cannot be created is logged, counted in
``prometheus_sd_failed_configs`` and skipped (spec §1.2).

Prometheus counterpart: ``discovery/manager.go``, ``discovery/registry.go``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from prometheus_client import CollectorRegistry

from collector.config import (
    FileSDConfig,
    HTTPSDConfig,
    KubernetesSDConfig,
    ScrapeConfig,
    StaticConfig,
)
from collector.discovery.discoverer import Discoverer
from collector.discovery.file import FileDiscoverer
from collector.discovery.http import HTTPDiscoverer
from collector.discovery.metrics import DiscoveryMetrics
from collector.discovery.refresh import Sleep
from collector.discovery.static import StaticDiscoverer
from collector.errors import DiscoveryError
from collector.model.targetgroup import TargetGroup, TargetSets

__all__ = [
    "DiscoveryManager",
    "ProviderFactory",
    "SDConfig",
    "StaticSDConfig",
    "SyncChannel",
]

log = logging.getLogger(__name__)

_C = TypeVar("_C")


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticSDConfig:
    """The synthetic SD config of one job's coalesced ``static_configs`` (spec §1.2)."""

    configs: tuple[StaticConfig, ...]


SDConfig = StaticSDConfig | FileSDConfig | HTTPSDConfig | KubernetesSDConfig
"""Every SD config the manager knows how to key; other types work once registered."""

ProviderFactory = Callable[[str, Any], Discoverer]
"""``(job_name, sd_config) -> Discoverer``; ``job_name`` is the first job that uses the config.

Raising any exception means "this config failed" (logged, counted, skipped).
"""

_EMPTY_STATIC = StaticSDConfig(configs=(StaticConfig(),))
"""What a job without any provider gets: one empty group (spec §1.2)."""

_BUILTIN_MECHANISMS: dict[type, str] = {
    StaticSDConfig: "static",
    FileSDConfig: "file",
    HTTPSDConfig: "http",
    KubernetesSDConfig: "kubernetes",
}

_BACKOFF_INITIAL = 0.1
_BACKOFF_MULTIPLIER = 1.5
_RESTART_DELAY = 1.0
_RESTART_DELAY_MAX = 60.0


class SyncChannel:
    """A latest-wins slot holding the newest full target-set map (one consumer).

    `publish` never blocks and replaces what the consumer has not taken yet; `get` waits for a
    map newer than the one it took last. Prometheus: the unbuffered ``SyncCh`` plus re-armed
    trigger, which has the same "consumer sees the latest, maybe skips some" effect.
    """

    def __init__(self) -> None:
        self._latest: TargetSets = {}
        self._published = 0
        self._taken = 0
        self._changed = asyncio.Event()

    def publish(self, target_sets: TargetSets) -> bool:
        """Store ``target_sets`` as the latest; ``True`` if it overwrote a map nobody took."""
        skipped = self._published > self._taken
        self._latest = target_sets
        self._published += 1
        self._changed.set()
        return skipped

    async def get(self) -> TargetSets:
        """Wait for a map newer than the last one taken, and take it."""
        while self._taken == self._published:
            self._changed.clear()
            await self._changed.wait()
        self._taken = self._published
        return self._latest

    def latest(self) -> TargetSets:
        """The newest published map without taking it (``{}`` before the first publish)."""
        return self._latest


class _Backoff:
    """Exponential backoff with jitter (cenkalti/backoff's shape, as Prometheus's sender uses)."""

    def __init__(self, *, maximum: float, jitter: float, rng: random.Random) -> None:
        self._maximum = maximum
        self._jitter = jitter
        self._rng = rng
        self._current = _BACKOFF_INITIAL

    def reset(self) -> None:
        self._current = _BACKOFF_INITIAL

    def next(self) -> float:
        base = min(self._current, self._maximum)
        self._current = min(self._current * _BACKOFF_MULTIPLIER, self._maximum)
        delay = base * (1.0 + self._jitter * (2.0 * self._rng.random() - 1.0))
        return min(delay, self._maximum)


@dataclass(eq=False, slots=True, kw_only=True)
class _Provider:
    """One running SD config and the jobs subscribed to it."""

    name: str
    mechanism: str
    config: object
    discoverer: Discoverer
    config_label: str
    """The job that created it: the ``config`` label of its refresh metrics."""
    subscribers: dict[str, None] = field(default_factory=dict)
    """Ordered set of job names."""
    groups: dict[str, TargetGroup] = field(default_factory=dict)
    """The current state: ``source -> group`` (only groups with targets)."""
    synced: bool = False
    live: bool = True
    """False once cancelled by a reload: a late send from it is ignored."""


class DiscoveryManager:
    """Runs the providers of the current config and publishes the merged target sets."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        provider_factory: ProviderFactory | None = None,
        updatert: float = 5.0,
        name: str = "scrape",
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        """Build an idle manager; nothing runs until `run` and `apply_config`.

        ``provider_factory`` replaces the mechanism registry for every ``*_sd_configs`` entry
        (static configs are always handled here). ``clock`` is monotonic (default: the running
        loop's ``time()``), ``wall_clock`` stamps ``last_update_timestamp_seconds``, ``sleep``
        paces the sender and the built-in providers; ``jitter`` and ``rng`` shape the backoff.
        """
        self.metrics = DiscoveryMetrics(registry, name=name)
        self.sync_channel = SyncChannel()
        """Where the full ``{job: [group]}`` maps are published; the scrape manager `get`s them."""
        self.synced = asyncio.Event()
        """Set while a config is applied and every provider has sent at least once (/-/ready).

        A reload that adds a provider clears it until that provider's first send.
        """
        self._provider_factory = provider_factory
        self._updatert = updatert
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._backoff = _Backoff(maximum=updatert, jitter=jitter, rng=rng or random.Random())
        self._mechanisms: dict[type, tuple[str, ProviderFactory | None]] = {
            config_type: (mechanism, None) for config_type, mechanism in _BUILTIN_MECHANISMS.items()
        }
        self.register_mechanism(FileSDConfig, self._file_provider, mechanism="file")
        self.register_mechanism(HTTPSDConfig, self._http_provider, mechanism="http")
        self._providers: list[_Provider] = []
        self._jobs: list[str] = []
        self._next_provider = 0
        self._configured = False
        self._trigger = asyncio.Event()
        self._reconcile = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ configuration

    def register_mechanism(
        self,
        config_type: type[_C],
        factory: Callable[[str, _C], Discoverer],
        *,
        mechanism: str,
    ) -> None:
        """Create providers for ``config_type`` with ``factory(job, config)``.

        ``mechanism`` names the providers (``kubernetes/0``) and labels their metrics. The agent
        registers ``KubernetesSDConfig`` this way; registering a type again replaces it.
        """
        self._mechanisms[config_type] = (mechanism, factory)

    def apply_config(self, scrape_configs: Sequence[ScrapeConfig]) -> None:
        """Make the running providers match ``scrape_configs`` (spec §1.5).

        Synchronous: state and subscriptions change now; `run` starts and cancels the provider
        tasks right after. A kept provider is not restarted, and a job newly subscribed to it
        sees its current groups at once.
        """
        previous = list(self._providers)
        created: list[_Provider] = []
        pending: dict[str, dict[str, None]] = {}
        jobs: dict[str, None] = {}
        failed = 0
        for scrape_config in scrape_configs:
            job = scrape_config.job_name
            jobs[job] = None
            registered = False
            for config in _sd_configs(scrape_config):
                provider = _find(config, previous, created)
                if provider is None:
                    provider = self._create(job, config)
                    if provider is None:
                        failed += 1
                        continue
                    created.append(provider)
                pending.setdefault(provider.name, {})[job] = None
                registered = True
            if not registered:
                provider = _find(_EMPTY_STATIC, previous, created)
                if provider is None:
                    provider = self._create(job, _EMPTY_STATIC)
                    assert provider is not None  # static providers cannot fail
                    created.append(provider)
                pending.setdefault(provider.name, {})[job] = None

        providers: list[_Provider] = []
        for provider in previous:
            if provider.name in pending:
                provider.subscribers = pending[provider.name]
                providers.append(provider)
            else:
                log.info("discovery: stopping provider %s", provider.name)
                provider.live = False
                provider.groups.clear()
                self.metrics.remove_refresh(
                    mechanism=provider.mechanism, config=provider.config_label
                )
        for provider in created:
            provider.subscribers = pending[provider.name]
            providers.append(provider)
            log.info(
                "discovery: starting provider %s for %s", provider.name, list(provider.subscribers)
            )
        self._providers = providers
        for job in self._jobs:
            if job not in jobs:
                self.metrics.remove_job(job)
        self._jobs = list(jobs)
        self.metrics.failed_configs.set(failed)
        self._configured = True
        self._update_synced()
        self._trigger.set()
        self._reconcile.set()

    def _create(self, job: str, config: object) -> _Provider | None:
        """A new provider for ``config``, or ``None`` (logged) if its discoverer cannot be built."""
        mechanism, factory = self._mechanisms.get(type(config), (type(config).__name__, None))
        try:
            discoverer: Discoverer
            if isinstance(config, StaticSDConfig):
                discoverer = StaticDiscoverer.from_configs(config.configs)
            elif self._provider_factory is not None:
                discoverer = self._provider_factory(job, config)
            elif factory is not None:
                discoverer = factory(job, config)
            else:
                raise DiscoveryError(f"no provider registered for {mechanism} SD configs")
        except Exception as exc:  # a broken config is data: logged, counted, skipped
            log.error("discovery: cannot create %s provider for job %r: %s", mechanism, job, exc)
            return None
        name = f"{mechanism}/{self._next_provider}"
        self._next_provider += 1
        return _Provider(
            name=name,
            mechanism=mechanism,
            config=config,
            discoverer=discoverer,
            config_label=job,
        )

    def _file_provider(self, job: str, config: FileSDConfig) -> Discoverer:
        return FileDiscoverer(
            config,
            metrics=self.metrics.file,
            refresh_metrics=self.metrics.refresh(mechanism="file", config=job),
            sleep=self._sleep,
        )

    def _http_provider(self, job: str, config: HTTPSDConfig) -> Discoverer:
        return HTTPDiscoverer(
            config,
            refresh_metrics=self.metrics.refresh(mechanism="http", config=job),
            failures=self.metrics.http_failures,
            sleep=self._sleep,
        )

    # ------------------------------------------------------------------ running

    async def run(self) -> NoReturn:
        """Run the sender and the provider tasks until cancelled."""
        self._tasks = {}
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sender(), name="discovery sender")
            while True:
                self._reconcile.clear()
                self._sync_tasks(tg)
                await self._reconcile.wait()

    def _sync_tasks(self, tg: asyncio.TaskGroup) -> None:
        """Cancel the tasks of dropped providers, start those of new ones (STYLE rule 2)."""
        desired = {provider.name: provider for provider in self._providers}
        for name in [name for name in self._tasks if name not in desired]:
            self._tasks.pop(name).cancel()
        for name, provider in desired.items():
            if name not in self._tasks:
                self._tasks[name] = tg.create_task(
                    self._run_provider(provider), name=f"discovery {name}"
                )

    async def _run_provider(self, provider: _Provider) -> None:
        """Run one provider; a crash or an unexpected return is logged and it is restarted."""
        send = functools.partial(self._receive, provider)
        delay = _RESTART_DELAY
        while True:
            try:
                running: Awaitable[object] = provider.discoverer.run(send)
                await running
                log.error("discovery: provider %s returned unexpectedly", provider.name)
            except Exception:
                log.exception("discovery: provider %s failed", provider.name)
            await self._sleep(delay)
            delay = min(delay * 2, _RESTART_DELAY_MAX)

    def _receive(self, provider: _Provider, groups: Sequence[TargetGroup | None]) -> None:
        """A provider's ``send``: merge by source, empty group = delete (spec §1.3)."""
        if not provider.live:
            return
        self.metrics.received_updates.inc()
        for group in groups:
            if group is None:
                continue
            if group.targets:
                provider.groups[group.source] = group
            else:
                provider.groups.pop(group.source, None)
        if not provider.synced:
            provider.synced = True
            self._update_synced()
        self._trigger.set()

    def _update_synced(self) -> None:
        if self._configured and all(provider.synced for provider in self._providers):
            self.synced.set()
        else:
            self.synced.clear()

    async def _sender(self) -> NoReturn:
        """Throttled publisher of the full map (spec §1.4, P3 backoff)."""
        last_send: float | None = None
        while True:
            await self._trigger.wait()
            if last_send is None or self._now() - last_send > self._updatert:
                self._backoff.reset()
            await self._sleep(self._backoff.next())
            self._trigger.clear()
            self._publish()
            last_send = self._now()

    def _publish(self) -> None:
        target_sets = self._all_groups()
        timestamp = self._wall_clock()
        for job, groups in target_sets.items():
            count = sum(len(group.targets) for group in groups)
            self.metrics.set_job(job, targets=count, timestamp=timestamp)
        self.metrics.updates.inc()
        if self.sync_channel.publish(target_sets):
            self.metrics.updates_delayed.inc()

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ views

    def _all_groups(self) -> dict[str, list[TargetGroup]]:
        target_sets: dict[str, list[TargetGroup]] = {job: [] for job in self._jobs}
        for provider in self._providers:
            for job in provider.subscribers:
                target_sets[job].extend(provider.groups.values())
        return target_sets

    def targets_snapshot(self) -> dict[str, list[TargetGroup]]:
        """The discovered groups per job right now (web UI "service discovery" page)."""
        return self._all_groups()

    def providers(self) -> dict[str, tuple[str, ...]]:
        """Provider name -> subscribed jobs, in creation order (for the UI and tests)."""
        return {provider.name: tuple(provider.subscribers) for provider in self._providers}


def _sd_configs(scrape_config: ScrapeConfig) -> list[object]:
    """The SD configs of one job, static ones coalesced into one `StaticSDConfig`."""
    configs: list[object] = []
    if scrape_config.static_configs:
        configs.append(StaticSDConfig(configs=scrape_config.static_configs))
    configs.extend(scrape_config.file_sd_configs)
    configs.extend(scrape_config.http_sd_configs)
    configs.extend(scrape_config.kubernetes_sd_configs)
    configs.extend(scrape_config.kubelet_sd_configs)
    return configs


def _find(config: object, *pools: Sequence[_Provider]) -> _Provider | None:
    """The provider whose config is deep-equal to ``config`` (dataclass ``==`` checks the type)."""
    for pool in pools:
        for provider in pool:
            if provider.config == config:
                return provider
    return None
