"""Dropped targets are kept as references into the pool's groups: counted, capped, cheap."""

from __future__ import annotations

import gc
import tracemalloc

from collector.config import ScrapeConfig
from collector.model.relabel import RelabelConfig, compile_rules
from collector.model.targetgroup import TargetGroup
from collector.scrape.target import populate_labels, targets_from_group

CFG = ScrapeConfig(
    job_name="pods",
    scrape_interval=30.0,
    params=(("module", ("http_2xx", "other")),),
    relabel_configs=(RelabelConfig(source_labels=("__meta_scrape",), regex="true", action="keep"),),
)
RELABELER = compile_rules(CFG.relabel_configs)


def pod_groups(pods: int, *, kept_every: int = 0) -> list[TargetGroup]:
    """One group per pod (pod-level labels on the group), one target per container port."""
    groups = []
    for i in range(pods):
        scrape = "true" if kept_every and i % kept_every == 0 else "false"
        groups.append(
            TargetGroup(
                source=f"pod/default/p-{i}",
                labels={
                    "__meta_kubernetes_pod_name": f"p-{i}",
                    "__meta_kubernetes_namespace": "default",
                    "__meta_scrape": scrape,
                },
                targets=(
                    {"__address__": f"10.0.{i // 250}.{i % 250}:8080", "port": "http"},
                    {"__address__": f"10.0.{i // 250}.{i % 250}:9090", "port": "admin"},
                ),
            )
        )
    return groups


def test_dropped_targets_rebuild_the_discovered_labels() -> None:
    """Iterating gives exactly the discovered labels population computed, in discovery order."""
    groups = pod_groups(10, kept_every=3)
    built = targets_from_group(groups, cfg=CFG, relabeler=RELABELER)
    expected = [
        populated.discovered
        for group in groups
        for target in group.targets
        if (populated := populate_labels(target, group.labels, cfg=CFG, relabeler=RELABELER)).labels
        is None
    ]
    assert list(built.dropped) == expected
    assert len(built.dropped) == built.dropped.count == built.dropped_count == 12
    first = dict(next(iter(built.dropped)))
    # Group labels, the job's defaults and the first value of each param are all there.
    assert first["__meta_kubernetes_pod_name"] == "p-1"
    assert first["job"] == "pods"
    assert first["__scrape_interval__"] == "30s"
    assert first["__param_module"] == "http_2xx"


def test_keep_dropped_targets_caps_the_list_not_the_count() -> None:
    """keep_dropped_targets keeps the first N; count still says how many were dropped."""
    built = targets_from_group(pod_groups(10), cfg=CFG, relabeler=RELABELER, keep_dropped=3)
    assert len(built.dropped) == 3
    assert built.dropped.count == built.dropped_count == 20
    assert [dict(labels)["__address__"] for labels in built.dropped] == [
        "10.0.0.0:8080",
        "10.0.0.0:9090",
        "10.0.0.1:8080",
    ]


def test_a_target_set_without_drops() -> None:
    """Nothing dropped: an empty, zero-count list."""
    built = targets_from_group(pod_groups(4, kept_every=1), cfg=CFG, relabeler=RELABELER)
    assert len(built.active) == 8
    assert list(built.dropped) == []
    assert built.dropped.count == 0


def test_later_changes_to_the_groups_do_not_leak_in() -> None:
    """The dropped list refers to the groups of its own sync, not to a later list."""
    groups = pod_groups(2)
    built = targets_from_group(groups, cfg=CFG, relabeler=RELABELER)
    before = list(built.dropped)
    groups.clear()  # the pool replaces its tuple on every sync; a caller's list may change
    assert list(built.dropped) == before


def test_keeping_dropped_targets_costs_bytes_not_label_copies() -> None:
    """Per dropped target the pool keeps two array slots, not a ~40-pair tuple (< 32 bytes)."""
    groups = pod_groups(5000)
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        built = targets_from_group(groups, cfg=CFG, relabeler=RELABELER)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert built.dropped.count == 10_000
    per_target = (end - start) / built.dropped.count
    assert per_target < 32, per_target
