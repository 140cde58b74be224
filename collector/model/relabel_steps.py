"""Relabel steps: run a compiled rule chain one rule at a time and record what each rule did.

Place in the pipeline: none on the hot path. This is the explanation of relabeling, everywhere
it happens, for ``GET /api/v1/targets/relabel_steps``, ``GET /api/v1/series_relabel_steps``,
``collector explain target|series`` and ``collector test relabel``:

* `trace_rules` runs a `Relabeler` (`collector.model.relabel`, the same compiled rules the
  pipeline runs) on one label set in a single pass and keeps the labels after every rule, and
  which rule dropped the set. Steps after a drop are not evaluated; like Prometheus they show
  ``keep: false`` and an empty output.
* `trace_series` follows one series through the rest of the pipeline: target labels attached
  (honor_labels, spec §4.5), ``metric_relabel_configs``, then for each remote-write destination
  its external labels (added only where the series lacks them, spec §6.5) and its
  ``write_relabel_configs``: what each destination receives.
* `parse_series` reads the series from an exposition line (``up{job="a"} 1``) or an
  equality selector (``{__name__="up", job="a"}``).
* `steps_json` / `series_json` give the JSON the API serves (Prometheus 3.8's shape for steps).

Pure code: no I/O, no asyncio; the caller looks up the rules (config) and serialises the JSON.

Prometheus counterpart: ``targetRelabelSteps`` in ``web/api/v1/api.go`` (3.8; single pass as
in 3.10), ``relabel.Process``; the series part has no counterpart in Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict, cast

from collector.errors import ParseError
from collector.model.labels import METRIC_NAME, Labels
from collector.model.relabel import RelabelConfig, Relabeler

__all__ = [
    "MISSING_NAME",
    "Destination",
    "DestinationJSON",
    "DestinationTrace",
    "RuleJSON",
    "SeriesJSON",
    "SeriesTrace",
    "Step",
    "StepJSON",
    "Trace",
    "attach_target_labels",
    "parse_series",
    "rule_json",
    "series_json",
    "sorted_labels",
    "steps_json",
    "trace_rules",
    "trace_series",
]

MISSING_NAME = "missing metric name (__name__ label)"
"""The scrape error Prometheus reports when metric relabeling leaves a series without a name."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One rule and the labels right after it."""

    rule: RelabelConfig
    output: Mapping[str, str]
    """The label set after the rule (builder order, no empty values); empty once dropped."""
    keep: bool
    """False from the dropping rule onward (later rules are not evaluated)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """A rule chain run on one label set."""

    input: Mapping[str, str]
    """The labels the first rule saw (empty values removed: ``""`` means absent)."""
    steps: tuple[Step, ...]
    dropped_by: int = -1
    """Index of the rule that dropped the set; -1 when no rule did."""

    @property
    def output(self) -> Mapping[str, str]:
        """The labels after the last rule (the input when there are no rules)."""
        return self.steps[-1].output if self.steps else self.input

    @property
    def kept(self) -> bool:
        """No rule dropped the set and a label is left: what the pipeline keeps."""
        return self.dropped_by < 0 and bool(self.output)


def trace_rules(labels: Mapping[str, str], relabeler: Relabeler) -> Trace:
    """Run ``relabeler`` on a copy of ``labels``, one rule at a time, in a single pass.

    Each step's output is a snapshot of the builder, so a 10-rule chain costs ten dict copies
    on top of the relabeling itself (Prometheus 3.8 re-ran rules 1..i for step i).
    """
    builder = {name: value for name, value in labels.items() if value}
    start = dict(builder)
    rules = relabeler.rules
    steps: list[Step] = []
    dropped_by = -1
    # zip pulls the rule first, then the verdict: the generator runs exactly one rule per step.
    for rule, kept in zip(rules, relabeler.trace(builder), strict=False):
        if not kept:
            dropped_by = len(steps)
            break
        steps.append(Step(rule=rule, output=dict(builder), keep=True))
    steps.extend(Step(rule=rule, output={}, keep=False) for rule in rules[len(steps) :])
    return Trace(input=start, steps=tuple(steps), dropped_by=dropped_by)


# --------------------------------------------------------------------------- series


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """One remote-write destination as far as labels go."""

    name: str
    """The ``remote_name``."""
    url: str
    external_labels: Labels
    """``global.external_labels``; every destination gets the same ones."""
    relabeler: Relabeler
    """Its compiled ``write_relabel_configs``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationTrace:
    """What one destination does with a series that survived metric relabeling."""

    destination: Destination
    added: Mapping[str, str]
    """The external labels actually added (the series' own value wins, spec §6.5)."""
    trace: Trace
    """``write_relabel_configs`` run on the series with external labels."""

    @property
    def receives(self) -> Mapping[str, str] | None:
        """The labels the destination receives, or None when it does not get the series."""
        return self.trace.output if self.trace.kept else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesTrace:
    """One series from the exposition to every remote-write destination."""

    series: Mapping[str, str]
    """The series as parsed."""
    target_labels: Labels
    """The target's sample labels that were attached (empty when no target was given)."""
    metric: Trace
    """``metric_relabel_configs`` run on the series with target labels."""
    error: str
    """Non-empty when the series fails the scrape after metric relabeling (no ``__name__``)."""
    destinations: tuple[DestinationTrace, ...]
    """Empty when the series does not survive metric relabeling."""

    @property
    def state(self) -> Literal["kept", "dropped", "failed"]:
        """``kept`` when it goes on to remote write; ``failed`` makes the whole scrape fail."""
        if not self.metric.kept:
            return "dropped"
        return "failed" if self.error else "kept"


