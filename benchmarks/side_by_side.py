"""The scoreboard: collector vs Prometheus agent vs vmagent on the same targets and receiver.

Each agent runs alone, in turn, against the same loopback targets (``benchmarks.targets``, its
own process) and writes to a fresh VictoriaMetrics single-node receiver. For each agent the
harness measures, over a fixed window after a warm-up:

- CPU microseconds per scraped sample: (utime + stime of the agent's process tree) / samples
  that reached the receiver in the window;
- peak RSS (``VmHWM``) of the agent process;
- samples delivered vs expected (targets x series x scrapes), so "fast" never means "lossy".

Printed, in order:

1. one table per workload, W1 (``node``: 200 targets x a node_exporter body) and W2 (``ksm``:
   20 targets x 2,000 kube-state-metrics-shaped series), one row per agent (CPU us/sample,
   peak RSS MB, delivered, expected), then collector's CPU-per-sample and peak-RSS ratios
   against each other agent (``collector / vmagent: CPU per sample x.., peak RSS x..``);
2. the saturation ramp of `benchmarks.saturation` (the same code, its own ports and targets):
   one row per step, then the saturation table, the highest samples/s each agent delivers in
   full with collector on 1 scrape worker and on N, and vmagent measured the same way, with
   the N-workers/1-worker and collector/vmagent ratios.

Run the whole scoreboard: ``python -m benchmarks.side_by_side`` (W1 and W2, 60 s windows after
15 s warm-ups, about 8 minutes; then the ramp, about 55 s a step, each agent stepping until it
first fails). Needs the Debian packages ``prometheus`` and ``victoria-metrics`` (``vmagent``
included), installed by ``make test``.
``--workload node|ksm``, ``--agent`` and ``--seconds``/``--warmup`` narrow the workload tables;
``--no-saturation`` skips the ramp, and ``--saturation-agents``, ``--saturation-targets``,
``--saturation-warmup``, ``--saturation-window`` and ``--saturation-intervals`` are
``benchmarks.saturation``'s ``--agents``, ``--targets``, ``--warmup``, ``--window`` and
``--intervals``. A quick look: ``--seconds 10 --warmup 5 --saturation-warmup 12
--saturation-window 5 --saturation-intervals 1000,500``.

``--baseline REF`` adds ``collector@REF``: the same venv running an older commit from a
temporary git worktree (its C extension built there), so a change is measured against its
predecessor in the same run (the write-ahead queue's cost: ``--baseline <commit before it>
--agent collector --no-saturation``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import saturation
from benchmarks.rig import cpu_seconds, get, peak_rss_mb, process, rows_inserted, wait_http
from benchmarks.targets import target_addresses

WORKLOADS = {"node": (200, "node"), "ksm": (20, "ksm")}
"""Workload -> (targets, body served by ``benchmarks.targets``)."""
NAMES = {"node": "W1", "ksm": "W2"}
"""The workloads' names in issue 9 and the README."""
TARGET_PORT = 19100
RECEIVER = "127.0.0.1:18428"


@dataclass(frozen=True, slots=True)
class Result:
    """One agent's numbers for one workload."""

    agent: str
    cpu_seconds: float
    samples: int
    expected: int
    peak_rss_mb: float

    @property
    def us_per_sample(self) -> float:
        return self.cpu_seconds * 1e6 / self.samples if self.samples else float("inf")


def _scrape_config(hosts: Sequence[str], *, external: bool) -> str:
    targets = ", ".join(f'"{h}:{TARGET_PORT}"' for h in hosts)
    remote = f"remote_write:\n  - url: http://{RECEIVER}/api/v1/write\n" if external else ""
    return (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: bench\n"
        f"    static_configs:\n      - targets: [{targets}]\n" + remote
    )


def _agent_argv(agent: str, work: Path, config: Path) -> list[str]:
    if agent.startswith("collector@"):
        # An older commit's code on today's venv: the worktree comes first on sys.path.
        tree = work / "baseline"
        argv = _agent_argv("collector", work, config)
        storage = f"--storage.path={work / 'collector-baseline'}"
        # -P: ``python -m`` would otherwise put the cwd (today's tree) ahead of PYTHONPATH.
        rest = (storage if "storage" in a else a for a in argv[1:])
        return ["env", f"PYTHONPATH={tree}", argv[0], "-P", *rest]
    if agent == "collector":
        return [
            sys.executable,
            "-m",
            "collector",
            f"--config.file={config}",
            f"--storage.path={work / 'collector'}",
            "--web.listen-address=127.0.0.1:19099",
        ]
    if agent == "prometheus":
        return [
            "prometheus",
            "--enable-feature=agent",
            f"--config.file={config}",
            f"--storage.agent.path={work / 'prom'}",
            "--web.listen-address=127.0.0.1:19090",
        ]
    if agent == "vmagent":
        return [
            "vmagent",
            f"-promscrape.config={config}",
            f"-remoteWrite.url=http://{RECEIVER}/api/v1/write",
            f"-remoteWrite.tmpDataPath={work / 'vmagent'}",
            "-httpListenAddr=127.0.0.1:18429",
            "-promscrape.config.strictParse=false",
        ]
    raise ValueError(agent)


