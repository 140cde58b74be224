"""The relabel step evaluator: one step per rule, Prometheus's shape, series to destinations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import yaml

from collector.errors import ParseError
from collector.model.labels import Labels, from_dict
from collector.model.relabel import RelabelConfig, compile_rules, parse_rule, relabel
from collector.model.relabel_steps import (
    MISSING_NAME,
    Destination,
    attach_target_labels,
    parse_series,
    rule_json,
    series_json,
    steps_json,
    trace_rules,
    trace_series,
)
from collector.model.textparse import parse
from collector.scrape.cache import AppendOptions, ScrapeCache
from collector.storage.series import SeriesRegistry


def rules(text: str) -> list[RelabelConfig]:
    """Rules from YAML, as a config file spells them."""
    return [parse_rule(item, context="target") for item in yaml.safe_load(text)]


POD_RULES = rules(
    r"""
- {source_labels: [__meta_scrape], action: keep, regex: "true"}
- {source_labels: [__address__, __meta_port], regex: '([^:]+)(?::\d+)?;(\d+)',
   replacement: '$1:$2', target_label: __address__}
- {action: labelmap, regex: __meta_label_(.+)}
- {source_labels: [__meta_phase], regex: Failed, action: drop}
- {regex: __meta_.*, action: labeldrop}
"""
)
POD = {
    "__address__": "10.0.0.1:8080",
    "__meta_scrape": "true",
    "__meta_port": "9102",
    "__meta_label_app": "api",
    "__meta_phase": "Running",
    "job": "pods",
}


def test_prometheus_api_example() -> None:
    """The case of Prometheus's api_test.go: a constant replace, then a drop of its result."""
    chain = compile_rules(
        rules(
            r"""
- {action: replace, replacement: "example.com:443", target_label: __address__, regex: ""}
- {source_labels: [__address__], regex: 'example\.com:.*', action: drop}
"""
        )
    )
    trace = trace_rules({"job": "test", "__address__": "localhost:9090"}, chain)
    assert steps_json(trace) == [
        {
            "rule": {
                "separator": ";",
                "regex": "",
                "target_label": "__address__",
                "replacement": "example.com:443",
                "action": "replace",
            },
            "output": {"__address__": "example.com:443", "job": "test"},
            "keep": True,
        },
        {
            "rule": {
                "source_labels": ["__address__"],
                "separator": ";",
                "regex": r"example\.com:.*",
                "replacement": "$1",
                "action": "drop",
            },
            "output": {},
            "keep": False,
        },
    ]
    assert trace.dropped_by == 1
    assert not trace.kept


@pytest.mark.parametrize(
    "labels",
    [
        POD,
        {**POD, "__meta_phase": "Failed"},
        {**POD, "__meta_scrape": "false"},
        {**POD, "__meta_port": ""},
        {"__address__": "h:1"},
        {},
    ],
    ids=["kept", "dropped-late", "dropped-first", "no-port", "bare", "empty"],
)
def test_each_step_equals_running_the_rules_up_to_it(labels: Mapping[str, str]) -> None:
    """Step i's output and keep are what Prometheus 3.8 computed: relabel.Process(rules[:i+1])."""
    trace = trace_rules(labels, compile_rules(POD_RULES))
    assert len(trace.steps) == len(POD_RULES)
    for i, step in enumerate(trace.steps):
        expected = relabel(labels, POD_RULES[: i + 1])
        dropped_by_rule = trace.dropped_by >= 0 and i >= trace.dropped_by
        assert step.keep is not dropped_by_rule
        if dropped_by_rule:
            assert step.output == {}
        else:
            # relabel() turns an emptied set into None (a step reports it as kept and {}) and
            # keeps input labels with "" values, which mean absent (Prometheus' builder).
            assert dict(step.output) == {k: v for k, v in (expected or {}).items() if v}
        assert step.rule is POD_RULES[i]


