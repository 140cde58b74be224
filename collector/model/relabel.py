"""Relabeling: every action of Prometheus's ``relabel_config``, compiled once.

CONTRACT (implementation pending): `RelabelConfig` is the parsed, validated rule;
`compile_rules` turns a sequence into a `Relabeler` whose ``process`` applies them in order to
a builder dict and returns it, or None when the label set is dropped.

Prometheus counterpart: ``model/relabel/relabel.go``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


@dataclass(frozen=True, slots=True, kw_only=True)
class RelabelConfig:
    """One validated ``relabel_config`` rule with Prometheus's defaults."""

    source_labels: tuple[str, ...] = ()
    separator: str = ";"
    regex: str = "(.*)"
    modulus: int = 0
    target_label: str = ""
    replacement: str = "$1"
    action: Action = "replace"