def attach_target_labels(
    series: Mapping[str, str], target: Labels, *, honor: bool
) -> dict[str, str]:
    """Spec §4.5: the series with the target's sample labels, as a scrape attaches them.

    With ``honor`` the scraped value wins; otherwise the target's wins and each clashing
    scraped value moves to the first free ``exported_<name>`` (shortest names first). This is
    the scrape cache's rule (``collector.scrape.cache``); a test holds the two together.
    """
    lb = {name: value for name, value in series.items() if value}
    if honor:
        for name, value in target:
            if not lb.get(name):
                lb[name] = value
        return lb
    conflicts: list[tuple[str, str]] = []
    for name, value in target:
        existing = lb.get(name)
        if existing:
            conflicts.append((name, existing))
        lb[name] = value
    conflicts.sort(key=lambda kv: len(kv[0]))
    for name, value in conflicts:
        new_name = "exported_" + name
        while lb.get(new_name):
            new_name = "exported_" + new_name
        lb[new_name] = value
    return lb


def trace_series(
    series: Mapping[str, str],
    *,
    target_labels: Labels = (),
    honor_labels: bool = False,
    metric_relabeler: Relabeler,
    destinations: Sequence[Destination],
) -> SeriesTrace:
    """Follow ``series`` through target labels, metric relabeling and every destination."""
    metric = trace_rules(
        attach_target_labels(series, target_labels, honor=honor_labels), metric_relabeler
    )
    error = ""
    traced: list[DestinationTrace] = []
    if metric.kept:
        if not metric.output.get(METRIC_NAME):
            error = MISSING_NAME
        else:
            for destination in destinations:
                labels = dict(metric.output)
                added = {}
                for name, value in destination.external_labels:
                    if not labels.get(name):
                        labels[name] = added[name] = value
                traced.append(
                    DestinationTrace(
                        destination=destination,
                        added=added,
                        trace=trace_rules(labels, destination.relabeler),
                    )
                )
    return SeriesTrace(
        series={name: value for name, value in series.items() if value},
        target_labels=target_labels,
        metric=metric,
        error=error,
        destinations=tuple(traced),
    )


# --------------------------------------------------------------------------- parsing

