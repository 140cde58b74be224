"""Label sets: the shape shared by discovery, scrape and remote write.

A finished label set is a ``Labels`` tuple of ``(name, value)`` pairs, sorted by name (byte
order, which for ``str`` is code-point order and matches Prometheus), with no empty values and
no duplicate names. Tuples are hashable and cheap to compare, so they key caches and dedupe
targets. While labels are being built (target population, relabeling, honor_labels) they live in
a plain ``dict[str, str]`` where ``""`` means absent, the way Prometheus's ``labels.Builder``
treats an empty value.

Prometheus counterpart: ``model/labels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "ADDRESS",
    "INSTANCE",
    "JOB",
    "META_PREFIX",
    "METRICS_PATH",
    "METRIC_NAME",
    "PARAM_PREFIX",
    "RESERVED_PREFIX",
    "SCHEME",
    "SCRAPE_INTERVAL",
    "SCRAPE_TIMEOUT",
    "Labels",
    "from_dict",
    "is_legacy_label_name",
    "is_legacy_metric_name",
    "is_valid_label_name",
    "to_dict",
]

Labels = tuple[tuple[str, str], ...]
"""A finished label set: sorted by name, no empty values, no duplicate names."""

METRIC_NAME = "__name__"
ADDRESS = "__address__"
SCHEME = "__scheme__"
METRICS_PATH = "__metrics_path__"
SCRAPE_INTERVAL = "__scrape_interval__"
SCRAPE_TIMEOUT = "__scrape_timeout__"
PARAM_PREFIX = "__param_"
META_PREFIX = "__meta_"
RESERVED_PREFIX = "__"
JOB = "job"
INSTANCE = "instance"

_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LEGACY_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def from_dict(labels: Mapping[str, str]) -> Labels:
    """Freeze a builder dict into a ``Labels`` tuple, dropping empty values."""
    return tuple(sorted((k, v) for k, v in labels.items() if v))


def to_dict(labels: Labels) -> dict[str, str]:
    """Thaw a ``Labels`` tuple into a builder dict."""
    return dict(labels)


def is_legacy_label_name(name: str) -> bool:
    """``[a-zA-Z_][a-zA-Z0-9_]*``: the pre-UTF-8 label name rule."""
    return _LEGACY_LABEL.fullmatch(name) is not None


def is_legacy_metric_name(name: str) -> bool:
    """``[a-zA-Z_:][a-zA-Z0-9_:]*``: the pre-UTF-8 metric name rule."""
    return _LEGACY_METRIC.fullmatch(name) is not None


def is_valid_label_name(name: str) -> bool:
    """Prometheus 3.x UTF-8 scheme: any non-empty string (``str`` is valid Unicode already).

    Lone surrogates (from ``surrogateescape`` decoding) are not valid UTF-8 and are refused.
    """
    if not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
