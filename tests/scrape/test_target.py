"""Target label population, URL and identity (spec §3.2, §3.3, §11 #7 #8 #12)."""

from __future__ import annotations

import pytest

from collector.config import ScrapeConfig
from collector.model.relabel import RelabelConfig, compile_rules
from collector.model.targetgroup import TargetGroup
from collector.scrape.target import (
    fnv1a64,
    populate_labels,
    target_fingerprint,
    target_url,
    targets_from_group,
)

CFG = ScrapeConfig(job_name="node", scrape_interval=30.0, scrape_timeout=10.0)


def populate(target: dict[str, str], cfg: ScrapeConfig = CFG, group: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """populate_labels with the job's relabel rules compiled."""
    return populate_labels(
        target, group or {}, cfg=cfg, relabeler=compile_rules(cfg.relabel_configs)
    )


def test_defaults_and_instance_without_port() -> None:
    """Defaults are added, meta labels removed, instance = address with no default port."""
    p = populate({"__address__": "h:1", "__meta_x": "m"})
    assert p.error == ""
    assert p.labels is not None
    assert dict(p.labels) == {
        "__address__": "h:1",
        "__always_scrape_classic_histograms__": "false",
        "__convert_classic_histograms_to_nhcb__": "false",
        "__metrics_path__": "/metrics",
        "__scheme__": "http",
        "__scrape_interval__": "30s",
        "__scrape_native_histograms__": "false",
        "__scrape_timeout__": "10s",
        "instance": "h:1",
        "job": "node",
    }
    assert dict(p.discovered)["__meta_x"] == "m"
    assert dict(populate({"__address__": "h"}).labels or ())["instance"] == "h"


def test_target_label_wins_over_group_label() -> None:
    """A target's own label is kept; group labels fill the gaps."""
    p = populate({"__address__": "h:1", "a": "t"}, group={"a": "g", "b": "g"})
    assert p.labels is not None
    assert dict(p.labels)["a"] == "t"
    assert dict(p.labels)["b"] == "g"


def test_node_role_instance_kept() -> None:
    """An instance label set by discovery is not overwritten by the address."""
    p = populate({"__address__": "10.0.0.1:10250", "instance": "node-a"})
    assert dict(p.labels or ())["instance"] == "node-a"


def test_params_become_param_labels_and_sorted_query() -> None:
    """params become __param_ labels; __param_ labels override the first value; keys sorted."""
    cfg = ScrapeConfig(
        job_name="p", params=(("module", ("http_2xx", "b")), ("a b", ("x&y",)), ("none", ()))
    )
    p = populate({"__address__": "h:1", "__param_module": "icmp"}, cfg)
    assert p.labels is not None
    labels = dict(p.labels)
    assert labels["__param_module"] == "icmp"
    assert labels["__param_a b"] == "x&y"
    assert "__param_none" not in labels
    assert target_url(labels, cfg.params) == "http://h:1/metrics?a+b=x%26y&module=icmp&module=b"


def test_url_without_query() -> None:
    """No params means no '?'."""
    labels = {"__scheme__": "https", "__address__": "h:9", "__metrics_path__": "/m"}
    assert target_url(labels, ()) == "https://h:9/m"


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ({"__address__": ""}, "no address"),
        ({"foo": "bar"}, "no address"),
        ({"__address__": "host/path:80"}, '"host/path:80" is not a valid hostname'),
        (
            {"__address__": "h", "__scrape_interval__": "1x"},
            'error parsing scrape interval: not a valid duration string: "1x"',
        ),
        ({"__address__": "h", "__scrape_interval__": "0"}, "scrape interval cannot be 0"),
        ({"__address__": "h", "__scrape_timeout__": "0s"}, "scrape timeout cannot be 0"),
        (
            {"__address__": "h", "__scrape_timeout__": "1m"},
            'scrape timeout cannot be greater than scrape interval ("1m" > "30s")',
        ),
        (
            {"__address__": "h", "x": "\udcff"},
            'invalid label value for "x": "\udcff"',
        ),
    ],
    ids=["empty", "absent", "slash", "bad-interval", "zero-interval", "zero-timeout", "gt", "utf8"],
)
def test_failures_exact_messages(target: dict[str, str], error: str) -> None:
    """Failed targets carry Prometheus's exact error strings."""
    p = populate(target)
    assert p.labels is None
    assert p.error == error


