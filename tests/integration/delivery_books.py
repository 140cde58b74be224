"""The delivery rig's accounting (`tests.integration.delivery`): which served scrapes reached
the receiver, which were allowed to go missing (`Window`), and a scenario's `Outcome`."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.delivery_agents import Exit
from tests.integration.delivery_targets import (
    FLUSH_DEADLINE,
    SERIES,
    STARTUP_GRACE,
    AgentKind,
    Target,
    Targets,
)
from tests.integration.faultproxy import Books, SampleId

# ---------------------------------------------------------------------- accounting


@dataclass(slots=True)
class Window:
    """Served scrapes in ``(start, end]`` may be missing, at most ``cap`` per target."""

    label: str
    start: float
    end: float
    cap: int = 1


@dataclass(frozen=True, slots=True)
class Loss:
    """One scrape that did not (fully) arrive."""

    instance: str
    serial: int
    served_at: float
    ts: int | None
    """The scrape's timestamp if the proxy ever saw one of its samples."""
    missing: int
    """Samples of it not acknowledged."""


@dataclass(frozen=True, slots=True)
class Missed:
    """A target scraped fewer times than the agent's running time allowed."""

    instance: str
    run: int
    """Which start of the agent (1: the first)."""
    expected: int
    served: int

    @property
    def missed(self) -> int:
        return self.expected - self.served


@dataclass(slots=True)
class Account:
    """What arrived of the scrapes served up to a cutoff."""

    served: int = 0
    per_scrape: int = 0
    lost: list[Loss] = field(default_factory=list)
    excused: list[tuple[str, Loss]] = field(default_factory=list)
    lost_ids: set[SampleId] = field(default_factory=set)
    """The missing samples, one by one, of the lost scrapes whose timestamp is known."""
    missed: list[Missed] = field(default_factory=list)
    """Runs of the agent in which a target was scraped less often than every interval."""

    @property
    def lost_scrapes(self) -> int:
        return len(self.lost)

    @property
    def lost_samples(self) -> int:
        return sum(loss.missing for loss in self.lost)

    @property
    def excused_scrapes(self) -> int:
        return len(self.excused)

    @property
    def excused_samples(self) -> int:
        return sum(loss.missing for _, loss in self.excused)

    @property
    def missed_scrapes(self) -> int:
        return sum(m.missed for m in self.missed)

    @property
    def missed_samples(self) -> int:
        return self.missed_scrapes * self.per_scrape

    @property
    def unknown(self) -> list[Loss]:
        """Lost scrapes of which the proxy never saw a single sample."""
        return [loss for loss in self.lost if loss.ts is None]


def account(
    targets: Targets,
    books: Books,
    *,
    cutoff: float,
    windows: Sequence[Window] = (),
    lives: Sequence[tuple[float, float]] = (),
) -> Account:
    """Compare what ``targets`` served up to ``cutoff`` with what ``books`` say was acked,
    and, for each run of the agent in ``lives``, how often it scraped with what it should."""
    result = Account()
    served = [(t, [s for s in list(t.served) if s[1] <= cutoff]) for t in targets.targets]
    result.missed = _missed(served, lives)
    with books.lock:
        scrape_ts = books.scrape_ts
        acked_at = books.acked_at
        full = SERIES + 1
        for target, scrapes in served:
            for serial, _at in scrapes:
                ts = scrape_ts.get((target.instance, serial))
                if ts is not None:
                    full = max(full, acked_at.get((target.instance, ts), 0))
        result.per_scrape = full
        used: Counter[tuple[str, str]] = Counter()
        for target, scrapes in served:
            instance = target.instance
            result.served += len(scrapes)
            for serial, at in scrapes:
                ts = scrape_ts.get((instance, serial))
                got = 0 if ts is None else acked_at.get((instance, ts), 0)
                if got >= full:
                    continue
                loss = Loss(instance, serial, at, ts, full - got)
                window = next(
                    (
                        w
                        for w in windows
                        if w.start < at <= w.end and used[(w.label, instance)] < w.cap
                    ),
                    None,
                )
                if window is not None:
                    used[(window.label, instance)] += 1
                    result.excused.append((window.label, loss))
                    continue
                result.lost.append(loss)
                if ts is not None:
                    result.lost_ids.update(
                        (sid, ts)
                        for sid in books.sids_of.get(instance, ())
                        if not books.is_acked((sid, ts))
                    )
    return result


