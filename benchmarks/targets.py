"""Loopback scrape targets for benchmarks and integration tests.

One process serves many targets, each on its own loopback address (``127.1.x.y:port``), so agents
see them as distinct hosts. Every target serves the same exposition body with values that change
between scrapes (a few pre-rendered variants rotate), which is what steady state looks like to a
scraper: the same series with new values.

Run: ``python -m benchmarks.targets --count 200 --body node`` (prints the addresses, serves until
killed).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_VALUE = re.compile(rb"^([^#\n][^\n]* )([-+0-9.eE]+)$", re.MULTILINE)


def target_addresses(count: int, *, base: str = "127.1") -> list[str]:
    """``count`` distinct loopback host addresses: 127.1.0.1, 127.1.0.2, ..."""
    return [f"{base}.{(i + 1) // 250}.{(i + 1) % 250 + 1}" for i in range(count)]


def body_variants(body: bytes, variants: int = 4) -> list[bytes]:
    """Copies of ``body`` whose numeric sample values differ (+k on every finite value)."""

    def bump(k: int) -> bytes:
        def sub(m: re.Match[bytes]) -> bytes:
            try:
                value = float(m.group(2)) + k
            except ValueError:
                return m.group(0)
            return m.group(1) + repr(value).encode()

        return _VALUE.sub(sub, body)

    return [bump(k) for k in range(variants)]


def make_app(bodies: Sequence[bytes]) -> web.Application:
    """An app answering ``GET /metrics`` with the next body variant each time."""
    state = {"n": 0}

    async def metrics(_: web.Request) -> web.Response:
        state["n"] += 1
        return web.Response(
            body=bodies[state["n"] % len(bodies)], headers={"Content-Type": CONTENT_TYPE}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(hosts: Sequence[str], port: int, bodies: Sequence[bytes]) -> web.AppRunner:
    """Start one site per host; the caller cleans up the returned runner."""
    runner = web.AppRunner(make_app(bodies), access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner


def load_body(kind: str) -> bytes:
    """``node``: the real node_exporter fixture; ``ksm``: 2,000 series with 8 labels each."""
    if kind == "node":
        return (FIXTURES / "node_exporter.prom").read_bytes()
    from benchmarks.data import ksm_body

    return ksm_body()


async def _main(args: argparse.Namespace) -> None:
    hosts = target_addresses(args.count)
    runner = await serve(hosts, args.port, body_variants(load_body(args.body)))
    print(f"serving {len(hosts)} targets on port {args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve targets until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--body", choices=["node", "ksm"], default="node")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
