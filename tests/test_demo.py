"""`collector demo` end to end: exporters, file_sd churn, scrape, remote write, live summary.

The end-to-end tests run it as users run it, as a separate ``collector demo`` process on uvloop,
with short intervals. The summary's pieces (rates, target rows, the display, the options) are
tested directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from collector import cli
from collector.config import AgentOptions
from collector.demo import (
    Display,
    Exporter,
    RateWindow,
    Receiver,
    Snapshot,
    TargetRow,
    build_parser,
    demo_options,
    rate_window,
    run_demo,
    target_rows,
    window_rate,
)
from collector.remote.codec import DecodedSeries
from tests.integration.servers import free_port, wait_until

_TOTALS = re.compile(
    r"demo stopped after (\S+): scraped (\d+) samples, sent (\d+), "
    r"received (\d+) by the receiver, lost (\d+)"
)


def _demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "collector", "demo", *args]


class _Lines:
    """A running demo process whose stdout lines arrive on a queue (reads never block a test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, *, deadline: float) -> str | None:
        """The next line, or None at the end of the output; fails at ``deadline``."""
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"timed out; output so far:\n{''.join(self.seen)}") from None
        if line is not None:
            self.seen.append(line)
        return line

    def until(self, pattern: str, *, deadline: float) -> str:
        """Read lines until one matches ``pattern``; that line."""
        while (line := self.next(deadline=deadline)) is not None:
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matched {pattern!r}:\n{''.join(self.seen)}")

    def rest(self, *, deadline: float) -> str:
        """Everything until the output ends."""
        while self.next(deadline=deadline) is not None:
            pass
        return "".join(self.seen)


