"""The agent as users run it: reload by HTTP and SIGHUP, refusal of bad configs, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from collector.agent import Agent, new_registry
from collector.config import AgentOptions
from collector.remote.codec import decode_metadata, decode_request, decompress
from collector.remote.wal import Recovery, WriteAheadLog
from tests.integration.running import Target, eventually, running_agent, serve_target
from tests.integration.servers import free_port


def _config(*targets: Target, interval: str = "200ms") -> str:
    listed = ", ".join(f"'{t.address}'" for t in targets)
    return (
        f"global: {{scrape_interval: {interval}, scrape_timeout: {interval}}}\n"
        f"scrape_configs:\n  - job_name: j\n    static_configs: [{{targets: [{listed}]}}]\n"
    )


async def _post(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url) as response:
        return response.status, await response.text()


async def _targets(base: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/v1/targets") as r:
        data = await r.json()
        active: list[dict[str, object]] = data["data"]["activeTargets"]
        return active


async def test_reload_keeps_unchanged_loops_and_refuses_bad_config(tmp_path: Path) -> None:
    """A bad config is refused (500, old one keeps running); a good one keeps unchanged loops."""
    one, two = Target(body=b"a 1\n"), Target(body=b"b 1\n")
    async with (
        serve_target(one),
        serve_target(two),
        running_agent(_config(one), tmp_path, lifecycle=True) as agent,
    ):
        base = f"http://{agent.options.listen_address}"
        await eventually(lambda: one.scrapes >= 2)
        pool = agent.scrape.pools["j"]
        (task_before,) = pool.tasks.values()

        config = Path(agent.options.config_file)
        await asyncio.to_thread(config.write_text, "scrape_configs: [{job_name: j, bogus: 1}]")
        status, text = await _post(f"{base}/-/reload")
        assert status == 500
        assert "scrape_configs[0].bogus" in text
        assert agent.registry.get_sample_value("prometheus_config_last_reload_successful") == 0
        scrapes = one.scrapes
        await eventually(lambda: one.scrapes >= scrapes + 2)  # the old config still runs

        await asyncio.to_thread(config.write_text, _config(one, two))
        status, _ = await _post(f"{base}/-/reload")
        assert status == 200
        assert agent.registry.get_sample_value("prometheus_config_last_reload_successful") == 1
        await eventually(lambda: two.scrapes >= 1)
        assert task_before in agent.scrape.pools["j"].tasks.values()
        assert len(await _targets(base)) == 2


async def test_lifecycle_endpoints_are_opt_in(tmp_path: Path) -> None:
    """Without --web.enable-lifecycle, /-/reload and /-/quit answer 403 and change nothing."""
    one = Target(body=b"a 1\n")
    async with serve_target(one), running_agent(_config(one), tmp_path) as agent:
        base = f"http://{agent.options.listen_address}"
        stamp = "prometheus_config_last_reload_success_timestamp_seconds"
        loaded_at = agent.registry.get_sample_value(stamp)
        for path in ("/-/reload", "/-/quit"):
            status, text = await _post(f"{base}{path}")
            assert (status, text) == (403, "Lifecycle API is not enabled.\n")
        assert agent.registry.get_sample_value(stamp) == loaded_at  # no reload happened
        scrapes = one.scrapes
        await eventually(lambda: one.scrapes > scrapes)  # still running


async def _start_cli(
    config: Path,
    listen: str,
    storage: Path,
    *flags: str,
    preexec_fn: Callable[[], None] | None = None,
) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector",
        f"--config.file={config}",
        f"--web.listen-address={listen}",
        f"--storage.path={storage}",
        *flags,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=preexec_fn,
    )


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def test_sigint_stops_even_when_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A shell's background job starts with SIGINT ignored: the explicit handler still stops the
    agent in order, exits 0 and says what it is doing and how long it will wait."""
    one = Target(body=b"a 1\n")
    async with serve_target(one):
        config = tmp_path / "c.yml"
        config.write_text(_config(one))
        listen = f"127.0.0.1:{free_port()}"
        process = await _start_cli(
            config,
            listen,
            tmp_path / "q",
            "--storage.remote.flush-deadline=3s",
            preexec_fn=_ignore_sigint,
        )
        try:
            await eventually(lambda: one.scrapes >= 1, timeout=60)
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), timeout=60) == 0
            assert process.stderr is not None
            err = (await process.stderr.read()).decode()
            assert "received SIGINT: stopping discovery" in err
            assert "sending for at most 3s" in err
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_quit_endpoint_stops_the_process_with_lifecycle(tmp_path: Path) -> None:
    """With --web.enable-lifecycle, POST /-/quit runs the SIGTERM shutdown and exits 0."""
    one = Target(body=b"a 1\n")
    async with serve_target(one):
        config = tmp_path / "c.yml"
        config.write_text(_config(one))
        listen = f"127.0.0.1:{free_port()}"
        process = await _start_cli(config, listen, tmp_path / "q", "--web.enable-lifecycle")
        try:
            await eventually(lambda: one.scrapes >= 1, timeout=60)
            status, text = await _post(f"http://{listen}/-/quit")
            assert status == 200
            assert "Goodbye" in text
            assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_cli_process_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`collector --config.file` picks up a new config on SIGHUP and exits 0 on SIGTERM."""
    one, two = Target(body=b"a 1\n"), Target(body=b"b 1\n")
    async with serve_target(one), serve_target(two):
        config = tmp_path / "c.yml"
        config.write_text(_config(one))
        listen = f"127.0.0.1:{free_port()}"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collector",
            f"--config.file={config}",
            f"--web.listen-address={listen}",
            f"--storage.path={tmp_path / 'q'}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            await eventually(lambda: one.scrapes >= 1, timeout=60)
            config.write_text(_config(one, two))
            process.send_signal(signal.SIGHUP)
            await eventually(lambda: two.scrapes >= 1, timeout=60)
            assert len(await _targets(f"http://{listen}")) == 2
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), timeout=60) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_remote_write_sends_scraped_metadata(tmp_path: Path) -> None:
    """The agent hands the scrape manager's metadata to its writers (spec §6.6)."""
    metadata: list[tuple[int, str, str, str]] = []
    series_in_metadata_requests: list[object] = []

    async def write(request: web.Request) -> web.Response:
        raw = decompress(await request.read())
        entries = decode_metadata(raw)
        if entries:
            series_in_metadata_requests.extend(decode_request(raw))
            metadata.extend(entries)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    target = Target(body=b"# HELP mem_bytes Memory.\n# TYPE mem_bytes gauge\nmem_bytes 1\n")
    try:
        async with serve_target(target):
            config = _config(target) + (
                f"remote_write:\n  - url: http://{host}:{port}/api/v1/write\n"
                "    metadata_config: {send_interval: 300ms}\n"
            )
            async with running_agent(config, tmp_path):
                await eventually(lambda: (2, "mem_bytes", "Memory.", "") in metadata, timeout=30)
    finally:
        await runner.cleanup()
    assert series_in_metadata_requests == []


