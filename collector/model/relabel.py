"""Relabeling: every action of Prometheus's ``relabel_config``, compiled once.

Place in the pipeline: target relabeling (``relabel_configs``) runs on every discovered target,
metric relabeling (``metric_relabel_configs``) on every *new* series of a scrape (the scrape cache
remembers the verdict), and ``write_relabel_configs`` on every series before remote write. All
three share this module, the entry point: it also re-exports the public names of the modules it
stands on, so callers import relabeling from here.

Three stages, each done once per rule at config load:

1. `parse_rule` turns one YAML mapping into a validated `RelabelConfig` (spec §5.1, §5.4), in
   `collector.model.relabel_config`.
2. `compile_regex` translates the RE2 pattern into a Python `re` pattern with Go's meaning,
   fully anchored and with ``.`` matching ``\\n`` (``^(?s:<regex>)$``, spec §5.1), in
   `collector.model.goregex`.
3. `compile_rules` (here) turns the rules into a `Relabeler`: one small closure per rule with
   every template pre-split (Go ``regexp.Expand`` semantics, spec §5.3, in
   `collector.model.gotext`) and every constant folded.

``Relabeler.process`` then mutates a builder dict (``""`` means absent, as in
``labels.Builder``) and returns it, or None when the label set is dropped.

Deliberate deviations from Prometheus are documented where they happen: Unicode scripts in
regexes (`collector.model.goregex`), the UTF-8 name scheme only
(`collector.model.relabel_config`), and here: ``labelmap`` never creates a label with an empty
name (Prometheus would, and the target then fails validation later); when two source names map to
one target name, the later one in the dict's order wins (Prometheus: later in its builder's
order).

Prometheus counterpart: ``model/relabel/relabel.go`` (``Process``, ``relabel``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final, TypeAlias

from collector.model.goregex import CompiledRegex, compile_regex, compile_with_names
from collector.model.gotext import compile_template, expand_template, go_lower, go_upper
from collector.model.labels import is_valid_label_name
from collector.model.relabel_config import (
    DEFAULT_REGEX,
    DEFAULT_REPLACEMENT,
    DEFAULT_SEPARATOR,
    Action,
    RelabelConfig,
    parse_rule,
    validate_rule,
)

__all__ = [
    "DEFAULT_REGEX",
    "DEFAULT_REPLACEMENT",
    "DEFAULT_SEPARATOR",
    "Action",
    "RelabelConfig",
    "Relabeler",
    "compile_regex",
    "compile_rules",
    "expand_template",
    "go_lower",
    "go_upper",
    "parse_rule",
    "relabel",
]

_Step: TypeAlias = Callable[[dict[str, str]], bool]
"""One compiled rule: mutates the builder dict, returns False to drop the label set."""
_Getter: TypeAlias = Callable[[dict[str, str]], str]
_Matcher: TypeAlias = Callable[[str], bool]

_REGEX_META: Final = frozenset("\\.+*?()|[]{}^$")


def _make_getter(names: tuple[str, ...], separator: str) -> _Getter:
    if not names:
        return lambda labels: ""
    if len(names) == 1:
        (name,) = names
        return lambda labels: labels.get(name, "")
    return lambda labels: separator.join([labels.get(name, "") for name in names])


def _literal_prefix(regex: str) -> str:
    """A prefix every match must start with, to skip the regex engine for most label names.

    Conservative: no prefix when the pattern has a top-level-or-nested ``|``; a character
    followed by a quantifier is not part of the prefix.
    """
    if "|" in regex:
        return ""
    end = 0
    while end < len(regex) and regex[end] not in _REGEX_META:
        end += 1
    if end < len(regex) and regex[end] in "*?{+":
        end -= 1
    return regex[: max(end, 0)]


def _make_matcher(regex: str, pattern: re.Pattern[str]) -> _Matcher:
    """A boolean matcher; literals and literal alternations skip the regex engine."""
    if regex == DEFAULT_REGEX:
        return lambda value: True  # ``(.*)`` with dot-all matches every string
    alternatives = regex.split("|")
    if all(not (_REGEX_META & set(alt)) for alt in alternatives):
        if len(alternatives) == 1:
            return regex.__eq__
        return frozenset(alternatives).__contains__
    fullmatch = pattern.fullmatch
    prefix = _literal_prefix(regex)
    if prefix:
        return lambda value: value.startswith(prefix) and fullmatch(value) is not None
    return lambda value: fullmatch(value) is not None


def _set(labels: dict[str, str], name: str, value: str) -> None:
    # Builder semantics: setting "" deletes.
    if value:
        labels[name] = value
    else:
        labels.pop(name, None)


def _compile_step(rule: RelabelConfig) -> _Step:
    compiled = compile_with_names(rule.regex, path="regex")
    pattern = compiled.pattern
    get = _make_getter(rule.source_labels, rule.separator)
    target = rule.target_label
    action = rule.action

    if action == "replace":
        return _replace_step(rule, compiled, get)
    if action in ("keep", "drop"):
        matches = _make_matcher(rule.regex, pattern)
        keep = action == "keep"
        return lambda labels: matches(get(labels)) is keep
    if action == "keepequal":
        return lambda labels: labels.get(target, "") == get(labels)
    if action == "dropequal":
        return lambda labels: labels.get(target, "") != get(labels)
    if action == "hashmod":
        modulus = rule.modulus

        def hashmod(labels: dict[str, str]) -> bool:
            # surrogateescape gives back the original bytes of values decoded that way.
            digest = hashlib.md5(get(labels).encode("utf-8", "surrogateescape")).digest()
            labels[target] = str(int.from_bytes(digest[8:], "big") % modulus)
            return True

        return hashmod
    if action in ("lowercase", "uppercase"):
        convert = go_lower if action == "lowercase" else go_upper

        def change_case(labels: dict[str, str]) -> bool:
            _set(labels, target, convert(get(labels)))
            return True

        return change_case
    if action == "labelmap":
        return _labelmap_step(rule, compiled)
    matches = _make_matcher(rule.regex, pattern)
    drop_matching = action == "labeldrop"

    def label_filter(labels: dict[str, str]) -> bool:
        doomed = [name for name in labels if matches(name) is drop_matching]
        for name in doomed:
            del labels[name]
        return True

    return label_filter


def _replace_step(rule: RelabelConfig, compiled: CompiledRegex, get: _Getter) -> _Step:
    target, replacement = rule.target_label, rule.replacement
    if rule.regex == DEFAULT_REGEX and "$" not in target and "$" not in replacement:
        # Prometheus's fast path, generalised: ``(.*)`` matches every value and neither template
        # refers to it, so the rule is a constant assignment (or deletion when replacement is "").
        def constant(labels: dict[str, str]) -> bool:
            _set(labels, target, replacement)
            return True

        return constant

    pattern = compiled.pattern
    fullmatch = pattern.fullmatch
    groups = pattern.groups
    expand_value = compile_template(replacement, groups=groups, names=compiled.names)
    if "$" not in target:

        def replace(labels: dict[str, str]) -> bool:
            match = fullmatch(get(labels))
            if match is not None:
                _set(labels, target, expand_value(match))
            return True

        return replace

    expand_target = compile_template(target, groups=groups, names=compiled.names)

    def replace_templated(labels: dict[str, str]) -> bool:
        match = fullmatch(get(labels))
        if match is None:
            return True
        name = expand_target(match)
        if is_valid_label_name(name):  # an invalid expanded name makes the rule a no-op
            _set(labels, name, expand_value(match))
        return True

    return replace_templated


def _labelmap_step(rule: RelabelConfig, compiled: CompiledRegex) -> _Step:
    fullmatch = compiled.pattern.fullmatch
    expand = compile_template(
        rule.replacement, groups=compiled.pattern.groups, names=compiled.names
    )

    prefix = _literal_prefix(rule.regex)

    def labelmap(labels: dict[str, str]) -> bool:
        # Iterate a snapshot: names created here are not examined again by this rule.
        for name, value in list(labels.items()):
            if not value or not name.startswith(prefix):
                continue
            match = fullmatch(name)
            if match is not None:
                new_name = expand(match)
                if new_name:
                    labels[new_name] = value
        return True

    return labelmap


class Relabeler:
    """A compiled rule chain; ``process`` applies it to one builder dict.

    Build it once per config (`compile_rules`) and call ``process`` per target or new series.
    A `Relabeler` without rules is falsy so callers can skip the call altogether.
    """

    __slots__ = ("_steps", "rules")

    def __init__(self, rules: Sequence[RelabelConfig], steps: Sequence[_Step]) -> None:
        self.rules: tuple[RelabelConfig, ...] = tuple(rules)
        """The rules this chain was compiled from, in order."""
        self._steps = tuple(steps)

    def process(self, labels: dict[str, str]) -> dict[str, str] | None:
        """Apply every rule in order to ``labels`` (mutated in place) and return it.

        Returns None when a rule drops the set or when no non-empty label is left (spec §5.2).
        """
        for step in self._steps:
            if not step(labels):
                return None
        for value in labels.values():
            if value:
                return labels
        return None

    def trace(self, labels: dict[str, str]) -> Iterator[bool]:
        """Apply the rules one at a time to ``labels`` (mutated in place), yielding after each
        whether the set is still kept; stop at the first False. For `relabel_steps`."""
        for step in self._steps:
            yield step(labels)

    def __bool__(self) -> bool:
        return bool(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"Relabeler({len(self._steps)} rules)"


def compile_rules(rules: Sequence[RelabelConfig]) -> Relabeler:
    """Validate and compile ``rules`` into a `Relabeler` (regexes and templates done once).

    Rules built in code (not by `parse_rule`) are validated here too, so a zero ``modulus`` or a
    bad regex fails at load, never while relabeling. Raises `ConfigError`.
    """
    steps = []
    for rule in rules:
        validate_rule(
            rule,
            regex_given=rule.regex != DEFAULT_REGEX,
            source_labels_given=bool(rule.source_labels),
        )
        steps.append(_compile_step(rule))
    return Relabeler(rules, steps)


def relabel(
    labels: Mapping[str, str], rules: Relabeler | Sequence[RelabelConfig]
) -> dict[str, str] | None:
    """Relabel a copy of ``labels``; convenient for tests and one-off calls, not the hot path."""
    relabeler = rules if isinstance(rules, Relabeler) else compile_rules(rules)
    return relabeler.process(dict(labels))
