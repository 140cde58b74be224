"""Targets: from a discovered label set to final labels, a URL and a stable identity.

Pure code (no I/O, no asyncio). A scrape pool calls `targets_from_group` for every target group
it is given; each target either becomes a `Target` (final labels, URL, interval, timeout,
fingerprint), is *dropped* by ``relabel_configs`` (kept for the UI's dropped list), or *fails*
with one of Prometheus's exact messages (``no address``, ``"h/p" is not a valid hostname``, ...).

Identity: two targets with the same final labels and URL are the same target. Prometheus hashes
the labels with xxHash64, which the stdlib lacks; we use BLAKE2b-64 over the same serialised
input (``name 0xFF value 0xFF ...``) and keep the outer FNV-1a-64 of ``"%016d" % labels_hash +
url``. Fingerprints (and so scrape offsets) therefore differ from Prometheus's, but are stable
across restarts and hosts, which is what the offset spreading needs.

Prometheus counterpart: ``scrape/target.go`` (``PopulateLabels``, ``TargetsFromGroup``,
``Target.hash``, ``Target.URL``).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import quote_plus

from collector.config import ScrapeConfig
from collector.model.duration import format_duration, parse_duration
from collector.model.labels import (
    ADDRESS,
    INSTANCE,
    JOB,
    META_PREFIX,
    METRICS_PATH,
    PARAM_PREFIX,
    RESERVED_PREFIX,
    SCHEME,
    SCRAPE_INTERVAL,
    SCRAPE_TIMEOUT,
    Labels,
    from_dict,
)
from collector.model.targetgroup import TargetGroup

__all__ = [
    "CONVERT_NHCB",
    "SCRAPE_CLASSIC",
    "SCRAPE_NATIVE",
    "DroppedTargets",
    "Health",
    "Populated",
    "RelabelProcessor",
    "Target",
    "TargetSet",
    "discovered_labels",
    "finish_labels",
    "fnv1a64",
    "labels_hash",
    "make_target",
    "populate_labels",
    "scrape_defaults",
    "target_fingerprint",
    "target_url",
    "targets_from_group",
]

CONVERT_NHCB = "__convert_classic_histograms_to_nhcb__"
SCRAPE_CLASSIC = "__always_scrape_classic_histograms__"
SCRAPE_NATIVE = "__scrape_native_histograms__"

Health = Literal["up", "down", "unknown"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SEP = b"\xff"
# Go's strconv.ParseBool.
_BOOLS = frozenset(
    {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
)


class RelabelProcessor(Protocol):
    """What `collector.model.relabel.compile_rules` returns: falsy when there are no rules."""

    def process(self, labels: dict[str, str]) -> dict[str, str] | None:
        """Apply the rules to a builder dict; None when the label set is dropped."""
        ...

    def __bool__(self) -> bool:
        """False when there are no rules, so callers can skip the call."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Populated:
    """The outcome of label population for one discovered target."""

    discovered: Labels
    """The labels before relabeling (group labels merged, defaults and params added)."""
    labels: Labels | None
    """The final labels (``__meta_*`` removed); None when dropped or failed."""
    error: str = ""
    """Non-empty when the target failed (it is then neither active nor dropped)."""


@dataclass(slots=True, kw_only=True, eq=False)
class Target:
    """One scrape target: identity and settings (fixed) plus the last scrape's outcome (mutable).

    The scrape loop updates ``health``, ``last_error``, ``last_scrape`` and ``last_duration``
    after every attempt; the API reads them.
    """

    labels: Labels
    """Final labels, including ``__``-prefixed ones such as ``__address__`` (no ``__meta_*``)."""
    discovered_labels: Labels
    """The labels before relabeling, shown as ``discoveredLabels``."""
    scrape_pool: str
    """The job name."""
    url: str
    interval: float
    """Seconds, from ``__scrape_interval__`` (so relabeling can change it per target)."""
    timeout: float
    """Seconds, from ``__scrape_timeout__``."""
    fingerprint: int
    """The 64-bit identity used for deduplication and the scrape offset."""
    health: Health = "unknown"
    last_error: str = ""
    last_scrape: float = 0.0
    """Wall-clock start of the last scrape, seconds since the epoch; 0 before the first one."""
    last_duration: float = 0.0
    """Seconds the last scrape took."""

    def sample_labels(self) -> Labels:
        """The labels attached to every sample: the final labels without ``__`` ones."""
        return tuple(kv for kv in self.labels if not kv[0].startswith(RESERVED_PREFIX))

    def label(self, name: str) -> str:
        """The value of one final label, ``""`` when absent."""
        for k, v in self.labels:
            if k == name:
                return v
        return ""


