"""YAML syntax errors are worded as Prometheus words them, checked against the real promtool.

Prometheus reads its config with Go's yaml.v2, a port of libyaml; collector reads it through
libyaml (`collector.config.yaml_tree`) and numbers the line as yaml.v2 does. For each broken
file both ``promtool check config`` (Debian's ``prometheus`` package, 2.42) and
``collector check config`` run, and the ``yaml: ...`` part of their messages must be equal;
collector's message also starts with the true ``file:line:column`` of the problem.

Not compared, on purpose: a file of several YAML documents. yaml.v2 decodes the first and
ignores the rest, broken or not; collector refuses the file ("but found another document"),
because a second document is never meant to be ignored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = {
    "unclosed-flow-sequence": "global: [",
    "unclosed-flow-sequence-nested": "scrape_configs:\n  - job_name: [a\n",
    "unclosed-flow-mapping": "scrape_configs:\n  - job_name: a\n    labels: {a: b\n",
    "unclosed-quote": 'a: "x\n',
    "tab-indent": "a:\n\t- b\n",
    "bad-indent": "scrape_configs:\n  - job_name: a\n   scrape_interval: 5s\n",
    "mapping-in-plain": "global:\n  scrape_interval: a: b\n",
    "undefined-alias": "global: *nowhere\n",
    "block-end-missing": (
        "scrape_configs:\n- job_name: a\n  static_configs:\n  - targets: [a]\n b: c\n"
    ),
}


BAD_TAGS = {
    "bool": "scrape_configs:\n- job_name: a\n  honor_labels: !!bool xyz\n",
    "timestamp": "global:\n  external_labels:\n    a: !!timestamp xyz\n",
    "int-of-a-float": "global:\n  scrape_interval: !!int 1.5\n",
    "float": "scrape_configs:\n- job_name: a\n  scrape_timeout: !!float abc\n",
}
"""Explicitly tagged values that are not of their tag: yaml.v2 refuses them wherever they are
(``yaml: cannot decode !!str `xyz` as a !!bool``); collector says the same after its own
``line N:`` prefix (its errors about values are located by line)."""


def _yaml_message(output: str) -> str:
    """The ``yaml: ...`` part of a check's one FAILED line."""
    found: list[str] = re.findall(r"FAILED: .*?(yaml: .*)$", output, re.MULTILINE)
    assert len(found) == 1, output
    return found[0]


def _check_both(path: Path, text: str) -> tuple[str, str]:
    """``text`` written to ``path`` and checked by promtool and by collector, both of which
    must find it invalid (exit 1): (promtool's output, collector's stderr)."""
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is required"
    path.write_text(text)
    theirs = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    ours = subprocess.run(
        [sys.executable, "-m", "collector", "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert theirs.returncode == ours.returncode == 1, (theirs, ours)
    return theirs.stdout + theirs.stderr, ours.stderr


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_yaml_syntax_error_matches_promtool(tmp_path: Path, name: str) -> None:
    path = tmp_path / "prometheus.yml"
    theirs, ours = _check_both(path, BROKEN[name])
    assert _yaml_message(ours) == _yaml_message(theirs)
    assert re.search(rf"FAILED: {re.escape(str(path))}:\d+:\d+: yaml: ", ours), ours


@pytest.mark.parametrize("name", sorted(BAD_TAGS))
def test_bad_tagged_value_matches_promtool(tmp_path: Path, name: str) -> None:
    theirs, ours = _check_both(tmp_path / "prometheus.yml", BAD_TAGS[name])
    want = _yaml_message(theirs).removeprefix("yaml: ")
    assert want.startswith("cannot decode ")
    assert re.search(r"FAILED: .*:\d+:\d+: line \d+: (.*)$", ours, re.MULTILINE)
    got = re.findall(r"FAILED: .*:\d+:\d+: line \d+: (.*)$", ours, re.MULTILINE)
    assert got == [want], ours
