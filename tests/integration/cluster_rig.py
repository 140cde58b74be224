"""The sharding rig: agent processes, loopback targets that count their scrapes, and the verdict.

Shared by the end-to-end sharding tests (``test_cluster_sharding.py``: static targets and a
peers file; ``test_cluster_pods.py``: pods on a real API server and Kubernetes membership).
Each member is a ``python -m collector`` process. The targets listen on their own
``127.x.y.z`` addresses in the test process and record every scrape: when (wall clock, on
arrival) and by which member (each member's config sends its name as the bearer token, which
is no label, so every member computes the same shard keys). The members remote-write to a
receiver in the test process too, so the test sees the series the way a TSDB would.

`run_phases` drives 3 -> 4 -> 3 members (how a member joins and leaves is the caller's) and
`assert_handoffs` measures, per target and per phase: exactly one owner (R = 1), the share that
moves on the join and on the leave (at most 35 %, ideal 25 %), the longest time unscraped and
how long two members scraped the same target, plus the received series' largest timestamp gap
and any staleness marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from collector.model.value import is_stale
from collector.remote.codec import decode_request, decompress
from tests.integration.servers import free_port

log = logging.getLogger(__name__)

METRIC = "sharded_test_value"
"""The one series every target exposes (``{kind="x"} 1``)."""
TOLERANCE = 0.2
"""Seconds of slack on time measurements: scheduling and HTTP latency on a busy 2-core box."""
ROOT = Path(__file__).resolve().parents[2]
TARGET_PORT = 19100
MEMBERS = ("m0", "m1", "m2", "m3")
"""Three members from the start; the fourth runs from the start too but joins and leaves."""


# ----------------------------------------------------------------------------- targets


@dataclass
class Fleet:
    """The loopback targets and what they saw: address -> [(arrival time, member)]."""

    addresses: list[str] = field(default_factory=list)
    scrapes: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))

    def scraped_by(self, start: float, end: float) -> dict[str, set[str]]:
        """Per target, the members that scraped it in ``[start, end)``."""
        return {a: {m for t, m in self.scrapes[a] if start <= t < end} for a in self.addresses}


@contextlib.asynccontextmanager
async def serve_fleet(count: int, *, prefix: str = "127.1") -> AsyncIterator[Fleet]:
    """``count`` targets on ``<prefix>.<i // 250>.<i % 250 + 1>``, port `TARGET_PORT` when free."""
    fleet = Fleet()

    async def metrics(request: web.Request) -> web.Response:
        arrived = time.time()
        host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]  # open while handled
        member = request.headers.get("Authorization", "").removeprefix("Bearer ")
        fleet.scrapes[f"{host}:{port}"].append((arrived, member))
        return web.Response(text=f'{METRIC}{{kind="x"}} 1\n')

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for i in range(count):
        sock = socket.socket()
        host = f"{prefix}.{i // 250}.{i % 250 + 1}"
        try:
            # One fixed port: the same target labels, so the same shares, on every run.
            sock.bind((host, TARGET_PORT))
        except OSError:
            sock.bind((host, 0))
        host, port = sock.getsockname()
        fleet.addresses.append(f"{host}:{port}")
        await web.SockSite(runner, sock).start()
    try:
        yield fleet
    finally:
        await runner.cleanup()


# ----------------------------------------------------------------------------- receiver


@dataclass
class Received:
    """Remote-written samples by instance: ``[(timestamp ms, value)]`` of `METRIC`."""

    samples: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[tuple[str, Received]]:
    received = Received()

    async def write(request: web.Request) -> web.Response:
        for labels, points in decode_request(decompress(await request.read())):
            lset = dict(labels)
            if lset.get("__name__") == METRIC:
                received.samples[lset["instance"]].extend((ts, v) for v, ts in points)
        return web.Response(status=204)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/api/v1/write", received
    finally:
        await runner.cleanup()


# ----------------------------------------------------------------------------- members


