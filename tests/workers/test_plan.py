"""Scrape workers: the flag, ``auto``, and which worker owns which target (`plan`)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from collector.config import AgentOptions
from collector.errors import ConfigError
from collector.model.rendezvous import LOCAL_LABEL, Sharder, shard_key
from collector.workers.plan import (
    AUTO_MAX,
    parse_workers_flag,
    usable_cpus,
    worker_range,
    worker_ring,
)

TARGETS = [
    (
        fp,
        "job",
        (("__address__", f"10.0.{fp // 250}.{fp % 250}:9100"), ("instance", f"host-{fp}")),
    )
    for fp in range(4000)
]


def owner_of(count: int) -> dict[int, int]:
    """Target fingerprint -> index of the worker that scrapes it."""
    owners: dict[int, int] = {}
    for index in range(count):
        split = Sharder().split(worker_ring(count, index), TARGETS)
        for fp in split.own:
            assert fp not in owners, f"target {fp} owned by workers {owners[fp]} and {index}"
            owners[fp] = index
    return owners


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8])
def test_every_target_has_exactly_one_worker_and_shares_are_even(count: int) -> None:
    owners = owner_of(count)
    assert len(owners) == len(TARGETS)
    shares = Counter(owners.values())
    expected = len(TARGETS) / count
    for index in range(count):
        assert abs(shares[index] - expected) < 0.15 * expected, shares


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 3), (3, 4), (4, 3), (4, 8), (8, 7)])
def test_a_worker_count_change_moves_about_the_minimum(before: int, after: int) -> None:
    """Growing N -> N+k moves only the targets the new workers take (k/(N+k) of them);
    shrinking moves only the removed workers' targets; nothing moves between survivors."""
    old, new = owner_of(before), owner_of(after)
    moved = [fp for fp in old if old[fp] != new[fp]]
    kept = min(before, after)
    for fp in moved:
        # A target only ever moves to a new worker, or away from a removed one.
        assert new[fp] >= kept or old[fp] >= kept
    ideal = abs(after - before) / max(before, after)
    assert abs(len(moved) / len(TARGETS) - ideal) < 0.03, (len(moved), ideal)


def test_a_target_change_moves_nothing_else() -> None:
    owners = owner_of(3)
    changed = [*TARGETS[:-1], (9999, "job", (("__address__", "new:1"), ("instance", "new")))]
    for index in range(3):
        split = Sharder().split(worker_ring(3, index), changed)
        assert {fp for fp in split.own if fp != 9999} == {
            fp for fp, i in owners.items() if i == index and fp != TARGETS[-1][0]
        }


def test_the_cluster_local_opt_out_is_hashed_like_any_target() -> None:
    """``__cluster_local__`` is for members of a cluster; two workers must never both scrape."""
    target = (1, "job", (("__address__", "a:1"), (LOCAL_LABEL, "true")))
    owners = [i for i in range(3) if 1 in Sharder().split(worker_ring(3, i), [target]).own]
    assert len(owners) == 1
    key = shard_key("job", target[2])
    assert worker_ring(3, owners[0]).owners(key) == (f"worker-{owners[0]}",)


def test_flag_values() -> None:
    assert parse_workers_flag("auto") == "auto"
    assert parse_workers_flag(" 4 ") == "4"
    for bad in ("0", "-1", "65", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=r"--scrape\.workers"):
            parse_workers_flag(bad)


@pytest.mark.parametrize(
    ("cpus", "most"), [(1, 1), (2, 2), (3, 3), (4, 4), (16, AUTO_MAX), (64, AUTO_MAX)]
)
def test_auto_starts_with_one_process_and_may_grow_to_the_usable_cpus(cpus: int, most: int) -> None:
    assert worker_range(AgentOptions(), cpus=cpus, clustered=False) == (1, most)


def test_auto_is_one_where_workers_cannot_run() -> None:
    assert worker_range(AgentOptions(), cpus=16, clustered=True) == (1, 1)
    receiver = AgentOptions(enable_remote_write_receiver=True)
    assert worker_range(receiver, cpus=16, clustered=False) == (1, 1)


def test_an_explicit_count_is_kept_or_refused_with_the_reason() -> None:
    assert worker_range(AgentOptions(scrape_workers="3"), cpus=1, clustered=False) == (3, 3)
    with pytest.raises(ConfigError, match="--cluster"):
        worker_range(AgentOptions(scrape_workers="2"), clustered=True)
    with pytest.raises(ConfigError, match="remote-write-receiver"):
        worker_range(
            AgentOptions(scrape_workers="2", enable_remote_write_receiver=True), clustered=False
        )
    assert worker_range(AgentOptions(scrape_workers="1"), clustered=True) == (1, 1)


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        ("max 100000\n", 8, 8),
        ("200000 100000\n", 8, 2),
        ("150000 100000\n", 8, 1),
        ("50000 100000\n", 8, 1),
        ("800000 100000\n", 4, 4),
        (None, 6, 6),
        ("garbage\n", 3, 3),
    ],
)
def test_usable_cpus_reads_the_cgroup_quota(
    tmp_path: Path, cpu_max: str | None, affinity: int, expected: int
) -> None:
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert usable_cpus(cpu_max=path, affinity=affinity) == expected
