"""The rig `benchmarks.side_by_side` and `benchmarks.saturation` share: processes and /proc.

Starting a peer (agent, receiver, targets) as a process that is stopped on the way out, waiting
for an HTTP endpoint to answer, reading an agent's CPU time and peak RSS summed over its process
tree from ``/proc``, and the samples a VictoriaMetrics receiver has inserted. Nothing to run on
its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def get(url: str, timeout: float = 5.0) -> bytes:
    """The body of a GET."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_http(url: str, *, seconds: float) -> None:
    """Return once ``url`` answers; raise if it does not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            get(url, timeout=1.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds}s") from None
            time.sleep(0.2)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            pids.extend(tree_pids(int(c)))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s process tree (scrape workers included)."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    """Peak RSS (``VmHWM``) of ``pid``'s process tree, summed, in MB."""
    peak = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
    return peak / 1024


def rows_inserted(receiver: str, *, timeout: float = 60.0) -> int:
    """Samples the VictoriaMetrics at ``receiver`` (host:port) took in by remote write so far.

    A saturated receiver may take seconds to answer, hence the long default timeout.
    """
    text = get(f"http://{receiver}/metrics", timeout=timeout).decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vm_rows_inserted_total") and 'type="promremotewrite"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@contextlib.contextmanager
def process(argv: Sequence[str], *, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its output in ``log``; SIGTERM it (SIGKILL after 30 s) on the way out."""
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
