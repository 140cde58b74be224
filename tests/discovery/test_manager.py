"""DiscoveryManager: dedup, merge, reload, throttled latest-wins publishing (spec §1)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.config import (
    FileSDConfig,
    HTTPClientConfig,
    HTTPSDConfig,
    KubernetesSDConfig,
    ScrapeConfig,
    StaticConfig,
    TLSConfig,
)
from collector.discovery.discoverer import Discoverer
from collector.discovery.manager import DiscoveryManager, SyncChannel
from collector.model.targetgroup import TargetSets
from tests.discovery.helpers import FakeDiscoverer, addresses, group

FILE_A = FileSDConfig(files=("/sd/a.json",))
FILE_B = FileSDConfig(files=("/sd/b.json",))


class Factory:
    """A provider factory that hands out FakeDiscoverers and remembers them by config."""

    def __init__(self) -> None:
        self.made: list[tuple[str, object, FakeDiscoverer]] = []

    def __call__(self, job: str, config: Any) -> Discoverer:
        fake = FakeDiscoverer(initial=[])
        self.made.append((job, config, fake))
        return fake

    def fake(self, config: object) -> FakeDiscoverer:
        """The discoverer made for ``config`` (the last one)."""
        return next(f for _, c, f in reversed(self.made) if c == config)


def job(name: str, **kwargs: Any) -> ScrapeConfig:
    """A scrape config with only the fields a test cares about."""
    return ScrapeConfig(job_name=name, **kwargs)


def sample(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    """One sample value from the registry."""
    return registry.get_sample_value(metric, labels)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test (never the global one)."""
    return CollectorRegistry()


@pytest.fixture
def factory() -> Factory:
    """The fake provider factory."""
    return Factory()


@pytest.fixture
def manager(registry: CollectorRegistry, factory: Factory) -> DiscoveryManager:
    """A manager with fake providers and no jitter, so timings are exact."""
    return DiscoveryManager(registry=registry, provider_factory=factory, jitter=0.0)


@pytest.fixture
async def running(manager: DiscoveryManager) -> AsyncIterator[DiscoveryManager]:
    """The manager with `run` going; cancelled (the only stop signal) at teardown."""
    task = asyncio.create_task(manager.run())
    yield manager
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def settle() -> None:
    """Let started tasks reach their first await."""
    for _ in range(5):
        await asyncio.sleep(0)


def sorted_sets(target_sets: TargetSets) -> dict[str, list[str]]:
    """Job -> sorted addresses, for order-free comparisons."""
    return {name: sorted(addresses(groups)) for name, groups in target_sets.items()}


@pytest.mark.looptime
async def test_identical_configs_share_one_provider(
    running: DiscoveryManager, factory: Factory
) -> None:
    """Two jobs with deep-equal SD configs get one provider and both receive its groups (§11 #1)."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,)), job("b", file_sd_configs=(FILE_A,))])
    assert len(factory.made) == 1
    assert running.providers() == {"file/0": ("a", "b")}
    await settle()
    factory.fake(FILE_A).send([group("x", "h:1")])
    sets = await running.sync_channel.get()
    assert sorted_sets(sets) == {"a": ["h:1"], "b": ["h:1"]}


async def test_equal_but_not_identical_objects_are_deduplicated(
    manager: DiscoveryManager, factory: Factory
) -> None:
    """Dedup is by value: separately built but equal configs (HTTP client included) share."""
    first = HTTPSDConfig(url="http://sd/a", refresh_interval=30.0)
    second = HTTPSDConfig(url="http://sd/a", refresh_interval=30.0)
    other = HTTPSDConfig(url="http://sd/a", refresh_interval=31.0)
    manager.apply_config(
        [
            job("a", http_sd_configs=(first,)),
            job("b", http_sd_configs=(second,)),
            job("c", http_sd_configs=(other,)),
        ]
    )
    assert manager.providers() == {"http/0": ("a", "b"), "http/1": ("c",)}


async def test_static_configs_coalesce_into_one_provider(manager: DiscoveryManager) -> None:
    """A job's static_configs become one provider, sources "0", "1" in file order (§1.2)."""
    manager.apply_config(
        [
            job(
                "s",
                static_configs=(
                    StaticConfig(targets=("a:1", "b:1"), labels=(("env", "prod"),)),
                    StaticConfig(targets=("c:1",)),
                ),
            )
        ]
    )
    assert list(manager.providers()) == ["static/0"]