@dataclass
class Member:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def write_peers(path: Path, members: Sequence[str]) -> None:
    """Replace the peers file atomically (a rename), as the README tells users to."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{m}\n" for m in members))
    tmp.replace(path)


@contextlib.contextmanager
def start_members(
    tmp_path: Path,
    *,
    configs: Mapping[str, str],
    flags: Callable[[str], Sequence[str]],
) -> Iterator[dict[str, Member]]:
    """One agent process per member: ``configs[name]`` as its config file, ``flags(name)``
    (the cluster flags) after the common ones. SIGTERM at the end, and a wait for the exit."""
    members: dict[str, Member] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for name, config in configs.items():
            workdir = tmp_path / name
            workdir.mkdir()
            (workdir / "collector.yml").write_text(config)
            port = free_port()
            log_path = workdir / "log"
            argv = [
                sys.executable,
                "-m",
                "collector",
                f"--config.file={workdir / 'collector.yml'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.path={workdir / 'data'}",
                "--no-storage.remote.wal-fsync",
                *flags(name),
            ]
            with log_path.open("wb") as out:
                process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            members[name] = Member(name, f"http://127.0.0.1:{port}", process, log_path)
        yield members
    finally:
        for member in members.values():
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        for member in members.values():
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()


async def get_json(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.get(url) as response:
        response.raise_for_status()
        data: dict[str, object] = (await response.json())["data"]
        return data


async def wait_for(predicate: object, *, timeout: float, what: str) -> None:  # noqa: ASYNC109 (a polling budget)
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, aiohttp.ClientError):
            got = predicate()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class Phases:
    """Wall-clock marks of one run: steady state, the join, the leave, the end."""

    steady: float
    join: float
    leave: float
    end: float
    counts_4: dict[str, int]
    """Each member's target count with four members, as ``/api/v1/cluster`` reported it."""


async def run_phases(
    session: aiohttp.ClientSession,
    fleet: Fleet,
    members: Mapping[str, Member],
    *,
    interval: float,
    join: Callable[[], object],
    leave: Callable[[], object],
) -> Phases:
    """Steady with three members, ``join()`` the fourth, ``leave()`` it again; returns the marks.

    Also checks what the members say meanwhile: ``/api/v1/targets`` of all members together
    lists each target once, ``/api/v1/cluster`` counts every target once and has nothing still
    handing off once the join settled. ``join``/``leave`` may be coroutine functions.
    """

    async def all_ready() -> bool:
        for m in members.values():
            async with session.get(f"{m.url}/-/ready") as r:
                if r.status != 200:
                    return False
        return True

    async def call(step: Callable[[], object]) -> None:
        got = step()
        if asyncio.iscoroutine(got):
            await got

    names = list(members)
    await wait_for(all_ready, timeout=60, what="members ready")
    await wait_for(
        lambda: all(len(fleet.scrapes[a]) >= 2 for a in fleet.addresses),
        timeout=30,
        what="every target scraped",
    )
    t_steady = time.time()
    await asyncio.sleep(3 * interval)

    # /api/v1/targets lists own targets only: together, each target exactly once.
    listed = [
        t["scrapeUrl"]
        for m in members.values()
        for t in (await get_json(session, f"{m.url}/api/v1/targets"))["activeTargets"]  # type: ignore[attr-defined]
    ]
    assert len(listed) == len(set(listed)) == len(fleet.addresses)
    cluster = await get_json(session, f"{members[names[-1]].url}/api/v1/cluster")
    counts = {m["name"]: m["targets"] for m in cluster["members"]}  # type: ignore[attr-defined]
    assert sorted(counts) == sorted(names[:3])
    assert sum(counts.values()) == len(fleet.addresses)

    t_join = time.time()
    await call(join)
    await asyncio.sleep(6 * interval)
    cluster = await get_json(session, f"{members[names[0]].url}/api/v1/cluster")
    counts_4 = {m["name"]: m["targets"] for m in cluster["members"]}  # type: ignore[attr-defined]
    assert cluster["handingOff"] == 0
    t_leave = time.time()
    await call(leave)
    await asyncio.sleep(6 * interval)
    return Phases(steady=t_steady, join=t_join, leave=t_leave, end=time.time(), counts_4=counts_4)


# ----------------------------------------------------------------------------- measures


def sole_owners(owners: dict[str, set[str]], phase: str) -> dict[str, str]:
    """Each target's one owner; fails naming the targets with none or several."""
    bad = {a: sorted(m) for a, m in owners.items() if len(m) != 1}
    assert not bad, (
        f"{phase}: {len(bad)} targets without exactly one owner, e.g. {list(bad.items())[:5]}"
    )
    return {a: next(iter(m)) for a, m in owners.items()}


