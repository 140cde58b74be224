"""The scoreboard: collector vs Prometheus agent vs vmagent on the same targets and receiver.

Each agent runs alone, in turn, against the same loopback targets (``benchmarks.targets``, its
own process) and writes to a fresh VictoriaMetrics single-node receiver. For each agent the
harness measures, over a fixed window after a warm-up:

- CPU microseconds per scraped sample: (utime + stime of the agent's process tree) / samples
  that reached the receiver in the window;
- peak RSS (``VmHWM``) of the agent process;
- samples delivered vs expected (targets x series x scrapes), so "fast" never means "lossy".

Run: ``python -m benchmarks.side_by_side --workload node --seconds 60`` (needs the Debian
packages ``prometheus`` and ``victoria-metrics``, installed by ``make test``).

``--baseline REF`` adds ``collector@REF``: the same venv running an older commit from a
temporary git worktree, so a change is measured against its predecessor in the same run (the
write-ahead queue's cost: ``--baseline <commit before it> --agent collector``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.targets import target_addresses

WORKLOADS = {"node": (200, "node"), "ksm": (20, "ksm")}
TARGET_PORT = 19100
RECEIVER = "127.0.0.1:18428"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def _wait_http(url: str, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _get(url, timeout=1.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds}s") from None
            time.sleep(0.2)


def _tree_pids(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            pids.extend(_tree_pids(int(c)))
    return pids


def _cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree_pids(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / CLK_TCK


def _peak_rss_mb(pid: int) -> float:
    peak = 0
    for p in _tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
    return peak / 1024


def _rows_inserted() -> int:
    text = _get(f"http://{RECEIVER}/metrics").decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vm_rows_inserted_total") and 'type="promremotewrite"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _scrape_config(hosts: Sequence[str], *, external: bool) -> str:
    targets = ", ".join(f'"{h}:{TARGET_PORT}"' for h in hosts)
    remote = f"remote_write:\n  - url: http://{RECEIVER}/api/v1/write\n" if external else ""
    return (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: bench\n"
        f"    static_configs:\n      - targets: [{targets}]\n" + remote
    )


@contextlib.contextmanager
def _process(argv: Sequence[str], *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
    with _process(receiver, log=work / "vm.log"), _process(targets, log=work / "targets.log"):
        _wait_http(f"http://{RECEIVER}/health", seconds=30)
        _wait_http(f"http://{hosts[-1]}:{TARGET_PORT}/metrics", seconds=30)
        series_per_target = sum(
            1
            for line in _get(f"http://{hosts[0]}:{TARGET_PORT}/metrics").splitlines()
            if line and not line.startswith(b"#")
        )
        with _process(_agent_argv(agent, work, config), log=work / f"{agent}.log") as proc:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"{agent} exited early; see {work / (agent + '.log')}")
            cpu0, rows0, t0 = _cpu_seconds(proc.pid), _rows_inserted(), time.monotonic()
            time.sleep(seconds)
            cpu1, rows1, t1 = _cpu_seconds(proc.pid), _rows_inserted(), time.monotonic()
            peak = _peak_rss_mb(proc.pid)
    # Report series (up, scrape_*) come on top of the exposed series: 5 per scrape.
    expected = int(count * (series_per_target + 5) * (t1 - t0))
    return Result(agent, cpu1 - cpu0, rows1 - rows0, expected, peak)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested agents and print one table per workload."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append")
    parser.add_argument("--agent", choices=["collector", "prometheus", "vmagent"], action="append")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run collector at this git commit (collector@REF)"
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
        print(f"\nworkload {workload}: {count} targets, 1s interval, {args.seconds:.0f}s window")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