@pytest.mark.looptime
async def test_static_groups_are_published(running: DiscoveryManager) -> None:
    """Static groups reach the consumer with their sources, labels and addresses."""
    running.apply_config(
        [
            job(
                "s",
                static_configs=(
                    StaticConfig(targets=("a:1", "b:1"), labels=(("env", "prod"),)),
                    StaticConfig(targets=("c:1",)),
                ),
            )
        ]
    )
    sets = await running.sync_channel.get()
    groups = sets["s"]
    assert [g.source for g in groups] == ["0", "1"]
    assert [dict(g.labels) for g in groups] == [{"env": "prod"}, {}]
    assert addresses(groups) == ["a:1", "b:1", "c:1"]


@pytest.mark.looptime
async def test_empty_group_deletes_its_source(
    running: DiscoveryManager, factory: Factory, looptime: float
) -> None:
    """A group without targets deletes what its source said before (§1.3)."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    fake = factory.fake(FILE_A)
    fake.send([group("x", "h:1"), group("y", "h:2")])
    assert sorted_sets(await running.sync_channel.get()) == {"a": ["h:1", "h:2"]}
    fake.send([group("x")])
    assert sorted_sets(await running.sync_channel.get()) == {"a": ["h:2"]}
    assert [g.source for g in running.targets_snapshot()["a"]] == ["y"]


@pytest.mark.looptime
async def test_job_without_sd_gets_an_empty_list(running: DiscoveryManager) -> None:
    """A job with no SD config still appears, with [] (so its pool is emptied)."""
    running.apply_config([job("lonely")])
    assert running.providers() == {"static/0": ("lonely",)}
    assert await running.sync_channel.get() == {"lonely": []}


@pytest.mark.looptime
async def test_sender_backoff_timing(
    running: DiscoveryManager, factory: Factory, looptime: float
) -> None:
    """Bursts are throttled 100 ms x1.5 up to 5 s, and the backoff resets after 5 s quiet."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    fake = factory.fake(FILE_A)
    start = float(looptime)
    sent_at: list[float] = []

    async def consume() -> None:
        while True:
            await running.sync_channel.get()
            sent_at.append(round(asyncio.get_running_loop().time() - start, 4))

    async def flap() -> None:
        for i in range(400):  # a change every 50 ms for 20 s
            fake.send([group("x", f"h:{i}")])
            await asyncio.sleep(0.05)

    consumer = asyncio.create_task(consume())
    await flap()
    await asyncio.sleep(10)  # quiet: longer than updatert
    quiet_start = round(asyncio.get_running_loop().time() - start, 4)
    fake.send([group("x", "h:last")])
    await asyncio.sleep(1)
    consumer.cancel()
    # The burst: the first send 100 ms after the first change, then each wait 1.5x the previous
    # (the next change arrives within 50 ms of a send, and the wait starts from it), capped at 5 s.
    assert sent_at[0] == 0.1
    burst = [t for t in sent_at if t <= 20.0 + 5.0]
    delays = [round(min(0.1 * 1.5**i, 5.0), 4) for i in range(1, len(burst))]
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(burst)]
    assert all(delay <= gap <= delay + 0.0501 for gap, delay in zip(gaps, delays, strict=True)), (
        list(zip(gaps, delays, strict=True))
    )
    assert max(gaps) <= 5.0501
    assert gaps[-1] >= 5.0  # the cap is reached
    # After more than updatert of quiet the backoff is reset: the next change takes 100 ms again.
    assert sent_at[-1] == round(quiet_start + 0.1, 4)


@pytest.mark.looptime
async def test_delivery_delay_with_jitter_stays_within_bounds(
    registry: CollectorRegistry, factory: Factory, looptime: float
) -> None:
    """With ±50 % jitter the first delivery after a quiet period lands in [50 ms, 150 ms]."""
    manager = DiscoveryManager(registry=registry, provider_factory=factory, rng=random.Random(7))
    task = asyncio.create_task(manager.run())
    manager.apply_config([job("a")])
    await manager.sync_channel.get()
    assert 0.05 <= looptime <= 0.15
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_slow_consumer_gets_only_the_latest_map(
    running: DiscoveryManager, factory: Factory, registry: CollectorRegistry
) -> None:
    """Latest-wins: maps published while nobody reads are skipped, and counted as delayed."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    fake = factory.fake(FILE_A)
    for i in range(5):
        fake.send([group("x", f"h:{i}")])
        await asyncio.sleep(6)  # every change is published; nobody reads
    sets = await running.sync_channel.get()
    assert sorted_sets(sets) == {"a": ["h:4"]}
    assert sample(registry, "prometheus_sd_updates_total", name="scrape") == 5
    assert sample(registry, "prometheus_sd_updates_delayed_total", name="scrape") == 4


async def test_sync_channel_waits_for_a_newer_map() -> None:
    """get() returns each published map at most once and waits for the next one."""
    channel = SyncChannel()
    assert channel.publish({"a": []}) is False
    assert channel.publish({"b": []}) is True
    assert await channel.get() == {"b": []}
    waiter = asyncio.create_task(channel.get())
    await settle()
    assert not waiter.done()
    channel.publish({"c": []})
    assert await waiter == {"c": []}
    assert channel.latest() == {"c": []}


@pytest.mark.looptime
async def test_reload_keeps_unchanged_provider_running(
    running: DiscoveryManager, factory: Factory
) -> None:
    """A provider still wanted after reload is neither restarted nor cancelled (§1.5)."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    fake = factory.fake(FILE_A)
    task_before = running._tasks["file/0"]
    running.apply_config([job("a", file_sd_configs=(FILE_A,), scrape_interval=15.0), job("z")])
    await settle()
    assert len(factory.made) == 1
    assert (fake.runs, fake.cancelled) == (1, 0)
    assert running._tasks["file/0"] is task_before
    assert list(running.providers()) == ["file/0", "static/1"]


