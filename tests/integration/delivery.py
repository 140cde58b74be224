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
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tests.integration.delivery_agents import AgentProcess, Exit
from tests.integration.delivery_books import (
    Account,
    Outcome,
    Window,
    account,
    dead_windows,
    problems,
)
from tests.integration.delivery_targets import (
    AGENTS,
    FLUSH_DEADLINE,
    GAUGE,
    IN_FLIGHT,
    JOB,
    KILL_LOSS,
    KILL_SPREAD,
    MIN_AFTER_RESTART,
    RETRY_AFTER,
    SERIAL_METRIC,
    STARTUP_GRACE,
    AgentKind,
    Phases,
    Targets,
    env_scale,
)
from tests.integration.faultproxy import Books, FaultProxy, LoopThread, running_proxy
from tests.integration.servers import Server, free_port, victoria_metrics, wait_until

__all__ = [
    "AGENTS",
    "FLUSH_DEADLINE",
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
        result = self.settle(
            cutoff=cutoff, windows=[*windows, *dead_windows(self.agent.lives(until=cutoff))]
        )
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
            spawns=list(self.agent.spawns),
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
