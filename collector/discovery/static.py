"""Static discovery, and the ``{targets, labels}`` list format that file_sd and http_sd share.

A job's ``static_configs`` become ONE provider (spec §1.2): entry ``i`` becomes the group with
``source = str(i)``, each target string a target ``{__address__: <string>}``, the entry's
``labels`` the group labels. The provider sends its groups once and then waits to be cancelled.
Duplicate target strings stay duplicated in the group (spec §11 #7: the discovered count says 2;
the scrape pool de-duplicates by target hash).

`parse_target_groups` validates the same shape when it comes from a file or an HTTP body: the
files of file_sd and the responses of http_sd are "a list of static configs".

Prometheus counterpart: ``discovery/discovery.go`` (``StaticConfig``, ``staticDiscoverer``) and
``discovery/targetgroup/targetgroup.go`` (``UnmarshalYAML`` / ``UnmarshalJSON``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import NoReturn

from collector.config import StaticConfig
from collector.discovery.discoverer import SendGroups
from collector.errors import DiscoveryError
from collector.model.targetgroup import TargetGroup

__all__ = ["StaticDiscoverer", "parse_target_groups", "sleep_forever", "static_groups"]

ADDRESS_LABEL = "__address__"


async def sleep_forever() -> NoReturn:
    """Wait until cancelled: what a provider does once it has nothing more to say."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a future nobody resolves was resolved")  # pragma: no cover


def static_groups(configs: Sequence[StaticConfig]) -> list[TargetGroup]:
    """The groups of a job's coalesced ``static_configs``: source ``"0"``, ``"1"``, … in order."""
    return [
        TargetGroup(
            source=str(index),
            targets=tuple({ADDRESS_LABEL: target} for target in config.targets),
            labels=dict(config.labels),
        )
        for index, config in enumerate(configs)
    ]


class StaticDiscoverer:
    """Sends a fixed list of groups once, then waits to be cancelled (keeping them published)."""

    def __init__(self, groups: Sequence[TargetGroup]) -> None:
        self._groups = list(groups)

    @classmethod
    def from_configs(cls, configs: Sequence[StaticConfig]) -> StaticDiscoverer:
        """The provider of a job's coalesced ``static_configs``."""
        return cls(static_groups(configs))

    async def run(self, send: SendGroups) -> NoReturn:
        """Send the groups (the first send marks the provider synced), then wait forever."""
        send(self._groups)
        await sleep_forever()


def parse_target_groups(
    data: object,
    *,
    location: str,
    source_prefix: str,
    meta_labels: Mapping[str, str],
) -> list[TargetGroup]:
    """Validate a decoded JSON/YAML list of ``{targets, labels}`` into groups.

    Group ``i`` gets ``source = f"{source_prefix}:{i}"`` and ``meta_labels`` added to its labels
    (``__meta_filepath`` / ``__meta_url``; they win over a label of the same name, as in
    Prometheus). ``None`` (an empty YAML document) is an empty list. Validation is strict like
    Prometheus's (unknown keys are refused) and stricter on one point: targets and label values
    must be strings, because YAML would turn ``1.10`` into ``1.1`` before we could see it.

    Raises `DiscoveryError` whose message starts with ``location`` and the item index, e.g.
    ``/etc/sd/a.yml: [2].labels: label name "" is not valid``.
    """
    if data is None:
        return []
    if not isinstance(data, list):
        raise DiscoveryError(f"{location}: expected a list of target groups, got {_kind(data)}")
    groups: list[TargetGroup] = []
    for index, item in enumerate(data):
        where = f"{location}: [{index}]"
        if item is None:
            raise DiscoveryError(f"{where}: nil target group item found")
        if not isinstance(item, dict):
            raise DiscoveryError(f"{where}: expected a mapping, got {_kind(item)}")
        unknown = sorted(str(key) for key in item if key not in ("targets", "labels"))
        if unknown:
            raise DiscoveryError(f"{where}: unknown field {unknown[0]!r}")
        targets = _parse_targets(item.get("targets"), where=f"{where}.targets")
        labels = _parse_labels(item.get("labels"), where=f"{where}.labels")
        labels.update(meta_labels)
        groups.append(
            TargetGroup(source=f"{source_prefix}:{index}", targets=targets, labels=labels)
        )
    return groups


def _parse_targets(value: object, *, where: str) -> tuple[Mapping[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DiscoveryError(f"{where}: expected a list of strings, got {_kind(value)}")
    targets: list[Mapping[str, str]] = []
    for index, target in enumerate(value):
        if not isinstance(target, str):
            raise DiscoveryError(f"{where}[{index}]: expected a string, got {_kind(target)}")
        targets.append({ADDRESS_LABEL: target})
    return tuple(targets)


def _parse_labels(value: object, *, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DiscoveryError(f"{where}: expected a mapping, got {_kind(value)}")
    labels: dict[str, str] = {}
    for name, label_value in value.items():
        # P3 validates names with the UTF-8 scheme: any non-empty valid UTF-8 string.
        if not isinstance(name, str) or not name:
            raise DiscoveryError(f"{where}: label name {name!r} is not valid")
        if not isinstance(label_value, str):
            raise DiscoveryError(
                f"{where}.{name}: expected a string value, got {_kind(label_value)}"
            )
        labels[name] = label_value
    return labels


def _kind(value: object) -> str:
    """A JSON-ish name for the type of ``value`` in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__