async def test_scraping_waits_for_the_write_ahead_log_to_be_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is scraped while a destination's log is still being recovered: a batch sealed
    before its log is open lives in memory only, so a kill -9 during a long recovery would lose
    it (Prometheus likewise replays its WAL before scraping)."""
    entered, release = threading.Event(), threading.Event()
    target = Target(body=b"a 1\n")
    scrapes_when_open: list[int] = []
    recover = WriteAheadLog.open

    def slow_open(self: WriteAheadLog) -> Recovery:
        entered.set()
        release.wait(30)
        scrapes_when_open.append(target.scrapes)
        return recover(self)

    monkeypatch.setattr(WriteAheadLog, "open", slow_open)
    config_file = tmp_path / "collector.yml"
    async with serve_target(target):
        config_file.write_text(
            _config(target, interval="100ms") + "remote_write:\n  - url: http://127.0.0.1:9/w\n"
        )
        options = AgentOptions(
            config_file=str(config_file),
            listen_address=f"127.0.0.1:{free_port()}",
            storage_path=str(tmp_path / "queue"),
        )
        agent = Agent(
            options,
            registry=new_registry(),
            flush_deadline=1.0,
            reload_interval=0.1,
            discovery_updatert=0.1,
        )
        task = asyncio.create_task(agent.run())
        try:
            assert await asyncio.to_thread(entered.wait, 30)
            # Ten scrape intervals in which an ungated agent would have scraped.
            await asyncio.sleep(1.0)
            assert target.scrapes == 0
            release.set()
            await eventually(lambda: target.scrapes >= 2)
            assert scrapes_when_open == [0]
        finally:
            release.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