@pytest.mark.looptime
async def test_new_job_gets_shared_provider_groups_immediately(
    running: DiscoveryManager, factory: Factory
) -> None:
    """A job newly subscribed to a running provider sees its current groups at once."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    factory.fake(FILE_A).send([group("x", "h:1")])
    running.apply_config([job("a", file_sd_configs=(FILE_A,)), job("b", file_sd_configs=(FILE_A,))])
    assert sorted_sets(running.targets_snapshot()) == {"a": ["h:1"], "b": ["h:1"]}
    assert sorted_sets(await running.sync_channel.get()) == {"a": ["h:1"], "b": ["h:1"]}


@pytest.mark.looptime
async def test_reload_drops_removed_job_and_cancels_its_provider(
    running: DiscoveryManager, factory: Factory, registry: CollectorRegistry
) -> None:
    """A dropped job disappears, its unshared provider is cancelled and late sends are ignored."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,)), job("b", file_sd_configs=(FILE_B,))])
    await settle()
    factory.fake(FILE_A).send([group("x", "h:a")])
    factory.fake(FILE_B).send([group("x", "h:b")])
    assert sorted_sets(await running.sync_channel.get()) == {"a": ["h:a"], "b": ["h:b"]}
    assert sample(registry, "prometheus_sd_discovered_targets", name="scrape", config="b") == 1

    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    assert factory.fake(FILE_B).cancelled == 1
    assert sorted_sets(await running.sync_channel.get()) == {"a": ["h:a"]}
    assert sample(registry, "prometheus_sd_discovered_targets", name="scrape", config="b") is None
    factory.fake(FILE_B).send([group("y", "h:late")])  # a send racing the cancellation
    assert sorted_sets(running.targets_snapshot()) == {"a": ["h:a"]}


