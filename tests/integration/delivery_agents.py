"""The agents under test in the delivery rig (`tests.integration.delivery`): collector, the
Prometheus agent or vmagent as a real subprocess, their configs, and how each one exited."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.integration.delivery_targets import FLUSH_DEADLINE, JOB, AgentKind, Targets
from tests.integration.servers import free_port, wait_until

# ---------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class Exit:
    """How an agent process ended after a signal."""

    signal_at: float
    exited_at: float
    code: int | None
    """None: still running at the bound, then killed."""

    @property
    def seconds(self) -> float:
        """From the signal to the exit."""
        return self.exited_at - self.signal_at


class AgentDied(RuntimeError):
    """The agent exited without being asked to."""


class AgentProcess:
    """One agent as a subprocess; restartable with the same storage and port."""

    def __init__(self, kind: AgentKind, *, workdir: Path, remote_url: str, targets: Targets):
        self.kind = kind
        self.workdir = workdir
        self.remote_url = remote_url
        self.port = free_port()
        self.storage = workdir / f"{kind}-storage"
        self.config = workdir / f"{kind}.yml"
        self.log = workdir / f"{kind}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.spawns: list[float] = []
        """``time.monotonic()`` of every start."""
        self.ends: list[float] = []
        """``time.monotonic()`` of every SIGTERM or SIGKILL that ended a run."""
        self.config.write_text(_scrape_config(kind, targets, remote_url))

    @property
    def url(self) -> str:
        """The agent's own HTTP address."""
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The command line for ``kind``."""
        listen = f"127.0.0.1:{self.port}"
        if self.kind == "collector":
            return [
                sys.executable,
                "-m",
                "collector",
                f"--config.file={self.config}",
                f"--storage.path={self.storage}",
                f"--web.listen-address={listen}",
                f"--storage.remote.flush-deadline={FLUSH_DEADLINE:g}s",
            ]
        if self.kind == "prometheus":
            return [
                "prometheus",
                "--enable-feature=agent",
                f"--config.file={self.config}",
                f"--storage.agent.path={self.storage}",
                f"--web.listen-address={listen}",
                f"--storage.remote.flush-deadline={FLUSH_DEADLINE:g}s",
            ]
        return [
            "vmagent",
            f"-promscrape.config={self.config}",
            "-promscrape.config.strictParse=false",
            f"-remoteWrite.url={self.remote_url}",
            f"-remoteWrite.tmpDataPath={self.storage}",
            f"-httpListenAddr={listen}",
        ]

    def start(self) -> float:
        """Start (again); the ``time.monotonic()`` of the spawn."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n==== start {self.starts}: {' '.join(self.argv())}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.spawns.append(time.monotonic())
        return self.spawns[-1]

    def wait_ready(self, *, timeout: float = 60.0) -> float:
        """Wait (bounded) until the agent answers its readiness URL; ``time.monotonic()``."""
        path = "/health" if self.kind == "vmagent" else "/-/ready"

        def ready() -> bool:
            self.check_alive()
            with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(ready, timeout=timeout, interval=0.05)
        return time.monotonic()

    def check_alive(self) -> None:
        """Raise `AgentDied` (with the log's tail) if the process has exited."""
        process = self.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            raise AgentDied(f"{self.kind} exited (code {code}); log {self.log}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of the agent's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def terminate(self, *, timeout: float) -> Exit:
        """SIGTERM; wait up to ``timeout`` s for the exit, then SIGKILL (``code`` None)."""
        process = self.process
        assert process is not None
        at = time.monotonic()
        self.ends.append(at)
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
            process.kill()
            process.wait(timeout=30)
        return Exit(at, time.monotonic(), code)

    def kill(self) -> float:
        """SIGKILL now and reap; the ``time.monotonic()`` of the signal."""
        process = self.process
        assert process is not None
        at = time.monotonic()
        self.ends.append(at)
        process.kill()
        process.wait(timeout=30)
        return at

    def lives(self, *, until: float) -> list[tuple[float, float]]:
        """``(start, end)`` of every run so far; a running one ends at ``until``."""
        ends = [*self.ends, until][: len(self.spawns)]
        return [(start, min(end, until)) for start, end in zip(self.spawns, ends, strict=True)]

    def stop(self) -> None:
        """Teardown: SIGTERM with a bound, SIGKILL after it."""
        process = self.process
        if process is not None and process.poll() is None:
            self.terminate(timeout=FLUSH_DEADLINE + 20)

    def metrics(self) -> dict[str, dict[str, float]]:
        """The agent's ``/metrics``: family sample name -> {label text: value}."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        out: dict[str, dict[str, float]] = {}
        for line in text.splitlines():
            match = _SAMPLE_LINE.match(line)
            if match:
                name, labels, value = match.groups()
                out.setdefault(name, {})[labels or ""] = float(value)
        return out


_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _scrape_config(kind: AgentKind, targets: Targets, remote_url: str) -> str:
    addresses = ", ".join(f"'{t.instance}'" for t in targets.targets)
    text = (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: {JOB}\n"
        f"    static_configs:\n      - targets: [{addresses}]\n"
    )
    if kind != "vmagent":  # vmagent takes -remoteWrite.url
        text += f"remote_write:\n  - url: {remote_url}\n"
    return text
