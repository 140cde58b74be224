"""The Kubernetes floor loads kubernetes_asyncio only when a connection needs its loaders.

The agent imports discovery, scrape and `collector.kubernetes` unconditionally and always runs
its informer pool, so this is what keeps an agent without Kubernetes from paying for the
library (about 0.6 s and 35 MB at start). Each case runs in a fresh interpreter: this test
process has long imported everything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def loaded_after(code: str) -> bool:
    """Whether ``kubernetes_asyncio`` is in ``sys.modules`` after running ``code``."""
    script = textwrap.dedent(code) + "\nimport sys\nprint('kubernetes_asyncio' in sys.modules)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_agent_and_api_server_connections_do_not_load_kubernetes_asyncio() -> None:
    """Importing the agent, the pool and the proxy, and loading an ``api_server`` connection
    (its own ``http_client``), leave kubernetes_asyncio unloaded."""
    assert not loaded_after(
        """
        import asyncio
        import collector.agent, collector.kubernetes.proxy
        from collector.discovery.kubernetes import InformerPool
        from collector.kubernetes.connection import Connection, ConnectionSpec
        InformerPool()
        asyncio.run(Connection(ConnectionSpec(api_server="http://127.0.0.1:1")).load())
        """
    )


def test_a_kubeconfig_connection_loads_it(tmp_path: Path) -> None:
    """Loading a kubeconfig is what brings kubernetes_asyncio in, through the auth module."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    assert loaded_after(
        f"""
        import asyncio
        from collector.kubernetes.connection import Connection, ConnectionSpec
        asyncio.run(Connection(ConnectionSpec(kubeconfig={str(kubeconfig)!r})).load())
        """
    )
