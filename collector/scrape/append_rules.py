"""What the scrape cache's append path is told and tells: options, result, series rules.

Place in the pipeline: `collector.scrape.cache.ScrapeCache.append` takes an `AppendOptions`
(built by the loop from the scrape config and target), reads an `Exposition` (the parser's
result) and returns an `AppendResult` (the loop's counters and report). On a cache miss it
applies the rules below to the new series: target labels (`attach_target_labels`), then name
validity and label limits (`validate`), with Prometheus's exact error messages. Nothing here
runs per sample.

Prometheus counterpart: ``mutateSampleLabels`` and ``verifyLabelLimits`` in
``scrape/scrape.go``, the checks of ``scrapeLoop.append``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.errors import CollectorError, ScrapeError, ScrapeLimitError
from collector.model.labels import (
    METRIC_NAME,
    Labels,
    is_legacy_label_name,
    is_legacy_metric_name,
    is_valid_label_name,
)
from collector.scrape.schedule import go_quote, render_labels
from collector.scrape.target import RelabelProcessor

__all__ = [
    "MAX_AHEAD_MS",
    "AppendOptions",
    "AppendResult",
    "Exposition",
    "LabelLimitError",
    "attach_target_labels",
    "validate",
]

MAX_AHEAD_MS = 10 * 60 * 1000
"""Samples more than 10 minutes in the future are out of bounds (Prometheus ``maxAheadTime``)."""

_EXPORTED = "exported_"


class Exposition(Protocol):
    """What `collector.model.textparse.parse` returns (its docstring is the contract)."""

    @property
    def samples(self) -> Iterable[tuple[bytes, float, int | None]]:
        """``(raw series bytes, value, explicit timestamp in ms or None)`` in body order."""
        ...

    def columns(self) -> tuple[list[bytes], list[float], list[int | None] | None]:
        """The samples as parallel lists; timestamps is None when none is explicit."""
        ...

    def labels(self, key: bytes) -> list[tuple[str, str]]:
        """The labels of one raw series, ``__name__`` first."""
        ...

    @property
    def metadata(self) -> Mapping[str, object]:
        """Family name -> type/help/unit."""
        ...


class _NoRules:
    """The empty relabeler: falsy, so it is never called."""

    def process(self, labels: dict[str, str]) -> dict[str, str] | None:
        return labels

    def __bool__(self) -> bool:
        return False


_NO_RULES = _NoRules()


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendOptions:
    """Everything from the scrape config and target that the append path needs."""

    target_labels: Labels = ()
    """The target's sample-visible labels (no ``__`` ones)."""
    honor_labels: bool = False
    honor_timestamps: bool = True
    track_timestamps_staleness: bool = False
    metric_relabeler: RelabelProcessor = _NO_RULES
    sample_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    legacy_names: bool = False
    """``metric_name_validation_scheme: legacy``."""
    native_histograms: bool = False
    """``scrape_native_histograms``: protobuf native histograms ingested as such."""
    classic_histograms: bool = False
    """``always_scrape_classic_histograms``: their classic series as well."""
    bucket_limit: int = 0
    """``native_histogram_bucket_limit`` (0: none)."""
    max_schema: int = 8
    """The schema ``native_histogram_min_bucket_factor`` allows (8: no reduction)."""


@dataclass(slots=True, kw_only=True)
class AppendResult:
    """Counts of one append pass (also after an error: Prometheus reports partial counts)."""

    scraped: int = 0
    """Sample lines seen (``scrape_samples_scraped``)."""
    post_relabel: int = 0
    """Samples left after metric relabeling (``scrape_samples_post_metric_relabeling``)."""
    series_added: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    out_of_bounds: int = 0
    sample_limit_exceeded: bool = False
    over_sample_limit: int = 0
    """Samples past ``sample_limit`` (not appended; ``keep_first`` counts them)."""
    label_limit_exceeded: bool = False
    series_limited: int = 0
    """Samples of series refused by the target's `SeriesLimiter` (not appended)."""
    error: CollectorError | None = None
    """A series error that aborted the pass (missing name, invalid names, label limits,
    duplicate label names: the last one is a `ParseError` raised by ``exp.labels``)."""


class LabelLimitError(ScrapeLimitError):
    """A label limit was exceeded (counted in ``..._exceeded_label_limits_total``)."""


def attach_target_labels(lb: dict[str, str], target: Labels, *, honor: bool) -> None:
    """Spec §4.5: honor_labels, or target labels win and scraped ones move to ``exported_*``."""
    if honor:
        for name, value in target:
            if not lb.get(name):
                lb[name] = value
        return
    conflicts: list[tuple[str, str]] = []
    for name, value in target:
        existing = lb.get(name)
        if existing:
            conflicts.append((name, existing))
        lb[name] = value
    if not conflicts:
        return
    # Shortest names first (stable), each to the first free exported_* name.
    conflicts.sort(key=lambda kv: len(kv[0]))
    for name, value in conflicts:
        new_name = name
        while True:
            new_name = _EXPORTED + new_name
            if not lb.get(new_name):
                lb[new_name] = value
                break


def validate(labels: Labels, options: AppendOptions) -> None:
    """Name presence and validity, then label limits (spec §4.4-4, §4.6)."""
    metric = ""
    for name, value in labels:
        if name == METRIC_NAME:
            metric = value
            break
    if not metric:
        raise ScrapeError(f"missing metric name ({METRIC_NAME} label)")
    if not _names_valid(labels, metric, legacy=options.legacy_names):
        raise ScrapeError(f"invalid metric name or label names: {render_labels(labels)}")
    _check_label_limits(labels, metric, options)


def _names_valid(labels: Labels, metric: str, *, legacy: bool) -> bool:
    if legacy:
        if not is_legacy_metric_name(metric):
            return False
        check: Callable[[str], bool] = is_legacy_label_name
    else:
        check = is_valid_label_name
    for name, value in labels:
        if name != METRIC_NAME and not check(name):
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _check_label_limits(labels: Sequence[tuple[str, str]], metric: str, o: AppendOptions) -> None:
    """Prometheus ``verifyLabelLimits``: exact messages, Go ``%.50s``/``%.50q`` truncation."""
    met = metric[:50]
    if o.label_limit > 0 and len(labels) > o.label_limit:
        raise LabelLimitError(
            f"label_limit exceeded (metric: {met}, number of labels: {len(labels)}, "
            f"limit: {o.label_limit})"
        )
    if o.label_name_length_limit <= 0 and o.label_value_length_limit <= 0:
        return
    for name, value in labels:
        if o.label_name_length_limit > 0:
            length = len(name.encode("utf-8", "surrogateescape"))
            if length > o.label_name_length_limit:
                raise LabelLimitError(
                    f"label_name_length_limit exceeded (metric: {met}, label name: {name[:50]}, "
                    f"length: {length}, limit: {o.label_name_length_limit})"
                )
        if o.label_value_length_limit > 0:
            length = len(value.encode("utf-8", "surrogateescape"))
            if length > o.label_value_length_limit:
                quoted = go_quote(value[:50])
                raise LabelLimitError(
                    f"label_value_length_limit exceeded (metric: {met}, label name: "
                    f"{name[:50]}, value: {quoted}, length: {length}, "
                    f"limit: {o.label_value_length_limit})"
                )