def test_a_pod_target_step_by_step() -> None:
    """Each step shows its own change: port moved, label mapped, meta labels gone."""
    trace = trace_rules(POD, compile_rules(POD_RULES))
    outputs = [dict(step.output) for step in trace.steps]
    assert outputs[0] == POD
    assert outputs[1]["__address__"] == "10.0.0.1:9102"
    assert outputs[2]["app"] == "api"
    assert outputs[3] == outputs[2]
    assert outputs[4] == {"__address__": "10.0.0.1:9102", "app": "api", "job": "pods"}
    assert trace.kept
    assert trace.output == outputs[4]
    assert trace.input == POD


def test_rules_after_a_drop_are_not_run() -> None:
    """Later rules are not evaluated: a hashmod after the drop would otherwise set a label."""
    chain = compile_rules(
        rules(
            """
- {source_labels: [a], regex: x, action: drop}
- {source_labels: [a], target_label: shard, modulus: 4, action: hashmod}
"""
        )
    )
    calls = []
    # trace() is a generator: count how many rules it ran before trace_rules stopped asking.
    labels = {"a": "x"}
    for kept in chain.trace(dict(labels)):
        calls.append(kept)
        if not kept:
            break
    assert calls == [False]
    trace = trace_rules(labels, chain)
    assert [s.keep for s in trace.steps] == [False, False]
    assert [dict(s.output) for s in trace.steps] == [{}, {}]


def test_empty_values_are_absent_and_an_emptied_set_is_kept_but_not_kept() -> None:
    """Input "" values are dropped; labeldrop of everything keeps (Prometheus) an empty set."""
    chain = compile_rules(rules("- {regex: .*, action: labeldrop}"))
    trace = trace_rules({"a": "1", "b": ""}, chain)
    assert trace.input == {"a": "1"}
    assert steps_json(trace) == [
        {
            "rule": {"separator": ";", "regex": ".*", "replacement": "$1", "action": "labeldrop"},
            "output": {},
            "keep": True,
        }
    ]
    assert trace.dropped_by == -1
    assert not trace.kept  # the pipeline drops a set with no label left


def test_no_rules_no_steps() -> None:
    """A pool without relabel_configs answers with no steps; the output is the input."""
    trace = trace_rules({"a": "1"}, compile_rules([]))
    assert trace.steps == ()
    assert trace.output == {"a": "1"}
    assert trace.kept


def test_rule_json_omits_go_zero_values() -> None:
    """modulus 0, empty source_labels and target_label are omitted; Go's field order is kept."""
    (hashmod,) = rules(
        "- {source_labels: [a, b], separator: '|', target_label: s, modulus: 8, action: HashMod}"
    )
    assert list(rule_json(hashmod).items()) == [
        ("source_labels", ["a", "b"]),
        ("separator", "|"),
        ("regex", "(.*)"),
        ("modulus", 8),
        ("target_label", "s"),
        ("replacement", "$1"),
        ("action", "hashmod"),
    ]
    (labelmap,) = rules("- {action: labelmap, regex: __meta_(.+)}")
    assert rule_json(labelmap) == {
        "separator": ";",
        "regex": "__meta_(.+)",
        "replacement": "$1",
        "action": "labelmap",
    }


def test_outputs_are_sorted_like_go_maps() -> None:
    """JSON outputs list labels by name whatever order the rules created them in."""
    chain = compile_rules(rules("- {target_label: a, replacement: x}"))
    (step,) = steps_json(trace_rules({"z": "1", "__b": "2"}, chain))
    assert list(step["output"]) == ["__b", "a", "z"]


