"""Every example config shipped in config/ loads with the agent's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG_DIR.rglob("*.yml"))

# The Kubernetes configs take these from the pod's environment (downward API, kustomize).
ENV = {
    "NODE_NAME": "node-1",
    "POD_NAME": "collector-2",
    "SHARDS": "3",
    "REMOTE_WRITE_URL": "http://victoria-metrics.monitoring.svc:8428/api/v1/write",
    "CLUSTER_NAME": "kind",
}


def test_examples_exist() -> None:
    """config/ holds the agent example and both Kubernetes configs."""
    names = {p.name for p in EXAMPLES}
    assert {"collector.yml", "kubernetes-daemonset.yml", "kubernetes-statefulset.yml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(CONFIG_DIR)) for p in EXAMPLES])
def test_example_loads(path: Path) -> None:
    """The example is a valid config with at least one job and one remote-write destination."""
    config = load_config(str(path), env=ENV)
    assert config.scrape_configs
    assert config.remote_write
    for job in config.scrape_configs:
        assert job.scrape_timeout <= job.scrape_interval
