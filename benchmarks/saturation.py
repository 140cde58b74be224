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

Run: ``python -m benchmarks.saturation`` (``--agents collector:1,collector:2,vmagent``,
``--targets 200``, ``--window 15``); needs ``victoria-metrics`` and ``vmagent`` (Debian
package ``victoria-metrics``).
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

from benchmarks.side_by_side import _cpu_seconds, _get, _peak_rss_mb, _process, _wait_http
from benchmarks.targets import target_addresses

# Ports of its own: side_by_side may run beside it on a shared machine.
TARGET_PORT = 19200
RECEIVER = "127.0.0.1:18528"
COLLECTOR_LISTEN = "127.0.0.1:19199"
VMAGENT_LISTEN = "127.0.0.1:18529"

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


def _rows_inserted() -> int:
    text = _get(f"http://{RECEIVER}/metrics", timeout=60.0).decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vm_rows_inserted_total") and 'type="promremotewrite"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _series(job: str) -> int:
    """Series of ``job`` the receiver holds (a busy receiver may take seconds to answer)."""
    query = urllib.parse.urlencode({"query": f'count({{job="{job}"}})'})
    for attempt in range(3):
        try:
            data = json.loads(_get(f"http://{RECEIVER}/api/v1/query?{query}", timeout=60.0))
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
    with _process(receiver, log=work / "vm.log"):
        _wait_http(f"http://{RECEIVER}/health", seconds=30)
        with _process(_argv(agent, work, config), log=work / f"{name}.log") as proc:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"{agent} exited early; see {work / (name + '.log')}")
            cpu0, rows0, busy0, t0 = (
                _cpu_seconds(proc.pid),
                _rows_inserted(),
                _machine_busy(),
                time.monotonic(),
            )
            time.sleep(window)
            cpu1, rows1, busy1, t1 = (
                _cpu_seconds(proc.pid),
                _rows_inserted(),
                _machine_busy(),
                time.monotonic(),
            )
            series = _series("bench")
            peak = _peak_rss_mb(proc.pid)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Ramp every agent, print each step and the saturation table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", default="collector:1,collector:2,vmagent")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--body", choices=["node", "ksm"], default="node")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument(
        "--intervals",
        default=",".join(map(str, INTERVALS_MS)),
        help="the ramp: scrape intervals in ms, longest first (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="also print every step as JSON")
    args = parser.parse_args(argv)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    intervals = [int(i) for i in args.intervals.split(",") if i.strip()]
    hosts = target_addresses(args.targets)
    best: dict[str, Step | None] = {}
    print(f"{args.targets} {args.body} targets; pass: delivered >= {PASS_RATIO:.0%} of offered")
    print(
        f"{'agent':<14}{'interval':>9}{'offered/s':>12}{'delivered/s':>13}"
        f"{'agent CPUs':>12}{'machine CPUs':>14}{'RSS MB':>8}  result"
    )
    with tempfile.TemporaryDirectory(prefix="saturation-") as tmp:
        work = Path(tmp)
        targets = [
            sys.executable,
            "-m",
            "benchmarks.targets",
            "--count",
            str(args.targets),
            "--port",
            str(TARGET_PORT),
            "--body",
            args.body,
        ]
        with _process(targets, log=work / "targets.log"):
            _wait_http(f"http://{hosts[-1]}:{TARGET_PORT}/metrics", seconds=30)
            for agent in agents:
                best[agent] = None
                for interval in intervals:
                    step = run_step(
                        agent, hosts, interval, warmup=args.warmup, window=args.window, work=work
                    )
                    print(
                        f"{agent:<14}{interval:>7}ms{step.offered:>12.0f}{step.delivered:>13.0f}"
                        f"{step.agent_cpus:>12.2f}{step.machine_cpus:>14.2f}"
                        f"{step.peak_rss_mb:>8.0f}  "
                        f"{'pass' if step.passed else 'FAIL'}",
                        flush=True,
                    )
                    if args.json:
                        print(json.dumps({**asdict(step), "passed": step.passed}))
                    if not step.passed:
                        break
                    best[agent] = step
    print("\nsaturation: highest samples/s delivered in full")
    for agent, top in best.items():
        figure = f"{top.delivered:.0f}/s at {top.interval_ms}ms" if top is not None else "none"
        print(f"  {agent:<14}{figure}")
    one, two = best.get("collector:1"), best.get("collector:2")
    if one is not None and two is not None:
        print(f"  collector 2 workers / 1 worker: x{two.delivered / one.delivered:.2f}")
    vm = best.get("vmagent")
    if two is not None and vm is not None:
        print(f"  collector 2 workers / vmagent: x{two.delivered / vm.delivered:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