# --------------------------------------------------------------------------- parse_series


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("up", {"__name__": "up"}),
        ("up 1", {"__name__": "up"}),
        ('up{job="a"} 1 1700000000000', {"__name__": "up", "job": "a"}),
        ('  up{job="a",} ', {"__name__": "up", "job": "a"}),
        ('{__name__="up", job = "a"}', {"__name__": "up", "job": "a"}),
        ('{"my.metric", "a.b"="c"}', {"__name__": "my.metric", "a.b": "c"}),
        (
            'x{a="q\\"uote", b="back\\\\slash", c="new\\nline"}',
            {"__name__": "x", "a": 'q"uote', "b": "back\\slash", "c": "new\nline"},
        ),
        ('ns:rule:rate5m{le="+Inf"}', {"__name__": "ns:rule:rate5m", "le": "+Inf"}),
        ('{job="a"}', {"job": "a"}),
    ],
)
def test_parse_series_accepts_lines_and_selectors(text: str, labels: dict[str, str]) -> None:
    """Exposition lines (value and timestamp ignored) and equality selectors both work."""
    assert parse_series(text) == labels


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no series given"),
        ("{}", "no series given"),
        ('up{job=~"a"}', "only = matchers"),
        ('up{job!="a"}', "only = matchers"),
        ('up{job="a}', "unterminated"),
        ('up{job="a\\t"}', "invalid escape"),
        ('up{job="a"}x', "expected the end of the series"),
        ('up{job="a" x="b"}', "expected , or }"),
        ("up{job=a}", "double-quoted value"),
        ('up{job="a", job="b"}', "given twice"),
        ('up{__name__="x"}', "given twice"),
        ("1up", "expected a name"),
    ],
)
def test_parse_series_refuses_what_is_not_one_series(text: str, message: str) -> None:
    """Anything but exact labels is refused with a message that says why."""
    with pytest.raises(ParseError, match=message):
        parse_series(text)


# --------------------------------------------------------------------------- series


METRIC_RULES = rules(
    """
- {source_labels: [__name__], regex: go_gc_.*, action: drop}
- {source_labels: [code], regex: "5..", target_label: class, replacement: server_error}
"""
)


def scraped(
    line: str, target: Labels, *, honor: bool, chain: Sequence[RelabelConfig]
) -> Labels | None:
    """What the real scrape path (parser + scrape cache) makes of one line; None if dropped."""
    registry = SeriesRegistry()
    cache = ScrapeCache(registry=registry)
    batch: list[tuple[int, float, int]] = []
    options = AppendOptions(
        target_labels=target, honor_labels=honor, metric_relabeler=compile_rules(chain)
    )
    result = cache.append(
        parse(line.encode() + b"\n", openmetrics=False), now_ms=1, options=options, batch=batch
    )
    assert result.error is None
    if not batch:
        return None
    return registry.labels(batch[0][0])


@pytest.mark.parametrize("honor", [False, True])
@pytest.mark.parametrize(
    "line",
    [
        'http_requests_total{code="503"} 1',
        'http_requests_total{code="200",job="inner",instance="i2",exported_job="e"} 1',
        'up{instance=""} 1',
        "go_gc_duration_seconds 1",
    ],
)
def test_series_labels_match_the_scrape_path(line: str, honor: bool) -> None:
    """Target labels (honor_labels, exported_*) and metric relabeling agree with ScrapeCache."""
    target = (("instance", "10.0.0.1:9102"), ("job", "pods"))
    traced = trace_series(
        parse_series(line),
        target_labels=target,
        honor_labels=honor,
        metric_relabeler=compile_rules(METRIC_RULES),
        destinations=[],
    )
    expected = scraped(line, target, honor=honor, chain=METRIC_RULES)
    if expected is None:
        assert traced.state == "dropped"
    else:
        assert traced.state == "kept"
        assert from_dict(traced.metric.output) == expected


def test_attach_moves_clashes_to_exported_shortest_first() -> None:
    """Spec §4.5's example: job and instance move to the first free exported_* names."""
    merged = attach_target_labels(
        {"job": "inner", "exported_job": "e", "instance": "i2"},
        (("instance", "t"), ("job", "labels")),
        honor=False,
    )
    assert merged == {
        "job": "labels",
        "instance": "t",
        "exported_job": "e",
        "exported_exported_job": "inner",
        "exported_instance": "i2",
    }


