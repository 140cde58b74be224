"""Terminal tables for relabel steps (``collector explain target|series``).

Place in the pipeline: beside it (see `collector.explain`). One table per rule: the rule's
fields in the order Prometheus's UI uses (action, source_labels, regex, modulus, replacement,
target_label, then the rest), one line saying what happened (and, for a drop or a
non-matching regex, the value the rule looked at), then the labels after the rule with each
change marked against the labels before it: ``+`` added, ``~`` changed (old value shown),
``-`` removed. On a terminal the marks are also coloured (green, yellow, red), as the UI's
modal highlights them; ``NO_COLOR`` turns colour off.

Prometheus counterpart: ``web/ui/mantine-ui/src/pages/service-discovery/RelabelSteps.tsx``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from collector.explain.core import TargetExplanation
from collector.model.relabel import (
    DEFAULT_REGEX,
    DEFAULT_REPLACEMENT,
    DEFAULT_SEPARATOR,
    RelabelConfig,
    compile_regex,
    expand_template,
)
from collector.model.relabel_steps import SeriesTrace, Trace

__all__ = ["Style", "describe_drop", "render_labels", "render_series", "render_target"]

_FILTERS = frozenset({"keep", "drop", "keepequal", "dropequal"})
_NO_REPLACEMENT = _FILTERS | {"hashmod", "labeldrop", "labelkeep", "lowercase", "uppercase"}
_NO_REGEX = frozenset({"keepequal", "dropequal", "hashmod", "lowercase", "uppercase"})


@dataclass(frozen=True, slots=True)
class Style:
    """ANSI colours when writing to a terminal; plain text otherwise."""

    color: bool = False
    changes_only: bool = False
    """Leave unchanged labels out of the per-rule tables (their count is shown instead)."""

    def paint(self, code: str, text: str) -> str:
        """``text`` in SGR ``code`` (``32`` green, ``33`` yellow, ``31`` red, ``1`` bold)."""
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _rule_fields(rule: RelabelConfig) -> list[tuple[str, str]]:
    """The fields worth reading: those set away from their default or used by the action."""
    action = rule.action
    fields: list[tuple[str, str]] = [("action", action)]
    if rule.source_labels:
        fields.append(("source_labels", "[" + ", ".join(rule.source_labels) + "]"))
    if rule.regex != DEFAULT_REGEX or action not in _NO_REGEX:
        fields.append(("regex", rule.regex))
    if rule.modulus:
        fields.append(("modulus", str(rule.modulus)))
    if rule.replacement != DEFAULT_REPLACEMENT or action not in _NO_REPLACEMENT:
        fields.append(("replacement", rule.replacement))
    if rule.target_label:
        fields.append(("target_label", rule.target_label))
    if rule.separator != DEFAULT_SEPARATOR:
        fields.append(("separator", _quote(rule.separator)))
    return fields


def _source_value(rule: RelabelConfig, labels: Mapping[str, str]) -> str:
    return rule.separator.join(labels.get(name, "") for name in rule.source_labels)


def describe_drop(rule: RelabelConfig, before: Mapping[str, str]) -> str:
    """Why a filtering rule dropped a label set that looked like ``before``."""
    value = _quote(_source_value(rule, before))
    source = "+".join(rule.source_labels) or "(no source_labels)"
    if rule.action == "keep":
        return f"{source} = {value} does not match regex {_quote(rule.regex)}"
    if rule.action == "drop":
        return f"{source} = {value} matches regex {_quote(rule.regex)}"
    target = f"{rule.target_label} = {_quote(before.get(rule.target_label, ''))}"
    if rule.action == "keepequal":
        return f"{source} = {value} differs from {target}"
    return f"{source} = {value} equals {target}"


def _no_change(rule: RelabelConfig, before: Mapping[str, str]) -> str:
    if rule.action in _FILTERS:
        return "kept, no change"
    if rule.action == "replace":
        value = _source_value(rule, before)
        match = compile_regex(rule.regex).fullmatch(value)
        if match is None:
            return f"no change: {_quote(value)} does not match the regex"
        if not expand_template(rule.replacement, match):
            return "no change: the replacement is empty, and an empty value means no label"
    return "no change"


def render_labels(
    before: Mapping[str, str] | None, after: Mapping[str, str], style: Style, *, indent: str
) -> list[str]:
    """A label table; with ``before``, changes are marked (and unchanged ones may be skipped)."""
    rows: list[tuple[str, str, str | None, str | None]] = []  # mark, name, new, old
    unchanged = 0
    for name in sorted(set(after) | set(before or ())):
        new, old = after.get(name), None if before is None else before.get(name)
        if before is None or old == new:
            if before is not None and style.changes_only:
                unchanged += 1
            else:
                rows.append((" ", name, new, None))
        else:
            rows.append(("+" if old is None else "-" if new is None else "~", name, new, old))
    if not rows and not unchanged:
        return [f"{indent}  (no labels)"]
    width = max((len(name) for _, name, _, _ in rows), default=0)
    lines = []
    for mark, name, new, old in rows:
        shown = _quote((old if new is None else new) or "")
        row = f"{mark} {name.ljust(width)}  {shown}"
        if mark == " ":
            lines.append(indent + row)
        elif mark == "~":
            lines.append(indent + style.paint(_COLORS[mark], row) + f"  (was {_quote(old or '')})")
        else:
            lines.append(indent + style.paint(_COLORS[mark], row))
    if unchanged:
        lines.append(f"{indent}  ... {unchanged} unchanged label(s)")
    return lines


_COLORS = {"+": "32", "~": "33", "-": "31"}
"""Added green, changed yellow, removed red (the UI's green, blue and red, for terminals)."""


def _render_trace(trace: Trace, style: Style, *, title: str, indent: str = "") -> list[str]:
    """The input table, then one table per rule; rules after a drop are summarised."""
    lines = [
        style.paint("1", f"{indent}{title}"),
        *render_labels(None, trace.input, style, indent=indent),
    ]
    before: Mapping[str, str] = trace.input
    total = len(trace.steps)
    for index, step in enumerate(trace.steps):
        if index > trace.dropped_by >= 0:
            remaining = total - index
            lines.append(
                f"{indent}Rules {index + 1}-{total} not evaluated"
                if remaining > 1
                else f"{indent}Rule {total} not evaluated"
            )
            break
        rule = step.rule
        lines.append("")
        lines.append(style.paint("1", f"{indent}Rule {index + 1} of {total}: {rule.action}"))
        fields = _rule_fields(rule)[1:]  # the action is in the title
        width = max((len(name) for name, _ in fields), default=0)
        lines.extend(f"{indent}  {name.ljust(width)}  {value}" for name, value in fields)
        if not step.keep:
            lines.append(
                f"{indent}  => " + style.paint("31", "DROPPED") + f": {describe_drop(rule, before)}"
            )
            continue
        if step.output == before:
            lines.append(f"{indent}  => {_no_change(rule, before)}")
        else:
            lines.append(f"{indent}  =>")
            lines.extend(render_labels(before, step.output, style, indent=indent))
        before = step.output
    return lines


def _selector(labels: Mapping[str, str]) -> str:
    """``name{a="b", ...}`` (the name as a label when it is not a plain metric name)."""
    name = labels.get("__name__", "")
    rest = [(k, v) for k, v in sorted(labels.items()) if k != "__name__"]
    plain = name and all(c.isalnum() or c in "_:" for c in name) and not name[0].isdigit()
    if name and not plain:
        rest.insert(0, ("__name__", name))
    inner = ", ".join(f"{k}={_quote(v)}" for k, v in rest)
    return f"{name if plain else ''}{{{inner}}}"


def render_target(explanation: TargetExplanation, style: Style) -> str:
    """Every step for one target, then where it ends up."""
    trace = explanation.trace
    title = f"Discovered labels (job {_quote(explanation.job)})"
    lines = _render_trace(trace, style, title=title)
    lines.append("")
    if explanation.state == "active":
        lines.append(style.paint("1", "Result: ") + style.paint("32", "ACTIVE"))
        lines.append(f"  scrape URL  {explanation.scrape_url}")
        lines.append("  final labels (__meta_* removed, instance set):")
        lines.extend(render_labels(None, dict(explanation.labels), style, indent="  "))
    elif explanation.state == "failed":
        lines.append(
            style.paint("1", "Result: ") + style.paint("31", "FAILED") + f": {explanation.error}"
        )
    elif trace.dropped_by >= 0:
        rule = trace.steps[trace.dropped_by].rule
        lines.append(
            style.paint("1", "Result: ")
            + style.paint("31", "DROPPED")
            + f" by rule {trace.dropped_by + 1} ({rule.action})"
        )
    else:
        lines.append(
            style.paint("1", "Result: ") + style.paint("31", "DROPPED") + ": no label left"
        )
    return "\n".join(lines) + "\n"


def render_series(trace: SeriesTrace, style: Style, *, job: str) -> str:
    """Every step for one series: metric relabeling, then each remote-write destination."""
    lines = [style.paint("1", "Series ") + _selector(trace.series)]
    if trace.target_labels:
        attached = ", ".join(f"{k}={_quote(v)}" for k, v in trace.target_labels)
        lines.append(f"Target labels attached: {attached}")
    lines.append("")
    metric = trace.metric
    title = f"metric_relabel_configs of job {_quote(job)}: input"
    lines.extend(_render_trace(metric, style, title=title))
    lines.append("")
    if trace.state == "dropped":
        where = f"by rule {metric.dropped_by + 1}" if metric.dropped_by >= 0 else "(no label left)"
        lines.append(
            style.paint("1", "Result: ")
            + style.paint("31", "DROPPED")
            + f" {where}: no destination receives it"
        )
        return "\n".join(lines) + "\n"
    if trace.state == "failed":
        lines.append(
            style.paint("1", "Result: ")
            + style.paint("31", "FAILED")
            + f": {trace.error} (the whole scrape fails)"
        )
        return "\n".join(lines) + "\n"
    lines.append(
        style.paint("1", "Result: ") + style.paint("32", "KEPT") + f" as {_selector(metric.output)}"
    )
    if not trace.destinations:
        lines.append("No remote_write destination is configured.")
    for dest in trace.destinations:
        d = dest.destination
        lines.append("")
        lines.append(style.paint("1", f"remote_write {_quote(d.name)}") + f" ({d.url})")
        if dest.added:
            added = ", ".join(f"{k}={_quote(v)}" for k, v in sorted(dest.added.items()))
            lines.append(f"  external labels added: {added}")
        if dest.trace.steps:
            lines.extend(
                _render_trace(dest.trace, style, title="write_relabel_configs: input", indent="  ")
            )
        else:
            lines.append("  no write_relabel_configs")
        received = dest.receives
        if received is None:
            rule = dest.trace.dropped_by
            why = f"dropped by rule {rule + 1}" if rule >= 0 else "no label left"
            lines.append("  => " + style.paint("31", "does not receive it") + f": {why}")
        else:
            lines.append("  => " + style.paint("32", "receives ") + _selector(received))
    return "\n".join(lines) + "\n"