class DroppedTargets:
    """The targets ``relabel_configs`` dropped in one pool sync (``droppedTargets``).

    Kept as references, not label copies: a cluster-wide job usually drops most of what it
    discovers (``kubernetes-pods`` keeps only annotated pods) and a pod's ~40 discovered labels
    take ~3 KB as a tuple of pairs. The pool holds its target groups anyway (a reload rebuilds
    from them), so each kept dropped target is two integers in an array, its group and its
    index in that group (8 bytes), and its discovered labels are rebuilt from the group when
    somebody asks (``/api/v1/targets``, relabel steps): spec §3.2 steps 1-3, microseconds.

    ``cap`` is ``keep_dropped_targets`` (0 = unlimited); ``count`` counts every dropped target,
    kept or not (Prometheus's ``droppedTargetCounts``).
    """

    __slots__ = ("_cfg", "_groups", "_refs", "cap", "count")

    def __init__(self, groups: Sequence[TargetGroup], *, cfg: ScrapeConfig, cap: int = 0) -> None:
        # A tuple is kept as it is: the pool passes the tuple it holds, so nothing is copied.
        self._groups = groups if isinstance(groups, tuple) else tuple(groups)
        self._cfg = cfg
        self._refs = array("I")
        self.cap = cap
        self.count = 0

    def add(self, group: int, index: int) -> None:
        """Count a dropped target; keep it unless ``cap`` targets are kept already."""
        self.count += 1
        if self.cap == 0 or len(self._refs) < 2 * self.cap:
            self._refs.append(group)
            self._refs.append(index)

    def __len__(self) -> int:
        return len(self._refs) // 2

    def __iter__(self) -> Iterator[Labels]:
        """The discovered labels of each kept dropped target, in discovery order."""
        groups, cfg, refs = self._groups, self._cfg, self._refs
        defaults = scrape_defaults(cfg)
        for i in range(0, len(refs), 2):
            group = groups[refs[i]]
            lb = discovered_labels(
                group.targets[refs[i + 1]], group.labels, cfg=cfg, defaults=defaults
            )
            # `from_dict`, with a list instead of a generator: this runs 10,000s of times.
            yield tuple(sorted([pair for pair in lb.items() if pair[1]]))