def destination(name: str, external: Labels, chain: str = "[]") -> Destination:
    """A remote-write destination with ``external`` labels and write rules from YAML."""
    return Destination(
        name=name,
        url=f"http://{name}.invalid/api/v1/write",
        external_labels=external,
        relabeler=compile_rules(rules(chain)),
    )


def test_each_destination_gets_external_labels_then_its_write_rules() -> None:
    """External labels never override the series'; write rules see them; a drop is per queue."""
    external = (("cluster", "eu"), ("replica", "r1"))
    everything = destination("everything", external)
    errors = destination(
        "errors",
        external,
        "[{source_labels: [class], regex: server_error, action: keep}, "
        "{regex: replica, action: labeldrop}]",
    )
    traced = trace_series(
        parse_series('http_requests_total{code="503", replica="own"} 3'),
        target_labels=(("job", "pods"),),
        metric_relabeler=compile_rules(METRIC_RULES),
        destinations=[everything, errors],
    )
    first, second = traced.destinations
    assert first.added == {"cluster": "eu"}  # replica="own" wins (spec §6.5)
    assert first.receives == {
        "__name__": "http_requests_total",
        "class": "server_error",
        "cluster": "eu",
        "code": "503",
        "job": "pods",
        "replica": "own",
    }
    assert second.trace.input == first.receives
    assert second.receives == {k: v for k, v in first.receives.items() if k != "replica"}

    ok = trace_series(
        parse_series('http_requests_total{code="200"}'),
        metric_relabeler=compile_rules(METRIC_RULES),
        destinations=[everything, errors],
    )
    assert ok.destinations[0].receives is not None
    assert ok.destinations[1].receives is None
    assert ok.destinations[1].trace.dropped_by == 0


def test_a_series_dropped_by_metric_relabeling_reaches_no_destination() -> None:
    """Dropped at the metric stage: no destination is traced and the JSON says so."""
    traced = trace_series(
        parse_series("go_gc_duration_seconds 1"),
        metric_relabeler=compile_rules(METRIC_RULES),
        destinations=[destination("a", ())],
    )
    assert traced.state == "dropped"
    assert traced.destinations == ()
    data = series_json(traced)
    assert data["state"] == "dropped"
    assert data["output"] == {}
    assert data["destinations"] == []
    assert [s["keep"] for s in data["steps"]] == [False, False]


def test_a_series_without_a_name_fails_the_scrape() -> None:
    """Metric relabeling that removes __name__ fails the whole scrape (spec §4.4)."""
    traced = trace_series(
        parse_series('up{a="b"}'),
        metric_relabeler=compile_rules(rules("- {regex: __name__, action: labeldrop}")),
        destinations=[destination("a", ())],
    )
    assert traced.state == "failed"
    assert traced.error == MISSING_NAME
    assert traced.destinations == ()


def test_series_json_shape() -> None:
    """The series endpoint's data: input, Prometheus-shaped steps, and one entry per queue."""
    traced = trace_series(
        parse_series('http_requests_total{code="503"}'),
        target_labels=(("job", "pods"),),
        metric_relabeler=compile_rules(METRIC_RULES),
        destinations=[destination("a", (("cluster", "eu"),))],
    )
    data = series_json(traced)
    assert data["series"] == {"__name__": "http_requests_total", "code": "503"}
    assert data["targetLabels"] == {"job": "pods"}
    assert data["input"] == {"__name__": "http_requests_total", "code": "503", "job": "pods"}
    assert [s["keep"] for s in data["steps"]] == [True, True]
    assert data["state"] == "kept"
    assert data["output"]["class"] == "server_error"
    (dest,) = data["destinations"]
    assert dest["name"] == "a"
    assert dest["externalLabelsAdded"] == {"cluster": "eu"}
    assert dest["steps"] == []
    assert dest["receives"] == {**data["output"], "cluster": "eu"}
