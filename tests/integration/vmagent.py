"""vmagent 1.79 as a Kubernetes-SD oracle against the real API server of ``kube.py``.

``vmagent_oracle`` starts Debian's vmagent with a ``kubernetes_sd_configs`` scrape config pointed
at a `KubeAPIServer` and reads what it discovered from its Prometheus-compatible
``/api/v1/targets`` (/work/shared/reference/vmagent-oracle.md lists where it differs from
Prometheus).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.kube import (
    JSONObject,
    KubeAPIServer,
    free_port,
    log_tail,
    spawn,
    stop_process,
    wait_until,
    which,
)

__all__ = ["VMAgentOracle", "vmagent_oracle"]


@dataclass
class VMAgentOracle:
    """A running vmagent whose Kubernetes SD points at a :class:`KubeAPIServer`."""

    url: str
    config_file: Path
    kubeconfig_file: Path
    log: Path
    process: subprocess.Popen[bytes]

    def targets(self) -> JSONObject:
        """``data`` of ``/api/v1/targets``: ``activeTargets`` and ``droppedTargets`` lists.

        Active targets carry ``discoveredLabels``, ``labels``, ``scrapePool``, ``scrapeUrl``...;
        dropped targets (relabeled away) carry ``discoveredLabels`` only.
        """
        if self.process.poll() is not None:
            raise RuntimeError(f"vmagent exited: {log_tail(self.log)}")
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as response:
            payload = json.loads(response.read())
        assert payload.get("status") == "success", payload
        data: JSONObject = payload["data"]
        data.setdefault("activeTargets", [])
        data.setdefault("droppedTargets", [])
        return data

    def __call__(self) -> JSONObject:
        return self.targets()

    def discovered(self, job: str | None = None) -> list[dict[str, str]]:
        """``discoveredLabels`` of every active and dropped target (of scrape job ``job``)."""
        data = self.targets()
        found: list[dict[str, str]] = []
        for target in [*data["activeTargets"], *data["droppedTargets"]]:
            labels: dict[str, str] = target.get("discoveredLabels") or {}
            if job is None or labels.get("job") == job or target.get("scrapePool") == job:
                found.append(labels)
        return found

    def wait_for(
        self, predicate: Callable[[JSONObject], bool], *, timeout: float = 30, what: str = ""
    ) -> JSONObject:
        """Poll :meth:`targets` until ``predicate(data)`` is true; return that ``data``."""
        seen: list[JSONObject] = []

        def check() -> bool:
            data = self.targets()
            seen[:] = [data]
            return predicate(data)

        try:
            wait_until(check, timeout=timeout, what=what or "vmagent targets", interval=0.25)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nlast /api/v1/targets data: {seen[-1:]}") from None
        return seen[-1]


def _scrape_configs(config: str | Mapping[str, Any] | Sequence[Any]) -> list[JSONObject]:
    loaded: Any = yaml.safe_load(config) if isinstance(config, str) else config
    if isinstance(loaded, Mapping):
        loaded = loaded.get("scrape_configs", [])
    if not isinstance(loaded, Sequence) or isinstance(loaded, str | bytes):
        raise TypeError(f"expected a scrape_configs list, got {type(loaded).__name__}")
    return [dict(job) for job in loaded]


@contextlib.contextmanager
def vmagent_oracle(
    workdir: Path,
    kube: KubeAPIServer,
    scrape_configs_yaml: str | Mapping[str, Any] | Sequence[Any],
    *,
    token: str | None = None,
    sd_check_interval: str = "1s",
    extra_args: Sequence[str] = (),
    timeout: float = 30,
) -> Iterator[VMAgentOracle]:
    """Start Debian's vmagent 1.79 with ``scrape_configs_yaml`` against ``kube``; stop it after.

    ``scrape_configs_yaml`` is a Prometheus config (``scrape_configs:`` key) or just the list,
    as YAML text or parsed. Every ``kubernetes_sd_configs`` entry without ``api_server`` or
    ``kubeconfig_file`` gets ``kubeconfig_file`` pointing at a kubeconfig for ``kube`` with
    ``token`` (admin by default) and the server's CA. vmagent runs with
    ``-promscrape.config.strictParse=false`` (Prometheus-only keys are ignored),
    ``-promscrape.kubernetesSDCheckInterval=<sd_check_interval>``, and a ``-remoteWrite.url`` on a
    closed loopback port (it never gets data; its retries are only logged).
    """
    vmagent = which("vmagent")
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig = kube.write_kubeconfig(workdir / "vmagent-kubeconfig.yaml", token)
    jobs = _scrape_configs(scrape_configs_yaml)
    for job in jobs:
        for sd in job.get("kubernetes_sd_configs") or []:
            if "api_server" not in sd and "kubeconfig_file" not in sd:
                sd["kubeconfig_file"] = str(kubeconfig)
    config_file = workdir / "vmagent.yml"
    config_file.write_text(yaml.safe_dump({"scrape_configs": jobs}, sort_keys=False))

    port = free_port()
    sink_port = free_port()  # nothing listens there
    argv = [
        vmagent,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-promscrape.config={config_file}",
        "-promscrape.config.strictParse=false",
        f"-promscrape.kubernetesSDCheckInterval={sd_check_interval}",
        f"-remoteWrite.url=http://127.0.0.1:{sink_port}/api/v1/write",
        f"-remoteWrite.tmpDataPath={workdir / 'vmagent-remotewrite-data'}",
        "-promscrape.suppressScrapeErrors",
        "-loggerLevel=INFO",
        *extra_args,
    ]
    log = workdir / "vmagent.log"
    process = spawn(argv, log)
    oracle = VMAgentOracle(f"http://127.0.0.1:{port}", config_file, kubeconfig, log, process)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"vmagent exited: {log_tail(log)}")
            with urllib.request.urlopen(f"{oracle.url}/health", timeout=2) as response:
                status: int = response.status
                return status == 200

        wait_until(healthy, timeout=timeout, what=f"vmagent {oracle.url}/health")
        yield oracle
    finally:
        stop_process(process)
