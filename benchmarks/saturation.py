"""Saturation: the highest samples/s an agent delivers in full, 1 scrape worker vs N vs vmagent.

Same rig as `benchmarks.side_by_side` (loopback node_exporter-shaped targets in their own
process, a fresh VictoriaMetrics single-node receiver for every step, agent CPU from /proc): the
target count stays fixed and the scrape interval shrinks step by step (1 s, 800 ms, 650 ms,
...), so the offered load grows. Each step waits ``--warmup`` first (discovery and the scrape
manager hand targets over on 5 s ticks: the first scrapes start up to 10 s in). A step passes
when the receiver got at least `PASS_RATIO` of
the offered samples over the window (offered = the series the receiver holds for the job, report
series included, divided by the interval); an agent's figure is the delivered samples/s of its
last passing step. The ramp stops at the first failing step.

On one machine the targets, the receiver and the agent compete for the same cores, so compare
the numbers of one run only; the table shows the machine's whole busy CPU too (from
``/proc/stat``), which says when the machine rather than the agent was the limit.

Prints one row per step as it ends (agent, interval, offered and delivered samples/s, agent and
machine CPUs, RSS, pass/FAIL), then the saturation table: each agent's highest samples/s
delivered in full, collector with N workers over 1 worker, and each collector over vmagent.

Run: ``python -m benchmarks.saturation`` (``--agents collector:1,collector:2,vmagent``,
``--targets 200``, ``--warmup 35``, ``--window 15``, ``--intervals 1000,800,...``); needs
``victoria-metrics`` and ``vmagent`` (Debian package ``victoria-metrics``). The full scoreboard,
``python -m benchmarks.side_by_side``, runs this ramp too (`ramp`, `print_table`) after its
workload tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.rig import cpu_seconds, get, peak_rss_mb, process, rows_inserted, wait_http
from benchmarks.targets import target_addresses

# Ports of its own: side_by_side may run beside it on a shared machine.
TARGET_PORT = 19200
RECEIVER = "127.0.0.1:18528"
COLLECTOR_LISTEN = "127.0.0.1:19199"
VMAGENT_LISTEN = "127.0.0.1:18529"

AGENTS = ("collector:1", "collector:2", "vmagent")
TARGETS = 200
WARMUP = 35.0
"""Seconds before a step's window: the first scrapes start up to 10 s after the agent does, and
a remote-write queue starts on one shard and reshards every 10 s (Prometheus's rule), so a
rate past one shard's needs a decision or two before it is sent as fast as it comes. With
15 s, collector on one worker failed at 256,000/s with 0.40 CPUs busy (97.8 % delivered, the
backlog of the first shard); with 40 s it passed 256,000, 307,500 and 409,600/s."""
WINDOW = 15.0
INTERVALS_MS = (1000, 800, 650, 500, 400, 333, 250, 200, 150, 100)
PASS_RATIO = 0.98
"""Delivered over offered samples for a step to pass (window edges cost about a scrape)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One agent at one scrape interval."""

    agent: str
    interval_ms: int
    offered: float
    """Samples/s the targets offer at this interval."""
    delivered: float
    """Samples/s the receiver inserted over the window."""
    agent_cpus: float
    """Cores the agent's process tree used (all workers included)."""
    machine_cpus: float
    """Cores busy on the whole machine (targets, receiver, agent, everything else)."""
    peak_rss_mb: float
    """Peak RSS of the agent's processes, summed (main and workers)."""

    @property
    def passed(self) -> bool:
        return self.delivered >= PASS_RATIO * self.offered


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _series(job: str) -> int:
    """Series of ``job`` the receiver holds (a busy receiver may take seconds to answer)."""
    query = urllib.parse.urlencode({"query": f'count({{job="{job}"}})'})
    for attempt in range(3):
        try:
            data = json.loads(get(f"http://{RECEIVER}/api/v1/query?{query}", timeout=60.0))
        except OSError:
            if attempt == 2:
                raise
            time.sleep(2.0)
            continue
        result = data["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0
    raise AssertionError("unreachable")


def _config(hosts: Sequence[str], interval_ms: int, *, remote: bool) -> str:
    targets = ", ".join(f'"{h}:{TARGET_PORT}"' for h in hosts)
    remote_write = f"remote_write:\n  - url: http://{RECEIVER}/api/v1/write\n" if remote else ""
    return (
        f"global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {interval_ms}ms\n"
        "scrape_configs:\n  - job_name: bench\n"
        f"    static_configs:\n      - targets: [{targets}]\n" + remote_write
    )


def _argv(agent: str, work: Path, config: Path) -> list[str]:
    name, _, workers = agent.partition(":")
    if name == "collector":
        return [
            sys.executable,
            "-m",
            "collector",
            f"--config.file={config}",
            f"--storage.path={work / 'collector'}",
            f"--web.listen-address={COLLECTOR_LISTEN}",
            f"--scrape.workers={workers or 'auto'}",
        ]
    if name == "vmagent":
        return [
            "vmagent",
            f"-promscrape.config={config}",
            f"-remoteWrite.url=http://{RECEIVER}/api/v1/write",
            f"-remoteWrite.tmpDataPath={work / 'vmagent'}",
            f"-httpListenAddr={VMAGENT_LISTEN}",
            "-promscrape.config.strictParse=false",
        ]
    raise ValueError(f"unknown agent {agent!r}: collector:N or vmagent")


def run_step(
    agent: str, hosts: Sequence[str], interval_ms: int, *, warmup: float, window: float, work: Path
) -> Step:
    """One agent at one interval against a fresh receiver (the targets already serve)."""
    name = agent.partition(":")[0]
    config = work / "agent.yml"
    config.write_text(_config(hosts, interval_ms, remote=name != "vmagent"))
    shutil.rmtree(work / "vm", ignore_errors=True)
    shutil.rmtree(work / name, ignore_errors=True)
    receiver = [
        "victoria-metrics",
        f"-storageDataPath={work / 'vm'}",
        f"-httpListenAddr={RECEIVER}",
        "-retentionPeriod=1d",
        "-search.latencyOffset=0s",
    ]
    with process(receiver, log=work / "vm.log"):
        wait_http(f"http://{RECEIVER}/health", seconds=30)
        with process(_argv(agent, work, config), log=work / f"{name}.log") as proc:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"{agent} exited early; see {work / (name + '.log')}")
            cpu0, rows0, busy0, t0 = (
                cpu_seconds(proc.pid),
                rows_inserted(RECEIVER),
                _machine_busy(),
                time.monotonic(),
            )
            time.sleep(window)
            cpu1, rows1, busy1, t1 = (
                cpu_seconds(proc.pid),
                rows_inserted(RECEIVER),
                _machine_busy(),
                time.monotonic(),
            )
            series = _series("bench")
            peak = peak_rss_mb(proc.pid)
    elapsed = t1 - t0
    ticks = busy1[1] - busy0[1]
    ncpu = len(Path("/proc/stat").read_text().split("\ncpu")) - 1
    return Step(
        agent=agent,
        interval_ms=interval_ms,
        offered=series * 1000.0 / interval_ms,
        delivered=(rows1 - rows0) / elapsed,
        agent_cpus=(cpu1 - cpu0) / elapsed,
        machine_cpus=ncpu * (busy1[0] - busy0[0]) / ticks if ticks else 0.0,
        peak_rss_mb=peak,
    )


def ramp(
    agents: Sequence[str] = AGENTS,
    *,
    targets: int = TARGETS,
    body: str = "node",
    warmup: float = WARMUP,
    window: float = WINDOW,
    intervals: Sequence[int] = INTERVALS_MS,
    json_lines: bool = False,
) -> dict[str, Step | None]:
    """Ramp every agent in turn, printing each step as it ends; return each one's last pass.

    One targets process serves the whole ramp; every step gets a fresh receiver. An agent's
    ramp stops at its first failing step (``None``: it failed the first one).
    """
    hosts = target_addresses(targets)
    best: dict[str, Step | None] = {}
    print(f"{targets} {body} targets; pass: delivered >= {PASS_RATIO:.0%} of offered")
    print(
        f"{'agent':<14}{'interval':>9}{'offered/s':>12}{'delivered/s':>13}"
        f"{'agent CPUs':>12}{'machine CPUs':>14}{'RSS MB':>8}  result",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="saturation-") as tmp:
        work = Path(tmp)
        argv = [
            sys.executable,
            "-m",
            "benchmarks.targets",
            "--count",
            str(targets),
            "--port",
            str(TARGET_PORT),
            "--body",
            body,
        ]
        with process(argv, log=work / "targets.log"):
            wait_http(f"http://{hosts[-1]}:{TARGET_PORT}/metrics", seconds=30)
            for agent in agents:
                best[agent] = None
                for interval in intervals:
                    step = run_step(agent, hosts, interval, warmup=warmup, window=window, work=work)
                    print(
                        f"{agent:<14}{interval:>7}ms{step.offered:>12.0f}{step.delivered:>13.0f}"
                        f"{step.agent_cpus:>12.2f}{step.machine_cpus:>14.2f}"
                        f"{step.peak_rss_mb:>8.0f}  "
                        f"{'pass' if step.passed else 'FAIL'}",
                        flush=True,
                    )
                    if json_lines:
                        print(json.dumps({**asdict(step), "passed": step.passed}))
                    if not step.passed:
                        break
                    best[agent] = step
    return best


def _workers(agent: str) -> int | None:
    """N of ``collector:N`` (None for other agents and ``collector:auto``)."""
    name, _, workers = agent.partition(":")
    return int(workers) if name == "collector" and workers.isdigit() else None


def _ratio(a: Step | None, b: Step | None) -> str | None:
    if a is None or b is None or not b.delivered:
        return None
    return f"x{a.delivered / b.delivered:.2f}"


def print_table(best: dict[str, Step | None]) -> None:
    """The saturation table: each agent's figure, N workers over 1, each collector over vmagent."""
    print("\nsaturation: highest samples/s delivered in full")
    for agent, top in best.items():
        figure = f"{top.delivered:.0f}/s at {top.interval_ms}ms" if top is not None else "none"
        print(f"  {agent:<14}{figure}")
    one, vm = best.get("collector:1"), best.get("vmagent")
    collectors = sorted((n, a) for a in best if (n := _workers(a)) is not None)
    for n, agent in collectors:
        if n > 1 and (ratio := _ratio(best[agent], one)):
            print(f"  collector {n} workers / 1 worker: {ratio}")
    for n, agent in collectors:
        if ratio := _ratio(best[agent], vm):
            print(f"  collector {n} worker{'s' * (n > 1)} / vmagent: {ratio}")


def parse_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (the ``--agents`` and ``--intervals`` values)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Ramp every agent, print each step and the saturation table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--targets", type=int, default=TARGETS)
    parser.add_argument("--body", choices=["node", "ksm"], default="node")
    parser.add_argument("--warmup", type=float, default=WARMUP)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument(
        "--intervals",
        default=",".join(map(str, INTERVALS_MS)),
        help="the ramp: scrape intervals in ms, longest first (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="also print every step as JSON")
    args = parser.parse_args(argv)
    best = ramp(
        parse_list(args.agents),
        targets=args.targets,
        body=args.body,
        warmup=args.warmup,
        window=args.window,
        intervals=[int(i) for i in parse_list(args.intervals)],
        json_lines=args.json,
    )
    print_table(best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
