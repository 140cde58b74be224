"""Real peers for integration tests: node_exporter, VictoriaMetrics and Prometheus.

Each fixture starts the Debian-packaged binary on a free loopback port with its data in the test's
temporary directory, waits (bounded) until it answers, and stops it at teardown. Nothing here is a
fake: these are the receivers and the exporter users run. ``make test`` installs the packages.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["Server", "free_port", "prometheus_agent", "start_server", "wait_until"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: object, *, timeout: float = 30.0, interval: float = 0.1) -> None:
    """Poll ``predicate()`` until it is truthy; fail after ``timeout`` seconds (bounded loop)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
        time.sleep(interval)


@dataclass
class Server:
    """A started real server: its base URL and process."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> bytes:
        """GET ``path`` with query ``params``; the body."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body: bytes = response.read()
            return body

    def query(self, promql: str, **params: str) -> list[dict[str, object]]:
        """Run a Prometheus-API instant query and return ``data.result``."""
        data = orjson.loads(self.get("/api/v1/query", query=promql, **params))
        assert data["status"] == "success", data
        result: list[dict[str, object]] = data["data"]["result"]
        return result

    def export(self, match: str) -> list[dict[str, object]]:
        """VictoriaMetrics only: every raw sample of ``match`` as JSON lines."""
        lines = self.get("/api/v1/export", **{"match[]": match}).splitlines()
        return [orjson.loads(line) for line in lines if line]


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed; run `make test` (it installs it)")
    return path


@contextlib.contextmanager
def start_server(
    name: str, argv: Sequence[str], *, url: str, ready_path: str, workdir: Path
) -> Iterator[Server]:
    """Start ``argv``, wait until ``url + ready_path`` answers 200, stop it afterwards."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([_require(argv[0]), *argv[1:]], stdout=out, stderr=out)
    server = Server(name, url, process, log)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
            server.get(ready_path)
            return True

        wait_until(answers, timeout=60)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def victoria_metrics(workdir: Path, port: int | None = None) -> Iterator[Server]:
    """VictoriaMetrics single-node: remote-write receiver at ``/api/v1/write``; on ``port``
    when given (a port chosen before it starts), else on a free one."""
    port = port or free_port()
    argv = [
        "victoria-metrics",
        f"-storageDataPath={workdir / 'vm-data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
        "-dedup.minScrapeInterval=0",
    ]
    with start_server(
        "victoria-metrics",
        argv,
        url=f"http://127.0.0.1:{port}",
        ready_path="/health",
        workdir=workdir,
    ) as server:
        yield server


@contextlib.contextmanager
def prometheus_receiver(workdir: Path) -> Iterator[Server]:
    """Prometheus with ``--web.enable-remote-write-receiver`` and an empty scrape config."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text("global: {}\n")
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
    ]
    with start_server(
        "prometheus",
        argv,
        url=f"http://127.0.0.1:{port}",
        ready_path="/-/ready",
        workdir=workdir,
    ) as server:
        yield server


@contextlib.contextmanager
def prometheus_agent(workdir: Path, config: str, *, features: str) -> Iterator[Server]:
    """Prometheus 2.42 in agent mode with ``config``, ``--enable-feature=agent,<features>``
    (the oracle tests' peer: ``native-histograms`` makes it negotiate protobuf)."""
    workdir.mkdir()
    path = workdir / "prometheus.yml"
    path.write_text(config)
    port = free_port()
    argv = [
        "prometheus",
        f"--enable-feature=agent,{features}",
        f"--config.file={path}",
        f"--storage.agent.path={workdir / 'agent-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with start_server(
        "prometheus-agent",
        argv,
        url=f"http://127.0.0.1:{port}",
        ready_path="/-/ready",
        workdir=workdir,
    ) as server:
        yield server


@contextlib.contextmanager
def node_exporter(workdir: Path) -> Iterator[Server]:
    """The real ``prometheus-node-exporter`` on a free loopback port."""
    port = free_port()
    argv = [
        "prometheus-node-exporter",
        f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.meminfo",
        "--collector.loadavg",
        "--collector.time",
    ]
    with start_server(
        "node-exporter",
        argv,
        url=f"http://127.0.0.1:{port}",
        ready_path="/metrics",
        workdir=workdir,
    ) as server:
        yield server