@dataclass(slots=True, kw_only=True)
class TargetSet:
    """All targets built from one pool sync: active (deduplicated), dropped and failures."""

    active: dict[int, Target]
    """By fingerprint; the first occurrence of a duplicate wins."""
    dropped: DroppedTargets
    """Targets dropped by ``relabel_configs`` (at most ``keep_dropped_targets``)."""
    dropped_count: int = 0
    failures: list[str] = field(default_factory=list)
    """``instance <i> in group <source>: <error>`` lines, as Prometheus logs them."""
    discovered_count: int = 0
    """Targets seen in the groups, before deduplication."""


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit hash (Go's ``hash/fnv.New64a``)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def labels_hash(labels: Labels) -> int:
    """A stable 64-bit hash of a sorted label set (``name 0xFF value 0xFF ...``).

    Deviation: Prometheus uses xxHash64 over the same bytes; BLAKE2b-64 is in the stdlib.
    """
    h = hashlib.blake2b(digest_size=8)
    for name, value in labels:
        h.update(name.encode("utf-8", "surrogateescape"))
        h.update(_SEP)
        h.update(value.encode("utf-8", "surrogateescape"))
        h.update(_SEP)
    return int.from_bytes(h.digest(), "big")


def target_fingerprint(labels: Labels, url: str) -> int:
    """Target identity: FNV-1a-64 of ``"%016d" % labels_hash(labels) + url`` (spec §3.3)."""
    return fnv1a64(f"{labels_hash(labels):016d}{url}".encode("utf-8", "surrogateescape"))


def target_url(labels: Mapping[str, str], params: Sequence[tuple[str, Sequence[str]]]) -> str:
    """``<scheme>://<address><path>?<query>`` with ``__param_*`` labels overriding ``params``.

    The query is encoded like Go's ``url.Values.Encode``: keys sorted, ``QueryEscape``d.
    """
    query: dict[str, list[str]] = {k: list(vs) for k, vs in params}
    for name, value in labels.items():
        if name.startswith(PARAM_PREFIX):
            key = name[len(PARAM_PREFIX) :]
            values = query.get(key)
            if values:
                values[0] = value
            else:
                query[key] = [value]
    url = f"{labels.get(SCHEME, '')}://{labels.get(ADDRESS, '')}{labels.get(METRICS_PATH, '')}"
    encoded = "&".join(
        f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}"
        for k in sorted(query)
        for v in query[k]
    )
    return f"{url}?{encoded}" if encoded else url


def _go_quote(s: str) -> str:
    """Close to Go's ``%q``: double-quoted, with quotes, backslashes and controls escaped."""
    return json.dumps(s, ensure_ascii=False)


def _bool_label(value: bool) -> str:
    return "true" if value else "false"


def scrape_defaults(cfg: ScrapeConfig) -> Labels:
    """Spec §3.2 steps 2-3 as pairs: the job's defaults, then the first value of each param
    as ``__param_<k>``; each is set only where the target has no (non-empty) value."""
    return (
        (JOB, cfg.job_name),
        (SCRAPE_INTERVAL, format_duration(cfg.scrape_interval)),
        (SCRAPE_TIMEOUT, format_duration(cfg.scrape_timeout)),
        (METRICS_PATH, cfg.metrics_path),
        (SCHEME, cfg.scheme),
        (CONVERT_NHCB, "false"),
        (SCRAPE_CLASSIC, "false"),
        (SCRAPE_NATIVE, _bool_label(cfg.scrape_native_histograms)),
        *((PARAM_PREFIX + key, values[0]) for key, values in cfg.params if values),
    )


def discovered_labels(
    target: Mapping[str, str],
    group_labels: Mapping[str, str],
    *,
    cfg: ScrapeConfig,
    defaults: Labels | None = None,
) -> dict[str, str]:
    """Spec §3.2 steps 1-3: the labels relabeling starts from (the UI's discovered labels).

    ``defaults`` is `scrape_defaults` of ``cfg``, passed by callers that build many targets.
    """
    # 1. The target's own labels win over the group's (presence, not emptiness, decides).
    lb: dict[str, str] = dict(target)
    for name, value in group_labels.items():
        if name not in lb:
            lb[name] = value
    # 2-3. Scrape defaults and params, only where absent or empty.
    for name, value in scrape_defaults(cfg) if defaults is None else defaults:
        if not lb.get(name):
            lb[name] = value
    return lb


def populate_labels(
    target: Mapping[str, str],
    group_labels: Mapping[str, str],
    *,
    cfg: ScrapeConfig,
    relabeler: RelabelProcessor,
    defaults: Labels | None = None,
) -> Populated:
    """Spec §3.2 steps 1-11: merge, add defaults, relabel, validate, default ``instance``."""
    lb = discovered_labels(target, group_labels, cfg=cfg, defaults=defaults)
    discovered = from_dict(lb)

    # 4. relabel_configs; any drop drops the target.
    if relabeler:
        relabeled = relabeler.process(lb)
        if relabeled is None:
            return Populated(discovered=discovered, labels=None)
        lb = relabeled
    if not any(lb.values()):
        return Populated(discovered=discovered, labels=None)
    labels, error = finish_labels(lb)
    return Populated(discovered=discovered, labels=labels, error=error)