@contextlib.contextmanager
def _running_demo(*args: str) -> Iterator[_Lines]:
    """``collector demo ARGS`` with stdout on a pipe (not a terminal); killed if still running."""
    process = subprocess.Popen(
        _demo_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield _Lines(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------- end to end


def test_demo_runs_the_pipeline_and_reports() -> None:
    """The demo scrapes its exporters, its receiver gets every sample, and the totals say so."""
    listen = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        _demo_command(
            "--duration",
            "6",
            "--interval",
            "0.5",
            "--exporters",
            "3",
            "--churn-every",
            "0",
            f"--web.listen-address={listen}",
        ),
        capture_output=True,
        text=True,
        timeout=40,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"http://{listen}/" in out
    summaries = [line for line in out.splitlines() if line.startswith("[")]
    assert re.search(r"targets up 3 down 0 left 0 waiting 0", summaries[-1]), summaries[-1]
    totals = _TOTALS.search(out)
    assert totals is not None, out
    scraped, sent, received, lost = (int(totals.group(i)) for i in range(2, 6))
    # 3 exporters x (28 series + 5 report series) x several scrapes, all flushed at the end.
    assert received > 3 * 33 * 3
    assert scraped == sent == received
    assert lost == 0


def _listening_hosts(port: int) -> set[str]:
    """The local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            hosts.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return hosts


def test_demo_listens_on_loopback_only() -> None:
    """The demo's web UI answers on 127.0.0.1 and its socket is bound to 127.0.0.1 alone."""
    port = free_port()
    with _running_demo(
        "--duration", "30", "--interval", "0.5", f"--web.listen-address=127.0.0.1:{port}"
    ) as demo:

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)

        wait_until(ready, timeout=20)
        assert _listening_hosts(port) == {"127.0.0.1"}
        # 127.0.0.2 is loopback too: a socket bound to 0.0.0.0 would accept there.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        demo.process.send_signal(signal.SIGTERM)
        out = demo.rest(deadline=time.monotonic() + 20)
        assert demo.process.wait(timeout=10) == 0
        assert _TOTALS.search(out), out


def test_demo_defaults_to_loopback() -> None:
    """``collector demo`` listens on 127.0.0.1:9099 unless told otherwise, before or after ``demo``.

    The agent's own default (all interfaces) must not leak into the demo.
    """

    def listen_address(*argv: str) -> str:
        args, extra = cli.build_parser().parse_known_args(list(argv))
        args.demo_args = extra
        return demo_options(args)[1].listen_address

    assert AgentOptions().listen_address.startswith("0.0.0.0:")
    assert listen_address("demo") == "127.0.0.1:9099"
    assert listen_address("demo", "--web.listen-address=127.0.0.1:1234") == "127.0.0.1:1234"
    assert listen_address("--web.listen-address=127.0.0.1:5678", "demo") == "127.0.0.1:5678"


def test_demo_plain_output_shows_churn_and_totals_on_sigint() -> None:
    """Into a pipe: one plain line per second, a stopped exporter shows down then up again, a
    removed one shows left, and Ctrl-C (SIGINT) ends with the totals and exit code 0."""
    deadline = time.monotonic() + 30
    with _running_demo(
        "--interval",
        "0.5",
        "--churn-every",
        "2",
        "--exporters",
        "3",
        f"--web.listen-address=127.0.0.1:{free_port()}",
    ) as demo:
        down = demo.until(r"targets up 2 down 1 .*\| down: svc-\d", deadline=deadline)
        stopped = re.search(r"down: (svc-\d)", down)
        assert stopped is not None
        assert f"churn: {stopped.group(1)} stopped" in down
        back = demo.until(r"targets up 3 down 0 left 0", deadline=deadline)
        assert f"churn: {stopped.group(1)} restarted" in back
        demo.until(r"targets up 2 down 0 left 1 .*\| left: svc-\d", deadline=deadline)
        demo.process.send_signal(signal.SIGINT)
        out = demo.rest(deadline=time.monotonic() + 20)
        assert demo.process.wait(timeout=10) == 0
        assert demo.process.stderr is not None
        stderr = demo.process.stderr.read()
    assert "\x1b" not in out
    assert "Traceback" not in stderr, stderr
    last = out.splitlines()[-1]
    totals = _TOTALS.fullmatch(last)
    assert totals is not None, out
    assert int(totals.group(4)) > 0


def test_demo_prints_totals_on_keyboard_interrupt() -> None:
    """Without a signal handler a KeyboardInterrupt leaves the loop; closing the runner cancels
    the demo, which still stops the agent and prints the totals."""
    out = io.StringIO()
    options = AgentOptions(listen_address=f"127.0.0.1:{free_port()}", storage_path="")

    def interrupt() -> None:
        raise KeyboardInterrupt

    def run() -> None:
        # Closing the runner (leaving the block) cancels the demo task and waits for it.
        with asyncio.Runner() as runner:
            runner.get_loop().call_later(3.0, interrupt)
            runner.run(run_demo(options, exporters=2, interval=0.5, churn_every=0, out=out))

    with pytest.raises(KeyboardInterrupt):
        run()
    totals = _TOTALS.search(out.getvalue())
    assert totals is not None, out.getvalue()
    assert int(totals.group(2)) > 0


# ---------------------------------------------------------------------------- churn


async def test_a_stopped_exporter_refuses_then_answers_on_the_same_port() -> None:
    """Stopping an exporter refuses connections (its target goes down); starting it again
    serves on the same port, so the file_sd entry naming it stays right."""
    exporter = Exporter("svc-0", series=4)
    await exporter.start()
    port = exporter.port
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{exporter.address}/metrics") as resp:
                assert b'demo_requests_total{service="svc-0"' in await resp.read()
            await exporter.stop()
            assert not exporter.running
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.get(f"http://{exporter.address}/metrics"):
                    pass
            await exporter.start()
            assert exporter.port == port
            async with session.get(f"http://{exporter.address}/metrics") as resp:
                assert resp.status == 200
    finally:
        await exporter.stop()


# ---------------------------------------------------------------------------- rates


def test_window_rate_is_steady_on_bursty_counters() -> None:
    """A counter that jumps by 100 every 2 s, read every second, reads 50/s throughout, where
    the difference of consecutive readings would say 100/s, 0/s, 100/s, ..."""
    readings = [(float(t), 100.0 * (t // 2)) for t in range(13)]
    window = RateWindow(2.0)
    rates = [window.add(t, value) for t, value in readings]
    assert rates[2:] == [50.0] * 11
    assert len(window.points) <= 3
    assert window_rate(readings, window=6.0) == 50.0


def test_window_rate_edges() -> None:
    """No rate from fewer than two readings; a short history is averaged over what there is."""
    assert window_rate([], window=5.0) == 0.0
    assert window_rate([(1.0, 10.0)], window=5.0) == 0.0
    assert window_rate([(0.0, 0.0), (2.0, 10.0)], window=5.0) == 5.0
    assert window_rate([(1.0, 0.0), (1.0, 10.0)], window=5.0) == 0.0


def test_rate_window_spans_whole_scrape_intervals() -> None:
    """The averaging window is a whole number of scrape intervals, at least 5 seconds."""
    assert rate_window(2.0) == 6.0
    assert rate_window(0.5) == 5.0
    assert rate_window(1.0) == 5.0
    assert rate_window(10.0) == 10.0


# ---------------------------------------------------------------------------- summary


def test_target_rows_follow_the_agents_view() -> None:
    """Each exporter shows its target's health; one missing from the agent's list is waiting
    until it has been seen once, and left afterwards."""
    fleet = [
        Exporter("svc-0", port=1001),
        Exporter("svc-1", port=1002),
        Exporter("svc-2", port=1003),
    ]

    def active(port: int, health: str, error: str = "") -> dict[str, object]:
        return {
            "discoveredLabels": {"__address__": f"127.0.0.1:{port}"},
            "scrapeUrl": f"http://127.0.0.1:{port}/metrics",
            "health": health,
            "lastError": error,
        }

    seen: set[str] = set()
    first = target_rows(fleet, [active(1001, "up"), active(1002, "unknown")], seen=seen)
    assert [row.state for row in first] == ["up", "waiting", "waiting"]
    later = target_rows(fleet, [active(1002, "down", "refused"), active(1003, "up")], seen=seen)
    assert [row.state for row in later] == ["left", "down", "up"]
    assert later[1].error == "refused"


def _snapshot(*, down: int = 0, events: int = 1) -> Snapshot:
    rows = [
        TargetRow(name=f"svc-{i}", state="down" if i < down else "up", url=f"http://h:{i}/metrics")
        for i in range(3)
    ]
    return Snapshot(
        elapsed=12.0,
        web_url="http://127.0.0.1:9099/",
        targets=tuple(rows),
        scraped_rate=99.0,
        sent_rate=98.0,
        window=6.0,
        pending=3.0,
        failed=0.0,
        received=1000,
        requests=10,
        series=99,
        events=tuple((float(i), f"event {i}") for i in range(events)),
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_display_redraws_in_place_on_a_terminal() -> None:
    """On a terminal the second summary moves the cursor up over the first and clears lines."""
    out = _Terminal()
    display = Display(out)
    display.show(_snapshot())
    first = out.getvalue()
    drawn = first.count("\n")
    assert not first.startswith("\x1b[")
    assert first.count("\x1b[K\n") == drawn
    display.show(_snapshot(down=1, events=2))
    second = out.getvalue()[len(first) :]
    assert second.startswith(f"\x1b[{drawn}A\r")
    assert "targets   up 2   down 1   left 0   waiting 0" in second
    assert second.endswith("\x1b[J")
    display.note("demo stopped")
    assert out.getvalue().endswith("\r\x1b[Kdemo stopped\n")


def test_display_writes_plain_lines_elsewhere() -> None:
    """Into a pipe or a file: one line per summary, no escape codes."""
    out = io.StringIO()
    display = Display(out)
    display.show(_snapshot())
    display.show(_snapshot(down=1, events=2))
    display.note("demo stopped")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "\x1b" not in out.getvalue()
    assert lines[1].startswith("[ 0:12] targets up 2 down 1 left 0 waiting 0 | scraped 99/s")
    assert "| down: svc-0 | churn: event 1" in lines[1]


# ---------------------------------------------------------------------------- options


def test_help_is_plain_text_with_every_option_described() -> None:
    """``collector demo --help`` has no reStructuredText markup; every option says its default."""
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text
    assert ":class:" not in text
    assert "`" not in text
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        assert "default" in action.help, action.dest
    assert "127.0.0.1:9099" in text
    assert "--churn-every" in text


def test_bad_options_are_refused() -> None:
    """Counts and durations must be positive (churn may be 0: off)."""
    parser = build_parser()
    assert parser.parse_args(["--churn-every", "0"]).churn_every == 0.0
    for argv in (["--exporters", "0"], ["--interval", "-1"], ["--duration", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_receiver_counts_a_batch_sent_again_once() -> None:
    """A batch sent again (remote write is at-least-once: a shutdown can cancel a send the
    receiver already read) is counted as duplicates, not as more samples received; a newer
    sample of the same series is counted."""
    receiver = Receiver()
    batch: list[DecodedSeries] = [
        ((("__name__", "a"),), [(1.0, 1000), (2.0, 2000)]),
        ((("__name__", "b"),), [(0.0, 1000)]),
    ]
    receiver.on_write(batch)
    receiver.on_write(batch)
    assert (receiver.samples, receiver.duplicates, receiver.requests) == (3, 3, 2)
    receiver.on_write([((("__name__", "a"),), [(3.0, 3000)])])
    assert (receiver.samples, receiver.duplicates, len(receiver.series)) == (4, 3, 2)