_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class _Scanner:
    """A cursor over one series text; errors name the column (1-based)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> ParseError:
        return ParseError(f"column {self.pos + 1}: {message}")

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def name(self, chars: frozenset[str]) -> str:
        start = self.pos
        if self.peek() == '"':
            return self.quoted()
        if not self.peek() or self.peek() not in _NAME_START:
            raise self.fail("expected a name")
        while self.peek() and self.peek() in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        out: list[str] = []
        self.pos += 1  # the opening quote
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                escaped = _ESCAPES.get(text[self.pos : self.pos + 1])
                if escaped is None:
                    raise self.fail('invalid escape (the text format knows \\\\, \\" and \\n)')
                out.append(escaped)
                self.pos += 1
            else:
                out.append(char)
        raise self.fail("unterminated quoted string")


def parse_series(text: str) -> dict[str, str]:
    """The labels of one series written as an exposition line or an equality selector.

    Accepted: ``name``, ``name{a="b"}``, ``name{a="b"} 1 1700000000000`` (value and timestamp
    are ignored), ``{__name__="name", a="b"}`` and the UTF-8 form ``{"my.name", a="b"}``.
    Only ``=`` matchers: a series has exact labels. Raises `ParseError`.
    """
    scan = _Scanner(text.strip())
    labels: dict[str, str] = {}
    if scan.peek() and scan.peek() != "{":
        labels[METRIC_NAME] = scan.name(_NAME_CHARS)
    if scan.peek() == "{":
        scan.pos += 1
        while True:
            scan.skip_spaces()
            if scan.peek() == "}":
                break
            quoted = scan.peek() == '"'
            name = scan.name(_NAME_CHARS)
            scan.skip_spaces()
            if quoted and scan.peek() in (",", "}"):
                name, value = METRIC_NAME, name  # {"my.name", ...}
            else:
                operator = scan.text[scan.pos : scan.pos + 2]
                if operator in ("!=", "=~", "!~"):
                    raise scan.fail(f"only = matchers describe a series, not {operator}")
                if scan.peek() != "=":
                    raise scan.fail(f"expected = after label name {name!r}")
                scan.pos += 1
                scan.skip_spaces()
                if scan.peek() != '"':
                    raise scan.fail(f"expected a double-quoted value for label {name!r}")
                value = scan.quoted()
            if name in labels:
                raise scan.fail(f"label {name!r} given twice")
            labels[name] = value
            scan.skip_spaces()
            if scan.peek() == ",":
                scan.pos += 1
            elif scan.peek() != "}":
                raise scan.fail("expected , or } after a label")
        scan.pos += 1
    rest = scan.text[scan.pos :]
    if rest and rest[0] not in (" ", "\t"):
        raise scan.fail("expected the end of the series, or a space and a value")
    if not labels:
        raise ParseError('no series given: expected name{label="value", ...}')
    return labels


# --------------------------------------------------------------------------- JSON


class RuleJSON(TypedDict):
    """A rule as Prometheus's API renders ``relabel.Config`` (Go field order, zero values
    omitted where Go's ``omitempty`` omits them)."""

    source_labels: NotRequired[list[str]]
    separator: str
    regex: str
    modulus: NotRequired[int]
    target_label: NotRequired[str]
    replacement: str
    action: str


class StepJSON(TypedDict):
    """One entry of ``data.steps``."""

    rule: RuleJSON
    output: dict[str, str]
    keep: bool


class DestinationJSON(TypedDict):
    """One remote-write destination of ``/api/v1/series_relabel_steps`` (collector's own)."""

    name: str
    url: str
    externalLabelsAdded: dict[str, str]
    input: dict[str, str]
    steps: list[StepJSON]
    receives: dict[str, str] | None


class SeriesJSON(TypedDict):
    """``data`` of ``/api/v1/series_relabel_steps``."""

    series: dict[str, str]
    targetLabels: dict[str, str]
    input: dict[str, str]
    steps: list[StepJSON]
    state: str
    error: str
    output: dict[str, str]
    destinations: list[DestinationJSON]


def rule_json(rule: RelabelConfig) -> RuleJSON:
    """``rule`` in the shape of Prometheus's relabel steps API, keys in Go's field order."""
    fields: dict[str, object] = {}
    if rule.source_labels:
        fields["source_labels"] = list(rule.source_labels)
    fields["separator"] = rule.separator
    fields["regex"] = rule.regex
    if rule.modulus:
        fields["modulus"] = rule.modulus
    if rule.target_label:
        fields["target_label"] = rule.target_label
    fields["replacement"] = rule.replacement
    fields["action"] = rule.action
    return cast("RuleJSON", fields)


def sorted_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A label set as a JSON object, sorted by name like Go's map encoding."""
    return dict(sorted(labels.items()))


def steps_json(trace: Trace) -> list[StepJSON]:
    """``data.steps`` of the relabel steps API."""
    return [
        {"rule": rule_json(step.rule), "output": sorted_labels(step.output), "keep": step.keep}
        for step in trace.steps
    ]


def series_json(trace: SeriesTrace) -> SeriesJSON:
    """``data`` of ``/api/v1/series_relabel_steps``."""
    return {
        "series": sorted_labels(trace.series),
        "targetLabels": dict(trace.target_labels),
        "input": sorted_labels(trace.metric.input),
        "steps": steps_json(trace.metric),
        "state": trace.state,
        "error": trace.error,
        "output": sorted_labels(trace.metric.output) if trace.state == "kept" else {},
        "destinations": [
            {
                "name": d.destination.name,
                "url": d.destination.url,
                "externalLabelsAdded": sorted_labels(d.added),
                "input": sorted_labels(d.trace.input),
                "steps": steps_json(d.trace),
                "receives": None if d.receives is None else sorted_labels(d.receives),
            }
            for d in trace.destinations
        ],
    }