def longest_unscraped(fleet: Fleet, start: float, end: float) -> tuple[float, str]:
    worst = (0.0, "")
    for address in fleet.addresses:
        times = sorted(t for t, _ in fleet.scrapes[address] if start <= t < end)
        for a, b in itertools.pairwise(times):
            worst = max(worst, (b - a, address))
    return worst


def longest_double(
    fleet: Fleet, moved: dict[str, tuple[str, str]], start: float, end: float
) -> float:
    """Per moved target: from the new owner's first scrape to the old owner's last one."""
    worst = 0.0
    for address, (old, new) in moved.items():
        scrapes = [(t, m) for t, m in fleet.scrapes[address] if start <= t < end]
        first_new = min(t for t, m in scrapes if m == new)
        last_old = max((t for t, m in scrapes if m == old), default=first_new)
        worst = max(worst, last_old - first_new)
    return worst


def assert_handoffs(
    fleet: Fleet,
    received: Received,
    phases: Phases,
    *,
    interval: float,
    members: Sequence[str] = MEMBERS,
) -> str:
    """The Done-when verdict on one 3 -> 4 -> 3 run; returns the numbers as one line.

    ``members[-1]`` is the one that joins and leaves. The ownership windows are the last two
    intervals before each change (and before the end), when every hand-off has settled.
    """
    n_targets = len(fleet.addresses)
    joiner = members[-1]
    window = 2 * interval
    owners_3 = sole_owners(fleet.scraped_by(phases.join - window, phases.join), "3 members")
    owners_4 = sole_owners(fleet.scraped_by(phases.leave - window, phases.leave), "4 members")
    owners_back = sole_owners(fleet.scraped_by(phases.end - window, phases.end), "3 members again")
    joined = {a: (owners_3[a], owners_4[a]) for a in fleet.addresses if owners_3[a] != owners_4[a]}
    left = {
        a: (owners_4[a], owners_back[a]) for a in fleet.addresses if owners_4[a] != owners_back[a]
    }
    assert {new for _, new in joined.values()} == {joiner}, (
        "a join moves targets to the new member only"
    )
    assert {old for old, _ in left.values()} == {joiner}, "a leave moves only the leaver's targets"
    assert phases.counts_4 == {m: sum(1 for o in owners_4.values() if o == m) for m in members}
    assert owners_back == owners_3, "the same members own the same targets again"

    unscraped, where = longest_unscraped(fleet, phases.join - window, phases.end)
    baseline, _ = longest_unscraped(fleet, phases.steady, phases.join)  # jitter, no hand-off
    double_join = longest_double(fleet, joined, phases.join, phases.leave)
    double_leave = longest_double(fleet, left, phases.leave, phases.end)
    gaps: list[int] = []
    stale = 0
    for address in fleet.addresses:
        stamps = sorted(
            {
                ts
                for ts, v in received.samples[address]
                if (phases.join - window) * 1000 <= ts < phases.end * 1000
            }
        )
        stale += sum(1 for ts, v in received.samples[address] if is_stale(v))
        gaps.extend(b - a for a, b in itertools.pairwise(stamps))
    report = (
        f"moved on join {len(joined)}/{n_targets} = {len(joined) / n_targets:.1%}, "
        f"on leave {len(left)}/{n_targets} = {len(left) / n_targets:.1%}; "
        f"longest unscraped {unscraped:.3f}s ({where}; {baseline:.3f}s before any change); "
        f"scraped twice for at most "
        f"{double_join:.3f}s (join) / {double_leave:.3f}s (leave); received gap max "
        f"{max(gaps) / 1000:.3f}s; staleness markers {stale}; counts with 4 members "
        f"{phases.counts_4}"
    )
    log.warning("%s", report)  # shown by -rA; the numbers go in the report
    print(report)
    assert len(joined) / n_targets <= 0.35, report
    assert len(left) / n_targets <= 0.35, report
    assert unscraped <= interval + TOLERANCE, report
    assert double_join <= interval + TOLERANCE, report
    assert double_leave <= interval + TOLERANCE, report
    assert max(gaps) <= (interval + TOLERANCE) * 1000, report
    assert stale == 0, report
    return report