def test_relabel_drop_is_dropped_not_failed() -> None:
    """A drop rule drops the target (no error); discovered labels are kept."""
    cfg = ScrapeConfig(
        job_name="j",
        relabel_configs=(RelabelConfig(source_labels=("__address__",), regex="n", action="keep"),),
    )
    p = populate({"__address__": "nm"}, cfg)
    assert p.labels is None
    assert p.error == ""
    assert dict(p.discovered)["__address__"] == "nm"


def test_relabel_can_fix_a_slash_address() -> None:
    """A target with '/' is fine once relabeling rewrote the address (§11 #8)."""
    cfg = ScrapeConfig(
        job_name="j",
        relabel_configs=(
            RelabelConfig(
                source_labels=("__address__",),
                regex="([^/]+)/.*",
                target_label="__address__",
                replacement="${1}",
            ),
        ),
    )
    p = populate({"__address__": "host/path:80"}, cfg)
    assert dict(p.labels or ())["__address__"] == "host"


def test_relabeled_interval_sets_target_interval() -> None:
    """Relabeling __scrape_interval__ changes the target's interval (per-target intervals)."""
    group = TargetGroup(source="0", targets=({"__address__": "a:1", "__scrape_interval__": "1m"},))
    cfg = ScrapeConfig(job_name="j", scrape_interval=30.0, scrape_timeout=10.0)
    (target,) = targets_from_group([group], cfg=cfg, relabeler=compile_rules(())).active.values()
    assert (target.interval, target.timeout) == (60.0, 10.0)


def test_duplicate_targets_are_deduplicated() -> None:
    """Static targets ["a:1", "a:1"] give one target; discovered count is still 2 (§11 #7)."""
    group = TargetGroup(source="0", targets=({"__address__": "a:1"}, {"__address__": "a:1"}))
    built = targets_from_group([group], cfg=CFG, relabeler=compile_rules(()))
    assert len(built.active) == 1
    assert built.discovered_count == 2


def test_failures_and_dropped_accounting() -> None:
    """Failures are reported per instance index; keep_dropped caps the dropped list."""
    cfg = ScrapeConfig(
        job_name="j",
        relabel_configs=(RelabelConfig(source_labels=("x",), regex="drop", action="drop"),),
    )
    group = TargetGroup(
        source="src",
        targets=({"__address__": "a", "x": "drop"}, {"__address__": "b", "x": "drop"}, {"x": "y"}),
    )
    built = targets_from_group(
        [group], cfg=cfg, relabeler=compile_rules(cfg.relabel_configs), keep_dropped=1
    )
    assert built.failures == ["instance 2 in group src: no address"]
    assert built.dropped_count == 2
    assert len(built.dropped) == 1


def test_meta_change_keeps_identity_param_change_does_not() -> None:
    """Only final labels and URL define identity: meta labels don't, params do."""
    a = populate({"__address__": "h:1", "__meta_a": "1"})
    b = populate({"__address__": "h:1", "__meta_a": "2"})
    c = populate({"__address__": "h:1", "__param_x": "1"})
    assert a.labels == b.labels
    assert a.labels != c.labels


def test_fnv1a64_known_vectors() -> None:
    """FNV-1a 64 matches the reference vectors."""
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_fingerprint_is_stable() -> None:
    """The fingerprint is a pure function of labels and URL (stable across processes)."""
    labels = (("__address__", "h:1"), ("job", "j"))
    assert target_fingerprint(labels, "http://h:1/metrics") == target_fingerprint(
        labels, "http://h:1/metrics"
    )
    assert target_fingerprint(labels, "http://h:1/metrics") != target_fingerprint(
        labels, "http://h:1/other"
    )