@pytest.mark.looptime
async def test_unsubscribing_one_job_keeps_the_shared_provider(
    running: DiscoveryManager, factory: Factory
) -> None:
    """Removing one of two jobs sharing a provider does not restart it (§11 #1)."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,)), job("b", file_sd_configs=(FILE_A,))])
    await settle()
    factory.fake(FILE_A).send([group("x", "h:1")])
    running.apply_config([job("b", file_sd_configs=(FILE_A,))])
    await settle()
    fake = factory.fake(FILE_A)
    assert (fake.runs, fake.cancelled) == (1, 0)
    assert sorted_sets(await running.sync_channel.get()) == {"b": ["h:1"]}


async def test_provider_names_use_an_ever_increasing_counter(manager: DiscoveryManager) -> None:
    """Names are <mechanism>/<n>; n never goes back, even after providers are dropped."""
    manager.apply_config([job("a", file_sd_configs=(FILE_A,))])
    manager.apply_config([job("a", file_sd_configs=(FILE_B,))])
    manager.apply_config([job("a", file_sd_configs=(FILE_A,))])
    assert list(manager.providers()) == ["file/2"]


@pytest.mark.looptime
async def test_synced_waits_for_every_provider_including_reload_additions(
    registry: CollectorRegistry,
) -> None:
    """synced is set once all providers sent once; a reload adding one clears it until it sends."""
    fakes: dict[object, FakeDiscoverer] = {}

    def make(job_name: str, config: Any) -> Discoverer:
        fakes[config] = FakeDiscoverer()  # sends nothing until told to
        return fakes[config]

    manager = DiscoveryManager(registry=registry, provider_factory=make, jitter=0.0)
    task = asyncio.create_task(manager.run())
    assert not manager.synced.is_set()
    manager.apply_config([job("a", file_sd_configs=(FILE_A,)), job("s")])
    await settle()
    assert not manager.synced.is_set()  # static/1 has sent, file/0 has not
    fakes[FILE_A].send([])
    assert manager.synced.is_set()
    manager.apply_config([job("a", file_sd_configs=(FILE_A,)), job("b", file_sd_configs=(FILE_B,))])
    assert not manager.synced.is_set()
    await settle()
    fakes[FILE_B].send([group("x", "h:1")])
    assert manager.synced.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_unregistered_mechanism_fails_config_and_job_stays(
    registry: CollectorRegistry,
) -> None:
    """Kubernetes without a registered factory is a failed config; the job still appears."""
    manager = DiscoveryManager(registry=registry, jitter=0.0)
    task = asyncio.create_task(manager.run())
    manager.apply_config([job("k", kubernetes_sd_configs=(KubernetesSDConfig(role="pod"),))])
    assert sample(registry, "prometheus_sd_failed_configs", name="scrape") == 1
    assert manager.providers() == {"static/0": ("k",)}
    assert await manager.sync_channel.get() == {"k": []}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_register_mechanism_creates_kubernetes_providers(registry: CollectorRegistry) -> None:
    """register_mechanism plugs in a factory; its providers are named after the mechanism."""
    seen: list[tuple[str, KubernetesSDConfig]] = []

    def make(job_name: str, config: KubernetesSDConfig) -> Discoverer:
        seen.append((job_name, config))
        return FakeDiscoverer()

    manager = DiscoveryManager(registry=registry)
    manager.register_mechanism(KubernetesSDConfig, make, mechanism="kubernetes")
    config = KubernetesSDConfig(role="node")
    manager.apply_config([job("k", kubernetes_sd_configs=(config,))])
    assert seen == [("k", config)]
    assert manager.providers() == {"kubernetes/0": ("k",)}
    assert sample(registry, "prometheus_sd_failed_configs", name="scrape") == 0


@pytest.mark.looptime
async def test_failing_provider_is_restarted(registry: CollectorRegistry, looptime: float) -> None:
    """A provider that raises is logged and restarted after a delay; the manager keeps going."""
    attempts: list[float] = []

    class Crashy:
        async def run(self, send: Callable[..., None]) -> Any:
            attempts.append(asyncio.get_running_loop().time())
            if len(attempts) < 3:
                raise RuntimeError("boom")
            send([group("x", "h:1")])
            await asyncio.Event().wait()

    manager = DiscoveryManager(
        registry=registry, provider_factory=lambda j, c: Crashy(), jitter=0.0
    )
    task = asyncio.create_task(manager.run())
    manager.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await asyncio.sleep(10)
    assert attempts == [0.0, 1.0, 3.0]  # restart delays 1 s, 2 s
    assert sorted_sets(manager.targets_snapshot()) == {"a": ["h:1"]}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_metrics_count_updates_and_targets(
    running: DiscoveryManager, factory: Factory, registry: CollectorRegistry
) -> None:
    """received_updates counts provider sends; discovered_targets and last_update per job."""
    running.apply_config([job("a", file_sd_configs=(FILE_A,))])
    await settle()
    factory.fake(FILE_A).send([group("x", "h:1", "h:2"), group("y", "h:3")])
    await running.sync_channel.get()
    assert sample(registry, "prometheus_sd_received_updates_total", name="scrape") == 2
    assert sample(registry, "prometheus_sd_discovered_targets", name="scrape", config="a") == 3
    stamp = sample(
        registry, "prometheus_sd_last_update_timestamp_seconds", name="scrape", config="a"
    )
    assert stamp is not None
    assert stamp > 1_600_000_000


async def test_default_factory_builds_file_and_http_providers(registry: CollectorRegistry) -> None:
    """Without an injected factory, file and http configs get the built-in providers."""
    manager = DiscoveryManager(registry=registry)
    bad_tls = HTTPSDConfig(
        url="https://sd/x",
        http_client=HTTPClientConfig(tls_config=TLSConfig(cert="-----BEGIN", key="-----BEGIN")),
    )
    manager.apply_config(
        [
            job("f", file_sd_configs=(FILE_A,)),
            job("h", http_sd_configs=(HTTPSDConfig(url="http://sd/x"),)),
            job("bad", http_sd_configs=(bad_tls,)),
        ]
    )
    assert manager.providers() == {"file/0": ("f",), "http/1": ("h",), "static/2": ("bad",)}
    assert sample(registry, "prometheus_sd_failed_configs", name="scrape") == 1
