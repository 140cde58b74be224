"""Leaving the cluster at SIGTERM (``--cluster.leave-delay``), on a real agent process.

In Kubernetes a member tells its peers that it is going by failing its readiness probe; the
peers (and the member itself, which watches its own pod) then hand its targets over. So at
SIGTERM the agent answers ``/-/ready`` with 503 at once, keeps scraping for the delay, and only
then stops; a second signal stops it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.running import Target, serve_target
from tests.integration.servers import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            code: int = response.status
            return code
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def member(
    tmp_path: Path, target: str, *, leave_delay: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    config = tmp_path / "collector.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 500ms}\n"
        f"scrape_configs: [{{job_name: t, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "collector",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.path={tmp_path / 'data'}",
        "--cluster.peers=a",
        "--cluster.self=a",
        f"--cluster.leave-delay={leave_delay}",
    ]
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_sigterm_first_leaves_then_stops(tmp_path: Path) -> None:
    """Not ready at once, still healthy and scraping during the delay, then exit 0."""
    async with serve_target(Target(body=b"m 1\n")) as target:
        with member(tmp_path, target.address, leave_delay="3s") as (process, url):
            await _wait(lambda: status(f"{url}/-/ready") == 200 and target.scrapes > 0)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await _wait(lambda: status(f"{url}/-/ready") == 503, timeout=2)
            assert status(f"{url}/-/healthy") == 200
            scrapes = target.scrapes
            await _wait(lambda: process.poll() is not None, timeout=30)
            took = time.monotonic() - signalled
            assert process.returncode == 0, (tmp_path / "log").read_text()
            assert took >= 3.0
            assert target.scrapes >= scrapes + 2, "it kept scraping while leaving"
    assert "leaving the cluster" in (tmp_path / "log").read_text()


async def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM starts a 60 s leave; SIGINT then stops the agent right away."""
    async with serve_target(Target(body=b"m 1\n")) as target:
        with member(tmp_path, target.address, leave_delay="60s") as (process, url):
            await _wait(lambda: status(f"{url}/-/ready") == 200)
            process.send_signal(signal.SIGTERM)
            await _wait(lambda: status(f"{url}/-/ready") == 503, timeout=2)
            process.send_signal(signal.SIGINT)
            started = time.monotonic()
            await _wait(lambda: process.poll() is not None, timeout=20)
            assert time.monotonic() - started < 15
            assert process.returncode == 0


async def _wait(predicate: object, *, timeout: float = 30) -> None:  # noqa: ASYNC109 (budget)
    """Poll in a thread so the target served on this loop keeps answering meanwhile."""

    def poll() -> None:
        wait_until(lambda: _safe(predicate), timeout=timeout, interval=0.1)

    await asyncio.to_thread(poll)


def _safe(predicate: object) -> bool:
    assert callable(predicate)
    try:
        return bool(predicate())
    except (OSError, urllib.error.URLError):
        return False
