"""Issue 8 "Nothing lost": the measuring rig, shared by ``test_delivery.py`` and
``benchmarks/delivery.py``.

One `Rig` is one agent (collector, the Prometheus agent or vmagent, a real subprocess) scraping
20 loopback targets x 200 gauges at 1 s and remote-writing through a `FaultProxy` into a real
VictoriaMetrics::

    Targets (20 x aiohttp, serial per response) ◀─scrape─ agent ─▶ FaultProxy ─▶ VictoriaMetrics
          │ served: [(serial, when)]                                 │ Books
          └──────────────────────────── account() ◀──────────────────┘

Why the loss count is exact: each target's body carries ``scrape_seq``, a serial that grows by 1
per response, and every ``delivery_sample`` gauge has that serial as its value too. The target
records which serials it served and when; the proxy's books map ``(instance, serial)`` to the
scrape's timestamp and count, per ``(instance, timestamp)``, the distinct series the receiver
acknowledged. A served scrape is *lost* when fewer than a whole scrape's series (200 gauges,
``scrape_seq`` and the agent's report series, 206 for collector) were acknowledged at its
timestamp; what is missing is counted in samples, and where the timestamp is known (the proxy saw
the scrape, even refused) the missing samples are known one by one.

Which scrapes are allowed to go missing is explicit, as `Window` objects with a per-target cap: the
scrape in flight at a SIGTERM (served less than `IN_FLIGHT` s before it), and for a SIGKILL at
most one scrape per target served within ``1 s`` (+ `IN_FLIGHT`) before the kill ("loses at most
1 s of samples"). Everything else must arrive.

Served is not the whole story: an agent that stops scraping loses data too. So, per run of the
agent (start to signal), each target must be scraped once a second from its first scrape (at the
latest `STARTUP_GRACE` after the start) on; the shortfall is counted as *missed* scrapes.

Scenarios (`SCENARIOS`) follow the issue's table; `Phases.at_scale` shortens them for CI
(``COLLECTOR_DELIVERY_SCALE``, default 1/3; 1.0 is the issue's 60/30 s).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from tests.integration.faultproxy import Books, FaultProxy, LoopThread, SampleId, running_proxy
from tests.integration.servers import Server, free_port, victoria_metrics, wait_until

__all__ = [
    "AGENTS",
    "IN_FLIGHT",
    "SCENARIOS",
    "Account",
    "AgentKind",
    "AgentProcess",
    "Exit",
    "Outcome",
    "Phases",
    "Rig",
    "Targets",
    "Window",
    "env_scale",
    "problems",
]

AgentKind = Literal["collector", "prometheus", "vmagent"]
AGENTS: tuple[AgentKind, ...] = ("collector", "prometheus", "vmagent")

TARGETS = 20
SERIES = 200
JOB = "delivery"
SERIAL_METRIC = "scrape_seq"
GAUGE = "delivery_sample"
FLUSH_DEADLINE = 10.0
"""``--storage.remote.flush-deadline`` given to collector and Prometheus: the SIGTERM budget."""
IN_FLIGHT = 0.5
"""A scrape served this close before a signal may not have been committed by the agent yet."""
KILL_LOSS = 1.0
"""The issue: "kill -9 loses at most 1 s of samples"."""
KILL_SPREAD = 3.0
"""Kills land uniformly within this many seconds after the first scrape of each run, so every
kill hits an agent that is scraping and queueing (not one still starting)."""
STARTUP_GRACE = 10.0
"""From a (re)start, how long an agent may take before its first scrape: Prometheus's discovery
manager hands targets over on a 5 s tick (``updatert``), plus up to one interval of scrape
offset, plus start-up. From its first scrape on (or this long after the start, whichever comes
first) an agent must scrape every target once per interval; the shortfall is *missed* scrapes."""
MIN_AFTER_RESTART = 5.0
"""A restarted agent scrapes at least this long against the still-down receiver."""
RETRY_AFTER = 5
DEFAULT_SCALE = 1 / 3


def env_scale() -> float:
    """``COLLECTOR_DELIVERY_SCALE`` (1.0: the issue's durations), default 1/3."""
    return float(os.environ.get("COLLECTOR_DELIVERY_SCALE", DEFAULT_SCALE))


@dataclass(frozen=True, slots=True, kw_only=True)
class Phases:
    """Scenario durations, in seconds."""

    outage: float = 60.0
    sigterm_at: float = 20.0
    status_500: float = 30.0
    status_429: float = 30.0
    delay_phase: float = 60.0
    delay: float = 2.0
    """Added to every request during the delay phase (not scaled)."""
    kills: int = 20
    """Not scaled: the issue asks for 20; the outage lasts as long as they take."""
    settle_quiet: float = 15.0
    """Settling ends when the loss count has not changed for this long while samples flow."""
    settle_timeout: float = 120.0

    @classmethod
    def at_scale(cls, scale: float) -> Phases:
        """The issue's durations times ``scale``."""
        full = cls()
        return cls(
            outage=full.outage * scale,
            sigterm_at=full.sigterm_at * scale,
            status_500=full.status_500 * scale,
            status_429=full.status_429 * scale,
            delay_phase=full.delay_phase * scale,
            settle_timeout=full.settle_timeout + 2 * full.outage * scale,
        )


# ---------------------------------------------------------------------- targets


@dataclass(slots=True)
class Target:
    """One exporter: its port and the serials it served, with ``time.monotonic()`` stamps."""

    index: int
    port: int
    serial: int = 0
    served: list[tuple[int, float]] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """``host:port``, the ``instance`` label agents give its samples."""
        return f"127.0.0.1:{self.port}"


class Targets:
    """``count`` exporters of ``series`` gauges each, one aiohttp runner per port."""

    def __init__(self, count: int = TARGETS, series: int = SERIES) -> None:
        self.targets = [Target(i, 0) for i in range(count)]
        self._head = (
            f"# HELP {GAUGE} One of {series} gauges; the value is the scrape serial.\n"
            f"# TYPE {GAUGE} gauge\n"
        ).encode()
        self._lines = [f'{GAUGE}{{series="{i:03d}"}} '.encode() for i in range(series)]
        self._tail = (
            f"# HELP {SERIAL_METRIC} Responses served by this target.\n"
            f"# TYPE {SERIAL_METRIC} counter\n{SERIAL_METRIC} "
        ).encode()
        self._runners: list[web.AppRunner] = []

    def body(self, serial: int) -> bytes:
        """The exposition of one response."""
        value = b"%d\n" % serial
        return b"".join((self._head, value.join(self._lines), value, self._tail, value))

    async def start(self) -> None:
        """Listen on a free loopback port per target."""
        for target in self.targets:
            app = web.Application()
            app.router.add_get("/metrics", self._handler(target))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            target.port = sock.getsockname()[1]
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)

    async def stop(self) -> None:
        """Close every listener."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def _handler(self, target: Target) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def metrics(_: web.Request) -> web.Response:
            target.serial += 1
            body = self.body(target.serial)
            target.served.append((target.serial, time.monotonic()))
            return web.Response(body=body, content_type="text/plain", charset="utf-8")

        return metrics


# ---------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class Exit:
    """How an agent process ended after a signal."""

    signal_at: float
    exited_at: float
    code: int | None
    """None: still running at the bound, then killed."""

    @property
    def seconds(self) -> float:
        """From the signal to the exit."""
        return self.exited_at - self.signal_at


class AgentDied(RuntimeError):
    """The agent exited without being asked to."""


class AgentProcess:
    """One agent as a subprocess; restartable with the same storage and port."""

    def __init__(self, kind: AgentKind, *, workdir: Path, remote_url: str, targets: Targets):
        self.kind = kind
        self.workdir = workdir
        self.remote_url = remote_url
        self.port = free_port()
        self.storage = workdir / f"{kind}-storage"
        self.config = workdir / f"{kind}.yml"
        self.log = workdir / f"{kind}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.spawns: list[float] = []
        """``time.monotonic()`` of every start."""
        self.ends: list[float] = []
        """``time.monotonic()`` of every SIGTERM or SIGKILL that ended a run."""
        self.config.write_text(_scrape_config(kind, targets, remote_url))

    @property
    def url(self) -> str:
        """The agent's own HTTP address."""
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The command line for ``kind``."""
        listen = f"127.0.0.1:{self.port}"
        if self.kind == "collector":
            return [
                sys.executable,
                "-m",
                "collector",
                f"--config.file={self.config}",
                f"--storage.path={self.storage}",
                f"--web.listen-address={listen}",
                f"--storage.remote.flush-deadline={FLUSH_DEADLINE:g}s",
            ]
        if self.kind == "prometheus":
            return [
                "prometheus",
                "--enable-feature=agent",
                f"--config.file={self.config}",
                f"--storage.agent.path={self.storage}",
                f"--web.listen-address={listen}",
                f"--storage.remote.flush-deadline={FLUSH_DEADLINE:g}s",
            ]
        return [
            "vmagent",
            f"-promscrape.config={self.config}",
            "-promscrape.config.strictParse=false",
            f"-remoteWrite.url={self.remote_url}",
            f"-remoteWrite.tmpDataPath={self.storage}",
            f"-httpListenAddr={listen}",
        ]

    def start(self) -> float:
        """Start (again); the ``time.monotonic()`` of the spawn."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n==== start {self.starts}: {' '.join(self.argv())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.spawns.append(time.monotonic())
        return self.spawns[-1]

    def wait_ready(self, *, timeout: float = 60.0) -> float:
        """Wait (bounded) until the agent answers its readiness URL; ``time.monotonic()``."""
        path = "/health" if self.kind == "vmagent" else "/-/ready"

        def ready() -> bool:
            self.check_alive()
            with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout=timeout, interval=0.05)
        return time.monotonic()

    def check_alive(self) -> None:
        """Raise `AgentDied` (with the log's tail) if the process has exited."""
        process = self.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            raise AgentDied(f"{self.kind} exited (code {code}); log {self.log}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the agent's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def terminate(self, *, timeout: float) -> Exit:
        """SIGTERM; wait up to ``timeout`` s for the exit, then SIGKILL (``code`` None)."""
        process = self.process
        assert process is not None
        at = time.monotonic()
        self.ends.append(at)
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
            process.kill()
            process.wait(timeout=30)
        return Exit(at, time.monotonic(), code)

    def kill(self) -> float:
        """SIGKILL now and reap; the ``time.monotonic()`` of the signal."""
        process = self.process
        assert process is not None
        at = time.monotonic()
        self.ends.append(at)
        process.kill()
        process.wait(timeout=30)
        return at

    def lives(self, *, until: float) -> list[tuple[float, float]]:
        """``(start, end)`` of every run so far; a running one ends at ``until``."""
        ends = [*self.ends, until][: len(self.spawns)]
        return [(start, min(end, until)) for start, end in zip(self.spawns, ends, strict=True)]

    def stop(self) -> None:
        """Teardown: SIGTERM with a bound, SIGKILL after it."""
        process = self.process
        if process is not None and process.poll() is None:
            self.terminate(timeout=FLUSH_DEADLINE + 20)

    def metrics(self) -> dict[str, dict[str, float]]:
        """The agent's ``/metrics``: family sample name -> {label text: value}."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        out: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            match = _SAMPLE_LINE.match(line)
            if match:
                name, labels, value = match.groups()
                out.setdefault(name, {})[labels or ""] = float(value)
        return out


_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _scrape_config(kind: AgentKind, targets: Targets, remote_url: str) -> str:
    addresses = ", ".join(f"'{t.instance}'" for t in targets.targets)
    text = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n"
        f"    static_configs:\n      - targets: [{addresses}]\n"
    )
    if kind != "vmagent":  # vmagent takes -remoteWrite.url
        text += f"remote_write:\n  - url: {remote_url}\n"
    return text


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
        """Where ``at`` lies relative to the first signal after it (lost scrapes' context)."""
        after = [(i, t) for i, t in enumerate(self.signals, 1) if t >= at]
        if not after:
            return ""
        i, t = after[0]
        return f" ({t - at:.2f} s before signal {i} of {len(self.signals)})"


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


# ---------------------------------------------------------------------- the rig


class Rig:
    """VictoriaMetrics, targets, proxy and one agent; a context manager that warms up."""

    def __init__(self, kind: AgentKind, workdir: Path, *, phases: Phases) -> None:
        self.kind = kind
        self.workdir = workdir
        self.phases = phases
        self.books = Books(serial_names=(SERIAL_METRIC, GAUGE))
        self.targets = Targets()
        self._stack = contextlib.ExitStack()
        self.began = 0.0
        self.notes: list[str] = []
        self.vm: Server
        self.proxy: FaultProxy
        self.agent: AgentProcess
        self.loop: LoopThread

    def __enter__(self) -> Rig:
        with contextlib.ExitStack() as stack:
            vm_dir = self.workdir / "vm"
            vm_dir.mkdir(parents=True, exist_ok=True)
            self.vm = stack.enter_context(victoria_metrics(vm_dir))
            self.loop = loop = stack.enter_context(LoopThread("delivery-rig"))
            loop.call(self.targets.start())
            stack.callback(lambda: loop.call(self.targets.stop()))
            self.proxy = stack.enter_context(
                running_proxy(
                    f"{self.vm.url}/api/v1/write", books=self.books, port=free_port(), loop=loop
                )
            )
            self.agent = AgentProcess(
                self.kind, workdir=self.workdir, remote_url=self.proxy.url, targets=self.targets
            )
            stack.callback(self.agent.stop)
            self.began = self.agent.start()
            self.agent.wait_ready()
            self._warm_up()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _warm_up(self, *, timeout: float = 60.0) -> None:
        """Wait until every target has two scrapes acknowledged."""

        def warm() -> bool:
            self.agent.check_alive()
            with self.books.lock:
                seq = self.books.scrape_ts
                return all(
                    sum(1 for n, _ in list(t.served) if (t.instance, n) in seq) >= 2
                    for t in self.targets.targets
                )

        wait_until(warm, timeout=timeout, interval=0.2)

    # ------------------------------------------------------------------ phases

    def down(self) -> float:
        """Receiver unreachable (connections refused); the ``time.monotonic()`` of it."""
        self.loop.call(self.proxy.down())
        return time.monotonic()

    def up(self) -> float:
        """Receiver reachable and passing again."""
        self.proxy.passing()
        self.loop.call(self.proxy.up())
        return time.monotonic()

    def restart(self) -> float:
        """Start the agent again and wait (bounded) for its first scrape; the time of it."""
        spawned = self.agent.start()
        self.agent.wait_ready()
        return self.first_scrape(after=spawned)

    def first_scrape(self, *, after: float) -> float:
        """When any target was first scraped after ``after`` (waits up to `STARTUP_GRACE` + 5 s;
        on time-out, a note and now)."""
        deadline = after + STARTUP_GRACE + 5
        while True:
            self.agent.check_alive()
            firsts = [_first_after(t.served, after) for t in self.targets.targets]
            first = min((at for at in firsts if at is not None), default=None)
            if first is not None:
                return first
            if time.monotonic() > deadline:
                self.notes.append(f"no scrape within {deadline - after:.0f} s of a start")
                return time.monotonic()
            time.sleep(0.05)

    def sleep_until(self, moment: float, *, alive: bool = True) -> None:
        """Sleep until ``time.monotonic()`` reaches ``moment``; fail fast if the agent died."""
        while True:
            left = moment - time.monotonic()
            if alive:
                self.agent.check_alive()
            if left <= 0:
                return
            time.sleep(min(left, 0.25))

    # ------------------------------------------------------------------ the end of a scenario

    def settle(self, *, cutoff: float, windows: Sequence[Window]) -> Account:
        """Wait (bounded) until every scrape served by ``cutoff`` arrived, or nothing changes."""
        phases = self.phases
        deadline = time.monotonic() + phases.settle_timeout
        signature: tuple[int, ...] | None = None
        since = time.monotonic()
        acked_then = 0
        while True:
            result = account(
                self.targets,
                self.books,
                cutoff=cutoff,
                windows=windows,
                lives=self.agent.lives(until=cutoff),
            )
            now = time.monotonic()
            if not result.lost and not result.excused:
                return result
            with self.books.lock:
                acked_now = self.books.acked_samples
            sig = (
                result.lost_scrapes,
                result.lost_samples,
                result.excused_scrapes,
                result.excused_samples,
            )
            if sig != signature:
                signature, since, acked_then = sig, now, acked_now
            elif now - since >= phases.settle_quiet and acked_now > acked_then:
                return result
            if now >= deadline:
                return result
            time.sleep(1.0)

    def finish(
        self,
        scenario: str,
        *,
        windows: Sequence[Window] = (),
        exits: Sequence[Exit] = (),
        kills: int = 0,
        seed: int | None = None,
        non_retryable: Iterable[int] = (400,),
        notes: Iterable[str] = (),
    ) -> Outcome:
        """Receiver is back: settle, cross-check VictoriaMetrics, read the agent's metrics."""
        cutoff = time.monotonic()
        result = self.settle(cutoff=cutoff, windows=windows)
        books = self.books
        with books.lock:
            refused_lost = books.refused_unacked(non_retryable)
            lost_not_refused = [books.describe(s) for s in result.lost_ids - refused_lost]
            refused_not_lost = [books.describe(s) for s in refused_lost - result.lost_ids]
            refused = {s: (r.requests, r.samples) for s, r in sorted(books.refused.items())}
            outcome_books = (
                books.out_of_order,
                books.duplicates,
                books.resent,
                books.stale_markers,
                list(books.examples),
                dict(books.requests),
            )
        dropped, failed = self._agent_metrics()
        ooo, dups, resent, stale, examples, requests = outcome_books
        return Outcome(
            scenario=scenario,
            agent=self.kind,
            account=result,
            out_of_order=ooo,
            duplicates=dups,
            resent=resent,
            stale_markers=stale,
            examples=examples,
            refused=refused,
            refused_lost=refused_lost,
            refused_not_lost=refused_not_lost,
            lost_not_refused=lost_not_refused,
            exits=list(exits),
            kills=kills,
            vm_missing=self._vm_missing(),
            dropped_metric=dropped,
            failed_metric=failed,
            seconds=time.monotonic() - self.began,
            seed=seed,
            requests=requests,
            log=self.agent.log,
            notes=[*self.notes, *notes],
            signals=list(self.agent.ends),
            started=self.began,
        )

    def _agent_metrics(self) -> tuple[dict[str, float] | None, float | None]:
        if self.kind != "collector":
            return None, None
        try:
            metrics = self.agent.metrics()
        except OSError:
            return None, None
        dropped = metrics.get("collector_remote_write_dropped_samples_total")
        failed = metrics.get("prometheus_remote_storage_samples_failed_total")
        return dropped, None if failed is None else sum(failed.values())

    def _vm_missing(self) -> int:
        """Acknowledged ``scrape_seq`` samples that VictoriaMetrics' export lacks (bounded)."""
        with self.books.lock:
            expected = {
                (self.books.instance[sid], ts)
                for sid, name in enumerate(self.books.name)
                if name == SERIAL_METRIC
                for ts in self.books.acked[sid]
            }
        missing = len(expected)
        deadline = time.monotonic() + 30
        while True:
            self.vm.get("/internal/force_flush")
            stored: set[tuple[str, int]] = set()
            for row in self.vm.export(f'{SERIAL_METRIC}{{job="{JOB}"}}'):
                metric = row["metric"]
                timestamps = row["timestamps"]
                assert isinstance(metric, dict)
                assert isinstance(timestamps, list)
                stored.update((str(metric.get("instance")), int(ts)) for ts in timestamps)
            missing = len(expected - stored)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(1.0)


def _first_after(served: list[tuple[int, float]], after: float) -> float | None:
    first = None
    for _, at in reversed(served):
        if at <= after:
            break
        first = at
    return first


# ---------------------------------------------------------------------- scenarios


def run_down(rig: Rig, rng: random.Random) -> Outcome:
    """Receiver down for ``outage`` s."""
    start = rig.down()
    rig.sleep_until(start + rig.phases.outage)
    rig.up()
    return rig.finish("down")


def run_sigterm(rig: Rig, rng: random.Random) -> Outcome:
    """Receiver down; SIGTERM ``sigterm_at`` s in; restart at once; receiver back at the end."""
    phases = rig.phases
    start = rig.down()
    rig.sleep_until(start + phases.sigterm_at)
    ended = rig.agent.terminate(timeout=FLUSH_DEADLINE + 30)
    window = Window("SIGTERM", ended.signal_at - IN_FLIGHT, ended.exited_at)
    scraping = rig.restart()
    rig.sleep_until(max(start + phases.outage, scraping + MIN_AFTER_RESTART))
    rig.up()
    return rig.finish("sigterm", windows=[window], exits=[ended])


def run_sigkill(rig: Rig, rng: random.Random) -> Outcome:
    """Receiver down; SIGKILL ``sigterm_at`` s in; restart at once; receiver back at the end."""
    phases = rig.phases
    start = rig.down()
    rig.sleep_until(start + phases.sigterm_at)
    killed = rig.agent.kill()
    window = Window("kill", killed - KILL_LOSS - IN_FLIGHT, killed)
    scraping = rig.restart()
    rig.sleep_until(max(start + phases.outage, scraping + MIN_AFTER_RESTART))
    rig.up()
    return rig.finish("sigkill", windows=[window], kills=1)


def run_statuses(rig: Rig, rng: random.Random) -> Outcome:
    """500 for a phase, then 429 + ``Retry-After: 5`` for a phase, then 400 to 5 requests."""
    phases = rig.phases
    began = time.monotonic()
    rig.proxy.fail(500)
    rig.sleep_until(began + phases.status_500)
    rig.proxy.fail(429, headers={"Retry-After": str(RETRY_AFTER)})
    rig.sleep_until(began + phases.status_500 + phases.status_429)
    rig.proxy.fail(400, count=5)
    notes = []
    try:
        wait_until(lambda: rig.proxy.mode.kind == "pass", timeout=60, interval=0.1)
    except TimeoutError:
        notes.append("fewer than 5 requests came within 60 s of the 400 phase")
    rig.up()
    return rig.finish("statuses", notes=notes)


def run_delay(rig: Rig, rng: random.Random) -> Outcome:
    """Every request delayed by ``delay`` s for ``delay_phase`` s."""
    phases = rig.phases
    began = time.monotonic()
    rig.proxy.delay(phases.delay)
    rig.sleep_until(began + phases.delay_phase)
    rig.up()
    return rig.finish("delay")


def run_kills(rig: Rig, rng: random.Random) -> Outcome:
    """Receiver down; ``kills`` x SIGKILL, each at a random moment within `KILL_SPREAD` s of
    the run's first scrape, restarted at once; the receiver stays down at least ``outage`` s."""
    phases = rig.phases
    seed = rng.randrange(2**32)
    moments = random.Random(seed)
    start = rig.down()
    windows = []
    scraping = time.monotonic()
    for i in range(phases.kills):
        rig.sleep_until(scraping + moments.uniform(0.0, KILL_SPREAD))
        killed = rig.agent.kill()
        windows.append(Window(f"kill {i + 1}", killed - KILL_LOSS - IN_FLIGHT, killed))
        scraping = rig.restart()
    rig.sleep_until(max(start + phases.outage, scraping + MIN_AFTER_RESTART))
    rig.up()
    return rig.finish("kills", windows=windows, kills=phases.kills, seed=seed)


SCENARIOS: dict[str, tuple[str, Callable[[Rig, random.Random], Outcome]]] = {
    "down": ("receiver down: 0 lost, 0 out-of-order", run_down),
    "sigterm": ("down, SIGTERM, restart: 0 lost, exit 0 in <= 10 s", run_sigterm),
    "sigkill": ("down, SIGKILL, restart: loses <= 1 s", run_sigkill),
    "statuses": ("500, 429 + Retry-After, 400 x5: only the 400s lost", run_statuses),
    "delay": ("+2 s per request: 0 lost", run_delay),
    "kills": ("20 x kill -9 in an outage: each loses <= 1 s", run_kills),
}
"""name -> (goal, run)."""