def dead_windows(lives: Sequence[tuple[float, float]]) -> list[Window]:
    """From each end of the agent (its signal) to its next start, given its ``(start, end)``
    runs. A scrape request the agent sent just before a kill can reach a target's handler only
    after it, so that serve is stamped when no agent runs: nobody received the answer, and it
    may be missing (at most one per target: an agent has one request in flight per target)."""
    return [
        Window(f"dead {i}", end, start)
        for i, ((_, end), (start, _)) in enumerate(itertools.pairwise(lives), 1)
    ]


def _missed(
    served: Sequence[tuple[Target, list[tuple[int, float]]]],
    lives: Sequence[tuple[float, float]],
) -> list[Missed]:
    """Per run and target: scrapes served in ``[begin, end)``, ``begin`` the run's first scrape
    of that target or ``start + STARTUP_GRACE`` if earlier, against the ``floor(end - begin) - 1``
    a 1 s schedule guarantees in such a window (one of slack for jitter at its edges)."""
    found = []
    for run, (start, end) in enumerate(lives, 1):
        for target, scrapes in served:
            first = next((at for _, at in scrapes if start <= at < end), end)
            begin = min(first, start + STARTUP_GRACE)
            expected = math.floor(end - begin) - 1
            got = sum(1 for _, at in scrapes if begin <= at < end)
            if got < expected:
                found.append(Missed(target.instance, run, expected, got))
    return found


# ---------------------------------------------------------------------- outcome


@dataclass(slots=True)
class Outcome:
    """One scenario's numbers for one agent."""

    scenario: str
    agent: AgentKind
    account: Account
    out_of_order: int
    duplicates: int
    resent: int
    stale_markers: int
    examples: list[str]
    refused: dict[int, tuple[int, int]]
    """status -> (requests, samples) the proxy refused."""
    refused_lost: set[SampleId]
    """Samples refused with a non-retryable status (400) and never acknowledged later."""
    refused_not_lost: list[str]
    lost_not_refused: list[str]
    exits: list[Exit]
    kills: int
    vm_missing: int
    """Samples the proxy saw acknowledged that VictoriaMetrics' export does not have."""
    dropped_metric: dict[str, float] | None
    """collector: ``collector_remote_write_dropped_samples_total`` by label set, None if absent."""
    failed_metric: float | None
    seconds: float
    seed: int | None
    requests: dict[str, int]
    log: Path
    started: float
    """``time.monotonic()`` of the agent's first start (times in the report are after it)."""
    notes: list[str] = field(default_factory=list)
    signals: list[float] = field(default_factory=list)
    """``time.monotonic()`` of every SIGTERM and SIGKILL sent to the agent."""
    spawns: list[float] = field(default_factory=list)
    """``time.monotonic()`` of every start of the agent."""

    def report(self) -> str:
        """Readable multi-line summary (assertion messages, benchmark output)."""
        a = self.account
        by_window = Counter(label.split(" ")[0] for label, _ in a.excused)
        lines = [
            f"{self.agent} / {self.scenario}: lost {a.lost_scrapes} scrapes ({a.lost_samples} "
            f"samples) of {a.served} served ({a.per_scrape} samples per scrape); excused "
            f"{a.excused_scrapes} ({a.excused_samples} samples) {dict(by_window)}; out-of-order "
            f"{self.out_of_order}, duplicates {self.duplicates} (resent {self.resent}); stale "
            f"markers {self.stale_markers}; refused {self.refused}; VM missing {self.vm_missing}; "
            f"{self.seconds:.0f} s",
            f"  proxy requests: {self.requests}",
        ]
        if a.missed:
            lines.append(
                f"  missed {a.missed_scrapes} scrapes (~{a.missed_samples} samples) while the "
                f"agent ran (after its first scrape, or {STARTUP_GRACE:g} s after a start):"
            )
            runs = Counter(m.run for m in a.missed)
            lines.extend(
                f"    run {run}: {n} targets scraped less than every second"
                for run, n in sorted(runs.items())[:5]
            )
            lines.extend(
                f"    {m.instance} run {m.run}: {m.served} scrapes, at least {m.expected} due"
                for m in a.missed[:3]
            )
        lines.extend(f"  SIGTERM: exit code {e.code} after {e.seconds:.2f} s" for e in self.exits)
        if self.kills:
            lines.append(f"  {self.kills} x SIGKILL (seed {self.seed})")
        if self.dropped_metric is not None or self.agent == "collector":
            lines.append(
                f"  collector_remote_write_dropped_samples_total: {self.dropped_metric}; "
                f"prometheus_remote_storage_samples_failed_total: {self.failed_metric}"
            )
        if self.refused_lost or self.lost_not_refused or self.refused_not_lost:
            lines.append(
                f"  refused with 400 and never acked: {len(self.refused_lost)} samples; lost but "
                f"not refused: {len(self.lost_not_refused)}; refused but not counted lost: "
                f"{len(self.refused_not_lost)}"
            )
            lines.extend(f"    lost not refused: {s}" for s in self.lost_not_refused[:3])
            lines.extend(f"    refused not lost: {s}" for s in self.refused_not_lost[:3])
        lines.extend(
            f"  lost: {loss.instance} serial {loss.serial} served at "
            f"+{loss.served_at - self.started:.2f} s{self._near_signal(loss.served_at)}, "
            f"ts {loss.ts}: {loss.missing} samples missing"
            for loss in a.lost[:8]
        )
        lines.extend(f"  out-of-order: {e}" for e in self.examples[:3])
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.append(f"  agent log: {self.log}")
        return "\n".join(lines)

    def _near_signal(self, at: float) -> str:
        """Where ``at`` lies: in which run of the agent, and how long before the signal that
        ended it (lost scrapes' context)."""
        run = next((i for i, t in reversed(list(enumerate(self.spawns, 1))) if t <= at), None)
        where = "before the first start" if run is None else f"run {run}"
        if run is not None and run <= len(self.signals) and self.signals[run - 1] < at:
            where = f"after signal {run}, before run {run + 1} started"
        after = [(i, t) for i, t in enumerate(self.signals, 1) if t >= at]
        if not after:
            return f" ({where})"
        i, t = after[0]
        return f" ({where}; {t - at:.2f} s before signal {i} of {len(self.signals)})"


