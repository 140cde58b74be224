"""``collector demo``: the whole pipeline on one machine with nothing else installed.

It starts a few built-in exporters on loopback, lists them in a file that ``file_sd_configs``
watches (and rewrites that file while running, so targets come and go), runs the real agent on a
generated config that remote-writes to a built-in receiver, and prints a live summary: targets up
and down, samples per second scraped, sent, pending and failed. The web endpoints are on
``--web.listen-address`` as usual. Ctrl-C stops it cleanly (discovery, scrape, remote flush).

Nothing here is a shortcut through the agent: the demo drives the same `Agent` that
``collector --config.file`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.model.duration import format_duration
from collector.remote.codec import DecodedSeries
from collector.remote.receiver import make_receiver_app

__all__ = ["main", "run_demo"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# ---------------------------------------------------------------------------- built-in exporters


async def _serve_on_free_port(runner: web.AppRunner) -> int:
    """Serve ``runner`` on a free loopback port and return the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return port


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
    """One built-in exporter: its name, address and how often it was scraped."""

    name: str
    port: int = 0
    scrapes: int = 0
    runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, *, series: int) -> None:
        """Listen on a free loopback port."""

        async def metrics(_: web.Request) -> web.Response:
            self.scrapes += 1
            body = exporter_body(self.name, self.scrapes, series=series)
            return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        self.port = await _serve_on_free_port(self.runner)


# ---------------------------------------------------------------------------- built-in receiver


@dataclass
class Receiver:
    """Counts what arrives over remote write (samples, series, requests)."""

    samples: int = 0
    requests: int = 0
    series: set[tuple[tuple[str, str], ...]] = field(default_factory=set)
    port: int = 0

    def on_write(self, batch: list[DecodedSeries]) -> None:
        self.requests += 1
        for labels, points in batch:
            self.samples += len(points)
            self.series.add(tuple(labels))


# ---------------------------------------------------------------------------- summary


