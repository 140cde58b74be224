"""``collector demo``: the whole pipeline on one machine with nothing else installed.

It starts a few built-in exporters on loopback, lists them in a file that ``file_sd_configs``
watches, runs the real agent on a generated config that remote-writes to a built-in receiver, and
prints a summary every second: targets up, down and gone, samples per second scraped and sent,
what the receiver got. The web UI is on ``--web.listen-address`` (``127.0.0.1:9099`` unless told
otherwise: a demo must not open a port to the network). Ctrl-C (or SIGTERM) cancels it, the agent
stops as it always does (discovery, scrape, remote-write flush) and one line of totals follows.

Churn is a fixed, announced cycle (`Churn`) so that a user can match what the summary shows with
what the demo did: an exporter is stopped while the file still lists it (its target goes
``down``), then restarted on the same port (``up`` again); then another exporter is removed from
the file (its target leaves) and listed again (it comes back).

Nothing here is a shortcut through the agent: the demo drives the same `Agent` that
``collector --config.file`` runs, and reads what it shows from the agent's own target list and
self-metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import math
import random
import shutil
import signal
import socket
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.model.duration import format_duration
from collector.remote.codec import DecodedSeries
from collector.remote.receiver import make_receiver_app

__all__ = [
    "Churn",
    "Display",
    "Snapshot",
    "build_parser",
    "demo_options",
    "main",
    "run_demo",
    "window_rate",
]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9099"
"""Loopback only: the demo serves an unauthenticated UI and must not be reachable from outside."""
_REFRESH = 1.0
"""Seconds between two summaries."""
_MIN_RATE_WINDOW = 5.0
"""Rates are averaged over a whole number of scrape intervals spanning at least this long."""
_EVENTS_SHOWN = 4
"""Churn events listed under the summary on a terminal."""


# ---------------------------------------------------------------------------- built-in exporters


async def _serve(runner: web.AppRunner, *, port: int = 0) -> int:
    """Serve ``runner`` on loopback ``port`` (0: a free one) and return the port.

    ``SO_REUSEADDR`` lets a restarted exporter take its old port back at once, although the
    connections of its previous life may still be in ``TIME_WAIT``.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    bound: int = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return bound


def exporter_body(name: str, tick: int, *, series: int) -> bytes:
    """A small, realistic exposition: counters, a gauge and a histogram whose values move."""
    lines = [
        "# HELP demo_requests_total Requests served, by route and status code.",
        "# TYPE demo_requests_total counter",
    ]
    routes = max(1, series // 4)
    for i in range(routes):
        for code in ("200", "500"):
            rate = 10 + i if code == "200" else 1
            lines.append(
                f'demo_requests_total{{service="{name}",route="/api/v{i}",code="{code}"}} '
                f"{tick * rate}"
            )
    lines += [
        "# HELP demo_temperature_celsius A gauge that wanders.",
        "# TYPE demo_temperature_celsius gauge",
        f'demo_temperature_celsius{{service="{name}"}} {20 + 5 * math.sin(tick / 10):.3f}',
        "# HELP demo_latency_seconds Request latency.",
        "# TYPE demo_latency_seconds histogram",
    ]
    total = 0
    for le in ("0.05", "0.1", "0.5", "1", "+Inf"):
        total += tick
        lines.append(f'demo_latency_seconds_bucket{{service="{name}",le="{le}"}} {total}')
    lines.append(f'demo_latency_seconds_sum{{service="{name}"}} {tick * 0.42:.2f}')
    lines.append(f'demo_latency_seconds_count{{service="{name}"}} {total}')
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Exporter:
    """One built-in exporter: its name, address and how often it was scraped.

    It can be stopped (connections to its port are refused) and started again on the same port,
    so that the file_sd entry naming it stays valid.
    """

    name: str
    series: int = 40
    port: int = 0
    scrapes: int = 0
    runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.runner is not None

    async def start(self) -> None:
        """Listen on loopback: on the previous port when there is one, else on a free port."""

        async def metrics(_: web.Request) -> web.Response:
            self.scrapes += 1
            body = exporter_body(self.name, self.scrapes, series=self.series)
            return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            self.port = await _serve(runner, port=self.port)
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner

    async def stop(self) -> None:
        """Stop listening and close the open connections."""
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


# ---------------------------------------------------------------------------- built-in receiver


@dataclass
class Receiver:
    """Counts what arrives over remote write (samples, series, requests) as a TSDB keeps it.

    A sample no newer than the last one of its series is a duplicate, counted apart: remote
    write is at-least-once, and a batch whose send a shutdown cancelled after the receiver had
    read it (its answer not yet read by the sender) is sent again by the flush.
    """

    samples: int = 0
    duplicates: int = 0
    requests: int = 0
    series: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    port: int = 0
    _newest: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)

    def on_write(self, batch: list[DecodedSeries]) -> None:
        self.requests += 1
        newest = self._newest
        for labels, points in batch:
            key = tuple(labels)
            last = newest.get(key)
            fresh = 0
            for _value, ts in points:
                if last is None or ts > last:
                    last = ts
                    fresh += 1
            if last is not None:
                newest[key] = last
            self.samples += fresh
            self.duplicates += len(points) - fresh
            self.series.add(key)