def problems(outcome: Outcome) -> list[str]:
    """Where ``outcome`` misses its scenario's goal in the issue's table (empty: goal met)."""
    a = outcome.account
    found: list[str] = []
    if a.lost_scrapes and outcome.scenario != "statuses":
        found.append(f"lost {a.lost_scrapes} scrapes ({a.lost_samples} samples)")
    if a.missed:
        found.append(f"missed {a.missed_scrapes} scrapes while running")
    if outcome.out_of_order and outcome.scenario not in ("sigkill", "kills"):
        found.append(f"{outcome.out_of_order} out-of-order samples")
    if outcome.scenario == "sigterm":
        found.extend(
            f"SIGTERM: exit code {e.code} after {e.seconds:.2f} s"
            for e in outcome.exits
            if e.code != 0 or e.seconds > FLUSH_DEADLINE
        )
    if outcome.scenario == "statuses":
        if a.unknown:
            found.append(f"{len(a.unknown)} scrapes lost without trace")
        if outcome.lost_not_refused or outcome.refused_not_lost:
            found.append(
                f"lost {a.lost_samples} samples, refused with 400 {len(outcome.refused_lost)}: "
                f"{len(outcome.lost_not_refused)} lost but not refused, "
                f"{len(outcome.refused_not_lost)} refused but arrived or not counted"
            )
        if outcome.agent == "collector":
            dropped = sum((outcome.dropped_metric or {}).values())
            if outcome.dropped_metric is None or dropped != len(outcome.refused_lost):
                found.append(
                    f"collector_remote_write_dropped_samples_total {outcome.dropped_metric} "
                    f"!= {len(outcome.refused_lost)} refused"
                )
    if outcome.vm_missing:
        found.append(f"instrument: {outcome.vm_missing} acked samples missing in VictoriaMetrics")
    return found