def metric_sum(registry: CollectorRegistry, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in ``registry``."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


@dataclass
class Summary:
    """Turns counters into per-second rates between two reports."""

    last: dict[str, float] = field(default_factory=dict)
    last_time: float = 0.0

    def rates(self, now: float, values: dict[str, float]) -> dict[str, float]:
        elapsed = now - self.last_time if self.last_time else 0.0
        out = {
            key: (value - self.last.get(key, 0.0)) / elapsed if elapsed > 0 else 0.0
            for key, value in values.items()
        }
        self.last, self.last_time = dict(values), now
        return out


def render(agent: Agent, receiver: Receiver, summary: Summary, *, started: float) -> str:
    """One screen of the live summary."""
    targets = agent.active_targets()
    up = sum(1 for t in targets if t.get("health") == "up")
    down = sum(1 for t in targets if t.get("health") == "down")
    unknown = len(targets) - up - down
    registry = agent.registry
    sent = metric_sum(registry, "prometheus_remote_storage_samples_total")
    failed = metric_sum(registry, "prometheus_remote_storage_samples_failed_total")
    pending = metric_sum(registry, "prometheus_remote_storage_samples_pending")
    scraped = metric_sum(registry, "prometheus_agent_samples_appended_total")
    rates = summary.rates(time.monotonic(), {"scraped": scraped, "sent": sent})
    lines = [
        f"collector demo — {time.monotonic() - started:5.0f}s — web UI and API on "
        f"http://{agent.options.listen_address}/",
        f"targets   up {up:3d}   down {down:3d}   pending first scrape {unknown:3d}",
        f"samples   scraped {rates['scraped']:8.0f}/s   sent {rates['sent']:8.0f}/s   "
        f"pending {pending:6.0f}   failed {failed:6.0f}",
        f"receiver  {receiver.samples} samples in {receiver.requests} requests, "
        f"{len(receiver.series)} series",
    ]
    for t in sorted(targets, key=lambda t: str(t.get("scrapeUrl"))):
        error = t.get("lastError") or ""
        lines.append(f"  {t.get('health', '?'):7s} {t.get('scrapeUrl')}  {error}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the demo


def demo_config(targets_file: Path, receiver_port: int, *, interval: float) -> str:
    """The agent config the demo runs: file_sd targets, remote write to the receiver."""
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
        refresh_interval: 5s
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


def write_targets(path: Path, exporters: Sequence[Exporter]) -> None:
    """Rewrite the file_sd file atomically (write then rename), as a config manager would."""
    groups = [{"targets": [e.address], "labels": {"exporter": e.name}} for e in exporters]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(groups, option=orjson.OPT_INDENT_2))
    tmp.replace(path)


async def _churn(path: Path, exporters: Sequence[Exporter], *, every: float) -> None:
    """Take one exporter out of the file and put it back later, forever: targets come and go."""
    rng = random.Random(1)
    while True:
        await asyncio.sleep(every)
        gone = rng.choice(exporters)
        write_targets(path, [e for e in exporters if e is not gone])
        await asyncio.sleep(every)
        write_targets(path, exporters)


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
    """Run the demo until cancelled (or for ``duration`` seconds); return what was received."""
    receiver = Receiver()
    receiver_runner = web.AppRunner(
        make_receiver_app(receiver.on_write), access_log=None, handle_signals=False
    )
    await receiver_runner.setup()
    receiver.port = await _serve_on_free_port(receiver_runner)
    fleet = [Exporter(f"svc-{i}") for i in range(exporters)]
    for exporter in fleet:
        await exporter.start(series=series)
    with tempfile.TemporaryDirectory(prefix="collector-demo-") as tmp:
        work = Path(tmp)
        targets_file = work / "targets.json"
        write_targets(targets_file, fleet)
        config_file = work / "collector.yml"
        config_file.write_text(demo_config(targets_file, receiver.port, interval=interval))
        storage = Path(options.storage_path) if options.storage_path != "data/" else work / "data"
        agent_options = AgentOptions(
            config_file=str(config_file),
            listen_address=options.listen_address,
            storage_path=str(storage),
            log_level=options.log_level,
            log_format=options.log_format,
        )
        agent = Agent(
            agent_options,
            registry=new_registry(),
            flush_deadline=5.0,
            reload_interval=1.0,
            discovery_updatert=1.0,
        )
        started = time.monotonic()
        summary = Summary()
        tty = out.isatty()
        try:
            async with asyncio.TaskGroup() as tg:
                agent_task = tg.create_task(agent.run(), name="agent")
                churn = tg.create_task(_churn(targets_file, fleet, every=churn_every))
                while duration is None or time.monotonic() - started < duration:
                    await asyncio.sleep(1.0)
                    screen = render(agent, receiver, summary, started=started)
                    out.write(("\x1b[H\x1b[2J" if tty else "") + screen + "\n")
                    out.flush()
                churn.cancel()
                agent_task.cancel()
        finally:
            for exporter in fleet:
                if exporter.runner is not None:
                    await exporter.runner.cleanup()
            await receiver_runner.cleanup()
    return receiver


async def main(args: argparse.Namespace) -> int:
    """Entry point from ``collector demo`` (the CLI parsed the agent flags and picked the loop)."""
    parser = argparse.ArgumentParser(prog="collector demo", description=__doc__)
    parser.add_argument("--exporters", type=int, default=4, help="built-in exporters to start")
    parser.add_argument("--series", type=int, default=40, help="series per exporter (about)")
    parser.add_argument("--interval", type=float, default=2.0, help="scrape interval, seconds")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--web.listen-address", dest="listen_address", default=None)
    parser.add_argument("--storage.path", dest="storage_path", default=None)
    demo_args = parser.parse_args(getattr(args, "demo_args", None) or [])
    options = AgentOptions(
        listen_address=demo_args.listen_address or args.listen_address,
        storage_path=demo_args.storage_path or args.storage_path,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        received = await run_demo(
            options,
            exporters=demo_args.exporters,
            series=demo_args.series,
            interval=demo_args.interval,
            duration=demo_args.duration,
        )
    except asyncio.CancelledError:
        return 0
    print(f"demo finished: {received.samples} samples received", flush=True)
    return 0
