"""The web UI rendered by a real browser (Debian's Chromium, headless) against a running agent."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.integration.running import Target, eventually, running_agent, serve_target

pytestmark = pytest.mark.integration


async def _render(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (virtual time lets its fetches finish)."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium is not installed; `make test` installs it"
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    return stdout.decode()


async def test_ui_lists_targets_health_queues_and_config(tmp_path: Path) -> None:
    """The page shows each target with its health and labels, the queues, and the config."""
    target = Target(body=b"# TYPE a gauge\na 1\n")
    async with serve_target(target):
        config = (
            "global: {scrape_interval: 200ms, scrape_timeout: 200ms}\n"
            "scrape_configs:\n"
            f"  - job_name: shown\n    static_configs: [{{targets: ['{target.address}'], "
            "labels: {team: blue}}]\n"
            "remote_write: [{url: 'http://127.0.0.1:9/api/v1/write', name: nowhere}]\n"
        )
        async with running_agent(config, tmp_path) as agent:
            await eventually(lambda: target.scrapes >= 2)
            dom = await _render(f"http://{agent.options.listen_address}/", tmp_path / "profile")
    assert f"http://{target.address}/metrics" in dom
    assert '<td class="up">up</td>' in dom
    assert 'team="blue"' in dom
    assert "<td>nowhere</td>" in dom
    assert "job_name: shown" in dom