# ---------------------------------------------------------------------------- churn


def write_targets(
    path: Path, exporters: Sequence[Exporter], *, unlisted: Exporter | None = None
) -> None:
    """Rewrite the file_sd file atomically (write then rename), as a config manager would.

    Every exporter keeps its own group at the same position; the ``unlisted`` one gets an empty
    target list, so the other groups (file_sd sources ``file:index``) do not shift.
    """
    groups = [
        {"targets": [] if e is unlisted else [e.address], "labels": {"exporter": e.name}}
        for e in exporters
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(groups, option=orjson.OPT_INDENT_2))
    tmp.replace(path)


@dataclass
class Churn:
    """Targets leaving and coming back, one announced step every ``every`` seconds, forever.

    The cycle: stop an exporter that the file still lists (its target goes ``down``); start it
    again on the same port (``up``); remove another exporter from the file (its target leaves the
    agent's list); list it again (it comes back). Each step is appended to ``events`` as
    ``(seconds since start, text)`` for the summary.
    """

    path: Path
    fleet: Sequence[Exporter]
    every: float
    started: float
    """Loop time the demo started, for the events' timestamps."""
    events: list[tuple[float, str]] = field(default_factory=list)
    unlisted: Exporter | None = None

    async def run(self) -> NoReturn:
        """Step through the cycle until cancelled."""
        loop = asyncio.get_running_loop()
        rng = random.Random(1)
        while True:
            gone = rng.choice(self.fleet)
            await asyncio.sleep(self.every)
            await gone.stop()
            self._event(loop, f"{gone.name} stopped; still in the file, so its target goes down")
            await asyncio.sleep(self.every)
            try:
                await gone.start()
            except OSError:  # its port was taken meanwhile: the file must name the new one
                gone.port = 0
                await gone.start()
                write_targets(self.path, self.fleet)
                self._event(loop, f"{gone.name} restarted on a new port (its old one was taken)")
            else:
                self._event(loop, f"{gone.name} restarted; its target comes back up")
            gone = rng.choice(self.fleet)
            await asyncio.sleep(self.every)
            self.unlisted = gone
            write_targets(self.path, self.fleet, unlisted=gone)
            self._event(loop, f"{gone.name} removed from the file; its target leaves")
            await asyncio.sleep(self.every)
            self.unlisted = None
            write_targets(self.path, self.fleet)
            self._event(loop, f"{gone.name} listed again; its target comes back")

    def _event(self, loop: asyncio.AbstractEventLoop, text: str) -> None:
        self.events.append((loop.time() - self.started, text))


# ---------------------------------------------------------------------------- rates


def window_rate(points: Sequence[tuple[float, float]], *, window: float) -> float:
    """Per-second increase of a counter over (at least) the last ``window`` seconds.

    ``points`` are ``(time, value)``, oldest first. The base is the newest point that is at least
    ``window`` older than the last one, or the oldest point while the history is shorter. Samples
    are scraped and sent in bursts (one per target per interval, one per remote-write batch), so
    a window of a whole number of scrape intervals shows a steady rate where the difference of
    two consecutive readings would jump between zero and a burst.
    """
    if len(points) < 2:
        return 0.0
    end_time, end_value = points[-1]
    base_time, base_value = points[0]
    for i in range(len(points) - 2, -1, -1):
        if end_time - points[i][0] >= window:
            base_time, base_value = points[i]
            break
    span = end_time - base_time
    return max(0.0, (end_value - base_value) / span) if span > 0 else 0.0


