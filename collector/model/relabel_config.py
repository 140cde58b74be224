"""Relabel rules as configured: `RelabelConfig`, parsed from YAML and validated like Prometheus.

Place in the pipeline: config load, the first of the three once-per-rule stages of relabeling.
`parse_rule` turns each rule of ``relabel_configs`` (targets), ``metric_relabel_configs`` (new
series of a scrape) and ``write_relabel_configs`` (series before remote write) into a validated
`RelabelConfig` (spec §5.1, §5.4); its regex is checked by `collector.model.goregex`, and
`collector.model.relabel` compiles the rules next. `validate_rule` is Prometheus's
``Config.Validate``; `compile_rules` runs it again for rules built in code.

Deliberate deviation from Prometheus: names are always validated with the Prometheus 3 UTF-8
scheme; the legacy scheme is not offered.

Prometheus counterpart: ``Config``, its ``UnmarshalYAML`` and ``Validate`` in
``model/relabel/relabel.go``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from collector.errors import ConfigError
from collector.model.goregex import compile_with_names
from collector.model.labels import is_valid_label_name

__all__ = [
    "DEFAULT_REGEX",
    "DEFAULT_REPLACEMENT",
    "DEFAULT_SEPARATOR",
    "Action",
    "RelabelConfig",
    "parse_rule",
    "validate_rule",
]

Action = Literal[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
]

_ACTIONS: Final[frozenset[str]] = frozenset(get_args(Action))
DEFAULT_REGEX: Final = "(.*)"
DEFAULT_REPLACEMENT: Final = "$1"
DEFAULT_SEPARATOR: Final = ";"


@dataclass(frozen=True, slots=True, kw_only=True)
class RelabelConfig:
    """One validated ``relabel_config`` rule with Prometheus's defaults."""

    source_labels: tuple[str, ...] = ()
    """Labels whose values are joined with `separator`; a missing label contributes ``""``."""
    separator: str = ";"
    """Placed between the source values."""
    regex: str = "(.*)"
    """RE2 pattern, matched fully anchored against the joined value (or the label name)."""
    modulus: int = 0
    """Divisor for ``hashmod``; must be non-zero there."""
    target_label: str = ""
    """Label written by replace/hashmod/lowercase/uppercase, compared by keepequal/dropequal."""
    replacement: str = "$1"
    """Go ``regexp.Expand`` template for replace and labelmap."""
    action: Action = "replace"
    """What the rule does; parsed case-insensitively."""


# --------------------------------------------------------------------------- rule parsing

_NULL_RULE_MESSAGES: Final[Mapping[str, str]] = {
    "target": "empty or null target relabeling rule in scrape config",
    "metric": "empty or null metric relabeling rule in scrape config",
    "write": "empty or null relabeling rule in remote write config",
}
_KEYS: Final = (
    "source_labels",
    "separator",
    "regex",
    "modulus",
    "target_label",
    "replacement",
    "action",
)
_MAX_UINT64: Final = 2**64 - 1


def parse_rule(data: object, *, context: str = "relabel") -> RelabelConfig:
    """Turn one ``yaml.safe_load``-ed relabel rule into a validated `RelabelConfig`.

    Strict like Prometheus's ``UnmarshalStrict``: unknown keys and wrong types are refused. A YAML
    ``null`` for a key means that key's zero value (``regex: null`` is the empty regex), as in Go.
    ``context`` (``"target"``, ``"metric"`` or ``"write"``) picks the wording for a null rule.
    Errors are `ConfigError` whose ``path`` names the key inside the rule (``""`` for the rule);
    the config loader prefixes the outer path.
    """
    if data is None:
        raise ConfigError(_NULL_RULE_MESSAGES.get(context, "empty or null relabeling rule"))
    if not isinstance(data, Mapping):
        raise ConfigError(f"relabel rule must be a mapping, got {_yaml_type(data)}")
    values: dict[str, object] = {}
    for key, raw in data.items():
        if not isinstance(key, str) or key not in _KEYS:
            raise ConfigError(f"unknown field {key!r} in relabel rule", path=str(key))
        values[key] = raw

    # Field conversion runs in document order, as Go's decoder does, so the first bad key wins.
    source_labels: tuple[str, ...] = ()
    separator, regex, target_label = DEFAULT_SEPARATOR, DEFAULT_REGEX, ""
    replacement, action, modulus = DEFAULT_REPLACEMENT, "replace", 0
    for key, raw in values.items():
        if key == "source_labels":
            source_labels = _to_label_names(raw)
        elif key == "modulus":
            modulus = _to_modulus(raw)
        elif key == "action":
            action = _to_action(raw)
        else:
            text = _to_string(raw, key)
            if key == "regex":
                compile_with_names(text, path="regex")
                regex = text
            elif key == "separator":
                separator = text
            elif key == "target_label":
                target_label = text
            else:
                replacement = text
    if not action:
        raise ConfigError("relabel action cannot be empty", path="action")
    config = RelabelConfig(
        source_labels=source_labels,
        separator=separator,
        regex=regex,
        modulus=modulus,
        target_label=target_label,
        replacement=replacement,
        action=cast("Action", action),
    )
    validate_rule(
        config,
        regex_given="regex" in values,
        source_labels_given=values.get("source_labels") is not None,
    )
    return config


