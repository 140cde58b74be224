"""Explanations from a loaded config: a target's or a series' relabel steps, and their outcome.

Place in the pipeline: beside it (see `collector.explain`). The agent calls this with its
running config for ``/api/v1/targets/relabel_steps`` and ``/api/v1/series_relabel_steps``;
``collector explain`` calls it with a config file. Both therefore show the same steps.

A target's explanation ends where the scrape pool would end: after the rules, the pool's own
checks (`collector.scrape.target.finish_labels`: address, interval, timeout, ``instance``)
decide between *active* (with its final labels and scrape URL), *dropped* and *failed*.

Prometheus counterpart: ``targetRelabelSteps`` in ``web/api/v1/api.go`` and
``Manager.ScrapePoolConfig``; the series explanation and the outcome are collector's own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

from collector.config import Config, RemoteWriteConfig, ScrapeConfig
from collector.config.http_client import redact_url
from collector.errors import CollectorError
from collector.model.labels import RESERVED_PREFIX, Labels
from collector.model.relabel import RelabelConfig, Relabeler, compile_rules
from collector.model.relabel_steps import (
    Destination,
    SeriesTrace,
    StepJSON,
    Trace,
    steps_json,
    trace_rules,
    trace_series,
)
from collector.scrape.target import discovered_labels, finish_labels, target_url

__all__ = [
    "TargetExplanation",
    "TargetJSON",
    "compiled",
    "destinations",
    "explain_series",
    "explain_target",
    "remote_write_config",
    "scrape_config",
    "target_json",
]


@functools.lru_cache(maxsize=256)
def compiled(rules: tuple[RelabelConfig, ...]) -> Relabeler:
    """The compiled chain for ``rules``, compiled once per distinct rule list (rules are frozen
    dataclasses, so a reload with unchanged rules reuses the chain)."""
    return compile_rules(rules)


def scrape_config(config: Config, job: str) -> ScrapeConfig:
    """The job's config; raises `CollectorError` with Prometheus's message when it is absent."""
    for scrape in config.scrape_configs:
        if scrape.job_name == job:
            return scrape
    raise CollectorError(f"scrape pool {json.dumps(job)} not found")


def remote_write_config(config: Config, name: str) -> RemoteWriteConfig:
    """The ``remote_write`` entry named ``name`` (its ``remote_name``)."""
    for remote in config.remote_write:
        if remote.name == name:
            return remote
    known = ", ".join(json.dumps(r.name) for r in config.remote_write) or "none"
    raise CollectorError(f"remote_write {json.dumps(name)} not found (known: {known})")


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetExplanation:
    """A target's relabel steps and what the scrape pool would make of the result."""

    job: str
    trace: Trace
    state: Literal["active", "dropped", "failed"]
    labels: Labels = ()
    """The final target labels when active (``__meta_*`` removed, ``instance`` set)."""
    scrape_url: str = ""
    error: str = ""
    """Why the target failed (``no address``, a bad interval, ...) when it did."""


def explain_target(
    config: Config, job: str, labels: Mapping[str, str], *, add_defaults: bool
) -> TargetExplanation:
    """Run the job's ``relabel_configs`` on ``labels`` one rule at a time.

    ``labels`` are the discovered labels (``discoveredLabels`` of ``/api/v1/targets``), as
    Prometheus's API takes them. With ``add_defaults`` they are what discovery produced and
    the job's defaults (``job``, ``__scheme__``, ``__metrics_path__``, intervals, params) are
    added where absent first, exactly as the pool does; for discovered labels that changes
    nothing.
    """
    cfg = scrape_config(config, job)
    start = discovered_labels(labels, {}, cfg=cfg) if add_defaults else labels
    trace = trace_rules(start, compiled(cfg.relabel_configs))
    if not trace.kept:
        return TargetExplanation(job=job, trace=trace, state="dropped")
    final, error = finish_labels(dict(trace.output))
    if final is None:
        return TargetExplanation(job=job, trace=trace, state="failed", error=error)
    return TargetExplanation(
        job=job,
        trace=trace,
        state="active",
        labels=final,
        scrape_url=target_url(dict(final), cfg.params),
    )


class TargetResultJSON(TypedDict):
    """collector's addition to the relabel steps answer: where the target ends up, in the
    terms of ``/api/v1/targets`` (``labels`` and ``scrapeUrl`` as in ``activeTargets``)."""

    state: str
    labels: dict[str, str]
    scrapeUrl: str
    error: str


class TargetJSON(TypedDict):
    """``data`` of ``/api/v1/targets/relabel_steps``: Prometheus's ``steps`` plus ``result``."""

    steps: list[StepJSON]
    result: TargetResultJSON


def target_json(explanation: TargetExplanation) -> TargetJSON:
    """The API's ``data`` for a target explanation."""
    return {
        "steps": steps_json(explanation.trace),
        "result": {
            "state": explanation.state,
            # As activeTargets[].labels: the labels samples get (no ``__`` ones).
            "labels": {k: v for k, v in explanation.labels if not k.startswith(RESERVED_PREFIX)},
            "scrapeUrl": explanation.scrape_url,
            "error": explanation.error,
        },
    }


def destinations(config: Config) -> tuple[Destination, ...]:
    """Every ``remote_write`` entry with the global external labels and its compiled rules."""
    external = tuple(sorted(config.global_config.external_labels))
    return tuple(
        Destination(
            name=remote.name,
            url=redact_url(remote.url),  # a password in the URL never reaches the API
            external_labels=external,
            relabeler=compiled(remote.write_relabel_configs),
        )
        for remote in config.remote_write
    )


def explain_series(
    config: Config,
    job: str,
    series: Mapping[str, str],
    *,
    target: Mapping[str, str] | None = None,
    add_defaults: bool = False,
) -> SeriesTrace:
    """Follow one series of ``job`` to every remote-write destination.

    ``target`` (discovered labels, as for `explain_target`) makes the series carry that
    target's labels as a scrape attaches them (``honor_labels``); without it the series is
    taken as complete, e.g. one copied from a receiver. A target that is not active has no
    series, which is a `CollectorError`.
    """
    cfg = scrape_config(config, job)
    target_labels: Labels = ()
    if target is not None:
        explained = explain_target(config, job, target, add_defaults=add_defaults)
        if explained.state == "dropped":
            rule = explained.trace.dropped_by
            why = f"by rule {rule + 1}" if rule >= 0 else "(no label left)"
            raise CollectorError(f"the target is dropped {why} of relabel_configs: no series")
        if explained.state == "failed":
            raise CollectorError(f"the target fails ({explained.error}): no series")
        target_labels = tuple(
            pair for pair in explained.labels if not pair[0].startswith(RESERVED_PREFIX)
        )
    return trace_series(
        series,
        target_labels=target_labels,
        honor_labels=cfg.honor_labels,
        metric_relabeler=compiled(cfg.metric_relabel_configs),
        destinations=destinations(config),
    )