def finish_labels(lb: dict[str, str]) -> tuple[Labels | None, str]:
    """Spec §3.2 steps 5-11 on relabeled labels (``lb`` is changed): the final labels, or
    None and the error that makes the target fail."""
    # 5-6. The address.
    address = lb.get(ADDRESS, "")
    if not address:
        return None, "no address"
    if "/" in address:
        return None, f"{_go_quote(address)} is not a valid hostname"
    # 7. Interval and timeout.
    error = _check_interval_timeout(lb.get(SCRAPE_INTERVAL, ""), lb.get(SCRAPE_TIMEOUT, ""))
    if error:
        return None, error
    # 8. The histogram switches must be booleans when set (P3).
    for name in (CONVERT_NHCB, SCRAPE_CLASSIC, SCRAPE_NATIVE):
        value = lb.get(name, "")
        if value and value not in _BOOLS:
            return None, f"error parsing {name}: invalid boolean {_go_quote(value)}"
    # 9. Meta labels never go further.
    for name in [n for n in lb if n.startswith(META_PREFIX)]:
        del lb[name]
    # 10. instance defaults to the address; no default port is added (P3).
    if not lb.get(INSTANCE):
        lb[INSTANCE] = address
    # 11. Values must be valid UTF-8 (a str from surrogateescape decoding may not be).
    for name, value in lb.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None, f"invalid label value for {_go_quote(name)}: {_go_quote(value)}"
    return from_dict(lb), ""


def _check_interval_timeout(interval_s: str, timeout_s: str) -> str:
    """Spec §3.2 step 7; returns the error message or ``""``."""
    try:
        interval = parse_duration(interval_s)
    except ValueError as exc:
        return f"error parsing scrape interval: {exc}"
    if interval == 0:
        return "scrape interval cannot be 0"
    try:
        timeout = parse_duration(timeout_s)
    except ValueError as exc:
        return f"error parsing scrape timeout: {exc}"
    if timeout == 0:
        return "scrape timeout cannot be 0"
    if timeout > interval:
        return (
            "scrape timeout cannot be greater than scrape interval "
            f'("{format_duration(timeout)}" > "{format_duration(interval)}")'
        )
    return ""


def make_target(populated_labels: Labels, *, discovered: Labels, cfg: ScrapeConfig) -> Target:
    """Build the `Target` for labels that passed `populate_labels`."""
    lb = dict(populated_labels)
    url = target_url(lb, cfg.params)
    return Target(
        labels=populated_labels,
        discovered_labels=discovered,
        scrape_pool=cfg.job_name,
        url=url,
        interval=parse_duration(lb[SCRAPE_INTERVAL]),
        timeout=parse_duration(lb[SCRAPE_TIMEOUT]),
        fingerprint=target_fingerprint(populated_labels, url),
    )


def targets_from_group(
    groups: Sequence[TargetGroup],
    *,
    cfg: ScrapeConfig,
    relabeler: RelabelProcessor,
    keep_dropped: int = 0,
) -> TargetSet:
    """Build every target of every group; dedupe active ones by fingerprint (spec §3.4).

    ``keep_dropped`` caps the dropped list (0 = unlimited); ``dropped_count`` counts them all.
    """
    result = TargetSet(active={}, dropped=DroppedTargets(groups, cfg=cfg, cap=keep_dropped))
    defaults = scrape_defaults(cfg)
    for group_index, group in enumerate(groups):
        for index, tlabels in enumerate(group.targets):
            result.discovered_count += 1
            populated = populate_labels(
                tlabels, group.labels, cfg=cfg, relabeler=relabeler, defaults=defaults
            )
            if populated.error:
                result.failures.append(
                    f"instance {index} in group {group.source}: {populated.error}"
                )
                continue
            if populated.labels is None:
                result.dropped_count += 1
                result.dropped.add(group_index, index)
                continue
            target = make_target(populated.labels, discovered=populated.discovered, cfg=cfg)
            result.active.setdefault(target.fingerprint, target)
    return result
