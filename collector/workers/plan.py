"""How many scrape workers, and which targets each one scrapes (`collector.workers`).

``--scrape.workers=N|auto``, as `worker_range` (start, most): N is (N, N). The main process is
worker 0 (it scrapes its share like the others), so N workers are N processes.

``auto`` starts with one process, the in-process pipeline and no extra process (an extra Python
process costs 30-50 MB), and adds a worker process only when the ones running are saturated
(`collector.workers.growth`), up to the CPUs this process may use: the cgroup v2 quota
(``/sys/fs/cgroup/cpu.max``, ``max`` or ``QUOTA PERIOD``) and the scheduler affinity,
whichever is lower, rounded down, at most `AUTO_MAX`. It never shrinks while running; a
restart starts from one again. With one usable CPU, ``--cluster.*`` sharding or the remote-write
receiver, ``auto`` is (1, 1): exactly the in-process agent (an explicit N > 1 with either of
the last two is refused with the reason).

Assignment: `worker_ring` is a `Ring` over ``worker-0 .. worker-N-1`` that ignores the
cluster's ``__cluster_local__`` opt-out (every target belongs to exactly one worker). Growing
from N to N+1 moves only the targets the new worker takes, about 1/(N+1) of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from collector.config import AgentOptions
from collector.errors import ConfigError
from collector.model.rendezvous import Ring

__all__ = [
    "AUTO_MAX",
    "add_worker_flags",
    "describe_auto",
    "parse_workers_flag",
    "usable_cpus",
    "with_worker_flags",
    "worker_name",
    "worker_range",
    "worker_ring",
]

AUTO_MAX = 8
"""``auto`` never starts more workers than this."""

MAX_WORKERS = 64
"""An explicit ``--scrape.workers`` above this is refused (a typo, not a plan)."""


def parse_workers_flag(text: str) -> str:
    """``auto`` or a count from 1 to `MAX_WORKERS`, as given (argparse type)."""
    value = text.strip().lower()
    if value == "auto":
        return value
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--scrape.workers: expected a number of processes or 'auto', got {text!r}"
        ) from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"--scrape.workers: expected 1 to {MAX_WORKERS} processes, got {count}"
        )
    return str(count)


def add_worker_flags(parser: argparse.ArgumentParser, defaults: AgentOptions) -> None:
    """``--scrape.workers`` and the worker processes' own hidden ``--scrape.worker-fd``."""
    parser.add_argument(
        "--scrape.workers",
        dest="scrape_workers",
        default=defaults.scrape_workers,
        type=parse_workers_flag,
        metavar="N|auto",
        help="scrape in N processes, this one included, targets split by a consistent hash "
        "(one asyncio process uses one core); 1 = everything in this process; auto = start "
        "with 1 and add a process when those running are saturated, up to the usable CPUs "
        f"(cgroup quota and affinity), at most {AUTO_MAX} (default: %(default)s)",
    )
    parser.add_argument("--scrape.worker-fd", dest="worker_fd", type=int, help=argparse.SUPPRESS)


def with_worker_flags(options: AgentOptions, args: argparse.Namespace) -> AgentOptions:
    """``options`` with ``--scrape.workers``."""
    return dataclasses.replace(options, scrape_workers=args.scrape_workers)


def usable_cpus(
    *, cpu_max: Path = Path("/sys/fs/cgroup/cpu.max"), affinity: int | None = None
) -> int:
    """CPUs this process may use: the cgroup v2 quota and the affinity mask, the lower (>= 1)."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            affinity = os.cpu_count() or 1
    cpus = float(affinity)
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        fields = []
    if len(fields) == 2 and fields[0] != "max":
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            quota, period = 0, 0
        if quota > 0 and period > 0:
            cpus = min(cpus, quota / period)
    return max(1, math.floor(cpus))


def worker_range(
    options: AgentOptions, *, cpus: int | None = None, clustered: bool
) -> tuple[int, int]:
    """(processes at start, most processes) for ``options``; (1, 1): the in-process agent.

    Raises `ConfigError` for an explicit N > 1 with a feature workers do not support yet.
    """
    flag = options.scrape_workers
    if flag != "auto":
        count = int(flag)
        if count > 1 and clustered:
            raise ConfigError(
                f"--scrape.workers={count} cannot be combined with --cluster.* sharding yet: "
                "run one worker per replica (--scrape.workers=1) or more replicas"
            )
        if count > 1 and options.enable_remote_write_receiver:
            raise ConfigError(
                f"--scrape.workers={count} cannot be combined with "
                "--web.enable-remote-write-receiver yet (received samples have no worker to "
                "forward them): use --scrape.workers=1"
            )
        return count, count
    if clustered or options.enable_remote_write_receiver:
        return 1, 1
    usable = usable_cpus() if cpus is None else cpus
    return 1, min(usable, AUTO_MAX)


def describe_auto() -> str:
    """What ``--scrape.workers=auto`` means on this machine (``collector --version``)."""
    cpus = usable_cpus()
    _, most = worker_range(AgentOptions(), cpus=cpus, clustered=False)
    return (
        f"--scrape.workers=auto: 1 process, up to {most} when saturated here ({cpus} usable CPUs)"
    )


def worker_name(index: int) -> str:
    """The ring member name of worker ``index`` (also its label on ``/metrics``)."""
    return f"worker-{index}"


def worker_ring(count: int, index: int) -> Ring:
    """Worker ``index``'s view of ``count`` workers: it owns the targets where it weighs most."""
    return Ring(
        (worker_name(i) for i in range(count)), self_name=worker_name(index), honor_local=False
    )
