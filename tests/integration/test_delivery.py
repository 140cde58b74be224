"""Issue 8 "Nothing lost": every row of the issue's table, counted sample by sample.

The real agent runs as a subprocess (``python -m collector``), scraping 20 targets x 200 gauges
at 1 s and writing through a fault-injecting proxy into a real VictoriaMetrics
(`tests.integration.delivery`, `tests.integration.faultproxy`). Each target numbers its
responses, so a lost scrape is known by serial and a lost sample by series and timestamp; a
scrape the agent skipped while running (more than 3 s after a start) counts as missed, so an
agent cannot pass by not scraping.

Durations are the issue's times ``COLLECTOR_DELIVERY_SCALE`` (default 1/3: a 20 s outage,
10 s phases of 500 and 429, a 20 s delay phase); ``COLLECTOR_DELIVERY_SCALE=1`` runs the
issue's 60/30 s. The kill test always does 20 kills. The same scenarios, for collector, the
Prometheus agent and vmagent side by side: ``python -m benchmarks.delivery``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.delivery import (
    FLUSH_DEADLINE,
    SCENARIOS,
    Outcome,
    Phases,
    Rig,
    env_scale,
)

SCALE = env_scale()
PHASES = Phases.at_scale(SCALE)
_BUDGET = 240 + 4 * PHASES.outage

pytestmark = [pytest.mark.integration]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """VictoriaMetrics, 20 targets, the fault proxy, and collector warmed up (two scrapes each
    target acknowledged)."""
    with Rig("collector", tmp_path, phases=PHASES) as running:
        yield running


def _run(name: str, rig: Rig) -> Outcome:
    outcome = SCENARIOS[name][1](rig, random.Random())
    print(outcome.report())
    return outcome


@pytest.mark.timeout(_BUDGET)
def test_receiver_down_loses_nothing_and_keeps_order(rig: Rig) -> None:
    """Receiver down 60 s (scaled): every served scrape arrives, none out of order."""
    outcome = _run("down", rig)
    report = outcome.report()
    assert outcome.account.lost_scrapes == 0, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.account.lost_samples == 0, report
    assert outcome.out_of_order == 0, report
    assert outcome.vm_missing == 0, report


@pytest.mark.timeout(_BUDGET + FLUSH_DEADLINE)
def test_sigterm_during_outage_exits_in_time_and_loses_nothing(rig: Rig) -> None:
    """Receiver down, SIGTERM 20 s in (scaled), restart: exit 0 within the flush deadline
    (10 s), and every scrape served before the signal arrives (only the one per target that was
    in flight at the signal, served < 0.5 s before it, may be missing)."""
    outcome = _run("sigterm", rig)
    report = outcome.report()
    (ended,) = outcome.exits
    assert ended.code == 0, report
    assert ended.seconds <= FLUSH_DEADLINE, report
    assert outcome.account.lost_scrapes == 0, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.out_of_order == 0, report
    assert outcome.vm_missing == 0, report


@pytest.mark.timeout(_BUDGET)
def test_sigkill_during_outage_loses_at_most_one_second(rig: Rig) -> None:
    """Receiver down, SIGKILL 20 s in (scaled), restart: per target at most one scrape lost,
    and only one served within the last second (+0.5 s in flight) before the kill."""
    outcome = _run("sigkill", rig)
    report = outcome.report()
    assert outcome.account.lost_scrapes == 0, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.vm_missing == 0, report


@pytest.mark.timeout(_BUDGET + 60)
def test_500_then_429_then_400_loses_exactly_the_refused_samples(rig: Rig) -> None:
    """500 for 30 s, 429 + Retry-After: 5 for 30 s (scaled), then 400 to five requests: the
    samples lost are exactly, one by one, those in the five refused requests, and the agent
    counts them in ``collector_remote_write_dropped_samples_total``."""
    outcome = _run("statuses", rig)
    report = outcome.report()
    requests, _samples = outcome.refused.get(400, (0, 0))
    assert requests == 5, report
    assert not outcome.account.unknown, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.lost_not_refused == [], report
    assert outcome.refused_not_lost == [], report
    assert outcome.account.lost_samples == len(outcome.refused_lost), report
    assert outcome.out_of_order == 0, report
    assert outcome.vm_missing == 0, report
    assert outcome.dropped_metric is not None, (
        "collector_remote_write_dropped_samples_total is not exported\n" + report
    )
    assert sum(outcome.dropped_metric.values()) == len(outcome.refused_lost), report


@pytest.mark.timeout(_BUDGET + 60)
def test_slow_receiver_loses_nothing(rig: Rig) -> None:
    """Every request delayed by 2 s for 60 s (scaled): nothing lost, nothing out of order."""
    outcome = _run("delay", rig)
    report = outcome.report()
    assert outcome.account.lost_scrapes == 0, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.out_of_order == 0, report
    assert outcome.vm_missing == 0, report


@pytest.mark.timeout(_BUDGET + 20 * (FLUSH_DEADLINE + 5))
def test_twenty_kills_during_outage_each_lose_at_most_one_second(rig: Rig) -> None:
    """20 x SIGKILL at random moments during an outage, restarted right after each: per kill
    and target at most one scrape lost, served within the second (+0.5 s) before that kill."""
    outcome = _run("kills", rig)
    report = outcome.report()
    assert outcome.kills == 20, report
    assert outcome.account.lost_scrapes == 0, report
    assert outcome.account.missed_scrapes == 0, report
    assert outcome.vm_missing == 0, report
