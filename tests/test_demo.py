"""`collector demo` end to end: exporters, file_sd churn, scrape, remote write, live summary.

It runs as users run it, as a separate ``collector demo`` process on uvloop.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.integration.servers import free_port


def test_demo_runs_the_pipeline_and_reports() -> None:
    """The demo scrapes its exporters and its receiver gets their samples and report series."""
    listen = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "demo",
            "--duration",
            "6",
            "--interval",
            "0.5",
            "--exporters",
            "3",
            f"--web.listen-address={listen}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"http://{listen}/" in out
    screens = out.split("collector demo")
    assert re.search(r"targets\s+up\s+3\s+down\s+0", screens[-1]), screens[-1]
    received = re.search(r"demo finished: (\d+) samples received", out)
    assert received is not None
    # 3 exporters x (about 30 series + 5 report series) x several scrapes.
    assert int(received.group(1)) > 3 * 35 * 3