def _yaml_type(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _to_string(raw: object, key: str) -> str:
    # Go's YAML decoder stores any scalar into a string field (``regex: 1``, ``replacement: 80``);
    # the resolved Python value is the closest we have to the scalar's text. Booleans are refused:
    # YAML 1.1 spells them ``yes``/``on``/``True`` and the original text is lost.
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise ConfigError(f"{key} must be a string, got {_yaml_type(raw)}", path=key)


def _to_label_names(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise ConfigError(
            f"source_labels must be a list of label names, got {_yaml_type(raw)}",
            path="source_labels",
        )
    names = []
    for index, item in enumerate(raw):
        path = f"source_labels[{index}]"
        name = _to_string(item, path)
        if not is_valid_label_name(name):
            raise ConfigError(f"{_go_quote(name)} is not a valid label name", path=path)
        names.append(name)
    return tuple(names)


def _to_modulus(raw: object) -> int:
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= _MAX_UINT64:
        raise ConfigError(f"modulus must be an integer in [0, 2^64), got {raw!r}", path="modulus")
    return raw


def _to_action(raw: object) -> str:
    if raw is None:
        return ""  # Go leaves the zero value; Validate then says "cannot be empty".
    text = _to_string(raw, "action")
    action = text.lower()
    if action not in _ACTIONS:
        raise ConfigError(f"unknown relabel action {_go_quote(text)}", path="action")
    return action


def _go_quote(text: str) -> str:
    """Render like Go's ``%q`` so messages match Prometheus byte for byte on plain input."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def validate_rule(config: RelabelConfig, *, regex_given: bool, source_labels_given: bool) -> None:
    """Prometheus ``Config.Validate`` (UTF-8 name scheme), same checks in the same order.

    ``regex_given`` and ``source_labels_given`` say whether the rule set those keys: Go can tell
    an explicit default from an absent key, the dataclass cannot. Raises `ConfigError`.
    """
    action, target, replacement = config.action, config.target_label, config.replacement
    if not action:
        raise ConfigError("relabel action cannot be empty", path="action")
    if action not in _ACTIONS:
        raise ConfigError(f"unknown relabel action {_go_quote(action)}", path="action")
    if action == "hashmod" and config.modulus == 0:
        raise ConfigError(
            "relabel configuration for hashmod requires non-zero modulus", path="modulus"
        )
    if not 0 <= config.modulus <= _MAX_UINT64:
        raise ConfigError(f"modulus must be an integer in [0, 2^64), got {config.modulus}")
    needs_target = action in ("replace", "hashmod", "lowercase", "uppercase")
    equal_action = action in ("keepequal", "dropequal")
    if (needs_target or equal_action) and not target:
        raise ConfigError(
            f"relabel configuration for {action} action requires 'target_label' value",
            path="target_label",
        )
    # Under the UTF-8 scheme a target with ``$`` templates is checked like any other name: any
    # non-empty valid UTF-8 string passes, and the expanded name is checked again at run time.
    if (needs_target or equal_action) and not is_valid_label_name(target):
        raise ConfigError(
            f"{_go_quote(target)} is invalid 'target_label' for {action} action",
            path="target_label",
        )
    if (action in ("lowercase", "uppercase") or equal_action) and (
        replacement != DEFAULT_REPLACEMENT
    ):
        raise ConfigError(f"'replacement' can not be set for {action} action", path="replacement")
    if action == "labelmap" and not is_valid_label_name(replacement):
        raise ConfigError(
            f"{_go_quote(replacement)} is invalid 'replacement' for {action} action",
            path="replacement",
        )
    if equal_action and (
        regex_given
        or config.regex != DEFAULT_REGEX
        or config.modulus != 0
        or config.separator != DEFAULT_SEPARATOR
        or config.replacement != DEFAULT_REPLACEMENT
    ):
        # Prometheus compares the regex by pointer, so even an explicit ``regex: (.*)`` fails.
        raise ConfigError(
            f"{action} action requires only 'source_labels' and `target_label`, and no other fields"
        )
    if action in ("labeldrop", "labelkeep") and (
        source_labels_given
        or config.source_labels
        or target
        or config.modulus != 0
        or config.separator != DEFAULT_SEPARATOR
        or config.replacement != DEFAULT_REPLACEMENT
    ):
        raise ConfigError(f"{action} action requires only 'regex', and no other fields")