@dataclass
class RateWindow:
    """A counter's recent readings, trimmed to what `window_rate` needs."""

    window: float
    points: deque[tuple[float, float]] = field(default_factory=deque)

    def add(self, now: float, value: float) -> float:
        """Record a reading; the rate over the window."""
        self.points.append((now, value))
        while len(self.points) > 2 and now - self.points[1][0] >= self.window:
            self.points.popleft()
        return window_rate(self.points, window=self.window)


def rate_window(interval: float) -> float:
    """Whole scrape intervals, at least `_MIN_RATE_WINDOW` seconds: 6 s for 2 s, 5 s for 0.5 s."""
    return interval * max(1, math.ceil(_MIN_RATE_WINDOW / interval - 1e-9))


# ---------------------------------------------------------------------------- summary


TargetState = Literal["up", "down", "left", "waiting"]
_STATES: tuple[TargetState, ...] = ("up", "down", "left", "waiting")


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRow:
    """One exporter as the agent sees it."""

    name: str
    state: TargetState
    """``waiting``: not discovered or not scraped yet; ``left``: gone from the agent's list."""
    url: str
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything one summary shows."""

    elapsed: float
    web_url: str
    targets: tuple[TargetRow, ...]
    scraped_rate: float
    sent_rate: float
    window: float
    pending: float
    failed: float
    received: int
    requests: int
    series: int
    events: tuple[tuple[float, str], ...] = ()

    def names(self, state: TargetState) -> list[str]:
        """Exporters in ``state``."""
        return [t.name for t in self.targets if t.state == state]

    def counts(self) -> str:
        """``targets up 3 down 1 left 0 waiting 0``."""
        return "targets " + " ".join(f"{state} {len(self.names(state))}" for state in _STATES)


def metric_sum(registry: CollectorRegistry, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in ``registry``."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def target_rows(
    fleet: Sequence[Exporter], active: Sequence[Mapping[str, Any]], *, seen: set[str]
) -> tuple[TargetRow, ...]:
    """One row per exporter, from the agent's active targets; ``seen`` collects those ever seen."""
    by_address = {str(t.get("discoveredLabels", {}).get("__address__", "")): t for t in active}
    rows = []
    for exporter in fleet:
        target = by_address.get(exporter.address)
        url = f"http://{exporter.address}/metrics"
        if target is None:
            state: TargetState = "left" if exporter.name in seen else "waiting"
            rows.append(TargetRow(name=exporter.name, state=state, url=url))
            continue
        seen.add(exporter.name)
        health = target.get("health")
        rows.append(
            TargetRow(
                name=exporter.name,
                state=health if health in ("up", "down") else "waiting",
                url=str(target.get("scrapeUrl") or url),
                error=str(target.get("lastError") or ""),
            )
        )
    return tuple(rows)