def run_one(agent: str, *, workload: str, seconds: float, warmup: float, work: Path) -> Result:
    """Run one agent on one workload against a fresh receiver; return its numbers."""
    count, body = WORKLOADS[workload]
    hosts = target_addresses(count)
    series_per_target = {"node": 0, "ksm": 0}[body]
    config = work / f"{agent}.yml"
    config.write_text(_scrape_config(hosts, external=agent != "vmagent"))
    shutil.rmtree(work / "vm", ignore_errors=True)
    receiver = [
        "victoria-metrics",
        f"-storageDataPath={work / 'vm'}",
        f"-httpListenAddr={RECEIVER}",
        "-retentionPeriod=1d",
    ]
    targets = [
        sys.executable,
        "-m",
        "benchmarks.targets",
        "--count",
        str(count),
        "--port",
        str(TARGET_PORT),
        "--body",
        body,
    ]
    with process(receiver, log=work / "vm.log"), process(targets, log=work / "targets.log"):
        wait_http(f"http://{RECEIVER}/health", seconds=30)
        wait_http(f"http://{hosts[-1]}:{TARGET_PORT}/metrics", seconds=30)
        series_per_target = sum(
            1
            for line in get(f"http://{hosts[0]}:{TARGET_PORT}/metrics").splitlines()
            if line and not line.startswith(b"#")
        )
        with process(_agent_argv(agent, work, config), log=work / f"{agent}.log") as proc:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"{agent} exited early; see {work / (agent + '.log')}")
            cpu0, rows0, t0 = cpu_seconds(proc.pid), rows_inserted(RECEIVER), time.monotonic()
            time.sleep(seconds)
            cpu1, rows1, t1 = cpu_seconds(proc.pid), rows_inserted(RECEIVER), time.monotonic()
            peak = peak_rss_mb(proc.pid)
    # Report series (up, scrape_*) come on top of the exposed series: 5 per scrape.
    expected = int(count * (series_per_target + 5) * (t1 - t0))
    return Result(agent, cpu1 - cpu0, rows1 - rows0, expected, peak)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one table per workload, then (unless ``--no-saturation``) the saturation table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--agent", choices=["collector", "prometheus", "vmagent"], action="append")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run collector at this git commit (collector@REF)"
    )
    ramp = parser.add_argument_group("saturation ramp (benchmarks.saturation)")
    ramp.add_argument(
        "--saturation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the workload tables, run the saturation ramp and print its table",
    )
    ramp.add_argument("--saturation-agents", default=",".join(saturation.AGENTS))
    ramp.add_argument("--saturation-targets", type=int, default=saturation.TARGETS)
    ramp.add_argument("--saturation-warmup", type=float, default=saturation.WARMUP)
    ramp.add_argument("--saturation-window", type=float, default=saturation.WINDOW)
    ramp.add_argument(
        "--saturation-intervals",
        default=",".join(map(str, saturation.INTERVALS_MS)),
        help="scrape intervals in ms, longest first (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    workloads = args.workload or ["node", "ksm"]
    agents = args.agent or ["collector", "prometheus", "vmagent"]
    if args.baseline:
        agents = [f"collector@{args.baseline}", *agents]
    for workload in workloads:
        results: dict[str, Result] = {}
        with tempfile.TemporaryDirectory(prefix="sbs-") as tmp:
            if args.baseline:
                root = Path(__file__).resolve().parent.parent
                subprocess.run(
                    [
                        "git",
                        "-C",
                        str(root),
                        "worktree",
                        "add",
                        "--detach",
                        "-q",
                        str(Path(tmp) / "baseline"),
                        args.baseline,
                    ],
                    check=True,
                )
                # Its own C extension (an older commit's may differ): without it the baseline
                # would run the pure-Python paths and measure something else.
                subprocess.run(
                    [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                    cwd=Path(tmp) / "baseline",
                    check=True,
                    capture_output=True,
                )
            try:
                for agent in agents:
                    results[agent] = run_one(
                        agent,
                        workload=workload,
                        seconds=args.seconds,
                        warmup=args.warmup,
                        work=Path(tmp),
                    )
            finally:
                if args.baseline:
                    subprocess.run(
                        [
                            "git",
                            "-C",
                            str(Path(__file__).resolve().parent.parent),
                            "worktree",
                            "remove",
                            "--force",
                            str(Path(tmp) / "baseline"),
                        ],
                        check=False,
                    )
        count = WORKLOADS[workload][0]
        print(
            f"\nworkload {NAMES[workload]} ({workload}): {count} targets, 1s interval, "
            f"{args.seconds:.0f}s window"
        )
        print(f"{'agent':<20}{'us/sample':>12}{'peak RSS MB':>14}{'delivered':>12}{'expected':>12}")
        for r in results.values():
            print(
                f"{r.agent:<20}{r.us_per_sample:>12.2f}{r.peak_rss_mb:>14.1f}"
                f"{r.samples:>12}{r.expected:>12}"
            )
            if args.json:
                print(json.dumps({"workload": workload, **dataclasses.asdict(r)}))
        if "collector" in results:
            ours = results["collector"]
            for peer in results.values():
                if peer.agent != "collector":
                    print(
                        f"collector / {peer.agent}: CPU per sample x"
                        f"{ours.us_per_sample / peer.us_per_sample:.2f}, "
                        f"peak RSS x{ours.peak_rss_mb / peer.peak_rss_mb:.2f}"
                    )
        sys.stdout.flush()
    if args.saturation:
        print("\nsaturation ramp (benchmarks.saturation)")
        best = saturation.ramp(
            saturation.parse_list(args.saturation_agents),
            targets=args.saturation_targets,
            warmup=args.saturation_warmup,
            window=args.saturation_window,
            intervals=[int(i) for i in saturation.parse_list(args.saturation_intervals)],
            json_lines=args.json,
        )
        saturation.print_table(best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
