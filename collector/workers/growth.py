"""When ``--scrape.workers=auto`` adds a process: CPU of the agent's processes, and the rule.

Place in the pipeline: the supervisor (`collector.workers.supervisor`) samples `CpuMeter` every
`SAMPLE_INTERVAL` and asks `Growth` whether to add a worker. The rule: every sample over the last
`WINDOW` seconds shows the processes running using at least `SATURATED` of a core each on
average, the count is below the most allowed (usable CPUs), and `SETTLE` seconds have passed
since the last change (a new worker takes its share of the targets only after a scrape manager
tick, and the CPU of the others falls after that). One asyncio process at 80% of a core over
half a minute is saturated: scrapes start late and the queues lag before it reaches 100%.

Pure decisions on an injected clock; `CpuMeter` reads ``/proc/<pid>/stat`` (Linux).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["SAMPLE_INTERVAL", "SATURATED", "SETTLE", "WINDOW", "CpuMeter", "Growth"]

SAMPLE_INTERVAL = 5.0
WINDOW = 30.0
SATURATED = 0.8
SETTLE = 60.0

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class CpuMeter:
    """Cores used by a set of processes between two `sample` calls."""

    def __init__(self, read: Callable[[int], float | None] = proc_cpu_seconds) -> None:
        self._read = read
        self._last: dict[int, float] = {}
        self._at: float | None = None

    def sample(self, now: float, pids: Iterable[int]) -> float | None:
        """Cores used since the previous sample (a process new since then counts from now)."""
        values = {pid: v for pid in pids if (v := self._read(pid)) is not None}
        used = sum(v - self._last[pid] for pid, v in values.items() if pid in self._last)
        previous, self._at, self._last = self._at, now, values
        if previous is None or now <= previous:
            return None
        return used / (now - previous)


class Growth:
    """The rule of the module docstring, fed one `observe` per sample."""

    def __init__(
        self,
        *,
        most: int,
        window: float = WINDOW,
        saturated: float = SATURATED,
        settle: float = SETTLE,
    ) -> None:
        self.most = most
        self._window = window
        self._saturated = saturated
        self._settle = settle
        self._samples: deque[tuple[float, float]] = deque()
        self._changed: float | None = None
        self._since: float | None = None
        """The first sample since the last change: the window must be covered from there."""

    def observe(self, now: float, cores: float, count: int) -> bool:
        """Record ``cores`` used by ``count`` processes; True when one more should start."""
        if self._changed is None:
            self._changed = now
        if self._since is None:
            self._since = now
        samples = self._samples
        samples.append((now, cores / count))
        while samples[0][0] < now - self._window:
            samples.popleft()
        if count >= self.most or now - self._changed < self._settle:
            return False
        if now - self._since < self._window:
            return False
        return all(per >= self._saturated for _, per in samples)

    def grew(self, now: float) -> None:
        """A worker was added at ``now``: wait `SETTLE` and a full window of new samples."""
        self._changed = now
        self._since = None
        self._samples.clear()