def _clock(seconds: float) -> str:
    """``1:05`` for 65 seconds."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def screen_lines(snap: Snapshot) -> list[str]:
    """The summary for a terminal, redrawn in place."""
    lines = [
        f"collector demo · {_clock(snap.elapsed)} · web UI {snap.web_url} · Ctrl-C stops",
        "targets   " + "   ".join(f"{state} {len(snap.names(state))}" for state in _STATES),
        f"samples   scraped {snap.scraped_rate:.0f}/s   sent {snap.sent_rate:.0f}/s   "
        f"(averaged over the last {format_duration(snap.window)})",
        f"remote    pending {snap.pending:.0f}   failed {snap.failed:.0f}   "
        f"receiver got {snap.received} samples, {snap.series} series",
    ]
    for row in snap.targets:
        if row.state == "left":
            lines.append(f"  {row.state:8s}{row.name:7s} (removed from the file)")
            continue
        # The URL is on the line already; lastError repeats it as ``Get "URL": ...``.
        error = row.error.removeprefix(f'Get "{row.url}": ')
        lines.append(f"  {row.state:8s}{row.name:7s} {row.url}  {error}".rstrip())
    for i, (when, text) in enumerate(snap.events[-_EVENTS_SHOWN:]):
        lines.append(f"{'churn' if i == 0 else '':10s}{_clock(when)}  {text}")
    return lines


def plain_line(snap: Snapshot) -> str:
    """The summary as one line, for a pipe or a file."""
    parts = [
        f"[{_clock(snap.elapsed):>5s}] {snap.counts()}",
        f"scraped {snap.scraped_rate:.0f}/s sent {snap.sent_rate:.0f}/s "
        f"(last {format_duration(snap.window)})",
        f"pending {snap.pending:.0f} failed {snap.failed:.0f}",
        f"receiver {snap.received} samples",
    ]
    parts.extend(
        f"{state}: {', '.join(snap.names(state))}"
        for state in ("down", "left")
        if snap.names(state)
    )
    if snap.events:
        parts.append(f"churn: {snap.events[-1][1]}")
    return " | ".join(parts)


class Display:
    """Writes summaries to ``out``: in place on a terminal, one plain line each otherwise.

    On a terminal the previous summary is overwritten (cursor up, then each line cleared to its
    end), with lines cut to the terminal's width so that none wraps and the count stays right.
    Anywhere else no escape code is written.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0

    def show(self, snap: Snapshot) -> None:
        """Draw (or redraw) the summary."""
        if not self.tty:
            self.out.write(plain_line(snap) + "\n")
        else:
            width = max(20, shutil.get_terminal_size().columns - 1)
            lines = [line[:width] for line in screen_lines(snap)]
            up = f"\x1b[{self._drawn}A\r" if self._drawn else ""
            self.out.write(up + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            self._drawn = len(lines)
        self.out.flush()

    def note(self, text: str) -> None:
        """A line that stays, below the summary (on a terminal: over a ``^C`` echo)."""
        self.out.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.out.flush()
        self._drawn = 0


# ---------------------------------------------------------------------------- the demo


def demo_config(targets_file: Path, receiver_port: int, *, interval: float) -> str:
    """The agent config the demo runs: file_sd targets, remote write to the receiver.

    ``refresh_interval: 1s`` also makes file_sd poll the file every second (its poll is the
    smaller of 5 s and the refresh interval), so a removal shows within a second or two.
    """
    every = format_duration(interval)
    return f"""\
global:
  scrape_interval: {every}
  scrape_timeout: {every}
  external_labels:
    demo: "true"
scrape_configs:
  - job_name: demo
    file_sd_configs:
      - files: [{targets_file}]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: .*/(.*)\\.json
        target_label: sd_file
remote_write:
  - url: http://127.0.0.1:{receiver_port}/api/v1/write
    name: demo-receiver
    queue_config:
      batch_send_deadline: 1s
"""


def banner(
    *, web_url: str, exporters: int, interval: float, churn_every: float, targets_file: Path
) -> str:
    """What the demo runs and what the summary will show, printed once at the start."""
    lines = [
        f"collector demo: the real agent scrapes {exporters} built-in exporters on 127.0.0.1",
        f"every {format_duration(interval)} and remote-writes what it scrapes to a built-in "
        "receiver.",
        f"  web UI and API   {web_url}",
        f"  targets file     {targets_file}  (file_sd_configs)",
    ]
    if churn_every > 0:
        lines += [
            f"Churn, one step every {format_duration(churn_every)}, so that targets leave and "
            "come back:",
            "  1. an exporter is stopped but stays in the file: its target shows 'down'",
            "  2. it is restarted: its target is 'up' again",
            "  3. an exporter is removed from the file: its target shows 'left'",
            "  4. it is listed again: its target comes back",
        ]
    lines.append("Ctrl-C stops: discovery, scrape loops, remote-write flush, then the totals.")
    return "\n".join(lines)


async def run_demo(
    options: AgentOptions,
    *,
    exporters: int = 4,
    series: int = 40,
    interval: float = 2.0,
    churn_every: float = 15.0,
    duration: float | None = None,
    out: TextIO = sys.stdout,
) -> Receiver:
    """Run the demo until cancelled (or for ``duration`` seconds); return what was received.

    However it ends (``duration``, cancellation, KeyboardInterrupt), once the agent has stopped
    and flushed, a last line gives the totals: scraped, sent, received, lost and the run time.
    """
    loop = asyncio.get_running_loop()
    receiver = Receiver()
    receiver_runner = web.AppRunner(
        make_receiver_app(receiver.on_write), access_log=None, handle_signals=False
    )
    await receiver_runner.setup()
    fleet = [Exporter(f"svc-{i}", series=series) for i in range(exporters)]
    display = Display(out)
    try:
        receiver.port = await _serve(receiver_runner)
        for exporter in fleet:
            await exporter.start()
        with tempfile.TemporaryDirectory(prefix="collector-demo-") as tmp:
            work = Path(tmp)
            targets_file = work / "targets.json"
            write_targets(targets_file, fleet)
            config_file = work / "collector.yml"
            config_file.write_text(demo_config(targets_file, receiver.port, interval=interval))
            agent = Agent(
                AgentOptions(
                    config_file=str(config_file),
                    listen_address=options.listen_address,
                    storage_path=(
                        options.storage_path
                        if options.storage_path not in ("", AgentOptions().storage_path)
                        else str(work / "data")
                    ),
                    log_level=options.log_level,
                    log_format=options.log_format,
                ),
                registry=new_registry(),
                flush_deadline=5.0,
                reload_interval=1.0,
                discovery_updatert=1.0,
            )
            web_url = f"http://{options.listen_address}/"
            started = loop.time()
            ready = asyncio.Event()
            display.note(
                banner(
                    web_url=web_url,
                    exporters=exporters,
                    interval=interval,
                    churn_every=churn_every,
                    targets_file=targets_file,
                )
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    agent_task = tg.create_task(agent.run(ready=ready), name="agent")
                    churn = Churn(targets_file, fleet, every=churn_every, started=started)
                    churn_task = (
                        tg.create_task(churn.run(), name="churn") if churn_every > 0 else None
                    )
                    await _report(
                        agent,
                        receiver,
                        churn,
                        display,
                        web_url=web_url,
                        started=started,
                        window=rate_window(interval),
                        duration=duration,
                    )
                    if churn_task is not None:
                        churn_task.cancel()
                    agent_task.cancel()
            finally:
                if ready.is_set():
                    display.note(_totals(agent, receiver, runtime=loop.time() - started))
    finally:
        for exporter in fleet:
            await exporter.stop()
        await receiver_runner.cleanup()
    return receiver


async def _report(
    agent: Agent,
    receiver: Receiver,
    churn: Churn,
    display: Display,
    *,
    web_url: str,
    started: float,
    window: float,
    duration: float | None,
) -> None:
    """Show a summary every `_REFRESH` seconds until ``duration`` has passed (or forever)."""
    loop = asyncio.get_running_loop()
    scraped = RateWindow(window, deque([(started, 0.0)]))
    sent = RateWindow(window, deque([(started, 0.0)]))
    seen: set[str] = set()
    tick = started
    try:
        while duration is None or tick - started < duration:
            tick += _REFRESH
            await asyncio.sleep(max(0.0, tick - loop.time()))
            now = loop.time()
            registry = agent.registry
            snap = Snapshot(
                elapsed=now - started,
                web_url=web_url,
                targets=target_rows(churn.fleet, agent.active_targets(), seen=seen),
                scraped_rate=scraped.add(
                    now, metric_sum(registry, "prometheus_agent_samples_appended_total")
                ),
                sent_rate=sent.add(
                    now, metric_sum(registry, "prometheus_remote_storage_samples_total")
                ),
                window=window,
                pending=metric_sum(registry, "prometheus_remote_storage_samples_pending"),
                failed=metric_sum(registry, "prometheus_remote_storage_samples_failed_total"),
                received=receiver.samples,
                requests=receiver.requests,
                series=len(receiver.series),
                events=tuple(churn.events),
            )
            display.show(snap)
    except asyncio.CancelledError:
        display.note("stopping: discovery, scrape loops, then the remote-write flush ...")
        raise


def _totals(agent: Agent, receiver: Receiver, *, runtime: float) -> str:
    """The last line: what was scraped, sent and received, and what never arrived."""
    scraped = metric_sum(agent.registry, "prometheus_agent_samples_appended_total")
    sent = metric_sum(agent.registry, "prometheus_remote_storage_samples_total")
    lost = max(0, int(scraped) - receiver.samples)
    return (
        f"demo stopped after {format_duration(round(runtime))}: scraped {scraped:.0f} samples, "
        f"sent {sent:.0f}, received {receiver.samples} by the receiver, lost {lost}"
    )


# ---------------------------------------------------------------------------- command line


_DESCRIPTION = """\
Run the whole pipeline on this machine, with nothing else installed.

The demo starts built-in exporters on 127.0.0.1, lists them in a targets file
that the agent watches (file_sd_configs), runs the real agent on a generated
configuration that remote-writes to a built-in receiver, and prints a summary
every second: targets up, down and gone, samples per second scraped and sent,
and what the receiver got. On a terminal the summary is redrawn in place; into
a pipe or a file it is one line per second.

Churn: every --churn-every seconds one step of this cycle happens, and the
summary shows its effect: an exporter is stopped while the file still lists it
(its target shows down), then restarted (up again); then an exporter is
removed from the file (its target leaves), then listed again (it comes back).

Ctrl-C or SIGTERM stops the agent cleanly (discovery, scrape loops,
remote-write flush) and prints the totals: samples scraped, sent, received by
the receiver, lost, and the run time."""


def _positive(kind: type[int] | type[float], *, zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting numbers above zero (or at least zero)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"must be {'zero or more' if zero else 'more than zero'}: {text!r}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The options of ``collector demo`` (after the word ``demo``)."""
    parser = argparse.ArgumentParser(
        prog="collector demo",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--exporters",
        type=_positive(int),
        default=4,
        metavar="N",
        help="number of built-in exporters to start (default: %(default)s)",
    )
    parser.add_argument(
        "--series",
        type=_positive(int),
        default=40,
        metavar="N",
        help="about how many series each exporter exposes (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=_positive(float),
        default=2.0,
        metavar="SECONDS",
        help="scrape interval and timeout of the agent (default: %(default)s)",
    )
    parser.add_argument(
        "--churn-every",
        dest="churn_every",
        type=_positive(float, zero=True),
        default=15.0,
        metavar="SECONDS",
        help="time between two churn steps; 0 turns churn off (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        metavar="HOST:PORT",
        help=f"address of the agent's web UI, API and /metrics (default: {DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        default=None,
        metavar="DIR",
        help="directory of the agent's disk queue (default: a temporary directory, removed at "
        "the end)",
    )
    return parser


def demo_options(args: argparse.Namespace) -> tuple[argparse.Namespace, AgentOptions]:
    """The demo's own options, and the agent options, from the ``collector`` command line.

    ``args`` is what ``collector``'s parser made of the command line, with the words after
    ``demo`` in ``args.demo_args``. A listen address or storage path given *before* ``demo``
    counts when it is not the agent's default: the agent listens on all interfaces by default,
    the demo only on loopback.
    """
    demo = build_parser().parse_args(getattr(args, "demo_args", None) or [])
    agent_defaults = AgentOptions()
    outer_listen = getattr(args, "listen_address", agent_defaults.listen_address)
    outer_storage = getattr(args, "storage_path", agent_defaults.storage_path)
    options = AgentOptions(
        listen_address=demo.listen_address
        or (outer_listen if outer_listen != agent_defaults.listen_address else None)
        or DEFAULT_LISTEN_ADDRESS,
        storage_path=demo.storage_path
        or (outer_storage if outer_storage != agent_defaults.storage_path else ""),
        log_level=getattr(args, "log_level", agent_defaults.log_level),
        log_format=getattr(args, "log_format", agent_defaults.log_format),
    )
    return demo, options


async def main(args: argparse.Namespace) -> int:
    """Entry point from ``collector demo`` (the CLI parsed the agent flags and picked the loop).

    SIGINT and SIGTERM cancel the demo; that is its normal end, so it returns 0. Should a
    KeyboardInterrupt arrive instead (no signal handler of ours), the runner cancels this task
    while closing, and `run_demo` still prints its totals.
    """
    demo, options = demo_options(args)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        task.cancel()  # a second Ctrl-C cuts the remote-write flush short

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    try:
        await run_demo(
            options,
            exporters=demo.exporters,
            series=demo.series,
            interval=demo.interval,
            churn_every=demo.churn_every,
            duration=demo.duration,
        )
    except asyncio.CancelledError:
        if not stopping:
            raise
    except BaseExceptionGroup as group:
        failed = _first_os_error(group)
        if failed is None:
            raise
        hint = (
            " (choose another with --web.listen-address)"
            if failed.errno == errno.EADDRINUSE
            else ""
        )
        print(f"collector demo: {failed}{hint}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
    return 0


def _first_os_error(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    """The first OSError in ``group`` (the agent could not listen, typically)."""
    for exc in group.exceptions:
        if isinstance(exc, OSError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_os_error(exc)
            if found is not None:
                return found
    return None
